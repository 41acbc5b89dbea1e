//! The result of `ferry verify`, as JSON (`--json`, stable field names) and as a table for
//! humans.
//!
//! Guarantees: the exit code is decided here and nowhere else ([`Report::exit_code`]): 0 when the
//! target matches (or `--repair` made it match and the re-check agrees), 1 when rows differ or a
//! table is missing. Errors never produce a report (the command exits 2). Values shown to humans
//! are cut to a readable length; the JSON carries them whole.

use serde::Serialize;

use super::compare::{ColumnDiff, DiffKind};
use super::repair::Repair;
use super::settle::SettleReport;

/// One differing row.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub kind: DiffKind,
    /// Key columns (source names) → values.
    pub key: serde_json::Map<String, serde_json::Value>,
    /// The key for humans (`id=5`).
    pub key_text: String,
    pub columns: Vec<ColumnDiff>,
    /// `checksum` and/or `sample`.
    pub found_by: Vec<&'static str>,
}

/// The random sample of one table.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub rows: u64,
    pub differing: u64,
}

/// One table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table` on the source.
    pub table: String,
    /// `"schema"."table"` on the target.
    pub target: String,
    pub key: Vec<String>,
    /// `match`, `different` or `missing_table`.
    pub result: &'static str,
    /// Rows counted during the pass (on a live source the two may differ by changes in flight).
    pub source_rows: u64,
    pub target_rows: u64,
    pub chunks: u64,
    pub differing_chunks: u64,
    /// Columns compared outside the databases (JSON, VECTOR).
    pub compared_outside: Vec<String>,
    /// Chunks whose JSON columns had to be compared row by row (hash mismatch or VECTOR).
    pub json_chunks_by_row: u64,
    pub sample: Option<SampleReport>,
    pub missing_in_target: u64,
    pub extra_in_target: u64,
    pub value_differs: u64,
    pub differences: Vec<DiffReport>,
    /// More rows differ than `verify.max_reported_rows`.
    pub differences_truncated: bool,
    /// Candidate rows that were changes in flight.
    pub in_flight: u64,
    /// Rows that kept changing on the source through every re-check (not counted as drift).
    pub unsettled: Vec<DiffReport>,
}

/// What `--repair` did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub repaired: u64,
    pub not_repaired: u64,
    /// Rows still differing when re-checked after the repair.
    pub remaining: u64,
    pub audit_table: String,
    pub rows: Vec<Repair>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stream: String,
    pub source: String,
    pub target: String,
    /// `match` or `different` (before any repair).
    pub result: &'static str,
    pub differing_rows: u64,
    pub tables: Vec<TableReport>,
    pub settle: SettleReport,
    /// Human description of the stream wait.
    pub settle_note: String,
    pub repair: Option<RepairReport>,
    pub chunk_rows: u64,
    pub leaf_rows: u64,
    pub elapsed_seconds: f64,
}

impl Report {
    /// 0: match (or repaired and re-checked); 1: differences.
    pub fn exit_code(&self) -> u8 {
        if self.result == "match" {
            return 0;
        }
        // A missing table and rows beyond the listing limit are not repaired.
        let unrepaired = self
            .tables
            .iter()
            .any(|t| t.result == "missing_table" || t.differences_truncated);
        match &self.repair {
            Some(r) if r.remaining == 0 && r.not_repaired == 0 && !unrepaired => 0,
            _ => 1,
        }
    }
}

fn cut(s: Option<&str>) -> String {
    match s {
        None => "NULL".into(),
        Some(s) => {
            let mut out: String = s.chars().take(60).collect();
            if out.len() < s.len() {
                out.push('…');
            }
            format!("{out:?}")
        }
    }
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "ferry verify  stream {:?}  source {}  target {}\n",
        r.stream, r.source, r.target
    ));
    out.push_str(&format!(
        "method: row counts and checksums of {}-row key chunks computed inside both databases, \
         bisection of differing chunks to ≤{}-row ranges, value-by-value comparison of those rows\n\n",
        r.chunk_rows, r.leaf_rows
    ));
    out.push_str(&format!(
        "{:<36} {:>12} {:>12} {:>7} {:>6} {:>8} {:>6} {:>8}  {}\n",
        "TABLE",
        "SOURCE ROWS",
        "TARGET ROWS",
        "CHUNKS",
        "DIFF",
        "MISSING",
        "EXTRA",
        "CHANGED",
        "RESULT"
    ));
    for t in &r.tables {
        out.push_str(&format!(
            "{:<36} {:>12} {:>12} {:>7} {:>6} {:>8} {:>6} {:>8}  {}\n",
            t.table,
            t.source_rows,
            t.target_rows,
            t.chunks,
            t.differing_chunks,
            t.missing_in_target,
            t.extra_in_target,
            t.value_differs,
            match t.result {
                "match" => "match",
                "missing_table" => "TARGET TABLE MISSING",
                _ => "DIFFERENT",
            }
        ));
    }
    let outside: Vec<&TableReport> = r
        .tables
        .iter()
        .filter(|t| !t.compared_outside.is_empty())
        .collect();
    if !outside.is_empty() {
        out.push('\n');
    }
    for t in outside {
        out.push_str(&format!(
            "{}: column(s) {} compared as parsed JSON (key order, spacing and number spelling ignored)\n",
            t.table,
            t.compared_outside.join(", ")
        ));
    }
    for t in &r.tables {
        if t.differences.is_empty() && t.unsettled.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} (key {}):\n", t.table, t.key.join(", ")));
        for d in &t.differences {
            out.push_str(&format!("  {:<18} {}", d.kind.label(), d.key_text));
            if d.found_by == ["sample"] {
                out.push_str("  [found by the sample only]");
            }
            out.push('\n');
            for c in &d.columns {
                out.push_str(&format!(
                    "      {}: source {}  target {}\n",
                    c.column,
                    cut(c.source.as_deref()),
                    cut(c.target.as_deref())
                ));
            }
        }
        if t.differences_truncated {
            out.push_str(&format!(
                "  … more rows differ (listing stops at {} per table: verify.max_reported_rows)\n",
                t.differences.len()
            ));
        }
        for d in &t.unsettled {
            out.push_str(&format!(
                "  {:<18} {}  (kept changing on the source during every re-check; not counted)\n",
                "unsettled", d.key_text
            ));
        }
    }
    let sampled: Vec<&TableReport> = r.tables.iter().filter(|t| t.sample.is_some()).collect();
    if !sampled.is_empty() {
        let rows: u64 = sampled
            .iter()
            .filter_map(|t| t.sample.as_ref().map(|s| s.rows))
            .sum();
        let diff: u64 = sampled
            .iter()
            .filter_map(|t| t.sample.as_ref().map(|s| s.differing))
            .sum();
        out.push_str(&format!(
            "\nsample: {rows} random rows compared value by value, {diff} differ\n"
        ));
    }
    if r.settle.candidates > 0 {
        out.push_str(&format!(
            "\nre-check: {} candidate row(s) compared again after waiting for the stream ({} round(s), waited {:.1} s); {} were changes in flight\n  {}\n",
            r.settle.candidates, r.settle.rounds, r.settle.waited_seconds, r.settle.in_flight, r.settle_note
        ));
    }
    if let Some(rep) = &r.repair {
        out.push_str(&format!(
            "\nrepair: {} row(s) re-copied from the source, {} not repaired, {} still differing after the repair; audit in {}\n",
            rep.repaired, rep.not_repaired, rep.remaining, rep.audit_table
        ));
        for row in rep.rows.iter().filter(|x| x.error.is_some()) {
            out.push_str(&format!(
                "  not repaired {} {}: {}\n",
                row.table,
                serde_json::Value::Object(row.key.clone()),
                row.error.as_deref().unwrap_or("")
            ));
        }
    }
    let differing_tables = r.tables.iter().filter(|t| t.result != "match").count();
    out.push_str(&format!(
        "\nresult: {} in {:.1} s (exit {})\n",
        if r.result == "match" {
            format!("MATCH — {} table(s) identical", r.tables.len())
        } else if r.exit_code() == 0 {
            format!(
                "REPAIRED — {} row(s) differed in {differing_tables} of {} table(s) and were re-copied",
                r.differing_rows,
                r.tables.len()
            )
        } else {
            format!(
                "DIFFERENT — {} row(s) differ in {differing_tables} of {} table(s)",
                r.differing_rows,
                r.tables.len()
            )
        },
        r.elapsed_seconds,
        r.exit_code()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::settle::StreamWait;

    fn table(result: &'static str, truncated: bool) -> TableReport {
        TableReport {
            table: "d.t".into(),
            target: "\"d\".\"t\"".into(),
            key: vec!["id".into()],
            result,
            source_rows: 1,
            target_rows: 1,
            chunks: 1,
            differing_chunks: 0,
            compared_outside: Vec::new(),
            json_chunks_by_row: 0,
            sample: None,
            missing_in_target: 0,
            extra_in_target: 0,
            value_differs: 0,
            differences: Vec::new(),
            differences_truncated: truncated,
            in_flight: 0,
            unsettled: Vec::new(),
        }
    }

    fn report(result: &'static str, tables: Vec<TableReport>, repair: Option<u64>) -> Report {
        Report {
            stream: "s".into(),
            source: "m".into(),
            target: "p".into(),
            result,
            differing_rows: 0,
            tables,
            settle: SettleReport {
                candidates: 0,
                rounds: 0,
                in_flight: 0,
                waited_seconds: 0.0,
                stream: StreamWait::NotNeeded,
            },
            settle_note: String::new(),
            repair: repair.map(|remaining| RepairReport {
                repaired: 1,
                not_repaired: 0,
                remaining,
                audit_table: "a".into(),
                rows: Vec::new(),
            }),
            chunk_rows: 10,
            leaf_rows: 2,
            elapsed_seconds: 0.0,
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            report("match", vec![table("match", false)], None).exit_code(),
            0
        );
        assert_eq!(
            report("different", vec![table("different", false)], None).exit_code(),
            1
        );
        assert_eq!(
            report("different", vec![table("different", false)], Some(0)).exit_code(),
            0,
            "repaired and re-checked"
        );
        assert_eq!(
            report("different", vec![table("different", false)], Some(1)).exit_code(),
            1,
            "still differing after the repair"
        );
        assert_eq!(
            report("different", vec![table("different", true)], Some(0)).exit_code(),
            1,
            "rows beyond the listing limit were not repaired"
        );
        assert_eq!(
            report("different", vec![table("missing_table", false)], Some(0)).exit_code(),
            1,
            "a missing table is not repaired"
        );
    }
}
