//! Schema changes on the source while ferry streams, against the real servers: each carried to
//! PostgreSQL in order with the rows around it (under a concurrent write load), refused
//! precisely when it cannot be exact, and exactly once across a crash right after the DDL.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

const TABLE: &str = "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20), qty INT, \
                     status ENUM('a','b') NOT NULL DEFAULT 'a')";

/// Inserts and updates rows of `items` (id, label only) until stopped; errors (a statement
/// racing a schema change) are ignored.
fn start_load(db: &TestDb, first_id: i64) -> (Arc<AtomicBool>, tokio::task::JoinHandle<i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let opts = mysql_opts_at(db.my_port, Some(&db.name));
    let handle = tokio::spawn(async move {
        let mut my = mysql_async::Conn::new(opts).await.expect("load connection");
        let mut id = first_id;
        while !flag.load(Ordering::Relaxed) {
            let _ = my
                .query_drop(format!(
                    "INSERT INTO items (id, label) VALUES ({id}, 'load {id}')"
                ))
                .await;
            let _ = my
                .query_drop(format!(
                    "UPDATE items SET label = 'updated {id}' WHERE id = {}",
                    first_id + (id - first_id) / 2
                ))
                .await;
            id += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        id
    });
    (stop, handle)
}

/// `column: type` of a MySQL table, in name order.
async fn mysql_columns(db: &TestDb, table: &str) -> Vec<String> {
    let mut my = db.my().await;
    let rows: Vec<(String, String)> = my
        .exec(
            "SELECT LOWER(COLUMN_NAME), COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY LOWER(COLUMN_NAME)",
            (&db.name, table),
        )
        .await
        .expect("mysql columns");
    rows.into_iter().map(|(c, _)| c).collect()
}

/// `column: type` of the PostgreSQL table, in name order.
async fn pg_columns(db: &TestDb, table: &str) -> Vec<(String, String, bool)> {
    db.pg()
        .await
        .query(
            "SELECT column_name::text, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM information_schema.columns c \
             JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, c.table_name)::regclass \
                  AND a.attname = c.column_name \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY column_name",
            &[&db.name, &table],
        )
        .await
        .expect("pg columns")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Asserts the PostgreSQL table has the MySQL table's columns; returns their names.
async fn assert_same_columns(db: &TestDb, table: &str) -> Vec<String> {
    let names: Vec<String> = pg_columns(db, table)
        .await
        .into_iter()
        .map(|(c, _, _)| c)
        .collect();
    assert_eq!(names, mysql_columns(db, table).await, "same columns");
    names
}

fn verify(config: &std::path::Path) {
    let (code, out) = ferry_cmd(&["verify", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(
        code, 0,
        "ferry verify finds source and target equal:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_changes_apply_in_order_under_load() {
    let db = TestDb::new("ddl").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    for i in 0..200 {
        my.query_drop(format!(
            "INSERT INTO items VALUES ({i}, 'item {i}', {i}, 'b')"
        ))
        .await
        .expect("insert");
    }
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (stop, load) = start_load(&db, 1000);

    let statements = [
        "ALTER TABLE items ADD COLUMN note VARCHAR(10) DEFAULT 'x'",
        "ALTER TABLE items ADD COLUMN n INT NOT NULL",
        "ALTER TABLE items ALTER COLUMN n SET DEFAULT 0",
        "ALTER TABLE items MODIFY label VARCHAR(80)",
        "ALTER TABLE items CHANGE qty quantity BIGINT",
        "ALTER TABLE items MODIFY status ENUM('a','b','c') NOT NULL DEFAULT 'a'",
        "ALTER TABLE items ADD INDEX ix_label (label), ADD UNIQUE KEY ux_id_n (id, n)",
        "ALTER TABLE items ENGINE=InnoDB",
        "ALTER TABLE items COMMENT = 'things'",
        "ALTER TABLE items DROP COLUMN note",
        "DROP INDEX ix_label ON items",
        "ALTER TABLE items ALTER COLUMN quantity SET DEFAULT 7",
        // Several changes and rows in one burst: ferry reads the first ALTER after the last
        // already ran, so the catalog is ahead of the binlog.
        "ALTER TABLE items ADD COLUMN b1 INT; \
         INSERT INTO items (id, label, b1, status) VALUES (100001, 'burst', 1, 'c'); \
         ALTER TABLE items ADD COLUMN b2 VARCHAR(5) AFTER label; \
         UPDATE items SET b2 = 'two', b1 = 2 WHERE id = 100001; \
         ALTER TABLE items MODIFY quantity BIGINT UNSIGNED DEFAULT 7; \
         UPDATE items SET quantity = 18000000000000000000 WHERE id = 100001; \
         ALTER TABLE items ADD COLUMN b3 INT; \
         UPDATE items SET b3 = 1 WHERE id = 100001; \
         ALTER TABLE items MODIFY b3 BIGINT; \
         UPDATE items SET b3 = 9000000000 WHERE id = 100001",
    ];
    for (i, sql) in statements.iter().enumerate() {
        let burst = i + 1 == statements.len();
        if burst {
            // Paused, so that ferry reads the burst only after all of it ran.
            ferry.signal("USR1");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        my.query_drop(*sql).await.expect(sql);
        if burst {
            ferry.signal("USR2");
        }
        my.query_drop(format!(
            "UPDATE items SET status = 'b', label = CONCAT('u', id) WHERE id = {}",
            rand::random::<u32>() % 200
        ))
        .await
        .expect("update between");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let last = load.await.expect("load");
    assert!(last > 1010, "the load ran: {last}");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert!(
        ferry.try_exit().is_none(),
        "still running:\n{}",
        ferry.log()
    );

    assert_same_columns(&db, "items").await;
    let cols = pg_columns(&db, "items").await;
    let col = |n: &str| {
        cols.iter()
            .find(|(c, _, _)| c == n)
            .cloned()
            .unwrap_or_else(|| panic!("column {n}: {cols:?}"))
    };
    assert_eq!(col("label").1, "character varying(80)");
    assert_eq!(col("quantity").1, "numeric(20,0)");
    assert_eq!(col("b1").1, "integer");
    assert_eq!(col("b3").1, "bigint");
    assert_eq!(col("n"), ("n".into(), "integer".into(), true));
    verify(&config);
    let row = db
        .pg()
        .await
        .query_one(
            "SELECT label, b1, b2, quantity::text, status, b3 FROM items WHERE id = 100001",
            &[],
        )
        .await
        .expect("burst row");
    assert_eq!(row.get::<_, String>(0), "burst");
    assert_eq!(row.get::<_, Option<i32>>(1), Some(2));
    assert_eq!(row.get::<_, Option<i64>>(5), Some(9_000_000_000));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("two"));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("18000000000000000000")
    );
    assert_eq!(row.get::<_, String>(4), "c");
    let pg = db.pg().await;
    let default: Option<String> = pg
        .query_one(
            "SELECT column_default FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'items' AND column_name = 'quantity'",
            &[&db.name],
        )
        .await
        .expect("default")
        .get(0);
    assert_eq!(default.as_deref(), Some("7"));
    let indexes: Vec<String> = pg
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'items' ORDER BY 1",
            &[&db.name],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(indexes.iter().any(|i| i == "items_ux_id_n"), "{indexes:?}");
    assert!(
        !indexes.iter().any(|i| i == "items_ix_label"),
        "{indexes:?}"
    );
    let applied = db
        .count(
            "SELECT count(*) FROM ferry.schema_changes WHERE stream = 'main' AND source_sql NOT LIKE '(%'",
        )
        .await;
    assert_eq!(applied, 16, "every carried change is in the history");
    let log = ferry.log();
    assert!(log.contains("applied a schema change"), "{log}");
    assert!(
        log.contains("already shows later schema changes"),
        "the burst was read with the catalog ahead of it: {log}"
    );

    // A rename carries the table along; a drop removes it.
    my.query_drop("RENAME TABLE items TO goods")
        .await
        .expect("rename");
    my.query_drop("INSERT INTO goods (id, label, n) VALUES (200000, 'renamed', 1)")
        .await
        .expect("insert renamed");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM goods WHERE id = 200000")
            .await,
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename = 'items'",
            db.name
        ))
        .await,
        0
    );
    verify(&config);
    my.query_drop("DROP TABLE goods").await.expect("drop");
    // A table created and altered before its first row (read after both ran).
    ferry.signal("USR1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    my.query_drop(
        "CREATE TABLE later (id INT PRIMARY KEY); ALTER TABLE later ADD COLUMN v INT; \
         INSERT INTO later VALUES (1, 5)",
    )
    .await
    .expect("later");
    ferry.signal("USR2");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename = 'goods'",
            db.name
        ))
        .await,
        0,
        "DROP TABLE is carried"
    );
    assert_eq!(
        db.count("SELECT v::bigint FROM later WHERE id = 1").await,
        5
    );
    verify(&config);
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_cannot_be_exact_stop_before_later_rows() {
    let db = TestDb::new("ddlref").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (1, 'one', 1, 'a')")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;

    // Narrowing.
    my.query_drop("ALTER TABLE items MODIFY label VARCHAR(5)")
        .await
        .expect("narrow");
    my.query_drop("INSERT INTO items VALUES (2, 'two', 2, 'a')")
        .await
        .expect("insert after");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    let log = ferry.log();
    assert!(log.contains("cannot be applied automatically"), "{log}");
    assert!(log.contains("narrows"), "{log}");
    assert!(log.contains(&format!("{}.items", db.name)), "{log}");
    assert_eq!(db.count("SELECT count(*) FROM items").await, 1);
    let pos = log
        .split("--skip-ddl ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("position in message")
        .to_string();
    db.pg()
        .await
        .batch_execute("ALTER TABLE items ALTER COLUMN label TYPE varchar(5)")
        .await
        .expect("mirror");
    let mut ferry = Ferry::start(&config, &["--skip-ddl", &pos]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 2);

    // A primary-key change.
    my.query_drop("ALTER TABLE items DROP PRIMARY KEY, ADD PRIMARY KEY (id, qty)")
        .await
        .expect("rekey");
    my.query_drop("INSERT INTO items VALUES (3, 'three', 3, 'a')")
        .await
        .expect("insert after");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    assert!(ferry.log().contains("primary key"), "{}", ferry.log());
    assert_eq!(db.count("SELECT count(*) FROM items").await, 2);

    // After a restart with --skip-ddl of the earlier change, the mirrored definition is the
    // one decoded with (stored): a plain restart stops at the re-key again, not earlier.
    let mut again = Ferry::start(&config, &[]);
    let status = again.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", again.log());
    assert!(again.log().contains("primary key"), "{}", again.log());
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_a_schema_change_resumes_exactly() {
    let db = TestDb::new("ddlcrash").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start_with(
        &config,
        &[],
        &[("FERRY_FAULT_PAUSE", "schema_change:3")],
        &[],
    );
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let held = "holding the schema change's transaction";
    for round in 0..3 {
        // Rows of the old shape right before the change, of the new one right after.
        my.query_drop(format!(
            "INSERT INTO items (id, label) VALUES ({}, 'before')",
            round * 10
        ))
        .await
        .expect("before");
        my.query_drop(format!(
            "ALTER TABLE items ADD COLUMN c{round} INT DEFAULT {round}"
        ))
        .await
        .expect("alter");
        my.query_drop(format!(
            "INSERT INTO items (id, label, c{round}) VALUES ({}, 'after', 100)",
            round * 10 + 1
        ))
        .await
        .expect("after");
        let seen = ferry.log().matches(held).count();
        let t0 = std::time::Instant::now();
        while ferry.log().matches(held).count() == seen {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the change was not reached:\n{}",
                ferry.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Killed between the target DDL and its commit: PostgreSQL rolls both back.
        ferry.kill9_and_restart();
        db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
            .await;
    }
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    verify(&config);
    assert_same_columns(&db, "items").await;
    assert_eq!(
        db.count("SELECT count(*) FROM ferry.schema_changes WHERE stream = 'main'")
            .await,
        3,
        "each change applied once"
    );
    assert_eq!(
        db.count("SELECT c2::bigint FROM items WHERE id = 21").await,
        100
    );
    assert_eq!(
        db.count("SELECT c1::bigint FROM items WHERE id = 0").await,
        1
    );
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

/// No table of the tool (`_items_…`) was ever created or changed on the target, and no
/// target statement names `shadow`.
async fn assert_tool_tables_never_reached_the_target(db: &TestDb, shadow: &str) {
    let pattern = shadow.replace('_', "\\_");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ferry.schema_changes WHERE source_table LIKE '%\\_items\\_%' \
             OR target_sql LIKE '%{pattern}%'"
        ))
        .await,
        0,
        "no table of the tool reached the target"
    );
}

/// A real `pt-online-schema-change` adds a column to a 100,000-row table under load: its shadow
/// table and the rows its triggers and chunked copy write there never reach PostgreSQL; its
/// ALTER is recorded and applied to the table at the RENAME swap, and the target ends equal to
/// the source with the new column and without the tool's tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pt_online_schema_change_under_load() {
    let tool = "pt-online-schema-change";
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is missing (scripts/dev-db.sh install installs percona-toolkit)"
        );
        eprintln!("skipping: {tool} is not installed (scripts/dev-db.sh install)");
        return;
    }
    let db = TestDb::new("ptosc").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, label VARCHAR(40), qty INT)",
    )
    .await
    .expect("table");
    let start = db.start_position().await;
    my.query_drop(
        "INSERT INTO items (id, label, qty) SELECT seq, CONCAT('item ', seq), seq FROM seq_1_to_100000",
    )
    .await
    .expect("rows");
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    let (stop, load) = start_load(&db, 200_000);
    let dsn = format!("h=127.0.0.1,P={},u=root,D={},t=items", db.my_port, db.name);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("pt-online-schema-change")
            .args([
                "--alter",
                "ADD COLUMN extra INT NOT NULL DEFAULT 3",
                "--recursion-method=none",
                "--chunk-size=5000",
                "--execute",
                &dsn,
            ])
            .output()
            .expect("pt-online-schema-change runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "pt-online-schema-change: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    verify(&config);
    let names = assert_same_columns(&db, "items").await;
    assert!(names.contains(&"extra".to_string()), "{names:?}");
    let leftovers = db
        .count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename <> 'items'",
            db.name
        ))
        .await;
    assert_eq!(leftovers, 0, "the tool's shadow and old tables are gone");
    assert!(
        db.count("SELECT count(*) FROM items WHERE extra = 3").await >= 100_000,
        "existing rows carry the new column's default"
    );
    assert_tool_tables_never_reached_the_target(&db, "_items_new").await;
    assert!(
        ferry.log().contains("online schema change cut-over"),
        "{}",
        ferry.log()
    );
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

/// gh-ost's statement sequence (its documented shadow `_t_gho`, changelog `_t_ghc`, sentry
/// `_t_del` and the atomic cut-over: LOCK TABLES, a RENAME that waits for the lock, the sentry
/// dropped, UNLOCK) replayed as SQL while the application writes, after an interrupted attempt
/// (shadow altered, then dropped): the shadow is never created or written on the target, its
/// ALTER is recorded with the checkpoint (and survives a kill -9), the cut-over applies it to
/// the table, and the target ends equal to the source with the new column and none of the
/// tool's tables — whether the table is selected by a database pattern or by name.
async fn gh_ost_statement_sequence(by_name: bool, crash: bool) {
    let db = TestDb::new(if by_name { "ghost_named" } else { "ghost" }).await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    // Named like a tool's table, but beside no table `archive`: an ordinary table.
    my.query_drop("CREATE TABLE `_archive_old` (id INT PRIMARY KEY); INSERT INTO `_archive_old` VALUES (1), (2)")
        .await
        .expect("ordinary table");
    my.query_drop(
        "INSERT INTO items (id, label, qty) SELECT seq, CONCAT('item ', seq), seq FROM seq_1_to_5000",
    )
    .await
    .expect("rows");
    let config = db.config("main", &start, "");
    if by_name {
        let text = std::fs::read_to_string(&config).expect("config");
        let text = text.replace(
            &format!("include = [\"{}.*\"]", db.name),
            &format!("include = [\"{}.items\"]", db.name),
        );
        std::fs::write(&config, text).expect("config");
    }
    let mut ferry = Ferry::start(&config, &[]);
    // gh-ost starts against a running ferry: the stream reads its statements as they happen.
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let recorded = "SELECT count(*) FROM ferry.shadow_alters";
    // An attempt interrupted before its cut-over: what it recorded is discarded.
    for sql in [
        "CREATE TABLE `_items_gho` LIKE `items`",
        "ALTER TABLE `_items_gho` ADD COLUMN abandoned INT",
        "INSERT INTO `_items_gho` (id, label) VALUES (1, 'shadow row')",
    ] {
        my.query_drop(sql).await.expect(sql);
    }
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count(recorded).await,
        1,
        "the shadow's ALTER is recorded"
    );
    my.query_drop("DROP TABLE `_items_gho`")
        .await
        .expect("drop shadow");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count(recorded).await, 0, "{}", ferry.log());
    assert!(
        ferry.log().contains("without a cut-over"),
        "{}",
        ferry.log()
    );
    let (stop, load) = start_load(&db, 200_000);
    for sql in [
        "CREATE TABLE `_items_gho` LIKE `items`",
        "ALTER TABLE `_items_gho` ADD COLUMN extra INT NOT NULL DEFAULT 3",
        "CREATE TABLE `_items_ghc` (id BIGINT AUTO_INCREMENT, \
           last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
           hint VARCHAR(64) NOT NULL, value VARCHAR(4096) NOT NULL, \
           PRIMARY KEY (id), UNIQUE KEY hint_uidx (hint)) AUTO_INCREMENT=256",
        "INSERT /* gh-ost */ INTO `_items_ghc` (id, hint, value) VALUES (2, 'state', 'GhostTableMigrated') \
           ON DUPLICATE KEY UPDATE last_update = NOW(), value = VALUES(value)",
    ] {
        my.query_drop(sql).await.expect(sql);
    }
    for chunk in 0..5 {
        let (lo, hi) = (chunk * 1000 + 1, chunk * 1000 + 1000);
        my.query_drop(format!(
            "INSERT /* gh-ost `items` */ IGNORE INTO `_items_gho` (id, label, qty, status) \
             (SELECT id, label, qty, status FROM `items` FORCE INDEX (`PRIMARY`) \
              WHERE id BETWEEN {lo} AND {hi} LOCK IN SHARE MODE)"
        ))
        .await
        .expect("row copy");
    }
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count(recorded).await, 1, "{}", ferry.log());
    if crash {
        // Only the target's record holds the shadow's ALTER now: the binlog position after it
        // is committed.
        ferry.kill9_and_restart();
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    // What gh-ost's binlog applier writes for the changes it saw during the copy.
    my.query_drop(
        "REPLACE /* gh-ost `items` */ INTO `_items_gho` (id, label, qty, status) \
         SELECT id, label, qty, status FROM `items` WHERE id >= 200000",
    )
    .await
    .expect("apply");
    // The atomic cut-over.
    my.query_drop(
        "CREATE TABLE `_items_del` (id INT AUTO_INCREMENT PRIMARY KEY) COMMENT='ghost-cut-over-sentry'",
    )
    .await
    .expect("sentry");
    my.query_drop("LOCK TABLES `items` WRITE, `_items_del` WRITE")
        .await
        .expect("lock");
    let opts = mysql_opts_at(db.my_port, Some(&db.name));
    let rename = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts)
            .await
            .expect("rename connection");
        c.query_drop("RENAME /* gh-ost */ TABLE `items` TO `_items_del`, `_items_gho` TO `items`")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    my.query_drop("DROP /* gh-ost */ TABLE IF EXISTS `_items_del`")
        .await
        .expect("drop sentry");
    my.query_drop("UNLOCK TABLES").await.expect("unlock");
    rename.await.expect("join").expect("the cut-over RENAME");
    my.query_drop("DROP TABLE IF EXISTS `_items_ghc`")
        .await
        .expect("drop changelog");
    my.query_drop("DROP TABLE IF EXISTS `_items_del`")
        .await
        .expect("drop old table");
    my.query_drop("INSERT INTO items (id, label) VALUES (900000, 'after the cut-over')")
        .await
        .expect("write after");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    verify(&config);
    let names = assert_same_columns(&db, "items").await;
    assert!(names.contains(&"extra".to_string()), "{names:?}");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' \
             AND tablename NOT IN ('items', '_archive_old')",
            db.name
        ))
        .await,
        0,
        "none of gh-ost's tables is left on the target"
    );
    if !by_name {
        assert_eq!(
            db.count("SELECT count(*) FROM \"_archive_old\"").await,
            2,
            "a table merely named like a tool's is replicated"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE id = 900000")
            .await,
        1
    );
    assert_eq!(db.count(recorded).await, 0, "applied at the cut-over");
    assert_tool_tables_never_reached_the_target(&db, "_items_gho").await;
    let log = ferry.log();
    assert!(log.contains("online schema change cut-over"), "{log}");
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gh_ost_statement_sequence_with_its_cut_over() {
    gh_ost_statement_sequence(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gh_ost_on_a_table_selected_by_name_across_a_kill_between_alter_and_cut_over() {
    gh_ost_statement_sequence(true, true).await;
}

/// MariaDB's two-phase ALTER (`binlog_alter_two_phase = ON`) logs each statement twice: when it
/// starts (START ALTER) and when it commits (COMMIT ALTER) or fails (ROLLBACK ALTER). ferry
/// carries it once, at its commit, and never a rolled-back one — under a write load, with rows
/// of the old definition between the two phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_phase_alter_is_carried_at_its_commit_and_a_rolled_back_one_never() {
    let db = TestDb::new("twophase").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    my.query_drop(
        "INSERT INTO items (id, label, qty) SELECT seq, IF(seq % 2, 'same', CONCAT('item ', seq)), seq \
         FROM seq_1_to_2000",
    )
    .await
    .expect("rows");
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (stop, load) = start_load(&db, 200_000);
    my.query_drop("SET SESSION binlog_alter_two_phase = ON")
        .await
        .expect("two-phase ALTER (MariaDB 10.8+)");
    my.query_drop(
        "ALTER TABLE items ADD COLUMN extra INT NOT NULL DEFAULT 7, ALGORITHM=INPLACE, LOCK=NONE",
    )
    .await
    .expect("committed ALTER");
    let failed = my
        .query_drop("ALTER TABLE items ADD UNIQUE KEY uk_label (label)")
        .await;
    assert!(failed.is_err(), "duplicate labels make it roll back");
    my.query_drop("ALTER TABLE items ADD INDEX ix_qty (qty), ALGORITHM=INPLACE, LOCK=NONE")
        .await
        .expect("committed ALTER");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    let (f, _) = db.master_position().await;
    let mut probe = db.my().await;
    let events: Vec<mysql_async::Row> = probe
        .query(format!("SHOW BINLOG EVENTS IN '{f}'"))
        .await
        .expect("binlog events");
    let info: Vec<String> = events
        .iter()
        .map(|r| r.get::<String, _>(5).unwrap_or_default())
        .collect();
    assert!(
        info.iter().any(|i| i.contains("ROLLBACK ALTER"))
            && info.iter().any(|i| i.contains("COMMIT ALTER")),
        "the source wrote both phases: {info:?}"
    );
    verify(&config);
    assert_same_columns(&db, "items").await;
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE extra = 7").await,
        db.count("SELECT count(*) FROM items").await
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'u'")
            .await,
        0,
        "the rolled-back unique key is not on the target"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE tablename = 'items' AND indexname LIKE '%ix_qty%'")
            .await,
        1,
        "{}",
        ferry.log()
    );
    let log = ferry.log();
    assert!(log.contains("two-phase ALTER"), "{log}");
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

/// The row identity of `k` on PostgreSQL: its primary key's columns, in order.
async fn pg_primary_key(db: &TestDb, table: &str) -> Vec<String> {
    db.pg()
        .await
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table],
        )
        .await
        .expect("primary key")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// With `ddl.allow_key_change`, primary-key changes are carried under a write load: a key that
/// gains a column, a key dropped (the table is then keyed by its NOT NULL unique key), and a
/// table without a key that gains one — each re-keys the PostgreSQL table in the statement's
/// own transaction, rows before and after it apply by the right identity, and `ferry verify`
/// finds both sides equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_are_carried_when_allowed() {
    let db = TestDb::new("rekey").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE k (a INT NOT NULL, b INT NOT NULL, v VARCHAR(20), PRIMARY KEY (a), \
           UNIQUE KEY uk_b (b)); \
         INSERT INTO k SELECT seq, seq * 10, 'v' FROM seq_1_to_1000; \
         CREATE TABLE loose (id INT NOT NULL, note VARCHAR(20)); \
         INSERT INTO loose SELECT seq, 'n' FROM seq_1_to_300",
    )
    .await
    .expect("tables");
    let start = db.start_position().await;
    let config = db.config_backfill(
        "main",
        "chunk_rows = 200",
        "[verify]\ncontinuous = false\n\n[ddl]\nallow_key_change = true\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    let _ = start;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let opts = mysql_opts_at(db.my_port, Some(&db.name));
    let load = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.expect("load");
        let mut i: i64 = 0;
        while !flag.load(Ordering::Relaxed) {
            let id = 2000 + i;
            let _ = c
                .query_drop(format!(
                    "INSERT INTO k VALUES ({id}, {}, 'new'); \
                     UPDATE k SET v = 'u{i}' WHERE a = {}; \
                     DELETE FROM k WHERE a = {}; \
                     INSERT INTO loose VALUES ({id}, 'x'); UPDATE loose SET note = 'y' WHERE id = {}",
                    id * 10,
                    1 + i % 900,
                    950 + i % 50,
                    1 + i % 300
                ))
                .await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        i
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    my.query_drop("ALTER TABLE k DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)")
        .await
        .expect("key gains a column");
    tokio::time::sleep(Duration::from_millis(300)).await;
    my.query_drop("ALTER TABLE k DROP PRIMARY KEY")
        .await
        .expect("key dropped: keyed by uk_b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    my.query_drop("DELETE FROM loose WHERE id > 2000; ALTER TABLE loose ADD PRIMARY KEY (id)")
        .await
        .expect("a keyless table gains a key");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let statements = load.await.expect("load");
    assert!(statements > 20, "the load ran ({statements})");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    verify(&config);
    assert_eq!(
        pg_primary_key(&db, "k").await,
        vec!["b".to_string()],
        "keyed by uk_b"
    );
    assert_eq!(pg_primary_key(&db, "loose").await, vec!["id".to_string()]);
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}
