//! Case-insensitive collations (`types.case_insensitive`): a `_ci` column's unique key rejects
//! `BOB@x` next to `bob@x` on MySQL; under "citext" and "icu" it must on PostgreSQL too, and a
//! lookup by another spelling must find the row — while the values themselves (their case
//! included) arrive exactly through the backfill and the stream, a `_bin` column stays
//! case-sensitive, and `ferry verify` still tells a case difference from equality.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

const MY_ROWS: &str = "SELECT CAST(email AS BINARY), CAST(name AS BINARY), CAST(code AS BINARY), \
     CAST(bio AS BINARY) FROM people ORDER BY CAST(email AS BINARY)";
const PG_ROWS: &str = "SELECT convert_to(email::text, 'UTF8'), convert_to(name::text, 'UTF8'), \
     convert_to(code::text, 'UTF8'), convert_to(bio::text, 'UTF8') FROM people \
     ORDER BY convert_to(email::text, 'UTF8')";

async fn byte_rows_my(my: &mut mysql_async::Conn) -> Vec<Vec<Option<Vec<u8>>>> {
    let rows: Vec<mysql_async::Row> = my.query(MY_ROWS).await.expect("source rows");
    rows.into_iter()
        .map(|r| {
            (0..4)
                .map(|i| r.get::<Option<Vec<u8>>, _>(i).flatten())
                .collect()
        })
        .collect()
}

async fn byte_rows_pg(pg: &tokio_postgres::Client) -> Vec<Vec<Option<Vec<u8>>>> {
    let rows = pg.query(PG_ROWS, &[]).await.expect("target rows");
    rows.iter()
        .map(|r| (0..4).map(|i| r.get::<_, Option<Vec<u8>>>(i)).collect())
        .collect()
}

/// SQLSTATE of a statement that must fail.
async fn refused(pg: &tokio_postgres::Client, sql: &str) -> String {
    match pg.batch_execute(sql).await {
        Ok(()) => panic!("PostgreSQL accepted {sql}"),
        Err(e) => e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| e.to_string()),
    }
}

async fn count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Waits until `table` has a unique constraint: they are built once the stream has passed the
/// copy's end.
async fn wait_for_unique_constraint(pg: &tokio_postgres::Client, table: &str, ferry: &Ferry) {
    let sql = format!(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = '{table}'::regclass AND contype = 'u'"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(pg, &sql).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the unique key of {table} was never built:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn carried_case_insensitively(mode: &str) {
    let db = TestDb::new(&format!("ci_{mode}")).await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE people (\
           email VARCHAR(60) COLLATE utf8mb4_general_ci PRIMARY KEY, \
           name VARCHAR(20) COLLATE utf8mb4_unicode_ci NOT NULL, \
           code VARCHAR(10) COLLATE utf8mb4_bin, \
           bio TEXT COLLATE utf8mb4_general_ci, \
           UNIQUE KEY uk_name (name)) DEFAULT CHARSET utf8mb4; \
         INSERT INTO people VALUES ('bob@x.org', 'Bob', 'A', 'Hello'), \
           ('Ann@x.org', 'ann', 'a', 'x'), ('zoë@x.org', 'Zoë', 'Z', NULL); \
         INSERT INTO people SELECT CONCAT(IF(seq % 2, 'U', 'u'), 'ser', seq, '@X.org'), \
           CONCAT(IF(seq % 3, 'N', 'n'), seq), IF(seq % 2, 'b', 'B'), REPEAT('Aa', seq % 50) \
           FROM seq_1_to_800",
    )
    .await
    .expect("source table");
    let pg = db.pg().await;
    pg.batch_execute("CREATE EXTENSION IF NOT EXISTS citext SCHEMA public")
        .await
        .expect("citext extension");
    let config = db.config_backfill(
        "main",
        "chunk_rows = 100",
        &format!("[verify]\ncontinuous = false\n\n[types]\ncase_insensitive = \"{mode}\"\n"),
    );
    let path = config.to_str().expect("utf-8").to_string();

    let (code, ddl) = ferry_cmd(&["schema", "--config", &path]);
    assert_eq!(code, 0, "ferry schema:\n{ddl}");
    let marker = if mode == "icu" {
        "COLLATE"
    } else {
        "\"public\".citext"
    };
    assert!(
        ddl.contains(marker),
        "ferry schema shows the case-insensitive columns ({marker}):\n{ddl}"
    );

    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    // The stream: a key whose case changes, a delete by another spelling (the binlog holds the
    // stored one), a unique value whose case changes, and an insert.
    my.query_drop(
        "UPDATE people SET email = 'BOB@X.ORG' WHERE email = 'bob@x.org'; \
         DELETE FROM people WHERE email = 'ANN@X.ORG'; \
         UPDATE people SET name = 'bob', bio = 'HELLO' WHERE email = 'bob@x.org'; \
         INSERT INTO people VALUES ('Carl@x.org', 'CARL', 'c', 'Hi'); \
         BEGIN; UPDATE people SET name = 'tmp' WHERE email = 'user1@X.org'; \
         UPDATE people SET name = 'n1' WHERE email = 'user2@x.org'; COMMIT",
    )
    .await
    .expect("source changes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_eq!(
        byte_rows_my(&mut my).await,
        byte_rows_pg(&pg).await,
        "every value arrives with its case, byte for byte"
    );

    // The schema behaves as MySQL's did (unique constraints are built once the stream has
    // passed the copy's end).
    wait_for_unique_constraint(&pg, "people", &ferry).await;
    let column = |c: &str| {
        format!(
            "SELECT format_type(a.atttypid, a.atttypmod) || ' ' || coalesce(co.collname, '') \
             FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation \
               AND a.attcollation <> 100 \
             WHERE a.attrelid = 'people'::regclass AND a.attname = '{c}'"
        )
    };
    let email: String = pg
        .query_one(&column("email"), &[])
        .await
        .expect("email")
        .get(0);
    let code_col: String = pg
        .query_one(&column("code"), &[])
        .await
        .expect("code")
        .get(0);
    if mode == "icu" {
        assert_eq!(email, "character varying(60) ferry_ci");
    } else {
        assert!(email.starts_with("citext"), "{email}");
    }
    assert_eq!(
        code_col.trim(),
        "character varying(10)",
        "a _bin column stays case-sensitive"
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM people WHERE email = 'bob@x.ORG'").await,
        1,
        "a lookup by another spelling finds the row"
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM people WHERE code = 'b'").await,
        400,
        "the _bin column compares exactly"
    );
    assert_eq!(
        refused(
            &pg,
            "INSERT INTO people (email, name) VALUES ('carl@X.ORG', 'someone')"
        )
        .await,
        "23505",
        "the primary key rejects another spelling of an existing key"
    );
    assert_eq!(
        refused(
            &pg,
            "INSERT INTO people (email, name) VALUES ('new@x.org', 'BOB')"
        )
        .await,
        "23505",
        "the unique key rejects another spelling too"
    );
    let too_long = refused(
        &pg,
        "INSERT INTO people (email, name) VALUES ('long@x.org', 'abcdefghijklmnopqrstu')",
    )
    .await;
    assert!(
        too_long == "23514" || too_long == "22001",
        "the source's length limit holds: {too_long}"
    );

    let verify = |path: String| {
        tokio::task::spawn_blocking(move || ferry_cmd(&["verify", "--config", &path]))
    };
    let (code, out) = verify(path.clone()).await.expect("verify ran");
    assert_eq!(code, 0, "verify finds both sides equal:\n{out}");
    // A difference in case alone is a difference.
    pg.batch_execute("UPDATE people SET email = 'carl@x.org' WHERE email = 'Carl@x.org'")
        .await
        .expect("drift");
    let (code, out) = verify(path).await.expect("verify ran");
    assert_ne!(code, 0, "verify finds the key spelled differently:\n{out}");
    assert!(out.contains("Carl@x.org"), "names the row: {out}");

    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;

    // The same stream under another setting: the existing table does not compare as the
    // setting says, and ferry says so instead of writing into it.
    let other = db.config_backfill(
        "main",
        "chunk_rows = 100",
        "[verify]\ncontinuous = false\n\n[types]\ncase_insensitive = \"text\"\n",
    );
    let mut again = Ferry::start(&other, &[]);
    let status = again.wait_exit(Duration::from_secs(60)).await;
    let log = again.log();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(
        log.contains("types.case_insensitive maps it to case-sensitive text"),
        "names the mismatch: {log}"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_keys_stay_case_insensitive_under_icu() {
    carried_case_insensitively("icu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_keys_stay_case_insensitive_under_citext() {
    carried_case_insensitively("citext").await;
}

/// `utf8mb4_general_ci` keeps a full-width `Ａ` apart from `a`; ICU's case-insensitive level does
/// not. Such a pair stops ferry with a definite error naming the table, the key and where it
/// resumes — never a retry loop, never a lost row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_mysql_keeps_apart_but_postgresql_holds_equal_stops_ferry_clearly() {
    let db = TestDb::new("ci_conflict").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE w (id INT PRIMARY KEY, v VARCHAR(10) COLLATE utf8mb4_general_ci, \
           UNIQUE KEY uk_v (v)) DEFAULT CHARSET utf8mb4; INSERT INTO w VALUES (1, 'a')",
    )
    .await
    .expect("source table");
    let config = db.config_backfill(
        "main",
        "chunk_rows = 100",
        "[types]\ncase_insensitive = \"icu\"\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let pg = db.pg().await;
    wait_for_unique_constraint(&pg, "w", &ferry).await;
    my.query_drop("SET NAMES utf8mb4; INSERT INTO w VALUES (2, 'Ａ')")
        .await
        .expect("MySQL accepts the pair");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.code(),
        Some(78),
        "a definite error:\n{}",
        ferry.log()
    );
    let log = ferry.log();
    assert!(log.contains("unique-key conflict"), "{log}");
    assert!(log.contains("(v)=(Ａ)"), "names the key: {log}");
    assert!(
        log.contains("after checkpoint mariadb-bin."),
        "names the position: {log}"
    );
    db.cleanup_dir();
}
