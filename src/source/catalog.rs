//! Reads the selected tables' definitions from the source's `information_schema` and plans them
//! ([`crate::schema::Table`]).
//!
//! Guarantees: only base tables are returned (views and system schemas never); every selected
//! table either plans completely or the load fails naming the table and the fix; MariaDB JSON
//! columns (LONGTEXT with a `json_valid` check) are recognised as JSON.

use std::collections::{BTreeMap, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::connect::Flavor;
use crate::error::ErrorClass;
use crate::schema::{check_target_collisions, Index, SourceName, Table, TableError};
use crate::select::TableSelector;
use crate::transform::{SourceColumn, TypeOptions};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the source catalog: {0}")]
    Mysql(#[from] mysql_async::Error),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{0}")]
    Collision(String),
}

impl CatalogError {
    /// A failed catalog query is transient (the connection); a table ferry cannot plan is not.
    pub fn class(&self) -> ErrorClass {
        match self {
            CatalogError::Mysql(e) => ErrorClass::of_mysql(e),
            CatalogError::Table(_) | CatalogError::Collision(_) => ErrorClass::Definite,
        }
    }
}

const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

/// Loads and plans every selected table, ordered by name.
///
/// # Errors
/// Catalog query failures and tables that cannot be planned.
pub async fn load_tables(
    conn: &mut Conn,
    flavor: Flavor,
    selector: &TableSelector,
    options: &TypeOptions,
) -> Result<Vec<Table>, CatalogError> {
    let names = list_tables(conn, selector).await?;
    load_named(conn, flavor, selector, options, &names).await
}

/// Selected base tables that exist now, with their row estimates.
pub async fn list_tables(
    conn: &mut Conn,
    selector: &TableSelector,
) -> Result<Vec<(SourceName, u64)>, CatalogError> {
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         ORDER BY TABLE_SCHEMA, TABLE_NAME"
    );
    let rows: Vec<(String, String, u64)> = conn.query(sql).await?;
    Ok(rows
        .into_iter()
        .filter(|(db, t, _)| selector.matches(db, t))
        .map(|(db, t, n)| (SourceName::new(db, t), n))
        .collect())
}

/// Loads and plans the named tables.
pub async fn load_named(
    conn: &mut Conn,
    flavor: Flavor,
    selector: &TableSelector,
    options: &TypeOptions,
    names: &[(SourceName, u64)],
) -> Result<Vec<Table>, CatalogError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashSet<&SourceName> = names.iter().map(|(n, _)| n).collect();
    let dbs: Vec<String> = {
        let mut d: Vec<&str> = names.iter().map(|(n, _)| n.db.as_str()).collect();
        d.sort();
        d.dedup();
        d.iter().map(|d| sql_string(d)).collect()
    };
    let db_list = dbs.join(",");

    let col_sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, \
         CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, \
         CHARACTER_SET_NAME, EXTRA FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA IN ({db_list}) ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
    );
    let rows: Vec<Row> = conn.query(col_sql).await?;
    let mut columns: BTreeMap<SourceName, Vec<SourceColumn>> = BTreeMap::new();
    for row in rows {
        let name = SourceName::new(text(&row, 0), text(&row, 1));
        if !wanted.contains(&name) {
            continue;
        }
        let data_type = text(&row, 3).to_ascii_lowercase();
        let column_type = text(&row, 4);
        let extra = text(&row, 11).to_ascii_uppercase();
        let members = if data_type == "enum" || data_type == "set" {
            parse_members(&column_type)
        } else {
            Vec::new()
        };
        let col = SourceColumn {
            name: text(&row, 2),
            unsigned: column_type.to_ascii_lowercase().contains("unsigned"),
            is_json: data_type == "json",
            nullable: text(&row, 5) == "YES",
            char_max_length: opt_u64(&row, 6),
            numeric_precision: opt_u64(&row, 7).map(|v| v as u32),
            numeric_scale: opt_u64(&row, 8).map(|v| v as u32),
            datetime_precision: opt_u64(&row, 9).map(|v| v as u32),
            charset: opt_text(&row, 10),
            generated: extra.contains("GENERATED"),
            invisible: extra.contains("INVISIBLE"),
            auto_increment: extra.contains("AUTO_INCREMENT"),
            members,
            data_type,
            column_type,
        };
        columns.entry(name).or_default().push(col);
    }

    if flavor == Flavor::MariaDb {
        let sql = format!(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA IN ({db_list})"
        );
        let checks: Vec<(String, String, String)> = conn.query(sql).await?;
        for (db, table, clause) in checks {
            let Some(cols) = columns.get_mut(&SourceName::new(db, table)) else {
                continue;
            };
            if let Some(col_name) = json_valid_column(&clause) {
                if let Some(c) = cols.iter_mut().find(|c| c.name == col_name) {
                    c.is_json = true;
                }
            }
        }
    }

    let idx_sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN ({db_list}) \
         ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
    );
    let rows: Vec<Row> = conn.query(idx_sql).await?;
    let mut indexes: BTreeMap<SourceName, Vec<Index>> = BTreeMap::new();
    for row in rows {
        let name = SourceName::new(text(&row, 0), text(&row, 1));
        let Some(cols) = columns.get(&name) else {
            continue;
        };
        let index_name = text(&row, 2);
        let non_unique = opt_u64(&row, 3).unwrap_or(1) != 0;
        // Expression indexes (MySQL 8 functional keys) have no COLUMN_NAME: not recreated.
        let Some(column) = opt_text(&row, 4) else {
            continue;
        };
        let Some(pos) = cols.iter().position(|c| c.name == column) else {
            continue;
        };
        let prefix = opt_u64(&row, 5).map(|v| v as u32);
        let list = indexes.entry(name).or_default();
        match list.iter_mut().find(|i| i.name == index_name) {
            Some(i) => i.columns.push((pos, prefix)),
            None => list.push(Index {
                name: index_name,
                unique: !non_unique,
                columns: vec![(pos, prefix)],
            }),
        }
    }

    let mut tables = Vec::new();
    for (name, estimate) in names {
        let Some(cols) = columns.remove(name) else {
            continue; // dropped since listing
        };
        let idx = indexes.remove(name).unwrap_or_default();
        let schema = selector.target_schema(&name.db);
        tables.push(Table::plan(
            name.clone(),
            schema,
            cols,
            idx,
            *estimate,
            options,
        )?);
    }
    check_target_collisions(tables.iter()).map_err(CatalogError::Collision)?;
    Ok(tables)
}

fn text(row: &Row, i: usize) -> String {
    opt_text(row, i).unwrap_or_default()
}

fn opt_text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn opt_u64(row: &Row, i: usize) -> Option<u64> {
    match row.as_ref(i)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Int(v) => u64::try_from(*v).ok(),
        mysql_async::Value::UInt(v) => Some(*v),
        mysql_async::Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Quotes a string literal for MySQL.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Member names of `enum('a','b''c')` / `set(...)` as `COLUMN_TYPE` prints them.
pub fn parse_members(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type[start + 1..column_type.rfind(')').unwrap_or(column_type.len())];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        member.push(n);
                    }
                }
                c => member.push(c),
            }
        }
        out.push(member);
    }
    out
}

/// `json_valid(`col`)` → `col`.
fn json_valid_column(clause: &str) -> Option<String> {
    let inner = clause
        .trim()
        .strip_prefix("json_valid(")?
        .strip_suffix(')')?;
    let inner = inner.trim();
    let name = inner
        .strip_prefix('`')
        .and_then(|s| s.strip_suffix('`'))
        .unwrap_or(inner);
    Some(name.replace("``", "`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_members_parse_with_escapes() {
        assert_eq!(parse_members("enum('a','b','c')"), vec!["a", "b", "c"]);
        assert_eq!(parse_members("set('it''s','x,y')"), vec!["it's", "x,y"]);
        assert_eq!(parse_members("enum('')"), vec![""]);
    }

    #[test]
    fn mariadb_json_check_is_recognised() {
        assert_eq!(json_valid_column("json_valid(`doc`)"), Some("doc".into()));
        assert_eq!(json_valid_column("`a` > 0"), None);
    }

    #[test]
    fn string_literals_are_escaped() {
        assert_eq!(sql_string("a'b\\c"), "'a''b\\\\c'");
    }
}
