//! `--dataset DIR` for the runs that write one result file at their end (ping, trace): the
//! file becomes the one part of the run's partition,
//! `DIR/schema_version=2/run=RUN/part-000000.parquet`,
//! marked `_SUCCESS` (or `_STOPPED` after a signal) once it is durable. Scans and sweeps
//! write their partitions part by part (`asdic_analysis::PartedSink::in_dataset`).

use std::path::Path;

use asdic_analysis::{partition, partition_taken, version_level, write_marker};
use asdic_fs::Dir;

use crate::Fail;
use crate::output::open_fail;

/// Whether `c` may appear in a partition value (`--run-id`, `--agent`, a host name): safe in
/// a directory name and in a Hive `key=value`.
pub fn partition_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// A run's partition of a dataset.
#[derive(Debug, Clone)]
pub struct RunPartition {
    /// `DIR/schema_version=2/run=RUN`, open.
    pub dir: Dir,
}

impl RunPartition {
    /// The run's name: `run_id` as given, or the UTC start time and the session, which no
    /// other run shares.
    pub fn name(run_id: Option<&str>, session: u32) -> String {
        match run_id {
            Some(r) => r.to_string(),
            None => {
                let secs = asdic_engine::now_ns() / 1_000_000_000;
                let t = asdic_analysis::clock::Utc::from_unix(secs);
                format!(
                    "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{session:08x}",
                    t.year, t.month, t.day, t.hour, t.minute, t.second
                )
            }
        }
    }

    /// The partition of run `run_id` in `dataset`, created now (after the capability drop:
    /// `dropped_dac` explains a refused permission); refused if it already holds results.
    pub fn open(dataset: &Path, run_id: &str, dropped_dac: bool) -> Result<Self, Fail> {
        let levels = [version_level(), format!("run={run_id}")];
        let dir = partition(dataset, &levels).map_err(|e| match e {
            asdic_analysis::Error::Fs(e) => open_fail("--dataset", e, dropped_dac),
            e => Fail::Usage(format!("--dataset {e}")),
        })?;
        let usage = |e: String| Fail::Usage(format!("--dataset {}: {e}", dir.path().display()));
        if partition_taken(&dir).map_err(|e| usage(e.to_string()))? {
            return Err(usage(
                "holds the results of an earlier run (`asdic recover` checks them; choose \
                 another --run-id)"
                    .into(),
            ));
        }
        Ok(RunPartition { dir })
    }

    /// Marks the partition once its part is durable: `_SUCCESS` for a run that `complete`d,
    /// `_STOPPED` for one a signal ended; `pairs` (its metadata) go in the marker.
    pub fn finish(&self, complete: bool, pairs: &[(String, String)]) -> anyhow::Result<()> {
        write_marker(&self.dir, complete, pairs)?;
        Ok(())
    }
}
