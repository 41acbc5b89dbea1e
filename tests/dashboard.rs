//! The dashboard page at `/`, rendered by a real headless Chromium against a daemon that
//! backfilled two tables, streams and verified them: the DOM Chromium dumps holds what only the
//! page's script can have written from `/status` (stream, phase, data sync 100%, each table,
//! the matched verification), and the page comes with its content security policy.
//!
//! Needs `chromium` (installed by `scripts/dev-db.sh install`); without it the test says so and
//! passes, except under `CI=true`, where it fails.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

/// The Chromium binary, or `None` (with a note) when absent; under `CI=true` absence fails.
fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("chromium");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("chromium is missing (required under CI=true; scripts/dev-db.sh install adds it)");
    }
    eprintln!("SKIPPED: chromium not found; run scripts/dev-db.sh install to render the dashboard");
    None
}

/// Loads `url` in headless Chromium, lets its scripts run for five seconds of virtual time and
/// returns the serialized DOM.
fn render(browser: &str, url: &str, profile: &std::path::Path) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("chromium status").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish rendering {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The text of the element with `id` (one without child elements), entities decoded.
fn text_of(dom: &str, id: &str) -> String {
    let attr = format!("id=\"{id}\"");
    let (_, rest) = dom
        .split_once(&attr)
        .unwrap_or_else(|| panic!("no element {id} in:\n{dom}"));
    let (_, rest) = rest.split_once('>').expect("tag end");
    let text = rest.split('<').next().unwrap_or("");
    decode(text)
}

/// The DOM's text outside `<script>`, tags removed: what a reader sees.
fn visible_text(dom: &str) -> String {
    let without_script = match (dom.find("<script>"), dom.find("</script>")) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &dom[..a], &dom[b..]),
        _ => dom.to_string(),
    };
    let mut out = String::new();
    let mut in_tag = false;
    for c in without_script.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode(&out)
}

fn decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

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
