//! Reverse-stream benchmark (run it with `scripts/bench.sh reverse`).
//!
//! Data: the benchmark data set (`users` and `orders`, BENCH_USERS default 100,000 and
//! BENCH_ORDERS default 200,000 rows) plus `marks` (the lag probe) in MariaDB database
//! `bench_reverse` (its own), copied into PostgreSQL database `bench_reverse` by ferry's
//! backfill. A MariaDB trigger stamps each `marks` row with `UNIX_TIMESTAMP(SYSDATE(6))` when it
//! is inserted — that is, when the reverse stream writes it.
//!
//! Each run (BENCH_RUNS, default 3) is one round of the migration's end game on a streaming
//! daemon: a matching `ferry verify`, `ferry cutover --yes --switch-command true` (which arms
//! the reverse stream), then
//! 1. **Catch-up**: ferry stopped (SIGTERM), a backlog of BENCH_CHANGES (default 100,000)
//!    statements of the replication benchmark's write mix (transactions of 10 single-row
//!    statements: 40% user updates, 30% order inserts, 20% user inserts, 10% order deletes)
//!    written on PostgreSQL by the application role from 4 sessions; ferry started again.
//!    Measured from the process start (start-up included) until the slot's confirmed position
//!    reaches the WAL end after the backlog — the stream confirms a position only once
//!    everything before it is committed in MySQL. The row changes are ferry's own count
//!    (`ferry_reverse_rows_applied_total` of the new process; a delete of an order an earlier
//!    run deleted changes nothing and is not counted).
//! 2. **Steady state**: the mix at BENCH_STEADY_RATE (default 1,000) row changes/s from two
//!    application sessions for BENCH_STEADY_SECONDS (default 30); every transaction also
//!    inserts a `marks` row, and the client notes when PostgreSQL acknowledged its COMMIT.
//!    Lag = MariaDB's stamp − that acknowledgement; p50/p99 over all markers.
//! 3. **Rollback** under that load: `ferry rollback --app-role benchrev --switch-command true
//!    --json`; the write-unavailable window (PostgreSQL frozen → MySQL writable) and each step.
//!    Then the role is thawed, the markers are deleted on MySQL (the forward stream carries the
//!    delete) and the next run waits for the forward stream to catch up.
//!
//! Medians over the runs are printed. Knobs: BENCH_USERS, BENCH_ORDERS, BENCH_RUNS,
//! BENCH_CHANGES, BENCH_STEADY_RATE, BENCH_STEADY_SECONDS, BENCH_FERRY_BIN.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;

mod common;
use common::workload::{for_postgres, Workload};
use common::*;

const DB: &str = "bench_reverse";
const STREAM: &str = "benchreverse";
const ROLE: &str = "benchrev";
const METRICS_PORT: u16 = 19_196;

fn write_config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bench dir");
    let path = dir.join("reverse.toml");
    std::fs::write(
        &path,
        format!(
            r#"stream = "{STREAM}"
state_dir = "state-reverse"
[source]
host = "127.0.0.1"
port = {}
user = "ferry"
password = "ferry"
server_id = 5190003
[target]
host = "127.0.0.1"
port = {}
user = "postgres"
database = "{DB}"
[tables]
include = ["{DB}.*"]
[metrics]
listen = "127.0.0.1:{METRICS_PORT}"
[log]
level = "warn"
[verify]
continuous = false
"#,
            mysql_port(),
            pg_port(),
        ),
    )
    .expect("config");
    path
}

/// Creates the data set, lets ferry's backfill copy it and gives the application role its
/// grants on PostgreSQL; returns the running ferry.
async fn build(users: u64, orders: u64, dir: &Path) -> (PathBuf, Child) {
    let mut c = my(None).await;
    c.query_drop("SET GLOBAL read_only = 0")
        .await
        .expect("writable");
    c.query_drop(format!("DROP DATABASE IF EXISTS {DB}"))
        .await
        .expect("drop");
    c.query_drop(format!("CREATE DATABASE {DB}"))
        .await
        .expect("create");
    let mut c = my(Some(DB)).await;
    c.query_drop(TABLES).await.expect("tables");
    c.query_drop(
        "CREATE TABLE marks (id BIGINT PRIMARY KEY, note VARCHAR(20), stamped DECIMAL(17,6) NULL);
         CREATE TRIGGER stamp BEFORE INSERT ON marks FOR EACH ROW SET NEW.stamped = UNIX_TIMESTAMP(SYSDATE(6))",
    )
    .await
    .expect("marks");
    let started = Instant::now();
    insert_rows(&mut c, users, orders).await;
    eprintln!(
        "source data: {users} users, {orders} orders in {:.1?}",
        started.elapsed()
    );
    let admin = pg("postgres").await;
    // A slot of an earlier run would keep the database from being dropped.
    admin
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{DB}'"
        ))
        .await
        .expect("drop old slots");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .await
        .expect("drop target");
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .expect("create target");
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE}'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE {ROLE} LOGIN; ALTER ROLE {ROLE} RESET default_transaction_read_only"
        ))
        .await
        .expect("application role");
    let _ = std::fs::remove_dir_all(dir.join("state-reverse"));
    let config = write_config(dir);
    let mut child = spawn_ferry(&config, &dir.join("reverse-ferry.log"));
    let client = pg(DB).await;
    let started = Instant::now();
    wait_backfilled(&client, STREAM, &mut child).await;
    eprintln!("backfill done in {:.1?}", started.elapsed());
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {DB} TO {ROLE}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {DB} TO {ROLE}"
        ))
        .await
        .expect("grants");
    client
        .batch_execute("VACUUM (ANALYZE)")
        .await
        .expect("vacuum");
    (config, child)
}

/// A session of the application role on PostgreSQL.
async fn app_session() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={ROLE} password={ROLE} dbname={DB} options='-c search_path={DB}'",
            pg_port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("application session");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// (largest user id, largest order number) on PostgreSQL, so new rows never collide.
async fn bases(client: &tokio_postgres::Client) -> (u64, u64) {
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT max(id) FROM {DB}.users)::text, (SELECT max(order_no) FROM {DB}.orders)::bigint"
            ),
            &[],
        )
        .await
        .expect("max ids");
    let users: u64 = row
        .get::<_, Option<String>>(0)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let orders = row.get::<_, Option<i64>>(1).unwrap_or(0) as u64;
    (users + 1, orders + 1)
}

/// Writes `statements` statements of the mix on PostgreSQL from 4 application sessions.
async fn write_backlog(statements: u64, users: u64, orders: u64, run: u64) {
    let base = bases(&pg(DB).await).await;
    let sessions = 4u64;
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let txns = statements / 10 / sessions;
        tasks.push(tokio::spawn(async move {
            let c = app_session().await;
            // Writer slots differ per run and session, so keys never collide.
            let mut wl = Workload::new(run * 100 + s, users, orders, base, run * 8 + s);
            for _ in 0..txns {
                c.batch_execute(&for_postgres(&wl.transaction(10)))
                    .await
                    .expect("backlog transaction");
            }
        }));
    }
    for t in tasks {
        t.await.expect("backlog writer");
    }
}

/// The mix at `rate` row changes/s from two application sessions until stopped, each
/// transaction with a marker whose COMMIT acknowledgement time (Unix seconds) is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<Mutex<HashMap<i64, f64>>>,
    refused: Arc<AtomicU64>,
}

impl Load {
    async fn start(rate: u64, users: u64, orders: u64, run: u64, marker_base: i64) -> Load {
        let base = bases(&pg(DB).await).await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let writers = 2u64;
        let interval = Duration::from_secs_f64(10.0 * writers as f64 / rate as f64);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
            tasks.push(tokio::spawn(async move {
                let c = app_session().await;
                let mut wl =
                    Workload::new(run * 100 + 50 + w, users, orders, base, run * 8 + 4 + w);
                let mut next = tokio::time::Instant::now();
                let mut marker = marker_base + w as i64 * 10_000_000;
                while !stop.load(Ordering::Relaxed) {
                    next += interval;
                    marker += 1;
                    let sql = for_postgres(&wl.transaction(10)).replace(
                        "COMMIT",
                        &format!("INSERT INTO marks (id, note) VALUES ({marker}, 'lag'); COMMIT"),
                    );
                    match c.batch_execute(&sql).await {
                        Ok(()) => {
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .expect("clock")
                                .as_secs_f64();
                            acked.lock().expect("acks").insert(marker, now);
                        }
                        Err(_) => {
                            refused.fetch_add(10, Ordering::Relaxed);
                            // The rollback ended the session (its role cannot log in again).
                            if c.is_closed() {
                                return;
                            }
                            let _ = c.batch_execute("ROLLBACK").await;
                        }
                    }
                    tokio::time::sleep_until(next).await;
                }
            }));
        }
        Load {
            stop,
            tasks,
            acked,
            refused,
        }
    }

    async fn stop(self) -> (HashMap<i64, f64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().expect("acks").clone();
        (acked, self.refused.load(Ordering::Relaxed))
    }
}

/// The slot's confirmed position has reached `target` (the stream confirms a position only
/// once everything before it is in MySQL).
async fn slot_reached(client: &tokio_postgres::Client, target: &str) -> bool {
    client
        .query_one(
            "SELECT COALESCE((SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = $2), false)",
            &[&target, &ferry::reverse::names(DB, STREAM).slot],
        )
        .await
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false)
}

/// `ferry_reverse_rows_applied_total` of the running daemon.
async fn rows_applied() -> f64 {
    let body = http_get(&format!("127.0.0.1:{METRICS_PORT}"), "/metrics").await;
    body.lines()
        .find(|l| l.starts_with("ferry_reverse_rows_applied_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A plain HTTP/1.0 GET on loopback (the benchmark needs nothing more).
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

async fn wal_end(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users = env_u64("BENCH_USERS", 100_000);
    let orders = env_u64("BENCH_ORDERS", 200_000);
    let runs = env_u64("BENCH_RUNS", 3).max(1);
    let changes = env_u64("BENCH_CHANGES", 100_000);
    let rate = env_u64("BENCH_STEADY_RATE", 1_000);
    let steady = env_u64("BENCH_STEADY_SECONDS", 30);
    let dir = root().join("target/bench");
    let (config, mut child) = build(users, orders, &dir).await;
    let cfg = config.to_str().expect("utf-8").to_string();
    let client = pg(DB).await;
    let log = dir.join("reverse-ferry.log");
    let (mut rates, mut p50s, mut p99s, mut windows) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        wait_streaming(&client, STREAM, &mut child).await;
        let (code, out) = ferry_command(&["verify", "--config", &cfg]);
        assert_eq!(code, 0, "the copy must verify clean: {out}");
        let (code, out) = ferry_command(&[
            "cutover",
            "--config",
            &cfg,
            "--json",
            "--yes",
            "--switch-command",
            "true",
        ]);
        assert_eq!(code, 0, "the cutover must switch: {out}");

        // 1. Catch-up of a backlog written while ferry is stopped.
        stop(child);
        let written = Instant::now();
        write_backlog(changes, users, orders, run).await;
        let target = wal_end(&client).await;
        eprintln!(
            "run {run}: backlog of {changes} statements written on PostgreSQL in {:.1?}",
            written.elapsed()
        );
        let started = Instant::now();
        child = spawn_ferry(&config, &log);
        while !slot_reached(&client, &target).await {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("ferry exited during the catch-up: {status}");
            }
            assert!(started.elapsed() < Duration::from_secs(600), "no catch-up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let applied = rows_applied().await;
        let per_second = applied / secs;
        eprintln!(
            "run {run}: reverse catch-up of {applied:.0} row changes in {secs:.2} s = {per_second:.0} row changes/s"
        );
        rates.push(per_second);

        // 2. Steady state.
        let load = Load::start(rate, users, orders, run, (run as i64 + 1) * 100_000_000).await;
        tokio::time::sleep(Duration::from_secs(steady)).await;
        // 3. Rollback under the same load.
        let (code, out) = ferry_command(&[
            "rollback",
            "--config",
            &cfg,
            "--app-role",
            ROLE,
            "--switch-command",
            "true",
            "--json",
        ]);
        let (acked, refused) = load.stop().await;
        let report = json_of(&out);
        assert_eq!(code, 0, "the rollback must succeed: {out}");
        let window = report["write_unavailable_seconds"]
            .as_f64()
            .expect("window");
        let mut line = Vec::new();
        for s in report["steps"].as_array().expect("steps") {
            let name = s["name"].as_str().expect("name").to_string();
            let secs = s["seconds"].as_f64().expect("seconds");
            line.push(format!("{name} {:.0} ms", secs * 1000.0));
            steps.entry(name).or_default().push(secs);
        }
        windows.push(window);
        // Lag of every marker the application saw acknowledged before the freeze.
        let mut m = my(Some(DB)).await;
        let stamps: Vec<(i64, String)> = m
            .query("SELECT id, CAST(stamped AS CHAR) FROM marks WHERE stamped IS NOT NULL")
            .await
            .expect("stamps");
        let mut lags: Vec<f64> = stamps
            .iter()
            .filter_map(|(id, s)| Some(s.parse::<f64>().ok()? - acked.get(id)?))
            .collect();
        assert!(
            lags.len() * 10 >= acked.len() * 9,
            "markers missing in MySQL: {} of {}",
            lags.len(),
            acked.len()
        );
        let (p50, p99) = (percentile(&mut lags, 0.5), percentile(&mut lags, 0.99));
        eprintln!(
            "run {run}: steady {rate} changes/s for {steady} s: lag p50 {:.0} ms, p99 {:.0} ms over {} markers; rollback window {window:.3} s ({}); {refused} changes refused by the freeze",
            p50 * 1000.0,
            p99 * 1000.0,
            lags.len(),
            line.join(", ")
        );
        p50s.push(p50);
        p99s.push(p99);
        // Back to a migration that can cut over again.
        pg("postgres")
            .await
            .batch_execute(&format!(
                "ALTER ROLE {ROLE} LOGIN; ALTER ROLE {ROLE} RESET default_transaction_read_only"
            ))
            .await
            .expect("thaw the role");
        m.query_drop("DELETE FROM marks").await.expect("markers");
    }
    let list = |v: &[f64], scale: f64, unit: &str| {
        v.iter()
            .map(|x| format!("{:.0}{unit}", x * scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let step_medians: Vec<String> = steps
        .iter_mut()
        .map(|(n, v)| format!("{n} {:.0} ms", median(v) * 1000.0))
        .collect();
    println!(
        "reverse catch-up ({changes} statements of the mix, {users} users / {orders} orders): median {:.0} row changes/s ({})",
        median(&mut rates.clone()),
        list(&rates, 1.0, "")
    );
    println!(
        "reverse lag at {rate} changes/s for {steady} s: p50 median {:.0} ms ({}), p99 median {:.0} ms ({})",
        median(&mut p50s.clone()) * 1000.0,
        list(&p50s, 1000.0, " ms"),
        median(&mut p99s.clone()) * 1000.0,
        list(&p99s, 1000.0, " ms")
    );
    println!(
        "rollback window under that load: median {:.3} s ({}); steps (medians): {}",
        median(&mut windows.clone()),
        windows
            .iter()
            .map(|w| format!("{w:.3} s"))
            .collect::<Vec<_>>()
            .join(", "),
        step_medians.join(", ")
    );
    wait_streaming(&client, STREAM, &mut child).await;
    stop(child);
}
