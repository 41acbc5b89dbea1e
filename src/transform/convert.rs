//! One MySQL value → one PostgreSQL [`Cell`], by the column's [`ValueKind`].
//!
//! Values come from two decoders that disagree on a few shapes, both handled here so that the
//! binlog path and the backfill path cannot drift apart:
//! - the binlog (`mysql_common` row events): TIMESTAMP as Unix seconds text, ENUM as a 1-based
//!   index, SET as a little-endian bitmask, YEAR 0000 as "1900", JSON as binary JSON;
//! - `SELECT` over the binary protocol (backfill, verification): TIMESTAMP as a UTC datetime
//!   (sessions run with `time_zone = '+00:00'`), ENUM and SET as their text, YEAR as an integer,
//!   JSON as text; text in the column's own bytes (sessions set `character_set_results =
//!   binary`), so both paths decode characters by the same exact rules.
//!
//! Guarantees: see the module `transform`. Every arm either produces the exact text form or a
//! [`ValueProblem`].

use std::fmt::Write;

use mysql_common::binlog::value::BinlogValue;
use mysql_common::value::Value;

use super::charset::Charset;
use super::json::{check_json_text, jsonb_to_text};
use super::mapping::{ColumnRule, PgType, ValueKind};
use super::temporal;
use super::{Cell, ProblemKind, ValueProblem};

/// A value as one of ferry's two readers delivers it.
#[derive(Debug, Clone, Copy)]
pub enum SourceValue<'a> {
    /// From a binlog row image.
    Binlog(&'a BinlogValue<'a>),
    /// From a `SELECT` over the binary protocol with `time_zone = '+00:00'`.
    Query(&'a Value),
}

fn unexpected(rule: &ColumnRule, what: &str) -> ValueProblem {
    ValueProblem::new(
        ProblemKind::Unexpected,
        format!("{what} for a {} column", rule.pg_type.sql()),
    )
}

/// Converts one value.
///
/// # Errors
/// A [`ValueProblem`] when the value cannot be carried exactly.
pub fn convert(rule: &ColumnRule, value: SourceValue<'_>) -> Result<Cell, ValueProblem> {
    let (v, from_binlog) = match value {
        SourceValue::Binlog(BinlogValue::Value(v)) => (v, true),
        SourceValue::Binlog(BinlogValue::Jsonb(j)) => {
            return match rule.kind {
                ValueKind::Json => jsonb_to_text(j).map(Some),
                _ => Err(unexpected(rule, "binary JSON")),
            }
        }
        SourceValue::Binlog(BinlogValue::JsonDiff(_)) => {
            return Err(unexpected(
                rule,
                "partial JSON update without its before image",
            ))
        }
        SourceValue::Query(v) => (v, false),
    };
    if matches!(v, Value::NULL) {
        return Ok(None);
    }
    let text = match &rule.kind {
        // mysql_common reads a signed MEDIUMINT from the binlog without sign extension
        // (`eat_i24_le`), so -1 arrives as 16777215: restore the sign from the 24-bit pattern.
        ValueKind::Int { bits: 24 } if from_binlog => match v {
            Value::Int(i) if (0x80_0000..0x100_0000).contains(i) => int_text(i - 0x100_0000),
            Value::Int(i) => int_text(*i),
            Value::UInt(u) => uint_text(*u),
            _ => return Err(unexpected(rule, "non-integer value")),
        },
        ValueKind::Int { .. } => match v {
            Value::Int(i) => int_text(*i),
            Value::UInt(u) => uint_text(*u),
            Value::Bytes(b) => integer_text(rule, b)?,
            _ => return Err(unexpected(rule, "non-integer value")),
        },
        ValueKind::UInt { bits } => match v {
            Value::UInt(u) => uint_text(*u),
            // Without signedness metadata the decoder reads unsigned columns as signed: the bits
            // are right, only the interpretation is off.
            Value::Int(i) if *i < 0 => (i128::from(*i) + (1i128 << bits)).to_string(),
            Value::Int(i) => int_text(*i),
            Value::Bytes(b) => integer_text(rule, b)?,
            _ => return Err(unexpected(rule, "non-integer value")),
        },
        ValueKind::Bool => match v {
            Value::Int(0) | Value::UInt(0) => "false".into(),
            Value::Int(1) | Value::UInt(1) => "true".into(),
            Value::Int(_) | Value::UInt(_) => {
                return Err(ValueProblem::new(
                    ProblemKind::OutOfRange,
                    "TINYINT(1) value other than 0 or 1 cannot be a boolean",
                ))
            }
            _ => return Err(unexpected(rule, "non-integer value")),
        },
        ValueKind::Decimal => match v {
            Value::Bytes(b) if is_decimal_text(b) => ascii(b),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            _ => return Err(unexpected(rule, "non-decimal value")),
        },
        ValueKind::Float => match v {
            Value::Float(f) => float_text(f64::from(*f), format!("{f:?}")),
            Value::Double(d) => {
                let f = *d as f32;
                float_text(f64::from(f), format!("{f:?}"))
            }
            _ => return Err(unexpected(rule, "non-float value")),
        },
        ValueKind::Double => match v {
            Value::Double(d) => float_text(*d, format!("{d:?}")),
            Value::Float(f) => float_text(f64::from(*f), format!("{:?}", f64::from(*f))),
            _ => return Err(unexpected(rule, "non-float value")),
        },
        ValueKind::Bit { bits } => match v {
            Value::Bytes(b) => bit_text(b, *bits),
            Value::Int(i) => bit_text(&i.to_be_bytes(), *bits),
            Value::UInt(u) => bit_text(&u.to_be_bytes(), *bits),
            _ => return Err(unexpected(rule, "non-bit value")),
        },
        ValueKind::Year => match v {
            Value::Bytes(b) => {
                let y: u32 = ascii(b)
                    .parse()
                    .map_err(|_| unexpected(rule, "non-numeric YEAR"))?;
                // The binlog decoder adds 1900 to the stored byte, so YEAR 0000 reads as 1900,
                // which is not a valid YEAR value (1901..2155).
                if from_binlog && y == 1900 { 0 } else { y }.to_string()
            }
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            _ => return Err(unexpected(rule, "non-YEAR value")),
        },
        ValueKind::Date => match v {
            Value::Date(y, m, d, ..) => temporal::date(*y, *m, *d)?,
            _ => return Err(unexpected(rule, "non-date value")),
        },
        ValueKind::DateTime => match v {
            Value::Date(y, m, d, h, mi, s, us) => temporal::datetime(*y, *m, *d, *h, *mi, *s, *us)?,
            _ => return Err(unexpected(rule, "non-datetime value")),
        },
        ValueKind::Timestamp => match v {
            Value::Bytes(b) if from_binlog => temporal::unix_timestamp_text(&ascii(b))?,
            Value::Int(secs) if from_binlog => temporal::unix_timestamp(*secs, 0)?,
            Value::Date(y, m, d, h, mi, s, us) => {
                temporal::utc_datetime(*y, *m, *d, *h, *mi, *s, *us)?
            }
            _ => return Err(unexpected(rule, "non-timestamp value")),
        },
        ValueKind::Time => match v {
            Value::Time(neg, days, h, m, s, us) => temporal::time(*neg, *days, *h, *m, *s, *us),
            _ => return Err(unexpected(rule, "non-time value")),
        },
        ValueKind::Text { charset } => match v {
            Value::Bytes(b) => charset.decode(b)?.into_owned(),
            _ => return Err(unexpected(rule, "non-string value")),
        },
        ValueKind::Bytes { pad_to } => match v {
            Value::Bytes(b) => bytea_text(b, *pad_to),
            _ => return Err(unexpected(rule, "non-binary value")),
        },
        ValueKind::Enum { members, charset } => match v {
            Value::Int(i) if from_binlog => enum_member(members, *i)?,
            Value::UInt(u) if from_binlog => enum_member(members, *u as i64)?,
            Value::Bytes(b) => charset.decode(b)?.into_owned(),
            _ => return Err(unexpected(rule, "non-enum value")),
        },
        ValueKind::Set { members, charset } => match v {
            Value::Bytes(b) if from_binlog => set_members(members, b)?,
            Value::Int(i) if from_binlog => set_members(members, &i.to_le_bytes())?,
            Value::UInt(u) if from_binlog => set_members(members, &u.to_le_bytes())?,
            Value::Bytes(b) => charset.decode(b)?.into_owned(),
            _ => return Err(unexpected(rule, "non-set value")),
        },
        ValueKind::Json => match v {
            Value::Bytes(b) => {
                let text = Charset::Utf8.decode(b)?.into_owned();
                check_json_text(&text)?;
                text
            }
            _ => return Err(unexpected(rule, "non-JSON value")),
        },
        ValueKind::Geometry => match (v, &rule.pg_type) {
            (Value::Bytes(b), PgType::Geometry { .. }) => {
                ewkb_hex(b).ok_or_else(|| unexpected(rule, "malformed internal geometry"))?
            }
            (Value::Bytes(b), _) => bytea_text(b, None),
            _ => return Err(unexpected(rule, "non-geometry value")),
        },
        ValueKind::Vector => match v {
            Value::Bytes(b) => {
                vector_text(b).ok_or_else(|| unexpected(rule, "malformed VECTOR"))?
            }
            _ => return Err(unexpected(rule, "non-vector value")),
        },
        ValueKind::Uuid => match v {
            Value::Bytes(b) if from_binlog => uuid_text(&fixed_bytes::<16>(rule, b)?),
            Value::Bytes(b) => {
                uuid_from_text(b).ok_or_else(|| unexpected(rule, "malformed UUID"))?
            }
            _ => return Err(unexpected(rule, "non-UUID value")),
        },
        ValueKind::Inet { v6 } => match v {
            Value::Bytes(b) if from_binlog && *v6 => {
                std::net::Ipv6Addr::from(fixed_bytes::<16>(rule, b)?).to_string()
            }
            Value::Bytes(b) if from_binlog => {
                std::net::Ipv4Addr::from(fixed_bytes::<4>(rule, b)?).to_string()
            }
            Value::Bytes(b) => {
                inet_from_text(b, *v6).ok_or_else(|| unexpected(rule, "malformed INET address"))?
            }
            _ => return Err(unexpected(rule, "non-INET value")),
        },
    };
    Ok(Some(text))
}

/// A fixed-size binary value from a binlog row image, which stores it like BINARY(N): with
/// its trailing zero bytes removed (INET4 `0.0.0.0` arrives empty).
fn fixed_bytes<const N: usize>(rule: &ColumnRule, b: &[u8]) -> Result<[u8; N], ValueProblem> {
    if b.len() > N {
        return Err(unexpected(
            rule,
            &format!("{} bytes (at most {N})", b.len()),
        ));
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// The canonical text of a UUID: lower-case hex in 8-4-4-4-12 groups.
fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A UUID as MariaDB prints it (8-4-4-4-12 hex groups), in canonical form; `None` otherwise.
fn uuid_from_text(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    let dashes_at = [8, 13, 18, 23];
    let well_formed = s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if dashes_at.contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    well_formed.then(|| s.to_ascii_lowercase())
}

/// An INET4/INET6 address as MariaDB prints it, parsed (so only an address of the column's
/// family passes) and printed again.
fn inet_from_text(b: &[u8], v6: bool) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    if v6 {
        s.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string())
    } else {
        s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string())
    }
}

fn int_text(i: i64) -> String {
    itoa::Buffer::new().format(i).to_owned()
}

fn uint_text(u: u64) -> String {
    itoa::Buffer::new().format(u).to_owned()
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn integer_text(rule: &ColumnRule, b: &[u8]) -> Result<String, ValueProblem> {
    let s = ascii(b);
    let digits = s.strip_prefix('-').unwrap_or(&s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(unexpected(rule, "non-integer text"));
    }
    Ok(s)
}

fn is_decimal_text(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && b.iter().filter(|c| **c == b'.').count() <= 1
}

fn float_text(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        shortest
    }
}

/// The low `bits` bits of big-endian `bytes`, as PostgreSQL bit-string text.
fn bit_text(bytes: &[u8], bits: u32) -> String {
    let mut all = String::with_capacity(bytes.len() * 8);
    for byte in bytes {
        let _ = write!(all, "{byte:08b}");
    }
    let bits = bits as usize;
    if all.len() >= bits {
        all[all.len() - bits..].to_string()
    } else {
        format!("{}{all}", "0".repeat(bits - all.len()))
    }
}

/// PostgreSQL bytea hex input: `\x0102…`.
pub fn bytea_text(bytes: &[u8], pad_to: Option<usize>) -> String {
    let len = pad_to.map_or(bytes.len(), |n| n.max(bytes.len()));
    // Hex straight into the output (no intermediate string: a large value is held once).
    let mut out = vec![b'0'; 2 + len * 2];
    out[..2].copy_from_slice(b"\\x");
    hex::encode_to_slice(bytes, &mut out[2..2 + bytes.len() * 2])
        .expect("the slice is exactly twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// MySQL's internal geometry (4-byte little-endian SRID, then WKB) as hex EWKB, PostGIS's text
/// input form: the WKB with the SRID flag set in its type word and the SRID after it, both in the
/// WKB's own byte order. SRID 0 stays plain WKB (PostGIS's "unknown SRID"). Every coordinate byte
/// is carried unchanged; `None` when the value is too short to hold an SRID and a WKB header.
pub fn ewkb_hex(internal: &[u8]) -> Option<String> {
    const SRID_FLAG: u32 = 0x2000_0000;
    if internal.len() < 9 {
        return None;
    }
    let srid = u32::from_le_bytes(internal[0..4].try_into().ok()?);
    let wkb = &internal[4..];
    if srid == 0 {
        return Some(hex::encode(wkb));
    }
    let little = match wkb[0] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let word = |b: [u8; 4]| {
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let bytes = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let kind = word(wkb[1..5].try_into().ok()?);
    let mut out = Vec::with_capacity(wkb.len() + 4);
    out.push(wkb[0]);
    out.extend_from_slice(&bytes(kind | SRID_FLAG));
    out.extend_from_slice(&bytes(srid));
    out.extend_from_slice(&wkb[5..]);
    Some(hex::encode(out))
}

fn enum_member(members: &[String], index: i64) -> Result<String, ValueProblem> {
    if index == 0 {
        // MySQL's "error value" for invalid input in non-strict mode: the empty string.
        return Ok(String::new());
    }
    usize::try_from(index - 1)
        .ok()
        .and_then(|i| members.get(i))
        .cloned()
        .ok_or_else(|| {
            ValueProblem::new(
                ProblemKind::Unexpected,
                format!(
                    "ENUM index {index} beyond the {} known members",
                    members.len()
                ),
            )
        })
}

fn set_members(members: &[String], mask: &[u8]) -> Result<String, ValueProblem> {
    let mut out = String::new();
    for (byte_idx, byte) in mask.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) == 0 {
                continue;
            }
            let i = byte_idx * 8 + bit;
            let name = members.get(i).ok_or_else(|| {
                ValueProblem::new(
                    ProblemKind::Unexpected,
                    format!("SET bit {i} beyond the {} known members", members.len()),
                )
            })?;
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }
    Ok(out)
}

fn vector_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = String::from("{");
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let f = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.push_str(&float_text(f64::from(f), format!("{f:?}")));
    }
    out.push('}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::mapping::{plan_column, SourceColumn};
    use crate::transform::TypeOptions;

    fn rule(data_type: &str, column_type: &str) -> ColumnRule {
        rule_with(data_type, column_type, |_| {})
    }

    fn rule_with(
        data_type: &str,
        column_type: &str,
        f: impl FnOnce(&mut SourceColumn),
    ) -> ColumnRule {
        let mut c = SourceColumn {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            unsigned: column_type.contains("unsigned"),
            charset: Some("utf8mb4".into()),
            ..Default::default()
        };
        f(&mut c);
        plan_column(&c, &TypeOptions::default()).expect("maps")
    }

    fn bl(rule: &ColumnRule, v: Value) -> Result<Cell, ValueProblem> {
        convert(rule, SourceValue::Binlog(&BinlogValue::Value(v)))
    }

    fn q(rule: &ColumnRule, v: Value) -> Result<Cell, ValueProblem> {
        convert(rule, SourceValue::Query(&v))
    }

    fn some(s: &str) -> Cell {
        Some(s.to_string())
    }

    #[test]
    fn null_is_null_for_every_kind() {
        for (dt, ct) in [
            ("int", "int(11)"),
            ("varchar", "varchar(3)"),
            ("date", "date"),
            ("json", "json"),
        ] {
            assert_eq!(bl(&rule(dt, ct), Value::NULL).expect("null"), None, "{dt}");
        }
    }

    #[test]
    fn mariadb_uuid_from_both_readers() {
        let r = rule("uuid", "uuid");
        let b = hex::decode("112233445566778899aabbccddeeff").expect("hex");
        // The binlog drops trailing zero bytes, as for BINARY(16).
        assert_eq!(
            bl(&r, Value::Bytes(b)).expect("binlog"),
            some("11223344-5566-7788-99aa-bbccddeeff00")
        );
        assert_eq!(
            bl(&r, Value::Bytes(Vec::new())).expect("nil"),
            some("00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            q(
                &r,
                Value::Bytes(b"6CCD780C-BABA-1026-9564-5B8C656024DB".to_vec())
            )
            .expect("text"),
            some("6ccd780c-baba-1026-9564-5b8c656024db")
        );
        assert!(q(
            &r,
            Value::Bytes(b"6ccd780c-baba-1026-9564-5b8c656024d".to_vec())
        )
        .is_err());
        assert!(bl(&r, Value::Bytes(vec![1; 17])).is_err());
    }

    #[test]
    fn mariadb_inet_from_both_readers() {
        let v4 = rule("inet4", "inet4");
        assert_eq!(
            bl(&v4, Value::Bytes(vec![10, 1, 2, 3])).expect("a"),
            some("10.1.2.3")
        );
        assert_eq!(
            bl(&v4, Value::Bytes(vec![10])).expect("b"),
            some("10.0.0.0")
        );
        assert_eq!(bl(&v4, Value::Bytes(vec![])).expect("c"), some("0.0.0.0"));
        assert_eq!(
            q(&v4, Value::Bytes(b"192.168.0.1".to_vec())).expect("d"),
            some("192.168.0.1")
        );
        assert!(q(&v4, Value::Bytes(b"::1".to_vec())).is_err());
        let v6 = rule("inet6", "inet6");
        let mut mapped = vec![0u8; 10];
        mapped.extend([0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(
            bl(&v6, Value::Bytes(mapped)).expect("e"),
            some("::ffff:1.2.3.4")
        );
        assert_eq!(
            bl(&v6, Value::Bytes(vec![0x20, 0x01, 0x0d, 0xb8])).expect("f"),
            some("2001:db8::")
        );
        assert_eq!(
            q(&v6, Value::Bytes(b"2001:DB8::1".to_vec())).expect("g"),
            some("2001:db8::1")
        );
        assert!(q(&v6, Value::Bytes(b"10.1.2.3".to_vec())).is_err());
    }

    #[test]
    fn signed_integers_edges() {
        let r = rule("bigint", "bigint(20)");
        assert_eq!(
            bl(&r, Value::Int(i64::MIN)).expect("min"),
            some("-9223372036854775808")
        );
        assert_eq!(
            bl(&r, Value::Int(i64::MAX)).expect("max"),
            some("9223372036854775807")
        );
        assert_eq!(
            bl(&rule("int", "int(11)"), Value::Int(-1)).expect("-1"),
            some("-1")
        );
        assert_eq!(
            bl(&rule("tinyint", "tinyint(4)"), Value::Int(-128)).expect("min"),
            some("-128")
        );
    }

    #[test]
    fn signed_mediumint_from_the_binlog_is_sign_extended() {
        let r = rule("mediumint", "mediumint(9)");
        assert_eq!(
            bl(&r, Value::Int(0x80_0000)).expect("min"),
            some("-8388608")
        );
        assert_eq!(bl(&r, Value::Int(0xFF_FFFF)).expect("-1"), some("-1"));
        assert_eq!(bl(&r, Value::Int(8_388_607)).expect("max"), some("8388607"));
        assert_eq!(
            q(&r, Value::Int(-8_388_608)).expect("query path"),
            some("-8388608")
        );
        let u = rule("mediumint", "mediumint(8) unsigned");
        assert_eq!(
            bl(&u, Value::Int(16_777_215)).expect("unsigned max"),
            some("16777215")
        );
    }

    #[test]
    fn unsigned_integers_are_never_negative() {
        let r = rule("bigint", "bigint(20) unsigned");
        assert_eq!(
            bl(&r, Value::UInt(u64::MAX)).expect("max"),
            some("18446744073709551615")
        );
        // decoded without signedness metadata: reinterpret
        assert_eq!(
            bl(&r, Value::Int(-1)).expect("reinterp"),
            some("18446744073709551615")
        );
        let r = rule("int", "int(10) unsigned");
        assert_eq!(
            bl(&r, Value::Int(-1)).expect("reinterp"),
            some("4294967295")
        );
        let r = rule("tinyint", "tinyint(3) unsigned");
        assert_eq!(bl(&r, Value::Int(-1)).expect("reinterp"), some("255"));
        let r = rule("mediumint", "mediumint(8) unsigned");
        assert_eq!(
            bl(&r, Value::Int(16_777_215)).expect("max"),
            some("16777215")
        );
        assert_eq!(bl(&r, Value::UInt(0)).expect("zero"), some("0"));
    }

    #[test]
    fn tinyint1_boolean_refuses_other_values() {
        let mut c = SourceColumn {
            name: "b".into(),
            data_type: "tinyint".into(),
            column_type: "tinyint(1)".into(),
            nullable: true,
            ..Default::default()
        };
        let opts = TypeOptions {
            tinyint1_as_boolean: true,
            ..Default::default()
        };
        let r = plan_column(&c, &opts).expect("maps");
        assert_eq!(bl(&r, Value::Int(1)).expect("t"), some("true"));
        assert_eq!(bl(&r, Value::Int(0)).expect("f"), some("false"));
        assert_eq!(
            bl(&r, Value::Int(2)).expect_err("2").kind,
            ProblemKind::OutOfRange
        );
        c.column_type = "tinyint(1)".into();
        let r = plan_column(&c, &TypeOptions::default()).expect("maps");
        assert_eq!(bl(&r, Value::Int(2)).expect("smallint keeps 2"), some("2"));
    }

    #[test]
    fn decimals_are_exact_text() {
        let r = rule_with("decimal", "decimal(65,30)", |c| {
            c.numeric_precision = Some(65);
            c.numeric_scale = Some(30);
        });
        let max = "99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(bl(&r, Value::Bytes(max.into())).expect("max"), some(max));
        assert_eq!(
            bl(&r, Value::Bytes(b"-0.50".to_vec())).expect("neg"),
            some("-0.50")
        );
        assert!(bl(&r, Value::Bytes(b"1e5".to_vec())).is_err());
    }

    #[test]
    fn floats_are_bit_exact_shortest_text() {
        let r = rule("float", "float");
        assert_eq!(bl(&r, Value::Float(0.1)).expect("f"), some("0.1"));
        assert_eq!(
            bl(&r, Value::Float(f32::MAX)).expect("max"),
            some("3.4028235e38")
        );
        assert_eq!(
            bl(&r, Value::Float(f32::MIN_POSITIVE)).expect("min"),
            some("1.1754944e-38")
        );
        let back: f32 = "1.1754944e-38".parse().expect("parse");
        assert_eq!(back.to_bits(), f32::MIN_POSITIVE.to_bits());
        let r = rule("double", "double");
        assert_eq!(bl(&r, Value::Double(0.1)).expect("d"), some("0.1"));
        assert_eq!(bl(&r, Value::Double(-0.0)).expect("-0"), some("-0.0"));
        assert_eq!(
            bl(&r, Value::Double(f64::MAX)).expect("max"),
            some("1.7976931348623157e308")
        );
    }

    #[test]
    fn bits_keep_width() {
        let r = rule_with("bit", "bit(3)", |c| c.numeric_precision = Some(3));
        assert_eq!(bl(&r, Value::Bytes(vec![0b101])).expect("b"), some("101"));
        let r = rule_with("bit", "bit(64)", |c| c.numeric_precision = Some(64));
        assert_eq!(
            bl(&r, Value::Bytes(vec![0xff; 8])).expect("b"),
            some(&"1".repeat(64))
        );
        let r = rule_with("bit", "bit(10)", |c| c.numeric_precision = Some(10));
        assert_eq!(
            bl(&r, Value::Bytes(vec![0x02, 0x01])).expect("b"),
            some("1000000001")
        );
    }

    #[test]
    fn year_zero_from_binlog() {
        let r = rule("year", "year(4)");
        assert_eq!(
            bl(&r, Value::Bytes(b"1900".to_vec())).expect("0000"),
            some("0")
        );
        assert_eq!(
            bl(&r, Value::Bytes(b"2155".to_vec())).expect("max"),
            some("2155")
        );
        assert_eq!(q(&r, Value::Int(1901)).expect("min"), some("1901"));
        assert_eq!(q(&r, Value::Int(0)).expect("zero"), some("0"));
    }

    #[test]
    fn temporal_values() {
        let d = rule("date", "date");
        assert_eq!(
            bl(&d, Value::Date(2024, 2, 29, 0, 0, 0, 0)).expect("d"),
            some("2024-02-29")
        );
        assert_eq!(
            bl(&d, Value::Date(0, 0, 0, 0, 0, 0, 0))
                .expect_err("zero")
                .kind,
            ProblemKind::ZeroDate
        );
        let dt = rule("datetime", "datetime(6)");
        assert_eq!(
            bl(&dt, Value::Date(1000, 1, 1, 0, 0, 0, 0)).expect("min"),
            some("1000-01-01 00:00:00")
        );
        let ts = rule("timestamp", "timestamp(3)");
        assert_eq!(
            bl(&ts, Value::Bytes(b"1700000000.123000".to_vec())).expect("ts"),
            some("2023-11-14 22:13:20.123000+00")
        );
        assert_eq!(
            q(&ts, Value::Date(2023, 11, 14, 22, 13, 20, 123_000)).expect("ts"),
            some("2023-11-14 22:13:20.123000+00")
        );
        let t = rule("time", "time(6)");
        assert_eq!(
            bl(&t, Value::Time(true, 34, 22, 59, 59, 0)).expect("min"),
            some("-838:59:59")
        );
        assert_eq!(
            bl(&t, Value::Time(false, 1, 1, 0, 0, 500_000)).expect("25h"),
            some("25:00:00.500000")
        );
    }

    #[test]
    fn text_by_charset_and_binary_padding() {
        let r = rule_with("varchar", "varchar(10)", |c| {
            c.charset = Some("latin1".into())
        });
        assert_eq!(
            bl(&r, Value::Bytes(vec![0x63, 0x61, 0x66, 0xe9])).expect("latin1"),
            some("café")
        );
        let r = rule("varchar", "varchar(10)");
        assert_eq!(bl(&r, Value::Bytes(vec![])).expect("empty"), some(""));
        assert_eq!(
            bl(&r, Value::Bytes(b"a\0".to_vec())).expect_err("nul").kind,
            ProblemKind::NulInText
        );
        let b = rule_with("binary", "binary(4)", |c| c.char_max_length = Some(4));
        assert_eq!(
            bl(&b, Value::Bytes(vec![1, 2])).expect("pad"),
            some("\\x01020000")
        );
        let vb = rule("varbinary", "varbinary(4)");
        assert_eq!(
            bl(&vb, Value::Bytes(vec![0, 0xff])).expect("vb"),
            some("\\x00ff")
        );
        assert_eq!(bl(&vb, Value::Bytes(vec![])).expect("empty"), some("\\x"));
    }

    #[test]
    fn enum_and_set_keep_names_and_order() {
        let members = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let e = rule_with("enum", "enum('a','b','c')", |c| c.members = members.clone());
        assert_eq!(bl(&e, Value::Int(3)).expect("c"), some("c"));
        assert_eq!(bl(&e, Value::Int(0)).expect("error value"), some(""));
        assert!(bl(&e, Value::Int(4)).is_err());
        assert_eq!(q(&e, Value::Bytes(b"b".to_vec())).expect("text"), some("b"));
        let s = rule_with("set", "set('a','b','c')", |c| c.members = members.clone());
        assert_eq!(bl(&s, Value::Bytes(vec![0b101])).expect("a,c"), some("a,c"));
        assert_eq!(bl(&s, Value::Bytes(vec![0])).expect("empty set"), some(""));
        assert_eq!(
            q(&s, Value::Bytes(b"a,c".to_vec())).expect("text"),
            some("a,c")
        );
        assert!(bl(&s, Value::Bytes(vec![0b1000])).is_err());
    }

    #[test]
    fn json_text_and_vector() {
        let j = rule("json", "json");
        assert_eq!(
            bl(&j, Value::Bytes(br#"{"b":1,"a":[true,null]}"#.to_vec())).expect("json"),
            some(r#"{"b":1,"a":[true,null]}"#)
        );
        assert_eq!(
            bl(&j, Value::Bytes(b"{oops".to_vec()))
                .expect_err("bad")
                .kind,
            ProblemKind::InvalidText
        );
        let v = rule("vector", "vector(2)");
        let mut bytes = 1.5f32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
        assert_eq!(
            bl(&v, Value::Bytes(bytes)).expect("vec"),
            some("{1.5,-2.0}")
        );
    }

    #[test]
    fn geometry_is_bytea_by_default_and_ewkb_under_postgis() {
        // POINT(1 -2) with SRID 4326, as MySQL stores it: SRID LE, then little-endian WKB.
        let mut internal = 4326u32.to_le_bytes().to_vec();
        internal.push(1);
        internal.extend_from_slice(&1u32.to_le_bytes());
        internal.extend_from_slice(&1.0f64.to_le_bytes());
        internal.extend_from_slice(&(-2.0f64).to_le_bytes());
        let bytea = rule("point", "point");
        assert_eq!(bytea.pg_type, PgType::Bytea);
        assert_eq!(
            bl(&bytea, Value::Bytes(internal.clone())).expect("bytea"),
            Some(format!("\\x{}", hex::encode(&internal)))
        );

        let mut c = SourceColumn {
            name: "g".into(),
            data_type: "point".into(),
            column_type: "point".into(),
            nullable: true,
            ..Default::default()
        };
        let opts = TypeOptions {
            postgis_schema: Some("gis".into()),
            ..TypeOptions::default()
        };
        let postgis = plan_column(&c, &opts).expect("maps");
        assert_eq!(postgis.pg_type.sql(), "\"gis\".geometry");
        assert_eq!(
            bl(&postgis, Value::Bytes(internal.clone())).expect("ewkb"),
            some(concat!(
                "01",               // little-endian
                "01000020",         // point | SRID flag
                "e6100000",         // 4326
                "000000000000f03f", // 1.0
                "00000000000000c0", // -2.0
            ))
        );
        // SRID 0 is plain WKB; the query path carries the same bytes.
        internal[..4].copy_from_slice(&[0; 4]);
        assert_eq!(
            q(&postgis, Value::Bytes(internal.clone())).expect("wkb"),
            Some(hex::encode(&internal[4..]))
        );
        // A big-endian WKB keeps its byte order: the flag and SRID are written big-endian.
        let mut big = 3857u32.to_le_bytes().to_vec();
        big.push(0);
        big.extend_from_slice(&1u32.to_be_bytes());
        big.extend_from_slice(&1.0f64.to_be_bytes());
        big.extend_from_slice(&2.0f64.to_be_bytes());
        assert_eq!(
            ewkb_hex(&big).expect("ewkb"),
            format!(
                "00{}{}{}{}",
                "20000001",
                "00000f11",
                hex::encode(1.0f64.to_be_bytes()),
                hex::encode(2.0f64.to_be_bytes())
            )
        );
        c.data_type = "geometry".into();
        let any = plan_column(&c, &opts).expect("maps");
        assert_eq!(
            bl(&any, Value::Bytes(vec![0, 0, 0]))
                .expect_err("short")
                .kind,
            ProblemKind::Unexpected
        );
        assert!(
            ewkb_hex(&[0, 0, 0, 1, 7, 1, 0, 0, 0]).is_none(),
            "bad byte order"
        );
    }
}

/// Hostile input: arbitrary values of every shape either reader can deliver, for columns of
/// every kind ferry maps — never a panic, always a cell or a [`ValueProblem`]; and the exact
/// forms hold for values in range.
#[cfg(test)]
mod hostile_values {
    use super::*;
    use crate::transform::mapping::{plan_column, sample_column};
    use crate::transform::TypeOptions;
    use proptest::prelude::*;

    const COLUMNS: &[(&str, &str)] = &[
        ("tinyint", "tinyint(4)"),
        ("tinyint", "tinyint(3) unsigned"),
        ("smallint", "smallint(6)"),
        ("mediumint", "mediumint(8) unsigned"),
        ("int", "int(11)"),
        ("int", "int(10) unsigned"),
        ("bigint", "bigint(20)"),
        ("bigint", "bigint(20) unsigned"),
        ("decimal", "decimal(10,2)"),
        ("decimal", "decimal(65,30)"),
        ("float", "float"),
        ("double", "double"),
        ("varchar", "varchar(20)"),
        ("char", "char(4)"),
        ("text", "text"),
        ("binary", "binary(4)"),
        ("varbinary", "varbinary(10)"),
        ("blob", "blob"),
        ("json", "json"),
        ("bit", "bit(1)"),
        ("bit", "bit(64)"),
        ("date", "date"),
        ("datetime", "datetime(6)"),
        ("timestamp", "timestamp"),
        ("time", "time(6)"),
        ("year", "year(4)"),
        ("enum", "enum('a','b')"),
        ("set", "set('a','b','c')"),
        ("geometry", "geometry"),
        ("point", "point"),
    ];

    fn rule(i: usize, charset: &str) -> ColumnRule {
        let (data_type, column_type) = COLUMNS[i];
        plan_column(
            &sample_column(data_type, column_type, charset),
            &TypeOptions::default(),
        )
        .expect("maps")
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::NULL),
            proptest::collection::vec(any::<u8>(), 0..48).prop_map(Value::Bytes),
            "\\PC{0,24}".prop_map(|s: String| Value::Bytes(s.into_bytes())),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            any::<f32>().prop_map(Value::Float),
            any::<f64>().prop_map(Value::Double),
            (
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                any::<u32>()
            )
                .prop_map(|(y, m, d, h, mi, s, us)| Value::Date(y, m, d, h, mi, s, us)),
            (
                any::<bool>(),
                any::<u32>(),
                any::<u8>(),
                any::<u8>(),
                any::<u8>(),
                any::<u32>()
            )
                .prop_map(|(n, d, h, m, s, us)| Value::Time(n, d, h, m, s, us)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn any_value_converts_or_is_a_problem_never_a_panic(
            column in 0..COLUMNS.len(),
            charset in prop_oneof![Just("utf8mb4"), Just("latin1"), Just("ascii"), Just("sjis"), Just("gbk"), Just("ucs2")],
            v in value(),
        ) {
            let rule = rule(column, charset);
            let _ = convert(&rule, SourceValue::Query(&v));
            let _ = convert(&rule, SourceValue::Binlog(&BinlogValue::Value(v)));
        }

        #[test]
        fn integers_in_range_are_carried_digit_for_digit(v in any::<i64>(), u in any::<u64>()) {
            let signed = rule(6, "utf8mb4");
            prop_assert_eq!(convert(&signed, SourceValue::Query(&Value::Int(v))), Ok(Some(v.to_string())));
            let unsigned = rule(7, "utf8mb4");
            prop_assert_eq!(convert(&unsigned, SourceValue::Query(&Value::UInt(u))), Ok(Some(u.to_string())));
            // The binlog delivers BIGINT UNSIGNED as the signed bit pattern.
            prop_assert_eq!(
                convert(&unsigned, SourceValue::Binlog(&BinlogValue::Value(Value::Int(u as i64)))),
                Ok(Some(u.to_string()))
            );
        }

        #[test]
        fn utf8_text_without_nul_is_carried_exactly(s in "[^\u{0}]{0,20}") {
            let text = rule(14, "utf8mb4");
            prop_assert_eq!(
                convert(&text, SourceValue::Query(&Value::Bytes(s.clone().into_bytes()))),
                Ok(Some(s))
            );
        }
    }
}
