//! Normalization rules that make equal values look equal on both engines — as SQL text computed
//! inside MySQL and PostgreSQL (for chunk checksums) and as canonical strings in Rust (for the
//! value-by-value comparison of fetched rows).
//!
//! Guarantees: for every column kind ferry maps, a value the binlog path writes into PostgreSQL
//! yields, inside each database, the same normalized text ([`mysql_expr`] / [`pg_expr`]), so
//! equal rows hash equal; values that differ in meaning yield different text. The rules:
//! - integers and unsigned integers: decimal digits; YEAR as its number (0000 is 0);
//! - DECIMAL / numeric: trailing fractional zeros removed (`trim_scale`), so `12.50` and
//!   `12.5000` agree even in an unconstrained `numeric` column;
//! - FLOAT / DOUBLE: the exact binary value as `[-]M p E` (value = M·2^(E-52), M an integer),
//!   computed by power-of-two arithmetic, which is exact on both engines — never decimal text,
//!   whose formatting differs between the engines;
//! - DATE as `YYYY-MM-DD`; DATETIME as text without trailing fractional zeros; TIMESTAMP the same
//!   in UTC (MySQL sessions run in `+00:00`, PostgreSQL values are read `AT TIME ZONE 'UTC'`), so
//!   one instant written with any offset agrees;
//! - TIME / interval: signed microseconds;
//! - text, ENUM, SET: UTF-8 bytes (MySQL converts the column charset to utf8mb4), prefixed by their
//!   byte length so a separator inside a value cannot shift a boundary;
//! - binary strings and geometry: lower-case hex; BIT(n): n binary digits; a PostGIS `geometry`
//!   is rebuilt into MySQL's internal form (little-endian SRID, then little-endian WKB) first;
//! - NULL: `~`, which no normalized value equals.
//!
//! JSON and VECTOR columns are not hashed inside the databases: MariaDB keeps JSON as the text the
//! application wrote, and neither engine can produce the other's canonical form cheaply. Those
//! columns are compared outside (see `verify::compare`) after [`canonical_json`] /
//! [`canon_vector`] normalization: object key order, whitespace and number spelling are ignored;
//! numbers are compared as exact decimals.

use crate::schema::Table;
use crate::select::quote_mysql_ident;
use crate::transform::{Cell, ColumnRule, PgType, SourceColumn, ValueKind};

/// Marker for SQL NULL inside a normalized row.
pub const NULL_MARK: &str = "~";
/// Separator between normalized columns.
pub const SEPARATOR: &str = "#";
/// PostgreSQL functions take at most 100 arguments: `concat_ws` is nested in groups of this size.
const CONCAT_GROUP: usize = 90;

/// A canonical value (`None` is NULL). Equal canonical values mean equal column values.
pub type Canon = Option<String>;

/// True when the column is part of the in-database checksum; false for the kinds compared
/// outside the databases (JSON, VECTOR).
pub fn in_checksum(rule: &ColumnRule) -> bool {
    !matches!(rule.kind, ValueKind::Json | ValueKind::Vector)
}

fn decimal_scale(rule: &ColumnRule) -> u32 {
    match rule.pg_type {
        PgType::Numeric(Some((_, s))) => s,
        _ => 0,
    }
}

fn fractional_digits(rule: &ColumnRule) -> u32 {
    match rule.pg_type {
        PgType::Timestamp(p) | PgType::TimestampTz(p) | PgType::Interval(p) => p,
        _ => 0,
    }
}

/// How MySQL text columns enter the row text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// Every text column is cast to a binary string: used when the table mixes charsets or
    /// collations, which MySQL may refuse to concatenate ("Illegal mix of collations").
    Binary,
    /// Every text column is UTF-8 with one collation: used as it is (the cast costs about
    /// 0.4 µs per value on MariaDB).
    Plain,
}

/// True when MySQL's text of the column charset is already UTF-8.
fn utf8_charset(col: &SourceColumn) -> bool {
    matches!(
        col.charset
            .as_deref()
            .unwrap_or("utf8mb4")
            .to_ascii_lowercase()
            .as_str(),
        "utf8mb4" | "utf8mb3" | "utf8"
    )
}

/// `[-]M p E` of a double `x` in MySQL (see the module doc). `x` may be a FLOAT column: MySQL
/// widens it to double exactly.
fn mysql_float(x: &str) -> String {
    let a = format!("ABS({x})");
    // Clamped to the exponents of finite doubles: LOG2 of the largest double rounds up to 1024,
    // and POW(2, 1024) is an error in MySQL, not infinity.
    let e0 = format!("LEAST(GREATEST(FLOOR(LOG2({a})), -1074), 1023)");
    let q0 = format!("({a} / POW(2, {e0}))");
    // LOG2 may round up just below a power of two: correct the exponent by one step.
    let e = format!("({e0} + ({q0} >= 2) - ({q0} < 1))");
    let m = format!("CAST({a} / POW(2, {e}) * 4503599627370496 AS UNSIGNED)");
    format!(
        "CASE WHEN {x} = 0 THEN '0' ELSE CONCAT(IF({x} < 0, '-', ''), {m}, 'p', CAST({e} AS SIGNED)) END"
    )
}

/// The same in PostgreSQL; non-finite values (which MySQL cannot hold) keep their names.
fn pg_float(col: &str) -> String {
    let x = format!("{col}::float8");
    let a = format!("abs({x})");
    let e0 = format!("least(greatest(floor(ln({a}) / 0.6931471805599453::float8), -1074), 1023)");
    let q0 = format!("({a} / power(2::float8, {e0}))");
    let e = format!("({e0} + CASE WHEN {q0} >= 2 THEN 1 WHEN {q0} < 1 THEN -1 ELSE 0 END)");
    let m = format!("({a} / power(2::float8, {e}) * 4503599627370496::float8)::bigint");
    format!(
        "CASE WHEN {x} = 0 THEN '0' WHEN {x} IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN {x}::text \
         ELSE (CASE WHEN {x} < 0 THEN '-' ELSE '' END) || {m}::text || 'p' || ({e})::bigint::text END"
    )
}

/// Normalized text of one column in MySQL (NULL stays NULL).
pub fn mysql_expr(rule: &ColumnRule, col: &SourceColumn, mode: TextMode) -> String {
    let c = quote_mysql_ident(&col.name);
    let utf8 = |c: &str| {
        if utf8_charset(col) && mode == TextMode::Plain {
            c.to_string()
        } else if utf8_charset(col) {
            format!("CAST({c} AS BINARY)")
        } else {
            format!("CAST(CONVERT({c} USING utf8mb4) AS BINARY)")
        }
    };
    let trimmed = |c: &str| format!("TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {c}))");
    match &rule.kind {
        ValueKind::Int { .. } | ValueKind::UInt { .. } | ValueKind::Bool => c,
        ValueKind::Decimal if decimal_scale(rule) > 0 => trimmed(&c),
        ValueKind::Decimal => c,
        ValueKind::Float | ValueKind::Double => mysql_float(&c),
        ValueKind::Bit { bits } => format!("LPAD(BIN({c} + 0), {bits}, '0')"),
        ValueKind::Year => format!("({c} + 0)"),
        ValueKind::Date => c,
        ValueKind::DateTime | ValueKind::Timestamp if fractional_digits(rule) > 0 => trimmed(&c),
        ValueKind::DateTime | ValueKind::Timestamp => c,
        ValueKind::Time => format!("CAST(TIME_TO_SEC({c}) * 1000000 AS SIGNED)"),
        ValueKind::Text { .. } | ValueKind::Enum { .. } | ValueKind::Set { .. } => {
            let b = utf8(&c);
            format!("CONCAT(LENGTH({b}), ':', {b})")
        }
        // HEX of a UUID is its bytes in text order; of an INET4/INET6 the address in network
        // byte order.
        ValueKind::Bytes { .. }
        | ValueKind::Geometry
        | ValueKind::Uuid
        | ValueKind::Inet { .. } => {
            format!("LOWER(HEX({c}))")
        }
        // Not hashed (see `in_checksum`); the raw text keeps the expression total.
        ValueKind::Json | ValueKind::Vector => utf8(&c),
    }
}

/// Normalized text of one column in PostgreSQL (NULL stays NULL); needs `DateStyle = ISO`.
pub fn pg_expr(rule: &ColumnRule) -> String {
    let c = &rule.quoted;
    match &rule.kind {
        ValueKind::Bool => format!("{c}::int::text"),
        ValueKind::Int { .. } | ValueKind::UInt { .. } | ValueKind::Year => format!("{c}::text"),
        ValueKind::Decimal => format!("trim_scale({c})::text"),
        ValueKind::Float | ValueKind::Double => pg_float(c),
        ValueKind::Bit { .. } | ValueKind::Date | ValueKind::DateTime => format!("{c}::text"),
        ValueKind::Timestamp => format!("({c} AT TIME ZONE 'UTC')::text"),
        ValueKind::Time => format!("round(extract(epoch FROM {c}) * 1000000)::bigint::text"),
        ValueKind::Text { .. } | ValueKind::Enum { .. } | ValueKind::Set { .. } => {
            format!("octet_length({c})::text || ':' || {c}")
        }
        ValueKind::Geometry => match &rule.pg_type {
            PgType::Geometry { schema } => pg_geometry_internal_hex(c, schema),
            _ => format!("encode({c}, 'hex')"),
        },
        ValueKind::Bytes { .. } => format!("encode({c}, 'hex')"),
        ValueKind::Uuid => format!("replace({c}::text, '-', '')"),
        // inet's binary form: family, netmask bits, is-cidr and length bytes, then the address.
        ValueKind::Inet { .. } => format!("encode(substr(inet_send({c}), 5), 'hex')"),
        ValueKind::Json | ValueKind::Vector => format!("{c}::text"),
    }
}

/// A PostGIS `geometry` as the hex of MySQL's internal form: the SRID as 4 little-endian bytes
/// (byte-swapped arithmetically: PostgreSQL sends integers big-endian), then the WKB in
/// little-endian order, which is how MySQL and MariaDB store it.
fn pg_geometry_internal_hex(c: &str, schema: &str) -> String {
    let schema = crate::select::quote_ident(schema);
    let s = format!("{schema}.st_srid({c})::bigint");
    format!(
        "lpad(to_hex((({s} & 255) << 24) | ((({s} >> 8) & 255) << 16) | ((({s} >> 16) & 255) << 8) \
         | (({s} >> 24) & 255)), 8, '0') || encode({schema}.st_asbinary({c}, 'NDR'), 'hex')"
    )
}

fn concat_groups(parts: Vec<String>, f: impl Fn(&str) -> String) -> String {
    if parts.len() <= CONCAT_GROUP {
        return f(&parts.join(", "));
    }
    let groups: Vec<String> = parts
        .chunks(CONCAT_GROUP)
        .map(|g| f(&g.join(", ")))
        .collect();
    concat_groups(groups, f)
}

/// The normalized row text of every hashed column, in MySQL.
pub fn mysql_row_text(t: &Table, mode: TextMode) -> String {
    let parts: Vec<String> = t
        .columns
        .iter()
        .zip(&t.source_columns)
        .filter(|(r, _)| in_checksum(r))
        .map(|(r, c)| {
            let e = mysql_expr(r, c, mode);
            if r.nullable {
                format!("COALESCE({e}, '{NULL_MARK}')")
            } else {
                e
            }
        })
        .collect();
    concat_groups(parts, |inner| format!("CONCAT_WS('{SEPARATOR}', {inner})"))
}

/// The normalized row text of every hashed column, in PostgreSQL.
pub fn pg_row_text(t: &Table) -> String {
    let parts: Vec<String> = t
        .columns
        .iter()
        .filter(|r| in_checksum(r))
        .map(|r| {
            // A NOT NULL source column needs no NULL marker; should the target hold a NULL
            // anyway, `concat_ws` drops the field and the row hash differs.
            let e = pg_expr(r);
            if r.nullable {
                format!("coalesce({e}, '{NULL_MARK}')")
            } else {
                e
            }
        })
        .collect();
    concat_groups(parts, |inner| format!("concat_ws('{SEPARATOR}', {inner})"))
}

/// The SQL expression of PostgreSQL's 64-bit hash of a text: the first 8 bytes of its SHA-256
/// (of its UTF-8 bytes: `textsend`, the text's own bytes — verification requires a UTF8 target
/// database — because a `::bytea` cast would parse backslashes; `convert_to` would re-validate
/// every byte).
pub fn pg_hash64(text: &str) -> String {
    format!(
        "('x' || encode(substring(sha256(textsend({text})) FROM 1 FOR 8), 'hex'))::bit(64)::bigint"
    )
}

/// The 64-bit row hash aggregated per chunk, in MySQL: first 16 hex digits of SHA-256, XORed.
/// SHA-256, not MD5: both engines have both, and MariaDB's SHA2 costs about half its MD5.
/// (`BIT_XOR` of no rows is 0).
pub fn mysql_chunk_aggregate(t: &Table, mode: TextMode) -> String {
    format!(
        "COUNT(*), BIT_XOR(CAST(CONV(LEFT(SHA2({}, 256), 16), 16, 10) AS UNSIGNED))",
        mysql_row_text(t, mode)
    )
}

/// The same aggregate in PostgreSQL (a signed bigint carrying the same 64 bits).
pub fn pg_chunk_aggregate(t: &Table) -> String {
    format!(
        "count(*), coalesce(bit_xor({}), 0)",
        pg_hash64(&pg_row_text(t))
    )
}

/// What PostgreSQL returns for a column when rows are fetched for comparison (text, read back by
/// [`canon_target`]).
pub fn pg_fetch_expr(rule: &ColumnRule) -> String {
    match rule.kind {
        ValueKind::Time => format!("extract(epoch FROM {})::text", rule.quoted),
        _ => format!("{}::text", rule.quoted),
    }
}

/// Canonical form of a value as ferry's transform writes it (a [`Cell`] from `convert`).
pub fn canon_source(rule: &ColumnRule, cell: &Cell) -> Canon {
    let s = cell.as_deref()?;
    Some(match &rule.kind {
        ValueKind::Decimal | ValueKind::UInt { .. } => canon_decimal(s),
        ValueKind::Float => canon_f32(s),
        ValueKind::Double => canon_f64(s),
        ValueKind::DateTime => pad_micros(s),
        ValueKind::Timestamp => pad_micros(strip_utc_offset(s)),
        ValueKind::Time => match time_micros(s) {
            Some(us) => time_text(us),
            None => s.to_string(),
        },
        ValueKind::Json => canonical_json(s).unwrap_or_else(|_| s.to_string()),
        ValueKind::Vector => canon_vector(s),
        // Both sides print addresses in their own style (`::1.2.3.4` or `::102:304`).
        ValueKind::Inet { .. } => s
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| s.to_string(), |a| a.to_string()),
        _ => s.to_string(),
    })
}

/// Canonical form of what PostgreSQL returned for [`pg_fetch_expr`].
pub fn canon_target(rule: &ColumnRule, text: Option<&str>) -> Canon {
    let s = text?;
    Some(match &rule.kind {
        ValueKind::Time => match epoch_micros(s) {
            Some(us) => time_text(us),
            None => s.to_string(),
        },
        ValueKind::Bytes { .. } | ValueKind::Geometry => s.to_ascii_lowercase(),
        ValueKind::Bool => match s {
            "t" => "true".into(),
            "f" => "false".into(),
            other => other.to_string(),
        },
        _ => return canon_source(rule, &Some(s.to_string())),
    })
}

/// Decimal text without a sign on zero, leading integer zeros or trailing fractional zeros.
pub fn canon_decimal(s: &str) -> String {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return t.to_string(); // NaN and anything unexpected: compared as written
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let zero = int == "0" && frac.is_empty();
    let mut out = String::with_capacity(body.len() + 1);
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

fn special_float(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some("NaN"),
        "infinity" | "inf" | "+infinity" => Some("Infinity"),
        "-infinity" | "-inf" => Some("-Infinity"),
        _ => None,
    }
}

/// Shortest round-trip text of a single-precision value (both zeros are `0`).
pub fn canon_f32(s: &str) -> String {
    if let Some(sp) = special_float(s) {
        return sp.into();
    }
    match s.trim().parse::<f32>() {
        Ok(0.0) => "0".into(),
        Ok(v) => format!("{v:?}"),
        Err(_) => s.to_string(),
    }
}

/// Shortest round-trip text of a double-precision value (both zeros are `0`).
pub fn canon_f64(s: &str) -> String {
    if let Some(sp) = special_float(s) {
        return sp.into();
    }
    match s.trim().parse::<f64>() {
        Ok(0.0) => "0".into(),
        Ok(v) => format!("{v:?}"),
        Err(_) => s.to_string(),
    }
}

/// `{1.5,-2}` / `{1.5,-2.0}` → canonical single-precision list.
pub fn canon_vector(s: &str) -> String {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return "{}".into();
    }
    let items: Vec<String> = inner.split(',').map(canon_f32).collect();
    format!("{{{}}}", items.join(","))
}

/// Drops a `+00` / `+00:00` UTC offset (ferry's and a UTC session's TIMESTAMP text).
fn strip_utc_offset(s: &str) -> &str {
    s.strip_suffix("+00:00")
        .or_else(|| s.strip_suffix("+00"))
        .unwrap_or(s)
}

/// Pads (or adds) the fractional seconds of a `... HH:MM:SS[.f]` text to six digits.
fn pad_micros(s: &str) -> String {
    let (head, frac) = match s.rsplit_once('.') {
        Some((h, f)) if f.bytes().all(|b| b.is_ascii_digit()) && f.len() <= 6 => (h, f),
        _ => (s, ""),
    };
    format!("{head}.{frac:0<6}")
}

/// `[-]H:MM:SS[.ffffff]` → signed microseconds.
pub fn time_micros(s: &str) -> Option<i128> {
    let (neg, body) = match s.trim().strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.trim()),
    };
    let mut parts = body.splitn(3, ':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let sec = parts.next()?;
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i128 = whole.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let us: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    let total = ((h * 60 + m) * 60 + s) * 1_000_000 + us;
    Some(if neg { -total } else { total })
}

/// Decimal seconds (`-3020399.000001`) → signed microseconds.
fn epoch_micros(s: &str) -> Option<i128> {
    let (neg, body) = match s.trim().strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.trim()),
    };
    let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
    let w: i128 = whole.parse().ok()?;
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let us: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    let total = w * 1_000_000 + us;
    Some(if neg { -total } else { total })
}

/// Signed microseconds → `[-]H:MM:SS.ffffff` (valid MySQL TIME and PostgreSQL interval input).
pub fn time_text(us: i128) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.abs();
    let secs = a / 1_000_000;
    format!(
        "{sign}{}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        a % 1_000_000
    )
}

/// Canonical JSON text: object keys sorted by their bytes, no whitespace, numbers as exact
/// decimals in one spelling (`1.50`, `1.5` and `15e-1` agree), strings re-escaped uniformly.
///
/// # Errors
/// The text is not JSON.
pub fn canonical_json(text: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    write_json(&v, &mut out);
    Ok(out)
}

fn write_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => out.push_str(&canon_json_number(&n.to_string())),
        J::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialize"));
                out.push(':');
                write_json(item, out);
            }
            out.push('}');
        }
    }
}

/// The text PostgreSQL prints for a `jsonb` holding this JSON: object keys ordered by length,
/// then bytes (the last of duplicate keys wins), `", "` and `": "` separators, strings escaped as
/// `escape_json` does, numbers as `numeric` prints them. `None` for text that is not JSON.
///
/// It lets the JSON of a source row be hashed the way PostgreSQL hashes `jsonb::text`, so
/// matching JSON columns need no row-by-row comparison. A spelling PostgreSQL prints otherwise
/// only makes the chunk take the exact comparison ([`canonical_json`]), never a wrong verdict.
pub fn jsonb_text(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut out = String::with_capacity(text.len() + 8);
    write_jsonb(&v, &mut out);
    Some(out)
}

fn write_jsonb(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => out.push_str(&numeric_text(&n.to_string())),
        J::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        J::Object(map) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            entries.sort_by(|a, b| {
                a.0.len()
                    .cmp(&b.0.len())
                    .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
            });
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialize"));
                out.push_str(": ");
                write_jsonb(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON number as PostgreSQL `numeric` prints it: plain decimal, as many fractional digits as
/// the input had after applying its exponent, no negative zero.
fn numeric_text(s: &str) -> String {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()),
        None => (body, Some(0)),
    };
    let Some(exp) = exp else {
        return s.to_string();
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = String::with_capacity(int.len() + frac.len());
    digits.push_str(int);
    digits.push_str(frac);
    let shift = exp - frac.len() as i64;
    let (int_part, frac_part) = if shift >= 0 {
        digits.push_str(&"0".repeat(shift as usize));
        (digits, String::new())
    } else {
        let scale = (-shift) as usize;
        if digits.len() <= scale {
            let pad = scale + 1 - digits.len();
            digits.insert_str(0, &"0".repeat(pad));
        }
        let cut = digits.len() - scale;
        (digits[..cut].to_string(), digits[cut..].to_string())
    };
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let zero = int_part == "0" && frac_part.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(int_part);
    if !frac_part.is_empty() {
        out.push('.');
        out.push_str(&frac_part);
    }
    out
}

/// A JSON number as `[-]DIGITSeEXP` with no leading or trailing zeros in DIGITS (zero is `0`).
pub fn canon_json_number(s: &str) -> String {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, "0"),
    };
    let Ok(mut exp) = exp.parse::<i64>() else {
        return s.to_string();
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = String::with_capacity(int.len() + frac.len());
    digits.push_str(int);
    digits.push_str(frac);
    exp -= frac.len() as i64;
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return "0".into();
    }
    let without = trimmed.trim_end_matches('0');
    exp += (trimmed.len() - without.len()) as i64;
    format!("{}{without}e{exp}", if neg { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{plan_column, TypeOptions};

    fn rule(data_type: &str, column_type: &str, f: impl FnOnce(&mut SourceColumn)) -> ColumnRule {
        let mut c = SourceColumn {
            name: "C".into(),
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

    #[test]
    fn decimals_lose_only_meaningless_zeros() {
        assert_eq!(canon_decimal("12.50"), "12.5");
        assert_eq!(canon_decimal("12.5000"), "12.5");
        assert_eq!(canon_decimal("-0.00"), "0");
        assert_eq!(canon_decimal("100"), "100");
        assert_eq!(canon_decimal("100.00"), "100");
        assert_eq!(canon_decimal("007.10"), "7.1");
        assert_eq!(canon_decimal("-0.050"), "-0.05");
        assert_eq!(canon_decimal("NaN"), "NaN");
        assert_ne!(canon_decimal("1.05"), canon_decimal("1.5"));
    }

    #[test]
    fn floats_compare_by_value_not_spelling() {
        assert_eq!(canon_f32("3.4028235e+38"), canon_f32("3.4028235e38"));
        assert_eq!(canon_f64("1e+300"), canon_f64("1e300"));
        assert_eq!(canon_f64("-0"), "0");
        assert_eq!(canon_f64("-0.0"), canon_f64("0"));
        assert_eq!(canon_f64("Infinity"), "Infinity");
        assert_eq!(canon_f64("NaN"), "NaN");
        assert_ne!(canon_f64("0.1"), canon_f64("0.10000000000000002"));
        assert_eq!(canon_vector("{1.5,-2}"), canon_vector("{1.5,-2.0}"));
    }

    #[test]
    fn temporal_text_is_padded_and_utc() {
        let ts = rule("timestamp", "timestamp(3)", |c| {
            c.datetime_precision = Some(3)
        });
        assert_eq!(
            canon_source(&ts, &Some("2023-11-14 22:13:20.5+00".into())),
            Some("2023-11-14 22:13:20.500000".into())
        );
        assert_eq!(
            canon_target(&ts, Some("2023-11-14 22:13:20.5+00")),
            canon_source(&ts, &Some("2023-11-14 22:13:20.500000+00".into()))
        );
        let dt = rule("datetime", "datetime", |_| {});
        assert_eq!(
            canon_source(&dt, &Some("2024-01-02 03:04:05".into())),
            Some("2024-01-02 03:04:05.000000".into())
        );
        let t = rule("time", "time(6)", |c| c.datetime_precision = Some(6));
        assert_eq!(
            canon_source(&t, &Some("-838:59:59".into())),
            canon_target(&t, Some("-3020399.000000"))
        );
        assert_eq!(
            canon_source(&t, &Some("-0:00:00.000001".into())),
            Some("-0:00:00.000001".into())
        );
        assert_eq!(
            canon_target(&t, Some("-0.000001")),
            Some("-0:00:00.000001".into())
        );
        assert_eq!(
            canon_target(&t, Some("90000.5")),
            Some("25:00:00.500000".into())
        );
    }

    #[test]
    fn json_ignores_order_spacing_and_number_spelling() {
        let a = canonical_json(r#"{"b": 1, "a": [1.50, 2e2, "x"], "c": {"z": null, "y": true}}"#)
            .expect("json");
        let b =
            canonical_json(r#"{"a":[1.5,200,"x"],"c":{"y":true,"z":null},"b":1.0}"#).expect("json");
        assert_eq!(a, b);
        assert_ne!(
            canonical_json(r#"{"a": 1}"#).expect("json"),
            canonical_json(r#"{"a": "1"}"#).expect("json")
        );
        assert_ne!(
            canonical_json(r#"[1, 2]"#).expect("json"),
            canonical_json(r#"[2, 1]"#).expect("json"),
            "array order matters"
        );
        assert_eq!(canon_json_number("0.000"), "0");
        assert_eq!(canon_json_number("-120"), "-12e1");
        assert_eq!(
            canon_json_number("18446744073709551615"),
            "18446744073709551615e0"
        );
        assert!(canonical_json("{oops").is_err());
    }

    #[test]
    fn jsonb_text_is_what_postgresql_prints() {
        // Outputs checked against PostgreSQL 15 (`SELECT '...'::jsonb::text`).
        assert_eq!(
            jsonb_text(r#"{"lang":"en","n":1, "aa": [1.50, 2e2, -0, 1.5E-2, 12.30e1]}"#)
                .expect("json"),
            r#"{"n": 1, "aa": [1.50, 200, 0, 0.015, 123.0], "lang": "en"}"#
        );
        assert_eq!(
            jsonb_text(r#"{"b": 1, "a": 2, "b": 3}"#).expect("json"),
            r#"{"a": 2, "b": 3}"#
        );
        assert_eq!(
            jsonb_text(r#"["\u00e9\n\"", {}, [], null, true]"#).expect("json"),
            r#"["é\n\"", {}, [], null, true]"#
        );
        assert_eq!(jsonb_text("-0.0").expect("json"), "0.0");
        assert!(jsonb_text("{oops").is_none());
    }

    #[test]
    fn sql_expressions_per_kind() {
        let d = rule("decimal", "decimal(10,2)", |c| {
            c.numeric_precision = Some(10);
            c.numeric_scale = Some(2);
        });
        let src = SourceColumn {
            name: "C".into(),
            ..Default::default()
        };
        assert_eq!(
            mysql_expr(&d, &src, TextMode::Binary),
            "TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM `C`))"
        );
        assert_eq!(pg_expr(&d), "trim_scale(\"c\")::text");
        let latin = SourceColumn {
            name: "C".into(),
            charset: Some("latin1".into()),
            ..Default::default()
        };
        let txt = rule("varchar", "varchar(5)", |c| {
            c.charset = Some("latin1".into())
        });
        assert!(mysql_expr(&txt, &latin, TextMode::Plain).contains("CONVERT(`C` USING utf8mb4)"));
        let utf8 = SourceColumn {
            name: "C".into(),
            charset: Some("utf8mb4".into()),
            ..Default::default()
        };
        let txt = rule("varchar", "varchar(5)", |_| {});
        assert_eq!(
            mysql_expr(&txt, &utf8, TextMode::Binary),
            "CONCAT(LENGTH(CAST(`C` AS BINARY)), ':', CAST(`C` AS BINARY))"
        );
        assert_eq!(
            mysql_expr(&txt, &utf8, TextMode::Plain),
            "CONCAT(LENGTH(`C`), ':', `C`)"
        );
        assert_eq!(pg_expr(&txt), "octet_length(\"c\")::text || ':' || \"c\"");
        let b = rule("bit", "bit(5)", |c| c.numeric_precision = Some(5));
        assert_eq!(
            mysql_expr(&b, &src, TextMode::Plain),
            "LPAD(BIN(`C` + 0), 5, '0')"
        );
    }

    #[test]
    fn wide_tables_nest_concat_ws() {
        let cols: Vec<SourceColumn> = (0..150)
            .map(|i| SourceColumn {
                name: format!("c{i}"),
                data_type: "int".into(),
                column_type: "int(11)".into(),
                ..Default::default()
            })
            .collect();
        let t = Table::plan(
            crate::schema::SourceName::new("d", "t"),
            "d".into(),
            cols,
            vec![crate::schema::Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plans");
        let text = pg_row_text(&t);
        assert_eq!(
            text.matches("concat_ws(").count(),
            3,
            "two groups and an outer one"
        );
        assert!(mysql_row_text(&t, TextMode::Plain).starts_with("CONCAT_WS('#', CONCAT_WS('#', "));
    }
}
