//! # asdic-fuzz
//!
//! Mutation fuzzing of every parser that reads the network or the operator's files, on the
//! stable toolchain (cargo-fuzz and libFuzzer need nightly's sanitizer flags; this machine
//! has stable Rust only). Each run starts from a seed corpus — real frames captured on the
//! test bed (`fuzz/corpus/frames/`, refreshed by `fuzz/capture-corpus.sh`) and the text
//! examples of `fuzz/corpus/text/` — and applies stacked random mutations (bit flips,
//! interesting bytes and 16-bit values, cuts, inserts, duplicated chunks, splices of two
//! inputs), running every input under `catch_unwind`. Beyond "never panics", targets check
//! oracles:
//!
//! - `frame`: the Ethernet, IPv4, IPv6 and ICMPv6 views never panic on any bytes;
//! - `payload`: a probe payload with any stamp or MAC byte changed never verifies;
//! - `matcher`: genuine replies and errors for probes in flight, mutated, fed to the real
//!   matcher and in-flight table: every reply it accepts is byte-for-byte genuine for a probe
//!   that was sent to the replying address, so a forged or altered frame never becomes a live
//!   host or an RTT;
//! - `targets`, `fleet`: target/blocklist specs and sweep target lines parse or fail, and a
//!   parsed spec's addresses are enumerable.
//!
//! There is no coverage feedback (that needs instrumentation stable Rust does not offer for
//! fuzzing); the seeds are real packets so that mutations start deep in the parsers.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asdic_core::frame::{RxFrame, RxLayer};
use asdic_core::matcher::Matcher;
use asdic_core::table::{InflightTable, ProbeInfo};
use asdic_core::{Event, Outcome};
use asdic_wire::checksum;
use asdic_wire::payload::{self, Key, Numbering, Stamp, Verdict};

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Ethernet / IPv4 / IPv6 / ICMPv6 views.
    Frame,
    /// Probe payload parse and MAC check.
    Payload,
    /// The matcher and in-flight table.
    Matcher,
    /// Target and blocklist specs (addresses, ranges, CIDRs; lists).
    Targets,
    /// Sweep target-file lines.
    Fleet,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [
        Target::Frame,
        Target::Payload,
        Target::Matcher,
        Target::Targets,
        Target::Fleet,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Payload => "payload",
            Target::Matcher => "matcher",
            Target::Targets => "targets",
            Target::Fleet => "fleet",
        }
    }

    /// The target named `s`.
    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    fn text(self) -> bool {
        matches!(self, Target::Targets | Target::Fleet)
    }
}

/// A small, fast, seeded generator (xorshift64*): runs are reproducible from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING8: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, 4, 5, 6, 0x45];
const INTERESTING16: [u16; 10] = [0, 1, 0x7fff, 0x8000, 0xffff, 20, 40, 576, 1280, 1500];

/// Applies 1 to 8 random mutations to `buf`; `other` is another input for splicing. Lengths
/// stay at most `max`.
pub fn mutate(buf: &mut Vec<u8>, other: &[u8], rng: &mut Rng, max: usize) {
    for _ in 0..1 + rng.below(8) {
        let len = buf.len();
        match rng.below(10) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                buf[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                buf[i] = INTERESTING8[rng.below(INTERESTING8.len())];
            }
            3 if len > 1 => {
                let i = rng.below(len - 1);
                let v = INTERESTING16[rng.below(INTERESTING16.len())].to_be_bytes();
                buf[i..i + 2].copy_from_slice(&v);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                buf[i] = rng.next_u64() as u8;
            }
            5 if len > 0 => {
                // Cut: truncation is what a short read or a lying length field looks like.
                let at = rng.below(len);
                buf.truncate(at);
            }
            6 if len < max => {
                let at = rng.below(len + 1);
                let n = (1 + rng.below(16)).min(max - len);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                buf.splice(at..at, bytes);
            }
            7 if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a).min(64);
                buf.drain(a..b);
            }
            8 if len > 0 && len < max => {
                // Duplicate a chunk (repeated headers, options).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let chunk = buf[a..b].to_vec();
                let at = rng.below(len + 1);
                buf.splice(at..at, chunk);
                buf.truncate(max);
            }
            9 if !other.is_empty() => {
                let at = rng.below(buf.len() + 1);
                let from = rng.below(other.len());
                buf.truncate(at);
                buf.extend_from_slice(&other[from..]);
                buf.truncate(max);
            }
            _ => {}
        }
    }
}

/// Loads the seed corpus for `target` from `dir` (`frames/` or `text/` below it).
///
/// # Errors
/// The I/O error when the directory cannot be read.
pub fn load_corpus(dir: &Path, target: Target) -> std::io::Result<Vec<Vec<u8>>> {
    let sub = dir.join(if target.text() { "text" } else { "frames" });
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&sub)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = vec![];
    for p in paths {
        let bytes = std::fs::read(&p)?;
        if target.text() {
            // One seed per line as well as the whole file (a targets or blocklist file).
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push(line.to_vec());
            }
        }
        out.push(bytes);
    }
    Ok(out)
}

/// How long to run.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Inputs at most.
    pub iterations: u64,
    /// Time at most.
    pub time: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs run.
    pub execs: u64,
    /// Seeds it started from.
    pub seeds: usize,
    /// Seconds it took.
    pub secs: f64,
    /// Inputs that panicked or broke an oracle, with what happened (at most 10 kept).
    pub failures: Vec<(Vec<u8>, String)>,
    /// Target-specific counts (matcher: replies accepted, drops…).
    pub counts: Vec<(&'static str, u64)>,
}

/// Runs `target` from `seeds` within `budget`, seeded by `seed`.
pub fn run(target: Target, seeds: &[Vec<u8>], budget: Budget, seed: u64) -> Report {
    let mut rng = Rng::new(seed ^ target.name().len() as u64);
    let mut report = Report {
        seeds: seeds.len(),
        ..Report::default()
    };
    let mut state = match target {
        Target::Matcher => Some(MatchBed::new()),
        _ => None,
    };
    let mut pool: Vec<Vec<u8>> = match &state {
        Some(bed) => bed.seeds(seeds),
        None => seeds.to_vec(),
    };
    if pool.is_empty() {
        pool.push(vec![]);
    }
    let max = if target.text() { 512 } else { 2048 };
    let t0 = Instant::now();
    let mut input = Vec::with_capacity(max);
    while report.execs < budget.iterations
        && (!report.execs.is_multiple_of(256) || t0.elapsed() < budget.time)
    {
        let a = rng.below(pool.len());
        let b = rng.below(pool.len());
        input.clear();
        input.extend_from_slice(&pool[a]);
        if rng.below(16) != 0 {
            mutate(&mut input, &pool[b], &mut rng, max);
            // Most mutations break a checksum, which ends parsing early: half the time, set
            // the checksums right so that the mutation reaches the deeper checks.
            if target == Target::Matcher && rng.below(2) == 0 {
                fix_checksums(&mut input);
            }
        }
        let verdict = catch_unwind(AssertUnwindSafe(|| match target {
            Target::Frame => frame(&input),
            Target::Payload => payload_oracle(&input, &mut rng.clone()),
            Target::Matcher => state.as_mut().map_or(Ok(()), |s| s.feed(&input)),
            Target::Targets => targets(&input),
            Target::Fleet => fleet(&input),
        }));
        let failure = match verdict {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Some(why) = failure
            && report.failures.len() < 10
        {
            report.failures.push((input.clone(), why));
        }
        report.execs += 1;
    }
    report.secs = t0.elapsed().as_secs_f64();
    if let Some(s) = state {
        report.counts = s.counts();
    }
    report
}

/// The packet views: any bytes at any layer.
fn frame(b: &[u8]) -> Result<(), String> {
    use asdic_wire::inbound;
    let _ = inbound::parse_ethernet(b);
    let l3 = b.get(14..).unwrap_or(&[]);
    let _ = inbound::parse_ipv4(l3);
    let _ = inbound::parse_ipv6(l3);
    let _ = inbound::parse_ipv4(b);
    let _ = inbound::parse_ipv6(b);
    let _ = inbound::parse_icmpv6(b.get(54..).unwrap_or(&[]), Ipv6Addr::LOCALHOST, Some(64));
    let _ = inbound::parse_icmpv6(b, Ipv6Addr::LOCALHOST, None);
    Ok(())
}

const KEY: Key = Key::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
const SESSION: u32 = 0x00a5_d1c0;

/// Payload: parse never panics; a genuine payload verifies, and with one stamp or MAC byte
/// changed it does not.
fn payload_oracle(b: &[u8], rng: &mut Rng) -> Result<(), String> {
    let _ = payload::parse(b);
    let target = IpAddr::V4(Ipv4Addr::new(198, 19, b.first().copied().unwrap_or(0), 1));
    let _ = payload::verify(&KEY, SESSION, target, 1, 2, b);
    // Make a genuine payload from the input's first bytes and alter one byte of it.
    let mut n = [0u8; 8];
    for (d, s) in n.iter_mut().zip(b) {
        *d = *s;
    }
    let stamp = Stamp {
        session: SESSION,
        n: u64::from_le_bytes(n),
        cookie: b.len() as u32,
        t_send_ns: 1_795_000_000_000_000_000,
    };
    let (ident, seq) = (0x1234, 0x5678);
    let mac = KEY.mac(target, ident, seq, &stamp);
    let mut p = vec![0u8; payload::LEN];
    payload::emit(&mut p, &stamp, mac).map_err(|e| format!("emit: {e}"))?;
    match payload::verify(&KEY, SESSION, target, ident, seq, &p) {
        Verdict::Valid(s) if s == stamp => {}
        v => return Err(format!("a genuine payload did not verify: {v:?}")),
    }
    let i = rng.below(payload::LEN);
    let was = p[i];
    p[i] ^= 1 << rng.below(8);
    let changed = p[i] != was;
    // All LEN bytes are stamp or MAC: any change must fail the check.
    if changed && let Verdict::Valid(s) = payload::verify(&KEY, SESSION, target, ident, seq, &p) {
        return Err(format!("byte {i} altered and still valid: {s:?}"));
    }
    Ok(())
}

/// Target and blocklist specs.
fn targets(b: &[u8]) -> Result<(), String> {
    use asdic_core::targets::{TargetSpec, parse_lines};
    let text = String::from_utf8_lossy(b);
    for line in text.lines() {
        if let Ok(spec) = TargetSpec::parse(line.trim()) {
            let n = spec.count();
            if n == 0 {
                return Err(format!("{line:?} parsed to an empty spec"));
            }
            let _ = spec.nth(0);
            let _ = spec.nth(n - 1);
        }
    }
    // The raw bytes too (not text, endless lines); what parses becomes a set whose indices
    // and addresses map both ways.
    let _ = parse_lines(b);
    if let Ok(specs) = parse_lines(text.as_bytes()) {
        use asdic_core::set::{TargetList, TargetSet};
        let small: Vec<TargetSpec> = specs.into_iter().filter(|s| s.count() <= 4096).collect();
        let set = TargetSet::of(&small);
        let mut prev = None;
        for i in 0..set.len() {
            let a = set
                .nth(i)
                .ok_or(format!("index {i} of {} has no address", set.len()))?;
            if set.index_of(a) != Some(i) {
                return Err(format!("{a} at {i} is indexed {:?}", set.index_of(a)));
            }
            if prev.is_some_and(|p| p >= a) {
                return Err(format!("{a} at {i} is not above {prev:?}"));
            }
            prev = Some(a);
        }
    }
    Ok(())
}

/// Sweep target-file lines.
fn fleet(b: &[u8]) -> Result<(), String> {
    use asdic_core::fleet::{parse_fleet, parse_line};
    let text = String::from_utf8_lossy(b);
    for line in text.lines() {
        let _ = parse_line(line);
    }
    let _ = parse_fleet(text.as_bytes(), 1 << 24);
    Ok(())
}

/// A matcher with probes in flight, and the genuine payload of each.
struct MatchBed {
    m: Matcher,
    probes: Vec<ProbeInfo>,
    fed: u64,
    replies: u64,
    errors: u64,
    drops: asdic_core::Drops,
}

const PROBES: u64 = 64;
const NUMBERING: Numbering = Numbering::Spread {
    base: 0x4000,
    key: 0x5eed_0001,
};
const T_SEND: u64 = 1_795_000_000_000_000_000;

impl MatchBed {
    fn new() -> Self {
        let mut bed = MatchBed {
            m: Matcher::new(Arc::new(InflightTable::new(1024)), KEY, SESSION, NUMBERING),
            probes: vec![],
            fed: 0,
            replies: 0,
            errors: 0,
            drops: asdic_core::Drops::default(),
        };
        bed.refill();
        bed
    }

    fn target_of(n: u64) -> IpAddr {
        if n.is_multiple_of(2) {
            IpAddr::V4(Ipv4Addr::new(198, 19, 0, n as u8))
        } else {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, n as u16))
        }
    }

    /// A fresh table with probes 0..PROBES in flight (matching consumes them).
    fn refill(&mut self) {
        self.drops.add(&self.m.drops());
        self.m = Matcher::new(Arc::new(InflightTable::new(1024)), KEY, SESSION, NUMBERING);
        self.probes.clear();
        for n in 0..PROBES {
            let info = ProbeInfo {
                n,
                target: Self::target_of(n),
                cookie: n as u32,
                t_send_ns: T_SEND + n,
                attempt: 0,
                class: 0,
            };
            assert!(
                self.m.table().is_some_and(|t| t.claim(&info)),
                "a fresh table takes {PROBES} probes"
            );
            self.probes.push(info);
        }
    }

    /// The genuine echo data (stamp and MAC) of probe `n`.
    fn payload(&self, n: u64) -> Vec<u8> {
        let p = &self.probes[n as usize];
        let (ident, seq) = NUMBERING.ident_seq(n);
        let stamp = Stamp {
            session: SESSION,
            n,
            cookie: p.cookie,
            t_send_ns: p.t_send_ns,
        };
        let mut b = vec![payload::PAD_BYTE; 56];
        let mac = KEY.mac(p.target, ident, seq, &stamp);
        // The payload is the first LEN bytes; the rest is padding.
        let _ = payload::emit(&mut b, &stamp, mac);
        b
    }

    /// Seeds: the captured frames adopted as answers to our probes (the kernel's and the
    /// router's own header layouts, our stamps), plus the frames as captured.
    fn seeds(&self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for (k, f) in frames.iter().enumerate() {
            out.push(f.clone());
            if let Some(a) = self.adopt(f, k as u64 % PROBES) {
                out.push(a);
            }
        }
        out
    }

    /// `frame` (an echo reply or an error quoting an echo request, IPv4 or IPv6) rewritten
    /// to answer probe `n`: addresses, identifiers, stamp and checksums.
    fn adopt(&self, frame: &[u8], n: u64) -> Option<Vec<u8>> {
        let target = Self::target_of(n);
        let (ident, seq) = NUMBERING.ident_seq(n);
        let data = self.payload(n);
        let mut f = frame.to_vec();
        let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
        match (ethertype, target) {
            (0x0800, IpAddr::V4(t)) => {
                let ihl = usize::from(f.get(14)? & 0x0f) * 4;
                let icmp = 14 + ihl;
                let ty = *f.get(icmp)?;
                if ty == 0 {
                    f.get(icmp + 8)?;
                    f.truncate(icmp + 8);
                    requote(&mut f, icmp, ident, seq, &data);
                    f[26..30].copy_from_slice(&t.octets());
                } else if ty == 3 || ty == 11 {
                    // The quoted request: its destination, identifiers and stamp.
                    let q = icmp + 8;
                    let qi = q + usize::from(f.get(q)? & 0x0f) * 4;
                    f.get(qi + 8)?;
                    f[q + 16..q + 20].copy_from_slice(&t.octets());
                    requote(&mut f, qi, ident, seq, &data);
                } else {
                    return None;
                }
                let total = (f.len() - 14) as u16;
                f[16..18].copy_from_slice(&total.to_be_bytes());
            }
            (0x86dd, IpAddr::V6(t)) => {
                let icmp = 54;
                let ty = *f.get(icmp)?;
                if ty == 129 {
                    f.get(icmp + 8)?;
                    f.truncate(icmp + 8);
                    requote(&mut f, icmp, ident, seq, &data);
                    f[22..38].copy_from_slice(&t.octets());
                } else if ty == 1 || ty == 3 {
                    let q = icmp + 8;
                    let qi = q + 40;
                    f.get(qi + 8)?;
                    f[q + 24..q + 40].copy_from_slice(&t.octets());
                    requote(&mut f, qi, ident, seq, &data);
                } else {
                    return None;
                }
                let plen = (f.len() - 54) as u16;
                f[18..20].copy_from_slice(&plen.to_be_bytes());
            }
            _ => return None,
        }
        fix_checksums(&mut f);
        Some(f)
    }

    /// Feeds one frame; checks that every reply event is genuine.
    fn feed(&mut self, frame: &[u8]) -> Result<(), String> {
        self.fed += 1;
        if self.fed.is_multiple_of(2048) {
            self.refill();
        }
        let mut events: Vec<Event> = vec![];
        let f = RxFrame {
            data: frame,
            layer: RxLayer::Ethernet,
            ts_ns: T_SEND + 1_000_000,
            truncated: false,
            realtime: false,
        };
        self.m.on_frame(&f, &mut |e| events.push(e));
        for e in events {
            let Some(n) = e.probe else {
                return Err(format!("a tracked event without its probe: {e:?}"));
            };
            let Some(p) = self.probes.iter().find(|p| p.n == n) else {
                return Err(format!("an event for probe {n} that was never sent"));
            };
            if e.target != p.target {
                return Err(format!(
                    "probe {} answered for {} instead of {}",
                    n, e.target, p.target
                ));
            }
            match e.outcome {
                Outcome::Reply { .. } => {
                    self.replies += 1;
                    // Accepted: the frame must carry probe n's genuine stamp and come from
                    // its target.
                    let genuine = self.payload(n);
                    let stamp = &genuine[..payload::LEN];
                    if !frame.windows(stamp.len()).any(|w| w == stamp) {
                        return Err(format!(
                            "a reply without probe {}'s genuine stamp was accepted",
                            n
                        ));
                    }
                    if !contains_addr(frame, p.target) {
                        return Err(format!(
                            "a reply to probe {} not from {} was accepted",
                            n, p.target
                        ));
                    }
                }
                Outcome::Error { .. } => self.errors += 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn counts(mut self) -> Vec<(&'static str, u64)> {
        self.refill();
        let d = self.drops;
        vec![
            ("replies accepted", self.replies),
            ("errors matched", self.errors),
            ("malformed", d.malformed),
            ("forged", d.forged),
            ("foreign", d.foreign),
            ("unmatched errors", d.unmatched_errors),
            ("other ICMP", d.other),
        ]
    }
}

/// Recomputes the IPv4 header and ICMP checksums, or the ICMPv6 checksum, of an Ethernet
/// frame, over the lengths its headers claim (when the frame holds them).
pub fn fix_checksums(f: &mut [u8]) {
    match f.get(12..14) {
        Some([0x08, 0x00]) if f.len() >= 34 => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            if ihl < 20 || 14 + ihl > f.len() {
                return;
            }
            f[24..26].fill(0);
            let c = checksum::checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            let end = (14 + total).min(f.len());
            let icmp = 14 + ihl;
            if end >= icmp + 4 {
                f[icmp + 2..icmp + 4].fill(0);
                let c = checksum::checksum(&f[icmp..end]);
                f[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
            }
        }
        Some([0x86, 0xdd]) if f.len() >= 58 => {
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let end = (54 + plen).min(f.len());
            if end < 58 {
                return;
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&f[22..38]);
            dst.copy_from_slice(&f[38..54]);
            f[56..58].fill(0);
            let acc = checksum::pseudo_v6(
                &Ipv6Addr::from(src),
                &Ipv6Addr::from(dst),
                (end - 54) as u32,
                58,
            );
            let c = checksum::finish(checksum::sum(acc, &f[54..end]));
            f[56..58].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// Writes an echo message's identifiers at `at + 4` and `data` after its 8-byte header: over
/// what is there (a quote keeps its length), or appended (a reply cut at its header).
fn requote(f: &mut Vec<u8>, at: usize, ident: u16, seq: u16, data: &[u8]) {
    f[at + 4..at + 6].copy_from_slice(&ident.to_be_bytes());
    f[at + 6..at + 8].copy_from_slice(&seq.to_be_bytes());
    let start = at + 8;
    let end = (start + data.len()).min(f.len());
    f[start..end].copy_from_slice(&data[..end - start]);
    if f.len() == start {
        f.extend_from_slice(data);
    }
}

fn contains_addr(frame: &[u8], a: IpAddr) -> bool {
    let bytes: Vec<u8> = match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    frame.windows(bytes.len()).any(|w| w == bytes.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(t: Target) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        load_corpus(&dir, t).expect("the seed corpus is in the repository")
    }

    fn bounded(t: Target, iterations: u64) -> Report {
        let r = run(
            t,
            &corpus(t),
            Budget {
                iterations,
                time: Duration::from_secs(60),
            },
            0x5eed,
        );
        assert!(
            r.failures.is_empty(),
            "{}: {} failures, first: {} on {:02x?}",
            t.name(),
            r.failures.len(),
            r.failures[0].1,
            r.failures[0].0
        );
        assert_eq!(r.execs, iterations);
        r
    }

    #[test]
    fn the_corpus_has_real_frames_of_every_kind() {
        let frames = corpus(Target::Frame);
        assert!(frames.len() >= 12, "{} frames", frames.len());
        let bed = MatchBed::new();
        // Replies and both errors adopt, in both families.
        let adopted = frames.iter().filter_map(|f| bed.adopt(f, 2)).count();
        let adopted6 = frames.iter().filter_map(|f| bed.adopt(f, 3)).count();
        assert!(adopted >= 2 && adopted6 >= 2, "{adopted} {adopted6}");
    }

    #[test]
    fn adopted_seeds_are_matched_as_genuine() {
        let mut bed = MatchBed::new();
        let seeds = bed.seeds(&corpus(Target::Matcher));
        for s in &seeds {
            bed.feed(s).unwrap();
        }
        // Every adopted reply and error answers its probe: the seeds reach the deep paths.
        assert!(bed.replies >= 2, "{} replies", bed.replies);
        assert!(bed.errors >= 2, "{} errors", bed.errors);
    }

    #[test]
    fn mutations_stay_bounded_and_change_inputs() {
        let mut rng = Rng::new(1);
        let seed = vec![0x45u8; 100];
        let mut changed = 0;
        for _ in 0..1000 {
            let mut b = seed.clone();
            mutate(&mut b, &[1, 2, 3], &mut rng, 128);
            assert!(b.len() <= 128);
            changed += usize::from(b != seed);
        }
        assert!(changed > 900, "{changed}");
    }

    // The bounded passes CI runs (the longer run is `cargo run --profile fuzz -p asdic-fuzz`).
    #[test]
    fn frames_never_panic() {
        bounded(Target::Frame, 100_000);
    }

    #[test]
    fn altered_payloads_never_verify() {
        bounded(Target::Payload, 100_000);
    }

    #[test]
    fn the_matcher_accepts_only_genuine_replies() {
        let r = bounded(Target::Matcher, 100_000);
        let get = |k| r.counts.iter().find(|c| c.0 == k).map_or(0, |c| c.1);
        // The run reached every verdict: genuine replies, forged ones, malformed frames.
        assert!(get("replies accepted") > 0, "{:?}", r.counts);
        assert!(get("forged") > 0, "{:?}", r.counts);
        assert!(get("malformed") > 0, "{:?}", r.counts);
    }

    #[test]
    fn target_and_fleet_specs_never_panic() {
        bounded(Target::Targets, 50_000);
        bounded(Target::Fleet, 50_000);
    }
}
