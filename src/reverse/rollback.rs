//! `ferry rollback` and `ferry complete`: the end of the rollback window, either way.
//!
//! Rollback (phase `switched` → `rollback_frozen` → `rollback_drained` → `replicating`), in
//! order:
//! 1. **Freeze PostgreSQL** for the application roles (`--app-role`, repeatable): their prior
//!    state is recorded in the migration row with the phase `rollback_frozen` and a lease the
//!    command renews every second; then each role gets `NOLOGIN` and
//!    `default_transaction_read_only = on`, and its sessions are ended.
//! 2. **Drain**: the WAL position after the freeze is read; the daemon's reverse stream applies
//!    everything before it (nothing is left to decode from the slot up to it).
//! 3. **Verify**: the row counts of every migrated table match on both sides, and every row the
//!    reverse stream changed (its keys are recorded on MySQL with the rows:
//!    [`super::touched_keys`]) is equal on both sides, value by value — the cutover's final check
//!    proved the rest equal at the switch, and nothing else writes MySQL meanwhile.
//! 4. **Sequences back**: each MySQL AUTO_INCREMENT is set past the PostgreSQL sequence of its
//!    column (a sequence may have moved past the last row).
//! 5. **Resume point**: MySQL's binlog position now — after every reverse write — becomes the
//!    forward stream's checkpoint in PostgreSQL, so the forward stream never re-reads what the
//!    reverse stream wrote (no loop) and the migration can be cut over again later. The phase
//!    becomes `rollback_drained`.
//! 6. **MySQL writable**: the `read_only` settings recorded before the cutover are restored;
//!    the phase returns to `replicating` (the daemon stops the reverse stream and resumes the
//!    forward one from step 5's position); then `--switch-command` runs.
//! 7. The slot and publication are dropped (a new cutover arms new ones).
//!
//! Guarantees: nothing is changed before the preconditions pass (`--dry-run` stops there). A
//! failure in `rollback_frozen` undoes the freeze (the roles get back exactly their recorded
//! state, the phase returns to `switched`: PostgreSQL stays primary and writable); a command
//! that dies there stops renewing its lease and the daemon undoes it the same way within
//! [`LEASE_SECONDS`]; running `ferry rollback` again after that starts over. In
//! `rollback_drained` nothing is undone by itself: running `ferry rollback` again finishes
//! (steps 6–7), `ferry rollback --abort` makes MySQL read-only again and unfreezes the roles.
//! Complete (`ferry complete`, phase `switched`): drops the slot and the publication and
//! records the end in `migration_log`.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio_postgres::Client;

use super::lsn::Lsn;
use super::{arm, names, ReverseError};
use super::{roles, touched_keys};
use crate::checkpoint::{self, Checkpoint};
use crate::config::Config;
use crate::migration::final_check;
use crate::migration::lease::{fault_pause, Lease, LEASE_SECONDS};
use crate::migration::state::{self, Change, Migration};
use crate::migration::{freeze, MigrationPhase};
use crate::select::quote_ident;
use crate::sink::connect as pg;
use crate::source::catalog;
use crate::source::connect::{self as my};

/// What `ferry rollback` was asked to do.
#[derive(Debug, Clone)]
pub struct RollbackOptions {
    pub dry_run: bool,
    /// Undo a rollback under way instead (`--abort`).
    pub abort: bool,
    /// From the freeze to drained.
    pub timeout: Duration,
    pub switch_command: Option<String>,
    /// PostgreSQL roles the application writes with.
    pub app_roles: Vec<String>,
    /// A table with more changed keys than this is compared by a full checksum pass.
    pub max_changed_keys: usize,
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
    /// `planned`, `refused`, `failed`, `aborted`, `rolled_back`, `completed`.
    pub outcome: &'static str,
    pub steps: Vec<Step>,
    /// PostgreSQL frozen → MySQL writable (or → unfrozen again after a failure): how long the
    /// application could not write. `None` when the freeze was not this command's.
    pub write_unavailable_seconds: Option<f64>,
    pub drained_to: Option<String>,
    pub resume_position: Option<String>,
    pub message: String,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            "rolled_back" | "completed" | "planned" | "aborted" => 0,
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
/// Errors reaching the databases outside a step that undoes itself (in `rollback_frozen` the
/// daemon undoes the freeze once the command's lease runs out).
pub async fn rollback(config: &Config, opts: &RollbackOptions) -> Result<Report, ReverseError> {
    let schema = &config.target.ferry_schema;
    let mut client = pg::connect(&config.target)
        .await
        .map_err(ReverseError::target("connecting"))?;
    let mut m = state::load(&client, schema, &config.stream)
        .await
        .map_err(ReverseError::target("reading the migration phase"))?;
    if opts.abort {
        return abort_command(config, &mut client, &m).await;
    }
    match m.phase {
        MigrationPhase::Switched => {}
        p if p.is_rolling_back() && !m.lease_expired => {
            return Ok(report(
                config,
                "refused",
                Vec::new(),
                format!(
                    "a rollback is running (phase {p}; its command holds the lease for {:.0} s more): wait for it, or undo it with `ferry rollback --abort`",
                    m.lease_seconds_left
                ),
            ));
        }
        MigrationPhase::RollbackDrained => {
            return finish_interrupted(config, opts, &mut client, &m).await;
        }
        MigrationPhase::RollbackFrozen => {
            undo(
                config,
                &mut client,
                &m,
                "an earlier rollback's command stopped; its freeze undone before starting again",
            )
            .await?;
            m = state::load(&client, schema, &config.stream)
                .await
                .map_err(ReverseError::target("reading the migration phase"))?;
            if m.phase != MigrationPhase::Switched {
                return Ok(report(
                    config,
                    "refused",
                    Vec::new(),
                    format!(
                        "the stream is {} after undoing the earlier rollback: nothing was changed",
                        m.phase
                    ),
                ));
            }
        }
        p => {
            return Ok(report(
                config,
                "refused",
                Vec::new(),
                format!("the stream is {p}: a rollback returns a switched stream to MySQL"),
            ));
        }
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
                "dry run, nothing changed. Plan: record the state of roles {} and freeze them on PostgreSQL (NOLOGIN, read-only, sessions ended); drain the reverse stream; compare row counts and every row the reverse stream changed; set AUTO_INCREMENT past PostgreSQL's sequences; record MySQL's position as the forward checkpoint; restore MySQL's read_only settings; phase replicating; run the switch command; drop slot {} and publication {}",
                opts.app_roles.join(", "),
                n.slot,
                n.publication
            ),
        ));
    }

    let mut steps = Vec::new();
    let t = Instant::now();
    // Recorded before the freeze: whoever undoes it restores exactly this.
    let prior = roles::record(&client, &opts.app_roles)
        .await
        .map_err(ReverseError::target("reading the application roles"))?;
    let recorded = serde_json::to_value(&prior).unwrap_or_default();
    let moved = state::transition(
        &mut client,
        schema,
        &config.stream,
        MigrationPhase::Switched,
        Some(m.attempt),
        MigrationPhase::RollbackFrozen,
        &Change {
            lease_seconds: Some(LEASE_SECONDS),
            rollback_roles: Some(recorded.clone()),
            report: None,
            ..Change::default()
        },
        "rollback: freezing the application roles on PostgreSQL (their prior state recorded)",
    )
    .await
    .map_err(ReverseError::target("recording the rollback's start"))?;
    let Some(m) = moved else {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            "the phase changed meanwhile (another command?): nothing was changed".to_string(),
        ));
    };
    let lease = Lease::start(config, m.attempt)
        .await
        .map_err(ReverseError::target("connecting for the lease"))?;
    let frozen_at = Instant::now();
    let deadline = frozen_at + opts.timeout;
    let mut run = Undoable {
        config,
        m: &m,
        frozen_at,
    };
    if let Err(e) = roles::freeze(&client, &opts.app_roles).await {
        let why = format!("freezing the roles failed: {}", pg::describe(&e));
        return run.fail(&mut client, steps, &why).await;
    }
    let ended = match roles::end_sessions(&client, &opts.app_roles, deadline).await {
        Ok(Some(n)) => n,
        Ok(None) => {
            return run
                .fail(
                    &mut client,
                    steps,
                    "the application's sessions did not end within --timeout",
                )
                .await
        }
        Err(e) => {
            let why = format!(
                "ending the application's sessions failed: {}",
                pg::describe(&e)
            );
            return run.fail(&mut client, steps, &why).await;
        }
    };
    step(
        &mut steps,
        "freeze",
        t,
        format!(
            "roles {} frozen, {ended} sessions ended",
            opts.app_roles.join(", ")
        ),
    );
    fault_pause(MigrationPhase::RollbackFrozen).await;

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
        if lease.lost() {
            return Ok(run.lost(steps));
        }
        if Instant::now() > deadline {
            let why = format!("the reverse stream did not drain to {drained_to} within --timeout (is ferry running? ferry status)");
            return run.fail(&mut client, steps, &why).await;
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
        let why = format!("row counts differ after the drain: {}", differ.join("; "));
        return run.fail(&mut client, steps, &why).await;
    }
    // Every row the reverse stream changed, compared value by value on both sides (the rest
    // was proved equal by the cutover's final check, and only the reverse stream wrote MySQL).
    let changed = match touched_keys::changed(&mut conn, &config.stream).await {
        Ok(c) => c,
        Err(e) => {
            let why = format!(
                "reading the keys the reverse stream changed (ferry.reverse_changed on MySQL): {e}"
            );
            return run.fail(&mut client, steps, &why).await;
        }
    };
    let check = match final_check::run(config, &changed, opts.max_changed_keys).await {
        Ok(c) => c,
        Err(e) => {
            let why = format!("comparing the changed rows: {e}");
            return run.fail(&mut client, steps, &why).await;
        }
    };
    let differing: Vec<String> = check
        .tables
        .iter()
        .filter(|t| !t.differing.is_empty())
        .map(|t| {
            let shown: Vec<&str> = t.differing.iter().take(10).map(String::as_str).collect();
            format!(
                "{}: {} rows differ ({}{})",
                t.table,
                t.differing.len(),
                shown.join(", "),
                if t.differing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )
        })
        .collect();
    if !differing.is_empty() {
        let why = format!(
            "rows differ between PostgreSQL and MySQL after the drain: {} — ferry verify --config … lists them; nothing was changed on MySQL by this command",
            differing.join("; ")
        );
        return run.fail(&mut client, steps, &why).await;
    }
    let whole = check.tables.iter().filter(|t| t.method == "full").count();
    step(
        &mut steps,
        "verify",
        t,
        format!(
            "row counts of {} tables match; {} rows the reverse stream changed are equal on both sides ({} keys compared{})",
            tables.len(),
            check.tables.iter().map(|t| t.rows_checked).sum::<u64>(),
            check.keys_checked,
            if whole > 0 {
                format!(", {whole} tables by a full checksum pass")
            } else {
                String::new()
            }
        ),
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
            let set = conn
                .query_drop(format!(
                    "ALTER TABLE `{}`.`{}` AUTO_INCREMENT = {next}",
                    table.source.db.replace('`', "``"),
                    table.source.table.replace('`', "``")
                ))
                .await;
            if let Err(e) = set {
                let why = format!(
                    "setting the AUTO_INCREMENT of {} on MySQL to {next} failed ({e}); no row was changed on MySQL — the account needs GRANT ALTER ON `{}`.* (README, Least privilege)",
                    table.source, table.source.db
                );
                return run.fail(&mut client, steps, &why).await;
            }
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
    let _ = conn.disconnect().await;
    if lease.lost() {
        return Ok(run.lost(steps));
    }
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
    let moved = state::transition(
        &mut client,
        schema,
        &config.stream,
        MigrationPhase::RollbackFrozen,
        Some(m.attempt),
        MigrationPhase::RollbackDrained,
        &Change::default(),
        "rollback: drained, row counts and changed rows matched, sequences and the forward resume point set",
    )
    .await
    .map_err(ReverseError::target("recording the drain"))?;
    let Some(m) = moved else {
        return Ok(run.lost(steps));
    };
    step(
        &mut steps,
        "resume point",
        t,
        format!("the forward stream resumes at {position} (after every reverse write)"),
    );
    fault_pause(MigrationPhase::RollbackDrained).await;
    let mut r = finish(
        config,
        opts,
        &mut client,
        &m,
        &lease,
        steps,
        Some(frozen_at),
    )
    .await?;
    if r.outcome == "rolled_back" {
        r.drained_to = Some(drained_to.to_string());
    }
    Ok(r)
}

/// The failure paths of the `rollback_frozen` steps: undo the freeze and say so.
struct Undoable<'a> {
    config: &'a Config,
    m: &'a Migration,
    frozen_at: Instant,
}

impl Undoable<'_> {
    /// Undoes the freeze (roles back as recorded, phase `switched`) and reports why.
    async fn fail(
        &mut self,
        client: &mut Client,
        steps: Vec<Step>,
        why: &str,
    ) -> Result<Report, ReverseError> {
        let undone = undo(
            self.config,
            client,
            self.m,
            &format!("rollback failed and was undone: {why}"),
        )
        .await;
        let names = roles::names(&roles::from_row(self.m.rollback_roles.as_ref()));
        let mut r = report(
            self.config,
            "failed",
            steps,
            match undone {
                Ok(_) => format!("rollback stopped: {why}. Undone: the roles {names} have their prior state back and PostgreSQL stays primary (MySQL read-only); fix the cause and run ferry rollback again"),
                Err(e) => format!("rollback stopped: {why}; undoing it failed too ({e}): the daemon undoes it when the command's lease runs out (within {LEASE_SECONDS:.0} s), or run `ferry rollback --abort`"),
            },
        );
        r.write_unavailable_seconds = Some(self.frozen_at.elapsed().as_secs_f64());
        Ok(r)
    }

    /// Someone else (`ferry rollback --abort`, the daemon) ended this attempt.
    fn lost(&self, steps: Vec<Step>) -> Report {
        let mut r = report(
            self.config,
            "failed",
            steps,
            "the rollback was undone meanwhile (ferry rollback --abort, or the daemon after a lost lease): PostgreSQL stays primary".to_string(),
        );
        r.write_unavailable_seconds = Some(self.frozen_at.elapsed().as_secs_f64());
        r
    }
}

/// Steps 6 and 7 (phase `rollback_drained`): MySQL writable, phase `replicating`, the switch
/// command, the slot dropped.
async fn finish(
    config: &Config,
    opts: &RollbackOptions,
    client: &mut Client,
    m: &Migration,
    lease: &Lease,
    mut steps: Vec<Step>,
    frozen_at: Option<Instant>,
) -> Result<Report, ReverseError> {
    let schema = &config.target.ferry_schema;
    let frozen_roles = roles::names(&roles::from_row(m.rollback_roles.as_ref()));
    let n = names(&config.target.database, &config.stream);
    let t = Instant::now();
    let mut conn = my::connect(&config.source).await?;
    if lease.lost() {
        let _ = conn.disconnect().await;
        return Ok(report(
            config,
            "failed",
            steps,
            "the rollback was aborted meanwhile (ferry rollback --abort): PostgreSQL stays primary"
                .to_string(),
        ));
    }
    let writable = match m.prior_read_only {
        Some(prior) => freeze::restore(&mut conn, (prior, m.prior_super_read_only)).await,
        None => conn.query_drop("SET GLOBAL read_only = OFF").await,
    };
    if let Err(e) = writable {
        return Ok(report(config, "failed", steps, format!("making MySQL writable failed ({e}): the stream stays rollback_drained (PostgreSQL frozen, everything drained); fix it and run ferry rollback again to finish, or ferry rollback --abort to return to PostgreSQL")));
    }
    // The record of this switch has served its purpose (a stale one would only make a later
    // check fuller).
    if let Err(e) = touched_keys::clear(&mut conn, &config.stream).await {
        tracing::warn!(error = %e, "could not clear ferry.reverse_changed on MySQL; a later rollback checks those keys too");
    }
    let moved = state::transition(
        client,
        schema,
        &config.stream,
        MigrationPhase::RollbackDrained,
        Some(m.attempt),
        MigrationPhase::Replicating,
        &Change {
            release: true,
            ..Change::default()
        },
        "rolled back: MySQL is primary again; the forward stream resumes after the reverse stream's writes",
    )
    .await
    .map_err(ReverseError::target("recording the rollback"))?;
    if moved.is_none() {
        // An abort won the race: it expects MySQL read-only.
        let flavor = my::server_info(&mut conn)
            .await
            .map_err(ReverseError::source("reading the server version"))?
            .flavor;
        freeze::freeze(&mut conn, flavor)
            .await
            .map_err(ReverseError::source("making MySQL read-only again"))?;
        return Ok(report(config, "failed", steps, "the rollback was aborted meanwhile (ferry rollback --abort): MySQL is read-only again, PostgreSQL stays primary".to_string()));
    }
    let window = frozen_at.map(|f| f.elapsed().as_secs_f64());
    let _ = conn.disconnect().await;
    step(
        &mut steps,
        "mysql writable",
        t,
        "read_only restored; phase replicating",
    );
    let position = checkpoint::read_target(client, schema, &config.stream)
        .await
        .map_err(ReverseError::target("reading the forward resume point"))?
        .map(|c| c.position.to_string())
        .unwrap_or_default();
    let t = Instant::now();
    let switched = match &opts.switch_command {
        None => Ok(()),
        Some(cmd) => run_switch(config, cmd, &position).await,
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
        if arm::disarm(client, &n.slot, &n.publication).await.is_ok() {
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
            Ok(()) => format!("MySQL is primary again; every write PostgreSQL took before the freeze is in MySQL. The roles {frozen_roles} stay frozen on PostgreSQL (ALTER ROLE … LOGIN; ALTER ROLE … RESET default_transaction_read_only to undo)."),
            Err(e) => format!("MySQL is primary and writable, but {e}: switch the application to MySQL by hand"),
        },
    );
    r.write_unavailable_seconds = window;
    r.resume_position = Some(position);
    Ok(r)
}

/// `ferry rollback` again after its command died in `rollback_drained`: take over its lease
/// and finish.
async fn finish_interrupted(
    config: &Config,
    opts: &RollbackOptions,
    client: &mut Client,
    m: &Migration,
) -> Result<Report, ReverseError> {
    let schema = &config.target.ferry_schema;
    let taken = state::renew_lease(client, schema, &config.stream, m.attempt, LEASE_SECONDS)
        .await
        .map_err(ReverseError::target("taking over the lease"))?;
    if !taken {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            "the interrupted rollback holds no lease to take over (aborted meanwhile?)".to_string(),
        ));
    }
    let lease = Lease::start(config, m.attempt)
        .await
        .map_err(ReverseError::target("connecting for the lease"))?;
    let mut r = finish(
        config,
        opts,
        client,
        m,
        &lease,
        Vec::new(),
        // The freeze was the earlier command's: its window is not known here.
        None,
    )
    .await?;
    if r.outcome == "rolled_back" {
        r.message = format!("interrupted rollback finished. {}", r.message);
    }
    Ok(r)
}

/// Undoes a rollback under way: in `rollback_drained` MySQL is made read-only again first;
/// the roles get their recorded state back; the phase returns to `switched`. Returns whether
/// this call moved the phase (false: someone else did meanwhile).
///
/// # Errors
/// Errors reaching the databases (the phase is left as it was).
pub async fn undo(
    config: &Config,
    client: &mut Client,
    m: &Migration,
    event: &str,
) -> Result<bool, ReverseError> {
    if m.phase == MigrationPhase::RollbackDrained {
        let mut conn = my::connect(&config.source).await?;
        let flavor = my::server_info(&mut conn)
            .await
            .map_err(ReverseError::source("reading the server version"))?
            .flavor;
        freeze::freeze(&mut conn, flavor)
            .await
            .map_err(ReverseError::source("making MySQL read-only again"))?;
        let _ = conn.disconnect().await;
    }
    let prior = roles::from_row(m.rollback_roles.as_ref());
    roles::restore(client, &prior)
        .await
        .map_err(ReverseError::target("restoring the application roles"))?;
    let moved = state::transition(
        client,
        &config.target.ferry_schema,
        &config.stream,
        m.phase,
        Some(m.attempt),
        MigrationPhase::Switched,
        &Change {
            release: true,
            ..Change::default()
        },
        event,
    )
    .await
    .map_err(ReverseError::target("recording the undo"))?;
    if moved.is_some() {
        tracing::warn!(phase = %m.phase, roles = %roles::names(&prior), event, "rollback undone: the application roles have their prior state back; PostgreSQL stays primary");
    }
    Ok(moved.is_some())
}

/// `ferry rollback --abort`.
async fn abort_command(
    config: &Config,
    client: &mut Client,
    m: &Migration,
) -> Result<Report, ReverseError> {
    if !m.phase.is_rolling_back() {
        return Ok(report(
            config,
            "refused",
            Vec::new(),
            format!("no rollback is under way (the stream is {})", m.phase),
        ));
    }
    let moved = undo(config, client, m, "aborted by `ferry rollback --abort`").await?;
    let names = roles::names(&roles::from_row(m.rollback_roles.as_ref()));
    Ok(report(
        config,
        if moved { "aborted" } else { "refused" },
        Vec::new(),
        if moved {
            format!("rollback aborted: the roles {names} have their prior state back, MySQL is read-only; PostgreSQL stays primary (phase switched)")
        } else {
            "the phase changed meanwhile: nothing more was undone".to_string()
        },
    ))
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
    let t = Instant::now();
    let cleared = match my::connect(&config.source).await {
        Ok(mut conn) => {
            let r = touched_keys::clear(&mut conn, &config.stream).await;
            let _ = conn.disconnect().await;
            r.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    step(
        &mut steps,
        "forget changed keys",
        t,
        match cleared {
            Ok(()) => "ferry.reverse_changed cleared on MySQL".to_string(),
            Err(e) => format!("ferry.reverse_changed on MySQL not cleared ({e}): drop it by hand"),
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
