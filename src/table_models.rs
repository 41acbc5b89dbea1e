//! The table definitions the stream decodes rows with, stored on the target beside the
//! checkpoint (`<ferry_schema>.table_models`).
//!
//! The source's catalog only tells a table's definition *now*; rows in the binlog before a
//! schema change were written with the definition before it. So each definition ferry decodes
//! with is stored — at start for tables without one, and by every applied schema change in the
//! same PostgreSQL transaction as its target DDL and the checkpoint after it. A restart (after a
//! crash, or with schema changes in the backlog while ferry was stopped) decodes with the stored
//! definition until the binlog reaches the schema change, never with a later one.
//!
//! Guarantees: a stored definition is planned with the same rules as a catalog one (it stores
//! the catalog's description, not the mapped result), and is used only where it differs from
//! the catalog's current one.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::schema::{Check, ForeignKey, Index, SourceName, Table, TableError};
use crate::select::quote_ident;
use crate::transform::{SourceColumn, TypeOptions};

#[derive(Debug, Serialize, Deserialize)]
struct Model {
    columns: Vec<SourceColumn>,
    /// Every index, the row identity's (`PRIMARY`, or the unique key ferry keys by) first.
    indexes: Vec<Index>,
    comment: String,
    checks: Vec<Check>,
    foreign_keys: Vec<ForeignKey>,
}

/// The stored form of a table's definition.
pub fn model_of(t: &Table) -> serde_json::Value {
    serde_json::to_value(Model {
        columns: t.source_columns.clone(),
        indexes: t.all_indexes(),
        comment: t.comment.clone(),
        checks: t.checks.clone(),
        foreign_keys: t.foreign_keys.clone(),
    })
    .unwrap_or(serde_json::Value::Null)
}

/// Plans a table from its stored definition.
///
/// # Errors
/// An unreadable model (`None`), or one that no longer plans.
pub fn restore(
    model: &serde_json::Value,
    live: &Table,
    options: &TypeOptions,
) -> Option<Result<Table, TableError>> {
    let m: Model = serde_json::from_value(model.clone()).ok()?;
    Some(
        Table::plan(
            live.source.clone(),
            live.target_schema.clone(),
            m.columns,
            m.indexes,
            live.estimated_rows,
            options,
        )
        .map(|mut t| {
            t.comment = m.comment;
            t.checks = m.checks;
            t.foreign_keys = m.foreign_keys;
            t
        }),
    )
}

/// The stream's stored definitions, planned (for each pipeline run: the definitions as of the
/// checkpoint). `None` when none is stored (a stream from before definitions were stored).
///
/// # Errors
/// PostgreSQL errors, and a stored definition that no longer plans.
pub async fn stored_tables(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
    selector: &crate::select::TableSelector,
    options: &TypeOptions,
) -> Result<Option<Vec<Table>>, ModelError> {
    let stored = load(client, ferry_schema, stream).await?;
    if stored.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(stored.len());
    for (name, (model, _)) in stored {
        let Ok(m) = serde_json::from_value::<Model>(model) else {
            continue;
        };
        let mut t = Table::plan(
            name.clone(),
            selector.target_schema(&name.db),
            m.columns,
            m.indexes,
            0,
            options,
        )
        .map_err(ModelError::Plan)?;
        t.comment = m.comment;
        t.checks = m.checks;
        t.foreign_keys = m.foreign_keys;
        out.push(t);
    }
    Ok(Some(out))
}

/// Upsert of one table's definition: `$1` stream, `$2` db, `$3` table, `$4` model, `$5` position.
pub fn upsert_sql(ferry_schema: &str) -> String {
    format!(
        "INSERT INTO {}.table_models (stream, source_db, source_table, model, position) \
         VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (stream, source_db, source_table) DO UPDATE \
         SET model = EXCLUDED.model, position = EXCLUDED.position, updated_at = clock_timestamp()",
        quote_ident(ferry_schema)
    )
}

/// Removal of one table's definition: `$1` stream, `$2` db, `$3` table.
pub fn delete_sql(ferry_schema: &str) -> String {
    format!(
        "DELETE FROM {}.table_models WHERE stream = $1 AND source_db = $2 AND source_table = $3",
        quote_ident(ferry_schema)
    )
}

/// Stores `t`'s definition (in the caller's transaction, if one is open).
///
/// # Errors
/// PostgreSQL errors.
pub async fn store(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
    t: &Table,
    position: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &upsert_sql(ferry_schema),
            &[
                &stream,
                &t.source.db,
                &t.source.table,
                &model_of(t).to_string(),
                &position,
            ],
        )
        .await
        .map(|_| ())
}

/// Forgets `name`'s definition.
///
/// # Errors
/// PostgreSQL errors.
pub async fn forget(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
    name: &SourceName,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(&delete_sql(ferry_schema), &[&stream, &name.db, &name.table])
        .await
        .map(|_| ())
}

/// Every stored definition of the stream.
///
/// # Errors
/// PostgreSQL errors.
pub async fn load(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
) -> Result<HashMap<SourceName, (serde_json::Value, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT source_db, source_table, model::text, position FROM {}.table_models WHERE stream = $1",
                quote_ident(ferry_schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                SourceName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                (
                    serde_json::from_str(r.get::<_, &str>(2)).unwrap_or(serde_json::Value::Null),
                    r.get(3),
                ),
            )
        })
        .collect())
}

/// The definitions to decode with: the stored one where it differs from the catalog's (a
/// schema change not yet reached in the binlog), else the catalog's; definitions not stored yet
/// are stored now.
///
/// # Errors
/// PostgreSQL errors, and a stored definition that no longer plans.
pub async fn reconcile(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
    tables: Vec<Table>,
    options: &TypeOptions,
    position: &str,
) -> Result<Vec<Table>, ModelError> {
    let stored = load(client, ferry_schema, stream).await?;
    let mut out = Vec::with_capacity(tables.len());
    for live in tables {
        match stored.get(&live.source) {
            Some((model, at)) => match restore(model, &live, options) {
                Some(Ok(t)) if t.source_columns != live.source_columns => {
                    tracing::info!(table = %live.source, stored_at = %at, "the source's table definition differs from the one ferry decodes with (a schema change ahead in the binlog): decoding with the stored one until the binlog reaches the change");
                    out.push(t);
                }
                Some(Ok(_)) => out.push(live),
                Some(Err(e)) => return Err(ModelError::Plan(e)),
                None => {
                    store(client, ferry_schema, stream, &live, position).await?;
                    out.push(live);
                }
            },
            None => {
                store(client, ferry_schema, stream, &live, position).await?;
                out.push(live);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("table definitions ferry decodes with: {}", crate::sink::connect::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the table definition ferry stored for decoding no longer plans: {0}")]
    Plan(TableError),
}

impl ModelError {
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            ModelError::Postgres(e) => crate::error::ErrorClass::of_postgres(e),
            ModelError::Plan(_) => crate::error::ErrorClass::Definite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_definition_plans_back_to_the_same_table() {
        let cols = vec![
            SourceColumn {
                name: "id".into(),
                data_type: "int".into(),
                column_type: "int(11)".into(),
                ..Default::default()
            },
            SourceColumn {
                name: "label".into(),
                data_type: "varchar".into(),
                column_type: "varchar(20)".into(),
                nullable: true,
                char_max_length: Some(20),
                charset: Some("utf8mb4".into()),
                ..Default::default()
            },
        ];
        let indexes = vec![
            Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            },
            Index {
                name: "ix".into(),
                unique: false,
                columns: vec![(1, Some(4))],
            },
        ];
        let options = TypeOptions::default();
        let t = Table::plan(
            SourceName::new("shop", "items"),
            "shop".into(),
            cols,
            indexes,
            7,
            &options,
        )
        .expect("plan");
        let back = restore(&model_of(&t), &t, &options)
            .expect("readable")
            .expect("plans");
        assert_eq!(back, t);
    }
}
