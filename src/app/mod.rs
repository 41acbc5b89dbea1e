//! Wires the daemon together and owns its run state and shutdown — nothing else: the local
//! store and pid file, metrics and the HTTP endpoint, operator commands ([`operator`]), the
//! status ticker, the source-end watcher, the continuous verifier, the systemd watchdog, and
//! the supervisor ([`supervisor`]) that runs start-up ([`crate::startup`]) and the pipeline.
//!
//! Guarantees: nothing is written before preflight passes; a definite error stops the daemon
//! with its message (exit 78); a graceful stop finishes the source transaction in flight,
//! commits it with its checkpoint and returns `Ok`; a second stop request (or the drain
//! deadline) abandons the open PostgreSQL transaction, which the server rolls back, leaving the
//! last checkpoint intact. Under systemd the daemon reports READY=1 once preflight passed and
//! the pipeline starts, keeps a STATUS= line, and pings the watchdog only while the pipeline
//! shows liveness (see [`watchdog`]).

mod operator;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::backfill::BackfillError;
use crate::checkpoint::{CheckpointError, SledStore, StateStore};
use crate::control::Command;
use crate::error::ErrorClass;
use crate::ferry_tables::FerryTablesError;
use crate::http;
use crate::logging::LogControl;
use crate::metrics::{self as m, Phase};
use crate::notify::{self, Notifier};
use crate::pidfile::{PidError, PidFile};
use crate::position::BinlogPosition;
use crate::progress::{unix_now, Progress};
use crate::sink::ddl::DdlError;
use crate::sink::error::SinkError;
use crate::source::binlog::{ReaderControl, SourceError};
use crate::source::connect::ConnectError;
use crate::source::end_watch;
use crate::status::StatusBoard;
use crate::{config::Config, sink::connect::describe};

pub use operator::PAUSED_KEY;

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
        /// Definite when some failure is not just an unreachable server.
        class: ErrorClass,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    PidFile(#[from] PidError),
    #[error(transparent)]
    FerryTables(#[from] FerryTablesError),
    #[error(transparent)]
    Models(#[from] crate::table_models::ModelError),
    #[error("setting up the target ({context}): {}", describe(source))]
    Target {
        context: &'static str,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Ddl(#[from] DdlError),
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
    StartConnect(ConnectError),
    #[error("finding the source's current binlog position: {0}")]
    StartPosition(mysql_async::Error),
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    #[error(transparent)]
    Reverse(#[from] crate::reverse::ReverseError),
}

impl AppError {
    /// Definite errors only the operator can fix (invalid settings, a rewound target, a schema
    /// change, a purged binlog, refused data); transient ones (an unreachable server, a busy
    /// port, a local store still locked) may pass by themselves.
    pub fn class(&self) -> ErrorClass {
        match self {
            AppError::Preflight { class, .. } => *class,
            AppError::Checkpoint(e) => e.class(),
            AppError::PidFile(_) | AppError::Listen { .. } => ErrorClass::Transient,
            AppError::FerryTables(e) => e.class(),
            AppError::Models(e) => e.class(),
            AppError::Target { source, .. } => ErrorClass::of_postgres(source),
            AppError::Ddl(e) => e.class(),
            AppError::Source(e) => e.class(),
            AppError::Sink(e) => e.class(),
            AppError::StartConnect(e) => e.class(),
            AppError::StartPosition(e) => ErrorClass::of_mysql(e),
            AppError::Backfill(e) => e.class(),
            AppError::Reverse(e) => e.class(),
        }
    }

    /// The process exit status for this error: [`EXIT_DEFINITE`] or 1.
    pub fn exit_code(&self) -> u8 {
        match self.class() {
            ErrorClass::Definite => EXIT_DEFINITE,
            ErrorClass::Transient => 1,
        }
    }
}

/// What the stages and the operator share for the daemon's lifetime.
#[derive(Clone)]
pub(crate) struct Shared {
    pub store: Arc<dyn StateStore>,
    pub board: Arc<StatusBoard>,
    pub progress: Arc<Progress>,
    pub notifier: Option<Arc<Notifier>>,
    /// What the reader obeys between transactions (pause, stop, the migration's hold).
    pub control: Arc<watch::Sender<ReaderControl>>,
    /// The reverse stream's progress (switched: PostgreSQL → MySQL).
    pub reverse: Arc<crate::reverse::progress::ReverseProgress>,
}

/// Runs the daemon until stopped or a definite error.
///
/// # Errors
/// Definite errors ([`AppError`]); transient ones are retried internally.
pub async fn run(
    config: Config,
    options: RunOptions,
    commands: mpsc::Receiver<Command>,
) -> Result<(), AppError> {
    let notifier = match Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(error = %e, "systemd notifications disabled");
            None
        }
    };
    let store: Arc<dyn StateStore> = Arc::new(SledStore::open(&config.state_dir)?);
    // Lets `ferry pause` / `ferry resume` find the daemon, and tell a live one from a stale file.
    let pid_file = PidFile::create(&config.state_dir)?;
    let paused_at = operator::persisted_pause(store.as_ref())?;
    let (control_tx, control_rx) = watch::channel(ReaderControl {
        stop: false,
        paused: paused_at.is_some(),
        hold: false,
    });
    let control_tx = Arc::new(control_tx);
    let (apply_tx, apply_rx) = watch::channel(config.apply.clone());
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
    let shared = Shared {
        store: store.clone(),
        board: board.clone(),
        progress: progress.clone(),
        notifier: notifier.clone(),
        control: control_tx.clone(),
        reverse: board.reverse.clone(),
    };
    let watchdog = notify::watchdog_interval()
        .zip(notifier.clone())
        .map(|(every, n)| tokio::spawn(watchdog(n, every, board.clone(), progress.clone())));
    if let Some(addr) = config.metrics_listen {
        http::serve(
            addr,
            metrics_handle,
            board.clone(),
            config.metrics_token.clone(),
        )
        .await
        .map_err(|source| AppError::Listen { addr, source })?;
    }
    let operator =
        operator::Operator::new(&config, &options, shared.clone(), apply_tx, abort.clone());
    tokio::spawn(operator.serve(commands));
    let migration = tokio::spawn(crate::migration::watch::run(config.clone(), shared.clone()));

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
        tokio::spawn(end_watch::run(
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

    let pipeline = supervisor::Supervisor {
        shared: shared.clone(),
        control: control_rx,
        apply: apply_rx,
    };
    let result = tokio::select! {
        r = pipeline.run(&config, &options) => r,
        _ = abort.notified() => Ok(()),
    };
    ticker.abort();
    watcher.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    verifier.abort();
    migration.abort();
    drop(pid_file);
    let _ = store.flush();
    if let Err(e) = &result {
        board.error(e.to_string());
        board.set_phase(Phase::Failed);
        if let Some(n) = &notifier {
            n.status(&format!("failed: {e}"));
        }
    }
    result
}

/// Pings systemd's watchdog every `every` (half of `WATCHDOG_USEC`) while the daemon shows
/// liveness: always before streaming (preflight, backfill) and while stopping or paused; while
/// streaming only when the pipeline did work or heard the source's heartbeat while idle within
/// `WATCHDOG_USEC` ([`Progress::is_live`]). A wedged pipeline (a hung statement, a stuck
/// channel) stops the pings, and systemd kills and restarts it.
async fn watchdog(
    notifier: Arc<Notifier>,
    every: Duration,
    board: Arc<StatusBoard>,
    progress: Arc<Progress>,
) {
    let window = every * 2;
    let mut tick = tokio::time::interval(every);
    let mut wedged_since: Option<f64> = None;
    loop {
        tick.tick().await;
        let live = board.phase() != Phase::Streaming || board.paused() || progress.is_live(window);
        if live {
            if let Some(since) = wedged_since.take() {
                tracing::info!(
                    after_seconds = unix_now() - since,
                    "the pipeline shows liveness again; watchdog pings resume"
                );
            }
            notifier.watchdog();
        } else if wedged_since.is_none() {
            wedged_since = Some(unix_now());
            tracing::error!(
                ?window,
                "the pipeline shows no liveness (no statement finished, no heartbeat while idle): not pinging the watchdog, so systemd restarts ferry"
            );
        }
    }
}

/// Records in `migration_log` that the daemon stopped on a definite error (best effort, at most
/// a few seconds: the target may be what failed), for `ferry report`'s incidents.
pub async fn record_stop(
    target: &crate::config::TargetConfig,
    stream: &str,
    error: &str,
    exit: u8,
) {
    let attempt = async {
        let client = crate::sink::connect::connect(target).await.ok()?;
        crate::migration::state::log_event(
            &client,
            &target.ferry_schema,
            stream,
            "stopped",
            &serde_json::json!({"error": error, "exit_status": exit, "pid": std::process::id()}),
        )
        .await
        .ok()
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await;
}
