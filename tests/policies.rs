//! Values PostgreSQL cannot hold (zero dates, NUL in text) under each policy, against the real
//! servers: `refuse` stops with table, column, position and fix and loses nothing once the
//! operator chooses; `null` / `value:` substitute and count; `dead_letter` keeps the row whole in
//! `ferry.dead_letter` and counts it — and in every case no other row is lost.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

async fn setup(db: &TestDb) -> mysql_async::Conn {
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE p (id INT PRIMARY KEY, d DATE NULL, t VARCHAR(20) NULL)")
        .await
        .expect("table");
    // Zero dates and NUL characters are what lax SQL modes let applications write.
    my.query_drop("SET SESSION sql_mode = ''")
        .await
        .expect("lax mode");
    my
}

async fn write_bad_rows(my: &mut mysql_async::Conn) {
    my.query_drop("INSERT INTO p VALUES (1, '2024-01-01', 'fine')")
        .await
        .expect("row 1");
    my.query_drop("INSERT INTO p VALUES (2, '0000-00-00', 'zero date')")
        .await
        .expect("row 2");
    my.query_drop("INSERT INTO p VALUES (3, '2024-01-03', CONCAT('a', CHAR(0), 'b'))")
        .await
        .expect("row 3");
    my.query_drop("INSERT INTO p VALUES (4, '2024-01-04', 'after')")
        .await
        .expect("row 4");
}

async fn rows(db: &TestDb) -> Vec<(i32, Option<String>, Option<String>)> {
    db.pg()
        .await
        .query("SELECT id, d::text, t FROM p ORDER BY id", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_stops_with_table_column_position_and_fix_and_loses_nothing() {
    let db = TestDb::new("refuse").await;
    let mut my = setup(&db).await;
    let start = db.start_position().await;
    let config = db.config("main", &start, "");
    let mut ferry = Ferry::start(&config, &[]);
    write_bad_rows(&mut my).await;
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    let log = ferry.log();
    assert!(
        log.contains(&format!(
            "table {}.p, column `d`, at binlog mariadb-bin.",
            db.name
        )),
        "names table, column and position: {log}"
    );
    assert!(
        log.contains("zero date") && log.contains("types.zero_date"),
        "says what and how to fix: {log}"
    );
    assert_eq!(
        rows(&db).await,
        vec![(1, Some("2024-01-01".into()), Some("fine".into()))]
    );

    // The operator chooses a policy; replication resumes at the refused row and nothing is lost.
    let config = db.config(
        "main",
        &start,
        "[types]\nzero_date = \"null\"\nnul_in_text = \"value:<nul>\"",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        rows(&db).await,
        vec![
            (1, Some("2024-01-01".into()), Some("fine".into())),
            (2, None, Some("zero date".into())),
            (3, Some("2024-01-03".into()), Some("<nul>".into())),
            (4, Some("2024-01-04".into()), Some("after".into())),
        ]
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substitution_is_applied_and_counted() {
    let db = TestDb::new("subst").await;
    let mut my = setup(&db).await;
    let start = db.start_position().await;
    let listen = free_listen_addr();
    let config = db.config_metrics(
        "main",
        &start,
        &listen,
        "[types]\nzero_date = \"value:1970-01-01\"\nnul_in_text = \"null\"",
    );
    let mut ferry = Ferry::start(&config, &[]);
    write_bad_rows(&mut my).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        rows(&db).await,
        vec![
            (1, Some("2024-01-01".into()), Some("fine".into())),
            (2, Some("1970-01-01".into()), Some("zero date".into())),
            (3, Some("2024-01-03".into()), None),
            (4, Some("2024-01-04".into()), Some("after".into())),
        ]
    );
    let (code, body) = http_get(&listen, "/metrics").expect("scrape");
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &body,
            "ferry_values_substituted_total",
            &["kind=\"zero_date\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "ferry_values_substituted_total",
            &["kind=\"nul_in_text\""]
        ),
        Some(1.0)
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_keeps_the_whole_row_and_counts_it() {
    let db = TestDb::new("deadl").await;
    let mut my = setup(&db).await;
    let start = db.start_position().await;
    let listen = free_listen_addr();
    let config = db.config_metrics(
        "main",
        &start,
        &listen,
        "[types]\nzero_date = \"dead_letter\"\nnul_in_text = \"dead_letter\"",
    );
    let mut ferry = Ferry::start(&config, &[]);
    write_bad_rows(&mut my).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        rows(&db).await,
        vec![
            (1, Some("2024-01-01".into()), Some("fine".into())),
            (4, Some("2024-01-04".into()), Some("after".into())),
        ],
        "only the two bad rows are set aside"
    );
    let dead = db
        .pg()
        .await
        .query(
            "SELECT source_table, binlog_position, column_name, kind, row_image::text \
             FROM ferry.dead_letter ORDER BY id",
            &[],
        )
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].get::<_, String>(0), format!("{}.p", db.name));
    assert!(
        dead[0].get::<_, String>(1).starts_with("mariadb-bin."),
        "position recorded"
    );
    assert_eq!(dead[0].get::<_, String>(2), "d");
    assert_eq!(dead[0].get::<_, String>(3), "zero_date");
    let image: serde_json::Value =
        serde_json::from_str(&dead[0].get::<_, String>(4)).expect("json");
    assert_eq!(image["id"], serde_json::json!(2));
    assert_eq!(image["t"], serde_json::json!("zero date"));
    assert_eq!(dead[1].get::<_, String>(3), "nul_in_text");
    let image: serde_json::Value =
        serde_json::from_str(&dead[1].get::<_, String>(4)).expect("json");
    assert_eq!(
        image["t"],
        serde_json::json!({"hex": "610062"}),
        "the NUL byte is kept, in hex"
    );
    let (_, body) = http_get(&listen, "/metrics").expect("scrape");
    assert_eq!(
        metric(
            &body,
            "ferry_dead_letter_rows_total",
            &["kind=\"zero_date\"", "table=\"p\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "ferry_dead_letter_rows_total",
            &["kind=\"nul_in_text\""]
        ),
        Some(1.0)
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_applies_the_same_policies() {
    let db = TestDb::new("bfpol").await;
    let mut my = setup(&db).await;
    write_bad_rows(&mut my).await;
    let config = db.config_backfill(
        "main",
        "",
        "[types]\nzero_date = \"dead_letter\"\nnul_in_text = \"null\"",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        rows(&db).await,
        vec![
            (1, Some("2024-01-01".into()), Some("fine".into())),
            (3, Some("2024-01-03".into()), None),
            (4, Some("2024-01-04".into()), Some("after".into())),
        ]
    );
    let n: i64 = db
        .pg()
        .await
        .query_one(
            "SELECT count(*) FROM ferry.dead_letter WHERE kind = 'zero_date' AND binlog_position = 'backfill'",
            &[],
        )
        .await
        .expect("dead letters")
        .get(0);
    assert_eq!(n, 1);
    db.cleanup_dir();
}

/// A zero date in a key column cannot become NULL: `ferry validate` and the daemon's start
/// refuse it with the table, the column and the fix before anything is copied; under
/// `value:<date>` the same table is copied with the substitute as its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_date_in_a_key_column_is_refused_at_preflight_unless_substituted() {
    let db = TestDb::new("zerokey").await;
    let mut my = db.my().await;
    my.query_drop(
        "SET SESSION sql_mode = ''; \
         CREATE TABLE k (day DATE NOT NULL, n INT NOT NULL, PRIMARY KEY (day, n)); \
         INSERT INTO k VALUES ('2024-01-01', 1), ('0000-00-00', 2); \
         CREATE TABLE s (id INT PRIMARY KEY, at DATETIME NOT NULL, KEY (at)); \
         INSERT INTO s VALUES (1, '2024-01-01 10:00:00')",
    )
    .await
    .expect("tables");
    let config = db.config_backfill("main", "", "[types]\nzero_date = \"null\"\n");
    let path = config.to_str().expect("utf-8").to_string();
    let (code, out) = ferry_cmd(&["validate", "--config", &path]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("zero dates in keys")
            && out.contains("column `day`")
            && out.contains("value:<date>"),
        "names the table, the column and the fix:\n{out}"
    );
    assert!(out.contains(&format!("{}.k", db.name)), "{out}");
    let mut ferry = Ferry::start(&config, &[]);
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    assert!(
        ferry.log().contains("zero dates in keys"),
        "{}",
        ferry.log()
    );

    let config = db.config_backfill("main", "", "[types]\nzero_date = \"value:1970-01-01\"\n");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM k WHERE day = '1970-01-01' AND n = 2")
            .await,
        1,
        "{}",
        ferry.log()
    );
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}
