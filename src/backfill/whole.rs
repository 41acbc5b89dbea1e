//! Copies a table without a primary or unique key (identified by its whole row): one read of
//! the whole table inside one consistent snapshot whose exact binlog position Ps is recorded.
//!
//! Why: keyed tables are copied in chunks at different moments, then replayed from P0 as
//! upserts — replay never depends on what the copy wrote. Without a key, a replayed insert
//! would add a second copy of a row the copy already wrote, and identical rows may be
//! legitimately repeated, so nothing can tell them apart. Instead the copy holds the state at
//! exactly Ps, and the stream skips the table's changes of every transaction that ends at or
//! before Ps ([`crate::source::whole_copies`]): each change is then applied exactly once, either
//! through the copy or through the stream.
//!
//! Cost (logged at start): the source keeps the snapshot's transaction open for the whole copy
//! of the table (InnoDB keeps undo history for it), and the copy cannot resume mid-table: after
//! a crash or stop the table is emptied and copied again in a new snapshot. Rows still stream
//! through the same conversion and load stages as a keyed copy, in chunks bounded by
//! `backfill.chunk_rows` and `backfill.chunk_bytes`, so memory does not follow the table's size.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use tokio::sync::{mpsc, watch};

use super::state::{self, TableState};
use super::worker::{copy_session, load_chunks, wait_while_paused, RateLimiter};
use super::{BackfillError, Tracker};
use crate::config::Config;
use crate::schema::Table;
use crate::select::quote_mysql_ident;
use crate::source::binlog::ReaderControl;
use crate::source::connect::{self, Flavor};
use crate::source::snapshot::{self, row_bytes, KeyValue};

/// Raw rows of one chunk, as the load stage takes them (a whole copy has no chunk key).
pub(crate) type RawChunk = (Vec<Row>, Option<Vec<KeyValue>>);

/// Reads every row of `table` on `conn`, whose consistent snapshot the caller has begun, in
/// chunks ending at `chunk_rows` rows or `chunk_bytes` bytes, sent on the returned channel
/// (one chunk buffered). The task ends the snapshot and yields `true` once every row was sent,
/// `false` when stopped (`control`) or when the receiver went away.
pub(crate) fn spawn_read(
    mut conn: mysql_async::Conn,
    table: &Table,
    chunk_rows: usize,
    chunk_bytes: usize,
    control: Option<watch::Receiver<ReaderControl>>,
) -> (
    tokio::task::JoinHandle<Result<bool, BackfillError>>,
    mpsc::Receiver<RawChunk>,
) {
    let select = format!(
        "SELECT {} FROM {}.{}",
        table
            .source_columns
            .iter()
            .map(|c| quote_mysql_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote_mysql_ident(&table.source.db),
        quote_mysql_ident(&table.source.table)
    );
    let (raw_tx, raw_rx) = mpsc::channel::<RawChunk>(1);
    let read_name = table.source.to_string();
    let task = tokio::spawn(async move {
        let mut control = control;
        let err = |what: &str| BackfillError::source(format!("table {read_name}: {what}"));
        // The binary protocol, as for keyed chunks: floats arrive bit-exact.
        let stmt = conn.prep(select).await.map_err(err("preparing the read"))?;
        let mut result = conn
            .exec_iter(&stmt, ())
            .await
            .map_err(err("reading the table"))?;
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut complete = true;
        while let Some(row) = result.next().await.map_err(err("reading the table"))? {
            bytes += row_bytes(&row);
            rows.push(row);
            if rows.len() >= chunk_rows || bytes >= chunk_bytes {
                let go_on = match control.as_mut() {
                    Some(c) => wait_while_paused(c).await,
                    None => true,
                };
                if !go_on
                    || raw_tx
                        .send((std::mem::take(&mut rows), None))
                        .await
                        .is_err()
                {
                    complete = false;
                    break;
                }
                bytes = 0;
            }
        }
        if !complete {
            // Stopped: the connection (and its snapshot) is dropped; the copy starts over.
            return Ok::<bool, BackfillError>(false);
        }
        drop(result);
        if !rows.is_empty() && raw_tx.send((rows, None)).await.is_err() {
            return Ok(false);
        }
        conn.query_drop("COMMIT")
            .await
            .map_err(err("ending the snapshot"))?;
        let _ = conn.disconnect().await;
        Ok(true)
    });
    (task, raw_rx)
}

/// Copies `table` whole (see the module docs); a copy left unfinished is started over.
///
/// # Errors
/// Source/target failures and refused values.
pub async fn copy_table(
    config: &Config,
    flavor: Flavor,
    table: &Table,
    st: TableState,
    tracker: &Tracker,
    limiter: &RateLimiter,
    control: watch::Receiver<ReaderControl>,
) -> Result<(), BackfillError> {
    let name = table.source.to_string();
    let schema = config.target.ferry_schema.clone();
    let started = Instant::now();
    let mut client = copy_session(config, &name).await?;
    if st.rows_copied > 0 || st.last_key.is_some() {
        tracing::info!(table = %name, rows_copied = st.rows_copied, "a table without a key is copied in one snapshot: emptying it and copying it again");
        state::restart_whole_copy(&mut client, &schema, &config.stream, table)
            .await
            .map_err(BackfillError::target(format!(
                "table {name}: emptying it to copy it again"
            )))?;
    }
    let mut conn = connect::connect(&config.source).await?;
    let snapshot =
        snapshot::begin_snapshot(&mut conn, flavor)
            .await
            .map_err(BackfillError::snapshot(format!(
                "table {name}: opening its snapshot"
            )))?;
    tracing::info!(table = %name, snapshot = %snapshot, "copying a table without a key whole, in one consistent snapshot");
    let (chunk_rows, chunk_bytes) = (config.backfill.chunk_rows, config.backfill.chunk_bytes);
    let (read_task, raw_rx) =
        spawn_read(conn, table, chunk_rows, chunk_bytes, Some(control.clone()));
    let loaded = load_chunks(config, table, &mut client, raw_rx, 0, tracker, limiter).await;
    let copied = match loaded {
        Ok(n) => n,
        Err(e) => {
            read_task.abort();
            return Err(e);
        }
    };
    let complete = match read_task.await {
        Ok(r) => r?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => return Err(BackfillError::Cancelled("copy stage")),
    };
    if !complete || control.borrow().stop {
        return Ok(());
    }
    state::mark_copied_whole(&client, &schema, &config.stream, &name, &snapshot)
        .await
        .map_err(BackfillError::target(format!(
            "table {name}: recording it copied"
        )))?;
    tracker.set(&name, copied, copied, true);
    tracing::info!(table = %name, rows = copied, snapshot = %snapshot, elapsed = ?started.elapsed(), "table copied whole");
    Ok(())
}
