//! The RX loop: engine frames → matcher → batches of events, with the reaper running between
//! receive calls. Stops when the sender is done and every probe is retired, or at once on abort.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use asdic_engine::{EngineError, Rx, now_ns};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::{Event, Outcome};
use crate::matcher::Matcher;

/// A probe to send again after a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The target's handle (index).
    pub cookie: u32,
    /// The target.
    pub target: core::net::IpAddr,
    /// Attempt number of the new probe (1 = first retry).
    pub attempt: u8,
    /// The probe template (packet size) to send it from, as the first try.
    pub class: u8,
}

/// State shared between the RX loop and the rest of the run.
#[derive(Debug, Default)]
pub struct RxShared {
    /// Set by the sender when it will claim no more probes.
    pub sender_done: AtomicBool,
    /// Set to stop now: every probe in flight is reported as timed out, and the loop ends as
    /// soon as the sender has stopped too.
    pub abort: AtomicBool,
    /// Frames received.
    pub frames: AtomicU64,
    /// Frames that matched no probe (malformed, forged, foreign, unmatched errors, stale,
    /// other ICMP): the live view of the matcher's drop counters.
    pub discarded: AtomicU64,
    /// Replies matched (terminal replies).
    pub replies: AtomicU64,
    /// Errors matched.
    pub errors: AtomicU64,
    /// Timeouts reported.
    pub timeouts: AtomicU64,
    /// Retries that could not be queued (queue full).
    pub retries_dropped: AtomicU64,
}

/// Parameters of the RX loop.
#[derive(Debug, Clone, Copy)]
pub struct RxConfig {
    /// How long a probe may wait for its answer.
    pub timeout: Duration,
    /// How many times a timed-out probe is sent again.
    pub retries: u8,
    /// Longest wait in one receive call (bounds reaper latency and stop latency).
    pub poll: Duration,
    /// Events per batch handed to the consumer.
    pub batch: usize,
}

/// Runs the RX loop until done. Events go out in batches through `events`; empty vectors come
/// back through `recycle` so steady state allocates nothing.
pub fn run(
    rx: &mut dyn Rx,
    matcher: &mut Matcher,
    cfg: &RxConfig,
    shared: &RxShared,
    events: &Sender<Vec<Event>>,
    recycle: &Receiver<Vec<Event>>,
    retries: Option<&Sender<Retry>>,
) -> Result<(), EngineError> {
    let timeout_ns = u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut buf: Vec<Event> = Vec::with_capacity(cfg.batch);
    loop {
        let abort = shared.abort.load(Ordering::Acquire);
        // Read before receiving: if the sender is done now, every probe is already claimed.
        let sender_done = shared.sender_done.load(Ordering::Acquire);
        let mut discarded = 0u64;
        let got = rx.recv(cfg.poll, &mut |f| {
            let before = buf.len();
            matcher.on_frame(&f, &mut |ev| {
                count(shared, &ev);
                buf.push(ev);
            });
            discarded += u64::from(buf.len() == before);
        })?;
        shared.frames.fetch_add(got as u64, Ordering::Relaxed);
        if discarded > 0 {
            shared.discarded.fetch_add(discarded, Ordering::Relaxed);
        }
        let now = if abort { u64::MAX } else { now_ns() };
        matcher.reap(now, timeout_ns, &mut |ev, p| {
            let attempt = p.attempt;
            count(shared, &ev);
            if let (Outcome::Timeout, Some(q)) = (ev.outcome, retries)
                && attempt < cfg.retries
                && !abort
            {
                let r = Retry {
                    cookie: ev.cookie,
                    target: ev.target,
                    attempt: attempt + 1,
                    class: p.class,
                };
                if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = q.try_send(r) {
                    shared.retries_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            buf.push(ev);
        });
        if !buf.is_empty() {
            let next = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(cfg.batch));
            let full = std::mem::replace(&mut buf, next);
            if events.send(full).is_err() {
                // The consumer is gone: nothing more to report to.
                return Ok(());
            }
        }
        // On abort the reap above retired everything claimed; once the sender has also
        // stopped, nothing more can arrive.
        if sender_done && matcher.table().in_flight() == 0 {
            return Ok(());
        }
    }
}

fn count(shared: &RxShared, ev: &Event) {
    let c = match ev.outcome {
        Outcome::Reply { .. } => &shared.replies,
        Outcome::Error { .. } => &shared.errors,
        Outcome::Timeout => &shared.timeouts,
        _ => return,
    };
    c.fetch_add(1, Ordering::Relaxed);
}
