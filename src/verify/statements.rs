//! The statements verification runs on each side, built once per table: pure — SQL text and
//! its parameters, never executed here ([`super::query`] runs them and decodes their rows).
//!
//! Guarantees: every statement addresses rows by the table's row identity with the same range
//! semantics on both engines — a range is `(lo, hi]` in key order, either end open — and key
//! values travel as typed parameters (never spliced into SQL text); MySQL reads use the key's
//! index (`FORCE INDEX`); a composite key's leading column repeats its own bound on PostgreSQL,
//! whose row-comparison estimates would otherwise scan the whole table for one chunk.

use std::sync::Arc;

use mysql_async::{Params, Value as MyValue};
use tokio_postgres::types::ToSql;

use super::normalize::{self, Canon, TextMode};
use crate::schema::{KeySource, Table};
use crate::select::quote_mysql_ident;
use crate::transform::{ColumnRule, PgType, TypeOptions, ValueKind};

/// Row identity values in canonical form, in key order.
pub type Key = Vec<Canon>;

/// A key range `(lo, hi]`; `None` ends are open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Range {
    pub lo: Option<Key>,
    pub hi: Option<Key>,
}

/// Positional MySQL parameters collected while SQL text is built.
#[derive(Default)]
struct MyParams(Vec<MyValue>);

/// Numbered PostgreSQL parameters (texts and text arrays) collected while SQL text is built.
#[derive(Default)]
struct PgParams(Vec<Box<dyn ToSql + Sync + Send>>);

/// A MySQL statement with its positional parameters.
pub struct MyStatement {
    pub sql: String,
    pub params: Vec<MyValue>,
}

impl MyStatement {
    pub fn params(self) -> (String, Params) {
        if self.params.is_empty() {
            (self.sql, Params::Empty)
        } else {
            (self.sql, Params::Positional(self.params))
        }
    }
}

/// A PostgreSQL statement with its numbered parameters.
pub struct PgStatement {
    pub sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl PgStatement {
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

fn my(sql: String, params: MyParams) -> MyStatement {
    MyStatement {
        sql,
        params: params.0,
    }
}

fn pg(sql: String, params: PgParams) -> PgStatement {
    PgStatement {
        sql,
        params: params.0,
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
        let my_from = match &t.key_source {
            KeySource::PrimaryKey => format!("{my_table} FORCE INDEX (PRIMARY)"),
            KeySource::UniqueKey(name) => {
                format!("{my_table} FORCE INDEX ({})", quote_mysql_ident(name))
            }
            // Compared whole, as a multiset (see `verify::multiset`): no index to force.
            KeySource::FullRow => my_table.clone(),
        };
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
                    // MariaDB orders UUIDs of versions 1-5 by their segments in reverse.
                    | ValueKind::Uuid
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

    pub(super) fn key_rule(&self, j: usize) -> &ColumnRule {
        &self.table.columns[self.table.key[j]]
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

    /// Checksum (count, hash) of a range in MySQL.
    pub fn my_sums_sql(&self, range: &Range) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.my_aggregate, self.my_from
        );
        my(sql, params)
    }

    /// Checksum (count, hash) of some target rows.
    pub fn pg_sums_sql(&self, scope: Scope<'_>) -> PgStatement {
        let mut params = PgParams::default();
        let cond = self.pg_scope(scope, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.pg_aggregate, self.table.target_quoted
        );
        pg(sql, params)
    }

    /// A chunk's checksum in PostgreSQL, plus the hash of its JSON columns when `json_hashed`.
    pub fn pg_chunk_sql(&self, scope: Scope<'_>) -> PgStatement {
        let mut params = PgParams::default();
        let cond = self.pg_scope(scope, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.pg_chunk_aggregate, self.table.target_quoted
        );
        pg(sql, params)
    }

    /// The source's key text and JSON columns of a range (`json_hashed` tables).
    pub fn my_json_sql(&self, range: &Range) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.my_json_list, self.my_from
        );
        my(sql, params)
    }

    /// The key of the `offset`-th row (0-based) of `range` in MySQL key order.
    pub fn my_boundary_sql(&self, range: &Range, offset: u64) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {cond} ORDER BY {keys} LIMIT {offset}, 1",
            self.my_from,
            keys = self.my_key_list
        );
        my(sql, params)
    }

    /// The key of the `offset`-th row (0-based) of `range` in PostgreSQL key order.
    pub fn pg_boundary_sql(&self, range: &Range, offset: u64) -> PgStatement {
        let mut params = PgParams::default();
        let cond = self.pg_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} OFFSET {offset} LIMIT 1",
            self.pg_key_fetch, self.table.target_quoted, self.pg_key_list
        );
        pg(sql, params)
    }

    /// Every row of the table from MySQL, in no order (tables identified by their whole row).
    pub fn my_all_rows_sql(&self) -> String {
        format!("SELECT {} FROM {}", self.my_all, self.my_table)
    }

    /// Every row of the table from PostgreSQL, in no order.
    pub fn pg_all_rows_sql(&self) -> String {
        format!("SELECT {} FROM {}", self.pg_all, self.table.target_quoted)
    }

    /// Whole rows of a range from MySQL, at most `limit`, in key order.
    pub fn my_rows_sql(&self, range: &Range, limit: u64) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.my_all, self.my_from, self.my_key_list
        );
        my(sql, params)
    }

    /// Whole rows of a range from PostgreSQL, at most `limit`, in key order.
    pub fn pg_rows_sql(&self, range: &Range, limit: u64) -> PgStatement {
        let mut params = PgParams::default();
        let cond = self.pg_where(range, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {} LIMIT {limit}",
            self.pg_all, self.table.target_quoted, self.pg_key_list
        );
        pg(sql, params)
    }

    /// Whole rows with these keys from MySQL.
    pub fn my_rows_by_key_sql(&self, keys: &[Key]) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_in_keys(keys, &mut params);
        let sql = format!("SELECT {} FROM {} WHERE {cond}", self.my_all, self.my_table);
        my(sql, params)
    }

    /// Whole rows with these keys from PostgreSQL.
    pub fn pg_rows_by_key_sql(&self, keys: &[Key]) -> PgStatement {
        let mut params = PgParams::default();
        let cond = self.pg_in_keys(keys, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.pg_all, self.table.target_quoted
        );
        pg(sql, params)
    }

    /// The keys of a range on the source, in its key order.
    pub fn my_keys_sql(&self, range: &Range) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_where(range, &mut params);
        let sql = format!(
            "SELECT {keys} FROM {} WHERE {cond} ORDER BY {keys}",
            self.my_from,
            keys = self.my_key_list
        );
        my(sql, params)
    }

    /// Which of these keys the source has (the key columns of matching rows).
    pub fn my_present_sql(&self, keys: &[Key]) -> MyStatement {
        let mut params = MyParams::default();
        let cond = self.my_in_keys(keys, &mut params);
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond}",
            self.my_key_list, self.my_table
        );
        my(sql, params)
    }

    /// A page of target keys after `after`, in PostgreSQL's key order.
    pub fn pg_key_page_sql(&self, after: Option<&Key>, limit: u64) -> PgStatement {
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
        pg(sql, params)
    }

    /// Key and the columns compared outside the databases, for a range, from MySQL.
    pub fn my_fetched_sql(&self, range: &Range) -> MyStatement {
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
        my(sql, params)
    }

    /// The same from PostgreSQL.
    pub fn pg_fetched_sql(&self, scope: Scope<'_>) -> PgStatement {
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
        pg(sql, params)
    }

    /// Keys of about `n` random source rows (`fraction` of the table, read in one pass).
    pub fn my_sample_keys_sql(&self, fraction: f64, n: usize) -> MyStatement {
        let sql = format!(
            "SELECT {} FROM {} WHERE RAND() < {:.9} LIMIT {}",
            self.my_key_list,
            self.my_table,
            fraction.clamp(0.0, 1.0),
            n.saturating_mul(2).max(1)
        );
        my(sql, MyParams::default())
    }

    /// Keys of about `n` random target rows (`fraction` of the table, read in one pass).
    pub fn pg_sample_keys_sql(&self, fraction: f64, n: usize) -> PgStatement {
        let sql = format!(
            "SELECT {} FROM {} WHERE random() < {:.9} LIMIT {}",
            self.pg_key_fetch,
            self.table.target_quoted,
            fraction.clamp(0.0, 1.0),
            n.saturating_mul(2).max(1)
        );
        pg(sql, PgParams::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Index, SourceName};
    use crate::transform::SourceColumn;

    /// `d.t (a INT, b DATETIME(6), v VARCHAR(10), PRIMARY KEY (a, b))`, or keyed by `a` alone.
    fn table(composite: bool) -> TableSql {
        let col = |n: &str, dt: &str, ct: &str| SourceColumn {
            name: n.into(),
            data_type: dt.into(),
            column_type: ct.into(),
            charset: Some("utf8mb4".into()),
            char_max_length: Some(10),
            datetime_precision: Some(6),
            ..Default::default()
        };
        let key = if composite {
            vec![(0, None), (1, None)]
        } else {
            vec![(0, None)]
        };
        let t = Table::plan(
            SourceName::new("d", "t"),
            "d".into(),
            vec![
                col("a", "int", "int(11)"),
                col("b", "datetime", "datetime(6)"),
                col("v", "varchar", "varchar(10)"),
            ],
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: key,
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plans");
        TableSql::new(Arc::new(t), TypeOptions::default(), TextMode::Plain)
    }

    fn range(lo: &[&str], hi: &[&str]) -> Range {
        let key =
            |k: &[&str]| (!k.is_empty()).then(|| k.iter().map(|s| Some(s.to_string())).collect());
        Range {
            lo: key(lo),
            hi: key(hi),
        }
    }

    #[test]
    fn single_key_ranges_are_half_open_on_both_engines() {
        let q = table(false);
        let st = q.my_keys_sql(&range(&["10"], &["20"]));
        assert_eq!(
            st.sql,
            "SELECT `a` FROM `d`.`t` FORCE INDEX (PRIMARY) WHERE `a` > ? AND `a` <= ? ORDER BY `a`"
        );
        assert_eq!(st.params, vec![MyValue::Int(10), MyValue::Int(20)]);
        let st = q.pg_boundary_sql(&range(&["10"], &["20"]), 5);
        assert!(
            st.sql.ends_with(
                "FROM \"d\".\"t\" WHERE \"a\" > $1::text::integer AND \"a\" <= $2::text::integer ORDER BY \"a\" OFFSET 5 LIMIT 1"
            ),
            "{}",
            st.sql
        );
        assert_eq!(st.params().len(), 2);
        // Open ends select everything.
        let st = q.my_boundary_sql(&Range::default(), 0);
        assert_eq!(
            st.sql,
            "SELECT `a` FROM `d`.`t` FORCE INDEX (PRIMARY) WHERE TRUE ORDER BY `a` LIMIT 0, 1"
        );
        assert!(st.params.is_empty());
    }

    #[test]
    fn composite_key_ranges_use_index_friendly_forms() {
        let q = table(true);
        let st = q.my_keys_sql(&range(
            &["1", "2024-01-01 00:00:00"],
            &["3", "2024-01-02 00:00:00"],
        ));
        assert_eq!(
            st.sql,
            "SELECT `a`, `b` FROM `d`.`t` FORCE INDEX (PRIMARY) WHERE \
             `a` >= ? AND (`a` > ? OR (`a` = ? AND `b` > CAST(? AS DATETIME(6)))) AND \
             `a` <= ? AND (`a` < ? OR (`a` = ? AND `b` <= CAST(? AS DATETIME(6)))) ORDER BY `a`, `b`"
        );
        assert_eq!(st.params.len(), 8);
        let st = q.pg_rows_sql(&range(&["1", "2024-01-01 00:00:00"], &[]), 100);
        assert!(
            st.sql.contains(
                "WHERE \"a\" >= $1::text::integer AND (\"a\", \"b\") > ROW($2::text::integer, $3::text::timestamp(6)) ORDER BY \"a\", \"b\" LIMIT 100"
            ),
            "{}",
            st.sql
        );
        assert_eq!(st.params().len(), 3);
    }

    #[test]
    fn key_lists_travel_as_parameters() {
        let q = table(true);
        let keys = vec![
            vec![
                Some("1".to_string()),
                Some("2024-01-01 00:00:00".to_string()),
            ],
            vec![Some("2".to_string()), None],
        ];
        let st = q.my_present_sql(&keys);
        assert_eq!(
            st.sql,
            "SELECT `a`, `b` FROM `d`.`t` WHERE (`a` = ? AND `b` = CAST(? AS DATETIME(6))) OR (`a` = ? AND `b` = ?)"
        );
        assert_eq!(st.params[3], MyValue::NULL);
        let st = q.pg_rows_by_key_sql(&keys);
        assert!(
            st.sql.contains(
                "WHERE (\"a\", \"b\") IN (SELECT k1::integer, k2::timestamp(6) FROM unnest($1::text[], $2::text[]) AS k(k1, k2))"
            ),
            "{}",
            st.sql
        );
        assert_eq!(st.params().len(), 2, "one array per key column");
    }
}
