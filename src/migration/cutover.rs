//! `ferry cutover`: makes PostgreSQL primary in seconds, verified, with a way back until the
//! point of no return.
//!
//! Steps (each recorded in `<ferry_schema>.migration` before what it enables is relied on):
//! 1. **Preconditions** — the daemon streams (not paused, no backfill or re-copy), lag under
//!    `--max-lag`, a verification pass that matched within `--max-verify-age`, no dead-lettered
//!    rows, the privileges the freeze needs, and the reverse stream's prerequisites on
//!    PostgreSQL. `--dry-run` stops here and prints the plan with the measured expected window.
//! 2. **Freeze** — the source's prior `read_only` settings are recorded (phase `frozen`), then
//!    `read_only` (+ `super_read_only` on MySQL) is set; open write transactions are waited for
//!    and, after `--kill-writers-after`, ended (without it, a writer that stays open aborts the
//!    cutover); the final position is read after that.
//! 3. **Drain** — the daemon records `drained` once everything before the final position is
//!    committed in PostgreSQL.
//! 4. **Verify** — the rows that changed since the last matched pass are compared on both
//!    sides ([`super::final_check`]); any difference aborts. Then every AUTO_INCREMENT
//!    column's sequence is set past the source's counter and `max(id)`
//!    ([`crate::target_schema::sequences`]).
//! 5. **Switch** — phase `switching`, then the `--switch-command` runs with the final position
//!    in its environment; success is the point of no return (`switched`, the forward stream
//!    reads nothing more); failure aborts.
//!
//! Guarantees: any failure or timeout before `switched` aborts: the source's prior settings
//! are restored and the phase returns to `replicating` — nothing is lost, MySQL is writable.
//! The command holds a lease it renews every second; if it dies before `switching`, the daemon
//! undoes the cutover when the lease runs out. If it dies while the switch command runs
//! (`switching`), nothing is undone automatically — the application may already write to
//! PostgreSQL — and running `ferry cutover` again re-runs the switch command (which must be
//! idempotent) and completes; `ferry cutover --abort` returns to MySQL instead. The report
//! gives each step's duration and the write-unavailable window (freeze → switched).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;
use tokio_postgres::Client;

use super::final_check::{self, FinalCheck};
use super::freeze::{self, ReadOnly};
use super::lease::{fault_pause, Lease, LEASE_SECONDS};
use super::state::{self, Change, Migration};
use super::MigrationPhase;
use crate::config::Config;
use crate::error::ErrorClass;
use crate::position::BinlogPosition;
use crate::select::quote_ident;
use crate::sink::connect as pg;
use crate::source::connect::{self as my, Flavor};
use crate::verify::passes;

/// The daemon must have reported within this long to count as running.
const DAEMON_FRESH_SECONDS: f64 = 5.0;

/// What `ferry cutover` was asked to do.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    pub dry_run: bool,
    pub abort: bool,
    pub max_lag: Duration,
    /// From the freeze to drained (writers included).
    pub timeout: Duration,
    pub switch_command: Option<String>,
    pub kill_writers_after: Option<Duration>,
    pub max_verify_age: Duration,
    /// Tables with more changed keys than this get a full checksum pass at the final check.
    pub max_changed_keys: usize,
    /// Skip the reverse stream's prerequisites (no rollback will be possible).
    pub without_rollback: bool,
    pub yes: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("cutover ({context}): {}", pg::describe(source))]
    Target {
        context: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("cutover ({context}): {source}")]
    Source {
        context: &'static str,
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Connect(#[from] my::ConnectError),
    #[error(transparent)]
    Tables(#[from] crate::ferry_tables::FerryTablesError),
    #[error("cutover: {0}")]
    Verify(#[from] crate::verify::VerifyError),
}

impl CutoverError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CutoverError::Target { source, .. } => ErrorClass::of_postgres(source),
            CutoverError::Source { source, .. } => ErrorClass::of_mysql(source),
            CutoverError::Connect(e) => e.class(),
            CutoverError::Tables(e) => e.class(),
            CutoverError::Verify(_) => ErrorClass::Transient,
        }
    }
}

fn target(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CutoverError {
    move |source| CutoverError::Target { context, source }
}

fn source(context: &'static str) -> impl FnOnce(mysql_async::Error) -> CutoverError {
    move |source| CutoverError::Source { context, source }
}

/// One precondition.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// One step's timing.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    /// Seconds since the freeze began (negative: before it).
    pub at_seconds: f64,
    pub seconds: f64,
    pub detail: String,
}

/// How a cutover ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `--dry-run`: nothing changed.
    Planned,
    /// A precondition failed: nothing changed.
    Refused,
    /// Stopped before the switch: the source is writable again, nothing lost.
    Aborted,
    Switched,
}

/// What `ferry cutover` prints (text or JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stream: String,
    pub outcome: Outcome,
    pub checks: Vec<Check>,
    pub steps: Vec<Step>,
    /// Freeze → switched: how long the application could not write.
    pub write_unavailable_seconds: Option<f64>,
    /// `--dry-run`: the window expected from what was measured now (without the switch
    /// command's own time).
    pub expected_window_seconds: Option<f64>,
    pub final_position: Option<String>,
    pub final_gtid: Option<String>,
    pub final_check: Option<FinalCheck>,
    /// After the switch: the foreign keys created and validated on PostgreSQL.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<crate::target_schema::foreign_keys::ForeignKeyReport>,
    pub message: String,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Switched => 0,
            Outcome::Planned if self.checks.iter().all(|c| c.ok) => 0,
            _ => 1,
        }
    }
}

/// Runs `ferry cutover` (see the module doc).
///
/// # Errors
/// Errors reaching the databases outside a step that can abort cleanly.
pub async fn run(config: &Config, opts: &CutoverOptions) -> Result<Report, CutoverError> {
    let schema = config.target.ferry_schema.clone();
    let mut client = pg::connect(&config.target)
        .await
        .map_err(target("connecting"))?;
    crate::ferry_tables::ensure(&client, &schema).await?;
    let mut conn = my::connect(&config.source).await?;
    let flavor = my::server_info(&mut conn)
        .await
        .map_err(source("reading the server version"))?
        .flavor;
    let m = state::load(&client, &schema, &config.stream)
        .await
        .map_err(target("reading the migration phase"))?;
    let mut run = Run {
        config,
        opts,
        schema,
        flavor,
        steps: Vec::new(),
        frozen_at: None,
        attempt: 0,
    };
    if opts.abort {
        return run.abort_command(&mut client, &mut conn, &m).await;
    }
    match m.phase {
        MigrationPhase::Switched => {
            return Ok(run.report(
                Outcome::Switched,
                Vec::new(),
                "the stream is already switched: PostgreSQL is primary (ferry rollback returns to MySQL)",
            ))
        }
        p if p.is_rolling_back() => {
            return Ok(run.report(
                Outcome::Refused,
                Vec::new(),
                &format!("a rollback is under way (phase {p}): finish it with `ferry rollback` or undo it with `ferry rollback --abort`"),
            ))
        }
        MigrationPhase::Switching if m.lease_expired => {
            return run.resume_switch(&mut client, &mut conn, &m).await;
        }
        p if (p.is_frozen() || p == MigrationPhase::Switching) && !m.lease_expired => {
            let check = Check::fail(
                "no cutover in progress",
                format!(
                    "cutover attempt {} is {p} (its command holds the lease for {:.0} s more)",
                    m.attempt, m.lease_seconds_left
                ),
                "wait for it to finish, or stop it with `ferry cutover --abort`",
            );
            return Ok(run.report(Outcome::Refused, vec![check], "another cutover is running"));
        }
        p if p.is_frozen() => {
            // Its command is gone and the daemon has not undone it yet: undo it now.
            run.attempt = m.attempt;
            run.abort(&mut client, &mut conn, &m, "an earlier cutover's command stopped; undone before starting again")
                .await?;
        }
        _ => {}
    }
    let (mut checks, changed) = run.preconditions(&client, &mut conn).await?;
    if opts.dry_run {
        let expected = run.expected_window(&changed, &mut checks).await;
        let mut r = run.report(Outcome::Planned, checks, "dry run: nothing was changed");
        r.expected_window_seconds = expected;
        return Ok(r);
    }
    if checks.iter().any(|c| !c.ok) {
        return Ok(run.report(
            Outcome::Refused,
            checks,
            "preconditions failed: nothing was changed",
        ));
    }
    if !opts.yes && !confirm(config) {
        return Ok(run.report(
            Outcome::Refused,
            checks,
            "not confirmed: nothing was changed",
        ));
    }
    run.execute(&mut client, &mut conn, checks, changed).await
}

/// Asks on the terminal; without one, `--yes` is required.
fn confirm(config: &Config) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!("ferry cutover: not a terminal; pass --yes to confirm the cutover");
        return false;
    }
    eprint!(
        "Freeze writes on {}:{} and switch stream {:?} to PostgreSQL? [y/N] ",
        config.source.host, config.source.port, config.stream
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

struct Run<'a> {
    config: &'a Config,
    opts: &'a CutoverOptions,
    schema: String,
    flavor: Flavor,
    steps: Vec<Step>,
    frozen_at: Option<Instant>,
    attempt: i64,
}

impl Run<'_> {
    fn step(&mut self, name: &'static str, started: Instant, detail: impl Into<String>) {
        let at = match self.frozen_at {
            Some(f) if started >= f => (started - f).as_secs_f64(),
            Some(f) => -(f - started).as_secs_f64(),
            None => 0.0,
        };
        self.steps.push(Step {
            name,
            at_seconds: at,
            seconds: started.elapsed().as_secs_f64(),
            detail: detail.into(),
        });
    }

    fn report(&self, outcome: Outcome, checks: Vec<Check>, message: &str) -> Report {
        Report {
            stream: self.config.stream.clone(),
            outcome,
            checks,
            steps: self.steps.clone(),
            write_unavailable_seconds: None,
            expected_window_seconds: None,
            final_position: None,
            final_gtid: None,
            final_check: None,
            foreign_keys: Vec::new(),
            message: message.to_string(),
        }
    }

    async fn preconditions(
        &self,
        client: &Client,
        conn: &mut Conn,
    ) -> Result<
        (
            Vec<Check>,
            std::collections::BTreeMap<String, super::changed_keys::Changed>,
        ),
        CutoverError,
    > {
        let config = self.config;
        let opts = self.opts;
        let s = quote_ident(&self.schema);
        let stream = &config.stream;
        let mut checks = Vec::new();
        let m = fresh_daemon_report(client, &self.schema, stream).await?;
        checks.push(daemon_check(&m));
        checks.push(match m.daemon_lag_seconds {
            Some(lag) if lag <= opts.max_lag.as_secs_f64() => {
                Check::pass("lag", format!("{lag:.1} s (at most {:?})", opts.max_lag))
            }
            Some(lag) => Check::fail(
                "lag",
                format!("{lag:.1} s, above --max-lag {:?}", opts.max_lag),
                "wait until ferry caught up (ferry status), or raise --max-lag (the drain then takes about as long as the lag)",
            ),
            None => Check::fail("lag", "unknown (the daemon never reported)", "start ferry"),
        });
        let recopies: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {s}.backfill_requests WHERE stream = $1 AND state IN ('requested', 'running')"
                ),
                &[stream],
            )
            .await
            .map_err(target("reading re-copy requests"))?
            .get(0);
        checks.push(if recopies == 0 {
            Check::pass("no re-copy running", "none")
        } else {
            Check::fail(
                "no re-copy running",
                format!("{recopies} re-copy request(s) pending or running"),
                "wait for `ferry backfill --table` to finish (ferry status shows it)",
            )
        });
        let dead: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {s}.dead_letter WHERE stream = $1"),
                &[stream],
            )
            .await
            .map_err(target("counting dead letters"))?
            .get(0);
        checks.push(if dead == 0 {
            Check::pass("no dead-lettered rows", "none")
        } else {
            Check::fail(
                "no dead-lettered rows",
                format!("{dead} rows in {}.dead_letter are not in PostgreSQL", self.schema),
                "fix those rows on the source (or the target) and delete them from the dead-letter table; `ferry verify` shows what differs",
            )
        });
        let last = passes::last_matched(client, &self.schema, stream)
            .await
            .map_err(target("reading verification passes"))?;
        let max_age = opts.max_verify_age.as_secs_f64();
        checks.push(match &last {
            Some(l) if l.age_seconds <= max_age && l.start.is_some() => Check::pass(
                "recent verification",
                format!("a {} pass matched {:.0} s ago (at most {:.0} s)", l.kind, l.age_seconds, max_age),
            ),
            Some(l) if l.start.is_none() => Check::fail(
                "recent verification",
                "the last matched pass ran before the stream had a checkpoint",
                "run `ferry verify` (or wait for the continuous verifier's next pass)",
            ),
            Some(l) => Check::fail(
                "recent verification",
                format!("the last matched pass finished {:.0} s ago (more than --max-verify-age {:.0} s)", l.age_seconds, max_age),
                "run `ferry verify`, or wait for the continuous verifier's next pass (verify.pass_interval_seconds)",
            ),
            None => Check::fail(
                "recent verification",
                "no verification pass has matched for this stream",
                "run `ferry verify` until it reports MATCH (with --repair if it finds drift)",
            ),
        });
        let since = last.as_ref().and_then(|l| l.start.clone());
        let changed = final_check::changes_since(config, client, since.as_ref())
            .await
            .map_err(target("reading changed keys"))?;
        let keys: usize = changed.values().map(|c| c.keys.len()).sum();
        let full: Vec<&str> = changed
            .iter()
            .filter(|(_, c)| final_check::method(c, opts.max_changed_keys) == "full")
            .map(|(t, _)| t.as_str())
            .collect();
        checks.push(Check::pass(
            "rows to check when frozen",
            if full.is_empty() {
                format!("{keys} changed keys in {} tables", changed.len())
            } else {
                format!(
                    "{keys} changed keys in {} tables; full checksum pass for {}",
                    changed.len(),
                    full.join(", ")
                )
            },
        ));
        checks.extend(self.source_checks(conn).await?);
        if !opts.without_rollback {
            checks.extend(reverse_prerequisites(client).await?);
        }
        Ok((checks, changed))
    }

    /// What the freeze needs on the source, and who it does not stop.
    async fn source_checks(&self, conn: &mut Conn) -> Result<Vec<Check>, CutoverError> {
        let mut checks = Vec::new();
        let grants: Vec<String> = conn
            .query("SHOW GRANTS FOR CURRENT_USER()")
            .await
            .map_err(source("reading grants"))?;
        let global: Vec<String> = grants
            .iter()
            .filter(|g| g.contains(" ON *.* "))
            .map(|g| g.to_ascii_uppercase())
            .collect();
        let has = |p: &str| {
            global
                .iter()
                .any(|g| g.contains("ALL PRIVILEGES") || g.contains(p))
        };
        let set_global = match self.flavor {
            Flavor::MariaDb => has("SUPER") || has("READ_ONLY ADMIN"),
            Flavor::MySql => has("SUPER") || has("SYSTEM_VARIABLES_ADMIN"),
        };
        let mut missing = Vec::new();
        if !set_global {
            missing.push(match self.flavor {
                Flavor::MariaDb => "READ_ONLY ADMIN (or SUPER)",
                Flavor::MySql => "SYSTEM_VARIABLES_ADMIN (or SUPER)",
            });
        }
        if !has("PROCESS") {
            missing.push("PROCESS");
        }
        if self.opts.kill_writers_after.is_some() && !(has("SUPER") || has("CONNECTION ADMIN")) {
            missing.push("CONNECTION ADMIN (or SUPER), for --kill-writers-after");
        }
        checks.push(if missing.is_empty() {
            Check::pass(
                "freeze privileges",
                "can set read_only, see and end other sessions",
            )
        } else {
            Check::fail(
                "freeze privileges",
                format!("missing {}", missing.join(", ")),
                format!("GRANT {} ON *.* TO <ferry user>", missing.join(", ")),
            )
        });
        let (ro, sro) = freeze::read_only_state(conn, self.flavor)
            .await
            .map_err(source("reading read_only"))?;
        let bypass = freeze::bypass_accounts(conn, self.flavor)
            .await
            .map_err(source("reading accounts"))?;
        checks.push(Check::pass(
            "read_only",
            match self.flavor {
                Flavor::MySql => format!(
                    "now read_only={} super_read_only={}; the freeze sets both (every account stops writing)",
                    on(ro),
                    on(sro.unwrap_or(false))
                ),
                Flavor::MariaDb if bypass.is_empty() => format!(
                    "now read_only={}; no account bypasses it",
                    on(ro)
                ),
                Flavor::MariaDb => format!(
                    "now read_only={}; accounts with SUPER or READ_ONLY ADMIN can still write after the freeze: {} — make sure the application uses none of them",
                    on(ro),
                    bypass.join(", ")
                ),
            },
        ));
        Ok(checks)
    }

    /// The dry run's expected window: the final check of the keys changed so far, timed now
    /// (reads only), plus the current lag (the drain) and the freeze's round trips.
    async fn expected_window(
        &self,
        changed: &std::collections::BTreeMap<String, super::changed_keys::Changed>,
        checks: &mut Vec<Check>,
    ) -> Option<f64> {
        let t0 = Instant::now();
        let mut conn = my::connect(&self.config.source).await.ok()?;
        let _ = freeze::open_writers(&mut conn).await.ok()?;
        let _ = freeze::final_position(&mut conn, self.flavor).await.ok()?;
        let freeze = t0.elapsed().as_secs_f64() * 2.0;
        let check = match final_check::run(self.config, changed, self.opts.max_changed_keys).await {
            Ok(c) => {
                checks.push(Check::pass(
                    "final check (timed now)",
                    format!(
                        "{} changed keys compared in {:.2} s ({} rows differ now; in-flight changes are expected while not frozen)",
                        c.keys_checked,
                        c.seconds,
                        c.differing_rows()
                    ),
                ));
                c.seconds
            }
            Err(e) => {
                checks.push(Check::fail(
                    "final check (timed now)",
                    e.to_string(),
                    "see the message",
                ));
                return None;
            }
        };
        let state = state::load(
            &pg::connect(&self.config.target).await.ok()?,
            &self.schema,
            &self.config.stream,
        )
        .await
        .ok()?;
        let drain = state.daemon_lag_seconds.unwrap_or(0.0) + 0.2;
        Some(freeze + drain + check)
    }

    /// Steps 2–5.
    async fn execute(
        &mut self,
        client: &mut Client,
        conn: &mut Conn,
        checks: Vec<Check>,
        changed: std::collections::BTreeMap<String, super::changed_keys::Changed>,
    ) -> Result<Report, CutoverError> {
        let config = self.config;
        let opts = self.opts;
        let schema = self.schema.clone();
        let stream = config.stream.clone();
        let t = Instant::now();
        let prior = freeze::read_only_state(conn, self.flavor)
            .await
            .map_err(source("reading read_only"))?;
        // Recorded before the freeze: whoever aborts restores exactly this.
        let Some(m) = state::transition(
            client,
            &schema,
            &stream,
            MigrationPhase::Replicating,
            None,
            MigrationPhase::Frozen,
            &Change {
                new_attempt: true,
                lease_seconds: Some(LEASE_SECONDS),
                prior_read_only: Some(prior),
                ..Change::default()
            },
            "cutover started: freezing writes on the source",
        )
        .await
        .map_err(target("recording the freeze"))?
        else {
            return Ok(self.report(
                Outcome::Refused,
                checks,
                "the stream left `replicating` meanwhile: another cutover started?",
            ));
        };
        self.attempt = m.attempt;
        let lease = Lease::start(config, m.attempt)
            .await
            .map_err(target("connecting for the lease"))?;
        self.frozen_at = Some(Instant::now());
        if let Err(e) = freeze::freeze(conn, self.flavor).await {
            return self
                .abort_report(
                    client,
                    conn,
                    checks,
                    &format!("setting read_only failed: {e}"),
                    prior,
                )
                .await;
        }
        self.step("freeze", t, "read_only set on the source");

        // Open write transactions end (their COMMIT fails under read_only) or are ended.
        let t = Instant::now();
        let frozen_at = self.frozen_at.unwrap_or_else(Instant::now);
        let writers_deadline = opts.kill_writers_after.unwrap_or(opts.timeout);
        let mut killed = 0;
        loop {
            let writers = match freeze::open_writers(conn).await {
                Ok(w) => w,
                Err(e) => {
                    return self
                        .abort_report(
                            client,
                            conn,
                            checks,
                            &format!("listing open transactions failed: {e}"),
                            prior,
                        )
                        .await
                }
            };
            if writers.is_empty() {
                break;
            }
            if frozen_at.elapsed() >= opts.timeout {
                let list: Vec<String> = writers.iter().map(|w| w.to_string()).collect();
                let why = format!(
                    "write transactions still open after --timeout {:?}: {}",
                    opts.timeout,
                    list.join("; ")
                );
                return self.abort_report(client, conn, checks, &why, prior).await;
            }
            if t.elapsed() >= writers_deadline {
                if opts.kill_writers_after.is_none() {
                    let list: Vec<String> = writers.iter().map(|w| w.to_string()).collect();
                    let why = format!(
                        "write transactions still open after {:?}: {} — end them, or pass --kill-writers-after",
                        writers_deadline,
                        list.join("; ")
                    );
                    return self.abort_report(client, conn, checks, &why, prior).await;
                }
                match freeze::kill(conn, &writers).await {
                    Ok(n) => killed += n,
                    Err(e) => {
                        return self
                            .abort_report(
                                client,
                                conn,
                                checks,
                                &format!("ending open transactions failed: {e}"),
                                prior,
                            )
                            .await
                    }
                }
            }
            // Not faster: on MariaDB 10.11, reading INNODB_TRX joined to PROCESSLIST every
            // 20 ms was measured to keep a killed session's rollback from finishing for
            // minutes; at 100 ms it ends within one poll.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.step(
            "writers",
            t,
            if killed == 0 {
                "no write transaction open".to_string()
            } else {
                format!("{killed} write transaction(s) ended by --kill-writers-after")
            },
        );

        let t = Instant::now();
        let (final_position, final_gtid) = match freeze::final_position(conn, self.flavor).await {
            Ok(p) => p,
            Err(e) => {
                return self
                    .abort_report(
                        client,
                        conn,
                        checks,
                        &format!("reading the final position failed: {e}"),
                        prior,
                    )
                    .await
            }
        };
        let recorded = state::transition(
            client,
            &schema,
            &stream,
            MigrationPhase::Frozen,
            Some(self.attempt),
            MigrationPhase::Frozen,
            &Change {
                final_position: Some((final_position.clone(), final_gtid.clone())),
                ..Change::default()
            },
            "final position recorded",
        )
        .await;
        if !matches!(recorded, Ok(Some(_))) {
            return self
                .abort_report(
                    client,
                    conn,
                    checks,
                    "recording the final position failed (or the cutover was taken away)",
                    prior,
                )
                .await;
        }
        self.step(
            "final position",
            t,
            format!(
                "{final_position}{}",
                final_gtid
                    .as_ref()
                    .map(|g| format!(" (gtid {g})"))
                    .unwrap_or_default()
            ),
        );

        // Drain: the daemon records it.
        let t = Instant::now();
        loop {
            if lease.lost() {
                return self
                    .abort_report(
                        client,
                        conn,
                        checks,
                        "the cutover was aborted by the daemon (lease lost)",
                        prior,
                    )
                    .await;
            }
            match state::load(client, &schema, &stream).await {
                Ok(m) if m.phase == MigrationPhase::Drained && m.attempt == self.attempt => break,
                Ok(m) if m.attempt != self.attempt || !m.phase.is_frozen() => {
                    return Ok(self.report(
                        Outcome::Aborted,
                        checks,
                        "the cutover was aborted meanwhile (ferry cutover --abort, or the daemon)",
                    ));
                }
                _ => {}
            }
            if frozen_at.elapsed() >= opts.timeout {
                let why = format!(
                    "not drained within --timeout {:?} (is ferry running and streaming? ferry status)",
                    opts.timeout
                );
                return self.abort_report(client, conn, checks, &why, prior).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.step(
            "drain",
            t,
            format!("the stream applied everything before {final_position}"),
        );
        fault_pause(MigrationPhase::Drained).await;

        let t = Instant::now();
        let check = match final_check::run(
            config,
            &changed_since_last(config, client, &changed).await?,
            opts.max_changed_keys,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                return self
                    .abort_report(
                        client,
                        conn,
                        checks,
                        &format!("the final check failed: {e}"),
                        prior,
                    )
                    .await
            }
        };
        if check.differing_rows() > 0 {
            let rows: Vec<String> = check
                .tables
                .iter()
                .flat_map(|t| {
                    t.differing
                        .iter()
                        .take(20)
                        .map(move |d| format!("{}: {d}", t.table))
                })
                .collect();
            let why = format!(
                "{} rows differ between source and target: {} — find them with `ferry verify`, repair with `ferry verify --repair`, then cut over again",
                check.differing_rows(),
                rows.join("; ")
            );
            let mut r = self.abort_report(client, conn, checks, &why, prior).await?;
            r.final_check = Some(check);
            return Ok(r);
        }
        self.step(
            "verify",
            t,
            format!(
                "{} changed rows in {} tables match",
                check.keys_checked,
                check.tables.len()
            ),
        );

        // Sequences: past the source's AUTO_INCREMENT and max(id), now that nothing more
        // arrives from MySQL (ferry's own inserts carry explicit ids).
        let t = Instant::now();
        let synced = match crate::target_schema::sequences::sync_sequences(config).await {
            Ok(s) => s,
            Err(e) => {
                return self
                    .abort_report(
                        client,
                        conn,
                        checks,
                        &format!("setting the sequences failed: {e}"),
                        prior,
                    )
                    .await
            }
        };
        let moved_sequences = synced
            .iter()
            .filter(|s| s.action != crate::target_schema::sequences::SequenceAction::Unchanged)
            .count();
        self.step(
            "sequences",
            t,
            format!(
                "{} AUTO_INCREMENT columns, {moved_sequences} sequences moved past the source's counter and max(id)",
                synced.len()
            ),
        );
        let moved = state::transition(
            client,
            &schema,
            &stream,
            MigrationPhase::Drained,
            Some(self.attempt),
            MigrationPhase::Verified,
            &Change::default(),
            "verified: the changed rows match",
        )
        .await;
        if !matches!(moved, Ok(Some(_))) {
            return self
                .abort_report(
                    client,
                    conn,
                    checks,
                    "recording `verified` failed (or the cutover was taken away)",
                    prior,
                )
                .await;
        }
        fault_pause(MigrationPhase::Verified).await;

        // Arming the reverse stream (src/reverse/arm.rs): PostgreSQL is still quiet here, so
        // the slot starts exactly at the switch point.
        if !opts.without_rollback {
            let t = Instant::now();
            match crate::reverse::arm(config, client, conn, self.flavor).await {
                Ok(armed) => self.step(
                    "reverse stream",
                    t,
                    format!(
                        "publication {} over {} tables, slot {} from {}{}",
                        armed.publication,
                        armed.tables,
                        armed.slot,
                        armed.start_lsn,
                        if armed.replica_identity_full.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; REPLICA IDENTITY FULL on {}",
                                armed.replica_identity_full.join(", ")
                            )
                        }
                    ),
                ),
                Err(e) => {
                    let why = format!("arming the reverse stream failed: {e} (or pass --without-rollback: no way back after the switch)");
                    return self.abort_report(client, conn, checks, &why, prior).await;
                }
            }
        }

        // The switch: past it, PostgreSQL takes writes.
        let moved = state::transition(
            client,
            &schema,
            &stream,
            MigrationPhase::Verified,
            Some(self.attempt),
            MigrationPhase::Switching,
            &Change::default(),
            "switching: running the switch command",
        )
        .await;
        if !matches!(moved, Ok(Some(_))) {
            return self
                .abort_report(
                    client,
                    conn,
                    checks,
                    "recording `switching` failed (or the cutover was taken away)",
                    prior,
                )
                .await;
        }
        let t = Instant::now();
        if let Err(why) = self
            .switch_command(&final_position, final_gtid.as_deref())
            .await
        {
            let mut r = self.abort_report(client, conn, checks, &why, prior).await?;
            r.final_check = Some(check);
            return Ok(r);
        }
        self.step(
            "switch",
            t,
            self.opts
                .switch_command
                .clone()
                .map_or("no switch command given".to_string(), |c| {
                    format!("`{c}` succeeded")
                }),
        );
        let window = self.frozen_at.map(|f| f.elapsed().as_secs_f64());
        let mut report = self.report(Outcome::Switched, checks, "PostgreSQL is primary");
        report.write_unavailable_seconds = window;
        report.final_position = Some(final_position.to_string());
        report.final_gtid = final_gtid;
        report.final_check = Some(check);
        let json = serde_json::to_value(&report).unwrap_or_default();
        drop(lease);
        state::transition(
            client,
            &schema,
            &stream,
            MigrationPhase::Switching,
            Some(self.attempt),
            MigrationPhase::Switched,
            &Change {
                release: true,
                report: Some(json),
                ..Change::default()
            },
            "switched: PostgreSQL is primary",
        )
        .await
        .map_err(target(
            "recording `switched` (run `ferry cutover` again to record it)",
        ))?;
        self.foreign_keys(&mut report).await;
        Ok(report)
    }

    /// After the switch (ferry writes nothing more to PostgreSQL, so no key can block the
    /// stream): the source's foreign keys are created `NOT VALID` and validated; violating rows
    /// are reported, never hidden — their key stays `NOT VALID` and still checks new writes.
    /// Outside the window; a failure here is reported, the switch stands.
    async fn foreign_keys(&mut self, report: &mut Report) {
        let t = Instant::now();
        let detail = match crate::target_schema::foreign_keys::validate_foreign_keys(self.config)
            .await
        {
            Ok(fks) => {
                let valid = fks.iter().filter(|f| f.valid).count();
                let violated: Vec<String> = fks
                    .iter()
                    .filter(|f| f.violations > 0)
                    .map(|f| f.to_string())
                    .collect();
                let carried = fks.iter().filter(|f| f.not_carried.is_none()).count();
                report.foreign_keys = fks;
                if violated.is_empty() {
                    format!("{valid} of {carried} foreign keys created and validated")
                } else {
                    tracing::warn!(violated = %violated.join("; "), "foreign keys with violating rows stay NOT VALID");
                    format!(
                        "{valid} of {carried} validated; with violating rows (NOT VALID, new writes are checked): {} — fix the rows, then `ferry schema --validate-foreign-keys`",
                        violated.join("; ")
                    )
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "creating the foreign keys after the switch failed");
                format!("failed: {e} — run `ferry schema --validate-foreign-keys --create`")
            }
        };
        self.step("foreign keys", t, detail);
        report.steps = self.steps.clone();
    }

    /// Runs the operator's switch command with the cutover's facts in its environment.
    async fn switch_command(
        &self,
        position: &BinlogPosition,
        gtid: Option<&str>,
    ) -> Result<(), String> {
        let Some(cmd) = &self.opts.switch_command else {
            return Ok(());
        };
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("FERRY_STREAM", &self.config.stream)
            .env("FERRY_PHASE", MigrationPhase::Switching.label())
            .env("FERRY_FINAL_POSITION", position.to_string())
            .env("FERRY_FINAL_GTID", gtid.unwrap_or(""))
            .env("FERRY_TARGET_HOST", &self.config.target.host)
            .env("FERRY_TARGET_PORT", self.config.target.port.to_string())
            .env("FERRY_TARGET_DATABASE", &self.config.target.database)
            .status()
            .await
            .map_err(|e| format!("the switch command `{cmd}` could not start: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the switch command `{cmd}` failed ({status})"))
        }
    }

    /// A cutover whose command died while the switch command ran: run it again, then record
    /// `switched`.
    async fn resume_switch(
        &mut self,
        client: &mut Client,
        _conn: &mut Conn,
        m: &Migration,
    ) -> Result<Report, CutoverError> {
        self.attempt = m.attempt;
        let Some(position) = m.final_position.clone() else {
            return Ok(self.report(
                Outcome::Refused,
                Vec::new(),
                "the interrupted cutover has no final position; run `ferry cutover --abort`",
            ));
        };
        if !state::renew_lease(
            client,
            &self.schema,
            &self.config.stream,
            m.attempt,
            LEASE_SECONDS,
        )
        .await
        .map_err(target("taking over the lease"))?
        {
            return Ok(self.report(
                Outcome::Refused,
                Vec::new(),
                "the interrupted cutover holds no lease to take over",
            ));
        }
        let lease = Lease::start(self.config, m.attempt)
            .await
            .map_err(target("connecting for the lease"))?;
        let t = Instant::now();
        if let Err(why) = self
            .switch_command(&position, m.final_gtid.as_deref())
            .await
        {
            drop(lease);
            let r = self.report(Outcome::Refused, Vec::new(), &format!("resuming the interrupted switch: {why}. The source stays read-only (the application may already write to PostgreSQL): fix the switch, run `ferry cutover` again, or `ferry cutover --abort` to go back to MySQL"));
            return Ok(r);
        }
        self.step(
            "switch (resumed)",
            t,
            "the switch command ran again after the cutover command was interrupted",
        );
        drop(lease);
        let mut report = self.report(
            Outcome::Switched,
            Vec::new(),
            "PostgreSQL is primary (interrupted switch resumed)",
        );
        report.final_position = Some(position.to_string());
        report.final_gtid = m.final_gtid.clone();
        state::transition(
            client,
            &self.schema,
            &self.config.stream,
            MigrationPhase::Switching,
            Some(m.attempt),
            MigrationPhase::Switched,
            &Change {
                release: true,
                report: serde_json::to_value(&report).ok(),
                ..Change::default()
            },
            "switched: the interrupted switch was resumed",
        )
        .await
        .map_err(target("recording `switched`"))?;
        self.foreign_keys(&mut report).await;
        Ok(report)
    }

    /// `ferry cutover --abort`.
    async fn abort_command(
        &mut self,
        client: &mut Client,
        conn: &mut Conn,
        m: &Migration,
    ) -> Result<Report, CutoverError> {
        match m.phase {
            MigrationPhase::Replicating => Ok(self.report(Outcome::Aborted, Vec::new(), "no cutover in progress; the stream is replicating")),
            MigrationPhase::Switched => Ok(self.report(Outcome::Refused, Vec::new(), "the stream is switched: PostgreSQL is primary; `ferry rollback` returns to MySQL without losing writes")),
            p if p.is_rolling_back() => Ok(self.report(Outcome::Refused, Vec::new(), &format!("a rollback is under way (phase {p}), not a cutover: `ferry rollback --abort` undoes it"))),
            _ => {
                self.attempt = m.attempt;
                self.abort(client, conn, m, "aborted by `ferry cutover --abort`").await?;
                Ok(self.report(Outcome::Aborted, Vec::new(), "cutover aborted: the source's read_only settings are restored; replication continues"))
            }
        }
    }

    /// Restores the source and returns the phase to `replicating`.
    async fn abort(
        &mut self,
        client: &mut Client,
        conn: &mut Conn,
        m: &Migration,
        event: &str,
    ) -> Result<(), CutoverError> {
        if let Some(prior) = m.prior_read_only {
            freeze::restore(conn, (prior, m.prior_super_read_only))
                .await
                .map_err(source(
                    "restoring read_only (the daemon retries when the lease runs out)",
                ))?;
        }
        state::transition(
            client,
            &self.schema,
            &self.config.stream,
            m.phase,
            Some(m.attempt),
            MigrationPhase::Replicating,
            &Change {
                release: true,
                ..Change::default()
            },
            event,
        )
        .await
        .map_err(target("recording the abort"))?;
        tracing::warn!(
            attempt = m.attempt,
            event,
            "cutover aborted; the source is writable again"
        );
        Ok(())
    }

    /// Aborts the running attempt and reports why.
    async fn abort_report(
        &mut self,
        client: &mut Client,
        conn: &mut Conn,
        checks: Vec<Check>,
        why: &str,
        prior: ReadOnly,
    ) -> Result<Report, CutoverError> {
        let t = Instant::now();
        let m = state::load(client, &self.schema, &self.config.stream)
            .await
            .map_err(target("reading the migration phase"))?;
        if m.attempt == self.attempt
            && (m.phase.is_frozen() || m.phase == MigrationPhase::Switching)
        {
            let m = Migration {
                prior_read_only: Some(prior.0),
                prior_super_read_only: prior.1,
                ..m
            };
            self.abort(client, conn, &m, &format!("aborted: {why}"))
                .await?;
        }
        self.step("abort", t, "read_only restored on the source");
        let mut r = self.report(
            Outcome::Aborted,
            checks,
            &format!("cutover aborted, the source is writable again and nothing was lost: {why}"),
        );
        r.write_unavailable_seconds = self.frozen_at.map(|f| f.elapsed().as_secs_f64());
        Ok(r)
    }
}

/// The changes to check: re-read when frozen, so changes recorded since the preconditions ran
/// are included.
async fn changed_since_last(
    config: &Config,
    client: &Client,
    earlier: &std::collections::BTreeMap<String, super::changed_keys::Changed>,
) -> Result<std::collections::BTreeMap<String, super::changed_keys::Changed>, CutoverError> {
    let last = passes::last_matched(client, &config.target.ferry_schema, &config.stream)
        .await
        .map_err(target("reading verification passes"))?;
    let Some(start) = last.and_then(|l| l.start) else {
        return Ok(earlier.clone());
    };
    final_check::changes_since(config, client, Some(&start))
        .await
        .map_err(target("reading changed keys"))
}

fn on(b: bool) -> &'static str {
    if b {
        "ON"
    } else {
        "OFF"
    }
}

/// The migration row once the daemon has reported after this call began (it reports every
/// second), so a `ferry resume` just before the cutover is seen; after three seconds, the row
/// as it is (and the daemon check says how stale it is).
async fn fresh_daemon_report(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Migration, CutoverError> {
    let began = std::time::Instant::now();
    loop {
        let m = state::load(client, schema, stream)
            .await
            .map_err(target("reading the migration phase"))?;
        let waited = began.elapsed();
        let fresh = m
            .daemon_age_seconds
            .is_some_and(|age| age < waited.as_secs_f64());
        if fresh || waited > Duration::from_secs(3) {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn daemon_check(m: &Migration) -> Check {
    match (m.daemon_age_seconds, m.daemon_phase.as_deref()) {
        (Some(age), Some("streaming")) if age <= DAEMON_FRESH_SECONDS => Check::pass(
            "ferry streaming",
            format!(
                "the daemon (pid {}) reported {age:.1} s ago",
                m.daemon_pid.unwrap_or(0)
            ),
        ),
        (Some(age), _) if age > DAEMON_FRESH_SECONDS => Check::fail(
            "ferry streaming",
            format!("the daemon last reported {age:.0} s ago"),
            "start ferry (`ferry run` / `systemctl start ferry`) and let it catch up",
        ),
        (Some(_), Some("paused")) => Check::fail(
            "ferry streaming",
            "the daemon is paused",
            "`ferry resume`, then let it catch up",
        ),
        (Some(_), Some(phase)) => Check::fail(
            "ferry streaming",
            format!("the daemon is {phase}"),
            "wait until ferry status shows streaming (the backfill must finish first)",
        ),
        _ => Check::fail(
            "ferry streaming",
            "no ferry daemon has reported for this stream",
            "start ferry with this configuration",
        ),
    }
}

/// What the reverse stream needs on PostgreSQL: logical decoding, a free slot, the right.
async fn reverse_prerequisites(client: &Client) -> Result<Vec<Check>, CutoverError> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map_err(target("reading the reverse stream's prerequisites"))?;
    let wal: String = row.get(0);
    let max: i32 = row.get(1);
    let used: i32 = row.get(2);
    let replication: bool = row.get(3);
    let mut checks = vec![if wal == "logical" {
        Check::pass("wal_level", "logical (the reverse stream can be armed)")
    } else {
        Check::fail(
            "wal_level",
            format!("wal_level = {wal}: the rollback's reverse stream needs logical decoding"),
            "set wal_level = logical in postgresql.conf and restart PostgreSQL, or pass --without-rollback (no way back after the switch)",
        )
    }];
    checks.push(if used < max {
        Check::pass("replication slot", format!("{used} of {max} slots in use"))
    } else {
        Check::fail(
            "replication slot",
            format!("all {max} replication slots are in use"),
            "raise max_replication_slots (restart), or drop an unused slot",
        )
    });
    checks.push(if replication {
        Check::pass(
            "replication privilege",
            "the target user may create a replication slot",
        )
    } else {
        Check::fail(
            "replication privilege",
            "the target user has neither REPLICATION nor superuser",
            "ALTER ROLE <ferry user> REPLICATION",
        )
    });
    Ok(checks)
}

/// A duration as the command line takes it: a number with `ms`, `s`, `m` or `h` (seconds
/// without a unit), e.g. `5s`, `1.5m`, `250ms`.
///
/// # Errors
/// Text that is not such a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 5s, 250ms, 2m, 1h)"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The report as a human reads it.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!("ferry cutover  stream {:?}\n\n", r.stream));
    if !r.checks.is_empty() {
        out.push_str("preconditions\n");
        for c in &r.checks {
            out.push_str(&format!(
                "  [{}] {:<26} {}\n",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("         fix: {fix}\n"));
            }
        }
        out.push('\n');
    }
    if r.outcome == Outcome::Planned {
        out.push_str("plan\n");
        for (i, step) in [
            "freeze: record read_only, set read_only (+ super_read_only on MySQL)",
            "writers: wait for open write transactions (end them after --kill-writers-after)",
            "final position: read after the freeze",
            "drain: the stream applies everything before the final position",
            "verify: compare the rows changed since the last matched pass",
            "sequences: set every identity past the source's AUTO_INCREMENT and max(id)",
            "reverse stream: create the publication and the slot (unless --without-rollback)",
            "switch: run the switch command; success is the point of no return",
            "foreign keys (after the window): create NOT VALID, validate, report violations",
        ]
        .iter()
        .enumerate()
        {
            out.push_str(&format!("  {}. {step}\n", i + 1));
        }
        if let Some(w) = r.expected_window_seconds {
            out.push_str(&format!(
                "\nexpected write-unavailable window: {w:.2} s plus the switch command's own time\n"
            ));
        }
        out.push('\n');
    }
    if !r.steps.is_empty() {
        out.push_str("steps\n");
        for s in &r.steps {
            out.push_str(&format!(
                "  {:<16} at {:>7.3} s  took {:>7.3} s  {}\n",
                s.name, s.at_seconds, s.seconds, s.detail
            ));
        }
        out.push('\n');
    }
    if let Some(w) = r.write_unavailable_seconds {
        out.push_str(&format!("write-unavailable window: {w:.3} s\n"));
    }
    if let Some(p) = &r.final_position {
        out.push_str(&format!("final position: {p}\n"));
    }
    out.push_str(&format!("{}\n", r.message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn only_a_switch_or_a_clean_plan_exits_zero() {
        let report = |outcome, ok| Report {
            stream: "s".into(),
            outcome,
            checks: vec![Check {
                name: "x",
                ok,
                detail: String::new(),
                fix: None,
            }],
            steps: Vec::new(),
            write_unavailable_seconds: None,
            expected_window_seconds: None,
            final_position: None,
            final_gtid: None,
            final_check: None,
            foreign_keys: Vec::new(),
            message: String::new(),
        };
        assert_eq!(report(Outcome::Switched, true).exit_code(), 0);
        assert_eq!(report(Outcome::Planned, true).exit_code(), 0);
        assert_eq!(report(Outcome::Planned, false).exit_code(), 1);
        assert_eq!(report(Outcome::Aborted, true).exit_code(), 1);
        assert_eq!(report(Outcome::Refused, false).exit_code(), 1);
    }
}
