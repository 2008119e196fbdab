//! Wall-clock times as people write them: ISO 8601 UTC dates out, and the
//! expiry forms `kha token create --expires` takes in ("30d", "12h",
//! "2026-12-31"). Civil-date arithmetic is Howard Hinnant's algorithms, so
//! no calendar crate is needed for UTC.

use crate::Millis;

/// `ms` since the epoch as `2025-05-01T12:00:00Z`.
pub fn iso8601(ms: Millis) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The civil date (year, month 1–12, day 1–31) of a day since the epoch.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since the epoch of a civil date (proleptic Gregorian).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An expiry: a span from `now` ("90d", "12h", "30m") or a UTC date
/// ("2026-12-31", the start of that day). Errors say what is accepted.
pub fn parse_expiry(s: &str, now: Millis) -> Result<Millis, String> {
    let s = s.trim();
    let bad = || {
        format!("{s:?} is not an expiry: give a span such as 30d, 12h or 45m, or a date such as 2026-12-31")
    };
    if let Some((n, unit)) = s
        .char_indices()
        .last()
        .filter(|(_, c)| c.is_ascii_alphabetic())
        .map(|(i, c)| (&s[..i], c))
    {
        let n: u64 = n.parse().map_err(|_| bad())?;
        let ms = match unit {
            'd' => 86_400_000,
            'h' => 3_600_000,
            'm' => 60_000,
            _ => return Err(bad()),
        };
        if n == 0 {
            return Err(bad());
        }
        return n
            .checked_mul(ms)
            .and_then(|d| now.checked_add(d))
            .ok_or_else(bad);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    // 2026-02-31 would roll into March: refuse it.
    if !iso8601(days as u64 * 86_400_000).starts_with(&format!("{y:04}-{m:02}-{d:02}")) {
        return Err(bad());
    }
    Ok(days as u64 * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_both_ways() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_746_100_800_000), "2025-05-01T12:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(parse_expiry("2000-02-29", 0), Ok(951_782_400_000));
        assert_eq!(parse_expiry("30d", 1000), Ok(1000 + 30 * 86_400_000));
        assert_eq!(parse_expiry("12h", 0), Ok(12 * 3_600_000));
        assert_eq!(parse_expiry("45m", 0), Ok(45 * 60_000));
        for bad in [
            "",
            "0d",
            "3w",
            "d",
            "2026-02-31",
            "2026-13-01",
            "tomorrow",
            "1-2",
        ] {
            let e = parse_expiry(bad, 0).unwrap_err();
            assert!(e.contains("30d"), "{bad}: {e}");
        }
    }
}
