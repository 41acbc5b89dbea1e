//! Column defaults and CHECK constraints: MySQL/MariaDB's → PostgreSQL's, carried only where the
//! PostgreSQL form means exactly the same (the README's "Target schema" table is this file in
//! prose); everything else comes back as the reason it is not carried, for `ferry schema`.
//!
//! Pure: no I/O. The catalog hands defaults over in MariaDB's spelling (an SQL expression with
//! string literals quoted; MySQL's bare values are quoted by the catalog first).

use super::mapping::{ColumnRule, PgType, SourceColumn, ValueKind};
use crate::select::quote_ident;

/// A default as the source declares it, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceDefault {
    /// A quoted string literal, unescaped.
    Text(String),
    /// An unquoted number.
    Number(String),
    /// `b'0101'`.
    Bits(String),
    /// `CURRENT_TIMESTAMP`, `current_timestamp(3)`, `now()`, `localtimestamp`...
    Now,
    /// `curdate()`, `current_date`.
    Today,
    /// Anything else (MariaDB/MySQL 8 expression defaults).
    Expression(String),
}

/// Parses a default in MariaDB's spelling; `None` for no default and `NULL`.
pub fn parse_default(raw: &str) -> Option<SourceDefault> {
    let s = raw.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("null") {
        return None;
    }
    if let Some(body) = s.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')) {
        return Some(SourceDefault::Text(unescape(body)));
    }
    if let Some(body) = s
        .strip_prefix("b'")
        .or_else(|| s.strip_prefix("B'"))
        .and_then(|b| b.strip_suffix('\''))
    {
        if body.chars().all(|c| c == '0' || c == '1') {
            return Some(SourceDefault::Bits(body.to_string()));
        }
    }
    if is_number(s) {
        return Some(SourceDefault::Number(s.to_string()));
    }
    let lower = s.to_ascii_lowercase();
    let call = lower.split('(').next().unwrap_or("").trim();
    let args_ok = match lower.find('(') {
        None => true,
        Some(i) => lower[i..]
            .trim_start_matches('(')
            .trim_end_matches(')')
            .chars()
            .all(|c| c.is_ascii_digit()),
    };
    if args_ok
        && matches!(
            call,
            "current_timestamp" | "now" | "localtimestamp" | "localtime"
        )
    {
        return Some(SourceDefault::Now);
    }
    if args_ok && matches!(call, "curdate" | "current_date") && !lower.contains("(1") {
        return Some(SourceDefault::Today);
    }
    Some(SourceDefault::Expression(s.to_string()))
}

fn unescape(body: &str) -> String {
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('Z') => out.push('\u{1a}'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn is_number(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits = mantissa.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = mantissa.chars().filter(|c| *c == '.').count();
    let mantissa_ok =
        digits > 0 && dots <= 1 && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.');
    let exponent_ok = exponent.map_or(true, |e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// A UUID default as the catalog prints it, in canonical form (32 hex digits, dashes optional).
fn uuid_literal(t: &str) -> Option<String> {
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| {
        let h = hex.to_ascii_lowercase();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    })
}

fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `0000-..`, `..-00-..` or `..-..-00`: a zero or partial-zero date.
fn is_zero_date(s: &str) -> bool {
    s.get(0..4) == Some("0000") || s.get(5..7) == Some("00") || s.get(8..10) == Some("00")
}

/// The PostgreSQL `DEFAULT` expression for a column: `Ok(None)` when it has none, `Err(reason)`
/// when the source's default has no exact PostgreSQL form.
pub fn default_sql(col: &SourceColumn, rule: &ColumnRule) -> Result<Option<String>, String> {
    let Some(raw) = col.default.as_deref() else {
        return Ok(None);
    };
    let Some(d) = parse_default(raw) else {
        return Ok(None);
    };
    let not = |why: &str| Err(format!("default {raw} of column {}: {why}", col.name));
    let number_text = |d: &SourceDefault| match d {
        SourceDefault::Number(n) => Some(n.clone()),
        SourceDefault::Text(t) if is_number(t.trim()) => Some(t.trim().to_string()),
        _ => None,
    };
    let sql = match (&rule.kind, &d) {
        (_, SourceDefault::Expression(_)) => {
            return not("an expression without an exact PostgreSQL equivalent")
        }
        (ValueKind::Int { .. } | ValueKind::UInt { .. } | ValueKind::Year, d) => {
            match number_text(d) {
                Some(n) if !n.contains(['.', 'e', 'E']) => n,
                _ => return not("not an integer"),
            }
        }
        (ValueKind::Decimal | ValueKind::Float | ValueKind::Double, d) => match number_text(d) {
            Some(n) => n,
            None => return not("not a number"),
        },
        (ValueKind::Bool, d) => match number_text(d).as_deref() {
            Some("0") => "false".into(),
            Some("1") => "true".into(),
            _ => return not("not 0 or 1 (the column is boolean)"),
        },
        (ValueKind::Text { .. } | ValueKind::Enum { .. } | ValueKind::Set { .. }, d) => match d {
            SourceDefault::Text(t) => pg_literal(t),
            SourceDefault::Number(n) => pg_literal(n),
            _ => return not("not a string"),
        },
        (ValueKind::Date, SourceDefault::Today) => "CURRENT_DATE".into(),
        (ValueKind::Date | ValueKind::DateTime | ValueKind::Timestamp, SourceDefault::Text(t))
            if is_zero_date(t) =>
        {
            return not("a zero date has no PostgreSQL value")
        }
        (ValueKind::Date | ValueKind::DateTime, SourceDefault::Text(t)) => pg_literal(t),
        // The catalog is read in UTC (ferry's sessions), so the literal is a UTC instant.
        (ValueKind::Timestamp, SourceDefault::Text(t)) => pg_literal(&format!("{t}+00")),
        // MySQL: the session's current instant for TIMESTAMP, its wall clock for DATETIME —
        // PostgreSQL's CURRENT_TIMESTAMP and LOCALTIMESTAMP (the session's TimeZone).
        (ValueKind::Timestamp, SourceDefault::Now) => "CURRENT_TIMESTAMP".into(),
        (ValueKind::DateTime, SourceDefault::Now) => "LOCALTIMESTAMP".into(),
        (ValueKind::Time, SourceDefault::Text(t)) => pg_literal(t),
        (ValueKind::Bytes { pad_to }, SourceDefault::Text(t)) => {
            let mut bytes = t.as_bytes().to_vec();
            if let Some(n) = pad_to {
                if bytes.len() > *n {
                    return not("longer than the column");
                }
                bytes.resize(*n, 0);
            }
            format!("'\\x{}'::bytea", hex::encode(bytes))
        }
        (ValueKind::Uuid, SourceDefault::Text(t)) => match uuid_literal(t) {
            Some(u) => format!("{}::uuid", pg_literal(&u)),
            None => return not("not a UUID"),
        },
        (ValueKind::Inet { v6 }, SourceDefault::Text(t)) => {
            let ok = if *v6 {
                t.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                t.parse::<std::net::Ipv4Addr>().is_ok()
            };
            if !ok {
                return not("not an address of the column's family");
            }
            format!("{}::inet", pg_literal(t))
        }
        (ValueKind::Bit { bits }, d) => {
            let value = match d {
                SourceDefault::Bits(b) => u128::from_str_radix(b, 2).ok(),
                SourceDefault::Number(n) => n.parse::<u128>().ok(),
                _ => None,
            };
            match value {
                Some(v) if *bits <= 64 => format!("B'{:0width$b}'", v, width = *bits as usize),
                _ => return not("not a bit value"),
            }
        }
        _ => return not("no PostgreSQL equivalent for this column type"),
    };
    Ok(Some(sql))
}

/// The PostgreSQL expression of an `ON UPDATE CURRENT_TIMESTAMP` column's new value.
pub fn on_update_value(rule: &ColumnRule) -> Option<&'static str> {
    match rule.pg_type {
        PgType::TimestampTz(_) => Some("CURRENT_TIMESTAMP"),
        PgType::Timestamp(_) => Some("LOCALTIMESTAMP"),
        _ => None,
    }
}

/// What a CHECK clause becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckSql {
    /// The PostgreSQL expression (without `CHECK (...)`).
    Carried(String),
    /// MariaDB's `json_valid(col)` on a JSON column: the jsonb type already refuses invalid
    /// documents.
    ByType,
    NotCarried(String),
}

/// Translates a CHECK clause over `columns`. Carried only when every part means the same in
/// PostgreSQL: numeric columns, numbers, comparisons, `+ - *`, AND/OR/NOT, IS [NOT] NULL,
/// IN (...), BETWEEN. String comparisons are not carried (MySQL compares under the column's
/// collation, often case-insensitive), nor division (integer division in PostgreSQL), nor any
/// function.
pub fn check_sql(clause: &str, columns: &[SourceColumn], rules: &[ColumnRule]) -> CheckSql {
    let trimmed = clause.trim();
    if trimmed
        .to_ascii_lowercase()
        .trim_start_matches('(')
        .starts_with("json_valid(")
    {
        return CheckSql::ByType;
    }
    let not = |why: String| CheckSql::NotCarried(format!("CHECK ({trimmed}): {why}"));
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = trimmed.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '`' {
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '`' {
                    if chars.get(i + 1) == Some(&'`') {
                        name.push('`');
                        i += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            i += 1;
            let Some(pos) = columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(&name))
            else {
                return not(format!("unknown column {name}"));
            };
            if !matches!(
                rules[pos].kind,
                ValueKind::Int { .. }
                    | ValueKind::UInt { .. }
                    | ValueKind::Decimal
                    | ValueKind::Float
                    | ValueKind::Double
                    | ValueKind::Year
            ) {
                return not(format!(
                    "column {name} is not numeric (comparisons of its values may differ)"
                ));
            }
            out.push(quote_ident(&rules[pos].target_name));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            if !is_number(&n) {
                return not(format!("unsupported literal {n}"));
            }
            out.push(n);
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i]
                .iter()
                .collect::<String>()
                .to_ascii_uppercase();
            match word.as_str() {
                "AND" | "OR" | "NOT" | "IS" | "NULL" | "IN" | "BETWEEN" => out.push(word),
                _ => {
                    // A bare name is a column (MySQL 8 writes them with backticks, MariaDB
                    // sometimes without); anything else is a function or keyword.
                    let rest = chars[i..].iter().collect::<String>();
                    if rest.trim_start().starts_with('(') {
                        return not(format!("function {word} is not carried"));
                    }
                    return not(format!("{word} is not carried"));
                }
            }
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "<=" | ">=" | "<>" => Some((two.clone(), 2)),
            "!=" => Some(("<>".to_string(), 2)),
            "&&" => Some(("AND".to_string(), 2)),
            "<=>" => None,
            _ => None,
        };
        if chars[i..].iter().take(3).collect::<String>() == "<=>" {
            return not("<=> is not carried".into());
        }
        if let Some((op, len)) = op {
            out.push(op);
            i += len;
            continue;
        }
        match c {
            '=' | '<' | '>' | '+' | '-' | '*' | '(' | ')' | ',' => {
                out.push(c.to_string());
                i += 1;
            }
            '\'' | '"' => return not("string literals are not carried (collations differ)".into()),
            '/' | '%' => {
                return not(format!(
                    "{c} is not carried (PostgreSQL integer arithmetic differs)"
                ))
            }
            other => return not(format!("{other} is not carried")),
        }
    }
    if out.is_empty() {
        return not("empty".into());
    }
    CheckSql::Carried(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{plan_column, TypeOptions};

    fn col(dt: &str, ct: &str, default: Option<&str>) -> (SourceColumn, ColumnRule) {
        let c = SourceColumn {
            name: "c".into(),
            data_type: dt.into(),
            column_type: ct.into(),
            nullable: true,
            unsigned: ct.contains("unsigned"),
            charset: Some("utf8mb4".into()),
            char_max_length: Some(10),
            numeric_precision: Some(10),
            numeric_scale: Some(2),
            datetime_precision: Some(0),
            default: default.map(str::to_string),
            ..Default::default()
        };
        let r = plan_column(&c, &TypeOptions::default()).expect("plans");
        (c, r)
    }

    fn sql(dt: &str, ct: &str, default: &str) -> Result<Option<String>, String> {
        let (c, r) = col(dt, ct, Some(default));
        default_sql(&c, &r)
    }

    #[test]
    fn literals_translate_per_type() {
        assert_eq!(sql("int", "int(11)", "0"), Ok(Some("0".into())));
        assert_eq!(sql("int", "int(11)", "'42'"), Ok(Some("42".into())));
        assert_eq!(
            sql("decimal", "decimal(10,2)", "9.99"),
            Ok(Some("9.99".into()))
        );
        assert_eq!(
            sql("varchar", "varchar(10)", "'it''s'"),
            Ok(Some("'it''s'".into()))
        );
        assert_eq!(
            sql("varchar", "varchar(10)", "'a\\\\b'"),
            Ok(Some("'a\\b'".into()))
        );
        assert_eq!(sql("enum", "enum('G','PG')", "'G'"), Ok(Some("'G'".into())));
        assert_eq!(
            sql("date", "date", "'2006-02-15'"),
            Ok(Some("'2006-02-15'".into()))
        );
        // numeric_precision 10: bit(10), left-padded as MySQL's value is.
        assert_eq!(
            sql("bit", "bit(10)", "b'101'"),
            Ok(Some("B'0000000101'".into()))
        );
        assert_eq!(
            sql("timestamp", "timestamp", "'2020-01-01 00:00:00'"),
            Ok(Some("'2020-01-01 00:00:00+00'".into()))
        );
        assert_eq!(
            sql("uuid", "uuid", "'FFFFFFFF-ffff-ffff-ffff-ffffffffffff'"),
            Ok(Some("'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid".into()))
        );
        assert_eq!(
            sql("inet6", "inet6", "'::1'"),
            Ok(Some("'::1'::inet".into()))
        );
        assert!(sql("inet4", "inet4", "'::1'").is_err());
        assert_eq!(sql("varchar", "varchar(10)", "NULL"), Ok(None));
        let (c, r) = col("int", "int", None);
        assert_eq!(default_sql(&c, &r), Ok(None));
    }

    #[test]
    fn current_timestamp_follows_the_column_kind() {
        assert_eq!(
            sql("timestamp", "timestamp", "current_timestamp()"),
            Ok(Some("CURRENT_TIMESTAMP".into()))
        );
        assert_eq!(
            sql("timestamp", "timestamp(3)", "CURRENT_TIMESTAMP(3)"),
            Ok(Some("CURRENT_TIMESTAMP".into()))
        );
        assert_eq!(
            sql("datetime", "datetime", "current_timestamp()"),
            Ok(Some("LOCALTIMESTAMP".into()))
        );
        assert_eq!(
            sql("date", "date", "curdate()"),
            Ok(Some("CURRENT_DATE".into()))
        );
    }

    #[test]
    fn what_has_no_exact_form_is_refused_with_the_reason() {
        assert!(sql("varchar", "varchar(36)", "uuid()")
            .expect_err("expression")
            .contains("expression"));
        assert!(sql("datetime", "datetime", "'0000-00-00 00:00:00'")
            .expect_err("zero")
            .contains("zero date"));
        assert!(sql("int", "int", "'abc'").is_err());
    }

    #[test]
    fn numeric_checks_are_carried_and_the_rest_explained() {
        let (a, ra) = col("int", "int(11)", None);
        let (mut b, mut rb) = col("varchar", "varchar(10)", None);
        b.name = "name".into();
        rb.target_name = "name".into();
        let cols = [a, b];
        let rules = [ra, rb];
        assert_eq!(
            check_sql("`c` > 0 and `c` <= 100", &cols, &rules),
            CheckSql::Carried("\"c\" > 0 AND \"c\" <= 100".into())
        );
        assert_eq!(
            check_sql("(`c` between 1 and 5 or `c` is null)", &cols, &rules),
            CheckSql::Carried("( \"c\" BETWEEN 1 AND 5 OR \"c\" IS NULL )".into())
        );
        assert_eq!(
            check_sql("`c` in (1,2,3) && `c` != 2", &cols, &rules),
            CheckSql::Carried("\"c\" IN ( 1 , 2 , 3 ) AND \"c\" <> 2".into())
        );
        assert_eq!(
            check_sql("json_valid(`c`)", &cols, &rules),
            CheckSql::ByType
        );
        for refused in [
            "`name` = 'x'",
            "`c` / 2 > 1",
            "char_length(`name`) > 2",
            "`c` <=> 1",
        ] {
            assert!(
                matches!(check_sql(refused, &cols, &rules), CheckSql::NotCarried(_)),
                "{refused}"
            );
        }
    }
}
