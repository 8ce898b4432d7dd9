//! [`PingError`], what a request can end in besides a reply (net-ping's error classes), the
//! mapping of ICMP error messages onto it, and [`Error`], why a session cannot open.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use asdic_engine::EngineError;
use asdic_wire::Family;
use asdic_wire::registry;

use crate::options::{OptionsError, Protocol};

/// Why [`Session::new`](crate::Session::new) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Options(#[from] OptionsError),
    /// The raw socket could not be opened; [`EngineError::Permission`] names the missing
    /// capability (CAP_NET_RAW).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An engine that does not take bare ICMP messages (the session builds those only).
    #[error("engine {0}: a session needs an engine that sends ICMP messages, not frames")]
    UnsupportedEngine(&'static str),
    /// The session's threads could not be started.
    #[error("starting the session's threads: {0}")]
    Thread(std::io::Error),
    /// The session's pipeline ended with a failure that is not the engine's (a panic).
    #[error("the session's pipeline failed: {0}")]
    Failed(String),
}

/// Why a request ended without a reply: net-ping's error classes, and this library's own.
///
/// ICMP errors carry `source`, the router or host that sent them (net-ping's `error.source`);
/// the request's target is known to the caller. The error's [`Display`](fmt::Display) names
/// ICMP codes as the IANA registry does.
///
/// | net-ping | variant | ICMPv4 | ICMPv6 |
/// | --- | --- | --- | --- |
/// | `RequestTimedOutError` | [`RequestTimedOut`](Self::RequestTimedOut) | — | — |
/// | `DestinationUnreachableError` | [`DestinationUnreachable`](Self::DestinationUnreachable) | 3 (also code 4, "fragmentation needed", as net-ping) | 1 |
/// | `PacketTooBigError` | [`PacketTooBig`](Self::PacketTooBig) | — | 2 |
/// | `ParameterProblemError` | [`ParameterProblem`](Self::ParameterProblem) | 12 | 4 |
/// | `RedirectReceivedError` | [`RedirectReceived`](Self::RedirectReceived) | 5 | 137 |
/// | `SourceQuenchError` | [`SourceQuench`](Self::SourceQuench) | 4 | — |
/// | `TimeExceededError` | [`TimeExceeded`](Self::TimeExceeded) | 11 | 3 |
/// | "Socket forcibly closed" | [`Closed`](Self::Closed) | — | — |
#[derive(Debug)]
pub enum PingError {
    /// No try was answered within the timeout (after `retries` more tries).
    RequestTimedOut,
    /// Destination Unreachable.
    DestinationUnreachable {
        /// Who reported it.
        source: IpAddr,
        /// The ICMP code (its meaning depends on the family of `source`).
        code: u8,
    },
    /// ICMPv6 Packet Too Big: the request does not fit the next link.
    PacketTooBig {
        /// The router that could not forward it.
        source: IpAddr,
        /// The next link's MTU, as the router reported it.
        mtu: u32,
    },
    /// Parameter Problem.
    ParameterProblem {
        /// Who reported it.
        source: IpAddr,
        /// The ICMP code.
        code: u8,
        /// The offset of the offending octet in the request.
        pointer: u32,
    },
    /// Redirect: the request should have gone through `gateway`.
    RedirectReceived {
        /// The router that sent the redirect.
        source: IpAddr,
        /// The better first hop it names.
        gateway: IpAddr,
        /// The ICMP code.
        code: u8,
    },
    /// Source Quench (ICMPv4, deprecated by RFC 6633 but still mapped).
    SourceQuench {
        /// Who sent it.
        source: IpAddr,
    },
    /// Time Exceeded: the TTL ran out in transit (code 0) or reassembly timed out (code 1).
    TimeExceeded {
        /// The gateway that dropped the request.
        source: IpAddr,
        /// The ICMP code.
        code: u8,
    },
    /// Another ICMP error type quoting the request (ICMPv6 types this table does not name).
    OtherIcmpError {
        /// Who sent it.
        source: IpAddr,
        /// The ICMP type.
        icmp_type: u8,
        /// The ICMP code.
        code: u8,
    },
    /// The session was closed while the request was outstanding: "Socket forcibly closed".
    Closed,
    /// The target's family is not the session's.
    WrongFamily {
        /// The target.
        target: IpAddr,
        /// The session's protocol.
        protocol: Protocol,
    },
    /// The local stack refused to send the request (no route, message too long, …).
    Send {
        /// The target.
        target: IpAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// 65,536 tries are waiting for their timeout: the ICMP sequence numbers of the session
    /// are all in use. Retry later.
    TooManyOutstanding,
    /// The session's socket failed: opening it again after a close, sending, or receiving.
    Engine(Arc<Error>),
}

impl PingError {
    /// The ICMP error that `source` sent about a request, as a `PingError`.
    ///
    /// `rest` is the rest-of-header word (MTU of Packet Too Big, pointer of Parameter
    /// Problem, ICMPv4 redirect gateway); `gateway` the redirect's better first hop as the
    /// wire parser read it.
    pub fn from_icmp(
        family: Family,
        icmp_type: u8,
        code: u8,
        source: IpAddr,
        rest: u32,
        gateway: Option<IpAddr>,
    ) -> PingError {
        match (family, icmp_type) {
            (Family::V4, 3) | (Family::V6, 1) => PingError::DestinationUnreachable { source, code },
            (Family::V6, 2) => PingError::PacketTooBig { source, mtu: rest },
            // RFC 792: the pointer is the first octet of the rest-of-header word.
            (Family::V4, 12) => PingError::ParameterProblem {
                source,
                code,
                pointer: rest >> 24,
            },
            // RFC 4443 §3.4: a 32-bit pointer.
            (Family::V6, 4) => PingError::ParameterProblem {
                source,
                code,
                pointer: rest,
            },
            (Family::V4, 5) | (Family::V6, 137) => PingError::RedirectReceived {
                source,
                gateway: gateway.unwrap_or(IpAddr::V4(Ipv4Addr::from(rest))),
                code,
            },
            (Family::V4, 4) => PingError::SourceQuench { source },
            (Family::V4, 11) | (Family::V6, 3) => PingError::TimeExceeded { source, code },
            _ => PingError::OtherIcmpError {
                source,
                icmp_type,
                code,
            },
        }
    }

    /// The router or host that sent the ICMP error, if this is one.
    pub fn source(&self) -> Option<IpAddr> {
        match *self {
            PingError::DestinationUnreachable { source, .. }
            | PingError::PacketTooBig { source, .. }
            | PingError::ParameterProblem { source, .. }
            | PingError::RedirectReceived { source, .. }
            | PingError::SourceQuench { source }
            | PingError::TimeExceeded { source, .. }
            | PingError::OtherIcmpError { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn family_of(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

/// "Registry name (code N)", or "code N" for an unregistered code.
struct Code {
    family: Family,
    icmp_type: u8,
    code: u8,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match registry::code_name(self.family, self.icmp_type, self.code) {
            Some(name) => write!(f, "{name} (code {})", self.code),
            None => write!(f, "code {}", self.code),
        }
    }
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |source: IpAddr, v4: u8, v6: u8, code: u8| {
            let family = family_of(source);
            let icmp_type = if family == Family::V4 { v4 } else { v6 };
            Code {
                family,
                icmp_type,
                code,
            }
        };
        match *self {
            PingError::RequestTimedOut => f.write_str("Request timed out"),
            PingError::DestinationUnreachable { source, code: c } => write!(
                f,
                "Destination unreachable from {source}: {}",
                code(source, 3, 1, c)
            ),
            PingError::PacketTooBig { source, mtu } => {
                write!(f, "Packet too big from {source}: MTU {mtu}")
            }
            PingError::ParameterProblem {
                source,
                code: c,
                pointer,
            } => write!(
                f,
                "Parameter problem from {source}: {}, pointer {pointer}",
                code(source, 12, 4, c)
            ),
            PingError::RedirectReceived {
                source,
                gateway,
                code: c,
            } => write!(
                f,
                "Redirect from {source} to gateway {gateway}: {}",
                code(source, 5, 137, c)
            ),
            PingError::SourceQuench { source } => write!(f, "Source quench from {source}"),
            PingError::TimeExceeded { source, code: c } => {
                write!(f, "Time exceeded at {source}: {}", code(source, 11, 3, c))
            }
            PingError::OtherIcmpError {
                source,
                icmp_type,
                code: c,
            } => write!(
                f,
                "ICMP error from {source}: {}",
                registry::Describe {
                    family: family_of(source),
                    ty: icmp_type,
                    code: c
                }
            ),
            PingError::Closed => f.write_str("Socket forcibly closed"),
            PingError::WrongFamily { target, protocol } => write!(
                f,
                "{target} is not an {} address: one session per address family",
                protocol.name()
            ),
            PingError::Send { target, ref error } => write!(f, "sending to {target}: {error}"),
            PingError::TooManyOutstanding => f.write_str(
                "too many requests outstanding: all 65,536 sequence numbers are waiting",
            ),
            PingError::Engine(ref e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PingError::Send { error, .. } => Some(error),
            PingError::Engine(e) => Some(&**e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    fn r6() -> IpAddr {
        "2001:db8:0:1::2".parse().unwrap()
    }

    #[test]
    fn every_type_maps_in_both_families() {
        use Family::{V4, V6};
        let m = |f, t, c, s, rest, gw| PingError::from_icmp(f, t, c, s, rest, gw);
        assert!(matches!(
            m(V4, 3, 13, R4, 0, None),
            PingError::DestinationUnreachable {
                source: R4,
                code: 13
            }
        ));
        // Fragmentation needed stays "unreachable", as in net-ping.
        assert!(matches!(
            m(V4, 3, 4, R4, 1400, None),
            PingError::DestinationUnreachable { code: 4, .. }
        ));
        assert!(matches!(
            m(V6, 1, 1, r6(), 0, None),
            PingError::DestinationUnreachable { code: 1, source } if source == r6()
        ));
        assert!(matches!(
            m(V6, 2, 0, r6(), 1500, None),
            PingError::PacketTooBig { mtu: 1500, .. }
        ));
        assert!(matches!(
            m(V4, 12, 0, R4, 20 << 24, None),
            PingError::ParameterProblem {
                code: 0,
                pointer: 20,
                ..
            }
        ));
        assert!(matches!(
            m(V6, 4, 1, r6(), 40, None),
            PingError::ParameterProblem {
                code: 1,
                pointer: 40,
                ..
            }
        ));
        let gw = IpAddr::from([198, 18, 0, 9]);
        assert!(matches!(
            m(V4, 5, 1, R4, 0xc612_0009, Some(gw)),
            PingError::RedirectReceived { gateway, code: 1, .. } if gateway == gw
        ));
        let gw6: IpAddr = "fe80::1".parse().unwrap();
        assert!(matches!(
            m(V6, 137, 0, r6(), 0, Some(gw6)),
            PingError::RedirectReceived { gateway, code: 0, .. } if gateway == gw6
        ));
        assert!(matches!(
            m(V4, 4, 0, R4, 0, None),
            PingError::SourceQuench { source: R4 }
        ));
        assert!(matches!(
            m(V4, 11, 0, R4, 0, None),
            PingError::TimeExceeded {
                source: R4,
                code: 0
            }
        ));
        assert!(matches!(
            m(V6, 3, 1, r6(), 0, None),
            PingError::TimeExceeded { code: 1, .. }
        ));
        assert!(matches!(
            m(V6, 100, 2, r6(), 0, None),
            PingError::OtherIcmpError {
                icmp_type: 100,
                code: 2,
                ..
            }
        ));
        assert_eq!(m(V4, 11, 0, R4, 0, None).source(), Some(R4));
        assert_eq!(PingError::Closed.source(), None);
    }

    #[test]
    fn display_names_codes_as_iana_does() {
        let s = |e: PingError| e.to_string();
        assert_eq!(s(PingError::Closed), "Socket forcibly closed");
        assert_eq!(s(PingError::RequestTimedOut), "Request timed out");
        assert_eq!(
            s(PingError::DestinationUnreachable {
                source: R4,
                code: 13
            }),
            "Destination unreachable from 198.18.0.2: Communication Administratively \
             Prohibited (code 13)"
        );
        let v6 = s(PingError::DestinationUnreachable {
            source: r6(),
            code: 1,
        });
        assert!(
            v6.starts_with("Destination unreachable from 2001:db8:0:1::2: Communication with destination administratively prohibited"),
            "{v6}"
        );
        let t = s(PingError::TimeExceeded {
            source: R4,
            code: 0,
        });
        assert!(
            t.contains("Time to Live exceeded in Transit (code 0)"),
            "{t}"
        );
        let t6 = s(PingError::TimeExceeded {
            source: r6(),
            code: 0,
        });
        assert!(
            t6.contains("Hop limit exceeded in transit (code 0)"),
            "{t6}"
        );
        assert_eq!(
            s(PingError::PacketTooBig {
                source: r6(),
                mtu: 1500
            }),
            "Packet too big from 2001:db8:0:1::2: MTU 1500"
        );
        let unknown = s(PingError::DestinationUnreachable {
            source: R4,
            code: 200,
        });
        assert!(unknown.ends_with(": code 200"), "{unknown}");
        let w = s(PingError::WrongFamily {
            target: r6(),
            protocol: Protocol::V4,
        });
        assert!(w.contains("not an IPv4 address"), "{w}");
    }
}
