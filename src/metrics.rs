//! Every metric ferry exports: name, help text and label set, in one place.
//!
//! Names follow `ferry_<name>_<unit>[_total]` with base units (seconds, bytes); labels are
//! bounded (table labels range over the configured tables only; event types over a fixed list).
//! Recording goes through the functions here so a name is never spelled twice.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::ErrorClass;
use crate::migration::MigrationPhase;

pub const BUILD_INFO: &str = "ferry_build_info";
pub const UP: &str = "ferry_up";
pub const PHASE: &str = "ferry_phase";
pub const PAUSED: &str = "ferry_paused";
pub const MIGRATION_PHASE: &str = "ferry_migration_phase";
pub const LAG_SECONDS: &str = "ferry_lag_seconds";
pub const LAG_BYTES: &str = "ferry_lag_bytes";
pub const ROWS_APPLIED: &str = "ferry_rows_applied_total";
pub const TRANSACTIONS_APPLIED: &str = "ferry_transactions_applied_total";
pub const APPLY_BATCH_DURATION: &str = "ferry_apply_batch_duration_seconds";
pub const BINLOG_EVENTS: &str = "ferry_binlog_events_total";
pub const ERRORS: &str = "ferry_errors_total";
pub const RESTARTS: &str = "ferry_pipeline_restarts_total";
pub const CHECKPOINT_FILE: &str = "ferry_checkpoint_binlog_file_sequence";
pub const CHECKPOINT_OFFSET: &str = "ferry_checkpoint_binlog_offset_bytes";
pub const CHECKPOINT_TIMESTAMP: &str = "ferry_checkpoint_source_timestamp_seconds";
pub const RETENTION_HEADROOM: &str = "ferry_binlog_retention_headroom_seconds";
pub const TABLE_ROWS: &str = "ferry_table_rows";
pub const DEAD_LETTER_ROWS: &str = "ferry_dead_letter_rows_total";
pub const VALUES_SUBSTITUTED: &str = "ferry_values_substituted_total";
pub const SCHEMA_CHANGES: &str = "ferry_schema_changes_total";
pub const BACKFILL_ROWS: &str = "ferry_backfill_rows_total";
pub const BACKFILL_PROGRESS: &str = "ferry_backfill_progress_ratio";
pub const DRIFT_ROWS: &str = "ferry_drift_rows";
pub const VERIFY_ROWS: &str = "ferry_verify_rows_total";
pub const VERIFY_COVERAGE: &str = "ferry_verify_coverage_ratio";
pub const VERIFY_LAST_FULL_PASS: &str = "ferry_verify_last_full_pass_timestamp_seconds";
pub const REVERSE_LAG_BYTES: &str = "ferry_reverse_lag_bytes";
pub const REVERSE_LAG_SECONDS: &str = "ferry_reverse_lag_seconds";
pub const REVERSE_SLOT_RETAINED_BYTES: &str = "ferry_reverse_slot_retained_bytes";
pub const REVERSE_ROWS_APPLIED: &str = "ferry_reverse_rows_applied_total";
pub const REVERSE_TRANSACTIONS_APPLIED: &str = "ferry_reverse_transactions_applied_total";

/// The daemon's phase, exported as `ferry_phase{phase="..."}` = 1 for the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Backfilling,
    Streaming,
    Stopping,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Starting,
        Phase::Backfilling,
        Phase::Streaming,
        Phase::Stopping,
        Phase::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Backfilling => "backfilling",
            Phase::Streaming => "streaming",
            Phase::Stopping => "stopping",
            Phase::Failed => "failed",
        }
    }
}

/// Where an error happened: the `stage` label of `ferry_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Source,
    Sink,
    Backfill,
    Verify,
    App,
    /// The reverse stream (PostgreSQL → MySQL).
    Reverse,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Sink => "sink",
            Stage::Backfill => "backfill",
            Stage::Verify => "verify",
            Stage::App => "app",
            Stage::Reverse => "reverse",
        }
    }
}

/// Every metric with its help text (also the README's list).
pub const ALL: &[(&str, &str)] = &[
    (BUILD_INFO, "Build information (label version); always 1."),
    (UP, "1 while the daemon runs."),
    (PHASE, "1 for the current phase (label phase: starting, backfilling, streaming, stopping, failed)."),
    (PAUSED, "1 while replication is paused (SIGUSR1 / ferry pause)."),
    (MIGRATION_PHASE, "1 for the stream's migration phase (label phase: replicating, frozen, drained, verified, switching, switched)."),
    (LAG_SECONDS, "Seconds between now and the source commit time of the oldest change not yet committed in PostgreSQL; 0 when caught up and idle."),
    (LAG_BYTES, "Bytes of binlog between the last committed checkpoint and the source's current binlog end."),
    (ROWS_APPLIED, "Row operations committed in PostgreSQL (labels table, op = upsert|delete|truncate)."),
    (TRANSACTIONS_APPLIED, "Source transactions committed in PostgreSQL."),
    (APPLY_BATCH_DURATION, "Duration of one PostgreSQL apply transaction (group of source transactions)."),
    (BINLOG_EVENTS, "Binlog events read (label type)."),
    (ERRORS, "Errors (labels stage = source|sink|backfill|verify|app|reverse, kind = transient|definite)."),
    (RESTARTS, "Pipeline restarts after transient errors."),
    (CHECKPOINT_FILE, "Numeric suffix of the binlog file of the last committed checkpoint."),
    (CHECKPOINT_OFFSET, "Byte offset of the last committed checkpoint within its binlog file."),
    (CHECKPOINT_TIMESTAMP, "Source commit time (Unix seconds) of the last committed transaction."),
    (RETENTION_HEADROOM, "Seconds until the source may purge the binlog file ferry still needs (binlog_expire_logs_seconds minus the file's age)."),
    (TABLE_ROWS, "Estimated rows of each replicated table on the source (information_schema TABLE_ROWS, refreshed every minute; label table). The denominator for drift ratios."),
    (DEAD_LETTER_ROWS, "Rows written to the dead-letter table instead of being applied (labels table, kind)."),
    (SCHEMA_CHANGES, "Schema changes of replicated tables seen in the binlog (label outcome: applied, ignored, refused)."),
    (VALUES_SUBSTITUTED, "Values replaced under a null/value policy, counted as their source transaction is read (label kind)."),
    (BACKFILL_ROWS, "Rows copied by the backfill (label table)."),
    (BACKFILL_PROGRESS, "Backfill progress 0..1 (label table)."),
    (DRIFT_ROWS, "Rows found different between source and target by the last verification (label table)."),
    (VERIFY_ROWS, "Rows verified by the continuous verifier (label table)."),
    (VERIFY_COVERAGE, "Share of the table's rows verified in the current pass (label table)."),
    (VERIFY_LAST_FULL_PASS, "Unix time the continuous verifier last finished a full pass over all tables."),
    (REVERSE_LAG_BYTES, "Reverse stream (switched): bytes of PostgreSQL WAL between the slot's confirmed position (applied in MySQL) and pg_current_wal_lsn(); 0 when caught up."),
    (REVERSE_LAG_SECONDS, "Reverse stream: seconds between now and the PostgreSQL commit time of the oldest transaction not yet applied in MySQL; 0 when caught up."),
    (REVERSE_SLOT_RETAINED_BYTES, "WAL the reverse stream's replication slot keeps on PostgreSQL (from its restart point to the WAL end): alert when it grows (a stalled reverse stream or a forgotten slot fills the disk)."),
    (REVERSE_ROWS_APPLIED, "Reverse stream: PostgreSQL row operations committed in MySQL."),
    (REVERSE_TRANSACTIONS_APPLIED, "Reverse stream: PostgreSQL transactions committed in MySQL."),
];

/// Installs the global recorder and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(APPLY_BATCH_DURATION.into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .expect("static bucket list is non-empty")
        .install_recorder()
        .unwrap_or_else(|_| {
            // Already installed (tests run several daemons in one process): reuse a fresh
            // recorder handle that is not global.
            PrometheusBuilder::new().build_recorder().handle()
        });
    for (name, help) in ALL {
        if name.ends_with("_total") {
            describe_counter!(*name, *help);
        } else if *name == APPLY_BATCH_DURATION {
            describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            describe_gauge!(*name, *help);
        }
    }
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(UP).set(1.0);
    set_paused(false);
    set_phase(Phase::Starting);
    set_migration_phase(MigrationPhase::Replicating);
    for class in [ErrorClass::Transient, ErrorClass::Definite] {
        for stage in [Stage::Source, Stage::Sink, Stage::App, Stage::Reverse] {
            counter!(ERRORS, "stage" => stage.label(), "kind" => class.label()).absolute(0);
        }
    }
    counter!(TRANSACTIONS_APPLIED).absolute(0);
    counter!(RESTARTS).absolute(0);
    for outcome in ["applied", "ignored", "refused"] {
        counter!(SCHEMA_CHANGES, "outcome" => outcome).absolute(0);
    }
    gauge!(LAG_SECONDS).set(0.0);
    gauge!(LAG_BYTES).set(0.0);
    counter!(REVERSE_ROWS_APPLIED).absolute(0);
    counter!(REVERSE_TRANSACTIONS_APPLIED).absolute(0);
    reverse_lag(0, 0.0, 0);
    handle
}

pub fn set_phase(phase: Phase) {
    for p in Phase::ALL {
        gauge!(PHASE, "phase" => p.label()).set(if p == phase { 1.0 } else { 0.0 });
    }
}

pub fn set_migration_phase(phase: MigrationPhase) {
    for p in MigrationPhase::ALL {
        gauge!(MIGRATION_PHASE, "phase" => p.label()).set(if p == phase { 1.0 } else { 0.0 });
    }
}

pub fn set_paused(paused: bool) {
    gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
}

pub fn error(stage: Stage, class: ErrorClass) {
    counter!(ERRORS, "stage" => stage.label(), "kind" => class.label()).increment(1);
}

pub fn restart() {
    counter!(RESTARTS).increment(1);
}

pub fn rows_applied(table: &str, op: &'static str, n: u64) {
    if n > 0 {
        counter!(ROWS_APPLIED, "table" => table.to_string(), "op" => op).increment(n);
    }
}

pub fn transactions_applied(n: u64) {
    counter!(TRANSACTIONS_APPLIED).increment(n);
}

pub fn apply_duration(seconds: f64) {
    histogram!(APPLY_BATCH_DURATION).record(seconds);
}

pub fn checkpoint(file_sequence: u64, offset: u64, source_time: u32) {
    gauge!(CHECKPOINT_FILE).set(file_sequence as f64);
    gauge!(CHECKPOINT_OFFSET).set(offset as f64);
    if source_time != 0 {
        gauge!(CHECKPOINT_TIMESTAMP).set(f64::from(source_time));
    }
}

pub fn lag(seconds: f64) {
    gauge!(LAG_SECONDS).set(seconds);
}

pub fn lag_bytes(bytes: f64) {
    gauge!(LAG_BYTES).set(bytes);
}

pub fn retention_headroom(seconds: f64) {
    gauge!(RETENTION_HEADROOM).set(seconds);
}

pub fn table_rows(table: &str, rows: u64) {
    gauge!(TABLE_ROWS, "table" => table.to_string()).set(rows as f64);
}

pub fn dead_letter(table: &str, kind: &'static str) {
    counter!(DEAD_LETTER_ROWS, "table" => table.to_string(), "kind" => kind).increment(1);
}

/// Schema changes seen by this process: applied, ignored, refused (for `ferry status`).
static SCHEMA_CHANGE_COUNTS: [std::sync::atomic::AtomicU64; 3] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

pub fn schema_change(outcome: &'static str) {
    counter!(SCHEMA_CHANGES, "outcome" => outcome).increment(1);
    let i = match outcome {
        "applied" => 0,
        "ignored" => 1,
        _ => 2,
    };
    SCHEMA_CHANGE_COUNTS[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// (applied, ignored, refused) schema changes since the process started.
pub fn schema_change_counts() -> (u64, u64, u64) {
    let get = |i: usize| SCHEMA_CHANGE_COUNTS[i].load(std::sync::atomic::Ordering::Relaxed);
    (get(0), get(1), get(2))
}

pub fn substituted(kind: &'static str, n: u64) {
    counter!(VALUES_SUBSTITUTED, "kind" => kind).increment(n);
}

/// Binlog event type names for the `type` label (a fixed, bounded set).
pub fn binlog_event(raw_type: u8) {
    let name = match raw_type {
        2 => "query",
        4 => "rotate",
        15 => "format_description",
        16 => "xid",
        19 => "table_map",
        23 | 30 => "write_rows",
        24 | 31 | 39 => "update_rows",
        25 | 32 => "delete_rows",
        29 => "rows_query",
        33 | 42 => "gtid",
        34 => "anonymous_gtid",
        35 => "previous_gtids",
        40 => "transaction_payload",
        160 => "annotate_rows",
        161 => "binlog_checkpoint",
        162 => "gtid",
        163 => "gtid_list",
        _ => "other",
    };
    counter!(BINLOG_EVENTS, "type" => name).increment(1);
}

pub fn backfill_rows(table: &str, n: u64) {
    counter!(BACKFILL_ROWS, "table" => table.to_string()).increment(n);
}

pub fn backfill_progress(table: &str, ratio: f64) {
    gauge!(BACKFILL_PROGRESS, "table" => table.to_string()).set(ratio);
}

pub fn drift_rows(table: &str, n: u64) {
    gauge!(DRIFT_ROWS, "table" => table.to_string()).set(n as f64);
}

pub fn verify_rows(table: &str, n: u64) {
    counter!(VERIFY_ROWS, "table" => table.to_string()).increment(n);
}

pub fn verify_coverage(table: &str, ratio: f64) {
    gauge!(VERIFY_COVERAGE, "table" => table.to_string()).set(ratio);
}

pub fn verify_full_pass(unix_seconds: f64) {
    gauge!(VERIFY_LAST_FULL_PASS).set(unix_seconds);
}

/// The reverse stream's lag and the WAL its slot keeps.
pub fn reverse_lag(bytes: u64, seconds: f64, retained_bytes: u64) {
    gauge!(REVERSE_LAG_BYTES).set(bytes as f64);
    gauge!(REVERSE_LAG_SECONDS).set(seconds);
    gauge!(REVERSE_SLOT_RETAINED_BYTES).set(retained_bytes as f64);
}

pub fn reverse_applied(rows: u64, transactions: u64) {
    counter!(REVERSE_ROWS_APPLIED).increment(rows);
    counter!(REVERSE_TRANSACTIONS_APPLIED).increment(transactions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        for (name, help) in ALL {
            assert!(name.starts_with("ferry_"), "{name}");
            assert!(!help.is_empty());
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name} must be snake_case"
            );
            assert!(
                !name.contains("_us") && !name.contains("_ms"),
                "base units only: {name}"
            );
        }
        let mut names: Vec<_> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "no metric is listed twice");
    }
}
