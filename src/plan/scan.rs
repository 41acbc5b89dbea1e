//! The bounded data scan: every selected table read in key order, each value run through the
//! same conversion the backfill and the stream use, so the plan counts exactly the values that
//! would be refused, set aside or substituted under the configured `types.*` policies — plus
//! values that convert exactly but need a decision (TIME beyond 24 h, BIGINT UNSIGNED above
//! 2^63, ENUM's error value `''`, UTF-8 byte sequences in latin1 columns).
//!
//! Guarantees: read-only (a read-only session, one short keyset statement per chunk, no
//! transaction held); at most `rows_per_second` rows per second over all tables and at most
//! `max_rows_per_table` rows of each (then the table is reported as sampled, not scanned);
//! resumable: progress (last key, counts, examples) is written to a state file after each
//! chunk, a later run continues from it, and a finished scan removes it. At most
//! [`EXAMPLES`] example keys per finding are kept.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use serde::{Deserialize, Serialize};

use crate::backfill::worker::RateLimiter;
use crate::config::Config;
use crate::schema::Table;
use crate::source::connect;
use crate::source::snapshot::{ChunkReader, KeyValue};
use crate::transform::charset::Charset;
use crate::transform::{convert, resolve, Resolution, SourceValue, TypeOptions, ValueKind};

/// Example keys kept per finding.
pub const EXAMPLES: usize = 3;

/// How the scan is bounded.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// 0: unlimited.
    pub rows_per_second: u64,
    /// `None`: every row; `Some(0)`: no scan.
    pub max_rows_per_table: Option<u64>,
    pub state_file: PathBuf,
    /// Print a progress line on stderr (when it is a terminal).
    pub progress: bool,
}

/// Values of one kind in one column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finding {
    pub column: String,
    /// `zero_date`, `nul_in_text`, `invalid_text`, `out_of_range`, `unexpected` (ferry's
    /// problem kinds), or `time_beyond_24h`, `bigint_unsigned_above_2_63`, `enum_error_value`,
    /// `utf8_bytes_in_latin1`.
    pub kind: String,
    /// What ferry does with them under the configured policy: `refused` (the copy would stop),
    /// `dead_lettered`, `substituted`, or `carried` (exactly; a decision for the application).
    pub outcome: String,
    pub count: u64,
    /// Keys of the first rows found, as `col=value`.
    pub examples: Vec<String>,
}

/// The scan of one table.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct TableScan {
    pub table: String,
    pub rows_scanned: u64,
    /// Every row was read (not cut by `max_rows_per_table`).
    pub complete: bool,
    pub findings: Vec<Finding>,
    /// Time spent in the source reads (not in the rate limit's waits).
    #[serde(default)]
    pub read_seconds: f64,
    /// Where a resumed scan continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<KeyValue>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    tables: BTreeMap<String, TableScan>,
}

fn load_state(path: &PathBuf) -> State {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(path: &PathBuf, state: &State) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(state).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("data scan of {table}: {source}")]
    Source {
        table: String,
        source: mysql_async::Error,
    },
    #[error("data scan: connecting to the source: {0}")]
    Connect(#[from] connect::ConnectError),
}

/// Scans `tables`; `statements` counts the SELECTs it ran (for the workload figures).
///
/// # Errors
/// Source errors; the state file keeps what was scanned so far.
pub async fn scan(
    config: &Config,
    types: &TypeOptions,
    tables: &[Table],
    options: &ScanOptions,
    statements: Arc<AtomicU64>,
) -> Result<Vec<TableScan>, ScanError> {
    let mut state = load_state(&options.state_file);
    if options.max_rows_per_table == Some(0) {
        return Ok(Vec::new());
    }
    let limiter = RateLimiter::new(options.rows_per_second);
    let total: u64 = tables
        .iter()
        .map(|t| {
            options
                .max_rows_per_table
                .map_or(t.estimated_rows, |m| t.estimated_rows.min(m))
        })
        .sum();
    let mut progress = Progress::new(options.progress && std::io::stderr().is_terminal(), total);
    let mut out = Vec::new();
    for table in tables {
        let name = table.source.to_string();
        let mut ts = state.tables.get(&name).cloned().unwrap_or(TableScan {
            table: name.clone(),
            ..TableScan::default()
        });
        if !ts.complete && !reached(options, &ts) {
            scan_table(
                config,
                types,
                table,
                &mut ts,
                options,
                &limiter,
                &statements,
                &mut progress,
                &mut state,
            )
            .await?;
        }
        progress.done_before += ts.rows_scanned;
        progress.current = 0;
        ts.last_key = None;
        out.push(ts);
    }
    progress.finish();
    // A finished scan leaves nothing to resume.
    let _ = std::fs::remove_file(&options.state_file);
    Ok(out)
}

fn reached(options: &ScanOptions, ts: &TableScan) -> bool {
    options
        .max_rows_per_table
        .is_some_and(|m| ts.rows_scanned >= m)
}

#[allow(clippy::too_many_arguments)]
async fn scan_table(
    config: &Config,
    types: &TypeOptions,
    table: &Table,
    ts: &mut TableScan,
    options: &ScanOptions,
    limiter: &RateLimiter,
    statements: &AtomicU64,
    progress: &mut Progress,
    state: &mut State,
) -> Result<(), ScanError> {
    let name = table.source.to_string();
    let err = |source| ScanError::Source {
        table: name.clone(),
        source,
    };
    let mut conn = connect::connect(&config.source).await?;
    conn.query_drop("SET SESSION TRANSACTION READ ONLY")
        .await
        .map_err(err)?;
    let mut reader = ChunkReader::new(
        conn,
        table,
        config.backfill.chunk_rows.min(10_000),
        config.backfill.chunk_bytes,
    )
    .await
    .map_err(|e| err(driver_error(e)))?;
    let mut last_saved = Instant::now();
    loop {
        let began = Instant::now();
        let chunk = reader
            .read(ts.last_key.as_deref())
            .await
            .map_err(|e| err(driver_error(e)))?;
        ts.read_seconds += began.elapsed().as_secs_f64();
        statements.fetch_add(1, Ordering::Relaxed);
        let Some(key) = chunk.last_key else {
            ts.complete = true;
            break;
        };
        let mut rows = chunk.rows;
        if let Some(max) = options.max_rows_per_table {
            let room = max.saturating_sub(ts.rows_scanned) as usize;
            rows.truncate(room);
        }
        limiter.take(rows.len() as u64).await;
        for row in &rows {
            examine(types, table, row, ts);
        }
        ts.rows_scanned += rows.len() as u64;
        ts.last_key = Some(key);
        progress.current = ts.rows_scanned;
        progress.tick(&name);
        if reached(options, ts) {
            break;
        }
        if last_saved.elapsed() >= Duration::from_secs(1) {
            state.tables.insert(name.clone(), ts.clone());
            if let Err(e) = save_state(&options.state_file, state) {
                tracing::warn!(error = %e, file = %options.state_file.display(), "cannot store the scan's progress; an interrupted scan starts over");
            }
            last_saved = Instant::now();
        }
    }
    state.tables.insert(name, ts.clone());
    let _ = save_state(&options.state_file, state);
    let _ = reader.into_conn().disconnect().await;
    Ok(())
}

/// A snapshot read's failure as the driver error the scan reports.
fn driver_error(e: crate::source::snapshot::SnapshotError) -> mysql_async::Error {
    match e {
        crate::source::snapshot::SnapshotError::Mysql(e) => e,
        other => mysql_async::Error::Other(other.to_string().into()),
    }
}

/// Runs one row's values through the conversion and the decision checks.
fn examine(types: &TypeOptions, table: &Table, row: &Row, ts: &mut TableScan) {
    for (i, rule) in table.columns.iter().enumerate() {
        let value = row.as_ref(i).unwrap_or(&Value::NULL);
        if matches!(value, Value::NULL) {
            continue;
        }
        let found = match convert(rule, SourceValue::Query(value)) {
            Err(problem) => {
                let nullable = rule.nullable && !table.is_key_column(i);
                let outcome = match resolve(types, &problem, nullable) {
                    Resolution::Refuse => "refused",
                    Resolution::DeadLetter => "dead_lettered",
                    Resolution::Substitute(_) => "substituted",
                };
                Some((problem.kind.label(), outcome))
            }
            Ok(_) => decision(&rule.kind, value).map(|k| (k, "carried")),
        };
        if let Some((kind, outcome)) = found {
            record(table, row, ts, &rule.source_name, kind, outcome);
        }
    }
}

/// A value that converts exactly but that the team should decide about.
fn decision(kind: &ValueKind, value: &Value) -> Option<&'static str> {
    match (kind, value) {
        (ValueKind::Time, Value::Time(_, days, hours, ..)) if *days > 0 || *hours >= 24 => {
            Some("time_beyond_24h")
        }
        (ValueKind::UInt { bits: 64 }, Value::UInt(u)) if *u > i64::MAX as u64 => {
            Some("bigint_unsigned_above_2_63")
        }
        // UTF-8 written through a latin1 connection: MySQL shows it as mojibake, and so will
        // PostgreSQL (ferry decodes latin1 as MySQL does); the team decides whether to repair.
        (
            ValueKind::Text {
                charset: Charset::Latin1,
            },
            Value::Bytes(b),
        ) if b.iter().any(|x| *x >= 0x80) && std::str::from_utf8(b).is_ok() => {
            Some("utf8_bytes_in_latin1")
        }
        (ValueKind::Enum { members, .. }, Value::Bytes(b))
            if b.is_empty() && !members.iter().any(String::is_empty) =>
        {
            Some("enum_error_value")
        }
        _ => None,
    }
}

fn record(table: &Table, row: &Row, ts: &mut TableScan, column: &str, kind: &str, outcome: &str) {
    let idx = match ts
        .findings
        .iter()
        .position(|f| f.column == column && f.kind == kind)
    {
        Some(i) => i,
        None => {
            ts.findings.push(Finding {
                column: column.to_string(),
                kind: kind.to_string(),
                outcome: outcome.to_string(),
                count: 0,
                examples: Vec::new(),
            });
            ts.findings.len() - 1
        }
    };
    let f = &mut ts.findings[idx];
    f.count += 1;
    if f.examples.len() < EXAMPLES {
        let key: Vec<String> = table
            .key
            .iter()
            .map(|k| {
                format!(
                    "{}={}",
                    table.source_columns[*k].name,
                    row.as_ref(*k).map(|v| v.as_sql(false)).unwrap_or_default()
                )
            })
            .collect();
        f.examples.push(key.join(", "));
    }
}

/// The scan's progress bar on stderr (indicatif; drawn only on a terminal).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done_before: u64,
    current: u64,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Self {
        let bar = enabled.then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "scanning [{bar:30}] {pos:>10}/{len:10} {percent:>3}% {per_sec:>12} ETA {eta} {msg}",
            ) {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Self {
            bar,
            done_before: 0,
            current: 0,
        }
    }

    fn tick(&mut self, table: &str) {
        if let Some(b) = &self.bar {
            b.set_position(self.done_before + self.current);
            b.set_message(table.to_string());
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
