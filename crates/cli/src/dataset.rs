//! `--dataset DIR` for the runs that write one result file at their end (ping, trace): the
//! file becomes the one part of the run's partition, `DIR/run=RUN/part-000000.parquet`,
//! marked `_SUCCESS` (or `_STOPPED` after a signal) once it is durable. Scans and sweeps
//! write their partitions part by part (`asdic_analysis::PartedSink::in_dataset`).

use std::path::{Path, PathBuf};

use asdic_analysis::{partition_taken, write_marker};

use crate::Fail;

/// Whether `c` may appear in a partition value (`--run-id`, `--agent`, a host name): safe in
/// a directory name and in a Hive `key=value`.
pub fn partition_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// A run's partition of a dataset.
#[derive(Debug, Clone)]
pub struct RunPartition {
    /// `DIR/run=RUN`.
    pub dir: PathBuf,
    /// RUN.
    pub run_id: String,
}

impl RunPartition {
    /// The partition of run `run_id` (default: the UTC start time and the session, which no
    /// other run shares) in `dataset`, created now; refused if it already holds results.
    pub fn create(dataset: &Path, run_id: Option<&str>, session: u32) -> Result<Self, Fail> {
        let run_id = match run_id {
            Some(r) => r.to_string(),
            None => {
                let secs = asdic_engine::now_ns() / 1_000_000_000;
                let t = asdic_analysis::clock::Utc::from_unix(secs);
                format!(
                    "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{session:08x}",
                    t.year, t.month, t.day, t.hour, t.minute, t.second
                )
            }
        };
        let dir = dataset.join(format!("run={run_id}"));
        let usage = |e: String| Fail::Usage(format!("--dataset {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(|e| usage(e.to_string()))?;
        if partition_taken(&dir).map_err(|e| usage(e.to_string()))? {
            return Err(usage(
                "holds the results of an earlier run (choose another --run-id)".into(),
            ));
        }
        Ok(RunPartition { dir, run_id })
    }

    /// The partition `--dataset` and `--run-id` ask for, if any (see [`RunPartition::create`]).
    pub fn asked(
        dataset: Option<&Path>,
        run_id: Option<&str>,
        session: u32,
    ) -> Result<Option<Self>, Fail> {
        dataset
            .map(|d| RunPartition::create(d, run_id, session))
            .transpose()
    }

    /// Where the run's one result file goes.
    pub fn part(&self) -> PathBuf {
        self.dir.join("part-000000.parquet")
    }

    /// Marks the partition once its part is durable: `_SUCCESS` for a run that `complete`d,
    /// `_STOPPED` for one a signal ended; `pairs` (its metadata) go in the marker.
    pub fn finish(&self, complete: bool, pairs: &[(String, String)]) -> anyhow::Result<()> {
        write_marker(&self.dir, complete, pairs)?;
        Ok(())
    }
}
