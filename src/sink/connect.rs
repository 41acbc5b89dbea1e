//! Connections to the target PostgreSQL.
//!
//! Guarantees: every session runs in UTC with `application_name = 'ferry'` (visible in
//! `pg_stat_activity`) and `ferry.apply = on` (the target's ON UPDATE CURRENT_TIMESTAMP
//! triggers skip ferry's writes, see `sink::ddl`); the connection task is owned by the returned
//! client, so dropping the client closes the connection; server notices are logged at DEBUG
//! (warnings at WARN), never as INFO noise; errors are described with their SQLSTATE and
//! detail.

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, Config as PgConfig, NoTls};

use crate::config::TargetConfig;

/// Driver configuration for the target.
pub fn pg_config(cfg: &TargetConfig) -> PgConfig {
    let mut c = PgConfig::new();
    c.host(&cfg.host)
        .port(cfg.port)
        .user(&cfg.user)
        .dbname(&cfg.database)
        .application_name("ferry")
        // ferry.apply: ON UPDATE CURRENT_TIMESTAMP triggers skip ferry's writes (sink::ddl).
        .options("-c TimeZone=UTC -c statement_timeout=0 -c lock_timeout=0 -c ferry.apply=on")
        .connect_timeout(std::time::Duration::from_secs(10))
        .keepalives(true);
    if !cfg.password.expose().is_empty() {
        c.password(cfg.password.expose());
    }
    c
}

/// Opens a session; the connection runs on a spawned task until the client is dropped.
///
/// # Errors
/// Connection or authentication failure.
pub async fn connect(cfg: &TargetConfig) -> Result<Client, tokio_postgres::Error> {
    let (client, mut connection) = pg_config(cfg).connect(NoTls).await?;
    tokio::spawn(async move {
        // Notices ("relation ... already exists, skipping" from idempotent DDL) are the
        // server's chatter, not ferry's state changes: DEBUG, or WARN for warnings.
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notice(n)) if n.severity() == "WARNING" => {
                    tracing::warn!(message = n.message(), "PostgreSQL warning");
                }
                Ok(AsyncMessage::Notice(n)) => {
                    tracing::debug!(
                        severity = n.severity(),
                        message = n.message(),
                        "PostgreSQL notice"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "target connection closed");
                    break;
                }
            }
        }
    });
    Ok(client)
}

/// A one-line description with SQLSTATE, message, detail and hint when PostgreSQL sent them.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            if let Some(t) = db.table() {
                s.push_str(&format!("; table: {t}"));
            }
            if let Some(c) = db.column() {
                s.push_str(&format!("; column: {c}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// True when retrying the same work may succeed (connection loss, serialization failure,
/// deadlock, shutdown, resource exhaustion); false for errors in the data or the schema.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true, // I/O and protocol errors: the connection is gone
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("40") // serialization failure, deadlock
                || c.starts_with("53") // insufficient resources
                || c.starts_with("57") // operator intervention (shutdown, cancel)
                || c == "55P03" // lock not available
        }
    }
}
