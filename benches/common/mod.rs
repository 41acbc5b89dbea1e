//! Shared pieces of the benchmarks: the private servers, the `bench` data set (users and
//! orders as the issues define them), starting ferry and reading its resource use.
#![allow(dead_code)]

pub mod workload;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn mysql_port() -> u16 {
    env_u64("FERRY_MYSQL_PORT", 13306) as u16
}

pub fn pg_port() -> u16 {
    env_u64("FERRY_PG_PORT", 15432) as u16
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub async fn my(db: Option<&str>) -> mysql_async::Conn {
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

pub async fn pg(db: &str) -> tokio_postgres::Client {
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

/// The `users` and `orders` tables.
pub const TABLES: &str = "
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

/// The marker table of the replication benchmark's lag probe.
pub const MARKS: &str = "CREATE TABLE marks (id BIGINT PRIMARY KEY, note VARCHAR(20))";

pub async fn setup_source(users: u64, orders: u64) {
    let mut c = my(None).await;
    c.query_drop("DROP DATABASE IF EXISTS bench")
        .await
        .expect("drop");
    c.query_drop("CREATE DATABASE bench").await.expect("create");
    let mut c = my(Some("bench")).await;
    c.query_drop(TABLES).await.expect("tables");
    c.query_drop(MARKS).await.expect("marks");
    let started = Instant::now();
    insert_rows(&mut c, users, orders).await;
    eprintln!(
        "source data: {users} users, {orders} orders in {:.1?}",
        started.elapsed()
    );
}

pub async fn master_position() -> (String, u64) {
    let mut c = my(None).await;
    let row: mysql_async::Row = c
        .query_first("SHOW MASTER STATUS")
        .await
        .expect("status")
        .expect("binlog");
    (row.get(0).expect("file"), row.get(1).expect("pos"))
}

pub fn write_config(
    dir: &std::path::Path,
    stream: &str,
    db: &str,
    start: &str,
    metrics: u16,
    keep_state: bool,
) -> PathBuf {
    std::fs::create_dir_all(dir).expect("bench dir");
    let path = dir.join(format!("{stream}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"stream = "{stream}"
state_dir = "state-{stream}"
[source]
host = "127.0.0.1"
port = {}
user = "ferry"
password = "ferry"
server_id = {}
start = "{start}"
[target]
host = "127.0.0.1"
port = {}
user = "postgres"
database = "{db}"
[tables]
include = ["bench.*"]
[metrics]
listen = "127.0.0.1:{metrics}"
[log]
level = "info"
# Benchmarks measure replication and backfill alone; the continuous verifier has its own budget.
[verify]
continuous = false
{}
"#,
            mysql_port(),
            5_000_000 + metrics as u32,
            pg_port(),
            // Extra config lines for experiments, e.g. "[apply]\nbatch_rows = 10000".
            std::env::var("BENCH_FERRY_CONFIG")
                .unwrap_or_default()
                .replace("\\n", "\n")
        ),
    )
    .expect("config");
    if !keep_state {
        let _ = std::fs::remove_dir_all(dir.join(format!("state-{stream}")));
    }
    path
}

pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

pub async fn build_base(base: &str, dir: &std::path::Path) {
    fresh_target(base).await;
    let config = write_config(dir, "base", base, "current", 19_189, false);
    let client = pg(base).await;
    let started = Instant::now();
    let mut child = spawn_ferry(&config, &dir.join("base.log"));
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("ferry exited while building the base: {status}");
        }
        let done = client
            .query_opt(
                "SELECT copied AND unique_built FROM ferry.backfill_run WHERE stream = 'base'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.get::<_, bool>(0));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(child);
    let built = started.elapsed();
    // What autovacuum does within minutes of a bulk load (and long before any real catch-up
    // after a stop): set hint bits and the visibility map, gather statistics. Without it every
    // run's copy of the base pays PostgreSQL's one-time hint-bit writes during the measurement.
    let vacuumed = Instant::now();
    client
        .batch_execute("VACUUM (ANALYZE)")
        .await
        .expect("vacuum the base");
    // Sessions on the base would block using it as a template.
    drop(client);
    eprintln!(
        "base target built by the backfill in {built:.1?}; VACUUM (ANALYZE) {:.1?}",
        vacuumed.elapsed()
    );
}

/// The ferry binary a benchmark runs: `BENCH_FERRY_BIN` (e.g. an older build, to compare in
/// one session), else this checkout's release build.
pub fn ferry_bin() -> PathBuf {
    let bin = std::env::var("BENCH_FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/release/ferry"));
    assert!(
        bin.exists(),
        "{} does not exist: build the release binary first (cargo build --release)",
        bin.display()
    );
    bin
}

pub fn spawn_ferry(config: &std::path::Path, log: &std::path::Path) -> Child {
    let bin = ferry_bin();
    let log = std::fs::File::create(log).expect("log");
    Command::new(bin)
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ferry")
}

pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub async fn wait_caught_up(
    client: &tokio_postgres::Client,
    stream: &str,
    file: &str,
    pos: u64,
    child: &mut Child,
) {
    let seq = |f: &str| {
        f.rsplit('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut checked = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("ferry exited early: {status}");
        }
        if let Ok(Some(r)) = client
            .query_opt(
                "SELECT binlog_file, binlog_offset FROM ferry.checkpoint WHERE stream = $1",
                &[&stream],
            )
            .await
        {
            let f: String = r.get(0);
            let o: i64 = r.get(1);
            if (seq(&f), o as u64) >= (seq(file), pos) {
                return;
            }
            // The checkpoint moves only at commits: a binlog that ends with events of no
            // transaction (MariaDB's Binlog_checkpoint after a rotation) is caught up too.
            if checked.elapsed() > Duration::from_secs(1) {
                checked = Instant::now();
                if only_bookkeeping_between(&f, o as u64, file, pos).await {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether every binlog event from `from_file:from_pos` up to `to_file:to_pos` is one that
/// belongs to no transaction (rotation and MariaDB bookkeeping).
async fn only_bookkeeping_between(
    from_file: &str,
    from_pos: u64,
    to_file: &str,
    to_pos: u64,
) -> bool {
    let Some((prefix, first)) = from_file.rsplit_once('.') else {
        return false;
    };
    let (Ok(a), Some(Ok(b))) = (
        first.parse::<u64>(),
        to_file.rsplit_once('.').map(|(_, s)| s.parse::<u64>()),
    ) else {
        return false;
    };
    let mut c = my(None).await;
    for n in a..=b {
        let name = format!("{prefix}.{n:0width$}", width = first.len());
        let sql = if n == a {
            format!("SHOW BINLOG EVENTS IN '{name}' FROM {from_pos}")
        } else {
            format!("SHOW BINLOG EVENTS IN '{name}'")
        };
        let Ok(rows) = c.query::<mysql_async::Row, _>(sql).await else {
            return false;
        };
        for r in rows {
            let at: u64 = r.get(1).unwrap_or(0);
            if n == b && at >= to_pos {
                break;
            }
            let kind: String = r.get(2).unwrap_or_default();
            if !matches!(
                kind.as_str(),
                "Binlog_checkpoint" | "Gtid_list" | "Rotate" | "Format_desc" | "Stop"
            ) {
                return false;
            }
        }
    }
    true
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

pub async fn fresh_target(db: &str) {
    let admin = pg("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .expect("drop target");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create target");
    if let Ok(settings) = std::env::var("BENCH_TARGET_SETTINGS") {
        // Experiments only, e.g. "synchronous_commit = off".
        admin
            .batch_execute(&format!("ALTER DATABASE {db} SET {settings}"))
            .await
            .expect("target settings");
    }
    // The marker table, with the stamp column and trigger the steady-state run reads.
    pg(db)
        .await
        .batch_execute(
            "CREATE SCHEMA bench;
             CREATE TABLE bench.marks (id bigint PRIMARY KEY, note varchar(20), applied_at timestamptz);
             CREATE FUNCTION bench.stamp() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END $$;
             CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON bench.marks FOR EACH ROW EXECUTE FUNCTION bench.stamp();",
        )
        .await
        .expect("marks table");
}

/// Inserts `users` users and `orders` orders (ids from 1) into the current database of `c`.
pub async fn insert_rows(c: &mut mysql_async::Conn, users: u64, orders: u64) {
    let chunk = 200_000u64;
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
}

/// Runs a ferry command (the benchmark's binary) to its end: exit code and stdout + stderr.
pub fn ferry_command(args: &[&str]) -> (i32, String) {
    let out = Command::new(ferry_bin())
        .args(args)
        .output()
        .expect("run ferry");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The first JSON object in a command's output (Null when there is none).
pub fn json_of(out: &str) -> serde_json::Value {
    out.find('{')
        .and_then(|i| {
            serde_json::Deserializer::from_str(&out[i..])
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()
        })
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `stream`'s backfill copied every table and built its unique constraints.
pub async fn wait_backfilled(client: &tokio_postgres::Client, stream: &str, child: &mut Child) {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("ferry exited during the backfill: {status}");
        }
        let done = client
            .query_opt(
                "SELECT copied AND unique_built FROM ferry.backfill_run WHERE stream = $1",
                &[&stream],
            )
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.get::<_, bool>(0));
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the daemon of `stream` reports streaming with the phase `replicating` and
/// less than a second of lag.
pub async fn wait_streaming(client: &tokio_postgres::Client, stream: &str, child: &mut Child) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("ferry exited: {status}");
        }
        let ok = client
            .query_opt(
                "SELECT 1 FROM ferry.migration WHERE stream = $1 AND phase = 'replicating' \
                 AND daemon_phase = 'streaming' AND daemon_lag_seconds < 1 \
                 AND daemon_seen_at > clock_timestamp() - interval '2 seconds'",
                &[&stream],
            )
            .await
            .ok()
            .flatten()
            .is_some();
        if ok {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "ferry never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
