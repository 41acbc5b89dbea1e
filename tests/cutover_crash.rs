//! `ferry cutover` when processes die: the daemon SIGKILLed in each phase of a cutover, and the
//! command SIGKILLed while the source is frozen or while the switch command runs. After each,
//! the next start resumes or undoes the cutover: MySQL is never left read-only by an undone
//! cutover and every acknowledged write is in PostgreSQL. Runs its own MariaDB (the freeze
//! sets `read_only` server-wide).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::migration::*;
use common::own_mariadb::OwnMariaDb;
use common::*;
use mysql_async::prelude::Queryable;

/// Waits until the daemon has reported into the migration row after `since`.
async fn wait_daemon_report(db: &TestDb, ferry: &mut Ferry) {
    let started = Instant::now();
    loop {
        let fresh: i64 = db
            .count(
                "SELECT count(*) FROM ferry.migration WHERE stream = 'main' \
                 AND daemon_seen_at > clock_timestamp() - interval '1 second'",
            )
            .await;
        if fresh > 0 {
            return;
        }
        assert!(ferry.try_exit().is_none(), "ferry exited:\n{}", ferry.log());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon does not report:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `ferry cutover --yes --json` running in the background.
struct CutoverCmd {
    child: Child,
    out: PathBuf,
}

impl CutoverCmd {
    fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> CutoverCmd {
        let out = config.with_extension(format!("cutover.{}.out", rand::random::<u32>()));
        let file = std::fs::File::create(&out).expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["cutover", "--config"])
            .arg(config)
            .args(["--json", "--yes"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("output"))
            .stderr(file)
            .spawn()
            .expect("spawn ferry cutover");
        CutoverCmd { child, out }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the command; returns its exit code and report.
    async fn finish(mut self, timeout: Duration) -> (i32, serde_json::Value, String) {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                started.elapsed() < timeout,
                "ferry cutover did not finish:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let out = self.output();
        let report = report_of(&out);
        (status.code().unwrap_or(-1), report, out)
    }
}

impl Drop for CutoverCmd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A session of the application account (read_only stops it, unlike root).
async fn app_session(db: &TestDb) -> mysql_async::Conn {
    mysql_async::Conn::new(
        mysql_async::OptsBuilder::from_opts(mysql_opts_at(db.my_port, Some(&db.name)))
            .user(Some("app"))
            .pass(Some("app")),
    )
    .await
    .expect("application session")
}

/// Every row of `items` on both sides, as text.
async fn assert_items_equal(db: &TestDb) {
    let mut my = db.my().await;
    let on_source = mysql_rows(&mut my, "SELECT id, n, note FROM items ORDER BY id").await;
    let on_target = pg_rows(
        &db.pg().await,
        "SELECT id::text, n::text, note FROM items ORDER BY id",
    )
    .await;
    assert_eq!(on_source.len(), on_target.len(), "row counts differ");
    assert!(
        on_source == on_target,
        "items differ between MySQL and PostgreSQL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_daemon_or_the_command_in_each_phase_resumes_or_undoes_the_cutover() {
    let server = OwnMariaDb::start("cutcrash");
    let db = TestDb::new_on("cutcrash", server.port).await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT NOT NULL, note VARCHAR(40))")
        .await
        .expect("table");
    my.query_drop("INSERT INTO items SELECT seq, 0, 'seed' FROM seq_1_to_500")
        .await
        .expect("seed");
    my.query_drop(format!(
        "CREATE USER 'app'@'%' IDENTIFIED BY 'app'; GRANT SELECT, INSERT, UPDATE, DELETE ON `{}`.* TO 'app'@'%'",
        db.name
    ))
    .await
    .expect("application account");
    let config = db.config_backfill("main", "", "[verify]\ncontinuous = false\n");
    let cfg = config.to_str().expect("utf-8");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (code, out) = ferry_cmd(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "a matched pass the cutover accepts: {out}");
    wait_daemon_report(&db, &mut ferry).await;
    let mut app = app_session(&db).await;

    // 1. The command SIGKILLed while frozen (waiting for an open writer): the daemon undoes
    //    the freeze when the command's lease runs out; the writer then commits.
    app.query_drop("BEGIN").await.expect("begin");
    app.query_drop("INSERT INTO items VALUES (1001, 1, 'open across the freeze')")
        .await
        .expect("open write");
    let mut cmd = CutoverCmd::start(&config, &["--timeout", "120s"], &[]);
    wait_phase(&db, "frozen", Duration::from_secs(30), "round 1").await;
    // `frozen` is recorded (with the prior settings) just before read_only is set.
    let started = Instant::now();
    while !read_only(&db).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "frozen means read_only:\n{}",
            cmd.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cmd.kill9();
    wait_phase(
        &db,
        "replicating",
        Duration::from_secs(40),
        "the daemon undoes it",
    )
    .await;
    assert!(!read_only(&db).await, "the daemon restored read_only");
    app.query_drop("COMMIT")
        .await
        .expect("the writer commits once MySQL is writable again");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE id = 1001").await,
        1
    );
    drop(cmd);

    // 2. The daemon SIGKILLed while frozen: the restarted daemon drains; the switch command
    //    then fails, so the cutover aborts and MySQL is writable again.
    app.query_drop("BEGIN").await.expect("begin");
    app.query_drop("UPDATE items SET n = 2 WHERE id = 1")
        .await
        .expect("open write");
    let cmd = CutoverCmd::start(
        &config,
        &[
            "--timeout",
            "120s",
            "--kill-writers-after",
            "4s",
            "--switch-command",
            "exit 7",
        ],
        &[],
    );
    wait_phase(&db, "frozen", Duration::from_secs(30), "round 2").await;
    ferry.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ferry.start_again();
    let (code, report, out) = cmd.finish(Duration::from_secs(120)).await;
    assert_eq!(code, 1, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "aborted", "{out}");
    assert!(out.contains("exit 7"), "{out}");
    assert!(!read_only(&db).await, "an abort leaves MySQL writable");
    assert_eq!(phase(&db).await, "replicating");
    assert!(
        app.query_drop("COMMIT").await.is_err(),
        "the writer was ended by --kill-writers-after"
    );
    let mut app = app_session(&db).await;
    app.query_drop("INSERT INTO items VALUES (1002, 2, 'after round 2')")
        .await
        .expect("MySQL takes writes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_items_equal(&db).await;
    wait_daemon_report(&db, &mut ferry).await;

    // 3. The daemon SIGKILLed in `drained` (the command holds there), then again in
    //    `verified`: the command goes on, the switch fails, the abort restores MySQL.
    for held in ["drained", "verified"] {
        app.query_drop(format!(
            "INSERT INTO items VALUES ({}, 3, 'before {held}')",
            if held == "drained" { 1003 } else { 1004 }
        ))
        .await
        .expect("write");
        db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
            .await;
        wait_daemon_report(&db, &mut ferry).await;
        let pause = format!("{held}:3");
        let cmd = CutoverCmd::start(
            &config,
            &["--switch-command", "exit 7"],
            &[("FERRY_FAULT_PAUSE", &pause)],
        );
        wait_phase(&db, held, Duration::from_secs(30), held).await;
        ferry.kill9();
        ferry.start_again();
        let (code, report, out) = cmd.finish(Duration::from_secs(120)).await;
        assert_eq!(code, 1, "{out}");
        assert_eq!(report["outcome"], "aborted", "{held}: {out}");
        assert!(
            !read_only(&db).await,
            "{held}: MySQL writable after the abort"
        );
        assert_eq!(phase(&db).await, "replicating");
        db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
            .await;
        assert_items_equal(&db).await;
    }
    wait_daemon_report(&db, &mut ferry).await;

    // 4. `switching`: the daemon SIGKILLed, then the command SIGKILLed while the switch
    //    command runs. Nothing is undone (the application may write to PostgreSQL already);
    //    `ferry cutover` again re-runs the switch and completes.
    app.query_drop("INSERT INTO items VALUES (1005, 5, 'last on mysql')")
        .await
        .expect("write");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_daemon_report(&db, &mut ferry).await;
    let go = db.dir.join("go");
    let route = db.dir.join("route");
    let switch = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; echo postgres > {route}",
        go = go.display(),
        route = route.display()
    );
    let mut cmd = CutoverCmd::start(&config, &["--switch-command", &switch], &[]);
    wait_phase(&db, "switching", Duration::from_secs(30), "round 4").await;
    ferry.kill9();
    ferry.start_again();
    wait_daemon_report(&db, &mut ferry).await;
    cmd.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        phase(&db).await,
        "switching",
        "a switch in doubt is not undone"
    );
    assert!(
        read_only(&db).await,
        "the source stays frozen while in doubt"
    );
    drop(cmd);
    std::fs::write(&go, "").expect("go");
    // The lease of the killed command runs out, then the switch is resumed.
    let started = Instant::now();
    let (code, report, out) = loop {
        let (code, out) = ferry_cmd(&[
            "cutover",
            "--config",
            cfg,
            "--json",
            "--yes",
            "--switch-command",
            &switch,
        ]);
        let report = report_of(&out);
        if report["outcome"] != "refused" {
            break (code, report, out);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the interrupted switch was never resumable: {out}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["outcome"], "switched", "{out}");
    assert_eq!(phase(&db).await, "switched");
    assert_eq!(
        std::fs::read_to_string(&route).expect("route").trim(),
        "postgres"
    );
    assert_items_equal(&db).await;
    let (code, out) = ferry_cmd(&["verify", "--config", cfg]);
    assert_eq!(code, 0, "verify matches at the final position: {out}");

    // 5. The daemon SIGKILLed in `switched`: restarted, it reads nothing more from MySQL
    //    (root bypasses read_only on MariaDB; that write must not reach PostgreSQL).
    ferry.kill9();
    ferry.start_again();
    wait_daemon_report(&db, &mut ferry).await;
    my.query_drop("INSERT INTO items VALUES (9999, 9, 'written on mysql after the switch')")
        .await
        .expect("root write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE id = 9999").await,
        0,
        "a switched stream reads nothing more from MySQL"
    );
    assert!(ferry.try_exit().is_none(), "{}", ferry.log());
    drop(server);
    db.cleanup_dir();
}
