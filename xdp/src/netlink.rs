//! Route-netlink messages for XDP, built and parsed with asdic-netlink (the workspace's one
//! rtnetlink stack, which also owns the socket):
//! which programs an interface carries (`RTM_GETLINK` → `IFLA_XDP`), and the legacy detach
//! (`RTM_SETLINK` with `IFLA_XDP { IFLA_XDP_FD = -1, IFLA_XDP_FLAGS, IFLA_XDP_EXPECTED_FD }`).
//!
//! The `IFLA_XDP` attributes are in `<linux/if_link.h>`.

use std::io;

pub(crate) use asdic_netlink::KernelError;
use asdic_netlink::{
    Builder, IFINFOMSG_LEN, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, RTM_GETLINK,
    RTM_NEWLINK, RTM_SETLINK, RouteSocket, attrs, error_of, u32_at,
};

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

/// `RTM_GETLINK` for one interface.
pub(crate) fn getlink_request(seq: u32, ifindex: u32) -> Vec<u8> {
    Builder::new(RTM_GETLINK, NLM_F_REQUEST, seq)
        .ifinfomsg(ifindex)
        .finish()
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

/// Parses one message (see [`asdic_netlink::messages`]).
pub(crate) fn parse(kind: u16, flags: u16, payload: &[u8]) -> Reply {
    match kind {
        NLMSG_ERROR => match error_of(flags, payload) {
            Some(Ok(())) => Reply::Ack,
            Some(Err(e)) => Reply::Error(e),
            None => Reply::Other,
        },
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
    asdic_netlink::exchange(sock, seq, req, |kind, flags, payload| {
        match parse(kind, flags, payload) {
            Reply::Other => None,
            r => Some(r),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_netlink::{NLA_F_NESTED, messages, u16_at};

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
    fn errors_and_acks_come_from_the_shared_parser() {
        let req = detach_request(4, 2, AttachMode::Native, 5);
        let mut b = Builder::new(NLMSG_ERROR, 0, 4);
        b.bytes(&(-libc::EBUSY).to_ne_bytes()).bytes(&req);
        let (seq, r) = parse_one(&b.finish());
        assert_eq!(seq, 4);
        assert_eq!(
            r,
            Reply::Error(KernelError {
                errno: libc::EBUSY,
                msg: None
            })
        );
        let mut b = Builder::new(NLMSG_ERROR, 0, 4);
        b.bytes(&0i32.to_ne_bytes()).bytes(&req);
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
