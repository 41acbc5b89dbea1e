//! The reader's side of re-copying one table while streaming continues (`ferry backfill
//! --table`): the table's changes are applied to a shadow table as well, copied chunks are
//! injected into the stream at the exact binlog position of their snapshot, and at the end the
//! shadow replaces the table in one PostgreSQL transaction.
//!
//! Why the shadow ends exactly equal to the source: it starts empty, and from the moment
//! dual-apply begins (position D) it receives every change of the table, in stream order. Each
//! chunk is read in a consistent snapshot whose binlog position Ps is exact (and ≥ D) and is
//! injected between the events up to Ps and those after it. For a key of the chunk, everything
//! the shadow received before the injection is either absent or the key's state at Ps (the
//! changes before Ps), and the chunk carries the state at Ps, so after the injection the shadow
//! holds the state at Ps for the chunk's whole key range — rows deleted before Ps included,
//! since the shadow only ever saw them through their delete. Changes after Ps follow as usual.
//! If the reader already passed Ps when the chunk arrives, the keys it saw change after Ps are
//! dropped from the chunk (their newer state is already in the shadow) — the per-chunk
//! watermark of DBLog, with binlog positions as watermarks.
//!
//! A table without a key (identified by its whole row) cannot take that watermark: a copied
//! row and a streamed change of an equal row cannot be told apart, and a delete mirrored to the
//! shadow before the copied row it removes is there would be lost. Its re-copy *holds* the
//! reader instead: at the boundary R where it starts, the reader stops reading the binlog; the
//! table is read whole in one snapshot at an exact position S ≥ R and every chunk is injected
//! at once (nothing after S has been read, so nothing after S can reach the shadow first). When
//! the last chunk is in, the reader reads again from R: the table's changes up to S are already
//! in the snapshot and are not mirrored, those after S are, and the swap waits for the first
//! boundary at or after S. The shadow then holds the state at S plus every later change — the
//! table's state — as a multiset. The stream's lag grows while the copy runs (logged).
//!
//! Guarantees: injections and the swap happen only at transaction boundaries; the table itself
//! keeps receiving every change throughout, so an aborted re-copy (pipeline restart, crash)
//! leaves it exactly as streaming left it and the re-copy starts over.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::change::{Commit, Key, Message, RowOp};
use crate::position::BinlogPosition;
use crate::schema::SourceName;
use crate::schema::Table;
use crate::transform::Cell;

/// What the re-copy task asks of the reader.
#[derive(Debug)]
pub enum RecopyCommand {
    /// Start applying `table`'s changes to `shadow` too; replies with the position it began at.
    Start {
        table: Arc<Table>,
        shadow: Arc<Table>,
        reply: oneshot::Sender<BinlogPosition>,
    },
    /// A table without a key: its whole snapshot is at `snapshot` (sent before its chunks).
    Snapshot { snapshot: BinlogPosition },
    /// Rows read in a snapshot at `snapshot` (an exact binlog position).
    Chunk {
        rows: Vec<Vec<Cell>>,
        snapshot: BinlogPosition,
    },
    /// The re-copy failed: stop mirroring (and holding); the table keeps streaming as before.
    Abandon,
    /// All chunks sent: swap once they are injected; replies with the swap's position.
    Finish {
        reply: oneshot::Sender<BinlogPosition>,
    },
}

struct Active {
    table: Arc<Table>,
    shadow: Arc<Table>,
    /// Keys of the table changed since the last injected snapshot, with the change's position.
    changed: Vec<(BinlogPosition, Key)>,
    pending: VecDeque<(Vec<Vec<Cell>>, BinlogPosition)>,
    finish: Option<oneshot::Sender<BinlogPosition>>,
    /// A table without a key: the snapshot position, once known.
    whole_snapshot: Option<BinlogPosition>,
}

impl Active {
    fn whole(&self) -> bool {
        !self.table.has_key()
    }
}

/// Reader-side re-copy state.
#[derive(Default)]
pub struct RecopyTap {
    active: Option<Active>,
}

fn at_or_after(p: &BinlogPosition, q: &BinlogPosition) -> bool {
    p.partial_cmp(q)
        .is_some_and(|o| o != std::cmp::Ordering::Less)
}

impl RecopyTap {
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The table being re-copied has no key (it is copied whole, in one snapshot).
    pub fn whole(&self) -> bool {
        self.active.as_ref().is_some_and(Active::whole)
    }

    /// A table without a key is being read: the reader must read no binlog event until its
    /// last chunk is injected (see the module docs).
    pub fn holding(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.whole() && a.finish.is_none())
    }

    /// The table being re-copied, if any.
    pub fn table(&self) -> Option<&SourceName> {
        self.active.as_ref().map(|a| &a.table.source)
    }

    /// Applies a command; call at a transaction boundary with the current position.
    pub fn command(&mut self, cmd: RecopyCommand, position: &BinlogPosition) {
        match cmd {
            RecopyCommand::Start {
                table,
                shadow,
                reply,
            } => {
                tracing::info!(table = %table.source, %position, "re-copy: applying changes to the shadow table too");
                self.active = Some(Active {
                    table,
                    shadow,
                    changed: Vec::new(),
                    pending: VecDeque::new(),
                    finish: None,
                    whole_snapshot: None,
                });
                let _ = reply.send(position.clone());
            }
            RecopyCommand::Snapshot { snapshot } => {
                if let Some(a) = &mut self.active {
                    tracing::info!(table = %a.table.source, %snapshot, held_at = %position, "re-copy: table without a key read whole in one snapshot; the reader holds until it is injected");
                    a.whole_snapshot = Some(snapshot);
                }
            }
            RecopyCommand::Chunk { rows, snapshot } => {
                if let Some(a) = &mut self.active {
                    a.pending.push_back((rows, snapshot));
                }
            }
            RecopyCommand::Abandon => {
                if let Some(a) = self.active.take() {
                    tracing::info!(table = %a.table.source, %position, "re-copy abandoned: the shadow table receives no more changes");
                }
            }
            RecopyCommand::Finish { reply } => {
                if let Some(a) = &mut self.active {
                    a.finish = Some(reply);
                }
            }
        }
    }

    /// Mirrors the table's row changes to the shadow and remembers which keys changed where.
    pub fn tap(&mut self, messages: &mut Vec<Message>, position: &BinlogPosition) {
        let Some(a) = &mut self.active else {
            return;
        };
        if a.whole() {
            // Changes up to the snapshot are in it; only later ones reach the shadow.
            match &a.whole_snapshot {
                Some(s) if a.finish.is_some() && !at_or_after(s, position) => {}
                _ => return,
            }
        }
        let whole = a.whole();
        let mut extra = Vec::new();
        for m in messages.iter() {
            match m {
                Message::Rows { table, ops } if table.source == a.table.source => {
                    if !whole {
                        for op in ops {
                            a.changed.push((position.clone(), op.key().clone()));
                        }
                    }
                    extra.push(Message::Rows {
                        table: a.shadow.clone(),
                        ops: ops.clone(),
                    });
                }
                Message::Truncate { table } if table.source == a.table.source => {
                    extra.push(Message::Truncate {
                        table: a.shadow.clone(),
                    });
                }
                _ => {}
            }
        }
        messages.extend(extra);
    }

    /// At a transaction boundary: injects every pending chunk whose snapshot the stream has
    /// reached, then (when finished) the swap. `commit` is the boundary's commit, repeated so
    /// the sink sees each injection as a whole transaction.
    pub fn at_boundary(&mut self, position: &BinlogPosition, commit: &Commit) -> Vec<Message> {
        let Some(a) = &mut self.active else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if a.whole() {
            // Held at the boundary where the copy began: every chunk goes in as it comes.
            while let Some((rows, _)) = a.pending.pop_front() {
                if !rows.is_empty() {
                    let ops = rows
                        .into_iter()
                        .map(|row| RowOp::Insert {
                            key: a.shadow.key_of(&row),
                            row,
                        })
                        .collect();
                    out.push(Message::Rows {
                        table: a.shadow.clone(),
                        ops,
                    });
                    out.push(Message::Commit(commit.clone()));
                }
            }
            let reached = a
                .whole_snapshot
                .as_ref()
                .is_some_and(|s| at_or_after(position, s));
            if !(a.finish.is_some() && reached) {
                return out;
            }
        }
        while a
            .pending
            .front()
            .is_some_and(|(_, snapshot)| at_or_after(position, snapshot))
        {
            let (rows, snapshot) = a.pending.pop_front().expect("checked front");
            // Keys changed after the snapshot already hold a newer state in the shadow.
            let newer: HashSet<&Key> = a
                .changed
                .iter()
                .filter(|(p, _)| !at_or_after(&snapshot, p))
                .map(|(_, k)| k)
                .collect();
            let ops: Vec<RowOp> = rows
                .into_iter()
                .map(|row| {
                    let key: Key = a.shadow.key_of(&row);
                    RowOp::Upsert { key, row }
                })
                .filter(|op| !newer.contains(op.key()))
                .collect();
            a.changed.retain(|(p, _)| !at_or_after(&snapshot, p));
            if !ops.is_empty() {
                out.push(Message::Rows {
                    table: a.shadow.clone(),
                    ops,
                });
                out.push(Message::Commit(commit.clone()));
            }
        }
        if a.pending.is_empty() && a.finish.is_some() {
            let a = self.active.take().expect("active");
            out.push(Message::Swap {
                table: a.table.clone(),
                shadow: a.shadow.clone(),
            });
            out.push(Message::Commit(commit.clone()));
            tracing::info!(table = %a.table.source, %position, "re-copy: every chunk injected; swapping in the shadow table");
            if let Some(reply) = a.finish {
                let _ = reply.send(position.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Index, SourceName};
    use crate::transform::{SourceColumn, TypeOptions};

    /// A table of int columns; `id`, when there, is NOT NULL.
    fn planned(name: &str, columns: &[&str], indexes: Vec<Index>) -> Arc<Table> {
        let col = |n: &str| SourceColumn {
            name: n.into(),
            data_type: "int".into(),
            column_type: "int(11)".into(),
            nullable: n != "id",
            ..Default::default()
        };
        Arc::new(
            Table::plan(
                SourceName::new("db", "t"),
                "db".into(),
                columns.iter().map(|c| col(c)).collect(),
                indexes,
                0,
                &TypeOptions::default(),
            )
            .map(|mut t| {
                t.target_name = name.into();
                t
            })
            .expect("plans"),
        )
    }

    fn table(name: &str) -> Arc<Table> {
        planned(
            name,
            &["id", "v"],
            vec![Index {
                name: "PRIMARY".into(),
                unique: true,
                columns: vec![(0, None)],
            }],
        )
    }

    /// A tap whose re-copy of `live` into `shadow` started at position 100.
    fn started(live: &Arc<Table>, shadow: &Arc<Table>) -> RecopyTap {
        let mut tap = RecopyTap::default();
        let (tx, _rx) = oneshot::channel();
        tap.command(
            RecopyCommand::Start {
                table: live.clone(),
                shadow: shadow.clone(),
                reply: tx,
            },
            &pos(100),
        );
        tap
    }

    fn keyless(name: &str) -> Arc<Table> {
        planned(name, &["a", "b"], Vec::new())
    }

    #[test]
    fn a_table_without_a_key_holds_the_reader_and_mirrors_only_changes_after_its_snapshot() {
        let live = keyless("t");
        let shadow = keyless("t__ferry_recopy");
        let mut tap = started(&live, &shadow);
        assert!(tap.holding(), "the reader holds while the copy runs");
        tap.command(RecopyCommand::Snapshot { snapshot: pos(150) }, &pos(100));
        tap.command(
            RecopyCommand::Chunk {
                rows: vec![row(1, 1), row(1, 1)],
                snapshot: pos(150),
            },
            &pos(100),
        );
        let injected = tap.at_boundary(&pos(100), &commit(100));
        assert_eq!(
            upserts(&injected),
            vec![row(1, 1), row(1, 1)],
            "injected at once, duplicates kept, though the stream is short of the snapshot"
        );
        assert!(injected.iter().all(|m| !matches!(
            m,
            Message::Rows { ops, .. } if ops.iter().any(|o| matches!(o, RowOp::Upsert { .. }))
        )));
        let (ftx, mut frx) = oneshot::channel();
        tap.command(RecopyCommand::Finish { reply: ftx }, &pos(100));
        assert!(
            !tap.holding(),
            "the last chunk is in: the reader reads again"
        );
        assert!(
            tap.at_boundary(&pos(100), &commit(100)).is_empty(),
            "no swap before the snapshot's position"
        );
        let mut msgs = vec![Message::Rows {
            table: live.clone(),
            ops: vec![RowOp::Insert {
                key: row(1, 1),
                row: row(1, 1),
            }],
        }];
        tap_at(&mut tap, &mut msgs, 150);
        assert_eq!(msgs.len(), 1, "a change the snapshot holds is not mirrored");
        assert!(tap
            .at_boundary(&pos(150), &commit(150))
            .iter()
            .any(|m| matches!(m, Message::Swap { .. })));
        assert_eq!(frx.try_recv().expect("swapped"), pos(150));
        assert!(!tap.is_active());
    }

    #[test]
    fn changes_after_the_snapshot_of_a_table_without_a_key_are_mirrored_before_its_swap() {
        let live = keyless("t");
        let mut tap = started(&live, &keyless("t__ferry_recopy"));
        tap.command(RecopyCommand::Snapshot { snapshot: pos(150) }, &pos(100));
        let (ftx, _frx) = oneshot::channel();
        tap.command(RecopyCommand::Finish { reply: ftx }, &pos(100));
        let mut msgs = vec![Message::Rows {
            table: live.clone(),
            ops: vec![RowOp::Delete { key: row(1, 1) }],
        }];
        tap_at(&mut tap, &mut msgs, 160);
        assert_eq!(msgs.len(), 2, "mirrored to the shadow");
        let out = tap.at_boundary(&pos(160), &commit(160));
        assert!(matches!(out.first(), Some(Message::Swap { .. })));
    }

    fn tap_at(tap: &mut RecopyTap, msgs: &mut Vec<Message>, p: u64) {
        tap.tap(msgs, &pos(p));
    }

    fn pos(o: u64) -> BinlogPosition {
        BinlogPosition::new("b.000001", o)
    }

    fn commit(o: u64) -> Commit {
        Commit {
            position: pos(o),
            gtid: None,
            source_time: 0,
            seq: 1,
        }
    }

    fn row(id: i64, v: i64) -> Vec<Cell> {
        vec![Some(id.to_string()), Some(v.to_string())]
    }

    fn upserts(msgs: &[Message]) -> Vec<Vec<Cell>> {
        msgs.iter()
            .flat_map(|m| match m {
                Message::Rows { ops, .. } => ops
                    .iter()
                    .filter_map(|o| match o {
                        RowOp::Insert { row, .. } | RowOp::Upsert { row, .. } => Some(row.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn changes_are_mirrored_and_chunks_wait_for_their_snapshot() {
        let live = table("t");
        let shadow = table("t__ferry_recopy");
        let mut tap = started(&live, &shadow);
        let mut msgs = vec![Message::Rows {
            table: live.clone(),
            ops: vec![RowOp::Upsert {
                key: vec![Some("1".into())],
                row: row(1, 10),
            }],
        }];
        tap.tap(&mut msgs, &pos(120));
        assert_eq!(msgs.len(), 2, "mirrored to the shadow");
        tap.command(
            RecopyCommand::Chunk {
                rows: vec![row(1, 10), row(2, 20)],
                snapshot: pos(200),
            },
            &pos(150),
        );
        assert!(
            tap.at_boundary(&pos(150), &commit(150)).is_empty(),
            "stream not at the snapshot yet"
        );
        let out = tap.at_boundary(&pos(200), &commit(200));
        assert_eq!(upserts(&out), vec![row(1, 10), row(2, 20)]);
    }

    #[test]
    fn keys_changed_after_the_snapshot_are_not_overwritten() {
        let live = table("t");
        let mut tap = started(&live, &table("t__ferry_recopy"));
        // The reader passes the snapshot (200) before the chunk arrives: key 2 changes at 250.
        let mut msgs = vec![Message::Rows {
            table: live.clone(),
            ops: vec![RowOp::Delete {
                key: vec![Some("2".into())],
            }],
        }];
        tap.tap(&mut msgs, &pos(250));
        tap.command(
            RecopyCommand::Chunk {
                rows: vec![row(1, 10), row(2, 20)],
                snapshot: pos(200),
            },
            &pos(300),
        );
        let (ftx, mut frx) = oneshot::channel();
        tap.command(RecopyCommand::Finish { reply: ftx }, &pos(300));
        let out = tap.at_boundary(&pos(300), &commit(300));
        assert_eq!(
            upserts(&out),
            vec![row(1, 10)],
            "key 2's delete after the snapshot wins"
        );
        assert!(out.iter().any(|m| matches!(m, Message::Swap { .. })));
        assert_eq!(frx.try_recv().expect("swap position"), pos(300));
        assert!(!tap.is_active());
    }
}
