//! Binlog events → [`Message`]s: transaction boundaries, table-map binding and validation, row
//! images converted by `transform`, and the handling of every statement that could change
//! replicated tables behind ferry's back.
//!
//! This is a state machine over events with no I/O, so the same code runs against a live server
//! and against recorded binlog files in tests. When it needs the catalog (a new table was
//! created) it says so with [`Need`] and the caller does the I/O.
//!
//! Guarantees:
//! - a `Commit` is produced at every transaction boundary (XID, COMMIT, a standalone statement)
//!   with the position of the next event, and never inside a transaction;
//! - a row event of a selected table is decoded against a table map that was validated against
//!   the loaded schema (column count, names, type families); a mismatch is a definite error
//!   naming the table, because it means the schema changed without ferry seeing it;
//! - a schema change, statement-logged change or incident touching a selected table stops the
//!   stream (definite error) before any later row is produced, unless the operator acknowledged
//!   exactly that statement by its position;
//! - a value problem is resolved by the configured policy: refused (definite error naming table,
//!   column, position and fix), substituted (counted), or the whole row dead-lettered (counted).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{
    Event, EventData, OptionalMetaExtractor, PreviousGtidsEvent, RotateEvent, RowsEventData,
    TableMapEvent,
};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

use super::alter::{self, Alter, Clause};
use super::ddl::{classify, Statement, TableRef};
use super::mariadb;
use super::online_change;
use super::rows::{images, TablePlan};
use crate::change::{Commit, DeadLetter, Message, RowOp, SchemaChange};
use crate::error::ErrorClass;
use crate::position::{uuid_text, BinlogPosition, GtidSet};
use crate::recorded_alters::RecordedAlter;
use crate::schema::{SourceName, Table};
use crate::select::TableSelector;
use crate::transform::{
    self, convert, json::apply_diffs, resolve, Cell, ProblemKind, Resolution, SourceValue,
    TypeOptions, ValueKind, ValueProblem,
};

/// Definite errors: replication cannot continue without the operator.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Refused(Box<RefusedValue>),
    #[error("table {table} at binlog {position}: the binlog's table definition does not match the loaded schema ({detail}); a schema change was not replicated. Make the PostgreSQL table match the source, then restart ferry")]
    SchemaMismatch {
        table: SourceName,
        position: BinlogPosition,
        detail: String,
    },
    #[error("schema change on replicated table {table} at binlog {position}: {verb}. ferry does not apply DDL yet. Apply the equivalent change to the PostgreSQL table, then restart with `ferry run --skip-ddl {position}`")]
    SchemaChange {
        table: SourceName,
        position: BinlogPosition,
        verb: String,
    },
    #[error("{0}")]
    SchemaChangeRefused(Box<RefusedChange>),
    #[error("statement-logged change ({verb}) of replicated table {table} at binlog {position}: row images are missing, so the change cannot be replicated exactly. Make sure no session sets binlog_format=STATEMENT or MIXED; restart with `ferry run --skip-ddl {position}`, then re-copy the table with `ferry backfill --table {table}`")]
    StatementChange {
        table: SourceName,
        position: BinlogPosition,
        verb: String,
    },
    #[error("DROP DATABASE {db} at binlog {position} drops replicated tables; drop the schema in PostgreSQL if intended, then restart with `ferry run --skip-ddl {position}`")]
    DropDatabase {
        db: String,
        position: BinlogPosition,
    },
    #[error("the source wrote an INCIDENT event at binlog {position} ({detail}): changes may be missing from the binlog. Verify the target (`ferry verify`) and restart past it with `ferry run --skip-ddl {position}`")]
    Incident {
        position: BinlogPosition,
        detail: String,
    },
    #[error("table {table} at binlog {position}: the row image has no value for column `{column}`, so the source does not log full row images (binlog_row_image is MINIMAL or NOBLOB). Set binlog_row_image=FULL on the source (SET GLOBAL and in the server config); rows changed while it was not FULL cannot be replicated exactly and must be copied again")]
    PartialRowImage {
        table: SourceName,
        position: BinlogPosition,
        column: String,
    },
    #[error("transaction payload at binlog {position} delivered none of its events (its zstd data did not decompress); the transaction would be lost, so replication stops. Check the source's binlog file at that position")]
    EmptyPayload { position: BinlogPosition },
    #[error("XA transaction touching replicated table(s) prepared at binlog {position}: ferry does not replicate XA transactions (their rows would be applied before the XA COMMIT decides their fate). Avoid XA on replicated tables; restart with `ferry run --skip-ddl {position}` and re-copy the affected tables with `ferry backfill --table`")]
    Xa { position: BinlogPosition },
    #[error("compressed binlog event at {position}: MariaDB log_bin_compress is on; turn it off (SET GLOBAL log_bin_compress=OFF) — compressed events already written cannot be decoded")]
    Compressed { position: BinlogPosition },
    /// A row PostgreSQL cannot take in one message (see [`crate::transform::size`]).
    #[error("table {table} at binlog {position}: {detail}")]
    TooLarge {
        table: SourceName,
        position: BinlogPosition,
        detail: String,
    },
    #[error("undecodable {what} at binlog {position}: {detail}")]
    Corrupt {
        what: &'static str,
        position: BinlogPosition,
        detail: String,
    },
}

impl DecodeError {
    /// Always definite: the same bytes decode the same way on every retry.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Definite
    }
}

/// A schema change that cannot be carried automatically.
#[derive(Debug, thiserror::Error)]
#[error("schema change on replicated table {table} at binlog {position} cannot be applied automatically: {reason}. Statement: {statement}. Apply the equivalent change to the PostgreSQL table by hand, then restart with `ferry run --skip-ddl {position}`{recopy}")]
pub struct RefusedChange {
    pub table: SourceName,
    pub position: BinlogPosition,
    pub statement: String,
    pub reason: String,
    /// Advice when the change rewrote rows on the source.
    pub recopy: String,
}

/// A value refused under the `refuse` policy, with everything the operator needs.
#[derive(Debug, thiserror::Error)]
#[error("table {table}, column `{column}`, at binlog {position}: {problem}. Fix: {fix}")]
pub struct RefusedValue {
    pub table: SourceName,
    pub column: String,
    pub position: BinlogPosition,
    pub problem: ValueProblem,
    pub fix: &'static str,
}

/// Something the decoder needs from the catalog before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Load these (selected) tables and register them ([`Decoder::register`]).
    Tables(Vec<SourceName>),
    /// A schema change of replicated tables: read their new definitions and carry it
    /// (`source::schema_change`), before the statement's commit.
    SchemaChange(Box<PendingChange>),
}

/// A schema change the decoder accepted for carrying, before its new definitions are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub position: BinlogPosition,
    pub sql: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// `ALTER TABLE` / `CREATE INDEX` / `DROP INDEX` of a replicated table.
    Alter { table: SourceName, alter: Alter },
    /// `RENAME TABLE` pairs (or `ALTER TABLE ... RENAME TO`), in order; `from` is replicated.
    Rename(Vec<(SourceName, SourceName)>),
    /// `DROP TABLE` of these replicated tables.
    Drop(Vec<SourceName>),
    /// An ALTER (or CREATE/DROP INDEX) of an online schema change tool's shadow of replicated
    /// `base` (see [`super::online_change`]): recorded, applied to `base` at the cut-over.
    ShadowAlter {
        base: SourceName,
        shadow: SourceName,
    },
    /// The tool's atomic cut-over: `base` renamed to a tool name and `shadow` to `base`.
    Swap {
        base: SourceName,
        shadow: SourceName,
    },
    /// The shadow dropped without a cut-over (an interrupted run).
    ShadowDropped {
        base: SourceName,
        shadow: SourceName,
    },
}

impl ChangeKind {
    /// The replicated tables the change touches (by their names before it).
    pub fn tables(&self) -> Vec<&SourceName> {
        match self {
            ChangeKind::Alter { table, .. } => vec![table],
            ChangeKind::Rename(pairs) => pairs.iter().map(|(from, _)| from).collect(),
            ChangeKind::Drop(names) => names.iter().collect(),
            ChangeKind::ShadowAlter { base, .. }
            | ChangeKind::Swap { base, .. }
            | ChangeKind::ShadowDropped { base, .. } => vec![base],
        }
    }
}

/// The statement text for messages, shortened.
pub fn statement_excerpt(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        format!("{}…", flat.chars().take(300).collect::<String>())
    } else {
        flat
    }
}

/// The registry of replicated tables, by source name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tables: HashMap<SourceName, Arc<Table>>,
}

impl Registry {
    pub fn new(tables: impl IntoIterator<Item = Table>) -> Self {
        Self {
            tables: tables
                .into_iter()
                .map(|t| (t.source.clone(), Arc::new(t)))
                .collect(),
        }
    }

    pub fn get(&self, name: &SourceName) -> Option<&Arc<Table>> {
        self.tables.get(name)
    }

    pub fn insert(&mut self, table: Table) -> Arc<Table> {
        let t = Arc::new(table);
        self.tables.insert(t.source.clone(), t.clone());
        t
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values()
    }
}

/// Substitutions made under a `null`/`value:` policy, by problem kind, for the metrics.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub substituted: HashMap<&'static str, u64>,
    pub dead_lettered: u64,
}

/// The decoder state.
pub struct Decoder {
    registry: Registry,
    selector: TableSelector,
    options: TypeOptions,
    /// Current binlog file (from ROTATE events).
    file: String,
    /// End position (log_pos) of the last event that had one; events inside a compressed
    /// transaction payload carry none and share the payload's.
    last_log_pos: u64,
    in_txn: bool,
    /// Rows of replicated tables in the current transaction (an XA prepare with rows is refused).
    txn_rows: usize,
    /// The current transaction is an XA transaction: its rows are counted, not emitted.
    in_xa: bool,
    txn_seq: u64,
    /// A MariaDB GTID flagged the next event group as one standalone statement.
    standalone_pending: bool,
    /// A MySQL GTID (or anonymous GTID) opened the current group and no BEGIN followed: MySQL
    /// logs DDL and other implicitly committing statements as GTID + one QUERY, with no BEGIN
    /// and no XID, so that QUERY is the whole transaction.
    implicit_group: bool,
    gtid: Option<GtidSet>,
    /// table_id → replicated table (None: not selected).
    bound: HashMap<u64, Option<Arc<Table>>>,
    /// table_id → decoding plan of its table map (selected tables only).
    plans: HashMap<u64, Arc<TablePlan>>,
    /// Start of a TRANSACTION_PAYLOAD whose inner events have not arrived yet: the reader
    /// (mysql_async) yields nothing for a payload that fails to decompress, and the next outer
    /// event must not be taken for the payload's successor.
    open_payload: Option<BinlogPosition>,
    /// Statement the operator acknowledged (`--skip-ddl`): skipped once, then reloaded.
    skip_at: Option<BinlogPosition>,
    /// The source's flavor, for describing table maps (see [`Decoder::set_flavor`]).
    flavor: super::connect::Flavor,
    /// Tables copied whole (no key) and the exact position of the snapshot their copy holds:
    /// their changes before it are already in the copy (see [`crate::backfill::whole`]).
    copied_whole: HashMap<SourceName, BinlogPosition>,
    /// Schema changes online schema change tools ran on their shadow tables, by shadow, until
    /// the cut-over applies them (see [`crate::recorded_alters`]).
    shadow_alters: HashMap<SourceName, Vec<RecordedAlter>>,
    /// The current MariaDB event group's phase of a two-phase ALTER.
    alter_phase: Option<mariadb::AlterPhase>,
    /// `ddl.allow_key_change`: a change of the row identity is carried, not refused.
    allow_key_change: bool,
    pub counters: Counters,
}

/// What one event produced.
#[derive(Debug, Default)]
pub struct Output {
    pub messages: Vec<Message>,
    pub need: Option<Need>,
    /// The event closed a transaction.
    pub committed: bool,
}

impl Decoder {
    pub fn new(
        registry: Registry,
        selector: TableSelector,
        options: TypeOptions,
        file: String,
        gtid: Option<GtidSet>,
        skip_at: Option<BinlogPosition>,
    ) -> Self {
        Self {
            registry,
            selector,
            options,
            file,
            last_log_pos: 0,
            in_txn: false,
            txn_rows: 0,
            in_xa: false,
            txn_seq: 0,
            standalone_pending: false,
            implicit_group: false,
            gtid,
            bound: HashMap::new(),
            plans: HashMap::new(),
            open_payload: None,
            skip_at,
            flavor: super::connect::Flavor::MySql,
            copied_whole: HashMap::new(),
            shadow_alters: HashMap::new(),
            alter_phase: None,
            allow_key_change: false,
            counters: Counters::default(),
        }
    }

    /// Whether `n` is replicated when it has rows: selected, and not an online schema change
    /// tool's table beside a replicated table.
    fn replicable(&self, n: &SourceName) -> bool {
        self.selector.matches(&n.db, &n.table)
            && !self
                .selector
                .tool_tables(&n.db, &n.table)
                .iter()
                .any(|(base, _)| self.registry.get(base).is_some())
    }

    /// Carry changes of the row identity (`ddl.allow_key_change`) instead of refusing them.
    pub fn set_allow_key_change(&mut self, allow: bool) {
        self.allow_key_change = allow;
    }

    pub fn allow_key_change(&self) -> bool {
        self.allow_key_change
    }

    /// The shadow tables' schema changes recorded by an earlier run.
    pub fn set_recorded_alters(&mut self, recorded: Vec<RecordedAlter>) {
        self.shadow_alters.clear();
        for r in recorded {
            self.record_shadow_alter(r);
        }
    }

    /// Records a schema change of a shadow table (once per position).
    pub fn record_shadow_alter(&mut self, r: RecordedAlter) {
        let list = self.shadow_alters.entry(r.shadow.clone()).or_default();
        if !list.iter().any(|x| x.position == r.position) {
            list.push(r);
        }
    }

    /// Removes and returns what was recorded for `shadow`, in binlog order.
    pub fn take_shadow_alters(&mut self, shadow: &SourceName) -> Vec<RecordedAlter> {
        self.shadow_alters.remove(shadow).unwrap_or_default()
    }

    /// Tables whose changes before a snapshot position are skipped: the whole-table copy read
    /// in that snapshot holds them already.
    pub fn set_copied_whole(&mut self, snapshots: HashMap<SourceName, BinlogPosition>) {
        self.copied_whole = snapshots;
    }

    /// True when a change of `table` at `at` is already in its whole-table copy: the snapshot
    /// position is a transaction boundary, so an event before it belongs to a transaction
    /// that ended at or before it.
    fn in_whole_copy(&self, table: &SourceName, at: &BinlogPosition) -> bool {
        self.copied_whole
            .get(table)
            .is_some_and(|snapshot| at < snapshot)
    }

    /// The source's flavor (MySQL unless set), used when a table map corrects a definition.
    pub fn set_flavor(&mut self, flavor: super::connect::Flavor) {
        self.flavor = flavor;
    }

    /// A definition corrected by the table map when a column's binlog type is narrower than the
    /// definition's but the PostgreSQL column already holds it: a schema change read after a
    /// later one had already redefined the column on the source (`ADD COLUMN c INT` … `MODIFY
    /// c BIGINT`, both in the backlog) took the later definition. The map (FULL metadata: names,
    /// types, signedness, charsets, ENUM/SET values) says what the rows really carry; every other
    /// property (default, comment, ...) stays. `None` when the map cannot correct it.
    fn corrected_by_map(&self, table: &Table, map: &TableMapEvent<'_>) -> Option<Table> {
        let described = super::tablemap::describe(map, self.flavor).ok()?;
        if !described.present.column_names || described.columns.len() != table.columns.len() {
            return None;
        }
        let mut columns = table.source_columns.clone();
        let mut changed = false;
        for (i, mc) in described.columns.iter().enumerate() {
            let tc = &table.source_columns[i];
            if !mc.name.eq_ignore_ascii_case(&tc.name) {
                return None;
            }
            let Ok(Some(ct)) = map.get_column_type(i) else {
                return None;
            };
            if type_family_matches(&table.columns[i].kind, ct) {
                continue;
            }
            let mut merged = mc.clone();
            merged.name = tc.name.clone();
            merged.default = tc.default.clone();
            merged.comment = tc.comment.clone();
            merged.generated = tc.generated;
            merged.invisible = tc.invisible;
            merged.auto_increment = tc.auto_increment;
            merged.on_update_now = tc.on_update_now;
            merged.is_json = tc.is_json;
            let rule = transform::plan_column(&merged, &self.options).ok()?;
            if !crate::target_schema::evolve::widens(&rule.pg_type, &table.columns[i].pg_type) {
                return None;
            }
            columns[i] = merged;
            changed = true;
        }
        if !changed {
            return None;
        }
        Table::plan(
            table.source.clone(),
            table.target_schema.clone(),
            columns,
            table.all_indexes(),
            table.estimated_rows,
            &self.options,
        )
        .ok()
        .map(|fixed| fixed.with_details_of(table))
    }

    /// True between the first event of a transaction and its commit.
    pub fn in_transaction(&self) -> bool {
        self.in_txn
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The position after the last event seen.
    pub fn position(&self) -> BinlogPosition {
        BinlogPosition::new(self.file.clone(), self.last_log_pos)
    }

    /// A commit at the current boundary, for messages the reader adds between transactions.
    pub fn boundary_commit(&self) -> Commit {
        Commit {
            position: self.position(),
            gtid: self.gtid.as_ref().map(|g| g.to_string()),
            source_time: 0,
            seq: self.txn_seq,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds (or replaces) a table after a [`Need::Tables`]; its table ids are re-bound.
    pub fn register(&mut self, table: Table) -> Arc<Table> {
        self.unbind(&table.source);
        self.registry.insert(table)
    }

    /// Stops replicating a table (dropped, or renamed out of the selection).
    pub fn unregister(&mut self, name: &SourceName) {
        self.unbind(name);
        self.registry.tables.remove(name);
    }

    /// Forgets the table ids bound to `name` (other tables of the open transaction stay bound),
    /// and the ids of tables not replicated (one may now be `name`).
    fn unbind(&mut self, name: &SourceName) {
        let stale: Vec<u64> = self
            .bound
            .iter()
            .filter(|(_, t)| match t {
                None => true,
                Some(t) => t.source == *name,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.bound.remove(&id);
            self.plans.remove(&id);
        }
    }

    fn event_start(&self, event: &Event) -> BinlogPosition {
        let h = event.header();
        let end = u64::from(h.log_pos());
        let start = if end == 0 {
            self.last_log_pos
        } else {
            end.saturating_sub(u64::from(h.event_size()))
        };
        BinlogPosition::new(self.file.clone(), start)
    }

    fn begin(&mut self, ts: u32, progress: &dyn Fn(u64, u32)) {
        if !self.in_txn {
            self.txn_rows = 0;
            self.in_xa = false;
            self.in_txn = true;
            self.txn_seq += 1;
            progress(self.txn_seq, ts);
        }
    }

    fn commit(&mut self, ts: u32, out: &mut Output, progress: &dyn Fn(u64, u32)) {
        self.begin(ts, progress);
        self.in_txn = false;
        self.standalone_pending = false;
        self.implicit_group = false;
        out.committed = true;
        out.messages.push(Message::Commit(Commit {
            position: self.position(),
            gtid: self.gtid.as_ref().map(|g| g.to_string()),
            source_time: ts,
            seq: self.txn_seq,
        }));
    }

    /// Decodes one event. `tme` looks up the table map for a table id; `progress` is told
    /// when a transaction starts (sequence, source time), for lag accounting.
    ///
    /// # Errors
    /// Definite errors only (see [`DecodeError`]).
    pub fn handle<'t>(
        &mut self,
        event: &Event,
        tme: &dyn Fn(u64) -> Option<&'t TableMapEvent<'static>>,
        progress: &dyn Fn(u64, u32),
    ) -> Result<Output, DecodeError> {
        let mut out = Output::default();
        let header = event.header();
        let ts = header.timestamp();
        let start = self.event_start(event);
        if header.log_pos() == 0 {
            self.open_payload = None;
        } else if let Some(position) = self.open_payload.take() {
            return Err(DecodeError::EmptyPayload { position });
        }
        if header.log_pos() != 0 {
            self.last_log_pos = u64::from(header.log_pos());
        }
        let raw_type = header.event_type_raw();
        if self.on_mariadb_event(raw_type, event, ts, &start, progress)? {
            return Ok(out);
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(out), // unknown event type (e.g. Aurora padding): skipped
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    what: "event",
                    position: start,
                    detail: format!("type {raw_type}: {e}"),
                })
            }
        };
        match data {
            EventData::RotateEvent(r) => self.on_rotate(&r, header.log_pos() == 0),
            EventData::PreviousGtidsEvent(p) if !p.sids().is_empty() => self.on_previous_gtids(&p),
            EventData::GtidEvent(g) => {
                let source = gtid_source(&g.sid(), g.tag().map(|t| t.to_string()));
                let gtids = self.gtid.get_or_insert_with(GtidSet::empty_mysql);
                gtids.apply_mysql(&source, g.gno());
                self.begin(ts, progress);
                self.implicit_group = true;
            }
            EventData::AnonymousGtidEvent(_) => {
                self.begin(ts, progress);
                self.implicit_group = true;
            }
            EventData::XidEvent(_) => self.commit(ts, &mut out, progress),
            EventData::XaPrepareLogEvent(_) => {
                if self.txn_rows > 0 && self.skip_at.as_ref() != Some(&start) {
                    return Err(DecodeError::Xa { position: start });
                }
                // No replicated rows (or skipped by the operator): nothing was emitted for it;
                // it is a boundary.
                self.commit(ts, &mut out, progress);
            }
            EventData::IncidentEvent(i) => {
                return Err(DecodeError::Incident {
                    position: start,
                    detail: format!("{:?}", i.message()),
                })
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let schema = q.schema().to_string();
                self.query(&sql, &schema, ts, start, &mut out, progress)?;
            }
            EventData::TableMapEvent(t) => self.on_table_map(&t, &start, &mut out)?,
            EventData::RowsEvent(rows) => {
                self.begin(ts, progress);
                self.on_rows_event(&rows, tme, &start, &mut out)?;
            }
            // Its inner events follow from the stream (log_pos 0, sharing this event's
            // position); an empty payload carries nothing to wait for.
            EventData::TransactionPayloadEvent(p) if p.uncompressed_size() > 0 => {
                self.open_payload = Some(start);
            }
            _ => {}
        }
        if self.standalone_pending && !self.in_txn && out.committed {
            self.standalone_pending = false;
        }
        Ok(out)
    }

    /// MariaDB's own event types, which mysql_common does not decode. Returns true when the
    /// event was one of them (and is handled).
    fn on_mariadb_event(
        &mut self,
        raw_type: u8,
        event: &Event,
        ts: u32,
        start: &BinlogPosition,
        progress: &dyn Fn(u64, u32),
    ) -> Result<bool, DecodeError> {
        match raw_type {
            mariadb::GTID_EVENT => {
                if let Some(g) = mariadb::parse_gtid(event.data(), event.header().server_id()) {
                    let gtids = self.gtid.get_or_insert_with(GtidSet::empty_mariadb);
                    gtids.apply_mariadb(g.gtid);
                    self.alter_phase = g.alter;
                    if g.standalone() {
                        self.standalone_pending = true;
                    } else {
                        self.begin(ts, progress);
                        // MariaDB logs XA START in the GTID event itself.
                        self.in_xa = g.prepared_xa();
                    }
                }
                Ok(true)
            }
            mariadb::GTID_LIST_EVENT => {
                // The GTID state before this file: it seeds the domains this run has not seen,
                // so a commit's GTID text is the whole state, not only what this run read.
                if let Some(list) = mariadb::parse_gtid_list(event.data()) {
                    self.gtid
                        .get_or_insert_with(GtidSet::empty_mariadb)
                        .seed_mariadb(&list);
                }
                Ok(true)
            }
            mariadb::ANNOTATE_ROWS_EVENT
            | mariadb::BINLOG_CHECKPOINT_EVENT
            | mariadb::START_ENCRYPTION_EVENT => Ok(true),
            t if mariadb::COMPRESSED_EVENTS.contains(&t) => Err(DecodeError::Compressed {
                position: start.clone(),
            }),
            _ => Ok(false),
        }
    }

    /// A ROTATE names the file the following positions are in.
    fn on_rotate(&mut self, r: &RotateEvent<'_>, fake: bool) {
        // A fake ROTATE (sent at stream start) has log_pos 0 in its header; its position field
        // is the requested start, so `RotateEvent::is_fake` cannot tell.
        if fake {
            // The fake ROTATE at stream start may carry 4 checksum bytes in its name
            // (mysql_async issue 189): keep our own name unless this one is clean.
            if let Some(clean) = clean_rotate_name(r.name_raw(), &self.file) {
                self.file = clean;
            }
        } else {
            self.file = r.name().to_string();
        }
        self.last_log_pos = r.position();
    }

    /// Everything logged before this file: with it, a commit's GTID text is the source's whole
    /// executed set at that commit (what a file:offset position denotes), not only the
    /// transactions this run happened to read.
    fn on_previous_gtids(&mut self, p: &PreviousGtidsEvent) {
        let gtids = self.gtid.get_or_insert_with(GtidSet::empty_mysql);
        for sid in p.sids() {
            let source = gtid_source(&sid.uuid(), sid.tag().map(|t| t.to_string()));
            for iv in sid.intervals() {
                // The binary encoding's intervals end exclusively.
                if iv.end() > iv.start() {
                    gtids.apply_mysql_interval(&source, iv.start(), iv.end() - 1);
                }
            }
        }
    }

    /// Binds a table id to a loaded table (validating the map against it), asks for a selected
    /// table ferry has not loaded, or marks the id as not replicated.
    fn on_table_map(
        &mut self,
        t: &TableMapEvent<'_>,
        start: &BinlogPosition,
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        let name = SourceName::new(t.database_name().to_string(), t.table_name().to_string());
        match self.registry.get(&name).cloned() {
            Some(table) => {
                if !matches!(self.bound.get(&t.table_id()), Some(Some(b)) if Arc::ptr_eq(b, &table))
                {
                    let table = match validate_table_map(&table, t, start) {
                        Ok(()) => table,
                        Err(mismatch) => {
                            let Some(fixed) = self.corrected_by_map(&table, t) else {
                                return Err(mismatch);
                            };
                            validate_table_map(&fixed, t, start)?;
                            tracing::info!(table = %name, position = %start, "the table map shows narrower column types than the definition read from the source's catalog (a later schema change of the same column already ran): decoding with the map's types; the PostgreSQL columns already hold them");
                            let fixed = self.register(fixed);
                            out.messages
                                .push(Message::SchemaChange(Box::new(SchemaChange {
                                    table: table.clone(),
                                    new: Some(fixed.clone()),
                                    statements: Vec::new(),
                                    position: start.clone(),
                                    source_sql: "(definition corrected from the table map)".into(),
                                    bookkeeping: true,
                                    shadow: None,
                                })));
                            fixed
                        }
                    };
                    let plan = TablePlan::new(t).map_err(|e| DecodeError::Corrupt {
                        what: "table map",
                        position: start.clone(),
                        detail: format!("table {}: {e}", table.source),
                    })?;
                    self.plans.insert(t.table_id(), Arc::new(plan));
                    self.bound.insert(t.table_id(), Some(table));
                }
            }
            None if self.replicable(&name) => {
                // Selected but unknown: created while ferry was not looking.
                out.need = Some(Need::Tables(vec![name]));
                self.bound.remove(&t.table_id());
            }
            None => {
                self.bound.insert(t.table_id(), None);
            }
        }
        Ok(())
    }

    /// Rows of a bound table are decoded; rows of tables not replicated are skipped.
    fn on_rows_event<'t>(
        &mut self,
        rows: &RowsEventData<'_>,
        tme: &dyn Fn(u64) -> Option<&'t TableMapEvent<'static>>,
        start: &BinlogPosition,
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        // Rows after a group's first QUERY (CREATE TABLE ... START TRANSACTION of an atomic
        // CREATE ... SELECT) belong to a transaction that ends with its XID.
        self.implicit_group = false;
        let id = rows.table_id();
        let table = match self.bound.get(&id) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(()),
            None => {
                let Some(map) = tme(id) else {
                    return Err(DecodeError::Corrupt {
                        what: "rows event",
                        position: start.clone(),
                        detail: format!("no table map for table id {id}"),
                    });
                };
                let name = SourceName::new(
                    map.database_name().to_string(),
                    map.table_name().to_string(),
                );
                if self.replicable(&name) {
                    return Err(DecodeError::SchemaMismatch {
                        table: name,
                        position: start.clone(),
                        detail: "table is selected but was not loaded".into(),
                    });
                }
                return Ok(());
            }
        };
        let Some(plan) = self.plans.get(&id).cloned() else {
            return Err(DecodeError::Corrupt {
                what: "rows event",
                position: start.clone(),
                detail: format!("no table map for table id {id}"),
            });
        };
        self.rows(&table, rows, &plan, start, out)
    }

    fn query(
        &mut self,
        sql: &str,
        schema: &str,
        ts: u32,
        start: BinlogPosition,
        out: &mut Output,
        progress: &dyn Fn(u64, u32),
    ) -> Result<(), DecodeError> {
        let statement = classify(sql);
        if is_xa_start(sql) {
            // Rows of an XA transaction are held back: its outcome is decided later, by an
            // XA COMMIT or XA ROLLBACK in another event group.
            self.begin(ts, progress);
            self.in_xa = true;
        }
        // Statements that open a transaction rather than being one.
        if self.implicit_group && (opens_transaction(sql) || statement == Statement::Begin) {
            self.implicit_group = false;
        }
        match statement {
            Statement::Begin => {
                self.begin(ts, progress);
                return Ok(());
            }
            Statement::Commit | Statement::Rollback => {
                self.commit(ts, out, progress);
                return Ok(());
            }
            _ => {}
        }
        let acknowledged = self.skip_at.as_ref() == Some(&start);
        let resolve_ref = |r: &TableRef| {
            SourceName::new(
                r.0.clone().unwrap_or_else(|| schema.to_string()),
                r.1.clone(),
            )
        };
        match statement {
            Statement::Begin | Statement::Commit | Statement::Rollback | Statement::Harmless => {}
            Statement::CreateTable { tables, or_replace } => {
                // A tool's shadow created again (a new run under the same name): what an
                // earlier run recorded for it is discarded.
                let recreated = tables.iter().map(resolve_ref).find_map(|n| {
                    let (base, _) = online_change::tool_of(&self.selector, &self.registry, &n)?;
                    self.shadow_alters
                        .contains_key(&n)
                        .then_some(ChangeKind::ShadowDropped { base, shadow: n })
                });
                if let Some(kind) = recreated {
                    out.need = Some(Need::SchemaChange(Box::new(PendingChange {
                        position: start.clone(),
                        sql: sql.to_string(),
                        kind,
                    })));
                } else {
                    self.created(&tables, or_replace, acknowledged, &start, schema, out)?;
                }
            }
            Statement::Truncate(refs) => {
                for name in refs.iter().map(resolve_ref) {
                    if let Some(table) = self.registry.get(&name).cloned() {
                        self.begin(ts, progress);
                        if self.in_whole_copy(&name, &start) {
                            continue;
                        }
                        out.messages.push(Message::Truncate {
                            table: table.clone(),
                        });
                    }
                }
            }
            Statement::SchemaChange { .. }
                if matches!(
                    self.alter_phase,
                    Some(mariadb::AlterPhase::Start | mariadb::AlterPhase::Rollback)
                ) =>
            {
                // MariaDB's two-phase ALTER: the statement takes effect at its COMMIT ALTER,
                // which repeats it; a ROLLBACK ALTER means it never did.
                crate::metrics::schema_change("ignored");
                tracing::info!(position = %start, phase = ?self.alter_phase, statement = %statement_excerpt(sql), "a phase of a two-phase ALTER (binlog_alter_two_phase) that changes nothing yet: carried at its COMMIT ALTER, if any");
            }
            Statement::SchemaChange { verb, tables } if !acknowledged => {
                let names: Vec<SourceName> = tables.iter().map(resolve_ref).collect();
                let resolve = |r: &alter::Name| {
                    SourceName::new(
                        r.0.clone().unwrap_or_else(|| schema.to_string()),
                        r.1.clone(),
                    )
                };
                let step = online_change::classify(
                    &self.selector,
                    &self.registry,
                    self.allow_key_change,
                    &verb,
                    sql,
                    &names,
                    &resolve,
                )
                .map_err(|(table, reason)| {
                    crate::metrics::schema_change("refused");
                    DecodeError::SchemaChangeRefused(Box::new(RefusedChange {
                        table,
                        position: start.clone(),
                        statement: statement_excerpt(sql),
                        reason,
                        recopy: String::new(),
                    }))
                })?;
                match step {
                    online_change::Step::Carry(kind) => {
                        out.need = Some(Need::SchemaChange(Box::new(PendingChange {
                            position: start.clone(),
                            sql: sql.to_string(),
                            kind,
                        })));
                    }
                    online_change::Step::Ignore => {
                        crate::metrics::schema_change("ignored");
                        tracing::info!(position = %start, statement = %statement_excerpt(sql), "statement on an online schema change tool's table: nothing to carry to PostgreSQL");
                    }
                    online_change::Step::NotOurs => {
                        self.replicated_schema_change(&verb, sql, &tables, &start, schema, out)?
                    }
                }
            }
            Statement::SchemaChange { verb, tables } => {
                self.replicated_schema_change(&verb, sql, &tables, &start, schema, out)?
            }
            Statement::DropDatabase(db) => {
                if self.registry.tables().any(|t| t.source.db == db) && !acknowledged {
                    return Err(DecodeError::DropDatabase {
                        db,
                        position: start,
                    });
                }
            }
            Statement::Other { verb, identifiers } => {
                let hit = identifiers
                    .iter()
                    .map(resolve_ref)
                    .find(|n| self.registry.get(n).is_some());
                if let Some(table) = hit {
                    if !acknowledged {
                        return Err(DecodeError::StatementChange {
                            table,
                            position: start,
                            verb,
                        });
                    }
                }
            }
        }
        // A statement outside BEGIN ... COMMIT is its own transaction (DDL, MariaDB standalone,
        // MySQL GTID + QUERY).
        if !self.in_txn || self.standalone_pending || self.implicit_group {
            self.commit(ts, out, progress);
        }
        Ok(())
    }

    /// `CREATE TABLE` of `tables`: selected tables ferry does not know yet are loaded.
    fn created(
        &self,
        tables: &[TableRef],
        or_replace: bool,
        acknowledged: bool,
        start: &BinlogPosition,
        schema: &str,
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        let resolve_ref = |r: &TableRef| {
            SourceName::new(
                r.0.clone().unwrap_or_else(|| schema.to_string()),
                r.1.clone(),
            )
        };
        let selected: Vec<SourceName> = tables
            .iter()
            .map(resolve_ref)
            .filter(|n| self.replicable(n))
            .collect();
        let (known, new): (Vec<SourceName>, Vec<SourceName>) = selected
            .into_iter()
            .partition(|n| self.registry.get(n).is_some());
        if let Some(existing) = known.first() {
            // CREATE OR REPLACE drops the old rows: that must not pass unnoticed. A plain
            // CREATE of a table ferry already knows is the binlog catching up with a
            // catalog loaded later; the table maps that follow are validated against it.
            if or_replace && !acknowledged {
                return Err(DecodeError::SchemaChange {
                    table: existing.clone(),
                    position: start.clone(),
                    verb: "CREATE OR REPLACE TABLE".into(),
                });
            }
        }
        if !new.is_empty() {
            out.need = Some(Need::Tables(new));
        }
        Ok(())
    }

    /// A schema change statement of replicated (or selected) tables: what it asks for.
    fn replicated_schema_change(
        &self,
        verb: &str,
        sql: &str,
        tables: &[TableRef],
        start: &BinlogPosition,
        schema: &str,
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        let acknowledged = self.skip_at.as_ref() == Some(start);
        let resolve_ref = |r: &TableRef| {
            SourceName::new(
                r.0.clone().unwrap_or_else(|| schema.to_string()),
                r.1.clone(),
            )
        };
        let hit = tables
            .iter()
            .map(resolve_ref)
            .find(|n| self.registry.get(n).is_some() || self.replicable(n));
        if let Some(table) = hit {
            if acknowledged {
                let names: Vec<SourceName> = tables
                    .iter()
                    .map(resolve_ref)
                    .filter(|n| self.replicable(n))
                    .collect();
                out.need = Some(Need::Tables(names));
            } else {
                let resolve = |r: &alter::Name| {
                    SourceName::new(
                        r.0.clone().unwrap_or_else(|| schema.to_string()),
                        r.1.clone(),
                    )
                };
                match self.schema_change(verb, sql, &table, start, &resolve)? {
                    Some(kind) => {
                        out.need = Some(Need::SchemaChange(Box::new(PendingChange {
                            position: start.clone(),
                            sql: sql.to_string(),
                            kind,
                        })))
                    }
                    None => {
                        crate::metrics::schema_change("ignored");
                        tracing::info!(table = %table, position = %start, statement = %statement_excerpt(sql), "schema change with nothing to carry to PostgreSQL (storage options)");
                    }
                }
            }
        }
        Ok(())
    }

    /// What a schema change of replicated table `table` asks for: nothing (`None`: storage
    /// options only), or a change to carry; refused when it cannot be carried exactly.
    fn schema_change(
        &self,
        verb: &str,
        sql: &str,
        table: &SourceName,
        start: &BinlogPosition,
        resolve: &dyn Fn(&alter::Name) -> SourceName,
    ) -> Result<Option<ChangeKind>, DecodeError> {
        let refuse = |reason: String, recopy: bool| {
            crate::metrics::schema_change("refused");
            DecodeError::SchemaChangeRefused(Box::new(RefusedChange {
                table: table.clone(),
                position: start.clone(),
                statement: statement_excerpt(sql),
                reason,
                recopy: if recopy {
                    format!(", then copy the table again with `ferry backfill --table {table}`")
                } else {
                    String::new()
                },
            }))
        };
        let replicated = |n: &SourceName| self.registry.get(n).is_some();
        match verb {
            "ALTER TABLE" => {
                let Some(parsed) = alter::parse_alter_table(sql) else {
                    return Err(refuse("ferry cannot read the statement".into(), false));
                };
                let name = resolve(&parsed.table);
                if !replicated(&name) {
                    // A selected table ferry does not replicate yet: read it when rows come.
                    return Ok(None);
                }
                for c in &parsed.clauses {
                    match c {
                        Clause::Unknown(text) => {
                            return Err(refuse(format!("ferry cannot read the clause `{text}`"), false))
                        }
                        Clause::RowsChanged(what) => {
                            return Err(refuse(
                                format!("{what} changes rows without row events"),
                                true,
                            ))
                        }
                        Clause::PrimaryKey if !self.allow_key_change => {
                            return Err(refuse(
                                "the primary key changes, and with it the row identity ferry upserts and deletes by; set ddl.allow_key_change = true to re-key the PostgreSQL table in the same transaction".into(),
                                false,
                            ))
                        }
                        _ => {}
                    }
                }
                if parsed.is_storage_only() {
                    return Ok(None);
                }
                if let Some(to) = parsed.rename_to() {
                    if parsed
                        .clauses
                        .iter()
                        .any(|c| !matches!(c, Clause::RenameTable(_) | Clause::Storage))
                    {
                        return Err(refuse(
                            "RENAME TO together with other changes in one statement is not supported".into(),
                            false,
                        ));
                    }
                    return Ok(Some(ChangeKind::Rename(vec![(name, resolve(to))])));
                }
                Ok(Some(ChangeKind::Alter {
                    table: name,
                    alter: parsed,
                }))
            }
            "CREATE INDEX" | "DROP INDEX" => Ok(Some(ChangeKind::Alter {
                table: table.clone(),
                alter: Alter {
                    table: (Some(table.db.clone()), table.table.clone()),
                    clauses: vec![Clause::Index],
                },
            })),
            "RENAME TABLE" => {
                let Some(pairs) = alter::parse_rename_tables(sql) else {
                    return Err(refuse("ferry cannot read the statement".into(), false));
                };
                let pairs: Vec<(SourceName, SourceName)> = pairs
                    .iter()
                    .map(|(a, b)| (resolve(a), resolve(b)))
                    .collect();
                // Names as they are after each earlier pair of the same statement.
                let mut present: Vec<SourceName> =
                    self.registry.tables().map(|t| t.source.clone()).collect();
                for (from, to) in &pairs {
                    if let Some(i) = present.iter().position(|n| n == from) {
                        present[i] = to.clone();
                    } else if self.replicable(to) {
                        return Err(refuse(
                            format!("table {from}, which ferry does not replicate, becomes {to}, which the selection includes; its rows were never copied"),
                            true,
                        ));
                    }
                }
                Ok(Some(ChangeKind::Rename(pairs)))
            }
            "DROP TABLE" => {
                let names: Vec<SourceName> = classify_drop(sql, resolve)
                    .into_iter()
                    .filter(|n| replicated(n))
                    .collect();
                if names.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(ChangeKind::Drop(names)))
                }
            }
            _ => Err(refuse(format!("{verb} is not supported"), false)),
        }
    }

    fn rows(
        &mut self,
        table: &Arc<Table>,
        rows: &RowsEventData<'_>,
        plan: &TablePlan,
        start: &BinlogPosition,
        out: &mut Output,
    ) -> Result<(), DecodeError> {
        if self.in_whole_copy(&table.source, start) {
            return Ok(());
        }
        let is_write = matches!(
            rows,
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_)
        );
        let is_delete = matches!(
            rows,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_)
        );
        let mut ops = Vec::new();
        let pairs = images(rows, plan).map_err(|e| DecodeError::Corrupt {
            what: "row image",
            position: start.clone(),
            detail: format!("table {}: {e}", table.source),
        })?;
        for (before, after) in pairs {
            let before_cells = match &before {
                Some(row) => match self.convert_row(table, row, None, start)? {
                    Converted::Cells(c) => Some(c),
                    Converted::DeadLetter(d) => {
                        out.messages.push(Message::DeadLetter(d));
                        continue;
                    }
                },
                None => None,
            };
            if is_delete {
                let cells = before_cells
                    .ok_or_else(|| corrupt(table, start, "delete without before image"))?;
                ops.push(RowOp::Delete {
                    key: table.key_of(&cells),
                });
                continue;
            }
            let after_row =
                after.ok_or_else(|| corrupt(table, start, "row event without after image"))?;
            let after_cells =
                match self.convert_row(table, &after_row, before_cells.as_deref(), start)? {
                    Converted::Cells(c) => c,
                    Converted::DeadLetter(d) => {
                        out.messages.push(Message::DeadLetter(d));
                        continue;
                    }
                };
            if let Err(over) = transform::size::check_row(&after_cells) {
                let column = table
                    .columns
                    .get(over.column)
                    .map_or("?", |c| c.source_name.as_str());
                let key: Vec<&str> = table
                    .key
                    .iter()
                    .map(|i| after_cells[*i].as_deref().unwrap_or("NULL"))
                    .collect();
                return Err(DecodeError::TooLarge {
                    table: table.source.clone(),
                    position: start.clone(),
                    detail: over.describe(column, &table.key_names().join(", "), &key.join(", ")),
                });
            }
            let new_key = table.key_of(&after_cells);
            if !is_write && !table.has_key() {
                // Identified by the whole row: the before image deletes one equal row, the
                // after image is a new row (an unchanged row changes nothing).
                let old_key = before_cells
                    .ok_or_else(|| corrupt(table, start, "update without before image"))?;
                if old_key != new_key {
                    ops.push(RowOp::Delete { key: old_key });
                    ops.push(RowOp::Insert {
                        key: new_key,
                        row: after_cells,
                    });
                }
                continue;
            }
            if !is_write {
                if let Some(b) = &before_cells {
                    let old_key = table.key_of(b);
                    if old_key != new_key {
                        ops.push(RowOp::Delete { key: old_key });
                    }
                }
            }
            let (key, row) = (new_key, after_cells);
            ops.push(if is_write {
                RowOp::Insert { key, row }
            } else {
                RowOp::Upsert { key, row }
            });
        }
        if !ops.is_empty() {
            self.txn_rows += ops.len();
            if self.in_xa {
                return Ok(());
            }
            out.messages.push(Message::Rows {
                table: table.clone(),
                ops,
            });
        }
        Ok(())
    }

    fn convert_row(
        &mut self,
        table: &Arc<Table>,
        row: &[Option<BinlogValue<'_>>],
        before: Option<&[Cell]>,
        start: &BinlogPosition,
    ) -> Result<Converted, DecodeError> {
        if row.len() != table.columns.len() {
            return Err(DecodeError::SchemaMismatch {
                table: table.source.clone(),
                position: start.clone(),
                detail: format!(
                    "row image has {} of {} columns (binlog_row_image must be FULL)",
                    row.len(),
                    table.columns.len()
                ),
            });
        }
        let mut cells = Vec::with_capacity(row.len());
        for (i, rule) in table.columns.iter().enumerate() {
            let Some(value) = row.get(i).and_then(|v| v.as_ref()) else {
                return Err(DecodeError::PartialRowImage {
                    table: table.source.clone(),
                    position: start.clone(),
                    column: rule.source_name.clone(),
                });
            };
            let result = match value {
                BinlogValue::JsonDiff(diffs) => match before.and_then(|b| b[i].as_deref()) {
                    Some(before_json) => apply_diffs(before_json, diffs).map(Some),
                    None => Err(ValueProblem::new(
                        ProblemKind::Unexpected,
                        "partial JSON update of a NULL or missing before image",
                    )),
                },
                v => convert(rule, SourceValue::Binlog(v)),
            };
            match result {
                Ok(cell) => cells.push(cell),
                Err(problem) => match resolve(
                    &self.options,
                    &problem,
                    rule.nullable && !table.is_key_column(i),
                ) {
                    Resolution::Substitute(cell) => {
                        *self
                            .counters
                            .substituted
                            .entry(problem.kind.label())
                            .or_default() += 1;
                        cells.push(cell);
                    }
                    Resolution::DeadLetter => {
                        self.counters.dead_lettered += 1;
                        return Ok(Converted::DeadLetter(Box::new(DeadLetter {
                            table: table.clone(),
                            position: start.clone(),
                            column: rule.source_name.clone(),
                            kind: problem.kind.label(),
                            reason: problem.detail.clone(),
                            row: row_json(table, row),
                        })));
                    }
                    Resolution::Refuse => {
                        return Err(DecodeError::Refused(Box::new(RefusedValue {
                            table: table.source.clone(),
                            column: rule.source_name.clone(),
                            position: start.clone(),
                            fix: transform::suggested_fix(problem.kind),
                            problem,
                        })))
                    }
                },
            }
        }
        Ok(Converted::Cells(cells))
    }
}

enum Converted {
    Cells(Vec<Cell>),
    DeadLetter(Box<DeadLetter>),
}

/// The tables of a `DROP TABLE` statement.
fn classify_drop(sql: &str, resolve: &dyn Fn(&alter::Name) -> SourceName) -> Vec<SourceName> {
    match classify(sql) {
        Statement::SchemaChange { tables, .. } => tables.iter().map(resolve).collect(),
        _ => Vec::new(),
    }
}

fn corrupt(table: &Table, start: &BinlogPosition, detail: &str) -> DecodeError {
    DecodeError::Corrupt {
        what: "row image",
        position: start.clone(),
        detail: format!("table {}: {detail}", table.source),
    }
}

/// True for the statements that start a transaction without being BEGIN: `XA START`/`XA
/// BEGIN`, and MySQL 8.0.21+'s `CREATE TABLE ... START TRANSACTION`, the first half of an atomic
/// CREATE TABLE ... SELECT whose rows and XID follow.
fn is_xa_start(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(|w| w.to_ascii_uppercase());
    matches!(
        (words.next().as_deref(), words.next().as_deref()),
        (Some("XA"), Some("START" | "BEGIN"))
    )
}

fn opens_transaction(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .filter(|w| !w.is_empty())
        .collect();
    let first_two = words.iter().take(2).map(String::as_str).collect::<Vec<_>>();
    let last_two = words
        .iter()
        .rev()
        .take(2)
        .map(String::as_str)
        .collect::<Vec<_>>();
    matches!(first_two.as_slice(), ["XA", "START"] | ["XA", "BEGIN"])
        || (words.first().map(String::as_str) == Some("CREATE")
            && last_two.as_slice() == ["TRANSACTION", "START"])
}

/// The key of a MySQL GTID source in [`GtidSet`]: the server UUID, or `uuid:tag` for tagged
/// GTIDs (MySQL 8.4+; tags are case-insensitive and MySQL prints them in lower case).
fn gtid_source(sid: &[u8; 16], tag: Option<String>) -> String {
    let uuid = uuid_text(sid);
    match tag {
        Some(tag) => format!("{uuid}:{}", tag.to_ascii_lowercase()),
        None => uuid,
    }
}

/// The fake ROTATE's name when it is usable: itself when it parses as a binlog file name,
/// itself minus 4 trailing checksum bytes when that does; `None` keeps the current name.
fn clean_rotate_name(bytes: &[u8], current: &str) -> Option<String> {
    let parses = |n: &str| crate::position::file_sequence(n).is_ok();
    if let Ok(name) = std::str::from_utf8(bytes) {
        if parses(name) {
            return Some(name.to_string());
        }
    }
    if bytes.len() > 4 {
        if let Ok(s) = std::str::from_utf8(&bytes[..bytes.len() - 4]) {
            if parses(s) {
                return Some(s.to_string());
            }
        }
    }
    if current.is_empty() {
        None
    } else {
        Some(current.to_string())
    }
}

/// A row image as JSON for the dead-letter table: values that are not valid UTF-8 text are kept
/// as `{"hex": "..."}`, so nothing is lost.
fn row_json(table: &Table, row: &[Option<BinlogValue<'_>>]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (i, col) in table.source_columns.iter().enumerate() {
        let v = match row.get(i).and_then(|v| v.as_ref()) {
            None => serde_json::Value::Null,
            Some(BinlogValue::Value(v)) => value_json(v),
            Some(BinlogValue::Jsonb(j)) => transform::json::jsonb_to_text(j)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(serde_json::Value::Null),
            Some(BinlogValue::JsonDiff(_)) => {
                serde_json::Value::String("<partial JSON update>".into())
            }
        };
        map.insert(col.name.clone(), v);
    }
    serde_json::Value::Object(map)
}

fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::NULL => serde_json::Value::Null,
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.contains('\0') => json!(s),
            _ => json!({ "hex": hex::encode(b) }),
        },
        Value::Date(y, m, d, h, mi, s, us) => {
            json!(format!(
                "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
            ))
        }
        Value::Time(neg, d, h, m, s, us) => json!(format!(
            "{}{}:{m:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" },
            u64::from(*d) * 24 + u64::from(*h)
        )),
    }
}

/// Checks a TABLE_MAP against the loaded schema.
fn validate_table_map(
    table: &Table,
    map: &TableMapEvent<'_>,
    start: &BinlogPosition,
) -> Result<(), DecodeError> {
    let mismatch = |detail: String| DecodeError::SchemaMismatch {
        table: table.source.clone(),
        position: start.clone(),
        detail,
    };
    let n = map.columns_count() as usize;
    if n != table.columns.len() {
        return Err(mismatch(format!(
            "binlog has {n} columns, loaded schema {}",
            table.columns.len()
        )));
    }
    if let Ok(meta) = OptionalMetaExtractor::new(map.iter_optional_meta()) {
        let names: Vec<String> = meta
            .iter_column_name()
            .filter_map(|r| r.ok().map(|c| c.name().to_string()))
            .collect();
        if names.len() == n {
            for (i, name) in names.iter().enumerate() {
                let want = &table.source_columns[i].name;
                if !name.eq_ignore_ascii_case(want) {
                    return Err(mismatch(format!(
                        "column {} is `{name}` in the binlog, `{want}` in the loaded schema",
                        i + 1
                    )));
                }
            }
        }
    }
    for (i, rule) in table.columns.iter().enumerate() {
        let Ok(Some(ct)) = map.get_column_type(i) else {
            return Err(mismatch(format!(
                "column {} has an unknown binlog type",
                i + 1
            )));
        };
        if !type_family_matches(&rule.kind, ct) {
            return Err(mismatch(format!(
                "column `{}` is {:?} in the binlog but {} in the loaded schema",
                rule.source_name, ct, table.source_columns[i].column_type
            )));
        }
    }
    Ok(())
}

fn type_family_matches(kind: &ValueKind, ct: ColumnType) -> bool {
    use ColumnType::*;
    match kind {
        ValueKind::Int { bits } | ValueKind::UInt { bits } => matches!(
            (bits, ct),
            (8, MYSQL_TYPE_TINY)
                | (16, MYSQL_TYPE_SHORT)
                | (24, MYSQL_TYPE_INT24)
                | (32, MYSQL_TYPE_LONG)
                | (64, MYSQL_TYPE_LONGLONG)
        ),
        ValueKind::Bool => ct == MYSQL_TYPE_TINY,
        ValueKind::Decimal => matches!(ct, MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL),
        ValueKind::Float => ct == MYSQL_TYPE_FLOAT,
        ValueKind::Double => ct == MYSQL_TYPE_DOUBLE,
        ValueKind::Bit { .. } => ct == MYSQL_TYPE_BIT,
        ValueKind::Year => ct == MYSQL_TYPE_YEAR,
        ValueKind::Date => matches!(ct, MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE),
        ValueKind::DateTime => matches!(ct, MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2),
        ValueKind::Timestamp => matches!(ct, MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2),
        ValueKind::Time => matches!(ct, MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2),
        ValueKind::Text { .. } | ValueKind::Bytes { .. } => matches!(
            ct,
            MYSQL_TYPE_VARCHAR
                | MYSQL_TYPE_VAR_STRING
                | MYSQL_TYPE_STRING
                | MYSQL_TYPE_BLOB
                | MYSQL_TYPE_TINY_BLOB
                | MYSQL_TYPE_MEDIUM_BLOB
                | MYSQL_TYPE_LONG_BLOB
        ),
        ValueKind::Enum { .. } => matches!(ct, MYSQL_TYPE_ENUM | MYSQL_TYPE_STRING),
        ValueKind::Set { .. } => matches!(ct, MYSQL_TYPE_SET | MYSQL_TYPE_STRING),
        ValueKind::Json => matches!(
            ct,
            MYSQL_TYPE_JSON | MYSQL_TYPE_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_VARCHAR
        ),
        ValueKind::Geometry => ct == MYSQL_TYPE_GEOMETRY,
        ValueKind::Vector => matches!(ct, MYSQL_TYPE_VECTOR | MYSQL_TYPE_BLOB),
        ValueKind::Uuid | ValueKind::Inet { .. } => ct == MYSQL_TYPE_STRING,
    }
}

/// Whether a raw event type is a heartbeat (handled by the reader, not the decoder).
pub fn is_heartbeat(event: &Event) -> bool {
    let t = event.header().event_type_raw();
    // 0x29 is MySQL's HEARTBEAT_LOG_EVENT_V2, which mysql_common does not name.
    t == EventType::HEARTBEAT_EVENT as u8 || t == 0x29
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_open_a_transaction() {
        assert!(opens_transaction("XA START 'x'"));
        assert!(opens_transaction("xa begin 'x',  'y'"));
        assert!(opens_transaction(
            "CREATE TABLE `t2` (\n  `id` int DEFAULT NULL\n) START TRANSACTION"
        ));
        assert!(!opens_transaction("CREATE TABLE t (id int)"));
        assert!(!opens_transaction("DROP TABLE t"));
        assert!(!opens_transaction("XA COMMIT 'x'"));
        assert!(!opens_transaction(""));
    }

    #[test]
    fn fake_rotate_names() {
        assert_eq!(
            clean_rotate_name(b"mariadb-bin.000003", ""),
            Some("mariadb-bin.000003".into())
        );
        let mut dirty = b"mariadb-bin.000003".to_vec();
        dirty.extend_from_slice(&[0x9a, 0x11, 0x7f, 0x2c]);
        assert_eq!(
            clean_rotate_name(&dirty, ""),
            Some("mariadb-bin.000003".into())
        );
        assert_eq!(
            clean_rotate_name(b"garbage", "x.000001"),
            Some("x.000001".into())
        );
        assert_eq!(clean_rotate_name(b"garbage", ""), None);
    }
}
