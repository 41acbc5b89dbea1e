//! Watches the source from the side: its current binlog end (for lag in bytes), its binlog
//! retention (for the headroom before it purges the file ferry still needs) and the estimated
//! size of each replicated table (the denominator of drift ratios in alerts).
//!
//! Guarantees: read-only, one connection, polled every two seconds (table sizes every minute);
//! failures only leave the gauges stale (logged at debug), they never affect replication.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::binlog::current_position;
use super::connect;
use crate::config::SourceConfig;
use crate::metrics as m;
use crate::position::BinlogPosition;
use crate::progress::unix_now;
use crate::select::{fold_name, TableSelector};
use crate::status::StatusBoard;

/// Bytes between `from` and the source end, given the binlog list (name, size).
pub fn lag_bytes(
    from: &BinlogPosition,
    end: &BinlogPosition,
    logs: &[(String, u64)],
) -> Option<u64> {
    if from.file == end.file {
        return Some(end.offset.saturating_sub(from.offset));
    }
    let from_seq = from.file_sequence().ok()?;
    let end_seq = end.file_sequence().ok()?;
    if from_seq > end_seq {
        return Some(0);
    }
    let mut total = 0u64;
    for (name, size) in logs {
        let seq = crate::position::file_sequence(name).ok()?;
        if seq == from_seq {
            total += size.saturating_sub(from.offset);
        } else if seq > from_seq && seq < end_seq {
            total += size;
        }
    }
    Some(total + end.offset)
}

/// Seconds until the source may purge `checkpoint`'s file: retention minus the age of the
/// file's newest event (at least the checkpoint's commit time). The active file is never purged.
pub fn retention_headroom(
    expire_seconds: u64,
    checkpoint: &BinlogPosition,
    checkpoint_time: u32,
    end: &BinlogPosition,
    now: f64,
) -> f64 {
    if expire_seconds == 0 {
        return f64::INFINITY;
    }
    if checkpoint.file == end.file || checkpoint_time == 0 {
        return expire_seconds as f64;
    }
    expire_seconds as f64 - (now - f64::from(checkpoint_time)).max(0.0)
}

async fn expire_seconds(conn: &mut Conn) -> Result<u64, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('binlog_expire_logs_seconds','expire_logs_days')")
        .await?;
    let get = |n: &str| {
        rows.iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    Ok(
        match (get("binlog_expire_logs_seconds"), get("expire_logs_days")) {
            (Some(s), _) if s > 0.0 => s as u64,
            (_, Some(d)) if d > 0.0 => (d * 86_400.0) as u64,
            _ => 0,
        },
    )
}

/// Estimated rows per replicated table, labelled like the other per-table metrics (the
/// PostgreSQL table name).
async fn table_rows(
    conn: &mut Conn,
    selector: &TableSelector,
) -> Result<Vec<(String, u64)>, mysql_async::Error> {
    let rows: Vec<(String, String, Option<u64>)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' \
             AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(db, table, _)| selector.matches(db, table))
        .map(|(_, table, n)| (fold_name(&table), n.unwrap_or(0)))
        .collect())
}

/// Polls until the process ends.
pub async fn run(
    config: SourceConfig,
    selector: TableSelector,
    board: Arc<StatusBoard>,
    checkpoint_time: impl Fn() -> u32,
) {
    let mut conn: Option<Conn> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut sizes_due = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if conn.is_none() {
            match connect::connect(&config).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(error = %e, "source watcher cannot connect");
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let result: Result<(), mysql_async::Error> = async {
            let end = current_position(c).await?;
            let logs: Vec<(String, u64)> = c
                .query::<mysql_async::Row, _>("SHOW BINARY LOGS")
                .await?
                .into_iter()
                .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
                .collect();
            let expire = expire_seconds(c).await?;
            let committed = board.progress.committed_position();
            let lag = committed.as_ref().and_then(|p| lag_bytes(p, &end, &logs));
            if let Some(p) = &committed {
                m::retention_headroom(retention_headroom(
                    expire,
                    p,
                    checkpoint_time(),
                    &end,
                    unix_now(),
                ));
            }
            board.set_source_end(end.file, end.offset, lag);
            if tokio::time::Instant::now() >= sizes_due {
                for (table, rows) in table_rows(c, &selector).await? {
                    m::table_rows(&table, rows);
                }
                sizes_due = tokio::time::Instant::now() + Duration::from_secs(60);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "source watcher query failed");
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_bytes_within_and_across_files() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 300),
        ];
        let p = |f: &str, o| BinlogPosition::new(f, o);
        assert_eq!(
            lag_bytes(&p("b.000003", 100), &p("b.000003", 300), &logs),
            Some(200)
        );
        assert_eq!(
            lag_bytes(&p("b.000001", 900), &p("b.000003", 300), &logs),
            Some(100 + 500 + 300)
        );
        assert_eq!(
            lag_bytes(&p("b.000003", 300), &p("b.000003", 300), &logs),
            Some(0)
        );
    }

    #[test]
    fn headroom() {
        let p = |f: &str| BinlogPosition::new(f, 4);
        assert_eq!(
            retention_headroom(0, &p("b.000001"), 100, &p("b.000002"), 200.0),
            f64::INFINITY
        );
        assert_eq!(
            retention_headroom(3600, &p("b.000002"), 100, &p("b.000002"), 5000.0),
            3600.0
        );
        assert_eq!(
            retention_headroom(3600, &p("b.000001"), 1000, &p("b.000002"), 1600.0),
            3000.0
        );
        assert!(retention_headroom(60, &p("b.000001"), 1000, &p("b.000002"), 2000.0) < 0.0);
    }
}
