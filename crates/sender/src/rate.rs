//! A token bucket that paces probes precisely: at any instant the number of probes sent is
//! at most `rate × elapsed + burst`, and idle time does not build up more than `burst`.

use std::time::{Duration, Instant};

/// The probe pacer.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` probes per second, at most `burst` at once (at least 1).
    pub fn new(rate: f64, burst: usize, now: Instant) -> Self {
        let burst = (burst.max(1)) as f64;
        TokenBucket {
            rate,
            burst,
            tokens: 1.0f64.min(burst),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// How many of `want` probes may go now (possibly 0).
    pub fn available(&mut self, want: usize, now: Instant) -> usize {
        self.refill(now);
        (self.tokens.floor() as usize).min(want)
    }

    /// Records that `n` probes went.
    pub fn consume(&mut self, n: usize) {
        self.tokens -= n as f64;
    }

    /// Time until at least one probe may go.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

/// Waits `d`: sleeps for long waits, spins (yielding) for the last stretch, so pacing stays
/// precise at high rates without burning a core at low ones.
pub fn pause(d: Duration) {
    const SPIN: Duration = Duration::from_micros(200);
    let end = Instant::now() + d;
    if d > SPIN {
        std::thread::sleep(d - SPIN);
    }
    while Instant::now() < end {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_in_virtual_time() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 10, t0);
        assert_eq!(b.available(5, t0), 1);
        b.consume(1);
        assert_eq!(b.available(5, t0), 0);
        assert_eq!(b.wait(), Duration::from_millis(1));
        // Over one simulated second, sending whatever is available every 100 µs.
        let mut sent = 0;
        for i in 1..=10_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            let k = b.available(64, now);
            b.consume(k);
            sent += k;
        }
        assert!((999..=1001).contains(&sent), "sent {sent}");
        // Idle for a second: at most `burst` at once afterwards.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(b.available(1000, later), 10);
    }
}
