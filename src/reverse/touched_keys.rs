//! The keys the reverse stream changed on MySQL since the switch, kept on MySQL in
//! `ferry.reverse_changed`, so `ferry rollback` compares exactly those rows on both sides while
//! both are frozen — the cutover's final check proved the rest equal at the switch, and nothing
//! but the reverse stream writes MySQL while PostgreSQL is primary.
//!
//! Guarantees: a group's keys are written in the MySQL transaction that applies the group and
//! its checkpoint, so after a crash the record is exactly as complete as the applied rows. Keys
//! are PostgreSQL's text of the key columns (the form the forward stream's record uses); a
//! table without a key, a TRUNCATE, a transaction with more than
//! [`super::assemble::MAX_TOUCHED_KEYS`] keys or a table past [`MAX_KEYS_PER_TABLE`] recorded
//! keys is recorded whole (checked by a full pass) — the record only ever says more than what
//! changed, never less. It is cleared when the rollback finishes and by `ferry complete`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::apply::CHECKPOINT_DATABASE;
use super::assemble::Touched;
use crate::migration::changed_keys::Changed;

/// Keys recorded per table; past this the table is recorded whole (storage stays bounded).
pub const MAX_KEYS_PER_TABLE: u64 = 1_000_000;

/// The table's DDL (idempotent).
#[must_use]
pub fn create_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{CHECKPOINT_DATABASE}`.`reverse_changed` (\
           id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
           stream VARCHAR(255) NOT NULL, \
           tbl VARCHAR(512) NOT NULL COMMENT 'source table, db.table', \
           whole BOOL NOT NULL COMMENT 'every row may have changed', \
           key_count INT UNSIGNED NOT NULL, \
           keys_json LONGTEXT NOT NULL COMMENT 'JSON array of PostgreSQL key texts', \
           KEY (stream, tbl)\
         ) ENGINE=InnoDB"
    )
}

/// How many keys each table has recorded (`u64::MAX`: recorded whole).
#[derive(Debug, Default)]
pub struct Recorder {
    counts: HashMap<String, u64>,
}

impl Recorder {
    /// The counts recorded so far for `stream`.
    ///
    /// # Errors
    /// MySQL errors.
    pub async fn load(conn: &mut Conn, stream: &str) -> Result<Recorder, mysql_async::Error> {
        let rows: Vec<(String, i64, u64)> = conn
            .exec(
                format!(
                    "SELECT tbl, MAX(whole), CAST(SUM(key_count) AS UNSIGNED) \
                     FROM `{CHECKPOINT_DATABASE}`.`reverse_changed` WHERE stream = ? GROUP BY tbl"
                ),
                (stream,),
            )
            .await?;
        Ok(Recorder {
            counts: rows
                .into_iter()
                .map(|(t, whole, n)| (t, if whole > 0 { u64::MAX } else { n }))
                .collect(),
        })
    }

    /// The INSERT recording `touched` (None: nothing new to record). The counts move on at
    /// once: if the transaction then rolls back, a table may be recorded whole sooner, which
    /// only makes the check fuller.
    pub fn sql<'a>(
        &mut self,
        stream: &str,
        touched: impl Iterator<Item = &'a Touched>,
    ) -> Option<String> {
        let mut tables: BTreeMap<String, Option<BTreeSet<&'a str>>> = BTreeMap::new();
        for t in touched {
            let name = t.table.source.to_string();
            let entry = tables.entry(name).or_insert_with(|| Some(BTreeSet::new()));
            match (&t.key, entry.as_mut()) {
                (Some(k), Some(keys)) => {
                    keys.insert(k.as_str());
                }
                (None, _) => *entry = None,
                (Some(_), None) => {}
            }
        }
        let mut values = Vec::new();
        for (table, keys) in tables {
            let count = self.counts.entry(table.clone()).or_insert(0);
            if *count == u64::MAX {
                continue;
            }
            let keys = keys.filter(|k| *count + k.len() as u64 <= MAX_KEYS_PER_TABLE);
            let (whole, n, json) = match keys {
                Some(k) => {
                    *count += k.len() as u64;
                    let n = k.len();
                    (
                        0,
                        n,
                        serde_json::to_string(&k.into_iter().collect::<Vec<_>>()),
                    )
                }
                None => {
                    *count = u64::MAX;
                    (1, 0, Ok("[]".to_string()))
                }
            };
            let json = json.unwrap_or_else(|_| "[]".into());
            values.push(format!(
                "({}, {}, {whole}, {n}, {})",
                literal(stream),
                literal(&table),
                literal(&json)
            ));
        }
        (!values.is_empty()).then(|| {
            format!(
                "INSERT INTO `{CHECKPOINT_DATABASE}`.`reverse_changed` \
                 (stream, tbl, whole, key_count, keys_json) VALUES {}",
                values.join(", ")
            )
        })
    }
}

/// Every key recorded for `stream`, by source table (`db.table`).
///
/// # Errors
/// MySQL errors (a missing table means nothing was recorded).
pub async fn changed(
    conn: &mut Conn,
    stream: &str,
) -> Result<BTreeMap<String, Changed>, mysql_async::Error> {
    conn.query_drop(create_sql()).await?;
    let rows: Vec<(String, i64, String)> = conn
        .exec(
            format!(
                "SELECT tbl, whole, keys_json FROM `{CHECKPOINT_DATABASE}`.`reverse_changed` \
                 WHERE stream = ? ORDER BY id"
            ),
            (stream,),
        )
        .await?;
    let mut sets: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for (table, whole, json) in rows {
        let entry = sets.entry(table).or_insert_with(|| Some(BTreeSet::new()));
        let keys: Option<Vec<String>> = serde_json::from_str(&json).ok();
        match (whole > 0, keys, entry.as_mut()) {
            (false, Some(k), Some(set)) => set.extend(k),
            (false, Some(_), None) => {}
            // Whole, or a record ferry cannot read: check the whole table.
            _ => *entry = None,
        }
    }
    Ok(sets
        .into_iter()
        .map(|(table, keys)| {
            let changed = match keys {
                Some(k) => Changed {
                    whole_table: false,
                    keys: k.into_iter().collect(),
                },
                None => Changed {
                    whole_table: true,
                    keys: Vec::new(),
                },
            };
            (table, changed)
        })
        .collect())
}

/// Forgets what was recorded for `stream`.
///
/// # Errors
/// MySQL errors.
pub async fn clear(conn: &mut Conn, stream: &str) -> Result<(), mysql_async::Error> {
    conn.query_drop(create_sql()).await?;
    conn.exec_drop(
        format!("DELETE FROM `{CHECKPOINT_DATABASE}`.`reverse_changed` WHERE stream = ?"),
        (stream,),
    )
    .await
}

fn literal(s: &str) -> String {
    super::apply::text_literal(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(name: &str) -> Arc<crate::schema::Table> {
        Arc::new(crate::schema::Table {
            source: crate::schema::SourceName::new("d", name),
            target_schema: "d".into(),
            target_name: name.into(),
            target_quoted: format!("\"d\".\"{name}\""),
            source_columns: Vec::new(),
            columns: Vec::new(),
            key: vec![0],
            key_source: crate::schema::KeySource::PrimaryKey,
            indexes: Vec::new(),
            estimated_rows: 0,
            comment: String::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
        })
    }

    fn touched(t: &Arc<crate::schema::Table>, key: Option<&str>) -> Touched {
        Touched {
            table: t.clone(),
            key: key.map(str::to_string),
        }
    }

    #[test]
    fn keys_are_deduplicated_and_a_whole_table_wins() {
        let (a, b) = (table("a"), table("b"));
        let mut r = Recorder::default();
        let group = [
            touched(&a, Some("1")),
            touched(&a, Some("it's")),
            touched(&a, Some("1")),
            touched(&b, Some("7")),
            touched(&b, None),
            touched(&b, Some("8")),
        ];
        let sql = r.sql("s", group.iter()).expect("something to record");
        assert!(
            sql.contains(r#"(_utf8mb4's', _utf8mb4'd.a', 0, 2, _utf8mb4'["1","it\'s"]')"#),
            "{sql}"
        );
        assert!(
            sql.contains("(_utf8mb4's', _utf8mb4'd.b', 1, 0, _utf8mb4'[]')"),
            "{sql}"
        );
        // b is whole from now on: nothing more is recorded for it.
        assert_eq!(r.sql("s", [touched(&b, Some("9"))].iter()), None);
        assert_eq!(r.counts["d.a"], 2);
    }

    #[test]
    fn a_table_past_the_bound_is_recorded_whole() {
        let a = table("a");
        let mut r = Recorder::default();
        r.counts.insert("d.a".into(), MAX_KEYS_PER_TABLE);
        let sql = r.sql("s", [touched(&a, Some("1"))].iter()).expect("whole");
        assert!(sql.contains("_utf8mb4'd.a', 1, 0"), "{sql}");
        assert_eq!(r.counts["d.a"], u64::MAX);
    }
}
