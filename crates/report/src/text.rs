//! UTC time and number formatting for the page (no time-zone database: reports are in UTC).

/// `YYYY-MM-DD HH:MM:SS` UTC for nanoseconds since the Unix epoch.
pub fn utc(unix_ns: u64) -> String {
    let t = asdic_analysis::clock::Utc::from_unix(unix_ns / 1_000_000_000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// An RTT in µs, with a unit that keeps three significant figures or so.
pub fn rtt(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.3} ms", us / 1000.0)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

/// An optional RTT, or a dash.
pub fn rtt_or_dash(us: Option<f64>) -> String {
    us.map_or_else(|| "–".into(), rtt)
}

/// A count with thousands separators.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A percentage with two decimals, or a dash.
pub fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "–".into(), |p| format!("{p:.2} %"))
}

/// A duration in seconds, human-sized.
pub fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.2} s")
    } else if secs < 7200.0 {
        format!("{:.0} min {:.0} s", (secs / 60.0).floor(), secs % 60.0)
    } else {
        format!(
            "{:.0} h {:.0} min",
            (secs / 3600.0).floor(),
            (secs % 3600.0) / 60.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        // 2000-02-29 12:34:56 UTC, a leap day in a century leap year.
        assert_eq!(utc(951_827_696_000_000_000), "2000-02-29 12:34:56");
        // 2026-11-29 00:00:00 UTC.
        assert_eq!(utc(1_795_910_400_000_000_000), "2026-11-29 00:00:00");
        assert_eq!(utc(1_795_910_400_000_000_000 - 1), "2026-11-28 23:59:59");
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(65_536), "65,536");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(rtt(42.25), "42.2 µs");
        assert_eq!(rtt(1500.0), "1.500 ms");
        assert_eq!(rtt(2_500_000.0), "2.500 s");
        assert_eq!(pct(None), "–");
        assert_eq!(pct(Some(12.345)), "12.35 %");
        assert_eq!(duration(3.5), "3.50 s");
        assert_eq!(duration(150.0), "2 min 30 s");
        assert_eq!(duration(7260.0), "2 h 1 min");
    }
}
