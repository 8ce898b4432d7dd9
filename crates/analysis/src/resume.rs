//! What an unfinished scan left in its parts, read back for `asdic scan --resume`.
//!
//! Every part of a scan records, besides its rows, the scan's fingerprint
//! (`asdic.scan_digest`) and its watermark (`asdic.watermark`: per family, the point of the
//! scan below which every probe's answers are in this part or an earlier one). A resumed scan
//! reads them all ([`EarlierScan::read`]): the highest watermark is where it starts; then
//! their rows ([`for_each_row`]): the targets already answered (or refused by the local
//! stack) are not probed again and their later answers are not rows again, and timeouts
//! already written are not written twice. The rows are streamed, never held: the caller
//! keeps what it needs as one bit per target of the scan's space.

use core::net::IpAddr;
use std::collections::BTreeMap;
use std::ffi::OsString;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use asdic_core::stateless::Frontier;
use asdic_fs::Dir;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::meta::{RunMeta, RunMode};
use crate::scan::{ScanOutcome, scan_col};
use crate::schema::SCHEMA_VERSION;

/// FNV-1a over 64 bits: a fingerprint that is the same on every machine, build and version
/// (unlike `std`'s hashers).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds one word (16 little-endian bytes).
    pub fn word(&mut self, w: u128) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The fingerprint, 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Frontiers by family name (`V4`, `V6`), as `asdic.watermark` writes them:
/// `V4=0:12345,V6=1:0`.
pub fn format_frontiers(f: &BTreeMap<String, Frontier>) -> String {
    f.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The frontiers `s` holds ([`format_frontiers`]'s form).
///
/// # Errors
/// A message naming the part that does not parse.
pub fn parse_frontiers(s: &str) -> core::result::Result<BTreeMap<String, Frontier>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not FAMILY=PASS:POSITION"))?;
        out.insert(k.to_string(), v.parse()?);
    }
    Ok(out)
}

/// What the parts of an earlier run of a scan hold.
#[derive(Debug, Clone, Default)]
pub struct EarlierScan {
    /// Its parts, in order.
    pub parts: usize,
    /// Their rows.
    pub rows: u64,
    /// The run's seed (`asdic.seed`).
    pub seed: Option<u64>,
    /// Its fingerprint (`asdic.scan_digest`), the same in every part.
    pub digest: Option<String>,
    /// Per family, the highest watermark of its parts: where a resumption starts.
    pub watermark: BTreeMap<String, Frontier>,
    /// Per family, the highest frontier recorded: the earlier run sent every probe below it.
    pub frontier: BTreeMap<String, Frontier>,
    /// The resumptions so far (`asdic.resumed` of the last part that has it).
    pub history: Option<String>,
    /// The metadata of the last part (the earlier run's parameters).
    pub last: RunMeta,
}

impl EarlierScan {
    /// Reads the metadata of parts `names` of open directory `dir` (their footers only).
    ///
    /// # Errors
    /// [`Error::Schema`] for a part of another schema version or mode, one without a
    /// fingerprint, or parts of two scans; [`Error::Fs`] / [`Error::Parquet`] for a part that
    /// cannot be read.
    pub fn read(dir: &Dir, names: &[OsString]) -> Result<EarlierScan> {
        let mut e = EarlierScan::default();
        for name in names {
            let at = || dir.join(name).display().to_string();
            let f = dir.read_file(name)?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(f)?;
            let pairs = crate::parts::pairs_of(builder.metadata().file_metadata());
            let meta = RunMeta::from_pairs(&pairs);
            if meta.mode != Some(RunMode::Scan) {
                return Err(Error::Schema(format!("{}: not a part of a scan", at())));
            }
            let version = crate::version::version_of(&pairs).unwrap_or(0);
            if version != SCHEMA_VERSION {
                return Err(Error::Schema(format!(
                    "{}: a part of schema version {version}; this asdic resumes scans of \
                     version {SCHEMA_VERSION} only",
                    at()
                )));
            }
            let Some(digest) = meta.scan_digest.clone() else {
                return Err(Error::Schema(format!(
                    "{}: has no asdic.scan_digest (written by an asdic that could not \
                     resume): recover it instead",
                    at()
                )));
            };
            match &e.digest {
                Some(d) if *d != digest => {
                    return Err(Error::Schema(format!(
                        "{}: a part of another scan (fingerprint {digest}, the others {d})",
                        at()
                    )));
                }
                _ => e.digest = Some(digest),
            }
            if meta.seed.is_some() {
                e.seed = meta.seed;
            }
            for (key, into) in [
                (&meta.watermark, &mut e.watermark),
                (&meta.frontier, &mut e.frontier),
            ] {
                if let Some(s) = key {
                    let f =
                        parse_frontiers(s).map_err(|m| Error::Schema(format!("{}: {m}", at())))?;
                    for (k, v) in f {
                        let slot = into.entry(k).or_default();
                        *slot = (*slot).max(v);
                    }
                }
            }
            if meta.resumed.is_some() {
                e.history = meta.resumed.clone();
            }
            e.rows += u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            e.parts += 1;
            e.last = meta;
        }
        Ok(e)
    }
}

/// What a row of an earlier run says of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// It answered (echo reply or ICMP error) or the local stack refused its probe: never
    /// probed again, never a row again.
    Answered,
    /// Try `attempt` timed out, and the row says so.
    TimedOut(u8),
}

/// Calls `f` with the target and what each row of parts `names` (in `dir`) says of it, a
/// batch of rows in memory at a time (their number is [`EarlierScan::rows`], from the
/// footers).
///
/// # Errors
/// [`Error::Fs`] / [`Error::Parquet`] for a part that cannot be read, [`Error::Schema`] for
/// one without a scan's columns.
pub fn for_each_row(
    dir: &Dir,
    names: &[OsString],
    mut f: impl FnMut(IpAddr, Earlier),
) -> Result<()> {
    for name in names {
        let at = || dir.join(name).display().to_string();
        let builder = ParquetRecordBatchReaderBuilder::try_new(dir.read_file(name)?)?;
        let roots: Vec<usize> = [&scan_col::TARGET, &scan_col::OUTCOME, &scan_col::ATTEMPT]
            .iter()
            .filter_map(|c| builder.schema().index_of(c.name).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| Error::Schema(format!("{}: no column {name}", at())))
            };
            let target = col(scan_col::TARGET.name)?.as_string::<i32>();
            let outcome = col(scan_col::OUTCOME.name)?.as_string::<i32>();
            let attempt = col(scan_col::ATTEMPT.name)?.as_primitive::<UInt8Type>();
            for i in 0..batch.num_rows() {
                let Ok(t) = target.value(i).parse::<IpAddr>() else {
                    continue;
                };
                match ScanOutcome::parse(outcome.value(i)) {
                    Some(ScanOutcome::Reply | ScanOutcome::Error | ScanOutcome::SendFailed) => {
                        f(t, Earlier::Answered);
                    }
                    Some(ScanOutcome::Timeout) => f(t, Earlier::TimedOut(attempt.value(i))),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontiers_round_trip_and_the_fingerprint_is_fixed() {
        let s = "V4=0:12345,V6=1:0";
        let f = parse_frontiers(s).unwrap();
        assert_eq!(format_frontiers(&f), s);
        assert_eq!(
            f["V4"],
            Frontier {
                attempt: 0,
                position: 12_345
            }
        );
        assert!(parse_frontiers("V4=x").is_err());
        assert!(parse_frontiers("V4").is_err());
        // FNV-1a of one zero word, as every build computes it.
        let mut h = Fnv::default();
        h.word(0);
        let once = h.hex();
        let mut again = Fnv::default();
        again.word(0);
        assert_eq!(once, again.hex());
        again.word(1);
        assert_ne!(once, again.hex());
        assert_eq!(Fnv::default().hex(), "cbf29ce484222325");
    }
}
