//! Errors of the sink stage, each with its [`ErrorClass`].
//!
//! Guarantees: a PostgreSQL failure keeps the driver's error (SQLSTATE, detail) and is classed
//! once, by [`ErrorClass::of_postgres`]; an apply failure names the source table, the target
//! table and the last committed position, which is where a restart resumes.

use crate::checkpoint::CheckpointError;
use crate::error::ErrorClass;
use crate::schema::SourceName;

use super::connect::describe;
use super::ddl::DdlError;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("PostgreSQL ({context}): {}", describe(source))]
    Postgres {
        context: String,
        source: tokio_postgres::Error,
    },
    #[error("applying changes to PostgreSQL table {target} (source {table}) after checkpoint {position}: {message}. Fix the target table (or the source data) and restart ferry")]
    Apply {
        table: SourceName,
        target: String,
        position: String,
        message: String,
    },
    #[error("unique-key conflict in PostgreSQL table {target} after checkpoint {position}: {message}. PostgreSQL holds as equal two values the source keeps apart under its unique key (a comparison that differs, e.g. under types.case_insensitive, or a row another writer put on the target): change or remove the conflicting target row or constraint, then restart ferry")]
    UniqueConflict {
        target: String,
        /// The last committed position (the conflicting transaction comes after it).
        position: String,
        message: String,
        /// Source transactions in the failed group (to replay one by one).
        transactions: u64,
    },
    #[error("applying the schema change of source table {table} at binlog {position} to PostgreSQL failed: {}; statements: {statement}. Make the PostgreSQL table match the source by hand, then restart with `ferry run --skip-ddl {position}`", describe(source))]
    SchemaChange {
        table: String,
        position: crate::position::BinlogPosition,
        statement: String,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Ddl(#[from] DdlError),
    #[error(transparent)]
    Store(#[from] CheckpointError),
}

impl SinkError {
    /// A PostgreSQL failure outside a table's rows (checkpoint, COMMIT, dead letters).
    pub fn postgres(context: &str, e: tokio_postgres::Error) -> SinkError {
        SinkError::Postgres {
            context: context.to_string(),
            source: e,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Postgres { source, .. } | SinkError::SchemaChange { source, .. } => {
                ErrorClass::of_postgres(source)
            }
            SinkError::Ddl(e) => e.class(),
            SinkError::Store(e) => e.class(),
            // A unique conflict is first replayed one operation at a time by the supervisor;
            // only a conflict of that replay reaches the operator.
            SinkError::Apply { .. } | SinkError::UniqueConflict { .. } => ErrorClass::Definite,
        }
    }
}
