//! What a run starts from: targets from arguments, files or stdin; identifiers, keys and
//! seeds; the sender's and receiver's parameters; table sizes.

use std::io::{BufReader, IsTerminal};
use std::path::Path;
use std::time::Duration;

use asdic_analysis::counted;
use asdic_core::set::{SetBuilder, TargetList, TargetSet};
use asdic_core::source::Source;
use asdic_core::targets::{self, TargetError, TargetSpec};
use asdic_receiver::rx::RxConfig;
use asdic_sender::tx::SenderConfig;
use asdic_wire::payload::{Key, Numbering};

use crate::Fail;
use crate::args::IdChoice;
use crate::engines::EngineOptions;
use asdic_runtime::Work;

pub use asdic_runtime::engines::Ids;

/// Fresh identifiers for a run: numbered as `--id` asks, a random session and MAC key.
pub fn ids(id: IdChoice) -> Ids {
    let numbering = match id {
        IdChoice::Random => Numbering::Spread {
            base: random_u64() as u16,
            key: random_u64() as u32,
        },
        IdChoice::Fixed(ident) => Numbering::Fixed {
            ident,
            key: random_u64() as u32,
        },
    };
    Ids {
        numbering,
        session: random_u64() as u32,
        key: Key::new(random_u64(), random_u64()),
    }
}

/// A pipeline's work: sending `rate` probes/s of `source`'s targets, each probe waiting
/// `wait` for an answer and retried `retries` times, events in RX batches of `events`.
pub fn work(
    rate: f64,
    o: &EngineOptions,
    ids: Ids,
    wait: Duration,
    retries: u8,
    events: usize,
    source: Box<dyn Source + Send>,
) -> Work {
    let cfg = SenderConfig {
        rate,
        batch: o.batch,
        per_call: false,
        ttl: o.ttl,
        numbering: ids.numbering,
        session: ids.session,
        key: ids.key,
        retries: retries > 0,
        flow: None,
    };
    let rx_cfg = RxConfig {
        timeout: wait,
        retries,
        poll: Duration::from_millis(10),
        batch: events,
        clock_step: None,
    };
    Work {
        sender: cfg,
        receiver: rx_cfg,
        source,
        scan: vec![],
        flow_source: None,
    }
}

/// A tracked run's in-flight table: slots for `rate` probes/s waiting `wait`, or for the
/// `most` probes its schedule can have in flight (`schedule` says why) when fewer, within
/// what the numbering tells apart; and the one line that says what bounds it.
pub fn table_for(
    ids: Ids,
    rate: f64,
    wait: Duration,
    most: u64,
    schedule: &str,
) -> (usize, String) {
    let by_rate = asdic_core::table::slots_for(rate, wait);
    let slots = asdic_core::table::slots_for_at_most(rate, wait, most).min(ids.max_slots());
    let why = if slots == ids.max_slots() && slots < by_rate.min(most.saturating_mul(2)) {
        format!(
            "the most the identifiers tell apart (more in flight wait for a slot: the table, \
             not --rate, then caps the rate at about {:.0}/s)",
            slots as f64 / 2.0 / (wait.as_secs_f64() + 0.1)
        )
    } else if slots < by_rate {
        format!("{schedule}, fewer than --rate × the timeout")
    } else {
        format!("{rate:.0} probes/s × {wait:?} + 100 ms, twice over")
    };
    // The table rounds up to a power of two.
    let cap = slots.max(2).next_power_of_two();
    let bytes = cap * asdic_core::table::SLOT_BYTES;
    let line = format!(
        "in-flight table: {cap} slots ({}), bounded by {why}",
        human_bytes(bytes)
    );
    (slots as usize, line)
}

/// Bytes as KiB, MiB or GiB (binary), one decimal.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Calls `f` with each target of the arguments, then of `file` (or stdin: with `-`, or when
/// there is neither and stdin is not a terminal), read a line at a time; `false` when there
/// were none.
fn each_spec(
    args: &[String],
    file: Option<&Path>,
    mut f: impl FnMut(TargetSpec) -> Result<(), TargetError>,
) -> Result<bool, Fail> {
    let usage = |m: String| Fail::Usage(m);
    let mut any = false;
    for t in args {
        let spec = TargetSpec::parse(t).map_err(|e| usage(format!("target {e}")))?;
        f(spec).map_err(|e| usage(format!("target {t}: {e}")))?;
        any = true;
    }
    let mut count = |s| {
        any = true;
        f(s)
    };
    let from_stdin = file.is_some_and(|f| f.as_os_str() == "-")
        || (args.is_empty() && file.is_none() && !std::io::stdin().is_terminal());
    if from_stdin {
        targets::for_each_spec(std::io::stdin().lock(), &mut count)
            .map_err(|e| usage(format!("stdin: {e}")))?;
    } else if let Some(f) = file {
        each_in_file(f, "--file", &mut count)?;
    }
    Ok(any)
}

fn no_targets() -> Fail {
    Fail::Usage("no targets: give addresses or CIDRs as arguments, --file FILE, or on stdin".into())
}

/// Targets from arguments, then `file` (or stdin), as a list of at most `max_entries`
/// specs.
pub fn read_specs(
    args: &[String],
    file: Option<&Path>,
    max_entries: u64,
) -> Result<Vec<TargetSpec>, Fail> {
    note_host_bits(args);
    let mut specs = vec![];
    if !each_spec(args, file, push_within(&mut specs, max_entries))? {
        return Err(no_targets());
    }
    Ok(specs)
}

/// Targets from arguments, then `file` (or stdin), as a compact set of at most `max_total`
/// addresses (duplicates counted as they are read).
pub fn read_set(args: &[String], file: Option<&Path>, max_total: u128) -> Result<TargetSet, Fail> {
    note_host_bits(args);
    let mut b = SetBuilder::new(max_total, MAX_ENTRIES);
    if !each_spec(args, file, |s| b.add(s))? {
        return Err(no_targets());
    }
    let total = b.total();
    let set = b
        .finish()
        .map_err(|e| Fail::Usage(format!("targets: {e}")))?;
    if let Some(merged) = duplicates(total, set.len()) {
        say!("asdic: {merged}");
    }
    Ok(set)
}

/// "N duplicate addresses merged: each probed once", when `total` addresses were listed and
/// `distinct` are different.
pub fn duplicates(total: u128, distinct: u64) -> Option<String> {
    let extra = total.saturating_sub(u128::from(distinct));
    (extra > 0).then(|| {
        format!(
            "{} merged: each target is probed once",
            counted(
                u64::try_from(extra).unwrap_or(u64::MAX),
                "duplicate address",
                "duplicate addresses"
            )
        )
    })
}

/// Says which command-line prefixes were written with host bits set (`198.19.0.1/24`): every
/// address of the prefix is probed, which the writer may not have meant; never silently.
pub fn note_host_bits(args: &[String]) {
    if let Some(line) = host_bits(args) {
        say!("asdic: {line}");
    }
}

/// The line [`note_host_bits`] says, if any.
fn host_bits(args: &[String]) -> Option<String> {
    let odd: Vec<String> = args
        .iter()
        .flat_map(|a| a.split_whitespace())
        .filter_map(|a| {
            let (addr, _) = a.split_once('/')?;
            let ip: std::net::IpAddr = addr.parse().ok()?;
            let spec = TargetSpec::parse(a).ok()?;
            (spec.base != ip).then(|| format!("{a} is {}/{}", spec.base, spec.prefix))
        })
        .collect();
    (!odd.is_empty()).then(|| {
        format!(
            "host bits set in {}: every address of the prefix is probed",
            odd.join(", ")
        )
    })
}

/// A scan's targets: prefixes as read, single addresses in a compact set.
#[derive(Debug)]
pub struct Listed {
    /// Prefixes (of more than one address).
    pub prefixes: Vec<TargetSpec>,
    /// Single addresses.
    pub singles: TargetSet,
    /// The first few single addresses, to explain an empty space.
    pub first: Vec<TargetSpec>,
}

/// Targets from arguments, then `file` (or stdin), for a scan: at most [`MAX_ENTRIES`]
/// entries; single addresses held at 4 or 16 bytes each.
pub fn read_listed(args: &[String], file: Option<&Path>) -> Result<Listed, Fail> {
    note_host_bits(args);
    let mut b = SetBuilder::new(u128::MAX, MAX_ENTRIES);
    let (mut prefixes, mut first) = (vec![], vec![]);
    let mut entries = 0u64;
    let any = each_spec(args, file, |s| {
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(TargetError::TooManyEntries(MAX_ENTRIES));
        }
        if s.count() > 1 {
            prefixes.push(s);
            return Ok(());
        }
        if first.len() < 16 {
            first.push(s);
        }
        b.add(s)
    })?;
    if !any {
        return Err(no_targets());
    }
    let singles = b
        .finish()
        .map_err(|e| Fail::Usage(format!("targets: {e}")))?;
    Ok(Listed {
        prefixes,
        singles,
        first,
    })
}

/// Most entries a target list may hold (lines' addresses and prefixes, duplicates
/// included): 2^28.
pub const MAX_ENTRIES: u64 = 1 << 28;

/// Addresses and prefixes from a file (`flag` names the option in errors).
pub fn read_cidr_file(f: &Path, flag: &str) -> Result<Vec<TargetSpec>, Fail> {
    let mut out = vec![];
    each_in_file(f, flag, push_within(&mut out, MAX_ENTRIES))?;
    Ok(out)
}

/// A spec callback that appends to `out`, refusing the spec past `max` entries.
fn push_within(
    out: &mut Vec<TargetSpec>,
    max: u64,
) -> impl FnMut(TargetSpec) -> Result<(), TargetError> + '_ {
    move |s| {
        if out.len() as u64 >= max {
            return Err(TargetError::TooManyEntries(max));
        }
        out.push(s);
        Ok(())
    }
}

fn each_in_file(
    f: &Path,
    flag: &str,
    each: impl FnMut(TargetSpec) -> Result<(), TargetError>,
) -> Result<(), Fail> {
    let file =
        std::fs::File::open(f).map_err(|e| Fail::Usage(format!("{flag} {}: {e}", f.display())))?;
    targets::for_each_spec(BufReader::with_capacity(1 << 16, file), each)
        .map_err(|e| Fail::Usage(format!("{flag} {}: {e}", f.display())))
}

/// 64 random bits from the OS (time-derived if it has no entropy source).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom only fails without any OS entropy source; fall back to time then.
    if getrandom::fill(&mut b).is_err() {
        return asdic_engine::now_ns().rotate_left(17) ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bits_and_duplicates_are_said() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            host_bits(&args(&[
                "198.19.0.1/24",
                "198.19.1.0/24",
                "2001:db8::1/64 198.19.0.9"
            ])),
            Some(
                "host bits set in 198.19.0.1/24 is 198.19.0.0/24, 2001:db8::1/64 is \
                 2001:db8::/64: every address of the prefix is probed"
                    .to_string()
            )
        );
        assert_eq!(
            host_bits(&args(&["198.19.0.0/24", "198.19.0.7", "x/3"])),
            None
        );
        assert_eq!(duplicates(3, 3), None);
        assert_eq!(
            duplicates(4, 3).as_deref(),
            Some("1 duplicate address merged: each target is probed once")
        );
        assert!(
            duplicates(258, 256)
                .unwrap()
                .starts_with("2 duplicate addresses")
        );
    }

    #[test]
    fn the_table_line_names_what_bounds_the_table() {
        let ids = ids(IdChoice::Random);
        let s = Duration::from_secs(1);
        // 25 targets pinged at -R 1000000: the schedule bounds it, not the rate.
        let (slots, line) = table_for(ids, 1e6, s, 50, "25 targets × 2 probes each");
        assert_eq!(slots, 1024);
        assert!(line.contains("1024 slots (48.0 KiB)"), "{line}");
        assert!(
            line.contains("25 targets × 2 probes each, fewer than"),
            "{line}"
        );
        // A rate the schedule may reach: the rate bounds it.
        let (slots, line) = table_for(ids, 1000.0, s, u64::MAX, "");
        assert_eq!(slots, 2200);
        assert!(line.contains("4096 slots"), "{line}");
        assert!(line.contains("1000 probes/s × 1s"), "{line}");
        // Beyond what the identifiers tell apart: said, with the rate that leaves.
        let (slots, line) = table_for(ids, 1e7, s, u64::MAX, "");
        assert_eq!(slots as u64, ids.max_slots());
        assert!(
            line.contains("the most the identifiers tell apart"),
            "{line}"
        );
    }
}
