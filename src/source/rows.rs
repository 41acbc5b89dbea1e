//! Row images of a rows event, decoded value by value with `mysql_common`'s own value decoder
//! ([`BinlogValue`]'s deserializer), but with the per-column decoding context (type, metadata,
//! signedness) computed once per table map instead of once per row.
//!
//! `mysql_common`'s `BinlogRow` rebuilds a `Column` (several owned byte strings) per column per
//! row and re-walks the table map's metadata for every column — most of ferry's CPU in a catch-up
//! profile. This module walks the same wire format (`rows_event.cc` / `BinlogRow::deserialize`):
//! optional shared-image header (partial JSON), null bitmap over the columns present in the
//! image, then the non-null values in column order.
//!
//! Guarantees: the same values `BinlogRow` yields (the value decoder is the library's); a
//! truncated or inconsistent image is an error, never a guess.

use std::io;

use mysql_common::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_common::binlog::row::BinlogRowValueOptions;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::misc::raw::int::LenEnc;
use mysql_common::misc::raw::RawInt;

/// One column's decoding context.
#[derive(Debug, Clone)]
struct ColumnPlan {
    ty: ColumnType,
    meta: Vec<u8>,
    unsigned: bool,
}

/// Decoding context of every column of a table map.
#[derive(Debug, Clone)]
pub struct TablePlan {
    columns: Vec<ColumnPlan>,
    json_columns: usize,
}

impl ColumnPlan {
    /// Refuses metadata shorter than the value decoder reads for the type (`mysql_common`
    /// indexes it unchecked: a short or corrupt table map would otherwise panic the reader).
    fn new(ty: ColumnType, meta: Vec<u8>, unsigned: bool) -> io::Result<ColumnPlan> {
        use ColumnType::*;
        let needed = match ty {
            MYSQL_TYPE_STRING
            | MYSQL_TYPE_ENUM
            | MYSQL_TYPE_SET
            | MYSQL_TYPE_BIT
            | MYSQL_TYPE_NEWDECIMAL
            | MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING => 2,
            MYSQL_TYPE_TIMESTAMP2
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIME2
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_VECTOR => 1,
            // An array's element type comes first, then that type's own metadata.
            MYSQL_TYPE_TYPED_ARRAY => 3,
            _ => 0,
        };
        if meta.len() < needed {
            return Err(invalid(format!(
                "table map metadata of a {ty:?} column has {} byte(s), the type needs {needed}",
                meta.len()
            )));
        }
        if ty == MYSQL_TYPE_NEWDECIMAL {
            let (precision, scale) = (meta[0], meta[1]);
            if !(1..=65).contains(&precision) || scale > 30 || scale > precision {
                return Err(invalid(format!(
                    "table map metadata of a DECIMAL column says precision {precision}, scale {scale}: MySQL allows 1–65 and 0–30, scale at most precision"
                )));
            }
        }
        Ok(ColumnPlan { ty, meta, unsigned })
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl TablePlan {
    /// Builds the plan from a table map.
    ///
    /// # Errors
    /// Unknown column types or unreadable metadata.
    pub fn new(tme: &TableMapEvent<'_>) -> io::Result<TablePlan> {
        let n = tme.columns_count() as usize;
        let extractor = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
        let mut signedness = extractor.iter_signedness();
        let mut columns = Vec::with_capacity(n);
        let mut json_columns = 0;
        for i in 0..n {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| invalid(e.to_string()))?
                .ok_or_else(|| invalid("no column type"))?;
            let meta = tme.get_column_metadata(i).unwrap_or(&[]).to_vec();
            let unsigned = ty
                .is_numeric_type()
                .then(|| signedness.next())
                .flatten()
                .unwrap_or_default();
            if ty == ColumnType::MYSQL_TYPE_JSON {
                json_columns += 1;
            }
            columns.push(ColumnPlan::new(ty, meta, unsigned)?);
        }
        Ok(TablePlan {
            columns,
            json_columns,
        })
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }
}

/// A TIME(1) or TIME(2) value (3 bytes of seconds, 1 of hundredths). Decoded here, not by
/// `mysql_common`: its decoder subtracts the borrow of a negative value with a fraction from an
/// unsigned byte, which overflows (`'-00:00:01.50'` panics a debug build and decodes to a
/// wrong time in a release build). The arithmetic is MySQL's `my_time_packed_from_binary`.
fn time2_tenths(buf: &mut ParseBuf<'_>) -> io::Result<mysql_common::value::Value> {
    use mysql_common::binlog::misc::{time_from_packed, TIMEF_INT_OFS};
    let bytes: &[u8] = buf.parse(4)?;
    let mut int_part = (i64::from(bytes[0]) << 16 | i64::from(bytes[1]) << 8 | i64::from(bytes[2]))
        - TIMEF_INT_OFS;
    let mut frac = i64::from(bytes[3]);
    if int_part < 0 && frac > 0 {
        int_part += 1;
        frac -= 0x100;
    }
    Ok(time_from_packed((int_part << 24) + frac * 10_000))
}

/// Bytes per group of 0–9 decimal digits in MySQL's binary DECIMAL.
const DIGIT_GROUP_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Checks, without consuming it, that the binary DECIMAL(precision, scale) at the front of
/// `buf` holds in each group only as many digits as the group has room for. MySQL never writes
/// more; `mysql_common`'s decoder would overflow on such bytes (a panic in a debug build, a
/// wrong number in a release one), so corrupt bytes are an error here instead.
fn check_decimal_groups(buf: &ParseBuf<'_>, precision: usize, scale: usize) -> io::Result<()> {
    let int_digits = precision - scale; // ColumnPlan::new checked scale <= precision
                                        // Digits per group, most significant first (no allocation: this runs for every value).
    let groups = std::iter::once(int_digits % 9)
        .chain(std::iter::repeat(9).take(int_digits / 9 + scale / 9))
        .chain(std::iter::once(scale % 9));
    let size: usize = groups.clone().map(|g| DIGIT_GROUP_BYTES[g]).sum();
    let Some(bytes) = buf.0.get(..size) else {
        return Ok(()); // too short: the decoder reports it
    };
    // The sign bit is inverted; a negative number has every byte inverted as well.
    let negative = bytes.first().is_some_and(|b| b & 0x80 == 0);
    let mut at = 0;
    for digits in groups {
        let n = DIGIT_GROUP_BYTES[digits];
        let value = bytes[at..at + n]
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, b)| {
                let mut b = if negative { !b } else { *b };
                if at == 0 && i == 0 {
                    b ^= 0x80;
                }
                v << 8 | u64::from(b)
            });
        if digits > 0 && value >= 10u64.pow(digits as u32) {
            return Err(invalid(format!(
                "binary DECIMAL({precision},{scale}) holds a digit group of {value}, more than {digits} digit(s)"
            )));
        }
        at += n;
    }
    Ok(())
}

/// A decoded image: one entry per table column; `None` for columns absent from the image.
pub type Image<'a> = Vec<Option<BinlogValue<'a>>>;

fn bit(bytes: &[u8], i: usize) -> bool {
    bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn read_image<'a>(
    plan: &'a TablePlan,
    present: &[bool],
    shared: bool,
    buf: &mut ParseBuf<'a>,
) -> io::Result<Image<'a>> {
    let mut partial_json: Option<Vec<u8>> = None;
    if shared {
        let options = *buf.parse::<RawInt<LenEnc>>(())?;
        if options & BinlogRowValueOptions::PARTIAL_JSON_UPDATES as u64 != 0 {
            let len = plan.json_columns.div_ceil(8);
            let bits: &[u8] = buf.parse(len)?;
            partial_json = Some(bits.to_vec());
        }
    }
    let present_count = present.iter().filter(|p| **p).count();
    let nulls: &[u8] = buf.parse(present_count.div_ceil(8))?;
    let mut image = Vec::with_capacity(plan.columns.len());
    let mut image_idx = 0;
    let mut json_idx = 0;
    for (i, col) in plan.columns.iter().enumerate() {
        let is_json = col.ty == ColumnType::MYSQL_TYPE_JSON;
        let is_partial = is_json && partial_json.as_deref().is_some_and(|b| bit(b, json_idx));
        if is_json {
            json_idx += 1;
        }
        if !present[i] {
            image.push(None);
            continue;
        }
        if bit(nulls, image_idx) {
            image.push(Some(BinlogValue::Value(mysql_common::value::Value::NULL)));
        } else {
            if col.ty == ColumnType::MYSQL_TYPE_NEWDECIMAL {
                check_decimal_groups(buf, col.meta[0].into(), col.meta[1].into())?;
            }
            if col.ty == ColumnType::MYSQL_TYPE_TIME2 && matches!(col.meta[0], 1 | 2) {
                image.push(Some(BinlogValue::Value(time2_tenths(buf)?)));
            } else {
                let ctx = (col.ty, col.meta.as_slice(), col.unsigned, is_partial);
                image.push(Some(buf.parse::<BinlogValue<'a>>(ctx)?));
            }
        }
        image_idx += 1;
    }
    Ok(image)
}

/// (before image, after image) pairs of a rows event.
pub fn images<'a>(
    event: &'a RowsEventData<'a>,
    plan: &'a TablePlan,
) -> io::Result<Vec<(Option<Image<'a>>, Option<Image<'a>>)>> {
    let n = event.num_columns() as usize;
    if n != plan.len() {
        return Err(invalid(format!(
            "rows event has {n} columns, its table map {}",
            plan.len()
        )));
    }
    let before: Option<Vec<bool>> = event
        .columns_before_image()
        .map(|bits| (0..n).map(|i| bits.get(i).is_some_and(|x| *x)).collect());
    let after: Option<Vec<bool>> = event
        .columns_after_image()
        .map(|bits| (0..n).map(|i| bits.get(i).is_some_and(|x| *x)).collect());
    let partial = matches!(event, RowsEventData::PartialUpdateRowsEvent(_));
    let mut buf = ParseBuf(event.rows_data());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let left = buf.len();
        let b = match &before {
            Some(p) => Some(read_image(plan, p, false, &mut buf)?),
            None => None,
        };
        let a = match &after {
            Some(p) => Some(read_image(plan, p, partial, &mut buf)?),
            None => None,
        };
        if buf.len() == left {
            // Images of no column: the bytes left could never be read (and would loop forever).
            return Err(invalid(format!(
                "rows event has {left} byte(s) of row data its column bitmaps describe none of"
            )));
        }
        out.push((b, a));
    }
    Ok(out)
}

/// Hostile input: arbitrary bytes as row images, under table maps of every column type ferry
/// maps (with their real metadata) and under arbitrary metadata. Decoding and conversion must
/// never panic: each value is decoded and converted, or the image is an error.
#[cfg(test)]
mod hostile_bytes {
    use super::*;
    use crate::transform::convert::{convert, SourceValue};
    use crate::transform::json::apply_diffs;
    use crate::transform::mapping::{plan_column, sample_column};
    use crate::transform::TypeOptions;
    use proptest::prelude::*;

    /// (data_type, column_type, binlog type, metadata) of each column kind ferry maps.
    const KINDS: &[(&str, &str, ColumnType, &[u8])] = &[
        ("tinyint", "tinyint(4)", ColumnType::MYSQL_TYPE_TINY, &[]),
        (
            "smallint",
            "smallint(5) unsigned",
            ColumnType::MYSQL_TYPE_SHORT,
            &[],
        ),
        (
            "mediumint",
            "mediumint(9)",
            ColumnType::MYSQL_TYPE_INT24,
            &[],
        ),
        ("int", "int(11)", ColumnType::MYSQL_TYPE_LONG, &[]),
        ("int", "int(10) unsigned", ColumnType::MYSQL_TYPE_LONG, &[]),
        (
            "bigint",
            "bigint(20) unsigned",
            ColumnType::MYSQL_TYPE_LONGLONG,
            &[],
        ),
        (
            "decimal",
            "decimal(10,2)",
            ColumnType::MYSQL_TYPE_NEWDECIMAL,
            &[10, 2],
        ),
        (
            "decimal",
            "decimal(65,30)",
            ColumnType::MYSQL_TYPE_NEWDECIMAL,
            &[65, 30],
        ),
        ("float", "float", ColumnType::MYSQL_TYPE_FLOAT, &[4]),
        ("double", "double", ColumnType::MYSQL_TYPE_DOUBLE, &[8]),
        (
            "varchar",
            "varchar(20)",
            ColumnType::MYSQL_TYPE_VARCHAR,
            &[80, 0],
        ),
        (
            "varchar",
            "varchar(300)",
            ColumnType::MYSQL_TYPE_VARCHAR,
            &[0xb0, 4],
        ),
        (
            "varbinary",
            "varbinary(10)",
            ColumnType::MYSQL_TYPE_VARCHAR,
            &[10, 0],
        ),
        (
            "char",
            "char(4)",
            ColumnType::MYSQL_TYPE_STRING,
            &[0xfe, 16],
        ),
        (
            "binary",
            "binary(4)",
            ColumnType::MYSQL_TYPE_STRING,
            &[0xfe, 4],
        ),
        ("text", "text", ColumnType::MYSQL_TYPE_BLOB, &[2]),
        ("longblob", "longblob", ColumnType::MYSQL_TYPE_BLOB, &[4]),
        ("json", "json", ColumnType::MYSQL_TYPE_JSON, &[4]),
        ("bit", "bit(10)", ColumnType::MYSQL_TYPE_BIT, &[2, 1]),
        ("date", "date", ColumnType::MYSQL_TYPE_DATE, &[]),
        (
            "datetime",
            "datetime(6)",
            ColumnType::MYSQL_TYPE_DATETIME2,
            &[6],
        ),
        (
            "timestamp",
            "timestamp(3)",
            ColumnType::MYSQL_TYPE_TIMESTAMP2,
            &[3],
        ),
        ("time", "time(6)", ColumnType::MYSQL_TYPE_TIME2, &[6]),
        ("year", "year(4)", ColumnType::MYSQL_TYPE_YEAR, &[]),
        (
            "enum",
            "enum('a','b')",
            ColumnType::MYSQL_TYPE_STRING,
            &[0xf7, 1],
        ),
        (
            "set",
            "set('a','b','c')",
            ColumnType::MYSQL_TYPE_STRING,
            &[0xf8, 1],
        ),
        (
            "geometry",
            "geometry",
            ColumnType::MYSQL_TYPE_GEOMETRY,
            &[4],
        ),
    ];

    fn plan_of(kinds: &[usize]) -> TablePlan {
        let columns: Vec<ColumnPlan> = kinds
            .iter()
            .map(|&i| {
                let (_, column_type, ty, meta) = KINDS[i];
                ColumnPlan {
                    ty,
                    meta: meta.to_vec(),
                    unsigned: column_type.contains("unsigned"),
                }
            })
            .collect();
        let json_columns = columns
            .iter()
            .filter(|c| c.ty == ColumnType::MYSQL_TYPE_JSON)
            .count();
        TablePlan {
            columns,
            json_columns,
        }
    }

    /// Every image the bytes hold, each value converted as the decoder would.
    fn decode_and_convert(kinds: &[usize], present: &[bool], shared: bool, bytes: &[u8]) {
        let plan = plan_of(kinds);
        let rules: Vec<_> = kinds
            .iter()
            .map(|&i| {
                let (data_type, column_type, _, _) = KINDS[i];
                let column = sample_column(data_type, column_type, "utf8mb4");
                plan_column(&column, &TypeOptions::default()).expect("maps")
            })
            .collect();
        let mut buf = ParseBuf(bytes);
        let mut before: Option<Vec<Option<String>>> = None;
        while !buf.is_empty() {
            let left = buf.len();
            let Ok(image) = read_image(&plan, present, shared, &mut buf) else {
                return;
            };
            if buf.len() == left {
                return; // `images` refuses such an event
            }
            let mut cells = Vec::new();
            for (rule, value) in rules.iter().zip(&image) {
                let cell = match value {
                    None => None,
                    Some(BinlogValue::JsonDiff(diffs)) => before
                        .as_ref()
                        .and_then(|b| b.first().cloned().flatten())
                        .and_then(|b| apply_diffs(&b, diffs).ok()),
                    Some(v) => convert(rule, SourceValue::Binlog(v)).ok().flatten(),
                };
                cells.push(cell);
            }
            before = Some(cells);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn arbitrary_row_bytes_decode_and_convert_without_a_panic(
            kinds in proptest::collection::vec(0..KINDS.len(), 1..6),
            present in proptest::collection::vec(any::<bool>(), 6),
            shared: bool,
            bytes in proptest::collection::vec(any::<u8>(), 0..160),
        ) {
            decode_and_convert(&kinds, &present[..kinds.len()], shared, &bytes);
        }

        #[test]
        fn one_column_of_each_kind_with_arbitrary_value_bytes(
            kind in 0..KINDS.len(),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Image: no shared header, a null bitmap with the column not null, then the bytes.
            let mut image = vec![0u8];
            image.extend(bytes);
            decode_and_convert(&[kind], &[true], false, &image);
        }

        #[test]
        fn arbitrary_metadata_never_panics_the_value_decoder(
            ty in prop_oneof![
                Just(ColumnType::MYSQL_TYPE_NEWDECIMAL),
                Just(ColumnType::MYSQL_TYPE_VARCHAR),
                Just(ColumnType::MYSQL_TYPE_STRING),
                Just(ColumnType::MYSQL_TYPE_BLOB),
                Just(ColumnType::MYSQL_TYPE_BIT),
                Just(ColumnType::MYSQL_TYPE_DATETIME2),
                Just(ColumnType::MYSQL_TYPE_TIMESTAMP2),
                Just(ColumnType::MYSQL_TYPE_TIME2),
                Just(ColumnType::MYSQL_TYPE_FLOAT),
                Just(ColumnType::MYSQL_TYPE_JSON),
                Just(ColumnType::MYSQL_TYPE_GEOMETRY),
                Just(ColumnType::MYSQL_TYPE_ENUM),
                Just(ColumnType::MYSQL_TYPE_SET),
            ],
            meta in proptest::collection::vec(any::<u8>(), 0..4),
            unsigned: bool,
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Metadata too short for the type is refused when the table map is read.
            let Ok(column) = ColumnPlan::new(ty, meta, unsigned) else {
                return Ok(());
            };
            let plan = TablePlan {
                columns: vec![column],
                json_columns: usize::from(ty == ColumnType::MYSQL_TYPE_JSON),
            };
            let mut image = vec![0u8];
            image.extend(bytes);
            let _ = read_image(&plan, &[true], false, &mut ParseBuf(&image));
        }
    }
}
