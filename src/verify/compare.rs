//! Value-by-value comparison of rows read from both sides (pure: no I/O).
//!
//! Guarantees: two rows are equal exactly when every column's canonical value (see `normalize`)
//! is equal; a difference names the row by its key and every differing column with both values
//! as a human reads them; a key present on one side only is a missing or an extra row, never a
//! value difference. Keys order naturally (numbers numerically) so reports are stable.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::normalize::Canon;
use super::query::{Key, SourceRow, TargetRow};
use crate::schema::Table;

/// What kind of difference a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The source has the row, the target does not.
    MissingInTarget,
    /// The target has a row the source does not.
    ExtraInTarget,
    /// Both have the row; some column values differ.
    ValueDiffers,
}

impl DiffKind {
    pub fn label(self) -> &'static str {
        match self {
            DiffKind::MissingInTarget => "missing in target",
            DiffKind::ExtraInTarget => "extra in target",
            DiffKind::ValueDiffers => "value differs",
        }
    }
}

/// One differing column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDiff {
    /// Source column name.
    pub column: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

/// One differing row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDiff {
    pub kind: DiffKind,
    pub key: Key,
    pub columns: Vec<ColumnDiff>,
    /// Found by the checksum and bisection pass.
    pub by_checksum: bool,
    /// Found by the random sample.
    pub by_sample: bool,
}

/// Compares the rows of `keys` (or, with `None`, of every key on either side).
pub fn diff_rows(
    t: &Table,
    keys: Option<&[Key]>,
    source: &HashMap<Key, SourceRow>,
    target: &HashMap<Key, TargetRow>,
) -> Vec<RowDiff> {
    let all: Vec<Key> = match keys {
        Some(k) => k.to_vec(),
        None => {
            let mut seen: HashSet<&Key> = source.keys().collect();
            seen.extend(target.keys());
            seen.into_iter().cloned().collect()
        }
    };
    let mut out = Vec::new();
    for key in all {
        match (source.get(&key), target.get(&key)) {
            (None, None) => {}
            (Some(_), None) => out.push(RowDiff {
                kind: DiffKind::MissingInTarget,
                key,
                columns: Vec::new(),
                by_checksum: false,
                by_sample: false,
            }),
            (None, Some(_)) => out.push(RowDiff {
                kind: DiffKind::ExtraInTarget,
                key,
                columns: Vec::new(),
                by_checksum: false,
                by_sample: false,
            }),
            (Some(s), Some(tr)) => {
                let columns = column_diffs(t, s, tr);
                if !columns.is_empty() {
                    out.push(RowDiff {
                        kind: DiffKind::ValueDiffers,
                        key,
                        columns,
                        by_checksum: false,
                        by_sample: false,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| key_cmp(&a.key, &b.key));
    out
}

/// The differing columns of two rows with the same key.
pub fn column_diffs(t: &Table, s: &SourceRow, tr: &TargetRow) -> Vec<ColumnDiff> {
    s.values
        .iter()
        .zip(tr)
        .enumerate()
        .filter(|(_, (a, b))| a.canon != b.canon)
        .map(|(i, (a, b))| ColumnDiff {
            column: t.columns[i].source_name.clone(),
            source: a.shown.clone(),
            target: b.shown.clone(),
        })
        .collect()
}

/// True when two rows (of the same key, or both absent) are equal.
pub fn same_row(s: Option<&SourceRow>, tr: Option<&TargetRow>) -> bool {
    match (s, tr) {
        (None, None) => true,
        (Some(s), Some(tr)) => s.values.iter().zip(tr).all(|(a, b)| a.canon == b.canon),
        _ => false,
    }
}

/// True when two reads of a source row agree.
pub fn same_source(a: Option<&SourceRow>, b: Option<&SourceRow>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a
            .values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x.canon == y.canon),
        _ => false,
    }
}

/// Keys present on both sides whose out-of-database columns (JSON, VECTOR) differ.
pub fn diff_fetched(
    source: &HashMap<Key, Vec<Canon>>,
    target: &HashMap<Key, Vec<Canon>>,
) -> Vec<Key> {
    source
        .iter()
        .filter(|(k, v)| target.get(*k).is_some_and(|t| t != *v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Natural order of keys: parts that are both integers compare numerically.
pub fn key_cmp(a: &Key, b: &Key) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Some(x), Some(y)) => match (x.parse::<i128>(), y.parse::<i128>()) {
                (Ok(p), Ok(q)) => p.cmp(&q),
                _ => x.cmp(y),
            },
            (x, y) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// `id=5` or `user_id=1, order_no=2` (source column names).
pub fn key_text(t: &Table, key: &Key) -> String {
    t.key
        .iter()
        .zip(key)
        .map(|(i, v)| {
            format!(
                "{}={}",
                t.source_columns[*i].name,
                v.as_deref().unwrap_or("NULL")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key as a JSON object of source column names.
pub fn key_json(t: &Table, key: &Key) -> serde_json::Map<String, serde_json::Value> {
    t.key
        .iter()
        .zip(key)
        .map(|(i, v)| {
            (
                t.source_columns[*i].name.clone(),
                v.clone()
                    .map_or(serde_json::Value::Null, serde_json::Value::String),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Index, SourceName};
    use crate::transform::{SourceColumn, TypeOptions};
    use crate::verify::query::Value;

    fn table() -> Table {
        let col = |n: &str, dt: &str| SourceColumn {
            name: n.into(),
            data_type: dt.into(),
            column_type: dt.into(),
            charset: Some("utf8mb4".into()),
            char_max_length: Some(10),
            ..Default::default()
        };
        Table::plan(
            SourceName::new("d", "t"),
            "d".into(),
            vec![col("id", "int"), col("name", "varchar")],
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plans")
    }

    fn v(s: &str) -> Value {
        Value {
            canon: Some(s.into()),
            shown: Some(s.into()),
        }
    }

    fn src(id: &str, name: &str) -> (Key, SourceRow) {
        (
            vec![Some(id.into())],
            SourceRow {
                values: vec![v(id), v(name)],
                write: Ok(vec![Some(id.into()), Some(name.into())]),
            },
        )
    }

    fn tgt(id: &str, name: &str) -> (Key, TargetRow) {
        (vec![Some(id.into())], vec![v(id), v(name)])
    }

    #[test]
    fn missing_extra_and_changed_rows() {
        let t = table();
        let s: HashMap<Key, SourceRow> = [src("1", "a"), src("2", "b"), src("10", "c")]
            .into_iter()
            .collect();
        let tg: HashMap<Key, TargetRow> = [tgt("1", "a"), tgt("10", "C"), tgt("11", "x")]
            .into_iter()
            .collect();
        let d = diff_rows(&t, None, &s, &tg);
        let got: Vec<(DiffKind, String)> =
            d.iter().map(|r| (r.kind, key_text(&t, &r.key))).collect();
        assert_eq!(
            got,
            vec![
                (DiffKind::MissingInTarget, "id=2".to_string()),
                (DiffKind::ValueDiffers, "id=10".to_string()),
                (DiffKind::ExtraInTarget, "id=11".to_string()),
            ]
        );
        assert_eq!(
            d[1].columns,
            vec![ColumnDiff {
                column: "name".into(),
                source: Some("c".into()),
                target: Some("C".into())
            }]
        );
    }

    #[test]
    fn keys_order_naturally() {
        let mut keys = [vec![Some("10".to_string())], vec![Some("9".to_string())]];
        keys.sort_by(key_cmp);
        assert_eq!(keys[0], vec![Some("9".to_string())]);
    }

    #[test]
    fn fetched_columns_differ_only_where_both_have_the_row() {
        let s: HashMap<Key, Vec<Canon>> = [
            (vec![Some("1".into())], vec![Some("{}".into())]),
            (vec![Some("2".into())], vec![Some("[1]".into())]),
        ]
        .into_iter()
        .collect();
        let t: HashMap<Key, Vec<Canon>> = [(vec![Some("2".into())], vec![Some("[2]".into())])]
            .into_iter()
            .collect();
        assert_eq!(diff_fetched(&s, &t), vec![vec![Some("2".to_string())]]);
    }
}
