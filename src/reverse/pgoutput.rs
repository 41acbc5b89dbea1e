//! A pure decoder of PostgreSQL's `pgoutput` logical replication messages (protocol version 1):
//! one message's bytes → one [`Message`].
//!
//! Guarantees: no I/O and no allocation beyond the decoded values; every message kind that
//! protocol version 1 sends without streaming (Begin, Commit, Origin, Relation, Type, Insert,
//! Update, Delete, Truncate, and the logical decoding Message) is decoded field by field, and
//! anything else — an unknown kind, a truncated message, trailing bytes — is a [`DecodeError`],
//! never a guess. Column values keep pgoutput's three cases apart: `'n'` NULL, `'u'` an
//! unchanged TOASTed value (not sent: an update must leave that column as it is), `'t'` the
//! value in the type's text output form.

use super::lsn::Lsn;

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// An unchanged TOASTed value PostgreSQL did not send.
    Unchanged,
    /// The type's text output (what `SELECT col::text` prints).
    Text(Vec<u8>),
    /// Binary form (only with the `binary` option, which ferry does not ask for).
    Binary(Vec<u8>),
}

/// A row image: one datum per relation column, in the relation's column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple(pub Vec<Datum>);

/// Which old image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldImage {
    /// `'K'`: the replica identity's key columns only (others are NULL).
    Key,
    /// `'O'`: the whole old row (REPLICA IDENTITY FULL).
    Full,
}

/// One relation column as the Relation message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A Relation message: sent before the first change of a table in a session and again after
/// its definition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// `relreplident`: `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        /// The transaction's commit LSN.
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 00:00:00 UTC.
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        /// The end of the commit record: where a consumer that applied this transaction resumes.
        end_lsn: Lsn,
        commit_time: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        old: Option<(OldImage, Tuple)>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        kind: OldImage,
        old: Tuple,
    },
    Truncate {
        /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
        options: u8,
        relations: Vec<u32>,
    },
    /// A `pg_logical_emit_message` (only sent with the `messages` option).
    LogicalMessage {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
}

/// Bytes that are not a pgoutput version 1 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("pgoutput message {kind:?} ends early, reading {what}")]
    Truncated { kind: char, what: &'static str },
    #[error("unknown pgoutput message kind {0:?} (0x{1:02x}); ferry speaks protocol version 1 without streaming")]
    UnknownKind(char, u8),
    #[error("pgoutput message {kind:?}: unknown tuple value kind 0x{byte:02x}")]
    TupleKind { kind: char, byte: u8 },
    #[error("pgoutput message {kind:?}: expected {expected}, found 0x{found:02x}")]
    Marker {
        kind: char,
        expected: &'static str,
        found: u8,
    },
    #[error("pgoutput message {kind:?}: {what} is not UTF-8")]
    Utf8 { kind: char, what: &'static str },
    #[error("pgoutput message {kind:?}: {extra} bytes after the end")]
    Trailing { kind: char, extra: usize },
    #[error("empty pgoutput message")]
    Empty,
}

struct Reader<'a> {
    kind: char,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                kind: self.kind,
                what,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(self.u32(what)? as i32)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        self.u64(what).map(Lsn)
    }

    /// A NUL-terminated string.
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated {
                kind: self.kind,
                what,
            })?;
        let s = std::str::from_utf8(&self.bytes[..end])
            .map_err(|_| DecodeError::Utf8 {
                kind: self.kind,
                what,
            })?
            .to_string();
        self.bytes = &self.bytes[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16("the tuple's column count")?;
        let mut values = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n.max(0) {
            values.push(match self.u8("a tuple value kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.u32("a text value's length")? as usize;
                    Datum::Text(self.take(len, "a text value")?.to_vec())
                }
                b'b' => {
                    let len = self.u32("a binary value's length")? as usize;
                    Datum::Binary(self.take(len, "a binary value")?.to_vec())
                }
                byte => {
                    return Err(DecodeError::TupleKind {
                        kind: self.kind,
                        byte,
                    })
                }
            });
        }
        Ok(Tuple(values))
    }

    fn old_image(&mut self, marker: u8) -> Result<OldImage, DecodeError> {
        match marker {
            b'K' => Ok(OldImage::Key),
            b'O' => Ok(OldImage::Full),
            found => Err(DecodeError::Marker {
                kind: self.kind,
                expected: "'K' or 'O'",
                found,
            }),
        }
    }

    fn expect_new(&mut self, marker: u8) -> Result<(), DecodeError> {
        if marker == b'N' {
            Ok(())
        } else {
            Err(DecodeError::Marker {
                kind: self.kind,
                expected: "'N'",
                found: marker,
            })
        }
    }

    fn end(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                kind: self.kind,
                extra: self.bytes.len(),
            })
        }
    }
}

/// Decodes one message.
///
/// # Errors
/// See [`DecodeError`].
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (&first, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let mut r = Reader {
        kind: first as char,
        bytes: rest,
    };
    let message = match first {
        b'B' => Message::Begin {
            final_lsn: r.lsn("the final LSN")?,
            commit_time: r.u64("the commit time")? as i64,
            xid: r.u32("the transaction id")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("the flags")?,
            commit_lsn: r.lsn("the commit LSN")?,
            end_lsn: r.lsn("the end LSN")?,
            commit_time: r.u64("the commit time")? as i64,
        },
        b'O' => Message::Origin {
            commit_lsn: r.lsn("the origin's commit LSN")?,
            name: r.string("the origin name")?,
        },
        b'R' => {
            let oid = r.u32("the relation id")?;
            let namespace = r.string("the namespace")?;
            let name = r.string("the relation name")?;
            let replica_identity = r.u8("the replica identity")?;
            let n = r.i16("the column count")?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                columns.push(RelationColumn {
                    key: r.u8("a column's flags")? & 1 == 1,
                    name: r.string("a column name")?,
                    type_oid: r.u32("a column type")?,
                    type_modifier: r.i32("a column type modifier")?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("the type id")?,
            namespace: r.string("the type's namespace")?,
            name: r.string("the type name")?,
        },
        b'I' => {
            let relation = r.u32("the relation id")?;
            let marker = r.u8("the new tuple marker")?;
            r.expect_new(marker)?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32("the relation id")?;
            let marker = r.u8("the tuple marker")?;
            let old = if marker == b'N' {
                None
            } else {
                let kind = r.old_image(marker)?;
                let tuple = r.tuple()?;
                let marker = r.u8("the new tuple marker")?;
                r.expect_new(marker)?;
                Some((kind, tuple))
            };
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("the relation id")?;
            let marker = r.u8("the old tuple marker")?;
            let kind = r.old_image(marker)?;
            Message::Delete {
                relation,
                kind,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32("the relation count")?;
            let options = r.u8("the options")?;
            let mut relations = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                relations.push(r.u32("a relation id")?);
            }
            Message::Truncate { options, relations }
        }
        b'M' => {
            let transactional = r.u8("the flags")? & 1 == 1;
            let lsn = r.lsn("the message LSN")?;
            let prefix = r.string("the prefix")?;
            let len = r.u32("the content length")? as usize;
            Message::LogicalMessage {
                transactional,
                lsn,
                prefix,
                content: r.take(len, "the content")?.to_vec(),
            }
        }
        other => return Err(DecodeError::UnknownKind(other as char, other)),
    };
    r.end()?;
    Ok(message)
}

/// PostgreSQL's epoch (2000-01-01) in Unix seconds: pgoutput's timestamps count from it.
pub const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// A pgoutput timestamp as Unix seconds.
pub fn unix_seconds(pg_micros: i64) -> f64 {
    PG_EPOCH_UNIX_SECONDS as f64 + pg_micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured messages (see the file's header for the statements that produced them).
    fn captured() -> Vec<(Lsn, u32, Message)> {
        include_str!("testdata/pgoutput_capture.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut f = l.split('|');
                let lsn: Lsn = f.next().expect("lsn").parse().expect("lsn");
                let xid: u32 = f.next().expect("xid").parse().expect("xid");
                let bytes = hex::decode(f.next().expect("data")).expect("hex");
                (lsn, xid, decode(&bytes).expect("decodes"))
            })
            .collect()
    }

    fn text(s: &str) -> Datum {
        Datum::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn captured_transactions_decode_in_order() {
        let all = captured();
        let kinds: String = all
            .iter()
            .map(|(_, _, m)| match m {
                Message::Begin { .. } => 'B',
                Message::Commit { .. } => 'C',
                Message::Relation(_) => 'R',
                Message::Insert { .. } => 'I',
                Message::Update { .. } => 'U',
                Message::Delete { .. } => 'D',
                Message::Truncate { .. } => 'T',
                _ => '?',
            })
            .collect();
        assert_eq!(kinds, "BRICBUCBUCBDCBRICBUCBDCBRTC");
        // Each Begin's final LSN is its Commit's commit LSN; transactions end in WAL order.
        let mut last_end = Lsn(0);
        let mut open = None;
        for (_, _, m) in &all {
            match m {
                Message::Begin { final_lsn, .. } => open = Some(*final_lsn),
                Message::Commit {
                    commit_lsn,
                    end_lsn,
                    ..
                } => {
                    assert_eq!(open.take(), Some(*commit_lsn));
                    assert!(*end_lsn > *commit_lsn && *end_lsn > last_end);
                    last_end = *end_lsn;
                }
                _ => {}
            }
        }
        assert_eq!(last_end, "0/1DE84F0".parse().expect("lsn"));
    }

    #[test]
    fn begin_and_commit_carry_lsns_time_and_xid() {
        let all = captured();
        let Message::Begin {
            final_lsn,
            commit_time,
            xid,
        } = &all[0].2
        else {
            panic!("first is Begin: {:?}", all[0].2)
        };
        assert_eq!(*final_lsn, "0/1DE7428".parse().expect("lsn"));
        assert_eq!(*xid, 757);
        assert_eq!(*xid, all[0].1);
        // Captured in 2026.
        let unix = unix_seconds(*commit_time);
        assert!(unix > 1.7e9 && unix < 1.9e9, "{unix}");
        assert_eq!(
            all[3].2,
            Message::Commit {
                flags: 0,
                commit_lsn: "0/1DE7428".parse().expect("lsn"),
                end_lsn: "0/1DE7458".parse().expect("lsn"),
                commit_time: *commit_time,
            }
        );
    }

    #[test]
    fn relations_name_columns_types_and_identity() {
        let all = captured();
        let Message::Relation(items) = &all[1].2 else {
            panic!("{:?}", all[1].2)
        };
        assert_eq!(
            (items.namespace.as_str(), items.name.as_str()),
            ("shop", "items")
        );
        assert_eq!(items.replica_identity, b'd');
        let cols: Vec<(&str, u32, bool)> = items
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_oid, c.key))
            .collect();
        assert_eq!(
            cols,
            [
                ("id", 23, true),
                ("n", 20, false),
                ("note", 25, false),
                ("big", 25, false)
            ]
        );
        let Message::Relation(log) = &all[14].2 else {
            panic!("{:?}", all[14].2)
        };
        assert_eq!(log.replica_identity, b'f');
        // varchar(10): type 1043, modifier 10 + 4; FULL marks every column as key.
        assert_eq!(log.columns[1].type_oid, 1043);
        assert_eq!(log.columns[1].type_modifier, 14);
        assert!(log.columns.iter().all(|c| c.key));
    }

    #[test]
    fn tuples_keep_null_unchanged_toast_and_text_apart() {
        let all = captured();
        let rel = match &all[1].2 {
            Message::Relation(r) => r.oid,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            all[2].2,
            Message::Insert {
                relation: rel,
                new: Tuple(vec![text("2"), Datum::Null, text("b'c"), Datum::Null]),
            }
        );
        // The TOASTed `big` was not changed: not sent, and not NULL.
        assert_eq!(
            all[5].2,
            Message::Update {
                relation: rel,
                old: None,
                new: Tuple(vec![text("1"), text("11"), text("a"), Datum::Unchanged]),
            }
        );
        // A key change carries the old key.
        assert_eq!(
            all[8].2,
            Message::Update {
                relation: rel,
                old: Some((
                    OldImage::Key,
                    Tuple(vec![text("2"), Datum::Null, Datum::Null, Datum::Null])
                )),
                new: Tuple(vec![text("3"), Datum::Null, text("b'c"), Datum::Null]),
            }
        );
        assert_eq!(
            all[11].2,
            Message::Delete {
                relation: rel,
                kind: OldImage::Key,
                old: Tuple(vec![text("3"), Datum::Null, Datum::Null, Datum::Null]),
            }
        );
        // REPLICA IDENTITY FULL: the whole old row.
        let Message::Update { old, new, .. } = &all[18].2 else {
            panic!("{:?}", all[18].2)
        };
        assert_eq!(
            old,
            &Some((OldImage::Full, Tuple(vec![text("7"), text("seven")])))
        );
        assert_eq!(new, &Tuple(vec![text("7"), text("eight")]));
        assert_eq!(
            all[25].2,
            Message::Truncate {
                options: 0,
                relations: vec![rel],
            }
        );
    }

    #[test]
    fn malformed_bytes_are_errors_not_guesses() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert!(matches!(
            decode(b"Z"),
            Err(DecodeError::UnknownKind('Z', b'Z'))
        ));
        // A Begin cut short.
        let begin = hex::decode("420000000001de7428000304b9fa2b6100000002f5").expect("hex");
        assert!(decode(&begin).is_ok());
        assert!(matches!(
            decode(&begin[..begin.len() - 1]),
            Err(DecodeError::Truncated { kind: 'B', .. })
        ));
        let mut long = begin.clone();
        long.push(0);
        assert_eq!(
            decode(&long),
            Err(DecodeError::Trailing {
                kind: 'B',
                extra: 1
            })
        );
        // An insert whose tuple has an unknown value kind.
        let insert = hex::decode("490000401a4e00017800").expect("hex");
        assert_eq!(
            decode(&insert),
            Err(DecodeError::TupleKind {
                kind: 'I',
                byte: b'x'
            })
        );
        // Origin and Type messages.
        let mut origin = vec![b'O'];
        origin.extend_from_slice(&7u64.to_be_bytes());
        origin.extend_from_slice(b"pg_1\0");
        assert_eq!(
            decode(&origin),
            Ok(Message::Origin {
                commit_lsn: Lsn(7),
                name: "pg_1".into()
            })
        );
        let mut ty = vec![b'Y'];
        ty.extend_from_slice(&16385u32.to_be_bytes());
        ty.extend_from_slice(b"public\0geometry\0");
        assert_eq!(
            decode(&ty),
            Ok(Message::Type {
                oid: 16385,
                namespace: "public".into(),
                name: "geometry".into()
            })
        );
    }
}
