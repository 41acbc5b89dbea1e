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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

const DB: &str = "bench_verify";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mysql_port() -> u16 {
    env_u64("FERRY_MYSQL_PORT", 13306) as u16
}

fn pg_port() -> u16 {
    env_u64("FERRY_PG_PORT", 15432) as u16
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn my(db: Option<&str>) -> mysql_async::Conn {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(mysql_port())
        .user(Some("root"))
        .db_name(db.map(str::to_string))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'"])
        .into();
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to the bench MariaDB (scripts/dev-db.sh start)")
}

async fn pg(db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg_port())
        .user("postgres")
        .dbname(db)
        .connect(NoTls)
        .await
        .expect("connect to the bench PostgreSQL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

const SCHEMA: &str = "
CREATE TABLE users (
  id BIGINT UNSIGNED PRIMARY KEY,
  email VARCHAR(190) NOT NULL,
  name VARCHAR(100),
  balance DECIMAL(12,2) NOT NULL,
  status ENUM('active','blocked','deleted') NOT NULL,
  tags SET('vip','beta','newsletter') NOT NULL,
  created DATETIME(6) NOT NULL,
  seen TIMESTAMP(3) NULL,
  bio TEXT,
  prefs JSON,
  UNIQUE KEY email (email)
);
CREATE TABLE orders (
  user_id BIGINT UNSIGNED NOT NULL,
  order_no INT NOT NULL,
  amount DECIMAL(14,4) NOT NULL,
  qty SMALLINT UNSIGNED NOT NULL,
  ordered DATE NOT NULL,
  note VARCHAR(200),
  PRIMARY KEY (user_id, order_no)
);";

async fn master_position() -> (String, u64) {
    let mut c = my(None).await;
    let row: mysql_async::Row = c
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("status")
        .expect("binlog");
    (row.get(0).expect("file"), row.get(1).expect("pos"))
}

fn seq(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn wait_caught_up(client: &tokio_postgres::Client, file: &str, pos: u64, child: &mut Child) {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("ferry exited early: {status}");
        }
        if let Ok(Some(r)) = client
            .query_opt(
                "SELECT binlog_file, binlog_offset FROM ferry.checkpoint WHERE stream = 'benchverify'",
                &[],
            )
            .await
        {
            let f: String = r.get(0);
            let o: i64 = r.get(1);
            if (seq(&f), o as u64) >= (seq(file), pos) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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

fn spawn_ferry(config: &Path, log: &Path) -> Child {
    let bin = root().join("target/release/ferry");
    assert!(
        bin.exists(),
        "build the release binary first: cargo build --release"
    );
    let log = std::fs::File::create(log).expect("log");
    Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ferry")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
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
    c.query_drop(SCHEMA).await.expect("schema");
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
    let chunk = 100_000u64;
    let mut from = 0;
    while from < users {
        let to = (from + chunk).min(users);
        c.query_drop(format!(
            "INSERT INTO users SELECT seq, CONCAT('user', seq, '@example.com'), CONCAT('User ', seq), \
             (seq % 100000) / 100, ELT(1 + seq % 3, 'active','blocked','deleted'), \
             ELT(1 + seq % 4, '', 'vip', 'beta,newsletter', 'vip,beta'), \
             '2020-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000000) MICROSECOND, \
             FROM_UNIXTIME(1600000000 + seq), CONCAT('about user ', seq), \
             JSON_OBJECT('lang', ELT(1 + seq % 2, 'en', 'fr'), 'n', seq) \
             FROM seq_{}_to_{}",
            from + 1,
            to
        ))
        .await
        .expect("users");
        from = to;
    }
    let mut from = 0;
    while from < orders {
        let to = (from + chunk).min(orders);
        c.query_drop(format!(
            "INSERT INTO orders SELECT 1 + seq % {users}, seq, seq * 1.2345, seq % 500, \
             '2020-01-01' + INTERVAL (seq % 1500) DAY, CONCAT('order ', seq) FROM seq_{}_to_{}",
            from + 1,
            to
        ))
        .await
        .expect("orders");
        from = to;
    }
    let (f1, p1) = master_position().await;
    eprintln!(
        "source data written in {:.1?}; ferry copying it...",
        started.elapsed()
    );
    wait_caught_up(&pg(DB).await, &f1, p1, &mut child).await;
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
    let out = Command::new(root().join("target/release/ferry"))
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
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
