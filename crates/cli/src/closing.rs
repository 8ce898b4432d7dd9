//! The lines a run ends with: why the local stack refused probes, what the kernel dropped,
//! a rate that fell short.

use asdic_analysis::RunMeta;
use asdic_core::event::Event;
use asdic_engine::KernelDrops;

/// What every result file records when it closes: the end time, diagnostics lost to a broken
/// stderr, and the kernel's drops
/// (`asdic.kernel_lost`, replies and errors of the run that asdic never saw, and
/// `asdic.kernel.<counter>` for each counter, the XDP program's verdicts included).
pub fn end_metadata(k: &KernelDrops) -> RunMeta {
    RunMeta {
        end_unix_ns: Some(asdic_engine::now_ns()),
        stderr_lost: crate::diag::lost_meta(),
        ..RunMeta::default()
    }
    .with_kernel(k.lost(), k.fields().into_iter().chain(k.xdp_fields()))
}

/// The closing line for a run whose replies the kernel dropped, if it did: how many and
/// where, and what it means for the results.
pub fn kernel_warning(k: &KernelDrops) -> Option<String> {
    (k.lost() > 0).then(|| {
        let mut why = vec![];
        if k.redirect_failed > 0 {
            why.push(
                "replies came in on RX queues without an AF_XDP socket: leave out --queues, or \
                 steer the replies to the bound queues (ethtool -N)",
            );
        }
        if k.lost() > k.redirect_failed {
            why.push("lower --rate, or give the receivers cores of their own (--cores)");
        }
        format!(
            "asdic: WARNING: the kernel dropped {} replies or errors of this run before asdic \
             could read them ({}); targets they belonged to show loss the network did not \
             cause: {}",
            k.lost(),
            k.nonzero(),
            why.join("; ")
        )
    })
}

/// The closing line for a run whose probes the link dropped on their way out, if it did
/// (AF_XDP: the interface's transmit drops during the run).
pub fn link_warning(k: &KernelDrops) -> Option<String> {
    (k.link_tx_dropped > 0).then(|| {
        format!(
            "asdic: WARNING: the interface dropped {} frames on transmit during the run (its \
             tx_dropped counter; a veth drops what its peer's queue cannot take): probes among \
             them never left, and their targets show loss the network did not cause (drops of \
             other traffic on the link count too): lower --rate",
            k.link_tx_dropped
        )
    })
}

/// A line saying that sending fell short of `--rate`: below 90 % of `asked` over a send
/// phase long enough to measure (0.2 s), the engine, CPU or link is the limit, not the cap.
pub fn rate_shortfall(asked: f64, sent: u64, send_secs: f64) -> Option<String> {
    let achieved = sent as f64 / send_secs.max(1e-6);
    (send_secs >= 0.2 && achieved < 0.9 * asked).then(|| {
        format!(
            "asdic: sending reached {achieved:.0} probes/s, {:.1} % of --rate {asked:.0}: the \
             engine, CPU or link is the limit here (every probe was still sent and accounted for)",
            100.0 * achieved / asked
        )
    })
}

/// "sent N probes in S s (R/s; T s in all)": S is the span from the first send to the last,
/// R = N ÷ S, the rate the run reached as its user sees it (pauses between rounds and passes
/// included: `-c 300 -i 10ms -R 100` reads 100/s, not the rate of each burst); one probe, or
/// probes sent at one instant, have no rate. T is the whole run, waits for answers included.
pub fn sent_line(sent: u64, span_secs: Option<f64>, all_secs: f64) -> String {
    let probes = if sent == 1 { "probe" } else { "probes" };
    match span_secs.filter(|&s| s > 0.0 && sent > 1) {
        // A span under 10 ms keeps its digits: "in 0.000175s", not "in 0.000s" beside a rate.
        Some(s) => format!(
            "sent {sent} {probes} in {}s ({:.0}/s; {all_secs:.2}s in all)",
            if s < 0.01 {
                format!("{s:.6}")
            } else {
                format!("{s:.3}")
            },
            sent as f64 / s
        ),
        None => format!("sent {sent} {probes} in 0.000s (-/s; {all_secs:.2}s in all)"),
    }
}

/// Why the local stack refused probes (send failures by OS error), for the closing lines:
/// a deleted interface or a vanished route shows as "Network is unreachable" here, not only
/// as a count.
#[derive(Debug, Default)]
pub struct Refusals {
    by_errno: Vec<(i32, u64)>,
}

impl Refusals {
    /// Counts `ev` if it is a send failure.
    pub fn add(&mut self, ev: &Event) {
        if let asdic_core::Outcome::SendFailed { errno } = ev.outcome {
            match self.by_errno.iter_mut().find(|(e, _)| *e == errno) {
                Some((_, n)) => *n += 1,
                None => self.by_errno.push((errno, 1)),
            }
        }
    }

    /// "the local stack refused N probes: Network is unreachable (os error 101) ×N; …", most
    /// first, with a hint for the errors that mean the path is gone; `None` without failures.
    pub fn line(&self) -> Option<String> {
        if self.by_errno.is_empty() {
            return None;
        }
        let mut v = self.by_errno.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: u64 = v.iter().map(|x| x.1).sum();
        let parts: Vec<String> = v
            .iter()
            .map(|(e, n)| format!("{} ×{n}", std::io::Error::from_raw_os_error(*e)))
            .collect();
        let gone = v.iter().any(|(e, _)| {
            [
                libc::ENETUNREACH,
                libc::EHOSTUNREACH,
                libc::ENODEV,
                libc::ENXIO,
                libc::ENETDOWN,
            ]
            .contains(e)
        });
        Some(format!(
            "asdic: the local stack refused {total} probes: {}{}",
            parts.join("; "),
            if gone {
                " (the interface or the route to the targets went away or down)"
            } else {
                ""
            }
        ))
    }

    /// Prints [`Refusals::line`] on stderr, if any.
    pub fn report(&self) {
        if let Some(l) = self.line() {
            say!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asdic_core::Outcome;
    use core::net::IpAddr;

    fn failed(errno: i32) -> Event {
        Event {
            probe: Some(0),
            cookie: 0,
            target: IpAddr::from([198, 19, 0, 1]),
            sent_ns: Some(0),
            attempt: 0,
            outcome: Outcome::SendFailed { errno },
        }
    }

    #[test]
    fn link_drops_are_said_only_when_there_are_some_and_are_no_reply_lost() {
        let mut k = KernelDrops::default();
        assert_eq!(link_warning(&k), None);
        k.link_tx_dropped = 748;
        assert_eq!(k.lost(), 0, "probes that never left are not replies lost");
        assert_eq!(kernel_warning(&k), None);
        let l = link_warning(&k).unwrap();
        assert!(l.contains("dropped 748 frames on transmit"), "{l}");
    }

    #[test]
    fn a_shortfall_is_said_only_when_it_is_real() {
        assert_eq!(rate_shortfall(100_000.0, 100_000, 1.0), None);
        assert_eq!(rate_shortfall(100_000.0, 95_000, 1.0), None);
        // Too short to tell.
        assert_eq!(rate_shortfall(1e6, 10, 0.01), None);
        let l = rate_shortfall(2e6, 65_536, 0.5).unwrap();
        assert!(
            l.contains("131072 probes/s, 6.6 % of --rate 2000000"),
            "{l}"
        );
    }

    #[test]
    fn the_rate_read_is_probes_over_the_span_they_went_out_in() {
        // 300 probes to one target every 10 ms: the span is 2.99 s, the rate 100/s, however
        // fast each burst went.
        assert_eq!(
            sent_line(300, Some(2.99), 3.5),
            "sent 300 probes in 2.990s (100/s; 3.50s in all)"
        );
        // Two families' probes 175 µs apart.
        assert_eq!(
            sent_line(2, Some(0.000_175), 0.06),
            "sent 2 probes in 0.000175s (11429/s; 0.06s in all)"
        );
        assert_eq!(
            sent_line(1, None, 1.0),
            "sent 1 probe in 0.000s (-/s; 1.00s in all)"
        );
        assert_eq!(
            sent_line(64, Some(0.0), 1.0),
            "sent 64 probes in 0.000s (-/s; 1.00s in all)"
        );
    }

    #[test]
    fn refusals_name_the_os_errors_most_first() {
        let mut r = Refusals::default();
        assert_eq!(r.line(), None);
        for _ in 0..3 {
            r.add(&failed(libc::ENETUNREACH));
        }
        r.add(&failed(libc::ENOBUFS));
        let l = r.line().unwrap();
        assert!(
            l.starts_with("asdic: the local stack refused 4 probes: Network is unreachable"),
            "{l}"
        );
        assert!(l.contains("×3; No buffer space available"), "{l}");
        assert!(l.ends_with("went away or down)"), "{l}");
    }
}
