//! Separates drift from changes in flight: a candidate differing row counts only when it still
//! differs after the stream has applied everything the source had written when the row was read.
//!
//! Each round: read the candidate rows on the source (S0), take the source's binlog end P, wait
//! until the stream's checkpoint in PostgreSQL reaches P, read the rows on the target (T) and on
//! the source again (S1). Then, per row:
//! - T equals S0 or S1: the difference was a change in flight — dropped;
//! - S0 equals S1 and T differs: the row did not change on the source during the round, and the
//!   target has applied every change up to P, which is at or after S0 — persistent drift;
//! - S0 differs from S1: the row changed during the round — checked again in the next round.
//!
//! Guarantees: a change that ferry applies within the settle timeout is never reported as drift.
//! A row still changing after the last round is reported as *unsettled* (not drift). When the
//! stream has no checkpoint, stalls (ferry not running) or times out, the rows are compared as
//! they are and the report says so: such differences may include changes ferry has not applied.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use super::compare::{self, RowDiff};
use super::query::{Key, Session, SourceRow, TableSql};
use super::VerifyError;
use crate::checkpoint;
use crate::config::Config;
use crate::position::BinlogPosition;
use crate::source::binlog;

/// Rounds before a still-changing row is given up as unsettled.
pub const ROUNDS: u32 = 3;
/// A checkpoint that does not move for this long while behind means the stream is not running.
const STALL: Duration = Duration::from_secs(10);

/// How waiting for the stream went (the last round's wait).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StreamWait {
    /// Nothing to re-check.
    NotNeeded,
    /// The checkpoint reached the source position.
    Reached { checkpoint: String, source: String },
    /// No checkpoint row for this stream: nothing replicates into this target with this config.
    NoCheckpoint,
    /// The checkpoint did not move for 10 s while behind (ferry stopped or blocked).
    Stalled { checkpoint: String, source: String },
    /// The checkpoint moved but did not reach the source position within the settle timeout.
    TimedOut { checkpoint: String, source: String },
}

impl StreamWait {
    /// One line for humans.
    pub fn describe(&self, stream: &str) -> String {
        match self {
            StreamWait::NotNeeded => "no candidate rows to re-check".into(),
            StreamWait::Reached { checkpoint, source } => format!(
                "stream {stream:?} applied past the source position {source} (checkpoint {checkpoint})"
            ),
            StreamWait::NoCheckpoint => format!(
                "stream {stream:?} has no checkpoint in the target: rows were re-compared without waiting for replication"
            ),
            StreamWait::Stalled { checkpoint, source } => format!(
                "stream {stream:?} is not advancing (checkpoint {checkpoint}, source at {source}; is ferry running?): differences may include changes ferry has not applied yet"
            ),
            StreamWait::TimedOut { checkpoint, source } => format!(
                "stream {stream:?} did not reach the source position {source} in time (checkpoint {checkpoint}): differences may include changes ferry has not applied yet"
            ),
        }
    }

    /// True when the verdict does not depend on replication having caught up.
    pub fn conclusive(&self) -> bool {
        matches!(
            self,
            StreamWait::NotNeeded | StreamWait::Reached { .. } | StreamWait::NoCheckpoint
        )
    }
}

/// One table's candidates going in, and what became of them.
pub struct Settling<'a> {
    pub q: &'a TableSql,
    /// Candidates in; persistent drift out.
    pub diffs: Vec<RowDiff>,
    /// Candidates that turned out to be changes in flight.
    pub in_flight: u64,
    /// Candidates still changing on the source after the last round.
    pub unsettled: Vec<RowDiff>,
}

/// The outcome over all tables.
#[derive(Debug, Clone, Serialize)]
pub struct SettleReport {
    pub candidates: u64,
    pub rounds: u32,
    pub in_flight: u64,
    pub waited_seconds: f64,
    pub stream: StreamWait,
}

/// Re-checks every table's candidates (see the module doc).
///
/// # Errors
/// Database errors.
pub async fn settle(
    sess: &mut Session,
    config: &Config,
    tables: &mut [Settling<'_>],
    timeout: Duration,
) -> Result<SettleReport, VerifyError> {
    let candidates: u64 = tables.iter().map(|t| t.diffs.len() as u64).sum();
    let mut report = SettleReport {
        candidates,
        rounds: 0,
        in_flight: 0,
        waited_seconds: 0.0,
        stream: StreamWait::NotNeeded,
    };
    if candidates == 0 {
        return Ok(report);
    }
    // Candidate keys still open per table, and their first source read.
    let mut open: Vec<Vec<Key>> = tables
        .iter()
        .map(|t| t.diffs.iter().map(|d| d.key.clone()).collect())
        .collect();
    let mut before: Vec<HashMap<Key, SourceRow>> = Vec::with_capacity(tables.len());
    for (t, keys) in tables.iter().zip(&open) {
        before.push(t.q.my_rows_by_key(&mut sess.my, keys).await?);
    }
    let flags: Vec<HashMap<Key, (bool, bool)>> = tables
        .iter()
        .map(|t| {
            t.diffs
                .iter()
                .map(|d| (d.key.clone(), (d.by_checksum, d.by_sample)))
                .collect()
        })
        .collect();
    let mut persistent: Vec<Vec<RowDiff>> = vec![Vec::new(); tables.len()];
    for round in 1..=ROUNDS {
        report.rounds = round;
        let target =
            binlog::current_position(&mut sess.my)
                .await
                .map_err(|e| VerifyError::Source {
                    context: "reading the source's binlog position".into(),
                    source: e,
                })?;
        let started = Instant::now();
        report.stream = wait_for_stream(&sess.pg, config, &target, timeout).await?;
        report.waited_seconds += started.elapsed().as_secs_f64();
        for (i, t) in tables.iter_mut().enumerate() {
            if open[i].is_empty() {
                continue;
            }
            let tgt = t.q.pg_rows_by_key(&sess.pg, &open[i]).await?;
            let after = t.q.my_rows_by_key(&mut sess.my, &open[i]).await?;
            let mut still = Vec::new();
            let mut stable = Vec::new();
            for key in &open[i] {
                let (s0, s1, tr) = (before[i].get(key), after.get(key), tgt.get(key));
                if compare::same_row(s1, tr) || compare::same_row(s0, tr) {
                    t.in_flight += 1;
                    report.in_flight += 1;
                } else if compare::same_source(s0, s1) {
                    stable.push(key.clone());
                } else {
                    still.push(key.clone());
                }
            }
            for mut d in compare::diff_rows(&t.q.table, Some(&stable), &after, &tgt) {
                let (c, s) = flags[i].get(&d.key).copied().unwrap_or((true, false));
                d.by_checksum = c;
                d.by_sample = s;
                persistent[i].push(d);
            }
            open[i] = still;
            before[i] = after;
        }
        if open.iter().all(Vec::is_empty) {
            break;
        }
    }
    for (i, t) in tables.iter_mut().enumerate() {
        let mut unsettled = Vec::new();
        for d in std::mem::take(&mut t.diffs) {
            if open[i].contains(&d.key) {
                unsettled.push(d);
            }
        }
        t.unsettled = unsettled;
        let mut p = std::mem::take(&mut persistent[i]);
        p.sort_by(|a, b| compare::key_cmp(&a.key, &b.key));
        t.diffs = p;
    }
    Ok(report)
}

/// Waits until the stream's checkpoint reaches `target` (see [`StreamWait`]).
///
/// # Errors
/// Target errors other than a missing checkpoint table.
pub async fn wait_for_stream(
    client: &Client,
    config: &Config,
    target: &BinlogPosition,
    timeout: Duration,
) -> Result<StreamWait, VerifyError> {
    let started = Instant::now();
    let mut last: Option<BinlogPosition> = None;
    let mut last_move = Instant::now();
    loop {
        let cp = match checkpoint::read_target(client, &config.target.ferry_schema, &config.stream)
            .await
        {
            Ok(Some(cp)) => cp.position,
            Ok(None) => return Ok(StreamWait::NoCheckpoint),
            // No ferry schema in the target: nothing replicates here.
            Err(e)
                if e.code()
                    .is_some_and(|c| c.code() == "42P01" || c.code() == "3F000") =>
            {
                return Ok(StreamWait::NoCheckpoint)
            }
            Err(e) => return Err(VerifyError::target("reading the stream checkpoint", &e)),
        };
        if cp.partial_cmp(target).is_some_and(|o| o.is_ge()) {
            return Ok(StreamWait::Reached {
                checkpoint: cp.to_string(),
                source: target.to_string(),
            });
        }
        if last.as_ref() != Some(&cp) {
            last = Some(cp.clone());
            last_move = Instant::now();
        }
        if last_move.elapsed() >= STALL.min(timeout) {
            return Ok(StreamWait::Stalled {
                checkpoint: cp.to_string(),
                source: target.to_string(),
            });
        }
        if started.elapsed() >= timeout {
            return Ok(StreamWait::TimedOut {
                checkpoint: cp.to_string(),
                source: target.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
