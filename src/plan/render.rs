//! The plan as Markdown a team can put in its wiki as is: summary and blockers, current state,
//! readiness per table, the data scan, objects not carried, estimates with their basis, the
//! phases (goal, the ferry commands that perform and gate each, validation, rollback), risks,
//! timeline, communication and the checklist.
//!
//! Guarantees: every number printed comes from the [`Plan`] (nothing is invented here); cells
//! are escaped so a table or column name cannot break the Markdown tables.

use std::fmt::Write;

use super::{Plan, Severity};

/// `1h 05m`, `3m 20s`, `12.4 s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unbounded".into();
    }
    let s = seconds.max(0.0);
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let total = s.round() as u64;
    let (d, h, m, sec) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// `1.2 GB`, `340 MB`, `12 kB`.
pub fn bytes(b: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b.max(0.0);
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn count(n: f64) -> String {
    let n = n.max(0.0).round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A Markdown table cell: pipes escaped, newlines flattened.
pub(crate) fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn opt_duration(s: Option<f64>) -> String {
    s.map_or_else(|| "not measured".into(), duration)
}

/// Renders the whole plan.
pub fn markdown(plan: &Plan) -> String {
    let mut o = String::new();
    let c = &plan.config_path;
    let blockers: Vec<_> = plan.blockers().collect();
    let warnings = plan
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Warning)
        .count();
    let _ = writeln!(o, "# Migration plan: stream `{}`\n", plan.stream);
    let _ = writeln!(
        o,
        "Measured by `ferry plan` on {} from {} {} to PostgreSQL {}.\n",
        plan.generated_at,
        plan.source.flavor,
        plan.source.version,
        plan.target
            .as_ref()
            .map_or("(unreachable)", |t| t.version.as_str())
    );
    let _ = writeln!(o, "## Summary\n");
    if blockers.is_empty() {
        let _ = writeln!(
            o,
            "**Ready: nothing blocks the migration.** {} to decide on (below).",
            plural(warnings, "warning")
        );
    } else {
        let _ = writeln!(
            o,
            "**Blocked: {} must be fixed first** (and {} decided on).\n",
            plural(blockers.len(), "blocker"),
            plural(warnings, "warning")
        );
        let _ = writeln!(o, "| # | table | blocker | fix |\n|---|---|---|---|");
        for (i, b) in blockers.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                i + 1,
                cell(&b.table),
                cell(&b.what),
                cell(&b.fix)
            );
        }
    }
    let e = &plan.estimates;
    let rows: u64 = plan.tables.iter().map(|t| t.rows).sum();
    let data: u64 = plan.tables.iter().map(|t| t.data_bytes).sum();
    let index: u64 = plan.tables.iter().map(|t| t.index_bytes).sum();
    let _ = writeln!(
        o,
        "\n- {} tables, ~{} rows, {} data + {} indexes on the source",
        plan.tables.len(),
        count(rows as f64),
        bytes(data as f64),
        bytes(index as f64)
    );
    let _ = writeln!(
        o,
        "- backfill estimate **{}**, verification **{}**, expected cutover write freeze **{}**",
        opt_duration(e.backfill_seconds),
        opt_duration(e.verify_seconds),
        opt_duration(e.cutover_window_seconds)
    );
    let _ = writeln!(
        o,
        "- workload: {} writes/min, {} reads/min, {} row changes/s, binlog {}/s",
        count(plan.workload.writes_per_minute),
        count(plan.workload.reads_per_minute),
        count(plan.workload.row_changes_per_second),
        bytes(plan.workload.binlog_bytes_per_second)
    );

    // Current state.
    let s = &plan.source;
    let _ = writeln!(o, "\n## Current state (measured)\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    for (k, v) in [
        ("source", format!("{} {} (server_id {})", s.flavor, s.version, s.server_id)),
        ("binary log", format!("log_bin {}, format {}, row image {}, row metadata {}", s.log_bin, s.binlog_format, s.binlog_row_image, s.binlog_row_metadata)),
        ("binlog retention", if s.binlog_retention_seconds == 0 { "until purged by hand".into() } else { duration(s.binlog_retention_seconds as f64) }),
        ("binlog on disk", format!("{} files, {}", s.binlog_files, bytes(s.binlog_bytes as f64))),
        ("GTID", s.gtid_mode.clone()),
        ("server character set", s.character_set_server.clone()),
        ("lower_case_table_names", s.lower_case_table_names.clone()),
        ("time zone", s.time_zone.clone()),
        ("workload sample", format!("{:.0} s: {} writes/min, {} reads/min, {} commits/min, {} row changes/s, binlog {}/s", plan.workload.sample_seconds, count(plan.workload.writes_per_minute), count(plan.workload.reads_per_minute), count(plan.workload.commits_per_minute), count(plan.workload.row_changes_per_second), bytes(plan.workload.binlog_bytes_per_second))),
    ] {
        let _ = writeln!(o, "| {k} | {} |", cell(&v));
    }
    if let Some(t) = &plan.target {
        let _ = writeln!(
            o,
            "| target | PostgreSQL {}, database {} ({}), wal_level {}, max_replication_slots {} |",
            cell(&t.version),
            cell(&t.database),
            bytes(t.database_bytes as f64),
            cell(&t.wal_level),
            cell(&t.max_replication_slots)
        );
    }

    // Readiness per table.
    let _ = writeln!(o, "\n## Readiness per table\n");
    let _ = writeln!(
        o,
        "| table | engine | rows | data | indexes | key | partitioned | foreign keys | triggers | generated | charsets | case-insensitive unique |\n|---|---|---:|---:|---:|---|---|---|---|---|---|---|"
    );
    for t in &plan.tables {
        let fks: Vec<String> = t
            .foreign_keys
            .iter()
            .map(|f| {
                format!(
                    "{} ({}) → {} ON DELETE {} ON UPDATE {}",
                    f.name,
                    f.columns.join(", "),
                    f.parent,
                    f.on_delete,
                    f.on_update
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&t.name),
            cell(&t.engine),
            count(t.rows as f64),
            bytes(t.data_bytes as f64),
            bytes(t.index_bytes as f64),
            cell(t.key.as_deref().unwrap_or("**none**")),
            if t.partitioned { "yes" } else { "no" },
            cell(&fks.join("; ")),
            cell(&t.triggers.join(", ")),
            cell(&t.generated_columns.join(", ")),
            cell(&t.charsets.join(", ")),
            cell(&t.case_insensitive_unique_keys.join("; "))
        );
    }

    let _ = writeln!(o, "\n## Findings\n");
    if plan.issues.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(
            o,
            "| severity | table | finding | what to do |\n|---|---|---|---|"
        );
        for i in &plan.issues {
            let sev = match i.severity {
                Severity::Blocker => "**blocker**",
                Severity::Warning => "warning",
                Severity::Note => "note",
            };
            let _ = writeln!(
                o,
                "| {sev} | {} | {} | {} |",
                cell(&i.table),
                cell(&i.what),
                cell(&i.fix)
            );
        }
    }

    let _ = writeln!(o, "\n## Data scan\n");
    if plan.scan.is_empty() {
        let _ = writeln!(o, "Not run (`--scan-max-rows 0`).");
    } else {
        let _ = writeln!(
            o,
            "Every value read was converted as the backfill and the stream convert it, under the configured `types.*` policies.\n\n| table | rows scanned | complete | values needing a decision |\n|---|---:|---|---|"
        );
        for s in &plan.scan {
            let f: Vec<String> = s
                .findings
                .iter()
                .map(|f| {
                    format!(
                        "{} × {} in {} ({})",
                        count(f.count as f64),
                        f.kind,
                        f.column,
                        f.outcome.replace('_', " ")
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&s.table),
                count(s.rows_scanned as f64),
                if s.complete { "yes" } else { "sampled" },
                cell(
                    if f.is_empty() {
                        "none".into()
                    } else {
                        f.join("; ")
                    }
                    .as_str()
                )
            );
        }
    }

    let _ = writeln!(o, "\n## Objects ferry does not carry\n");
    if plan.objects.is_empty() {
        let _ = writeln!(o, "None found.");
    } else {
        let _ = writeln!(o, "| kind | object | what to do |\n|---|---|---|");
        for x in &plan.objects {
            let _ = writeln!(
                o,
                "| {} | {} | {} |",
                x.kind,
                cell(&x.name),
                cell(&x.what_to_do)
            );
        }
    }

    let _ = writeln!(o, "\n## Estimates\n");
    let _ = writeln!(o, "| estimate | value |\n|---|---|");
    let _ = writeln!(o, "| backfill | {} |", opt_duration(e.backfill_seconds));
    for t in &e.tables {
        let _ = writeln!(
            o,
            "| ↳ {} | {} ({} rows, {}) |",
            cell(&t.table),
            duration(t.seconds),
            count(t.rows as f64),
            t.basis
        );
    }
    let _ = writeln!(
        o,
        "| verification of every row | {} |",
        opt_duration(e.verify_seconds)
    );
    let _ = writeln!(
        o,
        "| target disk | {} |",
        e.target_bytes
            .map_or_else(|| "not measured".into(), |b| bytes(b as f64))
    );
    let _ = writeln!(
        o,
        "| measured copy rate | {} |",
        e.measured_copy_rows_per_second
            .map_or_else(|| "not measured".into(), |r| format!("{} rows/s", count(r)))
    );
    let _ = writeln!(
        o,
        "| apply headroom | {} |",
        e.apply_headroom.map_or_else(
            || "not measured".into(),
            |h| if h.is_finite() {
                format!(
                    "{h:.1}× the source's {} row changes/s",
                    count(e.source_row_changes_per_second)
                )
            } else {
                "no row changes during the sample".into()
            }
        )
    );
    let _ = writeln!(
        o,
        "| binlog retention margin | {} |",
        e.retention_margin_seconds.map_or_else(
            || "binlog kept until purged by hand: purge nothing ferry has not read".into(),
            |m| if m < 0.0 {
                format!("**short by {}**", duration(-m))
            } else {
                format!("{} to spare", duration(m))
            }
        )
    );
    let _ = writeln!(
        o,
        "| cutover write freeze | {} |",
        opt_duration(e.cutover_window_seconds)
    );
    let _ = writeln!(o);
    for b in &e.basis {
        let _ = writeln!(o, "- {b}");
    }
    for smp in &plan.samples {
        let _ = writeln!(
            o,
            "- sample of {}: {} rows ({}) copied in {:.2} s, keys and indexes in {:.2} s, {} in PostgreSQL",
            smp.table,
            count(smp.rows as f64),
            bytes(smp.source_bytes as f64),
            smp.copy_seconds,
            smp.index_seconds,
            bytes(smp.target_bytes as f64)
        );
    }

    phases(&mut o, plan, c);
    risks(&mut o, plan);
    timeline(&mut o, plan);
    communication(&mut o);
    checklist(&mut o, plan, c);

    let _ = writeln!(o, "\n## Column mapping\n");
    for (table, cols) in &plan.columns {
        let _ = writeln!(
            o,
            "<details><summary>{}</summary>\n\n| column | MySQL | PostgreSQL | policy |\n|---|---|---|---|",
            cell(table)
        );
        for col in cols {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                cell(&col.name),
                cell(&col.source_type),
                cell(&col.target_type),
                cell(&col.policy)
            );
        }
        let _ = writeln!(o, "\n</details>\n");
    }
    o
}

fn phases(o: &mut String, plan: &Plan, c: &str) {
    let e = &plan.estimates;
    let _ = writeln!(o, "\n## Phases\n");
    let steps: [(&str, String, String, String, String); 5] = [
        (
            "1. Stream and backfill",
            format!("PostgreSQL holds every row and follows every change (estimate {}).", opt_duration(e.backfill_seconds)),
            format!("`ferry validate --config {c}` (exit 0), then `systemctl start ferry` (or `ferry run --config {c}`); watch `ferry status --config {c}`"),
            "phase `streaming`, backfill 100%, `ferry_lag_seconds` < 5 s, no errors in `ferry_errors_total`".into(),
            "stop ferry; drop the target schema. The source was never changed.".into(),
        ),
        (
            "2. Validate",
            format!("prove the copy exact and keep it exact (one full pass: {}).", opt_duration(e.verify_seconds)),
            format!("`ferry verify --config {c}` (exit 0); `ferry schema --config {c}` (review what is not carried); `ferry schema --config {c} --validate-foreign-keys`; continuous verification in the daemon (`verify.continuous`)"),
            "`ferry verify` exit 0; drift alert when `ferry_verify_drift_rows` exceeds 0.1% of the rows; mismatch rate < 0.01% over the soak; the application's read path tested against PostgreSQL (p95 latency within its budget)".into(),
            "nothing to undo: the application still uses MySQL.".into(),
        ),
        (
            "3. Cutover",
            format!("the application writes to PostgreSQL; MySQL is frozen read-only (expected freeze {}).", opt_duration(e.cutover_window_seconds)),
            format!("`ferry cutover --config {c} --dry-run` (every check passes), then `ferry cutover --config {c} --switch-command '<your switch>'`"),
            "report outcome `switched`; `ferry schema --sync-sequences` ran (the cutover does it); the application's error rate and p95 latency unchanged after the switch".into(),
            format!("before `switched`: `ferry cutover --config {c} --abort` (MySQL writable again); after: phase 4's rollback"),
        ),
        (
            "4. Rollback window",
            "MySQL follows PostgreSQL through the reverse stream, so switching back loses no write.".into(),
            format!("the daemon streams PostgreSQL → MySQL while switched; `ferry status --config {c}` shows the reverse stream"),
            "`ferry_reverse_lag_seconds` < 5 s; alert on `ferry_reverse_slot_retained_bytes` (a stalled slot fills PostgreSQL's disk)".into(),
            format!("`ferry rollback --config {c} --app-role <role> --switch-command '<switch back>'` (`--dry-run` first)"),
        ),
        (
            "5. Complete",
            "the migration is over; MySQL can be retired.".into(),
            format!("`ferry complete --config {c}` (drops the reverse slot and publication)"),
            "no reverse slot left (`SELECT * FROM pg_replication_slots`), MySQL backups archived".into(),
            "none after this point: restore MySQL from a backup.".into(),
        ),
    ];
    for (name, goal, cmds, validation, rollback) in steps {
        let _ = writeln!(
            o,
            "### {name}\n\n- **Goal:** {goal}\n- **Commands:** {cmds}\n- **Validation gate:** {validation}\n- **Rollback:** {rollback}\n"
        );
    }
}

fn risks(o: &mut String, plan: &Plan) {
    let _ = writeln!(
        o,
        "## Risks\n\n| risk | likelihood | mitigation |\n|---|---|---|"
    );
    let mut any = false;
    for i in plan.issues.iter().filter(|i| i.severity != Severity::Note) {
        any = true;
        let likelihood = if i.severity == Severity::Blocker {
            "certain (found)"
        } else {
            "found"
        };
        let what = if i.table.is_empty() {
            i.what.clone()
        } else {
            format!("{}: {}", i.table, i.what)
        };
        let _ = writeln!(o, "| {} | {likelihood} | {} |", cell(&what), cell(&i.fix));
    }
    let _ = writeln!(o, "| a schema change on the source during the migration | possible | ferry carries the common ones while streaming; a refused one stops ferry with the statement and the fix (README: schema changes) |");
    let _ = writeln!(o, "| lag grows under a write peak | possible | alert on `ferry_lag_seconds`; cut over only with lag under `--max-lag` |");
    if !any {
        let _ = writeln!(o, "\n(No blocker or warning was found in the databases.)");
    }
}

fn timeline(o: &mut String, plan: &Plan) {
    let e = &plan.estimates;
    let backfill = e.backfill_seconds.unwrap_or(0.0);
    let verify = e.verify_seconds.unwrap_or(0.0);
    let _ = writeln!(
        o,
        "\n## Timeline\n\n| step | measured duration | when |\n|---|---|---|"
    );
    let _ = writeln!(o, "| fix the blockers | — | before day 0 |");
    let _ = writeln!(o, "| stream + backfill | {} | day 0 |", duration(backfill));
    let _ = writeln!(
        o,
        "| first full verification | {} | right after |",
        duration(verify)
    );
    let _ = writeln!(o, "| soak with continuous verification | chosen by the team (one week is common) | days 1–7 |");
    let _ = writeln!(
        o,
        "| cutover | {} write freeze | a quiet hour after the soak |",
        opt_duration(e.cutover_window_seconds)
    );
    let _ = writeln!(
        o,
        "| rollback window | chosen by the team (one to two weeks) | after the cutover |"
    );
    let _ = writeln!(o, "| complete | seconds | end of the window |");
}

fn communication(o: &mut String) {
    let _ = writeln!(
        o,
        "\n## Communication\n\n| when | who | what |\n|---|---|---|\n\
         | plan accepted | engineering, product, support | this plan, the cutover date and the freeze it expects |\n\
         | each phase gate | engineering | the gate's result (`ferry report`, the status page at the metrics listener's `/`) |\n\
         | cutover −1 day | everyone using the application | the time and the expected write freeze |\n\
         | cutover done / rolled back | everyone | the outcome and what changes for them |"
    );
}

fn checklist(o: &mut String, plan: &Plan, c: &str) {
    let _ = writeln!(o, "\n## Checklist\n");
    for b in plan.blockers() {
        let t = if b.table.is_empty() {
            String::new()
        } else {
            format!("{}: ", b.table)
        };
        let _ = writeln!(o, "- [ ] fix: {t}{} — {}", b.what, b.fix);
    }
    for item in [
        format!("`ferry plan --config {c}` exits 0"),
        format!("`ferry validate --config {c}` exits 0"),
        "the objects ferry does not carry are recreated in PostgreSQL (see the list)".into(),
        "phase `streaming`, backfill 100%, lag < 5 s".into(),
        format!("`ferry verify --config {c}` exits 0"),
        "alerts on lag, errors, drift and (after the switch) the reverse slot's retained WAL"
            .into(),
        format!("`ferry cutover --config {c} --dry-run` passes"),
        "the switch command tested against a staging copy".into(),
        format!("`ferry rollback --config {c} --dry-run` passes after the switch"),
        format!("`ferry complete --config {c}` at the end of the rollback window"),
    ] {
        let _ = writeln!(o, "- [ ] {item}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(12.44), "12.4 s");
        assert_eq!(duration(200.0), "3m 20s");
        assert_eq!(duration(3900.0), "1h 05m");
        assert_eq!(duration(90_000.0), "1d 01h");
        assert_eq!(bytes(1_234_567.0), "1.2 MB");
        assert_eq!(count(3_000_000.0), "3,000,000");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
