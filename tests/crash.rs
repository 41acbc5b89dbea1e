//! Exactly-once under SIGKILL: the real `ferry` process is killed at random moments during a
//! continuous write load and restarted each time. Afterwards PostgreSQL equals MariaDB, and an
//! AFTER ROW trigger on the target proves no change was applied twice: the count of applied row
//! operations equals that of a crash-free run over the same binlog.

mod common;

use std::time::Duration;

use common::workload::*;
use common::*;
use mysql_async::prelude::Queryable;
use rand::Rng;

/// The target tables as ferry would create them, plus a trigger that logs every row operation.
fn target_ddl(schema: &str) -> String {
    format!(
        "CREATE SCHEMA \"{schema}\";
         SET search_path = \"{schema}\";
         CREATE TABLE accounts (
           id integer NOT NULL PRIMARY KEY,
           email varchar(100) NOT NULL,
           name varchar(50),
           balance numeric(12,2),
           updated timestamp(6),
           flags text NOT NULL,
           kind text,
           CONSTRAINT accounts_email UNIQUE (email) DEFERRABLE INITIALLY DEFERRED);
         CREATE TABLE lines (
           acct integer NOT NULL, n integer NOT NULL, qty integer, note text,
           PRIMARY KEY (acct, n));
         CREATE TABLE public.op_log (tbl text NOT NULL, op text NOT NULL);
         CREATE FUNCTION public.log_op() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.op_log VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$;
         CREATE TRIGGER accounts_log AFTER INSERT OR UPDATE OR DELETE ON accounts
           FOR EACH ROW EXECUTE FUNCTION public.log_op();
         CREATE TRIGGER lines_log AFTER INSERT OR UPDATE OR DELETE ON lines
           FOR EACH ROW EXECUTE FUNCTION public.log_op();"
    )
}

async fn op_counts(client: &tokio_postgres::Client) -> Vec<(String, String, i64)> {
    client
        .query(
            "SELECT tbl, op, count(*) FROM public.op_log GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("op counts")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let db = TestDb::new("crash").await;
    let mut my = db.my().await;
    my.query_drop(SCHEMA).await.expect("schema");
    db.pg()
        .await
        .batch_execute(&target_ddl(&db.name))
        .await
        .expect("target ddl");
    let reference_db = format!("{}_ref", db.name);
    let admin = pg("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{reference_db}\"; "))
        .await
        .expect("drop ref");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{reference_db}\""))
        .await
        .expect("create ref");
    let reference = pg_with_path(&reference_db, &db.name).await;
    reference
        .batch_execute(&target_ddl(&db.name))
        .await
        .expect("reference ddl");

    let start = db.start_position().await;
    let config = db.config("crashy", &start, "[apply]\ngroup_max_rows = 2000\n");
    let mut ferry = Ferry::start(&config, &[]);

    // A continuous write load on its own connection.
    let load_db = db.name.clone();
    let load = tokio::spawn(async move {
        let mut conn = mysql(Some(&load_db)).await;
        let mut next_id = 0;
        let mut statements = 0;
        for round in 0..12u64 {
            statements += random_workload(&mut conn, 100 + round, 150, &mut next_id).await;
            conn.query_drop(format!(
                "INSERT INTO `lines` SELECT {}, seq, seq, 'batch' FROM seq_1_to_3000",
                2_000_000 + round
            ))
            .await
            .expect("batch insert");
        }
        statements
    });

    // The first kill, too, lands on a process that recorded its start (a loaded machine can
    // take longer than the first pause for preflight; a restart would then be a new stream).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ferry.log().contains("new stream: starting") {
        assert!(
            std::time::Instant::now() < deadline,
            "ferry did not start streaming:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    while !load.is_finished() || kills < 6 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        ferry.kill9_and_restart();
        kills += 1;
        // The next kill lands on a streaming process, not on one still in preflight.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ferry
            .log()
            .matches("resuming from the target's checkpoint")
            .count()
            < kills
        {
            assert!(
                std::time::Instant::now() < deadline,
                "ferry did not resume after kill {kills}:\n{}",
                ferry.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let statements = load.await.expect("load task");
    assert!(statements > 1000, "the load ran ({statements} statements)");
    db.wait_caught_up(&db.name, "crashy", Duration::from_secs(240), &mut ferry)
        .await;
    let crashed = db.pg().await;
    assert_equal_in(&db, &crashed).await;
    let restarts = ferry
        .log()
        .matches("resuming from the target's checkpoint")
        .count();
    assert!(
        restarts >= 6,
        "ferry restarted from its checkpoint after each kill ({restarts}):\n{}",
        ferry.log()
    );
    ferry.kill9();

    // The same binlog range, replicated without crashes into the reference database.
    let ref_config = db.config_into("clean", &start, &reference_db, "");
    let mut clean = Ferry::start(&ref_config, &[]);
    db.wait_caught_up(&reference_db, "clean", Duration::from_secs(240), &mut clean)
        .await;
    assert_equal_in(&db, &reference).await;

    let crashed_ops = op_counts(&crashed).await;
    let clean_ops = op_counts(&reference).await;
    assert!(!clean_ops.is_empty());
    assert_eq!(
        crashed_ops, clean_ops,
        "applied row operations differ between the crashed and the crash-free run"
    );
    drop(clean);
    db.cleanup_dir();
}
