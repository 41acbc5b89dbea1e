//! Drift verification: proves that the PostgreSQL target holds exactly the source's rows, and
//! finds the rows that differ when it does not.
//!
//! ```text
//!  per table:  key-ordered chunks ──► checksum in MySQL ═╗
//!                                 └─► checksum in PG    ═╩► equal? ── no ──► bisect ──► rows of
//!              small ranges compared value by value ◄──────────────────────────────────┘
//!  then:       random sample (second, independent method) ──► candidates ──► settle (wait for
//!              the stream to pass the source position, re-compare) ──► drift ──► [--repair]
//! ```
//!
//! - [`normalize`]: the value rules that make equal values hash and compare equal on both engines;
//! - [`query`]: the statements on both sides and the sessions they run in;
//! - [`checksum`]: the chunked checksum pass and bisection;
//! - [`compare`]: the value-by-value row comparison;
//! - [`settle`]: changes in flight are not drift;
//! - [`repair`]: `--repair` and its audit table;
//! - [`report`]: the JSON and human report, and the exit code;
//! - [`continuous`]: the background verifier inside `ferry run`.
//!
//! Guarantees: rows of matching chunks never leave their database (only a count and a 64-bit
//! hash per chunk and side); a difference is reported only after the row still differs once the
//! stream has applied everything the source had when the row was read; verification reads only
//! (its target sessions are read-only) unless `--repair` is given.

pub mod checksum;
pub mod compare;
pub mod continuous;
pub mod multiset;
pub mod normalize;
pub mod passes;
pub mod query;
pub mod repair;
pub mod report;
pub mod settle;
pub mod statements;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, VerifyConfig};
use crate::schema::Table;
use crate::source::catalog::{self, CatalogError};
use crate::source::connect::{self, ConnectError};

use checksum::{Pacer, ScanSettings, TableScan};
use compare::{DiffKind, RowDiff};
use mysql_async::prelude::Queryable;
use normalize::TextMode;
use query::{Key, Session, TableSql};
use report::{DiffReport, RepairReport, Report, SampleReport, TableReport};
use settle::Settling;

/// Why verification could not run (the command exits 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("source ({context}): {source}")]
    Source {
        context: String,
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("target ({context}): {message}")]
    Target { context: String, message: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("table {table} is not replicated by this configuration (tables.include / tables.exclude); replicated tables: {known}")]
    UnknownTable { table: String, known: String },
    #[error("the target database stores text as {encoding}; ferry verify compares text as UTF-8 bytes and needs a UTF8 target database")]
    Encoding { encoding: String },
}

impl VerifyError {
    pub(crate) fn target(context: &str, e: &tokio_postgres::Error) -> VerifyError {
        VerifyError::Target {
            context: context.to_string(),
            message: crate::sink::connect::describe(e),
        }
    }
}

/// How one verification runs (from `[verify]` and the command line).
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// `db.table` names to verify; empty: every replicated table.
    pub tables: Vec<String>,
    /// Random rows per table compared value by value as a second method; 0: none.
    pub sample: usize,
    pub repair: bool,
    pub chunk_rows: u64,
    pub leaf_rows: u64,
    /// Chunk workers, each with one source and one target session.
    pub parallel: usize,
    pub settle_timeout: Duration,
    pub max_diffs: usize,
    /// Source rows checked per second; `None`: as fast as the databases answer.
    pub rows_per_second: Option<u64>,
}

impl VerifyOptions {
    /// The options `[verify]` gives `ferry verify` (no rate limit: it is run on purpose).
    pub fn from_config(c: &VerifyConfig) -> VerifyOptions {
        VerifyOptions {
            tables: Vec::new(),
            sample: 0,
            repair: false,
            chunk_rows: c.chunk_rows,
            leaf_rows: c.leaf_rows,
            parallel: c.parallel,
            settle_timeout: c.settle_timeout,
            max_diffs: c.max_reported_rows,
            rows_per_second: None,
        }
    }

    /// Command-line overrides, clamped to what works: at least 2 rows per chunk (a bisection
    /// needs two halves) with leaves no larger than a chunk, 1–16 workers, a positive finite
    /// settle timeout (others keep the configured one).
    pub fn with_overrides(
        mut self,
        chunk_rows: Option<u64>,
        parallel: Option<usize>,
        settle_timeout_seconds: Option<f64>,
    ) -> VerifyOptions {
        if let Some(n) = chunk_rows {
            self.chunk_rows = n.max(2);
            self.leaf_rows = self.leaf_rows.min(self.chunk_rows);
        }
        if let Some(n) = parallel {
            self.parallel = n.clamp(1, 16);
        }
        if let Some(s) = settle_timeout_seconds.filter(|s| *s > 0.0 && s.is_finite()) {
            self.settle_timeout = Duration::from_secs_f64(s);
        }
        self
    }

    fn scan_settings(&self) -> ScanSettings {
        ScanSettings {
            chunk_rows: self.chunk_rows,
            leaf_rows: self.leaf_rows,
            max_diffs: self.max_diffs,
        }
    }
}

/// One table on its way through a run.
struct TableWork {
    q: Arc<TableSql>,
    missing: bool,
    scan: TableScan,
    sample: Option<SampleReport>,
    diffs: Vec<RowDiff>,
    in_flight: u64,
    unsettled: Vec<RowDiff>,
}

/// Loads the replicated tables, keeping the named ones (all when `names` is empty), each with
/// the way its MySQL text columns can enter the row text.
///
/// # Errors
/// Catalog errors; a name that is not a replicated table.
pub async fn load_tables(
    config: &Config,
    conn: &mut mysql_async::Conn,
    names: &[String],
) -> Result<Vec<(Table, TextMode)>, VerifyError> {
    let source_err = |context: &str| {
        let context = context.to_string();
        move |e| VerifyError::Source {
            context: context.clone(),
            source: e,
        }
    };
    let info = connect::server_info(conn)
        .await
        .map_err(source_err("reading the server version"))?;
    // Spatial and case-insensitive columns are planned as the daemon plans them: against the
    // target's PostGIS and citext.
    let types = {
        let client = query::pg_client(config, true).await?;
        crate::sink::case_fold::resolve_target_types(&client, &config.types)
            .await
            .map_err(|message| VerifyError::Target {
                context: "deciding the spatial and case-insensitive mappings".into(),
                message,
            })?
    };
    let tables = catalog::load_tables(conn, info.flavor, &config.tables, &types).await?;
    for n in names {
        if !tables.iter().any(|t| t.source.to_string() == *n) {
            return Err(VerifyError::UnknownTable {
                table: n.clone(),
                known: tables
                    .iter()
                    .map(|t| t.source.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let tables: Vec<Table> = tables
        .into_iter()
        .filter(|t| names.is_empty() || names.contains(&t.source.to_string()))
        .collect();
    // Tables whose text columns are all UTF-8 in a single collation hash them without a cast.
    let mut dbs: Vec<String> = tables
        .iter()
        .map(|t| catalog::sql_string(&t.source.db))
        .collect();
    dbs.sort();
    dbs.dedup();
    let mut collations: HashMap<(String, String), (bool, Vec<String>)> = HashMap::new();
    if !dbs.is_empty() {
        type Row = (String, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME, COLLATION_NAME \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({})",
                dbs.join(",")
            ))
            .await
            .map_err(source_err("reading column collations"))?;
        for (db, table, column, charset, collation) in rows {
            // Columns compared outside the databases (JSON) are not in the row text.
            let hashed = tables.iter().any(|t| {
                t.source.db == db
                    && t.source.table == table
                    && t.columns
                        .iter()
                        .any(|r| r.source_name == column && normalize::in_checksum(r))
            });
            if !hashed {
                continue;
            }
            let entry = collations.entry((db, table)).or_default();
            if let Some(cs) = charset {
                entry.0 |= !matches!(
                    cs.to_ascii_lowercase().as_str(),
                    "utf8mb4" | "utf8mb3" | "utf8"
                );
            }
            if let Some(c) = collation {
                if !entry.1.contains(&c) {
                    entry.1.push(c);
                }
            }
        }
    }
    Ok(tables
        .into_iter()
        .map(|t| {
            let key = (t.source.db.clone(), t.source.table.clone());
            let mode = match collations.get(&key) {
                Some((false, c)) if c.len() <= 1 => TextMode::Plain,
                _ => TextMode::Binary,
            };
            (t, mode)
        })
        .collect())
}

async fn check_encoding(client: &tokio_postgres::Client) -> Result<(), VerifyError> {
    let row = client
        .query_one("SHOW server_encoding", &[])
        .await
        .map_err(|e| VerifyError::target("reading server_encoding", &e))?;
    let encoding: String = row.get(0);
    if encoding.eq_ignore_ascii_case("UTF8") {
        Ok(())
    } else {
        Err(VerifyError::Encoding { encoding })
    }
}

/// A small deterministic-per-run shuffle source (sampling needs no cryptographic quality).
struct Shuffle(u64);

impl Shuffle {
    fn new() -> Shuffle {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
        Shuffle(seed | 1)
    }

    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }

    fn pick(&mut self, mut keys: Vec<Key>, n: usize) -> Vec<Key> {
        let n = n.min(keys.len());
        for i in 0..n {
            let j = i + self.next(keys.len() - i);
            keys.swap(i, j);
        }
        keys.truncate(n);
        keys
    }
}

/// Compares `n` random source rows and `n` random target rows value by value.
async fn sample_table(
    sess: &mut Session,
    q: &TableSql,
    n: usize,
    scan: &TableScan,
) -> Result<(SampleReport, Vec<RowDiff>), VerifyError> {
    let fraction = |rows: u64| {
        if rows == 0 {
            1.0
        } else {
            (n as f64 * 1.5 / rows as f64).min(1.0)
        }
    };
    let mut shuffle = Shuffle::new();
    let from_source = q
        .my_sample_keys(&mut sess.my, fraction(scan.source_rows), n)
        .await?;
    let from_target = q
        .pg_sample_keys(&sess.pg, fraction(scan.target_rows), n)
        .await?;
    let mut keys = shuffle.pick(from_source, n);
    for k in shuffle.pick(from_target, n) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let (s, t) = tokio::try_join!(
        q.my_rows_by_key(&mut sess.my, &keys),
        q.pg_rows_by_key(&sess.pg, &keys)
    )?;
    let mut diffs = compare::diff_rows(&q.table, Some(&keys), &s, &t);
    for d in &mut diffs {
        d.by_sample = true;
    }
    Ok((
        SampleReport {
            rows: keys.len() as u64,
            differing: diffs.len() as u64,
        },
        diffs,
    ))
}

fn diff_report(t: &Table, d: &RowDiff) -> DiffReport {
    let mut found_by = Vec::new();
    if d.by_checksum {
        found_by.push("checksum");
    }
    if d.by_sample {
        found_by.push("sample");
    }
    DiffReport {
        kind: d.kind,
        key: compare::key_json(t, &d.key),
        key_text: compare::key_text(t, &d.key),
        columns: d.columns.clone(),
        found_by,
    }
}

/// Runs `ferry verify`.
///
/// # Errors
/// Database errors and selection errors (the command exits 2).
pub async fn run(config: &Config, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let started = Instant::now();
    let mut boundary = query::my_conn(config).await?;
    let tables = load_tables(config, &mut boundary, &opts.tables).await?;
    let mut workers = Vec::with_capacity(opts.parallel.max(1));
    for _ in 0..opts.parallel.max(1) {
        workers.push(Session::open(config, true).await?);
    }
    check_encoding(&workers[0].pg).await?;
    let settings = opts.scan_settings();
    let pacer = Pacer::new(opts.rows_per_second);
    let pass_start = passes::start(config, &workers[0].pg).await;
    let flavor = query::source_flavor(&mut boundary).await?;
    // Tables identified by their whole row, compared as multisets and settled on their own.
    let mut settled_whole = Vec::new();

    let mut works = Vec::with_capacity(tables.len());
    for (t, text) in tables {
        let q = Arc::new(TableSql::new(Arc::new(t), config.types.clone(), text));
        if !q.target_exists(&workers[0].pg).await? {
            works.push(TableWork {
                q,
                missing: true,
                scan: TableScan::default(),
                sample: None,
                diffs: Vec::new(),
                in_flight: 0,
                unsettled: Vec::new(),
            });
            continue;
        }
        if !q.table.has_key() {
            let m = multiset::compare_table(
                &mut workers[0],
                config,
                &q,
                flavor,
                opts.settle_timeout,
                settings.max_diffs,
            )
            .await?;
            settled_whole.push(works.len());
            works.push(TableWork {
                q,
                missing: false,
                scan: TableScan {
                    source_rows: m.source_rows,
                    target_rows: m.target_rows,
                    chunks: 1,
                    differing_chunks: u64::from(!m.diffs.is_empty() || !m.unsettled.is_empty()),
                    truncated: m.truncated,
                    ..TableScan::default()
                },
                sample: None,
                diffs: m.diffs,
                in_flight: 0,
                unsettled: m.unsettled,
            });
            continue;
        }
        let mut scan =
            checksum::scan_table(&mut boundary, &mut workers, &q, &settings, &pacer, &|_| {})
                .await?;
        let mut candidates: HashMap<Key, RowDiff> = std::mem::take(&mut scan.diffs);
        let sample = if opts.sample > 0 {
            let (rep, found) = sample_table(&mut workers[0], &q, opts.sample, &scan).await?;
            for d in found {
                candidates
                    .entry(d.key.clone())
                    .and_modify(|e| e.by_sample = true)
                    .or_insert(d);
            }
            Some(rep)
        } else {
            None
        };
        works.push(TableWork {
            q,
            missing: false,
            scan,
            sample,
            diffs: candidates.into_values().collect(),
            in_flight: 0,
            unsettled: Vec::new(),
        });
    }

    let qs: Vec<Arc<TableSql>> = works.iter().map(|w| w.q.clone()).collect();
    let mut settling: Vec<Settling> = works
        .iter_mut()
        .zip(&qs)
        .enumerate()
        .map(|(i, (w, q))| Settling {
            q,
            diffs: if settled_whole.contains(&i) {
                Vec::new()
            } else {
                std::mem::take(&mut w.diffs)
            },
            in_flight: 0,
            unsettled: Vec::new(),
        })
        .collect();
    let settle_report =
        settle::settle(&mut workers[0], config, &mut settling, opts.settle_timeout).await?;
    for (i, (w, s)) in works.iter_mut().zip(settling).enumerate() {
        if settled_whole.contains(&i) {
            continue;
        }
        w.diffs = s.diffs;
        w.in_flight = s.in_flight;
        w.unsettled = s.unsettled;
    }
    let differing_rows: u64 = works.iter().map(|w| w.diffs.len() as u64).sum();
    let any_missing = works.iter().any(|w| w.missing);
    if opts.tables.is_empty() {
        // A pass over every table: what a cutover's precondition and final check build on.
        let differing = differing_rows + works.iter().filter(|w| w.missing).count() as u64;
        passes::record(
            config,
            "command",
            &pass_start,
            works.len() as u64,
            differing,
        )
        .await;
    }

    let repair = if opts.repair && differing_rows > 0 {
        Some(repair_all(config, &mut workers[0], &mut works, opts).await?)
    } else {
        None
    };

    let tables: Vec<TableReport> = works.iter().map(table_report).collect();
    Ok(Report {
        stream: config.stream.clone(),
        source: format!("{}:{}", config.source.host, config.source.port),
        target: format!(
            "{}:{}/{}",
            config.target.host, config.target.port, config.target.database
        ),
        result: if differing_rows == 0 && !any_missing {
            "match"
        } else {
            "different"
        },
        differing_rows,
        tables,
        settle_note: settle_report.stream.describe(&config.stream),
        settle: settle_report,
        repair,
        chunk_rows: opts.chunk_rows,
        leaf_rows: opts.leaf_rows,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Repairs every table's drift, then re-checks the repaired rows against the stream.
async fn repair_all(
    config: &Config,
    sess: &mut Session,
    works: &mut [TableWork],
    opts: &VerifyOptions,
) -> Result<RepairReport, VerifyError> {
    let mut client = query::pg_client(config, false).await?;
    let mut rows = Vec::new();
    let mut rechecks: Vec<(Arc<TableSql>, Vec<RowDiff>)> = Vec::new();
    for w in works.iter().filter(|w| !w.diffs.is_empty()) {
        if !w.q.table.has_key() {
            // Rows without a key cannot be written one by one without risking the copies
            // that are right: such a table is re-copied whole while streaming instead.
            let name = w.q.table.source.to_string();
            let why = format!("the table has no primary key: rows identified by their whole value are not repaired one by one; re-copy the table while streaming with `ferry backfill --config <file> --table {name} --wait`");
            rows.extend(w.diffs.iter().map(|d| repair::Repair {
                table: name.clone(),
                key: compare::key_json(&w.q.table, &d.key),
                action: "none",
                error: Some(why.clone()),
            }));
            continue;
        }
        let keys: Vec<Key> = w.diffs.iter().map(|d| d.key.clone()).collect();
        let done = repair::repair_table(config, &mut client, &mut sess.my, &w.q, &keys).await?;
        rows.extend(done);
        let (s, t) = tokio::try_join!(
            w.q.my_rows_by_key(&mut sess.my, &keys),
            w.q.pg_rows_by_key(&sess.pg, &keys)
        )?;
        rechecks.push((
            w.q.clone(),
            compare::diff_rows(&w.q.table, Some(&keys), &s, &t),
        ));
    }
    let mut settling: Vec<Settling> = rechecks
        .iter()
        .map(|(q, d)| Settling {
            q,
            diffs: d.clone(),
            in_flight: 0,
            unsettled: Vec::new(),
        })
        .collect();
    settle::settle(sess, config, &mut settling, opts.settle_timeout).await?;
    let remaining: u64 = settling.iter().map(|s| s.diffs.len() as u64).sum();
    Ok(RepairReport {
        repaired: rows
            .iter()
            .filter(|r| r.error.is_none() && r.action != "none")
            .count() as u64,
        not_repaired: rows.iter().filter(|r| r.error.is_some()).count() as u64,
        remaining,
        audit_table: format!(
            "{}.{}",
            crate::select::quote_ident(&config.target.ferry_schema),
            repair::AUDIT_TABLE
        ),
        rows,
    })
}

fn table_report(w: &TableWork) -> TableReport {
    let t = &w.q.table;
    let count = |k: DiffKind| w.diffs.iter().filter(|d| d.kind == k).count() as u64;
    TableReport {
        table: t.source.to_string(),
        target: t.target_quoted.clone(),
        key: t.key_names().iter().map(|s| s.to_string()).collect(),
        result: if w.missing {
            "missing_table"
        } else if w.diffs.is_empty() {
            "match"
        } else {
            "different"
        },
        source_rows: w.scan.source_rows,
        target_rows: w.scan.target_rows,
        chunks: w.scan.chunks,
        differing_chunks: w.scan.differing_chunks,
        compared_outside: w
            .q
            .fetched
            .iter()
            .map(|i| t.source_columns[*i].name.clone())
            .collect(),
        json_chunks_by_row: w.scan.json_chunks_by_row,
        sample: w.sample.clone(),
        missing_in_target: count(DiffKind::MissingInTarget),
        extra_in_target: count(DiffKind::ExtraInTarget),
        value_differs: count(DiffKind::ValueDiffers),
        differences: w.diffs.iter().map(|d| diff_report(t, d)).collect(),
        differences_truncated: w.scan.truncated,
        in_flight: w.in_flight,
        unsettled: w.unsettled.iter().map(|d| diff_report(t, d)).collect(),
    }
}
