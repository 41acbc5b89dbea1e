//! The statements ferry writes rows with: set-based INSERT, upsert and DELETE over `unnest()`
//! arrays of text parameters, one array per column, each cast to the column's PostgreSQL type.
//!
//! Pure (no I/O): the executor prepares them once per table, the repair path reuses them, so a
//! row is written by the same SQL however it reaches the target.

use crate::schema::Table;

/// The SQL ferry writes a table with (public for tests and the backfill). A table identified
/// by its whole row has nothing to conflict on: its rows are only ever inserted (an update is a
/// delete of the before image and an insert of the after image), so this is [`insert_sql`].
pub fn upsert_sql(t: &Table) -> String {
    if !t.has_key() {
        return insert_sql(t);
    }
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
    let cols: Vec<&str> = t.columns.iter().map(|c| c.quoted.as_str()).collect();
    let (params, aliases) = unnest_args(t.columns.len(), "c");
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

/// Deletes the rows with the given keys. For a table identified by its whole row, each key
/// (a full before image) deletes exactly one equal row, found by `ctid` — the keys of one
/// statement are distinct (see [`crate::sink::batch`]), so duplicates of a row stay as many as
/// the source left.
pub fn delete_sql(t: &Table) -> String {
    if !t.has_key() {
        return delete_one_each_sql(t);
    }
    let (params, aliases) = unnest_args(t.key.len(), "k");
    let conds: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(j, i)| key_eq("t", &t.columns[*i], j))
        .collect();
    format!(
        "DELETE FROM {} AS t USING unnest({}) AS k({}) WHERE {}",
        t.target_quoted,
        params.join(", "),
        aliases.join(", "),
        conds.join(" AND ")
    )
}

/// `<alias>.<column> = k.k<j+1>::<type>`: key part `j` of an `unnest(...) AS k(k1, …)` row.
fn key_eq(alias: &str, c: &crate::transform::ColumnRule, j: usize) -> String {
    format!("{alias}.{} = k.k{}::{}", c.quoted, j + 1, c.pg_type.sql())
}

/// `$1::text[], …` and `p1, …` for `unnest(params) AS x(aliases)` over `n` columns.
fn unnest_args(n: usize, prefix: &str) -> (Vec<String>, Vec<String>) {
    (
        (1..=n).map(|i| format!("${i}::text[]")).collect(),
        (1..=n).map(|i| format!("{prefix}{i}")).collect(),
    )
}

/// [`delete_sql`] for a table identified by its whole row: NULLs match NULLs, NOT NULL columns
/// compare with plain `=` so an index on any of them serves the lookup.
fn delete_one_each_sql(t: &Table) -> String {
    let (params, aliases) = unnest_args(t.key.len(), "k");
    let conds: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(j, i)| {
            let c = &t.columns[*i];
            let eq = key_eq("x", c, j);
            if c.nullable {
                format!(
                    "({eq} OR (x.{} IS NULL AND k.k{} IS NULL))",
                    c.quoted,
                    j + 1
                )
            } else {
                eq
            }
        })
        .collect();
    let conds = if conds.is_empty() {
        "true".to_string()
    } else {
        conds.join(" AND ")
    };
    format!(
        "DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT (SELECT x.ctid FROM {table} AS x \
         WHERE {conds} LIMIT 1) FROM unnest({}) AS k({})))",
        params.join(", "),
        aliases.join(", "),
        table = t.target_quoted,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SourceName;
    use crate::transform::{SourceColumn, TypeOptions};

    fn keyless() -> Table {
        let col = |name: &str, nullable: bool| SourceColumn {
            name: name.into(),
            data_type: "int".into(),
            column_type: "int".into(),
            nullable,
            ..Default::default()
        };
        Table::plan(
            SourceName::new("shop", "logs"),
            "shop".into(),
            vec![col("a", false), col("b", true)],
            Vec::new(),
            0,
            &TypeOptions::default(),
        )
        .expect("planned")
    }

    #[test]
    fn a_table_without_a_key_deletes_one_equal_row_per_image_and_never_upserts() {
        let t = keyless();
        let delete = delete_sql(&t);
        assert!(delete.contains("ctid = ANY"), "{delete}");
        assert!(
            delete.contains("LIMIT 1"),
            "one row per before image: {delete}"
        );
        assert!(
            delete.contains("x.\"a\" = k.k1::integer AND"),
            "NOT NULL columns compare with = (indexable): {delete}"
        );
        assert!(
            delete.contains("(x.\"b\" = k.k2::integer OR (x.\"b\" IS NULL AND k.k2 IS NULL))"),
            "NULL matches NULL: {delete}"
        );
        assert_eq!(upsert_sql(&t), insert_sql(&t), "nothing to conflict on");
    }
}
