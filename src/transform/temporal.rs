//! Exact text forms for MySQL DATE, DATETIME, TIMESTAMP and TIME values.
//!
//! Guarantees: fractional seconds are carried to the microsecond, never rounded; TIMESTAMP values
//! (stored by MySQL as Unix seconds) are written as UTC instants with an explicit `+00` offset, so
//! no session time zone can shift them; TIME keeps its sign and hours beyond 24; zero and
//! partial-zero dates are reported as problems instead of being "fixed".

use std::fmt::Write;

use super::{ProblemKind, ValueProblem};

fn zero_date(detail: &str) -> ValueProblem {
    ValueProblem::new(ProblemKind::ZeroDate, detail)
}

fn check_date(y: u16, m: u8, d: u8) -> Result<(), ValueProblem> {
    if y == 0 && m == 0 && d == 0 {
        return Err(zero_date("zero date 0000-00-00"));
    }
    if y == 0 || m == 0 || d == 0 {
        return Err(zero_date("partial-zero date (year, month or day is 0)"));
    }
    if m > 12 || d > days_in_month(i64::from(y), u32::from(m)) {
        return Err(ValueProblem::new(
            ProblemKind::OutOfRange,
            "date does not exist in the calendar (allowed by ALLOW_INVALID_DATES)",
        ));
    }
    Ok(())
}

fn days_in_month(y: i64, m: u32) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD`.
pub fn date(y: u16, m: u8, d: u8) -> Result<String, ValueProblem> {
    check_date(y, m, d)?;
    let mut out = String::with_capacity(10);
    push_ymd(&mut out, u64::from(y), m.into(), d.into());
    Ok(out)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn datetime(
    y: u16,
    m: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    us: u32,
) -> Result<String, ValueProblem> {
    check_date(y, m, d)?;
    let mut out = String::with_capacity(30);
    push_ymd(&mut out, u64::from(y), m.into(), d.into());
    out.push(' ');
    push_hms(&mut out, h.into(), mi.into(), s.into());
    push_micros(&mut out, us);
    Ok(out)
}

/// Appends `v` zero-padded to at least `width` digits — `format!("{v:0width$}")` without the
/// formatting machinery, which showed in profiles of the backfill (one call per temporal value).
fn push_digits(out: &mut String, v: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in buf.len() - i..width {
        out.push('0');
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

fn push_ymd(out: &mut String, y: u64, m: u64, d: u64) {
    push_digits(out, y, 4);
    out.push('-');
    push_digits(out, m, 2);
    out.push('-');
    push_digits(out, d, 2);
}

fn push_hms(out: &mut String, h: u64, mi: u64, s: u64) {
    push_digits(out, h, 2);
    out.push(':');
    push_digits(out, mi, 2);
    out.push(':');
    push_digits(out, s, 2);
}

fn push_micros(out: &mut String, us: u32) {
    if us != 0 {
        out.push('.');
        push_digits(out, us.into(), 6);
    }
}

/// A UTC instant from Unix seconds and microseconds: `YYYY-MM-DD HH:MM:SS[.ffffff]+00`.
/// Zero (MySQL's zero TIMESTAMP) is a problem.
pub fn unix_timestamp(secs: i64, us: u32) -> Result<String, ValueProblem> {
    if secs == 0 && us == 0 {
        return Err(zero_date("zero TIMESTAMP 0000-00-00 00:00:00"));
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // MySQL TIMESTAMPs span 1970..2038 (2106 for MySQL 8.0.28+); anything before year 1 is not
    // a value MySQL writes.
    if y < 1 {
        return Err(ValueProblem::new(
            ProblemKind::Unexpected,
            "TIMESTAMP before year 1",
        ));
    }
    let mut out = String::with_capacity(33);
    push_ymd(&mut out, y.unsigned_abs(), u64::from(m), u64::from(d));
    out.push(' ');
    let rem = rem.unsigned_abs();
    push_hms(&mut out, rem / 3600, (rem % 3600) / 60, rem % 60);
    push_micros(&mut out, us);
    out.push_str("+00");
    Ok(out)
}

/// Parses the binlog's TIMESTAMP text (`secs` or `secs.ffffff`) into a UTC instant.
pub fn unix_timestamp_text(text: &str) -> Result<String, ValueProblem> {
    let bad = || {
        ValueProblem::new(
            ProblemKind::Unexpected,
            "TIMESTAMP value is not Unix seconds",
        )
    };
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let us = if frac.is_empty() {
        0
    } else {
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let padded = format!("{frac:0<6}");
        padded.parse::<u32>().map_err(|_| bad())?
    };
    unix_timestamp(secs, us)
}

/// A DATETIME-shaped value that denotes a UTC instant (TIMESTAMP read with `time_zone='+00:00'`).
pub fn utc_datetime(
    y: u16,
    m: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
    us: u32,
) -> Result<String, ValueProblem> {
    if (y, m, d, h, mi, s, us) == (0, 0, 0, 0, 0, 0, 0) {
        return Err(zero_date("zero TIMESTAMP 0000-00-00 00:00:00"));
    }
    let mut out = datetime(y, m, d, h, mi, s, us)?;
    out.push_str("+00");
    Ok(out)
}

/// MySQL TIME as a PostgreSQL interval: `[-]H:MM:SS[.ffffff]` with hours beyond 24 kept.
pub fn time(negative: bool, days: u32, h: u8, m: u8, s: u8, us: u32) -> String {
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut out = String::with_capacity(20);
    if negative && (hours, m, s, us) != (0, 0, 0, 0) {
        out.push('-');
    }
    let _ = write!(out, "{hours}:{m:02}:{s:02}");
    push_micros(&mut out, us);
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_zero_dates() {
        assert_eq!(date(2024, 2, 29).expect("leap day"), "2024-02-29");
        assert_eq!(date(1000, 1, 1).expect("min"), "1000-01-01");
        assert_eq!(date(1, 2, 3).expect("year 1"), "0001-02-03");
        assert_eq!(date(9999, 12, 31).expect("max"), "9999-12-31");
        assert_eq!(date(0, 0, 0).expect_err("zero").kind, ProblemKind::ZeroDate);
        assert_eq!(
            date(2022, 11, 0).expect_err("partial").kind,
            ProblemKind::ZeroDate
        );
        assert_eq!(
            date(2023, 2, 30).expect_err("invalid").kind,
            ProblemKind::OutOfRange
        );
    }

    #[test]
    fn datetimes_keep_microseconds() {
        assert_eq!(
            datetime(2024, 1, 2, 3, 4, 5, 6).expect("ok"),
            "2024-01-02 03:04:05.000006"
        );
        assert_eq!(
            datetime(9999, 12, 31, 23, 59, 59, 999_999).expect("ok"),
            "9999-12-31 23:59:59.999999"
        );
        assert_eq!(
            datetime(2024, 1, 2, 0, 0, 0, 0).expect("ok"),
            "2024-01-02 00:00:00"
        );
    }

    #[test]
    fn unix_timestamps_are_utc() {
        assert_eq!(unix_timestamp(1, 0).expect("ok"), "1970-01-01 00:00:01+00");
        assert_eq!(
            unix_timestamp(4_294_967_295, 10).expect("MySQL 8.0.28+ max"),
            "2106-02-07 06:28:15.000010+00"
        );
        assert_eq!(
            unix_timestamp_text("2147483647.999999").expect("max"),
            "2038-01-19 03:14:07.999999+00"
        );
        assert_eq!(
            unix_timestamp_text("1700000000.5").expect("ok"),
            "2023-11-14 22:13:20.500000+00"
        );
        assert_eq!(
            unix_timestamp_text("0").expect_err("zero").kind,
            ProblemKind::ZeroDate
        );
        assert!(unix_timestamp_text("abc").is_err());
    }

    #[test]
    fn times_beyond_a_day_and_negative() {
        assert_eq!(time(false, 34, 22, 59, 59, 0), "838:59:59");
        assert_eq!(time(true, 34, 22, 59, 59, 0), "-838:59:59");
        assert_eq!(time(true, 0, 0, 0, 0, 1), "-0:00:00.000001");
        assert_eq!(time(false, 0, 0, 0, 0, 0), "0:00:00");
        assert_eq!(
            time(true, 0, 0, 0, 0, 0),
            "0:00:00",
            "negative zero is zero"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}

/// Extreme inputs to the calendar arithmetic: a text or a problem, never a panic (overflow
/// included: the tests run with overflow checks).
#[cfg(test)]
mod extremes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn calendar_functions_never_panic(
            y: u16, m: u8, d: u8, h: u8, mi: u8, s: u8, us: u32,
            secs: i64, neg: bool, days: u32,
            // The days of any i64 of seconds, the only domain callers use.
            z in (i64::MIN / 86_400)..=(i64::MAX / 86_400),
        ) {
            let _ = date(y, m, d);
            let _ = datetime(y, m, d, h, mi, s, us);
            let _ = unix_timestamp(secs, us);
            let _ = time(neg, days, h, mi, s, us);
            let _ = civil_from_days(z);
            let _ = utc_datetime(y, m, d, h, mi, s, us);
        }

        #[test]
        fn unix_timestamp_text_takes_any_text(t in "\\PC{0,30}", digits in "-?[0-9]{0,25}(\\.[0-9]{0,9})?") {
            let _ = unix_timestamp_text(&t);
            let _ = unix_timestamp_text(&digits);
        }
    }
}
