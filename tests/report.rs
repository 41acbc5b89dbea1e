//! `ferry report` after a real run: the backfill, a verification pass, a dead-lettered row, a
//! schema change carried while streaming and a SIGKILL with its restart all appear with their
//! tables, counts and times, in Markdown and as an HTML page a real browser renders; a stream
//! ferry never ran is an error.

mod common;

use std::time::Duration;

use common::migration::wait_for_matched_pass;
use common::*;
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn the_report_tells_the_migration_so_far() {
    let db = TestDb::new("report").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, day DATE NULL, note VARCHAR(40))")
        .await
        .expect("items");
    my.query_drop("INSERT INTO items SELECT seq, '2024-01-01', 'seed' FROM seq_1_to_1200")
        .await
        .expect("seed");
    let config = db.config_backfill(
        "main",
        "",
        "[types]\nzero_date = \"dead_letter\"\n[verify]\npass_interval_seconds = 0.5\nrows_per_second = 100000\n",
    );
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_for_matched_pass(&db, &mut ferry).await;
    my.query_drop(
        "SET SESSION sql_mode = ''; INSERT INTO items VALUES (5000, '0000-00-00', 'zero')",
    )
    .await
    .expect("zero date");
    my.query_drop("ALTER TABLE items ADD COLUMN qty INT NOT NULL DEFAULT 1")
        .await
        .expect("alter");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    ferry.kill9_and_restart();
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    // The checkpoint was caught up before the kill: wait for the new process's start record.
    let started = std::time::Instant::now();
    while db
        .count(
            "SELECT count(*) FROM ferry.migration_log WHERE stream = 'main' AND event = 'started'",
        )
        .await
        < 2
    {
        assert!(ferry.try_exit().is_none(), "{}", ferry.log());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no start recorded:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let path = config.to_str().expect("utf-8");
    let (code, report) = ferry_cmd(&["report", "--config", path]);
    assert_eq!(code, 0, "{report}");
    let table = format!("{}.items", db.name);
    for want in [
        "# Migration report: stream `main`",
        "Phase: **replicating**",
        "backfill started",
        "backfill copied",
        &format!("| {table} | 1200 | yes | yes |"),
        "| **all** | **1200** |",
        "matched; last matched pass finished",
        "**2 process starts**",
        &format!("**1 row dead-lettered** from {table} (zero_date)"),
        "ADD COLUMN qty INT NOT NULL DEFAULT 1",
        "Not run yet",
    ] {
        assert!(report.contains(want), "{want:?} missing from:\n{report}");
    }
    let file = db.dir.join("report.md");
    let (code, out) = ferry_cmd(&[
        "report",
        "--config",
        path,
        "--output",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("written")
            .lines()
            .next(),
        report.lines().next()
    );

    // A value the stream refuses stops ferry (exit 78): the stop is an incident with its error.
    my.query_drop(
        "INSERT INTO items (id, day, note) VALUES (6000, '2024-01-01', CONCAT('a', CHAR(0), 'b'))",
    )
    .await
    .expect("NUL in text");
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    let (code, report) = ferry_cmd(&["report", "--config", path]);
    assert_eq!(code, 0, "{report}");
    let stopped = report
        .lines()
        .find(|l| l.starts_with("- **stopped**"))
        .unwrap_or_else(|| panic!("no stop incident:\n{report}"));
    assert!(stopped.contains("exit status 78"), "{stopped}");
    assert!(
        stopped.contains(&table) && stopped.contains("note"),
        "{stopped}"
    );

    // The same report as one HTML page, rendered by a real browser: the tables are tables and
    // the stop's message is text.
    let page = db.dir.join("report.html");
    let (code, out) = ferry_cmd(&[
        "report",
        "--config",
        path,
        "--output",
        page.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{out}");
    let html = std::fs::read_to_string(&page).expect("written");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    if let Some(browser) = common::browser::chromium() {
        let dom = common::browser::render(
            browser,
            &format!("file://{}", page.display()),
            &db.dir.join("chromium-profile"),
        );
        assert!(dom.contains(&format!("<td>{table}</td>")), "{dom}");
        assert!(dom.contains("<strong>1200</strong></td>"), "{dom}");
        let text = common::browser::visible_text(&dom)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for want in [
            "Migration report: stream main",
            "Phase: replicating",
            "1 row dead-lettered",
            "exit status 78",
        ] {
            assert!(
                text.contains(want),
                "{want:?} missing from the page:\n{text}"
            );
        }
    }

    let other = db.config_backfill("never", "", "");
    let (code, out) = ferry_cmd(&["report", "--config", other.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("has no record"), "{out}");
    db.cleanup_dir();
}
