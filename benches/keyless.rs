//! Benchmark of tables without a primary key (run it with `scripts/bench.sh keyless`).
//!
//! Data: `events` (no key: `kind VARCHAR(8) NOT NULL, n INT NOT NULL, note TEXT`) and `keyed`
//! (the same columns behind an `id` primary key), BENCH_ROWS rows each (default 100,000), in
//! MariaDB database `bench_keyless`; ferry backfills both, then streams.
//! Workload per run: BENCH_CHANGES single-row updates (default 1,000) in transactions of 10,
//! written to one table while ferry is paused (SIGUSR1); measured from the resume (SIGUSR2) to
//! the checkpoint reaching the source's end (row changes/s), so the source's own time to find
//! rows without an index is not counted. Both tables in every run, alternating; BENCH_RUNS
//! runs (default 3); medians reported. With BENCH_INDEX=1 the keyless table also has an index
//! on `n` (what the start warning suggests).
//!
//! What it shows: an update on a keyless table is a delete of one equal row — a lookup by every
//! column, a scan of the table unless an index serves it — plus an insert.

use std::time::Instant;

use mysql_async::prelude::Queryable;

mod common;
use common::*;

const DB: &str = "bench_keyless";

async fn setup(rows: u64, index: bool) {
    let mut c = my(None).await;
    c.query_drop(format!(
        "DROP DATABASE IF EXISTS {DB}; CREATE DATABASE {DB}"
    ))
    .await
    .expect("source database");
    // `seq_1_to_N` lives in the current database.
    let mut c = my(Some(DB)).await;
    let index = if index { ", KEY (n)" } else { "" };
    c.query_drop(format!(
        "CREATE TABLE {DB}.events (kind VARCHAR(8) NOT NULL, n INT NOT NULL, note TEXT{index}); \
         CREATE TABLE {DB}.keyed (id INT PRIMARY KEY, kind VARCHAR(8) NOT NULL, n INT NOT NULL, note TEXT); \
         INSERT INTO {DB}.events SELECT ELT(1 + seq % 3, 'a', 'b', 'c'), seq, 'x' FROM seq_1_to_{rows}; \
         INSERT INTO {DB}.keyed SELECT seq, ELT(1 + seq % 3, 'a', 'b', 'c'), seq, 'x' FROM seq_1_to_{rows}"
    ))
    .await
    .expect("source tables");
}

/// `changes` single-row updates of random rows, 10 per transaction; seconds until applied.
async fn run_updates(
    table: &str,
    column: &str,
    rows: u64,
    changes: u64,
    round: u64,
    client: &tokio_postgres::Client,
    child: &mut std::process::Child,
) -> f64 {
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill");
    };
    signal("-USR1");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut c = my(Some(DB)).await;
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ round;
    for _ in 0..changes / 10 {
        let mut sql = String::from("BEGIN;");
        for _ in 0..10 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let row = 1 + seed % rows;
            sql.push_str(&format!(
                "UPDATE {table} SET note = 'r{round}' WHERE {column} = {row};"
            ));
        }
        sql.push_str("COMMIT");
        c.query_drop(sql).await.expect("update transaction");
    }
    let (file, pos) = master_position().await;
    let started = Instant::now();
    signal("-USR2");
    wait_caught_up(client, "keyless", &file, pos, child).await;
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let rows = env_u64("BENCH_ROWS", 100_000);
    let changes = env_u64("BENCH_CHANGES", 1_000).max(10);
    let runs = env_u64("BENCH_RUNS", 3).max(1);
    let index = env_u64("BENCH_INDEX", 0) == 1;
    setup(rows, index).await;
    fresh_target(DB).await;
    let dir = root().join("target/bench-keyless");
    let config = write_config(&dir, "keyless", DB, "current", 19_391, false);
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "include = [\"bench.*\"]",
        &format!("include = [\"{DB}.*\"]"),
    ) + "[backfill]\nenabled = true\n";
    std::fs::write(&config, text).expect("config");
    let mut child = spawn_ferry(&config, &dir.join("ferry.log"));
    let client = pg(DB).await;
    let started = Instant::now();
    wait_backfilled(&client, "keyless", &mut child).await;
    let (file, pos) = master_position().await;
    wait_caught_up(&client, "keyless", &file, pos, &mut child).await;
    eprintln!(
        "backfill of {rows} keyless + {rows} keyed rows: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (mut keyless, mut keyed) = (Vec::new(), Vec::new());
    for round in 0..runs {
        let k = run_updates("events", "n", rows, changes, round, &client, &mut child).await;
        let p = run_updates("keyed", "id", rows, changes, round, &client, &mut child).await;
        eprintln!(
            "run {}: keyless {:.0} row changes/s, keyed {:.0} row changes/s",
            round + 1,
            changes as f64 / k,
            changes as f64 / p
        );
        keyless.push(changes as f64 / k);
        keyed.push(changes as f64 / p);
    }
    println!(
        "keyless ({rows} rows, index on n: {index}): {:.0} row changes/s median; keyed: {:.0} row changes/s median ({runs} runs of {changes} single-row updates)",
        median(&mut keyless),
        median(&mut keyed)
    );
    stop(child);
}
