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
//!   (`unnest` arrays) of up to `apply.batch_rows` rows and `apply.batch_bytes` bytes of values
//!   (a row larger than that goes alone), so memory stays bounded even for a million-row source
//!   transaction of large rows; the rows pending over all tables of a group are bounded by
//!   `apply.batch_bytes` too (reaching it writes them out, still inside the open transaction);
//! - a channel that closes inside a source transaction (the reader failed) rolls the open
//!   PostgreSQL transaction back: the caller resumes from the last checkpoint.
//!
//! Apply tuning (`apply.batch_rows`, `batch_bytes`, `group_max_rows`, `group_max_wait_ms`) may change while
//! running (SIGHUP); a new value takes effect at the next group, never inside one.
//!
//! This module is the batching half (messages → set-based [`Work`]); [`super::executor`] runs
//! the work on PostgreSQL in its own task, so batching the next rows overlaps with PostgreSQL
//! executing the current ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use super::batch::{into_columns, KeyOrder, Segment};
use super::error::SinkError;
use super::executor::{Executor, Op, Work};
use crate::change::{Commit, Message, RowBudget};
use crate::checkpoint::StateStore;
use crate::config::ApplyConfig;
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::schema::Table;

/// Work items queued for the executor; each holds up to `apply.batch_rows` rows and
/// `apply.batch_bytes` bytes (or one larger row).
const WORK_QUEUE: usize = 4;

/// One group being batched.
#[derive(Default)]
struct Group {
    /// BEGIN was queued.
    open: bool,
    in_source_txn: bool,
    transactions: u64,
    rows: u64,
    last: Option<Commit>,
    started: Option<Instant>,
}

/// The sink stage.
pub struct Applier {
    pub client: Client,
    /// Apply tuning; a new value (SIGHUP) takes effect at the next group.
    pub apply: watch::Receiver<ApplyConfig>,
    pub stream: String,
    pub ferry_schema: String,
    pub rx: mpsc::Receiver<Message>,
    pub store: Arc<dyn StateStore>,
    pub progress: Arc<Progress>,
    /// Apply the next N source transactions one operation at a time (after a unique conflict in
    /// a batched group).
    pub strict_transactions: u64,
    /// Where this run resumed (for error messages until the first commit).
    pub resumed_from: Option<BinlogPosition>,
    /// Rows in flight from the reader; returned once batched.
    pub budget: RowBudget,
}

/// The executor is gone (it failed; its error is the one reported).
struct ExecutorGone;

type Segments = HashMap<usize, (Arc<Table>, Segment)>;

impl Applier {
    /// Applies until the channel closes.
    ///
    /// # Errors
    /// [`SinkError`]; its `class()` tells whether a restart may succeed.
    pub async fn run(self) -> Result<(), SinkError> {
        let (tx, work_rx) = mpsc::channel(WORK_QUEUE);
        let executor = Executor {
            client: self.client,
            stream: self.stream,
            ferry_schema: self.ferry_schema,
            store: self.store,
            progress: self.progress,
            committed: self.resumed_from,
        };
        let exec = tokio::spawn(executor.run(work_rx));
        let mut tuning = self.apply;
        let apply = tuning.borrow_and_update().clone();
        let batcher = Batcher {
            budget: self.budget,
            pending_bytes: 0,
            apply,
            tuning,
            rx: self.rx,
            tx,
            strict_transactions: self.strict_transactions,
        };
        let _ = batcher.run().await;
        match exec.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("sink executor cancelled: {e}"),
        }
    }
}

struct Batcher {
    budget: RowBudget,
    /// Bytes pending in all segments (bounded by `apply.batch_bytes`).
    pending_bytes: usize,
    apply: ApplyConfig,
    tuning: watch::Receiver<ApplyConfig>,
    rx: mpsc::Receiver<Message>,
    tx: mpsc::Sender<Work>,
    strict_transactions: u64,
}

impl Batcher {
    async fn send(&self, work: Work) -> Result<(), ExecutorGone> {
        self.tx.send(work).await.map_err(|_| ExecutorGone)
    }

    async fn run(mut self) -> Result<(), ExecutorGone> {
        let mut segments: Segments = HashMap::new();
        // A commit whose position was not written yet (it touched no replicated table); written
        // once the stream goes quiet so the checkpoint never trails an idle source.
        let mut unwritten: Option<Commit> = None;
        let mut last_write = Instant::now();
        loop {
            // An executor that failed while the source is quiet must still stop the pipeline
            // (its error is the one reported), not wait for the next change.
            let first = match tokio::select! {
                _ = self.tx.closed() => return Err(ExecutorGone),
                r = tokio::time::timeout(Duration::from_secs(1), self.rx.recv()) => r,
            } {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if let Some(c) = unwritten.take() {
                        self.write_position(c).await?;
                    }
                    return Ok(());
                }
                Err(_) => {
                    if let Some(c) = unwritten.take() {
                        self.write_position(c).await?;
                        last_write = Instant::now();
                    }
                    continue;
                }
            };
            if self.tuning.has_changed().unwrap_or(false) {
                self.apply = self.tuning.borrow_and_update().clone();
            }
            let mut g = Group::default();
            let mut next = Some(first);
            let mut channel_closed = false;
            while let Some(msg) = next.take() {
                let cost = self.budget.cost(&msg);
                self.handle(msg, &mut g, &mut segments).await?;
                self.budget.release(cost);
                if !g.in_source_txn {
                    let full = g.rows >= self.apply.group_max_rows as u64;
                    let old = g
                        .started
                        .is_some_and(|s| s.elapsed() >= self.apply.group_max_wait);
                    if full || old || self.rx.is_empty() {
                        break;
                    }
                }
                let received = tokio::select! {
                    _ = self.tx.closed() => return Err(ExecutorGone),
                    m = self.rx.recv() => m,
                };
                match received {
                    Some(m) => next = Some(m),
                    None => channel_closed = true,
                }
            }
            if g.in_source_txn {
                // The reader stopped mid-transaction: nothing of it may be committed.
                for (_, seg) in segments.values_mut() {
                    seg.take();
                }
                self.pending_bytes = 0;
                self.send(Work::Rollback).await?;
                return Ok(());
            }
            self.flush_all(&mut segments).await?;
            if let Some(last) = g.last.take() {
                // Transactions that touched no replicated table need no PostgreSQL transaction
                // of their own; their position is written at most once a second.
                let write = g.open || last_write.elapsed() >= Duration::from_secs(1);
                unwritten = (!write).then(|| last.clone());
                if write {
                    last_write = Instant::now();
                }
                self.send(Work::Commit {
                    commit: last,
                    transactions: g.transactions,
                    rows: g.rows,
                    write,
                    started: g.started.unwrap_or_else(Instant::now),
                })
                .await?;
            }
            if channel_closed {
                if let Some(c) = unwritten.take() {
                    self.write_position(c).await?;
                }
                return Ok(());
            }
        }
    }

    /// Writes the checkpoint of transactions that touched no replicated table.
    async fn write_position(&self, commit: Commit) -> Result<(), ExecutorGone> {
        self.send(Work::Commit {
            commit,
            transactions: 0,
            rows: 0,
            write: true,
            started: Instant::now(),
        })
        .await
    }

    /// Queues one segment's statements.
    async fn flush(&mut self, table: &Arc<Table>, seg: &mut Segment) -> Result<(), ExecutorGone> {
        self.pending_bytes = self.pending_bytes.saturating_sub(seg.bytes());
        flush(&self.tx, table, seg).await
    }

    /// Queues every pending segment's statements.
    async fn flush_all(&mut self, segments: &mut Segments) -> Result<(), ExecutorGone> {
        for (table, seg) in segments.values_mut() {
            if !seg.is_empty() {
                let table = table.clone();
                self.flush(&table, seg).await?;
            }
        }
        Ok(())
    }

    async fn begin(&self, g: &mut Group) -> Result<(), ExecutorGone> {
        g.in_source_txn = true;
        g.started.get_or_insert_with(Instant::now);
        if !g.open {
            g.open = true;
            self.send(Work::Begin).await?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        msg: Message,
        g: &mut Group,
        segments: &mut Segments,
    ) -> Result<(), ExecutorGone> {
        match msg {
            Message::Rows { table, ops } => {
                self.begin(g).await?;
                let key = Arc::as_ptr(&table) as usize;
                let strict = self.strict_transactions > 0;
                let budget = self.apply.batch_bytes;
                for op in ops {
                    g.rows += 1;
                    let size = op.bytes();
                    if self.pending_bytes > 0 && self.pending_bytes + size > budget {
                        // This row would carry the pending statements past their byte
                        // budget: it starts the next ones (alone, if it is larger).
                        self.flush_all(segments).await?;
                    }
                    let seg = &mut segments
                        .entry(key)
                        .or_insert_with(|| (table.clone(), Segment::default()))
                        .1;
                    seg.push(op);
                    self.pending_bytes += size;
                    if strict || seg.len() >= self.apply.batch_rows {
                        self.flush(&table, seg).await?;
                    }
                    if self.pending_bytes >= budget {
                        self.flush_all(segments).await?;
                    }
                }
            }
            Message::Truncate { table } => {
                self.begin(g).await?;
                if let Some((_, seg)) = segments.get_mut(&(Arc::as_ptr(&table) as usize)) {
                    self.flush(&table, seg).await?;
                }
                self.send(Work::Truncate(table)).await?;
            }
            Message::DeadLetter(d) => {
                self.begin(g).await?;
                self.send(Work::DeadLetter(d)).await?;
            }
            Message::Swap { table, shadow } => {
                // Every pending statement goes first: rows of the table may be pending under
                // another handle of it (the decoder's, not the re-copy's), and applied after
                // the swap they would reach the new table a second time.
                self.begin(g).await?;
                self.flush_all(segments).await?;
                self.send(Work::Swap { table, shadow }).await?;
            }
            Message::SchemaChange(change) => {
                // Rows before the change were decoded with the old definition: they go first.
                self.begin(g).await?;
                self.flush_all(segments).await?;
                self.send(Work::SchemaChange(change)).await?;
            }
            Message::Commit(c) => {
                g.in_source_txn = false;
                g.transactions += 1;
                g.started.get_or_insert_with(Instant::now);
                g.last = Some(c);
                if g.open {
                    self.send(Work::SourceCommit).await?;
                }
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
}

/// Queues a segment's generations as set-based statements, in order.
async fn flush(
    tx: &mpsc::Sender<Work>,
    table: &Arc<Table>,
    seg: &mut Segment,
) -> Result<(), ExecutorGone> {
    let order = KeyOrder::of(table);
    for mut generation in seg.take() {
        order.sort_keys(&mut generation.deletes);
        order.sort_rows(&mut generation.inserts);
        order.sort_rows(&mut generation.upserts);
        if !generation.deletes.is_empty() {
            let rows = generation.deletes.len() as u64;
            let work = Work::Apply {
                table: table.clone(),
                op: Op::Delete,
                columns: into_columns(generation.deletes, table.key.len()),
                rows,
            };
            tx.send(work).await.map_err(|_| ExecutorGone)?;
        }
        for (op, rows) in [
            (Op::Insert, generation.inserts),
            (Op::Upsert, generation.upserts),
        ] {
            if rows.is_empty() {
                continue;
            }
            let work = Work::Apply {
                table: table.clone(),
                op,
                rows: rows.len() as u64,
                columns: into_columns(rows, table.columns.len()),
            };
            tx.send(work).await.map_err(|_| ExecutorGone)?;
        }
    }
    Ok(())
}
