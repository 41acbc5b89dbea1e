//! `ferry backfill --table db.t`: re-copies one table while streaming of every table continues.
//!
//! The request is a row in `ferry.backfill_requests` (the CLI writes it; the daemon polls for
//! it, so it works whether or not the daemon is running when asked). The daemon creates an empty
//! shadow table, asks the reader to apply the table's changes to the shadow too, reads the
//! source in chunks — each in a consistent snapshot with an exact binlog position — and hands
//! each chunk to the reader, which injects it into the stream at that position
//! ([`crate::source::recopy`] explains why the shadow ends exactly equal to the source). When
//! every chunk is in, the shadow replaces the table in one PostgreSQL transaction, then indexes
//! and unique constraints are built on it.
//!
//! Guarantees: the table keeps receiving every change throughout, so a re-copy that cannot
//! finish (pipeline restart, crash, refused value) leaves the table as streaming made it; the
//! request then stays `running` and is started over (from an empty shadow).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::whole;
use super::worker::convert_row;
use crate::config::Config;
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::schema::Table;
use crate::select::{fit_identifier, quote_ident};
use crate::sink::{connect as pg, ddl};
use crate::source::connect::{self, Flavor};
use crate::source::recopy::RecopyCommand;
use crate::source::snapshot::{self, ChunkReader};
use crate::status::{StatusBoard, TableProgress};

/// The current pipeline's command channel to the reader (replaced on every pipeline start).
#[derive(Default)]
pub struct RecopyHub {
    sender: Mutex<Option<mpsc::Sender<RecopyCommand>>>,
}

impl RecopyHub {
    pub fn set(&self, tx: mpsc::Sender<RecopyCommand>) {
        *self.sender.lock().expect("hub lock") = Some(tx);
    }

    fn get(&self) -> Option<mpsc::Sender<RecopyCommand>> {
        self.sender.lock().expect("hub lock").clone()
    }
}

/// Records a request (what `ferry backfill --table` does). Returns its id.
///
/// # Errors
/// PostgreSQL errors.
pub async fn request(
    client: &Client,
    schema: &str,
    stream: &str,
    table: &str,
) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO {}.backfill_requests (stream, source_table) VALUES ($1, $2) RETURNING id",
                quote_ident(schema)
            ),
            &[&stream, &table],
        )
        .await?;
    Ok(row.get(0))
}

/// (state, message, rows copied) of a request.
pub async fn request_state(
    client: &Client,
    schema: &str,
    id: i64,
) -> Result<Option<(String, Option<String>, i64)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT state, message, rows_copied FROM {}.backfill_requests WHERE id = $1",
                quote_ident(schema)
            ),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// How a waited-for request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    Done,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("reading the state of re-copy request {id}: {}", pg::describe(source))]
    Postgres {
        id: i64,
        source: tokio_postgres::Error,
    },
    #[error("re-copy request {id} disappeared from the target")]
    Disappeared { id: i64 },
    #[error("re-copy request {id} is still `{state}` after {waited:?} without any progress: is ferry running for this stream (`ferry status`)? The request stays queued; the daemon picks it up when it runs")]
    Stalled {
        id: i64,
        state: String,
        waited: Duration,
    },
}

/// Waits for request `id` to finish, calling `on_change` with a line whenever its state or row
/// count changes. Gives up when nothing changed for `stall_after` (a request nobody picks up,
/// or a daemon that died mid-copy), so the wait always ends.
///
/// # Errors
/// See [`WaitError`].
pub async fn wait(
    client: &Client,
    schema: &str,
    id: i64,
    stall_after: Duration,
    mut on_change: impl FnMut(&str),
) -> Result<WaitOutcome, WaitError> {
    let mut last = String::new();
    let mut changed_at = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some((state, message, rows)) = request_state(client, schema, id)
            .await
            .map_err(|source| WaitError::Postgres { id, source })?
        else {
            return Err(WaitError::Disappeared { id });
        };
        let line = format!("{state}: {rows} rows copied");
        if line != last {
            on_change(&line);
            last = line;
            changed_at = std::time::Instant::now();
        }
        match state.as_str() {
            "done" => return Ok(WaitOutcome::Done),
            "failed" => return Ok(WaitOutcome::Failed(message.unwrap_or_default())),
            _ if changed_at.elapsed() >= stall_after => {
                return Err(WaitError::Stalled {
                    id,
                    state,
                    waited: stall_after,
                })
            }
            _ => {}
        }
    }
}

/// Polls for requests and serves them one at a time, for the daemon's lifetime.
pub async fn serve(
    config: Config,
    flavor: Flavor,
    tables: Vec<Table>,
    hub: Arc<RecopyHub>,
    progress: Arc<Progress>,
    board: Arc<StatusBoard>,
) {
    let schema = config.target.ferry_schema.clone();
    let mut session: Option<Client> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !session.as_ref().is_some_and(|c| !c.is_closed()) {
            session = pg::connect(&config.target).await.ok();
        }
        let Some(client) = session.as_ref() else {
            continue;
        };
        let next = client
            .query_opt(
                &format!(
                    "SELECT id, source_table FROM {}.backfill_requests \
                     WHERE stream = $1 AND state IN ('requested', 'running') ORDER BY id LIMIT 1",
                    quote_ident(&schema)
                ),
                &[&config.stream],
            )
            .await;
        let row = match next {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(_) => {
                session = None;
                continue;
            }
        };
        let (id, name): (i64, String) = (row.get(0), row.get(1));
        let set = |state: &'static str, message: Option<String>| {
            record_state(&config, id, state, message)
        };
        let Some(table) = tables.iter().find(|t| t.source.to_string() == name) else {
            set("failed", Some(format!("{name} is not a replicated table"))).await;
            continue;
        };
        set("running", None).await;
        tracing::info!(table = %name, request = id, "re-copying table while streaming continues");
        let outcome = recopy(&config, flavor, table, client, &hub, &progress, &board, id).await;
        if outcome.is_err() {
            // Whatever failed, the reader must not go on mirroring to (or holding for) it.
            if let Some(tx) = hub.get() {
                let _ = tx.send(RecopyCommand::Abandon).await;
            }
        }
        match outcome {
            Ok(rows) => {
                set("done", Some(format!("{rows} rows copied"))).await;
                tracing::info!(table = %name, rows, "re-copy done");
            }
            Err(Failure::Retry(why)) => {
                tracing::warn!(table = %name, reason = %why, "re-copy interrupted; starting it over");
            }
            Err(Failure::Fatal(why)) => {
                tracing::error!(table = %name, reason = %why, "re-copy failed; the table keeps streaming as before");
                set("failed", Some(why)).await;
            }
        }
    }
}

/// Records a request's state, on a fresh session when the last one failed: a final state that
/// is not recorded would make the daemon re-copy the table again and leave `--wait` waiting.
/// Retried with backoff (about a minute in all); every failure is logged.
async fn record_state(config: &Config, id: i64, state: &'static str, message: Option<String>) {
    let sql = format!(
        "UPDATE {}.backfill_requests SET state = $2, message = $3, \
         finished_at = CASE WHEN $2 IN ('done', 'failed') THEN clock_timestamp() END WHERE id = $1",
        quote_ident(&config.target.ferry_schema)
    );
    let mut backoff = crate::backoff::Backoff::default();
    for attempt in 1..=6 {
        let result = match pg::connect(&config.target).await {
            Ok(client) => client
                .execute(&sql, &[&id, &state, &message])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) if attempt < 6 => {
                tracing::warn!(request = id, state, error = %pg::describe(&e), retry_in = ?backoff.current(), "cannot record the re-copy request's state; retrying");
                backoff.wait().await;
            }
            Err(e) => {
                tracing::error!(request = id, state, error = %pg::describe(&e), "cannot record the re-copy request's state; `ferry backfill --wait` will report it stalled");
            }
        }
    }
}

enum Failure {
    /// The pipeline restarted or a connection dropped: start over.
    Retry(String),
    /// Refused data or a DDL failure: the operator must act.
    Fatal(String),
}

#[allow(clippy::too_many_arguments)]
async fn recopy(
    config: &Config,
    flavor: Flavor,
    table: &Table,
    client: &Client,
    hub: &RecopyHub,
    progress: &Progress,
    board: &StatusBoard,
    id: i64,
) -> Result<u64, Failure> {
    let retry = |e: String| Failure::Retry(e);
    let mut shadow = table.clone();
    shadow.target_name = fit_identifier(&format!("{}__ferry_recopy", table.target_name));
    shadow.target_quoted = format!(
        "{}.{}",
        quote_ident(&shadow.target_schema),
        quote_ident(&shadow.target_name)
    );
    let shadow = Arc::new(shadow);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {};\n{}",
            shadow.target_quoted,
            ddl::create_table_sql(&shadow)
        ))
        .await
        .map_err(|e| Failure::Fatal(pg::describe(&e)))?;
    let live = Arc::new(table.clone());
    let tx = hub
        .get()
        .ok_or_else(|| retry("no pipeline running".into()))?;
    let (reply, started) = oneshot::channel();
    tx.send(RecopyCommand::Start {
        table: live.clone(),
        shadow: shadow.clone(),
        reply,
    })
    .await
    .map_err(|_| retry("the pipeline restarted".into()))?;
    tokio::time::timeout(Duration::from_secs(60), started)
        .await
        .map_err(|_| retry("the reader did not start the re-copy in time".into()))?
        .map_err(|_| retry("the pipeline restarted".into()))?;

    let conn = connect::connect(&config.source)
        .await
        .map_err(|e| retry(e.to_string()))?;
    let name = table.source.to_string();
    let sent = Sent {
        config,
        table,
        client,
        board,
        tx: &tx,
        id,
    };
    let copied = if table.has_key() {
        copy_in_chunks(&sent, flavor, conn).await?
    } else {
        copy_whole(&sent, flavor, conn).await?
    };
    let (reply, swapped) = oneshot::channel();
    tx.send(RecopyCommand::Finish { reply })
        .await
        .map_err(|_| retry("the pipeline restarted".into()))?;
    let swap_at: BinlogPosition = swapped
        .await
        .map_err(|_| retry("the pipeline restarted before the swap".into()))?;
    // Wait until the swap is committed, then index the new table (it is consistent now).
    loop {
        if progress.committed_position().is_some_and(|p| {
            p.partial_cmp(&swap_at)
                .is_some_and(|o| o != std::cmp::Ordering::Less)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut sql = ddl::plain_index_sql(table);
    sql.extend(ddl::unique_index_sql(table));
    ddl::run_all(client, table, &sql)
        .await
        .map_err(|e| Failure::Fatal(e.to_string()))?;
    board.backfill.lock().expect("status lock").insert(
        name,
        TableProgress {
            rows_copied: copied,
            rows_estimated: copied,
            percent: 100.0,
            eta_seconds: None,
            done: true,
        },
    );
    Ok(copied)
}

/// Where copied rows go and where their progress is shown.
struct Sent<'a> {
    config: &'a Config,
    table: &'a Table,
    client: &'a Client,
    board: &'a StatusBoard,
    tx: &'a mpsc::Sender<RecopyCommand>,
    id: i64,
}

impl Sent<'_> {
    /// Converts `raw` rows and sends them to the reader as a chunk read at `snapshot`; returns
    /// how many were sent (rows set aside under the dead-letter policy are not).
    async fn chunk(
        &self,
        raw: &[mysql_async::Row],
        snapshot: BinlogPosition,
    ) -> Result<u64, Failure> {
        let mut rows = Vec::with_capacity(raw.len());
        for row in raw {
            match convert_row(self.config, self.table, row) {
                Ok(Some(cells)) => rows.push(cells),
                Ok(None) => {} // set aside under the dead-letter policy (counted, logged)
                Err(e) => return Err(Failure::Fatal(e.to_string())),
            }
        }
        let n = rows.len() as u64;
        self.tx
            .send(RecopyCommand::Chunk { rows, snapshot })
            .await
            .map_err(|_| Failure::Retry("the pipeline restarted".into()))?;
        Ok(n)
    }

    /// Shows and records how many rows have been copied so far.
    async fn progress(&self, copied: u64) {
        let estimated = self.table.estimated_rows;
        self.board.backfill.lock().expect("status lock").insert(
            self.table.source.to_string(),
            TableProgress {
                rows_copied: copied,
                rows_estimated: estimated.max(copied),
                percent: if estimated == 0 {
                    0.0
                } else {
                    (copied as f64 / estimated as f64 * 100.0).min(99.9)
                },
                eta_seconds: None,
                done: false,
            },
        );
        let _ = self
            .client
            .execute(
                &format!(
                    "UPDATE {}.backfill_requests SET rows_copied = $2 WHERE id = $1",
                    quote_ident(&self.config.target.ferry_schema)
                ),
                &[&self.id, &(copied as i64)],
            )
            .await;
    }
}

/// A keyed table: chunk by chunk, each in its own snapshot, injected at its position.
async fn copy_in_chunks(
    sent: &Sent<'_>,
    flavor: Flavor,
    conn: mysql_async::Conn,
) -> Result<u64, Failure> {
    let retry = |e: String| Failure::Retry(e);
    let config = sent.config;
    let mut reader = ChunkReader::new(
        conn,
        sent.table,
        config.backfill.chunk_rows.min(10_000),
        config.backfill.chunk_bytes,
    )
    .await
    .map_err(|e| retry(e.to_string()))?;
    let mut last_key = None;
    let mut copied = 0u64;
    loop {
        let (chunk, snapshot) = reader
            .read_in_snapshot(last_key.as_deref(), flavor)
            .await
            .map_err(|e| retry(e.to_string()))?;
        let Some(key) = chunk.last_key else { break };
        copied += sent.chunk(&chunk.rows, snapshot).await?;
        last_key = Some(key);
        sent.progress(copied).await;
    }
    let _ = reader.into_conn().disconnect().await;
    Ok(copied)
}

/// A table without a key: whole, in one snapshot, while the reader holds at the boundary it
/// started at (see [`crate::source::recopy`]).
async fn copy_whole(
    sent: &Sent<'_>,
    flavor: Flavor,
    mut conn: mysql_async::Conn,
) -> Result<u64, Failure> {
    let retry = |e: String| Failure::Retry(e);
    let config = sent.config;
    let snapshot = snapshot::begin_snapshot(&mut conn, flavor)
        .await
        .map_err(|e| retry(e.to_string()))?;
    sent.tx
        .send(RecopyCommand::Snapshot {
            snapshot: snapshot.clone(),
        })
        .await
        .map_err(|_| retry("the pipeline restarted".into()))?;
    let (read_task, mut raw) = whole::spawn_read(
        conn,
        sent.table,
        config.backfill.chunk_rows.min(10_000),
        config.backfill.chunk_bytes,
        None,
    );
    let mut copied = 0u64;
    while let Some((rows, _)) = raw.recv().await {
        match sent.chunk(&rows, snapshot.clone()).await {
            Ok(n) => copied += n,
            Err(e) => {
                read_task.abort();
                return Err(e);
            }
        }
        sent.progress(copied).await;
    }
    match read_task.await {
        Ok(Ok(true)) => Ok(copied),
        Ok(Ok(false)) => Err(retry("the table's read stopped".into())),
        Ok(Err(e)) => Err(retry(e.to_string())),
        Err(e) => Err(retry(format!("the table's read ended: {e}"))),
    }
}
