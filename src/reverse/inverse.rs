//! The inverse type mapping: a PostgreSQL value, as pgoutput sends it (the type's text output,
//! printed by the session settings of [`super::transport::SESSION_SETTINGS`]), → the MySQL
//! value a MySQL client would have written into the source column.
//!
//! Guarantees: pure (no I/O); the inverse of [`crate::transform`]'s mapping for every
//! [`ValueKind`] ferry maps — a value that round-trips forward comes back equal; a value the
//! MySQL column cannot hold (an integer out of the column's range, an ENUM or SET member that
//! does not exist, a TIME beyond ±838:59:59, an interval with months, a date or TIMESTAMP
//! outside MySQL's range, NaN or infinity, a binary string longer than the column) is an
//! [`InverseError`] naming why and the fix — never clamped, never rounded, never truncated.
//! Text length and charset limits are left to MySQL's strict mode, which refuses them (and the
//! applier reports that refusal the same way).

use mysql_async::Value;

use crate::transform::mapping::{PgType, ValueKind};
use crate::transform::{ColumnRule, SourceColumn};

/// Why a value cannot be written to its MySQL column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InverseError {
    pub reason: String,
    pub fix: String,
}

fn refuse(reason: impl Into<String>, fix: impl Into<String>) -> InverseError {
    InverseError {
        reason: reason.into(),
        fix: fix.into(),
    }
}

fn unexpected(what: &str, text: &str) -> InverseError {
    refuse(
        format!("PostgreSQL sent {text:?}, which is not a {what}"),
        "check the column's type on PostgreSQL: it was changed after the switch (ferry created it)",
    )
}

/// Converts one text value (`None` is SQL NULL).
///
/// # Errors
/// See the module doc.
pub fn to_mysql(
    rule: &ColumnRule,
    column: &SourceColumn,
    text: Option<&str>,
) -> Result<Value, InverseError> {
    let Some(t) = text else {
        return Ok(Value::NULL);
    };
    match &rule.kind {
        ValueKind::Int { bits } => int(t, *bits, column),
        ValueKind::UInt { bits } => uint(t, *bits, column),
        ValueKind::Bool => match t {
            "t" => Ok(Value::Int(1)),
            "f" => Ok(Value::Int(0)),
            _ => Err(unexpected("boolean", t)),
        },
        ValueKind::Decimal => decimal(t, column),
        ValueKind::Float => {
            let v: f32 = t.parse().map_err(|_| unexpected("real", t))?;
            finite(v.is_finite(), t, column)?;
            Ok(Value::Float(v))
        }
        ValueKind::Double => {
            let v: f64 = t.parse().map_err(|_| unexpected("double precision", t))?;
            finite(v.is_finite(), t, column)?;
            Ok(Value::Double(v))
        }
        ValueKind::Bit { bits } => {
            if t.len() != *bits as usize || !t.bytes().all(|b| b == b'0' || b == b'1') {
                return Err(unexpected(&format!("bit({bits}) string"), t));
            }
            let v = u64::from_str_radix(t, 2).map_err(|_| unexpected("bit string", t))?;
            Ok(Value::UInt(v))
        }
        ValueKind::Year => {
            let y: i64 = t.parse().map_err(|_| unexpected("smallint", t))?;
            if y == 0 || (1901..=2155).contains(&y) {
                Ok(Value::Int(y))
            } else {
                Err(refuse(
                    format!("{y} is not a MySQL YEAR (1901..2155, or 0)"),
                    format!(
                        "correct the row on PostgreSQL, or widen `{}` on MySQL (e.g. SMALLINT)",
                        column.name
                    ),
                ))
            }
        }
        ValueKind::Date => {
            let (y, m, d) = date(t, column)?;
            Ok(Value::Date(y, m, d, 0, 0, 0, 0))
        }
        ValueKind::DateTime => {
            let (y, m, d, h, mi, s, us) = datetime(t, column)?;
            Ok(Value::Date(y, m, d, h, mi, s, us))
        }
        ValueKind::Timestamp => {
            let utc = t.strip_suffix("+00").ok_or_else(|| {
                unexpected(
                    "timestamptz printed in UTC (the session's TimeZone is UTC)",
                    t,
                )
            })?;
            let parts = datetime(utc, column)?;
            let (y, m, d, h, mi, s, _) = parts;
            let key = (y, m, d, h, mi, s);
            if !((1970, 1, 1, 0, 0, 1)..=(2038, 1, 19, 3, 14, 7)).contains(&key) {
                return Err(refuse(
                    format!("{t} is outside MySQL TIMESTAMP's range (1970-01-01 00:00:01 .. 2038-01-19 03:14:07 UTC)"),
                    format!("correct the row on PostgreSQL, or change `{}` on MySQL to DATETIME", column.name),
                ));
            }
            Ok(Value::Date(
                parts.0, parts.1, parts.2, parts.3, parts.4, parts.5, parts.6,
            ))
        }
        ValueKind::Time => time(t, column),
        ValueKind::Text { .. } | ValueKind::Json => Ok(Value::Bytes(t.as_bytes().to_vec())),
        // PostgreSQL prints a uuid in MariaDB's own input form.
        ValueKind::Uuid => Ok(Value::Bytes(t.as_bytes().to_vec())),
        ValueKind::Inet { v6 } => {
            let fits = if *v6 {
                t.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                t.parse::<std::net::Ipv4Addr>().is_ok()
            };
            if fits {
                Ok(Value::Bytes(t.as_bytes().to_vec()))
            } else {
                Err(refuse(
                    format!(
                        "{t} is not a single {} address, which is all {} holds",
                        if *v6 { "IPv6" } else { "IPv4" },
                        column.column_type
                    ),
                    format!(
                        "correct the row on PostgreSQL (no netmask; an IPv4 address in an INET6 column as ::ffff:a.b.c.d), or change `{}` on MySQL",
                        column.name
                    ),
                ))
            }
        }
        ValueKind::Bytes { pad_to } => {
            let b = bytea(t)?;
            let limit = pad_to.map(|n| n as u64).or(column.char_max_length);
            if let Some(n) = limit {
                if b.len() as u64 > n {
                    return Err(refuse(
                        format!(
                            "{} bytes do not fit {} ({n} bytes at most)",
                            b.len(),
                            column.column_type
                        ),
                        format!(
                            "shorten the value on PostgreSQL, or widen `{}` on MySQL",
                            column.name
                        ),
                    ));
                }
            }
            Ok(Value::Bytes(b))
        }
        ValueKind::Enum { members, .. } => {
            if members.iter().any(|m| m == t) {
                Ok(Value::Bytes(t.as_bytes().to_vec()))
            } else {
                Err(refuse(
                    format!("{t:?} is not a member of {}", column.column_type),
                    format!(
                        "add it on MySQL (ALTER TABLE … MODIFY `{}` ENUM(…, '{t}')), or correct the row on PostgreSQL",
                        column.name
                    ),
                ))
            }
        }
        ValueKind::Set { members, .. } => {
            if !t.is_empty() {
                if let Some(bad) = t.split(',').find(|p| !members.iter().any(|m| m == p)) {
                    return Err(refuse(
                        format!("{bad:?} (in {t:?}) is not a member of {}", column.column_type),
                        format!(
                            "add it on MySQL (ALTER TABLE … MODIFY `{}` SET(…, '{bad}')), or correct the row on PostgreSQL",
                            column.name
                        ),
                    ));
                }
            }
            Ok(Value::Bytes(t.as_bytes().to_vec()))
        }
        ValueKind::Geometry => match &rule.pg_type {
            PgType::Geometry { .. } => {
                let ewkb = hex::decode(t).map_err(|_| unexpected("hex EWKB geometry", t))?;
                Ok(Value::Bytes(internal_geometry(&ewkb)?))
            }
            _ => Ok(Value::Bytes(bytea(t)?)),
        },
        ValueKind::Vector => {
            let inner = t
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| unexpected("real[]", t))?;
            let mut out = Vec::new();
            for part in inner.split(',').filter(|p| !p.is_empty()) {
                let v: f32 = part.parse().map_err(|_| unexpected("real[]", t))?;
                finite(v.is_finite(), t, column)?;
                out.extend_from_slice(&v.to_le_bytes());
            }
            Ok(Value::Bytes(out))
        }
    }
}

fn out_of_range(t: &str, column: &SourceColumn) -> InverseError {
    refuse(
        format!("{t} is out of range for {}", column.column_type),
        format!(
            "correct the row on PostgreSQL, or widen `{}` on MySQL",
            column.name
        ),
    )
}

fn finite(ok: bool, t: &str, column: &SourceColumn) -> Result<(), InverseError> {
    if ok {
        Ok(())
    } else {
        Err(refuse(
            format!("{t} cannot be stored in MySQL {}", column.column_type),
            "correct the row on PostgreSQL (MySQL has no NaN or infinity)",
        ))
    }
}

fn int(t: &str, bits: u32, column: &SourceColumn) -> Result<Value, InverseError> {
    let v: i64 = t.parse().map_err(|_| unexpected("integer", t))?;
    let max = if bits >= 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = if bits >= 64 {
        i64::MIN
    } else {
        -(1i64 << (bits - 1))
    };
    if v < min || v > max {
        return Err(out_of_range(t, column));
    }
    Ok(Value::Int(v))
}

fn uint(t: &str, bits: u32, column: &SourceColumn) -> Result<Value, InverseError> {
    if t.starts_with('-') {
        return Err(out_of_range(t, column));
    }
    let v: u64 = t.parse().map_err(|_| {
        if t.bytes().all(|b| b.is_ascii_digit()) {
            out_of_range(t, column)
        } else {
            unexpected("whole number", t)
        }
    })?;
    if bits < 64 && v >> bits != 0 {
        return Err(out_of_range(t, column));
    }
    Ok(Value::UInt(v))
}

fn decimal(t: &str, column: &SourceColumn) -> Result<Value, InverseError> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int_part, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(finite(false, t, column)
            .err()
            .unwrap_or_else(|| unexpected("numeric", t)));
    }
    if let (Some(p), Some(s)) = (column.numeric_precision, column.numeric_scale) {
        let int_digits = int_part.trim_start_matches('0').len() as u32;
        if frac.len() as u32 > s || int_digits > p.saturating_sub(s) {
            return Err(out_of_range(t, column));
        }
    }
    Ok(Value::Bytes(t.as_bytes().to_vec()))
}

fn bytea(t: &str) -> Result<Vec<u8>, InverseError> {
    let h = t
        .strip_prefix("\\x")
        .ok_or_else(|| unexpected("bytea in hex form", t))?;
    hex::decode(h).map_err(|_| unexpected("bytea in hex form", t))
}

fn num<T: std::str::FromStr>(s: &str, whole: &str, what: &str) -> Result<T, InverseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unexpected(what, whole));
    }
    s.parse().map_err(|_| unexpected(what, whole))
}

fn date(t: &str, column: &SourceColumn) -> Result<(u16, u8, u8), InverseError> {
    if t.ends_with(" BC") || t.contains("infinity") {
        return Err(refuse(
            format!("{t} is outside MySQL's date range (1000-01-01 .. 9999-12-31)"),
            format!("correct the row on PostgreSQL (`{}`)", column.name),
        ));
    }
    let mut parts = t.splitn(3, '-');
    let (y, m, d) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let year: u32 = num(y, t, "date")?;
    if year > 9999 {
        return Err(refuse(
            format!("{t} is outside MySQL's date range (1000-01-01 .. 9999-12-31)"),
            format!("correct the row on PostgreSQL (`{}`)", column.name),
        ));
    }
    Ok((year as u16, num(m, t, "date")?, num(d, t, "date")?))
}

type DateTimeParts = (u16, u8, u8, u8, u8, u8, u32);

fn datetime(t: &str, column: &SourceColumn) -> Result<DateTimeParts, InverseError> {
    let (d, clock) = t.split_once(' ').unwrap_or((t, "00:00:00"));
    if clock.ends_with(" BC") {
        return date(&format!("{d} BC"), column).map(|_| Default::default());
    }
    let (y, m, day) = date(d, column)?;
    let (h, mi, s, us) = clock_parts(clock, t)?;
    if h > 23 {
        return Err(unexpected("timestamp", t));
    }
    Ok((y, m, day, h as u8, mi, s, us))
}

/// `HH:MM:SS[.ffffff]` (hours may exceed 24 in intervals).
fn clock_parts(clock: &str, whole: &str) -> Result<(u64, u8, u8, u32), InverseError> {
    let mut parts = clock.splitn(3, ':');
    let (h, m, s) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (s, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 6 {
        return Err(unexpected("time of day", whole));
    }
    let micros: u32 = if frac.is_empty() {
        0
    } else {
        num::<u32>(frac, whole, "time of day")? * 10u32.pow(6 - frac.len() as u32)
    };
    let minutes: u8 = num(m, whole, "time of day")?;
    let seconds: u8 = num(s, whole, "time of day")?;
    if minutes > 59 || seconds > 59 {
        return Err(unexpected("time of day", whole));
    }
    Ok((num(h, whole, "time of day")?, minutes, seconds, micros))
}

/// MySQL TIME's limit, in microseconds: 838:59:59.
const TIME_MAX_MICROS: i128 = (838 * 3600 + 59 * 60 + 59) * 1_000_000;

/// An interval in the `postgres` style (`[N year[s]] [N mon[s]] [N day[s]] [-]HH:MM:SS[.f]`)
/// → MySQL TIME.
fn time(t: &str, column: &SourceColumn) -> Result<Value, InverseError> {
    let mut total: i128 = 0;
    let mut tokens = t.split_whitespace().peekable();
    while let Some(tok) = tokens.next() {
        if tok.contains(':') {
            let (neg, clock) = match tok.as_bytes()[0] {
                b'-' => (true, &tok[1..]),
                b'+' => (false, &tok[1..]),
                _ => (false, tok),
            };
            let (h, m, s, us) = clock_parts(clock, t)?;
            let micros = ((h as i128 * 3600 + m as i128 * 60 + s as i128) * 1_000_000) + us as i128;
            total += if neg { -micros } else { micros };
            continue;
        }
        let n: i128 = tok.parse().map_err(|_| unexpected("interval", t))?;
        let unit = tokens.next().ok_or_else(|| unexpected("interval", t))?;
        match unit.trim_end_matches('s') {
            "day" => total += n * 86_400 * 1_000_000,
            "year" | "mon" => {
                return Err(refuse(
                    format!("interval {t:?} counts months or years, which have no fixed length; MySQL TIME holds a duration"),
                    format!("write `{}` on PostgreSQL in days and hours", column.name),
                ))
            }
            _ => return Err(unexpected("interval", t)),
        }
    }
    if total.abs() > TIME_MAX_MICROS {
        return Err(refuse(
            format!("interval {t:?} is beyond MySQL TIME's range (-838:59:59 .. 838:59:59)"),
            format!(
                "correct the row on PostgreSQL, or change `{}` on MySQL to a type that holds it",
                column.name
            ),
        ));
    }
    let neg = total < 0;
    let a = total.unsigned_abs();
    let micros = (a % 1_000_000) as u32;
    let secs = a / 1_000_000;
    let hours_total = secs / 3600;
    Ok(Value::Time(
        neg,
        (hours_total / 24) as u32,
        (hours_total % 24) as u8,
        ((secs / 60) % 60) as u8,
        (secs % 60) as u8,
        micros,
    ))
}

/// EWKB (PostGIS) → MySQL's internal geometry: the SRID (little-endian) before the WKB, whose
/// type word loses the SRID flag. Z and M coordinates are refused (MySQL has none).
fn internal_geometry(ewkb: &[u8]) -> Result<Vec<u8>, InverseError> {
    const SRID_FLAG: u32 = 0x2000_0000;
    const ZM_FLAGS: u32 = 0xC000_0000;
    let bad = || {
        refuse(
            "malformed EWKB geometry",
            "check the column's type on PostgreSQL",
        )
    };
    if ewkb.len() < 5 {
        return Err(bad());
    }
    let little = match ewkb[0] {
        0 => false,
        1 => true,
        _ => return Err(bad()),
    };
    let read = |b: &[u8]| -> Result<u32, InverseError> {
        let a: [u8; 4] = b.try_into().map_err(|_| bad())?;
        Ok(if little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let word = read(&ewkb[1..5])?;
    if word & ZM_FLAGS != 0 || (word & 0xFFFF) > 1000 {
        return Err(refuse(
            "geometry with Z or M coordinates: MySQL geometries are two-dimensional",
            "write a 2D geometry on PostgreSQL (ST_Force2D)",
        ));
    }
    let (srid, rest) = if word & SRID_FLAG != 0 {
        if ewkb.len() < 9 {
            return Err(bad());
        }
        (read(&ewkb[5..9])?, &ewkb[9..])
    } else {
        (0, &ewkb[5..])
    };
    let plain = word & !SRID_FLAG;
    let mut out = Vec::with_capacity(ewkb.len());
    out.extend_from_slice(&srid.to_le_bytes());
    out.push(ewkb[0]);
    out.extend_from_slice(&if little {
        plain.to_le_bytes()
    } else {
        plain.to_be_bytes()
    });
    out.extend_from_slice(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{plan_column, TypeOptions};

    /// A column as the catalog would describe it, planned with the default options.
    fn col(data_type: &str, column_type: &str) -> (ColumnRule, SourceColumn) {
        let c = SourceColumn {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            unsigned: column_type.contains("unsigned"),
            char_max_length: column_type
                .split(['(', ')'])
                .nth(1)
                .and_then(|n| n.parse().ok()),
            numeric_precision: None,
            numeric_scale: None,
            datetime_precision: Some(6),
            charset: None,
            is_json: false,
            members: column_type
                .split('\'')
                .skip(1)
                .step_by(2)
                .map(String::from)
                .collect(),
            ..SourceColumn::default()
        };
        let rule = plan_column(&c, &TypeOptions::default()).expect("plan");
        (rule, c)
    }

    fn conv(data_type: &str, column_type: &str, t: &str) -> Result<Value, InverseError> {
        let (r, c) = col(data_type, column_type);
        to_mysql(&r, &c, Some(t))
    }

    #[test]
    fn integers_come_back_within_the_column_range_only() {
        assert_eq!(conv("tinyint", "tinyint(4)", "-128"), Ok(Value::Int(-128)));
        assert!(conv("tinyint", "tinyint(4)", "128").is_err());
        assert_eq!(
            conv("bigint", "bigint(20) unsigned", "18446744073709551615"),
            Ok(Value::UInt(u64::MAX))
        );
        let e = conv("bigint", "bigint(20) unsigned", "18446744073709551616").expect_err("over");
        assert!(e.reason.contains("out of range"), "{e:?}");
        assert!(conv("int", "int(10) unsigned", "-1").is_err());
        assert_eq!(
            conv("mediumint", "mediumint(9)", "8388607"),
            Ok(Value::Int(8388607))
        );
        assert!(conv("mediumint", "mediumint(9)", "8388608").is_err());
        assert_eq!(conv("year", "year(4)", "0"), Ok(Value::Int(0)));
        assert!(conv("year", "year(4)", "1900").is_err());
    }

    #[test]
    fn decimals_floats_and_bits_are_exact() {
        let mut c = col("decimal", "decimal(65,30)");
        c.1.numeric_precision = Some(65);
        c.1.numeric_scale = Some(30);
        let v = "-12345678901234567890123456789012345.123456789012345678901234567890";
        assert_eq!(
            to_mysql(&c.0, &c.1, Some(v)),
            Ok(Value::Bytes(v.as_bytes().to_vec()))
        );
        assert!(to_mysql(&c.0, &c.1, Some("NaN")).is_err());
        let mut small = col("decimal", "decimal(5,2)");
        small.1.numeric_precision = Some(5);
        small.1.numeric_scale = Some(2);
        assert!(to_mysql(&small.0, &small.1, Some("1234.5")).is_err());
        assert!(to_mysql(&small.0, &small.1, Some("123.45")).is_ok());
        assert_eq!(conv("double", "double", "0.1"), Ok(Value::Double(0.1)));
        assert!(conv("double", "double", "Infinity").is_err());
        assert_eq!(conv("float", "float", "1.1"), Ok(Value::Float(1.1)));
        let mut bit = col("bit", "bit(10)");
        bit.1.numeric_precision = Some(10);
        let bit = (
            plan_column(&bit.1, &TypeOptions::default()).expect("plan"),
            bit.1,
        );
        assert_eq!(
            to_mysql(&bit.0, &bit.1, Some("1000000001")),
            Ok(Value::UInt(513))
        );
        assert!(to_mysql(&bit.0, &bit.1, Some("101")).is_err());
    }

    #[test]
    fn times_dates_and_timestamps_keep_their_limits() {
        assert_eq!(
            conv("time", "time(6)", "838:59:59"),
            Ok(Value::Time(false, 34, 22, 59, 59, 0))
        );
        assert_eq!(
            conv("time", "time(6)", "-00:00:01.5"),
            Ok(Value::Time(true, 0, 0, 0, 1, 500_000))
        );
        assert_eq!(
            conv("time", "time(6)", "1 day 02:03:04"),
            Ok(Value::Time(false, 1, 2, 3, 4, 0))
        );
        assert_eq!(
            conv("time", "time(6)", "-1 days +02:00:00"),
            Ok(Value::Time(true, 0, 22, 0, 0, 0))
        );
        let e = conv("time", "time(6)", "839:00:00").expect_err("beyond");
        assert!(e.reason.contains("838:59:59"), "{e:?}");
        assert!(conv("time", "time(6)", "1 mon").is_err());
        assert_eq!(
            conv("date", "date", "2024-02-29"),
            Ok(Value::Date(2024, 2, 29, 0, 0, 0, 0))
        );
        assert!(conv("date", "date", "0044-03-15 BC").is_err());
        assert!(conv("date", "date", "infinity").is_err());
        assert_eq!(
            conv("datetime", "datetime(6)", "2024-01-02 03:04:05.000006"),
            Ok(Value::Date(2024, 1, 2, 3, 4, 5, 6))
        );
        assert_eq!(
            conv("timestamp", "timestamp(6)", "2038-01-19 03:14:07.999999+00"),
            Ok(Value::Date(2038, 1, 19, 3, 14, 7, 999_999))
        );
        let e = conv("timestamp", "timestamp(6)", "2038-01-19 03:14:08+00").expect_err("2038");
        assert!(e.fix.contains("DATETIME"), "{e:?}");
        assert!(conv("timestamp", "timestamp(6)", "1970-01-01 00:00:00+00").is_err());
    }

    #[test]
    fn strings_binaries_enums_and_sets_are_checked_against_the_column() {
        assert_eq!(
            conv("binary", "binary(4)", "\\x61620000"),
            Ok(Value::Bytes(b"ab\0\0".to_vec()))
        );
        assert!(conv("binary", "binary(2)", "\\x616263").is_err());
        assert!(conv("varbinary", "varbinary(3)", "not hex").is_err());
        assert_eq!(
            conv("enum", "enum('small','large')", "large"),
            Ok(Value::Bytes(b"large".to_vec()))
        );
        let e = conv("enum", "enum('small','large')", "huge").expect_err("member");
        assert!(
            e.reason.contains("huge") && e.fix.contains("ALTER TABLE"),
            "{e:?}"
        );
        assert!(conv("set", "set('a','b','c')", "a,c").is_ok());
        assert!(conv("set", "set('a','b','c')", "").is_ok());
        assert!(conv("set", "set('a','b','c')", "a,d").is_err());
        let (r, c) = col("tinyint", "tinyint(1)");
        assert_eq!(to_mysql(&r, &c, None), Ok(Value::NULL));
    }

    #[test]
    fn geometry_comes_back_in_mysql_internal_form() {
        // POINT(1 2) with SRID 4326: MySQL internal form, and the EWKB PostGIS prints.
        let mut internal = 4326u32.to_le_bytes().to_vec();
        internal.extend_from_slice(&[1, 1, 0, 0, 0]);
        internal.extend_from_slice(&1f64.to_le_bytes());
        internal.extend_from_slice(&2f64.to_le_bytes());
        let ewkb = crate::transform::convert::ewkb_hex(&internal).expect("ewkb");
        let back = internal_geometry(&hex::decode(ewkb).expect("hex")).expect("internal");
        assert_eq!(back, internal);
        // SRID 0 is plain WKB.
        let mut plain = 0u32.to_le_bytes().to_vec();
        plain.extend_from_slice(&internal[4..]);
        let ewkb = crate::transform::convert::ewkb_hex(&plain).expect("ewkb");
        assert_eq!(
            internal_geometry(&hex::decode(ewkb).expect("hex")).expect("internal"),
            plain
        );
        // POINT Z is refused.
        let mut z = vec![1u8];
        z.extend_from_slice(&0x8000_0001u32.to_le_bytes());
        z.extend_from_slice(&[0; 24]);
        assert!(internal_geometry(&z).is_err());
    }
}
