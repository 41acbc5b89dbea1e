//! `ferry verify --repair`: re-copies the differing rows from the source and records every repair
//! in `<ferry_schema>.verify_repairs`.
//!
//! Guarantees:
//! - one PostgreSQL transaction per table: the rows, their deletes and the audit records commit
//!   together or not at all;
//! - the target table is locked (`SHARE ROW EXCLUSIVE`: readers continue, ferry's writes to that
//!   table wait) before the source rows are read, so the repair writes the source's current state
//!   and any later source change reaches the table after the repair, through the stream — a
//!   repair can never overwrite a newer change with an older one;
//! - a row is written exactly as ferry's apply path writes it (the same conversion, policies and
//!   upsert statement); a target row whose key the source no longer has is deleted;
//! - a source row whose values the `[types]` policies do not let ferry write is not touched and
//!   is reported as not repaired.

use serde::Serialize;
use tokio_postgres::Client;

use super::compare::key_json;
use super::query::{Key, SourceRow, TableSql, TargetRow};
use super::VerifyError;
use crate::config::Config;
use crate::select::quote_ident;
use crate::sink::batch::into_columns;
use crate::sink::sql::{delete_sql, upsert_sql};

/// Name of the audit table inside the ferry schema.
pub const AUDIT_TABLE: &str = "verify_repairs";

/// One repaired (or unrepairable) row.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    pub table: String,
    pub key: serde_json::Map<String, serde_json::Value>,
    /// `insert`, `update`, `delete`, or `none` (the row matches now).
    pub action: &'static str,
    /// Why the row was not repaired.
    pub error: Option<String>,
}

fn row_json(q: &TableSql, values: &[super::query::Value]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = q
        .table
        .columns
        .iter()
        .zip(values)
        .map(|(rule, v)| {
            (
                rule.source_name.clone(),
                v.shown
                    .clone()
                    .map_or(serde_json::Value::Null, serde_json::Value::String),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Repairs `keys` of one table (see the module doc); `client` must be a writable session.
///
/// # Errors
/// Database errors (the table's transaction is then rolled back).
pub async fn repair_table(
    config: &Config,
    client: &mut Client,
    my: &mut mysql_async::Conn,
    q: &TableSql,
    keys: &[Key],
) -> Result<Vec<Repair>, VerifyError> {
    let t = &q.table;
    let pg_err = |what: &'static str| {
        move |e: tokio_postgres::Error| VerifyError::target(&format!("repair: {what}"), &e)
    };
    crate::ferry_tables::ensure(client, &config.target.ferry_schema)
        .await
        .map_err(|e| VerifyError::Target {
            context: "repair: ferry's tables".into(),
            message: e.to_string(),
        })?;
    let tx = client
        .transaction()
        .await
        .map_err(pg_err("starting a transaction"))?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '30s'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        t.target_quoted
    ))
    .await
    .map_err(pg_err("locking the table"))?;
    let before = q.pg_rows_by_key(&tx, keys).await?;
    let after = q.my_rows_by_key(my, keys).await?;

    let mut upserts: Vec<Vec<Option<String>>> = Vec::new();
    let mut deletes: Vec<Key> = Vec::new();
    let mut out = Vec::new();
    let mut audit: Vec<(Key, &'static str, Option<&TargetRow>, Option<&SourceRow>)> = Vec::new();
    for key in keys {
        let (b, a) = (before.get(key), after.get(key));
        let (action, error) = match (a, b) {
            (Some(src), _) if super::compare::same_row(Some(src), b) => ("none", None),
            (Some(src), b) => match &src.write {
                Ok(cells) => {
                    upserts.push(cells.clone());
                    (if b.is_some() { "update" } else { "insert" }, None)
                }
                Err(why) => (
                    "none",
                    Some(format!(
                        "the source row cannot be written by ferry's type policies ({why})"
                    )),
                ),
            },
            (None, Some(_)) => {
                deletes.push(key.clone());
                ("delete", None)
            }
            (None, None) => ("none", None),
        };
        if action != "none" {
            audit.push((key.clone(), action, b, a));
        }
        out.push(Repair {
            table: t.source.to_string(),
            key: key_json(t, key),
            action,
            error,
        });
    }
    if !deletes.is_empty() {
        let cols: Vec<Vec<Option<String>>> = into_columns(deletes, t.key.len());
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tx.execute(&delete_sql(t), &refs)
            .await
            .map_err(pg_err("deleting rows the source does not have"))?;
    }
    if !upserts.is_empty() {
        let cols = into_columns(upserts, t.columns.len());
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = cols
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        tx.execute(&upsert_sql(t), &refs)
            .await
            .map_err(pg_err("writing the source rows"))?;
    }
    let insert = format!(
        "INSERT INTO {}.{AUDIT_TABLE} (stream, source_table, target_table, key, action, before, after) \
         VALUES ($1, $2, $3, $4::text::jsonb, $5, $6::text::jsonb, $7::text::jsonb)",
        quote_ident(&config.target.ferry_schema)
    );
    for (key, action, b, a) in audit {
        let key = serde_json::Value::Object(key_json(t, &key)).to_string();
        let b = b.map(|r| row_json(q, r).to_string());
        let a = a.map(|r| row_json(q, &r.values).to_string());
        tx.execute(
            &insert,
            &[
                &config.stream,
                &t.source.to_string(),
                &t.target_quoted,
                &key,
                &action,
                &b,
                &a,
            ],
        )
        .await
        .map_err(pg_err("recording the repair"))?;
    }
    tx.commit().await.map_err(pg_err("committing"))?;
    Ok(out)
}
