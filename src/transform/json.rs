//! JSON values: MySQL binary JSON → JSON text for `jsonb`, MySQL partial JSON updates applied
//! to the before image, and MariaDB's JSON text checked.
//!
//! Guarantees: numbers keep every digit (DECIMAL scalars stay numbers, not strings; 64-bit
//! integers are never squeezed through f64); opaque scalars are written exactly as MySQL's own
//! `JSON_EXTRACT` prints them (dates `YYYY-MM-DD`, datetimes and times with six fractional
//! digits, other opaque values as `base64:typeN:…`); a string holding U+0000, which `jsonb`
//! cannot store, is a problem, not a silent edit. A partial update whose path does not resolve in
//! the before image is a problem (the images disagree), never a guess.

use std::fmt::Write;

use mysql_common::binlog::jsonb::{self, JsonContainer, JsonDom, JsonNumber, JsonScalar};
use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use serde_json::Value as Json;

use super::{ProblemKind, ValueProblem};

fn unexpected(detail: impl Into<String>) -> ValueProblem {
    ValueProblem::new(ProblemKind::Unexpected, detail)
}

fn nul() -> ValueProblem {
    ValueProblem::new(
        ProblemKind::NulInText,
        "JSON string contains U+0000, which PostgreSQL jsonb cannot store",
    )
}

/// MySQL binary JSON → JSON text.
pub fn jsonb_to_text(value: &jsonb::Value<'_>) -> Result<String, ValueProblem> {
    let dom = value
        .clone()
        .parse()
        .map_err(|e| unexpected(format!("undecodable binary JSON: {e}")))?;
    let mut out = String::new();
    write_dom(&dom, &mut out)?;
    Ok(out)
}

fn write_dom(dom: &JsonDom, out: &mut String) -> Result<(), ValueProblem> {
    match dom {
        JsonDom::Container(JsonContainer::Array(items)) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_dom(item, out)?;
            }
            out.push(']');
        }
        JsonDom::Container(JsonContainer::Object(map)) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out)?;
                out.push_str(": ");
                write_dom(v, out)?;
            }
            out.push('}');
        }
        JsonDom::Scalar(s) => match s {
            JsonScalar::Null => out.push_str("null"),
            JsonScalar::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            JsonScalar::String(s) => write_string(s, out)?,
            JsonScalar::Number(JsonNumber::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            JsonScalar::Number(JsonNumber::Uint(u)) => {
                let _ = write!(out, "{u}");
            }
            JsonScalar::Number(JsonNumber::Double(d)) => {
                if !d.is_finite() {
                    return Err(unexpected("non-finite double in JSON"));
                }
                let _ = write!(out, "{d:?}");
            }
            JsonScalar::Number(JsonNumber::Decimal(d)) => {
                let _ = write!(out, "{d}");
            }
            JsonScalar::DateTime(t) => write_string(&format!("{t:.6}"), out)?,
            JsonScalar::Opaque(o) => write_string(&o.to_string(), out)?,
        },
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) -> Result<(), ValueProblem> {
    if s.contains('\0') {
        return Err(nul());
    }
    out.push_str(&serde_json::to_string(s).map_err(|e| unexpected(e.to_string()))?);
    Ok(())
}

/// Checks JSON text (MariaDB stores JSON as text, validated by its `json_valid` check).
///
/// Fast path: text without a backslash cannot hold an escaped U+0000 (a raw NUL is caught by
/// the charset decoder) and is only checked for well-formedness by a non-allocating pass.
pub fn check_json_text(text: &str) -> Result<(), ValueProblem> {
    if !text.contains('\\') {
        return serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map(|_| ())
            .map_err(|e| {
                ValueProblem::new(ProblemKind::InvalidText, format!("invalid JSON: {e}"))
            });
    }
    let v: Json = serde_json::from_str(text)
        .map_err(|e| ValueProblem::new(ProblemKind::InvalidText, format!("invalid JSON: {e}")))?;
    if contains_nul(&v) {
        return Err(nul());
    }
    Ok(())
}

fn contains_nul(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains('\0'),
        Json::Array(a) => a.iter().any(contains_nul),
        Json::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Applies MySQL partial-update diffs (`binlog_row_value_options=PARTIAL_JSON`) to the before
/// image's JSON text, giving the after image's JSON text.
pub fn apply_diffs(before: &str, diffs: &[JsonDiff<'_>]) -> Result<String, ValueProblem> {
    let mut doc: Json = serde_json::from_str(before)
        .map_err(|e| unexpected(format!("before image is not JSON: {e}")))?;
    for diff in diffs {
        let path = parse_path(&diff.path_str())?;
        let value = match diff.value() {
            Some(v) => Some(
                serde_json::from_str::<Json>(&jsonb_to_text(v)?)
                    .map_err(|e| unexpected(e.to_string()))?,
            ),
            None => None,
        };
        apply_one(&mut doc, &path, diff.operation(), value)?;
    }
    if contains_nul(&doc) {
        return Err(nul());
    }
    serde_json::to_string(&doc).map_err(|e| unexpected(e.to_string()))
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses MySQL JSON paths as the server writes them in diffs: `$`, `.key`, `."quoted key"`,
/// `[n]`.
fn parse_path(path: &str) -> Result<Vec<Step>, ValueProblem> {
    let bad = || unexpected(format!("unsupported JSON path {path:?} in partial update"));
    let rest = path.trim().strip_prefix('$').ok_or_else(bad)?;
    let chars: Vec<char> = rest.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'"') {
                    let mut key = String::new();
                    i += 1;
                    loop {
                        match chars.get(i) {
                            Some('\\') => {
                                key.push(*chars.get(i + 1).ok_or_else(bad)?);
                                i += 2;
                            }
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some(c) => {
                                key.push(*c);
                                i += 1;
                            }
                            None => return Err(bad()),
                        }
                    }
                    steps.push(Step::Key(key));
                } else {
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    if start == i {
                        return Err(bad());
                    }
                    steps.push(Step::Key(chars[start..i].iter().collect()));
                }
            }
            '[' => {
                let start = i + 1;
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                let n: String = chars.get(start..i).ok_or_else(bad)?.iter().collect();
                steps.push(Step::Index(n.trim().parse().map_err(|_| bad())?));
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => return Err(bad()),
        }
    }
    Ok(steps)
}

fn apply_one(
    doc: &mut Json,
    path: &[Step],
    op: JsonDiffOperation,
    value: Option<Json>,
) -> Result<(), ValueProblem> {
    let missing = || unexpected("partial JSON update path not found in the before image");
    let Some((last, parents)) = path.split_last() else {
        return match (op, value) {
            (JsonDiffOperation::REPLACE, Some(v)) => {
                *doc = v;
                Ok(())
            }
            _ => Err(unexpected("partial JSON update on the document root")),
        };
    };
    let mut node = doc;
    for step in parents {
        node = match (step, node) {
            (Step::Key(k), Json::Object(m)) => m.get_mut(k).ok_or_else(missing)?,
            (Step::Index(i), Json::Array(a)) => a.get_mut(*i).ok_or_else(missing)?,
            _ => return Err(missing()),
        };
    }
    match (op, last, node) {
        (JsonDiffOperation::REPLACE, Step::Key(k), Json::Object(m)) => {
            let slot = m.get_mut(k).ok_or_else(missing)?;
            *slot = value.ok_or_else(missing)?;
        }
        (JsonDiffOperation::REPLACE, Step::Index(i), Json::Array(a)) => {
            let slot = a.get_mut(*i).ok_or_else(missing)?;
            *slot = value.ok_or_else(missing)?;
        }
        (JsonDiffOperation::INSERT, Step::Key(k), Json::Object(m)) => {
            m.insert(k.clone(), value.ok_or_else(missing)?);
        }
        (JsonDiffOperation::INSERT, Step::Index(i), Json::Array(a)) => {
            let at = (*i).min(a.len());
            a.insert(at, value.ok_or_else(missing)?);
        }
        (JsonDiffOperation::REMOVE, Step::Key(k), Json::Object(m)) => {
            m.shift_remove(k).ok_or_else(missing)?;
        }
        (JsonDiffOperation::REMOVE, Step::Index(i), Json::Array(a)) => {
            if *i >= a.len() {
                return Err(missing());
            }
            a.remove(*i);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("$.a[2].\"b c\"").expect("ok"),
            vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c".into())
            ]
        );
        assert_eq!(parse_path("$").expect("root"), vec![]);
        assert!(parse_path("a.b").is_err());
    }

    #[test]
    fn diff_operations() {
        let mut doc: Json = serde_json::from_str(r#"{"a":[1,2,3],"b":{"c":1}}"#).expect("json");
        apply_one(
            &mut doc,
            &parse_path("$.a[1]").expect("p"),
            JsonDiffOperation::REPLACE,
            Some(Json::from(9)),
        )
        .expect("replace");
        apply_one(
            &mut doc,
            &parse_path("$.b.d").expect("p"),
            JsonDiffOperation::INSERT,
            Some(Json::from("x")),
        )
        .expect("insert");
        apply_one(
            &mut doc,
            &parse_path("$.a[0]").expect("p"),
            JsonDiffOperation::REMOVE,
            None,
        )
        .expect("remove");
        assert_eq!(doc, serde_json::json!({"a":[9,3],"b":{"c":1,"d":"x"}}));
        let err = apply_one(
            &mut doc,
            &parse_path("$.zz").expect("p"),
            JsonDiffOperation::REPLACE,
            Some(Json::Null),
        )
        .expect_err("missing path");
        assert_eq!(err.kind, ProblemKind::Unexpected);
    }

    #[test]
    fn json_text_checks() {
        assert!(check_json_text(r#"{"a": [1, 2.50, "x"]}"#).is_ok());
        assert_eq!(
            check_json_text("{bad").expect_err("invalid").kind,
            ProblemKind::InvalidText
        );
        assert_eq!(
            check_json_text(r#"{"a":"x\u0000y"}"#)
                .expect_err("nul")
                .kind,
            ProblemKind::NulInText
        );
    }

    #[test]
    fn big_numbers_keep_their_digits() {
        let doc: Json =
            serde_json::from_str(r#"{"n":18446744073709551615,"d":0.10000000000000000000001}"#)
                .expect("json");
        let text = serde_json::to_string(&doc).expect("text");
        assert!(text.contains("18446744073709551615"));
        assert!(text.contains("0.10000000000000000000001"), "{text}");
    }
}

/// Hostile input: arbitrary text and arbitrary binary JSON never panic the JSON paths.
#[cfg(test)]
mod hostile_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn json_text_is_checked_or_refused(t in "\\PC{0,40}", raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = check_json_text(&t);
            let _ = check_json_text(&String::from_utf8_lossy(&raw));
        }

        #[test]
        fn partial_update_paths_resolve_or_are_refused(before in "\\PC{0,40}", path in "\\PC{0,16}") {
            let _ = parse_path(&path);
            if let Ok(steps) = parse_path(&path) {
                if let Ok(mut doc) = serde_json::from_str::<Json>(&before) {
                    let _ = apply_one(&mut doc, &steps, JsonDiffOperation::REPLACE, Some(Json::from(1)));
                    let _ = apply_one(&mut doc, &steps, JsonDiffOperation::INSERT, Some(Json::from(1)));
                    let _ = apply_one(&mut doc, &steps, JsonDiffOperation::REMOVE, None);
                }
            }
        }
    }
}
