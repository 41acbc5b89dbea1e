//! Logging setup: a `tracing` subscriber writing to stderr (text or JSON) whose level filter can
//! be swapped while the daemon runs, so SIGHUP can apply a new `log.level`.
//!
//! Guarantees: row values stay out of the log at every level but TRACE: the PostgreSQL driver
//! logs statement parameters at DEBUG, so its `tokio_postgres::query` target is held at INFO
//! unless the filter names `tokio_postgres` itself. Colours only when stderr is a terminal
//! (journald gets plain text); `RUST_LOG`, when set and valid at start, wins over `log.level` for the whole run
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
    let env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, from_env) = match env.and_then(|e| EnvFilter::try_new(guard(&e)).ok()) {
        Some(f) => (f, true),
        None => (
            EnvFilter::try_new(guard(level)).unwrap_or_else(|_| EnvFilter::new(guard("info"))),
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

/// Holds the driver target that logs statement parameters (row values) at INFO, unless the
/// filter mentions `tokio_postgres` (an explicit choice).
fn guard(filter: &str) -> String {
    if filter.trim().is_empty() || filter.contains("tokio_postgres") {
        filter.to_string()
    } else {
        format!("{filter},tokio_postgres::query=info")
    }
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
        let filter = EnvFilter::try_new(guard(level)).map_err(|e| LogError::BadLevel {
            level: level.to_string(),
            message: e.to_string(),
        })?;
        self.handle
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_values_stay_out_of_debug_logs_unless_asked_for() {
        assert_eq!(guard("debug"), "debug,tokio_postgres::query=info");
        assert_eq!(
            guard("info,ferry=debug"),
            "info,ferry=debug,tokio_postgres::query=info"
        );
        assert_eq!(
            guard("debug,tokio_postgres=trace"),
            "debug,tokio_postgres=trace"
        );
        for f in ["debug", "warn", "info,ferry=trace"] {
            EnvFilter::try_new(guard(f)).expect("guarded filters parse");
        }
    }
}
