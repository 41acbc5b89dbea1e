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
//!
//! Operator commands: pause/resume (persisted in the local store with the time the pause began,
//! so a pause survives restarts), reload (see [`crate::reload`]), stop. Under systemd the daemon
//! reports READY=1 once preflight passed and the pipeline starts, pings the watchdog, and keeps a
//! STATUS= line with phase, lag and checkpoint ([`crate::notify`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch as channel;
use tokio::sync::{mpsc, Notify};

use crate::backfill;
use crate::checkpoint::{self, CheckpointError, Resume, SledStore, StateStore};
use crate::config::{ApplyConfig, Config, StartPosition};
use crate::control::Command;
use crate::http;
use crate::logging::LogControl;
use crate::metrics as m;
use crate::notify::{self, Notifier};
use crate::position::BinlogPosition;
use crate::progress::{unix_now, Progress};
use crate::reload::{self, Running};
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
    /// The config file, re-read on SIGHUP (`None`: reload has nothing to read).
    pub config_path: Option<PathBuf>,
    /// The log filter a reload may change (`None`: the caller set up logging itself).
    pub log: Option<LogControl>,
}

/// Exit status for definite errors: only the operator can fix them, so restarting cannot help
/// (`RestartPreventExitStatus=78` in the systemd unit). 78 is `EX_CONFIG` of sysexits.h.
pub const EXIT_DEFINITE: u8 = 78;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("preflight failed:\n{failures}")]
    Preflight {
        failures: String,
        /// Some failure is not just an unreachable server.
        definite: bool,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("setting up the target: {0}")]
    Target(String),
    #[error("the target is unreachable: {0}")]
    TargetUnreachable(String),
    #[error("cannot listen on metrics.listen = {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("finding the source's current binlog position: {0}")]
    StartPosition(String),
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
}

impl AppError {
    /// Whether only the operator can fix it (the daemon should not be restarted automatically):
    /// invalid settings, a rewound target, a schema change, a purged binlog, refused data. An
    /// unreachable server, a busy port or a local store that is still locked may pass by itself.
    pub fn is_definite(&self) -> bool {
        match self {
            AppError::Preflight { definite, .. } => *definite,
            AppError::Checkpoint(CheckpointError::Store { .. } | CheckpointError::Postgres(_)) => {
                false
            }
            AppError::Checkpoint(_) => true,
            AppError::Target(_) => true,
            AppError::TargetUnreachable(_) | AppError::Listen { .. } => false,
            AppError::Source(e) => !e.is_transient(),
            AppError::Sink(e) => !e.is_transient(),
            AppError::StartPosition(_) => false,
            AppError::Backfill(e) => !e.is_transient(),
        }
    }

    /// The process exit status for this error: [`EXIT_DEFINITE`] or 1.
    pub fn exit_code(&self) -> u8 {
        if self.is_definite() {
            EXIT_DEFINITE
        } else {
            1
        }
    }
}

fn target_err(e: &tokio_postgres::Error) -> AppError {
    if pg::is_transient(e) {
        AppError::TargetUnreachable(pg::describe(e))
    } else {
        AppError::Target(pg::describe(e))
    }
}

/// Local-store key of the pause flag; the value is the Unix time the pause began.
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

/// When the persisted pause began (older stores hold "1": treat it as now).
fn paused_since(value: &[u8]) -> f64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| *t > 1e9)
        .unwrap_or_else(unix_now)
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
    let notifier = match Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "systemd notifications disabled");
            None
        }
    };
    // The watchdog runs from the first moment: preflight against a slow server may take a while.
    let watchdog = match (&notifier, notify::watchdog_interval()) {
        (Some(n), Some(every)) => {
            let n = n.clone();
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    n.watchdog();
                }
            }))
        }
        _ => None,
    };
    let store = Arc::new(SledStore::open(&config.state_dir)?);
    // The pid file lets `ferry pause` / `ferry resume` find the daemon (sled's lock already
    // guarantees one daemon per state directory).
    let pid_file = config.state_dir.join(PID_FILE);
    let _ = std::fs::write(&pid_file, std::process::id().to_string());
    let paused_at = store.get(PAUSED_KEY)?.map(|v| paused_since(&v));
    let (control_tx, control_rx) = channel::channel(ReaderControl {
        stop: false,
        paused: paused_at.is_some(),
    });
    let (apply_tx, apply_rx) = channel::channel(config.apply.clone());
    let abort = Arc::new(Notify::new());
    // Before anything records a metric: installing sets every gauge to its initial value.
    let metrics_handle = m::install();
    let progress = Arc::new(Progress::default());
    let board = Arc::new(StatusBoard::new(&config.stream, progress.clone()));
    if let Some(since) = paused_at {
        board.set_paused(true, since);
        tracing::info!("paused (since before this start): resume with SIGUSR2 or `ferry resume`");
    } else {
        board.set_paused(false, 0.0);
    }
    if let Some(addr) = config.metrics_listen {
        http::serve(addr, metrics_handle, board.clone())
            .await
            .map_err(|source| AppError::Listen { addr, source })?;
    }

    // Operator commands.
    {
        let store = store.clone();
        let abort = abort.clone();
        let board = board.clone();
        let notifier = notifier.clone();
        let deadline = options.drain_deadline.unwrap_or(Duration::from_secs(30));
        let text = options
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let mut running = Running::new(config.clone(), &text);
        let config_path = options.config_path.clone();
        let log = options.log.clone();
        tokio::spawn(async move {
            let mut stopping = false;
            while let Some(cmd) = commands.recv().await {
                match cmd {
                    Command::Pause => {
                        let now = unix_now();
                        let _ = store
                            .put(PAUSED_KEY, now.to_string().as_bytes())
                            .and_then(|_| store.flush());
                        control_tx.send_modify(|c| c.paused = true);
                        board.set_paused(true, now);
                        tracing::info!("paused: reading stops at the next transaction boundary");
                    }
                    Command::Resume => {
                        let _ = store.remove(PAUSED_KEY).and_then(|_| store.flush());
                        control_tx.send_modify(|c| c.paused = false);
                        board.set_paused(false, 0.0);
                        tracing::info!("resumed");
                    }
                    Command::Reload => {
                        if let Some(n) = &notifier {
                            n.reloading();
                        }
                        reload_config(
                            &mut running,
                            config_path.as_deref(),
                            log.as_ref(),
                            &apply_tx,
                        );
                        if let Some(n) = &notifier {
                            n.ready(&board.status_line());
                        }
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
                        board.set_ready(false);
                        if let Some(n) = &notifier {
                            n.stopping(&board.status_line());
                        }
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

    // Lag gauge, throughput samples and systemd's status line.
    let ticker = {
        let board = board.clone();
        let notifier = notifier.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                board.tick();
                n += 1;
                if let (Some(notifier), true) = (&notifier, n % 10 == 0) {
                    notifier.status(&board.status_line());
                }
            }
        })
    };
    let watcher = {
        let progress = progress.clone();
        tokio::spawn(watch::run(
            config.source.clone(),
            config.tables.clone(),
            board.clone(),
            move || progress.committed_time(),
        ))
    };

    let verifier = tokio::spawn(crate::verify::continuous::run(
        config.clone(),
        board.clone(),
    ));

    let pipeline = Pipeline {
        store: store.clone(),
        control: control_rx,
        apply: apply_rx,
        progress,
        board: board.clone(),
        notifier: notifier.clone(),
    };
    let result = tokio::select! {
        r = supervise(&config, &options, pipeline) => r,
        _ = abort.notified() => Ok(()),
    };
    ticker.abort();
    watcher.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    verifier.abort();
    let _ = std::fs::remove_file(&pid_file);
    let _ = store.flush();
    if let Err(e) = &result {
        board.error(e.to_string());
        board.set_phase("failed");
        if let Some(n) = &notifier {
            n.status(&format!("failed: {e}"));
        }
    }
    result
}

/// SIGHUP: re-reads the config file and applies what can change safely (see [`crate::reload`]).
fn reload_config(
    running: &mut Running,
    path: Option<&std::path::Path>,
    log: Option<&LogControl>,
    apply_tx: &channel::Sender<ApplyConfig>,
) {
    let Some(path) = path else {
        tracing::warn!("reload requested, but ferry was started without a config file to re-read");
        return;
    };
    let plan = match running.reload(path) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "reload: the config file is not valid; nothing changed");
            return;
        }
    };
    let mut applied = Vec::new();
    for key in &plan.applied {
        if key == "log.level" {
            let level = &running.config.log_level;
            match log.map(|l| l.set_level(level)) {
                Some(Ok(())) => applied.push(format!("log.level = {level:?}")),
                Some(Err(e)) => tracing::warn!(error = %e, "reload: log.level not applied"),
                None => {
                    tracing::warn!("reload: log.level not applied (logging is not reloadable here)")
                }
            }
        }
    }
    let apply = &running.config.apply;
    for key in &plan.applied {
        match key.as_str() {
            "apply.batch_rows" => applied.push(format!("{key} = {}", apply.batch_rows)),
            "apply.group_max_rows" => applied.push(format!("{key} = {}", apply.group_max_rows)),
            "apply.group_max_wait_ms" => {
                applied.push(format!("{key} = {}", apply.group_max_wait.as_millis()))
            }
            _ => {}
        }
    }
    if plan.applied.iter().any(|k| k.starts_with("apply.")) {
        apply_tx.send_replace(apply.clone());
    }
    if applied.is_empty() {
        tracing::info!("reload: no reloadable key changed");
    } else {
        tracing::info!(changed = %applied.join(", "), "reloaded configuration");
    }
    if !plan.need_restart.is_empty() {
        tracing::warn!(
            keys = %plan.need_restart.join(", "),
            reloadable = %reload::RELOADABLE.join(", "),
            "reload: these changed keys take effect only after a restart; running with their old values"
        );
    }
}

/// What the supervised pipeline shares with the rest of the daemon.
struct Pipeline {
    store: Arc<SledStore>,
    control: channel::Receiver<ReaderControl>,
    /// Current apply tuning (changed by reloads).
    apply: channel::Receiver<ApplyConfig>,
    progress: Arc<Progress>,
    board: Arc<StatusBoard>,
    notifier: Option<Arc<Notifier>>,
}

async fn supervise(
    config: &Config,
    options: &RunOptions,
    pipeline: Pipeline,
) -> Result<(), AppError> {
    let Pipeline {
        store,
        control,
        apply,
        progress,
        board,
        notifier,
    } = pipeline;
    let report = preflight::run(config).await;
    for c in &report.checks {
        tracing::info!(check = c.name, ok = c.ok, detail = %c.detail, "preflight");
    }
    if !report.passed() {
        return Err(AppError::Preflight {
            failures: report.failures(),
            definite: report.has_definite_failure(),
        });
    }
    let flavor = report.server.as_ref().map_or(Flavor::MySql, |s| s.flavor);
    let tables = report.tables;
    // Every stage from here plans columns with the options preflight resolved (spatial mapping).
    let config = &Config {
        types: report.types,
        ..config.clone()
    };

    let client = pg::connect(&config.target)
        .await
        .map_err(|e| target_err(&e))?;
    crate::ferry_tables::ensure(&client, &config.target.ferry_schema)
        .await
        .map_err(|e| match e.class() {
            crate::error::ErrorClass::Transient => AppError::TargetUnreachable(e.to_string()),
            crate::error::ErrorClass::Definite => AppError::Target(e.to_string()),
        })?;
    let target_cp = checkpoint::read_target(&client, &config.target.ferry_schema, &config.stream)
        .await
        .map_err(|e| target_err(&e))?;
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
        ddl::ensure_table(&client, t, true).await.map_err(|e| {
            if e.is_transient() {
                AppError::TargetUnreachable(e.to_string())
            } else {
                AppError::Target(e.to_string())
            }
        })?;
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
            progress.resume_at(&cp.position, cp.source_time);
            if let Ok(seq) = cp.position.file_sequence() {
                m::checkpoint(seq, cp.position.offset, cp.source_time);
            }
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
                    .map_err(|e| target_err(&e))?;
                store.save_checkpoint(&config.stream, &cp)?;
                store.flush()?;
                progress.resume_at(p, 0);
                if let Ok(seq) = p.file_sequence() {
                    m::checkpoint(seq, p.offset, 0);
                }
                tracing::info!(position = %p, "new stream: starting");
            }
            start
        }
    };
    drop(client);
    board.set_ready(true);
    board.set_phase("streaming");
    tracing::info!(paused = board.paused(), "preflight passed; streaming");
    if let Some(n) = &notifier {
        n.ready(&board.status_line());
    }

    let hub = Arc::new(backfill::recopy::RecopyHub::default());
    tokio::spawn(backfill::recopy::serve(
        config.clone(),
        flavor,
        tables.clone(),
        hub.clone(),
        progress.clone(),
        board.clone(),
    ));
    let mut registry = Registry::new(tables);
    backoff = Duration::from_millis(500);
    let mut strict_transactions = 0;
    loop {
        let (tx, rx) = mpsc::channel(config.apply.channel_capacity);
        let (recopy_tx, recopy_rx) = mpsc::channel(8);
        let budget = crate::change::RowBudget::new(config.apply.max_rows_in_flight);
        hub.set(recopy_tx);
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
        // Every run of the pipeline starts from what PostgreSQL has: after a restart its
        // checkpoint is the only position that matches its rows. If it cannot be read, nothing
        // starts (an older position would apply changes twice).
        match checkpoint::read_target(&client, &config.target.ferry_schema, &config.stream).await {
            Ok(Some(cp)) => start = StartFrom::Position(cp.position),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %pg::describe(&e), ?backoff, "cannot read the checkpoint from the target; retrying");
                m::error("sink", true);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        }
        let decoder = Decoder::new(
            registry.clone(),
            config.tables.clone(),
            config.types.clone(),
            match &start {
                StartFrom::Position(p) => p.file.clone(),
                StartFrom::Gtid(_) => String::new(),
            },
            match &start {
                StartFrom::Gtid(g) => Some(g.clone()),
                StartFrom::Position(_) => None,
            },
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
            recopy: recopy_rx,
            budget: budget.clone(),
        };
        let applier = Applier {
            client,
            apply: apply.clone(),
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
            budget,
        };
        let committed_before = progress.committed_position();
        // Separate tasks so decoding and applying run on different worker threads.
        let read = tokio::spawn(reader.run());
        let apply = join(tokio::spawn(applier.run())).await;
        if apply.is_err() {
            // A reader waiting on a quiet source would not notice the applier is gone.
            read.abort();
        }
        let read = match read.await {
            Ok(v) => v,
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
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
        registry = Registry::new(registry.tables().map(|t| (**t).clone()).collect::<Vec<_>>());
    }
}
