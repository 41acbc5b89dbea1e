//! The messages the source hands the sink: row operations of selected tables, in source order,
//! closed by a commit that carries the position to checkpoint.
//!
//! Guarantees (the contract between the stages): every `Rows` message belongs to the source
//! transaction closed by the next `Commit`; a `Commit` is sent for every source transaction
//! (also those touching no selected table) so the checkpoint keeps moving; positions only move
//! forward within one pipeline run.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::position::BinlogPosition;
use crate::schema::Table;
use crate::transform::size::row_text_bytes;
use crate::transform::Cell;

/// Row identity values in key order.
pub type Key = Vec<Cell>;

/// One row-level change, already converted to PostgreSQL text values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOp {
    /// The source inserted this row (full image). Applied with the same effect as `Upsert`; the
    /// sink may first try it as a plain INSERT, since the target normally lacks the key.
    Insert { key: Key, row: Vec<Cell> },
    /// Insert, or replace the row with this key (full after image).
    Upsert { key: Key, row: Vec<Cell> },
    /// Remove the row with this key.
    Delete { key: Key },
}

impl RowOp {
    pub fn key(&self) -> &Key {
        match self {
            RowOp::Insert { key, .. } | RowOp::Upsert { key, .. } | RowOp::Delete { key } => key,
        }
    }

    /// Bytes of the values this operation sends to PostgreSQL (text form): the full row of an
    /// insert or upsert, the key of a delete.
    pub fn bytes(&self) -> usize {
        match self {
            RowOp::Insert { row, .. } | RowOp::Upsert { row, .. } => row_text_bytes(row),
            RowOp::Delete { key } => row_text_bytes(key),
        }
    }
}

/// A row that could not be converted and was, by configuration, set aside whole.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub table: Arc<Table>,
    /// Start of the row event that carried it.
    pub position: BinlogPosition,
    pub column: String,
    /// Problem class label (`zero_date`, `nul_in_text`, ...).
    pub kind: &'static str,
    pub reason: String,
    /// The row image as JSON; unconvertible values are kept as `{"hex": "..."}`.
    pub row: serde_json::Value,
}

/// End of a source transaction.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The boundary after the transaction: where a restart resumes.
    pub position: BinlogPosition,
    /// GTID state after the transaction, when the source uses GTIDs (text form).
    pub gtid: Option<String>,
    /// Source commit time (binlog event timestamp, Unix seconds).
    pub source_time: u32,
    /// Sequence number of the transaction within this pipeline run (for lag accounting).
    pub seq: u64,
}

/// What flows from the source stage to the sink stage.
#[derive(Debug, Clone)]
pub enum Message {
    Rows {
        table: Arc<Table>,
        ops: Vec<RowOp>,
    },
    /// `TRUNCATE TABLE` on the source.
    Truncate {
        table: Arc<Table>,
    },
    DeadLetter(Box<DeadLetter>),
    Commit(Commit),
    /// End of a re-copy: `shadow` replaces `table` (same definition) in one transaction.
    Swap {
        table: Arc<Table>,
        shadow: Arc<Table>,
    },
    /// A schema change of a replicated table, applied in the transaction of its position.
    SchemaChange(Box<SchemaChange>),
}

/// A source schema change and the PostgreSQL statements that carry it.
#[derive(Debug, Clone)]
pub struct SchemaChange {
    /// The table as it was before the change.
    pub table: Arc<Table>,
    /// The table after it (`None`: it was dropped or left the selection).
    pub new: Option<Arc<Table>>,
    /// Target statements, run in order in the open transaction.
    pub statements: Vec<String>,
    /// Where the source statement starts in the binlog.
    pub position: BinlogPosition,
    /// The source statement, for the log and the history table.
    pub source_sql: String,
    /// Only records a definition (a table created on the source mid-stream, a change the
    /// operator mirrored): not counted or logged as a carried schema change.
    pub bookkeeping: bool,
    /// What the change records or removes of an online schema change tool's shadow ALTERs.
    pub shadow: Option<crate::recorded_alters::Bookkeeping>,
}

/// Bounds the rows *and bytes* in flight between the reader and the applier, whatever the size
/// of the messages carrying them (a bulk insert packs a hundred rows into one rows event, a
/// single-row update one; a row may be a few bytes or hundreds of MiB): the reader takes permits
/// before sending rows, the applier returns them once it has batched those rows. A message
/// larger than a whole budget takes all of it, so it travels alone and never waits forever.
#[derive(Debug, Clone)]
pub struct RowBudget {
    rows: Arc<Semaphore>,
    max_rows: usize,
    /// Bytes are counted in KiB so that any budget fits the semaphore's `u32` requests.
    kib: Arc<Semaphore>,
    max_kib: usize,
}

/// The permits one message takes (see [`RowBudget::cost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    rows: usize,
    kib: usize,
}

impl RowBudget {
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        let max_rows = max_rows.clamp(1, u32::MAX as usize);
        let max_kib = max_bytes.div_ceil(1024).clamp(1, u32::MAX as usize);
        Self {
            rows: Arc::new(Semaphore::new(max_rows)),
            max_rows,
            kib: Arc::new(Semaphore::new(max_kib)),
            max_kib,
        }
    }

    /// The permits `message` takes: its rows, and its values' bytes (text form) in KiB.
    pub fn cost(&self, message: &Message) -> Cost {
        match message {
            Message::Rows { ops, .. } => {
                let bytes: usize = ops.iter().map(RowOp::bytes).sum();
                Cost {
                    rows: ops.len().min(self.max_rows),
                    kib: bytes.div_ceil(1024).min(self.max_kib),
                }
            }
            _ => Cost::default(),
        }
    }

    /// Waits until `message`'s rows and bytes fit.
    pub async fn acquire(&self, message: &Message) {
        let cost = self.cost(message);
        for (permits, n) in [(&self.rows, cost.rows), (&self.kib, cost.kib)] {
            if n > 0 {
                if let Ok(p) = permits.acquire_many(n as u32).await {
                    p.forget();
                }
            }
        }
    }

    /// Returns a message's [`cost`](Self::cost) to the budget.
    pub fn release(&self, cost: Cost) {
        if cost.rows > 0 {
            self.rows.add_permits(cost.rows);
        }
        if cost.kib > 0 {
            self.kib.add_permits(cost.kib);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Index, SourceName};
    use crate::transform::{SourceColumn, TypeOptions};

    fn table() -> Arc<Table> {
        let col = |name: &str| SourceColumn {
            name: name.into(),
            data_type: "int".into(),
            column_type: "int".into(),
            ..Default::default()
        };
        let pk = Index {
            name: "PRIMARY".into(),
            unique: true,
            columns: vec![(0, None)],
        };
        let t = Table::plan(
            SourceName::new("d", "t"),
            "d".into(),
            vec![col("id"), col("v")],
            vec![pk],
            0,
            &TypeOptions::default(),
        );
        Arc::new(t.expect("plans"))
    }

    fn rows(table: &Arc<Table>, n: usize, value_bytes: usize) -> Message {
        Message::Rows {
            table: table.clone(),
            ops: (0..n)
                .map(|i| RowOp::Insert {
                    key: vec![Some(i.to_string())],
                    row: vec![Some(i.to_string()), Some("x".repeat(value_bytes))],
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_and_a_larger_message_travels_alone() {
        let table = table();
        let budget = RowBudget::new(1000, 4096);
        // Two rows of 3 KiB: the second waits for the first to be released, although the row
        // budget has room for many more.
        let first = rows(&table, 1, 3000);
        budget.acquire(&first).await;
        let second = rows(&table, 1, 3000);
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            budget.acquire(&second),
        )
        .await;
        assert!(waiting.is_err(), "the byte budget is spent");
        budget.release(budget.cost(&first));
        budget.acquire(&second).await;
        budget.release(budget.cost(&second));
        // A message larger than the whole budget takes all of it and does not wait forever.
        let huge = rows(&table, 2, 1 << 20);
        assert_eq!(budget.cost(&huge).kib, 4);
        budget.acquire(&huge).await;
        budget.release(budget.cost(&huge));
        // Commits cost nothing.
        assert_eq!(budget.cost(&Message::Truncate { table }), Cost::default());
    }
}
