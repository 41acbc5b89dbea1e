//! ferry as a service, against the real binary and servers: pause/resume by signal (reading
//! stops, lag grows honestly, the pause survives a restart), SIGHUP reloading the log level,
//! SIGTERM draining (and a second one abandoning a blocked transaction), every streaming metric
//! on /metrics with sane values, `ferry status`, systemd's notify protocol (READY after
//! preflight, watchdog pings), the unit file under `systemd-analyze verify`, and the contrib
//! dashboard and alerts using real metric names.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

const TABLE: &str = "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(40) NULL, d DATE NULL)";

/// One sample of the Prometheus text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `/metrics` page.
struct Scrape {
    samples: Vec<Sample>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let mut labels = BTreeMap::new();
                    for pair in body.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("label pair");
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            samples.push(Sample {
                name,
                labels,
                value: value.parse().expect("numeric sample value"),
            });
        }
        Scrape {
            samples,
            text: text.to_string(),
        }
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one series with these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self.matching(name, labels).collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches several series: {found:?}"
        );
        found.first().map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} is not exported:\n{}", self.text))
    }

    /// Sum over every series of `name` with these labels.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn has_series(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn scrape(addr: &str) -> Scrape {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    Scrape::parse(&body)
}

/// Polls `check` every 200 ms until it returns `Some`, failing with `what` and the daemon's log.
async fn eventually<T>(
    what: &str,
    timeout: Duration,
    ferry: &mut Ferry,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if let Some(status) = ferry.try_exit() {
            panic!(
                "ferry exited ({status}) while waiting for {what}:\n{}",
                ferry.log()
            );
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config_arg(config: &Path) -> &str {
    config.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_restart_lag_grows_honestly_and_resume_catches_up() {
    let db = TestDb::new("pause").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let addr = free_listen_addr();
    let config = db.config_metrics("main", &start, &addr, "");
    let mut ferry = Ferry::start(&config, &[]);
    for i in 0..10 {
        my.query_drop(format!(
            "INSERT INTO items (id, label) VALUES ({i}, 'before')"
        ))
        .await
        .expect("insert");
    }
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    // Other tests write to the same source: "idle" may take a moment.
    eventually(
        "lag 0 once caught up and idle",
        Duration::from_secs(60),
        &mut ferry,
        || {
            let m = scrape(&addr);
            (m.value("ferry_lag_seconds", &[]) == 0.0 && m.value("ferry_paused", &[]) == 0.0)
                .then_some(())
        },
    )
    .await;

    // Pause: reading stops at a transaction boundary while the source keeps writing.
    ferry.signal("USR1");
    eventually(
        "ferry_paused = 1",
        Duration::from_secs(10),
        &mut ferry,
        || (scrape(&addr).value("ferry_paused", &[]) == 1.0).then_some(()),
    )
    .await;
    for i in 10..15 {
        my.query_drop(format!(
            "INSERT INTO items (id, label) VALUES ({i}, 'paused')"
        ))
        .await
        .expect("insert while paused");
    }
    let first = eventually(
        "lag above 1 s while paused",
        Duration::from_secs(20),
        &mut ferry,
        || {
            let lag = scrape(&addr).value("ferry_lag_seconds", &[]);
            (lag > 1.0).then_some(lag)
        },
    )
    .await;
    let later = eventually(
        "lag to keep growing",
        Duration::from_secs(20),
        &mut ferry,
        || {
            let lag = scrape(&addr).value("ferry_lag_seconds", &[]);
            (lag > first + 1.0).then_some(lag)
        },
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM items").await,
        10,
        "nothing written while paused reaches PostgreSQL"
    );
    let (code, out) = ferry_cmd(&["status", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("PAUSED (for "),
        "the dashboard says paused:\n{out}"
    );
    let (code, body) = http_get(&addr, "/status").expect("GET /status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status["paused"], true, "{body}");
    assert_eq!(status["caught_up"], false, "{body}");
    assert!(status["paused_since"].as_f64().is_some(), "{body}");
    let last_read = status["read_position"]
        .as_str()
        .expect("the reader has read a commit")
        .to_string();

    // A graceful stop while paused: exit 0, checkpoint exactly at the last commit read before
    // the pause (the held transaction is not applied).
    ferry.signal("TERM");
    let exit = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "SIGTERM exits 0:\n{}", ferry.log());
    let (file, offset) = db.checkpoint("main").await;
    assert_eq!(
        format!("{file}:{offset}"),
        last_read,
        "the checkpoint is the last commit read before the pause"
    );

    // Restarted, it is still paused, and lag keeps counting from the first unread transaction.
    ferry.start_again();
    eventually(
        "ready after restart",
        Duration::from_secs(60),
        &mut ferry,
        || {
            http_get(&addr, "/readyz")
                .ok()
                .filter(|(code, _)| *code == 200)
        },
    )
    .await;
    eventually(
        "paused and lag beyond its value before the restart",
        Duration::from_secs(20),
        &mut ferry,
        || {
            let m = scrape(&addr);
            (m.value("ferry_paused", &[]) == 1.0 && m.value("ferry_lag_seconds", &[]) > later)
                .then_some(())
        },
    )
    .await;
    assert!(
        ferry.log().contains("since before this start"),
        "the log says the pause was kept:\n{}",
        ferry.log()
    );
    assert_eq!(db.count("SELECT count(*) FROM items").await, 10);

    // `ferry resume` sends SIGUSR2: it catches up and lag returns to 0 when idle.
    let (code, out) = ferry_cmd(&["resume", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 15);
    eventually(
        "lag 0 and unpaused after resume",
        Duration::from_secs(60),
        &mut ferry,
        || {
            let m = scrape(&addr);
            (m.value("ferry_lag_seconds", &[]) == 0.0 && m.value("ferry_paused", &[]) == 0.0)
                .then_some(())
        },
    )
    .await;
    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_log_level_and_names_keys_that_need_a_restart() {
    let db = TestDb::new("hup").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let base = "[log]\nlevel = \"info\"\n\n[apply]\nbatch_rows = 5000\nchannel_capacity = 4096\n";
    let config = db.config("main", &start, base);
    // Without RUST_LOG, log.level decides (RUST_LOG would override it for the whole run).
    let mut ferry = Ferry::start_with(&config, &[], &[], &["RUST_LOG"]);
    my.query_drop("INSERT INTO items (id) VALUES (1)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert!(
        !ferry.log().contains("DEBUG"),
        "no debug lines at level info:\n{}",
        ferry.log()
    );

    let text = std::fs::read_to_string(&config).expect("read config");
    let debug = text
        .replace("level = \"info\"", "level = \"debug\"")
        .replace("batch_rows = 5000", "batch_rows = 100")
        .replace("channel_capacity = 4096", "channel_capacity = 64");
    std::fs::write(&config, &debug).expect("edit config");
    ferry.signal("HUP");
    eventually(
        "the reload to be logged",
        Duration::from_secs(10),
        &mut ferry,
        || ferry_log_has(&config, "reloaded configuration"),
    )
    .await;
    let log = ferry.log();
    assert!(log.contains("log.level = \"debug\""), "{log}");
    assert!(log.contains("apply.batch_rows = 100"), "{log}");
    assert!(
        log.contains("take effect only after a restart") && log.contains("apply.channel_capacity"),
        "names the key that needs a restart:\n{log}"
    );
    my.query_drop("INSERT INTO items (id) VALUES (2)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    eventually(
        "a debug line after the reload",
        Duration::from_secs(10),
        &mut ferry,
        || {
            let log = std::fs::read_to_string(&ferry_log_path(&config)?).ok()?;
            (log.contains("DEBUG") && log.contains("committed")).then_some(())
        },
    )
    .await;

    // An invalid edit changes nothing and does not stop the daemon.
    std::fs::write(&config, debug.replace("batch_rows = 100", "batch_rows = 0")).expect("edit");
    ferry.signal("HUP");
    eventually(
        "the refused reload",
        Duration::from_secs(10),
        &mut ferry,
        || ferry_log_has(&config, "the config file is not valid; nothing changed"),
    )
    .await;

    // Back to info: debug lines stop.
    std::fs::write(&config, &text).expect("restore config");
    ferry.signal("HUP");
    eventually(
        "the second reload",
        Duration::from_secs(10),
        &mut ferry,
        || ferry_log_has(&config, "log.level = \"info\""),
    )
    .await;
    let before = ferry.log().len();
    my.query_drop("INSERT INTO items (id) VALUES (3)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tail = ferry.log()[before..].to_string();
    assert!(!tail.contains("DEBUG"), "debug lines stopped:\n{tail}");
    assert_eq!(db.count("SELECT count(*) FROM items").await, 3);
    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    db.cleanup_dir();
}

/// The harness names each run's log after the config; find the newest one.
fn ferry_log_path(config: &Path) -> Option<PathBuf> {
    let dir = config.parent()?;
    let stem = config.file_stem()?.to_str()?.to_string();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}.")) && n.ends_with(".log"))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn ferry_log_has(config: &Path, needle: &str) -> Option<()> {
    let log = std::fs::read_to_string(ferry_log_path(config)?).ok()?;
    log.contains(needle).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_abandons_a_blocked_transaction_and_keeps_the_checkpoint() {
    let db = TestDb::new("term2").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items (id, label) VALUES (1, 'one')")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let before = db.checkpoint("main").await;

    // Another session holds a lock on the target table, so ferry's next apply blocks.
    let locker = db.pg().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    my.query_drop("INSERT INTO items (id, label) VALUES (2, 'two')")
        .await
        .expect("insert");
    let watcher = pg("postgres").await;
    let name = db.name.clone();
    eventually(
        "ferry to wait on the lock",
        Duration::from_secs(30),
        &mut ferry,
        || {
            let n: i64 = futures_block(watcher.query_one(
            // The apply's INSERT, not the continuous verifier's read, which the lock also blocks.
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' \
             AND query ILIKE 'INSERT INTO%'",
            &[&name],
        ))
        .ok()?
        .get(0);
            (n > 0).then_some(())
        },
    )
    .await;

    ferry.signal("TERM");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        ferry.try_exit().is_none(),
        "the first SIGTERM waits for the transaction in flight:\n{}",
        ferry.log()
    );
    ferry.signal("TERM");
    let exit = ferry.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(exit.code(), Some(0), "{}", ferry.log());
    assert!(
        ferry.log().contains("second stop request: exiting now"),
        "{}",
        ferry.log()
    );
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    assert_eq!(
        db.checkpoint("main").await,
        before,
        "the abandoned transaction left the checkpoint where it was"
    );
    assert_eq!(db.count("SELECT count(*) FROM items").await, 1);

    // Started again, it applies the abandoned transaction exactly once.
    ferry.start_again();
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 2);
    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    db.cleanup_dir();
}

/// Runs a future to completion from a synchronous closure (the polling helper is synchronous).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Metric families of backfill and verification (asserted in tests/backfill.rs and tests/verify.rs).
fn is_streaming_metric(name: &str) -> bool {
    !["ferry_backfill_", "ferry_verify_", "ferry_drift_"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_exports_every_streaming_series_with_sane_values() {
    let db = TestDb::new("metrics").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let addr = free_listen_addr();
    let config = db.config_metrics(
        "main",
        &start,
        &addr,
        "[types]\nzero_date = \"dead_letter\"\nnul_in_text = \"null\"\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    let values: Vec<String> = (1..=20)
        .map(|i| format!("({i}, 'row {i}', NULL)"))
        .collect();
    my.query_drop(format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await
        .expect("20 inserts in one transaction");
    my.query_drop("UPDATE items SET label = 'updated' WHERE id <= 5")
        .await
        .expect("5 updates");
    my.query_drop("DELETE FROM items WHERE id > 15")
        .await
        .expect("5 deletes");
    my.query_drop("SET SESSION sql_mode = ''")
        .await
        .expect("mode");
    my.query_drop("INSERT INTO items VALUES (100, 'zero date', '0000-00-00')")
        .await
        .expect("a row the zero_date policy dead-letters");
    my.query_drop("INSERT INTO items VALUES (101, CONCAT('a', CHAR(0), 'b'), NULL)")
        .await
        .expect("a value the nul_in_text policy replaces with NULL");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let m = eventually(
        "lag 0 s and 0 bytes when caught up and idle, and the source watcher's gauges",
        Duration::from_secs(60),
        &mut ferry,
        || {
            let m = scrape(&addr);
            (m.get("ferry_lag_seconds", &[]) == Some(0.0)
                && m.get("ferry_lag_bytes", &[]) == Some(0.0)
                && m.has_series("ferry_table_rows")
                && m.has_series("ferry_binlog_retention_headroom_seconds"))
            .then_some(m)
        },
    )
    .await;

    // Every streaming metric is exported and described.
    for (name, _) in ferry::metrics::ALL {
        if !is_streaming_metric(name) {
            continue;
        }
        let series = if *name == ferry::metrics::APPLY_BATCH_DURATION {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert!(m.has_series(&series), "{name} is not exported:\n{}", m.text);
        assert!(
            m.text.contains(&format!("# HELP {name} ")),
            "{name} has no help text"
        );
    }

    let t = [("table", "items")];
    assert_eq!(
        m.value(
            "ferry_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(m.value("ferry_up", &[]), 1.0);
    assert_eq!(m.value("ferry_phase", &[("phase", "streaming")]), 1.0);
    assert_eq!(
        m.sum("ferry_phase", &[]),
        1.0,
        "exactly one phase is current"
    );
    assert_eq!(m.value("ferry_paused", &[]), 0.0);
    assert_eq!(
        m.value(
            "ferry_rows_applied_total",
            &[("table", "items"), ("op", "insert")]
        ),
        21.0,
        "20 inserts + 1 row with a substituted value"
    );
    assert_eq!(
        m.value(
            "ferry_rows_applied_total",
            &[("table", "items"), ("op", "upsert")]
        ),
        5.0,
        "5 updates"
    );
    assert_eq!(
        m.value(
            "ferry_rows_applied_total",
            &[("table", "items"), ("op", "delete")]
        ),
        5.0
    );
    assert!(m.value("ferry_transactions_applied_total", &[]) >= 5.0);
    assert!(m.value("ferry_apply_batch_duration_seconds_count", &[]) >= 1.0);
    assert!(m.value("ferry_apply_batch_duration_seconds_sum", &[]) > 0.0);
    assert!(m.value("ferry_binlog_events_total", &[("type", "write_rows")]) >= 3.0);
    assert!(m.value("ferry_binlog_events_total", &[("type", "update_rows")]) >= 1.0);
    assert!(m.value("ferry_binlog_events_total", &[("type", "delete_rows")]) >= 1.0);
    assert!(m.value("ferry_binlog_events_total", &[("type", "xid")]) >= 5.0);
    assert_eq!(m.sum("ferry_errors_total", &[]), 0.0, "no errors");
    assert!(m
        .get(
            "ferry_errors_total",
            &[("stage", "sink"), ("kind", "transient")]
        )
        .is_some());
    assert_eq!(m.value("ferry_pipeline_restarts_total", &[]), 0.0);
    assert_eq!(m.sum("ferry_dead_letter_rows_total", &t), 1.0);
    assert_eq!(m.sum("ferry_values_substituted_total", &[]), 1.0);
    assert!(m.value("ferry_table_rows", &t) >= 0.0);
    assert!(m.value("ferry_binlog_retention_headroom_seconds", &[]) > 0.0);
    let ts = m.value("ferry_checkpoint_source_timestamp_seconds", &[]);
    let now = ferry::progress::unix_now();
    assert!(
        ts > now - 600.0 && ts <= now + 1.0,
        "checkpoint time {ts} vs now {now}"
    );
    // The checkpoint gauges show the checkpoint committed in PostgreSQL (other tests write to the
    // same source, so it may move on: compare a scrape with a read of the row until they agree).
    let (file, offset) = eventually(
        "checkpoint gauges equal to the committed checkpoint",
        Duration::from_secs(30),
        &mut ferry,
        || {
            let (file, offset) = futures_block(db.checkpoint("main"));
            let m = scrape(&addr);
            let seq: f64 = file.rsplit('.').next()?.parse().ok()?;
            (m.value("ferry_checkpoint_binlog_file_sequence", &[]) == seq
                && m.value("ferry_checkpoint_binlog_offset_bytes", &[]) == offset as f64)
                .then_some((file, offset))
        },
    )
    .await;

    // The other endpoints and `ferry status`.
    assert_eq!(http_get(&addr, "/healthz").expect("healthz").0, 200);
    assert_eq!(
        http_get(&addr, "/readyz").expect("readyz"),
        (200, "ready\n".into())
    );
    assert_eq!(http_get(&addr, "/nope").expect("404").0, 404);
    let (_, body) = http_get(&addr, "/status").expect("status");
    let status: ferry::status::Snapshot = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(status.phase, "streaming");
    assert!(status.ready && !status.paused, "{body}");
    assert_eq!(status.rows_applied, 31, "{body}");
    let shown = status.checkpoint.expect("status shows the checkpoint");
    let (shown_file, shown_offset) = shown.rsplit_once(':').expect("FILE:OFFSET");
    assert!(
        shown_file == file && shown_offset.parse::<u64>().expect("offset") >= offset,
        "status checkpoint {shown} vs committed {file}:{offset}"
    );
    let (code, out) = ferry_cmd(&["status", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("STREAMING"), "{out}");
    assert!(out.contains(&format!("checkpoint  {file}:")), "{out}");
    let (code, json) = ferry_cmd(&["status", "--json", "--config", config_arg(&config)]);
    assert_eq!(code, 0);
    serde_json::from_str::<serde_json::Value>(&json).expect("--json prints JSON");

    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    db.cleanup_dir();
}

/// Receives one datagram (None on timeout).
async fn recv(sock: &tokio::net::UnixDatagram, timeout: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(timeout, sock.recv(&mut buf))
        .await
        .ok()?
        .expect("recv");
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Receives until a message contains `want`, returning everything received before it.
async fn recv_until(
    sock: &tokio::net::UnixDatagram,
    want: &str,
    timeout: Duration,
    ferry: &Ferry,
) -> (String, Vec<String>) {
    let started = Instant::now();
    let mut before = Vec::new();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match recv(sock, left).await {
            Some(msg) if msg.contains(want) => return (msg, before),
            Some(msg) => before.push(msg),
            None => panic!(
                "no {want:?} from ferry within {timeout:?} (got {before:?}):\n{}",
                ferry.log()
            ),
        }
    }
}

fn notify_socket() -> (PathBuf, tokio::net::UnixDatagram) {
    // Short path in the temp dir: socket paths are limited to 108 bytes.
    let path = std::env::temp_dir().join(format!(
        "ferry-n-{}-{}.sock",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_file(&path);
    let sock = tokio::net::UnixDatagram::bind(&path).expect("bind notify socket");
    (path, sock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_after_preflight_then_watchdog_status_reload_stop() {
    let db = TestDb::new("notify").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let (path, sock) = notify_socket();
    let socket = path.to_str().expect("utf8").to_string();
    let mut ferry = Ferry::start_with(
        &config,
        &[],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
        &[],
    );
    let (ready, before) = recv_until(&sock, "READY=1", Duration::from_secs(60), &ferry).await;
    // At READY=1, preflight has passed and the target table exists.
    let log = ferry.log();
    assert!(
        log.contains("target writable") && log.contains("preflight passed; streaming"),
        "READY=1 came before preflight finished:\n{log}"
    );
    let tables = db
        .count(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = 'items'",
            db.name
        ))
        .await;
    assert_eq!(tables, 1, "the target table exists when READY=1 is sent");
    assert!(ready.contains("STATUS=streaming"), "{ready}");
    assert!(
        before.iter().all(|m| m == "WATCHDOG=1"),
        "only watchdog pings before READY: {before:?}"
    );

    // The watchdog keeps coming (WATCHDOG_USEC=1 s: a ping every 0.5 s) and so do STATUS lines.
    let mut pings = 0;
    let mut status = None;
    let started = Instant::now();
    while pings < 5 || status.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{pings} watchdog pings, status {status:?}:\n{}",
            ferry.log()
        );
        match recv(&sock, Duration::from_secs(10)).await {
            Some(m) if m == "WATCHDOG=1" => pings += 1,
            Some(m) if m.starts_with("STATUS=") => status = Some(m),
            Some(_) | None => {}
        }
    }
    let status = status.expect("status line");
    assert!(
        status.contains("streaming; lag ") && status.contains("checkpoint "),
        "{status}"
    );

    ferry.signal("HUP");
    recv_until(&sock, "RELOADING=1", Duration::from_secs(10), &ferry).await;
    recv_until(&sock, "READY=1", Duration::from_secs(10), &ferry).await;
    ferry.signal("TERM");
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10), &ferry).await;
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    let _ = std::fs::remove_file(&path);

    // A failing preflight never reports READY=1, and exits with the definite-error status.
    my.query_drop(
        "CREATE TABLE oddcharset (id INT PRIMARY KEY, v VARCHAR(10) CHARACTER SET keybcs2)",
    )
    .await
    .expect("table with a column ferry refuses");
    let (path, sock) = notify_socket();
    let socket = path.to_str().expect("utf8").to_string();
    let mut refused = Ferry::start_with(&config, &[], &[("NOTIFY_SOCKET", &socket)], &[]);
    let exit = refused.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        exit.code(),
        Some(i32::from(ferry::app::EXIT_DEFINITE)),
        "{}",
        refused.log()
    );
    while let Some(msg) = recv(&sock, Duration::from_millis(200)).await {
        assert!(!msg.contains("READY=1"), "READY=1 despite failed preflight");
    }
    let _ = std::fs::remove_file(&path);
    db.cleanup_dir();
}

/// `systemd-analyze`, or `None` (with a note) when absent; under `CI=true` absence fails.
fn systemd_analyze() -> Option<PathBuf> {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("systemd-analyze");
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("systemd-analyze is missing (required under CI=true; Debian package `systemd`)");
    }
    eprintln!("SKIPPED: systemd-analyze not found; install the Debian package `systemd`");
    None
}

fn verify_unit(analyze: &Path, text: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "ferry-unit-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let unit = dir.join("ferry.service");
    std::fs::write(&unit, text).expect("write unit");
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), report)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(project_root().join("systemd/ferry.service"))
        .expect("systemd/ferry.service");
    for line in [
        "Type=notify".to_string(),
        "ExecStartPre=/usr/local/bin/ferry validate --config /etc/ferry/config.toml".into(),
        "ExecStart=/usr/local/bin/ferry run --config /etc/ferry/config.toml".into(),
        "ExecReload=/bin/kill -HUP $MAINPID".into(),
        "StateDirectory=ferry".into(),
        "User=ferry".into(),
        "Restart=on-failure".into(),
        format!("RestartPreventExitStatus={}", ferry::app::EXIT_DEFINITE),
        "ProtectSystem=strict".into(),
        "ProtectHome=yes".into(),
        "NoNewPrivileges=yes".into(),
        "PrivateTmp=yes".into(),
        "PrivateDevices=yes".into(),
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6".into(),
        "SystemCallFilter=@system-service".into(),
        "CapabilityBoundingSet=".into(),
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "the unit lacks {line:?}"
        );
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    // Point the unit at the binary under test (verify checks that commands are executable).
    let local = unit.replace("/usr/local/bin/ferry", env!("CARGO_BIN_EXE_ferry"));
    let (ok, report) = verify_unit(&analyze, &local);
    assert!(ok, "systemd-analyze verify failed:\n{report}");
    assert!(
        !report.contains("ferry.service"),
        "systemd-analyze verify has remarks on the unit:\n{report}"
    );
    // The check has teeth: a misspelt key is reported.
    let (_, report) = verify_unit(&analyze, &local.replace("WatchdogSec=", "WatchdogSecs="));
    assert!(
        report.contains("Unknown key") && report.contains("WatchdogSecs"),
        "systemd-analyze verify did not catch a bad key:\n{report}"
    );
}

/// `ferry_*` names mentioned in `text`, histogram suffixes stripped.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ferry_") {
        let s = i + at;
        let boundary = s == 0 || !(bytes[s - 1].is_ascii_alphanumeric() || bytes[s - 1] == b'_');
        let mut e = s;
        while e < bytes.len() && (bytes[e].is_ascii_lowercase() || bytes[e] == b'_') {
            e += 1;
        }
        if boundary {
            let mut name = text[s..e].to_string();
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    if base == ferry::metrics::APPLY_BATCH_DURATION {
                        name = base.to_string();
                    }
                }
            }
            out.push(name);
        }
        i = e.max(s + 1);
    }
    out
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn contrib_dashboard_and_alerts_use_real_metric_names() {
    let known: Vec<&str> = ferry::metrics::ALL.iter().map(|(n, _)| *n).collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project_root().join("contrib/grafana/ferry-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 10, "the dashboard has queries");
    let used: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for name in &used {
        assert!(
            known.contains(&name.as_str()),
            "dashboard uses unknown metric {name}"
        );
    }
    for name in &known {
        assert!(
            used.iter().any(|u| u == name),
            "the dashboard shows no panel for {name}"
        );
    }

    let alerts =
        std::fs::read_to_string(project_root().join("contrib/prometheus/ferry-alerts.yml"))
            .expect("alert rules");
    let rule_tests =
        std::fs::read_to_string(project_root().join("contrib/prometheus/ferry-alerts.test.yml"))
            .expect("alert rule tests");
    let used = metric_names(&alerts);
    for name in used.iter().chain(&metric_names(&rule_tests)) {
        assert!(
            known.contains(&name.as_str()),
            "alerts use unknown metric {name}"
        );
    }
    for (alert, metric) in [
        ("FerryLagHigh", "ferry_lag_seconds"),
        ("FerryPausedTooLong", "ferry_paused"),
        ("FerryDefiniteErrors", "ferry_errors_total"),
        ("FerryTransientErrors", "ferry_errors_total"),
        (
            "FerryBinlogRetentionLow",
            "ferry_binlog_retention_headroom_seconds",
        ),
        ("FerryDrift", "ferry_drift_rows"),
    ] {
        assert!(
            alerts.contains(&format!("alert: {alert}")),
            "no {alert} alert"
        );
        assert!(
            used.iter().any(|u| u == metric),
            "alerts never use {metric}"
        );
    }
    let readme = std::fs::read_to_string(project_root().join("README.md")).expect("README");
    for name in &known {
        assert!(
            readme.contains(&format!("`{name}")),
            "README's metrics table lacks {name}"
        );
    }
    assert!(
        alerts.contains("ferry:drift_ratio > 0.001"),
        "drift alert at 0.1%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_refuses_a_stale_pid_file_naming_another_live_process() {
    let db = TestDb::new("stalepid").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items (id, label) VALUES (1, 'a')")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    // While the daemon runs, `ferry pause` reaches it.
    let (code, out) = ferry_cmd(&["pause", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("pid {}", ferry.pid())), "{out}");
    let (code, out) = ferry_cmd(&["resume", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");

    // SIGKILL leaves the pid file behind; the pid is then reused by an unrelated process.
    ferry.kill9();
    let pid_file = db.dir.join("state-main").join("ferry.pid");
    assert!(pid_file.exists(), "a killed daemon leaves its pid file");
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(&pid_file, bystander.id().to_string()).expect("overwrite pid file");
    let (code, out) = ferry_cmd(&["pause", "--config", config_arg(&config)]);
    assert_ne!(code, 0, "a stale pid file is refused:\n{out}");
    assert!(
        out.contains("ferry is not running") && out.contains("Nothing was signalled"),
        "{out}"
    );
    let (code, _) = ferry_cmd(&["resume", "--config", config_arg(&config)]);
    assert_ne!(code, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        bystander.try_wait().expect("poll sleep").is_none(),
        "the unrelated process was not signalled (SIGUSR1 would have killed it)"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    db.cleanup_dir();
}

/// Watchdog pings received within `within`; returns the time of the last one, if any.
async fn last_ping_within(sock: &tokio::net::UnixDatagram, within: Duration) -> Option<Instant> {
    let until = Instant::now() + within;
    let mut last = None;
    while let Some(msg) = recv(sock, until.saturating_duration_since(Instant::now())).await {
        if msg == "WATCHDOG=1" {
            last = Some(Instant::now());
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_pipeline_stops_the_watchdog_pings_and_a_restart_loses_nothing() {
    let db = TestDb::new("wedge").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "[verify]\ncontinuous = false\n");
    let (path, sock) = notify_socket();
    let socket = path.to_str().expect("utf8").to_string();
    // WATCHDOG_USEC = 2 s: a ping every second while live; liveness must show within 2 s.
    let mut ferry = Ferry::start_with(
        &config,
        &[],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")],
        &[],
    );
    recv_until(&sock, "READY=1", Duration::from_secs(60), &ferry).await;
    my.query_drop("INSERT INTO items (id, label) VALUES (1, 'before')")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    // Idle and caught up, the source's heartbeats keep it live.
    assert!(
        last_ping_within(&sock, Duration::from_secs(4))
            .await
            .is_some(),
        "an idle, caught-up ferry pings:\n{}",
        ferry.log()
    );

    // Wedge the apply: a session holds an exclusive lock on the target table, so the next
    // statement hangs (as on a stuck target), while the source keeps sending heartbeats.
    let locker = db.pg().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    my.query_drop("INSERT INTO items (id, label) VALUES (2, 'wedged')")
        .await
        .expect("insert");
    // Pings stop within the window and stay stopped: a quiet stretch of 4 s (two watchdog
    // periods) with the process still running.
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pings kept coming while the pipeline was wedged:\n{}",
            ferry.log()
        );
        match last_ping_within(&sock, Duration::from_millis(500)).await {
            Some(t) => quiet_since = t,
            None if quiet_since.elapsed() >= Duration::from_secs(4) => break,
            None => {}
        }
    }
    assert!(ferry.try_exit().is_none(), "ferry is still running");
    assert!(
        ferry.log().contains("shows no liveness"),
        "the reason is logged:\n{}",
        ferry.log()
    );
    // systemd kills a unit whose watchdog expired; the restarted ferry applies the change once.
    ferry.kill9();
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let _ = std::fs::remove_file(&path);
    ferry.start_again();
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let rows = pg_rows(&db.pg().await, "SELECT id::text, label FROM items").await;
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("before".into())],
            vec![Some("2".into()), Some("wedged".into())]
        ]
    );
    db.cleanup_dir();
}

/// A GET with optional `Authorization` header value: (status code, whole response).
fn get_with_auth(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    // Code 0: not listening (yet).
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let header = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{header}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_demand_the_bearer_token_and_ferry_status_sends_it() {
    let db = TestDb::new("token").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let addr = free_listen_addr();
    std::fs::write(db.dir.join("token"), "t0ken-for-the-test\n").expect("token file");
    let config = db.config_metrics("main", &start, &addr, "token_file = \"token\"\n");
    let mut ferry = Ferry::start(&config, &[]);
    let bearer = Some("Bearer t0ken-for-the-test");
    eventually(
        "/metrics with the token",
        Duration::from_secs(30),
        &mut ferry,
        || (get_with_auth(&addr, "/metrics", bearer).0 == 200).then_some(()),
    )
    .await;
    // The dashboard page is guarded like the data it renders.
    for path in ["/", "/metrics", "/status"] {
        let (code, raw) = get_with_auth(&addr, path, None);
        assert_eq!(code, 401, "{path} without a token: {raw}");
        assert!(raw.contains("WWW-Authenticate: Bearer"), "{raw}");
        assert!(!raw.contains("t0ken"), "the token leaked: {raw}");
        let (code, _) = get_with_auth(&addr, path, Some("Bearer t0ken-for-the-tesT"));
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, raw) = get_with_auth(&addr, path, bearer);
        assert_eq!(code, 200, "{path} with the token: {raw}");
        assert!(!raw.contains("t0ken"), "{path} shows the token: {raw}");
    }
    // Health probes carry no data and stay open.
    assert_eq!(get_with_auth(&addr, "/healthz", None).0, 200);
    // `ferry status` reads the token file and sends it; pause/resume keep working (signals).
    let (code, out) = ferry_cmd(&["status", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = ferry_cmd(&["pause", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = ferry_cmd(&["resume", "--config", config_arg(&config)]);
    assert_eq!(code, 0, "{out}");
    assert!(!ferry.log().contains("t0ken"), "the token is in the log");
    // Without the file `ferry status` says what it needs.
    std::fs::remove_file(db.dir.join("token")).expect("remove token");
    let (code, out) = ferry_cmd(&["status", "--config", config_arg(&config)]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("metrics.token_file"), "{out}");
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}
