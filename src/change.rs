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
}

/// Bounds the rows in flight between the reader and the applier, whatever the size of the
/// messages carrying them (a bulk insert packs a hundred rows into one rows event, a
/// single-row update one): the reader takes permits before sending rows, the applier returns
/// them once it has batched those rows.
#[derive(Debug, Clone)]
pub struct RowBudget {
    permits: Arc<Semaphore>,
    max: usize,
}

impl RowBudget {
    pub fn new(max_rows: usize) -> Self {
        let max = max_rows.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The permits `message` takes.
    pub fn cost(&self, message: &Message) -> usize {
        match message {
            Message::Rows { ops, .. } => ops.len().min(self.max),
            _ => 0,
        }
    }

    /// Waits until `message`'s rows fit.
    pub async fn acquire(&self, message: &Message) {
        let n = self.cost(message);
        if n > 0 {
            if let Ok(p) = self.permits.acquire_many(n as u32).await {
                p.forget();
            }
        }
    }

    /// Returns `n` permits (a message's [`cost`](Self::cost)) to the budget.
    pub fn release(&self, n: usize) {
        if n > 0 {
            self.permits.add_permits(n);
        }
    }
}
