//! The MySQL side of the reverse stream: applies PostgreSQL transactions to MySQL with their
//! LSN checkpoint in the same MySQL transaction.
//!
//! Guarantees: a group of whole PostgreSQL transactions (in commit order) — or one PostgreSQL
//! transaction too large to hold whole, applied in parts into one open MySQL transaction — is
//! one MySQL transaction together with the UPSERT of `ferry.reverse_checkpoint` (stream → end
//! LSN of the group's last transaction); either all of it commits or none of it. So after a crash MySQL's
//! checkpoint names exactly the last transaction it holds, and transactions at or before it are
//! skipped ([`MySqlApplier::checkpoint`]); the keys the group changed are recorded in the same
//! transaction ([`super::touched_keys`]). The session is strict (`STRICT_ALL_TABLES`: MySQL
//! refuses a value it would otherwise truncate or convert), keeps explicit zeros in
//! AUTO_INCREMENT columns, runs in UTC and without foreign key checks (PostgreSQL already
//! checked them, and rows arrive in its commit order). Values are written as SQL literals:
//! binary strings as `X'…'`, text escaped for the default (backslash) escaping.

use std::fmt::Write as _;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::assemble::{Op, Transaction};
use super::lsn::Lsn;
use crate::config::Config;
use crate::error::ErrorClass;
use crate::source::connect::{self as my, Flavor};
use crate::transform::mapping::ValueKind;

/// The MySQL database of ferry's reverse stream bookkeeping.
pub const CHECKPOINT_DATABASE: &str = "ferry";

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 500;
/// A statement is sent once its text reaches this size.
const STATEMENT_BYTES: usize = 4 << 20;
/// Statements are joined into one multi-statement query up to this size (one round trip).
const ROUND_TRIP_BYTES: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("reverse stream ({context}): {source}")]
    Mysql {
        context: &'static str,
        source: mysql_async::Error,
    },
    #[error("reverse stream: MySQL refused a write to {table} in the PostgreSQL transactions ending at LSN {lsn}: {source} — {fix}")]
    Refused {
        table: String,
        lsn: Lsn,
        source: mysql_async::Error,
        fix: &'static str,
    },
    #[error(transparent)]
    Connect(#[from] my::ConnectError),
}

impl ApplyError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ApplyError::Mysql { source, .. } => ErrorClass::of_mysql(source),
            ApplyError::Refused { .. } => ErrorClass::Definite,
            ApplyError::Connect(e) => e.class(),
        }
    }
}

/// MySQL errors a retry would meet again: the data or the schema, not the connection.
fn refusal_fix(e: &mysql_async::Error) -> Option<&'static str> {
    let mysql_async::Error::Server(s) = e else {
        return None;
    };
    Some(match s.code {
        1290 | 1836 => "the ferry account cannot write while MySQL is read-only: grant it READ_ONLY ADMIN (MariaDB) or SUPER / CONNECTION_ADMIN (MySQL), and keep super_read_only off while switched",
        1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 1411 | 3140 | 4025 | 3819 => {
            "the value does not fit the MySQL column (see the message): correct the row on PostgreSQL or widen the column on MySQL, then restart ferry"
        }
        1054 | 1146 => "the table or column is missing on MySQL: recreate it as it was, then restart ferry",
        1062 => "a unique key on MySQL holds another row with this value (PostgreSQL had no such constraint, or compares differently): resolve the duplicate, then restart ferry",
        1451 | 1452 => "a foreign key on MySQL refused the row: check the parent rows, then restart ferry",
        _ => return None,
    })
}

fn mysql(context: &'static str) -> impl FnOnce(mysql_async::Error) -> ApplyError {
    move |source| ApplyError::Mysql { context, source }
}

/// The applier's MySQL session.
pub struct MySqlApplier {
    conn: Conn,
    stream: String,
    pub flavor: Flavor,
    /// A transaction begun by [`MySqlApplier::apply_part`] is open.
    large_open: bool,
    /// The keys recorded so far (see [`super::touched_keys`]).
    recorder: super::touched_keys::Recorder,
}

impl MySqlApplier {
    /// Connects, prepares the session and ferry's checkpoint table.
    ///
    /// # Errors
    /// Connection and MySQL errors.
    pub async fn connect(config: &Config) -> Result<MySqlApplier, ApplyError> {
        let mut conn = my::connect(&config.source).await?;
        let flavor = my::server_info(&mut conn)
            .await
            .map_err(mysql("reading the server version"))?
            .flavor;
        conn.query_drop(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION', \
             time_zone = '+00:00', foreign_key_checks = 0, NAMES utf8mb4",
        )
        .await
        .map_err(mysql("preparing the session"))?;
        if flavor == Flavor::MySql {
            // The cutover set super_read_only, which stops every account: keep read_only (the
            // application still cannot write) and let ferry's privileged account write.
            let sro: Option<i64> = conn
                .query_first("SELECT @@global.super_read_only")
                .await
                .map_err(mysql("reading super_read_only"))?;
            if sro == Some(1) {
                conn.query_drop("SET GLOBAL super_read_only = OFF")
                    .await
                    .map_err(mysql("turning super_read_only off (read_only stays on)"))?;
                tracing::info!("reverse stream: super_read_only turned off on MySQL so ferry can write; read_only stays on");
            }
        }
        conn.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS `{CHECKPOINT_DATABASE}`; \
             CREATE TABLE IF NOT EXISTS `{CHECKPOINT_DATABASE}`.`reverse_checkpoint` (\
               stream VARCHAR(255) NOT NULL PRIMARY KEY, \
               lsn BIGINT UNSIGNED NOT NULL COMMENT 'end LSN of the last PostgreSQL transaction applied', \
               lsn_text VARCHAR(32) NOT NULL, \
               commit_time DOUBLE NOT NULL COMMENT 'its PostgreSQL commit time, Unix seconds', \
               applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)\
             ) ENGINE=InnoDB"
        ))
        .await
        .map_err(mysql("creating ferry.reverse_checkpoint"))?;
        conn.query_drop(super::touched_keys::create_sql())
            .await
            .map_err(mysql("creating ferry.reverse_changed"))?;
        let recorder = super::touched_keys::Recorder::load(&mut conn, &config.stream)
            .await
            .map_err(mysql("reading ferry.reverse_changed"))?;
        Ok(MySqlApplier {
            conn,
            stream: config.stream.clone(),
            flavor,
            large_open: false,
            recorder,
        })
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The end LSN of the last PostgreSQL transaction MySQL holds (None: none yet).
    ///
    /// # Errors
    /// MySQL errors.
    pub async fn checkpoint(&mut self) -> Result<Option<Lsn>, ApplyError> {
        let lsn: Option<u64> = self
            .conn
            .exec_first(
                format!(
                    "SELECT lsn FROM `{CHECKPOINT_DATABASE}`.`reverse_checkpoint` WHERE stream = ?"
                ),
                (self.stream.as_str(),),
            )
            .await
            .map_err(mysql("reading the reverse checkpoint"))?;
        Ok(lsn.map(Lsn))
    }

    /// Applies `group` (whole transactions, in commit order) and its checkpoint in one MySQL
    /// transaction; returns the number of row operations.
    ///
    /// The statements go several to a round trip (a multi-statement query of up to
    /// [`ROUND_TRIP_BYTES`]); when MySQL refuses one, the transaction is rolled back and the
    /// group applied again one statement per round trip, so the refusal names its table.
    ///
    /// # Errors
    /// MySQL errors; a refusal that would recur is [`ApplyError::Refused`].
    pub async fn apply(&mut self, group: &[Transaction]) -> Result<u64, ApplyError> {
        match self.apply_batched(group, ROUND_TRIP_BYTES).await {
            Err(ApplyError::Mysql {
                source: mysql_async::Error::Server(_),
                ..
            }) => self.apply_batched(group, 0).await,
            other => other,
        }
    }

    /// [`Self::apply`] sending statements joined up to `round_trip_bytes` (0: one per round
    /// trip, each failure attributed to its table).
    async fn apply_batched(
        &mut self,
        group: &[Transaction],
        round_trip_bytes: usize,
    ) -> Result<u64, ApplyError> {
        let Some(last) = group.last() else {
            return Ok(0);
        };
        let mut tx = self
            .conn
            .start_transaction(mysql_async::TxOpts::default())
            .await
            .map_err(mysql("starting a transaction"))?;
        let ops: Vec<&Op> = group.iter().flat_map(|t| t.ops.iter()).collect();
        let rows = match send(&mut tx, &ops, round_trip_bytes, last.end_lsn).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        if let Some(sql) = self
            .recorder
            .sql(&self.stream, group.iter().flat_map(|t| t.touched.iter()))
        {
            tx.query_drop(sql)
                .await
                .map_err(mysql("recording the changed keys"))?;
        }
        tx.query_drop(checkpoint_sql(&self.stream, last))
            .await
            .map_err(mysql("writing the reverse checkpoint"))?;
        tx.commit().await.map_err(mysql("committing"))?;
        Ok(rows)
    }

    /// Applies part of one PostgreSQL transaction too large to hold in memory whole (the
    /// operations gathered so far, in order) inside a MySQL transaction left open until
    /// [`Self::finish_large`]; one statement per round trip, so a refusal names its table.
    /// `lsn` (the transaction's commit LSN) is for messages.
    ///
    /// # Errors
    /// As [`Self::apply`]; after an error the MySQL transaction is rolled back.
    pub async fn apply_part(&mut self, ops: &[Op], lsn: Lsn) -> Result<u64, ApplyError> {
        if !self.large_open {
            self.conn
                .query_drop("START TRANSACTION")
                .await
                .map_err(mysql("starting a transaction"))?;
            self.large_open = true;
        }
        let ops: Vec<&Op> = ops.iter().collect();
        match send(&mut self.conn, &ops, 0, lsn).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.large_open = false;
                let _ = self.conn.query_drop("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Rolls back a transaction [`Self::apply_part`] began (its peek failed).
    pub async fn abandon_large(&mut self) {
        if self.large_open {
            self.large_open = false;
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
    }

    /// A transaction [`Self::apply_part`] has begun is open in MySQL.
    pub fn large_open(&self) -> bool {
        self.large_open
    }

    /// Applies the rest of the transaction begun by [`Self::apply_part`] (what its Commit
    /// emitted) and its checkpoint, and commits; returns the row operations of this last part.
    ///
    /// # Errors
    /// As [`Self::apply_part`].
    pub async fn finish_large(&mut self, rest: &Transaction) -> Result<u64, ApplyError> {
        let rows = self.apply_part(&rest.ops, rest.end_lsn).await?;
        self.large_open = false;
        let record = self.recorder.sql(&self.stream, rest.touched.iter());
        let done = async {
            if let Some(sql) = record {
                self.conn
                    .query_drop(sql)
                    .await
                    .map_err(mysql("recording the changed keys"))?;
            }
            self.conn
                .query_drop(checkpoint_sql(&self.stream, rest))
                .await
                .map_err(mysql("writing the reverse checkpoint"))?;
            self.conn
                .query_drop("COMMIT")
                .await
                .map_err(mysql("committing"))
        };
        if let Err(e) = done.await {
            let _ = self.conn.query_drop("ROLLBACK").await;
            return Err(e);
        }
        Ok(rows)
    }
}

/// The UPSERT of the stream's checkpoint to the end of `last`.
fn checkpoint_sql(stream: &str, last: &Transaction) -> String {
    format!(
        "INSERT INTO `{CHECKPOINT_DATABASE}`.`reverse_checkpoint` (stream, lsn, lsn_text, commit_time) \
         VALUES ({}, {}, '{}', {}) ON DUPLICATE KEY UPDATE lsn = VALUES(lsn), \
         lsn_text = VALUES(lsn_text), commit_time = VALUES(commit_time)",
        text_literal(stream.as_bytes()),
        last.end_lsn.0,
        last.end_lsn,
        last.commit_time
    )
}

/// Sends `ops` as statements joined up to `round_trip_bytes` per round trip (0: one each);
/// returns the row operations sent. With one statement per round trip a refusal that would
/// recur is [`ApplyError::Refused`] naming its table; joined, any error is
/// [`ApplyError::Mysql`] (the caller retries one by one to name the table).
async fn send<Q: Queryable>(
    q: &mut Q,
    ops: &[&Op],
    round_trip_bytes: usize,
    lsn: Lsn,
) -> Result<u64, ApplyError> {
    let mut rows = 0u64;
    let mut i = 0;
    let mut batch = String::new();
    let mut batch_first = 0;
    while i < ops.len() {
        let (sql, n) = statement(&ops[i..]);
        if batch.is_empty() {
            batch_first = i;
        } else {
            batch.push(';');
        }
        batch.push_str(&sql);
        rows += n as u64;
        i += n;
        if i < ops.len() && batch.len() < round_trip_bytes {
            continue;
        }
        if let Err(e) = q.query_drop(&batch).await {
            if round_trip_bytes > 0 {
                return Err(ApplyError::Mysql {
                    context: "applying rows",
                    source: e,
                });
            }
            let table = ops[batch_first].table().source.to_string();
            return Err(match refusal_fix(&e) {
                Some(fix) => ApplyError::Refused {
                    table,
                    lsn,
                    source: e,
                    fix,
                },
                None => ApplyError::Mysql {
                    context: "applying rows",
                    source: e,
                },
            });
        }
        batch.clear();
    }
    Ok(rows)
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn table_name(t: &crate::schema::Table) -> String {
    format!("{}.{}", ident(&t.source.db), ident(&t.source.table))
}

/// The first statement for `ops`: consecutive upserts of one table and column list become one
/// multi-row INSERT, consecutive deletes of one table one DELETE; returns it and how many
/// operations it covers.
fn statement(ops: &[&Op]) -> (String, usize) {
    let mut sql = String::new();
    match ops[0] {
        Op::Upsert { table, columns, .. } => {
            let names: Vec<String> = columns
                .iter()
                .map(|&c| ident(&table.source_columns[c].name))
                .collect();
            let _ = write!(
                sql,
                "INSERT INTO {} ({}) VALUES ",
                table_name(table),
                names.join(", ")
            );
            let mut n = 0;
            for op in ops {
                match op {
                    Op::Upsert {
                        table: t,
                        columns: c,
                        values,
                    } if std::ptr::eq(t.as_ref(), table.as_ref()) && c == columns => {
                        if n > 0 {
                            sql.push_str(", ");
                        }
                        sql.push('(');
                        for (j, (&col, v)) in c.iter().zip(values).enumerate() {
                            if j > 0 {
                                sql.push_str(", ");
                            }
                            literal(&mut sql, v, &table.columns[col].kind);
                        }
                        sql.push(')');
                        n += 1;
                        if n >= ROWS_PER_STATEMENT || sql.len() >= STATEMENT_BYTES {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            let non_key: Vec<&String> = columns
                .iter()
                .zip(&names)
                .filter(|(c, _)| !table.key.contains(c))
                .map(|(_, n)| n)
                .collect();
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            if non_key.is_empty() {
                let k = &names[0];
                let _ = write!(sql, "{k} = {k}");
            } else {
                let sets: Vec<String> = non_key
                    .iter()
                    .map(|n| format!("{n} = VALUES({n})"))
                    .collect();
                sql.push_str(&sets.join(", "));
            }
            (sql, n)
        }
        Op::Update {
            table,
            columns,
            values,
            key,
        } => {
            let _ = write!(sql, "UPDATE {} SET ", table_name(table));
            for (j, (&c, v)) in columns.iter().zip(values).enumerate() {
                if j > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "{} = ", ident(&table.source_columns[c].name));
                literal(&mut sql, v, &table.columns[c].kind);
            }
            sql.push_str(" WHERE ");
            key_condition(&mut sql, table, key);
            if !table.has_key() {
                // Identified by the whole row: exactly one of several identical rows.
                sql.push_str(" LIMIT 1");
            }
            (sql, 1)
        }
        Op::Delete { table, key } if !table.has_key() => {
            let _ = write!(sql, "DELETE FROM {} WHERE ", table_name(table));
            key_condition(&mut sql, table, key);
            sql.push_str(" LIMIT 1");
            (sql, 1)
        }
        Op::Delete { table, key } => {
            let _ = write!(sql, "DELETE FROM {} WHERE ", table_name(table));
            key_condition(&mut sql, table, key);
            let mut n = 1;
            for op in &ops[1..] {
                match op {
                    Op::Delete { table: t, key } if std::ptr::eq(t.as_ref(), table.as_ref()) => {
                        sql.push_str(" OR ");
                        key_condition(&mut sql, table, key);
                        n += 1;
                        if n >= ROWS_PER_STATEMENT || sql.len() >= STATEMENT_BYTES {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            (sql, n)
        }
        Op::DeleteAll { table } => (format!("DELETE FROM {}", table_name(table)), 1),
    }
}

fn key_condition(sql: &mut String, table: &crate::schema::Table, key: &[Value]) {
    sql.push('(');
    for (j, (&k, v)) in table.key.iter().zip(key).enumerate() {
        if j > 0 {
            sql.push_str(" AND ");
        }
        // A whole-row identity may hold NULLs: `<=>` matches NULL to NULL.
        let eq = if table.has_key() { "=" } else { "<=>" };
        let _ = write!(sql, "{} {eq} ", ident(&table.source_columns[k].name));
        literal(sql, v, &table.columns[k].kind);
    }
    sql.push(')');
}

/// A value as a MySQL literal; `kind` tells binary strings (`X'…'`) from text.
fn literal(sql: &mut String, v: &Value, kind: &ValueKind) {
    match v {
        Value::NULL => sql.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(sql, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(sql, "{u}");
        }
        // Rust prints the shortest text that reads back as the same value.
        Value::Float(f) => {
            let _ = write!(sql, "{f:e}");
        }
        Value::Double(d) => {
            let _ = write!(sql, "{d:e}");
        }
        Value::Bytes(b) => match kind {
            ValueKind::Bytes { .. } | ValueKind::Geometry | ValueKind::Vector => {
                let _ = write!(sql, "X'{}'", hex::encode(b));
            }
            ValueKind::Decimal => {
                // Digits, sign and point only (checked by the inverse mapping).
                sql.push_str(&String::from_utf8_lossy(b));
            }
            _ => sql.push_str(&text_literal(b)),
        },
        Value::Date(y, m, d, h, mi, s, us) => {
            let _ = write!(sql, "'{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}'");
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = *days as u64 * 24 + *h as u64;
            let sign = if *neg { "-" } else { "" };
            let _ = write!(sql, "'{sign}{hours:02}:{mi:02}:{s:02}.{us:06}'");
        }
    }
}

/// A UTF-8 string literal with backslash escaping (the session's sql_mode has no
/// NO_BACKSLASH_ESCAPES).
pub(super) fn text_literal(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut out = String::with_capacity(s.len() + 2);
    out.push_str("_utf8mb4'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_text_and_hex_binary() {
        let mut s = String::new();
        literal(
            &mut s,
            &Value::Bytes(b"it's a \\ test\0\n".to_vec()),
            &ValueKind::Json,
        );
        assert_eq!(s, "_utf8mb4'it\\'s a \\\\ test\\0\\n'");
        s.clear();
        literal(
            &mut s,
            &Value::Bytes(vec![0, 0xff, b'\'']),
            &ValueKind::Bytes { pad_to: None },
        );
        assert_eq!(s, "X'00ff27'");
        s.clear();
        literal(
            &mut s,
            &Value::Time(true, 34, 22, 59, 59, 5),
            &ValueKind::Time,
        );
        assert_eq!(s, "'-838:59:59.000005'");
        s.clear();
        literal(&mut s, &Value::Double(0.1), &ValueKind::Double);
        assert_eq!(s.parse::<f64>().expect("reads back"), 0.1);
        s.clear();
        literal(&mut s, &Value::Float(1.1), &ValueKind::Float);
        assert_eq!(s.parse::<f64>().expect("reads back") as f32, 1.1f32);
    }
}
