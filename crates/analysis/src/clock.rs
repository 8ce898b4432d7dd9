//! Calendar arithmetic for UTC timestamps in file names and reports (no time-zone data:
//! asdic writes UTC only).

/// A UTC instant's calendar fields: year, month (1–12), day (1–31), hour, minute, second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
}

impl Utc {
    /// The fields of `secs` seconds since the Unix epoch.
    pub fn from_unix(secs: u64) -> Utc {
        let (year, month, day) = civil((secs / 86_400) as i64);
        let rem = (secs % 86_400) as u32;
        Utc {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }
}

impl core::fmt::Display for Utc {
    /// RFC 3339 to the second: `2026-12-07T15:22:39Z` (`{:#}` leaves out the `Z`, for a
    /// fraction to follow).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )?;
        if f.alternate() {
            Ok(())
        } else {
            f.write_str("Z")
        }
    }
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), counting 400-year
/// eras of 146,097 days from 0000-03-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_rfc_3339() {
        let t = Utc::from_unix(1_795_910_400 - 1);
        assert_eq!(t.to_string(), "2026-11-28T23:59:59Z");
        assert_eq!(format!("{t:#}.5Z"), "2026-11-28T23:59:59.5Z");
    }

    #[test]
    fn known_instants() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        // 2000-02-29, a leap day in a century leap year; 2100-03-01 after a non-leap century.
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(47_541), (2100, 3, 1));
        let t = Utc::from_unix(1_795_910_400 - 1);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 11, 28, 23, 59, 59)
        );
    }
}
