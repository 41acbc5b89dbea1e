//! Replication benchmark (run it with `scripts/bench.sh replication`).
//!
//! Data: `users` (BIGINT UNSIGNED key, VARCHAR email with a unique key, VARCHAR name,
//! DECIMAL(12,2), ENUM, SET, DATETIME(6), TIMESTAMP(3), TEXT, JSON; 1,000,000 rows) and `orders`
//! (composite key, DECIMAL(14,4), SMALLINT UNSIGNED, DATE, VARCHAR; 2,000,000 rows).
//! Workload: transactions of 10 single-row statements — 40% user updates, 30% order inserts,
//! 20% user inserts, 10% order deletes.
//!
//! 0. Setup (not measured): ferry's backfill copies the source into a base target database, so
//!    the target holds the same 1,000,000 users and 2,000,000 orders as the source, which is
//!    then vacuumed and analyzed (what autovacuum does within minutes of a bulk load); every run
//!    starts from a copy of it (`CREATE DATABASE … TEMPLATE`) and is first caught up.
//! 1. Catch-up: the backlog (BENCH_CHANGES row changes) is written with ferry stopped; then ferry
//!    starts and the time until its checkpoint reaches the source's end is measured (process
//!    start to caught up, preflight included). Peak RSS is ferry's VmHWM. Repeated BENCH_RUNS
//!    times; medians reported.
//!    With BENCH_DDL=1 the runs alternate: every second run writes its backlog in two halves with
//!    an `ALTER TABLE orders ADD COLUMN` between them, so ferry carries a schema change in the
//!    middle of the catch-up; the medians of both kinds are reported (2 × BENCH_RUNS runs).
//! 2. Steady state: with ferry running, the workload runs at BENCH_STEADY_RATE row changes/s for
//!    BENCH_STEADY_SECONDS; every transaction carries a marker row whose commit time the client
//!    records; a trigger on the target stamps the marker with `clock_timestamp()` when ferry
//!    writes it. Lag = target stamp − source commit time; p50/p99 reported.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;

mod common;
use common::workload::Workload;
use common::*;

/// Largest user id and order number on the source, so new rows never collide.
async fn id_base() -> (u64, u64) {
    let mut c = my(Some("bench")).await;
    let row: (Option<u64>, Option<i64>) = c
        .query_first("SELECT (SELECT MAX(id) FROM users), (SELECT MAX(order_no) FROM orders)")
        .await
        .expect("max ids")
        .expect("row");
    (row.0.unwrap_or(0) + 1, row.1.unwrap_or(0) as u64 + 1)
}

/// Writes `txns` transactions of 10 statements over `conns` connections.
async fn write_backlog(txns: u64, conns: u64, users: u64, orders: u64, round: u64) {
    let per = txns / conns;
    let base = id_base().await;
    let mut tasks = Vec::new();
    for w in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut c = my(Some("bench")).await;
            let mut wl = Workload::new(round * 100 + w, users, orders, base, w);
            for _ in 0..per {
                c.query_drop(wl.transaction(10))
                    .await
                    .expect("backlog transaction");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

/// SIGTERM and wait.
/// The base target: the source's rows, copied by ferry's backfill, unique constraints built.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users = env_u64("BENCH_USERS", 1_000_000);
    let orders = env_u64("BENCH_ORDERS", 2_000_000);
    let changes = env_u64("BENCH_CHANGES", 200_000);
    let runs = env_u64("BENCH_RUNS", 3);
    let with_ddl = env_u64("BENCH_DDL", 0) == 1;
    let total_runs = if with_ddl { runs * 2 } else { runs };
    let mut ddl_rates = Vec::new();
    let steady_seconds = env_u64("BENCH_STEADY_SECONDS", 60);
    let steady_rate = env_u64("BENCH_STEADY_RATE", 5_000);
    let dir = root().join("target/bench");

    if env_u64("BENCH_REUSE_SOURCE", 0) == 0 {
        setup_source(users, orders).await;
    }

    let base = "bench_base";
    if env_u64("BENCH_REUSE_BASE", 0) == 0 {
        build_base(base, &dir).await;
    }
    let mut rates = Vec::new();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let txns = changes / 10;
    let mut last_db = String::new();
    for run in 0..total_runs {
        let ddl_run = with_ddl && run % 2 == 1;
        let db = format!("bench_run_{run}");
        let admin = pg("postgres").await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .expect("drop run db");
        admin
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {base}"))
            .await
            .expect("copy the base target");
        // Catch the copy up to now (earlier runs' backlogs), unmeasured.
        let config = write_config(&dir, "base", &db, "current", 19_190 + run as u16, false);
        let client = pg(&db).await;
        let (fa, pa) = master_position().await;
        let mut child = spawn_ferry(&config, &dir.join(format!("run{run}-prep.log")));
        wait_caught_up(&client, "base", &fa, pa, &mut child).await;
        stop(child);
        let started = Instant::now();
        if ddl_run {
            write_backlog(txns / 2, 4, users, orders, run + 1).await;
            my(Some("bench"))
                .await
                .query_drop(format!(
                    "ALTER TABLE orders ADD COLUMN ddl_{run} INT DEFAULT {run}"
                ))
                .await
                .expect("schema change in the backlog");
            write_backlog(txns - txns / 2, 4, users, orders, run + 101).await;
        } else {
            write_backlog(txns, 4, users, orders, run + 1).await;
        }
        let written = started.elapsed();
        let (f1, p1) = master_position().await;
        let t0 = Instant::now();
        let mut child = spawn_ferry(&config, &dir.join(format!("run{run}.log")));
        wait_caught_up(&client, "base", &f1, p1, &mut child).await;
        let secs = t0.elapsed().as_secs_f64();
        let peak = peak_rss_mb(child.id());
        let cpu_s = cpu_seconds(child.id());
        stop(child);
        let rate = (txns * 10) as f64 / secs;
        eprintln!(
            "run {run}{}: backlog of {} row changes written in {written:.1?}; ferry caught up in {secs:.2} s = {rate:.0} row changes/s, peak RSS {peak:.1} MB, CPU {cpu_s:.1} s",
            if ddl_run { " (ADD COLUMN in the backlog)" } else { "" },
            txns * 10
        );
        if ddl_run {
            ddl_rates.push(rate);
            last_db = db;
            continue;
        }
        rates.push(rate);
        rss.push(peak);
        cpu.push(cpu_s);
        last_db = db;
    }
    if with_ddl {
        let plain = median(&mut rates.clone());
        let ddl = median(&mut ddl_rates);
        println!(
            "catch-up with an ADD COLUMN in the backlog: median {ddl:.0} row changes/s vs {plain:.0} without ({:+.1}%), {runs} runs each, alternating",
            (ddl / plain - 1.0) * 100.0
        );
    }
    let catchup_rate = median(&mut rates);
    let catchup_rss = median(&mut rss);
    println!(
        "catch-up: median {catchup_rate:.0} row changes/s over {runs} runs of {} changes; median peak RSS {catchup_rss:.1} MB; median ferry CPU {:.1} s",
        txns * 10,
        median(&mut cpu)
    );

    if steady_seconds == 0 {
        return;
    }
    // Steady state on the last run's target: ferry resumes from its checkpoint.
    let config = write_config(&dir, "base", &last_db, "current", 19_199, true);
    let client = pg(&last_db).await;
    let mut child = spawn_ferry(&config, &dir.join("steady.log"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commits: Arc<std::sync::Mutex<HashMap<i64, f64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let txn_rate = steady_rate as f64 / 10.0;
    let writers = 2u64;
    let base = id_base().await;
    // Markers of an earlier invocation (BENCH_REUSE_SOURCE=1) would collide with this one's.
    my(Some("bench"))
        .await
        .query_drop("DELETE FROM marks")
        .await
        .expect("old markers");
    let mut tasks = Vec::new();
    for w in 0..writers {
        let commits = commits.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = my(Some("bench")).await;
            let mut wl = Workload::new(900 + w, users, orders, base, w + 5);
            let interval = Duration::from_secs_f64(writers as f64 / txn_rate);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + Duration::from_secs(steady_seconds);
            let mut i = 0i64;
            while Instant::now() < end {
                tick.tick().await;
                i += 1;
                let mark = (w as i64 + 1) * 1_000_000_000 + i;
                let mut sql = String::from("BEGIN;");
                for _ in 0..9 {
                    sql.push_str(&wl.statement());
                    sql.push(';');
                }
                sql.push_str(&format!("INSERT INTO marks VALUES ({mark}, 'm');COMMIT"));
                c.query_drop(sql).await.expect("steady transaction");
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock")
                    .as_secs_f64();
                commits.lock().expect("lock").insert(mark, now);
                sent.fetch_add(10, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds(child.id());
    for t in tasks {
        t.await.expect("writer");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds(child.id()) - cpu0;
    let (f1, p1) = master_position().await;
    wait_caught_up(&client, "base", &f1, p1, &mut child).await;
    let peak = peak_rss_mb(child.id());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let rows = client
        .query(
            "SELECT id, extract(epoch FROM applied_at)::float8 FROM bench.marks",
            &[],
        )
        .await
        .expect("marks");
    let commits = commits.lock().expect("lock");
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let id: i64 = r.get(0);
            let applied: f64 = r.get(1);
            commits.get(&id).map(|c| (applied - c).max(0.0))
        })
        .collect();
    assert!(!lags.is_empty(), "no markers arrived");
    let achieved = sent.load(Ordering::Relaxed) as f64 / elapsed;
    let p50 = percentile(&mut lags, 0.50);
    let p99 = percentile(&mut lags, 0.99);
    let max = percentile(&mut lags, 1.0);
    println!(
        "steady state: {achieved:.0} row changes/s for {elapsed:.0} s; lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} markers; ferry CPU {:.0}% of one core; peak RSS {peak:.1} MB",
        p50 * 1000.0,
        p99 * 1000.0,
        max * 1000.0,
        lags.len(),
        cpu_used / elapsed * 100.0
    );
}
