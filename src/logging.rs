//! Logging setup: a `tracing` subscriber writing to stderr (text or JSON) whose level filter can
//! be swapped while the daemon runs, so SIGHUP can apply a new `log.level`.
//!
//! Guarantees: colours only when stderr is a terminal (journald gets plain text); `RUST_LOG`, when set and valid at start, wins over `log.level` for the whole run
//! (a reload reports that it cannot apply `log.level` instead of silently ignoring it); an invalid
//! new level is refused and the current one stays.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log.level {level:?} is not a valid filter: {message}")]
    BadLevel { level: String, message: String },
    #[error("log.level not applied: RUST_LOG is set and overrides it for this run")]
    OverriddenByEnv,
    #[error("cannot swap the log filter: {0}")]
    Reload(String),
}

/// Handle on the running subscriber's level filter.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` chose the filter at start; `log.level` does not apply.
    from_env: bool,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl")
            .field("from_env", &self.from_env)
            .finish_non_exhaustive()
    }
}

/// Installs the global subscriber; `level` is a tracing filter such as `info` or `ferry=debug`.
pub fn init(level: &str, format: LogFormat) -> LogControl {
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (
            EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let (layer, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(layer);
    // Colours only on a terminal: journald and log files get plain text.
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => registry.with(stderr.json()).init(),
        LogFormat::Text => registry.with(stderr).init(),
    }
    LogControl { handle, from_env }
}

impl LogControl {
    /// Replaces the level filter.
    ///
    /// # Errors
    /// The filter does not parse, `RUST_LOG` overrides it, or the subscriber is gone.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        if self.from_env {
            return Err(LogError::OverriddenByEnv);
        }
        let filter = EnvFilter::try_new(level).map_err(|e| LogError::BadLevel {
            level: level.to_string(),
            message: e.to_string(),
        })?;
        self.handle
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}
