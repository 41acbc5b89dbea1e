//! The reverse stream (PostgreSQL → MySQL) against real servers: armed by `ferry cutover`
//! while PostgreSQL is quiet, then every write on PostgreSQL decoded from the slot. Each test
//! runs its own MariaDB (the cutover sets `read_only` server-wide).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::migration::*;
use common::own_mariadb::OwnMariaDb;
use common::*;
use ferry::reverse::pgoutput::{self, Datum, Message};
use mysql_async::prelude::Queryable;

struct Setup {
    _server: OwnMariaDb,
    db: TestDb,
    config: PathBuf,
    ferry: Ferry,
}

/// A source with `items` (primary key) and `tags` (a unique NOT NULL key, no primary key),
/// ferry backfilled and streaming, and a verification pass that matched.
async fn setup(name: &str, extra_tables: &[&str]) -> Setup {
    setup_with(name, extra_tables, "").await
}

/// [`setup`] with `extra_config` appended to the config (its own TOML tables).
async fn setup_with(name: &str, extra_tables: &[&str], extra_config: &str) -> Setup {
    let server = OwnMariaDb::start(name);
    let db = TestDb::new_on(name, server.port).await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40))")
        .await
        .expect("items");
    my.query_drop("INSERT INTO items SELECT seq, 0, 'seed' FROM seq_1_to_100")
        .await
        .expect("seed");
    my.query_drop("CREATE TABLE tags (tag VARCHAR(20) NOT NULL, uses INT, UNIQUE KEY (tag))")
        .await
        .expect("tags");
    my.query_drop("INSERT INTO tags VALUES ('red', 1), ('blue', 2)")
        .await
        .expect("seed tags");
    for sql in extra_tables {
        my.query_drop(*sql).await.expect("extra table");
    }
    let config = db.config_backfill(
        "main",
        "",
        &format!("[verify]\npass_interval_seconds = 0.5\nrows_per_second = 100000\n{extra_config}"),
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_for_matched_pass(&db, &mut ferry).await;
    Setup {
        _server: server,
        db,
        config,
        ferry,
    }
}

/// Runs `ferry cutover --yes --json` with `args`; the exit code and the report.
async fn cutover(config: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["--yes"];
    all.extend_from_slice(args);
    cutover_cmd(config, &all).await
}

/// Every message the slot holds now (without consuming it), decoded.
async fn peek_all(db: &TestDb, slot: &str, publication: &str) -> Vec<Message> {
    let rows = db
        .pg()
        .await
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, \
             'proto_version', '1', 'publication_names', $2)",
            &[&slot, &publication],
        )
        .await
        .expect("peek the slot");
    rows.iter()
        .map(|r| pgoutput::decode(r.get::<_, &[u8]>(0)).expect("pgoutput decodes"))
        .collect()
}

fn text(d: &Datum) -> Option<&str> {
    match d {
        Datum::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_arms_the_reverse_stream_at_the_switch_point() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup("revarm", &[]).await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let names = ferry::reverse::names(&db.name, "main");
    // The daemon's reverse stream would consume (and hold, while it peeks) the slot this test
    // reads: stop it for the inspection, start it again at the end.
    ferry.signal("TERM");
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", ferry.log());

    let pg = db.pg().await;
    let slot = pg
        .query_opt(
            "SELECT plugin::text, database::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&names.slot],
        )
        .await
        .expect("slots")
        .expect("the cutover created the slot");
    assert_eq!(slot.get::<_, String>(0), "pgoutput");
    assert_eq!(slot.get::<_, String>(1), db.name);
    let published: Vec<String> = pg
        .query(
            "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
            &[&names.publication],
        )
        .await
        .expect("publication tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(published, ["items", "tags"]);
    // `tags` is keyed by its unique key, which ferry made the primary key in PostgreSQL: the
    // default replica identity identifies its rows (FULL is set only for tables without one).
    let identity: String = pg
        .query_one(
            "SELECT relreplident::text FROM pg_class WHERE oid = $1::text::regclass",
            &[&format!("{}.tags", db.name)],
        )
        .await
        .expect("replica identity")
        .get(0);
    assert_eq!(identity, "d");

    // Nothing before the switch is in the slot; every write after it is.
    assert!(
        peek_all(&db, &names.slot, &names.publication)
            .await
            .iter()
            .all(|m| !matches!(
                m,
                Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }
            )),
        "the slot starts at the switch point"
    );
    pg.batch_execute(
        "INSERT INTO items VALUES (1000001, 7, 'on postgres'); UPDATE tags SET uses = 5 WHERE tag = 'red'; \
         DELETE FROM items WHERE id = 3",
    )
    .await
    .expect("writes on PostgreSQL");
    let changes: Vec<Message> = peek_all(&db, &names.slot, &names.publication)
        .await
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. }
            )
        })
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    let Message::Insert { new, .. } = &changes[0] else {
        panic!("{changes:?}")
    };
    assert_eq!(
        new.0.iter().map(text).collect::<Vec<_>>(),
        [Some("1000001"), Some("7"), Some("on postgres")]
    );
    let Message::Update { old, new, .. } = &changes[1] else {
        panic!("{changes:?}")
    };
    assert!(old.is_none(), "the key did not change: no old image");
    assert_eq!(text(&new.0[1]), Some("5"));
    assert!(matches!(changes[2], Message::Delete { .. }));

    // Started again in the switched phase, the daemon applies what the slot holds to MySQL.
    ferry.start_again();
    wait_reverse_caught_up(&db, &mut ferry).await;
    let mut my = db.my().await;
    let on_mysql: Option<(i32, String)> = my
        .exec_first("SELECT n, note FROM items WHERE id = 1000001", ())
        .await
        .expect("items on MySQL");
    assert_eq!(on_mysql, Some((7, "on postgres".to_string())));
    let uses: Option<i32> = my
        .exec_first("SELECT uses FROM tags WHERE tag = 'red'", ())
        .await
        .expect("tags on MySQL");
    assert_eq!(uses, Some(5));
    let gone: Option<i32> = my
        .exec_first("SELECT id FROM items WHERE id = 3", ())
        .await
        .expect("items on MySQL");
    assert_eq!(gone, None);
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    drop(pg);
    db.cleanup_dir();
}

/// Runs `ferry verify` (both directions: every row of each side is looked up on the other);
/// the exit code and output.
async fn verify(config: &Path) -> (i32, String) {
    let path = config.to_str().expect("utf-8").to_string();
    tokio::task::spawn_blocking(move || ferry_cmd(&["verify", "--config", &path]))
        .await
        .expect("verify ran")
}

/// Waits until every published PostgreSQL transaction committed before this call is applied
/// in MySQL: the slot is confirmed only after the MySQL commit, so nothing left to peek up to
/// the WAL position of now means MySQL holds it all.
async fn wait_reverse_caught_up(db: &TestDb, ferry: &mut Ferry) {
    let pg = db.pg().await;
    let target: String = pg
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("wal lsn")
        .get(0);
    let names = ferry::reverse::names(&db.name, "main");
    let started = Instant::now();
    let target: ferry::reverse::lsn::Lsn = target.parse().expect("lsn");
    loop {
        // The stream confirms up to the WAL end only once a peek found nothing before it.
        let confirmed = ferry::reverse::transport::slot_state(&pg, &names.slot)
            .await
            .expect("slot state")
            .map(|s| s.confirmed);
        if confirmed.is_some_and(|c| c >= target) {
            return;
        }
        assert!(ferry.try_exit().is_none(), "ferry exited:\n{}", ferry.log());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the reverse stream did not catch up to {target} (slot at {confirmed:?}):\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The MySQL side of the type matrix.
const TYPED: &str = "CREATE TABLE typed (id INT PRIMARY KEY, u BIGINT UNSIGNED, i8 TINYINT, \
     flag TINYINT(1), t TIME(6), j JSON, e ENUM('small','large'), st SET('a','b','c'), b BIT(10), \
     bin BINARY(4), vb VARBINARY(20), bl BLOB, ts TIMESTAMP(6) NULL, dt DATETIME(6), d DATE, \
     num DECIMAL(30,10), f FLOAT, dbl DOUBLE, y YEAR, txt MEDIUMTEXT, \
     l1 VARCHAR(20) CHARACTER SET latin1, big LONGTEXT)";

/// One row per PostgreSQL write, in PostgreSQL's spelling.
const PG_ROWS: &str = "INSERT INTO typed VALUES \
     (1001, 18446744073709551615, -128, 1, '-838:59:59', '{\"a\": [1, 2.5, \"x\"], \"n\": null}', 'large', 'a,c', B'1000000001', \
      '\\x61620000', '\\x00ff', '\\xdeadbeef', '2038-01-19 03:14:07.999999+00', '9999-12-31 23:59:59.999999', '1000-01-01', \
      '-12345678901234567890.0123456789', 1.1, 0.1, 2155, 'héllo ünïcode ✓', 'café €', repeat(md5('x'), 4000)), \
     (1002, 0, 127, 0, '1 day 02:03:04.5', '[]', 'small', '', B'0000000000', \
      '\\x00000000', '\\x', '\\x', '1970-01-01 00:00:01+00', '1000-01-01 00:00:00', '2024-02-29', \
      '0.0000000001', -3.4e38, -1.7976931348623157e308, 0, '', '', NULL), \
     (1003, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_on_postgresql_arrive_in_mysql_exactly() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup("revtypes", &[TYPED, "INSERT INTO typed (id, txt, big) SELECT 1, 'from mysql', GROUP_CONCAT(MD5(seq) SEPARATOR '') FROM seq_1_to_3000"]).await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");

    let pg = db.pg().await;
    pg.batch_execute(PG_ROWS)
        .await
        .expect("inserts on PostgreSQL");
    pg.batch_execute(
        "BEGIN; UPDATE items SET n = n + 1, note = 'updated on pg' WHERE id <= 10; \
         DELETE FROM items WHERE id BETWEEN 90 AND 95; INSERT INTO items VALUES (1000001, 1, 'new'); COMMIT; \
         UPDATE items SET id = 2000000 WHERE id = 50; \
         UPDATE tags SET uses = 10 WHERE tag = 'red'; DELETE FROM tags WHERE tag = 'blue'; \
         UPDATE typed SET u = 42 WHERE id = 1; \
         UPDATE typed SET e = 'small', t = '00:00:00.000001' WHERE id = 1001; DELETE FROM typed WHERE id = 1002",
    )
    .await
    .expect("updates and deletes on PostgreSQL");
    wait_reverse_caught_up(&db, &mut ferry).await;

    // Exact values, as a MySQL client reads them.
    let mut my = db.my().await;
    let row: Vec<Option<String>> = mysql_rows(
        &mut my,
        "SELECT CAST(u AS CHAR), CAST(i8 AS CHAR), CAST(flag AS CHAR), CAST(t AS CHAR), CAST(j AS CHAR), e, \
         CAST(st AS CHAR), CAST(b + 0 AS CHAR), HEX(bin), HEX(vb), HEX(bl), CAST(ts AS CHAR), CAST(dt AS CHAR), \
         CAST(d AS CHAR), CAST(num AS CHAR), CAST(f AS CHAR), CAST(dbl AS CHAR), CAST(y AS CHAR), txt, \
         CONVERT(l1 USING utf8mb4), LENGTH(big) FROM typed WHERE id = 1001",
    )
    .await
    .remove(0);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        row,
        vec![
            s("18446744073709551615"),
            s("-128"),
            s("1"),
            s("00:00:00.000001"),
            s("{\"a\": [1, 2.5, \"x\"], \"n\": null}"),
            s("small"),
            s("a,c"),
            s("513"),
            s("61620000"),
            s("00FF"),
            s("DEADBEEF"),
            s("2038-01-19 03:14:07.999999"),
            s("9999-12-31 23:59:59.999999"),
            s("1000-01-01"),
            s("-12345678901234567890.0123456789"),
            s("1.1"),
            s("0.1"),
            s("2155"),
            s("héllo ünïcode ✓"),
            s("café €"),
            s("128000"),
        ]
    );
    // Row 1 was written on MySQL; only u changed on PostgreSQL, and its 96 kB TOASTed `big`
    // (not sent by PostgreSQL) is intact.
    let kept = mysql_rows(
        &mut my,
        "SELECT CAST(u AS CHAR), txt, LENGTH(big) FROM typed WHERE id = 1",
    )
    .await;
    assert_eq!(kept, vec![vec![s("42"), s("from mysql"), s("96000")]]);
    assert_eq!(
        mysql_rows(&mut my, "SELECT count(*) FROM typed WHERE id = 1002").await,
        vec![vec![s("0")]]
    );
    assert_eq!(
        mysql_rows(
            &mut my,
            "SELECT CAST(id AS CHAR) FROM items WHERE id IN (50, 2000000)"
        )
        .await,
        vec![vec![s("2000000")]],
        "a key change moves the row"
    );
    // Every row equal on both sides, seen from both sides.
    let (code, out) = verify(&config).await;
    assert_eq!(
        code, 0,
        "MySQL equals PostgreSQL after the reverse stream:\n{out}"
    );

    // A value MySQL cannot hold stops ferry with the table, column, LSN and fix.
    pg.batch_execute("INSERT INTO typed (id, e) VALUES (1004, 'huge')")
        .await
        .expect("PostgreSQL takes it (text)");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.code(),
        Some(78),
        "a definite error:\n{}",
        ferry.log()
    );
    let log = ferry.log();
    assert!(
        log.contains("typed")
            && log.contains("column e")
            && log.contains("LSN")
            && log.contains("\"huge\" is not a member")
            && log.contains("ALTER TABLE"),
        "{log}"
    );
    assert_eq!(
        mysql_rows(&mut my, "SELECT count(*) FROM typed WHERE id = 1004").await,
        vec![vec![s("0")]],
        "nothing of the refused transaction is in MySQL"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_reverse_streaming_applies_each_change_once() {
    // A MySQL trigger counts every row operation the reverse stream applies.
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup(
        "revkill",
        &[
            "CREATE TABLE op_count (id INT PRIMARY KEY, n BIGINT NOT NULL)",
            "INSERT INTO op_count VALUES (1, 0)",
            "CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW UPDATE op_count SET n = n + 1 WHERE id = 1",
            "CREATE TRIGGER items_au AFTER UPDATE ON items FOR EACH ROW UPDATE op_count SET n = n + 1 WHERE id = 1",
            "CREATE TRIGGER items_ad AFTER DELETE ON items FOR EACH ROW UPDATE op_count SET n = n + 1 WHERE id = 1",
        ],
    )
    .await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let mut my = db.my().await;
    my.query_drop("UPDATE op_count SET n = 0")
        .await
        .expect("reset the count");

    // The application on PostgreSQL: transactions of 1–3 row operations, counted once acked.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let pg = db.pg().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ops = 0u64;
            let mut next = 1_000_000i32;
            let mut i = 0i32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                next += 1;
                let sql = match i % 4 {
                    0 => format!("UPDATE items SET n = n + 1 WHERE id = {}", 1 + i % 100),
                    1 => format!("INSERT INTO items VALUES ({next}, {i}, 'pg')"),
                    2 => format!(
                        "BEGIN; INSERT INTO items VALUES ({next}, {i}, 'pg'); UPDATE items SET note = 'x{i}' WHERE id = {next}; \
                         DELETE FROM items WHERE id = {next}; COMMIT"
                    ),
                    _ => format!("UPDATE items SET n = n + 1, note = 'u' WHERE id IN ({}, {})", 1 + i % 100, 1 + (i + 7) % 100),
                };
                let n = match i % 4 {
                    0 | 1 => 1,
                    _ => {
                        if i % 4 == 2 {
                            3
                        } else {
                            2
                        }
                    }
                };
                if pg.batch_execute(&sql).await.is_ok() {
                    ops += n;
                }
            }
            ops
        })
    };
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        ferry.kill9_and_restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = writer.await.expect("writer");
    assert!(
        ops > 100,
        "the application wrote under load ({ops} row operations)"
    );
    wait_reverse_caught_up(&db, &mut ferry).await;

    let counted = mysql_rows(&mut my, "SELECT CAST(n AS CHAR) FROM op_count").await;
    eprintln!(
        "{ops} row operations on PostgreSQL across 5 SIGKILLs; MySQL's trigger counted {counted:?}"
    );
    assert_eq!(
        counted,
        vec![vec![Some(ops.to_string())]],
        "each PostgreSQL row operation applied exactly once:\n{}",
        ferry.log()
    );
    let on_mysql = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), CAST(n AS CHAR), note FROM items ORDER BY id",
    )
    .await;
    let on_pg = pg_rows(
        &db.pg().await,
        "SELECT id::text, n::text, note FROM items ORDER BY id",
    )
    .await;
    assert_eq!(on_mysql.len(), on_pg.len());
    assert!(
        on_mysql == on_pg,
        "first difference: {:?}",
        common::workload::first_diff(&on_mysql, &on_pg)
    );
    db.cleanup_dir();
}

/// A session on the test's PostgreSQL database as `role`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_brings_every_postgresql_write_back_and_the_forward_stream_resumes() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup("revback", &[]).await;
    let role = format!("app_{}", db.name);
    let admin = db.pg().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN; GRANT USAGE ON SCHEMA \"{d}\" TO \"{role}\"; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{d}\" TO \"{role}\"",
            d = db.name
        ))
        .await
        .expect("application role");
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");

    // The application writes on PostgreSQL.
    let app = pg_as(&db, &role).await.expect("the application connects");
    app.batch_execute(
        "INSERT INTO items SELECT g, g, 'pg' FROM generate_series(1000001, 1000200) g; \
         UPDATE items SET n = -1 WHERE id <= 20; DELETE FROM items WHERE id BETWEEN 30 AND 39; \
         UPDATE tags SET uses = 99 WHERE tag = 'red'",
    )
    .await
    .expect("writes on PostgreSQL");
    let cfg = config.to_str().expect("utf-8").to_string();
    let route = db.dir.join("route");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "rollback".into(),
            "--config".into(),
            cfg.clone(),
            "--json".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Without a role to freeze, nothing is done.
    let (code, r, out) = run_ferry(args(&[])).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(r["outcome"], "refused", "{out}");

    // A row the reverse stream wrote, changed on MySQL behind its back (row counts stay equal):
    // the rollback compares every row the reverse stream changed, finds it and changes nothing.
    wait_reverse_caught_up(&db, &mut ferry).await;
    let mut my = db.my().await;
    my.query_drop("UPDATE items SET note = 'tampered' WHERE id = 1000005")
        .await
        .expect("a write behind the reverse stream's back");
    let switch = format!("echo mysql > {}", route.display());
    let (code, r, out) = run_ferry(args(&["--app-role", &role, "--switch-command", &switch])).await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(r["outcome"], "failed", "{out}");
    let message = r["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rows differ") && message.contains("1000005"),
        "{out}"
    );
    assert!(!route.exists(), "the switch command did not run");
    assert_eq!(phase_of(&admin).await, "switched", "{out}");
    my.query_drop("UPDATE items SET note = 'pg' WHERE id = 1000005")
        .await
        .expect("the difference repaired");

    let (code, r, out) = run_ferry(args(&["--app-role", &role, "--switch-command", &switch])).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(r["outcome"], "rolled_back", "{out}");
    // 200 inserts, 20 updates and 10 deletes of items, one update of tags: each key compared.
    let verified = r["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "verify"))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        verified.contains("231 rows the reverse stream changed are equal"),
        "{out}"
    );
    let left: Option<i64> = my
        .query_first("SELECT COUNT(*) FROM ferry.reverse_changed WHERE stream = 'main'")
        .await
        .expect("the record");
    assert_eq!(left, Some(0), "the record of the switch is cleared");
    assert!(r["write_unavailable_seconds"].as_f64().is_some(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&route).expect("route").trim(),
        "mysql"
    );
    assert!(
        pg_as(&db, &role).await.is_err(),
        "the application role is frozen on PostgreSQL"
    );

    // Every write PostgreSQL took is in MySQL, and MySQL is writable again.
    let rows = |sql: &str| sql.to_string();
    let on_mysql = mysql_rows(
        &mut my,
        &rows("SELECT CAST(id AS CHAR), CAST(n AS CHAR), note FROM items ORDER BY id"),
    )
    .await;
    let on_pg = pg_rows(
        &admin,
        "SELECT id::text, n::text, note FROM items ORDER BY id",
    )
    .await;
    assert_eq!(on_mysql.len(), 100 + 200 - 10);
    assert!(
        on_mysql == on_pg,
        "first difference: {:?}",
        common::workload::first_diff(&on_mysql, &on_pg)
    );
    let ro: Option<i64> = my
        .query_first("SELECT @@global.read_only")
        .await
        .expect("read_only");
    assert_eq!(ro, Some(0), "MySQL is writable");
    assert_eq!(phase_of(&admin).await, "replicating");

    // The forward stream resumes after the reverse stream's writes: MySQL's new writes reach
    // PostgreSQL, the reverse writes are not applied again (no loop).
    my.query_drop("INSERT INTO items VALUES (5000, 5, 'mysql again'); UPDATE items SET n = 7 WHERE id = 1000001")
        .await
        .expect("MySQL takes writes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (code, out) = verify(&config).await;
    assert_eq!(code, 0, "equal after the rollback:\n{out}\n{}", ferry.log());
    assert_eq!(
        pg_rows(
            &admin,
            "SELECT n::text FROM items WHERE id IN (5000, 1000001) ORDER BY id"
        )
        .await,
        vec![vec![Some("5".to_string())], vec![Some("7".to_string())]]
    );
    let names = ferry::reverse::names(&db.name, "main");
    assert_eq!(
        admin
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&names.slot]
            )
            .await
            .expect("slots")
            .len(),
        0,
        "the rollback dropped the slot"
    );

    // The migration can be cut over again, then completed.
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let (code, r, out) = run_ferry(vec![
        "complete".into(),
        "--config".into(),
        cfg.clone(),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["outcome"], "completed", "{out}");
    assert_eq!(
        admin
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&names.slot]
            )
            .await
            .expect("slots")
            .len(),
        0,
        "ferry complete dropped the slot"
    );
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    drop(app);
    db.cleanup_dir();
}

async fn phase_of(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one(
            "SELECT phase FROM ferry.migration WHERE stream = 'main'",
            &[],
        )
        .await
        .expect("phase")
        .get(0)
}

/// A `ferry rollback --json` running in the background.
struct RollbackCmd {
    child: std::process::Child,
    out: PathBuf,
}

impl RollbackCmd {
    fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> RollbackCmd {
        let out = config.with_extension(format!("rollback.{}.out", rand::random::<u32>()));
        let file = std::fs::File::create(&out).expect("output file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["rollback", "--config"])
            .arg(config)
            .arg("--json")
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().expect("output"))
            .stderr(file)
            .spawn()
            .expect("spawn ferry rollback");
        RollbackCmd { child, out }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RollbackCmd {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Whether `role` may log in, and its own `default_transaction_read_only` setting.
async fn role_state(admin: &tokio_postgres::Client, role: &str) -> (bool, Option<String>) {
    let r = admin
        .query_one(
            "SELECT r.rolcanlogin, (SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) c \
               WHERE s.setrole = r.oid AND s.setdatabase = 0 AND c LIKE 'default_transaction_read_only=%') \
             FROM pg_roles r WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .expect("role");
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_rollback_is_undone_or_finished_and_loses_no_write() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup("revkill", &[]).await;
    let role = format!("app_{}", db.name);
    let admin = db.pg().await;
    // The role's own setting must come back exactly, not merely be reset.
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN; ALTER ROLE \"{role}\" SET default_transaction_read_only = off; \
             GRANT USAGE ON SCHEMA \"{d}\" TO \"{role}\"; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{d}\" TO \"{role}\"",
            d = db.name
        ))
        .await
        .expect("application role");
    let before = role_state(&admin, &role).await;
    assert_eq!(
        before,
        (true, Some("default_transaction_read_only=off".to_string()))
    );
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let app_write = |db: &TestDb, role: &str, batch: i32| {
        let (db_name, role) = (db.name.clone(), role.to_string());
        async move {
            let (client, conn) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(pg_port())
                .user(&role)
                .dbname(&db_name)
                .options(format!("-c search_path={db_name}"))
                .connect(tokio_postgres::NoTls)
                .await
                .expect("the application connects: PostgreSQL is primary and writable");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let base = 2_000_000 + batch * 1000;
            client
                .batch_execute(&format!(
                    "INSERT INTO items SELECT g, {batch}, 'pg batch {batch}' FROM generate_series({base}, {base} + 49) g; \
                     UPDATE items SET n = n + 1 WHERE id = {}",
                    batch + 1
                ))
                .await
                .expect("the application writes on PostgreSQL");
        }
    };
    let role_args = ["--app-role", role.as_str(), "--timeout", "60s"];

    // 1. The command SIGKILLed in `rollback_frozen` (the roles frozen): the daemon undoes the
    //    freeze once its lease runs out — the role gets its exact prior state back and
    //    PostgreSQL stays primary.
    app_write(&db, &role, 1).await;
    let mut cmd = RollbackCmd::start(
        &config,
        &role_args,
        &[("FERRY_FAULT_PAUSE", "rollback_frozen:60")],
    );
    wait_phase(
        &db,
        "rollback_frozen",
        Duration::from_secs(60),
        "rollback 1",
    )
    .await;
    let started = Instant::now();
    while role_state(&admin, &role).await.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the role was never frozen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pg_as(&db, &role).await.is_err(), "the role is frozen");
    cmd.kill9();
    wait_phase(
        &db,
        "switched",
        Duration::from_secs(30),
        "the daemon undoes rollback 1",
    )
    .await;
    assert_eq!(
        role_state(&admin, &role).await,
        before,
        "the role's prior state is back"
    );
    assert!(
        read_only(&db).await,
        "MySQL stays read-only while PostgreSQL is primary"
    );
    app_write(&db, &role, 2).await;

    // 2. SIGKILLed in `rollback_drained` (MySQL about to be writable): nothing is undone by
    //    itself; `ferry rollback --abort` makes MySQL read-only again and unfreezes the role.
    let mut cmd = RollbackCmd::start(
        &config,
        &role_args,
        &[("FERRY_FAULT_PAUSE", "rollback_drained:60")],
    );
    wait_phase(
        &db,
        "rollback_drained",
        Duration::from_secs(60),
        "rollback 2",
    )
    .await;
    cmd.kill9();
    // Past the lease (10 s) and a few daemon ticks: still drained, not undone.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(phase(&db).await, "rollback_drained");
    let cfg = config.to_str().expect("utf-8").to_string();
    let (code, r, out) = run_ferry(vec![
        "rollback".into(),
        "--config".into(),
        cfg.clone(),
        "--json".into(),
        "--abort".into(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(r["outcome"], "aborted", "{out}");
    assert_eq!(phase(&db).await, "switched");
    assert!(read_only(&db).await, "the abort left MySQL read-only");
    assert_eq!(role_state(&admin, &role).await, before);
    app_write(&db, &role, 3).await;

    // 3. SIGKILLed in `rollback_drained` again; `ferry rollback` run again (once the lease is
    //    gone) finishes: MySQL writable, phase replicating.
    let mut cmd = RollbackCmd::start(
        &config,
        &role_args,
        &[("FERRY_FAULT_PAUSE", "rollback_drained:60")],
    );
    wait_phase(
        &db,
        "rollback_drained",
        Duration::from_secs(60),
        "rollback 3",
    )
    .await;
    cmd.kill9();
    let mut args: Vec<String> = vec![
        "rollback".into(),
        "--config".into(),
        cfg.clone(),
        "--json".into(),
    ];
    args.extend(role_args.iter().map(|s| s.to_string()));
    let (code, r, out) = run_ferry(args.clone()).await;
    assert_eq!(
        code, 1,
        "refused while the killed command's lease runs: {out}"
    );
    assert_eq!(r["outcome"], "refused", "{out}");
    let started = Instant::now();
    let out = loop {
        let (code, r, out) = run_ferry(args.clone()).await;
        if r["outcome"] == "rolled_back" {
            assert_eq!(code, 0, "{out}");
            break out;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(out.contains("interrupted rollback finished"), "{out}");
    assert_eq!(phase(&db).await, "replicating");
    assert!(
        !read_only(&db).await,
        "MySQL writable after the finished rollback"
    );

    // Every write the application made on PostgreSQL, in all three attempts, is in MySQL;
    // the forward stream resumes and both sides are equal.
    let mut my = db.my().await;
    let on_mysql = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), CAST(n AS CHAR), note FROM items ORDER BY id",
    )
    .await;
    let on_pg = pg_rows(
        &admin,
        "SELECT id::text, n::text, note FROM items ORDER BY id",
    )
    .await;
    assert_eq!(on_mysql.len(), 100 + 3 * 50);
    assert!(
        on_mysql == on_pg,
        "first difference: {:?}",
        common::workload::first_diff(&on_mysql, &on_pg)
    );
    my.query_drop("INSERT INTO items VALUES (6000, 6, 'mysql again')")
        .await
        .expect("MySQL takes writes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (code, out) = verify(&config).await;
    assert_eq!(code, 0, "equal after the rollback:\n{out}\n{}", ferry.log());
    let events: Vec<String> = admin
        .query(
            "SELECT event FROM ferry.migration_log WHERE stream = 'main' ORDER BY id",
            &[],
        )
        .await
        .expect("log")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        events.iter().any(|e| e.starts_with("undone by the daemon")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("aborted by `ferry rollback --abort`")),
        "{events:?}"
    );
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgresql_transaction_larger_than_the_memory_bounds_arrives_whole() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup(
        "revlarge",
        &["CREATE TABLE docs (id INT PRIMARY KEY, body LONGBLOB NOT NULL)"],
    )
    .await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let before = peak_rss_mib(ferry.pid());
    // One PostgreSQL transaction of 200 rows of 1 MiB (400 MiB as pgoutput sends bytea, in
    // hex), with a small change before and after it in the same transaction.
    let pg = db.pg().await;
    pg.batch_execute(
        "BEGIN; UPDATE items SET n = 41 WHERE id = 1; \
         INSERT INTO docs SELECT g, convert_to(repeat(md5(g::text), 32768), 'UTF8') FROM generate_series(1, 200) g; \
         UPDATE items SET n = 42 WHERE id = 2; COMMIT; \
         INSERT INTO items VALUES (7000, 7, 'after the large one')",
    )
    .await
    .expect("the large transaction on PostgreSQL");
    wait_reverse_caught_up(&db, &mut ferry).await;
    let peak = peak_rss_mib(ferry.pid());
    let mut my = db.my().await;
    let on_mysql = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), MD5(body), CAST(LENGTH(body) AS CHAR) FROM docs ORDER BY id",
    )
    .await;
    let on_pg = pg_rows(
        &pg,
        "SELECT id::text, md5(body), length(body)::text FROM docs ORDER BY id",
    )
    .await;
    assert_eq!(on_mysql.len(), 200);
    assert!(
        on_mysql == on_pg,
        "first difference: {:?}",
        common::workload::first_diff(&on_mysql, &on_pg)
    );
    assert_eq!(
        mysql_rows(
            &mut my,
            "SELECT CAST(n AS CHAR) FROM items WHERE id IN (1, 2, 7000) ORDER BY id"
        )
        .await,
        vec![
            vec![Some("41".to_string())],
            vec![Some("42".to_string())],
            vec![Some("7".to_string())]
        ]
    );
    assert!(
        ferry.log().contains("applied in parts"),
        "the transaction went in parts:\n{}",
        ferry.log()
    );
    // Reported, not asserted: across runs it was mostly 350-360 MiB, but some runs peaked
    // far higher during one slow FETCH for reasons not yet understood (README, known limits).
    eprintln!("ferry peak RSS: {before} MiB before the transaction, {peak} MiB after");
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    db.cleanup_dir();
}

/// A table without a key keeps its identical rows through the switch and the reverse stream:
/// each PostgreSQL update or delete of one of several equal rows changes exactly one on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_without_a_key_keeps_its_duplicates_through_the_reverse_stream() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup(
        "revkeyless",
        &[
            "CREATE TABLE logs (kind VARCHAR(8) NOT NULL, n INT, note TEXT)",
            "INSERT INTO logs VALUES ('a', 1, NULL), ('a', 1, NULL), ('a', 1, NULL), ('b', 2, 'x'), ('b', 2, 'x')",
        ],
    )
    .await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let pg = db.pg().await;
    pg.batch_execute(
        "DELETE FROM logs WHERE ctid = (SELECT ctid FROM logs WHERE kind = 'a' LIMIT 1); \
         UPDATE logs SET n = 3 WHERE ctid = (SELECT ctid FROM logs WHERE kind = 'b' LIMIT 1); \
         INSERT INTO logs VALUES ('c', NULL, NULL), ('c', NULL, NULL); \
         DELETE FROM logs WHERE ctid = (SELECT ctid FROM logs WHERE kind = 'c' LIMIT 1)",
    )
    .await
    .expect("writes on PostgreSQL");
    wait_reverse_caught_up(&db, &mut ferry).await;
    let mut my = db.my().await;
    let mysql = mysql_rows(&mut my, "SELECT kind, CAST(n AS CHAR), note FROM logs").await;
    let postgres = pg_rows(&pg, "SELECT kind, n::text, note FROM logs").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        postgres,
        vec![
            vec![s("a"), s("1"), None],
            vec![s("a"), s("1"), None],
            vec![s("b"), s("2"), s("x")],
            vec![s("b"), s("3"), s("x")],
            vec![s("c"), None, None],
        ]
    );
    assert_eq!(
        mysql, postgres,
        "MySQL holds the same rows, duplicates included"
    );
    let (code, out) = verify(&config).await;
    assert_eq!(code, 0, "{out}");
    db.cleanup_dir();
}

/// Case-insensitive keys under `types.case_insensitive = "icu"` after the switch: the application
/// writes on PostgreSQL by any spelling (a lookup by another case, a key whose case changes), and
/// MySQL receives each row byte for byte as PostgreSQL holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_keys_come_back_exactly_through_the_reverse_stream() {
    let Setup {
        _server,
        db,
        config,
        mut ferry,
    } = setup_with(
        "revci",
        &[
            "CREATE TABLE people (email VARCHAR(60) COLLATE utf8mb4_general_ci PRIMARY KEY, \
               name VARCHAR(20) COLLATE utf8mb4_general_ci) DEFAULT CHARSET utf8mb4",
            "INSERT INTO people VALUES ('Bob@x.org', 'Bob'), ('ann@x.org', 'Ann')",
        ],
        "\n[types]\ncase_insensitive = \"icu\"\n",
    )
    .await;
    let (code, report, out) = cutover(&config, &[]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");
    let pg = db.pg().await;
    pg.batch_execute(
        "UPDATE people SET name = 'Robert' WHERE email = 'BOB@X.ORG'; \
         INSERT INTO people VALUES ('Dan@x.org', 'Dan'); \
         UPDATE people SET email = 'DAN@X.ORG' WHERE email = 'dan@x.org'; \
         DELETE FROM people WHERE email = 'ANN@x.org'",
    )
    .await
    .expect("the application's writes on PostgreSQL");
    wait_reverse_caught_up(&db, &mut ferry).await;
    let mut my = db.my().await;
    let mysql = mysql_rows(
        &mut my,
        "SELECT CAST(email AS BINARY), CAST(name AS BINARY) FROM people",
    )
    .await;
    let postgres = pg_rows(&pg, "SELECT email, name FROM people").await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        postgres,
        vec![
            vec![s("Bob@x.org"), s("Robert")],
            vec![s("DAN@X.ORG"), s("Dan")]
        ]
    );
    assert_eq!(
        mysql, postgres,
        "MySQL holds the rows with PostgreSQL's spelling"
    );
    let (code, out) = verify(&config).await;
    assert_eq!(code, 0, "{out}");
    db.cleanup_dir();
}
