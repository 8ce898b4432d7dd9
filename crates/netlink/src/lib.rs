//! # asdic-netlink
//!
//! asdic's one rtnetlink stack, shared by the engines (the route, interface and next hop a
//! frame-building engine needs: [`route`]) and the XDP loader (its programs on an interface,
//! detaching a leftover one): a `NETLINK_ROUTE` socket ([`RouteSocket`], the crate's only
//! `unsafe` code, in `sys`), a message [`Builder`], and parsers of datagrams
//! ([`messages`]), attributes ([`attrs`]) and errors ([`error_of`], with the kernel's
//! extended-ack text). Every length is checked: no input makes a parser panic.
//!
//! Layouts, from `<linux/netlink.h>` and `<linux/rtnetlink.h>`:
//!
//! ```text
//! struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags;
//!                   __u32 nlmsg_seq; __u32 nlmsg_pid; };                      16 bytes
//! struct nlmsgerr { int error; struct nlmsghdr msg; } + the request or, capped, nothing
//!                   + extended-ack attributes
//! struct rtattr   { u16 rta_len; u16 rta_type; } + payload, padded to 4 bytes
//! struct ifinfomsg{ u8 family, pad; u16 type; s32 index; u32 flags, change; } 16 bytes
//! ```

// Functions of at most 100 lines (clippy's default threshold); tests may run longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod route;
mod sys;

use std::io;

pub use sys::RouteSocket;

/// Bytes of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Bytes of `struct ifinfomsg`.
pub const IFINFOMSG_LEN: usize = 16;
/// Bytes of an attribute's header.
pub const NLA_HDRLEN: usize = 4;

/// An error or acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// The end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// A link (answer).
pub const RTM_NEWLINK: u16 = 16;
/// Get a link.
pub const RTM_GETLINK: u16 = 18;
/// Change a link.
pub const RTM_SETLINK: u16 = 19;
/// A route (answer).
pub const RTM_NEWROUTE: u16 = 24;
/// Get a route.
pub const RTM_GETROUTE: u16 = 26;
/// A neighbour (answer).
pub const RTM_NEWNEIGH: u16 = 28;
/// Get a neighbour.
pub const RTM_GETNEIGH: u16 = 30;

/// A request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Acknowledge it.
pub const NLM_F_ACK: u16 = 0x4;
/// An error message without the request's payload.
pub const NLM_F_CAPPED: u16 = 0x100;
/// An error message with extended-ack attributes.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// The extended ack's text attribute.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// A nested attribute.
pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A message being built: header, fixed part, attributes (nested ones too).
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// A message of type `kind` with `flags` and sequence number `seq`.
    pub fn new(kind: u16, flags: u16, seq: u32) -> Builder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Builder { buf }
    }

    /// Appends raw bytes: a fixed part (`rtmsg`, `ndmsg`, …) or, in tests, anything.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a `struct ifinfomsg` for interface `ifindex` (family unspecified).
    pub fn ifinfomsg(&mut self, ifindex: u32) -> &mut Self {
        self.buf.push(libc::AF_UNSPEC as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self
    }

    /// Starts a nested attribute; returns where its header is, for [`Builder::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    /// Ends the nested attribute begun at `at`.
    pub fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Appends attribute `kind` with `payload`, padded to 4 bytes.
    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    /// The message, its length set.
    pub fn finish(&mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

/// The native-endian `u16` at `at`, if `b` holds it.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The native-endian `u32` at `at`, if `b` holds it.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Attributes `(type, payload)` in `b` (flag bits cleared from the type); stops at the first
/// malformed one.
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, at)?);
        let kind = u16_at(b, at + 2)? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            return None;
        }
        let payload = b.get(at + NLA_HDRLEN..at + len)?;
        at += len.next_multiple_of(4);
        Some((kind, payload))
    })
}

/// Splits a received datagram into messages `(type, flags, seq, payload)`; stops at the
/// first malformed one.
pub fn messages(b: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u32_at(b, at)? as usize;
        if len < NLMSG_HDRLEN {
            return None;
        }
        let kind = u16_at(b, at + 4)?;
        let flags = u16_at(b, at + 6)?;
        let seq = u32_at(b, at + 8)?;
        let payload = b.get(at + NLMSG_HDRLEN..at + len)?;
        at += len.next_multiple_of(4);
        Some((kind, flags, seq, payload))
    })
}

/// An error the kernel returned for a request: the errno and, with extended acks, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The errno (positive).
    pub errno: i32,
    /// The kernel's explanation, if it gave one.
    pub msg: Option<String>,
}

impl From<KernelError> for io::Error {
    fn from(e: KernelError) -> io::Error {
        let os = io::Error::from_raw_os_error(e.errno);
        match e.msg {
            Some(m) => io::Error::new(os.kind(), format!("{os}: {m}")),
            None => os,
        }
    }
}

/// An `NLMSG_ERROR` message's payload (with its header's `flags`): `Ok` for an
/// acknowledgement, the error otherwise; `None` when it is too short to say.
pub fn error_of(flags: u16, payload: &[u8]) -> Option<Result<(), KernelError>> {
    let err = u32_at(payload, 0)? as i32;
    if err == 0 {
        return Some(Ok(()));
    }
    // The TLVs follow the request's header (capped) or the whole request.
    let orig_len = u32_at(payload, 4).unwrap_or(0) as usize;
    let tlv_at = if flags & NLM_F_CAPPED != 0 {
        4 + NLMSG_HDRLEN
    } else {
        4 + orig_len.max(NLMSG_HDRLEN)
    };
    let msg = (flags & NLM_F_ACK_TLVS != 0)
        .then(|| payload.get(tlv_at..))
        .flatten()
        .and_then(|tlvs| attrs(tlvs).find(|(k, _)| *k == NLMSGERR_ATTR_MSG))
        .map(|(_, m)| {
            let m = m.split(|&c| c == 0).next().unwrap_or(m);
            String::from_utf8_lossy(m).into_owned()
        })
        .filter(|m| !m.is_empty());
    Some(Err(KernelError { errno: -err, msg }))
}

/// A fresh sequence number for a request.
pub fn next_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Sends `req` (sequence number `seq`) on `sock` and returns the first answer `take` makes
/// of a message of that sequence (given its type, flags and payload; `None`: keep reading).
/// Bounded: a request gets one answer and unrelated messages are few, so after 16
/// datagrams without one it fails.
///
/// # Errors
/// The socket's error, or `TimedOut` when no answer came.
pub fn exchange<T>(
    sock: &RouteSocket,
    seq: u32,
    req: &[u8],
    mut take: impl FnMut(u16, u16, &[u8]) -> Option<T>,
) -> io::Result<T> {
    sock.send(req)?;
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..16 {
        let n = sock.recv(&mut buf)?;
        for (kind, flags, s, payload) in messages(&buf[..n]) {
            if s != seq {
                continue;
            }
            if let Some(t) = take(kind, flags, payload) {
                return Ok(t);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no netlink answer to the request",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_splits_messages() {
        let a = Builder::new(RTM_NEWROUTE, 0, 1).bytes(&[0; 12]).finish();
        let b = Builder::new(NLMSG_DONE, 0, 2).bytes(&[0; 4]).finish();
        let mut d = a.clone();
        d.extend(&b);
        let m: Vec<_> = messages(&d).map(|(k, _, s, b)| (k, s, b.len())).collect();
        assert_eq!(m, vec![(RTM_NEWROUTE, 1, 12), (NLMSG_DONE, 2, 4)]);
        // A length past the end stops the walk.
        d[16 + 12] = 0xff;
        assert_eq!(messages(&d).count(), 1);
        // Odd-sized attributes are padded.
        let m = Builder::new(RTM_GETLINK, NLM_F_REQUEST, 1)
            .bytes(&[0; 16])
            .attr(3, b"s0\0")
            .finish();
        assert_eq!(m.len(), 16 + 16 + 8);
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST));
    }

    #[test]
    fn errors_with_and_without_extended_acks() {
        let req = Builder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 4)
            .ifinfomsg(2)
            .finish();
        // Capped: error -EBUSY, the request's header, then the text.
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 4);
        b.bytes(&(-libc::EBUSY).to_ne_bytes())
            .bytes(&req[..NLMSG_HDRLEN])
            .attr(NLMSGERR_ATTR_MSG, b"Can't replace active BPF XDP link\0");
        let m = b.finish();
        let (_, flags, _, payload) = messages(&m).next().unwrap();
        assert_eq!(
            error_of(flags, payload),
            Some(Err(KernelError {
                errno: libc::EBUSY,
                msg: Some("Can't replace active BPF XDP link".into())
            }))
        );
        // Uncapped: the whole request before the text; a plain ack; too short to say.
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_ACK_TLVS, 4);
        b.bytes(&(-libc::EEXIST).to_ne_bytes())
            .bytes(&req)
            .attr(NLMSGERR_ATTR_MSG, b"mismatch\0");
        let m = b.finish();
        let (_, flags, _, payload) = messages(&m).next().unwrap();
        assert_eq!(
            error_of(flags, payload)
                .unwrap()
                .unwrap_err()
                .msg
                .as_deref(),
            Some("mismatch")
        );
        assert_eq!(error_of(0, &0i32.to_ne_bytes()), Some(Ok(())));
        assert_eq!(error_of(0, &[1, 2]), None);
    }

    #[test]
    fn truncated_input_never_panics() {
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_ACK_TLVS, 4);
        b.bytes(&(-1i32).to_ne_bytes())
            .bytes(&[0; NLMSG_HDRLEN])
            .attr(NLMSGERR_ATTR_MSG, b"x\0");
        let m = b.finish();
        for cut in 0..m.len() {
            let mut t = m[..cut].to_vec();
            if t.len() >= 4 {
                t[0..4].copy_from_slice(&(m.len() as u32).to_ne_bytes());
            }
            for (_, flags, _, payload) in messages(&t).chain(messages(&m[..cut])) {
                let _ = error_of(flags, payload);
                let _ = attrs(payload).count();
            }
        }
    }
}
