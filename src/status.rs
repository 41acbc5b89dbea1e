//! The daemon's current state for humans and scripts: phase, pause, lag, positions, rates,
//! per-table backfill progress and the last error — one struct the HTTP endpoint renders as
//! JSON and `ferry status` renders as a dashboard.
//!
//! Guarantees: every field is read from the live pipeline state ([`Progress`]) at request time;
//! rates are measured over the last ~10 seconds, not since start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::metrics::{self as m, Phase};
use crate::migration::MigrationPhase;
use crate::position::BinlogPosition;
use crate::progress::{unix_now, Progress};

/// Backfill progress of one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TableProgress {
    pub rows_copied: u64,
    pub rows_estimated: u64,
    pub percent: f64,
    pub eta_seconds: Option<f64>,
    pub done: bool,
}

/// The last verification result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerifySummary {
    pub finished_at: f64,
    pub tables: u64,
    pub differing_rows: u64,
    pub matched: bool,
}

/// What `/status` returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub stream: String,
    pub version: String,
    pub phase: String,
    /// The migration phase: replicating, frozen, drained, verified, switching, switched,
    /// rollback_frozen, rollback_drained.
    #[serde(default = "replicating")]
    pub migration_phase: String,
    pub paused: bool,
    /// Unix time the current pause began (`None` when not paused).
    #[serde(default)]
    pub paused_since: Option<f64>,
    pub ready: bool,
    pub uptime_seconds: f64,
    pub lag_seconds: f64,
    pub lag_bytes: Option<u64>,
    pub caught_up: bool,
    pub checkpoint: Option<String>,
    pub read_position: Option<String>,
    pub source_end: Option<String>,
    pub transactions_applied: u64,
    pub rows_applied: u64,
    pub rows_per_second: f64,
    pub transactions_per_second: f64,
    pub errors: u64,
    /// Errors per minute over the last ~10 seconds.
    #[serde(default)]
    pub errors_per_minute: f64,
    pub last_error: Option<String>,
    /// Set when the last pause or resume could not be stored locally (it would not survive a
    /// restart): the reason.
    #[serde(default)]
    pub pause_not_persisted: Option<String>,
    pub backfill: BTreeMap<String, TableProgress>,
    /// Data sync: the share of the rows copied over every table of the backfill (100 when
    /// there is none or it finished), for dashboards.
    #[serde(default)]
    pub sync_percent: f64,
    pub verification: Option<VerifySummary>,
    /// The reverse stream, once it ran in this process (phase `switched`).
    #[serde(default)]
    pub reverse: Option<crate::reverse::progress::ReverseStatus>,
    /// Schema changes of replicated tables since the daemon started.
    #[serde(default)]
    pub schema_changes: SchemaChanges,
}

/// Schema changes read from the binlog, by outcome.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct SchemaChanges {
    pub applied: u64,
    pub ignored: u64,
    pub refused: u64,
}

/// Shared, updated by the stages, read by the endpoint.
pub struct StatusBoard {
    stream: String,
    pub progress: Arc<Progress>,
    phase: Mutex<Phase>,
    paused: AtomicBool,
    /// Unix time the current pause began.
    paused_since: Mutex<Option<f64>>,
    ready: AtomicBool,
    started: Instant,
    /// (when, rows, transactions, errors) samples for the rates.
    samples: Mutex<VecDeque<(Instant, u64, u64, u64)>>,
    errors: Mutex<(u64, Option<String>)>,
    pub backfill: Mutex<BTreeMap<String, TableProgress>>,
    pub verification: Mutex<Option<VerifySummary>>,
    source_end: Mutex<Option<(String, u64)>>,
    lag_bytes: Mutex<Option<u64>>,
    /// The stream's migration phase (from `ferry.migration`).
    migration: Mutex<MigrationPhase>,
    /// Why the last pause/resume was not stored locally, if it was not.
    pause_not_persisted: Mutex<Option<String>>,
    /// The reverse stream (PostgreSQL → MySQL, while switched).
    pub reverse: Arc<crate::reverse::progress::ReverseProgress>,
}

impl StatusBoard {
    pub fn new(stream: &str, progress: Arc<Progress>) -> Self {
        Self {
            stream: stream.to_string(),
            progress,
            phase: Mutex::new(Phase::Starting),
            paused: AtomicBool::new(false),
            paused_since: Mutex::new(None),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            samples: Mutex::new(VecDeque::new()),
            errors: Mutex::new((0, None)),
            backfill: Mutex::new(BTreeMap::new()),
            verification: Mutex::new(None),
            source_end: Mutex::new(None),
            lag_bytes: Mutex::new(None),
            pause_not_persisted: Mutex::new(None),
            migration: Mutex::new(MigrationPhase::Replicating),
            reverse: Arc::default(),
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().expect("status lock") = phase;
        m::set_phase(phase);
    }

    pub fn phase(&self) -> Phase {
        *self.phase.lock().expect("status lock")
    }

    /// Records the pause state; `since` is when the pause began (Unix seconds), kept from the
    /// first call while the pause lasts.
    pub fn set_paused(&self, paused: bool, since: f64) {
        self.paused.store(paused, Ordering::Relaxed);
        let mut s = self.paused_since.lock().expect("status lock");
        *s = if paused {
            Some(s.unwrap_or(since))
        } else {
            None
        };
        m::set_paused(paused);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_migration_phase(&self, phase: MigrationPhase) {
        *self.migration.lock().expect("status lock") = phase;
        m::set_migration_phase(phase);
    }

    pub fn migration_phase(&self) -> MigrationPhase {
        *self.migration.lock().expect("status lock")
    }

    /// Records whether the last pause/resume reached the local store (`Some(reason)`: it did not).
    pub fn set_pause_persisted(&self, failure: Option<String>) {
        *self.pause_not_persisted.lock().expect("status lock") = failure;
    }

    pub fn error(&self, message: String) {
        let mut e = self.errors.lock().expect("status lock");
        e.0 += 1;
        e.1 = Some(message);
    }

    /// The source's binlog end and the lag in bytes behind it.
    pub fn set_source_end(&self, file: String, offset: u64, lag_bytes: Option<u64>) {
        *self.source_end.lock().expect("status lock") = Some((file, offset));
        *self.lag_bytes.lock().expect("status lock") = lag_bytes;
        if let Some(b) = lag_bytes {
            m::lag_bytes(b as f64);
        }
    }

    /// Records a throughput sample (called periodically) and refreshes the lag gauge.
    pub fn tick(&self) {
        let now = Instant::now();
        let rows = self.progress.rows.load(Ordering::Relaxed);
        let txns = self.progress.transactions.load(Ordering::Relaxed);
        let errors = self.errors.lock().expect("status lock").0;
        let mut s = self.samples.lock().expect("status lock");
        s.push_back((now, rows, txns, errors));
        while s.len() > 2 && now.duration_since(s[0].0).as_secs_f64() > 10.0 {
            s.pop_front();
        }
        drop(s);
        self.refresh_gauges();
    }

    pub fn refresh_gauges(&self) {
        m::lag(self.progress.lag_seconds(unix_now()));
    }

    /// Rows/s, transactions/s and errors/min over the sample window.
    fn rates(&self) -> (f64, f64, f64) {
        let s = self.samples.lock().expect("status lock");
        match (s.front(), s.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let dt = b.0.duration_since(a.0).as_secs_f64();
                (
                    b.1.saturating_sub(a.1) as f64 / dt,
                    b.2.saturating_sub(a.2) as f64 / dt,
                    b.3.saturating_sub(a.3) as f64 * 60.0 / dt,
                )
            }
            _ => (0.0, 0.0, 0.0),
        }
    }

    /// One line for systemd's `STATUS=` (shown by `systemctl status`).
    pub fn status_line(&self) -> String {
        let lag = self.progress.lag_seconds(unix_now());
        let state = if self.paused() {
            "PAUSED".to_string()
        } else {
            self.phase().label().to_string()
        };
        let checkpoint = self
            .progress
            .committed_position()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        format!("{state}; lag {lag:.1} s; checkpoint {checkpoint}")
    }

    /// The source's binlog end: polled every two seconds, so the reader may already be past the
    /// last poll; what it has read is then the fresher (lower) bound of the end.
    fn source_end(&self) -> Option<String> {
        let polled = self
            .source_end
            .lock()
            .expect("status lock")
            .clone()
            .map(|(file, offset)| BinlogPosition { file, offset });
        let read = self.progress.read_position();
        match (polled, read) {
            (Some(end), Some(read)) if read > end => Some(read.to_string()),
            (end, _) => end.map(|e| e.to_string()),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let (rows_per_second, transactions_per_second, errors_per_minute) = self.rates();
        let errors = self.errors.lock().expect("status lock").clone();
        let backfill = self.backfill.lock().expect("status lock").clone();
        Snapshot {
            stream: self.stream.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phase: self.phase().label().to_string(),
            migration_phase: self.migration_phase().label().to_string(),
            paused: self.paused(),
            paused_since: *self.paused_since.lock().expect("status lock"),
            ready: self.ready(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            lag_seconds: self.progress.lag_seconds(unix_now()),
            lag_bytes: *self.lag_bytes.lock().expect("status lock"),
            caught_up: self.progress.is_caught_up(),
            checkpoint: self.progress.committed_position().map(|p| p.to_string()),
            read_position: self.progress.read_position().map(|p| p.to_string()),
            source_end: self.source_end(),
            transactions_applied: self.progress.transactions.load(Ordering::Relaxed),
            rows_applied: self.progress.rows.load(Ordering::Relaxed),
            rows_per_second,
            transactions_per_second,
            errors: errors.0,
            errors_per_minute,
            last_error: errors.1,
            pause_not_persisted: self
                .pause_not_persisted
                .lock()
                .expect("status lock")
                .clone(),
            sync_percent: sync_percent(&backfill),
            backfill,
            verification: self.verification.lock().expect("status lock").clone(),
            reverse: Some(self.reverse.status())
                .filter(|r| r.running || r.transactions_applied > 0),
            schema_changes: {
                let (applied, ignored, refused) = m::schema_change_counts();
                SchemaChanges {
                    applied,
                    ignored,
                    refused,
                }
            },
        }
    }

    pub fn snapshot_json(&self) -> String {
        serde_json::to_string_pretty(&self.snapshot()).expect("status serializes")
    }
}

fn replicating() -> String {
    MigrationPhase::Replicating.label().to_string()
}

/// Renders a snapshot as the `ferry status` dashboard.
/// Rows copied over rows to copy, in percent (a finished table counts whole).
pub fn sync_percent(backfill: &BTreeMap<String, TableProgress>) -> f64 {
    let (mut done, mut all) = (0u64, 0u64);
    for p in backfill.values() {
        let total = p.rows_estimated.max(p.rows_copied).max(1);
        all += total;
        done += if p.done {
            total
        } else {
            p.rows_copied.min(total)
        };
    }
    if all == 0 {
        100.0
    } else {
        done as f64 * 100.0 / all as f64
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut state = if s.paused {
        match s.paused_since {
            Some(t) => format!("PAUSED (for {:.0} s)", (unix_now() - t).max(0.0)),
            None => "PAUSED".to_string(),
        }
    } else {
        s.phase.to_uppercase()
    };
    if s.pause_not_persisted.is_some() {
        state.push_str("  (pause state not stored: a restart would not keep it)");
    }
    out.push_str(&format!(
        "ferry {}  stream {:?}  {}\n",
        s.version, s.stream, state
    ));
    out.push_str(&format!("  migration   {}\n", s.migration_phase));
    if let Some(r) = &s.reverse {
        out.push_str(&format!(
            "  reverse     {}: {} rows, {} transactions into MySQL; lag {:.1} s, {} bytes; slot keeps {} bytes of WAL{}\n",
            if r.running { "streaming" } else { "stopped" },
            r.rows_applied,
            r.transactions_applied,
            r.lag_seconds,
            r.lag_bytes,
            r.slot_retained_bytes,
            r.applied_lsn.as_ref().map(|l| format!("; applied to {l}")).unwrap_or_default()
        ));
        if let Some(e) = &r.last_error {
            out.push_str(&format!("  reverse err {e}\n"));
        }
    }
    out.push_str(&format!(
        "  lag         {:.1} s{}{}\n",
        s.lag_seconds,
        s.lag_bytes
            .map(|b| format!(", {b} bytes"))
            .unwrap_or_default(),
        if s.caught_up { "  (caught up)" } else { "" }
    ));
    out.push_str(&format!(
        "  checkpoint  {}\n  read        {}\n  source end  {}\n",
        s.checkpoint.as_deref().unwrap_or("-"),
        s.read_position.as_deref().unwrap_or("-"),
        s.source_end.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  applied     {} rows, {} transactions  ({:.0} rows/s, {:.0} txn/s over 10 s)\n",
        s.rows_applied, s.transactions_applied, s.rows_per_second, s.transactions_per_second
    ));
    out.push_str(&format!(
        "  errors      {} ({:.1}/min over 10 s){}\n",
        s.errors,
        s.errors_per_minute,
        s.last_error
            .as_deref()
            .map(|e| format!("  last: {e}"))
            .unwrap_or_default()
    ));
    if !s.backfill.is_empty() {
        out.push_str("  backfill\n");
        for (t, p) in &s.backfill {
            out.push_str(&format!(
                "    {t:<40} {:>6.1}%  {:>10} / ~{:<10} {}\n",
                p.percent,
                p.rows_copied,
                p.rows_estimated,
                if p.done {
                    "done".to_string()
                } else {
                    p.eta_seconds
                        .map(|e| format!("ETA {e:.0} s"))
                        .unwrap_or_default()
                }
            ));
        }
    }
    out.push_str(&format!(
        "  schema      {} changes applied, {} ignored, {} refused\n",
        s.schema_changes.applied, s.schema_changes.ignored, s.schema_changes.refused
    ));
    out.push_str(&format!(
        "  sync        {:.1}% of the rows copied\n",
        s.sync_percent
    ));
    match &s.verification {
        Some(v) => out.push_str(&format!(
            "  verify      {} ({} tables, {} differing rows; {:.0} s ago)\n",
            if v.matched { "MATCH" } else { "DIFFERENCES" },
            v.tables,
            v.differing_rows,
            (unix_now() - v.finished_at).max(0.0)
        )),
        None => out.push_str("  verify      not run yet\n"),
    }
    out.push_str(&format!("  uptime      {:.0} s\n", s.uptime_seconds));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            stream: "s".into(),
            version: "0.1.0".into(),
            phase: "streaming".into(),
            migration_phase: "replicating".into(),
            paused: false,
            paused_since: None,
            ready: true,
            uptime_seconds: 12.0,
            lag_seconds: 0.0,
            lag_bytes: Some(0),
            caught_up: true,
            checkpoint: Some("b.000001:4".into()),
            read_position: None,
            source_end: Some("b.000001:4".into()),
            transactions_applied: 3,
            rows_applied: 7,
            rows_per_second: 1.0,
            transactions_per_second: 0.5,
            errors: 2,
            errors_per_minute: 6.0,
            last_error: Some("target unreachable".into()),
            pause_not_persisted: None,
            backfill: BTreeMap::new(),
            sync_percent: 100.0,
            verification: None,
            reverse: None,
            schema_changes: SchemaChanges::default(),
        }
    }

    #[test]
    fn sync_counts_finished_tables_whole_and_nothing_as_done() {
        let mut b = BTreeMap::new();
        assert_eq!(sync_percent(&b), 100.0);
        let table = |copied, estimated, done| TableProgress {
            rows_copied: copied,
            rows_estimated: estimated,
            percent: 0.0,
            eta_seconds: None,
            done,
        };
        // The estimate was low for the finished table; the other is a quarter through.
        b.insert("a".into(), table(120, 100, true));
        b.insert("b".into(), table(20, 80, false));
        assert!((sync_percent(&b) - 140.0 * 100.0 / 200.0).abs() < 1e-9);
    }

    #[test]
    fn source_end_is_never_shown_behind_what_was_read() {
        let progress = Arc::new(Progress::default());
        let board = StatusBoard::new("s", progress.clone());
        board.set_source_end("b.000002".into(), 500, Some(0));
        progress.read(0, Some(&"b.000002:400".parse().expect("position")));
        assert_eq!(board.snapshot().source_end.as_deref(), Some("b.000002:500"));
        // The poll is two seconds old; the reader is already further.
        progress.read(0, Some(&"b.000002:900".parse().expect("position")));
        assert_eq!(board.snapshot().source_end.as_deref(), Some("b.000002:900"));
        progress.read(0, Some(&"b.000003:4".parse().expect("position")));
        assert_eq!(board.snapshot().source_end.as_deref(), Some("b.000003:4"));
    }

    #[test]
    fn dashboard_shows_state_lag_positions_rates_and_errors() {
        let out = render(&snapshot());
        assert!(out.contains("STREAMING"), "{out}");
        assert!(out.contains("0.0 s, 0 bytes  (caught up)"), "{out}");
        assert!(out.contains("checkpoint  b.000001:4"), "{out}");
        assert!(
            out.contains("errors      2 (6.0/min over 10 s)  last: target unreachable"),
            "{out}"
        );
        let paused = Snapshot {
            paused: true,
            paused_since: Some(unix_now() - 65.0),
            ..snapshot()
        };
        let out = render(&paused);
        assert!(out.contains("PAUSED (for 6"), "{out}");
    }

    #[test]
    fn snapshots_from_older_daemons_still_parse() {
        let mut json: serde_json::Value = serde_json::to_value(snapshot()).expect("serializes");
        let obj = json.as_object_mut().expect("object");
        obj.remove("paused_since");
        obj.remove("errors_per_minute");
        let back: Snapshot = serde_json::from_value(json).expect("new fields default");
        assert_eq!(back.errors_per_minute, 0.0);
    }
}
