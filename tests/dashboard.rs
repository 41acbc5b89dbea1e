//! The dashboard page at `/`, rendered by a real headless Chromium against a daemon that
//! backfilled two tables, streams and verified them: the DOM Chromium dumps holds what only the
//! page's script can have written from `/status` (stream, phase, data sync 100%, each table,
//! the matched verification), and the page comes with its content security policy. Against a
//! stand-in serving chosen `/status` answers: every field (paused, switched, a partial backfill,
//! differences, errors, the reverse stream) is shown, markup in the data comes out as text, and
//! an error or a 401 from `/status` is said on the page.
//!
//! Needs `chromium` (installed by `scripts/dev-db.sh install`); without it the test says so and
//! passes, except under `CI=true`, where it fails.

mod common;

use std::time::{Duration, Instant};

use common::browser::{chromium, render, text_of, visible_text};
use common::*;
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

/// A raw GET: (status code, response head, body).
fn get_raw(addr: &str, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_status_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let db = TestDb::new("dash").await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2));",
    )
    .await
    .expect("schema");
    for i in 1..=60 {
        my.query_drop(format!(
            "INSERT INTO customers VALUES ({i}, 'customer {i}')"
        ))
        .await
        .expect("customer");
    }
    my.query_drop("INSERT INTO orders SELECT seq, 1 + seq % 60, seq * 1.25 FROM seq_1_to_140")
        .await
        .expect("orders");
    let addr = free_listen_addr();
    let config = db.config_backfill(
        "dash_shop",
        "",
        "[verify]\npass_interval_seconds = 0.2\nrows_per_second = 100000\nchunk_rows = 500\n",
    );
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("listen = \"\"", &format!("listen = \"{addr}\""));
    std::fs::write(&config, text).expect("config");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "dash_shop", Duration::from_secs(120), &mut ferry)
        .await;

    // Wait until /status says what the page must show: the backfill done, streaming, a matched
    // verification of both tables.
    let started = Instant::now();
    let status: Json = loop {
        if let Ok((200, body)) = http_get(&addr, "/status") {
            let s: Json = serde_json::from_str(&body).expect("status JSON");
            if s["phase"] == "streaming" && s["verification"]["matched"] == true {
                break s;
            }
        }
        if let Some(exit) = ferry.try_exit() {
            panic!("ferry exited ({exit}):\n{}", ferry.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no matched verification while streaming:\n{}",
            ferry.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let tables: Vec<String> = status["backfill"]
        .as_object()
        .expect("backfill by table")
        .keys()
        .cloned()
        .collect();
    assert_eq!(tables.len(), 2, "{status}");
    assert!(
        tables.iter().any(|t| t.ends_with("customers")),
        "{tables:?}"
    );
    assert!(tables.iter().any(|t| t.ends_with("orders")), "{tables:?}");

    // The page itself: HTML, its policy, nothing from elsewhere.
    let (code, head, page) = get_raw(&addr, "/");
    assert_eq!(code, 200, "{head}");
    let head_lower = head.to_ascii_lowercase();
    assert!(
        head_lower.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head_lower.contains("content-security-policy: default-src 'none';"),
        "{head}"
    );
    assert!(!page.contains("http://") && !page.contains("https://"));

    // What the browser shows after the script ran.
    let profile = db.dir.join("chromium-profile");
    let dom = render(browser, &format!("http://{addr}/"), &profile);
    assert_eq!(text_of(&dom, "connection"), "Live", "{dom}");
    assert_eq!(text_of(&dom, "stream"), "dash_shop", "{dom}");
    assert_eq!(text_of(&dom, "phase"), "streaming", "{dom}");
    assert!(
        text_of(&dom, "phase-note").starts_with("migration phase: replicating"),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "sync"), "100%", "{dom}");
    assert!(
        text_of(&dom, "sync-note").starts_with("200 of 200 rows copied in 2 tables"),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "verify"), "matched", "{dom}");
    assert!(
        text_of(&dom, "verify-note").starts_with("2 tables, 0 differing rows; finished "),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "errors"), "0.0 / min", "{dom}");
    assert!(text_of(&dom, "lag").ends_with(" s"), "{dom}");
    assert!(
        text_of(&dom, "updated").starts_with("Last updated "),
        "{dom}"
    );
    let seen = visible_text(&dom);
    for t in &tables {
        assert!(seen.contains(t.as_str()), "table {t} not shown:\n{seen}");
    }
    assert!(seen.contains("replicating"), "{seen}");
    assert!(seen.contains("done"), "{seen}");
    assert!(!seen.contains("Cannot reach"), "{seen}");

    ferry.signal("TERM");
    let exit = ferry.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}:\n{}", ferry.log());
    db.cleanup_dir();
}

/// Serves the dashboard page (with its policy) and answers `/status` with `status`: a stand-in
/// for the daemon whose answers the test chooses. Returns the address.
fn fake_ferry(status: (u16, &'static str, String)) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (code, ctype, body) = match path {
                "/" => (
                    200,
                    "text/html; charset=utf-8",
                    ferry::dashboard::PAGE.to_string(),
                ),
                "/status" => status.clone(),
                _ => (404, "text/plain", "not found\n".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Security-Policy: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                ferry::dashboard::content_security_policy(),
                body.len()
            );
        }
    });
    addr
}

/// The opening tag of the element with `id`.
fn tag_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let start = dom[..at].rfind('<').expect("tag start");
    let end = at + dom[at..].find('>').expect("tag end");
    &dom[start..=end]
}

#[test]
fn every_field_is_shown_as_text_and_a_failing_status_is_said_plainly() {
    let Some(browser) = chromium() else { return };
    let profile = project_root()
        .join("target/test-runs")
        .join(format!("dashboard-fake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    // Markup in every string the page shows must come out as the characters themselves.
    let snapshot = serde_json::json!({
        "stream": "<i>shop</i>", "version": "0.1.0", "phase": "streaming",
        "migration_phase": "switched", "paused": true, "paused_since": now - 65.0,
        "ready": true, "uptime_seconds": 100.0, "lag_seconds": 4.2, "lag_bytes": 2850,
        "caught_up": false, "checkpoint": null, "read_position": null, "source_end": null,
        "transactions_applied": 10, "rows_applied": 40, "rows_per_second": 2.0,
        "transactions_per_second": 1.0, "errors": 3, "errors_per_minute": 6.0,
        "last_error": "<img src=x onerror=alert(1)> target unreachable",
        "pause_not_persisted": null,
        "backfill": {
            "shop.<b>a</b>": {"rows_copied": 50, "rows_estimated": 100, "percent": 50.0,
                              "eta_seconds": 12.0, "done": false},
            "shop.b": {"rows_copied": 30, "rows_estimated": 20, "percent": 100.0,
                       "eta_seconds": null, "done": true}
        },
        "verification": {"finished_at": now - 30.0, "tables": 2, "differing_rows": 3,
                         "matched": false},
        "reverse": {"running": true, "rows_applied": 7, "transactions_applied": 3,
                    "lag_bytes": 0, "lag_seconds": 0.0, "slot_retained_bytes": 1048576,
                    "applied_lsn": "0/16B3748", "last_error": null},
        "schema_changes": {"applied": 2, "ignored": 1, "refused": 0}
    });
    // The page reads only what ferry's own Snapshot serializes.
    let parsed: ferry::status::Snapshot =
        serde_json::from_value(snapshot.clone()).expect("a Snapshot");
    let addr = fake_ferry((
        200,
        "application/json",
        serde_json::to_string(&parsed).expect("JSON"),
    ));
    let dom = render(browser, &format!("http://{addr}/"), &profile);
    assert!(!dom.contains("<img") && !dom.contains("<i>shop") && !dom.contains("<b>a"));
    assert_eq!(text_of(&dom, "connection"), "Live", "{dom}");
    assert_eq!(text_of(&dom, "stream"), "<i>shop</i>", "{dom}");
    assert_eq!(text_of(&dom, "phase"), "paused", "{dom}");
    assert!(
        text_of(&dom, "phase-note").starts_with("migration phase: switched; paused since "),
        "{dom}"
    );
    // (50 + 30) of (100 + 30): a finished table counts what it copied.
    assert_eq!(text_of(&dom, "sync"), "61.5%", "{dom}");
    assert!(
        text_of(&dom, "sync-note").starts_with("80 of ~130 rows copied in 2 tables"),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "lag"), "4.2 s", "{dom}");
    assert!(
        text_of(&dom, "lag-note").starts_with("catching up; 2.8 KiB of binlog behind; 40 rows"),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "verify"), "differences", "{dom}");
    assert!(
        text_of(&dom, "verify-note").starts_with("2 tables, 3 differing rows; finished "),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "errors"), "6.0 / min", "{dom}");
    assert_eq!(
        text_of(&dom, "errors-note"),
        "3 since start; last: <img src=x onerror=alert(1)> target unreachable",
        "{dom}"
    );
    assert_eq!(text_of(&dom, "schema"), "2 applied", "{dom}");
    assert!(!tag_of(&dom, "reverse-card").contains("hidden"), "{dom}");
    assert_eq!(text_of(&dom, "reverse"), "streaming", "{dom}");
    assert!(
        text_of(&dom, "reverse-note").ends_with("the slot keeps 1.0 MiB of WAL"),
        "{dom}"
    );
    let seen = visible_text(&dom);
    for want in [
        "shop.<b>a</b>",
        "50.0%",
        "about 12.0 s left",
        "shop.b",
        "done",
    ] {
        assert!(seen.contains(want), "{want:?} not shown:\n{seen}");
    }

    // A daemon that answers with an error, or asks for the token: said, not hidden.
    for (code, body, want) in [
        (500, "boom", "Cannot reach ferry: HTTP 500"),
        (
            401,
            "a bearer token is required (metrics.token_file)\n",
            "Cannot reach ferry: it asks for a bearer token (metrics.token_file)",
        ),
    ] {
        let addr = fake_ferry((code, "text/plain", body.to_string()));
        let dom = render(browser, &format!("http://{addr}/"), &profile);
        assert!(text_of(&dom, "connection").starts_with(want), "{dom}");
        assert!(tag_of(&dom, "connection").contains("down"), "{dom}");
        assert_eq!(text_of(&dom, "updated"), "Not updated yet.", "{dom}");
    }
    let _ = std::fs::remove_dir_all(&profile);
}
