//! The schema changes an online schema change tool ran on its shadow table, recorded on the
//! target beside the checkpoint (`<ferry_schema>.shadow_alters`) until the tool's cut-over
//! RENAME applies them to the real table.
//!
//! Guarantees: a recorded change is written in the same PostgreSQL transaction as the checkpoint
//! after its statement, and removed in the transaction that applies it at the swap (or that
//! sees the shadow dropped without a swap), so a restart anywhere between the ALTER and the swap
//! neither loses nor repeats it.

use tokio_postgres::Client;

use crate::schema::SourceName;
use crate::select::quote_ident;

/// One statement run on a shadow table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAlter {
    pub shadow: SourceName,
    /// The table the shadow replaces at the swap.
    pub base: SourceName,
    /// Where the statement starts in the binlog (`file:offset`).
    pub position: String,
    pub sql: String,
}

/// What a schema change message does to the recorded statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bookkeeping {
    /// Records this statement.
    Record(RecordedAlter),
    /// Removes what was recorded for this shadow (applied at its swap, or the shadow dropped).
    Forget(SourceName),
}

impl Bookkeeping {
    /// Runs the bookkeeping in the open transaction.
    ///
    /// # Errors
    /// PostgreSQL errors.
    pub async fn apply(
        &self,
        client: &Client,
        ferry_schema: &str,
        stream: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let s = quote_ident(ferry_schema);
        match self {
            Bookkeeping::Record(r) => client
                .execute(
                    &format!(
                        "INSERT INTO {s}.shadow_alters (stream, shadow_db, shadow_table, base_table, position, source_sql) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream, shadow_db, shadow_table, position) DO NOTHING"
                    ),
                    &[&stream, &r.shadow.db, &r.shadow.table, &r.base.table, &r.position, &r.sql],
                )
                .await
                .map(|_| ()),
            Bookkeeping::Forget(shadow) => client
                .execute(
                    &format!(
                        "DELETE FROM {s}.shadow_alters WHERE stream = $1 AND shadow_db = $2 AND shadow_table = $3"
                    ),
                    &[&stream, &shadow.db, &shadow.table],
                )
                .await
                .map(|_| ()),
        }
    }
}

/// Every recorded statement of the stream, in binlog order per shadow.
///
/// # Errors
/// PostgreSQL errors.
pub async fn load(
    client: &Client,
    ferry_schema: &str,
    stream: &str,
) -> Result<Vec<RecordedAlter>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT shadow_db, shadow_table, base_table, position, source_sql FROM {}.shadow_alters \
                 WHERE stream = $1 ORDER BY shadow_db, shadow_table, recorded_at, position",
                quote_ident(ferry_schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let db: String = r.get(0);
            RecordedAlter {
                shadow: SourceName::new(&db, r.get::<_, String>(1)),
                base: SourceName::new(&db, r.get::<_, String>(2)),
                position: r.get(3),
                sql: r.get(4),
            }
        })
        .collect())
}
