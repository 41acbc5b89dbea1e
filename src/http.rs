//! The daemon's small HTTP endpoint (loopback by default): `/` (the migration dashboard, an
//! HTML page rendering `/status`; see [`crate::dashboard`]), `/metrics` (Prometheus text),
//! `/status` (JSON for scripts and `ferry status`), `/healthz` (liveness) and `/readyz`
//! (readiness: preflight passed and the pipeline is running).
//!
//! Guarantees: read-only; one short request per connection (`Connection: close`), requests over
//! 8 KiB or slower than 5 s are dropped, so a misbehaving client cannot hold the daemon. With
//! `metrics.token_file` set, `/`, `/metrics` and `/status` answer 401 unless the request carries
//! `Authorization: Bearer <token>` (what Prometheus' `authorization` setting sends);
//! `/healthz` and `/readyz` stay open for health probes and say nothing about the data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Secret;
use crate::status::StatusBoard;

/// Binds and serves until the process ends.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    board: Arc<StatusBoard>,
    token: Option<Secret>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let token = Arc::new(token);
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /, /metrics, /status, /healthz, /readyz");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let board = board.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    handle(stream, metrics, board, &token),
                )
                .await;
            });
        }
    }))
}

async fn handle(
    mut stream: TcpStream,
    metrics: PrometheusHandle,
    board: Arc<StatusBoard>,
    token: &Option<Secret>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 8192 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let guarded = matches!(path, "/" | "/metrics" | "/status");
    let (status, ctype, body) = if guarded && !authorized(&head, token.as_ref()) {
        (
            "401 Unauthorized",
            "text/plain",
            "a bearer token is required (metrics.token_file)\n".to_string(),
        )
    } else if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else {
        match path {
            "/" => (
                "200 OK",
                "text/html; charset=utf-8",
                crate::dashboard::PAGE.to_string(),
            ),
            "/metrics" => {
                board.refresh_gauges();
                ("200 OK", "text/plain; version=0.0.4", metrics.render())
            }
            "/status" => ("200 OK", "application/json", board.snapshot_json()),
            "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
            "/readyz" => {
                if board.ready() {
                    ("200 OK", "text/plain", "ready\n".to_string())
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain",
                        "not ready\n".to_string(),
                    )
                }
            }
            _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
        }
    };
    // RFC 6750: a 401 names the scheme it wants.
    let extra_headers = if status.starts_with("401") {
        "WWW-Authenticate: Bearer\r\n".to_string()
    } else if ctype.starts_with("text/html") {
        // The page may run its own inline script and style, and talk to this origin only.
        format!(
            "Content-Security-Policy: {}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n",
            crate::dashboard::content_security_policy()
        )
    } else {
        String::new()
    };
    let response = format!(
        "HTTP/1.1 {status}\r\n{extra_headers}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Whether the request head carries the bearer token (always, when none is configured). The
/// comparison takes the same time wherever the tokens differ.
fn authorized(head: &str, token: Option<&Secret>) -> bool {
    let Some(token) = token else { return true };
    let given = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let value = value.trim();
        let (scheme, credentials) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| credentials.trim())
    });
    let Some(given) = given else { return false };
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A minimal GET for `ferry status` and scripts, sending `token` as a bearer token when
/// given: returns (status code, body).
///
/// # Errors
/// Connection failures and malformed responses.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&Secret>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{}Connection: close\r\n\r\n",
                token
                    .map(|t| format!("Authorization: Bearer {}\r\n", t.expose()))
                    .unwrap_or_default()
            )
            .as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP header"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status code"))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let token = Secret::new("abc123");
        let head = |auth: &str| format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n");
        assert!(authorized(&head(""), None));
        assert!(authorized(
            &head("Authorization: Bearer abc123"),
            Some(&token)
        ));
        assert!(authorized(
            &head("authorization:  bearer abc123"),
            Some(&token)
        ));
        assert!(!authorized(&head(""), Some(&token)));
        assert!(!authorized(
            &head("Authorization: Bearer abc124"),
            Some(&token)
        ));
        assert!(!authorized(
            &head("Authorization: Bearer abc1234"),
            Some(&token)
        ));
        assert!(!authorized(
            &head("Authorization: Basic abc123"),
            Some(&token)
        ));
    }
}
