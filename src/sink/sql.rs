//! The statements ferry writes rows with: set-based INSERT, upsert and DELETE over `unnest()`
//! arrays of text parameters, one array per column, each cast to the column's PostgreSQL type.
//!
//! Pure (no I/O): the executor prepares them once per table, the repair path reuses them, so a
//! row is written by the same SQL however it reaches the target.

use crate::schema::Table;

/// The SQL ferry writes a table with (public for tests and the backfill).
pub fn upsert_sql(t: &Table) -> String {
    let key: Vec<&str> = t
        .key
        .iter()
        .map(|i| t.columns[*i].quoted.as_str())
        .collect();
    let updates: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| !t.is_key_column(*i))
        .map(|(_, c)| format!("{0} = EXCLUDED.{0}", c.quoted))
        .collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "{} ON CONFLICT ({}) {}",
        insert_sql(t),
        key.join(", "),
        conflict
    )
}

/// A plain INSERT of every column from `unnest` arrays: fails on an existing key (the sink
/// then applies the same rows with [`upsert_sql`]).
pub fn insert_sql(t: &Table) -> String {
    let n = t.columns.len();
    let cols: Vec<&str> = t.columns.iter().map(|c| c.quoted.as_str()).collect();
    let params: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
    let casts: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("u.c{}::{}", i + 1, c.pg_type.sql()))
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS u({})",
        t.target_quoted,
        cols.join(", "),
        casts.join(", "),
        params.join(", "),
        aliases.join(", "),
    )
}

pub fn delete_sql(t: &Table) -> String {
    let params: Vec<String> = (1..=t.key.len()).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (1..=t.key.len()).map(|i| format!("k{i}")).collect();
    let conds: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(j, i)| {
            let c = &t.columns[*i];
            format!("t.{} = k.k{}::{}", c.quoted, j + 1, c.pg_type.sql())
        })
        .collect();
    format!(
        "DELETE FROM {} AS t USING unnest({}) AS k({}) WHERE {}",
        t.target_quoted,
        params.join(", "),
        aliases.join(", "),
        conds.join(" AND ")
    )
}
