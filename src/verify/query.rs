//! Runs verification's statements ([`super::statements`]) on each side and decodes their rows, and
//! opens the sessions they run in.
//!
//! Guarantees: every statement addresses rows by the table's row identity with the same range
//! semantics on both engines — a range is `(lo, hi]` in key order, either end open — and key
//! values travel as typed parameters (never spliced into SQL text); MySQL reads use the key's
//! index, in a UTC utf8mb4 session; PostgreSQL reads run in a read-only session with ISO dates,
//! hex bytea and UTC, so the normalized text of `normalize` is what both engines produce. Rows
//! read for comparison are MySQL rows through the binary protocol converted by ferry's own
//! `transform::convert` (the values ferry would write), and PostgreSQL rows as text. MySQL
//! sessions return text in its stored bytes (`character_set_results = binary`), so text is
//! decoded by the column's charset exactly as the binlog path decodes it — never converted twice.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as MyValue};
use tokio_postgres::{Client, GenericClient};

use super::normalize::{self, Canon};
use super::VerifyError;
use crate::config::Config;
use crate::sink::connect as pg;
use crate::source::connect as my;
use crate::transform::{self, convert, Cell, Resolution, SourceValue};

pub use super::statements::{Key, Range, Scope, TableSql};

/// Row count and XOR of 64-bit row hashes of one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub count: u64,
    pub hash: u64,
}

impl Sums {
    /// The sums of the rows in `self` but not in `part` (a sub-range of it).
    pub fn minus(self, part: Sums) -> Sums {
        Sums {
            count: self.count.saturating_sub(part.count),
            hash: self.hash ^ part.hash,
        }
    }
}

/// One column value as read for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What equality is decided on.
    pub canon: Canon,
    /// What a human is shown (the value as ferry writes it, or as PostgreSQL prints it).
    pub shown: Option<String>,
}

/// A source row: the compared values and the cells ferry would write (for repairs).
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub values: Vec<Value>,
    /// ferry's PostgreSQL text cells after the `[types]` policies; `Err` names a value the
    /// policies do not let ferry write (refused or dead-lettered).
    pub write: Result<Vec<Cell>, String>,
}

/// A target row.
pub type TargetRow = Vec<Value>;

/// One MySQL and one PostgreSQL session.
pub struct Session {
    pub my: Conn,
    pub pg: Client,
}

/// PostgreSQL session settings normalization relies on.
/// Parallel plans are off: chunks are small, and verification runs its own workers.
pub const PG_SESSION: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
     SET bytea_output = 'hex'; SET extra_float_digits = 1; SET TimeZone = 'UTC'; \
     SET max_parallel_workers_per_gather = 0";

impl Session {
    /// Opens both sessions; `read_only` makes the PostgreSQL one refuse writes.
    ///
    /// # Errors
    /// Either side unreachable.
    pub async fn open(config: &Config, read_only: bool) -> Result<Session, VerifyError> {
        let my = my_conn(config).await?;
        let pg = pg_client(config, read_only).await?;
        Ok(Session { my, pg })
    }
}

/// A source session for verification.
///
/// # Errors
/// The source is unreachable.
/// The source's flavor (MySQL or MariaDB), read from the server's version.
///
/// # Errors
/// Source errors.
pub async fn source_flavor(conn: &mut Conn) -> Result<crate::source::connect::Flavor, VerifyError> {
    crate::source::connect::server_info(conn)
        .await
        .map(|info| info.flavor)
        .map_err(|e| VerifyError::Source {
            context: "reading the server version".into(),
            source: e,
        })
}

pub async fn my_conn(config: &Config) -> Result<Conn, VerifyError> {
    Ok(my::connect(&config.source).await?)
}

/// A target session for verification.
///
/// # Errors
/// The target is unreachable.
pub async fn pg_client(config: &Config, read_only: bool) -> Result<Client, VerifyError> {
    let client = pg::connect(&config.target)
        .await
        .map_err(|e| VerifyError::target("connecting", &e))?;
    let mut setup = PG_SESSION.to_string();
    if read_only {
        setup.push_str("; SET default_transaction_read_only = on");
    }
    client
        .batch_execute(&setup)
        .await
        .map_err(|e| VerifyError::target("setting up the session", &e))?;
    Ok(client)
}

/// Execution and row decoding (the statements are built in [`super::statements`]).
impl TableSql {
    /// The key of a PostgreSQL row whose first columns are [`Self::pg_key_fetch`].
    fn pg_row_key(&self, r: &tokio_postgres::Row) -> Key {
        (0..self.table.key.len())
            .map(|j| {
                let text: Option<String> = r.get(j);
                normalize::canon_target(self.key_rule(j), text.as_deref())
            })
            .collect()
    }

    pub(super) fn my_err(&self, what: &str) -> impl Fn(mysql_async::Error) -> VerifyError + '_ {
        let context = format!("{what} of {}", self.table.source);
        move |e| VerifyError::Source {
            context: context.clone(),
            source: e,
        }
    }

    pub(super) fn pg_err(&self, what: &str) -> impl Fn(tokio_postgres::Error) -> VerifyError + '_ {
        let context = format!("{what} of {}", self.table.target_quoted);
        move |e| VerifyError::target(&context, &e)
    }

    /// Checksum of a range in MySQL.
    pub async fn my_sums(&self, conn: &mut Conn, range: &Range) -> Result<Sums, VerifyError> {
        let (sql, params) = self.my_sums_sql(range).params();
        let row: Option<(u64, u64)> = conn
            .exec_first(sql, params)
            .await
            .map_err(self.my_err("checksum"))?;
        let (count, hash) = row.unwrap_or_default();
        Ok(Sums { count, hash })
    }

    /// Checksum of some target rows.
    pub async fn pg_sums(&self, client: &Client, scope: Scope<'_>) -> Result<Sums, VerifyError> {
        let st = self.pg_sums_sql(scope);
        let row = client
            .query_one(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("checksum"))?;
        let count: i64 = row.get(0);
        let hash: i64 = row.get(1);
        Ok(Sums {
            count: count as u64,
            hash: hash as u64,
        })
    }

    /// A chunk's checksum in PostgreSQL, with the hash of its JSON columns when `json_hashed`.
    pub async fn pg_chunk(
        &self,
        client: &Client,
        scope: Scope<'_>,
    ) -> Result<(Sums, Option<u64>), VerifyError> {
        let st = self.pg_chunk_sql(scope);
        let row = client
            .query_one(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("checksum"))?;
        let count: i64 = row.get(0);
        let hash: i64 = row.get(1);
        let json = self.json_hashed.then(|| row.get::<_, i64>(2) as u64);
        Ok((
            Sums {
                count: count as u64,
                hash: hash as u64,
            },
            json,
        ))
    }

    /// The hash PostgreSQL computes over a chunk's JSON columns, computed from the source's rows:
    /// MySQL normalizes the key in the database, ferry renders the JSON as PostgreSQL prints
    /// `jsonb` ([`normalize::jsonb_text`]). Only the key text and the JSON travel.
    pub async fn my_json_hash(&self, conn: &mut Conn, range: &Range) -> Result<u64, VerifyError> {
        use sha2::{Digest, Sha256};
        let (sql, params) = self.my_json_sql(range).params();
        let mut hash = 0u64;
        let mut text = Vec::with_capacity(256);
        let mut result = conn
            .exec_iter(sql, params)
            .await
            .map_err(self.my_err("reading JSON columns"))?;
        while let Some(row) = result
            .next()
            .await
            .map_err(self.my_err("reading JSON columns"))?
        {
            text.clear();
            let values = row.unwrap();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    text.extend_from_slice(normalize::SEPARATOR.as_bytes());
                }
                match v {
                    MyValue::Bytes(b) if i == 0 => text.extend_from_slice(b),
                    MyValue::Bytes(b) => {
                        match std::str::from_utf8(b).ok().and_then(normalize::jsonb_text) {
                            Some(j) => text.extend_from_slice(j.as_bytes()),
                            // Not JSON PostgreSQL would hold: the chunk takes the exact comparison.
                            None => text.extend_from_slice(b"\x01invalid"),
                        }
                    }
                    MyValue::NULL => text.extend_from_slice(normalize::NULL_MARK.as_bytes()),
                    other => text.extend_from_slice(other.as_sql(true).as_bytes()),
                }
            }
            let digest = Sha256::digest(&text);
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            hash ^= u64::from_be_bytes(first);
        }
        Ok(hash)
    }

    /// The key of the `offset`-th row (0-based) of `range` in MySQL key order, if there is one.
    pub async fn my_boundary(
        &self,
        conn: &mut Conn,
        range: &Range,
        offset: u64,
    ) -> Result<Option<Key>, VerifyError> {
        let (sql, params) = self.my_boundary_sql(range, offset).params();
        let row: Option<mysql_async::Row> = conn
            .exec_first(sql, params)
            .await
            .map_err(self.my_err("reading a chunk boundary"))?;
        Ok(row.map(|r| self.key_from_my(&r.unwrap())))
    }

    /// The key of the `offset`-th row (0-based) of `range` in PostgreSQL key order.
    pub async fn pg_boundary(
        &self,
        client: &Client,
        range: &Range,
        offset: u64,
    ) -> Result<Option<Key>, VerifyError> {
        let st = self.pg_boundary_sql(range, offset);
        let row = client
            .query_opt(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("reading a chunk boundary"))?;
        Ok(row.map(|r| self.pg_row_key(&r)))
    }

    /// One MySQL value as ferry converts it (raw column bytes, decoded by the column charset).
    fn convert(&self, col: usize, v: &MyValue) -> Result<Cell, transform::ValueProblem> {
        convert(&self.table.columns[col], SourceValue::Query(v))
    }

    /// One MySQL value, converted as ferry converts it.
    fn source_value(&self, col: usize, v: &MyValue) -> Value {
        let rule = &self.table.columns[col];
        match self.convert(col, v) {
            Ok(cell) => Value {
                canon: normalize::canon_source(rule, &cell),
                shown: cell,
            },
            Err(problem) => Value {
                canon: Some(format!("\u{1}unconvertible: {problem}")),
                shown: Some(format!("<cannot be converted: {problem}>")),
            },
        }
    }

    /// A whole MySQL row.
    pub(super) fn source_row(&self, values: &[MyValue]) -> SourceRow {
        let t = &self.table;
        let mut shown = Vec::with_capacity(values.len());
        let mut write: Result<Vec<Cell>, String> = Ok(Vec::with_capacity(values.len()));
        for (i, v) in values.iter().enumerate() {
            let rule = &t.columns[i];
            match self.convert(i, v) {
                Ok(cell) => {
                    if let Ok(w) = &mut write {
                        w.push(cell.clone());
                    }
                    shown.push(Value {
                        canon: normalize::canon_source(rule, &cell),
                        shown: cell,
                    });
                }
                Err(problem) => {
                    let nullable = rule.nullable && !t.is_key_column(i);
                    match transform::resolve(&self.types, &problem, nullable) {
                        Resolution::Substitute(cell) => {
                            if let Ok(w) = &mut write {
                                w.push(cell.clone());
                            }
                            shown.push(Value {
                                canon: normalize::canon_source(rule, &cell),
                                shown: cell,
                            });
                        }
                        Resolution::DeadLetter | Resolution::Refuse => {
                            write = Err(format!("column {}: {problem}", rule.source_name));
                            shown.push(Value {
                                canon: Some(format!("\u{1}unconvertible: {problem}")),
                                shown: Some(format!("<cannot be converted: {problem}>")),
                            });
                        }
                    }
                }
            }
        }
        SourceRow {
            values: shown,
            write,
        }
    }

    pub(super) fn target_row(&self, row: &tokio_postgres::Row, offset: usize) -> TargetRow {
        self.table
            .columns
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let text: Option<String> = row.get(offset + i);
                Value {
                    canon: normalize::canon_target(rule, text.as_deref()),
                    shown: text,
                }
            })
            .collect()
    }

    fn key_of(&self, values: &[Value]) -> Key {
        self.table
            .key
            .iter()
            .map(|i| values[*i].canon.clone())
            .collect()
    }

    /// Whole rows of a range from MySQL, at most `limit`.
    pub async fn my_rows(
        &self,
        conn: &mut Conn,
        range: &Range,
        limit: u64,
    ) -> Result<HashMap<Key, SourceRow>, VerifyError> {
        let (sql, params) = self.my_rows_sql(range, limit).params();
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(self.my_err("reading rows"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let row = self.source_row(&r.unwrap());
                (self.key_of(&row.values), row)
            })
            .collect())
    }

    /// Whole rows of a range from PostgreSQL, at most `limit`.
    pub async fn pg_rows(
        &self,
        client: &Client,
        range: &Range,
        limit: u64,
    ) -> Result<HashMap<Key, TargetRow>, VerifyError> {
        let st = self.pg_rows_sql(range, limit);
        let rows = client
            .query(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("reading rows"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let row = self.target_row(r, 0);
                (self.key_of(&row), row)
            })
            .collect())
    }

    /// Whole rows by key from MySQL (absent keys are absent from the result).
    pub async fn my_rows_by_key(
        &self,
        conn: &mut Conn,
        keys: &[Key],
    ) -> Result<HashMap<Key, SourceRow>, VerifyError> {
        let mut out = HashMap::new();
        for batch in keys.chunks(200) {
            let (sql, params) = self.my_rows_by_key_sql(batch).params();
            let rows: Vec<mysql_async::Row> = conn
                .exec(sql, params)
                .await
                .map_err(self.my_err("reading rows by key"))?;
            for r in rows {
                let row = self.source_row(&r.unwrap());
                out.insert(self.key_of(&row.values), row);
            }
        }
        Ok(out)
    }

    /// Whole rows by key from PostgreSQL.
    pub async fn pg_rows_by_key(
        &self,
        client: &(impl GenericClient + Sync),
        keys: &[Key],
    ) -> Result<HashMap<Key, TargetRow>, VerifyError> {
        let mut out = HashMap::new();
        for batch in keys.chunks(1000) {
            let st = self.pg_rows_by_key_sql(batch);
            let rows = client
                .query(&st.sql, &st.params())
                .await
                .map_err(self.pg_err("reading rows by key"))?;
            for r in &rows {
                let row = self.target_row(r, 0);
                out.insert(self.key_of(&row), row);
            }
        }
        Ok(out)
    }

    /// The keys of a range on the source, in its key order.
    pub async fn my_keys(&self, conn: &mut Conn, range: &Range) -> Result<Vec<Key>, VerifyError> {
        let (sql, params) = self.my_keys_sql(range).params();
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(self.my_err("reading chunk keys"))?;
        Ok(rows
            .into_iter()
            .map(|r| self.key_from_my(&r.unwrap()))
            .collect())
    }

    /// The key of a MySQL row whose first columns are [`Self::my_key_list`] (`values` holds
    /// exactly the key columns).
    fn key_from_my(&self, values: &[MyValue]) -> Key {
        values
            .iter()
            .enumerate()
            .map(|(j, v)| self.source_value(self.table.key[j], v).canon)
            .collect()
    }

    /// Which of `keys` the source has, exactly as spelled (a case-insensitive collation may find
    /// a differently spelled key: that one does not count).
    pub async fn my_present(
        &self,
        conn: &mut Conn,
        keys: &[Key],
    ) -> Result<std::collections::HashSet<Key>, VerifyError> {
        let mut out = std::collections::HashSet::new();
        for batch in keys.chunks(200) {
            let (sql, params) = self.my_present_sql(batch).params();
            let rows: Vec<mysql_async::Row> = conn
                .exec(sql, params)
                .await
                .map_err(self.my_err("looking up keys"))?;
            out.extend(rows.into_iter().map(|r| self.key_from_my(&r.unwrap())));
        }
        Ok(out)
    }

    /// A page of target keys after `after`, in PostgreSQL's key order.
    pub async fn pg_key_page(
        &self,
        client: &Client,
        after: Option<&Key>,
        limit: u64,
    ) -> Result<Vec<Key>, VerifyError> {
        let st = self.pg_key_page_sql(after, limit);
        let rows = client
            .query(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("reading keys"))?;
        Ok(rows.iter().map(|r| self.pg_row_key(r)).collect())
    }

    /// Key and the columns compared outside the databases, for a range, from MySQL.
    pub async fn my_fetched(
        &self,
        conn: &mut Conn,
        range: &Range,
    ) -> Result<HashMap<Key, Vec<Canon>>, VerifyError> {
        let (sql, params) = self.my_fetched_sql(range).params();
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(self.my_err("reading JSON columns"))?;
        let nk = self.table.key.len();
        Ok(rows
            .into_iter()
            .map(|r| {
                let v = r.unwrap();
                let key = self.key_from_my(&v[..nk]);
                let vals = self
                    .fetched
                    .iter()
                    .enumerate()
                    .map(|(f, i)| self.source_value(*i, &v[nk + f]).canon)
                    .collect();
                (key, vals)
            })
            .collect())
    }

    /// The same from PostgreSQL.
    pub async fn pg_fetched(
        &self,
        client: &Client,
        scope: Scope<'_>,
    ) -> Result<HashMap<Key, Vec<Canon>>, VerifyError> {
        let st = self.pg_fetched_sql(scope);
        let rows = client
            .query(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("reading JSON columns"))?;
        let nk = self.table.key.len();
        Ok(rows
            .iter()
            .map(|r| {
                let key = self.pg_row_key(r);
                let vals = self
                    .fetched
                    .iter()
                    .enumerate()
                    .map(|(f, i)| {
                        let t: Option<String> = r.get(nk + f);
                        normalize::canon_target(&self.table.columns[*i], t.as_deref())
                    })
                    .collect();
                (key, vals)
            })
            .collect())
    }

    /// Keys of about `n` random source rows (`fraction` of the table, read in one pass).
    pub async fn my_sample_keys(
        &self,
        conn: &mut Conn,
        fraction: f64,
        n: usize,
    ) -> Result<Vec<Key>, VerifyError> {
        let (sql, params) = self.my_sample_keys_sql(fraction, n).params();
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, params)
            .await
            .map_err(self.my_err("sampling keys"))?;
        Ok(rows
            .into_iter()
            .map(|r| self.key_from_my(&r.unwrap()))
            .collect())
    }

    /// Keys of about `n` random target rows (`fraction` of the table, read in one pass).
    pub async fn pg_sample_keys(
        &self,
        client: &Client,
        fraction: f64,
        n: usize,
    ) -> Result<Vec<Key>, VerifyError> {
        let st = self.pg_sample_keys_sql(fraction, n);
        let rows = client
            .query(&st.sql, &st.params())
            .await
            .map_err(self.pg_err("sampling keys"))?;
        Ok(rows.iter().map(|r| self.pg_row_key(r)).collect())
    }

    /// The target's row count.
    pub async fn pg_count(&self, client: &Client) -> Result<u64, VerifyError> {
        let row = client
            .query_one(
                &format!("SELECT count(*) FROM {}", self.table.target_quoted),
                &[],
            )
            .await
            .map_err(self.pg_err("counting rows"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Whether the target table exists.
    pub async fn target_exists(&self, client: &Client) -> Result<bool, VerifyError> {
        let row = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&self.table.target_quoted],
            )
            .await
            .map_err(self.pg_err("looking up"))?;
        Ok(row.get(0))
    }
}
