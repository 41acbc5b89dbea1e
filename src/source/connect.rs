//! Connections to the source server, configured the way every ferry reader needs them.
//!
//! Guarantees: sessions read in UTC (`time_zone = '+00:00'`, so TIMESTAMP values are instants),
//! send statements as utf8mb4 and receive column values in their own bytes
//! (`character_set_results = binary`, decoded by `transform::charset`); the client accepts packets up to
//! 1 GiB (row events over 16 MiB otherwise fail with PacketTooLarge); connecting is bounded by
//! the configured timeout so an unreachable source is an error, not a hang. Every session goes
//! through [`connect`] and so through `source.tls`: `PREFERRED` tries TLS and falls back to
//! plaintext only when the server offers no TLS; a stricter mode refuses a server without TLS or
//! a certificate it cannot verify with a definite error saying why.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, DriverError, Opts, OptsBuilder, SslOpts};

use crate::config::{SourceConfig, TlsConfig, TlsMode};
use crate::error::ErrorClass;
use crate::tls::{self, Negotiated, Verified};

/// Largest packet the client accepts.
pub const MAX_PACKET: usize = 1 << 30;

/// The server flavour, which decides GTID handling and a few catalog queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

/// What ferry knows about the source server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub flavor: Flavor,
    pub server_id: u32,
}

/// Errors opening a source session; classed by [`ErrorClass::of_mysql`] (an unreachable or
/// restarting server is transient, refused credentials are definite).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to source {host}:{port} within {timeout:?}")]
    Timeout {
        host: String,
        port: u16,
        timeout: Duration,
    },
    #[error("source {host}:{port}: {source}")]
    Mysql {
        host: String,
        port: u16,
        source: mysql_async::Error,
    },
    #[error("source {host}:{port} offers no TLS, but source.tls.mode = {mode} demands it; enable TLS on the server (ssl_cert, ssl_key) or set source.tls.mode = \"PREFERRED\"")]
    NoTls {
        host: String,
        port: u16,
        mode: &'static str,
    },
    #[error("source {host}:{port} refused under source.tls.mode = {mode}: {reason}")]
    Tls {
        host: String,
        port: u16,
        mode: &'static str,
        reason: String,
    },
}

impl ConnectError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectError::Timeout { .. } => ErrorClass::Transient,
            ConnectError::Mysql { source, .. } => ErrorClass::of_mysql(source),
            // Neither the server's TLS setup nor its certificate changes by retrying.
            ConnectError::NoTls { .. } | ConnectError::Tls { .. } => ErrorClass::Definite,
        }
    }
}

/// The driver's TLS options for `tls`, or `None` for plaintext.
fn ssl_opts(tls: &TlsConfig) -> Option<SslOpts> {
    let opts = match tls.mode {
        TlsMode::Disable => return None,
        // Encrypted, nothing checked (the mysql client's meaning of PREFERRED and REQUIRED).
        TlsMode::Prefer | TlsMode::Require => {
            SslOpts::default().with_danger_accept_invalid_certs(true)
        }
        // VERIFY_CA verifies fully too, against a name the certificate lists (see
        // `verify_ca`): the driver's own name skip does not work with rustls 0.23.
        TlsMode::VerifyCa | TlsMode::VerifyFull => match &tls.ca_file {
            Some(ca) => SslOpts::default()
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true),
            None => SslOpts::default(),
        },
    };
    Some(match &tls.client_cert {
        None => opts,
        Some((cert, key)) => opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        ))),
    })
}

/// Driver options for the source, with TLS as `source.tls` asks.
pub fn opts(cfg: &SourceConfig) -> Opts {
    opts_with(cfg, ssl_opts(&cfg.tls))
}

fn opts_with(cfg: &SourceConfig, ssl: Option<SslOpts>) -> Opts {
    OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.expose().to_string()))
        .prefer_socket(false)
        .max_allowed_packet(Some(MAX_PACKET))
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .stmt_cache_size(64)
        // One statement: mysql_async runs `init` commands last to first, and `SET NAMES` resets
        // `character_set_results`, so their order must not depend on the driver. Results come in
        // the columns' own bytes: ferry decodes each charset itself, exactly as it decodes binlog
        // images (a server-side conversion could replace bytes).
        .init(vec![
            "SET time_zone = '+00:00', NAMES utf8mb4, character_set_results = binary, \
             SESSION sql_mode = REPLACE(@@sql_mode, 'ANSI_QUOTES', '')",
        ])
        .ssl_opts(ssl)
        .into()
}

/// Opens one session, encrypted as `source.tls` asks.
///
/// # Errors
/// Timeout or driver/server error; [`ConnectError::NoTls`] and [`ConnectError::Tls`] when the
/// mode demands more than the server gives.
pub async fn connect(cfg: &SourceConfig) -> Result<Conn, ConnectError> {
    let mode = cfg.tls.mode_name();
    let refused = |e: &mysql_async::Error| -> Option<ConnectError> {
        let reason = match e {
            mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
                return Some(ConnectError::NoTls {
                    host: cfg.host.clone(),
                    port: cfg.port,
                    mode,
                })
            }
            mysql_async::Error::Io(mysql_async::IoError::Tls(t)) => {
                format!("TLS settings refused: {t}")
            }
            _ => tls::explain(tls::rustls_error(e)?, &cfg.tls, "source.tls"),
        };
        Some(ConnectError::Tls {
            host: cfg.host.clone(),
            port: cfg.port,
            mode,
            reason,
        })
    };
    let mut ssl = ssl_opts(&cfg.tls);
    if cfg.tls.mode == TlsMode::VerifyCa {
        let name = super::verify_ca::name_to_verify(cfg).await?;
        ssl = ssl.map(|s| s.with_danger_tls_hostname_override(Some(name)));
    }
    match connect_with(cfg, ssl).await {
        // PREFERRED: plaintext only when the server has no TLS at all.
        Err(ConnectError::Mysql {
            source: mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer),
            ..
        }) if cfg.tls.mode == TlsMode::Prefer => connect_with(cfg, None).await,
        Err(ConnectError::Mysql { source, host, port }) => {
            Err(refused(&source).unwrap_or(ConnectError::Mysql { host, port, source }))
        }
        other => other,
    }
}

async fn connect_with(cfg: &SourceConfig, ssl: Option<SslOpts>) -> Result<Conn, ConnectError> {
    let fut = Conn::new(opts_with(cfg, ssl));
    match tokio::time::timeout(cfg.connect_timeout, fut).await {
        Err(_) => Err(ConnectError::Timeout {
            host: cfg.host.clone(),
            port: cfg.port,
            timeout: cfg.connect_timeout,
        }),
        Ok(Err(source)) => Err(ConnectError::Mysql {
            host: cfg.host.clone(),
            port: cfg.port,
            source,
        }),
        Ok(Ok(c)) => Ok(c),
    }
}

/// What the session negotiated, as the server reports it (`Ssl_version`, `Ssl_cipher`).
///
/// # Errors
/// Driver errors.
pub async fn negotiated(
    conn: &mut Conn,
    tls: &TlsConfig,
) -> Result<Negotiated, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
        .await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let version = get("Ssl_version");
    Ok(Negotiated {
        tls: (!version.is_empty()).then(|| (version, get("Ssl_cipher"))),
        verified: Verified::by(tls.mode),
    })
}

/// Reads version, flavour and server id.
///
/// # Errors
/// Driver errors.
pub async fn server_info(conn: &mut Conn) -> Result<ServerInfo, mysql_async::Error> {
    let row: Option<(String, u32)> = conn.query_first("SELECT VERSION(), @@server_id").await?;
    let (version, server_id) = row.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok(ServerInfo {
        version,
        flavor,
        server_id,
    })
}
