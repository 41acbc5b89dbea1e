//! The reverse stream (PostgreSQL → MySQL): what makes a rollback after the cutover lose no
//! write.
//!
//! ```text
//!  cutover (before the switch) ──► arm: publication + logical slot (pgoutput)
//!  switched: slot ──► transport (peek) ──► pgoutput (decode, pure) ──► inverse types (pure) ──► MySQL (txn + LSN checkpoint) ──► advance slot
//! ```
//!
//! - [`arm`]: publication and slot, created while PostgreSQL is still quiet; replica identity.
//! - [`stream`]: the stage `ferry run` runs while switched (exactly once, resumable).
//! - [`transport`]: the [`transport::ChangeFeed`] trait and its SQL-polling implementation.
//! - [`pgoutput`]: the pure decoder of pgoutput messages.
//! - [`assemble`]: messages → whole transactions of MySQL row operations (pure).
//! - [`inverse`]: the inverse type mapping, PostgreSQL text → MySQL value (pure).
//! - [`apply`]: the MySQL transaction with the LSN checkpoint.
//! - [`progress`]: rows applied, lag, the slot's retained WAL.
//! - [`rollback`]: `ferry rollback` (back to MySQL, nothing lost, resumable) and `ferry complete`.
//! - [`roles`]: the application's PostgreSQL roles frozen by a rollback, and put back by its abort.
//! - [`lsn`]: WAL positions.
//!
//! Guarantees: the slot starts at the switch point (see [`arm`]); names are deterministic per
//! stream, so every command and the daemon find the same slot and publication.

pub mod apply;
pub mod arm;
pub mod assemble;
pub mod inverse;
pub mod lsn;
pub mod pgoutput;
pub mod progress;
pub mod roles;
pub mod rollback;
pub mod stream;
pub mod touched_keys;
pub mod transport;

pub use arm::{arm, Armed};
pub use lsn::Lsn;

use sha2::Digest;

use crate::error::ErrorClass;
use crate::sink::connect as pg;

/// The replication slot and publication names of a stream in a target database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `ferry_reverse_<stream>_<hash>`: slots are cluster-wide, so the hash of the database and
    /// stream names keeps two streams (or one stream name in two databases) apart.
    pub slot: String,
    /// `ferry_reverse_<stream>` (publications belong to one database).
    pub publication: String,
}

/// The stream's names, folded to what slot names allow (lower-case letters, digits, `_`; at
/// most 63 bytes).
pub fn names(database: &str, stream: &str) -> Names {
    let folded: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let mut hasher = sha2::Sha256::new();
    hasher.update(database.as_bytes());
    hasher.update([0u8]);
    hasher.update(stream.as_bytes());
    let digest = hasher.finalize();
    let publication = if folded == stream {
        format!("ferry_reverse_{folded}")
    } else {
        format!("ferry_reverse_{folded}_{}", hex::encode(&digest[4..8]))
    };
    Names {
        slot: format!("ferry_reverse_{folded}_{}", hex::encode(&digest[..4])),
        publication,
    }
}

/// Why the reverse stream (or arming it) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReverseError {
    #[error("reverse stream ({context}): {}", pg::describe(source))]
    Target {
        context: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("reverse stream ({context}): {source}")]
    Source {
        context: &'static str,
        source: mysql_async::Error,
    },
    #[error("reverse stream: {0}")]
    Connect(#[from] crate::source::connect::ConnectError),
    #[error("reverse stream: {0}")]
    Catalog(#[from] crate::source::catalog::CatalogError),
    #[error("reverse stream: the migrated table {source_table} has no table {table} in PostgreSQL; create it (ferry run creates it at the backfill) or exclude the table, then cut over again")]
    MissingTable { table: String, source_table: String },
    #[error("reverse stream: {0}")]
    Assemble(#[from] assemble::AssembleError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("reverse stream: undecodable message at PostgreSQL LSN {lsn}: {source}")]
    Decode {
        lsn: Lsn,
        source: pgoutput::DecodeError,
    },
}

impl ReverseError {
    pub(crate) fn target(
        context: &'static str,
    ) -> impl FnOnce(tokio_postgres::Error) -> ReverseError {
        move |source| ReverseError::Target { context, source }
    }

    pub(crate) fn source(context: &'static str) -> impl FnOnce(mysql_async::Error) -> ReverseError {
        move |source| ReverseError::Source { context, source }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            // 55006: the slot is still held by an earlier session (after a crash, until
            // PostgreSQL notices it is gone) or by a command's check: it passes.
            ReverseError::Target { source, .. }
                if source.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                ErrorClass::Transient
            }
            ReverseError::Target { source, .. } => ErrorClass::of_postgres(source),
            ReverseError::Source { source, .. } => ErrorClass::of_mysql(source),
            ReverseError::Connect(e) => e.class(),
            ReverseError::Catalog(e) => e.class(),
            ReverseError::MissingTable { .. }
            | ReverseError::Assemble(_)
            | ReverseError::Decode { .. } => ErrorClass::Definite,
            ReverseError::Apply(e) => e.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid_deterministic_and_distinct_per_stream() {
        let n = names("app", "main");
        assert_eq!(n.publication, "ferry_reverse_main");
        assert!(n.slot.starts_with("ferry_reverse_main_"), "{n:?}");
        assert_eq!(n, names("app", "main"));
        assert_ne!(n.slot, names("other", "main").slot);
        let a = names("app", "Shop-EU");
        let b = names("app", "shop_eu");
        assert_ne!(a.slot, b.slot);
        assert_ne!(a.publication, b.publication);
        let long = names("app", &"x".repeat(200));
        assert!(
            long.slot.len() <= 63 && long.publication.len() <= 63,
            "{long:?}"
        );
        assert!(a
            .slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
