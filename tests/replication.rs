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
