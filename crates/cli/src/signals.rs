//! SIGINT and SIGTERM during a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::pipeline::Pipeline;

/// SIGINT/SIGTERM: the first stops sending (replies in flight are still awaited, up to
/// `wait`); the second stops waiting. Either way results are written.
pub struct Signals {
    handle: signal_hook::iterator::Handle,
    hits: Arc<AtomicUsize>,
}

impl Signals {
    /// Installs the handlers for these pipelines.
    pub fn install(pipelines: &[Pipeline], wait: Duration) -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let senders: Vec<_> = pipelines.iter().map(|p| p.sender.clone()).collect();
        let receivers: Vec<_> = pipelines.iter().map(|p| p.receiver.clone()).collect();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for _ in signals.forever() {
                let k = h.fetch_add(1, Ordering::Relaxed);
                senders
                    .iter()
                    .for_each(|s| s.stop.store(true, Ordering::Relaxed));
                if k == 0 {
                    eprintln!(
                        "\nasdic: stopping: waiting up to {wait:?} for replies in flight (signal again to stop now)"
                    );
                } else {
                    eprintln!("\nasdic: stopping now");
                    senders
                        .iter()
                        .for_each(|s| s.abort.store(true, Ordering::Relaxed));
                    receivers
                        .iter()
                        .for_each(|r| r.abort.store(true, Ordering::Release));
                }
            }
        });
        Ok(Signals { handle, hits })
    }

    /// Whether a signal came.
    pub fn interrupted(&self) -> bool {
        self.hits.load(Ordering::Relaxed) > 0
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
