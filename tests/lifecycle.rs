//! The daemon's lifecycle against the real servers: graceful stop, a rewound target, a purged
//! start position, a schema change that must stop replication, and preflight refusals.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

const TABLE: &str =
    "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(40), price DECIMAL(10,2))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_a_rewound_target_is_refused() {
    let db = TestDb::new("rewind").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    for i in 0..50 {
        my.query_drop(format!(
            "INSERT INTO items VALUES ({i}, 'item {i}', {i}.99)"
        ))
        .await
        .expect("insert");
    }
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (_, caught_up_at) = db.checkpoint("main").await;

    ferry.signal("TERM");
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0:\n{}", ferry.log());
    assert_eq!(db.count("SELECT count(*) FROM items").await, 50);
    let (_, stopped_at) = db.checkpoint("main").await;
    assert!(
        stopped_at >= caught_up_at,
        "the checkpoint never moves back"
    );

    // Simulate restoring an older backup of the target: its checkpoint goes back.
    let start_offset: i64 = start
        .rsplit(':')
        .next()
        .expect("offset")
        .parse()
        .expect("num");
    db.pg()
        .await
        .execute(
            "UPDATE ferry.checkpoint SET binlog_offset = $1 WHERE stream = 'main'",
            &[&start_offset],
        )
        .await
        .expect("rewind");
    let mut refused = Ferry::start(&config, &[]);
    let status = refused.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(78),
        "a rewound target is refused as a definite error (no automatic restart)"
    );
    let log = refused.log();
    assert!(
        log.contains("restored or rewound") && log.contains("--accept-target-rewind"),
        "the message says what happened and what to do:\n{log}"
    );

    // The operator accepts it: replication resumes from the target's position, idempotently.
    let mut accepted = Ferry::start(&config, &["--accept-target-rewind"]);
    my.query_drop("INSERT INTO items VALUES (1000, 'after', 1.00)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut accepted)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 51);
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_on_a_replicated_table_stops_before_later_rows() {
    let db = TestDb::new("ddl").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    my.query_drop("CREATE TABLE other (id INT PRIMARY KEY)")
        .await
        .expect("other");
    let exclude = format!("exclude = [\"{}.other\"]", db.name);
    let start = db.start_position().await;
    let config = db.config_tables("main", &start, &exclude);
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (1, 'before', 1.00)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    // A schema change on a table that is not replicated is harmless...
    my.query_drop("ALTER TABLE other ADD COLUMN y INT")
        .await
        .expect("unrelated alter");
    my.query_drop("CREATE DATABASE IF NOT EXISTS ferry_unrelated")
        .await
        .ok();
    // ...one on a replicated table that cannot be carried exactly (narrowing) stops ferry.
    my.query_drop("ALTER TABLE items MODIFY label VARCHAR(6)")
        .await
        .expect("alter");
    my.query_drop("INSERT INTO items VALUES (2, 'after', 2.00)")
        .await
        .expect("insert");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.code(),
        Some(78),
        "ferry stops on the ALTER with the definite-error status:\n{}",
        ferry.log()
    );
    let log = ferry.log();
    assert!(log.contains("schema change on replicated table"), "{log}");
    assert!(
        log.contains(&format!("{}.items", db.name)),
        "names the table: {log}"
    );
    assert!(log.contains("--skip-ddl"), "says how to go on: {log}");
    assert_eq!(
        db.count("SELECT count(*) FROM items").await,
        1,
        "no row after the ALTER was applied"
    );

    // The operator mirrors the change in PostgreSQL and skips the statement once.
    let pos = log
        .split("--skip-ddl ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("position in message")
        .to_string();
    db.pg()
        .await
        .batch_execute("ALTER TABLE items ALTER COLUMN label TYPE varchar(6)")
        .await
        .expect("mirror");
    let mut resumed = Ferry::start(&config, &["--skip-ddl", &pos]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut resumed)
        .await;
    let row = db
        .pg()
        .await
        .query_one("SELECT label, price::text FROM items WHERE id = 2", &[])
        .await
        .expect("row 2 arrived after the skip");
    assert_eq!(row.get::<_, String>(0), "after");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("2.00"));
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_new_tables_replicate() {
    let db = TestDb::new("trunc").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)")
        .await
        .expect("insert");
    my.query_drop("TRUNCATE TABLE items")
        .await
        .expect("truncate");
    my.query_drop("INSERT INTO items VALUES (3, 'c', 3)")
        .await
        .expect("insert");
    my.query_drop("CREATE TABLE fresh (id BIGINT PRIMARY KEY, note VARCHAR(10))")
        .await
        .expect("create");
    my.query_drop("INSERT INTO fresh VALUES (1, 'new')")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let pg = db.pg().await;
    let ids: Vec<i32> = pg
        .query("SELECT id FROM items ORDER BY id", &[])
        .await
        .expect("items")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![3]);
    let note: String = pg
        .query_one("SELECT note FROM fresh WHERE id = 1", &[])
        .await
        .expect("a table created on the source while streaming is created and replicated")
        .get(0);
    assert_eq!(note, "new");
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_start_position_is_a_definite_error() {
    let db = TestDb::new("purged").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let config = db.config("main", "mariadb-bin.000000:4", "");
    let mut ferry = Ferry::start(&config, &[]);
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(78), "a purged position is definite");
    let log = ferry.log();
    assert!(
        log.contains("has been purged") && log.contains("oldest available"),
        "{log}"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_a_table_without_a_key_and_names_it() {
    let db = TestDb::new("nokey").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    my.query_drop("CREATE TABLE logs (at DATETIME, msg TEXT)")
        .await
        .expect("no key");
    let config = db.config("main", "current", "");
    let (code, out) = ferry_cmd(&["validate", "--config", config.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{}.logs has no primary key (identified by its whole row)",
            db.name
        )),
        "{out}"
    );
    assert!(out.contains("[ok  ] binlog_row_metadata"), "{out}");
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_can_start_from_a_mariadb_gtid_position() {
    let db = TestDb::new("gtid").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    my.query_drop("INSERT INTO items VALUES (1, 'before the start', 1.00)")
        .await
        .expect("insert");
    let gtid: String = my
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("gtid")
        .expect("binlog position");
    let config = db.config("main", &format!("gtid:{gtid}"), "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (2, 'after the start', 2.00)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let labels: Vec<String> = db
        .pg()
        .await
        .query("SELECT label FROM items ORDER BY id", &[])
        .await
        .expect("items")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        labels,
        vec!["after the start".to_string()],
        "starts right after the GTID"
    );
    let gtid_after: Option<String> = db
        .pg()
        .await
        .query_one(
            "SELECT gtid FROM ferry.checkpoint WHERE stream = 'main'",
            &[],
        )
        .await
        .expect("checkpoint")
        .get(0);
    assert!(
        gtid_after.is_some_and(|g| g.starts_with("0-1-")),
        "the checkpoint records the GTID state"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_transactions_on_replicated_tables_are_refused_not_applied() {
    let db = TestDb::new("xa").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (1, 'plain', 1.00)")
        .await
        .expect("insert");
    for sql in [
        "XA START 'x1'",
        "INSERT INTO items VALUES (2, 'in xa', 2.00)",
        "XA END 'x1'",
        "XA PREPARE 'x1'",
        "XA ROLLBACK 'x1'",
    ] {
        my.query_drop(sql).await.expect(sql);
    }
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    assert!(ferry.log().contains("XA transaction"), "{}", ferry.log());
    let labels: Vec<String> = db
        .pg()
        .await
        .query("SELECT label FROM items ORDER BY id", &[])
        .await
        .expect("items")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !labels.contains(&"in xa".to_string()),
        "the XA row was not applied"
    );
    // The operator skips it; everything before and after arrives, the XA row does not.
    let log = ferry.log();
    let pos = log
        .split("--skip-ddl ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("position in message")
        .to_string();
    let mut resumed = Ferry::start(&config, &["--skip-ddl", &pos]);
    my.query_drop("INSERT INTO items VALUES (3, 'after', 3.00)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut resumed)
        .await;
    let labels: Vec<String> = db
        .pg()
        .await
        .query("SELECT label FROM items ORDER BY id", &[])
        .await
        .expect("items")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, vec!["plain".to_string(), "after".to_string()]);
    db.cleanup_dir();
}

/// A change PostgreSQL refuses (here a target trigger raises) stops ferry with exit 78 and a
/// message naming the table and the last committed position, even when the source is quiet
/// after it: nothing waits for the next change to notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_stops_ferry_while_the_source_is_quiet() {
    let db = TestDb::new("refused").await;
    let mut my = db.my().await;
    my.query_drop(TABLE).await.expect("table");
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop("INSERT INTO items VALUES (1, 'fine', 1.00)")
        .await
        .expect("insert");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    db.pg()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'no more items'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .expect("trigger");
    // One change, then silence.
    my.query_drop("INSERT INTO items VALUES (2, 'refused', 2.00)")
        .await
        .expect("insert");
    let status = ferry.wait_exit(Duration::from_secs(30)).await;
    let log = ferry.log();
    assert_eq!(status.code(), Some(78), "a definite error:\n{log}");
    assert!(
        log.contains("no more items") && log.contains(".items") && log.contains("after checkpoint"),
        "the message names the cause, the table and the position:\n{log}"
    );
    assert_eq!(db.count("SELECT count(*) FROM items").await, 1);
    db.cleanup_dir();
}
