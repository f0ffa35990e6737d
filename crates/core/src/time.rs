//! RFC 3339 timestamps without a date library: UTC, second or nanosecond precision.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `2026-11-24T10:01:45.123456789Z`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (date, time) = civil(d.as_secs());
    format!("{date}T{time}.{:09}Z", d.subsec_nanos())
}

/// A Unix time in seconds as `2026-11-24T10:01:45Z`.
pub fn rfc3339(secs: u64) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// Parses `2026-11-24T10:01:45Z` (fractions of a second and a numeric offset
/// allowed) into Unix seconds; `None` for anything else or a date before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let time_len = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(time_len);
    let clock = clock.split_once('.').map_or(clock, |(c, fraction)| {
        if fraction.bytes().all(|b| b.is_ascii_digit()) {
            c
        } else {
            ""
        }
    });
    let mut t = clock.splitn(3, ':');
    let (hour, minute, second) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone.get(1..)?.split_once(':')?;
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// The date (year, month 1-12, day 1-31) of a day counted from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The number of days from 1970-01-01 to a date (month 1-12, day 1-31).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Howard Hinnant's days-from-civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_514_505), "2026-11-24T10:01:45Z");
        assert!(now_rfc3339().ends_with('Z'));
    }

    #[test]
    fn parsing() {
        for secs in [0, 951_782_400, 1_795_514_505, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }
        let now = now_rfc3339();
        assert!(parse_rfc3339(&now).is_some(), "{now}");
        assert_eq!(
            parse_rfc3339("2026-11-24T11:01:45+01:00"),
            Some(1_795_514_505)
        );
        assert_eq!(parse_rfc3339("2026-11-24T10:01:45.5Z"), Some(1_795_514_505));
        for bad in [
            "",
            "2026-11-24",
            "2026-13-01T00:00:00Z",
            "x026-11-24T10:01:45Z",
            "1969-12-31T23:59:59Z",
            "2026-11-24T10:01:45.x9Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
