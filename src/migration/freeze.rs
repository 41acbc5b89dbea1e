//! Freezing writes on the source for a cutover: `read_only` (and `super_read_only` on MySQL),
//! the write transactions still open, and the final position.
//!
//! Guarantees: the prior settings are read before anything is changed, so an abort restores
//! exactly what was there ([`restore`]); on MySQL `super_read_only` also stops accounts with
//! SUPER; on MariaDB accounts with SUPER or READ_ONLY ADMIN can still write
//! ([`bypass_accounts`] names them so the operator can check they are not the application's);
//! the final position is read only after no write transaction is open, so every change the
//! source committed is before it.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Serialize;

use crate::position::BinlogPosition;
use crate::source::binlog::current_position;
use crate::source::connect::Flavor;

/// The source's `read_only` settings: (`read_only`, `super_read_only` on MySQL).
pub type ReadOnly = (bool, Option<bool>);

/// A transaction that has written and not ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Writer {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub seconds_open: u64,
    pub rows_modified: u64,
    /// What the transaction is doing (InnoDB's state and operation, the session's command):
    /// "ROLLING BACK" once its session was ended.
    pub state: String,
    /// Its session still exists (false: the session is gone, InnoDB is finishing it).
    pub session: bool,
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "session {} ({}@{}, open {} s, {} rows modified, {})",
            self.id,
            if self.session { &self.user } else { "ended" },
            self.host,
            self.seconds_open,
            self.rows_modified,
            self.state
        )
    }
}

/// Reads the current settings.
///
/// # Errors
/// Driver errors.
pub async fn read_only_state(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<ReadOnly, mysql_async::Error> {
    let ro: Option<i64> = conn.query_first("SELECT @@global.read_only").await?;
    let sro = match flavor {
        Flavor::MySql => conn
            .query_first::<i64, _>("SELECT @@global.super_read_only")
            .await?
            .map(|v| v != 0),
        Flavor::MariaDb => None,
    };
    Ok((ro.unwrap_or(0) != 0, sro))
}

/// Makes the source read-only.
///
/// # Errors
/// Driver errors (a missing privilege among them: SUPER or SYSTEM_VARIABLES_ADMIN).
pub async fn freeze(conn: &mut Conn, flavor: Flavor) -> Result<(), mysql_async::Error> {
    conn.query_drop("SET GLOBAL read_only = ON").await?;
    if flavor == Flavor::MySql {
        conn.query_drop("SET GLOBAL super_read_only = ON").await?;
    }
    Ok(())
}

/// Puts the settings back as they were before [`freeze`].
///
/// # Errors
/// Driver errors.
pub async fn restore(conn: &mut Conn, prior: ReadOnly) -> Result<(), mysql_async::Error> {
    let on = |b: bool| if b { "ON" } else { "OFF" };
    // super_read_only=ON implies read_only=ON, and read_only=OFF clears super_read_only: set
    // super_read_only first when turning it off.
    if let Some(sro) = prior.1 {
        conn.query_drop(format!("SET GLOBAL super_read_only = {}", on(sro)))
            .await?;
    }
    conn.query_drop(format!("SET GLOBAL read_only = {}", on(prior.0)))
        .await?;
    if prior.1 == Some(true) {
        conn.query_drop("SET GLOBAL super_read_only = ON").await?;
    }
    Ok(())
}

/// Open transactions that have written (or wait for a lock to write), other than this session.
///
/// # Errors
/// Driver errors (PROCESS privilege missing among them).
pub async fn open_writers(conn: &mut Conn) -> Result<Vec<Writer>, mysql_async::Error> {
    type Row = (
        u64,
        Option<String>,
        Option<String>,
        Option<i64>,
        u64,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = conn
        .query(
            "SELECT t.trx_mysql_thread_id, p.USER, p.HOST, \
                    TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), t.trx_rows_modified, \
                    CONCAT_WS(' ', t.trx_state, t.trx_operation_state, p.COMMAND, p.STATE), p.ID \
             FROM information_schema.INNODB_TRX t \
             LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_mysql_thread_id <> CONNECTION_ID() \
               AND (t.trx_rows_modified > 0 OR t.trx_state = 'LOCK WAIT') \
             ORDER BY t.trx_started",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, user, host, secs, rows, state, session)| Writer {
            id,
            user: user.unwrap_or_default(),
            host: host.unwrap_or_default(),
            seconds_open: secs.unwrap_or(0).max(0) as u64,
            rows_modified: rows,
            state,
            session: session.is_some(),
        })
        .collect())
}

/// Ends the sessions of `writers` (their transactions roll back: nothing they wrote was
/// acknowledged).
///
/// Returns how many sessions it ended (a writer whose session is already gone is only
/// waited for: InnoDB is rolling it back).
///
/// # Errors
/// Driver errors other than "no such session" (it ended by itself meanwhile).
pub async fn kill(conn: &mut Conn, writers: &[Writer]) -> Result<usize, mysql_async::Error> {
    let mut ended = 0;
    for w in writers.iter().filter(|w| w.session) {
        match conn.query_drop(format!("KILL CONNECTION {}", w.id)).await {
            Ok(()) => {
                ended += 1;
                tracing::warn!(writer = %w, "ended a write transaction that stayed open after the freeze")
            }
            Err(mysql_async::Error::Server(e)) if e.code == 1094 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ended)
}

/// Accounts that `read_only` does not stop (MariaDB: SUPER or READ_ONLY ADMIN; MySQL with
/// `super_read_only`: none).
///
/// # Errors
/// Driver errors.
pub async fn bypass_accounts(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Vec<String>, mysql_async::Error> {
    if flavor == Flavor::MySql {
        return Ok(Vec::new());
    }
    let mut accounts: Vec<String> = conn
        .query(
            "SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES \
             WHERE PRIVILEGE_TYPE IN ('SUPER', 'READ_ONLY ADMIN') ORDER BY GRANTEE",
        )
        .await?;
    accounts.dedup();
    Ok(accounts)
}

/// The source's position and GTID state now.
///
/// # Errors
/// Driver errors.
pub async fn final_position(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<(BinlogPosition, Option<String>), mysql_async::Error> {
    let p = current_position(conn).await?;
    let gtid: Option<String> = match flavor {
        Flavor::MariaDb => conn.query_first("SELECT @@global.gtid_binlog_pos").await?,
        Flavor::MySql => conn.query_first("SELECT @@global.gtid_executed").await?,
    };
    Ok((p, gtid.filter(|g| !g.trim().is_empty())))
}
