//! The lease a lifecycle command (`ferry cutover`, `ferry rollback`) holds on the migration row
//! while it works, and the fault-injection pause the crash tests use.
//!
//! Guarantees: the lease is renewed every second for [`LEASE_SECONDS`] while the [`Lease`]
//! value lives (dropping it stops the renewal, so a killed command's lease runs out within
//! that time); [`Lease::lost`] turns true as soon as a renewal finds the attempt no longer
//! current or the lease released (aborted by another command or by the daemon), so the command
//! stops before its next side effect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::state;
use super::MigrationPhase;
use crate::config::Config;
use crate::sink::connect as pg;

/// A command's lease: renewed every second, this long each time.
pub const LEASE_SECONDS: f64 = 10.0;

/// Renews the lease in the background; `lost` is set when the attempt is no longer current.
pub struct Lease {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Lease {
    /// Starts renewing the lease of `attempt` on its own connection.
    ///
    /// # Errors
    /// Connecting to PostgreSQL.
    pub async fn start(config: &Config, attempt: i64) -> Result<Lease, tokio_postgres::Error> {
        let client = pg::connect(&config.target).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let schema = config.target.ferry_schema.clone();
        let stream = config.stream.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match state::renew_lease(&client, &schema, &stream, attempt, LEASE_SECONDS).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %pg::describe(&e), "cannot renew the command's lease")
                    }
                }
            }
        });
        Ok(Lease { task, lost })
    }

    /// The attempt was aborted (or released) by someone else.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fault injection for the crash tests: `FERRY_FAULT_PAUSE=<phase>:<seconds>` makes the
/// command wait that long once it has reached `phase` (its lease is still renewed), so a test
/// can kill it (or the daemon) in a phase that otherwise lasts milliseconds. Unset, it does
/// nothing.
pub async fn fault_pause(phase: MigrationPhase) {
    let Ok(v) = std::env::var("FERRY_FAULT_PAUSE") else {
        return;
    };
    let Some((p, seconds)) = v.split_once(':') else {
        return;
    };
    if let (true, Ok(s)) = (p == phase.label(), seconds.parse::<f64>()) {
        tracing::warn!(%phase, seconds = s, "FERRY_FAULT_PAUSE: holding the command");
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }
}
