//! Durable results of `ping` and `trace`, whose rows (per-target statistics, per-target paths)
//! are complete only when the run ends: every `--sync-every`, the rows so far are written to
//! `<out>.partial`, a complete Parquet file replaced atomically (written to `.tmp`, fsynced,
//! renamed), so a killed run leaves its results as of at most one period before the kill. The
//! final file replaces it at the end.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use asdic_analysis::{ParquetSink, Record, RunMeta, Sink};

/// The snapshots of one output file.
#[derive(Debug)]
pub struct Snapshots {
    partial: PathBuf,
    meta: Vec<(String, String)>,
    every: Duration,
    last: Instant,
    failed: bool,
}

/// `<out>.partial`.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".partial");
    PathBuf::from(s)
}

impl Snapshots {
    /// Snapshots of `out` with the run's `meta`, every `every`.
    pub fn new(out: &Path, meta: Vec<(String, String)>, every: Duration) -> Self {
        Snapshots {
            partial: partial_path(out),
            meta,
            every,
            last: Instant::now(),
            failed: false,
        }
    }

    /// Whether a period has passed since the last snapshot (never after one failed).
    pub fn due(&self) -> bool {
        !self.failed && self.last.elapsed() >= self.every
    }

    /// Writes a snapshot: `rows` writes the rows so far into the sink. A failure is reported
    /// once and ends the snapshots (the final write reports it again, as an error).
    pub fn write<R: Record>(
        &mut self,
        rows: impl FnOnce(&mut ParquetSink<R>) -> anyhow::Result<()>,
    ) {
        self.last = Instant::now();
        let result = (|| -> anyhow::Result<()> {
            let mut meta = self.meta.clone();
            meta.extend(
                RunMeta {
                    partial: Some(true),
                    snapshot_unix_ns: Some(asdic_engine::now_ns()),
                    ..RunMeta::default()
                }
                .to_pairs(),
            );
            let mut sink = ParquetSink::<R>::create(&self.partial, meta)?;
            rows(&mut sink)?;
            Sink::<R>::finish(Box::new(sink))?;
            Ok(())
        })();
        if let Err(e) = result {
            self.failed = true;
            eprintln!(
                "\nasdic: writing the snapshot {} failed: {e:#}; no more snapshots",
                self.partial.display()
            );
        }
    }

    /// The final file is written: the snapshot goes.
    pub fn done(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}
