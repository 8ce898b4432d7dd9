//! # asdic-xdp
//!
//! asdic's XDP programs and their loader. The programs are C (`bpf/`), compiled by
//! `build.rs` with clang for the BPF target and embedded here; they are parsed with aya-obj,
//! their maps created through aya, and loaded and attached (through a bpf_link) by two
//! `bpf(2)` calls of our own — without reading the kernel's 5 MB BTF, which our programs do
//! not need. The kernel removes a bpf_link when its last descriptor closes — when
//! the owner is dropped, and also when the process dies (SIGKILL, abort).
//!
//! - `asdic_filter` ([`Filter`]): sends asdic's echo replies and the ICMP errors about its
//!   probes to AF_XDP sockets (one per receive queue and family), everything else on to
//!   the kernel. The AF_XDP engine uses it.
//! - `asdic_responder` ([`Responder`], binary `asdic-responder`): the far end of the speed
//!   bed; answers echo requests for a test prefix from the driver (sent back out of the
//!   interface it came in on, by redirect or XDP_TX) with a known
//!   ground truth of dead hosts and random loss.
//!
//! Before attaching, the interface is inspected over route netlink: a leftover of our own
//! program attached the legacy way (a killed old run, `ip link set xdp`) is removed and
//! reported, a live one held by another process is refused, a foreign program is refused and
//! never removed. This crate sends no packets. All `unsafe` code is in the private `sys`
//! module (libc calls and `bpf(2)`), each block with a `// SAFETY:` comment.

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

/// Loading, inspecting the interface, attaching.
mod attach;
/// Errors and errno names.
pub mod error;
/// The AF_XDP reply filter.
pub mod filter;
/// Route-netlink messages for XDP (built and parsed, no I/O).
mod netlink;
/// Loading an object: maps, relocations, the program (no kernel BTF needed).
mod object;
/// The speed bed's responder.
pub mod responder;
/// The unsafe layer: interface lookup, the netlink socket, program load and link.
mod sys;

use std::fmt;

pub use error::{Errno, XdpError};
pub use filter::{
    FILTER_MARKER, Filter, FilterConfig, FilterStats, PassReason, TestRun, Unattached,
};
pub use netlink::AttachMode;
pub use responder::{Ipv4Prefix, Ipv6Prefix, Responder, ResponderConfig, ResponderStats, TxPath};

/// `bpf/filter.bpf.c`, compiled (ELF with BTF).
pub const FILTER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/filter.bpf.o"));
/// `bpf/responder.bpf.c`, compiled (ELF with BTF).
pub const RESPONDER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/responder.bpf.o"));

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// In the driver, before any socket buffer exists.
    Native,
    /// In the kernel stack on socket buffers: works on every interface, slower.
    Generic,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Generic => "generic (SKB)",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = XdpError;
    fn from_str(s: &str) -> Result<Mode, XdpError> {
        match s {
            "native" | "drv" | "driver" => Ok(Mode::Native),
            "generic" | "skb" => Ok(Mode::Generic),
            _ => Err(XdpError::Config(format!(
                "unknown XDP mode {s:?} (native or generic)"
            ))),
        }
    }
}

/// An XDP program on an interface, as netlink reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// The kernel's program id.
    pub id: u32,
    /// The program's name (`?` if it cannot be read).
    pub name: String,
    /// Where it runs. (Netlink does not tell whether a bpf_link holds it; a legacy detach
    /// of a link-held program fails with EBUSY.)
    pub mode: AttachMode,
}

/// What netlink reports for the interface: its XDP program, if any (the first one when
/// several modes are in use at once). Runs in the calling thread's network namespace.
pub fn attached_program(ifname: &str) -> Result<Option<AttachedProgram>, XdpError> {
    let ifindex = attach::ifindex(ifname)?;
    Ok(attach::attached(ifname, ifindex)?.into_iter().next())
}

/// Marks loaded program `id` as asdic's `asdic_filter` (writes [`FILTER_MARKER`] into its
/// `asdic_marker` map), as our loader does: for tests that load our object with another
/// loader to stand for a leftover of ours.
#[doc(hidden)]
pub fn mark_as_filter(id: u32) -> Result<(), XdpError> {
    attach::mark_loaded(id, FILTER_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_bpf_elf() {
        for obj in [FILTER_OBJECT, RESPONDER_OBJECT] {
            assert_eq!(&obj[..4], b"\x7fELF");
            // e_machine EM_BPF = 247
            assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 247);
        }
    }

    #[test]
    fn modes_display_and_parse() {
        assert_eq!(Mode::Native.to_string(), "native");
        assert_eq!(Mode::Generic.to_string(), "generic (SKB)");
        assert_eq!("generic".parse::<Mode>().unwrap(), Mode::Generic);
        assert_eq!("native".parse::<Mode>().unwrap(), Mode::Native);
        assert!("fast".parse::<Mode>().is_err());
    }

    #[test]
    fn no_such_interface() {
        let e = attached_program("asdic-nonexistent0").unwrap_err();
        assert_eq!(e.to_string(), "no such interface: asdic-nonexistent0");
    }
}
