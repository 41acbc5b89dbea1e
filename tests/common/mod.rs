//! Shared harness for integration tests: the private MariaDB and PostgreSQL started by
//! `scripts/dev-db.sh`, one fresh database per test on each side, the real `ferry` binary as a
//! child process, and helpers to wait for catch-up and compare tables.
#![allow(dead_code)]

pub mod binlog_file;
pub mod browser;
pub mod certs;
pub mod migration;
pub mod own_mariadb;
pub mod own_postgres;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

pub fn mysql_port() -> u16 {
    std::env::var("FERRY_TEST_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(13306)
}

pub fn pg_port() -> u16 {
    std::env::var("FERRY_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(15432)
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/binlogs`, or `None` (with a note) when absent; under `CI=true` absence
/// fails the test.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = project_root().join("../shared/fixtures/binlogs");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "fixture directory {} is missing (required under CI=true)",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not found; fixture tests need ../shared beside the project",
        dir.display()
    );
    None
}

pub fn mysql_opts(db: Option<&str>) -> mysql_async::Opts {
    mysql_opts_at(mysql_port(), db)
}

pub fn mysql_opts_at(port: u16, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .db_name(db.map(str::to_string))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"])
        .into()
}

pub async fn mysql(db: Option<&str>) -> mysql_async::Conn {
    mysql_at(mysql_port(), db).await
}

pub async fn mysql_at(port: u16, db: Option<&str>) -> mysql_async::Conn {
    mysql_async::Conn::new(mysql_opts_at(port, db))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test MariaDB on 127.0.0.1:{port} ({e}); start it with scripts/dev-db.sh start (scripts/test.sh does)"
            )
        })
}

pub async fn pg(db: &str) -> tokio_postgres::Client {
    pg_with_path(db, "public").await
}

/// A PostgreSQL session with `search_path` set (ferry maps database `x` to schema `x`).
pub async fn pg_with_path(db: &str, search_path: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg_port())
        .user("postgres")
        .dbname(db)
        .options(format!("-c TimeZone=UTC -c search_path={search_path},public"))
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL on 127.0.0.1:{} ({e}); start it with scripts/dev-db.sh start",
                pg_port()
            )
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Drops the replication slots a cutover armed in the databases of test processes that are
/// gone (`t_<prefix>_<pid>_<n>`): a forgotten slot keeps WAL forever and uses up
/// `max_replication_slots`.
async fn drop_stale_slots(admin: &tokio_postgres::Client) {
    let Ok(rows) = admin
        .query(
            "SELECT slot_name::text, database::text FROM pg_replication_slots \
             WHERE NOT active AND slot_type = 'logical' AND database LIKE 't\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for r in rows {
        let (slot, db): (String, String) = (r.get(0), r.get(1));
        let pid = db.rsplit('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = admin
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await;
        }
    }
}

/// A MySQL database and a PostgreSQL database of the same name, private to one test.
pub struct TestDb {
    pub name: String,
    pub dir: PathBuf,
    /// The MariaDB it lives on (the shared private one, or a test's own).
    pub my_port: u16,
}

impl TestDb {
    pub async fn new(prefix: &str) -> TestDb {
        TestDb::new_on(prefix, mysql_port()).await
    }

    /// On the MariaDB at `my_port` (e.g. an [`own_mariadb::OwnMariaDb`]).
    pub async fn new_on(prefix: &str, my_port: u16) -> TestDb {
        let name = format!(
            "t_{prefix}_{}_{}",
            std::process::id(),
            rand::random::<u32>() % 1_000_000
        );
        let mut my = mysql_at(my_port, None).await;
        my.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .expect("drop mysql db");
        my.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("create mysql db");
        let admin = pg("postgres").await;
        drop_stale_slots(&admin).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
            .expect("drop pg db");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create pg db");
        let dir = project_root().join("target/test-runs").join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        TestDb { name, dir, my_port }
    }

    pub async fn my(&self) -> mysql_async::Conn {
        mysql_at(self.my_port, Some(&self.name)).await
    }

    /// A session on this test's PostgreSQL database, with the replicated schema on the path.
    pub async fn pg(&self) -> tokio_postgres::Client {
        pg_with_path(&self.name, &self.name).await
    }

    /// Writes a config for one ferry stream over this database; `extra` is appended verbatim.
    pub fn config(&self, stream: &str, start: &str, extra: &str) -> PathBuf {
        self.config_full(stream, start, &self.name, "", "enabled = false", extra)
    }

    /// Like [`config`](Self::config) with extra lines inside `[tables]`.
    pub fn config_tables(&self, stream: &str, start: &str, tables_extra: &str) -> PathBuf {
        self.config_full(
            stream,
            start,
            &self.name,
            tables_extra,
            "enabled = false",
            "",
        )
    }

    /// Like [`config`](Self::config) but targeting another PostgreSQL database.
    pub fn config_into(&self, stream: &str, start: &str, pg_db: &str, extra: &str) -> PathBuf {
        self.config_full(stream, start, pg_db, "", "enabled = false", extra)
    }

    /// A stream that backfills existing rows first; `backfill` holds extra `[backfill]` lines.
    pub fn config_backfill(&self, stream: &str, backfill: &str, extra: &str) -> PathBuf {
        let lines = format!("enabled = true\n{backfill}");
        self.config_full(stream, "current", &self.name, "", &lines, extra)
    }

    /// Like [`config`](Self::config) with the HTTP endpoint (`metrics.listen`) on `listen`
    /// (e.g. from [`free_listen_addr`]); `extra` must not contain a `[metrics]` table.
    pub fn config_metrics(&self, stream: &str, start: &str, listen: &str, extra: &str) -> PathBuf {
        self.config_with(
            stream,
            start,
            &self.name,
            "",
            "enabled = false",
            listen,
            extra,
        )
    }

    fn config_full(
        &self,
        stream: &str,
        start: &str,
        pg_db: &str,
        tables_extra: &str,
        backfill: &str,
        extra: &str,
    ) -> PathBuf {
        self.config_with(stream, start, pg_db, tables_extra, backfill, "", extra)
    }

    #[allow(clippy::too_many_arguments)]
    fn config_with(
        &self,
        stream: &str,
        start: &str,
        pg_db: &str,
        tables_extra: &str,
        backfill: &str,
        metrics_listen: &str,
        extra: &str,
    ) -> PathBuf {
        let path = self.dir.join(format!("{stream}.toml"));
        let server_id = 1000 + rand::random::<u32>() % 1_000_000;
        let text = format!(
            r#"
stream = "{stream}"
state_dir = "state-{stream}"

[source]
host = "127.0.0.1"
port = {my}
user = "ferry"
password = "ferry"
server_id = {server_id}
start = "{start}"
heartbeat_seconds = 0.5

[target]
host = "127.0.0.1"
port = {pgp}
user = "postgres"
database = "{pg_db}"

[tables]
include = ["{db}.*"]
{tables_extra}

[backfill]
{backfill}

[metrics]
listen = "{metrics_listen}"
{extra}
"#,
            my = self.my_port,
            pgp = pg_port(),
            db = self.name,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The source's current binlog end as `FILE:OFFSET`.
    pub async fn master_position(&self) -> (String, u64) {
        let mut my = self.my().await;
        let row: mysql_async::Row = my
            .query_first("SHOW MASTER STATUS")
            .await
            .expect("show master status")
            .expect("binlog enabled");
        (row.get(0).expect("file"), row.get(1).expect("pos"))
    }

    pub async fn start_position(&self) -> String {
        let (f, p) = self.master_position().await;
        format!("{f}:{p}")
    }

    /// Waits until the stream's checkpoint in PostgreSQL reaches the source's current end.
    pub async fn wait_caught_up(
        &self,
        pg_db: &str,
        stream: &str,
        timeout: Duration,
        ferry: &mut Ferry,
    ) {
        let (file, pos) = self.master_position().await;
        let want = (seq(&file), pos);
        let client = pg(pg_db).await;
        let started = Instant::now();
        loop {
            let row = client
                .query_opt(
                    "SELECT binlog_file, binlog_offset FROM ferry.checkpoint WHERE stream = $1",
                    &[&stream],
                )
                .await
                .ok()
                .flatten();
            // A backfill keeps the checkpoint at its start until every table is copied.
            let copying = client
                .query_opt(
                    "SELECT NOT copied FROM ferry.backfill_run WHERE stream = $1",
                    &[&stream],
                )
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.get::<_, bool>(0));
            if let (Some(r), false) = (row, copying) {
                let f: String = r.get(0);
                let o: i64 = r.get(1);
                if (seq(&f), o as u64) >= want {
                    return;
                }
            }
            if let Some(status) = ferry.try_exit() {
                panic!(
                    "ferry exited with {status} before catching up:\n{}",
                    ferry.log()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "ferry did not catch up to {file}:{pos} within {timeout:?}:\n{}",
                ferry.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The single integer a query on this test's PostgreSQL database returns (a count).
    pub async fn count(&self, sql: &str) -> i64 {
        self.pg()
            .await
            .query_one(sql, &[])
            .await
            .expect("count")
            .get(0)
    }

    /// The stream's checkpoint committed in PostgreSQL, as (binlog file, offset).
    pub async fn checkpoint(&self, stream: &str) -> (String, u64) {
        let row = self
            .pg()
            .await
            .query_one(
                "SELECT binlog_file, binlog_offset FROM ferry.checkpoint WHERE stream = $1",
                &[&stream],
            )
            .await
            .expect("checkpoint row");
        (row.get(0), row.get::<_, i64>(1) as u64)
    }

    pub fn cleanup_dir(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn seq(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A loopback address with a port that was free a moment ago (bind to port 0, then release).
pub fn free_listen_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").to_string()
}

/// A plain HTTP GET against the daemon's endpoint: (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// The real `ferry` binary running as a child process.
pub struct Ferry {
    child: Option<Child>,
    pub config: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    /// Extra environment for the child (after the harness's `RUST_LOG=info`).
    env: Vec<(String, String)>,
    /// Variables removed from the child's environment (e.g. `RUST_LOG`, so `log.level` rules).
    env_remove: Vec<String>,
}

impl Ferry {
    pub fn start(config: &Path, args: &[&str]) -> Ferry {
        Ferry::start_with(config, args, &[], &[])
    }

    /// Like [`start`](Self::start) with environment variables set or removed for the child.
    pub fn start_with(
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        env_remove: &[&str],
    ) -> Ferry {
        let log_path = config.with_extension(format!("{}.log", rand::random::<u32>()));
        let mut f = Ferry {
            child: None,
            config: config.to_path_buf(),
            log_path,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env_remove: env_remove.iter().map(|s| s.to_string()).collect(),
        };
        f.spawn();
        f
    }

    /// Starts the process again (same config, arguments and environment) after it exited.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again needs the previous process to have exited (wait_exit)"
        );
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ferry");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, then start again with the same config.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(s) = self.try_exit() {
                self.child = None;
                return s;
            }
            assert!(
                started.elapsed() < timeout,
                "ferry did not exit within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `ferry <args>` to completion, returning (exit code, stdout+stderr).
pub fn ferry_cmd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("run ferry");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Rows of a MySQL query as text cells (NULL → None), sorted.
pub async fn mysql_rows(conn: &mut mysql_async::Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.expect("mysql query");
    let mut out: Vec<Vec<Option<String>>> = rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// Rows of a PostgreSQL query whose columns are all cast to text, sorted.
pub async fn pg_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = client.query(sql, &[]).await.expect("pg query");
    let mut out: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i))
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// Peak resident memory of a process (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024
}
