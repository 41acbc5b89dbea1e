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
use crate::schema::{
    check_target_collisions, Check, ForeignKey, Index, SourceName, Table, TableError,
};
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
    let selected: Vec<(SourceName, u64)> = rows
        .into_iter()
        .filter(|(db, t, _)| selector.matches(db, t))
        .map(|(db, t, n)| (SourceName::new(db, t), n))
        .collect();
    // An online schema change tool's table beside a selected table is not replicated (its
    // changes reach the table at the tool's cut-over).
    let names: HashSet<&SourceName> = selected.iter().map(|(n, _)| n).collect();
    let tools: HashSet<SourceName> = selected
        .iter()
        .filter(|(n, _)| {
            selector
                .tool_tables(&n.db, &n.table)
                .iter()
                .any(|(base, _)| names.contains(base))
        })
        .map(|(n, _)| n.clone())
        .collect();
    for t in &tools {
        tracing::info!(table = %t, "not replicated: an online schema change tool's table (tables.shadow_tables / tables.helper_tables)");
    }
    Ok(selected
        .into_iter()
        .filter(|(n, _)| !tools.contains(n))
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
         CHARACTER_SET_NAME, EXTRA, COLUMN_DEFAULT, COLUMN_COMMENT, COLLATION_NAME \
         FROM information_schema.COLUMNS \
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
            collation: opt_text(&row, 14),
            generated: extra.contains("GENERATED"),
            invisible: extra.contains("INVISIBLE"),
            auto_increment: extra.contains("AUTO_INCREMENT"),
            default: normalize_default(flavor, opt_text(&row, 12), &extra),
            on_update_now: extra.contains("ON UPDATE"),
            comment: text(&row, 13),
            members,
            data_type,
            column_type,
        };
        columns.entry(name).or_default().push(col);
    }

    let mut checks: BTreeMap<SourceName, Vec<Check>> = BTreeMap::new();
    let check_sql = if flavor == Flavor::MariaDb {
        format!(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA IN ({db_list})"
        )
    } else {
        // MySQL 8.0.16+; NOT ENFORCED checks are not constraints on the data.
        format!(
            "SELECT c.CONSTRAINT_SCHEMA, t.TABLE_NAME, c.CONSTRAINT_NAME, c.CHECK_CLAUSE \
             FROM information_schema.CHECK_CONSTRAINTS c JOIN information_schema.TABLE_CONSTRAINTS t \
             ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME \
             AND t.CONSTRAINT_TYPE = 'CHECK' WHERE c.CONSTRAINT_SCHEMA IN ({db_list}) AND t.ENFORCED = 'YES'"
        )
    };
    let rows: Vec<(String, String, String, String)> = match flavor {
        Flavor::MariaDb => conn.query(check_sql).await?,
        // Servers before CHECK constraints (MySQL 5.7) have no such table: no checks.
        Flavor::MySql => conn.query(check_sql).await.unwrap_or_default(),
    };
    for (db, table, name, clause) in rows {
        let key = SourceName::new(db, table);
        let Some(cols) = columns.get_mut(&key) else {
            continue;
        };
        if flavor == Flavor::MariaDb {
            if let Some(col_name) = json_valid_column(&clause) {
                if let Some(c) = cols.iter_mut().find(|c| c.name == col_name) {
                    c.is_json = true;
                }
            }
        }
        checks.entry(key).or_default().push(Check { name, clause });
    }
    let fk_sql = format!(
        "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, \
         k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, \
         r.UPDATE_RULE, r.DELETE_RULE \
         FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
         ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
         AND r.TABLE_NAME = k.TABLE_NAME \
         WHERE k.TABLE_SCHEMA IN ({db_list}) AND k.REFERENCED_TABLE_NAME IS NOT NULL \
         ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
    );
    let mut foreign_keys: BTreeMap<SourceName, Vec<ForeignKey>> = BTreeMap::new();
    let rows: Vec<Row> = conn.query(fk_sql).await?;
    for row in rows {
        let child = SourceName::new(text(&row, 0), text(&row, 1));
        if !columns.contains_key(&child) {
            continue;
        }
        let name = text(&row, 2);
        let list = foreign_keys.entry(child).or_default();
        let fk = match list.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut list[i],
            None => {
                list.push(ForeignKey {
                    name,
                    columns: Vec::new(),
                    parent: SourceName::new(text(&row, 4), text(&row, 5)),
                    parent_columns: Vec::new(),
                    on_update: text(&row, 7),
                    on_delete: text(&row, 8),
                });
                let last = list.len() - 1;
                &mut list[last]
            }
        };
        fk.columns.push(text(&row, 3));
        fk.parent_columns.push(text(&row, 6));
    }
    let comment_sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA IN ({db_list}) AND TABLE_COMMENT <> ''"
    );
    let mut comments: BTreeMap<SourceName, String> = conn
        .query::<(String, String, String), _>(comment_sql)
        .await?
        .into_iter()
        .map(|(db, t, c)| (SourceName::new(db, t), c))
        .collect();

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
        let mut table = Table::plan(name.clone(), schema, cols, idx, *estimate, options)?;
        table.comment = comments.remove(name).unwrap_or_default();
        table.checks = checks.remove(name).unwrap_or_default();
        table.foreign_keys = foreign_keys.remove(name).unwrap_or_default();
        tables.push(table);
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

/// A column default in MariaDB's spelling (what `transform::defaults` parses): MariaDB prints
/// defaults as SQL (`'text'`, `0`, `current_timestamp()`, `NULL`); MySQL prints the bare value,
/// with `DEFAULT_GENERATED` in EXTRA for expressions (and, before 8.0, nothing to tell
/// `CURRENT_TIMESTAMP` from the string).
fn normalize_default(flavor: Flavor, raw: Option<String>, extra_upper: &str) -> Option<String> {
    let raw = raw?;
    if flavor == Flavor::MariaDb {
        return Some(raw);
    }
    let upper = raw.to_ascii_uppercase();
    if extra_upper.contains("DEFAULT_GENERATED") || upper.starts_with("CURRENT_TIMESTAMP") {
        return Some(raw);
    }
    Some(format!(
        "'{}'",
        raw.replace('\\', "\\\\").replace('\'', "''")
    ))
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
