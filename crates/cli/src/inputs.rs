//! What a run starts from: targets from arguments, files or stdin; identifiers, keys and
//! seeds; the sender's and receiver's parameters; table sizes.

use std::io::{BufReader, IsTerminal};
use std::path::Path;
use std::time::Duration;

use asdic_core::source::Source;
use asdic_core::targets::{self, TargetSpec};
use asdic_receiver::rx::RxConfig;
use asdic_sender::tx::SenderConfig;
use asdic_wire::payload::{Key, Numbering};

use crate::Fail;
use crate::args::IdChoice;
use crate::engines::EngineOptions;
use crate::pipeline::Work;

/// What identifies a run's probes: shared by its pipelines.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    /// How probe numbers map to (identifier, sequence).
    pub numbering: Numbering,
    /// The run's session id.
    pub session: u32,
    /// The run's MAC key.
    pub key: Key,
}

impl Ids {
    /// Fresh identifiers for a run: numbered as `--id` asks, a random session and MAC key.
    pub fn new(id: IdChoice) -> Self {
        let numbering = match id {
            IdChoice::Random => Numbering::Spread {
                base: random_u64() as u16,
            },
            IdChoice::Fixed(ident) => Numbering::Fixed { ident },
        };
        Ids {
            numbering,
            session: random_u64() as u32,
            key: Key::new(random_u64(), random_u64()),
        }
    }

    /// Most in-flight slots the numbering tells apart: 2^16 with one fixed identifier (the
    /// sequence alone), 2^21 with a spread one.
    pub fn max_slots(&self) -> u64 {
        asdic_core::table::max_slots(self.numbering)
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
        ttl: o.ttl,
        numbering: ids.numbering,
        session: ids.session,
        key: ids.key,
        retries: retries > 0,
    };
    let rx_cfg = RxConfig {
        timeout: wait,
        retries,
        poll: Duration::from_millis(10),
        batch: events,
    };
    Work {
        sender: cfg,
        receiver: rx_cfg,
        source,
        scan: None,
    }
}

/// Targets from arguments, then `file` (or stdin: with `-`, or when there is neither and
/// stdin is not a terminal).
pub fn read_specs(args: &[String], file: Option<&Path>) -> Result<Vec<TargetSpec>, Fail> {
    let usage = |m: String| Fail::Usage(m);
    let mut specs = vec![];
    for t in args {
        specs.push(TargetSpec::parse(t).map_err(|e| usage(format!("target {e}")))?);
    }
    let from_stdin = file.is_some_and(|f| f.as_os_str() == "-")
        || (args.is_empty() && file.is_none() && !std::io::stdin().is_terminal());
    if from_stdin {
        let more = targets::parse_lines(std::io::stdin().lock())
            .map_err(|e| usage(format!("stdin: {e}")))?;
        specs.extend(more);
    } else if let Some(f) = file {
        specs.extend(read_cidr_file(f, "--file")?);
    }
    if specs.is_empty() {
        return Err(usage(
            "no targets: give addresses or CIDRs as arguments, --file FILE, or on stdin".into(),
        ));
    }
    Ok(specs)
}

/// Addresses and prefixes from a file (`flag` names the option in errors).
pub fn read_cidr_file(f: &Path, flag: &str) -> Result<Vec<TargetSpec>, Fail> {
    let file =
        std::fs::File::open(f).map_err(|e| Fail::Usage(format!("{flag} {}: {e}", f.display())))?;
    targets::parse_lines(BufReader::new(file))
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
