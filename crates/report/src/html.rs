//! The HTML page: one file, style sheet inline, figures as inline SVG, links only to anchors
//! within the page, nothing fetched from anywhere.

use std::fmt::Write as _;

use crate::figure::{Figure, Kind};
use crate::section::{Mode, Section};
use crate::text::{self, Text};

/// `s` with HTML's special characters escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string cell from a file, escaped. One that was cut (see [`Text`]) ends in "…" and says
/// in its title how long the full value is, and where it is.
pub fn cell(t: &Text) -> String {
    if !t.is_cut() {
        return escape(t);
    }
    format!(
        "<span class=\"cut\" title=\"cut to {} of its {} characters: the full value is in the \
         Parquet file\">{}</span>",
        text::count(t.chars().count().saturating_sub(1) as u64),
        text::count(t.full_chars() as u64),
        escape(t)
    )
}

/// An SVG document made fit to inline in HTML: no XML declaration, no namespace
/// declarations (HTML's parser puts `<svg>` in the SVG namespace itself).
pub fn inline_svg(svg: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

const STYLE: &str = "
body { font-family: system-ui, 'DejaVu Sans', sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d2329; padding: 0 16px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 40px; border-bottom: 2px solid #3b6ea8; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.meta { color: #5a6570; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #d5dbe1; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f6; } td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.summary th { width: 190px; }
tr.bad td { background: #fdecea; } tr.warn td { background: #fff6e0; }
figure { margin: 8px 0 24px; } figure svg { max-width: 100%; height: auto; border: 1px solid #e3e7eb; }
figcaption { font-size: 13px; color: #3d4650; max-width: 900px; }
code { font-size: 12px; background: #f3f5f7; padding: 1px 4px; }
span.cut { border-bottom: 1px dotted #8a949e; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; font-size: 13px; }
nav a { margin-right: 14px; }
";

/// The whole page.
pub fn page(title: &str, sections: &[Section], figures: &[Vec<Figure>]) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p class=\"meta\">Written by asdic {v} on {now} UTC from {n} file(s). Times are UTC.</p>\n",
        t = escape(title),
        v = env!("CARGO_PKG_VERSION"),
        now = text::utc(now),
        n = sections.iter().map(|s| s.files.len()).sum::<usize>(),
    );
    if sections.len() > 1 {
        h.push_str("<nav>");
        for (i, s) in sections.iter().enumerate() {
            let _ = write!(h, "<a href=\"#s{i}\">{}</a>", s.mode.name());
        }
        h.push_str("</nav>\n");
    }
    for (i, s) in sections.iter().enumerate() {
        section(&mut h, i, s, figures.get(i).map_or(&[][..], |f| &f[..]));
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn section(h: &mut String, i: usize, s: &Section, figs: &[Figure]) {
    let _ = write!(
        h,
        "<section id=\"s{i}\">\n<h2>asdic {} — {} file(s), {} rows</h2>\n",
        s.mode.name(),
        s.files.len(),
        text::count(s.rows)
    );
    summary(h, s);
    for n in &s.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }
    let of = |k: Kind| figs.iter().filter(move |f| f.kind == k);
    for f in of(Kind::Rtt).chain(of(Kind::HitMap)) {
        figure(h, f);
    }
    targets(h, s);
    let smoke = of(Kind::Latency).count();
    if smoke > 0 {
        let _ = writeln!(
            h,
            "<h3>Latency over time, worst {smoke} of {} targets</h3>",
            text::count(s.targets_total)
        );
        for f in of(Kind::Latency) {
            figure(h, f);
        }
    }
    errors(h, s);
    for f in of(Kind::Errors) {
        figure(h, f);
    }
    files(h, s);
    h.push_str("</section>\n");
}

fn row(h: &mut String, label: &str, value: &str) {
    let _ = writeln!(
        h,
        "<tr><th>{}</th><td>{}</td></tr>",
        escape(label),
        escape(value)
    );
}

fn summary(h: &mut String, s: &Section) {
    let m = &s.summary;
    let opt_count = |x: Option<u64>| x.map_or_else(|| "not recorded".into(), text::count);
    h.push_str("<table class=\"summary\">\n");
    row(h, "targets", &opt_count(m.targets));
    if let Some(a) = m.answering {
        row(h, "targets answering", &text::count(a));
    }
    row(h, "probes", &opt_count(m.probes));
    row(h, "replies", &text::count(m.replies));
    row(h, "ICMP errors", &text::count(m.errors));
    // A path has no loss figure: a trace says how its paths ended (under "destinations").
    if s.mode != Mode::Trace {
        row(h, "loss", &text::pct(m.loss_pct));
    }
    let basis = if s.mode == Mode::Ping {
        " (of per-target medians)"
    } else {
        ""
    };
    row(
        h,
        "RTT p50 / p90 / p99",
        &format!(
            "{} / {} / {}{basis}",
            text::rtt_or_dash(m.p50),
            text::rtt_or_dash(m.p90),
            text::rtt_or_dash(m.p99)
        ),
    );
    if let Some(start) = m.start_ns {
        row(h, "started", &format!("{} UTC", text::utc(start)));
    }
    let duration = match m.duration_s() {
        Some(d) if m.duration_is_lower_bound => {
            format!("≥ {} (to the last row; no end recorded)", text::duration(d))
        }
        Some(d) => text::duration(d),
        None => "not recorded".into(),
    };
    row(h, "duration", &duration);
    row(
        h,
        "engine",
        if m.engine.is_empty() {
            "not recorded"
        } else {
            &m.engine
        },
    );
    row(
        h,
        "rate achieved",
        &m.rate_pps.map_or_else(
            || "not recorded".into(),
            |r| format!("{} probes/s", text::count(r.round() as u64)),
        ),
    );
    row(
        h,
        "complete",
        match m.complete {
            Some(true) => "yes",
            Some(false) => "no: interrupted, killed or recovered",
            None => "not recorded",
        },
    );
    for (k, v) in &m.extra {
        row(h, k, v);
    }
    for c in &m.commands {
        let _ = writeln!(
            h,
            "<tr><th>command</th><td><code>{}</code></td></tr>",
            cell(c)
        );
    }
    h.push_str("</table>\n");
}

fn figure(h: &mut String, f: &Figure) {
    let names: Vec<String> = f
        .files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| format!("<code>figures/{}</code>", escape(&n.to_string_lossy())))
        .collect();
    let _ = write!(
        h,
        "<figure id=\"{id}\">\n<h3>{t}</h3>\n{svg}\n<figcaption>{c} Files: {files}.</figcaption>\n</figure>\n",
        id = escape(&f.id),
        t = escape(&f.title),
        svg = inline_svg(&f.svg),
        c = escape(&f.caption),
        files = names.join(", "),
    );
}

fn targets(h: &mut String, s: &Section) {
    if s.targets.is_empty() {
        return;
    }
    let scan = s.mode == Mode::Scan;
    let _ = writeln!(
        h,
        "<h3>{} worst first ({} of {})</h3>",
        if scan { "Prefixes" } else { "Targets" },
        s.targets.len(),
        text::count(s.targets_total)
    );
    if scan {
        h.push_str(
            "<table><tr><th>prefix</th><th>targets</th><th>answering</th><th>hit rate</th></tr>\n",
        );
        for t in &s.targets {
            let rate = t.loss_pct.map(|l| 100.0 - l);
            let class = if rate.is_some_and(|r| r == 0.0) {
                " class=\"bad\""
            } else {
                ""
            };
            // A prefix whose targets the file cannot count (hits only, a large IPv6 prefix).
            let targets = if t.probes == 0 && rate.is_none() {
                "–".to_string()
            } else {
                text::count(t.probes)
            };
            let _ = writeln!(
                h,
                "<tr{class}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                cell(&t.target),
                targets,
                text::count(t.replies),
                text::pct(rate)
            );
        }
        h.push_str("</table>\n");
        return;
    }
    if s.mode == Mode::Trace {
        trace_targets(h, s);
        return;
    }
    h.push_str(
        "<table><tr><th>target</th><th>name</th><th>probes</th><th>replies</th><th>loss</th>\
         <th>p50</th><th>p90</th><th>p99</th><th>max</th><th>errors</th><th>note</th></tr>\n",
    );
    for t in &s.targets {
        let loss = t.loss_pct.unwrap_or(0.0);
        let class = if loss >= 50.0 {
            " class=\"bad\""
        } else if loss > 0.0 || t.errors > 0 {
            " class=\"warn\""
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<tr{class}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            cell(&t.target),
            t.name.as_ref().map_or_else(String::new, cell),
            text::count(t.probes),
            text::count(t.replies),
            text::pct(t.loss_pct),
            text::rtt_or_dash(t.p50),
            text::rtt_or_dash(t.p90),
            text::rtt_or_dash(t.p99),
            text::rtt_or_dash(t.max),
            text::count(t.errors),
            cell(&t.note),
        );
    }
    h.push_str("</table>\n");
}

/// A trace's targets: how each path ended, as trace prints it, and the RTTs of its hops' answers;
/// no loss column (a path's silent hops are not lost probes).
fn trace_targets(h: &mut String, s: &Section) {
    h.push_str(
        "<table><tr><th>target</th><th>path</th><th>probes</th><th>answers</th><th>p50</th>\
         <th>p90</th><th>p99</th><th>max</th></tr>\n",
    );
    for t in &s.targets {
        let note = t.note.to_string();
        let class = if note.starts_with("reached") {
            ""
        } else if note.starts_with("unreachable") {
            " class=\"bad\""
        } else {
            " class=\"warn\""
        };
        let _ = writeln!(
            h,
            "<tr{class}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            cell(&t.target),
            cell(&t.note),
            text::count(t.probes),
            text::count(t.replies),
            text::rtt_or_dash(t.p50),
            text::rtt_or_dash(t.p90),
            text::rtt_or_dash(t.p99),
            text::rtt_or_dash(t.max),
        );
    }
    h.push_str("</table>\n");
}

fn errors(h: &mut String, s: &Section) {
    if s.errors.is_empty() {
        return;
    }
    h.push_str(
        "<h3>ICMP errors by type, code and responder</h3>\n<table><tr><th>family</th><th>type</th>\
         <th>code</th><th>IANA name</th><th>count</th><th>responders</th><th>top responders</th></tr>\n",
    );
    for e in &s.errors {
        let top: Vec<String> = e
            .top
            .iter()
            .map(|(r, n)| format!("{} ({})", cell(r), text::count(*n)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            if e.v6 { "ICMPv6" } else { "ICMPv4" },
            e.icmp_type,
            e.icmp_code,
            cell(&e.name),
            text::count(e.count),
            text::count(e.responders),
            top.join(", ")
        );
    }
    h.push_str("</table>\n");
}

fn files(h: &mut String, s: &Section) {
    h.push_str("<details><summary>Files read</summary><ul>\n");
    for f in &s.files {
        let _ = writeln!(
            h,
            "<li><code>{}</code></li>",
            escape(&f.display().to_string())
        );
    }
    h.push_str("</ul></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn cut_cells_say_their_full_length_and_stay_short() {
        let long = format!("<{}>", "n".repeat(10_000_000));
        let c = cell(&Text::new(&long));
        assert!(c.len() < 400, "{}", c.len());
        assert!(
            c.contains("title=\"cut to 200 of its 10,000,002 characters"),
            "{c}"
        );
        assert!(c.contains("&lt;nnn") && c.ends_with("n…</span>"), "{c}");
        assert_eq!(cell(&Text::new("web<1>")), "web&lt;1&gt;");
    }

    #[test]
    fn inlined_svg_loses_its_declaration_and_namespaces() {
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"10\" height=\"10\" xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>";
        let s = inline_svg(svg);
        assert_eq!(s, "<svg width=\"10\" height=\"10\"><rect/></svg>");
    }
}
