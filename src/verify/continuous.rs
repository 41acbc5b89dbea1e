//! The continuous verifier: a background task of `ferry run` that cycles through the replicated
//! tables with the same checksum, bisection and settle steps as `ferry verify`, within a
//! rows-per-second budget, and exports what it finds.
//!
//! Guarantees: it only reads (read-only target session, plain source SELECTs) and never repairs;
//! it starts once the daemon is streaming and checks at most `verify.rows_per_second` source rows
//! per second on one source and one target session; a failure (a database restart, a table
//! dropped mid-pass) is logged and counted in `ferry_errors_total{stage="verify"}`, and the pass
//! is retried later — it never stops replication. Per table it exports `ferry_drift_rows` (rows
//! still differing after settling, from the table's latest check), `ferry_verify_rows_total` and
//! `ferry_verify_coverage_ratio`; after each full pass `ferry_verify_last_full_pass_timestamp_seconds`
//! and the status board's `verification` (shown by `ferry status`). Row values are never logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::checksum::{self, Pacer, ScanSettings};
use super::passes;
use super::query::{self, Session, TableSql};
use super::settle::{self, Settling};
use super::{load_tables, VerifyError};
use crate::config::Config;
use crate::error::ErrorClass;
use crate::metrics as m;
use crate::progress::unix_now;
use crate::status::{StatusBoard, VerifySummary};

/// Pause after a failed pass before the next attempt.
const RETRY: Duration = Duration::from_secs(30);

/// Runs until the task is aborted (at daemon shutdown); returns at once when
/// `verify.continuous` is off.
pub async fn run(config: Config, board: Arc<StatusBoard>) {
    if !config.verify.continuous {
        return;
    }
    while !board.ready() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::info!(
        rows_per_second = config.verify.rows_per_second,
        "continuous verification started"
    );
    loop {
        match pass(&config).await {
            Ok(summary) => {
                m::verify_full_pass(summary.finished_at);
                if summary.matched {
                    tracing::info!(tables = summary.tables, "verification pass: target matches");
                } else {
                    tracing::warn!(
                        tables = summary.tables,
                        rows = summary.differing_rows,
                        "verification pass: rows differ between source and target; `ferry verify` lists them, `ferry verify --repair` re-copies them"
                    );
                }
                *board.verification.lock().expect("status lock") = Some(summary);
                tokio::time::sleep(config.verify.pass_interval).await;
            }
            Err(e) => {
                m::error(m::Stage::Verify, ErrorClass::Transient);
                tracing::warn!(error = %e, retry_in = ?RETRY, "verification pass failed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// One full pass over every replicated table.
async fn pass(config: &Config) -> Result<VerifySummary, VerifyError> {
    let v = &config.verify;
    let mut boundary = query::my_conn(config).await?;
    let tables = load_tables(config, &mut boundary, &[]).await?;
    let mut workers = vec![Session::open(config, true).await?];
    let start = passes::start(config, &workers[0].pg).await;
    let mut skipped = 0u64;
    let pacer = Pacer::new(Some(v.rows_per_second));
    let settings = ScanSettings {
        chunk_rows: v.chunk_rows,
        leaf_rows: v.leaf_rows,
        max_diffs: v.max_reported_rows,
    };
    let flavor = crate::verify::query::source_flavor(&mut boundary).await?;
    let mut checked = 0;
    let mut differing = 0;
    for (t, text) in tables {
        let name = t.source.to_string();
        let q = TableSql::new(Arc::new(t), config.types.clone(), text);
        if !q.target_exists(&workers[0].pg).await? {
            // Created on the source and not yet by the stream: next pass.
            skipped += 1;
            continue;
        }
        let estimate = q.table.estimated_rows.max(1) as f64;
        let done = AtomicU64::new(0);
        m::verify_coverage(&name, 0.0);
        let on_chunk = |rows: u64| {
            let total = done.fetch_add(rows, Ordering::Relaxed) + rows;
            m::verify_rows(&name, rows);
            m::verify_coverage(&name, (total as f64 / estimate).min(1.0));
        };
        let rows = if q.table.has_key() {
            let mut scan = checksum::scan_table(
                &mut boundary,
                &mut workers,
                &q,
                &settings,
                &pacer,
                &on_chunk,
            )
            .await?;
            let mut settling = vec![Settling {
                q: &q,
                diffs: std::mem::take(&mut scan.diffs).into_values().collect(),
                in_flight: 0,
                unsettled: Vec::new(),
            }];
            settle::settle(&mut workers[0], config, &mut settling, v.settle_timeout).await?;
            settling[0].diffs.len() as u64
        } else {
            let m = super::multiset::compare_table(
                &mut workers[0],
                config,
                &q,
                flavor,
                v.settle_timeout,
                settings.max_diffs,
            )
            .await?;
            on_chunk(m.source_rows);
            m.diffs.len() as u64
        };
        m::drift_rows(&name, rows);
        m::verify_coverage(&name, 1.0);
        if rows > 0 {
            tracing::warn!(table = %name, rows, "drift: rows differ between source and target");
        }
        checked += 1;
        differing += rows;
    }
    // A table not checked makes the pass incomplete: it does not count as matched.
    passes::record(
        config,
        "continuous",
        &start,
        checked + skipped,
        differing + skipped,
    )
    .await;
    Ok(VerifySummary {
        finished_at: unix_now(),
        tables: checked,
        differing_rows: differing,
        matched: differing == 0,
    })
}
