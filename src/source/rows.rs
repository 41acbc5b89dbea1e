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
            columns.push(ColumnPlan { ty, meta, unsigned });
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
            let ctx = (col.ty, col.meta.as_slice(), col.unsigned, is_partial);
            image.push(Some(buf.parse::<BinlogValue<'a>>(ctx)?));
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
        let b = match &before {
            Some(p) => Some(read_image(plan, p, false, &mut buf)?),
            None => None,
        };
        let a = match &after {
            Some(p) => Some(read_image(plan, p, partial, &mut buf)?),
            None => None,
        };
        out.push((b, a));
    }
    Ok(out)
}
