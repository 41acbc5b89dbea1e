//! Start-up: everything between "the daemon runs" and "the pipeline may stream" — preflight,
//! ferry's own tables, checkpoint reconciliation, the backfill (retried in process after
//! transient errors), the target tables, and the position streaming starts from.
//!
//! Guarantees: nothing is written before preflight passes; the resume position is the target's
//! checkpoint unless reconciliation refuses it (a rewound or reset target); a new stream records
//! its start position before streaming, so a crash before the first commit restarts at the same
//! place; a backfill interrupted by a lost connection on either side resumes after each table's
//! last finished chunk on a fresh connection, without restarting the process.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::app::AppError;
use crate::backfill::{self, BackfillError};
use crate::backoff::Backoff;
use crate::checkpoint::{self, Checkpoint, Resume, StateStore};
use crate::config::{Config, StartPosition};
use crate::error::ErrorClass;
use crate::metrics::{self as m, Stage};
use crate::position::BinlogPosition;
use crate::preflight;
use crate::progress::Progress;
use crate::schema::Table;
use crate::sink::{connect as pg, ddl};
use crate::source::binlog::{self, ReaderControl, StartFrom};
use crate::source::connect::{self, Flavor};
use crate::status::StatusBoard;

/// What start-up hands the supervisor.
pub struct Prepared {
    /// The configuration with the type options preflight resolved against the target
    /// (`types.spatial`): every later stage plans columns with these.
    pub config: Config,
    pub flavor: Flavor,
    pub tables: Vec<Table>,
    /// Where the first pipeline run starts (each run re-reads the target's checkpoint).
    pub start: StartFrom,
    /// The backfill's end position while its unique constraints still wait for the stream to
    /// pass it.
    pub unique_after: Option<BinlogPosition>,
}

/// The daemon's pieces start-up reads and updates.
pub struct Context<'a> {
    pub store: &'a Arc<dyn StateStore>,
    pub board: &'a Arc<StatusBoard>,
    pub progress: &'a Arc<Progress>,
    pub control: &'a watch::Receiver<ReaderControl>,
    pub accept_target_rewind: bool,
}

fn target_err(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AppError {
    move |source| AppError::Target { context, source }
}

/// Runs start-up; `Ok(None)` when a stop was requested during the backfill.
///
/// # Errors
/// Definite failures, and transient ones before the backfill (the process may be restarted).
pub async fn prepare(config: &Config, ctx: Context<'_>) -> Result<Option<Prepared>, AppError> {
    let report = preflight::run(config).await;
    for c in &report.checks {
        tracing::info!(check = c.name, ok = c.ok, detail = %c.detail, "preflight");
    }
    if !report.passed() {
        let class = if report.has_definite_failure() {
            ErrorClass::Definite
        } else {
            ErrorClass::Transient
        };
        return Err(AppError::Preflight {
            failures: report.failures(),
            class,
        });
    }
    let flavor = report.server.as_ref().map_or(Flavor::MySql, |s| s.flavor);
    let tables = report.tables;
    let keyless: Vec<String> = tables
        .iter()
        .filter(|t| !t.has_key())
        .map(|t| t.source.to_string())
        .collect();
    if !keyless.is_empty() {
        tracing::warn!(tables = ?keyless, "tables without a primary key are replicated with the whole row as their identity: each is copied in one long consistent snapshot (no resume mid-table), every update or delete on the target looks one equal row up (a scan unless an index covers it), and a re-copy (`ferry backfill --table`) holds the stream for as long as the table's copy takes. Add a primary key on the source where you can");
    }
    for t in &tables {
        let relaxed = t.relaxed_not_null();
        if !relaxed.is_empty() {
            tracing::info!(table = %t.source, columns = ?relaxed, "NOT NULL date columns are nullable on the target: types.zero_date = \"null\" writes NULL for their zero dates");
        }
    }
    let config = Config {
        types: report.types,
        ..config.clone()
    };

    let client = pg::connect(&config.target)
        .await
        .map_err(target_err("connecting"))?;
    crate::ferry_tables::ensure(&client, &config.target.ferry_schema).await?;
    // For `ferry report`'s incidents: each start of the pipeline (the same pid again is an
    // in-process restart after a transient error).
    if let Err(e) = crate::migration::state::log_event(
        &client,
        &config.target.ferry_schema,
        &config.stream,
        "started",
        &serde_json::json!({"pid": std::process::id(), "version": env!("CARGO_PKG_VERSION")}),
    )
    .await
    {
        tracing::warn!(error = %pg::describe(&e), "cannot record the start in migration_log");
    }
    let target_cp = checkpoint::read_target(&client, &config.target.ferry_schema, &config.stream)
        .await
        .map_err(target_err("reading the checkpoint"))?;
    let local_cp = ctx.store.load_checkpoint(&config.stream)?;
    let resume = checkpoint::reconcile(
        &config.stream,
        target_cp,
        local_cp,
        ctx.accept_target_rewind,
        &config.state_dir,
    )?;
    let fresh = resume == Resume::Fresh;
    drop(client);
    let Some(backfill) = backfill_with_retries(&config, flavor, &tables, fresh, &ctx).await? else {
        return Ok(None);
    };
    let client = pg::connect(&config.target)
        .await
        .map_err(target_err("connecting"))?;
    // Decode with the definitions the checkpoint was written with (schema changes ahead in
    // the binlog are carried when the stream reaches them).
    let position = match &resume {
        Resume::From(cp) => cp.position.to_string(),
        _ => backfill
            .as_ref()
            .map_or_else(|| "start".to_string(), |b| b.start.to_string()),
    };
    let tables = crate::table_models::reconcile(
        &client,
        &config.target.ferry_schema,
        &config.stream,
        tables,
        &config.types,
        &position,
    )
    .await?;
    if !fresh {
        copy_tables_new_to_the_stream(&config, &client, &tables).await?;
    }
    for t in &tables {
        ddl::ensure_table(&client, t, true).await?;
    }
    let resume = match (&backfill, resume) {
        (Some(outcome), Resume::Fresh) => Resume::From(Checkpoint {
            position: outcome.start.clone(),
            gtid: None,
            source_time: 0,
        }),
        (_, r) => r,
    };
    let start = start_position(&config, &client, resume, &ctx).await?;
    Ok(Some(Prepared {
        unique_after: backfill.and_then(|b| b.end),
        config,
        flavor,
        tables,
        start,
    }))
}

/// A stream that already has a checkpoint meets a table whose PostgreSQL table does not exist:
/// it was added to `tables.include` (or dropped on the target) after the stream started. Its
/// existing rows would never arrive through the binlog, so a re-copy is requested for it
/// (served once streaming runs) before the empty table is created — or, with the backfill
/// disabled, a warning names the command that copies them. Requested once: a pending request
/// for the table is reused after a crash.
async fn copy_tables_new_to_the_stream(
    config: &Config,
    client: &Client,
    tables: &[Table],
) -> Result<(), AppError> {
    let schema = &config.target.ferry_schema;
    for t in tables {
        if ddl::exists(client, t)
            .await
            .map_err(target_err("checking the target tables"))?
        {
            continue;
        }
        let name = t.source.to_string();
        if config.backfill.stream_only_tables.contains(&name) {
            tracing::info!(table = %name, "table is new to this stream and listed in backfill.stream_only_tables: not copied, its rows arrive through the binlog");
            continue;
        }
        if !config.backfill.enabled {
            tracing::warn!(table = %name, "table is new to this stream and backfill.enabled = false: its existing rows are not copied; copy them with `ferry backfill --table {name}`");
            continue;
        }
        let pending = client
            .query_opt(
                &format!(
                    "SELECT id FROM {}.backfill_requests WHERE stream = $1 AND source_table = $2 \
                     AND state IN ('requested', 'running') ORDER BY id LIMIT 1",
                    crate::select::quote_ident(schema)
                ),
                &[&config.stream, &name],
            )
            .await
            .map_err(target_err("reading the re-copy requests"))?;
        let id: i64 = match pending {
            Some(row) => row.get(0),
            None => crate::backfill::recopy::request(client, schema, &config.stream, &name)
                .await
                .map_err(target_err("requesting the copy of a new table"))?,
        };
        tracing::info!(table = %name, request = id, "table is new to this stream (added to tables.include after it started): copying its existing rows while streaming (`ferry status` shows the progress)");
    }
    Ok(())
}

/// Runs (or resumes) the backfill, retrying transient failures on a fresh target connection.
/// `Ok(None)`: stopped on request; `Ok(Some(None))`: no backfill needed.
async fn backfill_with_retries(
    config: &Config,
    flavor: Flavor,
    tables: &[Table],
    fresh: bool,
    ctx: &Context<'_>,
) -> Result<Option<Option<backfill::Outcome>>, AppError> {
    let mut backoff = Backoff::default();
    loop {
        let attempt = async {
            let client = pg::connect(&config.target)
                .await
                .map_err(BackfillError::target("connecting"))?;
            backfill::run_if_needed(
                config,
                flavor,
                tables,
                &client,
                fresh,
                ctx.store.as_ref(),
                ctx.board,
                ctx.control.clone(),
            )
            .await
        };
        match attempt.await {
            Ok(outcome) => return Ok(Some(outcome)),
            Err(e) if ctx.control.borrow().stop => {
                tracing::info!(reason = %e, "stopped during the backfill");
                return Ok(None);
            }
            Err(e) if e.class().is_transient() => {
                m::error(Stage::Backfill, ErrorClass::Transient);
                ctx.board.error(e.to_string());
                tracing::warn!(error = %e, retry_in = ?backoff.current(), "backfill interrupted; resuming after the last finished chunks");
                backoff.wait().await;
            }
            Err(e) => {
                m::error(Stage::Backfill, ErrorClass::Definite);
                return Err(e.into());
            }
        }
    }
}

/// Where streaming starts: the checkpoint, or — for a new stream — the configured start, which
/// is recorded as the checkpoint first.
async fn start_position(
    config: &Config,
    client: &Client,
    resume: Resume,
    ctx: &Context<'_>,
) -> Result<StartFrom, AppError> {
    if let Resume::From(cp) = resume {
        tracing::info!(position = %cp.position, "resuming from the target's checkpoint");
        ctx.progress.resume_at(&cp.position, cp.source_time);
        if let Ok(seq) = cp.position.file_sequence() {
            m::checkpoint(seq, cp.position.offset, cp.source_time);
        }
        return Ok(StartFrom::Position(cp.position));
    }
    let p = match &config.source.start {
        StartPosition::Current => {
            let mut conn = connect::connect(&config.source)
                .await
                .map_err(AppError::StartConnect)?;
            let p = binlog::current_position(&mut conn)
                .await
                .map_err(AppError::StartPosition)?;
            let _ = conn.disconnect().await;
            p
        }
        StartPosition::Position(p) => p.clone(),
        StartPosition::Gtid(g) => return Ok(StartFrom::Gtid(g.clone())),
    };
    // Recorded so a restart before the first commit begins at the same place.
    let cp = Checkpoint {
        position: p.clone(),
        gtid: None,
        source_time: 0,
    };
    checkpoint::write_target(client, &config.target.ferry_schema, &config.stream, &cp)
        .await
        .map_err(target_err("recording the start position"))?;
    ctx.store.save_checkpoint(&config.stream, &cp)?;
    ctx.store.flush()?;
    ctx.progress.resume_at(&p, 0);
    if let Ok(seq) = p.file_sequence() {
        m::checkpoint(seq, p.offset, 0);
    }
    tracing::info!(position = %p, "new stream: starting");
    Ok(StartFrom::Position(p))
}
