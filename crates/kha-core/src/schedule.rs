//! Scheduled builds (Travis's cron): when a schedule runs first and next,
//! and whether a due one builds. Pure: times are UTC milliseconds and the
//! caller's clock says what now is, so tables drive every rule.
//!
//! Travis's rules (travis-api's `Cron` model), kept: an interval schedule
//! (daily, weekly, monthly) first runs a minute after it is made, then one
//! interval after the run that was due, unless that run was a whole
//! interval late (the control node was down): then one interval after now.
//! A cron expression runs at its next matching minute after now. Either
//! way a schedule missed while the control node was down runs once when
//! it comes back, not once per missed slot. `dont_run_if_recent_build_exists`
//! skips a run when the branch had a build other than a cron build in the
//! last 24 hours.
//!
//! Cron expressions are the standard five fields (minute, hour, day of
//! month, month, day of week), in UTC, with lists, ranges, steps, month
//! and weekday names, 7 for Sunday, the `@daily`-style shorthands, and
//! Vixie cron's rule for the two day fields: when both are restricted a
//! day matching either runs.

use crate::time::{civil_from_days, days_from_civil};
use crate::Millis;
use std::fmt;

pub const MINUTE_MS: Millis = 60_000;
pub const DAY_MS: Millis = 86_400_000;
/// How recent a build keeps a `dont_run_if_recent_build_exists` schedule
/// from running.
pub const RECENT_BUILD_MS: Millis = DAY_MS;
/// An interval schedule's first run comes this long after it is made
/// (Travis's `SCHEDULER_INTERVAL`).
pub const FIRST_RUN_DELAY_MS: Millis = MINUTE_MS;
/// How far ahead a cron expression is searched: one whole Gregorian cycle
/// (400 years), after which every date repeats with its weekday, so an
/// expression that matches none in it matches none ever. Only a rare
/// pattern (the 29th of February on a Sunday) searches more than a few
/// years' days.
const HORIZON_DAYS: i64 = 146_097;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Daily,
    Weekly,
    Monthly,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Interval, String> {
        match s {
            "daily" => Ok(Interval::Daily),
            "weekly" => Ok(Interval::Weekly),
            "monthly" => Ok(Interval::Monthly),
            _ => Err(format!(
                "interval {s:?} is not daily, weekly or monthly (for anything else give a cron expression)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Daily => "daily",
            Interval::Weekly => "weekly",
            Interval::Monthly => "monthly",
        }
    }

    /// One interval after `t`: a day, a week, or the same time on the same
    /// day of the next month, its last day if it is shorter (as Rails'
    /// `1.month`, which Travis uses).
    pub fn after(self, t: Millis) -> Millis {
        match self {
            Interval::Daily => t.saturating_add(DAY_MS),
            Interval::Weekly => t.saturating_add(7 * DAY_MS),
            Interval::Monthly => {
                let (days, rem) = ((t / DAY_MS) as i64, t % DAY_MS);
                let (y, m, d) = civil_from_days(days);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let d = d.min(days_in_month(y, m));
                (days_from_civil(y, m, d) as u64) * DAY_MS + rem
            }
        }
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
}

/// How often a schedule runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    Every(Interval),
    Cron(CronExpr),
}

impl Cadence {
    /// From its two stored fields: exactly one of an interval name and a
    /// cron expression.
    pub fn new(interval: &str, cron: &str) -> Result<Cadence, String> {
        match (interval.trim(), cron.trim()) {
            ("", "") => {
                Err("give an interval (daily, weekly, monthly) or a cron expression".into())
            }
            (i, "") => Interval::parse(i).map(Cadence::Every),
            ("", c) => CronExpr::parse(c).map(Cadence::Cron),
            _ => Err("give an interval or a cron expression, not both".into()),
        }
    }

    /// When a schedule made at `now` runs first.
    pub fn first_run(&self, now: Millis) -> Millis {
        match self {
            Cadence::Every(_) => now.saturating_add(FIRST_RUN_DELAY_MS),
            Cadence::Cron(c) => c.next_after(now),
        }
    }

    /// When a schedule runs next, after the run that was due at `due`
    /// happened (or was skipped) at `now`. Always after `now`.
    pub fn next_run(&self, due: Millis, now: Millis) -> Millis {
        match self {
            Cadence::Every(i) => {
                // A run a whole interval late (or more) starts the series
                // again from now: one build for an outage, not a burst.
                let from = if i.after(due) <= now { now } else { due };
                i.after(from)
            }
            Cadence::Cron(c) => c.next_after(now),
        }
    }
}

/// Whether a due schedule is skipped: it runs only if no build other than
/// a cron build was made on its branch in the last 24 hours (Travis's
/// `dont_run_if_recent_build_exists`; `newest_other_build` is when the
/// newest was created).
pub fn skip_for_recent_build(
    dont_run_if_recent_build_exists: bool,
    newest_other_build: Option<Millis>,
    now: Millis,
) -> bool {
    dont_run_if_recent_build_exists
        && newest_other_build.is_some_and(|t| now.saturating_sub(t) < RECENT_BUILD_MS)
}

/// A standard five-field cron expression, in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    text: String,
    /// Bit n: minute n matches.
    minutes: u64,
    hours: u32,
    /// Bit n: day of month n (1–31).
    days: u32,
    /// Bit n: month n (1–12).
    months: u16,
    /// Bit n: weekday n, 0 = Sunday.
    weekdays: u8,
    /// Vixie cron: when either day field starts with `*`, a day must match
    /// both; else either.
    days_and: bool,
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [min, hour, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "cron expression {text:?} has {} fields; it needs 5: minute hour day-of-month month day-of-week (e.g. \"0 3 * * *\", daily at 03:00 UTC)",
                fields.len()
            ));
        };
        let bad = |field: &str, why: String| format!("cron expression {text:?}: {field}: {why}");
        let minutes = field(min, 0, 59, &[]).map_err(|e| bad("minute", e))?;
        let hours = field(hour, 0, 23, &[]).map_err(|e| bad("hour", e))?;
        let days = field(dom, 1, 31, &[]).map_err(|e| bad("day of month", e))?;
        let months = field(mon, 1, 12, &MONTHS).map_err(|e| bad("month", e))?;
        let mut weekdays = field(dow, 0, 7, &WEEKDAYS).map_err(|e| bad("day of week", e))?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let expr = CronExpr {
            text: text.to_string(),
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_and: dom.starts_with('*') || dow.starts_with('*'),
        };
        // "0 0 31 2 *" is well formed and never runs: say so now.
        if expr.next_after_checked(0).is_none() {
            return Err(format!("cron expression {text:?} never matches a date"));
        }
        Ok(expr)
    }

    /// The first matching minute strictly after `t`.
    pub fn next_after(&self, t: Millis) -> Millis {
        // Every expression was checked to match some date, and so matches
        // one within every 400 years.
        self.next_after_checked(t).unwrap_or(Millis::MAX)
    }

    fn next_after_checked(&self, t: Millis) -> Option<Millis> {
        let start = (t / MINUTE_MS + 1) * MINUTE_MS;
        let first_day = (start / DAY_MS) as i64;
        let start_minute = ((start % DAY_MS) / MINUTE_MS) as u32;
        for day in first_day..first_day + HORIZON_DAYS {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day { start_minute } else { 0 };
            if let Some(m) = self.first_minute_from(from) {
                return Some(day as u64 * DAY_MS + u64::from(m) * MINUTE_MS);
            }
        }
        None
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, m, d) = civil_from_days(day);
        if self.months & (1 << m) == 0 {
            return false;
        }
        let weekday = (day + 4).rem_euclid(7); // 1970-01-01 was a Thursday
        let dom = self.days & (1 << d) != 0;
        let dow = self.weekdays & (1 << weekday) != 0;
        if self.days_and {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching minute of a day at or after minute `from`.
    fn first_minute_from(&self, from: u32) -> Option<u32> {
        (from..24 * 60)
            .find(|m| self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0)
    }
}

/// One field as a bit set of the values in `lo..=hi` it matches.
fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0 (Sunday).
            return Ok(i as u32 + lo);
        }
        let n: u32 = v
            .parse()
            .map_err(|_| format!("{v:?} is not a number from {lo} to {hi}"))?;
        if n < lo || n > hi {
            return Err(format!("{n} is out of range ({lo} to {hi})"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for item in s.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => {
                let step: u32 = st
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("step {st:?} is not a number over 0"))?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            "" => return Err(format!("{s:?} has an empty item")),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // "5/15" runs from 5 to the end, by 15.
                None if step.is_some() => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("range {range:?} runs backwards"));
        }
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::iso8601;

    /// `2026-12-04T10:00` (UTC) as milliseconds.
    fn at(s: &str) -> Millis {
        let (date, time) = s.split_once('T').unwrap();
        let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
        let t: Vec<u64> = time.split(':').map(|x| x.parse().unwrap()).collect();
        let secs = t.get(2).copied().unwrap_or(0);
        days_from_civil(d[0], d[1], d[2]) as u64 * DAY_MS
            + t[0] * 3_600_000
            + t[1] * MINUTE_MS
            + secs * 1000
    }

    #[test]
    fn cron_expressions_run_next_at() {
        // (expression, now, next run); 2026-12-04 is a Friday.
        for (expr, now, next) in [
            ("0 3 * * *", "2026-12-04T10:00", "2026-12-05T03:00:00Z"),
            ("0 3 * * *", "2026-12-04T02:59:59", "2026-12-04T03:00:00Z"),
            // Strictly after: a run at its own minute waits for the next.
            ("0 3 * * *", "2026-12-04T03:00", "2026-12-05T03:00:00Z"),
            ("0 3 * * *", "2026-12-04T03:00:30", "2026-12-05T03:00:00Z"),
            (
                "*/15 * * * *",
                "2026-12-04T10:07:30",
                "2026-12-04T10:15:00Z",
            ),
            ("5/20 * * * *", "2026-12-04T10:30", "2026-12-04T10:45:00Z"),
            ("0 9-17/4 * * *", "2026-12-04T13:30", "2026-12-04T17:00:00Z"),
            ("0,30 8 * * *", "2026-12-04T08:10", "2026-12-04T08:30:00Z"),
            ("0 0 1 * *", "2026-12-04T10:00", "2027-01-01T00:00:00Z"),
            ("0 12 * * mon", "2026-12-04T10:00", "2026-12-07T12:00:00Z"),
            (
                "0 12 * * MON-FRI",
                "2026-12-05T10:00",
                "2026-12-07T12:00:00Z",
            ),
            ("30 2 * * 7", "2026-12-04T10:00", "2026-12-06T02:30:00Z"),
            ("30 2 * * 0", "2026-12-04T10:00", "2026-12-06T02:30:00Z"),
            ("0 0 * jun *", "2026-12-04T10:00", "2027-06-01T00:00:00Z"),
            // Both day fields restricted: either matches (Friday the 11th
            // comes before the 13th).
            ("0 0 13 * 5", "2026-12-04T10:00", "2026-12-11T00:00:00Z"),
            // One of them `*`-led: both must match (a Sunday the 13th, not
            // Sunday the 6th).
            ("0 0 13 * */7", "2026-12-04T10:00", "2026-12-13T00:00:00Z"),
            ("0 0 29 2 *", "2026-12-04T10:00", "2028-02-29T00:00:00Z"),
            ("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59:00Z"),
            ("@daily", "2026-12-04T10:00", "2026-12-05T00:00:00Z"),
            ("@hourly", "2026-12-04T10:00", "2026-12-04T11:00:00Z"),
            ("@weekly", "2026-12-04T10:00", "2026-12-06T00:00:00Z"),
        ] {
            let c = CronExpr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(iso8601(c.next_after(at(now))), next, "{expr} after {now}");
        }
    }

    #[test]
    fn bad_cron_expressions_say_why() {
        for (expr, says) in [
            ("* * * *", "has 4 fields; it needs 5"),
            ("* * * * * *", "has 6 fields"),
            ("60 * * * *", "minute: 60 is out of range (0 to 59)"),
            ("* 24 * * *", "hour: 24 is out of range"),
            ("* * 0 * *", "day of month: 0 is out of range (1 to 31)"),
            ("* * * 13 *", "month: 13 is out of range"),
            ("* * * * 8", "day of week: 8 is out of range"),
            ("*/0 * * * *", "step \"0\" is not a number over 0"),
            ("5-1 * * * *", "range \"5-1\" runs backwards"),
            ("x * * * *", "\"x\" is not a number from 0 to 59"),
            ("1,,2 * * * *", "has an empty item"),
            ("* * * foo *", "\"foo\" is not a number from 1 to 12"),
            ("0 0 31 2 *", "never matches a date"),
            ("", "has 0 fields"),
        ] {
            let e = CronExpr::parse(expr).unwrap_err();
            assert!(e.contains(says), "{expr:?}: {e}");
        }
    }

    #[test]
    fn intervals_run_after_the_run_that_was_due_and_outages_give_one_run() {
        let d = |i: &str| Cadence::new(i, "").unwrap();
        // (cadence, due, now, next run)
        for (c, due, now, next) in [
            // On time (or a little late): the series keeps its time of day.
            (
                "daily",
                "2026-12-04T10:00",
                "2026-12-04T10:00:01",
                "2026-12-05T10:00:00Z",
            ),
            (
                "daily",
                "2026-12-04T10:00",
                "2026-12-04T22:00",
                "2026-12-05T10:00:00Z",
            ),
            (
                "weekly",
                "2026-12-04T10:00",
                "2026-12-04T10:00",
                "2026-12-11T10:00:00Z",
            ),
            // A whole interval late (the control node was down): one run
            // now, the next an interval from now.
            (
                "daily",
                "2026-12-04T10:00",
                "2026-12-05T10:00",
                "2026-12-06T10:00:00Z",
            ),
            (
                "daily",
                "2026-12-04T10:00",
                "2026-12-09T07:30",
                "2026-12-10T07:30:00Z",
            ),
            (
                "weekly",
                "2026-12-04T10:00",
                "2026-12-20T08:00",
                "2026-12-27T08:00:00Z",
            ),
            // Months: the same day, or the last day of a shorter month.
            (
                "monthly",
                "2026-12-04T10:00",
                "2026-12-04T10:00",
                "2027-01-04T10:00:00Z",
            ),
            (
                "monthly",
                "2027-01-31T10:00",
                "2027-01-31T10:00",
                "2027-02-28T10:00:00Z",
            ),
            (
                "monthly",
                "2028-01-31T10:00",
                "2028-01-31T10:00",
                "2028-02-29T10:00:00Z",
            ),
            (
                "monthly",
                "2026-12-04T10:00",
                "2027-03-01T00:00",
                "2027-04-01T00:00:00Z",
            ),
        ] {
            let got = d(c).next_run(at(due), at(now));
            assert_eq!(iso8601(got), next, "{c} due {due} run {now}");
            assert!(got > at(now));
        }
        // A cron expression: its next minute after the run, however late.
        let c = Cadence::new("", "0 3 * * *").unwrap();
        assert_eq!(
            iso8601(c.next_run(at("2026-12-01T03:00"), at("2026-12-04T10:00"))),
            "2026-12-05T03:00:00Z"
        );
    }

    #[test]
    fn first_runs() {
        let now = at("2026-12-04T10:00:30");
        // Travis: a minute after the schedule is made.
        assert_eq!(
            Cadence::new("daily", "").unwrap().first_run(now),
            now + MINUTE_MS
        );
        assert_eq!(
            iso8601(Cadence::new("", "15 10 * * *").unwrap().first_run(now)),
            "2026-12-04T10:15:00Z"
        );
        for (i, c, says) in [
            ("", "", "give an interval"),
            ("daily", "0 3 * * *", "not both"),
            ("hourly", "", "is not daily, weekly or monthly"),
        ] {
            let e = Cadence::new(i, c).unwrap_err();
            assert!(e.contains(says), "{i:?} {c:?}: {e}");
        }
    }

    #[test]
    fn recent_builds_skip_only_schedules_that_ask() {
        let now = at("2026-12-04T10:00");
        // (dont_run_if_recent_build_exists, newest other build, skipped)
        for (flag, newest, skipped) in [
            (true, Some("2026-12-04T09:00"), true),
            (true, Some("2026-12-03T10:00:01"), true),
            (true, Some("2026-12-03T10:00"), false),
            (true, None, false),
            (false, Some("2026-12-04T09:00"), false),
        ] {
            assert_eq!(
                skip_for_recent_build(flag, newest.map(at), now),
                skipped,
                "{flag} {newest:?}"
            );
        }
    }
}
