//! Errors with operator-grade messages: what failed, where, and the errno by name (the CLI
//! prints the message as the reason it falls back to another engine).

use std::fmt;

use crate::Mode;
use crate::netlink::AttachMode;

/// An errno, displayed by its symbolic name (`EPERM`, `EOPNOTSUPP`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name, if this is a well-known errno.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENFILE => "ENFILE",
            libc::EMFILE => "EMFILE",
            libc::ENOSPC => "ENOSPC",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTSOCK => "ENOTSOCK",
            libc::EMSGSIZE => "EMSGSIZE",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::ENETDOWN => "ENETDOWN",
            libc::ENOBUFS => "ENOBUFS",
            libc::ETIMEDOUT => "ETIMEDOUT",
            // The kernel's internal ENOTSUPP leaks out of some BPF paths.
            524 => "ENOTSUPP",
            _ => return None,
        })
    }

    /// The errno inside an error, found along its `source()` chain.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Option<Errno> {
        let mut cur = Some(e);
        // Bounded: source chains are short; 32 links is far beyond any real one.
        for _ in 0..32 {
            let e = cur?;
            if let Some(code) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::raw_os_error)
            {
                return Some(Errno(code));
            }
            if let Some(code) = e
                .downcast_ref::<aya::sys::SyscallError>()
                .and_then(|s| s.io_error.raw_os_error())
            {
                return Some(Errno(code));
            }
            cur = e.source();
        }
        None
    }

    fn hint(self, what: Hint) -> &'static str {
        match (self.0, what) {
            (libc::EPERM, Hint::Load) => " (needs CAP_BPF, or CAP_SYS_ADMIN on older kernels)",
            (libc::EPERM, Hint::Attach) => " (needs CAP_NET_ADMIN and CAP_BPF)",
            (libc::EPERM, Hint::Netlink) => " (needs CAP_NET_ADMIN)",
            _ => "",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[derive(Clone, Copy)]
enum Hint {
    Load,
    Attach,
    Netlink,
}

/// Errno plus the capability hint that fits where it happened, e.g. `EPERM (needs …)`.
fn with_hint(e: Option<Errno>, hint: Hint) -> String {
    match e {
        Some(e) => format!("{e}{}", e.hint(hint)),
        None => "unknown error".into(),
    }
}

/// Why an XDP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The interface does not exist in this network namespace.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// A configuration value is out of range or unsafe.
    #[error("invalid XDP configuration: {0}")]
    Config(String),
    /// The object or one of its maps or programs could not be loaded into the kernel.
    #[error("loading {what} failed: {}{}", with_hint(*.errno, Hint::Load), .detail)]
    Load {
        /// The program or map.
        what: String,
        /// The errno, when there is one.
        errno: Option<Errno>,
        /// Extra text (e.g. the end of the verifier log), starting with a separator.
        detail: String,
    },
    /// Every attach attempt failed; one `(mode, errno)` per attempt, in order.
    #[error("XDP attach failed on {ifname}: {}", attempts_text(.attempts))]
    Attach {
        /// The interface.
        ifname: String,
        /// Mode tried and why it failed.
        attempts: Vec<(Mode, Option<Errno>)>,
    },
    /// Our own program is on the interface, held by a live bpf_link (another running asdic).
    #[error(
        "{name} (prog id {id}) is attached to {ifname} by another running process (EBUSY: held by a bpf_link)"
    )]
    Busy {
        /// The program name.
        name: String,
        /// Its id.
        id: u32,
        /// The interface.
        ifname: String,
    },
    /// Another program is on the interface; it is never removed.
    #[error(
        "{ifname} already carries XDP program {name} (prog id {id}, {mode}); asdic only replaces its own {ours} and leaves this one alone (EEXIST)"
    )]
    Foreign {
        /// The interface.
        ifname: String,
        /// The foreign program's name ("?" when unknown).
        name: String,
        /// Its id.
        id: u32,
        /// How it is attached.
        mode: AttachMode,
        /// The program we wanted to attach.
        ours: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink {op} on {ifname} failed: {}{}", with_hint(*.errno, Hint::Netlink), .msg.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Netlink {
        /// What was asked.
        op: &'static str,
        /// The interface.
        ifname: String,
        /// The errno.
        errno: Option<Errno>,
        /// The kernel's extended-ack text, if any.
        msg: Option<String>,
    },
    /// A map operation failed.
    #[error("{what}: {}", with_hint(*.errno, Hint::Load))]
    Map {
        /// What was done to which map.
        what: String,
        /// The errno.
        errno: Option<Errno>,
    },
}

fn attempts_text(attempts: &[(Mode, Option<Errno>)]) -> String {
    let mut s = String::new();
    for (i, (mode, e)) in attempts.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        let name = match mode {
            Mode::Native => "native",
            Mode::Generic => "generic",
        };
        s.push_str(name);
        s.push_str(": ");
        match e {
            Some(e) => s.push_str(&e.to_string()),
            None => s.push_str("unknown error"),
        }
    }
    if attempts
        .iter()
        .any(|(_, e)| matches!(e, Some(Errno(libc::EPERM))))
    {
        s.push_str(Errno(libc::EPERM).hint(Hint::Attach));
    }
    s
}

impl XdpError {
    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            XdpError::NoSuchInterface(_) => Some(Errno(libc::ENODEV)),
            XdpError::Config(_) => Some(Errno(libc::EINVAL)),
            XdpError::Load { errno, .. }
            | XdpError::Netlink { errno, .. }
            | XdpError::Map { errno, .. } => *errno,
            XdpError::Attach { attempts, .. } => attempts.last().and_then(|(_, e)| *e),
            XdpError::Busy { .. } => Some(Errno(libc::EBUSY)),
            XdpError::Foreign { .. } => Some(Errno(libc::EEXIST)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_errno() {
        let e = XdpError::Attach {
            ifname: "s0".into(),
            attempts: vec![
                (Mode::Native, Some(Errno(libc::EOPNOTSUPP))),
                (Mode::Generic, Some(Errno(libc::EPERM))),
            ],
        };
        assert_eq!(
            e.to_string(),
            "XDP attach failed on s0: native: EOPNOTSUPP; generic: EPERM (needs CAP_NET_ADMIN and CAP_BPF)"
        );
        assert_eq!(
            XdpError::NoSuchInterface("eth9".into()).to_string(),
            "no such interface: eth9"
        );
        let e = XdpError::Busy {
            name: "asdic_filter".into(),
            id: 12,
            ifname: "s0".into(),
        };
        assert!(
            e.to_string().starts_with(
                "asdic_filter (prog id 12) is attached to s0 by another running process"
            )
        );
        let e = XdpError::Load {
            what: "asdic_filter".into(),
            errno: Some(Errno(libc::EPERM)),
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "loading asdic_filter failed: EPERM (needs CAP_BPF, or CAP_SYS_ADMIN on older kernels)"
        );
        assert_eq!(Errno(4242).to_string(), "errno 4242");
    }

    #[test]
    fn errno_is_found_along_the_source_chain() {
        let io = std::io::Error::from_raw_os_error(libc::EBUSY);
        let e = aya::sys::SyscallError {
            call: "bpf_link_create",
            io_error: io,
        };
        assert_eq!(Errno::of(&e), Some(Errno(libc::EBUSY)));
        let p = aya::programs::ProgramError::SyscallError(e);
        assert_eq!(Errno::of(&p), Some(Errno(libc::EBUSY)));
    }
}
