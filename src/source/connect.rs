//! Connections to the source server, configured the way every ferry reader needs them.
//!
//! Guarantees: sessions read in UTC (`time_zone = '+00:00'`, so TIMESTAMP values are instants),
//! send statements as utf8mb4 and receive column values in their own bytes
//! (`character_set_results = binary`, decoded by `transform::charset`); the client accepts packets up to
//! 1 GiB (row events over 16 MiB otherwise fail with PacketTooLarge); connecting is bounded by
//! the configured timeout so an unreachable source is an error, not a hang.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::config::SourceConfig;
use crate::error::ErrorClass;

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
}

impl ConnectError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ConnectError::Timeout { .. } => ErrorClass::Transient,
            ConnectError::Mysql { source, .. } => ErrorClass::of_mysql(source),
        }
    }
}

/// Driver options for the source.
pub fn opts(cfg: &SourceConfig) -> Opts {
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
        .into()
}

/// Opens one session.
///
/// # Errors
/// Timeout or driver/server error.
pub async fn connect(cfg: &SourceConfig) -> Result<Conn, ConnectError> {
    let fut = Conn::new(opts(cfg));
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
