//! Preflight: everything that must hold before ferry writes anything, on both databases, checked
//! up front with one message per failure saying what is wrong and how to fix it ([`mysql`]: the
//! source's binlog settings, privileges and tables; [`postgres`]: the target's reach, write
//! access and spatial support).
//!
//! Guarantees: `ferry run` never starts replicating against a source whose binlog would make it
//! decode wrongly (non-ROW format, partial row images, MINIMAL metadata, MariaDB binlog
//! compression), nor with tables it cannot identify rows in, nor against a target it cannot write.
//! Preflight itself writes nothing (target checks run in a rolled-back transaction). Each side's
//! first check says what its session negotiated (TLS version and cipher or plaintext, and how
//! far the certificate was verified); a session weaker than `source.tls` / `target.tls` demands
//! (no TLS under REQUIRED/require, an unverifiable certificate, a host name the certificate does
//! not list) fails it with a definite class.

use std::fmt;

mod mysql;
mod postgres;
mod zero_date_keys;

use crate::config::Config;
use crate::error::ErrorClass;
use crate::schema::Table;
use crate::source::connect::{self, ServerInfo};
use crate::transform::TypeOptions;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do when it failed.
    pub fix: Option<String>,
    /// Transient: the failure may pass by itself (a server not reachable yet), so retrying
    /// later makes sense; definite: only the operator can fix it.
    pub class: ErrorClass,
}

impl Check {
    pub(crate) fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
            class: ErrorClass::Definite,
        }
    }

    pub(crate) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            class: ErrorClass::Definite,
        }
    }

    fn class(mut self, class: ErrorClass) -> Self {
        self.class = class;
        self
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "[{mark}] {:<22} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// The preflight result: all checks, plus what a passing run needs next.
#[derive(Debug)]
pub struct Report {
    pub checks: Vec<Check>,
    pub server: Option<ServerInfo>,
    pub tables: Vec<Table>,
    /// The type options the tables were planned with (`types.spatial` and
    /// `types.case_insensitive` resolved against the target): every later stage must use these.
    pub types: TypeOptions,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Some check failed for a reason only the operator can fix (not merely an unreachable
    /// server).
    pub fn has_definite_failure(&self) -> bool {
        self.checks.iter().any(|c| !c.ok && c.class.is_definite())
    }

    /// The failed checks as one message.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The fix of a refused TLS session (the detail says which part failed).
pub(crate) const TLS_FIX: &str = "make the tls section match the server: ca_file = the CA that signed its certificate, host = a name the certificate lists, the server's TLS enabled; or choose a weaker mode knowingly";

/// The check of what a session negotiated: passes unless it is weaker than the mode demands (a
/// verifying driver fails the handshake itself, so only plaintext under a TLS mode is left).
pub(crate) fn tls_check(
    name: &'static str,
    negotiated: &crate::tls::Negotiated,
    tls: &crate::config::TlsConfig,
) -> Check {
    if negotiated.tls.is_none() && tls.mode >= crate::config::TlsMode::Require {
        return Check::fail(
            name,
            format!("plaintext, but mode {} demands TLS", tls.mode_name()),
            TLS_FIX,
        );
    }
    Check::pass(name, format!("{negotiated} (mode {})", tls.mode_name()))
}

/// Runs every check; never stops at the first failure so the operator sees them all.
pub async fn run(config: &Config) -> Report {
    // The target first: where spatial columns go depends on it, and tables are planned with it.
    // Its checks are listed after the source's.
    let mut target_checks = Vec::new();
    let types = postgres::check_target(config, &mut target_checks).await;
    let mut checks = Vec::new();
    let mut server = None;
    let mut tables = Vec::new();
    match connect::connect(&config.source).await {
        Err(e @ (connect::ConnectError::NoTls { .. } | connect::ConnectError::Tls { .. })) => {
            checks.push(Check::fail("source TLS", e.to_string(), TLS_FIX).class(e.class()));
        }
        Err(e) => checks.push(
            Check::fail(
                "source reachable",
                e.to_string(),
                "check source.host/port/user and the password; the user needs REPLICATION SLAVE, REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and SELECT",
            )
            .class(e.class()),
        ),
        Ok(mut conn) => {
            checks.push(match connect::negotiated(&mut conn, &config.source.tls).await {
                Ok(n) => tls_check("source TLS", &n, &config.source.tls),
                Err(e) => Check::fail("source TLS", e.to_string(), "grant the ferry user a session (SHOW SESSION STATUS)"),
            });
            match mysql::check_source(&mut conn, config, &types, &mut checks).await {
                Ok((info, t)) => {
                    server = Some(info);
                    tables = t;
                }
                Err(e) => checks.push(Check::fail(
                    "source queries",
                    e.to_string(),
                    "grant the ferry user SELECT on the selected tables and information_schema access",
                )),
            }
            let _ = conn.disconnect().await;
        }
    }
    checks.append(&mut target_checks);
    Report {
        checks,
        server,
        tables,
        types,
    }
}
