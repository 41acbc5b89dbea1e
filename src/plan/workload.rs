//! The source's workload, measured: `SHOW GLOBAL STATUS` counters and the binlog's end read at
//! the start and the end of a sample window, as rates.
//!
//! Guarantees: read-only; the statements `ferry plan` itself runs on the source during the
//! window (its data scan) are subtracted from the read rate, so the figures describe the
//! application; binlog growth is summed across file rotations.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde::Serialize;

/// Rates over the sample window.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub sample_seconds: f64,
    /// INSERT/UPDATE/DELETE/REPLACE statements (single- and multi-table) per minute.
    pub writes_per_minute: f64,
    /// SELECT statements per minute (ferry plan's own subtracted).
    pub reads_per_minute: f64,
    /// Transactions committed per minute (`Com_commit` + autocommitted writes are not told
    /// apart by the server: this is `Com_commit`).
    pub commits_per_minute: f64,
    /// Rows inserted, updated and deleted per second (InnoDB row counters): what ferry applies.
    pub row_changes_per_second: f64,
    pub binlog_bytes_per_second: f64,
}

const WRITE_COUNTERS: &[&str] = &[
    "Com_insert",
    "Com_insert_select",
    "Com_update",
    "Com_update_multi",
    "Com_delete",
    "Com_delete_multi",
    "Com_replace",
    "Com_replace_select",
];

/// Counters at one moment.
#[derive(Debug, Clone)]
pub struct Reading {
    at: Instant,
    counters: Vec<(String, f64)>,
    /// Binlog files in order with their sizes, and the current file's end.
    binlog: Vec<(String, u64)>,
}

impl Reading {
    fn get(&self, name: &str) -> f64 {
        self.counters
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(0.0, |(_, v)| *v)
    }
}

/// Reads the counters now.
///
/// # Errors
/// Driver errors.
pub async fn read(conn: &mut Conn) -> Result<Reading, mysql_async::Error> {
    let mut names: Vec<&str> = WRITE_COUNTERS.to_vec();
    names.extend([
        "Com_select",
        "Com_commit",
        "Innodb_rows_inserted",
        "Innodb_rows_updated",
        "Innodb_rows_deleted",
    ]);
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ({list})"
        ))
        .await?;
    let counters = rows
        .into_iter()
        .map(|(n, v)| (n, v.parse().unwrap_or(0.0)))
        .collect();
    let binlog: Vec<Row> = conn.query("SHOW BINARY LOGS").await.unwrap_or_default();
    let binlog = binlog
        .iter()
        .map(|r| {
            let name: String = r.get(0).unwrap_or_default();
            let size = match r.as_ref(1) {
                Some(mysql_async::Value::Bytes(b)) => {
                    String::from_utf8_lossy(b).parse().unwrap_or(0)
                }
                Some(mysql_async::Value::UInt(u)) => *u,
                Some(mysql_async::Value::Int(i)) => (*i).max(0) as u64,
                _ => 0,
            };
            (name, size)
        })
        .collect();
    Ok(Reading {
        at: Instant::now(),
        counters,
        binlog,
    })
}

/// Bytes written to the binlog between two listings: the growth of the files both list plus
/// every file only the later one lists (rotations in between).
fn binlog_growth(start: &[(String, u64)], end: &[(String, u64)]) -> u64 {
    end.iter()
        .map(|(name, size)| match start.iter().find(|(n, _)| n == name) {
            Some((_, before)) => size.saturating_sub(*before),
            None => *size,
        })
        .sum()
}

/// The rates between two readings; `own_reads` SELECTs were ferry plan's.
pub fn rates(start: &Reading, end: &Reading, own_reads: u64) -> Workload {
    let seconds = end
        .at
        .saturating_duration_since(start.at)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    let delta = |name: &str| (end.get(name) - start.get(name)).max(0.0);
    let per_minute = |v: f64| v * 60.0 / seconds;
    let writes: f64 = WRITE_COUNTERS.iter().map(|n| delta(n)).sum();
    let reads = (delta("Com_select") - own_reads as f64).max(0.0);
    let rows =
        delta("Innodb_rows_inserted") + delta("Innodb_rows_updated") + delta("Innodb_rows_deleted");
    Workload {
        sample_seconds: seconds,
        writes_per_minute: per_minute(writes),
        reads_per_minute: per_minute(reads),
        commits_per_minute: per_minute(delta("Com_commit")),
        row_changes_per_second: rows / seconds,
        binlog_bytes_per_second: binlog_growth(&start.binlog, &end.binlog) as f64 / seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_growth_counts_rotations() {
        let start = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
        ];
        let end = vec![
            ("b.000002".to_string(), 2000),
            ("b.000003".to_string(), 300),
        ];
        assert_eq!(binlog_growth(&start, &end), 1500 + 300);
    }

    #[test]
    fn own_reads_are_subtracted() {
        let at = Instant::now();
        let start = Reading {
            at,
            counters: vec![("Com_select".into(), 100.0), ("Com_insert".into(), 10.0)],
            binlog: vec![],
        };
        let end = Reading {
            at: at + Duration::from_secs(30),
            counters: vec![("Com_select".into(), 200.0), ("Com_insert".into(), 40.0)],
            binlog: vec![],
        };
        let w = rates(&start, &end, 40);
        assert!((w.reads_per_minute - 120.0).abs() < 1e-9);
        assert!((w.writes_per_minute - 60.0).abs() < 1e-9);
    }
}
