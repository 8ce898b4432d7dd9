//! SIGINT and SIGTERM during a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use asdic_runtime::Pipeline;

/// SIGINT/SIGTERM: the first stops sending (replies in flight are still awaited, up to
/// `wait`); the second stops waiting. Either way results are written.
pub struct Signals {
    handle: signal_hook::iterator::Handle,
    hits: Arc<AtomicUsize>,
    first: Arc<AtomicI32>,
}

impl Signals {
    /// Installs the handlers for these pipelines.
    pub fn install(pipelines: &[Pipeline], wait: Duration) -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let stoppers: Vec<_> = pipelines.iter().map(Pipeline::stopper).collect();
        let hits = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(AtomicI32::new(0));
        let (h, f) = (hits.clone(), first.clone());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                // Relaxed: the counters are read after the threads are joined, or for a line.
                let _ = f.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
                let k = h.fetch_add(1, Ordering::Relaxed);
                stoppers.iter().for_each(|s| s.stop());
                if k == 0 {
                    say!(
                        "\nasdic: stopping: waiting up to {wait:?} for replies in flight (signal again to stop now)"
                    );
                } else {
                    say!("\nasdic: stopping now");
                    stoppers.iter().for_each(|s| s.abort());
                }
            }
        });
        Ok(Signals {
            handle,
            hits,
            first,
        })
    }

    /// Whether a signal came.
    pub fn interrupted(&self) -> bool {
        self.hits.load(Ordering::Relaxed) > 0
    }

    /// The first signal that came, if one did.
    pub fn first(&self) -> Option<i32> {
        Some(self.first.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// Stops listening.
    pub fn close(&self) {
        self.handle.close();
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// A signal's name, as the metadata records it.
pub fn name(sig: i32) -> String {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        s => format!("signal {s}"),
    }
}
