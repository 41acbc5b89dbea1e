//! `ferry cutover` against real servers, with a simulated application that writes wherever a
//! file says (the switch command rewrites the file) and remembers every write it was told
//! committed. Each test runs its own MariaDB: the freeze sets `read_only` server-wide.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::migration::*;
use common::own_mariadb::OwnMariaDb;
use common::*;
use mysql_async::prelude::Queryable;

/// Ids the application gives rows it inserts on PostgreSQL (MySQL's stay below).
const PG_IDS: i64 = 1_000_000;

/// What the application saw.
#[derive(Default)]
struct AppLog {
    mysql_acked: u64,
    mysql_refused: u64,
    pg_acked: u64,
    pg_failed: Vec<String>,
    /// Ids PostgreSQL gave the application's `events` rows (from the synced sequence).
    pg_event_ids: Vec<i64>,
}

struct App {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<AppLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Writes until stopped: on MySQL (as an ordinary account, which read_only stops) inserts
    /// and updates; on PostgreSQL inserts of new rows.
    async fn start(db: &TestDb, route: PathBuf, first_id: i64) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(AppLog::default()));
        let mut opts =
            mysql_async::OptsBuilder::from_opts(mysql_opts_at(db.my_port, Some(&db.name)));
        opts = opts.user(Some("app")).pass(Some("app"));
        let mut my = mysql_async::Conn::new(opts)
            .await
            .expect("app connects to MySQL");
        let pg = db.pg().await;
        let (s, l) = (stop.clone(), log.clone());
        let task = tokio::spawn(async move {
            let mut next = first_id;
            let mut next_pg = PG_IDS;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let target = std::fs::read_to_string(&route).unwrap_or_default();
                if target.trim() == "postgres" {
                    next_pg += 1;
                    match pg
                        .execute(
                            "INSERT INTO items (id, n, note) VALUES ($1, 0, 'on postgres')",
                            &[&(next_pg as i32)],
                        )
                        .await
                    {
                        Ok(_) => l.lock().expect("log").pg_acked += 1,
                        Err(e) => l.lock().expect("log").pg_failed.push(e.to_string()),
                    }
                    // As the application would: the database picks the id.
                    match pg
                        .query_one(
                            "INSERT INTO events (note) VALUES ('on postgres') RETURNING id",
                            &[],
                        )
                        .await
                    {
                        Ok(r) => l.lock().expect("log").pg_event_ids.push(r.get(0)),
                        Err(e) => l.lock().expect("log").pg_failed.push(e.to_string()),
                    }
                } else {
                    let sql = if i % 3 == 0 {
                        format!(
                            "UPDATE items SET n = n + 1, note = 'updated' WHERE id = {}",
                            1 + (i as i64 * 7) % next
                        )
                    } else {
                        next += 1;
                        format!("INSERT INTO items (id, n, note) VALUES ({next}, 0, 'on mysql')")
                    };
                    match my.query_drop(sql).await {
                        Ok(()) => l.lock().expect("log").mysql_acked += 1,
                        Err(_) => l.lock().expect("log").mysql_refused += 1,
                    }
                    if i % 4 == 0 {
                        let _ = my
                            .query_drop("INSERT INTO events (note) VALUES ('on mysql')")
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        App { stop, log, task }
    }

    async fn stop(self) -> AppLog {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("app task");
        Arc::try_unwrap(self.log)
            .ok()
            .expect("one owner")
            .into_inner()
            .expect("log")
    }
}

struct Setup {
    _server: OwnMariaDb,
    db: TestDb,
    config: PathBuf,
    ferry: Ferry,
    route: PathBuf,
}

/// A source with `items` (200 rows), an application account, ferry backfilled and streaming,
/// and a verification pass that matched.
async fn setup(name: &str) -> Setup {
    let server = OwnMariaDb::start(name);
    let db = TestDb::new_on(name, server.port).await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40))")
        .await
        .expect("table");
    my.query_drop("INSERT INTO items SELECT seq, 0, 'seed' FROM seq_1_to_200")
        .await
        .expect("seed");
    // An AUTO_INCREMENT table: ids 1..=50 inserted, 51..=60 burned by a rollback.
    my.query_drop(
        "CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40)); \
         INSERT INTO events (note) SELECT 'seed' FROM seq_1_to_50; \
         BEGIN; INSERT INTO events (note) SELECT 'rolled back' FROM seq_1_to_10; ROLLBACK",
    )
    .await
    .expect("events");
    // A child table: its foreign key exists on PostgreSQL once the cutover switched.
    my.query_drop(
        "CREATE TABLE tags (id INT PRIMARY KEY, event_id BIGINT NOT NULL, \
           CONSTRAINT tags_event FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE); \
         INSERT INTO tags SELECT seq, seq FROM seq_1_to_20",
    )
    .await
    .expect("tags");
    my.query_drop(format!(
        "CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT SELECT, INSERT, UPDATE, DELETE ON `{}`.* TO 'app'@'%'",
        db.name
    ))
    .await
    .expect("application account");
    let config = db.config_backfill(
        "main",
        "",
        "[verify]\npass_interval_seconds = 0.5\nrows_per_second = 100000\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_for_matched_pass(&db, &mut ferry).await;
    let route = db.dir.join("route");
    std::fs::write(&route, "mysql\n").expect("route file");
    Setup {
        _server: server,
        db,
        config,
        ferry,
        route,
    }
}

async fn wait_for_daemon_report(db: &TestDb, ferry: &mut Ferry) {
    let started = Instant::now();
    while db
        .count("SELECT count(*) FROM ferry.migration WHERE stream = 'main' AND daemon_seen_at IS NOT NULL")
        .await
        == 0
    {
        assert!(ferry.try_exit().is_none(), "ferry exited:\n{}", ferry.log());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon never reported:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cutover(config: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    cutover_cmd(config, args).await
}

/// MySQL's rows (the truth of every acknowledged MySQL write) against PostgreSQL's rows below
/// the application's PostgreSQL ids.
async fn assert_mysql_writes_all_in_postgres(db: &TestDb) {
    let mut my = db.my().await;
    let on_source = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), CAST(n AS CHAR), note FROM items",
    )
    .await;
    let on_target = pg_rows(
        &db.pg().await,
        &format!("SELECT id::text, n::text, note FROM items WHERE id < {PG_IDS}"),
    )
    .await;
    assert!(on_source.len() > 200, "the application wrote on MySQL");
    assert_eq!(on_source.len(), on_target.len(), "row counts differ");
    assert!(
        on_source == on_target,
        "first difference: {:?}",
        common::workload::first_diff(&on_source, &on_target)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_switches_the_application_to_postgresql_and_loses_no_write() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
        route,
    } = setup("cutover").await;
    // The plan first: every check passes and nothing changes.
    let (code, plan, out) = cutover(&config, &["--dry-run"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(plan["outcome"], "planned", "{out}");
    assert!(plan["expected_window_seconds"].as_f64().is_some(), "{out}");
    assert!(!read_only(&db).await, "a dry run changes nothing");

    let app = App::start(&db, route.clone(), 200).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let switch = format!("echo postgres > {}", route.display());
    // Without the reverse stream: this test reads MySQL after the application wrote on
    // PostgreSQL, as the forward cutover left it (tests/reverse.rs covers the way back).
    let (code, report, out) = cutover(
        &config,
        &["--yes", "--without-rollback", "--switch-command", &switch],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let window = report["write_unavailable_seconds"]
        .as_f64()
        .expect("window");
    assert!(window > 0.0, "{out}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        steps,
        [
            "freeze",
            "writers",
            "final position",
            "drain",
            "verify",
            "sequences",
            "switch",
            "foreign keys"
        ],
        "{out}"
    );
    // The application keeps writing — now to PostgreSQL.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = app.stop().await;
    assert!(
        log.mysql_acked > 50,
        "the application wrote on MySQL before the freeze"
    );
    assert!(
        log.pg_acked > 10,
        "the application wrote on PostgreSQL after the switch"
    );
    assert!(
        log.pg_failed.is_empty(),
        "writes on PostgreSQL failed: {:?}",
        log.pg_failed
    );

    // New rows on PostgreSQL got ids MySQL never handed out, not even to the rolled-back ones.
    let mut my = db.my().await;
    let (source_max, source_next): (i64, i64) = my
        .query_first(format!(
            "SELECT (SELECT MAX(id) FROM events), \
                    (SELECT AUTO_INCREMENT FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'events')",
            db.name
        ))
        .await
        .expect("source counter")
        .expect("row");
    assert!(source_next > 60, "the rollback burned ids 51..=60");
    assert!(
        !log.pg_event_ids.is_empty(),
        "events inserted on PostgreSQL"
    );
    let first_pg = *log.pg_event_ids.iter().min().expect("ids");
    assert!(
        first_pg >= source_next && first_pg > source_max,
        "PostgreSQL's first id {first_pg} is past MySQL's counter {source_next} and max {source_max}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM events WHERE id >= {first_pg}"
        ))
        .await as usize,
        log.pg_event_ids.len()
    );

    // The foreign key was created and validated after the switch, and it holds.
    let fk = db
        .pg()
        .await
        .query_one(
            "SELECT convalidated, confdeltype::text FROM pg_constraint WHERE contype = 'f' \
             AND conrelid = 'tags'::regclass",
            &[],
        )
        .await
        .expect("the foreign key exists on PostgreSQL");
    assert!(fk.get::<_, bool>(0), "validated: {out}");
    assert_eq!(fk.get::<_, String>(1), "c", "ON DELETE CASCADE carried");
    let orphan = db
        .pg()
        .await
        .execute(
            "INSERT INTO tags (id, event_id) VALUES (999, 987654321)",
            &[],
        )
        .await;
    assert!(
        orphan.is_err(),
        "PostgreSQL rejects a row without its parent"
    );

    assert!(read_only(&db).await, "MySQL stays read-only once switched");
    assert_eq!(phase(&db).await, "switched");
    assert_mysql_writes_all_in_postgres(&db).await;
    let pg_rows_after = db
        .count(&format!("SELECT count(*) FROM items WHERE id > {PG_IDS}"))
        .await;
    assert_eq!(
        pg_rows_after as u64, log.pg_acked,
        "every PostgreSQL write is there"
    );
    // The daemon shows it, and the forward stream holds (a second run reports the switch).
    let (code, again, out) = cutover(&config, &["--yes"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(again["outcome"], "switched");
    assert!(
        ferry.try_exit().is_none(),
        "the daemon keeps running:\n{}",
        ferry.log()
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_refuses_or_aborts_and_leaves_mysql_writable() {
    let server = OwnMariaDb::start("cutrefuse");
    let db = TestDb::new_on("cutrefuse", server.port).await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40))")
        .await
        .expect("table");
    my.query_drop("INSERT INTO items SELECT seq, 0, 'seed' FROM seq_1_to_200")
        .await
        .expect("seed");
    // Continuous verification off: no pass has matched yet.
    let config = db.config_backfill("main", "", "[verify]\ncontinuous = false\n");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_for_daemon_report(&db, &mut ferry).await;
    let failed = |report: &serde_json::Value| -> Vec<String> {
        report["checks"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| c["ok"] == false)
                    .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (code, report, out) = cutover(&config, &["--yes"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["outcome"], "refused", "{out}");
    assert_eq!(failed(&report), ["recent verification"], "{out}");
    assert!(!read_only(&db).await);

    // A full `ferry verify` that matches is a verification the cutover accepts.
    let (code, out) = ferry_cmd(&["verify", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");

    // High lag: paused while the source writes.
    let (code, out) = ferry_cmd(&["pause", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    my.query_drop("UPDATE items SET n = 1 WHERE id = 1")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, report, out) = cutover(&config, &["--yes", "--max-lag", "1s"]).await;
    assert_eq!(code, 1, "{out}");
    let f = failed(&report);
    assert!(
        f.contains(&"lag".to_string()) && f.contains(&"ferry streaming".to_string()),
        "{out}"
    );
    let (code, out) = ferry_cmd(&["resume", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;

    // A failing switch command aborts: MySQL writable again, replication goes on.
    let (code, report, out) = cutover(&config, &["--yes", "--switch-command", "exit 3"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["outcome"], "aborted", "{out}");
    assert!(
        report["message"]
            .as_str()
            .unwrap_or_default()
            .contains("switch command"),
        "{out}"
    );
    assert!(!read_only(&db).await, "an abort makes MySQL writable again");
    assert_eq!(phase(&db).await, "replicating");
    my.query_drop("INSERT INTO items VALUES (500, 5, 'after abort')")
        .await
        .expect("MySQL takes writes again");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE id = 500").await,
        1
    );

    // A writer that will not finish: without --kill-writers-after the cutover aborts naming it.
    let mut app = mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(mysql_opts_at(
        db.my_port,
        Some(&db.name),
    )))
    .await
    .expect("writer");
    my.query_drop(format!(
        "CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT SELECT, INSERT, UPDATE, DELETE ON `{}`.* TO 'app'@'%'",
        db.name
    ))
    .await
    .expect("application account");
    drop(app);
    app = mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(mysql_opts_at(db.my_port, Some(&db.name)))
            .user(Some("app"))
            .pass(Some("app")),
    )
    .await
    .expect("writer");
    app.query_drop("BEGIN").await.expect("begin");
    app.query_drop("INSERT INTO items VALUES (600, 6, 'never committed')")
        .await
        .expect("open write");
    let (code, report, out) = cutover(&config, &["--yes", "--timeout", "2s"]).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["outcome"], "aborted", "{out}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("write transactions still open") && message.contains("app@"),
        "{out}"
    );
    assert!(!read_only(&db).await, "MySQL is writable after the abort");
    // With --kill-writers-after the writer is ended and the cutover goes through.
    let (code, report, out) = cutover(&config, &["--yes", "--kill-writers-after", "1s"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["outcome"], "switched", "{out}");
    assert!(
        app.query_drop("COMMIT").await.is_err(),
        "the writer's session was ended"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE id = 600").await,
        0
    );
    let mut check = db.my().await;
    let n: Option<i64> = check
        .query_first("SELECT count(*) FROM items WHERE id = 600")
        .await
        .expect("count");
    assert_eq!(n, Some(0), "the unacknowledged write is nowhere");
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    drop(server);
    db.cleanup_dir();
}
