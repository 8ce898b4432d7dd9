//! [`Options`]: net-ping's `createSession` options, with its defaults, and their validation.

use std::time::Duration;

use asdic_wire::{Family, icmp, payload, template};

/// Which address family a session pings. One session serves one family, as in net-ping
/// ("separate instances must be created for IPv4 and IPv6").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// ICMP over IPv4 (net-ping's `NetworkProtocol.IPv4`, the default).
    #[default]
    V4,
    /// ICMPv6 over IPv6 (net-ping's `NetworkProtocol.IPv6`).
    V6,
}

impl Protocol {
    /// The ICMP family of the protocol.
    pub fn family(self) -> Family {
        match self {
            Protocol::V4 => Family::V4,
            Protocol::V6 => Family::V6,
        }
    }

    /// "IPv4" or "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "IPv4",
            Protocol::V6 => "IPv6",
        }
    }
}

/// The smallest echo request asdic sends, in ICMP bytes: the 8-byte ICMP header and the
/// 32-byte payload stamp (session, probe number, cookie, send time, keyed MAC). Smaller
/// [`Options::packet_size`]s are raised to it, as net-ping raises sizes below its 12.
pub const MIN_PACKET_SIZE: usize = icmp::HEADER_LEN + payload::LEN;

/// The largest echo request, in ICMP bytes: what fits in a 65,535-byte IPv4 datagram.
pub const MAX_PACKET_SIZE: usize = icmp::HEADER_LEN + template::MAX_PAYLOAD;

/// The longest per-try timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a [`Session`](crate::Session) pings: net-ping's `createSession` options, same names
/// (in snake case), same defaults.
///
/// ```
/// use std::time::Duration;
/// use asdic_session::{Options, Protocol};
///
/// let o = Options {
///     protocol: Protocol::V6,
///     timeout: Duration::from_millis(500),
///     ..Options::default()
/// };
/// assert_eq!((o.packet_size, o.retries, o.ttl), (16, 1, 128));
/// assert!(o.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// IPv4 or IPv6 (`networkProtocol`). Default [`Protocol::V4`].
    pub protocol: Protocol,
    /// Bytes of each echo request, ICMP header included, IP header excluded (`packetSize`).
    /// Default 16, net-ping's. Values below [`MIN_PACKET_SIZE`] (40) are raised to it: asdic
    /// needs 32 bytes of payload to recognise its replies (net-ping needs 4); see
    /// [`Options::effective_packet_size`]. At most [`MAX_PACKET_SIZE`]; probes larger than a
    /// link's MTU are fragmented by the kernel.
    pub packet_size: usize,
    /// How many times a request is sent again after a try timed out (`retries`). Default 1:
    /// up to two tries in all.
    pub retries: u8,
    /// The ICMP identifier of every echo request (`sessionId`), 1..=65535. Default the
    /// process id modulo 65535 (65535 when that is 0). Sequence numbers count the tries of
    /// the session; each try gets its own.
    pub session_id: u16,
    /// How long each try waits for its answer before it is retried or the request fails
    /// with [`PingError::RequestTimedOut`](crate::PingError::RequestTimedOut) (`timeout`).
    /// Default 2 s. Between 1 ms and [`MAX_TIMEOUT`].
    pub timeout: Duration,
    /// TTL (IPv4) or hop limit (IPv6) of every echo request (`ttl`), 1..=255. Default 128.
    pub ttl: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocol: Protocol::V4,
            packet_size: 16,
            retries: 1,
            session_id: default_session_id(),
            timeout: Duration::from_millis(2000),
            ttl: 128,
        }
    }
}

/// net-ping's default `sessionId`: `process.pid % 65535`, moved off 0 (not a valid id).
pub fn default_session_id() -> u16 {
    match std::process::id() % 65_535 {
        0 => 65_535,
        id => id as u16,
    }
}

/// An option out of range: names the option and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `packet_size` above [`MAX_PACKET_SIZE`].
    #[error("packet_size {0} is too large: at most {MAX_PACKET_SIZE} bytes of ICMP")]
    PacketSize(usize),
    /// `session_id` 0.
    #[error("session_id 0 is out of range: the ICMP identifier must be 1..=65535")]
    SessionId,
    /// `timeout` shorter than 1 ms or longer than [`MAX_TIMEOUT`].
    #[error("timeout {0:?} is out of range: 1 ms ..= 1 h")]
    Timeout(Duration),
    /// `ttl` 0.
    #[error("ttl 0 is out of range: 1..=255")]
    Ttl,
}

impl Options {
    /// Checks every option; the first bad one is named.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.packet_size > MAX_PACKET_SIZE {
            return Err(OptionsError::PacketSize(self.packet_size));
        }
        if self.session_id == 0 {
            return Err(OptionsError::SessionId);
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > MAX_TIMEOUT {
            return Err(OptionsError::Timeout(self.timeout));
        }
        if self.ttl == 0 {
            return Err(OptionsError::Ttl);
        }
        Ok(())
    }

    /// The ICMP bytes each echo request really has: `packet_size`, raised to
    /// [`MIN_PACKET_SIZE`].
    pub fn effective_packet_size(&self) -> usize {
        self.packet_size.max(MIN_PACKET_SIZE)
    }

    /// Bytes of echo data after the ICMP header.
    pub(crate) fn payload_len(&self) -> usize {
        self.effective_packet_size() - icmp::HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_net_pings() {
        let o = Options::default();
        assert_eq!(o.protocol, Protocol::V4);
        assert_eq!(o.packet_size, 16);
        assert_eq!(o.retries, 1);
        assert_eq!(o.timeout, Duration::from_millis(2000));
        assert_eq!(o.ttl, 128);
        let pid = std::process::id() % 65_535;
        assert_eq!(u32::from(o.session_id), if pid == 0 { 65_535 } else { pid });
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn small_sizes_are_raised_to_the_stamp() {
        assert_eq!(MIN_PACKET_SIZE, 40);
        let mut o = Options::default();
        assert_eq!(o.effective_packet_size(), 40);
        assert_eq!(o.payload_len(), 32);
        o.packet_size = 0;
        assert_eq!((o.validate(), o.effective_packet_size()), (Ok(()), 40));
        o.packet_size = 1500;
        assert_eq!((o.effective_packet_size(), o.payload_len()), (1500, 1492));
        o.packet_size = MAX_PACKET_SIZE;
        assert_eq!(o.validate(), Ok(()));
        // The largest size still makes a template.
        assert!(
            template::Template::new(Family::V4, template::Layer::Icmp, o.payload_len()).is_ok()
        );
    }

    #[test]
    fn every_bad_option_is_named() {
        let bad = |f: fn(&mut Options)| {
            let mut o = Options::default();
            f(&mut o);
            o.validate().unwrap_err()
        };
        let e = bad(|o| o.packet_size = MAX_PACKET_SIZE + 1);
        assert_eq!(e, OptionsError::PacketSize(65_516));
        assert!(e.to_string().contains("packet_size 65516"), "{e}");
        let e = bad(|o| o.session_id = 0);
        assert!(e.to_string().starts_with("session_id 0"), "{e}");
        let e = bad(|o| o.timeout = Duration::ZERO);
        assert_eq!(e, OptionsError::Timeout(Duration::ZERO));
        assert!(e.to_string().starts_with("timeout 0ns"), "{e}");
        let e = bad(|o| o.timeout = MAX_TIMEOUT + Duration::from_nanos(1));
        assert!(matches!(e, OptionsError::Timeout(_)));
        assert_eq!(bad(|o| o.ttl = 0), OptionsError::Ttl);
        // The limits themselves are fine.
        for f in [
            |o: &mut Options| o.timeout = Duration::from_millis(1),
            |o: &mut Options| o.timeout = MAX_TIMEOUT,
            |o: &mut Options| o.ttl = 1,
            |o: &mut Options| o.session_id = 65_535,
            |o: &mut Options| o.retries = 255,
        ] {
            let mut o = Options::default();
            f(&mut o);
            assert_eq!(o.validate(), Ok(()), "{o:?}");
        }
    }
}
