//! Text forms of typed key values: hex bytes, uuids, dates and timestamps, as they
//! are written in a cursor's JSON and bound as parameters.
//!
//! Dates are days and timestamps microseconds since 1970-01-01 (UTC for
//! `timestamptz`), proleptic Gregorian, with PostgreSQL's `infinity` and
//! `-infinity` (`i32::MAX`/`i32::MIN`, `i64::MAX`/`i64::MIN`) and its ` BC` suffix for
//! years before 1 AD.

/// Microseconds in a day.
pub(crate) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (an optional `\x` prefix, as PostgreSQL writes `bytea`).
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.strip_prefix("\\x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `67e55044-10b1-426f-9247-bb680e5fe0c8`.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let h = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 16 bytes of a uuid in its text form (hyphens optional).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return None;
    }
    unhex(&digits)?.try_into().ok()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD`, and whether it needs ` BC` (years before 1 AD, as PostgreSQL writes
/// them).
fn format_ymd(days: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days);
    if year <= 0 {
        (format!("{:04}-{month:02}-{day:02}", 1 - year), true)
    } else {
        (format!("{year:04}-{month:02}-{day:02}"), false)
    }
}

/// A date's text form: `2024-05-01`, `0044-03-15 BC`, `infinity`.
pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_string(),
        i32::MIN => "-infinity".to_string(),
        _ => {
            let (ymd, bc) = format_ymd(days.into());
            if bc { format!("{ymd} BC") } else { ymd }
        }
    }
}

/// A timestamp's text form: `YYYY-MM-DD{sep}HH:MM:SS[.ffffff]`, with `Z` (`sep` of
/// `T`) or `+00` (any other `sep`) when `utc`, and ` BC` before 1 AD.
pub fn format_timestamp(micros: i64, utc: bool, sep: char) -> String {
    match micros {
        i64::MAX => return "infinity".to_string(),
        i64::MIN => return "-infinity".to_string(),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (ymd, bc) = format_ymd(days);
    let secs = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let mut out = format!(
        "{ymd}{sep}{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if fraction != 0 {
        out.push_str(&format!(".{fraction:06}"));
    }
    if utc {
        out.push_str(if sep == 'T' { "Z" } else { "+00" });
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Parses `YYYY-MM-DD` (a ` BC` date when `bc`) into days since 1970-01-01.
fn parse_ymd(text: &str, bc: bool) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 0 || (bc && year == 0) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    let days = days_from_civil(year, month, day);
    // reject 2024-02-31 and the like
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// Parses a date's text form (see [`format_date`]).
pub fn parse_date(text: &str) -> Option<i32> {
    match text {
        "infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    i32::try_from(parse_ymd(text, bc)?).ok()
}

/// Parses a timestamp: `YYYY-MM-DDTHH:MM:SS[.f…]` (or a space for `T`), plus `Z` or
/// an offset `±HH[:MM]` when `utc` (a `timestamptz`), optionally ` BC`.
pub fn parse_timestamp(text: &str, utc: bool) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let split = text.find(['T', ' '])?;
    let (date, rest) = (&text[..split], &text[split + 1..]);
    let days = parse_ymd(date, bc)?;
    let (time, offset_secs) = if utc {
        if let Some(time) = rest.strip_suffix('Z') {
            (time, 0)
        } else {
            let at = rest.rfind(['+', '-'])?;
            let (time, offset) = (&rest[..at], &rest[at..]);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let mut hm = offset[1..].splitn(2, ':');
            let hours: i64 = hm.next()?.parse().ok()?;
            let minutes: i64 = hm.next().map_or(Some(0), |m| m.parse().ok())?;
            if hours > 15 || minutes > 59 {
                return None;
            }
            (time, sign * (hours * 3600 + minutes * 60))
        }
    } else {
        (rest, 0)
    };
    let (hms, fraction) = match time.split_once('.') {
        Some((hms, fraction)) => (hms, fraction),
        None => (time, ""),
    };
    let mut parts = hms.splitn(3, ':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts.next()?.parse().ok()?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    if fraction.len() > 6 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let micros_fraction: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    let secs = days * 86_400 + hours * 3600 + minutes * 60 + seconds - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros_fraction)
}

/// A decimal's text form is kept exactly as the database wrote it; this checks it is
/// one: an optional sign, digits, an optional fraction.
pub(crate) fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.chars().all(|c| c.is_ascii_digit())
        && fraction.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for days in [-800_000i64, -719_528, -1, 0, 1, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_844), "2024-05-01");
        assert_eq!(parse_date("2024-05-01"), Some(19_844));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("infinity"), Some(i32::MAX));
        let bc = days_from_civil(-43, 3, 15) as i32;
        assert_eq!(format_date(bc), "0044-03-15 BC");
        assert_eq!(parse_date("0044-03-15 BC"), Some(bc));
    }

    #[test]
    fn timestamps_round_trip() {
        let t = 1_714_566_896_123_456i64; // 2024-05-01T12:34:56.123456Z
        assert_eq!(
            format_timestamp(t, true, 'T'),
            "2024-05-01T12:34:56.123456Z"
        );
        assert_eq!(
            format_timestamp(t, true, ' '),
            "2024-05-01 12:34:56.123456+00"
        );
        assert_eq!(
            format_timestamp(t, false, 'T'),
            "2024-05-01T12:34:56.123456"
        );
        for micros in [
            t,
            0,
            -1,
            -86_400_000_000,
            1,
            i64::MAX,
            i64::MIN,
            t - t % 1_000_000,
        ] {
            assert_eq!(
                parse_timestamp(&format_timestamp(micros, true, 'T'), true),
                Some(micros)
            );
            assert_eq!(
                parse_timestamp(&format_timestamp(micros, false, 'T'), false),
                Some(micros)
            );
        }
        assert_eq!(
            parse_timestamp("2024-05-01T14:34:56.123456+02:00", true),
            Some(t)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:34:56.1Z", true),
            Some(t - 23_456)
        );
        assert_eq!(parse_timestamp("2024-05-01", true), None);
        assert_eq!(parse_timestamp("2024-05-01T25:00:00Z", true), None);
    }

    #[test]
    fn uuids_and_decimals() {
        let uuid = parse_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(format_uuid(&uuid), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(parse_uuid("67e55044"), None);
        for ok in ["1", "-1.50", "0.0001", "+12.", ".5"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", ".", "1e5", "1.2.3", "abc", "--1"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }
}
