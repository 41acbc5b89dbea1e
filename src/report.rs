//! `ferry report`: the stakeholder update — the migration so far, as Markdown, from what ferry
//! recorded in its own tables on the target: the phase timeline with timestamps (backfill,
//! cutover, rollback, completion), rows copied per table, the verification history, incidents
//! (process starts and in-process restarts, stops on definite errors, dead-lettered rows,
//! failed re-copies), schema changes carried, repairs, and the cutover's write window.
//!
//! Guarantees: read-only (SELECTs on the ferry schema, nothing else); every line comes from a
//! stored record with its time, so two reports of the same state are the same; a stream ferry
//! has no record of is an error, not an empty report.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::config::Config;
use crate::plan::render::cell;
use crate::select::quote_ident;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("connecting to the target: {0}")]
    Connect(String),
    #[error("reading ferry's tables: {0}")]
    Query(String),
    #[error(
        "stream {0:?} has no record in the target's ferry schema: has `ferry run` started it?"
    )]
    Unknown(String),
}

fn q(e: tokio_postgres::Error) -> ReportError {
    ReportError::Query(crate::sink::connect::describe(&e))
}

/// Builds the report.
///
/// # Errors
/// The target cannot be reached or read, or holds no record of the stream.
pub async fn build(config: &Config) -> Result<String, ReportError> {
    let client = crate::sink::connect::connect(&config.target)
        .await
        .map_err(|e| ReportError::Connect(crate::sink::connect::describe(&e)))?;
    render(&client, &config.target.ferry_schema, &config.stream).await
}

async fn render(client: &Client, schema: &str, stream: &str) -> Result<String, ReportError> {
    let s = quote_ident(schema);
    let has_schema: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{s}.migration_log")],
        )
        .await
        .map_err(q)?
        .get(0);
    if !has_schema {
        return Err(ReportError::Unknown(stream.to_string()));
    }
    let now: String = client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"')",
            &[],
        )
        .await
        .map_err(q)?
        .get(0);
    let ts = |col: &str| format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')");

    let checkpoint = client
        .query_opt(
            &format!(
                "SELECT binlog_file || ':' || binlog_offset, coalesce(gtid, ''), {}, \
                 coalesce(extract(epoch FROM now() - source_time), -1)::float8 \
                 FROM {s}.checkpoint WHERE stream = $1",
                ts("updated_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let migration = client
        .query_opt(
            &format!(
                "SELECT phase, report::text, {} FROM {s}.migration WHERE stream = $1",
                ts("updated_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let run = client
        .query_opt(
            &format!(
                "SELECT {}, coalesce({}, ''), copied, unique_built, \
                 coalesce(extract(epoch FROM finished_at - started_at), -1)::float8 \
                 FROM {s}.backfill_run WHERE stream = $1",
                ts("started_at"),
                ts("finished_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    if checkpoint.is_none() && migration.is_none() && run.is_none() {
        return Err(ReportError::Unknown(stream.to_string()));
    }

    let mut o = String::new();
    let _ = writeln!(o, "# Migration report: stream `{stream}`\n");
    let phase = migration
        .as_ref()
        .map_or_else(|| "replicating".to_string(), |m| m.get::<_, String>(0));
    let _ = writeln!(o, "Generated {now}. Phase: **{phase}**.\n");
    if let Some(cp) = &checkpoint {
        let lag: f64 = cp.get(3);
        let _ = writeln!(
            o,
            "Checkpoint {} (GTID {}) at {} UTC{}.\n",
            cp.get::<_, String>(0),
            if cp.get::<_, String>(1).is_empty() {
                "none".to_string()
            } else {
                cp.get::<_, String>(1)
            },
            cp.get::<_, String>(2),
            if lag >= 0.0 {
                format!("; the last applied source transaction was written {lag:.0} s before this report")
            } else {
                String::new()
            }
        );
    }

    // The timeline: the backfill's start and end, then every logged event.
    let _ = writeln!(
        o,
        "## Timeline\n\n| when (UTC) | phase | event | detail |\n|---|---|---|---|"
    );
    if let Some(r) = &run {
        let _ = writeln!(
            o,
            "| {} | replicating | backfill started | |",
            r.get::<_, String>(0)
        );
        let finished: String = r.get(1);
        if !finished.is_empty() {
            let _ = writeln!(
                o,
                "| {finished} | replicating | backfill copied | {:.1} s |",
                r.get::<_, f64>(4)
            );
        }
    }
    let events = client
        .query(
            &format!(
                "SELECT {}, phase, event, coalesce(detail::text, '') FROM {s}.migration_log \
                 WHERE stream = $1 ORDER BY at, id",
                ts("at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    for e in &events {
        let (at, phase, event, detail): (String, String, String, String) =
            (e.get(0), e.get(1), e.get(2), e.get(3));
        let short: String = detail.chars().take(120).collect();
        let _ = writeln!(
            o,
            "| {at} | {phase} | {} | {} |",
            cell(&event),
            cell(&short)
        );
        match event.as_str() {
            "started" => starts.push((at, detail)),
            "stopped" => stops.push((at, detail)),
            _ => {}
        }
    }

    // Rows copied.
    let tables = client
        .query(
            &format!(
                "SELECT source_table, rows_copied, copied, indexed, coalesce({}, '') FROM {s}.backfill \
                 WHERE stream = $1 ORDER BY source_table",
                ts("updated_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let _ = writeln!(o, "\n## Rows copied\n");
    if tables.is_empty() {
        let _ = writeln!(
            o,
            "No backfill recorded (the stream started from a position without copying)."
        );
    } else {
        let _ = writeln!(o, "| table | rows copied | copied | indexed | last progress (UTC) |\n|---|---:|---|---|---|");
        let mut total = 0i64;
        for t in &tables {
            let rows: i64 = t.get(1);
            total += rows;
            let _ = writeln!(
                o,
                "| {} | {rows} | {} | {} | {} |",
                cell(&t.get::<_, String>(0)),
                yes(t.get(2)),
                yes(t.get(3)),
                t.get::<_, String>(4)
            );
        }
        let _ = writeln!(o, "| **all** | **{total}** | | | |");
    }

    // Verification history.
    let passes = client
        .query(
            &format!(
                "SELECT {}, kind, tables, differing_rows, matched, \
                 extract(epoch FROM finished_at - started_at)::float8 FROM {s}.verify_passes \
                 WHERE stream = $1 ORDER BY finished_at DESC LIMIT 20",
                ts("finished_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let counts = client
        .query_one(
            &format!(
                "SELECT count(*), count(*) FILTER (WHERE matched), coalesce(max({}) FILTER (WHERE matched), '') \
                 FROM {s}.verify_passes WHERE stream = $1",
                ts("finished_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let _ = writeln!(o, "\n## Verification\n");
    let (all, matched, last): (i64, i64, String) = (counts.get(0), counts.get(1), counts.get(2));
    if all == 0 {
        let _ = writeln!(o, "No verification pass recorded yet (`ferry verify`, or `verify.continuous` in the daemon).");
    } else {
        let _ = writeln!(
            o,
            "{all} passes, {matched} matched; last matched pass finished {}.\n\n| finished (UTC) | kind | tables | differing rows | matched | took |\n|---|---|---:|---:|---|---:|",
            if last.is_empty() { "never".to_string() } else { format!("{last} UTC") }
        );
        for p in &passes {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {:.1} s |",
                p.get::<_, String>(0),
                cell(&p.get::<_, String>(1)),
                p.get::<_, i32>(2),
                p.get::<_, i64>(3),
                yes(p.get(4)),
                p.get::<_, f64>(5)
            );
        }
    }

    // Incidents.
    let _ = writeln!(o, "\n## Incidents\n");
    let mut any = false;
    let mut pids: Vec<String> = Vec::new();
    let mut restarts_in_process = 0;
    let mut process_starts = Vec::new();
    for (at, detail) in &starts {
        let pid = serde_json::from_str::<serde_json::Value>(detail)
            .ok()
            .and_then(|d| d["pid"].as_u64())
            .map(|p| p.to_string())
            .unwrap_or_default();
        if pids.last() == Some(&pid) {
            restarts_in_process += 1;
        } else {
            process_starts.push(at.clone());
            pids.push(pid);
        }
    }
    if process_starts.len() > 1 {
        any = true;
        let _ = writeln!(
            o,
            "- **{} process starts** (the first at {} UTC; later ones at {} UTC)",
            process_starts.len(),
            process_starts[0],
            process_starts[1..].join(", ")
        );
    }
    if restarts_in_process > 0 {
        any = true;
        let _ = writeln!(o, "- **{restarts_in_process} in-process restarts** after transient errors (the supervisor resumed from the checkpoint)");
    }
    for (at, detail) in &stops {
        any = true;
        let d: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
        let _ = writeln!(
            o,
            "- **stopped** at {at} UTC with exit status {}: {}",
            d["exit_status"],
            cell(d["error"].as_str().unwrap_or(""))
        );
    }
    let dead = client
        .query(
            &format!(
                "SELECT source_table, kind, count(*), {}, {} FROM {s}.dead_letter WHERE stream = $1 \
                 GROUP BY source_table, kind ORDER BY 1, 2",
                ts("min(created_at)"),
                ts("max(created_at)")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    for d in &dead {
        any = true;
        let _ = writeln!(
            o,
            "- **{} dead-lettered** from {} ({}), {} – {} UTC: in `{schema}.dead_letter`",
            rows(d.get::<_, i64>(2)),
            d.get::<_, String>(0),
            d.get::<_, String>(1),
            d.get::<_, String>(3),
            d.get::<_, String>(4)
        );
    }
    let failed = client
        .query(
            &format!(
                "SELECT source_table, coalesce(message, ''), {} FROM {s}.backfill_requests \
                 WHERE stream = $1 AND state = 'failed' ORDER BY requested_at",
                ts("requested_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    for f in &failed {
        any = true;
        let _ = writeln!(
            o,
            "- **re-copy of {} failed** (requested {} UTC): {}",
            f.get::<_, String>(0),
            f.get::<_, String>(2),
            cell(&f.get::<_, String>(1))
        );
    }
    if !any {
        let _ = writeln!(o, "None recorded.");
    }

    // Schema changes and repairs.
    let changes = client
        .query(
            &format!(
                "SELECT {}, source_table, source_sql FROM {s}.schema_changes WHERE stream = $1 ORDER BY id",
                ts("applied_at")
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    let _ = writeln!(o, "\n## Schema changes carried\n");
    if changes.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(
            o,
            "| applied (UTC) | table | statement on the source |\n|---|---|---|"
        );
        for c in &changes {
            let sql: String = c.get::<_, String>(2).chars().take(160).collect();
            let _ = writeln!(
                o,
                "| {} | {} | `{}` |",
                c.get::<_, String>(0),
                cell(&c.get::<_, String>(1)),
                cell(&sql).replace('`', "'")
            );
        }
    }
    let repairs = client
        .query(
            &format!(
                "SELECT source_table, count(*) FROM {s}.verify_repairs WHERE stream = $1 GROUP BY 1 ORDER BY 1"
            ),
            &[&stream],
        )
        .await
        .map_err(q)?;
    if !repairs.is_empty() {
        let _ = writeln!(
            o,
            "\n## Repairs (`ferry verify --repair`)\n\n| table | rows repaired |\n|---|---:|"
        );
        for r in &repairs {
            let _ = writeln!(
                o,
                "| {} | {} |",
                cell(&r.get::<_, String>(0)),
                r.get::<_, i64>(1)
            );
        }
    }

    // The cutover.
    let _ = writeln!(o, "\n## Cutover\n");
    let report: Option<serde_json::Value> = migration
        .as_ref()
        .and_then(|m| m.get::<_, Option<String>>(1))
        .and_then(|t| serde_json::from_str(&t).ok());
    match report {
        None => {
            let _ = writeln!(
                o,
                "Not run yet (`ferry cutover --dry-run` shows the expected window)."
            );
        }
        Some(r) => {
            let _ = writeln!(
                o,
                "Last attempt: **{}**{}.",
                r["outcome"].as_str().unwrap_or("?"),
                r["write_unavailable_seconds"]
                    .as_f64()
                    .map_or_else(String::new, |w| format!(
                        ", the application could not write for {w:.2} s"
                    ))
            );
            if let Some(p) = r["final_position"].as_str() {
                let _ = writeln!(o, "\nFinal source position {p}.");
            }
            if let Some(steps) = r["steps"].as_array() {
                let _ = writeln!(
                    o,
                    "\n| step | at (s from the freeze) | took | detail |\n|---|---:|---:|---|"
                );
                for st in steps {
                    let _ = writeln!(
                        o,
                        "| {} | {:.2} | {:.2} s | {} |",
                        cell(st["name"].as_str().unwrap_or("")),
                        st["at_seconds"].as_f64().unwrap_or(0.0),
                        st["seconds"].as_f64().unwrap_or(0.0),
                        cell(st["detail"].as_str().unwrap_or(""))
                    );
                }
            }
        }
    }
    Ok(o)
}

fn rows(n: i64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
