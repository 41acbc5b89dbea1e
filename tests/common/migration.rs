//! Helpers of the cutover and rollback tests: the stream's migration row, the source's
//! read_only, and the JSON report `ferry cutover` / `ferry rollback` print.

use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::{ferry_cmd, pg_port, Ferry, TestDb};

/// The phase of stream `main`.
pub async fn phase(db: &TestDb) -> String {
    db.pg()
        .await
        .query_one(
            "SELECT phase FROM ferry.migration WHERE stream = 'main'",
            &[],
        )
        .await
        .expect("migration row")
        .get(0)
}

/// Waits until the stream's phase is `want` (the command or the daemon moved it).
pub async fn wait_phase(db: &TestDb, want: &str, timeout: Duration, what: &str) {
    let started = Instant::now();
    loop {
        let now = phase(db).await;
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: phase is {now}, waited {timeout:?} for {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `@@global.read_only` on the test's source.
pub async fn read_only(db: &TestDb) -> bool {
    let v: Option<i64> = db
        .my()
        .await
        .query_first("SELECT @@global.read_only")
        .await
        .expect("read_only");
    v == Some(1)
}

/// The JSON report at the start of a command's output (log lines on stderr may follow it).
pub fn report_of(out: &str) -> serde_json::Value {
    out.find('{')
        .and_then(|i| {
            serde_json::Deserializer::from_str(&out[i..])
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()
        })
        .unwrap_or(serde_json::Value::Null)
}

/// Runs `ferry cutover --config <config> --json <args>`: exit code, report, output.
pub async fn cutover_cmd(config: &Path, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec![
        "cutover".to_string(),
        "--config".into(),
        config.to_str().expect("utf-8").into(),
        "--json".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let (code, out) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        ferry_cmd(&refs)
    })
    .await
    .expect("cutover ran");
    let report = report_of(&out);
    (code, report, out)
}

/// Waits until stream `main` has a verification pass that matched and the daemon reported.
pub async fn wait_for_matched_pass(db: &TestDb, ferry: &mut Ferry) {
    let started = Instant::now();
    loop {
        let n = db
            .count("SELECT count(*) FROM ferry.verify_passes WHERE stream = 'main' AND matched")
            .await;
        let reported = db
            .count("SELECT count(*) FROM ferry.migration WHERE stream = 'main' AND daemon_seen_at IS NOT NULL")
            .await;
        if n > 0 && reported > 0 {
            return;
        }
        assert!(ferry.try_exit().is_none(), "ferry exited:\n{}", ferry.log());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no matched verification pass:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A PostgreSQL session as `role` in the test's database (its schema on the search path).
pub async fn pg_as(
    db: &TestDb,
    role: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg_port())
        .user(role)
        .dbname(&db.name)
        .options(format!("-c search_path={}", db.name))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Runs ferry with `args` (blocking, off the runtime); the exit code, the JSON report in its
/// output and the output.
pub async fn run_ferry(args: Vec<String>) -> (i32, serde_json::Value, String) {
    let (code, out) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ferry_cmd(&refs)
    })
    .await
    .expect("ferry ran");
    let json = report_of(&out);
    (code, json, out)
}
