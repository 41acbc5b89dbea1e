//! Turns decoded pgoutput messages into whole PostgreSQL transactions of MySQL row operations,
//! through the table model and the inverse type mapping.
//!
//! Guarantees: pure (no I/O). A transaction is emitted only at its Commit, with the commit's end
//! LSN (where the slot resumes after it); its operations are in PostgreSQL's order. The
//! operations of a transaction still open can be taken out in order ([`Assembler::take_open`]),
//! so a transaction larger than memory should hold is applied in parts; what its Commit
//! then emits is the rest. Every
//! relation is bound to a migrated table by its PostgreSQL name and checked against the model:
//! a column added, dropped, renamed or retyped on PostgreSQL after the switch is
//! [`AssembleError::SchemaChanged`] with the difference, never a guess. Columns PostgreSQL did
//! not send (unchanged TOASTed values) are left out of the update; generated columns are never
//! written (MySQL computes them). Every transaction also names the keys it changed, as
//! PostgreSQL printed them (old and new key of an update), or the whole table (TRUNCATE, a
//! table without a key, a transaction past [`MAX_TOUCHED_KEYS`]), for rollback's final check.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mysql_async::Value;

use super::inverse::{self, InverseError};
use super::lsn::Lsn;
use super::pgoutput::{unix_seconds, Datum, Message, Relation, Tuple};
use crate::schema::Table;
use crate::transform::mapping::PgType;

/// One row operation on MySQL; column lists are positions in [`Table::columns`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// INSERT … ON DUPLICATE KEY UPDATE.
    Upsert {
        table: Arc<Table>,
        columns: Vec<usize>,
        values: Vec<Value>,
    },
    /// UPDATE … SET `columns` WHERE key = `key` (a key change, or columns left out).
    Update {
        table: Arc<Table>,
        columns: Vec<usize>,
        values: Vec<Value>,
        key: Vec<Value>,
    },
    Delete {
        table: Arc<Table>,
        key: Vec<Value>,
    },
    /// TRUNCATE on PostgreSQL: every row deleted (inside the transaction).
    DeleteAll {
        table: Arc<Table>,
    },
}

impl Op {
    pub fn table(&self) -> &Arc<Table> {
        match self {
            Op::Upsert { table, .. }
            | Op::Update { table, .. }
            | Op::Delete { table, .. }
            | Op::DeleteAll { table } => table,
        }
    }

    /// About how many bytes the operation holds (its values, plus a fixed overhead).
    pub fn bytes(&self) -> usize {
        fn values(v: &[Value]) -> usize {
            v.iter()
                .map(|v| match v {
                    Value::Bytes(b) => b.len() + 24,
                    _ => 24,
                })
                .sum()
        }
        64 + match self {
            Op::Upsert { values: v, .. } => values(v),
            Op::Update { values: v, key, .. } => values(v) + values(key),
            Op::Delete { key, .. } => values(key),
            Op::DeleteAll { .. } => 0,
        }
    }
}

/// Keys one transaction records one by one; past this it records its tables whole.
pub const MAX_TOUCHED_KEYS: usize = 100_000;

/// A key a transaction changed, as PostgreSQL prints it (the cell for a one-column key, a JSON
/// array of cells for a composite one), or `None`: every row of the table may have changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Touched {
    pub table: Arc<Table>,
    pub key: Option<String>,
}

/// A PostgreSQL transaction to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub xid: u32,
    pub commit_lsn: Lsn,
    /// The slot's position once this transaction is applied.
    pub end_lsn: Lsn,
    /// Unix seconds.
    pub commit_time: f64,
    pub ops: Vec<Op>,
    /// The keys it changed (see [`Touched`]).
    pub touched: Vec<Touched>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssembleError {
    #[error("table {table}, column {column}, at PostgreSQL LSN {lsn}: {reason} — {fix}")]
    Value {
        table: String,
        column: String,
        lsn: Lsn,
        reason: String,
        fix: String,
    },
    #[error("table {table} changed on PostgreSQL after the switch (at LSN {lsn}): {detail}; the reverse stream cannot write it to MySQL exactly — make the same change on MySQL and restart ferry, or undo it on PostgreSQL")]
    SchemaChanged {
        table: String,
        lsn: Lsn,
        detail: String,
    },
    #[error("PostgreSQL sent changes of {table} (at LSN {lsn}), which is not a migrated table; remove it from the publication (ALTER PUBLICATION … DROP TABLE {table})")]
    NotMigrated { table: String, lsn: Lsn },
    #[error("pgoutput at LSN {lsn}: {detail}")]
    Protocol { lsn: Lsn, detail: String },
}

/// The column type OID PostgreSQL uses for ferry's type (None: no fixed OID, e.g. PostGIS).
fn type_oid(t: &PgType) -> Option<u32> {
    Some(match t {
        PgType::SmallInt => 21,
        PgType::Integer => 23,
        PgType::BigInt => 20,
        PgType::Numeric(_) => 1700,
        PgType::Real => 700,
        PgType::Double => 701,
        PgType::Boolean => 16,
        PgType::Bit(_) => 1560,
        PgType::Date => 1082,
        PgType::Timestamp(_) => 1114,
        PgType::TimestampTz(_) => 1184,
        PgType::Interval(_) => 1186,
        PgType::Varchar(_) => 1043,
        PgType::Text => 25,
        PgType::Bytea => 17,
        PgType::Jsonb => 3802,
        PgType::RealArray => 1021,
        PgType::Uuid => 2950,
        PgType::Inet => 869,
        PgType::Geometry { .. } | PgType::Citext { .. } => return None,
    })
}

/// A relation bound to its table.
#[derive(Debug, Clone)]
struct Bound {
    table: Arc<Table>,
    /// For each table column, its position in the relation's tuples.
    position: Vec<usize>,
}

/// Builds transactions from messages; keeps the relations it was sent.
pub struct Assembler {
    tables: HashMap<(String, String), Arc<Table>>,
    relations: HashMap<u32, Bound>,
    open: Option<Transaction>,
    /// [`Op::bytes`] of the open transaction's operations.
    open_bytes: usize,
    /// Tables the open transaction records whole.
    whole: HashSet<String>,
}

impl Assembler {
    pub fn new(tables: impl IntoIterator<Item = Table>) -> Assembler {
        Assembler {
            tables: tables
                .into_iter()
                .map(|t| {
                    (
                        (t.target_schema.clone(), t.target_name.clone()),
                        Arc::new(t),
                    )
                })
                .collect(),
            relations: HashMap::new(),
            open: None,
            open_bytes: 0,
            whole: HashSet::new(),
        }
    }

    /// The bytes the open transaction's operations hold (0 between transactions).
    pub fn open_bytes(&self) -> usize {
        self.open_bytes
    }

    /// Takes the operations of the open transaction gathered so far, with its commit LSN (the
    /// transaction stays open; its Commit emits the operations that came after).
    pub fn take_open(&mut self) -> Option<(Lsn, Vec<Op>)> {
        self.open_bytes = 0;
        self.open
            .as_mut()
            .map(|t| (t.commit_lsn, std::mem::take(&mut t.ops)))
    }

    /// Feeds one message (read at `lsn`); returns the transaction its Commit completes.
    ///
    /// # Errors
    /// See [`AssembleError`].
    pub fn feed(
        &mut self,
        message: Message,
        lsn: Lsn,
    ) -> Result<Option<Transaction>, AssembleError> {
        match message {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            } => {
                self.open_bytes = 0;
                self.whole.clear();
                self.open = Some(Transaction {
                    xid,
                    commit_lsn: final_lsn,
                    end_lsn: final_lsn,
                    commit_time: unix_seconds(commit_time),
                    ops: Vec::new(),
                    touched: Vec::new(),
                });
                Ok(None)
            }
            Message::Commit { end_lsn, .. } => {
                let mut t = self.open.take().ok_or_else(|| AssembleError::Protocol {
                    lsn,
                    detail: "Commit without Begin".into(),
                })?;
                t.end_lsn = end_lsn;
                self.open_bytes = 0;
                Ok(Some(t))
            }
            Message::Relation(r) => {
                let bound = self.bind(&r, lsn)?;
                self.relations.insert(r.oid, bound);
                Ok(None)
            }
            Message::Origin { .. } | Message::Type { .. } | Message::LogicalMessage { .. } => {
                Ok(None)
            }
            Message::Insert { relation, new } => {
                let op = self.upsert(relation, &new, lsn)?;
                let b = self.bound(relation, lsn)?;
                self.touch(&b, &new);
                self.push(op, lsn)
            }
            Message::Update { relation, old, new } => {
                let op = self.update(relation, old.as_ref().map(|(_, t)| t), &new, lsn)?;
                let b = self.bound(relation, lsn)?;
                if let Some((_, o)) = &old {
                    self.touch(&b, o);
                }
                self.touch(&b, &new);
                self.push(op, lsn)
            }
            Message::Delete { relation, old, .. } => {
                let b = self.bound(relation, lsn)?;
                self.touch(&b, &old);
                let key = key_values(&b, &old, lsn)?;
                self.push(
                    Op::Delete {
                        table: b.table.clone(),
                        key,
                    },
                    lsn,
                )
            }
            Message::Truncate { relations, .. } => {
                for rel in relations {
                    let table = self.bound(rel, lsn)?.table.clone();
                    self.touch_whole(&table);
                    self.push(Op::DeleteAll { table }, lsn)?;
                }
                Ok(None)
            }
        }
    }

    /// Records the key of `tuple` (a whole table when it has no key or a key part is not a
    /// value) in the open transaction.
    fn touch(&mut self, b: &Bound, tuple: &Tuple) {
        if !b.table.has_key() || self.whole.contains(&b.table.target_quoted) {
            return self.touch_whole(&b.table);
        }
        let mut parts = Vec::with_capacity(b.table.key.len());
        for &k in &b.table.key {
            match tuple.0.get(b.position[k]) {
                Some(Datum::Text(t)) => parts.push(Some(String::from_utf8_lossy(t).into_owned())),
                _ => return self.touch_whole(&b.table),
            }
        }
        let key = crate::migration::changed_keys::key_text(&parts.iter().collect::<Vec<_>>());
        let Some(t) = self.open.as_mut() else { return };
        if t.touched.len() >= MAX_TOUCHED_KEYS {
            // Too many to keep one by one: every table so far is recorded whole.
            let tables: Vec<Arc<Table>> = t.touched.drain(..).map(|x| x.table).collect();
            self.whole.clear();
            for table in tables {
                self.touch_whole(&table);
            }
            return self.touch_whole(&b.table);
        }
        t.touched.push(Touched {
            table: b.table.clone(),
            key,
        });
    }

    fn touch_whole(&mut self, table: &Arc<Table>) {
        let Some(t) = self.open.as_mut() else { return };
        if self.whole.insert(table.target_quoted.clone()) {
            t.touched
                .retain(|x| x.table.target_quoted != table.target_quoted);
            t.touched.push(Touched {
                table: table.clone(),
                key: None,
            });
        }
    }

    fn push(&mut self, op: Op, lsn: Lsn) -> Result<Option<Transaction>, AssembleError> {
        let t = self.open.as_mut().ok_or_else(|| AssembleError::Protocol {
            lsn,
            detail: "a change outside a transaction".into(),
        })?;
        self.open_bytes += op.bytes();
        t.ops.push(op);
        Ok(None)
    }

    fn bound(&self, relation: u32, lsn: Lsn) -> Result<Bound, AssembleError> {
        self.relations
            .get(&relation)
            .cloned()
            .ok_or_else(|| AssembleError::Protocol {
                lsn,
                detail: format!("a change of relation {relation} before its Relation message"),
            })
    }

    fn bind(&self, r: &Relation, lsn: Lsn) -> Result<Bound, AssembleError> {
        let name = format!("{}.{}", r.namespace, r.name);
        let table = self
            .tables
            .get(&(r.namespace.clone(), r.name.clone()))
            .ok_or_else(|| AssembleError::NotMigrated {
                table: name.clone(),
                lsn,
            })?;
        let changed = |detail: String| AssembleError::SchemaChanged {
            table: name.clone(),
            lsn,
            detail,
        };
        let mut position = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let (i, rc) = r
                .columns
                .iter()
                .enumerate()
                .find(|(_, rc)| rc.name == c.target_name)
                .ok_or_else(|| changed(format!("column {:?} is gone", c.target_name)))?;
            if let Some(oid) = type_oid(&c.pg_type) {
                if rc.type_oid != oid {
                    return Err(changed(format!(
                        "column {:?} is no longer {} (type oid {} instead of {oid})",
                        c.target_name,
                        c.pg_type.sql(),
                        rc.type_oid
                    )));
                }
            }
            position.push(i);
        }
        if let Some(extra) = r
            .columns
            .iter()
            .find(|rc| !table.columns.iter().any(|c| c.target_name == rc.name))
        {
            return Err(changed(format!(
                "column {:?} was added (MySQL has no such column)",
                extra.name
            )));
        }
        Ok(Bound {
            table: table.clone(),
            position,
        })
    }

    fn upsert(&self, relation: u32, new: &Tuple, lsn: Lsn) -> Result<Op, AssembleError> {
        let b = self.bound(relation, lsn)?;
        let (columns, values) = row_values(&b, new, lsn, false)?;
        Ok(Op::Upsert {
            table: b.table.clone(),
            columns,
            values,
        })
    }

    fn update(
        &self,
        relation: u32,
        old: Option<&Tuple>,
        new: &Tuple,
        lsn: Lsn,
    ) -> Result<Op, AssembleError> {
        let b = self.bound(relation, lsn)?;
        let new_key = key_values(&b, new, lsn)?;
        let old_key = match old {
            Some(o) => key_values(&b, o, lsn)?,
            None => new_key.clone(),
        };
        let (columns, values) = row_values(&b, new, lsn, true)?;
        let complete = columns.len()
            == b.table
                .source_columns
                .iter()
                .filter(|c| !c.generated)
                .count();
        if old_key == new_key && complete {
            return Ok(Op::Upsert {
                table: b.table.clone(),
                columns,
                values,
            });
        }
        Ok(Op::Update {
            table: b.table.clone(),
            columns,
            values,
            key: old_key,
        })
    }
}

fn value_error(b: &Bound, column: usize, lsn: Lsn, e: InverseError) -> AssembleError {
    AssembleError::Value {
        table: b.table.source.to_string(),
        column: b.table.source_columns[column].name.clone(),
        lsn,
        reason: e.reason,
        fix: e.fix,
    }
}

fn convert(b: &Bound, column: usize, d: &Datum, lsn: Lsn) -> Result<Value, AssembleError> {
    let text = match d {
        Datum::Null => None,
        Datum::Text(t) => Some(std::str::from_utf8(t).map_err(|_| AssembleError::Protocol {
            lsn,
            detail: format!(
                "a value of {}.{} is not UTF-8 (the database encoding must be UTF8)",
                b.table.source, b.table.source_columns[column].name
            ),
        })?),
        Datum::Unchanged | Datum::Binary(_) => {
            return Err(AssembleError::Protocol {
                lsn,
                detail: "an unexpected value form where a value was needed".into(),
            })
        }
    };
    inverse::to_mysql(
        &b.table.columns[column],
        &b.table.source_columns[column],
        text,
    )
    .map_err(|e| value_error(b, column, lsn, e))
}

/// The written columns of a row image (generated ones never; unchanged TOASTed ones only
/// when `skip_unchanged`, otherwise they are an error: an insert sends every value).
fn row_values(
    b: &Bound,
    tuple: &Tuple,
    lsn: Lsn,
    skip_unchanged: bool,
) -> Result<(Vec<usize>, Vec<Value>), AssembleError> {
    let mut columns = Vec::with_capacity(b.position.len());
    let mut values = Vec::with_capacity(b.position.len());
    for (i, &p) in b.position.iter().enumerate() {
        if b.table.source_columns[i].generated {
            continue;
        }
        let d = tuple.0.get(p).ok_or_else(|| AssembleError::Protocol {
            lsn,
            detail: format!("a tuple of {} has too few columns", b.table.source),
        })?;
        if *d == Datum::Unchanged {
            if skip_unchanged {
                continue;
            }
            return Err(AssembleError::Protocol {
                lsn,
                detail: "an unchanged TOAST value in an insert".into(),
            });
        }
        columns.push(i);
        values.push(convert(b, i, d, lsn)?);
    }
    Ok((columns, values))
}

fn key_values(b: &Bound, tuple: &Tuple, lsn: Lsn) -> Result<Vec<Value>, AssembleError> {
    b.table
        .key
        .iter()
        .map(|&k| {
            let d = tuple
                .0
                .get(b.position[k])
                .ok_or_else(|| AssembleError::Protocol {
                    lsn,
                    detail: format!("a tuple of {} has too few columns", b.table.source),
                })?;
            // A whole-row identity (REPLICA IDENTITY FULL) sends NULL columns as NULL.
            let null_is_a_value = !b.table.has_key() && *d == Datum::Null;
            if matches!(d, Datum::Null | Datum::Unchanged) && !null_is_a_value {
                return Err(AssembleError::Protocol {
                    lsn,
                    detail: format!(
                        "the key column {} of {} was not sent (is its REPLICA IDENTITY the key?)",
                        b.table.source_columns[k].name, b.table.source
                    ),
                });
            }
            convert(b, k, d, lsn)
        })
        .collect()
}
