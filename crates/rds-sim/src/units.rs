//! Number and time text as RouterOS reads and prints it.

/// Parses a RouterOS number with an optional binary suffix: `1073741824`,
/// `10G`, `500M`, `1T`, `4k`, `0x10`. Suffixes are powers of 1024, as on the
/// device (`1T` = 1 099 511 627 776). Returns `None` on overflow or junk.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, multiplier) = match text.chars().last()? {
        'k' | 'K' => (&text[..text.len() - 1], 1u64 << 10),
        'm' | 'M' => (&text[..text.len() - 1], 1 << 20),
        'g' | 'G' => (&text[..text.len() - 1], 1 << 30),
        't' | 'T' => (&text[..text.len() - 1], 1 << 40),
        _ => (text, 1),
    };
    parse_plain(digits)?.checked_mul(multiplier)
}

/// Parses a bare decimal or `0x` hexadecimal number without suffix.
pub fn parse_plain(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Groups digits in threes with spaces: `10 737 418 240`.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A byte count the way RouterOS shows `file-size` and `/file` sizes: one
/// decimal and a binary unit, moving to the next unit only once the value
/// exceeds 1024 of the current one (1 TiB prints as `1024.0GiB`). Values of
/// at most 1024 bytes print as plain numbers.
pub fn humanize_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes <= 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value > 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// RouterOS duration text: `3w2d4h5m6s`, leading zero units omitted.
pub fn format_duration(seconds: u64) -> String {
    let parts = [
        (seconds / 604_800, 'w'),
        (seconds / 86_400 % 7, 'd'),
        (seconds / 3_600 % 24, 'h'),
        (seconds / 60 % 60, 'm'),
        (seconds % 60, 's'),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 || (!out.is_empty()) {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        "0s".to_string()
    } else {
        out
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix timestamp, as `/file` prints dates.
pub fn format_datetime(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_suffixes() {
        assert_eq!(parse_size("1073741824"), Some(1 << 30));
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("1T"), Some(1_099_511_627_776));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("0x10"), Some(16));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn digits_are_grouped_in_threes() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(512), "512");
        assert_eq!(group_digits(4096), "4 096");
        assert_eq!(group_digits(10_737_418_240), "10 737 418 240");
        assert_eq!(group_digits(100_000), "100 000");
    }

    #[test]
    fn sizes_humanise_like_the_device() {
        assert_eq!(humanize_bytes(512), "512");
        assert_eq!(humanize_bytes(1024), "1024");
        assert_eq!(humanize_bytes(1536), "1.5KiB");
        assert_eq!(humanize_bytes(1 << 30), "1024.0MiB");
        assert_eq!(humanize_bytes(10 << 30), "10.0GiB");
        assert_eq!(humanize_bytes(1 << 40), "1024.0GiB");
        assert_eq!(humanize_bytes((1 << 40) + (1 << 39)), "1.5TiB");
        assert_eq!(humanize_bytes(u64::MAX), "16384.0PiB");
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration(3_600), "1h0m0s");
        assert_eq!(format_duration(694_861), "1w1d1h1m1s");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(1_762_871_561), "2025-11-11 14:32:41");
        assert_eq!(format_datetime(951_782_400), "2000-02-29 00:00:00");
    }
}
