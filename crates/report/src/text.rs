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

/// An RTT as an axis tick: no more digits than the tick has ("50 µs", "2.5 ms", "1 s").
pub fn rtt_tick(us: f64) -> String {
    let (v, unit) = if us < 1000.0 {
        (us, "µs")
    } else if us < 1_000_000.0 {
        (us / 1000.0, "ms")
    } else {
        (us / 1e6, "s")
    };
    let t = format!("{v:.3}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t} {unit}")
}

/// Tick values for a log axis of RTTs from `lo` to `hi` µs: 1-2-5 of each decade, thinned to
/// decades when that gives more than 8, with at least the ends' decades: every label readable,
/// none overlapping, microseconds labelled as well as milliseconds.
pub fn rtt_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = (lo.max(0.01), hi.max(lo.max(0.01)));
    let mut all = vec![];
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if (lo..=hi).contains(&v) {
                all.push(v);
            }
        }
        decade *= 10.0;
    }
    if all.len() > 8 {
        all.retain(|v| (v.log10().fract().abs() < 1e-9) || (1.0 - v.log10().fract()).abs() < 1e-9);
    }
    if all.len() < 2 {
        all = vec![lo, hi];
    }
    all
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

/// Characters of a string from a file (a name, an error text, a target) that the page shows
/// at most; the rest is cut and the full value stays in the Parquet file.
pub const CELL_CHARS: usize = 200;

/// Characters of a run's command line that the page shows at most.
pub const COMMAND_CHARS: usize = 2000;

/// The first `max` characters of `s` (all of it when shorter), cut on a character boundary.
/// Costs at most `max` characters of scanning, whatever the length of `s`.
pub fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A string from a file, held with at most [`CELL_CHARS`] (or a given number of)
/// characters: what the page shows, with "…" where it was cut, and the full value's length
/// in characters. A hostile file's 100 MB name costs a few hundred bytes here.
///
/// Two values are equal when they show the same text (a hostile file's long strings that
/// share their first [`CELL_CHARS`] characters count as one).
#[derive(Debug, Clone, Default)]
pub struct Text {
    shown: String,
    chars: usize,
}

impl Text {
    /// `s` cut to [`CELL_CHARS`] characters.
    pub fn new(s: &str) -> Text {
        Text::cut(s, CELL_CHARS)
    }

    /// `s` cut to `max` characters, an ellipsis added where it was cut.
    pub fn cut(s: &str, max: usize) -> Text {
        let h = head(s, max);
        if h.len() == s.len() {
            return Text {
                shown: s.to_string(),
                chars: usize::MAX,
            };
        }
        let mut shown = String::with_capacity(h.len() + '…'.len_utf8());
        shown.push_str(h);
        shown.push('…');
        Text {
            shown,
            chars: s.chars().count(),
        }
    }

    /// What the page shows (ending in "…" when cut).
    pub fn as_str(&self) -> &str {
        &self.shown
    }

    /// Whether the value was cut.
    pub fn is_cut(&self) -> bool {
        self.chars != usize::MAX
    }

    /// The full value's length in characters.
    pub fn full_chars(&self) -> usize {
        if self.is_cut() {
            self.chars
        } else {
            self.shown.chars().count()
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.shown == other.shown
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.shown.hash(h);
    }
}

/// Map look-ups by the shown text ([`Text::key`]).
impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.shown
    }
}

impl Text {
    /// The text a [`Text`] of `s` shows, without copying `s` when it is short enough: the
    /// key to look a `Text` up by in a map.
    pub fn key(s: &str) -> std::borrow::Cow<'_, str> {
        if head(s, CELL_CHARS).len() == s.len() {
            std::borrow::Cow::Borrowed(s)
        } else {
            std::borrow::Cow::Owned(Text::new(s).shown)
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.shown == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.shown == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_on_a_character_boundary_with_their_length() {
        let short = Text::new("web1");
        assert_eq!(
            (short.as_str(), short.is_cut(), short.full_chars()),
            ("web1", false, 4)
        );
        // Multi-byte characters: the cut never splits one.
        let long = "é".repeat(1000) + "x";
        let t = Text::new(&long);
        assert!(t.is_cut());
        assert_eq!(t.full_chars(), 1001);
        assert_eq!(t.chars().count(), CELL_CHARS + 1);
        assert!(t.ends_with('…') && t.starts_with("éé"));
        assert_eq!(head(&long, 3), "ééé");
        assert_eq!(head("ab", 3), "ab");
        assert_eq!(head("abc", 3), "abc");
        let exact = "y".repeat(CELL_CHARS);
        assert!(!Text::new(&exact).is_cut());
        let c = Text::cut("0123456789", 4);
        assert_eq!((c.as_str(), c.full_chars()), ("0123…", 10));
        assert_eq!(Text::new(""), "");
    }

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
