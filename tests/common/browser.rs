//! Headless Chromium for tests of what ferry serves or writes as HTML: the DOM it renders
//! (after the page's scripts ran) and the text a reader sees in it.
//!
//! Needs `chromium` (installed by `scripts/dev-db.sh install`); without it a test says so and
//! passes, except under `CI=true`, where it fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium binary, or `None` (with a note) when absent; under `CI=true` absence fails.
pub fn chromium() -> Option<&'static str> {
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
    eprintln!("SKIPPED: chromium not found; run scripts/dev-db.sh install to render HTML");
    None
}

/// Loads `url` in headless Chromium, lets its scripts run for five seconds of virtual time and
/// returns the serialized DOM.
pub fn render(browser: &str, url: &str, profile: &std::path::Path) -> String {
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
pub fn text_of(dom: &str, id: &str) -> String {
    let attr = format!("id=\"{id}\"");
    let (_, rest) = dom
        .split_once(&attr)
        .unwrap_or_else(|| panic!("no element {id} in:\n{dom}"));
    let (_, rest) = rest.split_once('>').expect("tag end");
    let text = rest.split('<').next().unwrap_or("");
    decode(text)
}

/// The DOM's text outside `<script>`, tags removed: what a reader sees.
pub fn visible_text(dom: &str) -> String {
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

pub fn decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}
