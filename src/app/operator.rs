//! Operator commands (from signals, see [`crate::control`]): pause and resume at transaction
//! boundaries, reload, and the graceful stop with its drain deadline.
//!
//! Guarantees: a pause is stored in the local store with the time it began, so it survives
//! restarts until resumed; if storing it fails the pause still holds for this process, and the
//! failure is logged, counted (`ferry_errors_total{stage="app"}`) and shown by `ferry status`
//! (the pause would not survive a restart) — never silently ignored. A second stop request, or
//! the drain deadline, aborts at once (the open PostgreSQL transaction is rolled back).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::{RunOptions, Shared};
use crate::checkpoint::{CheckpointError, StateStore};
use crate::config::{ApplyConfig, Config};
use crate::control::Command;
use crate::error::ErrorClass;
use crate::logging::LogControl;
use crate::metrics::{self as m, Phase, Stage};
use crate::progress::unix_now;
use crate::reload::{self, Running};

/// Local-store key of the pause flag; the value is the Unix time the pause began.
pub const PAUSED_KEY: &str = "run/paused";

/// When the persisted pause began, if ferry is paused (older stores hold "1": treat it as now).
///
/// # Errors
/// The store cannot be read.
pub fn persisted_pause(store: &dyn StateStore) -> Result<Option<f64>, CheckpointError> {
    Ok(store.get(PAUSED_KEY)?.map(|value| {
        std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|t| *t > 1e9)
            .unwrap_or_else(unix_now)
    }))
}

pub(super) struct Operator {
    shared: Shared,
    apply: watch::Sender<ApplyConfig>,
    abort: Arc<Notify>,
    running: Running,
    config_path: Option<std::path::PathBuf>,
    log: Option<LogControl>,
    drain_deadline: Duration,
    stopping: bool,
}

impl Operator {
    pub(super) fn new(
        config: &Config,
        options: &RunOptions,
        shared: Shared,
        apply: watch::Sender<ApplyConfig>,
        abort: Arc<Notify>,
    ) -> Operator {
        let text = options
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        Operator {
            shared,
            apply,
            abort,
            running: Running::new(config.clone(), &text),
            config_path: options.config_path.clone(),
            log: options.log.clone(),
            drain_deadline: options.drain_deadline.unwrap_or(Duration::from_secs(30)),
            stopping: false,
        }
    }

    pub(super) async fn serve(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(cmd) = commands.recv().await {
            match cmd {
                Command::Pause => self.pause(),
                Command::Resume => self.resume(),
                Command::Reload => self.reload(),
                Command::Shutdown => self.shutdown(),
            }
        }
    }

    fn pause(&self) {
        let now = unix_now();
        let stored = self
            .shared
            .store
            .put(PAUSED_KEY, now.to_string().as_bytes())
            .and_then(|_| self.shared.store.flush());
        self.shared.control.send_modify(|c| c.paused = true);
        self.shared.board.set_paused(true, now);
        self.persisted(stored, "pause");
        tracing::info!("paused: reading stops at the next transaction boundary");
    }

    fn resume(&self) {
        let stored = self
            .shared
            .store
            .remove(PAUSED_KEY)
            .and_then(|_| self.shared.store.flush());
        self.shared.control.send_modify(|c| c.paused = false);
        self.shared.board.set_paused(false, 0.0);
        self.persisted(stored, "resume");
        tracing::info!("resumed");
    }

    /// Surfaces a failure to store the pause state (see the module doc).
    fn persisted(&self, stored: Result<(), CheckpointError>, what: &str) {
        match stored {
            Ok(()) => self.shared.board.set_pause_persisted(None),
            Err(e) => {
                let message = format!(
                    "the {what} could not be stored in the local state ({e}): it holds for this process but a restart would not keep it"
                );
                m::error(Stage::App, ErrorClass::Transient);
                tracing::error!(error = %e, "{message}");
                self.shared.board.error(message.clone());
                self.shared.board.set_pause_persisted(Some(message));
            }
        }
    }

    fn reload(&mut self) {
        if let Some(n) = &self.shared.notifier {
            n.reloading();
        }
        reload::apply(
            &mut self.running,
            self.config_path.as_deref(),
            self.log.as_ref(),
            &self.apply,
        );
        if let Some(n) = &self.shared.notifier {
            n.ready(&self.shared.board.status_line());
        }
    }

    fn shutdown(&mut self) {
        if self.stopping {
            tracing::warn!("second stop request: exiting now; the last committed checkpoint stays");
            self.abort.notify_one();
            return;
        }
        self.stopping = true;
        let board = &self.shared.board;
        board.set_phase(Phase::Stopping);
        board.set_ready(false);
        if let Some(n) = &self.shared.notifier {
            n.stopping(&board.status_line());
        }
        tracing::info!("stopping: finishing the transaction in flight");
        self.shared.control.send_modify(|c| c.stop = true);
        let abort = self.abort.clone();
        let deadline = self.drain_deadline;
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            tracing::warn!(?deadline, "drain deadline passed: exiting now");
            abort.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;
    use crate::progress::Progress;
    use crate::source::binlog::ReaderControl;
    use crate::status::StatusBoard;
    use std::sync::atomic::Ordering;

    fn operator(store: Arc<MemoryStore>) -> (Operator, watch::Receiver<ReaderControl>) {
        let config = Config::from_toml(
            "[source]\nuser = \"u\"\n[target]\nuser = \"u\"\ndatabase = \"d\"\n[tables]\ninclude = [\"a.*\"]\n",
            std::path::Path::new("/tmp/ferry-test.toml"),
        )
        .expect("minimal config");
        let progress = Arc::new(Progress::default());
        let (control, control_rx) = watch::channel(ReaderControl::default());
        let shared = Shared {
            store,
            board: Arc::new(StatusBoard::new("s", progress.clone())),
            progress,
            notifier: None,
            control: Arc::new(control),
            reverse: Arc::default(),
        };
        let (apply, _) = watch::channel(config.apply.clone());
        let op = Operator::new(
            &config,
            &RunOptions::default(),
            shared,
            apply,
            Arc::new(Notify::new()),
        );
        (op, control_rx)
    }

    #[test]
    fn a_pause_is_stored_and_survives_as_the_persisted_state() {
        let store = Arc::new(MemoryStore::default());
        let (op, control) = operator(store.clone());
        op.pause();
        assert!(control.borrow().paused);
        assert!(persisted_pause(store.as_ref()).expect("reads").is_some());
        assert_eq!(op.shared.board.snapshot().pause_not_persisted, None);
        op.resume();
        assert!(!control.borrow().paused);
        assert_eq!(persisted_pause(store.as_ref()).expect("reads"), None);
    }

    #[test]
    fn a_pause_that_cannot_be_stored_still_pauses_and_says_so() {
        let store = Arc::new(MemoryStore::default());
        store.fail_writes.store(true, Ordering::Relaxed);
        let (op, control) = operator(store.clone());
        op.pause();
        assert!(control.borrow().paused, "the pause holds in this process");
        let snap = op.shared.board.snapshot();
        let warning = snap.pause_not_persisted.expect("surfaced in /status");
        assert!(warning.contains("restart would not keep it"), "{warning}");
        assert_eq!(snap.errors, 1);
        assert!(snap
            .last_error
            .expect("last error")
            .contains("could not be stored"));
        let shown = crate::status::render(&op.shared.board.snapshot());
        assert!(shown.contains("not stored"), "{shown}");
        // Once storing works again, the warning clears with the next command.
        store.fail_writes.store(false, Ordering::Relaxed);
        op.resume();
        assert_eq!(op.shared.board.snapshot().pause_not_persisted, None);
    }
}
