//! What a frame-building engine must know about the path to its targets, asked of the kernel
//! over rtnetlink: the route (egress interface, gateway), the interface (MAC, MTU, state) and
//! the next hop's MAC from the neighbour table, with ARP/NDP triggered when it is missing.
//!
//! Built and parsed with the crate's [`Builder`] and parsers, over its [`RouteSocket`].
//! Layouts, from `<linux/rtnetlink.h>`:
//!
//! ```text
//! struct rtmsg    { u8 family, dst_len, src_len, tos, table, protocol, scope,
//!                   type; __u32 flags; };                                     12 bytes
//! struct ndmsg    { u8 family, pad1; u16 pad2; s32 ifindex; u16 state;
//!                   u8 flags, type; };                                        12 bytes
//! struct ifinfomsg{ u8 family, pad; u16 type; s32 index; u32 flags, change; } 16 bytes
//! ```

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::io;
use std::time::{Duration, Instant};

use crate::{
    Builder, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE,
    RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE, RouteSocket, attrs, error_of, exchange, next_seq,
    u16_at, u32_at,
};

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFF_UP: u32 = 1;
const IFF_RUNNING: u32 = 0x40;
/// Neighbour states with a usable link-layer address: REACHABLE, STALE, DELAY, PROBE,
/// NOARP, PERMANENT.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// The kernel's route to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Egress interface.
    pub ifindex: u32,
    /// Gateway, if the destination is not on-link.
    pub gateway: Option<IpAddr>,
    /// Preferred source address, if the route names one.
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    /// The next hop for `dst`: the gateway, or `dst` itself when on-link.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address, if it is an Ethernet-like (6-byte) one.
    pub mac: Option<[u8; 6]>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Administratively up and running.
    pub up: bool,
}

fn family(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// A request of type `kind`: header, fixed part, attributes.
fn request(kind: u16, seq: u32, fixed: &[u8], attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Builder::new(kind, NLM_F_REQUEST, seq);
    b.bytes(fixed);
    for (t, v) in attributes {
        b.attr(*t, v);
    }
    b.finish()
}

/// Attributes after a fixed part of `skip` bytes.
fn attrs_after(body: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    attrs(body.get(skip..).unwrap_or_default())
}

fn ip_of(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

/// Sends `req` and returns the body of the answer of type `want`, or the kernel's error.
fn ask(req: &[u8], seq: u32, want: u16) -> io::Result<Vec<u8>> {
    let sock = RouteSocket::open()?;
    exchange(&sock, seq, req, |kind, flags, body| match kind {
        NLMSG_ERROR => match error_of(flags, body)? {
            Ok(()) => None,
            Err(e) => Some(Err(io::Error::from(e))),
        },
        NLMSG_DONE => Some(Err(io::Error::from(io::ErrorKind::NotFound))),
        k if k == want => Some(Ok(body.to_vec())),
        _ => None,
    })?
}

fn parse_route(body: &[u8]) -> Option<Route> {
    if body.len() < 12 {
        return None;
    }
    let mut r = Route {
        ifindex: 0,
        gateway: None,
        prefsrc: None,
    };
    for (t, v) in attrs_after(body, 12) {
        match t {
            RTA_OIF => r.ifindex = u32_at(v, 0)?,
            RTA_GATEWAY => r.gateway = ip_of(v),
            RTA_PREFSRC => r.prefsrc = ip_of(v),
            _ => {}
        }
    }
    (r.ifindex != 0).then_some(r)
}

/// The kernel's route to `dst` (what `ip route get` prints).
pub fn route_to(dst: IpAddr) -> io::Result<Route> {
    let s = next_seq();
    let mut fixed = [0u8; 12];
    fixed[0] = family(dst);
    fixed[1] = if dst.is_ipv4() { 32 } else { 128 };
    let a = addr_bytes(dst);
    let body = ask(
        &request(RTM_GETROUTE, s, &fixed, &[(RTA_DST, &a)]),
        s,
        RTM_NEWROUTE,
    )?;
    parse_route(&body).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad route"))
}

fn parse_link(body: &[u8]) -> Option<Link> {
    let index = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let mut l = Link {
        index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING,
    };
    for (t, v) in attrs_after(body, 16) {
        match t {
            IFLA_ADDRESS => l.mac = <[u8; 6]>::try_from(v).ok(),
            IFLA_IFNAME => {
                let v = v.split(|&b| b == 0).next().unwrap_or(v);
                l.name = String::from_utf8_lossy(v).into_owned();
            }
            IFLA_MTU => l.mtu = u32_at(v, 0)?,
            _ => {}
        }
    }
    Some(l)
}

fn get_link(index: u32, name: Option<&str>) -> io::Result<Link> {
    let s = next_seq();
    let mut fixed = [0u8; 16];
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut n = name.map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    n.push(0);
    let attrs: &[(u16, &[u8])] = if name.is_some() {
        &[(IFLA_IFNAME, &n)]
    } else {
        &[]
    };
    let body = ask(&request(RTM_GETLINK, s, &fixed, attrs), s, RTM_NEWLINK)?;
    parse_link(&body).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad link"))
}

/// The interface with index `index`.
pub fn link_by_index(index: u32) -> io::Result<Link> {
    get_link(index, None)
}

/// The interface named `name`.
pub fn link_by_name(name: &str) -> io::Result<Link> {
    if name.is_empty() || name.len() >= 16 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    get_link(0, Some(name))
}

fn parse_neigh(body: &[u8]) -> Option<Option<[u8; 6]>> {
    let state = u16_at(body, 8)?;
    let mut mac = None;
    for (t, v) in attrs_after(body, 12) {
        if t == NDA_LLADDR {
            mac = <[u8; 6]>::try_from(v).ok();
        }
    }
    Some(mac.filter(|_| state & NUD_USABLE != 0))
}

/// The usable link-layer address of `addr` on `ifindex` in the neighbour table, if any.
pub fn neighbour(ifindex: u32, addr: IpAddr) -> io::Result<Option<[u8; 6]>> {
    let s = next_seq();
    let mut fixed = [0u8; 12];
    fixed[0] = family(addr);
    fixed[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let a = addr_bytes(addr);
    match ask(
        &request(RTM_GETNEIGH, s, &fixed, &[(NDA_DST, &a)]),
        s,
        RTM_NEWNEIGH,
    ) {
        Ok(body) => Ok(parse_neigh(&body).flatten()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The MAC of `next_hop` on `ifindex`: from the neighbour table, or, when missing, after
/// making the kernel resolve it (one UDP datagram to the next hop's discard port starts
/// ARP/NDP) and waiting up to `wait`.
pub fn resolve(ifindex: u32, next_hop: IpAddr, wait: Duration) -> io::Result<[u8; 6]> {
    if let Some(mac) = neighbour(ifindex, next_hop)? {
        return Ok(mac);
    }
    let bind: SocketAddr = match next_hop {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let deadline = Instant::now() + wait;
    let mut next_kick = Instant::now();
    loop {
        if Instant::now() >= next_kick {
            // The datagram itself is irrelevant; sending it needs the neighbour entry.
            if let Ok(s) = std::net::UdpSocket::bind(bind) {
                let _ = s.send_to(b"asdic", (next_hop, 9));
            }
            next_kick = Instant::now() + Duration::from_millis(300);
        }
        std::thread::sleep(Duration::from_millis(5));
        if let Some(mac) = neighbour(ifindex, next_hop)? {
            return Ok(mac);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no ARP/NDP answer from next hop {next_hop} within {wait:?}"),
            ));
        }
    }
}

/// The source address the kernel would use towards `dst`.
pub fn source_for(dst: IpAddr) -> io::Result<IpAddr> {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect((dst, 9))?;
    Ok(s.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(t: u16, v: &[u8]) -> Vec<u8> {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&t.to_ne_bytes());
        a.extend_from_slice(v);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn request_layout() {
        let m = request(RTM_GETROUTE, 7, &[2; 12], &[(RTA_DST, &[198, 19, 0, 1])]);
        assert_eq!(m.len(), 16 + 12 + 8);
        assert_eq!(u32_at(&m, 0), Some(36));
        assert_eq!(u16_at(&m, 4), Some(RTM_GETROUTE));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(&m[28..36], &attr(RTA_DST, &[198, 19, 0, 1])[..]);
    }

    #[test]
    fn parses_route_link_and_neighbour_answers() {
        let mut body = vec![2, 32, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0];
        body.extend(attr(RTA_DST, &[198, 19, 0, 1]));
        body.extend(attr(RTA_OIF, &5u32.to_ne_bytes()));
        body.extend(attr(RTA_GATEWAY, &[198, 18, 0, 2]));
        body.extend(attr(RTA_PREFSRC, &[198, 18, 0, 1]));
        let r = parse_route(&body).unwrap();
        assert_eq!(r.ifindex, 5);
        assert_eq!(r.gateway, Some(IpAddr::from([198, 18, 0, 2])));
        assert_eq!(r.prefsrc, Some(IpAddr::from([198, 18, 0, 1])));
        assert_eq!(
            r.next_hop(IpAddr::from([198, 19, 0, 1])),
            IpAddr::from([198, 18, 0, 2])
        );
        // No interface: not a usable route; truncated bodies never panic.
        assert!(parse_route(&body[..12]).is_none());
        for n in 0..body.len() {
            let _ = parse_route(&body[..n]);
        }

        let mut link = vec![0u8; 16];
        link[4..8].copy_from_slice(&3u32.to_ne_bytes());
        link[8..12].copy_from_slice(&(IFF_UP | IFF_RUNNING).to_ne_bytes());
        link.extend(attr(IFLA_IFNAME, b"s0\0"));
        link.extend(attr(IFLA_MTU, &1500u32.to_ne_bytes()));
        link.extend(attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]));
        let l = parse_link(&link).unwrap();
        assert_eq!(
            l,
            Link {
                index: 3,
                name: "s0".into(),
                mac: Some([2, 0, 0, 0, 0, 1]),
                mtu: 1500,
                up: true
            }
        );
        for n in 0..link.len() {
            let _ = parse_link(&link[..n]);
        }

        let mut neigh = vec![2, 0, 0, 0, 3, 0, 0, 0];
        neigh.extend(0x02u16.to_ne_bytes()); // REACHABLE
        neigh.extend([0, 1]);
        neigh.extend(attr(NDA_DST, &[198, 18, 0, 2]));
        neigh.extend(attr(NDA_LLADDR, &[2, 0, 0, 0, 0, 2]));
        assert_eq!(parse_neigh(&neigh), Some(Some([2, 0, 0, 0, 0, 2])));
        neigh[8..10].copy_from_slice(&0x20u16.to_ne_bytes()); // FAILED
        assert_eq!(parse_neigh(&neigh), Some(None));
    }
}
