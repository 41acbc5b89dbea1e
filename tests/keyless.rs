//! Tables without a primary key: the whole row is the identity. Duplicate rows must stay as many
//! as the source holds through the backfill (one snapshot, changes before it skipped), the
//! stream (each update or delete touches exactly one equal row), a kill -9 and a restart, and
//! `ferry verify` compares such a table as a multiset.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

/// The keyless table as sorted rows (duplicates kept), on each side.
const MY_ROWS: &str = "SELECT kind, n, note, CAST(amount AS CHAR) FROM events";
const PG_ROWS: &str = "SELECT kind, n::text, note, amount::text FROM events";

/// Random single-row and many-row changes on the keyless table, some in multi-statement
/// transactions, until `stop` is set. Small value domains make many rows identical.
async fn workload(db_name: String, port: u16, stop: Arc<AtomicBool>) -> u64 {
    let mut my = mysql_at(port, Some(&db_name)).await;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut statements = 0;
    while !stop.load(Ordering::Relaxed) {
        let kind = ["a", "b", "c"][next(3) as usize];
        let n = next(25);
        let sql = match next(8) {
            0 | 1 => format!(
                "INSERT INTO events VALUES ('{kind}', {n}, 'x', 0.25), ('{kind}', {n}, 'x', 0.25)"
            ),
            2 => format!("INSERT INTO events VALUES ('{kind}', {n}, NULL, 1.5)"),
            3 => format!("UPDATE events SET n = n + 1 WHERE kind = '{kind}' AND n = {n} LIMIT 1"),
            4 => format!("UPDATE events SET note = 'u' WHERE kind = '{kind}' AND n = {n}"),
            5 => format!("DELETE FROM events WHERE kind = '{kind}' AND n = {n} LIMIT 1"),
            6 => format!(
                "BEGIN; DELETE FROM events WHERE kind = '{kind}' AND n = {n} LIMIT 2; \
                 INSERT INTO events VALUES ('{kind}', {n}, NULL, 1.5); \
                 UPDATE events SET amount = amount + 1 WHERE kind = '{kind}' LIMIT 1; COMMIT"
            ),
            _ => format!("DELETE FROM events WHERE kind = '{kind}' AND n = {n} AND note IS NULL"),
        };
        my.query_drop(&sql).await.expect("workload statement");
        statements += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_with_duplicates_ends_equal_through_backfill_stream_and_kill() {
    let db = TestDb::new("keyless").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE events (kind VARCHAR(8) NOT NULL, n INT, note TEXT, amount DOUBLE); \
         INSERT INTO events SELECT ELT(1 + seq % 3, 'a', 'b', 'c'), seq % 25, \
           IF(seq % 4 = 0, NULL, 'x'), (seq % 7) / 4 FROM seq_1_to_3000; \
         CREATE TABLE other (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO other SELECT seq, CONCAT('v', seq) FROM seq_1_to_20000",
    )
    .await
    .expect("tables");
    let dupes: Vec<(i64,)> = my
        .query("SELECT COUNT(*) FROM events GROUP BY kind, n, note, amount HAVING COUNT(*) > 1 LIMIT 1")
        .await
        .expect("duplicates");
    assert!(!dupes.is_empty(), "the seed has identical rows");

    // Changes run throughout: before ferry starts, while the keyed table is copied (the keyless
    // one is copied after it, in a snapshot later than the stream's start), while streaming.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(workload(db.name.clone(), db.my_port, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = db.config_backfill(
        "main",
        "chunk_rows = 200\nparallel_tables = 1",
        "[verify]\ncontinuous = false\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(180), &mut ferry)
        .await;
    let log = ferry.log();
    assert!(
        log.contains("tables without a primary key are replicated"),
        "the start names the keyless tables and the cost:\n{log}"
    );
    assert!(log.contains("copying a table without a key whole"), "{log}");
    // A crash mid-stream: plain inserts and one-row deletes are not idempotent, so a replayed
    // transaction would show as an extra or missing duplicate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ferry.kill9_and_restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let statements = writer.await.expect("workload");
    assert!(
        statements > 100,
        "the workload ran ({statements} statements)"
    );
    db.wait_caught_up(&db.name, "main", Duration::from_secs(180), &mut ferry)
        .await;

    let source = mysql_rows(&mut my, MY_ROWS).await;
    let pg = db.pg().await;
    let target = pg_rows(&pg, PG_ROWS).await;
    assert_eq!(
        source.len(),
        target.len(),
        "row counts (duplicates included)"
    );
    assert!(source == target, "the multiset of rows differs");
    let keys = pg_rows(
        &pg,
        "SELECT conname::text FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u')",
    )
    .await;
    assert!(
        keys.is_empty(),
        "no key is invented on the target: {keys:?}"
    );

    let path = config.to_str().expect("utf-8").to_string();
    let verify = move |path: String| {
        tokio::task::spawn_blocking(move || ferry_cmd(&["verify", "--config", &path]))
    };
    let (code, out) = verify(path.clone()).await.expect("verify ran");
    assert_eq!(code, 0, "verify finds both sides equal:\n{out}");

    // Drift in multiplicity only: one of several identical rows goes missing on the target.
    let (kind, n): (String, i32) = {
        let r = pg
            .query_one(
                "SELECT kind, n FROM events WHERE note IS NOT DISTINCT FROM 'x' AND amount = 0.25 \
                 GROUP BY kind, n, note, amount HAVING count(*) > 1 LIMIT 1",
                &[],
            )
            .await
            .expect("a duplicated row on the target");
        (r.get(0), r.get(1))
    };
    pg.execute(
        "DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE kind = $1 AND n = $2 \
         AND note = 'x' AND amount = 0.25 LIMIT 1)",
        &[&kind, &n],
    )
    .await
    .expect("drift");
    let (code, out) = verify(path).await.expect("verify ran");
    assert_ne!(code, 0, "verify finds the missing duplicate:\n{out}");
    assert!(out.contains("missing in target"), "{out}");
    assert!(
        out.contains(&format!("kind={kind}")),
        "names the row: {out}"
    );
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}

/// The rows each side holds more often than the other, with the surplus.
fn multiset_difference(source: &[Vec<Option<String>>], target: &[Vec<Option<String>>]) -> String {
    let mut counts: std::collections::BTreeMap<&Vec<Option<String>>, i64> = Default::default();
    for r in source {
        *counts.entry(r).or_default() += 1;
    }
    for r in target {
        *counts.entry(r).or_default() -= 1;
    }
    let diff: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(r, n)| format!("{r:?} source-target {n:+}"))
        .collect();
    format!(
        "{} source rows, {} target rows; {}",
        source.len(),
        target.len(),
        diff.join("; ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_re_copied_while_streaming_with_every_duplicate() {
    let db = TestDb::new("keylessrecopy").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE events (kind VARCHAR(8) NOT NULL, n INT, note TEXT, amount DOUBLE); \
         INSERT INTO events SELECT ELT(1 + seq % 3, 'a', 'b', 'c'), seq % 25, \
           IF(seq % 4 = 0, NULL, 'x'), (seq % 7) / 4 FROM seq_1_to_5000; \
         CREATE TABLE other (id INT PRIMARY KEY, v INT); \
         INSERT INTO other SELECT seq, 0 FROM seq_1_to_100",
    )
    .await
    .expect("tables");
    let config = db.config_backfill("main", "chunk_rows = 300", "[verify]\ncontinuous = false\n");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    // Drift the re-copy must undo: one of several identical rows gone, one row extra.
    let pg = db.pg().await;
    pg.batch_execute(
        "DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE kind = 'a' AND n = 3 LIMIT 1);
         INSERT INTO events VALUES ('zz', 0, 'extra', 0)",
    )
    .await
    .expect("drift");

    // The keyless table and a keyed one keep changing throughout the re-copy.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(workload(db.name.clone(), db.my_port, stop.clone()));
    let keyed_db = db.name.clone();
    let keyed_port = db.my_port;
    let keyed_stop = stop.clone();
    let keyed = tokio::spawn(async move {
        let mut my = mysql_at(keyed_port, Some(&keyed_db)).await;
        let mut i = 0u64;
        while !keyed_stop.load(Ordering::Relaxed) {
            my.query_drop(format!(
                "UPDATE other SET v = v + 1 WHERE id = {}",
                1 + i % 100
            ))
            .await
            .expect("keyed write");
            i += 1;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = config.to_str().expect("utf-8").to_string();
    let table = format!("{}.events", db.name);
    let recopy_path = path.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        ferry_cmd(&[
            "backfill",
            "--config",
            &recopy_path,
            "--table",
            &table,
            "--wait",
        ])
    })
    .await
    .expect("backfill command");
    assert_eq!(code, 0, "re-copy finished: {out}\n{}", ferry.log());
    // Changes after the swap go to the new table.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let statements = writer.await.expect("workload");
    keyed.await.expect("keyed writes");
    assert!(
        statements > 100,
        "the workload ran ({statements} statements)"
    );
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    let source = mysql_rows(&mut my, MY_ROWS).await;
    let target = pg_rows(&pg, PG_ROWS).await;
    assert!(
        source == target,
        "the multiset of rows differs: {}\n{}",
        multiset_difference(&source, &target),
        ferry.log()
    );
    let log = ferry.log();
    assert!(
        log.contains("the reader holds until it is injected")
            && log.contains("reading the binlog again from the boundary the reader held at")
            && log.contains("swapping in the shadow table"),
        "{log}"
    );

    let other_my = mysql_rows(
        &mut my,
        "SELECT CAST(id AS CHAR), CAST(v AS CHAR) FROM other",
    )
    .await;
    let other_pg = pg_rows(&pg, "SELECT id::text, v::text FROM other").await;
    assert_eq!(other_my, other_pg, "the keyed table kept streaming exactly");
    let (code, out) =
        tokio::task::spawn_blocking(move || ferry_cmd(&["verify", "--config", &path]))
            .await
            .expect("verify ran");
    assert_eq!(code, 0, "verify finds both sides equal:\n{out}");
    ferry.signal("TERM");
    ferry.wait_exit(Duration::from_secs(30)).await;
    db.cleanup_dir();
}
