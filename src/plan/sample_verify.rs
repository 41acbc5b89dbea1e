//! The measured part of the verification estimate: the checksum pass `ferry verify` runs, over
//! the rows a sample copy just put into its scratch table — the same chunk boundaries walked on
//! the source (`verify.chunk_rows`), the same checksum statements on both sides at once (with
//! the JSON hash where the table has JSON), one pass per sampled table, the passes of a sample
//! batch started together so they load the servers as `ferry verify`'s workers do.
//!
//! Guarantees: read-only on the source (its sessions are `READ ONLY`); on the target it reads
//! only the scratch table, inside the sample's transaction, which is never committed. The walk
//! stops once it covered the sampled rows, so it reads about as many source rows as were copied.

use std::sync::Arc;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use tokio_postgres::Client;

use crate::config::Config;
use crate::schema::Table;
use crate::verify::normalize::TextMode;
use crate::verify::query::{self, Range, Scope, TableSql};

/// What the checksum pass over a sample took.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct VerifySample {
    /// Source rows the chunks covered.
    pub rows: u64,
    /// Wall time of the pass (boundaries, both checksums of each chunk).
    pub seconds: f64,
    /// Passes that ran at once (one per table of the sample batch), as verification's workers.
    pub concurrent: usize,
}

/// Runs the checksum pass over the first `rows` rows (in key order) of `scratch` — a copy of
/// the source table under another target name — with `client` inside the transaction that
/// holds it.
///
/// # Errors
/// A database error of either side, as text.
pub async fn checksum_pass(
    config: &Config,
    scratch: &Table,
    text: TextMode,
    client: &Client,
    rows: u64,
    concurrent: usize,
) -> Result<VerifySample, String> {
    let q = TableSql::new(Arc::new(scratch.clone()), config.types.clone(), text);
    let mut boundary = query::my_conn(config).await.map_err(|e| e.to_string())?;
    let mut sums = query::my_conn(config).await.map_err(|e| e.to_string())?;
    for conn in [&mut boundary, &mut sums] {
        conn.query_drop("SET SESSION TRANSACTION READ ONLY")
            .await
            .map_err(|e| e.to_string())?;
    }
    client
        .batch_execute(query::PG_SESSION)
        .await
        .map_err(|e| e.to_string())?;
    let step = config.verify.chunk_rows.max(2) - 1;
    let started = Instant::now();
    let mut covered = 0u64;
    let mut lo = None;
    while covered < rows {
        let open = Range {
            lo: lo.clone(),
            hi: None,
        };
        let hi = q
            .my_boundary(&mut boundary, &open, step)
            .await
            .map_err(|e| e.to_string())?;
        let range = Range {
            lo: lo.clone(),
            hi: hi.clone(),
        };
        let keys = if q.order_safe {
            None
        } else {
            Some(
                q.my_keys(&mut sums, &range)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        };
        let scope = match &keys {
            Some(k) => Scope::Keys(k),
            None => Scope::Range(&range),
        };
        let (my, _) = tokio::try_join!(
            async {
                let s = q.my_sums(&mut sums, &range).await?;
                if q.json_hashed {
                    q.my_json_hash(&mut sums, &range).await?;
                }
                Ok(s)
            },
            q.pg_chunk(client, scope)
        )
        .map_err(|e| e.to_string())?;
        covered += my.count;
        if hi.is_none() || my.count == 0 {
            break;
        }
        lo = hi;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = boundary.disconnect().await;
    let _ = sums.disconnect().await;
    Ok(VerifySample {
        rows: covered,
        seconds,
        concurrent,
    })
}
