//! Batching of row operations into set-based statements without changing their meaning.
//!
//! A [`Segment`] collects one table's operations in source order as a set of deletes and a set
//! of upserts whose keys are all distinct. Within such a segment, applying every delete and then
//! every upsert (in arrival order) gives exactly the state sequential application gives: the
//! operations touch different rows, and moving deletes earlier only removes rows, which cannot
//! create a unique-key conflict among the upserts. An operation on a key the segment already
//! holds closes the segment first. So every source row operation is applied exactly once, as
//! itself — never merged away — which keeps `AFTER ROW` trigger counts and audit trails on the
//! target identical to a one-by-one replay.

use std::collections::HashSet;

use crate::change::{Key, RowOp};
use crate::transform::Cell;

/// One table's pending, order-independent operations.
#[derive(Debug, Default)]
pub struct Segment {
    keys: HashSet<Key>,
    pub deletes: Vec<Key>,
    pub upserts: Vec<Vec<Cell>>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.deletes.len() + self.upserts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `op` can join without closing the segment.
    pub fn accepts(&self, op: &RowOp) -> bool {
        !self.keys.contains(op.key())
    }

    /// Adds an operation the segment [`accepts`](Self::accepts).
    pub fn push(&mut self, op: RowOp) {
        match op {
            RowOp::Delete { key } => {
                self.keys.insert(key.clone());
                self.deletes.push(key);
            }
            RowOp::Upsert { key, row } => {
                self.keys.insert(key);
                self.upserts.push(row);
            }
        }
    }

    /// Empties the segment, returning (deletes, upserts).
    pub fn take(&mut self) -> (Vec<Key>, Vec<Vec<Cell>>) {
        self.keys.clear();
        (
            std::mem::take(&mut self.deletes),
            std::mem::take(&mut self.upserts),
        )
    }
}

/// Column-major text arrays for `unnest($1::text[], ...)` parameters.
pub fn columns_of(rows: &[Vec<Cell>], width: usize) -> Vec<Vec<Option<&str>>> {
    let mut cols: Vec<Vec<Option<&str>>> =
        (0..width).map(|_| Vec::with_capacity(rows.len())).collect();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            cols[c].push(cell.as_deref());
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(k: i64, v: &str) -> RowOp {
        RowOp::Upsert {
            key: vec![Some(k.to_string())],
            row: vec![Some(k.to_string()), Some(v.to_string())],
        }
    }

    fn del(k: i64) -> RowOp {
        RowOp::Delete {
            key: vec![Some(k.to_string())],
        }
    }

    /// Applies ops sequentially to a map.
    fn sequential(ops: &[RowOp]) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        for op in ops {
            match op {
                RowOp::Upsert { key, row } => {
                    m.insert(key[0].clone().unwrap(), row[1].clone().unwrap());
                }
                RowOp::Delete { key } => {
                    m.remove(key[0].as_ref().unwrap());
                }
            }
        }
        m
    }

    /// Applies ops through segments (deletes first, then upserts, closing on repeated keys).
    fn segmented(ops: &[RowOp]) -> (std::collections::BTreeMap<String, String>, usize, usize) {
        let mut m = std::collections::BTreeMap::new();
        let mut seg = Segment::default();
        let mut applied = 0;
        let mut flushes = 0;
        let mut flush = |seg: &mut Segment, m: &mut std::collections::BTreeMap<String, String>| {
            let (d, u) = seg.take();
            flushes += 1;
            for k in d {
                m.remove(k[0].as_ref().unwrap());
                applied += 1;
            }
            for r in u {
                m.insert(r[0].clone().unwrap(), r[1].clone().unwrap());
                applied += 1;
            }
        };
        for op in ops {
            if !seg.accepts(op) {
                flush(&mut seg, &mut m);
            }
            seg.push(op.clone());
        }
        flush(&mut seg, &mut m);
        (m, applied, flushes)
    }

    #[test]
    fn segments_equal_sequential_application_and_keep_every_op() {
        let ops = vec![
            up(1, "a"),
            up(2, "b"),
            del(1),
            up(3, "c"),
            up(1, "d"),
            del(2),
            del(9),
        ];
        let (state, applied, _) = segmented(&ops);
        assert_eq!(state, sequential(&ops));
        assert_eq!(applied, ops.len(), "no operation is merged away");
    }

    #[test]
    fn randomized_segments_match_sequential() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let ops: Vec<RowOp> = (0..rng.gen_range(1..60))
                .map(|_| {
                    let k = rng.gen_range(0..8);
                    if rng.gen_bool(0.3) {
                        del(k)
                    } else {
                        up(k, &rng.gen_range(0..1000).to_string())
                    }
                })
                .collect();
            let (state, applied, _) = segmented(&ops);
            assert_eq!(state, sequential(&ops), "{ops:?}");
            assert_eq!(applied, ops.len());
        }
    }

    #[test]
    fn distinct_keys_share_one_segment() {
        let ops: Vec<RowOp> = (0..100).map(|k| up(k, "x")).collect();
        let (_, _, flushes) = segmented(&ops);
        assert_eq!(flushes, 1);
    }

    #[test]
    fn column_major_arrays() {
        let rows = vec![
            vec![Some("1".to_string()), None],
            vec![Some("2".to_string()), Some("b".to_string())],
        ];
        let cols = columns_of(&rows, 2);
        assert_eq!(cols[0], vec![Some("1"), Some("2")]);
        assert_eq!(cols[1], vec![None, Some("b")]);
    }
}
