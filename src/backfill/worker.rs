//! Copies one table: a reader task pages through the source in key order and converts each chunk
//! to `COPY` text (the CPU work), while the writer loads the previous chunk into PostgreSQL with
//! its progress record in the same transaction.
//!
//! Memory follows the budgets, not the data: a chunk holds at most `backfill.chunk_rows` rows
//! and `backfill.chunk_bytes` bytes of values (or one larger row), its COPY text is cut into
//! frames of [`COPY_FRAME_BYTES`] (PostgreSQL never receives one giant message), and a row whose
//! text form PostgreSQL cannot take stops the copy with a definite error naming table, column,
//! key and size (see [`crate::transform::size`]).
//!
//! Guarantees: chunks are written in key order, each exactly once (see `state`); values go
//! through the same `transform` rules as streaming, with the same policies (refuse stops with
//! table, column, key and fix; substitutes are counted; dead-lettered rows are kept in
//! `ferry.dead_letter` and not copied); the pause and stop flags are honoured between chunks; the
//! rate limit is shared by all tables.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mysql_async::Row;
use tokio::sync::{mpsc, watch, Mutex};
use tokio_postgres::types::ToSql;

use super::state::{self, TableState};
use super::{BackfillError, Tracker};
use crate::config::Config;
use crate::metrics as m;
use crate::schema::Table;
use crate::select::quote_ident;
use crate::sink::connect as pg;
use crate::sink::copy::{copy_sql, encode_row, write_chunk};
use crate::source::binlog::ReaderControl;
use crate::source::connect;
use crate::source::snapshot::{ChunkReader, KeyValue};
use crate::transform::{self, convert, resolve, size, Resolution, SourceValue};

/// Largest COPY data message the writer sends; a chunk (or one large row) is cut into frames of
/// this size, so no message nears the protocol's 1 GiB limit and the driver never buffers one.
pub const COPY_FRAME_BYTES: usize = 1 << 20;

/// Shared rows-per-second limit (a simple pacing clock; 0 = unlimited).
pub struct RateLimiter {
    per_second: u64,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `rows` more rows may be written.
    pub async fn take(&self, rows: u64) {
        if self.per_second == 0 {
            return;
        }
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(rows as f64 / self.per_second as f64);
            start.saturating_duration_since(now)
        };
        tokio::time::sleep(wait).await;
    }
}

/// One converted chunk ready for `COPY`.
struct Encoded {
    /// COPY text in frames of at most [`COPY_FRAME_BYTES`].
    frames: Vec<Bytes>,
    rows: u64,
    /// Key of the chunk's last row (`None` for a table copied whole, which has no key).
    last_key: Option<Vec<KeyValue>>,
    /// Dead-lettered rows (JSON objects) of this chunk.
    dead: Vec<serde_json::Value>,
}

fn table_err(table: &Table, message: impl Into<String>) -> BackfillError {
    BackfillError::Table {
        table: table.source.to_string(),
        message: message.into(),
    }
}

/// Converts one row; problems follow the configured policies. `None`: the row was set aside
/// under the dead-letter policy (returned separately by [`encode`]; counted here).
pub fn convert_row(
    config: &Config,
    table: &Table,
    row: &Row,
) -> Result<Option<Vec<transform::Cell>>, BackfillError> {
    Ok(match convert_row_or_dead(config, table, row)? {
        Ok(cells) => Some(cells),
        Err(dead) => {
            tracing::warn!(table = %table.source, column = %dead["column_name"], kind = %dead["kind"], "row set aside under the dead-letter policy during a re-copy (not copied)");
            None
        }
    })
}

/// Cells of one row, or the dead-letter record of a row set aside.
fn convert_row_or_dead(
    config: &Config,
    table: &Table,
    row: &Row,
) -> Result<Result<Vec<transform::Cell>, serde_json::Value>, BackfillError> {
    let mut cells = Vec::with_capacity(table.columns.len());
    for (i, rule) in table.columns.iter().enumerate() {
        let value = row.as_ref(i).unwrap_or(&mysql_async::Value::NULL);
        match convert(rule, SourceValue::Query(value)) {
            Ok(cell) => cells.push(cell),
            Err(problem) => {
                let nullable = rule.nullable && !table.is_key_column(i);
                match resolve(&config.types, &problem, nullable) {
                    Resolution::Substitute(cell) => {
                        m::substituted(problem.kind.label(), 1);
                        cells.push(cell);
                    }
                    Resolution::DeadLetter => {
                        m::dead_letter(&table.target_name, problem.kind.label());
                        return Ok(Err(serde_json::json!({
                            "source_table": table.source.to_string(),
                            "column_name": rule.source_name,
                            "kind": problem.kind.label(),
                            "reason": problem.detail,
                            "row_image": row_json(table, row),
                        })));
                    }
                    Resolution::Refuse => {
                        let key = key_text(table, row);
                        return Err(table_err(
                            table,
                            format!(
                                "column `{}` of the row with key ({}) = ({}): {problem}. Fix: {}",
                                rule.source_name,
                                table.key_names().join(", "),
                                key,
                                transform::suggested_fix(problem.kind)
                            ),
                        ));
                    }
                }
            }
        }
    }
    size::check_row(&cells).map_err(|over| oversize_err(table, row, &over))?;
    Ok(Ok(cells))
}

/// The key of a source row as SQL literals (for messages).
fn key_text(table: &Table, row: &Row) -> String {
    let key: Vec<String> = table
        .key
        .iter()
        .map(|k| row.as_ref(*k).map(|v| v.as_sql(false)).unwrap_or_default())
        .collect();
    key.join(", ")
}

fn oversize_err(table: &Table, row: &Row, over: &size::Oversize) -> BackfillError {
    let column = table
        .columns
        .get(over.column)
        .map_or("?", |c| c.source_name.as_str());
    table_err(
        table,
        over.describe(column, &table.key_names().join(", "), &key_text(table, row)),
    )
}

/// Converts a chunk's rows to `COPY` text frames; problems follow the configured policies.
/// Each source row is dropped once converted, so the chunk is not held twice.
pub(crate) fn encode(
    config: &Config,
    table: &Table,
    rows: Vec<Row>,
) -> Result<(Vec<Bytes>, u64, Vec<serde_json::Value>), BackfillError> {
    let mut buf = BytesMut::with_capacity((rows.len() * 128).min(COPY_FRAME_BYTES));
    let mut frames = Vec::new();
    let mut copied = 0;
    let mut dead = Vec::new();
    for row in rows {
        match convert_row_or_dead(config, table, &row)? {
            Ok(cells) => {
                let before = buf.len();
                encode_row(&mut buf, &cells);
                // COPY's escapes can make the line longer than the cells.
                size::check_row_bytes(&cells, buf.len() - before)
                    .map_err(|over| oversize_err(table, &row, &over))?;
                copied += 1;
                while buf.len() >= COPY_FRAME_BYTES {
                    frames.push(buf.split_to(COPY_FRAME_BYTES).freeze());
                }
            }
            Err(record) => dead.push(record),
        }
    }
    if !buf.is_empty() {
        frames.push(buf.freeze());
    }
    Ok((frames, copied, dead))
}

fn row_json(table: &Table, row: &Row) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (i, col) in table.source_columns.iter().enumerate() {
        let v = match row.as_ref(i) {
            None | Some(mysql_async::Value::NULL) => serde_json::Value::Null,
            Some(mysql_async::Value::Bytes(b)) => match std::str::from_utf8(b) {
                Ok(s) if !s.contains('\0') => serde_json::json!(s),
                _ => serde_json::json!({ "hex": hex::encode(b) }),
            },
            Some(other) => serde_json::json!(other.as_sql(false)),
        };
        map.insert(col.name.clone(), v);
    }
    serde_json::Value::Object(map)
}

pub(crate) async fn wait_while_paused(control: &mut watch::Receiver<ReaderControl>) -> bool {
    loop {
        let c = *control.borrow();
        if c.stop {
            return false;
        }
        if !c.paused {
            return true;
        }
        if control.changed().await.is_err() {
            return false;
        }
    }
}

/// Copies `table` from where `st` left off.
///
/// # Errors
/// Source/target failures and refused values.
pub async fn copy_table(
    config: &Config,
    table: &Table,
    st: TableState,
    tracker: &Tracker,
    limiter: &RateLimiter,
    control: watch::Receiver<ReaderControl>,
) -> Result<(), BackfillError> {
    let name = table.source.to_string();
    let schema = config.target.ferry_schema.clone();
    let started = Instant::now();
    let conn = connect::connect(&config.source).await?;
    let mut reader = ChunkReader::new(
        conn,
        table,
        config.backfill.chunk_rows,
        config.backfill.chunk_bytes,
    )
    .await
    .map_err(BackfillError::snapshot(format!(
        "table {name}: preparing the chunk reads"
    )))?;
    let mut client = copy_session(config, &name).await?;
    // Three stages so the source query, the conversion and the target COPY overlap: the
    // reader fetches the next chunk while the encoder converts this one and the writer loads
    // the previous one.
    let (raw_tx, raw_rx) = mpsc::channel::<(Vec<Row>, Option<Vec<KeyValue>>)>(1);
    let read_table = table.clone();
    let mut read_control = control.clone();
    let mut last_key = st.last_key.clone();
    let read_task = tokio::spawn(async move {
        loop {
            if !wait_while_paused(&mut read_control).await {
                return Ok::<(), BackfillError>(());
            }
            let chunk = reader
                .read(last_key.as_deref())
                .await
                .map_err(BackfillError::snapshot(format!(
                    "table {}: reading a chunk",
                    read_table.source
                )))?;
            let Some(key) = chunk.last_key else {
                return Ok(());
            };
            last_key = Some(key.clone());
            if raw_tx.send((chunk.rows, Some(key))).await.is_err() {
                return Ok(());
            }
        }
    });
    let loaded = load_chunks(
        config,
        table,
        &mut client,
        raw_rx,
        st.rows_copied,
        tracker,
        limiter,
    )
    .await;
    let copied = match loaded {
        Ok(n) => n,
        Err(e) => {
            read_task.abort();
            return Err(e);
        }
    };
    match read_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(BackfillError::Cancelled("copy stage")),
    }
    if control.borrow().stop {
        return Ok(());
    }
    state::mark_copied(&client, &schema, &config.stream, &name)
        .await
        .map_err(BackfillError::target(format!(
            "table {name}: recording it copied"
        )))?;
    tracker.set(&name, copied, copied, true);
    tracing::info!(table = %name, rows = copied, elapsed = ?started.elapsed(), "table copied");
    Ok(())
}

/// The target session a table's copy writes on.
pub(crate) async fn copy_session(
    config: &Config,
    name: &str,
) -> Result<tokio_postgres::Client, BackfillError> {
    let client = pg::connect(&config.target)
        .await
        .map_err(BackfillError::target(format!("table {name}: connecting")))?;
    // A chunk and its progress row commit together, so losing the last commits in a target
    // crash only makes the copy redo those chunks: waiting for each WAL flush buys nothing.
    client
        .batch_execute("SET synchronous_commit = off")
        .await
        .map_err(BackfillError::target(format!("table {name}: connecting")))?;
    Ok(client)
}

/// The conversion and load stages of a copy: converts each chunk of `raw` to COPY text in its
/// own task while the previous chunk loads, and writes each with its progress row in one
/// transaction. Returns the table's rows copied (`copied` before plus the chunks loaded).
pub(crate) async fn load_chunks(
    config: &Config,
    table: &Table,
    client: &mut tokio_postgres::Client,
    mut raw_rx: mpsc::Receiver<(Vec<Row>, Option<Vec<KeyValue>>)>,
    mut copied: u64,
    tracker: &Tracker,
    limiter: &RateLimiter,
) -> Result<u64, BackfillError> {
    let name = table.source.to_string();
    let schema = config.target.ferry_schema.clone();
    let estimated = table.estimated_rows.max(copied);
    let (tx, mut rx) = mpsc::channel::<Encoded>(1);
    let encode_config = config.clone();
    let encode_table = table.clone();
    let encode_task = tokio::spawn(async move {
        while let Some((rows, key)) = raw_rx.recv().await {
            let (frames, n, dead) = encode(&encode_config, &encode_table, rows)?;
            let chunk = Encoded {
                frames,
                rows: n,
                last_key: key,
                dead,
            };
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        Ok::<(), BackfillError>(())
    });
    let copy = copy_sql(table);
    let progress = state::progress_sql(&schema);
    let dead_sql = format!(
        "INSERT INTO {}.dead_letter (stream, source_table, binlog_position, column_name, kind, reason, row_image) \
         SELECT $1, e->>'source_table', 'backfill', e->>'column_name', e->>'kind', e->>'reason', e->'row_image' \
         FROM jsonb_array_elements($2::text::jsonb) AS e",
        quote_ident(&schema)
    );
    while let Some(chunk) = rx.recv().await {
        limiter.take(chunk.rows).await;
        let key_json = serde_json::to_string(&chunk.last_key).expect("keys serialize");
        let n = chunk.rows as i64;
        let params: [&(dyn ToSql + Sync); 4] = [&config.stream, &name, &key_json, &n];
        let dead =
            (!chunk.dead.is_empty()).then(|| serde_json::Value::Array(chunk.dead).to_string());
        write_chunk(
            client,
            &copy,
            chunk.frames,
            &progress,
            &params,
            dead.as_deref()
                .map(|d| (dead_sql.as_str(), &config.stream, d)),
        )
        .await
        .map_err(BackfillError::target(format!(
            "table {name}: writing a chunk"
        )))?;
        copied += chunk.rows;
        m::backfill_rows(&name, chunk.rows);
        tracker.set(&name, copied, estimated, false);
    }
    match encode_task.await {
        Ok(Ok(())) => Ok(copied),
        Ok(Err(e)) => Err(e),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(BackfillError::Cancelled("copy stage")),
    }
}
