//! Cutover benchmark (run it with `scripts/bench.sh cutover`).
//!
//! Data: the benchmark data set (`users` with a JSON column and `orders`, one third and two
//! thirds of BENCH_SIZES rows each — default 300,000 and 3,000,000 rows in all) in MariaDB
//! database `bench_cutover` (its own), copied into PostgreSQL database `bench_cutover` by
//! ferry's backfill.
//!
//! Measured, for each size and each write rate of BENCH_RATES (row changes/s, default 1000 and
//! 5000), BENCH_RUNS times (default 3): with ferry streaming, a `ferry verify` that matches
//! (the recent pass the cutover requires), then the benchmark write mix at that rate from two
//! sessions of an ordinary account for BENCH_WARM_SECONDS (default 5; the rows they change are
//! what the final check compares), then `ferry cutover --yes --switch-command true` under that
//! load. Reported: the write-unavailable window (freeze → switched) and each step's duration,
//! medians. Between runs the benchmark puts the stream back (read_only off, phase replicating)
//! — which only a benchmark may do: it skips the rollback a real migration would need.
//!
//! Knobs: BENCH_SIZES (comma-separated total rows), BENCH_RATES, BENCH_RUNS,
//! BENCH_WARM_SECONDS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

mod common;
use common::workload::Workload;
use common::*;

const DB: &str = "bench_cutover";
const STREAM: &str = "benchcutover";

fn write_config(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bench dir");
    let path = dir.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            r#"stream = "{STREAM}"
state_dir = "state-cutover"
[source]
host = "127.0.0.1"
port = {}
user = "ferry"
password = "ferry"
server_id = 5190002
[target]
host = "127.0.0.1"
port = {}
user = "postgres"
database = "{DB}"
[tables]
include = ["{DB}.*"]
[metrics]
listen = ""
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

/// Creates the data set and lets ferry's backfill copy it; returns the running ferry.
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
    c.query_drop(format!(
        "CREATE USER IF NOT EXISTS 'benchapp'@'%' IDENTIFIED BY 'benchapp'; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON {DB}.* TO 'benchapp'@'%'"
    ))
    .await
    .expect("application account");
    let mut c = my(Some(DB)).await;
    c.query_drop(TABLES).await.expect("tables");
    let started = Instant::now();
    insert_rows(&mut c, users, orders).await;
    eprintln!(
        "source data: {users} users, {orders} orders in {:.1?}",
        started.elapsed()
    );
    let admin = pg("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .await
        .expect("drop target");
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .expect("create target");
    let _ = std::fs::remove_dir_all(dir.join("state-cutover"));
    let config = write_config(dir);
    let mut child = spawn_ferry(&config, &dir.join("cutover-ferry.log"));
    let client = pg(DB).await;
    let started = Instant::now();
    wait_backfilled(&client, STREAM, &mut child).await;
    eprintln!("backfill done in {:.1?}", started.elapsed());
    client
        .batch_execute("VACUUM (ANALYZE)")
        .await
        .expect("vacuum");
    (config, child)
}

/// Puts the stream back after a benchmark cutover: source writable, phase `replicating`.
async fn reset(client: &tokio_postgres::Client) {
    my(None)
        .await
        .query_drop("SET GLOBAL read_only = 0")
        .await
        .expect("writable");
    client
        .execute(
            "UPDATE ferry.migration SET phase = 'replicating', lease_until = NULL WHERE stream = $1",
            &[&STREAM],
        )
        .await
        .expect("phase back");
}

/// The write mix at `rate` row changes/s from two sessions of the application account until
/// stopped; returns (acknowledged, refused) statement counts.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    acked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl Load {
    async fn start(rate: u64, users: u64, orders: u64, seed: u64) -> Load {
        let mut c = my(Some(DB)).await;
        let base: (Option<u64>, Option<i64>) = c
            .query_first("SELECT (SELECT MAX(id) FROM users), (SELECT MAX(order_no) FROM orders)")
            .await
            .expect("max ids")
            .expect("row");
        let base = (base.0.unwrap_or(0) + 1, base.1.unwrap_or(0) as u64 + 1);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let writers = 2u64;
        // Transactions of 10 statements: rate / 10 per second over both writers.
        let interval = Duration::from_secs_f64(10.0 * writers as f64 / rate as f64);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (stop, acked, refused) = (stop.clone(), acked.clone(), refused.clone());
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(mysql_port())
                .user(Some("benchapp"))
                .pass(Some("benchapp"))
                .db_name(Some(DB));
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts)
                    .await
                    .expect("application session");
                let mut wl = Workload::new(seed * 10 + w, users, orders, base, w);
                let mut next = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += interval;
                    match c.query_drop(wl.transaction(10)).await {
                        Ok(()) => acked.fetch_add(10, Ordering::Relaxed),
                        Err(_) => {
                            let _ = c.query_drop("ROLLBACK").await;
                            refused.fetch_add(10, Ordering::Relaxed)
                        }
                    };
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

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (
            self.acked.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

fn list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes = list("BENCH_SIZES", "300000,3000000");
    let rates = list("BENCH_RATES", "1000,5000");
    let runs = env_u64("BENCH_RUNS", 3).max(1);
    let warm = env_u64("BENCH_WARM_SECONDS", 5);
    let dir = root().join("target/bench");
    let mut summary = Vec::new();
    for &size in &sizes {
        let (users, orders) = (size / 3, size - size / 3);
        let (config, mut child) = build(users, orders, &dir).await;
        let cfg = config.to_str().expect("utf-8").to_string();
        let client = pg(DB).await;
        for &rate in &rates {
            let mut windows = Vec::new();
            let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            let mut keys = Vec::new();
            for run in 0..runs {
                reset(&client).await;
                wait_streaming(&client, STREAM, &mut child).await;
                let (code, out) = ferry_command(&["verify", "--config", &cfg]);
                assert_eq!(code, 0, "the copy must verify clean: {out}");
                let load = Load::start(rate, users, orders, size + rate + run).await;
                tokio::time::sleep(Duration::from_secs(warm)).await;
                let (code, out) = ferry_command(&[
                    "cutover",
                    "--config",
                    &cfg,
                    "--json",
                    "--yes",
                    "--switch-command",
                    "true",
                ]);
                let (acked, refused) = load.stop().await;
                let report = json_of(&out);
                assert_eq!(code, 0, "the cutover must switch: {out}");
                let window = report["write_unavailable_seconds"]
                    .as_f64()
                    .expect("window");
                let checked = report["final_check"]["keys_checked"].as_u64().unwrap_or(0);
                let mut line = Vec::new();
                for s in report["steps"].as_array().expect("steps") {
                    let name = s["name"].as_str().expect("name").to_string();
                    let secs = s["seconds"].as_f64().expect("seconds");
                    line.push(format!("{name} {:.0} ms", secs * 1000.0));
                    steps.entry(name).or_default().push(secs);
                }
                eprintln!(
                    "{size} rows, {rate} changes/s, run {run}: window {window:.3} s, {checked} changed keys checked ({}); load: {acked} changes acknowledged, {refused} refused",
                    line.join(", ")
                );
                windows.push(window);
                keys.push(checked as f64);
            }
            let med = median(&mut windows.clone());
            let step_medians: Vec<String> = steps
                .iter_mut()
                .map(|(n, v)| format!("{n} {:.0} ms", median(v) * 1000.0))
                .collect();
            let line = format!(
                "cutover: {size} rows at {rate} changes/s: window median {med:.3} s over {runs} runs ({}); steps (medians): {}; changed keys checked (median) {:.0}",
                windows
                    .iter()
                    .map(|w| format!("{w:.3} s"))
                    .collect::<Vec<_>>()
                    .join(", "),
                step_medians.join(", "),
                median(&mut keys)
            );
            println!("{line}");
            summary.push(line);
        }
        reset(&client).await;
        stop(child);
    }
    println!("\n{}", summary.join("\n"));
}
