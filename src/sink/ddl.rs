//! PostgreSQL DDL for replicated tables: creating them from the planned [`Table`], and checking
//! that an existing table can take ferry's writes.
//!
//! Guarantees: tables ferry creates have every column with its mapped type and nullability, and
//! the row identity as PRIMARY KEY. Unique keys become DEFERRABLE INITIALLY DEFERRED constraints
//! (checked at commit, when the target equals a consistent source state, so a batch that applies
//! rows in a different order than the source can never trip them); MySQL prefix indexes become
//! expression indexes on the prefix and are never unique (a prefix-unique key is stronger in
//! MySQL than any full-value constraint, so dropping uniqueness never rejects valid data). An
//! existing table is used as is, after checking it has every column and a unique index on the key.

use tokio_postgres::Client;

use super::connect::describe;
use crate::error::ErrorClass;
use crate::schema::{Index, Table};
use crate::select::quote_ident;
use crate::transform::{PgType, ValueKind};

/// `CREATE SCHEMA` + `CREATE TABLE` with the primary key (without secondary indexes).
pub fn create_table_sql(t: &Table) -> String {
    let mut sql = create_bare_table_sql(t);
    sql.pop(); // closing parenthesis
    sql.push_str(&format!(",\n    {}\n)", primary_key_clause(t)));
    sql
}

fn primary_key_clause(t: &Table) -> String {
    let key: Vec<&str> = t
        .key
        .iter()
        .map(|i| t.columns[*i].quoted.as_str())
        .collect();
    format!(
        "CONSTRAINT {} PRIMARY KEY ({})",
        quote_ident(&crate::select::fit_identifier(&format!(
            "{}_pkey",
            t.target_name
        ))),
        key.join(", ")
    )
}

/// `ALTER TABLE ... ADD PRIMARY KEY`, for tables created bare for a fast bulk copy.
pub fn add_primary_key_sql(t: &Table) -> String {
    format!(
        "ALTER TABLE {} ADD {}",
        t.target_quoted,
        primary_key_clause(t)
    )
}

/// `CREATE SCHEMA` + `CREATE TABLE` with columns only: the fastest target for a bulk copy.
pub fn create_bare_table_sql(t: &Table) -> String {
    let mut cols = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let not_null = if !c.nullable || t.is_key_column(i) {
            " NOT NULL"
        } else {
            ""
        };
        cols.push(format!("{} {}{}", c.quoted, c.pg_type.sql(), not_null));
    }
    format!(
        "CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE {} (\n    {}\n)",
        quote_ident(&t.target_schema),
        t.target_quoted,
        cols.join(",\n    ")
    )
}

/// Secondary index statements for a table ferry created.
pub fn index_sql(t: &Table) -> Vec<String> {
    t.indexes.iter().map(|i| one_index(t, i)).collect()
}

/// Whether an index becomes a unique constraint (prefix-unique keys do not, see module docs).
pub fn is_unique_constraint(index: &Index) -> bool {
    index.unique && index.columns.iter().all(|(_, p)| p.is_none())
}

/// Non-unique secondary indexes only (built right after a bulk copy).
pub fn plain_index_sql(t: &Table) -> Vec<String> {
    t.indexes
        .iter()
        .filter(|i| !is_unique_constraint(i))
        .map(|i| one_index(t, i))
        .collect()
}

/// Unique constraints only (built once the target is consistent again after a bulk copy).
pub fn unique_index_sql(t: &Table) -> Vec<String> {
    t.indexes
        .iter()
        .filter(|i| is_unique_constraint(i))
        .map(|i| one_index(t, i))
        .collect()
}

fn one_index(t: &Table, index: &Index) -> String {
    let name = quote_ident(&t.target_index_name(index));
    if is_unique_constraint(index) {
        let cols: Vec<&str> = index
            .columns
            .iter()
            .map(|(c, _)| t.columns[*c].quoted.as_str())
            .collect();
        return format!(
            "ALTER TABLE {} ADD CONSTRAINT {name} UNIQUE ({}) DEFERRABLE INITIALLY DEFERRED",
            t.target_quoted,
            cols.join(", ")
        );
    }
    // A MySQL SPATIAL index (one geometry column) becomes a GiST index under PostGIS.
    if let [(c, _)] = index.columns.as_slice() {
        if matches!(t.columns[*c].pg_type, PgType::Geometry { .. }) {
            return format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {} USING gist ({})",
                t.target_quoted, t.columns[*c].quoted
            );
        }
    }
    let exprs: Vec<String> = index
        .columns
        .iter()
        .map(|(c, prefix)| {
            let col = &t.columns[*c];
            match prefix {
                None => col.quoted.clone(),
                Some(n) if col.pg_type == PgType::Bytea => {
                    format!("(substring({} from 1 for {n}))", col.quoted)
                }
                Some(n) => format!("(left({}, {n}))", col.quoted),
            }
        })
        .collect();
    format!(
        "CREATE INDEX IF NOT EXISTS {name} ON {} ({})",
        t.target_quoted,
        exprs.join(", ")
    )
}

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error("creating PostgreSQL table {table}: {}", describe(source))]
    Create {
        table: String,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL table {table} exists but lacks column(s) {missing:?} that the source table has; add them (types per README) or drop the table so ferry recreates it")]
    MissingColumns { table: String, missing: Vec<String> },
    #[error("PostgreSQL table {table} exists with spatial column {column} of type {found}, but ferry maps spatial columns to {want} (types.spatial and whether PostGIS is installed in the target decide); set types.spatial to match the existing column (\"bytea\" or \"postgis\"), or convert the column, or drop the table so ferry recreates it")]
    SpatialMismatch {
        table: String,
        column: String,
        found: String,
        want: String,
    },
    #[error("PostgreSQL table {table} exists but has no primary key or unique index on exactly ({key}); add one (ferry upserts on it)")]
    NoUniqueKey { table: String, key: String },
    #[error("checking PostgreSQL table {table}: {}", describe(source))]
    Check {
        table: String,
        source: tokio_postgres::Error,
    },
}

impl DdlError {
    /// Transient when the connection failed, not the statement; an existing table that cannot
    /// take ferry's writes is definite.
    pub fn class(&self) -> ErrorClass {
        match self {
            DdlError::Create { source, .. } | DdlError::Check { source, .. } => {
                ErrorClass::of_postgres(source)
            }
            _ => ErrorClass::Definite,
        }
    }
}

/// Whether the table exists in the target.
pub async fn exists(client: &Client, t: &Table) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2)",
            &[&t.target_schema, &t.target_name],
        )
        .await?;
    Ok(row.get(0))
}

/// Creates the table (and its secondary indexes when `with_indexes`) if missing; otherwise checks
/// it. Returns true when ferry created it.
///
/// # Errors
/// DDL failures and existing tables that cannot take ferry's writes.
pub async fn ensure_table(
    client: &Client,
    t: &Table,
    with_indexes: bool,
) -> Result<bool, DdlError> {
    let name = format!("{}.{}", t.target_schema, t.target_name);
    let check_err = |e: tokio_postgres::Error| DdlError::Check {
        table: name.clone(),
        source: e,
    };
    if exists(client, t).await.map_err(check_err)? {
        check_existing(client, t).await?;
        return Ok(false);
    }
    let mut sql = create_table_sql(t);
    if with_indexes {
        for i in index_sql(t) {
            sql.push_str(";\n");
            sql.push_str(&i);
        }
    }
    client
        .batch_execute(&format!("BEGIN;\n{sql};\nCOMMIT"))
        .await
        .map_err(|e| DdlError::Create {
            table: name.clone(),
            source: e,
        })?;
    tracing::info!(table = %name, source = %t.source, "created target table");
    Ok(true)
}

/// Runs DDL statements for a table, naming it in errors.
pub async fn run_all(client: &Client, t: &Table, statements: &[String]) -> Result<(), DdlError> {
    for sql in statements {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| DdlError::Create {
                table: format!("{}.{}", t.target_schema, t.target_name),
                source: e,
            })?;
    }
    Ok(())
}

async fn check_existing(client: &Client, t: &Table) -> Result<(), DdlError> {
    let name = format!("{}.{}", t.target_schema, t.target_name);
    let check_err = |e: tokio_postgres::Error| DdlError::Check {
        table: name.clone(),
        source: e,
    };
    let rows = client
        .query(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&t.target_schema, &t.target_name],
        )
        .await
        .map_err(check_err)?;
    let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Spatial columns: bytea and geometry take different text forms, so a column of the other
    // kind would fail or, worse, store hex as bytes.
    for c in &t.columns {
        let want = match c.pg_type {
            PgType::Geometry { .. } => "geometry",
            PgType::Bytea if c.kind == ValueKind::Geometry => "bytea",
            _ => continue,
        };
        let found = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == c.target_name)
            .map(|r| r.get::<_, String>(1));
        if let Some(found) = found.filter(|f| f != want) {
            return Err(DdlError::SpatialMismatch {
                table: name,
                column: c.target_name.clone(),
                found,
                want: want.into(),
            });
        }
    }
    let missing: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !have.contains(&c.target_name))
        .map(|c| c.target_name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(DdlError::MissingColumns {
            table: name,
            missing,
        });
    }
    let key: Vec<String> = t
        .key
        .iter()
        .map(|i| t.columns[*i].target_name.clone())
        .collect();
    let rows = client
        .query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indexprs IS NULL \
               AND i.indpred IS NULL AND i.indimmediate \
             GROUP BY i.indexrelid",
            &[&t.target_schema, &t.target_name],
        )
        .await
        .map_err(check_err)?;
    let mut want = key.clone();
    want.sort();
    let found = rows.iter().any(|r| r.get::<_, Vec<String>>(0) == want);
    if !found {
        return Err(DdlError::NoUniqueKey {
            table: name,
            key: key.join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SourceName;
    use crate::transform::{SourceColumn, TypeOptions};

    fn table() -> Table {
        let col = |name: &str, dt: &str, ct: &str, nullable: bool| SourceColumn {
            name: name.into(),
            data_type: dt.into(),
            column_type: ct.into(),
            nullable,
            unsigned: ct.contains("unsigned"),
            charset: Some("utf8mb4".into()),
            char_max_length: Some(100),
            numeric_precision: Some(12),
            numeric_scale: Some(2),
            ..Default::default()
        };
        Table::plan(
            SourceName::new("shop", "Users"),
            "shop".into(),
            vec![
                col("id", "bigint", "bigint(20) unsigned", false),
                col("email", "varchar", "varchar(100)", false),
                col("bio", "text", "text", true),
                col("balance", "decimal", "decimal(12,2)", true),
            ],
            vec![
                Index {
                    name: "PRIMARY".into(),
                    unique: true,
                    columns: vec![(0, None)],
                },
                Index {
                    name: "email".into(),
                    unique: true,
                    columns: vec![(1, None)],
                },
                Index {
                    name: "bio".into(),
                    unique: false,
                    columns: vec![(2, Some(20))],
                },
            ],
            0,
            &TypeOptions::default(),
        )
        .expect("plans")
    }

    #[test]
    fn create_table_has_types_nullability_and_key() {
        let sql = create_table_sql(&table());
        assert!(sql.contains("CREATE TABLE \"shop\".\"users\""), "{sql}");
        assert!(sql.contains("\"id\" numeric(20,0) NOT NULL"), "{sql}");
        assert!(sql.contains("\"email\" varchar(100) NOT NULL"), "{sql}");
        assert!(sql.contains("\"bio\" text,"), "{sql}");
        assert!(sql.contains("\"balance\" numeric(12,2)"), "{sql}");
        assert!(sql.contains("PRIMARY KEY (\"id\")"), "{sql}");
    }

    #[test]
    fn bare_tables_have_no_key_and_full_tables_exactly_one() {
        let t = table();
        assert!(!create_bare_table_sql(&t).contains("PRIMARY KEY"));
        assert_eq!(create_table_sql(&t).matches("PRIMARY KEY").count(), 1);
        assert!(add_primary_key_sql(&t).ends_with("PRIMARY KEY (\"id\")"));
        assert_eq!(plain_index_sql(&t).len(), 1);
        assert_eq!(unique_index_sql(&t).len(), 1);
    }

    #[test]
    fn indexes_are_deferred_unique_or_prefix_expressions() {
        let sql = index_sql(&table());
        assert_eq!(sql.len(), 2);
        assert!(
            sql[0].contains("UNIQUE (\"email\") DEFERRABLE INITIALLY DEFERRED"),
            "{}",
            sql[0]
        );
        assert!(sql[0].contains("\"users_email\""));
        assert!(sql[1].contains("(left(\"bio\", 20))"), "{}", sql[1]);
    }
}
