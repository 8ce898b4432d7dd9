//! The targets file of `asdic sweep`: NetXMS ping subagent's `ip[:name[:psize]]` form, one
//! target per line, plus CIDR prefixes and per-target alarm limits.
//!
//! ```text
//! # comment                           (also after a target)
//! 198.19.0.5                          address only
//! 198.19.0.5:web1                     with a name
//! 198.19.0.5:web1:1000                with a packet size (bytes, IP header included)
//! 198.19.0.5::1000                    packet size, no name
//! [2001:db8:1::5]:web6:1280           IPv6 with name or size: in brackets
//! 2001:db8:1::5                       IPv6 alone
//! 198.19.1.0/24                       every address of a prefix (named by address)
//! 198.19.0.7:db1 loss=20 rtt=50       own alarm limits: loss %, average RTT in ms
//! 198.19.2.0/24 group=rack12          a group, for the metrics' per-group aggregates
//! Target = 198.19.0.8:web2            a NetXMS agent's Target line, as is
//! ```
//!
//! As in NetXMS, the packet size includes the IP header (`psize` 46 = 20 + 8 + 18 bytes of
//! payload over IPv4); the same address may be listed at several sizes (each is its own
//! target). Names are labels, never resolved.

use std::io::BufRead;

use crate::targets::{MAX_LINE, Read, TargetSpec, read_line};

/// One target line.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetLine {
    /// 1-based line number.
    pub line: usize,
    /// The address or prefix.
    pub spec: TargetSpec,
    /// Its name.
    pub name: Option<String>,
    /// Packet size in bytes, IP header included (NetXMS `psize`).
    pub psize: Option<u32>,
    /// Own loss limit, percent.
    pub loss_pct: Option<f64>,
    /// Own average RTT limit, milliseconds.
    pub rtt_ms: Option<f64>,
    /// The group its targets belong to (`group=NAME`), for per-group metrics.
    pub group: Option<String>,
}

/// Why the targets file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    /// A line is wrong.
    #[error("line {line}: {what}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the text.
        what: String,
    },
    /// Reading failed.
    #[error("reading the targets file: {0}")]
    Io(String),
}

/// Longest name accepted (a label for output and metrics).
pub const MAX_NAME: usize = 128;

/// Reads every target line of `input`, a line of at most [`MAX_LINE`] bytes at a time, and
/// at most `max_total` targets (prefixes counted by their addresses).
pub fn parse_fleet(mut input: impl BufRead, max_total: u128) -> Result<Vec<FleetLine>, FleetError> {
    let mut out = vec![];
    let mut buf = Vec::with_capacity(256);
    let mut total: u128 = 0;
    for line_no in 1.. {
        let at = |what: String| FleetError::Line {
            line: line_no,
            what,
        };
        buf.clear();
        match read_line(&mut input, &mut buf, MAX_LINE)
            .map_err(|e| FleetError::Io(e.to_string()))?
        {
            Read::End => break,
            Read::TooLong => {
                return Err(at(format!(
                    "longer than {MAX_LINE} bytes, the most one line of targets may hold \
                     (is this a targets file?)"
                )));
            }
            Read::Line => {}
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|_| at("not text (is this a targets file?)".into()))?;
        if let Some(l) = parse_line(text).map_err(at)? {
            total = total.saturating_add(l.spec.count());
            if total > max_total {
                return Err(at(format!(
                    "{} brings the targets to {total}, more than the {max_total} a sweep may \
                     hold (use longer prefixes or fewer lines)",
                    l.spec
                )));
            }
            out.push(FleetLine { line: line_no, ..l });
        }
    }
    Ok(out)
}

/// Parses one line: `Ok(None)` for blank and comment lines.
pub fn parse_line(text: &str) -> Result<Option<FleetLine>, String> {
    let text = text.split('#').next().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let text = strip_target_key(text);
    let mut words = text.split_whitespace();
    let Some(field) = words.next() else {
        return Ok(None);
    };
    let (spec, name, psize) = parse_target(field)?;
    let mut l = FleetLine {
        line: 0,
        spec,
        name,
        psize,
        loss_pct: None,
        rtt_ms: None,
        group: None,
    };
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            format!("{w:?}: expected loss=PCT, rtt=MS or group=NAME after the target")
        })?;
        let number = || {
            v.parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{w:?}: {v:?} is not a non-negative number"))
        };
        match k {
            "loss" => match number()? {
                x if x <= 100.0 => l.loss_pct = Some(x),
                _ => return Err(format!("{w:?}: a loss limit is a percentage, 0..=100")),
            },
            "rtt" => l.rtt_ms = Some(number()?),
            "group" => {
                if v.is_empty() {
                    return Err(format!("{w:?}: a group needs a name"));
                }
                check_label(w, v)?;
                l.group = Some(v.to_string());
            }
            _ => {
                return Err(format!(
                    "{w:?}: unknown option {k:?} (loss=PCT, rtt=MS, group=NAME)"
                ));
            }
        }
    }
    Ok(Some(l))
}

/// A name or group: a label of the output and the metrics, so at most [`MAX_NAME`] bytes
/// and no quotes, backslashes or control characters.
fn check_label(field: &str, label: &str) -> Result<(), String> {
    if label.len() > MAX_NAME {
        return Err(format!("{field:?}: names are at most {MAX_NAME} bytes"));
    }
    if label
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(format!(
            "{field:?}: a name may not hold quotes, backslashes or control characters"
        ));
    }
    Ok(())
}

/// `Target = x` (NetXMS agent configuration, any case) → `x`.
fn strip_target_key(text: &str) -> &str {
    let Some(head) = text.get(..6) else {
        return text;
    };
    if !head.eq_ignore_ascii_case("target") {
        return text;
    }
    match text[6..].trim_start().strip_prefix('=') {
        Some(rest) => rest.trim_start(),
        None => text,
    }
}

type Parsed = (TargetSpec, Option<String>, Option<u32>);

fn parse_target(field: &str) -> Result<Parsed, String> {
    let spec = |s: &str| TargetSpec::parse(s).map_err(|e| e.to_string());
    // [v6]:name:psize
    if let Some(rest) = field.strip_prefix('[') {
        let (addr, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{field:?}: missing ']'"))?;
        let s = spec(addr)?;
        return match tail {
            "" => Ok((s, None, None)),
            t => {
                let t = t
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{field:?}: expected ':' after ']'"))?;
                let (name, psize) = name_size(field, t)?;
                Ok((s, name, psize))
            }
        };
    }
    // A bare IPv6 address or prefix holds colons of its own.
    if field.matches(':').count() > 2 || field.contains("::") && !field.contains('.') {
        return match spec(field) {
            Ok(s) => Ok((s, None, None)),
            Err(e) => Err(format!(
                "{e}; an IPv6 target with a name or size goes in brackets: [2001:db8::1]:name:psize"
            )),
        };
    }
    let (addr, rest) = match field.split_once(':') {
        Some((a, r)) => (a, Some(r)),
        None => (field, None),
    };
    let s = spec(addr)?;
    let (name, psize) = match rest {
        Some(r) => name_size(field, r)?,
        None => (None, None),
    };
    Ok((s, name, psize))
}

/// `name[:psize]` (either may be empty).
fn name_size(field: &str, t: &str) -> Result<(Option<String>, Option<u32>), String> {
    let (name, size) = match t.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (t, None),
    };
    check_label(field, name)?;
    let psize = match size {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<u32>()
                .ok()
                .filter(|&p| (1..=65_535).contains(&p))
                .ok_or_else(|| format!("{field:?}: packet size {s:?} is not 1..=65535 bytes"))?,
        ),
    };
    Ok(((!name.is_empty()).then(|| name.to_string()), psize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> FleetLine {
        parse_line(s).unwrap().unwrap()
    }

    #[test]
    fn netxms_forms() {
        let l = one("198.19.0.5");
        assert_eq!(l.spec, TargetSpec::parse("198.19.0.5").unwrap());
        assert_eq!((l.name, l.psize), (None, None));
        let l = one("198.19.0.5:web1:1000  # the web server");
        assert_eq!((l.name.as_deref(), l.psize), (Some("web1"), Some(1000)));
        let l = one("198.19.0.5::1000");
        assert_eq!((l.name, l.psize), (None, Some(1000)));
        let l = one("198.19.0.5:web1");
        assert_eq!((l.name.as_deref(), l.psize), (Some("web1"), None));
        let l = one("  Target = 198.19.0.8:web2:46");
        assert_eq!((l.name.as_deref(), l.psize), (Some("web2"), Some(46)));
        let l = one("target=198.19.0.8");
        assert_eq!(l.spec, TargetSpec::parse("198.19.0.8").unwrap());
    }

    #[test]
    fn ipv6_and_prefixes() {
        let l = one("[2001:db8:1::5]:web6:1280");
        assert_eq!(l.spec, TargetSpec::parse("2001:db8:1::5").unwrap());
        assert_eq!((l.name.as_deref(), l.psize), (Some("web6"), Some(1280)));
        assert_eq!(one("2001:db8:1::5").name, None);
        assert_eq!(one("[2001:db8:1::5]").name, None);
        assert_eq!(one("2001:db8:1::/120").spec.prefix, 120);
        assert_eq!(one("198.19.1.0/24").spec.prefix, 24);
        assert_eq!(one("198.19.1.0/24::100").psize, Some(100));
        assert!(
            parse_line("2001:db8:1::5:web")
                .unwrap_err()
                .contains("brackets")
        );
    }

    #[test]
    fn limits() {
        let l = one("198.19.0.7:db1 loss=20 rtt=50.5");
        assert_eq!((l.loss_pct, l.rtt_ms), (Some(20.0), Some(50.5)));
        assert!(
            parse_line("198.19.0.7 loss=120")
                .unwrap_err()
                .contains("0..=100")
        );
        assert!(
            parse_line("198.19.0.7 jitter=3")
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(parse_line("198.19.0.7 rtt=-1").is_err());
        assert!(parse_line("198.19.0.7 rtt").is_err());
    }

    #[test]
    fn groups() {
        let l = one("198.19.2.0/24:edge group=rack-12 loss=5");
        assert_eq!(l.group.as_deref(), Some("rack-12"));
        assert_eq!(l.loss_pct, Some(5.0));
        assert_eq!(one("198.19.0.1").group, None);
        assert_eq!(
            one("Target = 198.19.0.1:web1 group=web").group.as_deref(),
            Some("web")
        );
        assert!(
            parse_line("198.19.0.1 group=")
                .unwrap_err()
                .contains("needs a name")
        );
        assert!(parse_line("198.19.0.1 group=a\"b").is_err());
        assert!(parse_line(&format!("198.19.0.1 group={}", "g".repeat(MAX_NAME + 1))).is_err());
        assert!(
            parse_line("198.19.0.1 web")
                .unwrap_err()
                .contains("group=NAME")
        );
    }

    #[test]
    fn errors_name_the_line() {
        let text = "198.19.0.1\n\n# c\nweb.example:x\n";
        let e = parse_fleet(text.as_bytes(), u128::MAX).unwrap_err();
        assert!(matches!(e, FleetError::Line { line: 4, .. }), "{e:?}");
        assert!(e.to_string().contains("does not resolve names"));
        assert!(parse_line("198.19.0.1:a:0").is_err());
        assert!(parse_line("198.19.0.1:a:70000").is_err());
        assert!(parse_line("198.19.0.1:a\"b").is_err());
        assert!(parse_line("[2001:db8::1").is_err());
        assert!(parse_line("[2001:db8::1]x").is_err());
        assert_eq!(parse_line("   # only a comment").unwrap(), None);
        let ok = parse_fleet("198.19.0.1\n198.19.0.2:b\n".as_bytes(), u128::MAX).unwrap();
        assert_eq!(ok.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn never_panics_on_junk() {
        for s in [
            "",
            ":",
            "::",
            "[",
            "]",
            "[]",
            "[]:",
            "1.2.3.4:",
            "1.2.3.4::",
            "Target",
            "Target =",
            "target=",
            "é:é:é",
            "1.2.3.4 =",
            "1.2.3.4 loss=",
            "1.2.3.4 group=",
            "1.2.3.4 group==",
            "1.2.3.4 group=é loss=é",
            "\u{0}",
            "[::]:::::",
        ] {
            let _ = parse_line(s);
        }
    }

    #[test]
    fn endless_lines_and_too_many_targets_stop_early() {
        let zeros = std::io::Read::take(std::io::repeat(0), 1 << 30);
        let e = parse_fleet(std::io::BufReader::new(zeros), u128::MAX).unwrap_err();
        assert!(
            e.to_string().starts_with("line 1: longer than 4096 bytes"),
            "{e}"
        );
        // A writer that never stops: refused at the cap, not at the end.
        let endless = std::io::Read::take(std::io::repeat(b'\n'), 1 << 40);
        let lines = std::io::Read::chain("198.19.0.0/24\n198.19.1.0/24\n".as_bytes(), endless);
        let e = parse_fleet(std::io::BufReader::new(lines), 300).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 2: 198.19.1.0/24 brings the targets to 512, more than the 300"),
            "{e}"
        );
        let e = parse_fleet(&b"198.19.0.1\n\xff\n"[..], u128::MAX).unwrap_err();
        assert_eq!(e.to_string(), "line 2: not text (is this a targets file?)");
    }
}
