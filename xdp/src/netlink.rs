//! Route-netlink messages for XDP, built and parsed without I/O (the socket is in `sys`):
//! which programs an interface carries (`RTM_GETLINK` → `IFLA_XDP`), and the legacy detach
//! (`RTM_SETLINK` with `IFLA_XDP { IFLA_XDP_FD = -1, IFLA_XDP_FLAGS, IFLA_XDP_EXPECTED_FD }`).
//!
//! Layout (`<linux/netlink.h>`, `<linux/rtnetlink.h>`, `<linux/if_link.h>`), host byte order:
//!
//! ```text
//! struct nlmsghdr  { u32 nlmsg_len; u16 nlmsg_type; u16 nlmsg_flags; u32 nlmsg_seq; u32 nlmsg_pid; }
//! struct ifinfomsg { u8 ifi_family; u8 pad; u16 ifi_type; i32 ifi_index; u32 ifi_flags; u32 ifi_change; }
//! struct nlattr    { u16 nla_len; u16 nla_type; }   then the payload, padded to 4 bytes
//! struct nlmsgerr  { i32 error; struct nlmsghdr msg; }   then (NLM_F_ACK_TLVS) attributes
//! ```

use std::io;

use crate::sys::RouteSocket;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLA_HDRLEN: usize = 4;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_ATTACHED_MULTI: u8 = 4;

/// `XDP_FLAGS_REPLACE`: act only if the current program is `IFLA_XDP_EXPECTED_FD`'s.
const XDP_FLAGS_REPLACE: u32 = 1 << 4;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// Where an XDP program runs, as netlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// In the driver (`XDP_ATTACHED_DRV`, `ip link` shows `xdp`/`xdpdrv`).
    Native,
    /// In the kernel stack on socket buffers (`XDP_ATTACHED_SKB`, `xdpgeneric`).
    Generic,
    /// Offloaded to the NIC (`XDP_ATTACHED_HW`, `xdpoffload`).
    Offload,
}

impl AttachMode {
    /// The `XDP_FLAGS_*_MODE` flag that addresses this mode.
    pub(crate) fn flags(self) -> u32 {
        match self {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => XDP_FLAGS_SKB_MODE,
            AttachMode::Offload => XDP_FLAGS_HW_MODE,
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic (SKB)",
            AttachMode::Offload => "offload",
        })
    }
}

/// An error the kernel returned for a request: the errno and, with extended acks, its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelError {
    pub errno: i32,
    pub msg: Option<String>,
}

/// What the kernel answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `NLMSG_ERROR` with error 0.
    Ack,
    /// `NLMSG_ERROR` with an error.
    Error(KernelError),
    /// `RTM_NEWLINK`: the XDP programs of the link, (mode, program id).
    Link(Vec<(AttachMode, u32)>),
    /// Anything else (`NLMSG_DONE`, other types): keep reading.
    Other,
}

struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn new(kind: u16, flags: u16, seq: u32) -> Builder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Builder { buf }
    }

    fn ifinfomsg(&mut self, ifindex: u32) {
        self.buf.push(libc::AF_UNSPEC as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
    }

    /// Starts a nested attribute; returns where its header is, for `end_nest`.
    fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `RTM_GETLINK` for one interface.
pub(crate) fn getlink_request(seq: u32, ifindex: u32) -> Vec<u8> {
    let mut b = Builder::new(RTM_GETLINK, NLM_F_REQUEST, seq);
    b.ifinfomsg(ifindex);
    b.finish()
}

/// `RTM_SETLINK` that removes the program attached in `mode`, only if it is still the one
/// `expected_fd` refers to (`XDP_FLAGS_REPLACE`, Linux 5.7).
pub(crate) fn detach_request(
    seq: u32,
    ifindex: u32,
    mode: AttachMode,
    expected_fd: i32,
) -> Vec<u8> {
    let mut b = Builder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    b.ifinfomsg(ifindex);
    let nest = b.begin_nest(IFLA_XDP);
    b.attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    b.attr(
        IFLA_XDP_FLAGS,
        &(mode.flags() | XDP_FLAGS_REPLACE).to_ne_bytes(),
    );
    b.attr(IFLA_XDP_EXPECTED_FD, &expected_fd.to_ne_bytes());
    b.end_nest(nest);
    b.finish()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Attributes `(type, payload)` in `b`; stops at the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

/// Splits a received datagram into messages `(type, flags, seq, payload)`.
pub(crate) fn messages(b: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
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

/// Parses one message (see [`messages`]).
pub(crate) fn parse(kind: u16, flags: u16, payload: &[u8]) -> Reply {
    match kind {
        NLMSG_ERROR => {
            let Some(err) = u32_at(payload, 0).map(|e| e as i32) else {
                return Reply::Other;
            };
            if err == 0 {
                return Reply::Ack;
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
            Reply::Error(KernelError { errno: -err, msg })
        }
        RTM_NEWLINK => Reply::Link(parse_link(payload)),
        NLMSG_DONE => Reply::Other,
        _ => Reply::Other,
    }
}

/// The XDP programs in an `RTM_NEWLINK` payload.
fn parse_link(payload: &[u8]) -> Vec<(AttachMode, u32)> {
    let Some(rest) = payload.get(IFINFOMSG_LEN..) else {
        return vec![];
    };
    let Some((_, xdp)) = attrs(rest).find(|(k, _)| *k == IFLA_XDP) else {
        return vec![];
    };
    let mut attached = 0u8;
    let (mut prog, mut drv, mut skb, mut hw) = (0, 0, 0, 0);
    for (k, v) in attrs(xdp) {
        let word = u32_at(v, 0).unwrap_or(0);
        match k {
            IFLA_XDP_ATTACHED => attached = v.first().copied().unwrap_or(0),
            IFLA_XDP_PROG_ID => prog = word,
            IFLA_XDP_DRV_PROG_ID => drv = word,
            IFLA_XDP_SKB_PROG_ID => skb = word,
            IFLA_XDP_HW_PROG_ID => hw = word,
            _ => {}
        }
    }
    let single = |mode| {
        if prog != 0 {
            vec![(mode, prog)]
        } else {
            vec![]
        }
    };
    match attached {
        XDP_ATTACHED_DRV => single(AttachMode::Native),
        XDP_ATTACHED_SKB => single(AttachMode::Generic),
        XDP_ATTACHED_HW => single(AttachMode::Offload),
        XDP_ATTACHED_MULTI => [
            (AttachMode::Native, drv),
            (AttachMode::Generic, skb),
            (AttachMode::Offload, hw),
        ]
        .into_iter()
        .filter(|(_, id)| *id != 0)
        .collect(),
        _ => vec![],
    }
}

/// Sends `req` (sequence number `seq`) and returns the first answer to it that is not
/// [`Reply::Other`].
pub(crate) fn request(sock: &RouteSocket, seq: u32, req: &[u8]) -> io::Result<Reply> {
    sock.send(req)?;
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: a request gets one answer; unrelated messages are few.
    for _ in 0..16 {
        let n = sock.recv(&mut buf)?;
        for (kind, flags, s, payload) in messages(&buf[..n]) {
            if s != seq {
                continue;
            }
            match parse(kind, flags, payload) {
                Reply::Other => {}
                r => return Ok(r),
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

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn getlink_request_bytes() {
        let m = getlink_request(7, 3);
        let mut want = vec![];
        want.extend_from_slice(&ne32(32));
        want.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
        want.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        want.extend_from_slice(&ne32(7));
        want.extend_from_slice(&ne32(0));
        want.extend_from_slice(&[0, 0, 0, 0]); // family, pad, type
        want.extend_from_slice(&3i32.to_ne_bytes());
        want.extend_from_slice(&[0; 8]);
        assert_eq!(m, want);
    }

    #[test]
    fn detach_request_bytes() {
        let m = detach_request(9, 5, AttachMode::Native, 42);
        assert_eq!(m.len(), 16 + 16 + 4 + 3 * 8);
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(u16_at(&m, 4), Some(RTM_SETLINK));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&m, 8), Some(9));
        assert_eq!(u32_at(&m, 20), Some(5));
        // IFLA_XDP, nested, 28 bytes
        assert_eq!(u16_at(&m, 32), Some(28));
        assert_eq!(u16_at(&m, 34), Some(IFLA_XDP | NLA_F_NESTED));
        let nested: Vec<_> = attrs(&m[36..]).collect();
        assert_eq!(
            nested,
            vec![
                (IFLA_XDP_FD, &(-1i32).to_ne_bytes()[..]),
                (
                    IFLA_XDP_FLAGS,
                    &(XDP_FLAGS_DRV_MODE | XDP_FLAGS_REPLACE).to_ne_bytes()[..]
                ),
                (IFLA_XDP_EXPECTED_FD, &42i32.to_ne_bytes()[..]),
            ]
        );
        let generic = detach_request(1, 5, AttachMode::Generic, 3);
        assert_eq!(
            u32_at(&generic, 36 + 8 + 4),
            Some(XDP_FLAGS_SKB_MODE | XDP_FLAGS_REPLACE)
        );
    }

    /// An `RTM_NEWLINK` as the kernel sends it for a veth with a native program (id 101):
    /// ifinfomsg, IFLA_IFNAME "s0", IFLA_MTU, IFLA_XDP { ATTACHED=1, PROG_ID=101, DRV_PROG_ID=101 }.
    fn canned_newlink(attached: u8, ids: &[(u16, u32)]) -> Vec<u8> {
        let mut b = Builder::new(RTM_NEWLINK, 0, 5);
        b.ifinfomsg(3);
        b.attr(3, b"s0\0"); // IFLA_IFNAME
        b.attr(4, &1500u32.to_ne_bytes()); // IFLA_MTU
        let n = b.begin_nest(IFLA_XDP);
        b.attr(IFLA_XDP_ATTACHED, &[attached]);
        for (k, id) in ids {
            b.attr(*k, &id.to_ne_bytes());
        }
        b.end_nest(n);
        b.attr(6, &[0u8; 4]); // IFLA_TXQLEN after the nest
        b.finish()
    }

    fn parse_one(buf: &[u8]) -> (u32, Reply) {
        let mut ms: Vec<_> = messages(buf).collect();
        assert_eq!(ms.len(), 1);
        let (kind, flags, seq, payload) = ms.pop().unwrap();
        (seq, parse(kind, flags, payload))
    }

    #[test]
    fn newlink_with_a_native_program() {
        let buf = canned_newlink(
            XDP_ATTACHED_DRV,
            &[(IFLA_XDP_PROG_ID, 101), (IFLA_XDP_DRV_PROG_ID, 101)],
        );
        assert_eq!(
            parse_one(&buf),
            (5, Reply::Link(vec![(AttachMode::Native, 101)]))
        );
    }

    #[test]
    fn newlink_generic_none_and_multi() {
        let buf = canned_newlink(XDP_ATTACHED_SKB, &[(IFLA_XDP_PROG_ID, 7)]);
        assert_eq!(
            parse_one(&buf).1,
            Reply::Link(vec![(AttachMode::Generic, 7)])
        );
        let buf = canned_newlink(0, &[]);
        assert_eq!(parse_one(&buf).1, Reply::Link(vec![]));
        let buf = canned_newlink(
            XDP_ATTACHED_MULTI,
            &[(IFLA_XDP_DRV_PROG_ID, 8), (IFLA_XDP_HW_PROG_ID, 9)],
        );
        assert_eq!(
            parse_one(&buf).1,
            Reply::Link(vec![(AttachMode::Native, 8), (AttachMode::Offload, 9)])
        );
        // Without IFLA_XDP at all (an old kernel): nothing attached.
        let mut b = Builder::new(RTM_NEWLINK, 0, 1);
        b.ifinfomsg(1);
        assert_eq!(parse_one(&b.finish()).1, Reply::Link(vec![]));
    }

    #[test]
    fn error_with_extended_ack() {
        // NLMSG_ERROR, capped: error -EBUSY, the request's header, then NLMSGERR_ATTR_MSG.
        let req = detach_request(4, 2, AttachMode::Native, 5);
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 4);
        b.buf.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        b.buf.extend_from_slice(&req[..NLMSG_HDRLEN]);
        b.attr(NLMSGERR_ATTR_MSG, b"Can't replace active BPF XDP link\0");
        let (seq, r) = parse_one(&b.finish());
        assert_eq!(seq, 4);
        assert_eq!(
            r,
            Reply::Error(KernelError {
                errno: libc::EBUSY,
                msg: Some("Can't replace active BPF XDP link".into())
            })
        );
        // Uncapped: the whole request is echoed before the TLVs.
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_ACK_TLVS, 4);
        b.buf.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
        b.buf.extend_from_slice(&req);
        b.attr(
            NLMSGERR_ATTR_MSG,
            b"Active program does not match expected\0",
        );
        let r = parse_one(&b.finish()).1;
        assert_eq!(
            r,
            Reply::Error(KernelError {
                errno: libc::EEXIST,
                msg: Some("Active program does not match expected".into())
            })
        );
        // Plain ack.
        let mut b = Builder::new(NLMSG_ERROR, NLM_F_CAPPED, 4);
        b.buf.extend_from_slice(&0i32.to_ne_bytes());
        b.buf.extend_from_slice(&req[..NLMSG_HDRLEN]);
        assert_eq!(parse_one(&b.finish()).1, Reply::Ack);
    }

    #[test]
    fn truncated_input_never_panics() {
        let buf = canned_newlink(
            XDP_ATTACHED_DRV,
            &[(IFLA_XDP_PROG_ID, 101), (IFLA_XDP_DRV_PROG_ID, 101)],
        );
        for cut in 0..buf.len() {
            let mut b = buf[..cut].to_vec();
            // Also lie about the length.
            if b.len() >= 4 {
                b[0..4].copy_from_slice(&(buf.len() as u32).to_ne_bytes());
            }
            for (kind, flags, _, payload) in messages(&b) {
                let _ = parse(kind, flags, payload);
            }
            for (kind, flags, _, payload) in messages(&buf[..cut]) {
                let _ = parse(kind, flags, payload);
            }
        }
    }
}
