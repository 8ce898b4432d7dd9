//! The in-memory engine: a pretend network with a population of hosts behind it, in real
//! time, without a socket or any privilege. For tests and demos of the whole pipeline.
//!
//! [`open`] takes a [`Population`] and returns a [`MemTx`] and a [`MemRx`] sharing one queue.
//! The TX half takes ICMP messages ([`TxLayer::Icmp`], as raw sockets do: the destination and
//! TTL ride beside the bytes in the [`TxBatch`]), for IPv4 and IPv6 alike (the destination's
//! family says which). Each packet is parsed with asdic-wire's views; an echo request meets
//! the fate [`Population::fate`] gives it, and whatever answers it are queued with the time
//! they are due. The RX half hands over each frame once its time has come, as a raw socket
//! would: IPv4 packets whole ([`RxLayer::Ipv4`], header checksum valid), ICMPv6 messages with
//! their source and hop limit ([`RxLayer::Icmpv6`]). Frames carry their due time as receive
//! timestamp, so an RTT is never below the delay the population gives.
//!
//! Everything is deterministic but the clock: which requests are lost, their delay, which
//! replies come twice or are followed by a forgery are drawn from a hash of the population's
//! seed, the target and how many requests to that target came before (see
//! [`Population::fate`]), so a test can compute exactly what a run must report.
//!
//! No `unsafe`; the only lock is the queue's, taken once per send call and twice per receive.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use asdic_wire::{checksum, icmp, ipv4, ipv6};

use crate::batch::TxBatch;
use crate::error::{EngineError, SendError};
use crate::{KernelDrops, Rx, RxCaps, RxFrame, RxLayer, Tx, TxCaps, TxLayer};

const ENGINE: &str = "mem";
/// Largest ICMP message in an IPv4 datagram (as the raw engine).
pub const MAX_PACKET_V4: usize = 65_535 - ipv4::HEADER_LEN;
/// Largest ICMPv6 message in an IPv6 packet without a jumbogram option.
pub const MAX_PACKET_V6: usize = 65_535;
/// Most bytes of the probe's ICMP message an IPv4 error quotes: RFC 1812 §4.3.2.3 keeps the
/// whole error datagram within 576 bytes (20 + 8 + 20 + 528).
pub const MAX_QUOTE_V4: usize = 576 - 2 * ipv4::HEADER_LEN - icmp::HEADER_LEN;
/// Most bytes of the invoking packet an ICMPv6 error quotes: RFC 4443 §2.4 (c) keeps the
/// error within the minimum MTU of 1,280 bytes (40 + 8 + 1,232).
pub const MAX_QUOTE_V6: usize = 1280 - ipv6::HEADER_LEN - icmp::HEADER_LEN;
/// Most frames one [`MemRx::recv`] call hands over.
const MAX_PER_RECV: usize = 1024;
/// Most emptied frame buffers kept for reuse.
const MAX_FREE: usize = 4096;

/// A set of addresses, given by a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Select {
    /// No address.
    #[default]
    Nothing,
    /// Every address.
    Everything,
    /// Addresses whose low 32 bits `i` (the whole address for IPv4) have
    /// `i % modulus == residue`. A zero modulus selects nothing.
    Modulo {
        /// The modulus.
        modulus: u32,
        /// The residue that selects.
        residue: u32,
    },
    /// Addresses within `addr/len` (of `addr`'s family).
    Prefix {
        /// The prefix.
        addr: IpAddr,
        /// Its length in bits (capped at the family's address length).
        len: u8,
    },
    /// These addresses (looked up one by one: keep it short).
    List(Vec<IpAddr>),
}

impl Select {
    /// Whether `a` is in the set.
    pub fn contains(&self, a: IpAddr) -> bool {
        match self {
            Select::Nothing => false,
            Select::Everything => true,
            Select::Modulo { modulus, residue } => {
                let i = match a {
                    IpAddr::V4(a) => u32::from(a),
                    IpAddr::V6(a) => u128::from(a) as u32,
                };
                *modulus != 0 && i % modulus == *residue
            }
            Select::Prefix { addr, len } => match (addr, a) {
                (IpAddr::V4(p), IpAddr::V4(a)) => {
                    let keep = u32::from((*len).min(32));
                    let mask = u32::MAX.checked_shl(32 - keep).unwrap_or(0);
                    u32::from(*p) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(p), IpAddr::V6(a)) => {
                    let keep = u32::from((*len).min(128));
                    let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                    u128::from(*p) & mask == u128::from(a) & mask
                }
                _ => false,
            },
            Select::List(v) => v.contains(&a),
        }
    }
}

/// What stands at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A host that answers echo requests.
    Alive,
    /// Nothing answers: requests vanish.
    Dead,
    /// The router in front rejects requests with destination unreachable.
    Unreachable,
}

/// How a forged reply is made from a real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// The target's reply with one bit of the payload's MAC flipped.
    AlteredMac,
    /// The target's reply, unchanged, from [`Population`]'s `stranger` address: an address
    /// that was never probed.
    Stranger,
}

/// What becomes of one echo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped on the way (the population's `loss`), whatever the host.
    Lost,
    /// Reached a dead host: no answer.
    Silent,
    /// The router answers with destination unreachable, `delay` after the request.
    Unreachable {
        /// When the error arrives, after the request left.
        delay: Duration,
    },
    /// The target answers, `delay` after the request.
    Reply {
        /// When the reply arrives, after the request left.
        delay: Duration,
        /// Whether the same reply arrives a second time, `repeat_after` later.
        duplicated: bool,
        /// A forged reply that follows the real one `repeat_after` later, if any.
        forged: Option<Forgery>,
    },
}

/// The hosts behind the pretend network and how the network treats their traffic. Plain
/// data with a [`Default`] (every target alive, 1 ms away, nothing lost, nothing hostile):
/// change the fields a test needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    /// Our IPv4 address: the destination of IPv4 answers, the source quoted in errors.
    pub local_v4: Ipv4Addr,
    /// Our IPv6 address: the destination of ICMPv6 answers (in their checksum), the source
    /// quoted in errors.
    pub local_v6: Ipv6Addr,
    /// Targets that never answer.
    pub dead: Select,
    /// Targets the router rejects. Wins over `dead`: the request never gets that far.
    pub unreachable: Select,
    /// The IPv4 router that sends destination unreachable (type 3).
    pub router_v4: Ipv4Addr,
    /// The IPv6 router that sends destination unreachable (ICMPv6 type 1).
    pub router_v6: Ipv6Addr,
    /// Code of the IPv4 errors (13: communication administratively prohibited).
    pub unreachable_code_v4: u8,
    /// Code of the ICMPv6 errors (1: communication administratively prohibited).
    pub unreachable_code_v6: u8,
    /// Bytes of the probe's ICMP message an IPv4 error quotes after the probe's IP header:
    /// 8 as RFC 792 asks (identifier and sequence only), up to [`MAX_QUOTE_V4`] as RFC 1812
    /// routers and Linux do (the payload and its MAC too). ICMPv6 errors quote as much of
    /// the probe as fits in [`MAX_QUOTE_V6`] bytes.
    pub v4_quote: usize,
    /// Seed of every random-looking choice.
    pub seed: u64,
    /// Fraction of requests dropped (0 to 1).
    pub loss: f64,
    /// Time from a request to its answer.
    pub delay: Duration,
    /// Up to this much more, drawn per request.
    pub jitter: Duration,
    /// Fraction of replies that arrive twice (0 to 1).
    pub duplicate: f64,
    /// Fraction of replies followed by a forged one (0 to 1), half of them each kind of
    /// [`Forgery`].
    pub forged: f64,
    /// How long after the real reply its duplicate or forgery arrives.
    pub repeat_after: Duration,
    /// Source of [`Forgery::Stranger`] replies to IPv4 targets.
    pub stranger_v4: Ipv4Addr,
    /// Source of [`Forgery::Stranger`] replies to IPv6 targets.
    pub stranger_v6: Ipv6Addr,
    /// TTL / hop limit of probes that name none ([`TxBatch::set_ttl`]): the socket's.
    pub ttl: u8,
    /// TTL / hop limit echo replies arrive with.
    pub reply_ttl: u8,
    /// TTL / hop limit the router's errors arrive with.
    pub router_ttl: u8,
    /// Frames the queue holds; more are dropped and reported as the socket's
    /// [`KernelDrops::socket`].
    pub capacity: usize,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            local_v4: Ipv4Addr::new(198, 18, 0, 1),
            local_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            dead: Select::Nothing,
            unreachable: Select::Nothing,
            router_v4: Ipv4Addr::new(198, 18, 0, 2),
            router_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
            unreachable_code_v4: 13,
            unreachable_code_v6: 1,
            v4_quote: 8,
            seed: 0,
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            duplicate: 0.0,
            forged: 0.0,
            repeat_after: Duration::from_millis(1),
            stranger_v4: Ipv4Addr::new(198, 18, 255, 254),
            stranger_v6: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1),
            ttl: 64,
            reply_ttl: 63,
            router_ttl: 64,
            capacity: 1 << 20,
        }
    }
}

/// Salts of the independent draws of one request.
const SALT_LOSS: u64 = 1;
const SALT_DELAY: u64 = 2;
const SALT_DUPLICATE: u64 = 3;
const SALT_FORGED: u64 = 4;
const SALT_FORGERY: u64 = 5;

/// splitmix64's output function: a bijective scramble of 64 bits.
fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether a draw `x` falls within fraction `p` (never for `p <= 0` or NaN, always for
/// `p >= 1`).
fn chance(x: u64, p: f64) -> bool {
    ((x >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
}

impl Population {
    /// What stands at `target`.
    pub fn host(&self, target: IpAddr) -> Host {
        if self.unreachable.contains(target) {
            Host::Unreachable
        } else if self.dead.contains(target) {
            Host::Dead
        } else {
            Host::Alive
        }
    }

    /// The fate of the `k`-th echo request (from 0) the engine sees for `target`: the rule
    /// [`MemTx`] applies, for tests to compute what a run must find. Loss is drawn first,
    /// for every host; then the host decides; a reply's delay, duplicate and forgery are
    /// further independent draws.
    pub fn fate(&self, target: IpAddr, k: u32) -> Fate {
        let a = match target {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        let base = mix(mix(mix(self.seed) ^ (a >> 64) as u64) ^ a as u64) ^ u64::from(k);
        let draw = |salt: u64| mix(mix(base) ^ salt);
        if chance(draw(SALT_LOSS), self.loss) {
            return Fate::Lost;
        }
        let jitter = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = ((u128::from(jitter) * u128::from(draw(SALT_DELAY))) >> 64) as u64;
        let delay = self.delay.saturating_add(Duration::from_nanos(extra));
        match self.host(target) {
            Host::Dead => Fate::Silent,
            Host::Unreachable => Fate::Unreachable { delay },
            Host::Alive => Fate::Reply {
                delay,
                duplicated: chance(draw(SALT_DUPLICATE), self.duplicate),
                forged: chance(draw(SALT_FORGED), self.forged).then(|| {
                    if draw(SALT_FORGERY) & 1 == 0 {
                        Forgery::AlteredMac
                    } else {
                        Forgery::Stranger
                    }
                }),
            },
        }
    }
}

/// What the engine did, counted. Read with [`MemStats::snapshot`].
#[derive(Debug, Default)]
pub struct MemStats {
    requests: AtomicU64,
    not_probes: AtomicU64,
    lost: AtomicU64,
    silent: AtomicU64,
    replies: AtomicU64,
    errors: AtomicU64,
    duplicates: AtomicU64,
    forged: AtomicU64,
    queued: AtomicU64,
    overflow: AtomicU64,
    delivered: AtomicU64,
}

/// The counters of [`MemStats`] at one moment. Every frame made (replies, errors, duplicates,
/// forgeries) was either queued or dropped at the full queue: their sum is
/// `queued + overflow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemCounts {
    /// Echo requests the TX half took (packets that parsed as one).
    pub requests: u64,
    /// Packets that were no echo request of the destination's family (too short, another
    /// type or code, a bad ICMPv4 checksum): a host would discard them.
    pub not_probes: u64,
    /// Requests dropped by the population's loss.
    pub lost: u64,
    /// Requests to dead hosts.
    pub silent: u64,
    /// Echo replies made.
    pub replies: u64,
    /// Destination unreachable errors made.
    pub errors: u64,
    /// Second copies of replies made.
    pub duplicates: u64,
    /// Forged replies made.
    pub forged: u64,
    /// Frames put in the queue.
    pub queued: u64,
    /// Frames dropped because the queue was full.
    pub overflow: u64,
    /// Frames the RX half handed over.
    pub delivered: u64,
}

impl MemStats {
    /// The counters now.
    pub fn snapshot(&self) -> MemCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MemCounts {
            requests: get(&self.requests),
            not_probes: get(&self.not_probes),
            lost: get(&self.lost),
            silent: get(&self.silent),
            replies: get(&self.replies),
            errors: get(&self.errors),
            duplicates: get(&self.duplicates),
            forged: get(&self.forged),
            queued: get(&self.queued),
            overflow: get(&self.overflow),
            delivered: get(&self.delivered),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A frame on its way to the RX half.
#[derive(Debug)]
struct Pending {
    /// When it may be handed over.
    due: Instant,
    /// Queue order among frames due at the same time.
    seq: u64,
    /// Its receive timestamp (the due time, ns since the Unix epoch).
    ts_ns: u64,
    layer: RxLayer,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Pending {
    /// Reversed, so that the max-heap's top is the frame due first (then queued first).
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

/// The frames in flight and the buffers of frames handed over, for reuse.
#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Pending>,
    free: Vec<Vec<u8>>,
    seq: u64,
}

/// What both halves share.
#[derive(Debug)]
struct Net {
    pop: Population,
    queue: Mutex<Queue>,
    /// Signalled when frames are queued.
    queued: Condvar,
    stats: Arc<MemStats>,
}

impl Net {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding the lock leaves the queue consistent (every
        // change under it is a single push or pop), so carry on with it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the engine on `population`: the two halves share its queue and counters.
pub fn open(population: Population) -> (MemTx, MemRx) {
    let net = Arc::new(Net {
        pop: population,
        queue: Mutex::new(Queue::default()),
        queued: Condvar::new(),
        stats: Arc::new(MemStats::default()),
    });
    let tx = MemTx {
        net: net.clone(),
        seen: HashMap::new(),
        ip_ident: 0,
        wire: Vec::new(),
    };
    let rx = MemRx {
        net,
        taken: Vec::new(),
    };
    (tx, rx)
}

/// The sending half: the network and the hosts behind it.
#[derive(Debug)]
pub struct MemTx {
    net: Arc<Net>,
    /// Echo requests seen per target (`k` of [`Population::fate`]).
    seen: HashMap<IpAddr, u32>,
    /// IP identification of the IPv4 probes as the network sees them.
    ip_ident: u16,
    /// Scratch: a probe as it went on the wire (the ICMPv6 checksum filled in).
    wire: Vec<u8>,
}

impl MemTx {
    /// The engine's counters (shared with the RX half).
    pub fn stats(&self) -> Arc<MemStats> {
        self.net.stats.clone()
    }

    /// The population behind the network.
    pub fn population(&self) -> &Population {
        &self.net.pop
    }
}

/// The ICMP family of an echo request to `dst`, if `msg` is one.
fn echo_request(msg: &[u8], dst: IpAddr) -> Option<IpAddr> {
    let m = icmp::Packet::new_checked(msg).ok()?;
    let ok = match dst {
        IpAddr::V4(_) => m.msg_type() == icmp::V4_ECHO_REQUEST && m.checksum_ok_v4(),
        // A raw ICMPv6 socket leaves the checksum to the kernel: any value goes.
        IpAddr::V6(_) => m.msg_type() == icmp::V6_ECHO_REQUEST,
    };
    (ok && m.code() == 0).then_some(dst)
}

/// Writes the ICMPv4 checksum of `msg` in place.
fn icmp4_checksum(msg: &mut [u8]) {
    if let Some(c) = msg.get_mut(2..4) {
        c.fill(0);
    }
    let c = checksum::checksum(msg);
    if let Some(f) = msg.get_mut(2..4) {
        f.copy_from_slice(&c.to_be_bytes());
    }
}

/// Writes the ICMPv6 checksum of `msg`, from `src` to `dst`, in place.
fn icmp6_checksum(msg: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    if let Some(c) = msg.get_mut(2..4) {
        c.fill(0);
    }
    let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
    let acc = checksum::pseudo_v6(src, dst, len, ipv6::NEXT_ICMPV6);
    let c = checksum::finish(checksum::sum(acc, msg));
    if let Some(f) = msg.get_mut(2..4) {
        f.copy_from_slice(&c.to_be_bytes());
    }
}

/// Puts an IPv4 header from `src` to `dst` in front of the ICMP message that fills
/// `buf[20..]` (the first 20 bytes are reserved for it).
fn ipv4_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, ident: u16) -> bool {
    let r = ipv4::Repr {
        src,
        dst,
        protocol: ipv4::PROTO_ICMP,
        payload_len: buf.len().saturating_sub(ipv4::HEADER_LEN),
        ttl,
        ident,
    };
    r.emit(buf).is_ok()
}

impl Net {
    /// Queues a frame due `delay` after `now`, or drops it when the queue is full.
    fn push(
        &self,
        q: &mut Queue,
        data: Vec<u8>,
        layer: RxLayer,
        (now, now_ns): (Instant, u64),
        delay: Duration,
    ) {
        if q.heap.len() >= self.pop.capacity {
            bump(&self.stats.overflow);
            return;
        }
        bump(&self.stats.queued);
        q.seq += 1;
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        q.heap.push(Pending {
            due: now.checked_add(delay).unwrap_or(now),
            seq: q.seq,
            ts_ns: now_ns.saturating_add(delay_ns),
            layer,
            data,
        });
    }
}

impl MemTx {
    /// One packet of a batch: what the network and the population make of it.
    fn take(
        &mut self,
        net: &Net,
        q: &mut Queue,
        msg: &[u8],
        dst: IpAddr,
        ttl: u8,
        now: (Instant, u64),
    ) {
        let (pop, stats) = (&net.pop, &net.stats);
        let Some(dst) = echo_request(msg, dst) else {
            bump(&stats.not_probes);
            return;
        };
        bump(&stats.requests);
        let k = self.seen.entry(dst).or_insert(0);
        let fate = pop.fate(dst, *k);
        *k = k.saturating_add(1);
        self.ip_ident = self.ip_ident.wrapping_add(1);
        let ident = self.ip_ident;
        let ttl = if ttl == 0 { pop.ttl } else { ttl };
        match fate {
            Fate::Lost => bump(&stats.lost),
            Fate::Silent => bump(&stats.silent),
            Fate::Unreachable { delay } => {
                bump(&stats.errors);
                let mut buf = q.free.pop().unwrap_or_default();
                if let Some(layer) = error(pop, &mut self.wire, &mut buf, msg, dst, ttl, ident) {
                    net.push(q, buf, layer, now, delay);
                }
            }
            Fate::Reply {
                delay,
                duplicated,
                forged,
            } => {
                bump(&stats.replies);
                let mut buf = q.free.pop().unwrap_or_default();
                let Some(layer) = reply(pop, &mut buf, msg, dst, dst, false, ident) else {
                    return;
                };
                let later = delay.saturating_add(pop.repeat_after);
                if duplicated {
                    bump(&stats.duplicates);
                    let mut copy = q.free.pop().unwrap_or_default();
                    copy.clear();
                    copy.extend_from_slice(&buf);
                    net.push(q, copy, layer, now, later);
                }
                net.push(q, buf, layer, now, delay);
                if let Some(f) = forged {
                    bump(&stats.forged);
                    let from = match (f, dst) {
                        (Forgery::AlteredMac, _) => dst,
                        (Forgery::Stranger, IpAddr::V4(_)) => IpAddr::V4(pop.stranger_v4),
                        (Forgery::Stranger, IpAddr::V6(_)) => IpAddr::V6(pop.stranger_v6),
                    };
                    let alter = f == Forgery::AlteredMac;
                    let mut buf = q.free.pop().unwrap_or_default();
                    if let Some(layer) = reply(pop, &mut buf, msg, dst, from, alter, ident) {
                        net.push(q, buf, layer, now, later);
                    }
                }
            }
        }
    }
}

/// The echo reply to request `msg` sent to `target`, as if from `from` (of the target's
/// family), with a bit of its MAC flipped if `alter`: written into `buf`; returns how the
/// frame starts.
fn reply(
    pop: &Population,
    buf: &mut Vec<u8>,
    msg: &[u8],
    target: IpAddr,
    from: IpAddr,
    alter: bool,
    ip_ident: u16,
) -> Option<RxLayer> {
    buf.clear();
    let at = if target.is_ipv4() {
        ipv4::HEADER_LEN
    } else {
        0
    };
    buf.resize(at, 0);
    buf.extend_from_slice(msg);
    let m = buf.get_mut(at..)?;
    if alter {
        // The MAC's first byte (payload bytes 24..32), or the last byte of a shorter
        // message (no asdic probe, but altered all the same).
        let i = (icmp::HEADER_LEN + 24).min(m.len().checked_sub(1)?);
        m[i] ^= 0x01;
    }
    match from {
        IpAddr::V4(src) => {
            *m.first_mut()? = icmp::V4_ECHO_REPLY;
            icmp4_checksum(m);
            ipv4_header(buf, src, pop.local_v4, pop.reply_ttl, ip_ident).then_some(())?;
            Some(RxLayer::Ipv4)
        }
        IpAddr::V6(src) => {
            *m.first_mut()? = icmp::V6_ECHO_REPLY;
            icmp6_checksum(m, &src, &pop.local_v6);
            Some(RxLayer::Icmpv6 {
                src,
                hop_limit: Some(pop.reply_ttl),
            })
        }
    }
}

/// The router's destination unreachable about request `msg` to `target`, sent with TTL
/// `ttl` (and, IPv4, identification `ip_ident`), quoting it: written into `buf`, with
/// `wire` as scratch; returns how the frame starts.
fn error(
    pop: &Population,
    wire: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    msg: &[u8],
    target: IpAddr,
    ttl: u8,
    ip_ident: u16,
) -> Option<RxLayer> {
    buf.clear();
    // The router saw the probe one hop on.
    let quoted_ttl = ttl.saturating_sub(1);
    match target {
        IpAddr::V4(dst) => {
            buf.resize(ipv4::HEADER_LEN, 0);
            buf.extend_from_slice(&[3, pop.unreachable_code_v4, 0, 0, 0, 0, 0, 0]);
            let inner = buf.len();
            buf.resize(inner + ipv4::HEADER_LEN, 0);
            let quoted = ipv4::Repr {
                src: pop.local_v4,
                dst,
                protocol: ipv4::PROTO_ICMP,
                payload_len: msg.len(),
                ttl: quoted_ttl,
                ident: ip_ident,
            };
            quoted.emit(buf.get_mut(inner..)?).ok()?;
            let n = pop.v4_quote.min(MAX_QUOTE_V4).min(msg.len());
            buf.extend_from_slice(msg.get(..n)?);
            icmp4_checksum(buf.get_mut(ipv4::HEADER_LEN..)?);
            let ok = ipv4_header(buf, pop.router_v4, pop.local_v4, pop.router_ttl, 0);
            ok.then_some(RxLayer::Ipv4)
        }
        IpAddr::V6(dst) => {
            // The probe as it went on the wire: the kernel fills in the checksum.
            wire.clear();
            wire.extend_from_slice(msg);
            icmp6_checksum(wire, &pop.local_v6, &dst);
            buf.extend_from_slice(&[1, pop.unreachable_code_v6, 0, 0, 0, 0, 0, 0]);
            let inner = buf.len();
            buf.resize(inner + ipv6::HEADER_LEN, 0);
            let quoted = ipv6::Repr {
                src: pop.local_v6,
                dst,
                next_header: ipv6::NEXT_ICMPV6,
                // The quoted header states the probe's whole length, as a real one does.
                payload_len: msg.len(),
                hop_limit: quoted_ttl,
            };
            quoted.emit(buf.get_mut(inner..)?).ok()?;
            let n = (MAX_QUOTE_V6 - ipv6::HEADER_LEN).min(wire.len());
            buf.extend_from_slice(wire.get(..n)?);
            icmp6_checksum(buf, &pop.router_v6, &pop.local_v6);
            Some(RxLayer::Icmpv6 {
                src: pop.router_v6,
                hop_limit: Some(pop.router_ttl),
            })
        }
    }
}

impl Tx for MemTx {
    fn caps(&self) -> TxCaps {
        TxCaps {
            engine: ENGINE,
            layer: TxLayer::Icmp,
            max_packet: MAX_PACKET_V4,
            ttl_per_socket: true,
            kernel_stamps: false,
            serial_send: false,
        }
    }

    /// Takes every packet from `from` on. A packet too large for its family (over
    /// [`MAX_PACKET_V4`] or [`MAX_PACKET_V6`] bytes) stops the batch with `EMSGSIZE`, as a
    /// socket would refuse it.
    fn send(&mut self, batch: &TxBatch, from: usize) -> Result<usize, SendError> {
        let now = (Instant::now(), crate::stamp_ns());
        let net = self.net.clone();
        let mut q = net.lock();
        let before = q.seq;
        let mut sent = 0;
        for i in from..batch.len() {
            let Some((msg, dst)) = batch.packet(i) else {
                break;
            };
            let max = if dst.is_ipv4() {
                MAX_PACKET_V4
            } else {
                MAX_PACKET_V6
            };
            if msg.len() > max {
                if q.seq != before {
                    net.queued.notify_all();
                }
                return Err(SendError::Packet {
                    sent,
                    error: std::io::Error::from_raw_os_error(libc::EMSGSIZE),
                });
            }
            self.take(&net, &mut q, msg, dst, batch.ttl(i), now);
            sent += 1;
        }
        if q.seq != before {
            net.queued.notify_all();
        }
        Ok(sent)
    }
}

/// The receiving half: frames whose time has come.
#[derive(Debug)]
pub struct MemRx {
    net: Arc<Net>,
    /// Frames taken from the queue in one call, handed over outside the lock.
    taken: Vec<Pending>,
}

impl MemRx {
    /// The engine's counters (shared with the TX half).
    pub fn stats(&self) -> Arc<MemStats> {
        self.net.stats.clone()
    }

    /// The population behind the network.
    pub fn population(&self) -> &Population {
        &self.net.pop
    }

    /// Frames queued and not yet handed over, due or not.
    pub fn in_flight(&self) -> usize {
        self.net.lock().heap.len()
    }
}

impl Rx for MemRx {
    /// Frames carry their due time as timestamp, as a kernel stamps arrival.
    fn caps(&self) -> RxCaps {
        RxCaps {
            engine: ENGINE,
            stamp: crate::RxStamp::KernelSoftware,
        }
    }

    /// Sleeps on the queue's condition variable until a frame is due (or `timeout` has
    /// passed), then hands over every frame due, at most 1,024 per call.
    fn recv(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, EngineError> {
        let start = Instant::now();
        {
            let mut q = self.net.lock();
            loop {
                let now = Instant::now();
                let next = q.heap.peek().map(|p| p.due);
                if next.is_some_and(|due| due <= now) {
                    break;
                }
                let left = timeout.saturating_sub(now.duration_since(start));
                if left.is_zero() {
                    return Ok(0);
                }
                let wait = next.map_or(left, |due| due.duration_since(now).min(left));
                q = self
                    .net
                    .queued
                    .wait_timeout(q, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let now = Instant::now();
            while self.taken.len() < MAX_PER_RECV {
                match q.heap.peek() {
                    Some(p) if p.due <= now => {}
                    _ => break,
                }
                if let Some(p) = q.heap.pop() {
                    self.taken.push(p);
                }
            }
        }
        for p in &self.taken {
            on_frame(RxFrame {
                data: &p.data,
                layer: p.layer,
                ts_ns: p.ts_ns,
                truncated: false,
                realtime: false,
            });
        }
        let n = self.taken.len();
        self.net
            .stats
            .delivered
            .fetch_add(n as u64, Ordering::Relaxed);
        let mut q = self.net.lock();
        for p in self.taken.drain(..) {
            if q.free.len() < MAX_FREE {
                q.free.push(p.data);
            }
        }
        Ok(n)
    }

    /// Frames dropped at the full queue, as a socket's overflow.
    fn kernel_drops(&mut self) -> Result<KernelDrops, EngineError> {
        Ok(KernelDrops {
            socket: self.net.stats.overflow.load(Ordering::Relaxed),
            ..KernelDrops::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_wire::Family;
    use asdic_wire::inbound::{self, Inbound};
    use asdic_wire::payload::{Key, Stamp, Verdict, verify};
    use asdic_wire::template::{Layer, ProbeFields, Template};

    const KEY: Key = Key::new(3, 4);
    const SESSION: u32 = 0x5e55_1011;

    fn t4(i: u16) -> IpAddr {
        IpAddr::from([198, 19, (i >> 8) as u8, i as u8])
    }

    fn t6(i: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i))
    }

    /// A batch of asdic probes of `size` payload bytes, one per `(target, n)`, stamped and
    /// patched as the sender does, and the fields of each.
    fn probes(targets: &[(IpAddr, u64)], size: usize) -> (TxBatch, Vec<ProbeFields>) {
        let family = Family::of(targets[0].0);
        let t = Template::new(family, Layer::Icmp, size).unwrap();
        let mut b = TxBatch::new(targets.len(), t.len());
        let mut fields = vec![];
        for (i, &(dst, n)) in targets.iter().enumerate() {
            t.prepare(b.slot_mut(i).unwrap()).unwrap();
            let (ident, seq) = (0x4000 + (n >> 16) as u16, n as u16);
            let stamp = Stamp {
                session: SESSION,
                n,
                cookie: i as u32,
                t_send_ns: crate::stamp_ns(),
            };
            let f = ProbeFields::new(&KEY, dst, 64, ident, seq, stamp);
            t.patch(b.push(dst, t.len()).unwrap(), &f).unwrap();
            fields.push(f);
        }
        (b, fields)
    }

    /// A frame as handed over: bytes, layer, timestamp.
    type Got = (Vec<u8>, RxLayer, u64);

    /// Every frame the RX half hands over within `wait`.
    fn drain(rx: &mut MemRx, wait: Duration) -> Vec<Got> {
        let t0 = Instant::now();
        let mut v = vec![];
        while t0.elapsed() < wait {
            let left = wait.saturating_sub(t0.elapsed());
            rx.recv(left, &mut |f| {
                assert!(!f.truncated);
                v.push((f.data.to_vec(), f.layer, f.ts_ns));
            })
            .unwrap();
        }
        v
    }

    /// Parses a frame as the matcher does, after checking every checksum in it.
    fn parse<'a>(pop: &Population, f: &'a Got) -> Inbound<'a> {
        match f.1 {
            RxLayer::Ipv4 => {
                let ip = ipv4::Packet::new_checked(&f.0[..]).unwrap();
                assert!(ip.checksum_ok(), "IPv4 header checksum");
                assert_eq!(ip.dst(), pop.local_v4);
                assert_eq!(ip.total_len(), f.0.len());
                inbound::parse_ipv4(&f.0).unwrap()
            }
            RxLayer::Icmpv6 { src, hop_limit } => {
                let len = f.0.len() as u32;
                let acc = checksum::pseudo_v6(&src, &pop.local_v6, len, ipv6::NEXT_ICMPV6);
                assert_eq!(checksum::finish(checksum::sum(acc, &f.0)), 0, "ICMPv6 sum");
                inbound::parse_icmpv6(&f.0, src, hop_limit).unwrap()
            }
            RxLayer::Ethernet | RxLayer::TxStamp { .. } => {
                panic!("the mem engine hands over neither Ethernet frames nor send stamps")
            }
        }
    }

    #[test]
    fn echo_requests_get_their_replies_v4_and_v6() {
        let pop = Population {
            delay: Duration::from_millis(3),
            ..Population::default()
        };
        for targets in [[t4(1), t4(2)], [t6(1), t6(2)]] {
            let (mut tx, mut rx) = open(pop.clone());
            assert_eq!(tx.caps().layer, TxLayer::Icmp);
            let (batch, fields) = probes(&[(targets[0], 7), (targets[1], 70_000)], 56);
            assert_eq!(tx.send(&batch, 0).unwrap(), 2);
            let got = drain(&mut rx, Duration::from_millis(60));
            assert_eq!(got.len(), 2, "{targets:?}");
            // Due at the same time, they come in the order sent.
            for (i, (g, f)) in got.iter().zip(&fields).enumerate() {
                let Inbound::EchoReply(r) = parse(&pop, g) else {
                    panic!("not a reply: {g:?}")
                };
                assert_eq!((r.from, r.ident, r.seq), (f.dst, f.ident, f.seq));
                assert_eq!(r.ttl, Some(pop.reply_ttl));
                let (request, _) = batch.packet(i).unwrap();
                assert_eq!(r.data, &request[8..], "the payload comes back whole");
                assert_eq!(
                    verify(&KEY, SESSION, r.from, r.ident, r.seq, r.data),
                    Verdict::Valid(f.stamp)
                );
                assert!(
                    g.2 >= f.stamp.t_send_ns + 3_000_000,
                    "timestamp at the delay"
                );
            }
            let c = tx.stats().snapshot();
            assert_eq!((c.requests, c.replies, c.queued, c.delivered), (2, 2, 2, 2));
            assert_eq!(rx.in_flight(), 0);
        }
    }

    #[test]
    fn a_dead_target_gets_nothing() {
        let pop = Population {
            dead: Select::List(vec![t4(5), t6(5)]),
            delay: Duration::ZERO,
            ..Population::default()
        };
        let (mut tx, mut rx) = open(pop);
        for t in [t4(5), t6(5)] {
            tx.send(&probes(&[(t, 1)], 32).0, 0).unwrap();
        }
        assert!(drain(&mut rx, Duration::from_millis(20)).is_empty());
        let c = rx.stats().snapshot();
        assert_eq!((c.requests, c.silent, c.replies, c.queued), (2, 2, 0, 0));
    }

    #[test]
    fn errors_come_from_the_router_and_quote_the_probe() {
        // IPv4 as RFC 792 asks: the probe's IP header and 8 bytes of its ICMP message.
        let pop = Population {
            unreachable: Select::Prefix {
                addr: t4(0),
                len: 24,
            },
            ..Population::default()
        };
        let (mut tx, mut rx) = open(pop.clone());
        let (batch, fields) = probes(&[(t4(9), 3)], 56);
        tx.send(&batch, 0).unwrap();
        let got = drain(&mut rx, Duration::from_millis(20));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), 20 + 8 + 20 + 8);
        let Inbound::Error(e) = parse(&pop, &got[0]) else {
            panic!("not an error")
        };
        assert_eq!(e.from, IpAddr::V4(pop.router_v4));
        assert_eq!((e.msg_type, e.code), (3, 13));
        assert_eq!(e.probe.src, IpAddr::V4(pop.local_v4));
        assert_eq!(
            (e.probe.dst, e.probe.ident, e.probe.seq),
            (t4(9), fields[0].ident, 3)
        );
        assert_eq!(e.probe.ttl, 63);
        assert!(e.probe.data.is_empty());
        let inner = ipv4::Packet::new_quoted(&got[0].0[28..]).unwrap();
        assert!(inner.checksum_ok());
        assert_eq!(inner.total_len(), 20 + 8 + 56, "the probe's whole length");

        // As Linux routers do: the whole probe, MAC included.
        let pop = Population {
            v4_quote: MAX_QUOTE_V4,
            ..pop
        };
        let (mut tx, mut rx) = open(pop.clone());
        tx.send(&batch, 0).unwrap();
        let got = drain(&mut rx, Duration::from_millis(20));
        let Inbound::Error(e) = parse(&pop, &got[0]) else {
            panic!("not an error")
        };
        let q = e.probe;
        assert_eq!(
            verify(&KEY, SESSION, q.dst, q.ident, q.seq, q.data),
            Verdict::Valid(fields[0].stamp)
        );

        // ICMPv6: as much of the probe as fits in 1,232 bytes, its checksum filled in.
        let pop = Population {
            unreachable: Select::Prefix {
                addr: t6(0),
                len: 64,
            },
            unreachable_code_v6: 3,
            ..Population::default()
        };
        let (mut tx, mut rx) = open(pop.clone());
        for (size, quoted) in [(56, 56), (2000, MAX_QUOTE_V6 - 40 - 8)] {
            let (batch, fields) = probes(&[(t6(9), 5)], size);
            tx.send(&batch, 0).unwrap();
            let got = drain(&mut rx, Duration::from_millis(20));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].0.len(), 8 + 40 + 8 + quoted);
            assert_eq!(
                got[0].1,
                RxLayer::Icmpv6 {
                    src: pop.router_v6,
                    hop_limit: Some(pop.router_ttl)
                }
            );
            let Inbound::Error(e) = parse(&pop, &got[0]) else {
                panic!("not an error")
            };
            assert_eq!((e.msg_type, e.code, e.probe.dst), (1, 3, t6(9)));
            assert_eq!(e.probe.src, IpAddr::V6(pop.local_v6));
            assert_eq!((e.probe.ident, e.probe.seq), (fields[0].ident, 5));
            assert_eq!(e.probe.data.len(), quoted);
            assert_eq!(
                ipv6::Packet::new_quoted(&got[0].0[8..])
                    .unwrap()
                    .payload_len(),
                8 + size
            );
            if size == 56 {
                // The quoted request's checksum is what the kernel would have sent.
                let m = &got[0].0[48..];
                let acc = checksum::pseudo_v6(
                    &pop.local_v6,
                    &Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9),
                    m.len() as u32,
                    58,
                );
                assert_eq!(checksum::finish(checksum::sum(acc, m)), 0);
                let q = e.probe;
                assert_eq!(
                    verify(&KEY, SESSION, q.dst, q.ident, q.seq, q.data),
                    Verdict::Valid(fields[0].stamp)
                );
            }
        }
        assert_eq!(tx.stats().snapshot().errors, 2);
    }

    /// xorshift64: arbitrary bytes, deterministically.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_is_taken_without_a_panic_and_counted_as_no_probe() {
        let (mut tx, mut rx) = open(Population::default());
        let mut b = TxBatch::new(300, 128);
        let mut state = 0x0123_4567_89ab_cdef;
        for i in 0..280 {
            let len = (next(&mut state) % 129) as usize;
            let slot = b.slot_mut(i).unwrap();
            slot.iter_mut().for_each(|x| *x = next(&mut state) as u8);
            // Never an echo request by chance.
            if matches!(slot[0], 8 | 128) {
                slot[0] = 0x55;
            }
            let dst = if i % 2 == 0 {
                t4(i as u16)
            } else {
                t6(i as u16)
            };
            b.push(dst, len).unwrap();
        }
        // Near misses: too short, a bad checksum, a wrong code, the other family's type.
        let mut near = vec![
            (t4(1), vec![8u8, 0, 0, 0, 0, 1, 0]),
            (t4(1), vec![8u8, 0, 0, 0, 0, 1, 0, 1]),
            (t6(1), vec![128u8, 1, 0, 0, 0, 1, 0, 1]),
            (t6(1), vec![8u8, 0, 0, 0, 0, 1, 0, 1]),
            (t4(1), vec![128u8, 0, 0, 0, 0, 1, 0, 1]),
            (t4(1), vec![]),
        ];
        // An ICMPv4 echo request whose checksum is right but whose code is not 0.
        let mut m = vec![8u8, 1, 0, 0, 0, 1, 0, 1];
        icmp4_checksum(&mut m);
        near.push((t4(1), m));
        let count = b.len() + near.len();
        for (i, (dst, bytes)) in near.iter().enumerate() {
            b.slot_mut(280 + i).unwrap()[..bytes.len()].copy_from_slice(bytes);
            b.push(*dst, bytes.len()).unwrap();
        }
        assert_eq!(tx.send(&b, 0).unwrap(), count);
        assert!(drain(&mut rx, Duration::from_millis(10)).is_empty());
        let c = tx.stats().snapshot();
        assert_eq!((c.not_probes, c.requests, c.queued), (count as u64, 0, 0));
    }

    #[test]
    fn a_packet_too_large_stops_the_batch_as_a_socket_would() {
        let (mut tx, _rx) = open(Population::default());
        let t = Template::new(Family::V4, Layer::Icmp, 32).unwrap();
        let mut b = TxBatch::new(3, MAX_PACKET_V4 + 1);
        for (i, len) in [t.len(), MAX_PACKET_V4 + 1, t.len()]
            .into_iter()
            .enumerate()
        {
            t.prepare(b.slot_mut(i).unwrap()).unwrap();
            b.push(t4(1), len).unwrap();
        }
        match tx.send(&b, 0) {
            Err(SendError::Packet { sent: 1, error }) => {
                assert_eq!(error.raw_os_error(), Some(libc::EMSGSIZE));
            }
            other => panic!("{other:?}"),
        }
        // The caller goes on after the refused packet.
        assert_eq!(tx.send(&b, 2).unwrap(), 1);
    }

    #[test]
    fn every_fate_is_the_populations_rule_and_nothing_else() {
        let pop = Population {
            dead: Select::Modulo {
                modulus: 7,
                residue: 3,
            },
            unreachable: Select::Prefix {
                addr: t4(0x100),
                len: 28,
            },
            seed: 42,
            loss: 0.2,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            duplicate: 0.3,
            forged: 0.3,
            ..Population::default()
        };
        let targets: Vec<IpAddr> = (0..48).map(t4).chain((0x100..0x110).map(t4)).collect();
        let (mut tx, mut rx) = open(pop.clone());
        let mut want = MemCounts::default();
        let mut fields = vec![];
        for k in 0..3u32 {
            let list: Vec<(IpAddr, u64)> = targets
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, u64::from(k) * 1000 + i as u64))
                .collect();
            let (batch, f) = probes(&list, 40);
            assert_eq!(tx.send(&batch, 0).unwrap(), list.len());
            fields.extend(f);
            for &t in &targets {
                want.requests += 1;
                match pop.fate(t, k) {
                    Fate::Lost => want.lost += 1,
                    Fate::Silent => want.silent += 1,
                    Fate::Unreachable { .. } => want.errors += 1,
                    Fate::Reply {
                        duplicated, forged, ..
                    } => {
                        want.replies += 1;
                        want.duplicates += u64::from(duplicated);
                        want.forged += u64::from(forged.is_some());
                    }
                }
            }
        }
        want.queued = want.replies + want.errors + want.duplicates + want.forged;
        want.delivered = want.queued;
        assert!(
            want.lost > 0 && want.silent > 0 && want.errors > 0,
            "{want:?}"
        );
        assert!(want.duplicates > 0 && want.forged > 0, "{want:?}");
        let got = drain(&mut rx, Duration::from_millis(40));
        assert_eq!(tx.stats().snapshot(), want);
        // What the frames say, told apart as the matcher would.
        let (mut replies, mut duplicates, mut forged, mut strangers, mut errors) = (0, 0, 0, 0, 0);
        let mut answered = std::collections::HashSet::new();
        for g in &got {
            match parse(&pop, g) {
                Inbound::EchoReply(r) => {
                    match verify(&KEY, SESSION, r.from, r.ident, r.seq, r.data) {
                        Verdict::Valid(s) => {
                            assert!(g.2 >= s.t_send_ns + 1_000_000);
                            assert!(g.2 < s.t_send_ns + 1_000_000_000);
                            if answered.insert(s.n) {
                                replies += 1;
                            } else {
                                duplicates += 1;
                            }
                        }
                        Verdict::Forged => {
                            forged += 1;
                            strangers += u64::from(r.from == IpAddr::V4(pop.stranger_v4));
                        }
                        Verdict::Foreign => panic!("a foreign reply"),
                    }
                }
                Inbound::Error(e) => {
                    assert!(pop.unreachable.contains(e.probe.dst));
                    errors += 1;
                }
                Inbound::Other { .. } => panic!("other ICMP"),
            }
        }
        assert_eq!(
            (replies, duplicates, forged, errors),
            (want.replies, want.duplicates, want.forged, want.errors)
        );
        assert!(strangers > 0 && strangers < forged, "both kinds of forgery");
        // Deterministic: the same seed, the same fates; another seed, others.
        let other = Population {
            seed: 43,
            ..pop.clone()
        };
        let fates = |p: &Population| -> Vec<Fate> {
            targets
                .iter()
                .flat_map(|&t| (0..3).map(move |k| (t, k)))
                .map(|(t, k)| p.fate(t, k))
                .collect()
        };
        assert_eq!(fates(&pop), fates(&pop.clone()));
        assert_ne!(fates(&pop), fates(&other));
    }

    #[test]
    fn recv_sleeps_until_a_frame_is_due_or_the_timeout() {
        let pop = Population {
            delay: Duration::from_millis(30),
            ..Population::default()
        };
        let (mut tx, mut rx) = open(pop);
        let mut n = 0;
        let t0 = Instant::now();
        assert_eq!(
            rx.recv(Duration::from_millis(20), &mut |_| n += 1).unwrap(),
            0
        );
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(20) && waited < Duration::from_secs(2));
        assert_eq!(rx.recv(Duration::ZERO, &mut |_| n += 1).unwrap(), 0);
        // A frame due in 30 ms: a 1 s wait ends when it is due, not before, not after.
        tx.send(&probes(&[(t4(1), 1)], 32).0, 0).unwrap();
        let t0 = Instant::now();
        let mut got = 0;
        while got == 0 && t0.elapsed() < Duration::from_secs(2) {
            got = rx.recv(Duration::from_secs(1), &mut |_| n += 1).unwrap();
        }
        let waited = t0.elapsed();
        assert_eq!((got, n), (1, 1));
        assert!(waited >= Duration::from_millis(29), "{waited:?}");
        assert!(waited < Duration::from_millis(900), "{waited:?}");
    }

    #[test]
    fn a_full_queue_drops_and_says_so_as_a_socket_would() {
        let pop = Population {
            capacity: 2,
            delay: Duration::ZERO,
            ..Population::default()
        };
        let (mut tx, mut rx) = open(pop);
        let list: Vec<(IpAddr, u64)> = (0..5).map(|i| (t4(i), u64::from(i))).collect();
        tx.send(&probes(&list, 32).0, 0).unwrap();
        assert_eq!(drain(&mut rx, Duration::from_millis(10)).len(), 2);
        let c = rx.stats().snapshot();
        assert_eq!((c.replies, c.queued, c.overflow, c.delivered), (5, 2, 3, 2));
        assert_eq!(rx.kernel_drops().unwrap().socket, 3);
    }

    #[test]
    fn selections() {
        let m = Select::Modulo {
            modulus: 97,
            residue: 13,
        };
        assert!(m.contains(IpAddr::from(Ipv4Addr::from(97 * 1000 + 13))));
        assert!(!m.contains(IpAddr::from(Ipv4Addr::from(97 * 1000 + 14))));
        assert!(m.contains(t6(97 + 13)));
        let zero = Select::Modulo {
            modulus: 0,
            residue: 0,
        };
        assert!(!zero.contains(t4(0)));
        let p = Select::Prefix {
            addr: t4(0x4d00),
            len: 24,
        };
        assert!(p.contains(t4(0x4dff)) && !p.contains(t4(0x4e00)) && !p.contains(t6(1)));
        let all4 = Select::Prefix {
            addr: t4(0),
            len: 0,
        };
        assert!(all4.contains(IpAddr::from([1, 2, 3, 4])) && !all4.contains(t6(1)));
        let host = Select::Prefix {
            addr: t6(7),
            len: 200,
        };
        assert!(host.contains(t6(7)) && !host.contains(t6(6)));
        assert!(Select::Everything.contains(t6(1)) && !Select::Nothing.contains(t6(1)));
        let pop = Population {
            dead: Select::Everything,
            unreachable: Select::List(vec![t4(1)]),
            ..Population::default()
        };
        assert_eq!(pop.host(t4(1)), Host::Unreachable);
        assert_eq!(pop.host(t4(2)), Host::Dead);
        assert_eq!(Population::default().host(t4(2)), Host::Alive);
    }
}
