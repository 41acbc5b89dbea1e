//! The cutover's final verification: only the rows that changed since the last verification
//! pass that matched are read, on both sides, while the source is frozen — so the frozen window
//! does not grow with the size of the database.
//!
//! Guarantees: with the source frozen and the stream drained there are no changes in flight,
//! so every difference found is real (no settle step is needed); a row is compared value by
//! value exactly as `ferry verify` compares it (ferry's own conversion of the source row
//! against PostgreSQL's text); a table whose changes were not recorded key by key (TRUNCATE, a
//! re-copy, a table without a key, or more changed keys than `max_keys`) gets a full checksum
//! pass instead — correct, only slower, and said so in the plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::changed_keys::{self, Changed};
use crate::config::Config;
use crate::position::BinlogPosition;
use crate::verify::checksum::{self, Pacer, ScanSettings};
use crate::verify::compare::{self, RowDiff};
use crate::verify::normalize;
use crate::verify::query::{Key, Session, TableSql};
use crate::verify::{load_tables, VerifyError};

/// Keys read per statement.
const BATCH: usize = 1000;

/// What the final check did for one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: String,
    /// `keys` (changed rows by key) or `full` (a checksum pass over the table).
    pub method: &'static str,
    pub rows_checked: u64,
    pub differing: Vec<String>,
}

/// The outcome over every table.
#[derive(Debug, Clone, Serialize)]
pub struct FinalCheck {
    pub tables: Vec<TableCheck>,
    pub keys_checked: u64,
    pub seconds: f64,
}

impl FinalCheck {
    pub fn differing_rows(&self) -> usize {
        self.tables.iter().map(|t| t.differing.len()).sum()
    }
}

/// How a table with recorded changes will be checked.
pub fn method(changed: &Changed, max_keys: usize) -> &'static str {
    if changed.whole_table || changed.keys.len() > max_keys {
        "full"
    } else {
        "keys"
    }
}

/// The keys of `table` as verification compares them.
fn canonical_keys(q: &TableSql, recorded: &[String]) -> Vec<Key> {
    let t = &q.table;
    recorded
        .iter()
        .filter_map(|k| changed_keys::parts(t, k))
        .map(|parts| {
            t.key
                .iter()
                .zip(parts)
                .map(|(i, cell)| normalize::canon_source(&t.columns[*i], &cell))
                .collect()
        })
        .collect()
}

fn describe(t: &crate::schema::Table, d: &RowDiff) -> String {
    format!("{} ({})", compare::key_text(t, &d.key), d.kind.label())
}

/// Checks every table with changes recorded after `since` (see the module doc).
///
/// # Errors
/// Database errors on either side.
pub async fn run(
    config: &Config,
    changed: &BTreeMap<String, Changed>,
    max_keys: usize,
) -> Result<FinalCheck, VerifyError> {
    let started = Instant::now();
    let mut session = Session::open(config, true).await?;
    let mut boundary = crate::verify::query::my_conn(config).await?;
    let tables = load_tables(config, &mut boundary, &[]).await?;
    let flavor = crate::verify::query::source_flavor(&mut boundary).await?;
    let mut out = Vec::new();
    let mut keys_checked = 0u64;
    for (t, text) in tables {
        let name = t.source.to_string();
        let Some(c) = changed.get(&name) else {
            continue;
        };
        let q = TableSql::new(Arc::new(t), config.types.clone(), text);
        let method = method(c, max_keys);
        let mut differing = Vec::new();
        let rows_checked;
        if method == "full" && !q.table.has_key() {
            let m = crate::verify::multiset::compare_table(
                &mut session,
                config,
                &q,
                flavor,
                config.verify.settle_timeout,
                config.verify.max_reported_rows,
            )
            .await?;
            rows_checked = m.source_rows;
            differing.extend(m.diffs.iter().map(|d| describe(&q.table, d)));
        } else if method == "full" {
            let settings = ScanSettings {
                chunk_rows: config.verify.chunk_rows,
                leaf_rows: config.verify.leaf_rows,
                max_diffs: config.verify.max_reported_rows,
            };
            let scan = checksum::scan_table(
                &mut boundary,
                std::slice::from_mut(&mut session),
                &q,
                &settings,
                &Pacer::new(None),
                &|_| {},
            )
            .await?;
            rows_checked = scan.source_rows;
            let mut diffs: Vec<&RowDiff> = scan.diffs.values().collect();
            diffs.sort_by(|a, b| compare::key_cmp(&a.key, &b.key));
            differing.extend(diffs.into_iter().map(|d| describe(&q.table, d)));
        } else {
            let keys = canonical_keys(&q, &c.keys);
            rows_checked = keys.len() as u64;
            for batch in keys.chunks(BATCH) {
                let source = q.my_rows_by_key(&mut session.my, batch).await?;
                let target = q.pg_rows_by_key(&session.pg, batch).await?;
                let mut diffs = compare::diff_rows(&q.table, Some(batch), &source, &target);
                diffs.sort_by(|a, b| compare::key_cmp(&a.key, &b.key));
                differing.extend(diffs.iter().map(|d| describe(&q.table, d)));
            }
            keys_checked += rows_checked;
        }
        out.push(TableCheck {
            table: name,
            method,
            rows_checked,
            differing,
        });
    }
    Ok(FinalCheck {
        tables: out,
        keys_checked,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The changes recorded after the last matched pass began (`since`).
///
/// # Errors
/// PostgreSQL errors.
pub async fn changes_since(
    config: &Config,
    client: &tokio_postgres::Client,
    since: Option<&BinlogPosition>,
) -> Result<BTreeMap<String, Changed>, tokio_postgres::Error> {
    changed_keys::since(client, &config.target.ferry_schema, &config.stream, since).await
}
