//! Bulk writes for the backfill: rows as PostgreSQL `COPY ... FROM STDIN` text, written in the
//! same transaction as the statement that records how far the copy got.
//!
//! Guarantees: the text encoding is exact — every cell is PostgreSQL's own input form (from
//! `transform`), with COPY's escapes for backslash, tab, newline and carriage return and `\N` for
//! NULL; a chunk and its progress record commit together, so a crash never leaves a chunk half
//! written or written without its record (resume neither skips nor repeats a chunk).

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::schema::Table;
use crate::transform::Cell;

/// Appends one row in COPY text format.
pub fn encode_row(buf: &mut BytesMut, row: &[Cell]) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b'\t');
        }
        match cell {
            None => buf.put_slice(b"\\N"),
            Some(text) => {
                let bytes = text.as_bytes();
                if !bytes
                    .iter()
                    .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
                {
                    buf.put_slice(bytes);
                    continue;
                }
                for b in bytes {
                    match b {
                        b'\\' => buf.put_slice(b"\\\\"),
                        b'\t' => buf.put_slice(b"\\t"),
                        b'\n' => buf.put_slice(b"\\n"),
                        b'\r' => buf.put_slice(b"\\r"),
                        other => buf.put_u8(*other),
                    }
                }
            }
        }
    }
    buf.put_u8(b'\n');
}

/// `COPY "schema"."table" (cols) FROM STDIN`.
pub fn copy_sql(t: &Table) -> String {
    let cols: Vec<&str> = t.columns.iter().map(|c| c.quoted.as_str()).collect();
    format!("COPY {} ({}) FROM STDIN", t.target_quoted, cols.join(", "))
}

/// Writes one encoded chunk, given as COPY data frames (each sent as its own message), and
/// runs `record` (the progress statement) in one transaction, plus `dead` = (statement, stream,
/// JSON array) for rows set aside, when there are any.
///
/// # Errors
/// PostgreSQL errors (the transaction is rolled back).
pub async fn write_chunk(
    client: &mut Client,
    copy: &str,
    frames: Vec<Bytes>,
    record: &str,
    params: &[&(dyn ToSql + Sync)],
    dead: Option<(&str, &String, &str)>,
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let sink = tx.copy_in::<_, Bytes>(copy).await?;
    futures_util::pin_mut!(sink);
    for frame in frames {
        sink.feed(frame).await?;
    }
    let rows = sink.finish().await?;
    tx.execute(record, params).await?;
    if let Some((sql, stream, json)) = dead {
        tx.execute(sql, &[stream, &json]).await?;
    }
    tx.commit().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes() {
        let mut buf = BytesMut::new();
        encode_row(
            &mut buf,
            &[
                Some("plain".into()),
                None,
                Some("a\tb\nc\\d\re".into()),
                Some("\\x00ff".into()),
                Some(String::new()),
            ],
        );
        assert_eq!(
            &buf[..],
            b"plain\t\\N\ta\\tb\\nc\\\\d\\re\t\\\\x00ff\t\n".as_slice()
        );
    }
}
