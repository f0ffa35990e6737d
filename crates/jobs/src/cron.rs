//! Six-field cron specs (`sec min hour day-of-month month day-of-week`), the
//! arguments of `@cron` triggers, evaluated in UTC.
//!
//! Fields accept `*`, `?`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
//! `a,b`, month names (`jan`…) and day names (`sun`…; 0 and 7 are Sunday). As in the
//! Cozy stack's cron library, when both day fields are restricted a day matching
//! either one fires.

use hearth_core::{civil_from_days, days_from_civil};

/// A parsed cron spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month field was `*`/`?`.
    any_day: bool,
    /// Whether the day-of-week field was `*`/`?`.
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses a spec; the error says which field is wrong and why.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "{spec:?} is not a cron spec: it needs 6 fields (seconds minutes hours \
                 day-of-month month day-of-week), not {}",
                fields.len()
            ));
        }
        let field = |i: usize, name: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(fields[i], min, max, names)
                .map_err(|why| format!("invalid {name} field {:?} in cron spec: {why}", fields[i]))
        };
        let mut weekdays = field(5, "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Self {
            seconds: field(0, "seconds", 0, 59, &[])?,
            minutes: field(1, "minutes", 0, 59, &[])?,
            hours: field(2, "hours", 0, 23, &[])?,
            days: field(3, "day-of-month", 1, 31, &[])?,
            months: field(4, "month", 1, 12, &MONTHS)?,
            weekdays,
            any_day: matches!(fields[3], "*" | "?"),
            any_weekday: matches!(fields[5], "*" | "?"),
        })
    }

    /// The first firing time strictly after `after` (Unix seconds), if any within
    /// the next eight years.
    pub fn next_after(&self, after: u64) -> Option<u64> {
        let mut t = after.checked_add(1)?;
        let limit = after + 8 * 366 * 86_400;
        while t <= limit {
            let days = (t / 86_400) as i64;
            let (year, month, day) = civil_from_days(days);
            let secs_of_day = t % 86_400;
            if !bit(self.months, month as u32) {
                // First second of the next month.
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                t = days_from_civil(y, m, 1) as u64 * 86_400;
                continue;
            }
            if !self.day_matches(day as u32, weekday(days)) {
                t = (days as u64 + 1) * 86_400;
                continue;
            }
            let (hour, minute, second) = (
                (secs_of_day / 3600) as u32,
                (secs_of_day % 3600 / 60) as u32,
                (secs_of_day % 60) as u32,
            );
            if !bit(self.hours, hour) {
                t = t - secs_of_day % 3600 + 3600;
                continue;
            }
            if !bit(self.minutes, minute) {
                t = t - secs_of_day % 60 + 60;
                continue;
            }
            if !bit(self.seconds, second) {
                t += 1;
                continue;
            }
            return Some(t);
        }
        None
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = bit(self.days, day);
        let w = bit(self.weekdays, weekday);
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => w,
            (false, true) => d,
            (false, false) => d || w,
        }
    }
}

fn bit(set: u64, n: u32) -> bool {
    set & (1 << n) != 0
}

/// 0 = Sunday. 1970-01-01 was a Thursday.
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

fn parse_field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            let first = if names.len() == 12 { 1 } else { 0 };
            return Ok(i as u32 + first);
        }
        let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{n} is out of range {min}-{max}"));
        }
        Ok(n)
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("{s:?} is not a step"))?;
                if step == 0 {
                    return Err("a step cannot be 0".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is reversed"));
        }
        let mut n = lo;
        while n <= hi {
            set |= 1 << n;
            n += step;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::{parse_rfc3339, rfc3339};

    fn next(spec: &str, after: &str) -> String {
        let t = parse_rfc3339(after).unwrap_or_default();
        rfc3339(
            Cron::parse(spec)
                .unwrap_or_else(|e| panic!("{e}"))
                .next_after(t)
                .unwrap_or(0),
        )
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("* * * * * *", "2026-11-24T10:00:00Z"),
            "2026-11-24T10:00:01Z"
        );
        assert_eq!(
            next("0 * * * * *", "2026-11-24T10:00:00Z"),
            "2026-11-24T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * * *", "2026-11-24T10:00:14Z"),
            "2026-11-24T10:00:15Z"
        );
        assert_eq!(
            next("0 30 2 * * *", "2026-11-24T10:00:00Z"),
            "2026-11-25T02:30:00Z"
        );
        assert_eq!(
            next("0 0 0 1 jan *", "2026-11-24T10:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 29 2 *", "2026-11-24T10:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        // 2026-11-24 is a Tuesday; the next Sunday is the 29th.
        assert_eq!(
            next("0 0 9 * * sun", "2026-11-24T10:00:00Z"),
            "2026-11-29T09:00:00Z"
        );
        assert_eq!(
            next("0 0 9 * * 7", "2026-11-24T10:00:00Z"),
            "2026-11-29T09:00:00Z"
        );
        assert_eq!(
            next("0 0 9 * * mon-fri", "2026-11-24T10:00:00Z"),
            "2026-11-25T09:00:00Z"
        );
        // Both day fields restricted: either matches (the 1st, or a Sunday).
        assert_eq!(
            next("0 0 0 1 * 0", "2026-11-24T10:00:00Z"),
            "2026-11-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 12 31 dec ?", "2026-12-31T12:00:00Z"),
            "2027-12-31T12:00:00Z"
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, says) in [
            ("* * * * *", "6 fields"),
            ("60 * * * * *", "seconds"),
            ("* * 24 * * *", "hours"),
            ("* * * 0 * *", "day-of-month"),
            ("* * * * foo *", "month"),
            ("* * * * * */0", "step"),
            ("* 5-1 * * * *", "reversed"),
        ] {
            let err = Cron::parse(spec).err().unwrap_or_default();
            assert!(err.contains(says), "{spec}: {err}");
        }
        assert_eq!(
            Cron::parse("0 0 0 31 2 *").map(|c| c.next_after(0)),
            Ok(None)
        );
    }
}
