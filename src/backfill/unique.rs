//! Unique constraints of the tables ferry backfilled, built once the stream has passed the
//! position where the copy ended.
//!
//! Why wait: between the copy's start and its end the replay passes through older states of
//! rows, so two rows can briefly hold the same unique value on the target although they never
//! did at one moment on the source. Once the stream's checkpoint passes the end position the
//! target is a consistent image of the source again and the constraints hold.
//!
//! Guarantees: built at most once per backfill (recorded in `ferry.backfill_run`); a failure is
//! logged and counted and replication continues without the constraints (they are retried on
//! the next start).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{state, BackfillError};
use crate::config::Config;
use crate::metrics::{self as m, Stage};
use crate::position::BinlogPosition;
use crate::progress::Progress;
use crate::schema::Table;
use crate::sink::{connect as pg, ddl};

/// Waits (in the background) until the committed position reaches `end`, then builds the
/// constraints.
pub fn spawn_when_passed(
    config: Config,
    tables: Vec<Table>,
    progress: Arc<Progress>,
    end: BinlogPosition,
) {
    tokio::spawn(async move {
        loop {
            let reached = progress.committed_position().is_some_and(|p| {
                p.partial_cmp(&end)
                    .is_some_and(|o| o != std::cmp::Ordering::Less)
            });
            if reached {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::info!(%end, "the stream passed the backfill's end: the target is consistent; building unique constraints");
        let client = match pg::connect(&config.target).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %pg::describe(&e), "cannot connect to build unique constraints; they are built on the next start");
                return;
            }
        };
        if let Err(e) = build(&config, &tables, &client).await {
            m::error(Stage::Backfill, e.class());
            tracing::error!(error = %e, "building unique constraints failed; replication continues without them");
        }
    });
}

/// Builds the unique constraints of tables ferry created once the stream passed `end`.
///
/// # Errors
/// DDL failures (e.g. the source had duplicates PostgreSQL's stricter comparison rejects).
pub async fn build(
    config: &Config,
    tables: &[Table],
    client: &Client,
) -> Result<(), BackfillError> {
    let schema = &config.target.ferry_schema;
    let states = state::load_tables(client, schema, &config.stream)
        .await
        .map_err(BackfillError::target("reading the tables' copy progress"))?;
    for t in tables {
        let Some(st) = states.get(&t.source.to_string()) else {
            continue;
        };
        if st.created_by_ferry && !st.unique_built {
            let sql = ddl::unique_index_sql(t);
            if !sql.is_empty() {
                let started = Instant::now();
                ddl::run_all(client, t, &sql).await?;
                tracing::info!(table = %t.source, elapsed = ?started.elapsed(), "built unique constraints");
            }
        }
    }
    state::mark_unique_built(client, schema, &config.stream)
        .await
        .map_err(BackfillError::target("recording the unique constraints"))?;
    Ok(())
}
