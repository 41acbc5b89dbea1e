//! Backfill benchmark (run it with `scripts/bench.sh backfill`).
//!
//! Data: the `bench` data set of the replication benchmark — `users` (1,000,000 rows, ten
//! columns of every common type, a unique key) and `orders` (2,000,000 rows, composite key) —
//! written fresh on MariaDB. Each run starts ferry on an empty target database and measures,
//! from process start: the copy with primary keys and secondary indexes built (the phase turns
//! to streaming), and the unique constraints built once the stream passed the copy's end. Peak
//! RSS is ferry's VmHWM. BENCH_RUNS runs (default 3); medians reported. BENCH_SCHEMA=compare
//! measures the same data twice in one invocation: as created, then after giving the source
//! tables what an application schema has (AUTO_INCREMENT, defaults, ON UPDATE
//! CURRENT_TIMESTAMP, comments, CHECK constraints, a foreign key), and prints the ratio; it also
//! times `ferry schema --validate-foreign-keys --create` (the foreign key's creation and
//! validation at cutover) on the last target. Knobs: BENCH_USERS,
//! BENCH_ORDERS, BENCH_REUSE_SOURCE=1 (keep the source data), BENCH_FERRY_CONFIG (extra config
//! lines, e.g. "[backfill]\nparallel_tables = 1"), BENCH_FERRY_BIN (the binary to run, e.g. an
//! older build to compare against; default target/release/ferry).
//!
//! BENCH_PLAN=1 first runs `ferry plan --json` (default sampling) against the same source and a
//! fresh target BENCH_RUNS times, and reports its median wall time and backfill estimate next to
//! the measured backfill (the estimate covers keys, indexes and unique constraints, so it is
//! compared with the time including the unique constraints), and its verification estimate next
//! to the median wall time of BENCH_RUNS `ferry verify` runs over the last copy.
//!
//! BENCH_DOCS=N replaces the data set by a table of documents: `docs` with N rows of a 512 KiB
//! LONGBLOB each (distinct bytes per row); the result is then reported in MB/s of values.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

mod common;
use common::*;

/// What an application schema adds to the benchmark tables (the data already satisfies it).
const APPLICATION_SCHEMA: &str = "
SET SESSION foreign_key_checks = 0;
ALTER TABLE users
  MODIFY id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  MODIFY balance DECIMAL(12,2) NOT NULL DEFAULT 0.00 COMMENT 'account balance',
  MODIFY status ENUM('active','blocked','deleted') NOT NULL DEFAULT 'active',
  MODIFY created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  MODIFY seen TIMESTAMP(3) NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  ADD CONSTRAINT balance_range CHECK (balance >= 0),
  COMMENT = 'bench users';
ALTER TABLE orders
  MODIFY qty SMALLINT UNSIGNED NOT NULL DEFAULT 1,
  MODIFY ordered DATE NOT NULL DEFAULT '2020-01-01',
  ADD CONSTRAINT qty_range CHECK (qty < 1000),
  ADD CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
SET SESSION foreign_key_checks = 1;";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users = env_u64("BENCH_USERS", 1_000_000);
    let orders = env_u64("BENCH_ORDERS", 2_000_000);
    let runs = env_u64("BENCH_RUNS", 3);
    let dir = root().join("target/bench");
    let docs = env_u64("BENCH_DOCS", 0);
    if env_u64("BENCH_REUSE_SOURCE", 0) == 0 {
        if docs > 0 {
            setup_docs(docs).await;
        } else {
            setup_source(users, orders).await;
        }
    }
    let compare = std::env::var("BENCH_SCHEMA").is_ok_and(|v| v == "compare");
    let planned = if env_u64("BENCH_PLAN", 0) == 1 {
        Some(plan_estimates(&dir, runs).await)
    } else {
        None
    };
    let (plain, plain_all) = measure(&dir, runs, 0, users + orders, docs).await;
    if let Some((estimate, verify_estimate, wall)) = planned {
        println!(
            "ferry plan: median wall time {wall:.1} s; backfill estimate {estimate:.2} s vs measured {plain_all:.2} s with unique constraints ({:+.0}%), {plain:.2} s to streaming ({:+.0}%)",
            (estimate / plain_all - 1.0) * 100.0,
            (estimate / plain - 1.0) * 100.0
        );
        let verified = verify_times(&dir.join(format!("bf{}.toml", runs - 1)), runs);
        println!(
            "ferry plan: verification estimate {verify_estimate:.2} s vs ferry verify measured {verified:.2} s ({:+.0}%)",
            (verify_estimate / verified - 1.0) * 100.0
        );
    }
    if !compare {
        return;
    }
    my(Some("bench"))
        .await
        .query_drop(APPLICATION_SCHEMA)
        .await
        .expect("application schema");
    let (rich, _) = measure(&dir, runs, runs, users + orders, docs).await;
    println!(
        "backfill with identities, defaults, ON UPDATE triggers, comments, checks: {:.2} s vs {plain:.2} s plain ({:+.1}%)",
        rich,
        (rich / plain - 1.0) * 100.0
    );
    let config = dir.join(format!("bf{}.toml", 2 * runs - 1));
    let started = Instant::now();
    let out = std::process::Command::new(ferry_bin())
        .args(["schema", "--config"])
        .arg(&config)
        .args(["--validate-foreign-keys", "--create"])
        .output()
        .expect("ferry schema");
    println!(
        "foreign key orders -> users created NOT VALID and validated over {orders} rows in {:.2} s (exit {:?}): {}",
        started.elapsed().as_secs_f64(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// `runs` runs of `ferry plan --json` against a fresh target: the median backfill estimate and
/// the median wall time of the command.
/// The median wall time of `runs` `ferry verify` passes over the copy `config` made.
fn verify_times(config: &std::path::Path, runs: u64) -> f64 {
    let mut times = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let out = std::process::Command::new(ferry_bin())
            .args(["verify", "--config"])
            .arg(config)
            .output()
            .expect("ferry verify");
        let wall = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "ferry verify found differences or failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("verify run {run}: {wall:.2} s");
        times.push(wall);
    }
    median(&mut times)
}

async fn plan_estimates(dir: &std::path::Path, runs: u64) -> (f64, f64, f64) {
    let mut estimates = Vec::new();
    let mut verify_estimates = Vec::new();
    let mut walls = Vec::new();
    for run in 0..runs {
        let db = "bench_plan";
        fresh_target(db).await;
        let config = write_config(dir, &format!("plan{run}"), db, "current", 19_170, false);
        let started = Instant::now();
        let out = std::process::Command::new(ferry_bin())
            .args(["plan", "--json", "--config"])
            .arg(&config)
            .output()
            .expect("ferry plan");
        let wall = started.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "ferry plan printed no JSON ({e}): {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let estimate = plan["estimates"]["backfill_seconds"]
            .as_f64()
            .expect("a backfill estimate");
        eprintln!(
            "plan run {run}: exit {:?} in {wall:.1} s, backfill estimate {estimate:.2} s ({} sampled rows)",
            out.status.code(),
            plan["samples"]
                .as_array()
                .map_or(0, |s| s.iter().map(|x| x["rows"].as_u64().unwrap_or(0)).sum::<u64>())
        );
        let verify = plan["estimates"]["verify_seconds"]
            .as_f64()
            .expect("a verification estimate");
        eprintln!("plan run {run}: verification estimate {verify:.2} s");
        estimates.push(estimate);
        verify_estimates.push(verify);
        walls.push(wall);
    }
    (
        median(&mut estimates),
        median(&mut verify_estimates),
        median(&mut walls),
    )
}

/// `runs` backfills into fresh targets; the median copy time and the median time including
/// the unique constraints.
async fn measure(
    dir: &std::path::Path,
    runs: u64,
    first: u64,
    total_rows: u64,
    docs: u64,
) -> (f64, f64) {
    let mut copy_times = Vec::new();
    let mut all_times = Vec::new();
    let mut rss = Vec::new();
    let mut megabytes = 0.0;
    for run in first..first + runs {
        let db = format!("bench_backfill_{run}");
        fresh_target(&db).await;
        let config = write_config(
            dir,
            &format!("bf{run}"),
            &db,
            "current",
            19_180 + run as u16,
            false,
        );
        let client = pg(&db).await;
        let t0 = Instant::now();
        let mut child = spawn_ferry(&config, &dir.join(format!("bf{run}.log")));
        let stream = format!("bf{run}");
        let mut copied_at = None;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("ferry exited during the backfill: {status}");
            }
            let row = client
                .query_opt(
                    "SELECT copied, unique_built FROM ferry.backfill_run WHERE stream = $1",
                    &[&stream],
                )
                .await
                .ok()
                .flatten();
            if let Some(r) = row {
                if copied_at.is_none() && r.get::<_, bool>(0) {
                    copied_at = Some(t0.elapsed().as_secs_f64());
                }
                if r.get::<_, bool>(1) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = t0.elapsed().as_secs_f64();
        let copy = copied_at.expect("copy finished before the unique constraints");
        let peak = peak_rss_mb(child.id());
        let cpu = cpu_seconds(child.id());
        stop(child);
        if docs > 0 {
            let row = client
                .query_one(
                    "SELECT count(*), sum(length(doc))::bigint FROM bench.docs",
                    &[],
                )
                .await
                .expect("count");
            let (rows, bytes): (i64, i64) = (row.get(0), row.get(1));
            megabytes = bytes as f64 / 1e6;
            eprintln!(
                "run {run}: {rows} documents ({megabytes:.0} MB) copied in {copy:.2} s ({:.1} MB/s); peak RSS {peak:.1} MB; ferry CPU {cpu:.1} s",
                megabytes / copy
            );
            copy_times.push(copy);
            all_times.push(all);
            rss.push(peak);
            continue;
        }
        let rows: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM bench.users) + (SELECT count(*) FROM bench.orders)",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        eprintln!(
            "run {run}: {rows} rows copied with keys and indexes in {copy:.2} s ({:.0} rows/s); unique constraints done at {all:.2} s; peak RSS {peak:.1} MB; ferry CPU {cpu:.1} s",
            rows as f64 / copy
        );
        copy_times.push(copy);
        all_times.push(all);
        rss.push(peak);
    }
    let copy = median(&mut copy_times);
    if docs > 0 {
        println!(
            "backfill of {docs} documents of 512 KiB: median {copy:.2} s ({:.1} MB/s); median peak RSS {:.1} MB over {runs} runs",
            megabytes / copy,
            median(&mut rss)
        );
        return (copy, median(&mut all_times));
    }
    let all = median(&mut all_times);
    println!(
        "backfill: median {copy:.2} s for {total_rows} rows ({:.0} rows/s) with primary keys and indexes; median {all:.2} s including unique constraints; median peak RSS {:.1} MB over {runs} runs",
        total_rows as f64 / copy,
        median(&mut rss)
    );
    (copy, all)
}

/// The documents data set: `bench.docs` with `n` rows of a 512 KiB LONGBLOB.
async fn setup_docs(n: u64) {
    use mysql_async::prelude::Queryable;
    let mut c = my(None).await;
    c.query_drop("DROP DATABASE IF EXISTS bench")
        .await
        .expect("drop");
    c.query_drop("CREATE DATABASE bench").await.expect("create");
    let mut c = my(Some("bench")).await;
    c.query_drop("CREATE TABLE docs (id INT PRIMARY KEY, doc LONGBLOB)")
        .await
        .expect("docs table");
    let started = Instant::now();
    let mut from = 1;
    while from <= n {
        let to = (from + 99).min(n);
        c.query_drop(format!(
            "INSERT INTO docs SELECT seq, REPEAT(UNHEX(SHA2(seq, 256)), 16384) FROM seq_{from}_to_{to}"
        ))
        .await
        .expect("docs");
        from = to + 1;
    }
    eprintln!("source data: {n} documents in {:.1?}", started.elapsed());
}
