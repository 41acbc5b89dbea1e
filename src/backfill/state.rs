//! The backfill's durable state in the target (`ferry.backfill_run`, `ferry.backfill`): the
//! start position P0, the end position, and per table how far the copy got.
//!
//! Guarantees: a table's progress row is updated in the same transaction as the chunk it
//! describes (see `sink::copy::write_chunk`), so it is exactly as far as the committed rows.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::position::BinlogPosition;
use crate::schema::Table;
use crate::select::quote_ident;
use crate::source::snapshot::KeyValue;

/// The stream's backfill as a whole.
#[derive(Debug, Clone)]
pub struct BackfillRun {
    pub start: BinlogPosition,
    pub end: Option<BinlogPosition>,
    pub copied: bool,
    pub unique_built: bool,
}

/// One table's copy.
#[derive(Debug, Clone)]
pub struct TableState {
    pub created_by_ferry: bool,
    pub last_key: Option<Vec<KeyValue>>,
    pub rows_copied: u64,
    pub copied: bool,
    pub indexed: bool,
    pub unique_built: bool,
    /// A table copied whole (no key): the exact binlog position of the snapshot it was read in.
    pub snapshot: Option<BinlogPosition>,
}

pub async fn load_run(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Option<BackfillRun>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT start_file, start_offset, end_file, end_offset, copied, unique_built \
                 FROM {}.backfill_run WHERE stream = $1",
                quote_ident(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(row.map(|r| BackfillRun {
        start: BinlogPosition::new(r.get::<_, String>(0), r.get::<_, i64>(1) as u64),
        end: r
            .get::<_, Option<String>>(2)
            .zip(r.get::<_, Option<i64>>(3))
            .map(|(f, o)| BinlogPosition::new(f, o as u64)),
        copied: r.get(4),
        unique_built: r.get(5),
    }))
}

/// Records a new backfill: P0 and one row per table.
pub async fn start_run(
    client: &Client,
    schema: &str,
    stream: &str,
    start: &BinlogPosition,
    tables: &[(&Table, bool)],
) -> Result<BackfillRun, tokio_postgres::Error> {
    let s = quote_ident(schema);
    client
        .execute(
            &format!(
                "INSERT INTO {s}.backfill_run (stream, start_file, start_offset) VALUES ($1, $2, $3) \
                 ON CONFLICT (stream) DO UPDATE SET start_file = EXCLUDED.start_file, \
                 start_offset = EXCLUDED.start_offset, end_file = NULL, end_offset = NULL, \
                 copied = false, unique_built = false, started_at = clock_timestamp(), finished_at = NULL"
            ),
            &[&stream, &start.file, &(start.offset as i64)],
        )
        .await?;
    for (t, created) in tables {
        client
            .execute(
                &format!(
                    "INSERT INTO {s}.backfill (stream, source_table, created_by_ferry) VALUES ($1, $2, $3) \
                     ON CONFLICT (stream, source_table) DO UPDATE SET created_by_ferry = EXCLUDED.created_by_ferry, \
                     last_key = NULL, rows_copied = 0, copied = false, indexed = false, updated_at = NULL, \
                     snapshot_file = NULL, snapshot_offset = NULL"
                ),
                &[&stream, &t.source.to_string(), created],
            )
            .await?;
    }
    Ok(BackfillRun {
        start: start.clone(),
        end: None,
        copied: false,
        unique_built: false,
    })
}

pub async fn load_tables(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<HashMap<String, TableState>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT b.source_table, b.created_by_ferry, b.last_key::text, b.rows_copied, b.copied, \
                 b.indexed, COALESCE(r.unique_built, false), b.snapshot_file, b.snapshot_offset \
                 FROM {s}.backfill b LEFT JOIN {s}.backfill_run r USING (stream) WHERE b.stream = $1",
                s = quote_ident(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: Option<String> = r.get(2);
            (
                r.get::<_, String>(0),
                TableState {
                    created_by_ferry: r.get(1),
                    last_key: key.and_then(|k| serde_json::from_str(&k).ok()),
                    rows_copied: r.get::<_, i64>(3) as u64,
                    copied: r.get(4),
                    indexed: r.get(5),
                    unique_built: r.get(6),
                    snapshot: r
                        .get::<_, Option<String>>(7)
                        .zip(r.get::<_, Option<i64>>(8))
                        .map(|(f, o)| BinlogPosition::new(f, o as u64)),
                },
            )
        })
        .collect())
}

/// The statement recording a chunk (params: stream, table, last key JSON, rows in chunk).
pub fn progress_sql(schema: &str) -> String {
    format!(
        "UPDATE {}.backfill SET last_key = $3::text::jsonb, rows_copied = rows_copied + $4::bigint, \
         updated_at = clock_timestamp() WHERE stream = $1 AND source_table = $2",
        quote_ident(schema)
    )
}

pub async fn mark_copied(
    client: &Client,
    schema: &str,
    stream: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.backfill SET copied = true, updated_at = clock_timestamp() \
                 WHERE stream = $1 AND source_table = $2",
                quote_ident(schema)
            ),
            &[&stream, &table],
        )
        .await
        .map(|_| ())
}

pub async fn mark_indexed(
    client: &Client,
    schema: &str,
    stream: &str,
    table: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.backfill SET indexed = true WHERE stream = $1 AND source_table = $2",
                quote_ident(schema)
            ),
            &[&stream, &table],
        )
        .await
        .map(|_| ())
}

pub async fn finish_run(
    client: &Client,
    schema: &str,
    stream: &str,
    end: &BinlogPosition,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.backfill_run SET end_file = $2, end_offset = $3, copied = true, \
                 finished_at = clock_timestamp() WHERE stream = $1",
                quote_ident(schema)
            ),
            &[&stream, &end.file, &(end.offset as i64)],
        )
        .await
        .map(|_| ())
}

pub async fn mark_unique_built(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.backfill_run SET unique_built = true WHERE stream = $1",
                quote_ident(schema)
            ),
            &[&stream],
        )
        .await
        .map(|_| ())
}

/// Empties a table copied whole whose copy did not finish, and its progress, in one
/// transaction: a whole copy is one snapshot, so it starts over rather than resuming.
pub async fn restart_whole_copy(
    client: &mut Client,
    schema: &str,
    stream: &str,
    table: &Table,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("TRUNCATE {}", table.target_quoted))
        .await?;
    tx.execute(
        &format!(
            "UPDATE {}.backfill SET last_key = NULL, rows_copied = 0, snapshot_file = NULL, \
             snapshot_offset = NULL, updated_at = clock_timestamp() WHERE stream = $1 AND source_table = $2",
            quote_ident(schema)
        ),
        &[&stream, &table.source.to_string()],
    )
    .await?;
    tx.commit().await
}

/// Records a table copied whole, with the position of the snapshot its rows were read in.
pub async fn mark_copied_whole(
    client: &Client,
    schema: &str,
    stream: &str,
    table: &str,
    snapshot: &BinlogPosition,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.backfill SET copied = true, snapshot_file = $3, snapshot_offset = $4, \
                 updated_at = clock_timestamp() WHERE stream = $1 AND source_table = $2",
                quote_ident(schema)
            ),
            &[&stream, &table, &snapshot.file, &(snapshot.offset as i64)],
        )
        .await
        .map(|_| ())
}

/// The snapshot positions of the stream's tables copied whole, by source table (`db.table`):
/// the stream skips those tables' changes up to them.
pub async fn whole_copy_snapshots(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<HashMap<String, BinlogPosition>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT source_table, snapshot_file, snapshot_offset FROM {}.backfill \
                 WHERE stream = $1 AND copied AND snapshot_file IS NOT NULL",
                quote_ident(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                BinlogPosition::new(r.get::<_, String>(1), r.get::<_, i64>(2) as u64),
            )
        })
        .collect())
}
