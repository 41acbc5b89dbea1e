//! The keys the stream applied since the last verification pass that matched, so a cutover's
//! final check reads only the rows that changed — the frozen window does not grow with the
//! database.
//!
//! Guarantees: the keys of a group are written in the same PostgreSQL transaction as the rows
//! and the checkpoint (one row per table per group, the keys as one text array), so after a
//! crash the record is exactly as complete as the applied rows; a TRUNCATE or a table re-copy
//! records the whole table as changed; a verification pass that matched prunes everything
//! before the checkpoint it started at (every change after that point is still recorded, and
//! every change before it was applied before any chunk of the pass was read).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::position::BinlogPosition;
use crate::schema::Table;
use crate::select::quote_ident;
use crate::sink::executor::Op;

/// Recorded key texts of one table; `None`: the whole table changed.
type TableKeys = Option<Vec<Option<String>>>;

/// Keys of the open group, per table.
#[derive(Default)]
pub struct KeyRecorder {
    tables: HashMap<usize, (Arc<Table>, TableKeys)>,
}

/// One key as text: the cell itself for a one-column key, a JSON array for a composite one.
pub(crate) fn key_text(parts: &[&Option<String>]) -> Option<String> {
    if let [one] = parts {
        return (*one).clone();
    }
    Some(
        serde_json::Value::Array(
            parts
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map_or(serde_json::Value::Null, |s| serde_json::json!(s))
                })
                .collect(),
        )
        .to_string(),
    )
}

impl KeyRecorder {
    /// Records the keys of one applied statement (`columns` as the executor sent them: every
    /// column for inserts and upserts, the key columns for deletes).
    pub fn applied(&mut self, table: &Arc<Table>, op: Op, columns: &[Vec<Option<String>>]) {
        if table.key.is_empty() || !table.has_key() {
            // Without a key, a changed row is found by comparing the whole table.
            return self.whole_table(table);
        }
        let entry = self
            .tables
            .entry(Arc::as_ptr(table) as usize)
            .or_insert_with(|| (table.clone(), Some(Vec::new())));
        let Some(keys) = &mut entry.1 else {
            return;
        };
        let key_columns: Vec<&Vec<Option<String>>> = match op {
            Op::Delete => columns.iter().collect(),
            Op::Insert | Op::Upsert => table.key.iter().map(|i| &columns[*i]).collect(),
        };
        if let [one] = key_columns.as_slice() {
            keys.extend(one.iter().cloned());
            return;
        }
        let rows = key_columns.first().map_or(0, |c| c.len());
        for r in 0..rows {
            let parts: Vec<&Option<String>> = key_columns.iter().map(|c| &c[r]).collect();
            keys.push(key_text(&parts));
        }
    }

    /// Every row of `table` may have changed (TRUNCATE, a re-copy's swap).
    pub fn whole_table(&mut self, table: &Arc<Table>) {
        self.tables
            .insert(Arc::as_ptr(table) as usize, (table.clone(), None));
    }

    pub fn clear(&mut self) {
        self.tables.clear();
    }

    /// The statement [`KeyRecorder::write`] runs.
    pub fn insert_sql(schema: &str) -> String {
        format!(
            "INSERT INTO {}.changed_keys (stream, source_table, binlog_file, binlog_offset, keys) \
             VALUES ($1, $2, $3, $4, $5)",
            quote_ident(schema)
        )
    }

    pub fn param_types() -> [Type; 5] {
        [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT_ARRAY,
        ]
    }

    /// Writes the group's keys (inside the group's transaction) and forgets them.
    ///
    /// # Errors
    /// PostgreSQL errors.
    pub async fn write(
        &mut self,
        client: &Client,
        statement: &Statement,
        stream: &str,
        position: &BinlogPosition,
    ) -> Result<(), tokio_postgres::Error> {
        for (_, (table, keys)) in self.tables.drain() {
            client
                .execute(
                    statement,
                    &[
                        &stream,
                        &table.source.to_string(),
                        &position.file,
                        &(position.offset as i64),
                        &keys,
                    ],
                )
                .await?;
        }
        Ok(())
    }
}

/// What changed in one table since a position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changed {
    /// Every row may have changed: the table needs a full check.
    pub whole_table: bool,
    /// Distinct keys (as recorded) when not `whole_table`.
    pub keys: Vec<String>,
}

/// The changes recorded for `stream` after `since` (everything when `None`), by source table.
///
/// # Errors
/// PostgreSQL errors.
pub async fn since(
    client: &Client,
    schema: &str,
    stream: &str,
    since: Option<&BinlogPosition>,
) -> Result<BTreeMap<String, Changed>, tokio_postgres::Error> {
    let (file, offset) = match since {
        Some(p) => (Some(p.file.clone()), Some(p.offset as i64)),
        None => (None, None),
    };
    let s = quote_ident(schema);
    let after = "stream = $1 AND ($2::text IS NULL OR (binlog_file, binlog_offset) >= ($2, $3))";
    let mut out: BTreeMap<String, Changed> = BTreeMap::new();
    for row in client
        .query(
            &format!(
                "SELECT DISTINCT source_table FROM {s}.changed_keys WHERE {after} AND keys IS NULL"
            ),
            &[&stream, &file, &offset],
        )
        .await?
    {
        out.entry(row.get(0)).or_default().whole_table = true;
    }
    let rows = client
        .query(
            &format!(
                "SELECT source_table, k FROM (SELECT DISTINCT source_table, unnest(keys) AS k \
                 FROM {s}.changed_keys WHERE {after} AND keys IS NOT NULL) d"
            ),
            &[&stream, &file, &offset],
        )
        .await?;
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for row in rows {
        let table: String = row.get(0);
        let key: Option<String> = row.get(1);
        let Some(key) = key else { continue };
        let entry = out.entry(table.clone()).or_default();
        if !entry.whole_table && seen.insert((table, key.clone())) {
            entry.keys.push(key);
        }
    }
    for c in out.values_mut() {
        if c.whole_table {
            c.keys.clear();
        }
    }
    Ok(out)
}

/// Forgets the changes recorded before `before` (a matched verification pass started there).
///
/// # Errors
/// PostgreSQL errors.
pub async fn prune(
    client: &impl tokio_postgres::GenericClient,
    schema: &str,
    stream: &str,
    before: &BinlogPosition,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "DELETE FROM {}.changed_keys WHERE stream = $1 AND (binlog_file, binlog_offset) < ($2, $3)",
                quote_ident(schema)
            ),
            &[&stream, &before.file, &(before.offset as i64)],
        )
        .await
}

/// The key parts of a recorded key of `table` (the inverse of the recording).
pub fn parts(table: &Table, key: &str) -> Option<Vec<Option<String>>> {
    if table.key.len() == 1 {
        return Some(vec![Some(key.to_string())]);
    }
    let v: Vec<serde_json::Value> = serde_json::from_str(key).ok()?;
    (v.len() == table.key.len()).then(|| {
        v.into_iter()
            .map(|p| match p {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Index, SourceName};
    use crate::transform::{SourceColumn, TypeOptions};

    fn table(key: Vec<usize>) -> Arc<Table> {
        let col = |n: &str| SourceColumn {
            name: n.into(),
            data_type: "int".into(),
            column_type: "int(11)".into(),
            ..Default::default()
        };
        Arc::new(
            Table::plan(
                SourceName::new("d", "t"),
                "d".into(),
                vec![col("a"), col("b"), col("v")],
                vec![Index {
                    name: "PRIMARY".into(),
                    unique: true,
                    columns: key.into_iter().map(|c| (c, None)).collect(),
                }],
                0,
                &TypeOptions::default(),
            )
            .expect("plans"),
        )
    }

    fn col(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn one_column_keys_are_their_text_and_composite_keys_json() {
        let single = table(vec![0]);
        let composite = table(vec![0, 1]);
        let mut r = KeyRecorder::default();
        r.applied(
            &single,
            Op::Upsert,
            &[col(&["1", "2"]), col(&["x", "y"]), col(&["p", "q"])],
        );
        r.applied(&single, Op::Delete, &[col(&["3"])]);
        r.applied(
            &composite,
            Op::Insert,
            &[col(&["1"]), col(&["7"]), col(&["v"])],
        );
        r.applied(&composite, Op::Delete, &[col(&["2"]), col(&["8"])]);
        let keys = |t: &Arc<Table>| {
            r.tables[&(Arc::as_ptr(t) as usize)]
                .1
                .clone()
                .expect("keys")
        };
        assert_eq!(keys(&single), col(&["1", "2", "3"]));
        assert_eq!(keys(&composite), col(&["[\"1\",\"7\"]", "[\"2\",\"8\"]"]));
        assert_eq!(parts(&composite, "[\"2\",\"8\"]"), Some(col(&["2", "8"])));
        assert_eq!(parts(&single, "3"), Some(col(&["3"])));
        // A truncate makes the whole table changed, whatever was recorded before or after.
        r.whole_table(&single);
        r.applied(&single, Op::Delete, &[col(&["4"])]);
        assert_eq!(r.tables[&(Arc::as_ptr(&single) as usize)].1, None);
        r.clear();
        assert!(r.tables.is_empty());
    }
}
