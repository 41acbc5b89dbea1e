//! The half of the sink that talks to PostgreSQL: executes [`Work`] in order on one connection —
//! BEGIN, set-based statements, dead letters, TRUNCATE, and the checkpoint + COMMIT that close a
//! group — then records the committed position locally and in the progress counters.
//!
//! It runs as its own task so the batcher ([`super::postgres`]) keeps reading and batching the
//! next rows while PostgreSQL executes the current statement; a small bounded queue between them
//! keeps memory flat.
//!
//! Guarantees: work is executed strictly in the order received; the checkpoint is written in the
//! same transaction as the rows it covers; the local store and progress are updated only after
//! PostgreSQL confirmed the COMMIT; on any error the open transaction is abandoned (the server
//! rolls it back) and the error names the table and the last committed position.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::connect::describe;
use super::ddl;
use super::error::SinkError;
use super::sql::{delete_sql, insert_sql, upsert_sql};
use crate::change::{Commit, DeadLetter, SchemaChange};
use crate::checkpoint::{self, Checkpoint, StateStore};
use crate::error::ErrorClass;
use crate::metrics as m;
use crate::migration::changed_keys::KeyRecorder;
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::schema::Table;
use crate::select::quote_ident;

/// Kind of set-based statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Rows the source inserted: a plain INSERT where it pays, else an upsert (same effect).
    Insert,
    Upsert,
    Delete,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Upsert => "upsert",
            Op::Delete => "delete",
        }
    }
}

/// Plain INSERTs per group at most: each leaves a subtransaction ID in the backend, and
/// PostgreSQL tracks only 64 per transaction before every snapshot on the target gets slower.
const PLAIN_INSERTS_PER_GROUP: usize = 32;
/// Smaller batches of inserts go straight to the upsert: the savepoint would cost more than the
/// plain INSERT saves.
const PLAIN_INSERT_MIN_ROWS: u64 = 32;
/// After a plain INSERT met an existing key, that table's inserts go as upserts for this long
/// (a backfill or re-copy overlapping the stream makes such conflicts common for a while).
const PLAIN_INSERT_BACKOFF: Duration = Duration::from_secs(60);

/// When to try inserted rows as a plain INSERT. The upsert's `ON CONFLICT` costs an extra probe
/// of the key index per row (a third of PostgreSQL's time on an insert-heavy stream); a plain
/// INSERT skips it and, inside a savepoint, falls back to the upsert if any key already exists,
/// so the outcome is the same either way.
#[derive(Default)]
struct PlainInserts {
    /// Plain INSERTs that committed into the open group.
    used: usize,
    /// Tables (by their `Arc` address) whose last plain INSERT met an existing key.
    conflicted: HashMap<usize, Instant>,
}

impl PlainInserts {
    fn worth_trying(&self, table: usize, rows: u64) -> bool {
        rows >= PLAIN_INSERT_MIN_ROWS
            && self.used < PLAIN_INSERTS_PER_GROUP
            && self
                .conflicted
                .get(&table)
                .map_or(true, |at| at.elapsed() >= PLAIN_INSERT_BACKOFF)
    }
}

/// One unit of work for PostgreSQL.
#[derive(Debug)]
pub enum Work {
    Begin,
    /// Rows as column-major text arrays (upsert: every column; delete: the key columns).
    Apply {
        table: Arc<Table>,
        op: Op,
        columns: Vec<Vec<Option<String>>>,
        rows: u64,
    },
    Truncate(Arc<Table>),
    /// End of a re-copy: the shadow table replaces the table.
    Swap {
        table: Arc<Table>,
        shadow: Arc<Table>,
    },
    DeadLetter(Box<DeadLetter>),
    /// A source schema change: its target statements and its history row.
    SchemaChange(Box<SchemaChange>),
    /// A source transaction ended inside the current group (for conflict replay accounting).
    SourceCommit,
    /// Close the group: write the checkpoint and COMMIT (`write`), or only account for
    /// transactions that touched nothing (`!write`).
    Commit {
        commit: Commit,
        transactions: u64,
        rows: u64,
        write: bool,
        started: Instant,
    },
    /// The source stopped inside a transaction: discard the open group.
    Rollback,
}

struct TableStatements {
    insert: Statement,
    upsert: Statement,
    delete: Statement,
}

/// Executes work on the target.
pub struct Executor {
    pub client: Client,
    pub stream: String,
    pub ferry_schema: String,
    pub store: Arc<dyn StateStore>,
    pub progress: Arc<Progress>,
    /// Last committed position (for error messages).
    pub committed: Option<BinlogPosition>,
}

impl Executor {
    /// Runs until the queue closes.
    ///
    /// # Errors
    /// The first failure; see [`SinkError`].
    pub async fn run(mut self, mut rx: mpsc::Receiver<Work>) -> Result<(), SinkError> {
        let checkpoint_stmt = self
            .client
            .prepare_typed(
                &checkpoint::upsert_sql(&self.ferry_schema),
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT, Type::INT8],
            )
            .await
            .map_err(|e| SinkError::postgres("preparing the checkpoint statement", e))?;
        let keys_stmt = self
            .client
            .prepare_typed(
                &KeyRecorder::insert_sql(&self.ferry_schema),
                &KeyRecorder::param_types(),
            )
            .await
            .map_err(|e| SinkError::postgres("preparing the changed-keys statement", e))?;
        let mut changed = KeyRecorder::default();
        let mut statements: HashMap<usize, (Arc<Table>, TableStatements)> = HashMap::new();
        let mut open = false;
        let mut group_transactions = 0u64;
        let mut applied: HashMap<(String, &'static str), u64> = HashMap::new();
        let mut plain = PlainInserts::default();
        // Dead letters of the open group, counted once it commits.
        let mut dead_letters: Vec<(String, &'static str)> = Vec::new();
        // Schema changes of the open group, logged and counted once it commits.
        let mut schema_changes: Vec<Box<SchemaChange>> = Vec::new();
        while let Some(work) = rx.recv().await {
            let result = match work {
                Work::Begin => {
                    group_transactions = 0;
                    plain.used = 0;
                    open = true;
                    self.client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| SinkError::postgres("BEGIN", e))
                }
                Work::Apply {
                    table,
                    op,
                    columns,
                    rows,
                } => {
                    let key = Arc::as_ptr(&table) as usize;
                    if let std::collections::hash_map::Entry::Vacant(slot) = statements.entry(key) {
                        let prepared = self.prepare(&table).await?;
                        slot.insert((table.clone(), prepared));
                    }
                    let (_, st) = &statements[&key];
                    let params: Vec<&(dyn ToSql + Sync)> =
                        columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                    let t0 = Instant::now();
                    let r = self
                        .apply_rows(
                            st,
                            &table,
                            key,
                            op,
                            rows,
                            &params,
                            &mut plain,
                            group_transactions,
                        )
                        .await;
                    tracing::trace!(table = %table.target_name, op = op.label(), rows, elapsed = ?t0.elapsed(), "statement");
                    if r.is_ok() {
                        changed.applied(&table, op, &columns);
                    }
                    *applied
                        .entry((table.target_name.clone(), op.label()))
                        .or_default() += rows;
                    r
                }
                Work::Truncate(table) => {
                    let r = self
                        .client
                        .batch_execute(&format!("TRUNCATE {}", table.target_quoted))
                        .await
                        .map_err(|e| self.apply_err(&table, e, group_transactions));
                    changed.whole_table(&table);
                    *applied
                        .entry((table.target_name.clone(), "truncate"))
                        .or_default() += 1;
                    r
                }
                Work::Swap { table, shadow } => {
                    let sql = ddl::swap_sql(&table, &shadow);
                    let r = self
                        .client
                        .batch_execute(&sql)
                        .await
                        .map_err(|e| self.apply_err(&table, e, group_transactions));
                    changed.whole_table(&table);
                    // Statements were planned against the old relations, under whichever
                    // handle of the table built them.
                    statements.clear();
                    r
                }
                Work::SchemaChange(change) => {
                    let r = self.schema_change(&change).await;
                    if let Some(new) = change.new.as_ref().filter(|n| {
                        n.key_names() != change.table.key_names()
                            || n.has_key() != change.table.has_key()
                    }) {
                        // Re-keyed (`ddl.allow_key_change`): keys recorded so far name rows
                        // by the old identity.
                        changed.whole_table(new);
                    }
                    // Statements were planned against the old definition.
                    statements.remove(&(Arc::as_ptr(&change.table) as usize));
                    if r.is_ok() {
                        schema_changes.push(change);
                    }
                    r
                }
                Work::DeadLetter(d) => {
                    let r = self.dead_letter(&d).await;
                    dead_letters.push((d.table.target_name.clone(), d.kind));
                    r
                }
                Work::SourceCommit => {
                    group_transactions += 1;
                    Ok(())
                }
                Work::Rollback => {
                    if open {
                        let _ = self.client.batch_execute("ROLLBACK").await;
                    }
                    open = false;
                    applied.clear();
                    dead_letters.clear();
                    schema_changes.clear();
                    changed.clear();
                    Ok(())
                }
                Work::Commit {
                    commit,
                    transactions,
                    rows,
                    write,
                    started,
                } => {
                    let r = if write {
                        let keys = if open {
                            changed
                                .write(&self.client, &keys_stmt, &self.stream, &commit.position)
                                .await
                                .map_err(|e| SinkError::postgres("recording changed keys", e))
                        } else {
                            Ok(())
                        };
                        match keys {
                            Ok(()) => {
                                self.commit(
                                    &checkpoint_stmt,
                                    &commit,
                                    transactions,
                                    rows,
                                    open,
                                    started,
                                )
                                .await
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        self.progress.settled(commit.seq, transactions);
                        Ok(())
                    };
                    open = false;
                    if r.is_ok() {
                        for ((table, op), n) in applied.drain() {
                            m::rows_applied(&table, op, n);
                        }
                        for (table, kind) in dead_letters.drain(..) {
                            m::dead_letter(&table, kind);
                        }
                        for change in schema_changes.drain(..).filter(|c| !c.bookkeeping) {
                            m::schema_change("applied");
                            tracing::info!(
                                table = %change.table.source,
                                position = %change.position,
                                statement = %change.source_sql,
                                target = %change.statements.join("; "),
                                "applied a schema change"
                            );
                        }
                    }
                    r
                }
            };
            if let Err(e) = result {
                if open {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                }
                return Err(e);
            }
            // Each finished statement is liveness for the watchdog: a hung one is not.
            self.progress.worked();
        }
        if open {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        Ok(())
    }

    /// Runs one set-based statement; inserted rows go as a plain INSERT when
    /// [`PlainInserts::worth_trying`], else (or after it met an existing key) as upserts.
    #[allow(clippy::too_many_arguments)]
    async fn apply_rows(
        &self,
        st: &TableStatements,
        table: &Table,
        key: usize,
        op: Op,
        rows: u64,
        params: &[&(dyn ToSql + Sync)],
        plain: &mut PlainInserts,
        transactions: u64,
    ) -> Result<(), SinkError> {
        let err = |e: tokio_postgres::Error| self.apply_err(table, e, transactions);
        if op == Op::Upsert && !table.has_key() {
            // Without a key an upsert would add a row instead of replacing one.
            return Err(SinkError::Apply {
                table: table.source.clone(),
                target: format!("{}.{}", table.target_schema, table.target_name),
                position: self
                    .committed
                    .as_ref()
                    .map_or_else(|| "start".into(), ToString::to_string),
                message: "a replace-by-key write reached a table identified by its whole row; this path does not support tables without a primary key".into(),
            });
        }
        if op == Op::Insert && plain.worth_trying(key, rows) {
            if self.plain_insert(&st.insert, params).await.map_err(err)? {
                plain.used += 1;
                return Ok(());
            }
            tracing::debug!(table = %table.target_name, rows, "a plain INSERT met an existing key; applying the rows as upserts");
            plain.conflicted.insert(key, Instant::now());
        }
        let stmt = match op {
            Op::Insert | Op::Upsert => &st.upsert,
            Op::Delete => &st.delete,
        };
        self.client
            .execute(stmt, params)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Runs a plain INSERT inside a savepoint. `Ok(false)`: some key already existed and the
    /// statement was undone (the caller applies the rows as upserts instead).
    async fn plain_insert(
        &self,
        insert: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<bool, tokio_postgres::Error> {
        self.client.batch_execute("SAVEPOINT ferry_insert").await?;
        match self.client.execute(insert, params).await {
            Ok(_) => {
                self.client
                    .batch_execute("RELEASE SAVEPOINT ferry_insert")
                    .await?;
                Ok(true)
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.client
                    .batch_execute(
                        "ROLLBACK TO SAVEPOINT ferry_insert; RELEASE SAVEPOINT ferry_insert",
                    )
                    .await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn prepare(&self, t: &Table) -> Result<TableStatements, SinkError> {
        // Cheap when the table exists; creates tables that appeared on the source mid-stream,
        // in the open group (rows and checkpoint commit with it).
        ddl::ensure_table_in(&self.client, t, true, true).await?;
        let insert = self
            .client
            .prepare_typed(&insert_sql(t), &vec![Type::TEXT_ARRAY; t.columns.len()])
            .await
            .map_err(|e| self.apply_err(t, e, 0))?;
        let upsert = self
            .client
            .prepare_typed(&upsert_sql(t), &vec![Type::TEXT_ARRAY; t.columns.len()])
            .await
            .map_err(|e| self.apply_err(t, e, 0))?;
        let delete = self
            .client
            .prepare_typed(&delete_sql(t), &vec![Type::TEXT_ARRAY; t.key.len()])
            .await
            .map_err(|e| self.apply_err(t, e, 0))?;
        Ok(TableStatements {
            insert,
            upsert,
            delete,
        })
    }

    fn apply_err(&self, t: &Table, e: tokio_postgres::Error, transactions: u64) -> SinkError {
        if ErrorClass::of_postgres(&e).is_transient() {
            return SinkError::postgres(&format!("table {}", t.target_name), e);
        }
        if e.code().is_some_and(|c| c.code() == "23505") {
            return SinkError::UniqueConflict {
                target: format!("{}.{}", t.target_schema, t.target_name),
                position: self.committed_text(),
                message: describe(&e),
                transactions: transactions + 1,
            };
        }
        SinkError::Apply {
            table: t.source.clone(),
            target: format!("{}.{}", t.target_schema, t.target_name),
            position: self.committed_text(),
            message: describe(&e),
        }
    }

    /// The last committed position as errors name it (`start` before the first commit).
    fn committed_text(&self) -> String {
        self.committed
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "start".into())
    }

    /// Runs a schema change's target statements and records it in `schema_changes`, inside
    /// the open transaction (so it commits with the position after it, or not at all).
    async fn schema_change(&self, change: &SchemaChange) -> Result<(), SinkError> {
        // A table created on the source mid-stream exists on the target from its first rows;
        // a change before any row creates it first (as it was before the change).
        ddl::ensure_table_in(&self.client, &change.table, true, true).await?;
        if !change.statements.is_empty() {
            self.client
                .batch_execute(&change.statements.join(";\n"))
                .await
                .map_err(|e| SinkError::SchemaChange {
                    table: change.table.source.to_string(),
                    position: change.position.clone(),
                    statement: change.statements.join("; "),
                    source: e,
                })?;
        }
        let sql = format!(
            "INSERT INTO {}.schema_changes (stream, position, source_table, source_sql, target_sql) \
             VALUES ($1, $2, $3, $4, $5)",
            quote_ident(&self.ferry_schema)
        );
        self.client
            .execute(
                &sql,
                &[
                    &self.stream,
                    &change.position.to_string(),
                    &change.table.source.to_string(),
                    &change.source_sql,
                    &change.statements.join(";\n"),
                ],
            )
            .await
            .map_err(|e| SinkError::postgres("recording the schema change", e))?;
        if let Some(book) = &change.shadow {
            book.apply(&self.client, &self.ferry_schema, &self.stream)
                .await
                .map_err(|e| SinkError::postgres("recording a shadow table's schema change", e))?;
        }
        fault_pause_after_schema_change().await;
        let position = change.position.to_string();
        if change.new.as_ref().map(|n| &n.source) != Some(&change.table.source) {
            crate::table_models::forget(
                &self.client,
                &self.ferry_schema,
                &self.stream,
                &change.table.source,
            )
            .await
            .map_err(|e| SinkError::postgres("recording the table definition", e))?;
        }
        if let Some(new) = &change.new {
            crate::table_models::store(
                &self.client,
                &self.ferry_schema,
                &self.stream,
                new,
                &position,
            )
            .await
            .map_err(|e| SinkError::postgres("recording the table definition", e))?;
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
            .map_err(|e| SinkError::postgres("writing a dead-letter row", e))?;
        tracing::warn!(table = %d.table.source, column = %d.column, position = %d.position, kind = d.kind, "row dead-lettered");
        Ok(())
    }

    async fn commit(
        &mut self,
        checkpoint_stmt: &Statement,
        last: &Commit,
        transactions: u64,
        rows: u64,
        open: bool,
        started: Instant,
    ) -> Result<(), SinkError> {
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
            .map_err(|e| SinkError::postgres("writing the checkpoint", e))?;
        if open {
            if let Err(e) = self.client.batch_execute("COMMIT").await {
                if e.code().is_some_and(|c| c.code() == "23505") {
                    return Err(SinkError::UniqueConflict {
                        target: "(deferred unique constraint)".into(),
                        position: self.committed_text(),
                        message: describe(&e),
                        transactions,
                    });
                }
                return Err(SinkError::postgres("COMMIT", e));
            }
        }
        let cp = Checkpoint {
            position: last.position.clone(),
            gtid: last.gtid.clone(),
            source_time: last.source_time,
        };
        self.store.save_checkpoint(&self.stream, &cp)?;
        self.store.flush_if_due(Duration::from_millis(500))?;
        self.committed = Some(last.position.clone());
        self.progress.committed(
            last.seq,
            &last.position,
            last.source_time,
            transactions,
            rows,
        );
        let elapsed = started.elapsed();
        tracing::debug!(position = %last.position, transactions, rows, ?elapsed, "committed");
        m::apply_duration(elapsed.as_secs_f64());
        m::transactions_applied(transactions);
        if let Ok(seq) = last.position.file_sequence() {
            m::checkpoint(seq, last.position.offset, last.source_time);
        }
        Ok(())
    }
}

/// Fault injection for the crash tests: `FERRY_FAULT_PAUSE=schema_change:<seconds>` holds the
/// transaction of a schema change open after its target DDL ran, so a test can kill ferry
/// between the DDL and its commit.
async fn fault_pause_after_schema_change() {
    let Ok(v) = std::env::var("FERRY_FAULT_PAUSE") else {
        return;
    };
    if let Some(Ok(s)) = v.strip_prefix("schema_change:").map(|s| s.parse::<f64>()) {
        tracing::warn!(
            seconds = s,
            "FERRY_FAULT_PAUSE: holding the schema change's transaction"
        );
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }
}
