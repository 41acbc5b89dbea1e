//! Batching of row operations into set-based statements without changing their meaning.
//!
//! A [`Segment`] collects one table's operations in source order into *generations*: the n-th
//! operation on a key (within the segment) goes to generation n. Each generation therefore holds
//! at most one operation per key, and every key's operations sit in successive generations in
//! source order. Applying generation after generation — each as all its deletes, then all its
//! upserts — gives exactly the state sequential application gives: within a generation the
//! operations touch different rows, and a key's later operations always come in a later
//! generation. Every source row operation is applied exactly once, as itself — never merged away —
//! which keeps `AFTER ROW` trigger counts and audit trails on the target identical to a
//! one-by-one replay. Operations on different keys may be reordered, which only matters to
//! unique constraints checked per row: ferry creates its unique keys DEFERRABLE INITIALLY
//! DEFERRED (checked at commit, on a consistent state), and falls back to one-by-one replay when
//! a user-made immediate constraint objects.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::change::{Key, RowOp};
use crate::schema::Table;
use crate::transform::Cell;

/// Operations of one generation: distinct keys, so deletes, inserts and upserts may run in
/// any order.
#[derive(Debug, Default)]
pub struct Generation {
    pub deletes: Vec<Key>,
    /// Rows the source inserted (see [`RowOp::Insert`]).
    pub inserts: Vec<Vec<Cell>>,
    pub upserts: Vec<Vec<Cell>>,
}

/// One table's pending operations.
#[derive(Debug, Default)]
pub struct Segment {
    /// Operations seen per key (the next operation on the key joins that generation).
    seen: HashMap<Key, usize>,
    generations: Vec<Generation>,
    len: usize,
    /// Bytes of the pending values (text form), for the statement's byte budget.
    bytes: usize,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the pending values in text form ([`RowOp::bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an operation after all earlier ones on its key.
    pub fn push(&mut self, op: RowOp) {
        let slot = self.seen.entry(op.key().clone()).or_insert(0);
        let g = *slot;
        *slot += 1;
        self.bytes += op.bytes();
        if self.generations.len() <= g {
            self.generations.resize_with(g + 1, Generation::default);
        }
        match op {
            RowOp::Delete { key } => self.generations[g].deletes.push(key),
            RowOp::Insert { row, .. } => self.generations[g].inserts.push(row),
            RowOp::Upsert { row, .. } => self.generations[g].upserts.push(row),
        }
        self.len += 1;
    }

    /// Empties the segment, returning its generations in application order.
    pub fn take(&mut self) -> Vec<Generation> {
        self.seen.clear();
        self.len = 0;
        self.bytes = 0;
        std::mem::take(&mut self.generations)
    }
}

/// Orders a generation's rows by key, in the key index's order where that is cheap to know
/// (integer columns compare as numbers; other columns by their bytes, which still keeps equal
/// prefixes together). PostgreSQL then walks the key index and the heap in order instead of
/// jumping around them — measured about 7% faster on an upsert of 5,000 random keys. Rows of
/// one generation have distinct keys, so their order never changes the outcome.
pub struct KeyOrder {
    /// Per key column: its position in a full row, and whether it holds an integer.
    columns: Vec<(usize, bool)>,
}

impl KeyOrder {
    pub fn of(table: &Table) -> KeyOrder {
        KeyOrder {
            columns: table
                .key
                .iter()
                .map(|&i| (i, table.columns[i].pg_type.is_integer()))
                .collect(),
        }
    }

    /// Sorts full rows by their key columns.
    pub fn sort_rows(&self, rows: &mut [Vec<Cell>]) {
        rows.sort_unstable_by(|a, b| {
            self.columns
                .iter()
                .map(|&(i, integer)| compare_cells(&a[i], &b[i], integer))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }

    /// Sorts keys (cells in key order).
    pub fn sort_keys(&self, keys: &mut [Key]) {
        keys.sort_unstable_by(|a, b| {
            self.columns
                .iter()
                .enumerate()
                .map(|(k, &(_, integer))| compare_cells(&a[k], &b[k], integer))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }
}

fn compare_cells(a: &Cell, b: &Cell, integer: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if integer => compare_integer_text(a, b),
        _ => a.cmp(b),
    }
}

/// Numeric order of canonical integer text (no leading zeros, `-` for negatives).
fn compare_integer_text(a: &str, b: &str) -> Ordering {
    match (a.strip_prefix('-'), b.strip_prefix('-')) {
        (None, None) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        (Some(x), Some(y)) => y.len().cmp(&x.len()).then_with(|| y.cmp(x)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
    }
}

/// Column-major text arrays for `unnest($1::text[], ...)` parameters (cells are moved, not
/// copied).
pub fn into_columns(rows: Vec<Vec<Cell>>, width: usize) -> Vec<Vec<Cell>> {
    let n = rows.len();
    let mut cols: Vec<Vec<Cell>> = (0..width).map(|_| Vec::with_capacity(n)).collect();
    for row in rows {
        for (c, cell) in row.into_iter().enumerate() {
            cols[c].push(cell);
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

    fn ins(k: i64, v: &str) -> RowOp {
        RowOp::Insert {
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
                RowOp::Insert { key, row } | RowOp::Upsert { key, row } => {
                    m.insert(key[0].clone().unwrap(), row[1].clone().unwrap());
                }
                RowOp::Delete { key } => {
                    m.remove(key[0].as_ref().unwrap());
                }
            }
        }
        m
    }

    /// Applies ops through a segment (generation by generation, deletes then upserts).
    fn segmented(ops: &[RowOp]) -> (std::collections::BTreeMap<String, String>, usize, usize) {
        let mut m = std::collections::BTreeMap::new();
        let mut seg = Segment::default();
        for op in ops {
            seg.push(op.clone());
        }
        assert_eq!(seg.len(), ops.len());
        assert_eq!(seg.bytes(), ops.iter().map(RowOp::bytes).sum::<usize>());
        let gens = seg.take();
        assert_eq!(seg.bytes(), 0);
        let mut applied = 0;
        for g in &gens {
            for k in &g.deletes {
                m.remove(k[0].as_ref().unwrap());
                applied += 1;
            }
            for r in g.inserts.iter().chain(&g.upserts) {
                m.insert(r[0].clone().unwrap(), r[1].clone().unwrap());
                applied += 1;
            }
        }
        assert!(seg.is_empty());
        (m, applied, gens.len())
    }

    #[test]
    fn segments_equal_sequential_application_and_keep_every_op() {
        let ops = vec![
            ins(1, "a"),
            up(2, "b"),
            del(1),
            up(3, "c"),
            ins(1, "d"),
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
                    } else if rng.gen_bool(0.3) {
                        ins(k, &rng.gen_range(0..1000).to_string())
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
    fn generations_grow_with_repeats_not_with_length() {
        let ops: Vec<RowOp> = (0..100).map(|k| up(k, "x")).collect();
        assert_eq!(segmented(&ops).2, 1, "distinct keys share one generation");
        let mut ops: Vec<RowOp> = (0..100).map(|k| up(k % 10, "x")).collect();
        ops.push(del(3));
        assert_eq!(segmented(&ops).2, 11, "ten ops per key, plus one delete");
    }

    #[test]
    fn integer_keys_sort_as_numbers() {
        let mut v: Vec<&str> = vec!["10", "-2", "9", "0", "-10", "100", "-1", "11"];
        v.sort_by(|a, b| compare_integer_text(a, b));
        assert_eq!(v, ["-10", "-2", "-1", "0", "9", "10", "11", "100"]);
        let mut nums: Vec<i64> = (0..500).map(|i| (i * 7919) % 1013 - 506).collect();
        let mut text: Vec<String> = nums.iter().map(|n| n.to_string()).collect();
        nums.sort();
        text.sort_by(|a, b| compare_integer_text(a, b));
        assert_eq!(text, nums.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn column_major_arrays() {
        let rows = vec![
            vec![Some("1".to_string()), None],
            vec![Some("2".to_string()), Some("b".to_string())],
        ];
        let cols = into_columns(rows, 2);
        assert_eq!(cols[0], vec![Some("1".to_string()), Some("2".to_string())]);
        assert_eq!(cols[1], vec![None, Some("b".to_string())]);
    }
}
