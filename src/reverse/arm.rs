//! Arming the reverse stream at cutover: a publication for the migrated tables and a logical
//! replication slot (`pgoutput`), created while PostgreSQL is still quiet.
//!
//! Guarantees: called after the final check and before the switch, when the forward stream has
//! applied everything and the application does not yet write to PostgreSQL — so the slot's
//! start is the switch point and every write after it is decoded. Arming is idempotent: a slot
//! or publication left by an earlier attempt (an aborted cutover, a cutover after a rollback)
//! is dropped and made anew, because only a slot created now starts at the right place. Every
//! migrated table must exist in PostgreSQL and be able to identify its rows in an update or
//! delete: tables with a primary key keep their default replica identity; tables without one
//! (ferry keys them by a unique key) are set to `REPLICA IDENTITY FULL`.

use mysql_async::Conn;
use serde::Serialize;
use tokio_postgres::Client;

use super::lsn::Lsn;
use super::{names, ReverseError};
use crate::config::Config;
use crate::source::catalog;
use crate::source::connect::Flavor;

/// What arming did.
#[derive(Debug, Clone, Serialize)]
pub struct Armed {
    pub slot: String,
    pub publication: String,
    /// Where the slot starts: the first change decoded is after it.
    pub start_lsn: String,
    pub tables: usize,
    /// Tables set to `REPLICA IDENTITY FULL` (no primary key on PostgreSQL).
    pub replica_identity_full: Vec<String>,
}

/// Creates the publication and the slot (see the module doc).
///
/// # Errors
/// A migrated table missing on PostgreSQL (definite), catalog and database errors.
pub async fn arm(
    config: &Config,
    client: &Client,
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<Armed, ReverseError> {
    let tables = catalog::load_tables(conn, flavor, &config.tables, &config.types).await?;
    let super::Names { slot, publication } = names(&config.target.database, &config.stream);
    let mut full = Vec::new();
    let mut list = Vec::with_capacity(tables.len());
    for t in &tables {
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&t.target_schema, &t.target_name],
            )
            .await
            .map_err(ReverseError::target("reading the migrated tables"))?;
        let Some(row) = row else {
            return Err(ReverseError::MissingTable {
                table: t.target_quoted.clone(),
                source_table: t.source.to_string(),
            });
        };
        let identity: String = row.get(0);
        let has_pk: bool = row.get(1);
        let identifies_rows = match identity.as_str() {
            "f" | "i" => true,
            "d" => has_pk,
            _ => false,
        };
        if !identifies_rows {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {} REPLICA IDENTITY FULL",
                    t.target_quoted
                ))
                .await
                .map_err(ReverseError::target("setting REPLICA IDENTITY FULL"))?;
            full.push(t.target_quoted.clone());
        }
        list.push(t.target_quoted.clone());
    }
    disarm(client, &slot, &publication).await?;
    let create = if list.is_empty() {
        format!(
            "CREATE PUBLICATION {}",
            crate::select::quote_ident(&publication)
        )
    } else {
        format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            crate::select::quote_ident(&publication),
            list.join(", ")
        )
    };
    client
        .batch_execute(&create)
        .await
        .map_err(ReverseError::target("creating the publication"))?;
    let lsn: String = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .map_err(ReverseError::target("creating the replication slot"))?
        .get(0);
    let start: Lsn = lsn.parse().unwrap_or_default();
    tracing::info!(%slot, %publication, start = %start, tables = list.len(), "reverse stream armed");
    Ok(Armed {
        slot,
        publication,
        start_lsn: start.to_string(),
        tables: list.len(),
        replica_identity_full: full,
    })
}

/// Drops the slot and the publication if they exist; true when a slot was dropped.
///
/// # Errors
/// PostgreSQL errors (a slot in use by a running session is one: stop that session first).
pub async fn disarm(client: &Client, slot: &str, publication: &str) -> Result<bool, ReverseError> {
    let dropped = client
        .query_opt(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(ReverseError::target("dropping the earlier replication slot"))?
        .is_some();
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}",
            crate::select::quote_ident(publication)
        ))
        .await
        .map_err(ReverseError::target("dropping the earlier publication"))?;
    Ok(dropped)
}
