//! `ferry rollback` and `ferry complete`: the end of the rollback window, either way.
//!
//! Rollback (phase `switched` → `replicating`), in order:
//! 1. **Freeze PostgreSQL** for the application roles (`--app-role`, repeatable): each gets
//!    `NOLOGIN` and `default_transaction_read_only = on`, and its sessions are ended.
//! 2. **Drain**: the WAL position after the freeze is read; the daemon's reverse stream applies
//!    everything before it (nothing is left to decode from the slot up to it).
//! 3. **Verify**: the row counts of every migrated table match on both sides (`ferry verify`
//!    compares every row afterwards).
//! 4. **Sequences back**: each MySQL AUTO_INCREMENT is set past the PostgreSQL sequence of its
//!    column (a sequence may have moved past the last row).
//! 5. **Resume point**: MySQL's binlog position now — after every reverse write — becomes the
//!    forward stream's checkpoint in PostgreSQL, so the forward stream never re-reads what the
//!    reverse stream wrote (no loop) and the migration can be cut over again later.
//! 6. **MySQL writable**: the `read_only` settings recorded before the cutover are restored;
//!    the phase returns to `replicating` (the daemon stops the reverse stream and resumes the
//!    forward one from step 5's position); then `--switch-command` runs.
//! 7. The slot and publication are dropped (a new cutover arms new ones).
//!
//! Guarantees: nothing is changed before the preconditions pass (`--dry-run` stops there); a
//! failure before step 6 leaves PostgreSQL primary (the roles stay frozen: the report says how
//! to unfreeze them) and MySQL read-only. Complete (`ferry complete`, phase `switched`): drops
//! the slot and the publication and records the end in `migration_log`.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio_postgres::Client;

use super::lsn::Lsn;
use super::{arm, names, ReverseError};
use crate::checkpoint::{self, Checkpoint};
use crate::config::Config;
use crate::migration::state::{self, Change};
use crate::migration::{freeze, MigrationPhase};
use crate::select::quote_ident;
use crate::sink::connect as pg;
use crate::source::catalog;
use crate::source::connect::{self as my};

/// What `ferry rollback` was asked to do.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub dry_run: bool,
    /// From the freeze to drained.
    pub timeout: Duration,
    pub switch_command: Option<String>,
    /// PostgreSQL roles the application writes with.
    pub app_roles: Vec<String>,
}

/// One step's timing.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub seconds: f64,
    pub detail: String,
}

/// What `ferry rollback` / `ferry complete` print.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stream: String,
    /// `planned`, `refused`, `failed`, `rolled_back`, `completed`.
    pub outcome: &'static str,
    pub steps: Vec<Step>,
    /// PostgreSQL frozen → MySQL writable: how long the application could not write.
    pub write_unavailable_seconds: Option<f64>,
    pub drained_to: Option<String>,
    pub resume_position: Option<String>,
    pub message: String,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            "rolled_back" | "completed" | "planned" => 0,
            _ => 1,
        }
    }
}

fn report(config: &Config, outcome: &'static str, steps: Vec<Step>, message: String) -> Report {
    Report {
        stream: config.stream.clone(),
        outcome,
        steps,
        write_unavailable_seconds: None,
        drained_to: None,
        resume_position: None,
        message,
    }
}

fn step(steps: &mut Vec<Step>, name: &'static str, t: Instant, detail: impl Into<String>) {
    steps.push(Step {
        name,
        seconds: t.elapsed().as_secs_f64(),
        detail: detail.into(),
    });
}

/// Runs `ferry rollback` (see the module doc).
///
/// # Errors
/// Errors reaching the databases.
pub async fn rollback(config: &Config, opts: &RollbackOptions) -> Result<Report, ReverseError> {
    let schema = &config.target.ferry_schema;
    let mut client = pg::connect(&config.target)
        .await
        .map_err(ReverseError::target("connecting"))?;
    let m = state::load(&client, schema, &config.stream)
        .await
        .map_err(ReverseError::target("reading the migration phase"))?;
    if m.phase != MigrationPhase::Switched {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            format!(
                "the stream is {}: a rollback returns a switched stream to MySQL",
                m.phase
            ),
        ));
    }
    let n = names(&config.target.database, &config.stream);
    let mut problems = Vec::new();
    if super::transport::slot_state(&client, &n.slot)
        .await
        .map_err(ReverseError::target("reading the slot"))?
        .is_none()
    {
        problems.push(format!("the reverse stream has no slot {:?} (the cutover ran --without-rollback?): MySQL lacks PostgreSQL's writes", n.slot));
    }
    if !m.daemon_age_seconds.is_some_and(|a| a < 5.0) {
        problems.push(
            "no ferry daemon reported within 5 s: the reverse stream runs in `ferry run`; start it"
                .to_string(),
        );
    }
    if opts.app_roles.is_empty() {
        problems.push("no --app-role given: name the PostgreSQL roles the application writes with, so their writes can be stopped before the drain".to_string());
    }
    for role in &opts.app_roles {
        let exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[role])
            .await
            .map_err(ReverseError::target("reading roles"))?
            .is_some();
        if !exists {
            problems.push(format!("PostgreSQL has no role {role:?}"));
        }
    }
    if !problems.is_empty() {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            format!("nothing was changed: {}", problems.join("; ")),
        ));
    }
    if opts.dry_run {
        return Ok(report(
            config,
            "planned",
            Vec::new(),
            format!(
                "dry run, nothing changed. Plan: freeze roles {} on PostgreSQL (NOLOGIN, read-only, sessions ended); drain the reverse stream; compare row counts; set AUTO_INCREMENT past PostgreSQL's sequences; record MySQL's position as the forward checkpoint; restore MySQL's read_only settings; phase replicating; run the switch command; drop slot {} and publication {}",
                opts.app_roles.join(", "),
                n.slot,
                n.publication
            ),
        ));
    }
    let mut steps = Vec::new();
    let frozen_at = Instant::now();
    let t = Instant::now();
    for role in &opts.app_roles {
        let r = quote_ident(role);
        client
            .batch_execute(&format!(
                "ALTER ROLE {r} NOLOGIN; ALTER ROLE {r} SET default_transaction_read_only = on"
            ))
            .await
            .map_err(ReverseError::target("freezing an application role"))?;
    }
    let mut ended = 0u64;
    loop {
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
                &[&opts.app_roles],
            )
            .await
            .map_err(ReverseError::target("ending the application's sessions"))?;
        if rows.is_empty() {
            break;
        }
        ended += rows.len() as u64;
        if frozen_at.elapsed() > opts.timeout {
            return Ok(failed(
                config,
                steps,
                frozen_at,
                opts,
                "the application's sessions did not end within --timeout",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    step(
        &mut steps,
        "freeze",
        t,
        format!(
            "roles {} frozen, {ended} sessions ended",
            opts.app_roles.join(", ")
        ),
    );

    let t = Instant::now();
    let drained_to: Lsn = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(ReverseError::target("reading the WAL position"))?
        .get::<_, String>(0)
        .parse()
        .unwrap_or_default();
    // Drained when the slot's confirmed position reached the WAL end after the freeze: the
    // stream confirms a transaction only after its MySQL commit, and confirms up to the WAL
    // end only when a peek found nothing before it. Read from pg_replication_slots, so the
    // wait never holds the slot the stream reads.
    loop {
        let confirmed = super::transport::slot_state(&client, &n.slot)
            .await
            .map_err(ReverseError::target("reading the slot"))?
            .map(|s| s.confirmed);
        if confirmed.is_some_and(|c| c >= drained_to) {
            break;
        }
        if frozen_at.elapsed() > opts.timeout {
            return Ok(failed(config, steps, frozen_at, opts, &format!("the reverse stream did not drain to {drained_to} within --timeout (is ferry running? ferry status)")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    step(
        &mut steps,
        "drain",
        t,
        format!("MySQL holds every PostgreSQL transaction before {drained_to}"),
    );

    let t = Instant::now();
    let mut conn = my::connect(&config.source).await?;
    let flavor = my::server_info(&mut conn)
        .await
        .map_err(ReverseError::source("reading the server version"))?
        .flavor;
    let tables = catalog::load_tables(&mut conn, flavor, &config.tables, &config.types).await?;
    let mut differ = Vec::new();
    for table in &tables {
        let on_pg: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {}", table.target_quoted),
                &[],
            )
            .await
            .map_err(ReverseError::target("counting rows"))?
            .get(0);
        let on_my: Option<i64> = conn
            .query_first(format!(
                "SELECT count(*) FROM `{}`.`{}`",
                table.source.db.replace('`', "``"),
                table.source.table.replace('`', "``")
            ))
            .await
            .map_err(ReverseError::source("counting rows"))?;
        if on_my != Some(on_pg) {
            differ.push(format!(
                "{}: MySQL {} rows, PostgreSQL {on_pg}",
                table.source,
                on_my.unwrap_or(0)
            ));
        }
    }
    if !differ.is_empty() {
        return Ok(failed(
            config,
            steps,
            frozen_at,
            opts,
            &format!("row counts differ after the drain: {}", differ.join("; ")),
        ));
    }
    step(
        &mut steps,
        "verify",
        t,
        format!("row counts of {} tables match", tables.len()),
    );

    let t = Instant::now();
    let mut raised = 0;
    for table in &tables {
        for (i, c) in table.source_columns.iter().enumerate() {
            if !c.auto_increment {
                continue;
            }
            let seq: Option<String> = client
                .query_one(
                    "SELECT pg_get_serial_sequence($1, $2)",
                    &[
                        &format!(
                            "{}.{}",
                            quote_ident(&table.target_schema),
                            quote_ident(&table.target_name)
                        ),
                        &table.columns[i].target_name,
                    ],
                )
                .await
                .map_err(ReverseError::target("finding a column's sequence"))?
                .get(0);
            let Some(seq) = seq else { continue };
            let next: i64 = client
                .query_one(
                    &format!("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {seq}"),
                    &[],
                )
                .await
                .map_err(ReverseError::target("reading a sequence"))?
                .get(0);
            conn.query_drop(format!(
                "ALTER TABLE `{}`.`{}` AUTO_INCREMENT = {next}",
                table.source.db.replace('`', "``"),
                table.source.table.replace('`', "``")
            ))
            .await
            .map_err(ReverseError::source("setting AUTO_INCREMENT"))?;
            raised += 1;
        }
    }
    step(
        &mut steps,
        "sequences",
        t,
        format!("{raised} AUTO_INCREMENT counters set past PostgreSQL's sequences"),
    );

    let t = Instant::now();
    let (position, gtid) = freeze::final_position(&mut conn, flavor)
        .await
        .map_err(ReverseError::source("reading MySQL's binlog position"))?;
    checkpoint::write_target(
        &client,
        schema,
        &config.stream,
        &Checkpoint {
            position: position.clone(),
            gtid: gtid.clone(),
            source_time: 0,
        },
    )
    .await
    .map_err(ReverseError::target(
        "recording the forward stream's resume point",
    ))?;
    step(
        &mut steps,
        "resume point",
        t,
        format!("the forward stream resumes at {position} (after every reverse write)"),
    );

    let t = Instant::now();
    if let Some(prior) = m.prior_read_only {
        freeze::restore(&mut conn, (prior, m.prior_super_read_only))
            .await
            .map_err(ReverseError::source("making MySQL writable"))?;
    } else {
        conn.query_drop("SET GLOBAL read_only = OFF")
            .await
            .map_err(ReverseError::source("making MySQL writable"))?;
    }
    let moved = state::transition(
        &mut client,
        schema,
        &config.stream,
        MigrationPhase::Switched,
        None,
        MigrationPhase::Replicating,
        &Change::default(),
        "rolled back: MySQL is primary again; the forward stream resumes after the reverse stream's writes",
    )
    .await
    .map_err(ReverseError::target("recording the rollback"))?;
    if moved.is_none() {
        return Ok(failed(
            config,
            steps,
            frozen_at,
            opts,
            "the phase changed meanwhile",
        ));
    }
    let window = frozen_at.elapsed().as_secs_f64();
    step(
        &mut steps,
        "mysql writable",
        t,
        "read_only restored; phase replicating",
    );
    let t = Instant::now();
    let switched = match &opts.switch_command {
        None => Ok(()),
        Some(cmd) => run_switch(config, cmd, &position.to_string()).await,
    };
    step(
        &mut steps,
        "switch",
        t,
        match (&opts.switch_command, &switched) {
            (None, _) => "no switch command given".to_string(),
            (Some(c), Ok(())) => format!("`{c}` succeeded"),
            (Some(_), Err(e)) => e.clone(),
        },
    );
    let t = Instant::now();
    // The daemon leaves the slot within half a second of the phase change.
    let mut dropped = false;
    for _ in 0..50 {
        if arm::disarm(&client, &n.slot, &n.publication).await.is_ok() {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    step(
        &mut steps,
        "disarm",
        t,
        if dropped {
            format!("slot {} and publication {} dropped", n.slot, n.publication)
        } else {
            format!("slot {} still in use: drop it with ferry complete", n.slot)
        },
    );
    let mut r = report(
        config,
        "rolled_back",
        steps,
        match switched {
            Ok(()) => format!("MySQL is primary again; every write PostgreSQL took before {drained_to} is in MySQL. The roles {} stay frozen on PostgreSQL (ALTER ROLE … LOGIN; ALTER ROLE … RESET default_transaction_read_only to undo).", opts.app_roles.join(", ")),
            Err(e) => format!("MySQL is primary and writable, but {e}: switch the application to MySQL by hand"),
        },
    );
    r.write_unavailable_seconds = Some(window);
    r.drained_to = Some(drained_to.to_string());
    r.resume_position = Some(position.to_string());
    Ok(r)
}

fn failed(
    config: &Config,
    steps: Vec<Step>,
    frozen_at: Instant,
    opts: &RollbackOptions,
    why: &str,
) -> Report {
    let mut r = report(
        config,
        "failed",
        steps,
        format!(
            "rollback stopped: {why}. PostgreSQL stays primary and MySQL read-only; the roles {} are frozen on PostgreSQL — run ferry rollback again, or unfreeze them (ALTER ROLE … LOGIN; ALTER ROLE … RESET default_transaction_read_only)",
            opts.app_roles.join(", ")
        ),
    );
    r.write_unavailable_seconds = Some(frozen_at.elapsed().as_secs_f64());
    r
}

async fn run_switch(config: &Config, cmd: &str, position: &str) -> Result<(), String> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("FERRY_STREAM", &config.stream)
        .env("FERRY_PHASE", "rollback")
        .env("FERRY_RESUME_POSITION", position)
        .env("FERRY_SOURCE_HOST", &config.source.host)
        .env("FERRY_SOURCE_PORT", config.source.port.to_string())
        .status()
        .await
        .map_err(|e| format!("the switch command `{cmd}` could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the switch command `{cmd}` failed ({status})"))
    }
}

/// Runs `ferry complete`: the migration ends with PostgreSQL primary.
///
/// # Errors
/// Errors reaching PostgreSQL.
pub async fn complete(config: &Config) -> Result<Report, ReverseError> {
    let schema = &config.target.ferry_schema;
    let mut client: Client = pg::connect(&config.target)
        .await
        .map_err(ReverseError::target("connecting"))?;
    let m = state::load(&client, schema, &config.stream)
        .await
        .map_err(ReverseError::target("reading the migration phase"))?;
    if m.phase != MigrationPhase::Switched {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            format!(
                "the stream is {}: ferry complete ends a switched migration",
                m.phase
            ),
        ));
    }
    let n = names(&config.target.database, &config.stream);
    let t = Instant::now();
    let mut dropped = None;
    for _ in 0..50 {
        match arm::disarm(&client, &n.slot, &n.publication).await {
            Ok(d) => {
                dropped = Some(d);
                break;
            }
            // The daemon's reverse stream holds the slot for a moment at each poll.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let Some(dropped) = dropped else {
        return Ok(report(
            config,
            "failed",
            Vec::new(),
            format!(
                "slot {} stayed in use: stop ferry, then run ferry complete again",
                n.slot
            ),
        ));
    };
    let mut steps = Vec::new();
    step(
        &mut steps,
        "disarm",
        t,
        if dropped {
            format!("slot {} and publication {} dropped", n.slot, n.publication)
        } else {
            "no slot was armed".to_string()
        },
    );
    state::transition(
        &mut client,
        schema,
        &config.stream,
        MigrationPhase::Switched,
        None,
        MigrationPhase::Switched,
        &Change::default(),
        "completed: the rollback window is closed (reverse slot and publication dropped)",
    )
    .await
    .map_err(ReverseError::target("recording the end"))?;
    Ok(report(
        config,
        "completed",
        steps,
        format!(
            "the migration is complete: PostgreSQL is primary, no way back through ferry. Archive: the cutover report in {schema}.migration, the history in {schema}.migration_log, the MySQL table ferry.reverse_checkpoint; then stop ferry (systemctl disable --now ferry)"
        ),
    ))
}

/// The report as a human reads it.
pub fn render(command: &str, r: &Report) -> String {
    let mut out = format!("ferry {command}  stream {:?}  {}\n", r.stream, r.outcome);
    for s in &r.steps {
        out.push_str(&format!(
            "  {:<14} took {:>7.3} s  {}\n",
            s.name, s.seconds, s.detail
        ));
    }
    if let Some(w) = r.write_unavailable_seconds {
        out.push_str(&format!("write-unavailable window: {w:.3} s\n"));
    }
    if let Some(p) = &r.resume_position {
        out.push_str(&format!("forward stream resumes at: {p}\n"));
    }
    out.push_str(&r.message);
    out.push('\n');
    out
}
