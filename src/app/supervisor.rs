//! The supervisor: runs start-up once, then the reader → applier pipeline, restarting it with
//! backoff after transient errors until a stop or a definite error.
//!
//! Guarantees: every pipeline run starts from the checkpoint committed in PostgreSQL, read on
//! the run's own connection (after a restart it is the only position that matches the target's
//! rows; if it cannot be read, nothing starts — an older position would apply changes twice); a
//! unique-key conflict in a batched group is replayed once one operation at a time (the
//! conflict may be an artefact of batching) and stops ferry only if the replay conflicts too;
//! what to do after a run is decided by one pure function ([`next_step`]).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{AppError, RunOptions, Shared};
use crate::backfill;
use crate::backoff::Backoff;
use crate::change::RowBudget;
use crate::checkpoint;
use crate::config::{ApplyConfig, Config};
use crate::error::ErrorClass;
use crate::metrics::{self as m, Phase, Stage};
use crate::migration;
use crate::reverse;
use crate::sink::connect as pg;
use crate::sink::error::SinkError;
use crate::sink::postgres::Applier;
use crate::source::binlog::{BinlogReader, ReaderControl, SourceError, StartFrom};
use crate::source::decode::{Decoder, Registry};
use crate::startup::{self, Prepared};

pub(super) struct Supervisor {
    pub shared: Shared,
    pub control: watch::Receiver<ReaderControl>,
    /// Current apply tuning (changed by reloads).
    pub apply: watch::Receiver<ApplyConfig>,
}

/// What the supervisor does after a pipeline run ended.
#[derive(Debug)]
enum Next {
    /// Stopped on request, everything committed.
    Stop,
    /// The migration holds the forward stream (PostgreSQL is primary): wait, read nothing.
    Hold,
    /// Replay the group's transactions one operation at a time, then batch again.
    ReplayStrictly {
        transactions: u64,
    },
    /// Resume from the checkpoint after a backoff.
    Retry {
        stage: Stage,
        why: String,
    },
    Fail(AppError),
}

/// Decides the next step from how the reader and the applier ended.
fn next_step(
    read: Result<(), SourceError>,
    apply: Result<(), SinkError>,
    stop_requested: bool,
    held: bool,
    was_strict: bool,
) -> Next {
    match (read, apply) {
        (Ok(()), Ok(())) if stop_requested => Next::Stop,
        (Ok(()), Ok(())) if held => Next::Hold,
        (_, Err(SinkError::UniqueConflict { transactions, .. })) if !was_strict => {
            Next::ReplayStrictly { transactions }
        }
        (_, Err(e)) if e.class().is_definite() => Next::Fail(e.into()),
        (Err(e), _) if e.class().is_definite() => Next::Fail(e.into()),
        (Err(e), _) => Next::Retry {
            stage: Stage::Source,
            why: e.to_string(),
        },
        (_, Err(e)) => Next::Retry {
            stage: Stage::Sink,
            why: e.to_string(),
        },
        (Ok(()), Ok(())) => Next::Retry {
            stage: Stage::Source,
            why: "the stream ended".into(),
        },
    }
}

impl Supervisor {
    pub(super) async fn run(self, config: &Config, options: &RunOptions) -> Result<(), AppError> {
        let Shared {
            store,
            board,
            progress,
            notifier,
            ..
        } = &self.shared;
        let ctx = startup::Context {
            store,
            board,
            progress,
            control: &self.control,
            accept_target_rewind: options.accept_target_rewind,
        };
        let Some(prepared) = startup::prepare(config, ctx).await? else {
            return Ok(());
        };
        board.set_ready(true);
        board.set_phase(Phase::Streaming);
        tracing::info!(paused = board.paused(), "preflight passed; streaming");
        if let Some(n) = notifier {
            n.ready(&board.status_line());
        }
        if let Some(end) = prepared.unique_after.clone() {
            backfill::unique::spawn_when_passed(
                prepared.config.clone(),
                prepared.tables.clone(),
                progress.clone(),
                end,
            );
        }
        self.stream(prepared, options).await
    }

    /// The restart loop around pipeline runs.
    async fn stream(&self, prepared: Prepared, options: &RunOptions) -> Result<(), AppError> {
        let Prepared {
            config,
            flavor,
            tables,
            mut start,
            ..
        } = prepared;
        let Shared {
            store,
            board,
            progress,
            ..
        } = &self.shared;
        let hub = Arc::new(backfill::recopy::RecopyHub::default());
        tokio::spawn(backfill::recopy::serve(
            config.clone(),
            flavor,
            tables.clone(),
            hub.clone(),
            progress.clone(),
            board.clone(),
        ));
        let mut registry = Registry::new(tables);
        let mut backoff = Backoff::default();
        let mut strict_transactions = 0;
        let mut told_not_armed = false;
        loop {
            progress.worked();
            let client = match pg::connect(&config.target).await {
                Ok(c) => c,
                Err(e) if ErrorClass::of_postgres(&e).is_transient() => {
                    tracing::warn!(error = %pg::describe(&e), retry_in = ?backoff.current(), "target unreachable; retrying");
                    m::error(Stage::Sink, ErrorClass::Transient);
                    backoff.wait().await;
                    continue;
                }
                Err(source) => {
                    return Err(AppError::Target {
                        context: "connecting",
                        source,
                    })
                }
            };
            let schema = &config.target.ferry_schema;
            let read = async {
                let phase = migration::state::load(&client, schema, &config.stream).await?;
                let cp = checkpoint::read_target(&client, schema, &config.stream).await?;
                Ok::<_, tokio_postgres::Error>((phase.phase, cp))
            };
            match read.await {
                Ok((phase, _)) if phase.holds_forward_stream() => {
                    // PostgreSQL is primary: the forward stream reads nothing until the phase
                    // returns to replicating (the reverse stream's writes must never loop back).
                    if self.control.borrow().stop {
                        return Ok(());
                    }
                    drop(client);
                    if phase.runs_reverse_stream() {
                        if let Some(e) = self
                            .reverse(&config, &mut backoff, &mut told_not_armed)
                            .await
                        {
                            return Err(e);
                        }
                        continue;
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                Ok((_, Some(cp))) => start = StartFrom::Position(cp.position),
                Ok((_, None)) => {}
                Err(e) => {
                    tracing::warn!(error = %pg::describe(&e), retry_in = ?backoff.current(), "cannot read the checkpoint from the target; retrying");
                    m::error(Stage::Sink, ErrorClass::of_postgres(&e));
                    backoff.wait().await;
                    continue;
                }
            }
            // Decode with the definitions as of the checkpoint: schema changes applied by an
            // earlier run are in the stored definitions, not in the start-up registry.
            match crate::table_models::stored_tables(
                &client,
                schema,
                &config.stream,
                &config.tables,
                &config.types,
            )
            .await
            {
                Ok(Some(tables)) => {
                    let known =
                        Registry::new(registry.tables().map(|t| (**t).clone()).collect::<Vec<_>>());
                    let tables: Vec<_> = tables
                        .into_iter()
                        .map(|t| match known.get(&t.source) {
                            // Keep the start-up definition (catalog details) when it is the same.
                            Some(k) if k.source_columns == t.source_columns && k.key == t.key => {
                                (**k).clone()
                            }
                            _ => t,
                        })
                        .collect();
                    registry = Registry::new(tables);
                }
                Ok(None) => {}
                Err(e) if e.class().is_transient() => {
                    tracing::warn!(error = %e, retry_in = ?backoff.current(), "cannot read the stored table definitions; retrying");
                    m::error(Stage::Sink, ErrorClass::Transient);
                    backoff.wait().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let copied_whole = match crate::backfill::state::whole_copy_snapshots(
                &client,
                schema,
                &config.stream,
            )
            .await
            {
                Ok(m) => m
                    .into_iter()
                    // A snapshot the stream already passed skips nothing: not checked per event.
                    .filter(|(_, at)| match &start {
                        StartFrom::Position(p) => !p.partial_cmp(at).is_some_and(|o| o.is_ge()),
                        StartFrom::Gtid(_) => true,
                    })
                    .filter_map(|(name, at)| {
                        let (db, table) = name.split_once('.')?;
                        Some((crate::schema::SourceName::new(db, table), at))
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %crate::sink::connect::describe(&e), retry_in = ?backoff.current(), "cannot read the snapshot positions of tables copied whole; retrying");
                    m::error(Stage::Sink, ErrorClass::of_postgres(&e));
                    backoff.wait().await;
                    continue;
                }
            };
            let recorded = match crate::recorded_alters::load(&client, schema, &config.stream).await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %crate::sink::connect::describe(&e), retry_in = ?backoff.current(), "cannot read the recorded schema changes of shadow tables; retrying");
                    m::error(Stage::Sink, ErrorClass::of_postgres(&e));
                    backoff.wait().await;
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(config.apply.channel_capacity);
            let (recopy_tx, recopy_rx) = mpsc::channel(8);
            let budget = RowBudget::new(
                config.apply.max_rows_in_flight,
                config.apply.max_bytes_in_flight,
            );
            hub.set(recopy_tx);
            let mut decoder = Decoder::new(
                registry.clone(),
                config.tables.clone(),
                config.types.clone(),
                match &start {
                    StartFrom::Position(p) => p.file.clone(),
                    StartFrom::Gtid(_) => String::new(),
                },
                match &start {
                    StartFrom::Gtid(g) => Some(g.clone()),
                    StartFrom::Position(_) => None,
                },
                options.skip_ddl.clone(),
            );
            decoder.set_flavor(flavor);
            decoder.set_copied_whole(copied_whole);
            decoder.set_recorded_alters(recorded);
            decoder.set_allow_key_change(config.allow_key_change);
            let reader = BinlogReader {
                config: config.source.clone(),
                flavor,
                start: start.clone(),
                decoder,
                selector: config.tables.clone(),
                options: config.types.clone(),
                tx,
                progress: progress.clone(),
                control: self.control.clone(),
                recopy: recopy_rx,
                budget: budget.clone(),
            };
            let applier = Applier {
                client,
                apply: self.apply.clone(),
                stream: config.stream.clone(),
                ferry_schema: config.target.ferry_schema.clone(),
                rx,
                store: store.clone(),
                progress: progress.clone(),
                strict_transactions,
                resumed_from: match &start {
                    StartFrom::Position(p) => Some(p.clone()),
                    StartFrom::Gtid(_) => None,
                },
                budget,
            };
            let committed_before = progress.committed_position();
            let (read, apply) = run_once(reader, applier).await;
            progress.reset_pending();
            let was_strict = strict_transactions > 0;
            strict_transactions = 0;
            let control = *self.control.borrow();
            match next_step(read, apply, control.stop, control.hold, was_strict) {
                Next::Stop => return Ok(()),
                Next::Hold => tracing::info!(
                    "the migration switched to PostgreSQL: the forward stream reads nothing more"
                ),
                Next::ReplayStrictly { transactions } => {
                    tracing::warn!(transactions, "unique-key conflict in a batched group; replaying those transactions one operation at a time");
                    strict_transactions = transactions;
                }
                Next::Fail(e) => {
                    let stage = match &e {
                        AppError::Source(_) => Stage::Source,
                        _ => Stage::Sink,
                    };
                    m::error(stage, ErrorClass::Definite);
                    return Err(e);
                }
                Next::Retry { stage, why } => {
                    m::error(stage, ErrorClass::Transient);
                    m::restart();
                    board.error(why.clone());
                    tracing::warn!(error = %why, retry_in = ?backoff.current(), "transient error; resuming from the checkpoint");
                    backoff.wait().await;
                }
            }
            if progress.committed_position() != committed_before {
                backoff.reset();
            }
            registry = Registry::new(registry.tables().map(|t| (**t).clone()).collect::<Vec<_>>());
        }
    }
}

impl Supervisor {
    /// One run of the reverse stream (phase `switched`); returns the error that must stop
    /// ferry, if any. Transient errors wait a backoff and are retried by the caller.
    async fn reverse(
        &self,
        config: &Config,
        backoff: &mut Backoff,
        told_not_armed: &mut bool,
    ) -> Option<AppError> {
        let progress = &self.shared.reverse;
        progress.set_running(true);
        let ended = reverse::stream::run(config, self.control.clone(), progress).await;
        progress.set_running(false);
        match ended {
            Ok(reverse::stream::Ended::NotArmed) => {
                if !*told_not_armed {
                    tracing::warn!("switched without a reverse stream (no replication slot: the cutover ran --without-rollback, or the slot was dropped); writes on PostgreSQL are not carried back to MySQL");
                    *told_not_armed = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                None
            }
            Ok(_) => {
                backoff.reset();
                None
            }
            Err(e) if e.class().is_definite() => {
                m::error(Stage::Reverse, ErrorClass::Definite);
                progress.error(e.to_string());
                Some(AppError::Reverse(e))
            }
            Err(e) => {
                m::error(Stage::Reverse, ErrorClass::Transient);
                progress.error(e.to_string());
                self.shared.board.error(e.to_string());
                tracing::warn!(error = %e, retry_in = ?backoff.current(), "reverse stream: transient error; resuming from MySQL's checkpoint");
                backoff.wait().await;
                None
            }
        }
    }
}

/// Runs one reader and one applier to their end, on separate tasks (decoding and applying run
/// on different worker threads).
async fn run_once(
    reader: BinlogReader,
    applier: Applier,
) -> (Result<(), SourceError>, Result<(), SinkError>) {
    let read = tokio::spawn(reader.run());
    let apply = join(tokio::spawn(applier.run())).await;
    if apply.is_err() {
        // A reader waiting on a quiet source would not notice the applier is gone.
        read.abort();
    }
    let read = match read.await {
        Ok(v) => v,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    (read, apply)
}

/// Awaits a stage task; a panic inside a stage is a bug, reported as such instead of hanging.
async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match handle.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("pipeline stage cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::BinlogPosition;

    fn conflict() -> SinkError {
        SinkError::UniqueConflict {
            target: "s.t".into(),
            position: "f.000001:4".into(),
            message: "duplicate".into(),
            transactions: 3,
        }
    }

    #[test]
    fn a_requested_stop_with_everything_committed_stops() {
        assert!(matches!(
            next_step(Ok(()), Ok(()), true, false, false),
            Next::Stop
        ));
        assert!(matches!(
            next_step(Ok(()), Ok(()), false, false, false),
            Next::Retry { .. }
        ));
        assert!(matches!(
            next_step(Ok(()), Ok(()), false, true, false),
            Next::Hold
        ));
    }

    #[test]
    fn a_unique_conflict_is_replayed_once_then_fails() {
        assert!(matches!(
            next_step(Ok(()), Err(conflict()), false, false, false),
            Next::ReplayStrictly { transactions: 3 }
        ));
        assert!(matches!(
            next_step(Ok(()), Err(conflict()), false, false, true),
            Next::Fail(AppError::Sink(SinkError::UniqueConflict { .. }))
        ));
    }

    #[test]
    fn definite_errors_fail_and_transient_ones_retry() {
        let purged = SourceError::Purged {
            position: BinlogPosition::new("b.000001", 4),
            file: "b.000001".into(),
            oldest: "b.000009".into(),
        };
        assert!(matches!(
            next_step(Err(purged), Ok(()), false, false, false),
            Next::Fail(AppError::Source(_))
        ));
        assert!(matches!(
            next_step(Err(SourceError::Closed), Ok(()), false, false, false),
            Next::Retry {
                stage: Stage::Source,
                ..
            }
        ));
        // A stop request does not hide a definite error of the applier.
        let apply = SinkError::Apply {
            table: crate::schema::SourceName::new("d", "t"),
            target: "d.t".into(),
            position: "b.000001:4".into(),
            message: "refused".into(),
        };
        assert!(matches!(
            next_step(Ok(()), Err(apply), true, false, false),
            Next::Fail(AppError::Sink(_))
        ));
    }
}
