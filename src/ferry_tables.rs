//! ferry's own tables in the target, in one place: created and upgraded by ordered migrations,
//! with the applied version recorded in `<ferry_schema>.schema_version`.
//!
//! Guarantees: [`ensure`] brings the schema to [`CURRENT_VERSION`] in one PostgreSQL
//! transaction under an advisory lock, so concurrent starters (the daemon, `ferry backfill`,
//! `ferry verify --repair`) never race and a crash never leaves a half-applied migration; it is
//! idempotent and cheap when nothing is due (one read). Migrations are only ever appended: a
//! released one is never edited, so every target reaches the same schema by the same steps.
//! Migration 1 adopts tables created before versioning (every statement is `IF NOT EXISTS`).
//! A target whose version is newer than this binary knows is refused (an older ferry must not
//! write to tables it does not understand).
//!
//! The tables: `checkpoint` (the stream's position, written with the rows), `dead_letter`
//! (rows set aside under a policy), `backfill_run` / `backfill` (the copy's start, end and
//! per-table progress), `backfill_requests` (`ferry backfill --table`), `verify_repairs` (the
//! audit of `ferry verify --repair`), `migration` / `migration_log` (the migration phase and
//! its history), `changed_keys` (keys applied since the last matched verification),
//! `verify_passes` (every full verification's outcome), `schema_changes` (each source schema
//! change applied while streaming) and `table_models` (the table definitions the stream decodes
//! with, written with the checkpoint).

use tokio_postgres::Client;

use crate::error::ErrorClass;
use crate::select::quote_ident;
use crate::sink::connect as pg;

/// One step of the schema; `sql` gets the quoted schema name for `{s}`.
struct Migration {
    version: i32,
    what: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append only.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    what: "checkpoint, dead letters, backfill state and requests, repair audit",
    sql: "
        CREATE TABLE IF NOT EXISTS {s}.checkpoint (
            stream text PRIMARY KEY,
            binlog_file text NOT NULL,
            binlog_offset bigint NOT NULL,
            gtid text,
            source_time timestamptz,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE TABLE IF NOT EXISTS {s}.dead_letter (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            source_table text NOT NULL,
            binlog_position text NOT NULL,
            column_name text NOT NULL,
            kind text NOT NULL,
            reason text NOT NULL,
            row_image jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE TABLE IF NOT EXISTS {s}.backfill_run (
            stream text PRIMARY KEY,
            start_file text NOT NULL,
            start_offset bigint NOT NULL,
            end_file text,
            end_offset bigint,
            copied boolean NOT NULL DEFAULT false,
            unique_built boolean NOT NULL DEFAULT false,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz
        );
        CREATE TABLE IF NOT EXISTS {s}.backfill (
            stream text NOT NULL,
            source_table text NOT NULL,
            created_by_ferry boolean NOT NULL,
            last_key jsonb,
            rows_copied bigint NOT NULL DEFAULT 0,
            copied boolean NOT NULL DEFAULT false,
            indexed boolean NOT NULL DEFAULT false,
            updated_at timestamptz,
            PRIMARY KEY (stream, source_table)
        );
        CREATE TABLE IF NOT EXISTS {s}.backfill_requests (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            source_table text NOT NULL,
            state text NOT NULL DEFAULT 'requested',
            message text,
            rows_copied bigint NOT NULL DEFAULT 0,
            requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            finished_at timestamptz
        );
        CREATE TABLE IF NOT EXISTS {s}.verify_repairs (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            source_table text NOT NULL,
            target_table text NOT NULL,
            key jsonb NOT NULL,
            action text NOT NULL,
            before jsonb,
            after jsonb,
            at timestamptz NOT NULL DEFAULT clock_timestamp()
        );",
}, Migration {
    version: 2,
    what: "migration phase and its log, changed keys since the last matched verification, verification passes",
    sql: "
        CREATE TABLE {s}.migration (
            stream text PRIMARY KEY,
            phase text NOT NULL DEFAULT 'replicating',
            -- One per cutover attempt; every write of an attempt names it.
            attempt bigint NOT NULL DEFAULT 0,
            -- The cutover command renews this while it works; past it, the daemon undoes a
            -- cutover that has not passed its point of no return.
            lease_until timestamptz,
            prior_read_only boolean,
            prior_super_read_only boolean,
            final_file text,
            final_offset bigint,
            final_gtid text,
            -- Step timings of the current or last cutover (the report).
            report jsonb,
            daemon_seen_at timestamptz,
            daemon_phase text,
            daemon_lag_seconds double precision,
            daemon_pid integer,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE TABLE {s}.migration_log (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            phase text NOT NULL,
            event text NOT NULL,
            detail jsonb
        );
        CREATE TABLE {s}.changed_keys (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            source_table text NOT NULL,
            binlog_file text NOT NULL,
            binlog_offset bigint NOT NULL,
            -- Key texts as ferry wrote them (composite keys as JSON arrays); NULL: the whole
            -- table changed (TRUNCATE, re-copy).
            keys text[]
        );
        CREATE INDEX changed_keys_position ON {s}.changed_keys (stream, binlog_file, binlog_offset);
        CREATE TABLE {s}.verify_passes (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            kind text NOT NULL,
            -- The stream's checkpoint when the pass started: every change after it is in
            -- changed_keys.
            start_file text,
            start_offset bigint,
            started_at timestamptz NOT NULL,
            finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            tables integer NOT NULL,
            differing_rows bigint NOT NULL,
            matched boolean NOT NULL
        );
        CREATE INDEX verify_passes_stream ON {s}.verify_passes (stream, finished_at);",
}, Migration {
    version: 3,
    what: "schema changes applied while streaming, and the table definitions the stream decodes with",
    sql: "
        CREATE TABLE {s}.schema_changes (
            id bigserial PRIMARY KEY,
            stream text NOT NULL,
            -- Where the source statement starts (FILE:OFFSET).
            position text NOT NULL,
            source_table text NOT NULL,
            source_sql text NOT NULL,
            target_sql text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE TABLE {s}.table_models (
            stream text NOT NULL,
            source_db text NOT NULL,
            source_table text NOT NULL,
            -- The source's catalog description (columns and indexes) the stream decodes rows
            -- of this table with, as of the checkpoint written in the same transaction.
            model jsonb NOT NULL,
            position text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (stream, source_db, source_table)
        );",
}, Migration {
    version: 4,
    what: "the application roles a rollback froze on PostgreSQL, with their prior state",
    sql: "
        -- [{role, could_login, read_only_setting}], written before the roles are frozen, so
        -- an abort (the command's, or the daemon's when its lease runs out) restores exactly
        -- what was there.
        ALTER TABLE {s}.migration ADD COLUMN rollback_roles jsonb;",
}, Migration {
    version: 5,
    what: "the snapshot position of each table copied whole (tables without a key)",
    sql: "
        -- A table without a key is copied in one consistent snapshot; the stream skips its
        -- changes up to this exact binlog position, which the copy already holds.
        ALTER TABLE {s}.backfill ADD COLUMN snapshot_file text, ADD COLUMN snapshot_offset bigint;",
}, Migration {
    version: 6,
    what: "schema changes an online schema change tool ran on its shadow table, until its swap",
    sql: "
        -- Written with the checkpoint after the statement; applied to the real table and
        -- removed at the tool's cut-over RENAME (or removed when the shadow is dropped).
        CREATE TABLE IF NOT EXISTS {s}.shadow_alters (
            stream text NOT NULL,
            shadow_db text NOT NULL,
            shadow_table text NOT NULL,
            base_table text NOT NULL,
            position text NOT NULL,
            source_sql text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (stream, shadow_db, shadow_table, position)
        );",
}];

/// The version this binary brings the schema to.
pub const CURRENT_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

#[derive(Debug, thiserror::Error)]
pub enum FerryTablesError {
    #[error("creating or upgrading ferry's tables in schema {schema:?}: {message}")]
    Postgres {
        schema: String,
        message: String,
        class: ErrorClass,
    },
    #[error("ferry's tables in schema {schema:?} are at version {found}, newer than this ferry knows ({known}): a newer ferry used this target. Run that version (or newer), or point target.ferry_schema elsewhere")]
    Newer {
        schema: String,
        found: i32,
        known: i32,
    },
}

impl FerryTablesError {
    pub fn class(&self) -> ErrorClass {
        match self {
            FerryTablesError::Postgres { class, .. } => *class,
            FerryTablesError::Newer { .. } => ErrorClass::Definite,
        }
    }
}

/// The migrations after `from`, as one script for `schema`.
fn pending_sql(schema: &str, from: i32) -> Vec<(i32, &'static str, String)> {
    let s = quote_ident(schema);
    MIGRATIONS
        .iter()
        .filter(|m| m.version > from)
        .map(|m| (m.version, m.what, m.sql.replace("{s}", &s)))
        .collect()
}

/// Brings ferry's tables to [`CURRENT_VERSION`] (see the module doc).
///
/// # Errors
/// PostgreSQL errors (classed), or a schema newer than this binary.
pub async fn ensure(client: &Client, schema: &str) -> Result<(), FerryTablesError> {
    let pg_err = |e: tokio_postgres::Error| FerryTablesError::Postgres {
        schema: schema.to_string(),
        message: pg::describe(&e),
        class: ErrorClass::of_postgres(&e),
    };
    // Fast path: already current (no lock, no DDL, no NOTICE).
    if let Some(v) = read_version(client, schema).await.map_err(pg_err)? {
        if v == CURRENT_VERSION {
            return Ok(());
        }
    }
    let s = quote_ident(schema);
    let lock_key = format!("ferry_tables:{schema}");
    client.batch_execute("BEGIN").await.map_err(pg_err)?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
            .await?;
        client
            .batch_execute(&format!(
                "SET LOCAL client_min_messages = warning;
                 CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.schema_version (
                     only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                     version integer NOT NULL,
                     updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
                 );"
            ))
            .await?;
        let found: Option<i32> = client
            .query_opt(&format!("SELECT version FROM {s}.schema_version"), &[])
            .await?
            .map(|r| r.get(0));
        Ok::<_, tokio_postgres::Error>(found.unwrap_or(0))
    }
    .await;
    let found = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(pg_err(e));
        }
    };
    if found > CURRENT_VERSION {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(FerryTablesError::Newer {
            schema: schema.to_string(),
            found,
            known: CURRENT_VERSION,
        });
    }
    let applied = async {
        for (version, what, sql) in pending_sql(schema, found) {
            client.batch_execute(&sql).await?;
            tracing::info!(schema, version, what, "ferry's tables upgraded");
        }
        client
            .execute(
                &format!(
                    "INSERT INTO {s}.schema_version (version) VALUES ($1) \
                     ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version, updated_at = clock_timestamp()"
                ),
                &[&CURRENT_VERSION],
            )
            .await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if let Err(e) = applied {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(pg_err(e));
    }
    Ok(())
}

/// The recorded version, `None` when the schema or the version table does not exist yet.
async fn read_version(client: &Client, schema: &str) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt(
            &format!("SELECT version FROM {}.schema_version", quote_ident(schema)),
            &[],
        )
        .await?
        .map(|r| r.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "migration {} out of order", m.what);
        }
        assert_eq!(CURRENT_VERSION, MIGRATIONS.len() as i32);
    }

    #[test]
    fn pending_sql_quotes_the_schema_and_skips_applied_steps() {
        let all = pending_sql("My Schema", 0);
        assert_eq!(all.len(), MIGRATIONS.len());
        assert!(all[0].2.contains("\"My Schema\".checkpoint"));
        assert!(!all[0].2.contains("{s}"));
        assert!(pending_sql("ferry", CURRENT_VERSION).is_empty());
    }
}
