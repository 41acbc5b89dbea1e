//! The record of every full verification pass (`<ferry_schema>.verify_passes`): when it ran,
//! from which checkpoint, and whether the target matched — what a cutover's preconditions and
//! its final check build on.
//!
//! Guarantees: a pass that matched prunes the changed keys recorded before the checkpoint it
//! started at (see [`crate::migration::changed_keys`]), in the same transaction as its record,
//! so "keys changed since the last matched pass" is always exactly the recorded keys after that
//! pass's start. Recording is best effort for the pass itself (a failure is logged; the
//! verification result stands) but never loses recorded keys.

use std::time::SystemTime;

use tokio_postgres::Client;

use crate::checkpoint;
use crate::config::Config;
use crate::migration::changed_keys;
use crate::position::BinlogPosition;
use crate::select::quote_ident;
use crate::sink::connect as pg;

/// A pass about to start: where the stream was.
#[derive(Debug, Clone)]
pub struct PassStart {
    pub checkpoint: Option<BinlogPosition>,
    pub at: SystemTime,
}

/// Reads the stream's checkpoint as a pass starts.
pub async fn start(config: &Config, client: &Client) -> PassStart {
    let cp = checkpoint::read_target(client, &config.target.ferry_schema, &config.stream)
        .await
        .ok()
        .flatten();
    PassStart {
        checkpoint: cp.map(|c| c.position),
        at: SystemTime::now(),
    }
}

/// The last matched pass of a stream: (checkpoint it started at, seconds since it finished).
#[derive(Debug, Clone, PartialEq)]
pub struct LastMatched {
    pub start: Option<BinlogPosition>,
    pub age_seconds: f64,
    pub kind: String,
}

/// Records a finished pass (and prunes the changed keys when it matched).
pub async fn record(
    config: &Config,
    kind: &str,
    start: &PassStart,
    tables: u64,
    differing_rows: u64,
) {
    let result = async {
        let mut client = pg::connect(&config.target).await?;
        let s = quote_ident(&config.target.ferry_schema);
        let tx = client.transaction().await?;
        let started = start
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        tx.execute(
            &format!(
                "INSERT INTO {s}.verify_passes (stream, kind, start_file, start_offset, started_at, tables, differing_rows, matched) \
                 VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7, $8)"
            ),
            &[
                &config.stream,
                &kind,
                &start.checkpoint.as_ref().map(|p| p.file.clone()),
                &start.checkpoint.as_ref().map(|p| p.offset as i64),
                &started,
                &(tables as i32),
                &(differing_rows as i64),
                &(differing_rows == 0),
            ],
        )
        .await?;
        let mut pruned = 0;
        if let (0, Some(p)) = (differing_rows, &start.checkpoint) {
            pruned = changed_keys::prune(&tx, &config.target.ferry_schema, &config.stream, p).await?;
        }
        tx.commit().await?;
        Ok::<u64, tokio_postgres::Error>(pruned)
    }
    .await;
    match result {
        Ok(pruned) => tracing::debug!(kind, pruned, "verification pass recorded"),
        Err(e) => tracing::warn!(error = %pg::describe(&e), "cannot record the verification pass"),
    }
}

/// The stream's last pass that matched, if any.
///
/// # Errors
/// PostgreSQL errors.
pub async fn last_matched(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Option<LastMatched>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT start_file, start_offset, extract(epoch FROM clock_timestamp() - finished_at)::float8, kind \
                 FROM {}.verify_passes WHERE stream = $1 AND matched ORDER BY finished_at DESC LIMIT 1",
                quote_ident(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(row.map(|r| {
        let file: Option<String> = r.get(0);
        let offset: Option<i64> = r.get(1);
        LastMatched {
            start: file
                .zip(offset)
                .map(|(f, o)| BinlogPosition::new(f, o as u64)),
            age_seconds: r.get(2),
            kind: r.get(3),
        }
    }))
}
