//! The measured part of the backfill estimate: the largest tables' first chunks copied into a
//! scratch schema on the target the way the backfill copies them (keyset reads, the same
//! conversion, COPY in bounded frames, reader / encoder / writer overlapping, up to
//! `backfill.parallel_tables` tables at once), then their primary key and indexes built, then
//! `ferry verify`'s checksum pass over them ([`super::sample_verify`]).
//!
//! Guarantees: nothing is left on the target, even when `ferry plan` is killed: each table's
//! scratch schema, table, rows and indexes are created inside one PostgreSQL transaction that is
//! never committed (rolled back at the end; a killed client's transaction is rolled back by the
//! server). The source sessions are read-only. A sample is bounded by rows, bytes and time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::schema::Table;
use crate::select::quote_ident;
use crate::sink::connect as pg;
use crate::sink::{copy::copy_sql, ddl};
use crate::source::connect;
use crate::source::snapshot::{ChunkReader, KeyValue};
use crate::verify::normalize::TextMode;

/// Bounds of one table's sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleBounds {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub max_time: Duration,
}

impl Default for SampleBounds {
    fn default() -> Self {
        Self {
            max_rows: 200_000,
            max_bytes: 256 << 20,
            max_time: Duration::from_secs(4),
        }
    }
}

/// What copying one table's sample took.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub table: String,
    pub rows: u64,
    /// Bytes of source values read.
    pub source_bytes: u64,
    /// Wall time of the overlapped read + convert + COPY.
    pub copy_seconds: f64,
    /// Building the primary key and secondary indexes on the sampled rows.
    pub index_seconds: f64,
    /// `pg_total_relation_size` of the sample with its indexes.
    pub target_bytes: u64,
    /// `ferry verify`'s checksum pass over the sampled rows (tables with a key).
    pub verify: Option<super::sample_verify::VerifySample>,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("sample copy of {table}: source: {message}")]
    Source { table: String, message: String },
    #[error("sample copy of {table}: target: {message}")]
    Target { table: String, message: String },
}

/// Copies a sample of each of `tables` (concurrently, `parallel` at a time). A table whose
/// sample fails (a value no policy can set aside, a lost connection) is returned with its
/// error and left out of the measurement.
pub async fn sample(
    config: &Config,
    tables: &[(Table, TextMode)],
    parallel: usize,
    bounds: SampleBounds,
) -> (Vec<Sample>, Vec<SampleError>) {
    let mut failed = Vec::new();
    let mut out = Vec::new();
    for (batch_no, batch) in tables.chunks(parallel.max(1)).enumerate() {
        // The batch's checksum passes start together, as `ferry verify`'s workers run.
        let gate = std::sync::Arc::new(Gate {
            barrier: tokio::sync::Barrier::new(batch.len()),
            parties: batch.len(),
        });
        let tasks: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(i, (t, text))| {
                let config = config.clone();
                let t = t.clone();
                let text = *text;
                let gate = gate.clone();
                tokio::spawn(async move {
                    sample_one(&config, &t, text, batch_no * 100 + i, bounds, &gate).await
                })
            })
            .collect();
        for (task, (t, _)) in tasks.into_iter().zip(batch) {
            match task.await {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => failed.push(e),
                Err(e) => failed.push(SampleError::Target {
                    table: t.source.to_string(),
                    message: e.to_string(),
                }),
            }
        }
    }
    (out, failed)
}

/// Where the checksum passes of one batch start together.
struct Gate {
    barrier: tokio::sync::Barrier,
    parties: usize,
}

fn scratch_schema(slot: usize) -> String {
    format!("ferry_plan_scratch_{}_{slot}", std::process::id())
}

/// Fault injection for the kill test: `FERRY_FAULT_PAUSE=plan_sample:<seconds>` holds the
/// scratch transaction open after the first chunk.
async fn fault_pause() {
    let Ok(v) = std::env::var("FERRY_FAULT_PAUSE") else {
        return;
    };
    if let Some(Ok(s)) = v.strip_prefix("plan_sample:").map(|s| s.parse::<f64>()) {
        tracing::warn!(seconds = s, "FERRY_FAULT_PAUSE: holding the sample copy");
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }
}

async fn sample_one(
    config: &Config,
    table: &Table,
    text: TextMode,
    slot: usize,
    bounds: SampleBounds,
    gate: &Gate,
) -> Result<Sample, SampleError> {
    let name = table.source.to_string();
    let src = |e: &dyn std::fmt::Display| SampleError::Source {
        table: name.clone(),
        message: e.to_string(),
    };
    let tgt = |e: &tokio_postgres::Error| SampleError::Target {
        table: name.clone(),
        message: pg::describe(e),
    };
    let mut scratch = table.clone();
    scratch.target_schema = scratch_schema(slot);
    scratch.target_quoted = format!(
        "{}.{}",
        quote_ident(&scratch.target_schema),
        quote_ident(&scratch.target_name)
    );
    let mut conn = connect::connect(&config.source)
        .await
        .map_err(|e| src(&e))?;
    conn.query_drop("SET SESSION TRANSACTION READ ONLY")
        .await
        .map_err(|e| src(&e))?;
    let mut reader = ChunkReader::new(
        conn,
        table,
        config.backfill.chunk_rows,
        config.backfill.chunk_bytes,
    )
    .await
    .map_err(|e| src(&e))?;
    // One transaction, begun by hand so the verification pass can share it; it is only ever
    // rolled back (an error return drops the connection, which rolls it back too).
    let tx = pg::connect(&config.target).await.map_err(|e| tgt(&e))?;
    tx.batch_execute("BEGIN; SET LOCAL synchronous_commit = off")
        .await
        .map_err(|e| tgt(&e))?;
    tx.batch_execute(&ddl::create_bare_table_sql(&scratch))
        .await
        .map_err(|e| tgt(&e))?;

    // The backfill's three overlapping stages: read, convert, COPY.
    let started = Instant::now();
    let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<Row>>(1);
    let (enc_tx, mut enc_rx) = mpsc::channel::<(Vec<Bytes>, u64)>(1);
    let read = tokio::spawn(async move {
        let mut last: Option<Vec<KeyValue>> = None;
        let (mut rows, mut bytes) = (0u64, 0u64);
        let begun = Instant::now();
        loop {
            if rows >= bounds.max_rows
                || bytes >= bounds.max_bytes
                || begun.elapsed() >= bounds.max_time
            {
                break;
            }
            let chunk = match reader.read(last.as_deref()).await {
                Ok(c) => c,
                Err(e) => return Err(e.to_string()),
            };
            let Some(key) = chunk.last_key else { break };
            last = Some(key);
            rows += chunk.rows.len() as u64;
            bytes += chunk
                .rows
                .iter()
                .map(crate::source::snapshot::row_bytes)
                .sum::<usize>() as u64;
            if raw_tx.send(chunk.rows).await.is_err() {
                break;
            }
        }
        let _ = reader.into_conn().disconnect().await;
        Ok(bytes)
    });
    // Values the backfill would refuse are set aside here instead: the sample measures speed,
    // the data scan reports the values.
    let mut encode_config = config.clone();
    for policy in [
        &mut encode_config.types.zero_date,
        &mut encode_config.types.nul_in_text,
        &mut encode_config.types.invalid_text,
    ] {
        *policy = crate::transform::ValuePolicy::DeadLetter;
    }
    let encode_table = table.clone();
    let encode = tokio::task::spawn_blocking(move || {
        while let Some(rows) = raw_rx.blocking_recv() {
            let (frames, copied, _dead) =
                crate::backfill::worker::encode(&encode_config, &encode_table, rows)
                    .map_err(|e| e.to_string())?;
            if enc_tx.blocking_send((frames, copied)).is_err() {
                break;
            }
        }
        Ok::<(), String>(())
    });
    let copy = copy_sql(&scratch);
    let mut rows = 0u64;
    let mut first = true;
    while let Some((frames, copied)) = enc_rx.recv().await {
        let sink = tx.copy_in::<_, Bytes>(&copy).await.map_err(|e| tgt(&e))?;
        futures_util::pin_mut!(sink);
        for frame in frames {
            futures_util::SinkExt::feed(&mut sink, frame)
                .await
                .map_err(|e| tgt(&e))?;
        }
        sink.finish().await.map_err(|e| tgt(&e))?;
        rows += copied;
        if first {
            first = false;
            fault_pause().await;
        }
    }
    let source_bytes = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(src(&e)),
        Err(e) => return Err(src(&e)),
    };
    match encode.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(src(&e)),
        Err(e) => return Err(src(&e)),
    }
    let copy_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut sql: Vec<String> = ddl::add_primary_key_sql(&scratch).into_iter().collect();
    sql.extend(ddl::plain_index_sql(&scratch));
    sql.extend(ddl::unique_index_sql(&scratch));
    for s in &sql {
        tx.batch_execute(s).await.map_err(|e| tgt(&e))?;
    }
    let index_seconds = started.elapsed().as_secs_f64();
    let target_bytes: i64 = tx
        .query_one(
            "SELECT pg_total_relation_size($1::text::regclass)",
            &[&scratch.target_quoted],
        )
        .await
        .map_err(|e| tgt(&e))?
        .get(0);
    // A sample that failed before the gate never arrives: the others go on alone after a while.
    let _ = tokio::time::timeout(Duration::from_secs(20), gate.barrier.wait()).await;
    let verify = if scratch.key.is_empty() || rows == 0 {
        None
    } else {
        Some(
            super::sample_verify::checksum_pass(config, &scratch, text, &tx, rows, gate.parties)
                .await
                .map_err(|message| SampleError::Target {
                    table: name.clone(),
                    message: format!("checksum pass: {message}"),
                })?,
        )
    };
    tx.batch_execute("ROLLBACK").await.map_err(|e| tgt(&e))?;
    Ok(Sample {
        table: name.clone(),
        rows,
        source_bytes,
        copy_seconds,
        index_seconds,
        target_bytes: target_bytes.max(0) as u64,
        verify,
    })
}
