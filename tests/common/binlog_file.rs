//! Reads a recorded binlog file event by event, the way the live stream delivers it: every event
//! in file order, and right after a TRANSACTION_PAYLOAD event the events compressed inside it
//! (what `mysql_async`'s `BinlogStream` does with `danger_decompress` + `read_decompressed`).
//!
//! Unlike `danger_decompress`, which returns an empty buffer when zstd fails (the transaction
//! would silently vanish), a payload that does not decompress to its declared size is an error
//! here, so a fixture test cannot pass by skipping events. Each event's CRC32 is verified when
//! the file has checksums, as ferry's reader does on the live stream.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::{Event, TableMapEvent, TransactionPayloadEvent};
use mysql_common::binlog::BinlogFile;

/// An event and where it came from.
pub struct FileEvent {
    pub event: Event,
    /// The event was compressed inside a TRANSACTION_PAYLOAD (its header carries no log_pos).
    pub in_payload: bool,
}

/// Iterator over the events of one binlog file, payload contents included.
pub struct BinlogEvents {
    file: BinlogFile<BufReader<File>>,
    /// Decompressed payload being read, if any.
    payload: Option<Cursor<Vec<u8>>>,
}

impl BinlogEvents {
    /// Opens a binlog file (checks the `\xfebin` magic).
    pub fn open(path: &Path) -> io::Result<BinlogEvents> {
        let file = File::open(path)?;
        Ok(BinlogEvents {
            file: BinlogFile::new(BinlogVersion::Version4, BufReader::new(file))?,
            payload: None,
        })
    }

    /// The table map the stream last saw for `table_id` (inside payloads too).
    pub fn tme(&self, table_id: u64) -> Option<&TableMapEvent<'static>> {
        self.file.reader().get_tme(table_id)
    }

    fn decompress(event: &Event) -> io::Result<Vec<u8>> {
        let tpe = event.read_event::<TransactionPayloadEvent<'_>>()?;
        let mut out = Vec::with_capacity(tpe.uncompressed_size() as usize);
        tpe.decompressed()?.read_to_end(&mut out)?;
        if out.len() as u64 != tpe.uncompressed_size() {
            return Err(io::Error::other(format!(
                "transaction payload decompressed to {} bytes, header says {}",
                out.len(),
                tpe.uncompressed_size()
            )));
        }
        Ok(out)
    }

    fn verify_checksum(event: &Event) -> io::Result<()> {
        let crc32 = BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32;
        let footer = event.footer();
        if footer.get_checksum_enabled()
            && matches!(footer.get_checksum_alg(), Ok(Some(a)) if a == crc32)
        {
            if let Some(sum) = event.checksum() {
                if u32::from_le_bytes(sum) != event.calc_checksum(crc32) {
                    return Err(io::Error::other(format!(
                        "CRC32 mismatch in the event ending at {}",
                        event.header().log_pos()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Iterator for BinlogEvents {
    type Item = io::Result<FileEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(cursor) = self.payload.as_mut() {
            match self.file.reader_mut().read_decompressed(cursor) {
                Ok(Some(event)) => {
                    return Some(Ok(FileEvent {
                        event,
                        in_payload: true,
                    }))
                }
                Ok(None) => self.payload = None,
                Err(e) => {
                    self.payload = None;
                    return Some(Err(e));
                }
            }
        }
        let event = match self.file.next()? {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = Self::verify_checksum(&event) {
            return Some(Err(e));
        }
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            match Self::decompress(&event) {
                Ok(bytes) => self.payload = Some(Cursor::new(bytes)),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(FileEvent {
            event,
            in_payload: false,
        }))
    }
}
