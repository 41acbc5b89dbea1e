//! Wires the stages together and owns the run state: preflight, target setup, checkpoint
//! reconciliation, the reader → applier pipeline with its bounded channel, restarts with backoff
//! after transient errors, and shutdown.
//!
//! Guarantees: nothing is written before preflight passes; every pipeline (re)start resumes from
//! the checkpoint committed in PostgreSQL, so a restart can neither skip nor repeat a change; a
//! definite error stops the daemon with its message (non-zero exit); a graceful stop finishes
//! the source transaction in flight, commits it with its checkpoint and returns `Ok`; a second
//! stop request (or the drain deadline) abandons the open PostgreSQL transaction, which the
//! server rolls back, leaving the last checkpoint intact.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as channel;
use tokio::sync::{mpsc, Notify};

use crate::backfill;
use crate::checkpoint::{self, CheckpointError, Resume, SledStore, StateStore};
use crate::config::{Config, StartPosition};
use crate::control::Command;
use crate::http;
use crate::metrics as m;
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::sink::postgres::{Applier, SinkError};
use crate::sink::{connect as pg, ddl};
use crate::source::binlog::{self, BinlogReader, ReaderControl, SourceError, StartFrom};
use crate::source::connect::{self, Flavor};
use crate::source::decode::{Decoder, Registry};
use crate::source::{preflight, watch};
use crate::status::StatusBoard;

/// Command-line choices that change how a run starts.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Resume from the target's checkpoint even though the local state is ahead.
    pub accept_target_rewind: bool,
    /// Skip the schema change at this position once (after the operator mirrored it).
    pub skip_ddl: Option<BinlogPosition>,
    /// How long a graceful stop may take before ferry abandons the open transaction.
    pub drain_deadline: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("preflight failed:\n{0}")]
    Preflight(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("setting up the target: {0}")]
    Target(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("finding the source's current binlog position: {0}")]
    StartPosition(String),
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
}

const PAUSED_KEY: &str = "run/paused";

/// Builds the unique constraints of backfilled tables once the stream passed the copy's end.
fn spawn_unique_builder(
    config: Config,
    tables: Vec<crate::schema::Table>,
    progress: Arc<Progress>,
    end: BinlogPosition,
) {
    tokio::spawn(async move {
        loop {
            let reached = progress.committed_position().is_some_and(|p| {
                p.partial_cmp(&end)
                    .is_some_and(|o| o != std::cmp::Ordering::Less)
            });
            if reached {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!(%end, "the stream passed the backfill's end: the target is consistent; building unique constraints");
        let client = match pg::connect(&config.target).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %pg::describe(&e), "cannot connect to build unique constraints; they are built on the next start");
                return;
            }
        };
        if let Err(e) = backfill::finish_unique_constraints(&config, &tables, &client).await {
            m::error("backfill", false);
            tracing::error!(error = %e, "building unique constraints failed; replication continues without them");
        }
    });
}

/// Awaits a stage task; a panic inside a stage is a bug, reported as such instead of hanging.
async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match handle.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("pipeline stage cancelled: {e}"),
    }
}

/// File in the state directory holding the running daemon's pid.
pub const PID_FILE: &str = "ferry.pid";

/// Runs the daemon until stopped or a definite error.
///
/// # Errors
/// Definite errors ([`AppError`]); transient ones are retried internally.
pub async fn run(
    config: Config,
    options: RunOptions,
    mut commands: mpsc::Receiver<Command>,
) -> Result<(), AppError> {
    let store = Arc::new(SledStore::open(&config.state_dir)?);
    // The pid file lets `ferry pause` / `ferry resume` find the daemon (sled's lock already
    // guarantees one daemon per state directory).
    let pid_file = config.state_dir.join(PID_FILE);
    let _ = std::fs::write(&pid_file, std::process::id().to_string());
    let paused = store.get(PAUSED_KEY)?.is_some();
    let (control_tx, control_rx) = channel::channel(ReaderControl {
        stop: false,
        paused,
    });
    let abort = Arc::new(Notify::new());
    let progress = Arc::new(Progress::default());
    let board = Arc::new(StatusBoard::new(&config.stream, progress.clone()));
    board.set_paused(paused);
    let metrics_handle = m::install();
    if let Some(addr) = config.metrics_listen {
        http::serve(addr, metrics_handle, board.clone())
            .await
            .map_err(|e| {
                AppError::Target(format!("cannot listen on metrics.listen = {addr}: {e}"))
            })?;
    }

    // Operator commands.
    {
        let store = store.clone();
        let abort = abort.clone();
        let board = board.clone();
        let deadline = options.drain_deadline.unwrap_or(Duration::from_secs(30));
        tokio::spawn(async move {
            let mut stopping = false;
            while let Some(cmd) = commands.recv().await {
                match cmd {
                    Command::Pause => {
                        let _ = store.put(PAUSED_KEY, b"1").and_then(|_| store.flush());
                        control_tx.send_modify(|c| c.paused = true);
                        board.set_paused(true);
                        tracing::info!("paused: reading stops at the next transaction boundary");
                    }
                    Command::Resume => {
                        let _ = store.remove(PAUSED_KEY).and_then(|_| store.flush());
                        control_tx.send_modify(|c| c.paused = false);
                        board.set_paused(false);
                        tracing::info!("resumed");
                    }
                    Command::Reload => {
                        tracing::info!("reload requested (nothing reloadable changed)");
                    }
                    Command::Shutdown if stopping => {
                        tracing::warn!(
                            "second stop request: exiting now; the last committed checkpoint stays"
                        );
                        abort.notify_one();
                    }
                    Command::Shutdown => {
                        stopping = true;
                        board.set_phase("stopping");
                        tracing::info!("stopping: finishing the transaction in flight");
                        control_tx.send_modify(|c| c.stop = true);
                        let abort = abort.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(deadline).await;
                            tracing::warn!(?deadline, "drain deadline passed: exiting now");
                            abort.notify_one();
                        });
                    }
                }
            }
        });
    }

    // Lag gauge and throughput samples.
    let ticker = {
        let board = board.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                board.tick();
            }
        })
    };
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(watch::run(
            config.source.clone(),
            board.clone(),
            move || progress.committed_time(),
        ))
    };

    let result = tokio::select! {
        r = supervise(&config, &options, store.clone(), control_rx, progress, board.clone()) => r,
        _ = abort.notified() => Ok(()),
    };
    ticker.abort();
    watcher.abort();
    let _ = std::fs::remove_file(&pid_file);
    let _ = store.flush();
    if let Err(e) = &result {
        board.error(e.to_string());
        board.set_phase("failed");
    }
    result
}

async fn supervise(
    config: &Config,
    options: &RunOptions,
    store: Arc<SledStore>,
    control: channel::Receiver<ReaderControl>,
    progress: Arc<Progress>,
    board: Arc<StatusBoard>,
) -> Result<(), AppError> {
    let report = preflight::run(config).await;
    for c in &report.checks {
        tracing::info!(check = c.name, ok = c.ok, detail = %c.detail, "preflight");
    }
    if !report.passed() {
        return Err(AppError::Preflight(report.failures()));
    }
    let flavor = report.server.as_ref().map_or(Flavor::MySql, |s| s.flavor);
    let tables = report.tables;

    let client = pg::connect(&config.target)
        .await
        .map_err(|e| AppError::Target(pg::describe(&e)))?;
    client
        .batch_execute(&checkpoint::create_tables_sql(&config.target.ferry_schema))
        .await
        .map_err(|e| AppError::Target(pg::describe(&e)))?;
    let target_cp = checkpoint::read_target(&client, &config.target.ferry_schema, &config.stream)
        .await
        .map_err(|e| AppError::Target(pg::describe(&e)))?;
    let local_cp = store.load_checkpoint(&config.stream)?;
    let resume = checkpoint::reconcile(
        &config.stream,
        target_cp,
        local_cp,
        options.accept_target_rewind,
        &config.state_dir,
    )?;
    let fresh = resume == Resume::Fresh;
    let mut backoff = Duration::from_millis(500);
    let backfill = loop {
        match backfill::run_if_needed(
            config,
            flavor,
            &tables,
            &client,
            fresh,
            &store,
            &board,
            control.clone(),
        )
        .await
        {
            Ok(outcome) => break outcome,
            Err(e) if control.borrow().stop => {
                tracing::info!(reason = %e, "stopped during the backfill");
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                m::error("backfill", true);
                board.error(e.to_string());
                tracing::warn!(error = %e, ?backoff, "backfill interrupted; resuming after the last finished chunks");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                m::error("backfill", false);
                return Err(e.into());
            }
        }
    };
    for t in &tables {
        ddl::ensure_table(&client, t, true)
            .await
            .map_err(|e| AppError::Target(e.to_string()))?;
    }
    let resume = match (&backfill, resume) {
        (Some(outcome), Resume::Fresh) => Resume::From(checkpoint::Checkpoint {
            position: outcome.start.clone(),
            gtid: None,
            source_time: 0,
        }),
        (_, r) => r,
    };
    if let Some(end) = backfill.as_ref().and_then(|b| b.end.clone()) {
        spawn_unique_builder(config.clone(), tables.clone(), progress.clone(), end);
    }
    let mut start = match resume {
        Resume::From(cp) => {
            tracing::info!(position = %cp.position, "resuming from the target's checkpoint");
            StartFrom::Position(cp.position)
        }
        Resume::Fresh => {
            let start = match &config.source.start {
                StartPosition::Current => {
                    let mut conn = connect::connect(&config.source)
                        .await
                        .map_err(|e| AppError::StartPosition(e.to_string()))?;
                    let p = binlog::current_position(&mut conn)
                        .await
                        .map_err(|e| AppError::StartPosition(e.to_string()))?;
                    let _ = conn.disconnect().await;
                    StartFrom::Position(p)
                }
                StartPosition::Position(p) => StartFrom::Position(p.clone()),
                StartPosition::Gtid(g) => StartFrom::Gtid(g.clone()),
            };
            if let StartFrom::Position(p) = &start {
                // Record the start so a restart before the first commit begins at the same place.
                let cp = checkpoint::Checkpoint {
                    position: p.clone(),
                    gtid: None,
                    source_time: 0,
                };
                checkpoint::write_target(&client, &config.target.ferry_schema, &config.stream, &cp)
                    .await
                    .map_err(|e| AppError::Target(pg::describe(&e)))?;
                store.save_checkpoint(&config.stream, &cp)?;
                store.flush()?;
                tracing::info!(position = %p, "new stream: starting");
            }
            start
        }
    };
    drop(client);
    board.set_ready(true);
    board.set_phase("streaming");

    let mut registry = Registry::new(tables);
    backoff = Duration::from_millis(500);
    let mut strict_transactions = 0;
    loop {
        let (tx, rx) = mpsc::channel(config.apply.channel_capacity);
        let client = match pg::connect(&config.target).await {
            Ok(c) => c,
            Err(e) if pg::is_transient(&e) => {
                tracing::warn!(error = %pg::describe(&e), ?backoff, "target unreachable; retrying");
                m::error("sink", true);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => return Err(AppError::Target(pg::describe(&e))),
        };
        let decoder = Decoder::new(
            registry.clone(),
            config.tables.clone(),
            config.types.clone(),
            match &start {
                StartFrom::Position(p) => p.file.clone(),
                StartFrom::Gtid(_) => String::new(),
            },
            None,
            options.skip_ddl.clone(),
        );
        let reader = BinlogReader {
            config: config.source.clone(),
            flavor,
            start: start.clone(),
            decoder,
            selector: config.tables.clone(),
            options: config.types.clone(),
            tx,
            progress: progress.clone(),
            control: control.clone(),
        };
        let applier = Applier {
            client,
            apply: config.apply.clone(),
            stream: config.stream.clone(),
            ferry_schema: config.target.ferry_schema.clone(),
            rx,
            store: store.clone(),
            progress: progress.clone(),
            strict_transactions,
            resumed_from: match &start {
                StartFrom::Position(p) => Some(p.clone()),
                StartFrom::Gtid(_) => None,
            },
        };
        let committed_before = progress.committed_position();
        // Separate tasks so decoding and applying run on different worker threads.
        let read = tokio::spawn(reader.run());
        let apply = tokio::spawn(applier.run());
        let (read, apply) = (join(read).await, join(apply).await);
        progress.reset_pending();
        let was_strict = strict_transactions > 0;
        strict_transactions = 0;
        let stop = control.borrow().stop;
        match (read, apply) {
            (Ok(()), Ok(())) if stop => return Ok(()),
            (
                _,
                Err(SinkError::UniqueConflict {
                    target,
                    message,
                    transactions,
                }),
            ) => {
                if was_strict {
                    return Err(AppError::Sink(SinkError::UniqueConflict {
                        target,
                        message,
                        transactions,
                    }));
                }
                tracing::warn!(%target, %message, transactions, "unique-key conflict in a batched group; replaying those transactions one operation at a time");
                strict_transactions = transactions;
            }
            (_, Err(e)) if !e.is_transient() => {
                m::error("sink", false);
                return Err(e.into());
            }
            (Err(e), _) if !e.is_transient() => {
                m::error("source", false);
                return Err(e.into());
            }
            (read, apply) => {
                let why = match (&read, &apply) {
                    (Err(e), _) => {
                        m::error("source", true);
                        e.to_string()
                    }
                    (_, Err(e)) => {
                        m::error("sink", true);
                        e.to_string()
                    }
                    _ => "the stream ended".to_string(),
                };
                m::restart();
                board.error(why.clone());
                tracing::warn!(error = %why, ?backoff, "transient error; resuming from the checkpoint");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if progress.committed_position() != committed_before {
            backoff = Duration::from_millis(500);
        }
        // Resume from what PostgreSQL has.
        let client = match pg::connect(&config.target).await {
            Ok(c) => c,
            Err(_) => continue,
        };
        if let Ok(Some(cp)) =
            checkpoint::read_target(&client, &config.target.ferry_schema, &config.stream).await
        {
            start = StartFrom::Position(cp.position);
        }
        registry = Registry::new(registry.tables().map(|t| (**t).clone()).collect::<Vec<_>>());
    }
}
