//! Byte sizes on the command line: parsed with SI or IEC suffixes (`3GB` = 3·10⁹,
//! `3GiB` = 3·2³⁰, a bare number is bytes) and printed in SI (`5.0 GB`).

/// Parses `3GB`, `3 gb`, `1.5GiB`, `3G`, `3k`, `1,000` or `42` into bytes.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.replace(',', "");
    let invalid = || format!("invalid size {input:?} (examples: 5GB, 500MB, 2GiB, 1000000)");
    if number.is_empty() {
        return Err(invalid());
    }
    let multiplier = unit_multiplier(&unit.trim().to_ascii_lowercase()).ok_or_else(invalid)?;
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(invalid);
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    // A u64 converts to f64 with rounding, which does not matter for the range check.
    #[allow(clippy::cast_precision_loss)]
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(invalid());
    }
    // Checked above: finite, non-negative and in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes.round() as u64)
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    const SI: [&str; 7] = ["", "k", "m", "g", "t", "p", "e"];
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    let (prefix, base) = if let Some(p) = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('i'))
    {
        (p, 1024u64)
    } else {
        (unit.strip_suffix('b').unwrap_or(unit), 1000u64)
    };
    let power = SI.iter().position(|s| *s == prefix).filter(|p| *p > 0)?;
    base.checked_pow(u32::try_from(power).ok()?)
}

/// Prints bytes in SI units: `123 B`, `1.5 kB`, `5.0 GB`, `50 GB` (one decimal below
/// ten units, none from ten on, rounded half up).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let mut exponent = 0;
    let mut scale = 1u64;
    while exponent + 1 < UNITS.len() && bytes / scale >= 1000 {
        scale *= 1000;
        exponent += 1;
    }
    // Display only: f64 keeps 15 significant digits, more than printed.
    #[allow(clippy::cast_precision_loss)]
    let value = ((bytes as f64 / scale as f64) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[exponent];
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_si_iec_and_bare_numbers() {
        let cases: &[(&str, u64)] = &[
            ("3GB", 3_000_000_000),
            ("3GiB", 3 * (1 << 30)),
            ("3 gb", 3_000_000_000),
            ("3G", 3_000_000_000),
            ("3Gi", 3 * (1 << 30)),
            ("1.5GB", 1_500_000_000),
            ("500MB", 500_000_000),
            ("2KiB", 2048),
            ("1kB", 1000),
            ("42", 42),
            ("42B", 42),
            ("0", 0),
            ("1,000", 1000),
            ("1TB", 1_000_000_000_000),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_size(input), Ok(*expected), "{input}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for input in [
            "",
            "GB",
            "-3GB",
            "3XB",
            "3 GB extra",
            "1.2.3",
            "99999999999EB",
        ] {
            assert!(parse_size(input).is_err(), "{input}");
        }
        assert_eq!(
            parse_size("lots"),
            Err("invalid size \"lots\" (examples: 5GB, 500MB, 2GiB, 1000000)".into())
        );
    }

    #[test]
    fn prints_si() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (9, "9 B"),
            (123, "123 B"),
            (1000, "1.0 kB"),
            (1500, "1.5 kB"),
            (5_000_000_000, "5.0 GB"),
            (3 * (1 << 30), "3.2 GB"),
            (50_000_000_000, "50 GB"),
            (999_999, "1000 kB"),
            (1_000_000_000_000, "1.0 TB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(format_size(*bytes), *expected, "{bytes}");
        }
    }
}
