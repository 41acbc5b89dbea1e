//! PostgreSQL's size limit on one row, checked before the row leaves ferry.
//!
//! ferry sends every value in PostgreSQL's text input form: inside a COPY line (backfill) or a
//! Bind message (streaming). PostgreSQL holds a COPY line, a protocol message and any single
//! value in one buffer of at most 1 GiB − 1 byte (`MaxAllocSize`), so a row whose text form is
//! larger cannot be written, however often it is retried — and a Bind message over the limit
//! makes the server drop the connection, which would look like a transient failure and loop.
//!
//! Guarantees: [`check_row`] accepts every row PostgreSQL can take in one message and refuses,
//! before anything is sent, every row it could not, naming the largest column and the sizes.
//! A bytea value travels as hex (twice its size plus two bytes), so binary values up to about
//! 511 MiB pass; text up to about 1023 MiB. Pure: no I/O.

use super::Cell;

/// The largest row text ferry sends: PostgreSQL's 1 GiB buffer less 1 MiB for the message's
/// own framing (column separators, escapes, array and parameter headers).
pub const MAX_ROW_TEXT_BYTES: usize = (1 << 30) - (1 << 20);

/// A row too large for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversize {
    /// Position of the largest column.
    pub column: usize,
    /// Text bytes of that column.
    pub column_bytes: usize,
    /// Text bytes of the whole row.
    pub row_bytes: usize,
}

impl Oversize {
    /// What happened and what to do, for a row of `table` whose key reads `key`.
    pub fn describe(&self, column: &str, key_names: &str, key: &str) -> String {
        format!(
            "column `{column}` of the row with key ({key_names}) = ({key}) is {} in PostgreSQL's \
             text form (the whole row {}; a binary value travels as hex, twice its size), and \
             PostgreSQL takes at most {} per row (1 GiB per value and per protocol message), so \
             the row cannot be written on any attempt. Fix: keep such values under {} (binary) \
             or {} (text) on the source, or exclude the table (`tables.exclude`)",
            mib(self.column_bytes),
            mib(self.row_bytes),
            mib(MAX_ROW_TEXT_BYTES),
            mib(MAX_ROW_TEXT_BYTES / 2 - 1),
            mib(MAX_ROW_TEXT_BYTES),
        )
    }
}

/// Bytes of a row's cells in text form (NULLs count nothing).
pub fn row_text_bytes(cells: &[Cell]) -> usize {
    cells
        .iter()
        .map(|c| c.as_ref().map_or(0, String::len))
        .sum()
}

/// Refuses a row whose text form PostgreSQL cannot take (see the module docs).
///
/// # Errors
/// [`Oversize`] naming the largest column.
pub fn check_row(cells: &[Cell]) -> Result<(), Oversize> {
    check_row_bytes(cells, row_text_bytes(cells))
}

/// Like [`check_row`] with the row's size as it will be sent (e.g. with COPY escapes).
///
/// # Errors
/// [`Oversize`] naming the largest column.
pub fn check_row_bytes(cells: &[Cell], row_bytes: usize) -> Result<(), Oversize> {
    if row_bytes <= MAX_ROW_TEXT_BYTES {
        return Ok(());
    }
    let (column, column_bytes) = cells
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.as_ref().map_or(0, String::len)))
        .max_by_key(|&(_, n)| n)
        .unwrap_or((0, 0));
    Err(Oversize {
        column,
        column_bytes,
        row_bytes,
    })
}

/// `1.5 MiB`-style size.
pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_under_the_limit_pass_and_over_it_name_the_largest_column() {
        let small = vec![Some("1".to_string()), None, Some("x".repeat(1000))];
        assert_eq!(check_row(&small), Ok(()));
        assert_eq!(row_text_bytes(&small), 1001);
        // The check takes the size as sent; a row just over the limit names its biggest column.
        let err = check_row_bytes(&small, MAX_ROW_TEXT_BYTES + 1).expect_err("over the limit");
        assert_eq!(err.column, 2);
        assert_eq!(err.column_bytes, 1000);
        assert_eq!(check_row_bytes(&small, MAX_ROW_TEXT_BYTES), Ok(()));
        let text = err.describe("doc", "id", "7");
        assert!(
            text.contains("column `doc` of the row with key (id) = (7)"),
            "{text}"
        );
        assert!(text.contains("1023.0 MiB per row"), "{text}");
        assert!(text.contains("tables.exclude"), "{text}");
    }

    #[test]
    fn sizes_read_as_mib() {
        assert_eq!(mib(512 << 10), "0.5 MiB");
        assert_eq!(mib(3 << 20), "3.0 MiB");
    }
}
