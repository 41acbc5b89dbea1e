//! `ferry schema --sync-sequences` (and the cutover): every AUTO_INCREMENT column's identity or
//! sequence is set past both the highest value in the PostgreSQL column and the source's
//! current AUTO_INCREMENT counter, so the first insert the application sends to PostgreSQL
//! gets an id MySQL never handed out — not even to an insert that was rolled back (MySQL burns
//! those ids; the counter remembers them, `max(column)` does not).
//!
//! Guarantees: a sequence only ever moves forward (never below a value it already passed);
//! running it again changes nothing when nothing was written since (idempotent); a column of a
//! table that ferry created before identities existed, with no default of its own, gets its
//! identity (or owned sequence) first. Safe while ferry streams: ferry's own inserts carry
//! explicit ids and never draw from the sequence, so the final run at cutover (after the drain)
//! is the one that counts.

use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio_postgres::Client;

use super::{connect_sides, SchemaError};
use crate::config::Config;
use crate::schema::{SourceName, Table};
use crate::select::quote_ident;
use crate::sink::ddl::{self, AutoIncrement};
use crate::source::connect::Flavor;

/// What happened to one column's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceAction {
    /// Moved forward to `next`.
    Advanced,
    /// Already at or past every value it must pass.
    Unchanged,
    /// The column had no identity: it got one (then was set like the others).
    Created,
    /// Left alone, with the reason.
    Skipped(String),
}

/// One AUTO_INCREMENT column's sequence after the sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequenceSync {
    /// The source table, `db.table`.
    pub table: String,
    /// The PostgreSQL table, `schema.table`.
    pub target: String,
    pub column: String,
    /// The sequence, as `pg_get_serial_sequence` names it (empty when skipped).
    pub sequence: String,
    /// The source's `AUTO_INCREMENT`: the next id MySQL would hand out.
    pub source_next: Option<u64>,
    /// `max(column)` on PostgreSQL.
    pub target_max: Option<i64>,
    /// The value the next insert without an id would have got before the sync.
    pub previous_next: Option<i64>,
    /// The value the next insert without an id gets now.
    pub next: Option<i64>,
    pub action: SequenceAction,
}

impl std::fmt::Display for SequenceSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let what = match &self.action {
            SequenceAction::Advanced => {
                format!("advanced {} -> {}", n(self.previous_next), n(self.next))
            }
            SequenceAction::Unchanged => format!("unchanged (next {})", n(self.next)),
            SequenceAction::Created => format!("identity created; next {}", n(self.next)),
            SequenceAction::Skipped(why) => format!("skipped: {why}"),
        };
        write!(
            f,
            "{}.{} ({}): {what} [source AUTO_INCREMENT {}, max on PostgreSQL {}]",
            self.target,
            self.column,
            self.table,
            self.source_next.map_or("-".to_string(), |v| v.to_string()),
            n(self.target_max)
        )
    }
}

/// Sets every AUTO_INCREMENT column's sequence of the replicated tables past `max(column)` and
/// the source's AUTO_INCREMENT (see the module doc). One entry per AUTO_INCREMENT column, in
/// table order.
///
/// # Errors
/// Connection and catalog failures; a sequence PostgreSQL refuses to move (the value is beyond
/// the column type's range: the source's counter is exhausted too).
pub async fn sync_sequences(config: &Config) -> Result<Vec<SequenceSync>, SchemaError> {
    let mut sides = connect_sides(config).await?;
    let report = sync_tables(
        &mut sides.source,
        sides.flavor,
        &sides.target,
        &sides.tables,
    )
    .await;
    let _ = sides.source.disconnect().await;
    report
}

/// [`sync_sequences`] on connections and tables the caller already holds (the cutover).
///
/// # Errors
/// As [`sync_sequences`].
pub async fn sync_tables(
    source: &mut mysql_async::Conn,
    flavor: Flavor,
    target: &Client,
    tables: &[Table],
) -> Result<Vec<SequenceSync>, SchemaError> {
    if flavor == Flavor::MySql {
        // MySQL 8 caches information_schema.TABLES for a day by default; the counter must be
        // current. Older servers lack the variable, which is fine: they do not cache.
        let _ = source
            .query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await;
    }
    let mut out = Vec::new();
    for t in tables {
        for i in 0..t.columns.len() {
            if t.source_columns[i].auto_increment {
                out.push(sync_column(source, target, t, i).await?);
            }
        }
    }
    Ok(out)
}

async fn sync_column(
    source: &mut mysql_async::Conn,
    target: &Client,
    t: &Table,
    i: usize,
) -> Result<SequenceSync, SchemaError> {
    let col = &t.columns[i];
    let mut entry = SequenceSync {
        table: t.source.to_string(),
        target: format!("{}.{}", t.target_schema, t.target_name),
        column: col.target_name.clone(),
        sequence: String::new(),
        source_next: None,
        target_max: None,
        previous_next: None,
        next: None,
        action: SequenceAction::Unchanged,
    };
    let exists: bool = target
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.target_quoted])
        .await
        .map_err(SchemaError::target(t, "looking up the table"))?
        .get(0);
    if !exists {
        entry.action = SequenceAction::Skipped("the PostgreSQL table does not exist yet".into());
        return Ok(entry);
    }
    let mut sequence = serial_sequence(target, t, i).await?;
    if sequence.is_none() {
        let has_default: bool = target
            .query_one(
                "SELECT atthasdef FROM pg_catalog.pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attname = $2",
                &[&t.target_quoted, &col.target_name],
            )
            .await
            .map_err(SchemaError::target(t, "reading the column"))?
            .get(0);
        let Some(kind) = ddl::auto_increment(t, i).filter(|_| !has_default) else {
            let why = if has_default {
                "the column has a default of its own, not a sequence (left as it is)".to_string()
            } else {
                format!(
                    "PostgreSQL type {} cannot carry an identity",
                    col.pg_type.sql()
                )
            };
            entry.action = SequenceAction::Skipped(why);
            return Ok(entry);
        };
        target
            .batch_execute(&add_generated_sql(t, i, &kind))
            .await
            .map_err(SchemaError::target(t, "adding the column's identity"))?;
        tracing::info!(table = %entry.target, column = %col.target_name, "added the identity of an AUTO_INCREMENT column");
        entry.action = SequenceAction::Created;
        sequence = serial_sequence(target, t, i).await?;
    }
    let Some(sequence) = sequence else {
        entry.action = SequenceAction::Skipped("no sequence after adding the identity".into());
        return Ok(entry);
    };
    entry.sequence = sequence.clone();
    entry.source_next = source_counter(source, &t.source).await?;
    let max: Option<String> = target
        .query_one(
            &format!(
                "SELECT max({})::numeric::text FROM {}",
                col.quoted, t.target_quoted
            ),
            &[],
        )
        .await
        .map_err(SchemaError::target(t, "reading the column's maximum"))?
        .get(0);
    let out_of_range = |what: &str, v: &str| {
        SchemaError::Value {
        table: entry.target.clone(),
        column: col.target_name.clone(),
        message: format!(
            "{what} {v} is beyond what a PostgreSQL sequence holds (bigint); the column's ids cannot continue from a sequence"
        ),
    }
    };
    entry.target_max = match max {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .map_err(|_| out_of_range("the maximum", &v))?,
        ),
    };
    let row = target
        .query_one(
            &format!(
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {sequence}"
            ),
            &[],
        )
        .await
        .map_err(SchemaError::target(t, "reading the sequence"))?;
    let current: i64 = row.get(0);
    entry.previous_next = Some(current);
    let source_next = match entry.source_next {
        None => None,
        Some(v) => {
            Some(i64::try_from(v).map_err(|_| out_of_range("AUTO_INCREMENT", &v.to_string()))?)
        }
    };
    let want = [
        Some(current),
        entry.target_max.map(|m| m.saturating_add(1)),
        source_next,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(current);
    if want > current {
        target
            .query_one(
                "SELECT pg_catalog.setval($1::text::regclass, $2, false)",
                &[&sequence, &want],
            )
            .await
            .map_err(SchemaError::target(t, "setting the sequence"))?;
        if entry.action == SequenceAction::Unchanged {
            entry.action = SequenceAction::Advanced;
        }
    }
    entry.next = Some(want);
    Ok(entry)
}

/// The identity or owned sequence of column `i`, schema-qualified as PostgreSQL prints it.
async fn serial_sequence(
    target: &Client,
    t: &Table,
    i: usize,
) -> Result<Option<String>, SchemaError> {
    Ok(target
        .query_one(
            "SELECT pg_catalog.pg_get_serial_sequence($1, $2)",
            &[&t.target_quoted, &t.columns[i].target_name],
        )
        .await
        .map_err(SchemaError::target(t, "looking up the column's sequence"))?
        .get(0))
}

/// The statements giving an existing column the identity (or owned sequence) ferry creates
/// tables with.
fn add_generated_sql(t: &Table, i: usize, kind: &AutoIncrement) -> String {
    let col = &t.columns[i];
    match kind {
        AutoIncrement::Identity => format!(
            "ALTER TABLE {} ALTER COLUMN {} ADD GENERATED BY DEFAULT AS IDENTITY",
            t.target_quoted, col.quoted
        ),
        AutoIncrement::Sequence(name) => {
            let seq = format!("{}.{}", quote_ident(&t.target_schema), quote_ident(name));
            format!(
                "BEGIN; CREATE SEQUENCE {seq} AS bigint OWNED BY {table}.{col}; \
                 ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT nextval({lit}); COMMIT",
                table = t.target_quoted,
                col = col.quoted,
                lit = ddl::sql_literal(&seq),
            )
        }
    }
}

/// The source's `AUTO_INCREMENT` for the table (`None`: the table has none, or it is gone).
async fn source_counter(
    source: &mut mysql_async::Conn,
    name: &SourceName,
) -> Result<Option<u64>, SchemaError> {
    let v: Option<Option<u64>> = source
        .exec_first(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&name.db, &name.table),
        )
        .await
        .map_err(|e| SchemaError::Source {
            context: format!("reading the AUTO_INCREMENT of {name}"),
            source: e,
        })?;
    Ok(v.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Index;
    use crate::transform::{SourceColumn, TypeOptions};

    fn table(data_type: &str, column_type: &str) -> Table {
        Table::plan(
            SourceName::new("shop", "Orders"),
            "shop".into(),
            vec![SourceColumn {
                name: "id".into(),
                data_type: data_type.into(),
                column_type: column_type.into(),
                unsigned: column_type.contains("unsigned"),
                auto_increment: true,
                ..Default::default()
            }],
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
            0,
            &TypeOptions::default(),
        )
        .expect("plans")
    }

    #[test]
    fn integer_columns_get_an_identity_and_bigint_unsigned_an_owned_sequence() {
        let t = table("int", "int(11)");
        assert_eq!(
            add_generated_sql(&t, 0, &AutoIncrement::Identity),
            "ALTER TABLE \"shop\".\"orders\" ALTER COLUMN \"id\" ADD GENERATED BY DEFAULT AS IDENTITY"
        );
        let t = table("bigint", "bigint(20) unsigned");
        let kind = ddl::auto_increment(&t, 0).expect("has one");
        assert_eq!(kind, AutoIncrement::Sequence("orders_id_seq".into()));
        let sql = add_generated_sql(&t, 0, &kind);
        assert!(sql.contains("CREATE SEQUENCE \"shop\".\"orders_id_seq\" AS bigint OWNED BY \"shop\".\"orders\".\"id\""), "{sql}");
        assert!(
            sql.contains("SET DEFAULT nextval('\"shop\".\"orders_id_seq\"')"),
            "{sql}"
        );
    }
}
