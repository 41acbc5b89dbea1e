//! How the reverse stream reads PostgreSQL's committed changes: a small trait ([`ChangeFeed`])
//! and its SQL-polling implementation ([`SqlPolling`]).
//!
//! Why SQL polling rather than the streaming replication protocol: `tokio-postgres` (the
//! driver ferry already uses) has no replication (CopyBoth) support in any released version —
//! it lives in open pull requests and forks — and the functions
//! `pg_logical_slot_peek_binary_changes` + `pg_replication_slot_advance` give exactly the
//! semantics the exactly-once rule needs: a peek never moves the slot, so the slot is moved
//! only once the changes are committed in MySQL with their LSN.
//!
//! Guarantees: a peek returns whole transactions only (PostgreSQL checks its row limit after
//! each decoded commit), in commit order, starting after the slot's confirmed position, and is
//! read in pages through a cursor — PostgreSQL keeps the decoded result (spilling to disk past
//! `work_mem`), ferry holds one page, so a transaction of any size never sits whole in ferry's
//! memory; the
//! slot moves only through [`ChangeFeed::advance`] — to the end of a transaction committed in
//! MySQL, or, when a peek found nothing, to the flushed WAL end read before it (so the slot's
//! confirmed position reaches the WAL end whenever everything is applied, and it does not hold
//! WAL that other databases write while the stream is idle); the polling session prints values in fixed
//! forms (UTC, ISO dates, `postgres` intervals, hex bytea, shortest exact floats), whatever the
//! server's defaults, so the inverse type mapping reads one spelling.

use std::future::Future;

use tokio_postgres::Client;

use super::lsn::Lsn;

/// One pgoutput message as the slot returned it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The WAL position of the record the message came from.
    pub lsn: Lsn,
    pub xid: u32,
    pub data: Vec<u8>,
}

/// Where the slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// Everything before this has been consumed (applied in MySQL).
    pub confirmed: Lsn,
    /// The server's current WAL end (`pg_current_wal_lsn()`).
    pub wal_end: Lsn,
    /// WAL the slot keeps from being recycled (bytes from its restart point to the end).
    pub retained_bytes: u64,
}

/// A source of committed PostgreSQL changes for one slot.
pub trait ChangeFeed: Send {
    /// Starts a peek of up to about `max_messages` messages (whole transactions) after the
    /// slot's confirmed position, without moving it; read it with [`ChangeFeed::fetch`].
    fn open(
        &mut self,
        max_messages: i32,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;

    /// The next `n` messages of the open peek; fewer than `n` (none at the end) ends the peek.
    /// After an error the peek is closed.
    fn fetch(
        &mut self,
        n: i32,
    ) -> impl Future<Output = Result<Vec<RawMessage>, tokio_postgres::Error>> + Send;

    /// Confirms everything before `to` (the end LSN of a transaction committed in MySQL).
    fn advance(
        &mut self,
        to: Lsn,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;

    /// The server's flushed WAL end (`pg_current_wal_flush_lsn()`): read *before* a peek, a
    /// peek that then finds nothing proves no committed change before it is waiting, so the
    /// slot may be confirmed up to it (what a walsender's keepalive feedback does).
    fn flushed(&mut self) -> impl Future<Output = Result<Lsn, tokio_postgres::Error>> + Send;

    /// The slot's position and the WAL end; `None` when the slot does not exist.
    fn state(
        &mut self,
    ) -> impl Future<Output = Result<Option<SlotState>, tokio_postgres::Error>> + Send;
}

/// The session settings the inverse mapping relies on.
pub const SESSION_SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET extra_float_digits = 1; \
     SET idle_in_transaction_session_timeout = 0; SET application_name = 'ferry reverse stream'";

/// Polls the slot with the SQL functions of logical decoding.
pub struct SqlPolling {
    client: Client,
    slot: String,
    publication: String,
    /// A peek's cursor is open (its transaction too).
    open: bool,
}

impl SqlPolling {
    /// Prepares the session (see [`SESSION_SETTINGS`]).
    ///
    /// # Errors
    /// PostgreSQL errors.
    pub async fn new(
        client: Client,
        slot: String,
        publication: String,
    ) -> Result<SqlPolling, tokio_postgres::Error> {
        client.batch_execute(SESSION_SETTINGS).await?;
        Ok(SqlPolling {
            client,
            slot,
            publication,
            open: false,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Ends the peek's transaction (after an error it is aborted).
    async fn close(&mut self) {
        self.open = false;
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl ChangeFeed for SqlPolling {
    async fn open(&mut self, max_messages: i32) -> Result<(), tokio_postgres::Error> {
        if self.open {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        // DECLARE takes no parameters: the names are literals (quoted).
        let sql = format!(
            "BEGIN; DECLARE ferry_peek NO SCROLL CURSOR FOR \
             SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_binary_changes(\
             {}, NULL, {max_messages}, 'proto_version', '1', 'publication_names', {})",
            literal(&self.slot),
            literal(&self.publication)
        );
        self.open = true;
        if let Err(e) = self.client.batch_execute(&sql).await {
            self.close().await;
            return Err(e);
        }
        Ok(())
    }

    async fn fetch(&mut self, n: i32) -> Result<Vec<RawMessage>, tokio_postgres::Error> {
        if !self.open {
            return Ok(Vec::new());
        }
        let rows = match self
            .client
            .query(&format!("FETCH {} FROM ferry_peek", n.max(1)), &[])
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                self.close().await;
                return Err(e);
            }
        };
        if rows.len() < n.max(1) as usize {
            self.open = false;
            self.client.batch_execute("COMMIT").await?;
        }
        Ok(rows
            .iter()
            .map(|r| RawMessage {
                lsn: r.get::<_, String>(0).parse().unwrap_or_default(),
                xid: r.get::<_, String>(1).parse().unwrap_or_default(),
                data: r.get(2),
            })
            .collect())
    }

    async fn advance(&mut self, to: Lsn) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.slot, &to.to_string()],
            )
            .await
            .map(|_| ())
    }

    async fn flushed(&mut self) -> Result<Lsn, tokio_postgres::Error> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await?;
        Ok(row.get::<_, String>(0).parse().unwrap_or_default())
    }

    async fn state(&mut self) -> Result<Option<SlotState>, tokio_postgres::Error> {
        slot_state(&self.client, &self.slot).await
    }
}

/// The slot's position and the WAL end, on any session.
///
/// # Errors
/// PostgreSQL errors.
pub async fn slot_state(
    client: &Client,
    slot: &str,
) -> Result<Option<SlotState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT COALESCE(confirmed_flush_lsn, '0/0')::text, pg_current_wal_lsn()::text, \
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotState {
        confirmed: r.get::<_, String>(0).parse().unwrap_or_default(),
        wal_end: r.get::<_, String>(1).parse().unwrap_or_default(),
        retained_bytes: r.get::<_, i64>(2).max(0) as u64,
    }))
}
