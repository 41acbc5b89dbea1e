//! The backfill against the real servers: existing rows are copied while the application keeps
//! writing (inserts, updates, deletes, primary-key changes on the rows being copied), the copy
//! survives SIGKILL by resuming after its last finished chunk, and the target ends equal to the
//! source, row for row.

mod common;

use std::time::Duration;

use common::workload::*;
use common::*;
use mysql_async::prelude::Queryable;

async fn populate(my: &mut mysql_async::Conn, accounts: u64, lines: u64) {
    my.query_drop(SCHEMA).await.expect("schema");
    my.query_drop(format!(
        "INSERT INTO accounts SELECT seq, CONCAT('u', seq, '@x.test'), CONCAT('name ', seq), \
         (seq % 9999) + 0.25, '2024-01-01 10:00:00.000001' + INTERVAL seq SECOND, \
         ELT(1 + seq % 4, '', 'x', 'y,z', 'x,y,z'), ELT(1 + seq % 3, 'a', 'b', 'c') FROM seq_1_to_{accounts}"
    ))
    .await
    .expect("accounts");
    my.query_drop(format!(
        "INSERT INTO `lines` SELECT 1 + seq % {accounts}, seq, seq % 60000, \
         IF(seq % 5 = 0, NULL, CONCAT('line ', seq, ' tab\\there')) FROM seq_1_to_{lines}"
    ))
    .await
    .expect("lines");
}

async fn unique_constraint_exists(db: &TestDb) -> bool {
    let n: i64 = db
        .pg()
        .await
        .query_one(
            "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname = 'accounts' AND c.contype = 'u'",
            &[],
        )
        .await
        .expect("constraints")
        .get(0);
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_under_concurrent_writes_ends_equal() {
    let db = TestDb::new("bfload").await;
    let mut my = db.my().await;
    populate(&mut my, 5_000, 40_000).await;
    let mut next_id = 5_000;

    let config = db.config_backfill("main", "chunk_rows = 1000\nrows_per_second = 25000", "");
    let mut ferry = Ferry::start(&config, &[]);
    // The application keeps writing on the rows being copied while the copy runs.
    random_workload(&mut my, 7, 600, &mut next_id).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(240), &mut ferry)
        .await;
    assert_equal(&db).await;
    let log = ferry.log();
    assert!(log.contains("backfill started"), "{log}");
    assert!(log.contains("backfill copied every table"), "{log}");
    assert!(
        log.contains("backfill progress"),
        "progress is logged off a terminal: {log}"
    );

    // Once the stream passed the copy's end, the unique key is built.
    for _ in 0..300 {
        if unique_constraint_exists(&db).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        unique_constraint_exists(&db).await,
        "unique constraint on email:\n{}",
        ferry.log()
    );
    // Streaming goes on after the hand-over.
    random_workload(&mut my, 8, 100, &mut next_id).await;
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_equal(&db).await;
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_from_its_last_chunk_after_sigkill() {
    let db = TestDb::new("bfkill").await;
    let mut my = db.my().await;
    populate(&mut my, 3_000, 60_000).await;
    let config = db.config_backfill(
        "main",
        "chunk_rows = 2000\nrows_per_second = 15000\nparallel_tables = 1",
        "",
    );
    let mut ferry = Ferry::start(&config, &[]);
    let pg = db.pg().await;
    let copied = |pg: tokio_postgres::Client| async move {
        pg.query_opt(
            "SELECT COALESCE(sum(rows_copied), 0)::bigint FROM ferry.backfill WHERE stream = 'main'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map_or(0i64, |r| r.get(0))
    };
    let mut kills = 0;
    let mut last = 0;
    while kills < 3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = copied(db.pg().await).await;
        if now > last && now < 55_000 {
            ferry.kill9_and_restart();
            kills += 1;
            last = now;
        }
        assert!(ferry.try_exit().is_none(), "ferry died:\n{}", ferry.log());
    }
    db.wait_caught_up(&db.name, "main", Duration::from_secs(240), &mut ferry)
        .await;
    assert_equal(&db).await;
    let log = ferry.log();
    let runs = log.matches("resuming the backfill").count();
    assert!(
        runs >= 3,
        "each restart resumed the backfill ({runs}):\n{log}"
    );
    let chunks = log
        .matches("resuming the table copy after its last finished chunk")
        .count();
    assert!(
        chunks >= 2,
        "restarts resumed mid-table, after a chunk ({chunks}):\n{log}"
    );
    let n: i64 = pg
        .query_one("SELECT count(*) FROM lines", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 60_000);
    db.cleanup_dir();
}

/// Terminates ferry's PostgreSQL sessions (application_name 'ferry') in the test's database.
async fn terminate_ferry_sessions(pg: &tokio_postgres::Client) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'ferry'
            AND pid <> pg_backend_pid()) t",
        &[],
    )
    .await
    .expect("terminate")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_in_process_after_target_connection_losses() {
    let db = TestDb::new("bfpglost").await;
    let mut my = db.my().await;
    populate(&mut my, 3_000, 60_000).await;
    let config = db.config_backfill(
        "main",
        "chunk_rows = 2000\nrows_per_second = 15000\nparallel_tables = 1",
        "",
    );
    let mut ferry = Ferry::start(&config, &[]);
    let pg = db.pg().await;
    let copied = || async {
        db.pg()
            .await
            .query_opt(
                "SELECT COALESCE(sum(rows_copied), 0)::bigint FROM ferry.backfill WHERE stream = 'main'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map_or(0i64, |r| r.get(0))
    };
    // Two losses mid-copy, each after more chunks finished.
    let mut losses = 0;
    let mut last = 0;
    for _ in 0..400 {
        if losses == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = copied().await;
        if now > last && now < 50_000 && terminate_ferry_sessions(&pg).await > 0 {
            losses += 1;
            last = now;
        }
        assert!(
            ferry.try_exit().is_none(),
            "ferry exited after losing its target connection:\n{}",
            ferry.log()
        );
    }
    assert_eq!(losses, 2, "two losses during the copy:\n{}", ferry.log());
    db.wait_caught_up(&db.name, "main", Duration::from_secs(240), &mut ferry)
        .await;
    let (_, lines) = assert_equal(&db).await;
    assert_eq!(lines, 60_000);
    let log = ferry.log();
    assert!(
        log.contains("backfill interrupted; resuming after the last finished chunks"),
        "the loss is retried in process:\n{log}"
    );
    assert!(
        log.contains("resuming the table copy after its last finished chunk"),
        "the copy resumed mid-table, not from the start:\n{log}"
    );
    assert_eq!(
        log.matches("backfill started").count(),
        1,
        "one backfill, resumed, not restarted:\n{log}"
    );
    assert!(ferry.try_exit().is_none(), "ferry is still running:\n{log}");
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_refuses_a_non_empty_target_table() {
    let db = TestDb::new("bffull").await;
    let mut my = db.my().await;
    populate(&mut my, 10, 10).await;
    db.pg()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".lines (acct integer NOT NULL, n integer NOT NULL, \
             qty integer, note text, PRIMARY KEY (acct, n)); INSERT INTO \"{0}\".lines VALUES (1, 1, 1, 'old')",
            db.name
        ))
        .await
        .expect("pre-existing target");
    let config = db.config_backfill("main", "", "");
    let mut ferry = Ferry::start(&config, &[]);
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "a definite error (EX_CONFIG)");
    let log = ferry.log();
    assert!(
        log.contains("already holds 1 rows") && log.contains("TRUNCATE"),
        "{log}"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_table_is_recopied_while_streaming_continues() {
    let db = TestDb::new("recopy").await;
    let mut my = db.my().await;
    populate(&mut my, 2_000, 20_000).await;
    let config = db.config_backfill("main", "chunk_rows = 500", "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_equal(&db).await;

    // Drift in the target: missing, changed and extra rows.
    db.pg()
        .await
        .batch_execute(
            "DELETE FROM lines WHERE n % 97 = 0; UPDATE lines SET qty = 0, note = 'drift' WHERE n % 89 = 0; \
             INSERT INTO lines VALUES (999999, 1, 1, 'extra')",
        )
        .await
        .expect("inject drift");

    // The application keeps writing to both tables during the re-copy.
    let load_db = db.name.clone();
    let load = tokio::spawn(async move {
        let mut conn = mysql(Some(&load_db)).await;
        let mut next_id = 2_000;
        random_workload(&mut conn, 42, 400, &mut next_id).await
    });
    let config_path = config.to_str().expect("utf8").to_string();
    let table = format!("{}.lines", db.name);
    let recopy = tokio::task::spawn_blocking(move || {
        ferry_cmd(&[
            "backfill",
            "--config",
            &config_path,
            "--table",
            &table,
            "--wait",
        ])
    });
    let (code, out) = recopy.await.expect("backfill command");
    assert_eq!(code, 0, "re-copy finished: {out}\n{}", ferry.log());
    assert!(out.contains("done"), "{out}");
    load.await.expect("load");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_equal(&db).await;
    let log = ferry.log();
    assert!(
        log.contains("re-copy: every chunk injected; swapping in the shadow table"),
        "{log}"
    );
    let shadows: i64 = db
        .pg()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%__ferry_%'",
            &[],
        )
        .await
        .expect("leftovers")
        .get(0);
    assert_eq!(shadows, 0, "no shadow or old table is left behind");
    db.cleanup_dir();
}
