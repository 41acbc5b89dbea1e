//! The sink stage: applies [`Message`]s to PostgreSQL, one or more whole source transactions per
//! PostgreSQL transaction, and records the source position in the same transaction.
//!
//! Guarantees:
//! - atomic and ordered: a source transaction is never split across PostgreSQL transactions;
//!   several may be grouped into one (up to `apply.group_max_rows`, or until the reader has
//!   nothing more queued); groups commit in source order;
//! - exactly once: the checkpoint row is upserted in the same transaction as the rows, so a crash
//!   at any instant leaves rows and position consistent; the local copy is written only after
//!   PostgreSQL committed;
//! - every row operation is applied as itself (see [`super::batch`]), in set-based statements
//!   (`unnest` arrays) of up to `apply.batch_rows` rows, so memory stays bounded even for a
//!   million-row source transaction;
//! - a channel that closes inside a source transaction (the reader failed) rolls the open
//!   PostgreSQL transaction back: the caller resumes from the last checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::batch::{columns_of, Segment};
use super::connect::{describe, is_transient};
use super::ddl::{self, DdlError};
use crate::change::{Commit, DeadLetter, Message};
use crate::checkpoint::{self, Checkpoint, CheckpointError, SledStore, StateStore};
use crate::config::ApplyConfig;
use crate::metrics as m;
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::schema::{SourceName, Table};
use crate::select::quote_ident;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("PostgreSQL ({context}): {message}")]
    Postgres {
        context: String,
        message: String,
        transient: bool,
    },
    #[error("applying changes to PostgreSQL table {target} (source {table}) after checkpoint {position}: {message}. Fix the target table (or the source data) and restart ferry")]
    Apply {
        table: SourceName,
        target: String,
        position: String,
        message: String,
    },
    #[error("unique-key conflict in PostgreSQL table {target}: {message}")]
    UniqueConflict {
        target: String,
        message: String,
        /// Source transactions in the failed group (to replay one by one).
        transactions: u64,
    },
    #[error(transparent)]
    Ddl(#[from] DdlError),
    #[error(transparent)]
    Store(#[from] CheckpointError),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        match self {
            SinkError::Postgres { transient, .. } => *transient,
            _ => false,
        }
    }
}

fn pg_err(context: &str, e: &tokio_postgres::Error) -> SinkError {
    SinkError::Postgres {
        context: context.to_string(),
        message: describe(e),
        transient: is_transient(e),
    }
}

/// Prepared statements of one table.
struct TableStatements {
    upsert: Statement,
    delete: Statement,
}

/// The SQL ferry writes a table with (public for tests and the backfill).
pub fn upsert_sql(t: &Table) -> String {
    let n = t.columns.len();
    let cols: Vec<&str> = t.columns.iter().map(|c| c.quoted.as_str()).collect();
    let params: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    let casts: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.c{}::{}", i + 1, c.pg_type.sql()))
        .collect();
    let key: Vec<&str> = t
        .key
        .iter()
        .map(|i| t.columns[*i].quoted.as_str())
        .collect();
    let updates: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !t.is_key_column(*i))
        .map(|(_, c)| format!("{0} = EXCLUDED.{0}", c.quoted))
        .collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) {}",
        t.target_quoted,
        cols.join(", "),
        casts.join(", "),
        params.join(", "),
        aliases.join(", "),
        key.join(", "),
        conflict
    )
}

pub fn delete_sql(t: &Table) -> String {
    let params: Vec<String> = (1..=t.key.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (1..=t.key.len()).map(|i| format!("k{i}")).collect();
    let conds: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(j, i)| {
            let c = &t.columns[*i];
            format!("t.{} = k.k{}::{}", c.quoted, j + 1, c.pg_type.sql())
        })
        .collect();
    format!(
        "DELETE FROM {} AS t USING unnest({}) AS k({}) WHERE {}",
        t.target_quoted,
        params.join(", "),
        aliases.join(", "),
        conds.join(" AND ")
    )
}

/// One group being applied.
#[derive(Default)]
struct Group {
    /// BEGIN was sent.
    open: bool,
    in_source_txn: bool,
    transactions: u64,
    rows: u64,
    last: Option<Commit>,
    started: Option<Instant>,
    /// (target table, op) → rows, for the metrics after commit.
    applied: HashMap<(String, &'static str), u64>,
}

/// The sink stage.
pub struct Applier {
    pub client: Client,
    pub apply: ApplyConfig,
    pub stream: String,
    pub ferry_schema: String,
    pub rx: mpsc::Receiver<Message>,
    pub store: Arc<SledStore>,
    pub progress: Arc<Progress>,
    /// Apply the next N source transactions one operation at a time (after a unique conflict in
    /// a batched group).
    pub strict_transactions: u64,
    /// The last checkpoint written, to know where a failure happened.
    pub resumed_from: Option<BinlogPosition>,
}

type Segments = HashMap<usize, (Arc<Table>, Segment)>;

impl Applier {
    /// Applies until the channel closes.
    ///
    /// # Errors
    /// [`SinkError`]; `is_transient` tells whether a restart may succeed.
    pub async fn run(mut self) -> Result<(), SinkError> {
        let checkpoint_stmt = self
            .client
            .prepare_typed(
                &checkpoint::upsert_sql(&self.ferry_schema),
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::INT8],
            )
            .await
            .map_err(|e| pg_err("preparing the checkpoint statement", &e))?;
        let mut statements: HashMap<usize, (Arc<Table>, TableStatements)> = HashMap::new();
        let mut segments: Segments = HashMap::new();
        let mut last_checkpoint_write = Instant::now();
        // A commit whose position was not written yet (it touched no replicated table); written
        // once the stream goes quiet so the checkpoint never trails an idle source.
        let mut unwritten: Option<Commit> = None;
        loop {
            let first = match tokio::time::timeout(Duration::from_secs(1), self.rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    // Graceful end: the last position is written even if it touched nothing.
                    if let Some(c) = unwritten.take() {
                        self.write_position(
                            c,
                            &checkpoint_stmt,
                            &mut statements,
                            &mut segments,
                            &mut last_checkpoint_write,
                        )
                        .await?;
                    }
                    return Ok(());
                }
                Err(_) => {
                    if let Some(c) = unwritten.take() {
                        self.write_position(
                            c,
                            &checkpoint_stmt,
                            &mut statements,
                            &mut segments,
                            &mut last_checkpoint_write,
                        )
                        .await?;
                    }
                    continue;
                }
            };
            let mut g = Group::default();
            let mut next = Some(first);
            let mut channel_closed = false;
            while let Some(msg) = next.take() {
                let result = self
                    .handle(msg, &mut g, &mut statements, &mut segments)
                    .await;
                if let Err(e) = result {
                    self.abort(&g).await;
                    return Err(self.classify(e, &g));
                }
                if !g.in_source_txn {
                    let full = g.rows >= self.apply.group_max_rows as u64;
                    let old = g
                        .started
                        .is_some_and(|s| s.elapsed() >= self.apply.group_max_wait);
                    if full || old || self.rx.is_empty() {
                        break;
                    }
                }
                match self.rx.recv().await {
                    Some(m) => next = Some(m),
                    None => channel_closed = true,
                }
            }
            if g.in_source_txn {
                // The reader stopped mid-transaction: nothing of it may be committed.
                self.abort(&g).await;
                return Ok(());
            }
            let written_before = last_checkpoint_write;
            if let Err(e) = self
                .close_group(
                    &mut g,
                    &checkpoint_stmt,
                    &mut statements,
                    &mut segments,
                    &mut last_checkpoint_write,
                )
                .await
            {
                self.abort(&g).await;
                return Err(self.classify(e, &g));
            }
            unwritten = if last_checkpoint_write == written_before {
                g.last.clone()
            } else {
                None
            };
            if channel_closed {
                if let Some(c) = unwritten.take() {
                    self.write_position(
                        c,
                        &checkpoint_stmt,
                        &mut statements,
                        &mut segments,
                        &mut last_checkpoint_write,
                    )
                    .await?;
                }
                return Ok(());
            }
        }
    }

    /// Writes the checkpoint of transactions that touched no replicated table.
    async fn write_position(
        &mut self,
        commit: Commit,
        checkpoint_stmt: &Statement,
        statements: &mut HashMap<usize, (Arc<Table>, TableStatements)>,
        segments: &mut Segments,
        last_write: &mut Instant,
    ) -> Result<(), SinkError> {
        let mut g = Group {
            last: Some(commit),
            ..Group::default()
        };
        *last_write = Instant::now() - Duration::from_secs(2);
        let result = self
            .close_group(&mut g, checkpoint_stmt, statements, segments, last_write)
            .await;
        if result.is_err() {
            self.abort(&g).await;
        }
        result
    }

    async fn begin(&self, g: &mut Group) -> Result<(), SinkError> {
        if !g.open {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| pg_err("BEGIN", &e))?;
            g.open = true;
            g.started.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    async fn abort(&self, g: &Group) {
        if g.open {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
    }

    fn classify(&self, e: SinkError, g: &Group) -> SinkError {
        match e {
            SinkError::UniqueConflict {
                target, message, ..
            } => SinkError::UniqueConflict {
                target,
                message,
                transactions: g.transactions + 1,
            },
            other => other,
        }
    }

    async fn handle(
        &mut self,
        msg: Message,
        g: &mut Group,
        statements: &mut HashMap<usize, (Arc<Table>, TableStatements)>,
        segments: &mut Segments,
    ) -> Result<(), SinkError> {
        match msg {
            Message::Rows { table, ops } => {
                self.begin(g).await?;
                g.in_source_txn = true;
                let key = Arc::as_ptr(&table) as usize;
                if let std::collections::hash_map::Entry::Vacant(slot) = statements.entry(key) {
                    let prepared = self.prepare(&table).await?;
                    slot.insert((table.clone(), prepared));
                }
                let strict = self.strict_transactions > 0;
                for op in ops {
                    g.rows += 1;
                    let seg = &mut segments
                        .entry(key)
                        .or_insert_with(|| (table.clone(), Segment::default()))
                        .1;
                    seg.push(op);
                    if strict || seg.len() >= self.apply.batch_rows {
                        let mut s = std::mem::take(seg);
                        self.flush(&table, &mut s, statements, g).await?;
                    }
                }
            }
            Message::Truncate { table } => {
                self.begin(g).await?;
                g.in_source_txn = true;
                let key = Arc::as_ptr(&table) as usize;
                if let Some((_, seg)) = segments.get_mut(&key) {
                    let mut s = std::mem::take(seg);
                    self.flush(&table, &mut s, statements, g).await?;
                }
                self.client
                    .batch_execute(&format!("TRUNCATE {}", table.target_quoted))
                    .await
                    .map_err(|e| self.apply_err(&table, &e))?;
                *g.applied
                    .entry((table.target_name.clone(), "truncate"))
                    .or_default() += 1;
            }
            Message::DeadLetter(d) => {
                self.begin(g).await?;
                g.in_source_txn = true;
                self.dead_letter(&d).await?;
            }
            Message::Commit(c) => {
                g.in_source_txn = false;
                g.transactions += 1;
                g.started.get_or_insert_with(Instant::now);
                g.last = Some(c);
                if self.strict_transactions > 0 {
                    self.strict_transactions -= 1;
                    if self.strict_transactions == 0 {
                        tracing::info!(
                            "replayed the conflicting transactions one by one; batching again"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    async fn prepare(&self, t: &Table) -> Result<TableStatements, SinkError> {
        // Cheap when the table exists; creates tables that appeared on the source mid-stream.
        ddl::ensure_table(&self.client, t, true).await?;
        let text_array = Type::TEXT_ARRAY;
        let upsert = self
            .client
            .prepare_typed(&upsert_sql(t), &vec![text_array.clone(); t.columns.len()])
            .await
            .map_err(|e| self.apply_err(t, &e))?;
        let delete = self
            .client
            .prepare_typed(&delete_sql(t), &vec![text_array; t.key.len()])
            .await
            .map_err(|e| self.apply_err(t, &e))?;
        Ok(TableStatements { upsert, delete })
    }

    fn apply_err(&self, t: &Table, e: &tokio_postgres::Error) -> SinkError {
        if is_transient(e) {
            return pg_err(&format!("table {}", t.target_name), e);
        }
        if e.code().is_some_and(|c| c.code() == "23505") {
            return SinkError::UniqueConflict {
                target: format!("{}.{}", t.target_schema, t.target_name),
                message: describe(e),
                transactions: 0,
            };
        }
        SinkError::Apply {
            table: t.source.clone(),
            target: format!("{}.{}", t.target_schema, t.target_name),
            position: self
                .resumed_from
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "start".into()),
            message: describe(e),
        }
    }

    async fn flush(
        &self,
        table: &Arc<Table>,
        seg: &mut Segment,
        statements: &HashMap<usize, (Arc<Table>, TableStatements)>,
        g: &mut Group,
    ) -> Result<(), SinkError> {
        if seg.is_empty() {
            return Ok(());
        }
        let (_, st) = statements
            .get(&(Arc::as_ptr(table) as usize))
            .expect("statements are prepared before rows are buffered");
        for generation in seg.take() {
            let (deletes, upserts) = (generation.deletes, generation.upserts);
            if !deletes.is_empty() {
                let cols = columns_of(&deletes, table.key.len());
                let params: Vec<&(dyn ToSql + Sync)> =
                    cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let t0 = Instant::now();
                self.client
                    .execute(&st.delete, &params)
                    .await
                    .map_err(|e| self.apply_err(table, &e))?;
                tracing::debug!(table = %table.target_name, rows = deletes.len(), elapsed = ?t0.elapsed(), "delete");
                *g.applied
                    .entry((table.target_name.clone(), "delete"))
                    .or_default() += deletes.len() as u64;
            }
            if !upserts.is_empty() {
                let cols = columns_of(&upserts, table.columns.len());
                let params: Vec<&(dyn ToSql + Sync)> =
                    cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let t0 = Instant::now();
                self.client
                    .execute(&st.upsert, &params)
                    .await
                    .map_err(|e| self.apply_err(table, &e))?;
                tracing::debug!(table = %table.target_name, rows = upserts.len(), elapsed = ?t0.elapsed(), "upsert");
                *g.applied
                    .entry((table.target_name.clone(), "upsert"))
                    .or_default() += upserts.len() as u64;
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, d: &DeadLetter) -> Result<(), SinkError> {
        let sql = format!(
            "INSERT INTO {}.dead_letter (stream, source_table, binlog_position, column_name, kind, reason, row_image) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)",
            quote_ident(&self.ferry_schema)
        );
        let row = d.row.to_string();
        self.client
            .execute(
                &sql,
                &[
                    &self.stream,
                    &d.table.source.to_string(),
                    &d.position.to_string(),
                    &d.column,
                    &d.kind,
                    &d.reason,
                    &row,
                ],
            )
            .await
            .map_err(|e| pg_err("writing a dead-letter row", &e))?;
        m::dead_letter(&d.table.target_name, d.kind);
        tracing::warn!(table = %d.table.source, column = %d.column, position = %d.position, kind = d.kind, "row dead-lettered");
        Ok(())
    }

    async fn close_group(
        &mut self,
        g: &mut Group,
        checkpoint_stmt: &Statement,
        statements: &mut HashMap<usize, (Arc<Table>, TableStatements)>,
        segments: &mut Segments,
        last_write: &mut Instant,
    ) -> Result<(), SinkError> {
        for (_, (table, seg)) in segments.iter_mut() {
            if !seg.is_empty() {
                let table = table.clone();
                self.flush(&table, seg, statements, g).await?;
            }
        }
        let Some(last) = g.last.clone() else {
            return Ok(());
        };
        // Transactions that touched no replicated table need no PostgreSQL transaction of
        // their own; their position is written at most once a second.
        if !g.open && last_write.elapsed() < Duration::from_secs(1) {
            self.progress.settled(last.seq, g.transactions);
            return Ok(());
        }
        let started = Instant::now();
        self.begin(g).await?;
        let params: [&(dyn ToSql + Sync); 5] = [
            &self.stream,
            &last.position.file,
            &(last.position.offset as i64),
            &last.gtid,
            &i64::from(last.source_time),
        ];
        self.client
            .execute(checkpoint_stmt, &params)
            .await
            .map_err(|e| pg_err("writing the checkpoint", &e))?;
        let t0 = Instant::now();
        let committed = self.client.batch_execute("COMMIT").await;
        tracing::debug!(elapsed = ?t0.elapsed(), rows = g.rows, "commit");
        if let Err(e) = committed {
            g.open = false;
            if e.code().is_some_and(|c| c.code() == "23505") {
                return Err(SinkError::UniqueConflict {
                    target: "(deferred unique constraint)".into(),
                    message: describe(&e),
                    transactions: g.transactions,
                });
            }
            return Err(pg_err("COMMIT", &e));
        }
        g.open = false;
        *last_write = Instant::now();
        let cp = Checkpoint {
            position: last.position.clone(),
            gtid: last.gtid.clone(),
            source_time: last.source_time,
        };
        self.store.save_checkpoint(&self.stream, &cp)?;
        self.store.flush_if_due(Duration::from_millis(500))?;
        self.resumed_from = Some(last.position.clone());
        self.progress.committed(
            last.seq,
            &last.position,
            last.source_time,
            g.transactions,
            g.rows,
        );
        let elapsed = g.started.map_or(started.elapsed(), |s| s.elapsed());
        m::apply_duration(elapsed.as_secs_f64());
        m::transactions_applied(g.transactions);
        for ((table, op), n) in g.applied.drain() {
            m::rows_applied(&table, op, n);
        }
        if let Ok(seq) = last.position.file_sequence() {
            m::checkpoint(seq, last.position.offset, last.source_time);
        }
        Ok(())
    }
}
