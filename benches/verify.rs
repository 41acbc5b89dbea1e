//! Verification benchmark (run it with `scripts/bench.sh verify`).
//!
//! Data: the replication benchmark's data set — `users` (1,000,000 rows: BIGINT UNSIGNED key,
//! VARCHAR, DECIMAL(12,2), ENUM, SET, DATETIME(6), TIMESTAMP(3), TEXT, JSON) and `orders`
//! (2,000,000 rows, composite key, DECIMAL(14,4), SMALLINT UNSIGNED, DATE, VARCHAR) — in MariaDB
//! database `bench_verify` (its own, so it never disturbs `scripts/bench.sh replication`), copied
//! into PostgreSQL database `bench_verify` by ferry itself (ferry streams the inserts).
//!
//! Measured: wall time of `ferry verify` (release binary, default settings: 10,000-row chunks,
//! 2 workers) over both tables while ferry runs idle, BENCH_RUNS times (default 3), median
//! reported; then one run after injecting two differences into PostgreSQL (time to find and
//! settle them), and the `--repair` that puts the copy back.
//!
//! Knobs: BENCH_USERS, BENCH_ORDERS, BENCH_RUNS, BENCH_VERIFY_ARGS (extra `ferry verify`
//! arguments, space-separated), BENCH_REBUILD=1 (recreate the data even if it is in place).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

mod common;
use common::*;

const DB: &str = "bench_verify";

fn write_config(dir: &Path, start: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bench dir");
    let path = dir.join("verify.toml");
    std::fs::write(
        &path,
        format!(
            r#"stream = "benchverify"
state_dir = "state-verify"
[source]
host = "127.0.0.1"
port = {}
user = "ferry"
password = "ferry"
server_id = 5190001
start = "{start}"
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

/// (users, orders) on each side, or `None` when the databases are not there.
async fn counts() -> Option<((u64, u64), (u64, u64))> {
    let mut c = my(None).await;
    let source: Option<(u64, u64)> = c
        .query_first(format!(
            "SELECT (SELECT COUNT(*) FROM {DB}.users), (SELECT COUNT(*) FROM {DB}.orders)"
        ))
        .await
        .ok()
        .flatten();
    let admin = pg("postgres").await;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB])
        .await
        .ok()
        .flatten()
        .is_some();
    if !exists {
        return None;
    }
    let row = pg(DB)
        .await
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {DB}.users), (SELECT count(*) FROM {DB}.orders)"
            ),
            &[],
        )
        .await
        .ok()?;
    let target = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    Some((source?, target))
}

/// Creates the data on the source and lets ferry copy it; returns the running ferry.
async fn build(users: u64, orders: u64, dir: &Path) -> (PathBuf, Child) {
    let mut c = my(None).await;
    c.query_drop(format!("DROP DATABASE IF EXISTS {DB}"))
        .await
        .expect("drop");
    c.query_drop(format!("CREATE DATABASE {DB}"))
        .await
        .expect("create");
    let mut c = my(Some(DB)).await;
    c.query_drop(TABLES).await.expect("tables");
    let admin = pg("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        .await
        .expect("drop target");
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .expect("create target");
    let _ = std::fs::remove_dir_all(dir.join("state-verify"));
    let (f0, p0) = master_position().await;
    let config = write_config(dir, &format!("{f0}:{p0}"));
    let mut child = spawn_ferry(&config, &dir.join("verify-ferry.log"));
    let started = Instant::now();
    insert_rows(&mut c, users, orders).await;
    let (f1, p1) = master_position().await;
    eprintln!(
        "source data written in {:.1?}; ferry copying it...",
        started.elapsed()
    );
    wait_caught_up(&pg(DB).await, "benchverify", &f1, p1, &mut child).await;
    eprintln!(
        "ferry copied {users} users and {orders} orders in {:.1?}",
        started.elapsed()
    );
    (config, child)
}

/// Runs `ferry verify --json`; returns (exit code, seconds, report).
fn run_verify(config: &Path, extra: &[&str]) -> (i32, f64, serde_json::Value) {
    let bench_args = std::env::var("BENCH_VERIFY_ARGS").unwrap_or_default();
    let t0 = Instant::now();
    let out = Command::new(ferry_bin())
        .arg("verify")
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(bench_args.split_whitespace())
        .args(extra)
        .output()
        .expect("run ferry verify");
    let secs = t0.elapsed().as_secs_f64();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "ferry verify printed no report:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), secs, report)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users = env_u64("BENCH_USERS", 1_000_000);
    let orders = env_u64("BENCH_ORDERS", 2_000_000);
    let runs = env_u64("BENCH_RUNS", 3).max(1);
    let dir = root().join("target/bench");

    let in_place = counts().await == Some(((users, orders), (users, orders)));
    let (config, child) = if in_place && env_u64("BENCH_REBUILD", 0) == 0 {
        eprintln!("reusing {DB} ({users} users, {orders} orders on both sides)");
        let config = dir.join("verify.toml");
        assert!(
            config.exists(),
            "{} is missing: BENCH_REBUILD=1",
            config.display()
        );
        let child = spawn_ferry(&config, &dir.join("verify-ferry.log"));
        (config, child)
    } else {
        build(users, orders, &dir).await
    };
    // ferry runs (idle, caught up) while verify runs, as in production.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut times = Vec::new();
    for run in 0..runs {
        let (code, secs, report) = run_verify(&config, &[]);
        assert_eq!(code, 0, "the copy must verify clean: {report:#}");
        let rows: u64 = report["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .map(|t| t["source_rows"].as_u64().expect("rows"))
            .sum();
        assert_eq!(rows, users + orders);
        eprintln!("run {run}: ferry verify checked {rows} rows in {secs:.2} s (exit 0)");
        times.push(secs);
    }
    let mut sorted = times.clone();
    let med = median(&mut sorted);
    println!(
        "verify: {} rows in 2 tables (users {users} with a JSON column, orders {orders}): median {med:.2} s over {runs} runs ({}); {:.0} rows/s",
        users + orders,
        times
            .iter()
            .map(|t| format!("{t:.2} s"))
            .collect::<Vec<_>>()
            .join(", "),
        (users + orders) as f64 / med
    );

    // Two differences: how long finding, bisecting and settling them takes.
    let client = pg(DB).await;
    client
        .batch_execute(&format!(
            "UPDATE {DB}.orders SET amount = amount + 1 WHERE user_id = 1 + 777777 % {users} AND order_no = 777777;
             DELETE FROM {DB}.users WHERE id = {};",
            users / 2
        ))
        .await
        .expect("inject drift");
    let (code, secs, report) = run_verify(&config, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["differing_rows"], 2, "{report:#}");
    println!("verify with 2 injected differences: found both in {secs:.2} s (exit 1)");
    let (code, secs, report) = run_verify(&config, &["--repair"]);
    assert_eq!(code, 0, "{report:#}");
    println!(
        "verify --repair: repaired {} rows in {secs:.2} s (exit 0)",
        report["repair"]["repaired"]
    );
    stop(child);
}
