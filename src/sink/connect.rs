//! Connections to the target PostgreSQL.
//!
//! Guarantees: every session runs in UTC with `application_name = 'ferry'` (visible in
//! `pg_stat_activity`) and `ferry.apply = on` (the target's ON UPDATE CURRENT_TIMESTAMP
//! triggers skip ferry's writes, see `sink::ddl`); the connection task is owned by the returned
//! client, so dropping the client closes the connection; server notices are logged at DEBUG
//! (warnings at WARN), never as INFO noise; errors are described with their SQLSTATE and
//! detail. Every session goes through [`connect`] and so through `target.tls` (libpq's
//! `sslmode` meanings, see [`crate::tls`]): `prefer` falls back to plaintext only when the server
//! answers that it has no TLS; a refused handshake is a definite error ([`is_tls_refusal`]).

use futures_util::StreamExt;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Config as PgConfig};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{TargetConfig, TlsConfig, TlsMode};
use crate::tls::{self, Negotiated, Verified};

/// The message tokio-postgres gives when `sslmode=require` meets a server without TLS.
const NO_TLS: &str = "server does not support TLS";

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
        .keepalives(true)
        .ssl_mode(match cfg.tls.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
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
    let (client, mut connection) = pg_config(cfg).connect(Connector::new(&cfg.tls)).await?;
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

/// The TLS side of [`connect`]: rustls as `target.tls` asks, or the reason it cannot be set up
/// (an unreadable CA file), which the driver then reports as a failed handshake.
struct Connector(Result<MakeRustlsConnect, String>);

impl Connector {
    fn new(tls: &TlsConfig) -> Self {
        if tls.mode == TlsMode::Disable {
            // The driver asks for a connector whatever the mode and never uses it under
            // `disable`: one that reads no files.
            let unused = TlsConfig {
                ca_file: None,
                client_cert: None,
                ..tls.clone()
            };
            return Connector(
                tls::client_config(&unused)
                    .map(MakeRustlsConnect::new)
                    .map_err(|e| format!("target.tls: {e}")),
            );
        }
        Connector(
            tls::client_config(tls)
                .map(MakeRustlsConnect::new)
                .map_err(|e| format!("target.tls: {e}")),
        )
    }
}

impl<S> MakeTlsConnect<S> for Connector
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        match &mut self.0 {
            Ok(make) => make.make_tls_connect(domain).map_err(Into::into),
            Err(reason) => Err(TlsSetup(reason.clone()).into()),
        }
    }
}

/// TLS settings that could not be built; carried through the driver's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TlsSetup(String);

/// True when the target refused the session for a TLS reason a retry cannot change: no TLS on
/// a server the mode demands it of, a certificate that fails verification, unusable TLS
/// settings.
pub fn is_tls_refusal(e: &tokio_postgres::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    if tls::rustls_error(e).is_some() {
        return true;
    }
    while let Some(cause) = next {
        if cause.is::<TlsSetup>() || cause.to_string() == NO_TLS {
            return true;
        }
        next = cause.source();
    }
    false
}

/// What a refused TLS session means, with what to change; `None` when `e` is no TLS refusal.
pub fn tls_refusal(e: &tokio_postgres::Error, cfg: &TargetConfig) -> Option<String> {
    if !is_tls_refusal(e) {
        return None;
    }
    let at = format!("target {}:{}", cfg.host, cfg.port);
    let mode = cfg.tls.mode_name();
    if let Some(r) = tls::rustls_error(e) {
        return Some(format!(
            "{at} refused under target.tls.mode = {mode}: {}",
            tls::explain(r, &cfg.tls, "target.tls")
        ));
    }
    let cause = std::error::Error::source(e)
        .map(|c| c.to_string())
        .unwrap_or_default();
    Some(if cause == NO_TLS {
        format!(
            "{at} offers no TLS, but target.tls.mode = {mode} demands it; enable ssl on the \
             server (ssl = on, ssl_cert_file, ssl_key_file) or set target.tls.mode = \"prefer\""
        )
    } else {
        format!("{at}: {cause}")
    })
}

/// What the session negotiated, as the server reports it (`pg_stat_ssl`).
///
/// # Errors
/// PostgreSQL errors.
pub async fn negotiated(
    client: &Client,
    tls: &TlsConfig,
) -> Result<Negotiated, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
            &[],
        )
        .await?;
    Ok(Negotiated {
        tls: row.map(|r| (r.get(0), r.get(1))),
        verified: Verified::by(tls.mode),
    })
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
        // The driver's own message is a category ("error performing TLS handshake"); the
        // cause says what happened.
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// True when retrying the same work may succeed (connection loss, serialization failure,
/// deadlock, shutdown, resource exhaustion); false for errors in the data or the schema.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None if is_tls_refusal(e) => false,
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
