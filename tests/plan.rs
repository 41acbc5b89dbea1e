//! `ferry plan` against real servers: every readiness problem reported with its table and
//! count, exit 1 on a blocker and 0 on the demo schema, nothing written to the source, nothing
//! left on the target even when the command is killed in its sample copy.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

/// The source's binlog end, as a starting point for [`binlog_events_about`].
async fn source_end(db: &TestDb) -> (String, u64) {
    db.master_position().await
}

/// Binlog events since `from` that mention this test's database (other tests write to the
/// same server meanwhile, so the position alone cannot tell).
async fn binlog_events_about(db: &TestDb, from: &(String, u64)) -> Vec<String> {
    let mut my = db.my().await;
    let files: Vec<mysql_async::Row> = my.query("SHOW BINARY LOGS").await.expect("binlogs");
    let mut out = Vec::new();
    for f in files {
        let name: String = f.get(0).expect("name");
        if name < from.0 {
            continue;
        }
        let sql = if name == from.0 {
            format!("SHOW BINLOG EVENTS IN '{name}' FROM {}", from.1)
        } else {
            format!("SHOW BINLOG EVENTS IN '{name}'")
        };
        let events: Vec<mysql_async::Row> = my.query(sql).await.expect("events");
        for e in events {
            let info: String = e.get::<Option<String>, _>(5).flatten().unwrap_or_default();
            if info.contains(&db.name) {
                out.push(info);
            }
        }
    }
    out
}

/// Schemas and tables of the target database outside the system catalogs.
async fn target_objects(db: &TestDb) -> Vec<String> {
    let pg = db.pg().await;
    pg.query(
        "SELECT n.nspname || '.' || coalesce(c.relname, '') FROM pg_namespace n \
         LEFT JOIN pg_class c ON c.relnamespace = n.oid \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
         AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' ORDER BY 1",
        &[],
    )
    .await
    .expect("target objects")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn run_plan(config: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let path = config.to_str().expect("utf-8");
    let mut args = vec!["plan", "--config", path, "--sample-seconds", "1"];
    args.extend_from_slice(extra);
    ferry_cmd(&args)
}

#[tokio::test]
async fn every_readiness_problem_is_reported_with_its_table_and_count_and_blocks() {
    let db = TestDb::new("plan_problems").await;
    let mut my = db.my().await;
    for sql in [
        "CREATE TABLE good (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL)",
        "INSERT INTO good SELECT seq, CONCAT('n', seq) FROM seq_1_to_500",
        "CREATE TABLE nokey (a INT, b INT)",
        "INSERT INTO nokey VALUES (1, 2), (3, 4)",
        "CREATE TABLE legacy (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
        "INSERT INTO legacy VALUES (1, 1)",
        "SET SESSION sql_mode = ''",
        "CREATE TABLE happenings (id INT PRIMARY KEY, day DATE NOT NULL, at DATETIME NULL)",
        "INSERT INTO happenings VALUES (1, '0000-00-00', NULL), (2, '2020-00-15', NULL), (3, '2021-01-01', '2021-01-01 10:00:00'), (4, '2021-01-02', '0000-00-00 00:00:00')",
        "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(100) COLLATE utf8mb4_general_ci NOT NULL, UNIQUE KEY email (email))",
        "INSERT INTO people VALUES (1, 'a@example.com'), (2, 'B@example.com')",
        "CREATE TABLE texts (id INT PRIMARY KEY, code VARCHAR(10) CHARACTER SET ascii, legacy VARCHAR(20) CHARACTER SET latin1)",
        "INSERT INTO texts VALUES (1, 'ok', 'plain'), (2, X'E9', 'plain'), (3, 'ok', X'C3A9'), (4, 'ok', X'C3A9C3A9')",
        "CREATE VIEW good_names AS SELECT name FROM good",
        "CREATE TRIGGER good_upper BEFORE INSERT ON good FOR EACH ROW SET NEW.name = UPPER(NEW.name)",
    ] {
        my.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let config = db.config_backfill("plan", "", "");
    let before_source = source_end(&db).await;
    let before_target = target_objects(&db).await;
    let (code, out) = run_plan(&config, &["--json"]);
    assert_eq!(code, 1, "a blocker exits 1:\n{out}");
    let json_start = out.find('{').expect("JSON on stdout");
    let plan: serde_json::Value =
        serde_json::from_str(&out[json_start..out.rfind('}').expect("end") + 1]).expect("JSON");
    let issues = plan["issues"].as_array().expect("issues");
    let find = |table: &str, needle: &str| {
        issues
            .iter()
            .find(|i| {
                i["table"].as_str().is_some_and(|t| t.ends_with(table))
                    && i["what"].as_str().is_some_and(|w| w.contains(needle))
            })
            .unwrap_or_else(|| panic!("no finding {needle:?} for {table}:\n{issues:#?}"))
            .clone()
    };
    // A table without a key is replicated whole-row: a warning naming the cost, not a blocker.
    let nokey = find(".nokey", "no primary key");
    assert_eq!(nokey["severity"], "warning");
    let myisam = find(".legacy", "engine MyISAM");
    assert_eq!(myisam["severity"], "warning");
    // Two zero dates in the NOT NULL column (refused under the default policy: blocks), one in
    // the nullable column.
    let zero = find(".happenings", "2 values of kind zero_date in column day");
    assert_eq!(zero["severity"], "blocker");
    assert!(
        zero["what"].as_str().unwrap_or("").contains("id=1"),
        "example keys: {zero}"
    );
    find(".happenings", "1 value of kind zero_date in column at");
    let ci = find(
        ".people",
        "unique key email (email) compares text case-insensitively",
    );
    assert_eq!(ci["severity"], "warning");
    let ascii = find(".texts", "1 value of kind invalid_text in column code");
    assert_eq!(ascii["severity"], "blocker");
    find(
        ".texts",
        "2 values of kind utf8_bytes_in_latin1 in column legacy",
    );
    find(".good", "triggers good_upper");
    let objects = plan["objects"].as_array().expect("objects");
    assert!(
        objects.iter().any(|o| o["kind"] == "view"
            && o["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".good_names"))),
        "{objects:#?}"
    );
    assert!(
        objects.iter().any(|o| o["kind"] == "trigger"
            && o["name"].as_str().is_some_and(|n| n.contains("good_upper"))),
        "{objects:#?}"
    );
    // Per-table facts and the scan.
    let tables = plan["tables"].as_array().expect("tables");
    let legacy = tables
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.ends_with(".legacy")))
        .expect("legacy surveyed");
    assert_eq!(legacy["engine"], "MyISAM");
    let nokey = tables
        .iter()
        .find(|t| t["name"].as_str().is_some_and(|n| n.ends_with(".nokey")))
        .expect("keyless table surveyed");
    assert!(nokey["key"].is_null());
    let scanned: u64 = plan["scan"]
        .as_array()
        .expect("scan")
        .iter()
        .map(|s| s["rows_scanned"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        scanned,
        // ... the keyless table's 2 rows included: it is replicated, so it is scanned.
        500 + 1 + 4 + 2 + 4 + 2,
        "every row of the planned tables"
    );
    assert!(plan["samples"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(plan["estimates"]["backfill_seconds"].as_f64().is_some());

    // The Markdown names the same blockers with their fixes.
    let (code, md) = run_plan(&config, &["--scan-rows-per-second", "0"]);
    assert_eq!(code, 1, "{md}");
    assert!(
        // (The keyless table is a warning now, not a blocker.)
        md.contains("**Blocked: 3 blockers must be fixed first**"),
        "{md}"
    );
    assert!(md.contains("types.zero_date"), "{md}");
    assert!(md.contains("### 3. Cutover"), "{md}");

    // Read-only: the binlog holds nothing about this database since; the target holds what
    // it held.
    let written = binlog_events_about(&db, &before_source).await;
    assert!(
        written.is_empty(),
        "ferry plan wrote to the source: {written:?}"
    );
    assert_eq!(target_objects(&db).await, before_target);
    db.cleanup_dir();
}

#[tokio::test]
async fn the_demo_schema_plans_without_blockers_and_the_plan_is_written_to_a_file() {
    let db = TestDb::new("plan_demo").await;
    let mut my = db.my().await;
    for sql in [
        "CREATE TABLE users (id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, email VARCHAR(190) NOT NULL UNIQUE, \
         name VARCHAR(100), balance DECIMAL(12,2) NOT NULL DEFAULT 0, status ENUM('active','blocked','deleted') NOT NULL DEFAULT 'active', \
         tags SET('vip','beta','newsletter') NOT NULL DEFAULT '', created DATETIME(6) NOT NULL, seen TIMESTAMP(3) NULL, bio TEXT, prefs JSON)",
        "CREATE TABLE orders (user_id BIGINT UNSIGNED NOT NULL, order_no INT NOT NULL, amount DECIMAL(14,4) NOT NULL, \
         qty SMALLINT UNSIGNED NOT NULL, ordered DATE NOT NULL, note VARCHAR(200), PRIMARY KEY (user_id, order_no))",
        "INSERT INTO users (email, name, balance, status, tags, created, seen, bio, prefs) \
         SELECT CONCAT('user', seq, '@example.com'), CONCAT('User ', seq), (seq % 10000) / 100, \
         ELT(1 + seq % 3, 'active', 'blocked', 'deleted'), ELT(1 + seq % 4, '', 'vip', 'beta,newsletter', 'vip,beta'), \
         '2024-01-01 00:00:00' + INTERVAL seq SECOND, FROM_UNIXTIME(1700000000 + seq), CONCAT('bio of user ', seq), \
         JSON_OBJECT('lang', ELT(1 + seq % 2, 'en', 'fr'), 'n', seq) FROM seq_1_to_20000",
        "INSERT INTO orders SELECT 1 + seq % 20000, seq, seq * 1.2345, seq % 500, '2024-01-01' + INTERVAL (seq % 365) DAY, \
         CONCAT('order ', seq) FROM seq_1_to_60000",
        "ANALYZE TABLE users, orders",
    ] {
        my.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let config = db.config_backfill("plan", "", "");
    let file = db.dir.join("plan.md");
    let (code, out) = run_plan(&config, &["--output", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    let md = std::fs::read_to_string(&file).expect("plan written");
    assert!(
        md.contains("**Ready: nothing blocks the migration.**"),
        "{md}"
    );
    assert!(md.contains(&format!("{}.users", db.name)), "{md}");
    // The scan read every row; the sample copy measured the backfill.
    assert!(md.contains("| 20,000 | yes | none |"), "{md}");
    assert!(md.contains("| 60,000 | yes | none |"), "{md}");
    assert!(md.contains("sample of"), "{md}");
    assert!(!md.contains("backfill estimate **not measured**"), "{md}");
    db.cleanup_dir();
}

#[tokio::test]
async fn a_plan_killed_in_its_sample_copy_leaves_nothing_on_the_target() {
    let db = TestDb::new("plan_kill").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(40))")
        .await
        .expect("items");
    my.query_drop("INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_50000")
        .await
        .expect("rows");
    let config = db.config_backfill("plan", "", "");
    let before = target_objects(&db).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--config", config.to_str().expect("utf-8")])
        .args(["--sample-seconds", "1", "--scan-max-rows", "0"])
        .env("FERRY_FAULT_PAUSE", "plan_sample:60")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry plan");
    // Wait until the scratch table holds the first chunk (visible to us only as a lock on a
    // relation in a ferry_plan_scratch schema: its transaction is uncommitted).
    let pg = db.pg().await;
    let started = Instant::now();
    loop {
        let held: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE a.datname = current_database() AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
                 AND a.query LIKE '%COPY%'",
                &[],
            )
            .await
            .expect("locks")
            .get(0);
        if held > 0 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ferry plan ended before its sample copy"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sample copy never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // The server rolls the abandoned transaction back once it notices the client is gone.
    let started = Instant::now();
    loop {
        let sessions: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("sessions")
            .get(0);
        if sessions == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the killed plan's session stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        target_objects(&db).await,
        before,
        "a scratch object stayed behind"
    );
    let scratch: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ferry_plan_scratch%'",
            &[],
        )
        .await
        .expect("namespaces")
        .get(0);
    assert_eq!(scratch, 0);
    db.cleanup_dir();
}

#[tokio::test]
async fn an_interrupted_scan_resumes_where_it_stopped_and_counts_each_row_once() {
    let db = TestDb::new("plan_resume").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, day DATE NULL)")
        .await
        .expect("items");
    my.query_drop("INSERT INTO items SELECT seq, '2024-01-01' FROM seq_1_to_30000")
        .await
        .expect("rows");
    // Zero dates early, in the middle and at the end of the key range.
    my.query_drop(
        "SET SESSION sql_mode = ''; UPDATE items SET day = '0000-00-00' WHERE id IN (5, 15000, 29999)",
    )
    .await
    .expect("zero dates");
    let config = db.config_backfill("plan", "", "[types]\nzero_date = \"null\"\n");
    let state = db.dir.join("state-plan/plan-scan.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["plan", "--config", config.to_str().expect("utf-8")])
        .args(["--sample-seconds", "1", "--scan-rows-per-second", "3000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry plan");
    let started = Instant::now();
    let scanned_before = loop {
        let saved: Option<serde_json::Value> = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let rows = saved
            .as_ref()
            .and_then(|s| s["tables"].as_object()?.values().next()?["rows_scanned"].as_u64())
            .unwrap_or(0);
        if rows >= 6000 {
            break rows;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the rate-limited scan ended early"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no scan progress stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(scanned_before < 30000, "killed mid-scan");
    // A zero date behind the stored position is not seen again (the scan resumes instead of
    // starting over); one ahead of it is.
    my.query_drop(
        "SET SESSION sql_mode = ''; UPDATE items SET day = '0000-00-00' WHERE id IN (10, 29998)",
    )
    .await
    .expect("more zero dates");

    let (code, out) = run_plan(&config, &["--json", "--scan-rows-per-second", "0"]);
    assert_eq!(code, 0, "{out}");
    let json_start = out.find('{').expect("JSON");
    let plan: serde_json::Value =
        serde_json::from_str(&out[json_start..out.rfind('}').expect("end") + 1]).expect("JSON");
    let scan = &plan["scan"][0];
    assert_eq!(scan["rows_scanned"], 30000, "{scan}");
    assert_eq!(scan["complete"], true);
    let zero = &scan["findings"][0];
    assert_eq!(zero["kind"], "zero_date");
    assert_eq!(
        zero["count"], 4,
        "the three zero dates once each, plus the one written ahead of the resume point: {zero}"
    );
    assert!(
        !zero["examples"].to_string().contains("id=10\""),
        "the row behind the resume point was not read again: {zero}"
    );
    assert_eq!(zero["outcome"], "substituted");
    assert!(!state.exists(), "a finished scan leaves nothing to resume");
    db.cleanup_dir();
}
