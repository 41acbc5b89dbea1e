//! Zero dates in key columns: a row whose key holds `0000-00-00` can be carried only when
//! `types.zero_date` substitutes a value (`value:<date>`) or sets the row aside
//! (`dead_letter`); under `null` its key would be NULL, under `refuse` the copy stops at it.
//!
//! Guarantees: the check is an index range read (`column < '0001-01-01'`, or the first instant
//! for TIMESTAMP) on key columns that lead an index, so it costs a few index pages per table at
//! every start; a key column no index leads with is named as not checked (`ferry plan`'s scan
//! reads every row), never silently passed. Partial zero dates (`2024-00-10`) sort after
//! `0001-01-01` and are left to the scan too.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::Check;
use crate::schema::Table;
use crate::select::quote_mysql_ident;
use crate::transform::{TypeOptions, ValueKind, ValuePolicy};

const NAME: &str = "zero dates in keys";

/// The check over `tables` under `types`.
///
/// # Errors
/// A failed query.
pub async fn check(
    conn: &mut Conn,
    tables: &[Table],
    types: &TypeOptions,
) -> Result<Check, mysql_async::Error> {
    if matches!(
        types.zero_date,
        ValuePolicy::Value(_) | ValuePolicy::DeadLetter
    ) {
        return Ok(Check::pass(
            NAME,
            "not needed: types.zero_date substitutes or sets such rows aside",
        ));
    }
    let mut found = Vec::new();
    let mut unchecked = Vec::new();
    let mut checked = 0;
    for t in tables.iter().filter(|t| t.has_key()) {
        for &i in &t.key {
            let c = &t.columns[i];
            let first = match c.kind {
                ValueKind::Date | ValueKind::DateTime => "'0001-01-01'",
                ValueKind::Timestamp => "FROM_UNIXTIME(1)",
                _ => continue,
            };
            let leads = t.key.first() == Some(&i)
                || t.indexes
                    .iter()
                    .any(|ix| ix.columns.first().map(|c| c.0) == Some(i));
            if !leads {
                unchecked.push(format!("{}.{}", t.source, c.source_name));
                continue;
            }
            checked += 1;
            let col = quote_mysql_ident(&c.source_name);
            let sql = format!(
                "SELECT CAST({col} AS CHAR) FROM {}.{} WHERE {col} < {first} LIMIT 1",
                quote_mysql_ident(&t.source.db),
                quote_mysql_ident(&t.source.table),
            );
            let hit: Option<Option<String>> = conn.query_first(sql).await?;
            if let Some(value) = hit {
                found.push(format!(
                    "table {} column `{}` holds {}",
                    t.source,
                    c.source_name,
                    value.unwrap_or_else(|| "a zero date".into())
                ));
            }
        }
    }
    let unchecked_note = if unchecked.is_empty() {
        String::new()
    } else {
        format!(
            "; not checked (no index leads with the column; `ferry plan` scans them): {}",
            unchecked.join(", ")
        )
    };
    Ok(if found.is_empty() {
        Check::pass(
            NAME,
            format!("none in {checked} date key columns{unchecked_note}"),
        )
    } else {
        Check::fail(
            NAME,
            format!("{}{unchecked_note}", found.join("; ")),
            "a key cannot be NULL and PostgreSQL has no zero date: fix those rows on the source, or set types.zero_date = \"value:<date>\" (a date no real row uses) or \"dead_letter\"",
        )
    })
}
