//! The application's PostgreSQL roles during `ferry rollback`: their state recorded, frozen,
//! their sessions ended, and put back by an abort.
//!
//! Guarantees: [`record`] reads each role's prior state (whether it may log in, and its own
//! `default_transaction_read_only` setting) before anything is changed, and the caller stores
//! it in the migration row before calling [`freeze`]; [`restore`] puts back exactly the
//! recorded state and may run any number of times (the command's abort and the daemon's can
//! both run it); [`end_sessions`] only ends sessions of the named roles, never its own.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::select::quote_ident;

/// A role as it was before the freeze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorRole {
    pub role: String,
    pub could_login: bool,
    /// The role's own `default_transaction_read_only` (`ALTER ROLE … SET`), if it had one.
    pub read_only_setting: Option<String>,
}

/// Reads the prior state of `roles` (roles that do not exist are left out).
///
/// # Errors
/// PostgreSQL errors.
pub async fn record(
    client: &Client,
    roles: &[String],
) -> Result<Vec<PriorRole>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT r.rolname::text, r.rolcanlogin, \
                    (SELECT substr(c, length('default_transaction_read_only=') + 1) \
                     FROM pg_db_role_setting s, unnest(s.setconfig) c \
                     WHERE s.setrole = r.oid AND s.setdatabase = 0 \
                       AND c LIKE 'default\\_transaction\\_read\\_only=%' LIMIT 1) \
             FROM pg_roles r WHERE r.rolname = ANY($1) ORDER BY r.rolname",
            &[&roles],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PriorRole {
            role: r.get(0),
            could_login: r.get(1),
            read_only_setting: r.get(2),
        })
        .collect())
}

/// Makes every role unable to log in and read-only by default (new sessions and new
/// transactions of sessions that survive until [`end_sessions`]).
///
/// # Errors
/// PostgreSQL errors (CREATEROLE missing among them).
pub async fn freeze(client: &Client, roles: &[String]) -> Result<(), tokio_postgres::Error> {
    for role in roles {
        let r = quote_ident(role);
        client
            .batch_execute(&format!(
                "ALTER ROLE {r} NOLOGIN; ALTER ROLE {r} SET default_transaction_read_only = on"
            ))
            .await?;
    }
    Ok(())
}

/// Ends every session of `roles` until none is left; `None` when some still ran at `deadline`.
///
/// # Errors
/// PostgreSQL errors (membership in `pg_signal_backend` missing among them).
pub async fn end_sessions(
    client: &Client,
    roles: &[String],
    deadline: Instant,
) -> Result<Option<u64>, tokio_postgres::Error> {
    let mut ended = 0u64;
    loop {
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
                &[&roles],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Some(ended));
        }
        ended += rows.len() as u64;
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts every role back as [`record`] found it.
///
/// # Errors
/// PostgreSQL errors.
pub async fn restore(client: &Client, prior: &[PriorRole]) -> Result<(), tokio_postgres::Error> {
    for p in prior {
        let r = quote_ident(&p.role);
        let login = if p.could_login { "LOGIN" } else { "NOLOGIN" };
        let setting = match &p.read_only_setting {
            Some(v) => format!(
                "ALTER ROLE {r} SET default_transaction_read_only = '{}'",
                v.replace('\'', "''")
            ),
            None => format!("ALTER ROLE {r} RESET default_transaction_read_only"),
        };
        client
            .batch_execute(&format!("ALTER ROLE {r} {login}; {setting}"))
            .await?;
    }
    Ok(())
}

/// The recorded roles from the migration row's `rollback_roles` (empty when none or
/// unreadable).
pub fn from_row(value: Option<&serde_json::Value>) -> Vec<PriorRole> {
    value
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// The names, for messages.
pub fn names(prior: &[PriorRole]) -> String {
    prior
        .iter()
        .map(|p| p.role.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_state_round_trips_through_the_row() {
        let prior = vec![
            PriorRole {
                role: "app".into(),
                could_login: true,
                read_only_setting: None,
            },
            PriorRole {
                role: "report\"er".into(),
                could_login: false,
                read_only_setting: Some("off".into()),
            },
        ];
        let v = serde_json::to_value(&prior).unwrap();
        assert_eq!(from_row(Some(&v)), prior);
        assert!(from_row(None).is_empty());
        assert_eq!(names(&prior), "app, report\"er");
    }
}
