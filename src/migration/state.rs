//! The migration row of a stream in `<ferry_schema>.migration` — the authority on the phase,
//! beside the checkpoint — and its history in `migration_log`.
//!
//! Guarantees: every phase change is a conditional UPDATE naming the phase (and cutover attempt)
//! it expects, so two writers (the cutover command, the daemon) can never both win a race;
//! each change is logged with its time in `migration_log` in the same transaction; the values
//! an abort needs (the source's prior `read_only` settings) are written before the side effect
//! they undo.

use serde::Serialize;
use tokio_postgres::Client;

use super::MigrationPhase;
use crate::position::BinlogPosition;
use crate::select::quote_ident;

/// The row as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub phase: MigrationPhase,
    pub attempt: i64,
    /// The cutover command's lease has run out (or there is none).
    pub lease_expired: bool,
    pub lease_seconds_left: f64,
    pub prior_read_only: Option<bool>,
    pub prior_super_read_only: Option<bool>,
    pub final_position: Option<BinlogPosition>,
    pub final_gtid: Option<String>,
    pub report: Option<serde_json::Value>,
    /// Seconds since the daemon last reported (None: never).
    pub daemon_age_seconds: Option<f64>,
    pub daemon_phase: Option<String>,
    pub daemon_lag_seconds: Option<f64>,
    pub daemon_pid: Option<i32>,
    /// The roles `ferry rollback` froze, as they were before (see [`crate::reverse::roles`]).
    pub rollback_roles: Option<serde_json::Value>,
}

/// The daemon's health as it reports it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonReport {
    pub phase: &'static str,
    pub lag_seconds: f64,
    pub pid: u32,
}

fn s(schema: &str) -> String {
    quote_ident(schema)
}

/// Creates the stream's row if missing (phase `replicating`).
///
/// # Errors
/// PostgreSQL errors.
pub async fn ensure_row(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "INSERT INTO {}.migration (stream) VALUES ($1) ON CONFLICT (stream) DO NOTHING",
                s(schema)
            ),
            &[&stream],
        )
        .await
        .map(|_| ())
}

const COLUMNS: &str = "phase, attempt, (lease_until IS NULL OR lease_until < clock_timestamp()), \
     COALESCE(extract(epoch FROM lease_until - clock_timestamp()), 0)::float8, \
     prior_read_only, prior_super_read_only, final_file, final_offset, final_gtid, report::text, \
     extract(epoch FROM clock_timestamp() - daemon_seen_at)::float8, daemon_phase, \
     daemon_lag_seconds, daemon_pid, rollback_roles::text";

fn from_row(r: &tokio_postgres::Row) -> Migration {
    let phase: String = r.get(0);
    let final_file: Option<String> = r.get(6);
    let final_offset: Option<i64> = r.get(7);
    Migration {
        // An unknown phase (written by a newer ferry) reads as the safest: frozen-like states
        // are not guessed, so treat it as switched (nothing streams, nothing is undone).
        phase: phase.parse().unwrap_or(MigrationPhase::Switched),
        attempt: r.get(1),
        lease_expired: r.get(2),
        lease_seconds_left: r.get(3),
        prior_read_only: r.get(4),
        prior_super_read_only: r.get(5),
        final_position: final_file
            .zip(final_offset)
            .map(|(f, o)| BinlogPosition::new(f, o as u64)),
        final_gtid: r.get(8),
        report: r
            .get::<_, Option<String>>(9)
            .and_then(|t| serde_json::from_str(&t).ok()),
        daemon_age_seconds: r.get(10),
        daemon_phase: r.get(11),
        daemon_lag_seconds: r.get(12),
        daemon_pid: r.get(13),
        rollback_roles: r
            .get::<_, Option<String>>(14)
            .and_then(|t| serde_json::from_str(&t).ok()),
    }
}

/// Reads the stream's row (creating it when missing).
///
/// # Errors
/// PostgreSQL errors.
pub async fn load(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Migration, tokio_postgres::Error> {
    ensure_row(client, schema, stream).await?;
    let row = client
        .query_one(
            &format!(
                "SELECT {COLUMNS} FROM {}.migration WHERE stream = $1",
                s(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(from_row(&row))
}

/// Reads the stream's row without creating it (`None` when it does not exist yet).
///
/// # Errors
/// PostgreSQL errors.
pub async fn peek(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Option<Migration>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {}.migration WHERE stream = $1",
                s(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The daemon reports its health; returns the row as it is now.
///
/// # Errors
/// PostgreSQL errors.
pub async fn daemon_report(
    client: &Client,
    schema: &str,
    stream: &str,
    report: &DaemonReport,
) -> Result<Migration, tokio_postgres::Error> {
    ensure_row(client, schema, stream).await?;
    let row = client
        .query_one(
            &format!(
                "UPDATE {}.migration SET daemon_seen_at = clock_timestamp(), daemon_phase = $2, \
                 daemon_lag_seconds = $3, daemon_pid = $4 WHERE stream = $1 RETURNING {COLUMNS}",
                s(schema)
            ),
            &[
                &stream,
                &report.phase,
                &report.lag_seconds,
                &(report.pid as i32),
            ],
        )
        .await?;
    Ok(from_row(&row))
}

/// What a phase change sets besides the phase.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Start a new cutover attempt (and take the lease).
    pub new_attempt: bool,
    pub lease_seconds: Option<f64>,
    /// Clear the lease (the cutover ended, either way).
    pub release: bool,
    pub prior_read_only: Option<(bool, Option<bool>)>,
    pub final_position: Option<(BinlogPosition, Option<String>)>,
    pub report: Option<serde_json::Value>,
    /// The roles a rollback is about to freeze, with their prior state.
    pub rollback_roles: Option<serde_json::Value>,
}

/// Moves the stream from `from` to `to` if it is in `from` (and, when given, in cutover
/// `attempt`); logs the change with `event`. Returns the row after the change, or `None` when
/// the row was not in the expected state (someone else moved it).
///
/// # Errors
/// PostgreSQL errors.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    client: &mut Client,
    schema: &str,
    stream: &str,
    from: MigrationPhase,
    attempt: Option<i64>,
    to: MigrationPhase,
    change: &Change,
    event: &str,
) -> Result<Option<Migration>, tokio_postgres::Error> {
    let sc = s(schema);
    let tx = client.transaction().await?;
    let (prior_ro, prior_sro) = match change.prior_read_only {
        Some((ro, sro)) => (Some(ro), sro),
        None => (None, None),
    };
    let report = change.report.as_ref().map(|r| r.to_string());
    let roles = change.rollback_roles.as_ref().map(|r| r.to_string());
    let (final_file, final_offset, final_gtid) = match &change.final_position {
        Some((p, g)) => (Some(p.file.clone()), Some(p.offset as i64), g.clone()),
        None => (None, None, None),
    };
    let row = tx
        .query_opt(
            &format!(
                "UPDATE {sc}.migration SET phase = $2, \
                   attempt = attempt + CASE WHEN $5 THEN 1 ELSE 0 END, \
                   lease_until = CASE WHEN $7 THEN NULL \
                                      WHEN $6::float8 IS NOT NULL THEN clock_timestamp() + make_interval(secs => $6::float8) \
                                      ELSE lease_until END, \
                   prior_read_only = COALESCE($8, CASE WHEN $5 THEN NULL ELSE prior_read_only END), \
                   prior_super_read_only = CASE WHEN $8::boolean IS NOT NULL THEN $9 \
                                                WHEN $5 THEN NULL ELSE prior_super_read_only END, \
                   final_file = CASE WHEN $10::text IS NOT NULL THEN $10 WHEN $5 THEN NULL ELSE final_file END, \
                   final_offset = CASE WHEN $10::text IS NOT NULL THEN $11 WHEN $5 THEN NULL ELSE final_offset END, \
                   final_gtid = CASE WHEN $10::text IS NOT NULL THEN $12 WHEN $5 THEN NULL ELSE final_gtid END, \
                   report = COALESCE($13::text::jsonb, CASE WHEN $5 THEN NULL ELSE report END), \
                   rollback_roles = COALESCE($14::text::jsonb, rollback_roles), \
                   updated_at = clock_timestamp() \
                 WHERE stream = $1 AND phase = $3 AND ($4::bigint IS NULL OR attempt = $4) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &stream,
                &to.label(),
                &from.label(),
                &attempt,
                &change.new_attempt,
                &change.lease_seconds,
                &change.release,
                &prior_ro,
                &prior_sro,
                &final_file,
                &final_offset,
                &final_gtid,
                &report,
                &roles,
            ],
        )
        .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let m = from_row(&row);
    tx.execute(
        &format!(
            "INSERT INTO {sc}.migration_log (stream, phase, event, detail) VALUES ($1, $2, $3, $4::text::jsonb)"
        ),
        &[&stream, &to.label(), &event, &report],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(m))
}

/// Renews the cutover command's lease for `attempt`; false when the attempt is no longer the
/// current one (aborted by the daemon or another command).
///
/// # Errors
/// PostgreSQL errors.
pub async fn renew_lease(
    client: &Client,
    schema: &str,
    stream: &str,
    attempt: i64,
    seconds: f64,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            &format!(
                "UPDATE {}.migration SET lease_until = clock_timestamp() + make_interval(secs => $3::float8) \
                 WHERE stream = $1 AND attempt = $2 AND lease_until IS NOT NULL",
                s(schema)
            ),
            &[&stream, &attempt, &seconds],
        )
        .await?;
    Ok(n == 1)
}

/// Records a step's report without changing the phase.
///
/// # Errors
/// PostgreSQL errors.
pub async fn save_report(
    client: &Client,
    schema: &str,
    stream: &str,
    attempt: i64,
    report: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "UPDATE {}.migration SET report = $3::text::jsonb WHERE stream = $1 AND attempt = $2",
                s(schema)
            ),
            &[&stream, &attempt, &report.to_string()],
        )
        .await
        .map(|_| ())
}

/// Appends an event that changes no phase (a daemon start, a stop on a definite error) to
/// `migration_log`, under the stream's current phase (`replicating` before any cutover), so
/// `ferry report` can list restarts and stops beside the phase changes.
///
/// # Errors
/// PostgreSQL errors.
pub async fn log_event(
    client: &Client,
    schema: &str,
    stream: &str,
    event: &str,
    detail: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    let sc = quote_ident(schema);
    let detail = detail.to_string();
    client
        .execute(
            &format!(
                "INSERT INTO {sc}.migration_log (stream, phase, event, detail) \
                 VALUES ($1, coalesce((SELECT phase FROM {sc}.migration WHERE stream = $1), 'replicating'), $2, $3::text::jsonb)"
            ),
            &[&stream, &event, &detail],
        )
        .await?;
    Ok(())
}
