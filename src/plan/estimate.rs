//! Estimates from measurements: the backfill's duration from the sample copies (each table's
//! rows at its sampled rate, tables scheduled on `backfill.parallel_tables` workers in the
//! order the backfill takes them), target disk from the sampled relation sizes, whether the
//! binlog retention outlasts backfill + verification with margin, the apply headroom and the
//! expected cutover window.
//!
//! Guarantees: every figure says what it was derived from (`basis`); a figure that has no
//! measurement behind it is `None`, never a constant.

use serde::Serialize;

use super::sample_copy::Sample;
use super::survey::TableFacts;
use super::workload::Workload;

/// One table's backfill estimate.
#[derive(Debug, Clone, Serialize)]
pub struct TableEstimate {
    pub table: String,
    pub rows: u64,
    pub seconds: f64,
    /// `sampled` (its own rate) or `by bytes` (the sampled tables' bytes per second).
    pub basis: &'static str,
}

/// Every estimate of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Estimates {
    pub backfill_seconds: Option<f64>,
    pub tables: Vec<TableEstimate>,
    /// Verification of every row (checksums inside both databases), from the scan's read rate.
    pub verify_seconds: Option<f64>,
    pub target_bytes: Option<u64>,
    /// Rows per second the sample copies loaded (read, converted, written, all tables).
    pub measured_copy_rows_per_second: Option<f64>,
    /// The source's row changes per second over the sample window.
    pub source_row_changes_per_second: f64,
    /// Measured copy rate over the source's change rate: how many times faster ferry writes
    /// than the application changes rows (the stream applies through upserts, slower than COPY:
    /// stay above 3).
    pub apply_headroom: Option<f64>,
    /// Binlog retention minus 2 × (backfill + verification): negative means the binlog may be
    /// purged before ferry is done with it. `None` when the binlog is kept until purged by hand.
    pub retention_margin_seconds: Option<f64>,
    /// Expected write freeze of `ferry cutover`: the drain (at most `--max-lag`, typically
    /// well under a second) plus the final check of the keys changed since the last matched
    /// verification pass.
    pub cutover_window_seconds: Option<f64>,
    pub basis: Vec<String>,
}

/// One table in the schedule: rows to copy and seconds per row when `parallel` tables copy
/// at once and when it copies alone.
#[derive(Debug, Clone, Copy)]
struct Job {
    rows: f64,
    concurrent: f64,
    alone: f64,
}

/// Simulates the backfill schedule: tables in order, each to the next free worker; while fewer
/// tables than workers run, each goes faster, from its concurrent toward its alone rate.
fn makespan(jobs: &[Job], workers: usize) -> f64 {
    let workers = workers.max(1);
    let mut queue = jobs
        .iter()
        .copied()
        .collect::<std::collections::VecDeque<_>>();
    let mut running: Vec<Job> = Vec::new();
    let mut now = 0.0;
    loop {
        while running.len() < workers {
            match queue.pop_front() {
                Some(j) => running.push(j),
                None => break,
            }
        }
        if running.is_empty() {
            return now;
        }
        let k = running.len();
        let cost = |j: &Job| {
            if workers == 1 || k >= workers {
                j.concurrent
            } else {
                let f = (k - 1) as f64 / (workers - 1) as f64;
                j.alone + (j.concurrent - j.alone) * f
            }
        };
        let dt = running
            .iter()
            .map(|j| j.rows * cost(j))
            .fold(f64::INFINITY, f64::min);
        for j in &mut running {
            let c = cost(j);
            j.rows = if c > 0.0 {
                (j.rows - dt / c).max(0.0)
            } else {
                0.0
            };
        }
        now += dt;
        running.retain(|j| j.rows > 1e-6);
    }
}

/// Derives the estimates.
#[allow(clippy::too_many_arguments)]
pub fn estimate(
    tables: &[TableFacts],
    exact_rows: &dyn Fn(&str) -> Option<u64>,
    samples: &[Sample],
    alone: Option<&Sample>,
    workload: &Workload,
    scan_rows_per_second: Option<f64>,
    parallel_tables: usize,
    retention_seconds: u64,
    verify_pass_interval_seconds: f64,
    verify_parallel: usize,
) -> Estimates {
    let mut basis = Vec::new();
    let sampled_rows: u64 = samples.iter().map(|s| s.rows).sum();
    let sampled_bytes: u64 = samples.iter().map(|s| s.source_bytes).sum();
    let sampled_seconds: f64 = samples
        .iter()
        .map(|s| s.copy_seconds + s.index_seconds)
        .sum();
    let bytes_per_second = (sampled_seconds > 0.0 && sampled_bytes > 0)
        .then(|| sampled_bytes as f64 / sampled_seconds);
    // Copying one table alone runs faster than beside the others: the ratio measured on the
    // largest table applies to every table once it copies alone.
    let speedup = alone
        .and_then(|a| {
            let c = samples.iter().find(|s| s.table == a.table && s.rows > 0)?;
            let concurrent = (c.copy_seconds + c.index_seconds) / c.rows as f64;
            let solo = (a.copy_seconds + a.index_seconds) / a.rows.max(1) as f64;
            (solo > 0.0).then(|| (concurrent / solo).max(1.0))
        })
        .unwrap_or(1.0);
    let mut per_table = Vec::new();
    let mut jobs = Vec::new();
    for t in tables.iter().filter(|t| t.planned.is_some()) {
        // The scan's count when it read the whole table; InnoDB's estimate otherwise.
        let rows = exact_rows(&t.name).unwrap_or(t.rows);
        let per_row = match samples.iter().find(|s| s.table == t.name && s.rows > 0) {
            Some(s) => Some((
                (s.copy_seconds + s.index_seconds) / s.rows as f64,
                "sampled",
            )),
            None => bytes_per_second.map(|bps| {
                let bytes_per_row = t.data_bytes as f64 / t.rows.max(1) as f64;
                (bytes_per_row / bps, "by bytes")
            }),
        };
        if let Some((cost, basis)) = per_row {
            per_table.push(TableEstimate {
                table: t.name.clone(),
                rows,
                seconds: rows as f64 * cost,
                basis,
            });
            jobs.push(Job {
                rows: rows as f64,
                concurrent: cost,
                alone: cost / speedup,
            });
        }
    }
    let backfill_seconds = (!samples.is_empty()).then(|| makespan(&jobs, parallel_tables));
    if !samples.is_empty() {
        basis.push(format!(
            "backfill: {} sampled rows of {} tables copied into a scratch schema on the target ({} at once, as backfill.parallel_tables), keys and indexes built{}; each table's rows (the scan's count, else the catalog's estimate) at its sampled rate, others by the sampled bytes per second, scheduled on {} workers",
            sampled_rows,
            samples.len(),
            parallel_tables,
            if speedup > 1.0 { format!(", then the largest alone ({speedup:.2}× faster, applied to every table once it copies alone)") } else { String::new() },
            parallel_tables
        ));
    }
    let measured_copy = {
        let wall: f64 = samples.iter().map(|s| s.copy_seconds).fold(0.0, f64::max);
        (wall > 0.0 && sampled_rows > 0).then(|| sampled_rows as f64 / wall)
    };
    let total_rows: u64 = tables
        .iter()
        .map(|t| exact_rows(&t.name).unwrap_or(t.rows))
        .sum();
    let verify_seconds = match verify_estimate(tables, exact_rows, samples, verify_parallel) {
        Some((seconds, sampled, workers)) => {
            basis.push(format!(
                "verification: `ferry verify`'s checksum pass (chunk boundaries, both checksums at once) measured over {sampled} copied rows, {workers} passes at once; each table's rows at its measured rate (others by the measured bytes per second), on {workers} workers (verify.parallel = {})",
                verify_parallel.max(1)
            ));
            Some(seconds)
        }
        None => {
            let s = scan_rows_per_second
                .filter(|r| *r > 0.0)
                .map(|r| total_rows as f64 / r);
            if s.is_some() {
                basis.push("verification: not measured (no sample copy); every row read once on each side, at the rate the data scan read the source".into());
            }
            s
        }
    };
    let target_bytes = (sampled_rows > 0).then(|| {
        let per_row: f64 =
            samples.iter().map(|s| s.target_bytes as f64).sum::<f64>() / sampled_rows as f64;
        (per_row * total_rows as f64) as u64
    });
    if target_bytes.is_some() {
        basis.push("target disk: the sampled tables' size in PostgreSQL (with indexes) per row, times all rows; WAL and the ferry schema come on top".into());
    }
    let apply_headroom = measured_copy.map(|c| {
        if workload.row_changes_per_second > 0.0 {
            c / workload.row_changes_per_second
        } else {
            f64::INFINITY
        }
    });
    let retention_margin_seconds = match (retention_seconds, backfill_seconds) {
        (0, _) => None,
        (r, Some(b)) => Some(r as f64 - 2.0 * (b + verify_seconds.unwrap_or(0.0))),
        (r, None) => Some(r as f64),
    };
    // The final check reads the keys changed since the last matched pass (at most one pass
    // interval plus the pass itself) at the scan's rate.
    let cutover_window_seconds = scan_rows_per_second.filter(|r| *r > 0.0).map(|r| {
        let changed = workload.row_changes_per_second * verify_pass_interval_seconds.max(1.0);
        0.2 + changed / r
    });
    if cutover_window_seconds.is_some() {
        basis.push("cutover window: 0.2 s freeze and drain plus the final check of the rows changed in one verification pass interval, read at the scan's rate".into());
    }
    Estimates {
        backfill_seconds,
        tables: per_table,
        verify_seconds,
        target_bytes,
        measured_copy_rows_per_second: measured_copy,
        source_row_changes_per_second: workload.row_changes_per_second,
        apply_headroom,
        retention_margin_seconds,
        cutover_window_seconds,
        basis,
    }
}

/// The checksum pass over every table from the sampled passes: (seconds, rows measured,
/// workers).
fn verify_estimate(
    tables: &[TableFacts],
    exact_rows: &dyn Fn(&str) -> Option<u64>,
    samples: &[Sample],
    parallel: usize,
) -> Option<(f64, u64, usize)> {
    let measured: Vec<(&Sample, f64)> = samples
        .iter()
        .filter_map(|s| {
            let v = s.verify?;
            (v.rows > 0 && s.rows > 0).then(|| (s, v.seconds / v.rows as f64))
        })
        .collect();
    if measured.is_empty() {
        return None;
    }
    // Source bytes per second of the pass, for tables without a sample of their own.
    let (bytes, seconds) = measured.iter().fold((0.0, 0.0), |(b, t), (s, per_row)| {
        let bytes_per_row = s.source_bytes as f64 / s.rows as f64;
        let rows = s.verify.map_or(0, |v| v.rows) as f64;
        (b + bytes_per_row * rows, t + per_row * rows)
    });
    let bytes_per_second = (seconds > 0.0 && bytes > 0.0).then(|| bytes / seconds);
    let mut total = 0.0;
    for t in tables.iter().filter(|t| t.planned.is_some()) {
        let rows = exact_rows(&t.name).unwrap_or(t.rows) as f64;
        total += match measured.iter().find(|(s, _)| s.table == t.name) {
            Some((_, per_row)) => rows * per_row,
            None => match bytes_per_second {
                Some(bps) => rows * (t.data_bytes as f64 / t.rows.max(1) as f64) / bps,
                None => 0.0,
            },
        };
    }
    let sampled = measured
        .iter()
        .map(|(s, _)| s.verify.map_or(0, |v| v.rows))
        .sum();
    // The passes were measured that many at once; verification runs as many workers (never
    // more than were measured together: more would be a guess).
    let workers = measured
        .iter()
        .filter_map(|(s, _)| s.verify.map(|v| v.concurrent))
        .min()
        .unwrap_or(1)
        .clamp(1, parallel.max(1));
    Some((total / workers as f64, sampled, workers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rows: f64, concurrent: f64, alone: f64) -> Job {
        Job {
            rows,
            concurrent,
            alone,
        }
    }

    #[test]
    fn the_schedule_fills_the_free_worker() {
        let same = |r| job(r, 1.0, 1.0);
        assert_eq!(
            makespan(&[same(10.0), same(4.0), same(4.0), same(4.0)], 2),
            12.0
        );
        assert_eq!(makespan(&[same(10.0), same(4.0)], 1), 14.0);
        assert_eq!(makespan(&[], 2), 0.0);
    }

    #[test]
    fn a_table_left_alone_copies_at_its_alone_rate() {
        // Both run for 4 s (the short one ends), then the long one has 6 rows left at 0.5 s.
        let t = makespan(&[job(10.0, 1.0, 0.5), job(4.0, 1.0, 0.5)], 2);
        assert!((t - 7.0).abs() < 1e-9, "{t}");
    }
}
