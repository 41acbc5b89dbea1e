//! End-to-end replication against the real servers: a random mixed workload (inserts, updates,
//! primary-key changes, deletes, multi-statement transactions, rollbacks, a 100,000-row
//! transaction) streamed live by the real `ferry` binary leaves PostgreSQL equal to MariaDB, row
//! for row.

mod common;

use std::time::Duration;

use common::workload::*;
use common::*;
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_with_a_large_transaction_replicates_exactly() {
    let db = TestDb::new("random").await;
    let mut my = db.my().await;
    my.query_drop(SCHEMA).await.expect("schema");
    let start = db.start_position().await;
    let config = db.config("s1", &start, "");
    let mut ferry = Ferry::start(&config, &[]);

    let mut next_id = 0;
    random_workload(&mut my, 1, 400, &mut next_id).await;
    // One source transaction of 100,000 rows.
    my.query_drop("BEGIN").await.expect("begin");
    my.query_drop(
        "INSERT INTO `lines` SELECT 1000000 + seq, seq % 7, seq % 60000, CONCAT('bulk ', seq) FROM seq_1_to_100000",
    )
    .await
    .expect("bulk insert");
    my.query_drop("UPDATE accounts SET balance = 0 WHERE id % 3 = 0")
        .await
        .expect("update");
    my.query_drop("COMMIT").await.expect("commit");
    random_workload(&mut my, 2, 400, &mut next_id).await;
    my.query_drop("DELETE FROM `lines` WHERE acct > 1050000")
        .await
        .expect("bulk delete");

    db.wait_caught_up(&db.name, "s1", Duration::from_secs(240), &mut ferry)
        .await;
    assert_equal(&db).await;
    let pg = db.pg().await;
    let n: i64 = pg
        .query_one("SELECT count(*) FROM lines WHERE acct > 1000000", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 50_000, "the bulk rows that were not deleted arrived");
    db.cleanup_dir();
}

/// Inserted rows go to PostgreSQL as plain INSERTs (cheaper than `ON CONFLICT`) inside a
/// savepoint; when the target already holds one of the keys (as after a backfill overlapping the
/// stream), the statement is undone and the same rows are applied as upserts. Either way every
/// source row operation is applied exactly once: an AFTER ROW trigger sees each one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_of_keys_the_target_already_holds_are_applied_once_as_upserts() {
    let db = TestDb::new("plain_insert").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(40) NOT NULL)")
        .await
        .expect("table");
    let start = db.start_position().await;
    let config = db.config("s1", &start, "");
    let mut ferry = Ferry::start_with(&config, &[], &[("RUST_LOG", "info,ferry::sink=debug")], &[]);
    my.query_drop("INSERT INTO items VALUES (0, 'first')")
        .await
        .expect("first row");
    db.wait_caught_up(&db.name, "s1", Duration::from_secs(60), &mut ferry)
        .await;

    let pg = db.pg().await;
    pg.batch_execute(
        "CREATE TABLE applied (n bigint NOT NULL);
         INSERT INTO applied VALUES (0);
         CREATE FUNCTION count_applied() RETURNS trigger LANGUAGE plpgsql
           SET search_path FROM CURRENT AS
           $$ BEGIN UPDATE applied SET n = n + 1; RETURN NULL; END $$;
         CREATE TRIGGER count_applied AFTER INSERT OR UPDATE OR DELETE ON items
           FOR EACH ROW EXECUTE FUNCTION count_applied();
         -- Rows the target holds already, with stale values.
         ALTER TABLE items DISABLE TRIGGER count_applied;
         INSERT INTO items SELECT g, 'stale' FROM generate_series(100, 109) g;
         ALTER TABLE items ENABLE TRIGGER count_applied;",
    )
    .await
    .expect("trigger and stale rows");

    // 200 inserted rows in one transaction, ten of them already on the target.
    my.query_drop("INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1_to_200")
        .await
        .expect("conflicting batch");
    // More inserts right after: none conflicts.
    my.query_drop("INSERT INTO items SELECT seq, CONCAT('row ', seq) FROM seq_1001_to_1100")
        .await
        .expect("clean batch");
    db.wait_caught_up(&db.name, "s1", Duration::from_secs(60), &mut ferry)
        .await;

    let on_source = mysql_rows(&mut my, "SELECT CAST(id AS CHAR), label FROM items").await;
    let on_target = pg_rows(&pg, "SELECT id::text, label FROM items").await;
    assert_eq!(on_source.len(), 301);
    assert!(
        on_source == on_target,
        "items differ: first mismatch {:?}",
        first_diff(&on_source, &on_target)
    );
    let stale = db
        .count("SELECT count(*) FROM items WHERE label = 'stale'")
        .await;
    assert_eq!(stale, 0, "the stale rows were replaced by the source's");
    let applied = db.count("SELECT n FROM applied").await;
    assert_eq!(
        applied, 300,
        "each source row operation applied exactly once (the undone INSERT left no trace)"
    );
    let log = ferry.log();
    assert!(
        log.contains("a plain INSERT met an existing key"),
        "the conflicting batch took the fallback path:\n{log}"
    );
    db.cleanup_dir();
}
