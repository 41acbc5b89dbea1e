//! Verification of a table identified by its whole row (no primary or unique key): source and
//! target must hold the same rows *as a multiset* — every distinct row as many times on both.
//!
//! There is no key to cut chunks by or to look rows up with, so both sides are read whole and
//! each row's canonical values (the same [`super::normalize`] rules as keyed comparison, JSON
//! and VECTOR columns included) are hashed (SHA-256, first 128 bits) into one count per
//! distinct row: +1 per source row, −1 per target row. Rows never stay in memory: a distinct
//! row costs 24 bytes, whatever its size.
//!
//! Changes in flight are not drift: each round reads the source in a consistent snapshot whose
//! exact binlog position P is known, waits until the stream's checkpoint reaches P, then reads
//! the target. A difference is reported as drift only when the same row is off by the same
//! count in every round ([`ROUNDS`]); one that moves between rounds is *unsettled*. The rows
//! themselves are read again (a third pass over each side) only when something differs, to
//! show them.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};

use super::compare::{DiffKind, RowDiff};
use super::normalize::Canon;
use super::query::{Key, Session, TableSql};
use super::settle::{wait_for_stream, StreamWait, ROUNDS};
use super::VerifyError;
use crate::config::Config;
use crate::source::connect::Flavor;
use crate::source::snapshot;

/// Rows fetched from PostgreSQL per portal round trip.
const PG_PAGE_ROWS: i32 = 2_000;

/// What comparing one whole-row table found.
#[derive(Debug, Default)]
pub struct MultisetScan {
    pub source_rows: u64,
    pub target_rows: u64,
    /// Rows off by the same count in every round (one entry per surplus or missing copy).
    pub diffs: Vec<RowDiff>,
    /// Rows that differed in the last round but not consistently.
    pub unsettled: Vec<RowDiff>,
    /// More differing rows than `max_diffs` were found.
    pub truncated: bool,
    /// How the last wait for the stream went.
    pub wait: Option<StreamWait>,
}

type RowHash = [u8; 16];

fn row_hash<'a>(values: impl Iterator<Item = &'a Canon>) -> RowHash {
    let mut h = Sha256::new();
    for v in values {
        match v {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Reads every source row inside a snapshot; returns its position. `each` gets the row's
/// hash and its canonical values.
async fn scan_source(
    session: &mut Session,
    q: &TableSql,
    flavor: Flavor,
    mut each: impl FnMut(RowHash, Key),
) -> Result<(crate::position::BinlogPosition, u64), VerifyError> {
    let at = snapshot::begin_snapshot(&mut session.my, flavor)
        .await
        .map_err(|e| VerifyError::Source {
            context: format!("opening a snapshot of {}", q.table.source),
            source: match e {
                snapshot::SnapshotError::Mysql(e) => e,
                other => mysql_async::Error::Other(other.to_string().into()),
            },
        })?;
    let mut rows = 0u64;
    {
        let mut result = session
            .my
            .exec_iter(q.my_all_rows_sql(), ())
            .await
            .map_err(q.my_err("reading every row"))?;
        while let Some(row) = result.next().await.map_err(q.my_err("reading every row"))? {
            let values = q.source_row(&row.unwrap()).values;
            let key: Key = values.into_iter().map(|v| v.canon).collect();
            each(row_hash(key.iter()), key);
            rows += 1;
        }
    }
    session
        .my
        .query_drop("COMMIT")
        .await
        .map_err(q.my_err("ending the snapshot"))?;
    Ok((at, rows))
}

/// Reads every target row through a portal (bounded memory).
async fn scan_target(
    session: &mut Session,
    q: &TableSql,
    mut each: impl FnMut(RowHash, Key),
) -> Result<u64, VerifyError> {
    let tx = session
        .pg
        .transaction()
        .await
        .map_err(q.pg_err("reading every row"))?;
    let portal = tx
        .bind(&q.pg_all_rows_sql(), &[])
        .await
        .map_err(q.pg_err("reading every row"))?;
    let mut rows = 0u64;
    loop {
        let page = tx
            .query_portal(&portal, PG_PAGE_ROWS)
            .await
            .map_err(q.pg_err("reading every row"))?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            let key: Key = q.target_row(r, 0).into_iter().map(|v| v.canon).collect();
            each(row_hash(key.iter()), key);
            rows += 1;
        }
    }
    tx.commit().await.map_err(q.pg_err("reading every row"))?;
    Ok(rows)
}

/// Compares one whole-row table (see the module docs).
///
/// # Errors
/// Source or target failures.
pub async fn compare_table(
    session: &mut Session,
    config: &Config,
    q: &TableSql,
    flavor: Flavor,
    settle_timeout: Duration,
    max_diffs: usize,
) -> Result<MultisetScan, VerifyError> {
    let mut out = MultisetScan::default();
    // Per row hash: its count difference (source − target) in every round so far.
    let mut persistent: Option<HashMap<RowHash, i64>> = None;
    let mut last: HashMap<RowHash, i64> = HashMap::new();
    for round in 0..ROUNDS {
        let mut counts: HashMap<RowHash, i64> = HashMap::new();
        let (at, source_rows) = scan_source(session, q, flavor, |h, _| {
            *counts.entry(h).or_default() += 1;
        })
        .await?;
        let wait = wait_for_stream(&session.pg, config, &at, settle_timeout).await?;
        let target_rows = scan_target(session, q, |h, _| {
            *counts.entry(h).or_default() -= 1;
        })
        .await?;
        counts.retain(|_, d| *d != 0);
        out.source_rows = source_rows;
        out.target_rows = target_rows;
        let reached = matches!(wait, StreamWait::Reached { .. });
        out.wait = Some(wait);
        persistent = Some(match persistent {
            None => counts.clone(),
            Some(mut p) => {
                p.retain(|h, d| counts.get(h) == Some(d));
                p
            }
        });
        last = counts;
        // Equal, or nothing more to learn: without a stream to wait for, a second read would
        // show the same.
        if last.is_empty() || !reached || round + 1 == ROUNDS {
            break;
        }
    }
    if last.is_empty() {
        return Ok(out);
    }
    let persistent = persistent.unwrap_or_default();
    // Read the differing rows back to show them.
    let mut shown: HashMap<RowHash, Key> = HashMap::new();
    let wanted = |h: &RowHash| last.contains_key(h);
    scan_source(session, q, flavor, |h, key| {
        if wanted(&h) {
            shown.entry(h).or_insert(key);
        }
    })
    .await?;
    scan_target(session, q, |h, key| {
        if wanted(&h) {
            shown.entry(h).or_insert(key);
        }
    })
    .await?;
    let mut entries: Vec<(RowHash, i64)> = last.into_iter().collect();
    entries.sort();
    for (h, delta) in entries {
        // Not seen on the third read: it changed since; shown as what the hash is.
        let key = shown
            .get(&h)
            .cloned()
            .unwrap_or_else(|| vec![Some(format!("<row changed since: {}>", hex::encode(h)))]);
        let kind = if delta > 0 {
            DiffKind::MissingInTarget
        } else {
            DiffKind::ExtraInTarget
        };
        let into = if persistent.contains_key(&h) {
            &mut out.diffs
        } else {
            &mut out.unsettled
        };
        for _ in 0..delta.unsigned_abs() {
            if into.len() >= max_diffs {
                out.truncated = true;
                break;
            }
            into.push(RowDiff {
                kind,
                key: key.clone(),
                columns: Vec::new(),
                by_checksum: true,
                by_sample: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hashes_tell_null_from_empty_and_field_boundaries() {
        let h = |v: &[Option<&str>]| {
            let owned: Vec<Canon> = v.iter().map(|s| s.map(str::to_string)).collect();
            row_hash(owned.iter())
        };
        assert_ne!(h(&[None]), h(&[Some("")]));
        assert_ne!(h(&[Some("ab"), Some("c")]), h(&[Some("a"), Some("bc")]));
        assert_eq!(h(&[Some("x"), None]), h(&[Some("x"), None]));
    }
}
