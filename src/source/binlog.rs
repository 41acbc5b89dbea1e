//! The source stage: connects to MySQL/MariaDB as a replica, streams the binlog from a position
//! (or GTID set), decodes it ([`super::decode`]) and sends [`Message`]s down a bounded channel.
//!
//! Guarantees: the stream starts at a transaction boundary and the stage stops only at one
//! (on shutdown it finishes the transaction it is reading); a silent connection (no event or
//! heartbeat for three heartbeat periods) is an error the caller answers by reconnecting from the
//! last committed checkpoint — unless the source's dump thread is still busy with this
//! connection (reading or sending an event: a row event of hundreds of MiB can take longer than
//! that to arrive, and reconnecting would restart it forever), in which case the stage keeps
//! waiting; each event's CRC32 is verified when the source writes checksums; a
//! start position the source has purged is a definite error naming the oldest binlog still
//! available. A slow sink slows this stage (bounded channel) instead of growing memory.
//!
//! Pause: at a transaction boundary the stage stops handling events. It still takes heartbeats
//! and file-level events off the stream, and at most the first event of the next transaction,
//! which it holds unhandled: its source time is what lag is measured from while paused
//! ([`Progress::unread`]). Nothing of that transaction reaches the sink until the pause ends.
//!
//! Restart: the stage holds no state worth keeping — the caller restarts it from the position
//! committed in PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn};
use mysql_common::binlog::consts::{BinlogChecksumAlg, EventType};
use mysql_common::binlog::events::Event;
use mysql_common::packets::{GnoInterval, Sid};
use tokio::sync::{mpsc, watch};

use super::catalog::{self, CatalogError};
use super::connect::{self, ConnectError, Flavor};
use super::decode::{is_heartbeat, DecodeError, Decoder, Need};
use super::recopy::{RecopyCommand, RecopyTap};
use super::schema_change;
use crate::change::{Message, RowBudget};
use crate::config::SourceConfig;
use crate::error::ErrorClass;
use crate::metrics as m;
use crate::position::{BinlogPosition, GtidSet};
use crate::progress::Progress;
use crate::select::TableSelector;
use crate::transform::TypeOptions;

/// Where the stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    Position(BinlogPosition),
    Gtid(GtidSet),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("binlog stream from {host}:{port}: {source}")]
    Stream {
        host: String,
        port: u16,
        source: mysql_async::Error,
    },
    #[error("no binlog event or heartbeat from the source for {0:?}; reconnecting")]
    Silent(Duration),
    #[error("the source closed the binlog stream")]
    Closed,
    #[error("binlog event at {position} failed its CRC32 check (corrupted in transit?)")]
    Checksum { position: BinlogPosition },
    #[error("the checkpoint position {position} is no longer on the source: binlog {file} has been purged (oldest available: {oldest}). Changes after the checkpoint are lost to ferry; re-copy the tables (`ferry backfill`) or restore the binlogs, and raise binlog retention (binlog_expire_logs_seconds / expire_logs_days)")]
    Purged {
        position: BinlogPosition,
        file: String,
        oldest: String,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("source.start = gtid:{0} uses tagged GTIDs, which ferry cannot request yet; start from FILE:OFFSET")]
    TaggedGtidStart(String),
}

impl SourceError {
    /// Transient when reconnecting from the checkpoint may succeed: a lost or silent stream, a
    /// corrupted event in transit, a catalog query that failed with the connection.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Connect(e) => e.class(),
            SourceError::Stream { source, .. } => ErrorClass::of_mysql(source),
            SourceError::Silent(_) | SourceError::Closed | SourceError::Checksum { .. } => {
                ErrorClass::Transient
            }
            SourceError::Catalog(e) => e.class(),
            SourceError::Decode(e) => e.class(),
            SourceError::Purged { .. } | SourceError::TaggedGtidStart(_) => ErrorClass::Definite,
        }
    }
}

/// Control the reader obeys between transactions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderControl {
    /// Finish the current transaction, then stop.
    pub stop: bool,
    /// Stop reading at the next transaction boundary until cleared.
    pub paused: bool,
    /// The migration switched PostgreSQL to primary: finish at the next transaction boundary
    /// and read nothing more (the supervisor holds the stream until the phase changes back).
    pub hold: bool,
}

/// The source stage.
pub struct BinlogReader {
    pub config: SourceConfig,
    pub flavor: Flavor,
    pub start: StartFrom,
    pub decoder: Decoder,
    pub selector: TableSelector,
    pub options: TypeOptions,
    pub tx: mpsc::Sender<Message>,
    pub progress: Arc<Progress>,
    pub control: watch::Receiver<ReaderControl>,
    /// Commands of a running table re-copy (`ferry backfill --table`).
    pub recopy: mpsc::Receiver<RecopyCommand>,
    /// Rows and bytes in flight to the applier (bounds memory whatever the message sizes).
    pub budget: RowBudget,
}

impl BinlogReader {
    /// Applies a re-copy command and sends what it makes due (at a transaction boundary).
    async fn recopy_command(&mut self, tap: &mut RecopyTap, cmd: RecopyCommand) -> bool {
        let position = self.decoder.position();
        tap.command(cmd, &position);
        let due = tap.at_boundary(&position, &self.decoder.boundary_commit());
        for msg in due {
            self.budget.acquire(&msg).await;
            if self.tx.send(msg).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Connects and requests the binlog from `start`; returns the stream and its connection id.
    async fn open_stream(
        &self,
        start: &StartFrom,
    ) -> Result<(mysql_async::BinlogStream, u32), SourceError> {
        let stream_err = |cfg: &SourceConfig, source| SourceError::Stream {
            host: cfg.host.clone(),
            port: cfg.port,
            source,
        };
        let mut conn = connect::connect(&self.config).await?;
        if let StartFrom::Position(p) = start {
            check_not_purged(&mut conn, p).await.map_err(|e| match e {
                Ok(purged) => purged,
                Err(my) => stream_err(&self.config, my),
            })?;
        }
        let heartbeat_ns = self.config.heartbeat.as_nanos();
        let mut setup = vec![format!("SET @master_heartbeat_period = {heartbeat_ns}")];
        if self.flavor == Flavor::MariaDb {
            setup.push("SET @mariadb_slave_capability = 4".into());
            if let StartFrom::Gtid(g) = start {
                setup.push(format!("SET @slave_connect_state = '{g}'"));
                setup.push("SET @slave_gtid_strict_mode = 0".into());
                setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
            }
        }
        for s in setup {
            conn.query_drop(s)
                .await
                .map_err(|e| stream_err(&self.config, e))?;
        }
        let file_bytes: Vec<u8>;
        let mut request = BinlogStreamRequest::new(self.config.server_id);
        match start {
            StartFrom::Position(p) => {
                file_bytes = p.file.clone().into_bytes();
                request = request.with_filename(&file_bytes).with_pos(p.offset);
            }
            StartFrom::Gtid(GtidSet::MariaDb(_)) => {
                request = request.with_filename(b"").with_pos(4);
            }
            StartFrom::Gtid(g @ GtidSet::MySql(map)) => {
                let mut sids = Vec::new();
                for (source, intervals) in map {
                    if source.contains(':') {
                        return Err(SourceError::TaggedGtidStart(g.to_string()));
                    }
                    let uuid: [u8; 16] = hex::decode(source.replace('-', ""))
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .ok_or_else(|| SourceError::TaggedGtidStart(g.to_string()))?;
                    let ivs = intervals
                        .iter()
                        .map(|i| GnoInterval::new(i.start, i.end + 1))
                        .collect();
                    sids.push(Sid::new(uuid).with_intervals(ivs));
                }
                request = request.with_gtid().with_gtid_set(sids);
            }
        }
        let stream_id = conn.id();
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| stream_err(&self.config, e))?;
        Ok((stream, stream_id))
    }

    /// While a re-copy of a table without a key holds the reader (see [`RecopyTap::holding`]):
    /// closes the binlog connection (a stream nobody reads would be cut by the source's
    /// `net_write_timeout`), serves re-copy commands until the hold ends, then requests the
    /// binlog again from the reader's position, the transaction boundary it stopped at.
    /// `Ok(None)`: stop (shutdown, or the sink ended).
    async fn hold_for_recopy(
        &mut self,
        tap: &mut RecopyTap,
        stream: mysql_async::BinlogStream,
    ) -> Result<Option<(mysql_async::BinlogStream, u32)>, SourceError> {
        let position = self.decoder.position();
        tracing::info!(%position, "re-copy of a table without a key: the reader holds at this transaction boundary until the table's snapshot is injected");
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.close()).await;
        while tap.holding() {
            tokio::select! {
                cmd = self.recopy.recv() => match cmd {
                    Some(cmd) => {
                        if !self.recopy_command(tap, cmd).await {
                            return Ok(None);
                        }
                    }
                    // The re-copy task is gone (the daemon is stopping): nothing will end the hold.
                    None => return Ok(None),
                },
                changed = self.control.changed() => {
                    if changed.is_err() || self.control.borrow().stop || self.control.borrow().hold {
                        return Ok(None);
                    }
                }
            }
        }
        tracing::info!(%position, "re-copy snapshot injected; reading the binlog again from the boundary the reader held at");
        self.open_stream(&StartFrom::Position(position))
            .await
            .map(Some)
    }

    /// Streams until stopped or an error.
    ///
    /// # Errors
    /// [`SourceError`]; [`SourceError::class`] tells whether to reconnect.
    pub async fn run(mut self) -> Result<(), SourceError> {
        let stream_err = |cfg: &SourceConfig, source| SourceError::Stream {
            host: cfg.host.clone(),
            port: cfg.port,
            source,
        };
        let mut catalog_conn: Option<Conn> = None;
        let start = self.start.clone();
        let (mut stream, mut stream_id) = self.open_stream(&start).await?;
        let silence = self.config.heartbeat * 3 + Duration::from_millis(500);
        let progress = self.progress.clone();
        let begin = move |seq: u64, ts: u32| progress.begin(seq, ts);
        // While paused: the first event of the next transaction, taken off the stream (so its
        // source time is known) but not handled until the pause ends.
        let mut held: Option<Event> = None;
        let mut tap = RecopyTap::default();
        let mut recopy_open = true;
        loop {
            let control = *self.control.borrow();
            let boundary = !self.decoder.in_transaction();
            if boundary && (control.stop || control.hold) {
                return Ok(());
            }
            if boundary && tap.holding() && held.is_none() {
                match self.hold_for_recopy(&mut tap, stream).await? {
                    Some((s, id)) => (stream, stream_id) = (s, id),
                    None => return Ok(()),
                }
                continue;
            }
            let paused = boundary && control.paused;
            let event = match held.take() {
                Some(ev) if !paused => {
                    self.progress.read_unread();
                    ev
                }
                Some(ev) => {
                    // Paused with a transaction waiting: read nothing more until resumed. The
                    // connection stays open (the server buffers until its net_write_timeout,
                    // after which a resume reconnects from the checkpoint).
                    held = Some(ev);
                    if self.control.changed().await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                None => {
                    let next = tokio::select! {
                        biased;
                        cmd = self.recopy.recv(), if boundary && recopy_open => {
                            match cmd {
                                Some(cmd) => {
                                    if !self.recopy_command(&mut tap, cmd).await {
                                        return Ok(());
                                    }
                                }
                                None => recopy_open = false,
                            }
                            continue;
                        }
                        r = tokio::time::timeout(silence, stream.next()) => r,
                        changed = self.control.changed(), if boundary => {
                            if changed.is_err() {
                                return Ok(());
                            }
                            continue;
                        }
                    };
                    match next {
                        Err(_) => {
                            if dump_thread_busy(&self.config, &mut catalog_conn, stream_id, silence)
                                .await
                            {
                                tracing::debug!(
                                    "the source is still sending a binlog event; waiting for it"
                                );
                                continue;
                            }
                            return Err(SourceError::Silent(silence));
                        }
                        Ok(None) => return Err(SourceError::Closed),
                        Ok(Some(Err(e))) => return Err(stream_err(&self.config, e)),
                        Ok(Some(Ok(ev))) => ev,
                    }
                }
            };
            let header = event.header();
            if is_heartbeat(&event) {
                self.progress.heartbeat();
                continue;
            }
            let bookkeeping = is_bookkeeping(header.event_type_raw());
            if paused && !bookkeeping {
                // Paused: keep it for later; only its time is used (lag grows honestly from
                // the first transaction ferry has not read).
                self.progress.unread(header.timestamp());
                held = Some(event);
                continue;
            }
            m::binlog_event(header.event_type_raw());
            let footer = event.footer();
            if header.log_pos() != 0
                && footer.get_checksum_enabled()
                && matches!(
                    footer.get_checksum_alg(),
                    Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
                )
            {
                if let Some(sum) = event.checksum() {
                    if u32::from_le_bytes(sum)
                        != event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)
                    {
                        return Err(SourceError::Checksum {
                            position: self.decoder.position(),
                        });
                    }
                }
            }
            let out = {
                let tme = |id: u64| stream.get_tme(id);
                self.decoder.handle(&event, &tme, &begin)?
            };
            let committed_position = out.committed.then(|| self.decoder.position());
            if !self.decoder.in_transaction() {
                self.progress.scanned(self.decoder.position());
            }
            // File-level events (format description, GTID list, ...) carry the time the binlog
            // file was opened, which says nothing about how far behind the reader is.
            let ts = if bookkeeping { 0 } else { header.timestamp() };
            self.progress.read(ts, committed_position.as_ref());
            if out.committed {
                for (kind, n) in self.decoder.counters.substituted.drain() {
                    m::substituted(kind, n);
                }
            }
            let mut messages = out.messages;
            if let Some(Need::SchemaChange(change)) = &out.need {
                let conn = match &mut catalog_conn {
                    Some(c) => c,
                    None => catalog_conn.insert(connect::connect(&self.config).await?),
                };
                let mut catalog = schema_change::Catalog {
                    conn,
                    flavor: self.flavor,
                    selector: &self.selector,
                    options: &self.options,
                    allow_key_change: self.decoder.allow_key_change(),
                };
                let carried =
                    schema_change::carry(&mut catalog, &mut self.decoder, change, tap.table())
                        .await?;
                insert_before_commit(&mut messages, carried);
            }
            if let Some(Need::Tables(names)) = out.need {
                let conn = match &mut catalog_conn {
                    Some(c) => c,
                    None => catalog_conn.insert(connect::connect(&self.config).await?),
                };
                let list: Vec<_> = names.into_iter().map(|n| (n, 0)).collect();
                let tables =
                    catalog::load_named(conn, self.flavor, &self.selector, &self.options, &list)
                        .await?;
                let mut created = Vec::new();
                for t in tables {
                    tracing::info!(table = %t.source, "loaded table definition from the source");
                    let before = self.decoder.registry().get(&t.source).cloned();
                    let new = self.decoder.register(t);
                    if before.is_none() {
                        // Created on the source mid-stream: created on the target here (in this
                        // transaction), and its definition stored for later runs.
                        created.push(Message::SchemaChange(Box::new(
                            crate::change::SchemaChange {
                                table: new.clone(),
                                new: Some(new.clone()),
                                statements: Vec::new(),
                                position: self.decoder.position(),
                                source_sql: "(table created on the source)".into(),
                                bookkeeping: true,
                                shadow: None,
                            },
                        )));
                    }
                    if let Some(old) = before.filter(|o| o.source_columns != new.source_columns) {
                        // A change the operator mirrored (`--skip-ddl`): decode with the new
                        // definition from here on, after restarts too.
                        created.push(Message::SchemaChange(Box::new(
                            crate::change::SchemaChange {
                                table: old,
                                new: Some(new),
                                statements: Vec::new(),
                                position: self.decoder.position(),
                                source_sql: "(mirrored by the operator; skipped with --skip-ddl)"
                                    .into(),
                                bookkeeping: true,
                                shadow: None,
                            },
                        )));
                    }
                }
                if header.event_type_raw() == EventType::TABLE_MAP_EVENT as u8 {
                    // The table map that asked for the load binds now.
                    let tme = |id: u64| stream.get_tme(id);
                    messages = self.decoder.handle(&event, &tme, &begin)?.messages;
                }
                insert_before_commit(&mut messages, created);
            }
            if tap.is_active() {
                tap.tap(&mut messages, &self.decoder.position());
                // For a table without a key every boundary, not only commits: its snapshot may
                // lie after file-level events (a rotation) that no commit follows yet.
                if out.committed || (tap.whole() && !self.decoder.in_transaction()) {
                    let position = self.decoder.position();
                    messages.extend(tap.at_boundary(&position, &self.decoder.boundary_commit()));
                }
            }
            for msg in messages {
                self.budget.acquire(&msg).await;
                if self.tx.send(msg).await.is_err() {
                    return Ok(()); // the sink ended; it reports why
                }
            }
        }
    }
}

/// Puts `extra` before the statement's commit in `messages` (at the end when there is none), so
/// it applies in that transaction.
fn insert_before_commit(messages: &mut Vec<Message>, extra: Vec<Message>) {
    let at = messages
        .iter()
        .rposition(|m| matches!(m, Message::Commit(_)))
        .unwrap_or(messages.len());
    messages.splice(at..at, extra);
}

/// Whether the source's binlog dump thread serving connection `id` is still working on the
/// stream (reading or sending an event) rather than idle at the end of the binlog or gone. Asked
/// on a second connection (the same user sees its own threads without PROCESS); any failure to
/// ask within `limit` counts as not busy, so a dead source is still detected.
async fn dump_thread_busy(
    config: &SourceConfig,
    probe: &mut Option<Conn>,
    id: u32,
    limit: Duration,
) -> bool {
    let ask = async {
        let conn = match probe {
            Some(c) => c,
            None => probe.insert(connect::connect(config).await.ok()?),
        };
        conn.exec_first::<Option<String>, _, _>(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await
        .ok()
        .flatten()
        .flatten()
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(Some(state)) => is_busy_dump_state(&state),
        Ok(None) => false,
        Err(_) => {
            *probe = None;
            false
        }
    }
}

/// Whether a dump thread's PROCESSLIST state means it is working on the stream (`Sending binlog
/// event to replica`, `Writing to net` while the event waits for the network, `Reading event from
/// the binlog`, ...) rather than idle at the end of the binlog (`... has sent all binlog to ...;
/// waiting for ...`) or ending (`Waiting to finalize termination`, `Killed`). A dead network
/// still ends in detection: the server drops a thread stuck writing after `net_write_timeout`.
fn is_busy_dump_state(state: &str) -> bool {
    let s = state.to_ascii_lowercase();
    !(s.is_empty()
        || s.contains("has sent all binlog")
        || s.contains("finalize termination")
        || s.contains("killed"))
}

/// Events that belong to the binlog file rather than to a transaction: handled even while paused
/// (they carry no change), and their timestamps are not a measure of lag.
pub fn is_bookkeeping(raw_type: u8) -> bool {
    matches!(
        raw_type,
        3   // STOP
        | 4   // ROTATE
        | 15  // FORMAT_DESCRIPTION
        | 35  // PREVIOUS_GTIDS
        | 161 // MariaDB BINLOG_CHECKPOINT
        | 163 // MariaDB GTID_LIST
        | 164 // MariaDB START_ENCRYPTION
    )
}

/// `Ok(Err(purged))` when the position's file is gone from the source.
async fn check_not_purged(
    conn: &mut Conn,
    position: &BinlogPosition,
) -> Result<(), Result<SourceError, mysql_async::Error>> {
    let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(Err)?;
    let names: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
    if names.contains(&position.file) {
        return Ok(());
    }
    Err(Ok(SourceError::Purged {
        position: position.clone(),
        file: position.file.clone(),
        oldest: names.first().cloned().unwrap_or_else(|| "none".into()),
    }))
}

/// The source's current binlog end (`SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS`).
///
/// # Errors
/// Driver errors, or a source without a binary log.
pub async fn current_position(conn: &mut Conn) -> Result<BinlogPosition, mysql_async::Error> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let row = row.ok_or_else(|| {
        mysql_async::Error::Other(
            "the source has no binary log (SHOW MASTER STATUS is empty)".into(),
        )
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let offset: u64 = row.get(1).unwrap_or(4);
    Ok(BinlogPosition::new(file, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_thread_states_busy_or_idle() {
        for busy in [
            "Sending binlog event to slave",
            "Sending binlog event to replica",
            "Reading event from the binlog",
            "Finished reading one binlog; switching to next binlog",
            "Writing to net",
        ] {
            assert!(is_busy_dump_state(busy), "{busy}");
        }
        for idle in [
            "Master has sent all binlog to slave; waiting for binlog to be updated",
            "Master has sent all binlog to slave; waiting for more updates",
            "Source has sent all binlog to replica; waiting for more updates",
            "Waiting to finalize termination",
            "Killed",
            "",
        ] {
            assert!(!is_busy_dump_state(idle), "{idle}");
        }
    }
}
