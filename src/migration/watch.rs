//! The daemon's side of the migration: a background task of `ferry run` that keeps the
//! migration row and the daemon in step.
//!
//! Every tenth of a second it reads the row (one indexed SELECT), so a freeze is seen at once
//! (the drain, and so the cutover's window, waits for it), and every second — or on every tick
//! while a cutover is under way — it:
//! - reports the daemon's health into the row (phase, paused, lag, pid) — what the cutover
//!   command's preconditions read, from any host;
//! - shows the migration phase in `/status`, `ferry status` and `ferry_migration_phase`;
//! - holds the forward stream once the phase is `switching` or `switched` (PostgreSQL may be
//!   taking writes: nothing more may be read from MySQL), and releases it when the phase is
//!   `replicating` again;
//! - in `frozen`, records `drained` once everything the source wrote before the final position
//!   is committed in PostgreSQL;
//! - undoes a cutover whose command stopped renewing its lease before the point of no return
//!   (killed, or its host lost): the source's prior `read_only` settings are restored and the
//!   phase returns to `replicating`, so MySQL is never left read-only by a vanished command;
//! - likewise undoes a rollback whose command vanished in `rollback_frozen`: the application's
//!   PostgreSQL roles get their recorded state back and the phase returns to `switched`, so
//!   PostgreSQL is never left frozen by a vanished command (in `rollback_drained` it waits:
//!   `ferry rollback` finishes, `ferry rollback --abort` returns).
//!
//! Guarantees: it only changes the phase through conditional transitions naming the attempt
//! ([`super::state::transition`]), so it never races the command; a failure to reach either
//! database is logged at debug and retried on the next tick — replication is never affected.

use std::time::Duration;

use crate::app::Shared;
use crate::config::Config;
use crate::progress::unix_now;
use crate::sink::connect as pg;
use crate::source::connect::{self as my};

use super::state::{self, Change, DaemonReport, Migration};
use super::{freeze, MigrationPhase};

/// How often the row is read.
const TICK: Duration = Duration::from_millis(100);
/// How often the daemon's health is written when no cutover is under way.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Runs for the daemon's lifetime.
pub(crate) async fn run(config: Config, shared: Shared) {
    let schema = config.target.ferry_schema.clone();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut busy = false;
    let mut last_report: Option<std::time::Instant> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        first = false;
        if !client.as_ref().is_some_and(|c| !c.is_closed()) {
            client = pg::connect(&config.target).await.ok();
        }
        let Some(c) = client.as_mut() else {
            tokio::time::sleep(REPORT_EVERY - TICK).await;
            continue;
        };
        let report_due = busy || last_report.map_or(true, |t| t.elapsed() >= REPORT_EVERY);
        let read = if report_due {
            let board = &shared.board;
            let report = DaemonReport {
                phase: if board.paused() {
                    "paused"
                } else {
                    board.phase().label()
                },
                lag_seconds: shared.progress.lag_seconds(unix_now()),
                pid: std::process::id(),
            };
            state::daemon_report(c, &schema, &config.stream, &report)
                .await
                .map(Some)
        } else {
            state::peek(c, &schema, &config.stream).await
        };
        let m = match read {
            Ok(Some(m)) => m,
            Ok(None) => {
                last_report = None;
                continue;
            }
            Err(e) => {
                // Before start-up created ferry's tables, or the target is away: next tick.
                tracing::debug!(error = %pg::describe(&e), "cannot report to the migration row");
                client = None;
                last_report = None;
                tokio::time::sleep(REPORT_EVERY - TICK).await;
                continue;
            }
        };
        if report_due {
            last_report = Some(std::time::Instant::now());
        }
        busy = m.phase.is_frozen()
            || m.phase == MigrationPhase::Switching
            || m.phase.is_rolling_back();
        shared.board.set_migration_phase(m.phase);
        let hold = m.phase.holds_forward_stream();
        shared.control.send_if_modified(|ctl| {
            let changed = ctl.hold != hold;
            ctl.hold = hold;
            changed
        });
        if let Err(e) = step(&config, c, &shared, &m).await {
            tracing::warn!(error = %e, phase = %m.phase, "migration step failed; retrying");
        }
    }
}

/// Does what the phase asks of the daemon.
async fn step(
    config: &Config,
    client: &mut tokio_postgres::Client,
    shared: &Shared,
    m: &Migration,
) -> Result<(), String> {
    let schema = &config.target.ferry_schema;
    if m.phase.is_frozen() && m.lease_expired {
        abandon(config, client, m).await?;
        return Ok(());
    }
    if m.phase == MigrationPhase::RollbackFrozen && m.lease_expired {
        crate::reverse::rollback::undo(
            config,
            client,
            m,
            "undone by the daemon: the rollback command stopped renewing its lease; the application roles have their prior state back",
        )
        .await
        .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if m.phase == MigrationPhase::Frozen {
        if let Some(final_position) = &m.final_position {
            if shared.progress.drained_to(final_position) {
                let moved = state::transition(
                    client,
                    schema,
                    &config.stream,
                    MigrationPhase::Frozen,
                    Some(m.attempt),
                    MigrationPhase::Drained,
                    &Change::default(),
                    "drained: every change before the final position is committed in PostgreSQL",
                )
                .await
                .map_err(|e| pg::describe(&e))?;
                if moved.is_some() {
                    tracing::info!(position = %final_position, "cutover: drained to the final position");
                }
            }
        }
    }
    Ok(())
}

/// Undoes a cutover whose command is gone (see the module doc).
async fn abandon(
    config: &Config,
    client: &mut tokio_postgres::Client,
    m: &Migration,
) -> Result<(), String> {
    if let Some(prior) = m.prior_read_only {
        let mut conn = my::connect(&config.source)
            .await
            .map_err(|e| e.to_string())?;
        freeze::restore(&mut conn, (prior, m.prior_super_read_only))
            .await
            .map_err(|e| format!("restoring read_only on the source: {e}"))?;
        let _ = conn.disconnect().await;
    }
    let moved = state::transition(
        client,
        &config.target.ferry_schema,
        &config.stream,
        m.phase,
        Some(m.attempt),
        MigrationPhase::Replicating,
        &Change {
            release: true,
            ..Change::default()
        },
        "aborted by the daemon: the cutover command stopped renewing its lease; the source is writable again",
    )
    .await
    .map_err(|e| pg::describe(&e))?;
    if moved.is_some() {
        tracing::warn!(
            phase = %m.phase,
            attempt = m.attempt,
            "cutover abandoned (its command stopped renewing its lease): the source's read_only settings are restored and replication continues"
        );
    }
    Ok(())
}
