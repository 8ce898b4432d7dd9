//! Targets: addresses and CIDR prefixes, IPv4 and IPv6, from arguments, files or stdin.
//!
//! A line holds whitespace-separated addresses or prefixes; `#` starts a comment. Names are
//! not resolved (a prober should not depend on DNS): a name is an error that says so.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::io::BufRead;

/// One target specification: an address or a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSpec {
    /// The network address (host bits cleared).
    pub base: IpAddr,
    /// Prefix length (32 or 128 for a single address).
    pub prefix: u8,
}

/// A count of addresses as text: counts are summed saturating, so the largest is "2^128 or
/// more" (`::/0` alone holds 2^128, one more than a u128 holds), never 2^128 − 1.
fn show_count(n: u128) -> String {
    if n == u128::MAX {
        "2^128 or more".to_string()
    } else {
        n.to_string()
    }
}

/// Why a target could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an address or prefix.
    #[error("{0:?} is not an IPv4/IPv6 address or CIDR prefix (asdic does not resolve names)")]
    Malformed(String),
    /// A prefix length beyond the family's width.
    #[error("{0:?}: prefix length out of range")]
    BadPrefix(String),
    /// More addresses than may be listed (`count`: the total with `spec`).
    #[error(
        "{spec} brings the targets to {}, more than the {limit} a list may hold (use a longer prefix or fewer lines)",
        show_count(*count)
    )]
    TooMany {
        /// The offending spec.
        spec: String,
        /// How many addresses it holds.
        count: u128,
        /// The limit.
        limit: u64,
    },
    /// A line longer than the cap.
    #[error(
        "longer than {0} bytes, the most one line of targets may hold (is this a list of addresses?)"
    )]
    LineTooLong(usize),
    /// A line that is not UTF-8 text.
    #[error("not text (is this a list of addresses?)")]
    NotText,
    /// More entries than a list may hold.
    #[error("more than {0} entries, the most a target list may hold")]
    TooManyEntries(u64),
    /// A line of a file failed.
    #[error("line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        error: Box<TargetError>,
    },
    /// Reading the input failed.
    #[error("reading targets: {0}")]
    Io(String),
}

impl TargetSpec {
    /// Parses `198.19.0.1`, `198.19.0.0/16`, `2001:db8::1`, `2001:db8::/120`.
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| TargetError::Malformed(s.to_string()))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= width => p,
                _ => return Err(TargetError::BadPrefix(s.to_string())),
            },
        };
        Ok(TargetSpec {
            base: mask(addr, prefix),
            prefix,
        })
    }

    /// Number of addresses.
    pub fn count(&self) -> u128 {
        let width: u32 = if self.base.is_ipv4() { 32 } else { 128 };
        1u128
            .checked_shl(width - u32::from(self.prefix))
            .unwrap_or(u128::MAX)
    }

    /// Address `i` of the prefix (`i < count()`).
    pub fn nth(&self, i: u128) -> IpAddr {
        match self.base {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from((u32::from(a) as u128 + i) as u32)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(i))),
        }
    }
}

impl core::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Longest line of a target list, in bytes (newline excluded): a few hundred addresses.
/// Anything longer is not a target list (a binary file, `/dev/zero`), and is refused before
/// it costs memory.
pub const MAX_LINE: usize = 4096;

/// Calls `f` with each spec of `input` in order (`#` comments, blank lines, several per
/// line), holding one line of at most [`MAX_LINE`] bytes at a time.
///
/// # Errors
/// [`TargetError::Line`] naming the 1-based line for a line too long, not text, or not a
/// target; whatever `f` returns; [`TargetError::Io`] when reading fails.
pub fn for_each_spec(
    mut input: impl BufRead,
    mut f: impl FnMut(TargetSpec) -> Result<(), TargetError>,
) -> Result<(), TargetError> {
    let mut line = Vec::with_capacity(256);
    let mut number = 0usize;
    let at = |line: usize, error: TargetError| TargetError::Line {
        line,
        error: Box::new(error),
    };
    loop {
        line.clear();
        number += 1;
        match read_line(&mut input, &mut line, MAX_LINE)
            .map_err(|e| TargetError::Io(e.to_string()))?
        {
            Read::End => return Ok(()),
            Read::TooLong => return Err(at(number, TargetError::LineTooLong(MAX_LINE))),
            Read::Line => {}
        }
        let text = std::str::from_utf8(&line).map_err(|_| at(number, TargetError::NotText))?;
        let text = text.split('#').next().unwrap_or("");
        for tok in text.split_whitespace() {
            let spec = TargetSpec::parse(tok).map_err(|e| at(number, e))?;
            f(spec).map_err(|e| at(number, e))?;
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// A line (possibly the last, without its newline).
    Line,
    /// The end of the input, nothing read.
    End,
    /// More than the cap before a newline.
    TooLong,
}

/// Appends the next line of `input` to `out` without its newline, reading at most `cap + 1`
/// bytes of it.
pub(crate) fn read_line(
    input: &mut impl BufRead,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Read> {
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if out.is_empty() {
                Read::End
            } else {
                Read::Line
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if out.len() + take > cap {
            return Ok(Read::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        input.consume(take + usize::from(done));
        if done {
            return Ok(Read::Line);
        }
    }
}

/// Parses specs from lines of text (`#` comments, blank lines, several per line).
pub fn parse_lines(input: impl BufRead) -> Result<Vec<TargetSpec>, TargetError> {
    let mut out = vec![];
    for_each_spec(input, |s| {
        out.push(s);
        Ok(())
    })?;
    Ok(out)
}

/// Total addresses of a set of specs (saturating).
pub fn total(specs: &[TargetSpec]) -> u128 {
    specs.iter().fold(0u128, |a, s| a.saturating_add(s.count()))
}

/// Expands specs into a list of at most `limit` addresses, in order, keeping duplicates out
/// where the same address is listed twice as a single address.
pub fn expand(specs: &[TargetSpec], limit: u64) -> Result<Vec<IpAddr>, TargetError> {
    let n = total(specs);
    if n > u128::from(limit) {
        let worst = specs
            .iter()
            .max_by_key(|s| s.count())
            .map(|s| s.to_string())
            .unwrap_or_default();
        return Err(TargetError::TooMany {
            spec: worst,
            count: n,
            limit,
        });
    }
    let mut out = Vec::with_capacity(n as usize);
    for s in specs {
        for i in 0..s.count() {
            out.push(s.nth(i));
        }
    }
    let mut seen = std::collections::HashSet::with_capacity(out.len());
    out.retain(|a| seen.insert(*a));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_prefixes() {
        let s = TargetSpec::parse("198.19.3.7/16").unwrap();
        assert_eq!(
            (s.base, s.prefix, s.count()),
            (IpAddr::from([198, 19, 0, 0]), 16, 65_536)
        );
        assert_eq!(s.nth(65_535), IpAddr::from([198, 19, 255, 255]));
        let s = TargetSpec::parse("2001:db8:1::4d00/120").unwrap();
        assert_eq!(s.count(), 256);
        assert_eq!(s.nth(5), "2001:db8:1::4d05".parse::<IpAddr>().unwrap());
        assert_eq!(TargetSpec::parse("198.19.0.1").unwrap().count(), 1);
        assert_eq!(TargetSpec::parse("0.0.0.0/0").unwrap().count(), 1 << 32);
        assert_eq!(TargetSpec::parse("::/0").unwrap().count(), u128::MAX);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "host.example",
            "198.19.0.256",
            "198.19.0.0/33",
            "::/129",
            "1.2.3.4/x",
            "1.2.3.4/",
        ] {
            assert!(TargetSpec::parse(bad).is_err(), "{bad}");
        }
        let e = parse_lines("198.19.0.1\n# c\n 198.19.0.2 nope\n".as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: \"nope\" is not an IPv4/IPv6 address or CIDR prefix (asdic does not resolve names)"
        );
    }

    #[test]
    fn lines_are_capped_and_text() {
        // One endless line (as /dev/zero gives) stops at the cap, whatever follows.
        let zeros = std::io::Read::take(std::io::repeat(0), 1 << 30);
        let e = parse_lines(std::io::BufReader::new(zeros)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: longer than 4096 bytes, the most one line of targets may hold (is this a list of addresses?)"
        );
        let long = format!("198.19.0.1\n{}\n", "198.19.0.2 ".repeat(400));
        let e = parse_lines(long.as_bytes()).unwrap_err();
        assert!(matches!(e, TargetError::Line { line: 2, .. }), "{e}");
        // Exactly the cap is fine, without a final newline too.
        let fits = format!("{:<4096}", "198.19.0.3");
        assert_eq!(parse_lines(fits.as_bytes()).unwrap().len(), 1);
        let e = parse_lines(&b"198.19.0.1\n\xff\xfe\n"[..]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: not text (is this a list of addresses?)"
        );
        // A reader that hands out one byte at a time.
        let slow = std::io::BufReader::with_capacity(1, "198.19.0.1\r\n198.19.0.2".as_bytes());
        assert_eq!(parse_lines(slow).unwrap().len(), 2);
    }

    #[test]
    fn lines_and_expansion() {
        let specs = parse_lines("198.19.0.1 198.19.0.0/30 # comment\n\n2001:db8:1::1\n".as_bytes())
            .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(total(&specs), 6);
        let list = expand(&specs, 100).unwrap();
        let want: Vec<IpAddr> = [
            "198.19.0.1",
            "198.19.0.0",
            "198.19.0.2",
            "198.19.0.3",
            "2001:db8:1::1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(list, want);
        assert!(matches!(
            expand(&specs, 5),
            Err(TargetError::TooMany { count: 6, .. })
        ));
    }
}
