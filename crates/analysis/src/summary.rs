//! One-line human summary of a run's [`Totals`].

use core::fmt::Write as _;

use crate::aggregate::Totals;

/// A one-line summary, e.g. "65536 targets, 65536 probes, 64180 replies (2.07% loss),
/// 680 timeouts, 256 errors; RTT min/avg/max/p99 0.012/0.051/1.334/0.210 ms".
///
/// Send failures, duplicates, late replies and ignored events are mentioned only when
/// there were any; "RTT -" stands for "no replies".
pub fn summary_line(t: &Totals) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail: every write! below returns Ok.
    let _ = write!(
        s,
        "{}, {}, {}",
        counted(t.targets, "target", "targets"),
        counted(t.sent, "probe", "probes"),
        counted(t.received, "reply", "replies")
    );
    if let Some(loss) = t.loss_pct {
        let _ = write!(s, " ({loss:.2}% loss)");
    }
    let _ = write!(
        s,
        ", {}, {}",
        counted(t.timeouts, "timeout", "timeouts"),
        counted(t.errors, "error", "errors")
    );
    for (n, one, many) in [
        (t.send_failed, "send failure", "send failures"),
        (t.duplicates, "duplicate", "duplicates"),
        (t.late, "late reply", "late replies"),
        (t.ignored, "ignored event", "ignored events"),
    ] {
        if n > 0 {
            let _ = write!(s, ", {}", counted(n, one, many));
        }
    }
    match t.rtt {
        Some(r) => {
            let ms = |ns: f64| ns / 1e6;
            let _ = write!(
                s,
                "; RTT min/avg/max/p99 {:.3}/{:.3}/{:.3}/{:.3} ms",
                ms(r.min_ns as f64),
                ms(r.mean_ns),
                ms(r.max_ns as f64),
                ms(r.p99_ns as f64)
            );
        }
        None => s.push_str("; RTT -"),
    }
    s
}

/// "1 probe", "2 probes", "0 probes".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::RttTotals;

    fn totals() -> Totals {
        Totals {
            targets: 65536,
            sent: 65536,
            received: 64180,
            errors: 256,
            timeouts: 680,
            send_failed: 0,
            duplicates: 0,
            late: 0,
            alive: 64180,
            unreachable: 256,
            ignored: 0,
            loss_pct: Some(100.0 * (65536.0 - 64180.0) / 65536.0),
            rtt: Some(RttTotals {
                min_ns: 12_000,
                mean_ns: 51_000.0,
                max_ns: 1_334_000,
                p50_ns: 40_000,
                p90_ns: 150_000,
                p99_ns: 210_000,
            }),
        }
    }

    #[test]
    fn typical_run() {
        assert_eq!(
            summary_line(&totals()),
            "65536 targets, 65536 probes, 64180 replies (2.07% loss), 680 timeouts, 256 errors; \
             RTT min/avg/max/p99 0.012/0.051/1.334/0.210 ms"
        );
    }

    #[test]
    fn nothing_sent_and_extras() {
        let t = Totals {
            sent: 0,
            received: 0,
            errors: 0,
            timeouts: 0,
            send_failed: 3,
            duplicates: 2,
            late: 1,
            ignored: 4,
            loss_pct: None,
            rtt: None,
            ..totals()
        };
        assert_eq!(
            summary_line(&t),
            "65536 targets, 0 probes, 0 replies, 0 timeouts, 0 errors, 3 send failures, \
             2 duplicates, 1 late reply, 4 ignored events; RTT -"
        );
    }

    #[test]
    fn one_of_each_is_singular() {
        let t = Totals {
            targets: 1,
            sent: 1,
            received: 1,
            errors: 1,
            timeouts: 1,
            send_failed: 1,
            duplicates: 1,
            late: 1,
            ignored: 1,
            loss_pct: Some(0.0),
            rtt: None,
            ..totals()
        };
        assert_eq!(
            summary_line(&t),
            "1 target, 1 probe, 1 reply (0.00% loss), 1 timeout, 1 error, 1 send failure, \
             1 duplicate, 1 late reply, 1 ignored event; RTT -"
        );
    }
}
