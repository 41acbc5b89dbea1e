//! Reading existing rows for the backfill: a start position that every later read is guaranteed
//! to see, and chunked, keyset-paginated reads of one table.
//!
//! Guarantees:
//! - [`visible_start_position`] returns a binlog position P0 such that every transaction written
//!   to the binlog before P0 is visible to any read started afterwards. (The binlog is written
//!   before the storage engine commit, so a plain `SHOW MASTER STATUS` can name transactions not
//!   yet visible.) MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` reports the binlog
//!   position of its snapshot (`binlog_snapshot_file/position`) without any lock. MySQL: the
//!   position is read, then `FLUSH TABLES WITH READ LOCK` is taken and released at once (bounded
//!   by `lock_wait_timeout = 1`), which waits for in-flight commits to finish.
//! - [`ChunkReader`] reads one chunk per short autocommit statement (`WHERE key > last ORDER BY
//!   key LIMIT n` on the row identity), over the binary protocol so floats arrive bit-exact, in
//!   UTC so TIMESTAMP values are instants; no transaction stays open across chunks.
//! - A chunk ends at `chunk_rows` rows or `chunk_bytes` bytes of values, whichever comes first:
//!   rows are taken from the result one at a time, and the row that would carry the chunk past
//!   its byte budget is left for the next chunk (which starts right after the chunk's last
//!   key, so keyset chunking stays exact). A row larger than the budget makes a chunk alone.
//!   `LIMIT` follows the observed bytes per row, so a chunk of large rows does not read (and
//!   discard) many more rows than it keeps; the first chunk of a table assumes 64 KiB rows.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Statement, Value};
use serde::{Deserialize, Serialize};

use super::connect::Flavor;
use crate::error::ErrorClass;
use crate::position::BinlogPosition;
use crate::schema::Table;
use crate::select::quote_mysql_ident;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading from the source: {0}")]
    Mysql(#[from] mysql_async::Error),
    #[error("the source reports no binlog snapshot position (is the binary log enabled?)")]
    NoPosition,
    #[error("cannot take a consistent start position on MySQL: FLUSH TABLES WITH READ LOCK failed ({0}); grant RELOAD to the ferry user, or retry when no long statement holds table locks")]
    Lock(String),
}

impl SnapshotError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SnapshotError::Mysql(e) => ErrorClass::of_mysql(e),
            SnapshotError::NoPosition | SnapshotError::Lock(_) => ErrorClass::Definite,
        }
    }
}

/// See the module docs.
///
/// # Errors
/// Driver errors, a missing binlog, or (MySQL) a lock that could not be taken.
pub async fn visible_start_position(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<BinlogPosition, SnapshotError> {
    match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await?;
            let rows: Vec<(String, String)> =
                conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
            conn.query_drop("COMMIT").await?;
            let get = |n: &str| {
                rows.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let file = get("binlog_snapshot_file").filter(|f| !f.is_empty());
            let pos = get("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok());
            match (file, pos) {
                (Some(f), Some(p)) => Ok(BinlogPosition::new(f, p)),
                _ => Err(SnapshotError::NoPosition),
            }
        }
        Flavor::MySql => {
            let p = super::binlog::current_position(conn).await?;
            conn.query_drop("SET SESSION lock_wait_timeout = 1").await?;
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(|e| SnapshotError::Lock(e.to_string()))?;
            conn.query_drop("UNLOCK TABLES").await?;
            Ok(p)
        }
    }
}

/// A MySQL value in a form that survives a restart (the resume point of a table copy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v")]
pub enum KeyValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Hex of the bytes.
    Bytes(String),
    Date(u16, u8, u8, u8, u8, u8, u32),
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for KeyValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::NULL => KeyValue::Null,
            Value::Int(i) => KeyValue::Int(*i),
            Value::UInt(u) => KeyValue::UInt(*u),
            Value::Float(f) => KeyValue::Float(*f),
            Value::Double(d) => KeyValue::Double(*d),
            Value::Bytes(b) => KeyValue::Bytes(hex::encode(b)),
            Value::Date(y, m, d, h, mi, s, us) => KeyValue::Date(*y, *m, *d, *h, *mi, *s, *us),
            Value::Time(n, d, h, m, s, us) => KeyValue::Time(*n, *d, *h, *m, *s, *us),
        }
    }
}

impl From<&KeyValue> for Value {
    fn from(k: &KeyValue) -> Self {
        match k {
            KeyValue::Null => Value::NULL,
            KeyValue::Int(i) => Value::Int(*i),
            KeyValue::UInt(u) => Value::UInt(*u),
            KeyValue::Float(f) => Value::Float(*f),
            KeyValue::Double(d) => Value::Double(*d),
            KeyValue::Bytes(h) => Value::Bytes(hex::decode(h).unwrap_or_default()),
            KeyValue::Date(y, m, d, h, mi, s, us) => Value::Date(*y, *m, *d, *h, *mi, *s, *us),
            KeyValue::Time(n, d, h, m, s, us) => Value::Time(*n, *d, *h, *m, *s, *us),
        }
    }
}

/// Row size the first chunk of a table assumes (sets its `LIMIT` before any row was seen).
const FIRST_CHUNK_ROW_BYTES: usize = 64 << 10;

/// Reads a table in key order, one chunk per statement.
pub struct ChunkReader {
    conn: Conn,
    first: Statement,
    next: Statement,
    key_positions: Vec<usize>,
    chunk_rows: usize,
    chunk_bytes: usize,
    /// `LIMIT` of the next statement: the rows the byte budget is expected to hold.
    limit: usize,
}

/// Bytes a row's values take as read (a number or temporal value counts 8).
pub fn row_bytes(row: &Row) -> usize {
    (0..row.len())
        .map(|i| match row.as_ref(i) {
            Some(Value::Bytes(b)) => b.len(),
            _ => 8,
        })
        .sum()
}

/// Rows the budget is expected to hold, from the bytes per row seen so far.
fn rows_for_budget(chunk_rows: usize, chunk_bytes: usize, bytes_per_row: usize) -> usize {
    (chunk_bytes / bytes_per_row.max(1)).clamp(1, chunk_rows.max(1))
}

/// One chunk: rows (as MySQL values, in column order) and the key of its last row.
pub struct Chunk {
    pub rows: Vec<Row>,
    pub last_key: Option<Vec<KeyValue>>,
}

impl ChunkReader {
    /// Prepares the chunk statements for `table`.
    ///
    /// # Errors
    /// Driver errors.
    pub async fn new(
        mut conn: Conn,
        table: &Table,
        chunk_rows: usize,
        chunk_bytes: usize,
    ) -> Result<Self, SnapshotError> {
        let cols: Vec<String> = table
            .source_columns
            .iter()
            .map(|c| quote_mysql_ident(&c.name))
            .collect();
        let keys: Vec<String> = table
            .key
            .iter()
            .map(|i| quote_mysql_ident(&table.source_columns[*i].name))
            .collect();
        let from = format!(
            "{}.{}",
            quote_mysql_ident(&table.source.db),
            quote_mysql_ident(&table.source.table)
        );
        let order = keys.join(", ");
        let first = format!(
            "SELECT {} FROM {from} ORDER BY {order} LIMIT ?",
            cols.join(", ")
        );
        let next = format!(
            "SELECT {} FROM {from} WHERE {} ORDER BY {order} LIMIT ?",
            cols.join(", "),
            after_key_predicate(&keys)
        );
        let first = conn.prep(first).await?;
        let next = conn.prep(next).await?;
        Ok(Self {
            conn,
            first,
            next,
            key_positions: table.key.clone(),
            chunk_rows,
            chunk_bytes,
            limit: rows_for_budget(chunk_rows, chunk_bytes, FIRST_CHUNK_ROW_BYTES),
        })
    }

    /// Reads the chunk after `after` (from the start when `None`); an empty chunk means done.
    ///
    /// # Errors
    /// Driver errors.
    pub async fn read(&mut self, after: Option<&[KeyValue]>) -> Result<Chunk, SnapshotError> {
        let limit = Value::UInt(self.limit as u64);
        let mut result = match after {
            None => self.conn.exec_iter(&self.first, vec![limit]).await?,
            Some(key) => {
                let mut params = predicate_params(key);
                params.push(limit);
                self.conn.exec_iter(&self.next, params).await?
            }
        };
        let mut rows = Vec::new();
        let mut bytes = 0;
        let mut cut = false;
        while let Some(row) = result.next().await? {
            let size = row_bytes(&row);
            if !rows.is_empty() && bytes + size > self.chunk_bytes {
                // Left for the next chunk, which starts after this chunk's last key.
                cut = true;
                break;
            }
            bytes += size;
            rows.push(row);
            if bytes >= self.chunk_bytes {
                cut = true;
                break;
            }
        }
        // The rest of the result (rows past the budget) is read and discarded one at a time.
        result.drop_result().await?;
        if let Some(per_row) = bytes.checked_div(rows.len()) {
            self.limit = rows_for_budget(self.chunk_rows, self.chunk_bytes, per_row);
            if cut {
                self.limit = self.limit.min(rows.len());
            }
        }
        let last_key = rows.last().map(|r| {
            self.key_positions
                .iter()
                .map(|i| KeyValue::from(r.as_ref(*i).unwrap_or(&Value::NULL)))
                .collect()
        });
        debug_assert!(rows.len() <= self.chunk_rows);
        Ok(Chunk { rows, last_key })
    }
}

impl ChunkReader {
    /// Reads the chunk after `after` inside a consistent snapshot and returns the snapshot's
    /// exact binlog position with it (MariaDB: lock-free; MySQL: under a momentary global read
    /// lock bounded by `lock_wait_timeout = 1`).
    ///
    /// # Errors
    /// Driver errors, or (MySQL) a lock that could not be taken.
    pub async fn read_in_snapshot(
        &mut self,
        after: Option<&[KeyValue]>,
        flavor: Flavor,
    ) -> Result<(Chunk, BinlogPosition), SnapshotError> {
        let position = begin_snapshot(&mut self.conn, flavor).await?;
        let chunk = self.read(after).await;
        self.conn.query_drop("COMMIT").await?;
        Ok((chunk?, position))
    }

    /// Gives the connection back (to close it).
    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

/// Opens a consistent-snapshot transaction on `conn` and returns the snapshot's exact binlog
/// position: every transaction before it is visible to the snapshot, none after it (MariaDB:
/// `binlog_snapshot_file/position`, lock-free; MySQL: the position read under a momentary
/// global read lock bounded by `lock_wait_timeout = 1`). The caller ends the transaction.
///
/// # Errors
/// Driver errors, no binlog, or (MySQL) a lock that could not be taken.
pub async fn begin_snapshot(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<BinlogPosition, SnapshotError> {
    Ok(match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await?;
            let rows: Vec<(String, String)> =
                conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
            let get = |n: &str| {
                rows.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            match (
                get("binlog_snapshot_file").filter(|f| !f.is_empty()),
                get("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
            ) {
                (Some(f), Some(p)) => BinlogPosition::new(f, p),
                _ => {
                    let _ = conn.query_drop("ROLLBACK").await;
                    return Err(SnapshotError::NoPosition);
                }
            }
        }
        Flavor::MySql => {
            conn.query_drop("SET SESSION lock_wait_timeout = 1").await?;
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(|e| SnapshotError::Lock(e.to_string()))?;
            let started = conn
                .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await;
            let position = super::binlog::current_position(conn).await;
            conn.query_drop("UNLOCK TABLES").await?;
            started?;
            position?
        }
    })
}

/// `(k1 > ?) OR (k1 = ? AND k2 > ?) OR ...`: rows after a composite key, written so both
/// MySQL and MariaDB use the index range.
fn after_key_predicate(keys: &[String]) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = keys[..i].iter().map(|k| format!("{k} = ?")).collect();
        ands.push(format!("{} > ?", keys[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    ors.join(" OR ")
}

/// Parameters in the order [`after_key_predicate`] uses them.
fn predicate_params(key: &[KeyValue]) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..key.len() {
        for k in &key[..=i] {
            out.push(Value::from(k));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_key_predicate() {
        let keys = vec!["`a`".to_string(), "`b`".to_string()];
        assert_eq!(
            after_key_predicate(&keys),
            "(`a` > ?) OR (`a` = ? AND `b` > ?)"
        );
        let p = predicate_params(&[KeyValue::Int(1), KeyValue::Int(2)]);
        assert_eq!(p, vec![Value::Int(1), Value::Int(1), Value::Int(2)]);
    }

    #[test]
    fn limit_follows_the_bytes_per_row() {
        // Narrow rows: the row count bounds the chunk.
        assert_eq!(rows_for_budget(25_000, 16 << 20, 100), 25_000);
        // 512 KiB rows in a 16 MiB budget: 32 rows (the budget is reached, nothing discarded).
        assert_eq!(rows_for_budget(25_000, 16 << 20, 512 << 10), 32);
        // A row larger than the budget is read alone.
        assert_eq!(rows_for_budget(25_000, 16 << 20, 64 << 20), 1);
        assert_eq!(rows_for_budget(25_000, 16 << 20, 0), 25_000);
        assert_eq!(
            rows_for_budget(25_000, 16 << 20, FIRST_CHUNK_ROW_BYTES),
            256
        );
    }

    #[test]
    fn key_values_survive_serialization() {
        let k = vec![
            KeyValue::UInt(u64::MAX),
            KeyValue::Bytes(hex::encode([0u8, 255])),
            KeyValue::Date(2024, 2, 29, 1, 2, 3, 4),
        ];
        let text = serde_json::to_string(&k).expect("serializes");
        let back: Vec<KeyValue> = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, k);
        assert_eq!(Value::from(&back[1]), Value::Bytes(vec![0, 255]));
    }
}
