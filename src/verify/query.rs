//! The statements verification runs on each side, built once per table, and the sessions they
//! run in.
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
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient};

use super::normalize::{self, Canon, TextMode};
use super::VerifyError;
use crate::config::Config;
use crate::schema::{KeySource, Table};
use crate::select::quote_mysql_ident;
use crate::sink::connect as pg;
use crate::source::connect as my;
use crate::transform::{
    self, convert, Cell, ColumnRule, PgType, Resolution, SourceValue, TypeOptions, ValueKind,
};

/// Row identity values in canonical form, in key order.
pub type Key = Vec<Canon>;

/// A key range `(lo, hi]`; `None` ends are open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Range {
    pub lo: Option<Key>,
    pub hi: Option<Key>,
}

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
const PG_SESSION: &str = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
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

/// Positional MySQL parameters collected while SQL text is built.
#[derive(Default)]
struct MyParams(Vec<MyValue>);

/// Numbered PostgreSQL parameters (texts and text arrays) collected while SQL text is built.
#[derive(Default)]
struct PgParams(Vec<Box<dyn ToSql + Sync + Send>>);

impl PgParams {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Which target rows a statement covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A key range, in PostgreSQL's order of the key.
    Range(&'a Range),
    /// Exactly these keys (a source chunk's keys, for keys the engines order differently).
    Keys(&'a [Key]),
}

/// The prepared statements of one table.
pub struct TableSql {
    pub table: Arc<Table>,
    pub types: TypeOptions,
    /// Positions of columns compared outside the databases (JSON, VECTOR).
    pub fetched: Vec<usize>,
    /// Every such column is JSON: chunks compare them by hash first (see [`TableSql::my_json_hash`]).
    pub json_hashed: bool,
    /// Both engines order the key alike (no text or ENUM/SET part), so the source's chunk
    /// boundaries cut the target's rows into disjoint ranges too.
    pub order_safe: bool,
    my_table: String,
    my_from: String,
    my_keys: Vec<String>,
    my_key_list: String,
    my_all: String,
    my_aggregate: String,
    pg_keys: Vec<String>,
    pg_key_list: String,
    pg_key_fetch: String,
    pg_all: String,
    pg_aggregate: String,
    /// `pg_aggregate` plus the JSON hash of the chunk, when `json_hashed`.
    pg_chunk_aggregate: String,
    /// Select list of the source's key text and JSON columns, when `json_hashed`.
    my_json_list: String,
}

impl TableSql {
    pub fn new(table: Arc<Table>, types: TypeOptions, text: TextMode) -> TableSql {
        let t = &table;
        let my_table = format!(
            "{}.{}",
            quote_mysql_ident(&t.source.db),
            quote_mysql_ident(&t.source.table)
        );
        let index = match &t.key_source {
            KeySource::PrimaryKey => "PRIMARY".to_string(),
            KeySource::UniqueKey(name) => quote_mysql_ident(name),
        };
        let my_from = format!("{my_table} FORCE INDEX ({index})");
        let my_keys: Vec<String> = t
            .key
            .iter()
            .map(|i| quote_mysql_ident(&t.source_columns[*i].name))
            .collect();
        let my_all = t
            .source_columns
            .iter()
            .map(|c| quote_mysql_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let pg_keys: Vec<String> = t.key.iter().map(|i| t.columns[*i].quoted.clone()).collect();
        let pg_key_fetch = t
            .key
            .iter()
            .map(|i| normalize::pg_fetch_expr(&t.columns[*i]))
            .collect::<Vec<_>>()
            .join(", ");
        let pg_all = t
            .columns
            .iter()
            .map(normalize::pg_fetch_expr)
            .collect::<Vec<_>>()
            .join(", ");
        let fetched: Vec<usize> = t
            .columns
            .iter()
            .enumerate()
            .filter(|(_, r)| !normalize::in_checksum(r))
            .map(|(i, _)| i)
            .collect();
        let json_hashed = !fetched.is_empty()
            && fetched
                .iter()
                .all(|i| t.columns[*i].kind == ValueKind::Json);
        let pg_aggregate = normalize::pg_chunk_aggregate(t);
        let (pg_chunk_aggregate, my_json_list) = if json_hashed {
            let pg_key: Vec<String> = t
                .key
                .iter()
                .map(|i| {
                    format!(
                        "coalesce({}, '{}')",
                        normalize::pg_expr(&t.columns[*i]),
                        normalize::NULL_MARK
                    )
                })
                .chain(fetched.iter().map(|i| {
                    format!(
                        "coalesce({}::text, '{}')",
                        t.columns[*i].quoted,
                        normalize::NULL_MARK
                    )
                }))
                .collect();
            let my_key: Vec<String> = t
                .key
                .iter()
                .map(|i| {
                    format!(
                        "COALESCE({}, '{}')",
                        normalize::mysql_expr(&t.columns[*i], &t.source_columns[*i], text),
                        normalize::NULL_MARK
                    )
                })
                .collect();
            let my_json: Vec<String> = fetched
                .iter()
                .map(|i| quote_mysql_ident(&t.source_columns[*i].name))
                .collect();
            (
                format!(
                    "{pg_aggregate}, coalesce(bit_xor({}), 0)",
                    normalize::pg_hash64(&format!(
                        "concat_ws('{}', {})",
                        normalize::SEPARATOR,
                        pg_key.join(", ")
                    ))
                ),
                format!(
                    "CONCAT_WS('{sep}', {}), {}",
                    my_key.join(", "),
                    my_json.join(", "),
                    sep = normalize::SEPARATOR
                ),
            )
        } else {
            (pg_aggregate.clone(), String::new())
        };
        let order_safe = t.key.iter().all(|i| {
            !matches!(
                t.columns[*i].kind,
                ValueKind::Text { .. }
                    | ValueKind::Enum { .. }
                    | ValueKind::Set { .. }
                    | ValueKind::Json
                    | ValueKind::Vector
            )
        });
        TableSql {
            order_safe,
            json_hashed,
            pg_chunk_aggregate,
            my_json_list,
            my_key_list: my_keys.join(", "),
            pg_key_list: pg_keys.join(", "),
            my_aggregate: normalize::mysql_chunk_aggregate(t, text),
            pg_aggregate,
            my_table,
            my_from,
            my_keys,
            my_all,
            pg_keys,
            pg_key_fetch,
            pg_all,
            fetched,
            table,
            types,
        }
    }

    fn key_rule(&self, j: usize) -> &ColumnRule {
        &self.table.columns[self.table.key[j]]
    }

    /// The key of a PostgreSQL row whose first columns are [`Self::pg_key_fetch`].
    fn pg_row_key(&self, r: &tokio_postgres::Row) -> Key {
        (0..self.table.key.len())
            .map(|j| {
                let text: Option<String> = r.get(j);
                normalize::canon_target(self.key_rule(j), text.as_deref())
            })
            .collect()
    }

    /// MySQL placeholder for key part `j` with the value typed for the column.
    fn my_param(&self, j: usize, canon: &Canon, params: &mut MyParams) -> String {
        let rule = self.key_rule(j);
        let Some(s) = canon else {
            params.0.push(MyValue::NULL);
            return "?".into();
        };
        let (sql, v) = match &rule.kind {
            ValueKind::Int { .. } | ValueKind::Year => match s.parse::<i64>() {
                Ok(i) => ("?".to_string(), MyValue::Int(i)),
                Err(_) => ("?".into(), MyValue::Bytes(s.clone().into_bytes())),
            },
            ValueKind::UInt { .. } => match s.parse::<u64>() {
                Ok(u) => ("?".into(), MyValue::UInt(u)),
                Err(_) => ("?".into(), MyValue::Bytes(s.clone().into_bytes())),
            },
            ValueKind::Bool => ("?".into(), MyValue::Int(i64::from(s == "true" || s == "1"))),
            ValueKind::Bit { .. } => (
                "?".into(),
                MyValue::UInt(u64::from_str_radix(s, 2).unwrap_or(0)),
            ),
            ValueKind::Decimal => {
                let (p, sc) = match rule.pg_type {
                    PgType::Numeric(Some((p, sc))) => (p, sc),
                    _ => (65, 30),
                };
                (
                    format!("CAST(? AS DECIMAL({p},{sc}))"),
                    MyValue::Bytes(s.clone().into_bytes()),
                )
            }
            ValueKind::Float | ValueKind::Double => match s.parse::<f64>() {
                Ok(f) => ("?".into(), MyValue::Double(f)),
                Err(_) => ("?".into(), MyValue::Bytes(s.clone().into_bytes())),
            },
            ValueKind::Date => (
                "CAST(? AS DATE)".into(),
                MyValue::Bytes(s.clone().into_bytes()),
            ),
            ValueKind::DateTime | ValueKind::Timestamp => (
                "CAST(? AS DATETIME(6))".into(),
                MyValue::Bytes(s.clone().into_bytes()),
            ),
            ValueKind::Time => (
                "CAST(? AS TIME(6))".into(),
                MyValue::Bytes(s.clone().into_bytes()),
            ),
            ValueKind::Bytes { .. } | ValueKind::Geometry => {
                let hex = s.strip_prefix("\\x").unwrap_or(s);
                (
                    "?".into(),
                    MyValue::Bytes(hex::decode(hex).unwrap_or_else(|_| s.clone().into_bytes())),
                )
            }
            _ => ("?".into(), MyValue::Bytes(s.clone().into_bytes())),
        };
        params.0.push(v);
        sql
    }

    /// A key part as PostgreSQL input text (TIMESTAMP canon is UTC without an offset).
    fn pg_text(&self, j: usize, canon: &Canon) -> Option<String> {
        match (&self.key_rule(j).kind, canon) {
            (ValueKind::Timestamp, Some(s)) => Some(format!("{s}+00")),
            (_, c) => c.clone(),
        }
    }

    /// PostgreSQL text parameter for key part `j`, cast to the column type.
    fn pg_param(&self, j: usize, canon: &Canon, params: &mut PgParams) -> String {
        let rule = self.key_rule(j);
        params.0.push(Box::new(self.pg_text(j, canon)));
        format!("${}::text::{}", params.0.len(), rule.pg_type.sql())
    }

    /// `(key) IN (the given keys)`, the keys passed as one text array per key column.
    fn pg_in_keys(&self, keys: &[Key], params: &mut PgParams) -> String {
        let n = self.table.key.len();
        let mut arrays = Vec::with_capacity(n);
        let mut casts = Vec::with_capacity(n);
        for j in 0..n {
            let column: Vec<Option<String>> = keys.iter().map(|k| self.pg_text(j, &k[j])).collect();
            params.0.push(Box::new(column));
            arrays.push(format!("${}::text[]", params.0.len()));
            casts.push(format!("k{}::{}", j + 1, self.key_rule(j).pg_type.sql()));
        }
        let aliases: Vec<String> = (1..=n).map(|j| format!("k{j}")).collect();
        let lhs = if n == 1 {
            self.pg_keys[0].clone()
        } else {
            format!("({})", self.pg_key_list)
        };
        format!(
            "{lhs} IN (SELECT {} FROM unnest({}) AS k({}))",
            casts.join(", "),
            arrays.join(", "),
            aliases.join(", ")
        )
    }

    fn pg_scope(&self, scope: Scope<'_>, params: &mut PgParams) -> String {
        match scope {
            Scope::Range(r) => self.pg_where(r, params),
            Scope::Keys(k) => self.pg_in_keys(k, params),
        }
    }

    /// `(k) > (lo)` in MySQL: a nested OR form the range optimizer turns into an index range.
    fn my_cmp(&self, key: &Key, lower: bool, params: &mut MyParams) -> String {
        fn part(sql: &TableSql, key: &Key, j: usize, lower: bool, params: &mut MyParams) -> String {
            let c = &sql.my_keys[j];
            let p = sql.my_param(j, &key[j], params);
            let last = j + 1 == key.len();
            let (strict, closed) = if lower { (">", ">") } else { ("<", "<=") };
            if last {
                return format!("{c} {closed} {p}");
            }
            let p2 = sql.my_param(j, &key[j], params);
            let rest = part(sql, key, j + 1, lower, params);
            format!("({c} {strict} {p} OR ({c} = {p2} AND {rest}))")
        }
        let leading = if key.len() > 1 {
            let c = &self.my_keys[0];
            let p = self.my_param(0, &key[0], params);
            format!("{c} {} {p} AND ", if lower { ">=" } else { "<=" })
        } else {
            String::new()
        };
        format!("{leading}{}", part(self, key, 0, lower, params))
    }

    /// `key IN (...)` / `(a = ? AND b = ?) OR ...` for a batch of keys.
    fn my_in_keys(&self, keys: &[Key], params: &mut MyParams) -> String {
        if self.my_keys.len() == 1 {
            let ps: Vec<String> = keys
                .iter()
                .map(|k| self.my_param(0, &k[0], params))
                .collect();
            return format!("{} IN ({})", self.my_keys[0], ps.join(", "));
        }
        let ors: Vec<String> = keys
            .iter()
            .map(|k| {
                let ands: Vec<String> = (0..k.len())
                    .map(|j| format!("{} = {}", self.my_keys[j], self.my_param(j, &k[j], params)))
                    .collect();
                format!("({})", ands.join(" AND "))
            })
            .collect();
        ors.join(" OR ")
    }

    fn my_where(&self, range: &Range, params: &mut MyParams) -> String {
        let mut conds = Vec::new();
        if let Some(lo) = &range.lo {
            conds.push(self.my_cmp(lo, true, params));
        }
        if let Some(hi) = &range.hi {
            conds.push(self.my_cmp(hi, false, params));
        }
        if conds.is_empty() {
            "TRUE".into()
        } else {
            conds.join(" AND ")
        }
    }

    fn pg_row_of(&self, key: &Key, params: &mut PgParams) -> String {
        let parts: Vec<String> = (0..key.len())
            .map(|j| self.pg_param(j, &key[j], params))
            .collect();
        if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            format!("ROW({})", parts.join(", "))
        }
    }

    fn pg_where(&self, range: &Range, params: &mut PgParams) -> String {
        let lhs = if self.pg_keys.len() == 1 {
            self.pg_keys[0].clone()
        } else {
            format!("({})", self.pg_key_list)
        };
        let mut conds = Vec::new();
        // With a composite key, the leading column's own bound is repeated: PostgreSQL estimates
        // row comparisons poorly and would otherwise scan the whole table for one chunk.
        let composite = self.pg_keys.len() > 1;
        if let Some(lo) = &range.lo {
            if composite {
                let p = self.pg_param(0, &lo[0], params);
                conds.push(format!("{} >= {p}", self.pg_keys[0]));
            }
            conds.push(format!("{lhs} > {}", self.pg_row_of(lo, params)));
        }
        if let Some(hi) = &range.hi {
            if composite {
                let p = self.pg_param(0, &hi[0], params);
                conds.push(format!("{} <= {p}", self.pg_keys[0]));
            }
            conds.push(format!("{lhs} <= {}", self.pg_row_of(hi, params)));
        }
        if conds.is_empty() {
            "TRUE".into()
        } else {
            conds.join(" AND ")
        }
    }

    fn my_err(&self, what: &str) -> impl Fn(mysql_async::Error) -> VerifyError + '_ {
        let context = format!("{what} of {}", self.table.source);
        move |e| VerifyError::Source {
            context: context.clone(),
            source: e,
        }
    }

    fn pg_err(&self, what: &str) -> impl Fn(tokio_postgres::Error) -> VerifyError + '_ {
        let context = format!("{what} of {}", self.table.target_quoted);
        move |e| VerifyError::target(&context, &e)
    }

    /// Checksum of a range in MySQL.
    pub async fn my_sums(&self, conn: &mut Conn, range: &Range) -> Result<Sums, VerifyError> {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.my_aggregate, self.my_from
        );
        let row: Option<(u64, u64)> = conn
            .exec_first(sql, Params::Positional(params.0))
            .await
            .map_err(self.my_err("checksum"))?;
        let (count, hash) = row.unwrap_or_default();
        Ok(Sums { count, hash })
    }

    /// Checksum of some target rows.
    pub async fn pg_sums(&self, client: &Client, scope: Scope<'_>) -> Result<Sums, VerifyError> {
        let mut params = PgParams::default();
        let cond = self.pg_scope(scope, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.pg_aggregate, self.table.target_quoted
        );
        let row = client
            .query_one(&sql, &params.refs())
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
        let mut params = PgParams::default();
        let cond = self.pg_scope(scope, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.pg_chunk_aggregate, self.table.target_quoted
        );
        let row = client
            .query_one(&sql, &params.refs())
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
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.my_json_list, self.my_from
        );
        let mut hash = 0u64;
        let mut text = Vec::with_capacity(256);
        let mut result = conn
            .exec_iter(sql, Params::Positional(params.0))
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
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {cond} ORDER BY {keys} LIMIT {offset}, 1",
            self.my_from,
            keys = self.my_key_list
        );
        let row: Option<mysql_async::Row> = conn
            .exec_first(sql, Params::Positional(params.0))
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
        let mut params = PgParams::default();
        let cond = self.pg_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} OFFSET {offset} LIMIT 1",
            self.pg_key_fetch, self.table.target_quoted, self.pg_key_list
        );
        let row = client
            .query_opt(&sql, &params.refs())
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
    fn source_row(&self, values: &[MyValue]) -> SourceRow {
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

    fn target_row(&self, row: &tokio_postgres::Row, offset: usize) -> TargetRow {
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
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.my_all, self.my_from, self.my_key_list
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, Params::Positional(params.0))
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
        let mut params = PgParams::default();
        let cond = self.pg_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.pg_all, self.table.target_quoted, self.pg_key_list
        );
        let rows = client
            .query(&sql, &params.refs())
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
            let mut params = MyParams::default();
            let cond = self.my_in_keys(batch, &mut params);
            let sql = format!("SELECT {} FROM {} WHERE {cond}", self.my_all, self.my_table);
            let rows: Vec<mysql_async::Row> = conn
                .exec(sql, Params::Positional(params.0))
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
            let mut params = PgParams::default();
            let cond = self.pg_in_keys(batch, &mut params);
            let sql = format!(
                "SELECT {} FROM {} WHERE {cond}",
                self.pg_all, self.table.target_quoted
            );
            let rows = client
                .query(&sql, &params.refs())
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
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {cond} ORDER BY {keys}",
            self.my_from,
            keys = self.my_key_list
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, Params::Positional(params.0))
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
            let mut params = MyParams::default();
            let cond = self.my_in_keys(batch, &mut params);
            let sql = format!(
                "SELECT {} FROM {} WHERE {cond}",
                self.my_key_list, self.my_table
            );
            let rows: Vec<mysql_async::Row> = conn
                .exec(sql, Params::Positional(params.0))
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
        let mut params = PgParams::default();
        let range = Range {
            lo: after.cloned(),
            hi: None,
        };
        let cond = self.pg_where(&range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.pg_key_fetch, self.table.target_quoted, self.pg_key_list
        );
        let rows = client
            .query(&sql, &params.refs())
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
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let cols: Vec<String> = self
            .fetched
            .iter()
            .map(|i| quote_mysql_ident(&self.table.source_columns[*i].name))
            .collect();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {cond}",
            self.my_key_list,
            cols.join(", "),
            self.my_from
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, Params::Positional(params.0))
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
        let mut params = PgParams::default();
        let cond = self.pg_scope(scope, &mut params);
        let cols: Vec<String> = self
            .fetched
            .iter()
            .map(|i| normalize::pg_fetch_expr(&self.table.columns[*i]))
            .collect();
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {cond}",
            self.pg_key_fetch,
            cols.join(", "),
            self.table.target_quoted
        );
        let rows = client
            .query(&sql, &params.refs())
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
        let sql = format!(
            "SELECT {} FROM {} WHERE RAND() < {:.9} LIMIT {}",
            self.my_key_list,
            self.my_table,
            fraction.clamp(0.0, 1.0),
            n.saturating_mul(2).max(1)
        );
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql, Params::Empty)
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
        let sql = format!(
            "SELECT {} FROM {} WHERE random() < {:.9} LIMIT {}",
            self.pg_key_fetch,
            self.table.target_quoted,
            fraction.clamp(0.0, 1.0),
            n.saturating_mul(2).max(1)
        );
        let rows = client
            .query(&sql, &[])
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
