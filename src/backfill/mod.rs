//! Backfill: copies the rows that exist before streaming starts, online, resumable and fast, then
//! hands over to streaming with nothing missed and nothing doubled.
//!
//! # Why it is correct (copy first, then replay)
//!
//! 1. Before the first row is read, ferry takes a start position P0 that every later read is
//!    guaranteed to see ([`crate::source::snapshot::visible_start_position`]) and records it as
//!    the stream's checkpoint.
//! 2. Each table is copied in key order, one chunk per short read (no long transaction, no
//!    lock). Each chunk is the committed state of its rows at some moment after P0; different
//!    chunks see different moments. Rows can change between chunks — that is fine.
//! 3. When every table is copied, streaming starts at P0 and replays every change after P0, in
//!    order, as full-row upserts and deletes by key. For each row, its final state is set by the
//!    last change after P0 if there is one (a full after-image or a delete — replay never
//!    depends on what the copy wrote), and otherwise equals the copied state, because a row
//!    nothing touched after P0 was the same at every moment the copy could have read it. Once
//!    the stream passes the source position Pend taken when the copy finished, the target is
//!    exactly the source again.
//!
//! Between P0 and Pend the target can be transiently inconsistent across rows (the replay
//! passes through older states), so unique constraints of tables ferry created are built only
//! after the stream passed Pend; primary keys and non-unique indexes are built right after the
//! copy (the replay needs the primary key). Tables are created without indexes so the copy is a
//! plain bulk load (`COPY`).
//!
//! # Resume
//! Each chunk is written together with the key of its last row in one PostgreSQL transaction
//! (`ferry.backfill`), so after a crash each table continues after its last finished chunk.
//! P0 stays the checkpoint until streaming starts, so nothing between P0 and the crash is lost.

pub mod recopy;
pub mod state;
pub mod unique;
pub mod whole;
pub mod worker;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::checkpoint::{self, Checkpoint, StateStore};
use crate::config::Config;
use crate::error::ErrorClass;
use crate::metrics::{self as m, Phase};
use crate::position::BinlogPosition;
use crate::schema::Table;
use crate::sink::{connect as pg, ddl};
use crate::source::binlog::ReaderControl;
use crate::source::connect::{self, ConnectError, Flavor};
use crate::source::snapshot;
use crate::status::{StatusBoard, TableProgress};
use state::{BackfillRun, TableState};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("backfill ({context}): {}", pg::describe(source))]
    Target {
        context: String,
        source: tokio_postgres::Error,
    },
    #[error("backfill: {0}")]
    Connect(#[from] ConnectError),
    #[error("backfill ({context}): {source}")]
    Snapshot {
        context: String,
        source: snapshot::SnapshotError,
    },
    #[error("backfill ({context}): {source}")]
    Source {
        context: String,
        source: mysql_async::Error,
    },
    #[error("stopped during the backfill; it resumes on the next start")]
    Stopped,
    #[error("backfill: {0} task cancelled")]
    Cancelled(&'static str),
    /// A value refused under the `refuse` policy (the message names column, key and fix).
    #[error("backfill of table {table}: {message}")]
    Table { table: String, message: String },
    #[error("PostgreSQL table {target} already holds {rows} rows; ferry backfills into empty tables only. Empty it (TRUNCATE {target}), drop it so ferry creates it, or exclude {table} with `tables.exclude`")]
    TargetNotEmpty {
        table: String,
        target: String,
        rows: i64,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Ddl(#[from] ddl::DdlError),
}

impl BackfillError {
    /// A lost connection on either side is transient: the copy resumes after the last finished
    /// chunk of each table. Refused values and a non-empty target are definite.
    pub fn class(&self) -> ErrorClass {
        match self {
            BackfillError::Target { source, .. } => ErrorClass::of_postgres(source),
            BackfillError::Connect(e) => e.class(),
            BackfillError::Snapshot { source, .. } => source.class(),
            BackfillError::Source { source, .. } => ErrorClass::of_mysql(source),
            BackfillError::Stopped | BackfillError::Cancelled(_) => ErrorClass::Transient,
            BackfillError::Checkpoint(e) => e.class(),
            BackfillError::Ddl(e) => e.class(),
            BackfillError::Table { .. } | BackfillError::TargetNotEmpty { .. } => {
                ErrorClass::Definite
            }
        }
    }

    pub(crate) fn target(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| BackfillError::Target { context, source }
    }

    pub(crate) fn snapshot(
        context: impl Into<String>,
    ) -> impl FnOnce(snapshot::SnapshotError) -> Self {
        let context = context.into();
        move |source| BackfillError::Snapshot { context, source }
    }

    pub(crate) fn source(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Self {
        let context = context.into();
        move |source| BackfillError::Source { context, source }
    }
}

/// What the supervisor needs after a backfill.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Where streaming starts (P0).
    pub start: BinlogPosition,
    /// The source position when the copy finished: once the stream's checkpoint passes it the
    /// target is consistent and unique constraints can be built.
    pub end: Option<BinlogPosition>,
}

/// One table's copy as the tracker sees it: (rows copied, rows estimated, copy start, done).
type TableCount = (u64, u64, Option<Instant>, bool);

/// Shared progress of the copy (for the status board, metrics, bar and log lines).
#[derive(Default)]
pub struct Tracker {
    tables: Mutex<BTreeMap<String, TableCount>>,
}

impl Tracker {
    pub fn set(&self, table: &str, copied: u64, estimated: u64, done: bool) {
        let mut t = self.tables.lock().expect("tracker lock");
        let entry = t
            .entry(table.to_string())
            .or_insert((0, estimated, None, false));
        if entry.2.is_none() && !done {
            entry.2 = Some(Instant::now());
        }
        entry.0 = copied;
        entry.1 = estimated.max(copied);
        entry.3 = done;
    }

    pub fn snapshot(&self, since_start: &BTreeMap<String, u64>) -> BTreeMap<String, TableProgress> {
        let t = self.tables.lock().expect("tracker lock");
        t.iter()
            .map(|(name, (copied, est, started, done))| {
                let percent = if *done {
                    100.0
                } else if *est == 0 {
                    0.0
                } else {
                    (*copied as f64 / *est as f64 * 100.0).min(99.9)
                };
                let fresh = copied.saturating_sub(*since_start.get(name).unwrap_or(&0));
                let eta = started.and_then(|s| {
                    let secs = s.elapsed().as_secs_f64();
                    (fresh > 0 && !done && secs > 0.5).then(|| {
                        let rate = fresh as f64 / secs;
                        est.saturating_sub(*copied) as f64 / rate
                    })
                });
                (
                    name.clone(),
                    TableProgress {
                        rows_copied: *copied,
                        rows_estimated: *est,
                        percent,
                        eta_seconds: eta,
                        done: *done,
                    },
                )
            })
            .collect()
    }
}

/// Runs (or resumes) the backfill when the stream needs one. Returns `None` when it does not
/// (backfill disabled, or finished earlier).
///
/// # Errors
/// See [`BackfillError`].
#[allow(clippy::too_many_arguments)]
pub async fn run_if_needed(
    config: &Config,
    flavor: Flavor,
    tables: &[Table],
    client: &Client,
    fresh_stream: bool,
    store: &dyn StateStore,
    board: &Arc<StatusBoard>,
    control: watch::Receiver<ReaderControl>,
) -> Result<Option<Outcome>, BackfillError> {
    let schema = &config.target.ferry_schema;
    let run = state::load_run(client, schema, &config.stream)
        .await
        .map_err(BackfillError::target("reading the backfill state"))?;
    let run = match run {
        Some(r) if r.copied => {
            return Ok(Some(Outcome {
                start: r.start,
                end: r.end.filter(|_| !r.unique_built),
            }))
        }
        Some(r) => {
            tracing::info!(start = %r.start, "resuming the backfill");
            r
        }
        None if !config.backfill.enabled || !fresh_stream => return Ok(None),
        None => start(config, flavor, tables, client, store).await?,
    };
    board.set_phase(Phase::Backfilling);
    let states = state::load_tables(client, schema, &config.stream)
        .await
        .map_err(BackfillError::target("reading the tables' copy progress"))?;
    let todo: Vec<(Table, TableState)> = tables
        .iter()
        .filter_map(|t| {
            let st = states.get(&t.source.to_string())?.clone();
            Some((t.clone(), st))
        })
        .collect();
    copy_all(config, flavor, todo.clone(), board, control.clone()).await?;
    if control.borrow().stop {
        return Err(BackfillError::Stopped);
    }
    // Primary keys and non-unique indexes now (tables in parallel, like the copy); unique
    // constraints once the target is consistent.
    build_indexes(
        config,
        todo.iter()
            .filter(|(_, st)| st.created_by_ferry && !st.indexed)
            .map(|(t, _)| t.clone())
            .collect(),
    )
    .await?;
    let mut conn = connect::connect(&config.source).await?;
    let end = crate::source::binlog::current_position(&mut conn)
        .await
        .map_err(BackfillError::source(
            "reading the position where the copy ended",
        ))?;
    let _ = conn.disconnect().await;
    state::finish_run(client, schema, &config.stream, &end)
        .await
        .map_err(BackfillError::target("recording the end of the copy"))?;
    tracing::info!(start = %run.start, end = %end, "backfill copied every table; streaming from its start position");
    Ok(Some(Outcome {
        start: run.start,
        end: Some(end),
    }))
}

/// Adds primary keys and non-unique indexes, `parallel_tables` tables at a time.
async fn build_indexes(config: &Config, tables: Vec<Table>) -> Result<(), BackfillError> {
    let queue = Arc::new(Mutex::new(tables));
    let mut workers = Vec::new();
    for _ in 0..config.backfill.parallel_tables {
        let queue = queue.clone();
        let config = config.clone();
        workers.push(tokio::spawn(async move {
            let client = pg::connect(&config.target)
                .await
                .map_err(BackfillError::target("connecting to build indexes"))?;
            client
                .batch_execute("SET maintenance_work_mem = '256MB'")
                .await
                .map_err(BackfillError::target("connecting to build indexes"))?;
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some(t) = next else {
                    return Ok::<(), BackfillError>(());
                };
                let started = Instant::now();
                let mut sql: Vec<String> = ddl::add_primary_key_sql(&t).into_iter().collect();
                sql.extend(ddl::plain_index_sql(&t));
                ddl::run_all(&client, &t, &sql).await?;
                state::mark_indexed(&client, &config.target.ferry_schema, &config.stream, &t.source.to_string())
                    .await
                    .map_err(BackfillError::target(format!("table {}: recording its indexes", t.source)))?;
                tracing::info!(table = %t.source, elapsed = ?started.elapsed(), "built primary key and indexes");
            }
        }));
    }
    for w in workers {
        match w.await {
            Ok(r) => r?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(BackfillError::Cancelled("index builder")),
        }
    }
    Ok(())
}

/// First start: take P0, record it as the checkpoint, create the target tables bare.
async fn start(
    config: &Config,
    flavor: Flavor,
    tables: &[Table],
    client: &Client,
    store: &dyn StateStore,
) -> Result<BackfillRun, BackfillError> {
    let schema = &config.target.ferry_schema;
    let mut rows = Vec::new();
    for t in tables {
        let created = if ddl::exists(client, t)
            .await
            .map_err(BackfillError::target(format!(
                "table {}: checking the target",
                t.source
            )))? {
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM {}", t.target_quoted), &[])
                .await
                .map_err(BackfillError::target(format!(
                    "table {}: checking the target",
                    t.source
                )))?
                .get(0);
            if n > 0 {
                return Err(BackfillError::TargetNotEmpty {
                    table: t.source.to_string(),
                    target: format!("{}.{}", t.target_schema, t.target_name),
                    rows: n,
                });
            }
            false
        } else {
            let sql = ddl::create_bare_table_sql(t);
            client
                .batch_execute(&format!("BEGIN;\n{sql};\nCOMMIT"))
                .await
                .map_err(BackfillError::target(format!(
                    "table {}: creating it",
                    t.source
                )))?;
            true
        };
        rows.push((t, created));
    }
    let mut conn = connect::connect(&config.source).await?;
    let p0 = snapshot::visible_start_position(&mut conn, flavor)
        .await
        .map_err(BackfillError::snapshot("taking the start position"))?;
    let _ = conn.disconnect().await;
    let run = state::start_run(client, schema, &config.stream, &p0, &rows)
        .await
        .map_err(BackfillError::target("recording the start of the copy"))?;
    let cp = Checkpoint {
        position: p0.clone(),
        gtid: None,
        source_time: 0,
    };
    checkpoint::write_target(client, schema, &config.stream, &cp)
        .await
        .map_err(BackfillError::target(
            "recording the start position as the checkpoint",
        ))?;
    store.save_checkpoint(&config.stream, &cp)?;
    store.flush()?;
    tracing::info!(start = %p0, tables = tables.len(), "backfill started");
    Ok(run)
}

/// Copies every unfinished table, `parallel_tables` at a time, largest first.
async fn copy_all(
    config: &Config,
    flavor: Flavor,
    mut todo: Vec<(Table, TableState)>,
    board: &Arc<StatusBoard>,
    control: watch::Receiver<ReaderControl>,
) -> Result<(), BackfillError> {
    let tracker = Arc::new(Tracker::default());
    let mut resumed_at = BTreeMap::new();
    for (t, st) in &todo {
        let name = t.source.to_string();
        tracker.set(
            &name,
            st.rows_copied,
            t.estimated_rows.max(st.rows_copied),
            st.copied,
        );
        resumed_at.insert(name.clone(), st.rows_copied);
        if let (false, Some(key)) = (st.copied, &st.last_key) {
            let key = serde_json::to_string(key).unwrap_or_default();
            tracing::info!(table = %name, rows_copied = st.rows_copied, after_key = %key, "resuming the table copy after its last finished chunk");
        }
    }
    todo.retain(|(_, st)| !st.copied);
    todo.sort_by_key(|(t, _)| std::cmp::Reverse(t.estimated_rows));
    let reporter = spawn_reporter(tracker.clone(), board.clone(), resumed_at);
    let limiter = Arc::new(worker::RateLimiter::new(config.backfill.rows_per_second));
    let queue = Arc::new(Mutex::new(todo));
    let mut workers = Vec::new();
    for _ in 0..config.backfill.parallel_tables {
        let queue = queue.clone();
        let config = config.clone();
        let tracker = tracker.clone();
        let limiter = limiter.clone();
        let control = control.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some((table, st)) = next else {
                    return Ok(());
                };
                if table.has_key() {
                    worker::copy_table(&config, &table, st, &tracker, &limiter, control.clone())
                        .await?;
                } else {
                    whole::copy_table(
                        &config,
                        flavor,
                        &table,
                        st,
                        &tracker,
                        &limiter,
                        control.clone(),
                    )
                    .await?;
                }
                if control.borrow().stop {
                    return Ok(());
                }
            }
        }));
    }
    let mut result = Ok(());
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => result = Err(BackfillError::Cancelled("copy worker")),
        }
    }
    reporter.finish().await;
    result
}

/// Progress display: a live bar per table on a terminal, a log line every 10 s otherwise; the
/// status board and metrics always.
struct Reporter {
    handle: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl Reporter {
    async fn finish(self) {
        self.stop.notify_one();
        let _ = self.handle.await;
    }
}

fn spawn_reporter(
    tracker: Arc<Tracker>,
    board: Arc<StatusBoard>,
    resumed_at: BTreeMap<String, u64>,
) -> Reporter {
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    let handle = tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let multi = indicatif::MultiProgress::new();
        let mut bars: BTreeMap<String, indicatif::ProgressBar> = BTreeMap::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>30} [{bar:30}] {pos:>10}/{len:10} {percent:>3}% {per_sec:>12} ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let mut last_log = Instant::now();
        let mut done = false;
        loop {
            let snap = tracker.snapshot(&resumed_at);
            for (name, p) in &snap {
                m::backfill_progress(name, p.percent / 100.0);
                if tty {
                    let bar = bars.entry(name.clone()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(p.rows_estimated));
                        b.set_style(style.clone());
                        b.set_prefix(name.clone());
                        b
                    });
                    bar.set_length(p.rows_estimated.max(p.rows_copied));
                    bar.set_position(p.rows_copied);
                    if p.done {
                        bar.finish();
                    }
                }
            }
            if !tty && (last_log.elapsed() >= Duration::from_secs(10) || done) {
                last_log = Instant::now();
                for (name, p) in &snap {
                    tracing::info!(
                        table = %name,
                        rows_copied = p.rows_copied,
                        rows_estimated = p.rows_estimated,
                        percent = format!("{:.1}", p.percent),
                        eta_seconds = p.eta_seconds.map(|e| e.round() as u64),
                        done = p.done,
                        "backfill progress"
                    );
                }
            }
            *board.backfill.lock().expect("status lock") = snap;
            if done {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop2.notified() => done = true,
            }
        }
    });
    Reporter { handle, stop }
}
