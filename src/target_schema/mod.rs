//! The target schema as the application needs it after the switch, beyond the replica's
//! columns and keys: identities and their sequences ([`sequences`]), foreign keys
//! ([`foreign_keys`]), and the reviewable DDL of `ferry schema` ([`plan`]). Defaults, CHECK
//! constraints, comments and ON UPDATE triggers are part of each table's DDL (`sink::ddl`,
//! translated by `transform::defaults`).
//!
//! Guarantees: every function here reads the replicated tables exactly as the daemon plans them
//! (same selection, same type options, the spatial mapping resolved against the target), so
//! what it reports or changes is what ferry created; each is idempotent and safe to run while
//! ferry streams.

pub mod evolve;
pub mod foreign_keys;
pub mod plan;
pub mod sequences;

use tokio_postgres::Client;

use crate::config::Config;
use crate::error::ErrorClass;
use crate::schema::Table;
use crate::sink::connect as pg;
use crate::source::catalog::{self, CatalogError};
use crate::source::connect::{self, ConnectError, Flavor};

pub use foreign_keys::{check_foreign_keys, validate_foreign_keys, ForeignKeyReport};
pub use sequences::{sync_sequences, SequenceAction, SequenceSync};

/// Why a target-schema operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("connecting to the target: {}", pg::describe(.0))]
    TargetConnect(tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{context}: {source}")]
    Source {
        context: String,
        source: mysql_async::Error,
    },
    #[error("table {table}: {context}: {}", pg::describe(source))]
    Target {
        table: String,
        context: String,
        source: tokio_postgres::Error,
    },
    #[error("deciding the spatial and case-insensitive mappings: {0}")]
    TargetTypes(String),
    #[error("table {table} column {column}: {message}")]
    Value {
        table: String,
        column: String,
        message: String,
    },
}

impl SchemaError {
    /// Lost connections are transient; a target that refuses the change (a sequence at its
    /// maximum, a value beyond bigint) refuses it again.
    pub fn class(&self) -> ErrorClass {
        match self {
            SchemaError::Connect(e) => e.class(),
            SchemaError::TargetConnect(e) | SchemaError::Target { source: e, .. } => {
                ErrorClass::of_postgres(e)
            }
            SchemaError::Catalog(e) => e.class(),
            SchemaError::Source { source, .. } => ErrorClass::of_mysql(source),
            SchemaError::TargetTypes(_) | SchemaError::Value { .. } => ErrorClass::Definite,
        }
    }

    pub(crate) fn target(
        table: &Table,
        context: &str,
    ) -> impl FnOnce(tokio_postgres::Error) -> SchemaError {
        let table = format!("{}.{}", table.target_schema, table.target_name);
        let context = context.to_string();
        move |source| SchemaError::Target {
            table,
            context,
            source,
        }
    }
}

/// Both sides, with the replicated tables planned as the daemon plans them.
pub struct Sides {
    pub source: mysql_async::Conn,
    pub flavor: Flavor,
    pub target: Client,
    pub tables: Vec<Table>,
}

/// Connects to both databases and loads the replicated tables.
///
/// # Errors
/// Connection and catalog failures.
pub async fn connect_sides(config: &Config) -> Result<Sides, SchemaError> {
    let mut source = connect::connect(&config.source).await?;
    let info = connect::server_info(&mut source)
        .await
        .map_err(|e| SchemaError::Source {
            context: "reading the server version".into(),
            source: e,
        })?;
    let target = pg::connect(&config.target)
        .await
        .map_err(SchemaError::TargetConnect)?;
    let types = crate::sink::case_fold::resolve_target_types(&target, &config.types)
        .await
        .map_err(SchemaError::TargetTypes)?;
    let tables = catalog::load_tables(&mut source, info.flavor, &config.tables, &types).await?;
    Ok(Sides {
        source,
        flavor: info.flavor,
        target,
        tables,
    })
}
