//! `ferry plan`: measures both databases and writes the migration plan — current state,
//! workload, per-table readiness, a bounded data scan, the objects ferry does not carry,
//! estimates from a sample copy, and the phases with the commands that perform and gate them.
//!
//! Guarantees: read-only on both sides. Every source session `ferry plan` opens is marked
//! read-only; the target is written only inside transactions that are rolled back (the
//! preflight's write check and the sample copy's scratch schema), so a killed `ferry plan`
//! leaves nothing behind. Every problem found is listed (the plan never stops at the first),
//! each blocker with its fix; [`Plan::exit_code`] is 1 exactly when a blocker exists.

pub mod estimate;
pub mod render;
pub mod sample_copy;
pub mod sample_verify;
pub mod scan;
pub mod survey;
pub mod workload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::preflight;
use crate::source::connect;
use crate::transform::CaseInsensitive;

/// What `ferry plan` was asked for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Length of the workload sample.
    pub sample_seconds: f64,
    /// Data scan rate limit (0: unlimited).
    pub scan_rows_per_second: u64,
    /// Rows scanned per table at most (`None`: all; `Some(0)`: no scan).
    pub scan_max_rows: Option<u64>,
    /// Bounds of each table's sample copy; tables sampled at most.
    pub sample: sample_copy::SampleBounds,
    pub sample_tables: usize,
    /// The config file's path as the operator gave it (for the commands in the plan).
    pub config_path: String,
    pub progress: bool,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The migration cannot proceed until it is fixed.
    Blocker,
    /// Proceeds, but something is lost or changes meaning unless the team acts.
    Warning,
    /// Worth knowing.
    Note,
}

/// One readiness finding.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// The table (`db.table`), or empty for the server.
    pub table: String,
    pub what: String,
    pub fix: String,
}

/// The target side.
#[derive(Debug, Clone, Serialize)]
pub struct TargetState {
    pub version: String,
    pub database: String,
    pub database_bytes: u64,
    pub wal_level: String,
    pub max_replication_slots: String,
}

/// One column's mapping.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnPlan {
    pub name: String,
    pub source_type: String,
    pub target_type: String,
    /// The `types.*` policies that decide this column's problem values (empty: every value
    /// converts exactly or is refused as out of range).
    pub policy: String,
}

fn policy_text(p: &crate::transform::ValuePolicy) -> String {
    use crate::transform::ValuePolicy;
    match p {
        ValuePolicy::Refuse => "refuse".into(),
        ValuePolicy::Null => "null".into(),
        ValuePolicy::Value(v) => format!("value:{v}"),
        ValuePolicy::DeadLetter => "dead_letter".into(),
    }
}

/// The policies that apply to a column of `kind`.
fn column_policy(
    kind: &crate::transform::ValueKind,
    types: &crate::transform::TypeOptions,
) -> String {
    use crate::transform::ValueKind;
    match kind {
        ValueKind::Date | ValueKind::DateTime | ValueKind::Timestamp => {
            format!("zero_date = {}", policy_text(&types.zero_date))
        }
        ValueKind::Text { .. } | ValueKind::Enum { .. } | ValueKind::Set { .. } => format!(
            "nul_in_text = {}, invalid_text = {}",
            policy_text(&types.nul_in_text),
            policy_text(&types.invalid_text)
        ),
        ValueKind::Json => format!("nul_in_text = {}", policy_text(&types.nul_in_text)),
        _ => String::new(),
    }
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stream: String,
    pub generated_at: String,
    pub source: survey::SourceState,
    pub target: Option<TargetState>,
    pub workload: workload::Workload,
    pub tables: Vec<survey::TableFacts>,
    pub columns: Vec<(String, Vec<ColumnPlan>)>,
    pub scan: Vec<scan::TableScan>,
    pub objects: Vec<survey::Uncarried>,
    pub samples: Vec<sample_copy::Sample>,
    /// Tables whose sample copy failed, with the reason (estimated by bytes instead).
    pub sample_failures: Vec<String>,
    pub estimates: estimate::Estimates,
    pub checks: Vec<CheckResult>,
    pub issues: Vec<Issue>,
    #[serde(skip)]
    pub config_path: String,
    #[serde(skip)]
    pub verify_pass_interval_seconds: f64,
}

/// A preflight check, for the plan.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub fix: Option<String>,
}

impl Plan {
    pub fn blockers(&self) -> impl Iterator<Item = &Issue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Blocker)
    }

    /// 0 when nothing blocks the migration, 1 when something does.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.blockers().next().is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("connecting to the source: {0}")]
    Connect(#[from] connect::ConnectError),
    #[error("reading the source: {0}")]
    Source(#[from] mysql_async::Error),
    #[error(transparent)]
    Scan(#[from] scan::ScanError),
    #[error("{0}")]
    Preflight(String),
}

/// Measures both sides and builds the plan.
///
/// # Errors
/// A source that cannot be reached or read (the target's problems become findings).
pub async fn run(config: &Config, options: &PlanOptions) -> Result<Plan, PlanError> {
    let report = preflight::run(config).await;
    let Some(info) = report.server.clone() else {
        return Err(PlanError::Preflight(report.failures()));
    };
    let types = report.types.clone();
    let mut conn = connect::connect(&config.source).await?;
    mysql_async::prelude::Queryable::query_drop(&mut conn, "SET SESSION TRANSACTION READ ONLY")
        .await?;
    let survey = survey::survey(&mut conn, &info, &config.tables, &types).await?;
    let target = target_state(config).await;
    let planned: Vec<crate::schema::Table> = survey
        .tables
        .iter()
        .filter_map(|t| t.planned.clone())
        .collect();

    // The workload window runs while the data scan reads (its own statements subtracted).
    let statements = Arc::new(AtomicU64::new(0));
    let start = workload::read(&mut conn).await?;
    let scan_options = scan::ScanOptions {
        rows_per_second: options.scan_rows_per_second,
        max_rows_per_table: options.scan_max_rows,
        state_file: config.state_dir.join("plan-scan.json"),
        progress: options.progress,
    };
    let scan_fut = scan::scan(config, &types, &planned, &scan_options, statements.clone());
    let sleep = tokio::time::sleep(Duration::from_secs_f64(options.sample_seconds.max(1.0)));
    let (scanned, ()) = tokio::join!(scan_fut, sleep);
    let scanned = scanned?;
    let end = workload::read(&mut conn).await?;
    let load = workload::rates(&start, &end, statements.load(Ordering::Relaxed));
    let _ = conn.disconnect().await;

    // The sample copy: the largest tables, after the scan so the two do not share the CPU.
    let mut largest = planned.clone();
    largest.sort_by_key(|t| {
        std::cmp::Reverse(
            survey
                .tables
                .iter()
                .find(|f| f.name == t.source.to_string())
                .map_or(0, |f| f.data_bytes.max(f.rows)),
        )
    });
    largest.truncate(options.sample_tables);
    let largest = with_text_modes(config, largest).await;
    let target_writable = !report
        .checks
        .iter()
        .any(|c| c.name == "target writable" && !c.ok);
    let (samples, sample_failures) = if target_writable {
        sample_copy::sample(
            config,
            &largest,
            config.backfill.parallel_tables,
            options.sample,
        )
        .await
    } else {
        (Vec::new(), Vec::new())
    };
    // The largest table alone: how much faster a table copies once the others are done.
    let alone = if target_writable && config.backfill.parallel_tables > 1 && samples.len() > 1 {
        let (mut one, _) = sample_copy::sample(config, &largest[..1], 1, options.sample).await;
        one.pop()
    } else {
        None
    };

    let scan_rate = {
        let rows: u64 = scanned.iter().map(|s| s.rows_scanned).sum();
        let secs: f64 = scanned.iter().map(|s| s.read_seconds).sum();
        (secs > 0.0).then(|| rows as f64 / secs)
    };
    let exact = |name: &str| {
        scanned
            .iter()
            .find(|s| s.table == name && s.complete)
            .map(|s| s.rows_scanned)
    };
    let estimates = estimate::estimate(
        &survey.tables,
        &exact,
        &samples,
        alone.as_ref(),
        &load,
        scan_rate,
        config.backfill.parallel_tables,
        survey.source.binlog_retention_seconds,
        config.verify.pass_interval.as_secs_f64(),
        config.verify.parallel,
    );
    let columns = planned
        .iter()
        .map(|t| {
            (
                t.source.to_string(),
                t.source_columns
                    .iter()
                    .zip(&t.columns)
                    .map(|(s, r)| ColumnPlan {
                        name: s.name.clone(),
                        source_type: s.column_type.clone(),
                        target_type: r.pg_type.sql(),
                        policy: column_policy(&r.kind, &types),
                    })
                    .collect(),
            )
        })
        .collect();
    let checks: Vec<CheckResult> = report
        .checks
        .iter()
        .map(|c| CheckResult {
            name: c.name.to_string(),
            ok: c.ok,
            detail: c.detail.clone(),
            fix: c.fix.clone(),
        })
        .collect();
    let mut plan = Plan {
        stream: config.stream.clone(),
        generated_at: utc_now_text(),
        source: survey.source,
        target,
        workload: load,
        tables: survey.tables,
        columns,
        scan: scanned,
        objects: survey.objects,
        samples,
        sample_failures: sample_failures.iter().map(|e| e.to_string()).collect(),
        estimates,
        checks,
        issues: Vec::new(),
        config_path: options.config_path.clone(),
        verify_pass_interval_seconds: config.verify.pass_interval.as_secs_f64(),
    };
    plan.issues = readiness(&plan, config);
    Ok(plan)
}

/// Now as `YYYY-MM-DD HH:MM:SS UTC`.
/// Each table with the way `ferry verify` would hash its text columns (read as verify reads
/// it; binary, the slower way, when the catalog cannot be read).
async fn with_text_modes(
    config: &Config,
    tables: Vec<crate::schema::Table>,
) -> Vec<(crate::schema::Table, crate::verify::normalize::TextMode)> {
    let names: Vec<String> = tables.iter().map(|t| t.source.to_string()).collect();
    let modes = match crate::verify::query::my_conn(config).await {
        Ok(mut conn) => {
            let loaded = crate::verify::load_tables(config, &mut conn, &names).await;
            let _ = conn.disconnect().await;
            loaded.unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    tables
        .into_iter()
        .map(|t| {
            let mode = modes
                .iter()
                .find(|(v, _)| v.source == t.source)
                .map_or(crate::verify::normalize::TextMode::Binary, |(_, m)| *m);
            (t, mode)
        })
        .collect()
}

fn utc_now_text() -> String {
    let now = crate::progress::unix_now().max(0.0) as i64;
    let (y, m, d) = crate::transform::temporal::civil_from_days(now.div_euclid(86_400));
    let t = now.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

async fn target_state(config: &Config) -> Option<TargetState> {
    let client = crate::sink::connect::connect(&config.target).await.ok()?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_database()::text, \
             pg_database_size(current_database()), current_setting('wal_level'), \
             current_setting('max_replication_slots')",
            &[],
        )
        .await
        .ok()?;
    Some(TargetState {
        version: row.get(0),
        database: row.get(1),
        database_bytes: row.get::<_, i64>(2).max(0) as u64,
        wal_level: row.get(3),
        max_replication_slots: row.get(4),
    })
}

/// Every finding, most serious first.
fn readiness(plan: &Plan, config: &Config) -> Vec<Issue> {
    let mut out = Vec::new();
    let issue = |severity, table: &str, what: String, fix: &str| Issue {
        severity,
        table: table.to_string(),
        what,
        fix: fix.to_string(),
    };
    for c in plan.checks.iter().filter(|c| !c.ok && c.name != "tables") {
        out.push(issue(
            Severity::Blocker,
            "",
            format!("preflight {}: {}", c.name, c.detail),
            c.fix.as_deref().unwrap_or(""),
        ));
    }
    for t in &plan.tables {
        if let Some(e) = &t.planning_error {
            out.push(issue(
                Severity::Blocker,
                &t.name,
                e.clone(),
                "see the message",
            ));
        }
        if t.key.is_none() && t.planning_error.is_none() {
            out.push(issue(
                Severity::Warning,
                &t.name,
                "no primary key and no NOT NULL unique key: replicated with the whole row as its identity (copied in one long consistent snapshot, no resume mid-table; each update or delete on the target looks one equal row up, a scan unless an index covers it; no re-copy)".into(),
                "add a primary key on the source if the table has one natural (ALTER TABLE ... ADD PRIMARY KEY), or an index on a selective NOT NULL column (the lookup uses it); otherwise nothing to do",
            ));
        }
        if !t.engine.is_empty() && !t.engine.eq_ignore_ascii_case("InnoDB") {
            out.push(issue(
                Severity::Warning,
                &t.name,
                format!("engine {}: not transactional, no consistent snapshot; a statement that fails half way or a source crash leaves rows the binlog may not match", t.engine),
                &format!("ALTER TABLE {} ENGINE=InnoDB on the source before the backfill (or verify this table after it and after the cutover)", t.name),
            ));
        }
        if t.partitioned {
            out.push(issue(
                Severity::Note,
                &t.name,
                "partitioned: PostgreSQL receives one unpartitioned table with every row".into(),
                "partition it in PostgreSQL by hand before the backfill if the application needs partitions",
            ));
        }
        for fk in &t.foreign_keys {
            if !fk.parent_selected {
                out.push(issue(
                    Severity::Warning,
                    &t.name,
                    format!("foreign key {} references {}, which is not replicated: it cannot be created in PostgreSQL", fk.name, fk.parent),
                    "add the parent table to tables.include, or drop the key from the plan knowingly",
                ));
            }
        }
        if !t.triggers.is_empty() {
            out.push(issue(
                Severity::Warning,
                &t.name,
                format!("triggers {}: not carried (their effects are, as rows)", t.triggers.join(", ")),
                "port each to a PostgreSQL trigger and create it at the switch, not before (ferry already applies the rows it wrote)",
            ));
        }
        if !t.generated_columns.is_empty() {
            out.push(issue(
                Severity::Warning,
                &t.name,
                format!("generated columns {}: carried as plain columns with MySQL's computed values", t.generated_columns.join(", ")),
                "after the switch the application (or a GENERATED ALWAYS AS column recreated in PostgreSQL) must compute them",
            ));
        }
        for k in &t.case_insensitive_unique_keys {
            out.push(match config.types.case_insensitive {
                CaseInsensitive::Text => issue(
                    Severity::Warning,
                    &t.name,
                    format!("{k} compares text case-insensitively on the source; with types.case_insensitive = \"text\" PostgreSQL compares exactly, so after the switch 'Bob' and 'bob' could both be inserted and lookups by another spelling miss"),
                    "set types.case_insensitive = \"icu\" or \"citext\" before the copy (README: Case-insensitive text), or replace the unique index by one on lower(column) after the switch",
                ),
                mode => issue(
                    Severity::Note,
                    &t.name,
                    format!("{k} compares text case-insensitively on the source; on PostgreSQL it is {} (case ignored, accents kept)", if mode == CaseInsensitive::Icu { "text with the ICU collation ferry_ci" } else { "citext" }),
                    "MySQL's _ci collations also ignore most accents; PostgreSQL will accept 'e' next to 'é' in this key (README: Case-insensitive text)",
                ),
            });
        }
        if t.charsets
            .iter()
            .any(|c| !c.starts_with("utf8") && c != "binary" && c != "ascii")
        {
            out.push(issue(
                Severity::Note,
                &t.name,
                format!("character sets {}: text is decoded to UTF-8 (the scan below counts bytes invalid in them)", t.charsets.join(", ")),
                "none needed unless the scan finds invalid bytes",
            ));
        }
    }
    for s in &plan.scan {
        for f in &s.findings {
            let (severity, fix) = match f.outcome.as_str() {
                "refused" => (Severity::Blocker, fix_for(&f.kind)),
                "dead_lettered" => (Severity::Warning, "these rows go to the dead-letter table instead of the target: fix them on the source, or choose another types.* policy"),
                "substituted" => (Severity::Note, "carried with the configured substitute (counted in ferry_values_substituted_total)"),
                _ => (Severity::Note, decision_for(&f.kind)),
            };
            let sampled = if s.complete {
                ""
            } else {
                " (in the rows scanned)"
            };
            out.push(issue(
                severity,
                &s.table,
                format!(
                    "{} {} of kind {} in column {}{sampled}, e.g. {}: {}",
                    f.count,
                    if f.count == 1 { "value" } else { "values" },
                    f.kind,
                    f.column,
                    f.examples.join("; "),
                    f.outcome.replace('_', " ")
                ),
                fix,
            ));
        }
    }
    for f in &plan.sample_failures {
        out.push(issue(
            Severity::Warning,
            "",
            format!("not measured: {f}"),
            "the estimate uses the other tables' rate; fix the cause and run ferry plan again",
        ));
    }
    let e = &plan.estimates;
    if let Some(margin) = e.retention_margin_seconds {
        if margin < 0.0 {
            out.push(issue(
                Severity::Blocker,
                "",
                format!(
                    "binlog retention {} is shorter than twice the backfill and verification estimate: the binlog ferry resumes from may be purged",
                    render::duration(plan.source.binlog_retention_seconds as f64)
                ),
                &format!(
                    "SET GLOBAL binlog_expire_logs_seconds = {} (and in my.cnf) for the migration",
                    (plan.source.binlog_retention_seconds as f64 - margin).ceil().max(86_400.0) as u64
                ),
            ));
        }
    }
    if let Some(h) = e.apply_headroom {
        if h < 3.0 {
            out.push(issue(
                Severity::Warning,
                "",
                format!("apply headroom {h:.1}×: ferry's measured write rate is less than 3× the source's row change rate; catch-up after the backfill will be slow"),
                "raise apply.group_max_rows / apply.batch_rows, give the target more CPU and faster disk, or migrate in a quieter period",
            ));
        }
    }
    if let Some(t) = &plan.target {
        if t.wal_level != "logical" {
            out.push(issue(
                Severity::Warning,
                "",
                format!("target wal_level = {}: the reverse stream (rollback after the switch without losing writes) needs logical", t.wal_level),
                "ALTER SYSTEM SET wal_level = logical and restart PostgreSQL before the cutover, or cut over with --without-rollback knowingly",
            ));
        }
    } else {
        out.push(issue(
            Severity::Blocker,
            "",
            "the target cannot be reached".into(),
            "check target.host/port/user/database and the password",
        ));
    }
    let _ = config;
    out.sort_by_key(|i| i.severity);
    out
}

fn fix_for(kind: &str) -> &'static str {
    match kind {
        "zero_date" => "fix the rows on the source, or set types.zero_date = \"null\", \"value:<date>\" or \"dead_letter\"",
        "nul_in_text" => "fix the rows on the source, or set types.nul_in_text = \"null\", \"value:<text>\" or \"dead_letter\"",
        "invalid_text" => "fix the rows or the column's character set on the source, or set types.invalid_text = \"null\" or \"dead_letter\"",
        _ => "fix the rows on the source (PostgreSQL cannot hold them in the mapped type)",
    }
}

fn decision_for(kind: &str) -> &'static str {
    match kind {
        "time_beyond_24h" => "carried exactly as interval; an application reading the column as a time of day must handle durations",
        "bigint_unsigned_above_2_63" => "carried exactly as numeric(20,0); application code using 64-bit signed integers must not read these",
        "utf8_bytes_in_latin1" => "UTF-8 bytes in a latin1 column (written through a latin1 connection): PostgreSQL shows them as MySQL does (mojibake such as 'Ã©'); repair them after the switch with convert_from(convert_to(col, 'WIN1252'), 'UTF8') if the application reads them as UTF-8",
        "enum_error_value" => "MySQL's invalid-ENUM value '' is carried as ''; decide what the application should see",
        _ => "review",
    }
}
