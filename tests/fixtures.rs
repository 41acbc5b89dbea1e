//! Decoder tests over binlog files written by real MySQL 5.7–9.6 and MariaDB servers
//! (`../shared/fixtures/binlogs`, see its MANIFEST.md), read in place: events MariaDB cannot
//! produce (binary JSON and its opaque scalars, partial JSON updates, zstd transaction payloads,
//! GTIDs with tags, invisible columns, VECTOR, unknown event types) go through ferry's own
//! decoder exactly as a live stream would deliver them, and every value is asserted as text.
//!
//! Tables come from the files' own TABLE_MAP events (`source::tablemap`), since the fixtures have
//! no `information_schema`. Where a map names no primary key (MINIMAL metadata, or tables without
//! one), the test chooses a key and says why.
//!
//! Expected values come from the SQL that wrote each file: `sql.sql` where the fixture has one
//! (asserted to contain the statements the values are taken from), the statements the file logs
//! itself (QUERY and ROWS_QUERY events), or the MANIFEST; the few derived by hand from a file's
//! bytes say how.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::binlog_file::BinlogEvents;
use ferry::change::{Message, RowOp};
use ferry::position::BinlogPosition;
use ferry::schema::{Index, KeySource, Table};
use ferry::select::TableSelector;
use ferry::source::connect::Flavor;
use ferry::source::decode::{ChangeKind, DecodeError, Decoder, Need, Registry};
use ferry::source::rows::{images, TablePlan};
use ferry::source::tablemap::{describe, describe_assuming, MapTable, Present};
use ferry::transform::json::apply_diffs;
use ferry::transform::{Cell, PgType, TypeOptions};
use mysql_common::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_common::binlog::value::BinlogValue;

// ---------------------------------------------------------------------------------------------
// Harness

/// A fixture file, or `None` (after `fixtures_dir` printed SKIPPED) when the directory is absent.
fn fixture(rel: &str) -> Option<PathBuf> {
    let dir = common::fixtures_dir()?;
    let path = dir.join(rel);
    assert!(
        path.is_file(),
        "fixture {rel} is missing from {}",
        dir.display()
    );
    Some(path)
}

macro_rules! fixture_or_skip {
    ($rel:expr) => {
        match fixture($rel) {
            Some(p) => p,
            None => return,
        }
    };
}

/// The first table map of `db.table` in a file (payload contents included).
fn table_map(path: &Path, db: &str, table: &str) -> TableMapEvent<'static> {
    for e in BinlogEvents::open(path).expect("fixture opens") {
        let e = e.expect("fixture event reads");
        if let Ok(Some(EventData::TableMapEvent(t))) = e.event.read_data() {
            if t.database_name() == db && t.table_name() == table {
                return t.into_owned();
            }
        }
    }
    panic!("no table map of {db}.{table} in {}", path.display())
}

fn map_table(path: &Path, db: &str, table: &str, flavor: Flavor) -> MapTable {
    describe(&table_map(path, db, table), flavor).expect("the table map is describable")
}

/// Plans a table whose key the test chooses (the caller says why).
fn plan_with_key(m: &MapTable, key: &[usize]) -> Table {
    Table::plan(
        m.name.clone(),
        m.name.db.clone(),
        m.columns.clone(),
        vec![Index {
            name: "PRIMARY".into(),
            unique: true,
            columns: key.iter().map(|c| (*c, None)).collect(),
        }],
        0,
        &TypeOptions::default(),
    )
    .expect("the table plans")
}

/// What the decoder produced, flattened so whole runs compare with `assert_eq!`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Upsert {
        table: String,
        key: Vec<Cell>,
        row: Vec<Cell>,
    },
    Delete {
        table: String,
        key: Vec<Cell>,
    },
    Commit {
        at: String,
        gtid: Option<String>,
    },
    Truncate(String),
    DeadLetter {
        table: String,
        column: String,
    },
}

struct Run {
    seen: Vec<Seen>,
    needs: Vec<Need>,
    error: Option<DecodeError>,
    /// The decoder's position after the last event it was given.
    position: BinlogPosition,
    in_transaction: bool,
    /// Events handed to the decoder.
    events: usize,
}

impl Run {
    /// The run with no error and no catalog request, for tests that expect neither.
    fn clean(self) -> Run {
        if let Some(e) = &self.error {
            panic!("decoder refused the fixture: {e}");
        }
        assert!(
            self.needs.is_empty(),
            "unexpected catalog requests: {:?}",
            self.needs
        );
        self
    }

    fn rows(&self) -> Vec<Seen> {
        self.seen
            .iter()
            .filter(|s| !matches!(s, Seen::Commit { .. }))
            .cloned()
            .collect()
    }

    fn commits(&self) -> Vec<Seen> {
        self.seen
            .iter()
            .filter(|s| matches!(s, Seen::Commit { .. }))
            .cloned()
            .collect()
    }
}

/// Feeds a file to a fresh decoder the way the live stream would: `file` is the decoder's idea
/// of the binlog file name, `include` the selected tables, and events that start before `from`
/// are not delivered (the stream starts at `file:from`; events inside a payload start where
/// their payload does). Stops at the first decoder error.
fn replay(path: &Path, file: &str, tables: Vec<Table>, include: &[&str], from: u64) -> Run {
    let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
    let selector = TableSelector::new(&include, &[], BTreeMap::new()).expect("selector");
    let mut decoder = Decoder::new(
        Registry::new(tables),
        selector,
        TypeOptions::default(),
        file.to_string(),
        None,
        None,
    );
    let mut events = BinlogEvents::open(path).expect("fixture opens");
    let mut run = Run {
        seen: Vec::new(),
        needs: Vec::new(),
        error: None,
        position: decoder.position(),
        in_transaction: false,
        events: 0,
    };
    let mut outer_start = 0;
    while let Some(next) = events.next() {
        let fe = next.expect("fixture event reads");
        let header = fe.event.header();
        if !fe.in_payload {
            outer_start =
                u64::from(header.log_pos()).saturating_sub(u64::from(header.event_size()));
        }
        if outer_start < from {
            continue;
        }
        run.events += 1;
        let result = {
            let tme = |id: u64| events.tme(id);
            decoder.handle(&fe.event, &tme, &|_, _| {})
        };
        match result {
            Ok(out) => {
                flatten(out.messages, &mut run.seen);
                run.needs.extend(out.need);
            }
            Err(e) => {
                run.error = Some(e);
                break;
            }
        }
    }
    run.position = decoder.position();
    run.in_transaction = decoder.in_transaction();
    run
}

fn flatten(messages: Vec<Message>, into: &mut Vec<Seen>) {
    for m in messages {
        match m {
            Message::Rows { table, ops } => {
                for op in ops {
                    into.push(match op {
                        RowOp::Insert { key, row } | RowOp::Upsert { key, row } => Seen::Upsert {
                            table: table.source.to_string(),
                            key,
                            row,
                        },
                        RowOp::Delete { key } => Seen::Delete {
                            table: table.source.to_string(),
                            key,
                        },
                    });
                }
            }
            Message::Truncate { table } => into.push(Seen::Truncate(table.source.to_string())),
            Message::DeadLetter(d) => into.push(Seen::DeadLetter {
                table: d.table.source.to_string(),
                column: d.column.clone(),
            }),
            Message::Commit(c) => into.push(Seen::Commit {
                at: c.position.to_string(),
                gtid: c.gtid,
            }),
            Message::Swap { .. } => panic!("the decoder never swaps tables (only a re-copy does)"),
            Message::SchemaChange(_) => {
                panic!("the decoder never carries schema changes (the reader does)")
            }
        }
    }
}

fn cells(v: &[Option<&str>]) -> Vec<Cell> {
    v.iter().map(|c| c.map(str::to_string)).collect()
}

fn upsert(table: &str, key: &[Option<&str>], row: &[Option<&str>]) -> Seen {
    Seen::Upsert {
        table: table.into(),
        key: cells(key),
        row: cells(row),
    }
}

fn delete(table: &str, key: &[Option<&str>]) -> Seen {
    Seen::Delete {
        table: table.into(),
        key: cells(key),
    }
}

fn commit(at: &str, gtid: Option<&str>) -> Seen {
    Seen::Commit {
        at: at.into(),
        gtid: gtid.map(str::to_string),
    }
}

/// A non-null row from plain strings.
fn all<'a>(v: &[&'a str]) -> Vec<Option<&'a str>> {
    v.iter().copied().map(Some).collect()
}

/// A row of owned strings as cells.
fn opt(r: &[String]) -> Vec<Option<&str>> {
    r.iter().map(|s| Some(s.as_str())).collect()
}

/// A UTF-16LE text file with BOM (mysql-cdc-rs's `sql.sql` and `show.txt`).
fn utf16le_text(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read UTF-16LE file");
    let (text, _, malformed) = encoding_rs::UTF_16LE.decode(&bytes);
    assert!(!malformed, "{} is not UTF-16LE", path.display());
    text.replace("\r\n", "\n")
}

// ---------------------------------------------------------------------------------------------
// Binary JSON

/// json-opaque.binlog (MySQL 9.0.1): eight single-key objects whose values are opaque scalars
/// (a VARCHAR blob, DATE, DATETIME, TIME, two DECIMALs), an array and null. Expected texts are
/// what MySQL's `SELECT a` prints: opaque blobs as `base64:type<N>:<data>`, dates `YYYY-MM-DD`,
/// datetimes and times with six fractional digits, decimals as numbers with their scale.
/// Values decoded by hand from the row bytes: `U` (0x55) typed 15; packed DATE 2012-03-18;
/// packed DATETIME 2012-03-18 11:30:45; packed TIME 87:31:46.654321; DECIMAL(6,3) 123.456;
/// DECIMAL(11,2) 9.00; `[0, 1, true, false]`; `null`.
#[test]
fn json_opaque_scalars_print_as_mysql_prints_them() {
    let path = fixture_or_skip!("rust_mysql_common/json-opaque.binlog");
    let m = map_table(&path, "foo", "test", Flavor::MySql);
    assert_eq!(m.columns.len(), 1);
    assert!(m.columns[0].is_json && m.columns[0].data_type == "json");
    assert!(
        m.primary_key.is_empty(),
        "`create table test (a json)` has no key"
    );
    // No key on the source: the test keys the table on its only column.
    let table = plan_with_key(&m, &[0]);
    assert_eq!(table.columns[0].pg_type, PgType::Jsonb);
    let run = replay(&path, "binlog.000001", vec![table], &["foo.test"], 0).clean();
    let json = [
        r#"{"a": "base64:type15:VQ=="}"#,
        r#"{"b": "2012-03-18"}"#,
        r#"{"c": "2012-03-18 11:30:45.000000"}"#,
        r#"{"c": "87:31:46.654321"}"#,
        r#"{"d": 123.456}"#,
        r#"{"e": 9.00}"#,
        r#"{"e": [0, 1, true, false]}"#,
        r#"{"e": null}"#,
    ];
    let mut want = vec![
        // CREATE DATABASE foo and CREATE TABLE are transactions of their own.
        commit("binlog.000001:340", None),
        commit("binlog.000001:529", None),
    ];
    for j in json {
        want.push(upsert("foo.test", &[Some(j)], &[Some(j)]));
    }
    // All eight inserts are one transaction (one XID at the end of the file).
    want.push(commit("binlog.000001:1635", None));
    assert_eq!(run.seen, want);
    for j in json {
        serde_json::from_str::<serde_json::Value>(j).expect("ferry's JSON text parses");
    }
}

/// json.binlog.000001 (MySQL 8.0.22): `t(id INT PRIMARY KEY AUTO_INCREMENT, json_col JSON,
/// name VARCHAR(100) AS (json_col->>'$.name'), age INT AS (json_col->'$.age'))` (its CREATE
/// TABLE is in the file). Metadata MINIMAL: no names, no key in the map, so the key is `id`
/// from that statement. Six inserts, one UPDATE of every row (age + 1) with full images.
fn json_table(path: &Path) -> Table {
    let m = map_table(path, "mysql", "t", Flavor::MySql);
    assert!(!m.present.column_names && m.present.signedness && m.present.charsets);
    let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["@1", "@2", "@3", "@4"],
        "MINIMAL metadata names no column"
    );
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(types, ["int", "json", "varchar(100)", "int"]);
    plan_with_key(&m, &[0])
}

fn person(id: &str, age: u32, name: &str, data: &str) -> (String, [String; 4]) {
    let json = format!(r#"{{"age": {age}, "data": "{data}", "name": "{name}"}}"#);
    (
        id.to_string(),
        [id.to_string(), json, name.to_string(), age.to_string()],
    )
}

#[test]
fn json_documents_decode_in_full_images() {
    let path = fixture_or_skip!("rust_mysql_common/json.binlog.000001");
    let table = json_table(&path);
    // From the first insert transaction on (845): the DDL before it is the table's creation.
    let run = replay(&path, "binlog.000001", vec![table], &["mysql.t"], 845);
    let seen = run.seen.clone();
    let err = run
        .error
        .expect("the partial update (MINIMAL image) is refused");
    let people = [
        ("Joe", 24, "xxxxxxxxxx"),
        ("Sue", 32, "yyyyyyyyyy"),
        ("Pete", 40, "zzzzzzzzzz"),
    ];
    let row = |id: usize, bump: u32| {
        let (name, age, data) = people[(id - 1) % 3];
        person(&id.to_string(), age + bump, name, data)
    };
    let up = |(id, r): (String, [String; 4])| Seen::Upsert {
        table: "mysql.t".into(),
        key: vec![Some(id)],
        row: r.into_iter().map(Some).collect(),
    };
    let mut want = vec![
        up(row(1, 0)),
        commit("binlog.000001:1195", None),
        up(row(2, 0)),
        commit("binlog.000001:1545", None),
        up(row(3, 0)),
        commit("binlog.000001:1897", None),
    ];
    want.extend((4..=6).map(|i| up(row(i, 0))));
    want.push(commit("binlog.000001:2389", None));
    want.extend((1..=6).map(|i| up(row(i, 1))));
    want.push(commit("binlog.000001:3527", None));
    assert_eq!(seen, want);
    // The last transaction is a PARTIAL_UPDATE_ROWS event written with binlog_row_image=MINIMAL:
    // its before image holds only `id`. ferry needs full images and says so, naming the column.
    match err {
        DecodeError::PartialRowImage {
            table,
            position,
            column,
        } => {
            assert_eq!(table.to_string(), "mysql.t");
            assert_eq!(position.to_string(), "binlog.000001:3750");
            assert_eq!(column, "@2");
        }
        other => panic!("expected PartialRowImage, got {other}"),
    }
}

/// The same file's PARTIAL_UPDATE_ROWS event (type 39) carries `JSON_SET`-style diffs for
/// `json_col` (`REPLACE $.age`). Applied by ferry to the before image ferry decoded for each row
/// (the previous UPDATE's after image), they must give the full document: the one whose age
/// the server computed into the generated `age` column of the same after image (26, 34, 42).
#[test]
fn partial_json_update_applies_to_the_before_image() {
    let path = fixture_or_skip!("rust_mysql_common/json.binlog.000001");
    let table = json_table(&path);
    let run = replay(&path, "binlog.000001", vec![table], &["mysql.t"], 845);
    // Before images: the after image of the full UPDATE (age + 1), by id.
    let mut before: BTreeMap<String, String> = BTreeMap::new();
    for s in &run.seen[run.seen.len() - 7..run.seen.len() - 1] {
        let Seen::Upsert { key, row, .. } = s else {
            panic!("expected the UPDATE's rows, got {s:?}")
        };
        before.insert(
            key[0].clone().expect("id"),
            row[1].clone().expect("json_col"),
        );
    }
    assert_eq!(before.len(), 6);

    let mut events = BinlogEvents::open(&path).expect("fixture opens");
    let mut checked = 0;
    while let Some(e) = events.next() {
        let e = e.expect("event");
        let Ok(Some(EventData::RowsEvent(rows))) = e.event.read_data() else {
            continue;
        };
        if !matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
            continue;
        }
        let tme = events.tme(rows.table_id()).expect("table map");
        let plan = TablePlan::new(tme).expect("plan");
        for (b, a) in images(&rows, &plan).expect("row images") {
            let b = b.expect("before image");
            let a = a.expect("after image");
            let Some(BinlogValue::Value(mysql_common::value::Value::Int(id))) = &b[0] else {
                panic!("before image starts with id: {b:?}")
            };
            assert!(b[1].is_none(), "MINIMAL before image has no json_col");
            let Some(BinlogValue::JsonDiff(diffs)) = &a[1] else {
                panic!("after image json_col is a diff: {a:?}")
            };
            assert_eq!(diffs.len(), 1);
            assert_eq!(diffs[0].path_str(), "$.age");
            let Some(BinlogValue::Value(mysql_common::value::Value::Int(age))) = &a[3] else {
                panic!("generated age column: {a:?}")
            };
            let id = id.to_string();
            let after = apply_diffs(&before[&id], diffs).expect("diff applies");
            let (name, data) = match id.as_str() {
                "1" | "4" => ("Joe", "xxxxxxxxxx"),
                "2" | "5" => ("Sue", "yyyyyyyyyy"),
                _ => ("Pete", "zzzzzzzzzz"),
            };
            let full = format!(r#"{{"age":{age},"data":"{data}","name":"{name}"}}"#);
            assert_eq!(after, full, "row {id}");
            let old_age: i64 = serde_json::from_str::<serde_json::Value>(&before[&id])
                .expect("before JSON")["age"]
                .as_i64()
                .expect("age");
            assert_eq!(*age, old_age + 1, "row {id}: the statement added one year");
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "the partial update touches all six rows");
}

// ---------------------------------------------------------------------------------------------
// zstd transaction payloads

/// transaction_compression.000001 (MySQL 8.0.32): one anonymous transaction compressed into a
/// TRANSACTION_PAYLOAD (QUERY BEGIN, TABLE_MAP test.tb1, WRITE_ROWS (1), XID). The inner events
/// have no position of their own; the commit lands at the end of the payload (431). The file's
/// PREVIOUS_GTIDS (`357df524-...:1`, intervals end exclusively on the wire) is the GTID state.
#[test]
fn compressed_transaction_commits_at_the_payload_end() {
    let path = fixture_or_skip!("rust_mysql_common/transaction_compression.000001");
    let m = map_table(&path, "test", "tb1", Flavor::MySql);
    // MINIMAL metadata, no key in the map: key on the single INT column.
    let run = replay(
        &path,
        "binlog.000042",
        vec![plan_with_key(&m, &[0])],
        &["test.*"],
        0,
    )
    .clean();
    assert_eq!(
        run.seen,
        vec![
            upsert("test.tb1", &[Some("1")], &[Some("1")]),
            commit(
                "binlog.000042:431",
                Some("357df524-4139-11ee-9979-b033ee13919e:1")
            ),
        ]
    );
    assert_eq!(
        run.position.to_string(),
        "binlog.000043:4",
        "the closing ROTATE"
    );
}

/// The same file as the stream delivers it when the payload's zstd data does not decompress:
/// `mysql_async` then yields the TRANSACTION_PAYLOAD and none of its events. The decoder must not
/// move past the lost transaction: the next outer event (the ROTATE) is an error naming the
/// payload's position.
#[test]
fn payload_without_its_events_stops_the_stream() {
    let path = fixture_or_skip!("rust_mysql_common/transaction_compression.000001");
    let m = map_table(&path, "test", "tb1", Flavor::MySql);
    let selector = TableSelector::new(&["test.*".into()], &[], BTreeMap::new()).expect("ok");
    let mut decoder = Decoder::new(
        Registry::new(vec![plan_with_key(&m, &[0])]),
        selector,
        TypeOptions::default(),
        "binlog.000042".into(),
        None,
        None,
    );
    let mut events = BinlogEvents::open(&path).expect("opens");
    let mut outcome = None;
    while let Some(e) = events.next() {
        let fe = e.expect("event");
        if fe.in_payload {
            continue; // lost with the undecompressable payload
        }
        let result = {
            let tme = |id: u64| events.tme(id);
            decoder.handle(&fe.event, &tme, &|_, _| {})
        };
        match result {
            Ok(out) => assert!(out.messages.is_empty(), "{:?}", out.messages),
            Err(e) => {
                outcome = Some((fe.event.header().event_type_raw(), e));
                break;
            }
        }
    }
    match outcome {
        Some((4, DecodeError::EmptyPayload { position })) => {
            assert_eq!(position.to_string(), "binlog.000042:274");
        }
        other => panic!("expected EmptyPayload at the ROTATE, got {other:?}"),
    }
}

/// mysql-bin.compressed (MySQL 8.0.28, Debezium DBZ-2663): an UPDATE of demo.movies inside a
/// payload; the row's genre goes from `Western` to `Western|Action` (both images in the file).
#[test]
fn compressed_update_decodes_both_images() {
    let path = fixture_or_skip!("mysql-binlog-connector-java/mysql-bin.compressed");
    let m = map_table(&path, "demo", "movies", Flavor::MySql);
    assert_eq!(m.columns.len(), 11);
    assert_eq!(
        m.columns[1].column_type, "varchar(256)",
        "1024 bytes of utf8mb4"
    );
    // MINIMAL metadata, no key in the map: key on the first column, the INT id. A second run
    // keys on the whole row to expose the before image as a delete.
    let by_id = plan_with_key(&m, &[0]);
    let by_row = plan_with_key(&m, &(0..11).collect::<Vec<_>>());
    let before = all(&[
        "1",
        "Once Upon a Time in the West",
        "1968",
        "Italy",
        "Western",
        "Claudia Cardinale|Charles Bronson|Henry Fonda|Gabriele Ferzetti|Frank Wolff|Al Mulock|Jason Robards|Woody Strode|Jack Elam|Lionel Stander|Paolo Stoppa|Keenan Wynn|Aldo Sambrell",
        "Sergio Leone",
        "Ennio Morricone",
        "Sergio Leone|Sergio Donati|Dario Argento|Bernardo Bertolucci",
        "Tonino Delli Colli",
        "Paramount Pictures",
    ]);
    let mut after = before.clone();
    after[4] = Some("Western|Action");
    let run = replay(&path, "mysql-bin.000004", vec![by_id], &["demo.movies"], 0).clean();
    assert_eq!(
        run.seen,
        vec![
            upsert("demo.movies", &[Some("1")], &after),
            commit("mysql-bin.000004:724", None),
        ]
    );
    let run = replay(&path, "mysql-bin.000004", vec![by_row], &["demo.movies"], 0).clean();
    assert_eq!(
        run.rows(),
        vec![
            delete("demo.movies", &before),
            upsert("demo.movies", &after, &after)
        ]
    );
}

/// mysql-bin.000057 (MySQL 8.0.31): GTIDs 11–13 of `76f3e7be-…`, the last two compressed. The
/// payloads hold ROWS_QUERY events with the statements, which give the expected values:
/// `insert into b values(1)`; `update test_table_3 set enum_field='large', set_field='c',
/// product_item_2='product_3_value' where product_id=55555`; and an insert of 6666 with
/// `now()` (the event time, 2022-11-20 13:53:32 UTC). Metadata MINIMAL: ENUM/SET member names
/// are not in the map. The statements fix ENUM index 4 = 'large' and SET bits 2, 3 = 'c', 'd';
/// the test supplies placeholders for the members no statement names.
#[test]
fn compressed_payloads_with_gtids() {
    let path = fixture_or_skip!("mysql-binlog-connector-rust/mysql-bin.000057");
    let b = plan_with_key(&map_table(&path, "a", "b", Flavor::MySql), &[0]);
    let mut m = map_table(&path, "a", "test_table_3", Flavor::MySql);
    assert_eq!(m.columns.len(), 20);
    assert_eq!(m.columns[6].data_type, "enum");
    assert_eq!(m.columns[7].data_type, "set");
    assert!(m.columns[6].members.is_empty(), "MINIMAL: no member names");
    // DEFAULT_CHARSET 33 (utf8mb3) with one exception: the third string column is binary.
    assert_eq!(m.columns[8].column_type, "binary(3)");
    assert_eq!(m.columns[1].column_type, "varchar(255)");
    assert_eq!(m.columns[4].column_type, "text");
    assert_eq!(m.columns[4].charset.as_deref(), Some("utf8mb3"));
    m.columns[6].members = ["e1", "e2", "e3", "large"].map(String::from).to_vec();
    m.columns[7].members = ["a", "b", "c", "d"].map(String::from).to_vec();
    // Key: product_id, the update's WHERE column (the map names no key).
    let t3 = plan_with_key(&m, &[0]);
    let run = replay(&path, "mysql-bin.000057", vec![b, t3], &["a.*"], 0).clean();
    let uuid = "76f3e7be-6720-11ed-9cad-0242ac110002";
    let ts_before = "2022-11-20 13:40:30+00";
    let ts_now = "2022-11-20 13:53:32+00";
    let row = |id: &str, set: &str, item2: &str, ts: &str| -> Vec<String> {
        [
            id,
            "product_item_value_2",
            "2022-11-20",
            "111",
            "description_1",
            ts,
            "large",
            set,
            "\\x623300",
            r#"{"c": 1}"#,
            item2,
            "2022-11-20",
            "2022-11-20",
            "2222",
            "description_3_value",
            ts,
            "2022-11-20",
            "222",
            "description_4_value",
            ts,
        ]
        .map(String::from)
        .to_vec()
    };
    let updated = row("55555", "c", "product_3_value", ts_before);
    let inserted = row("6666", "d", "product_item_2_value", ts_now);
    assert_eq!(
        run.seen,
        vec![
            // GTID 11: `create table b(id int)`.
            commit("mysql-bin.000057:378", Some(&format!("{uuid}:1-11"))),
            upsert("a.b", &[Some("1")], &[Some("1")]),
            commit("mysql-bin.000057:651", Some(&format!("{uuid}:1-12"))),
            upsert("a.test_table_3", &[Some("55555")], &opt(&updated)),
            upsert("a.test_table_3", &[Some("6666")], &opt(&inserted)),
            commit("mysql-bin.000057:1283", Some(&format!("{uuid}:1-13"))),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// GTIDs

/// binlog_transaction_with_GTID_TAG.000001 (MySQL 9.6.0): PREVIOUS_GTIDS `5577…:1-13` and
/// `5577…:mytag:1-2`, then GTID_TAGGED_LOG_EVENT `mytag:3` and an insert of (3, 100, 250.00)
/// into test.orders. The commit carries the executed set as MySQL prints it.
#[test]
fn tagged_gtid_commit_carries_the_executed_set() {
    let path = fixture_or_skip!("rust_mysql_common/binlog_transaction_with_GTID_TAG.000001");
    let m = map_table(&path, "test", "orders", Flavor::MySql);
    assert_eq!(m.columns[2].column_type, "decimal(10,2)");
    // MINIMAL metadata: key on the first column (the order id).
    let run = replay(
        &path,
        "binlog.000004",
        vec![plan_with_key(&m, &[0])],
        &["test.orders"],
        0,
    )
    .clean();
    assert_eq!(
        run.seen,
        vec![
            upsert("test.orders", &[Some("3")], &all(&["3", "100", "250.00"])),
            commit(
                "binlog.000004:541",
                Some("55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3")
            ),
        ]
    );
}

/// binlog_transaction_previous_GTID_no_tag.000001 (MySQL 8.0.40): only PREVIOUS_GTIDS
/// (`b9b88c66-…:1-2`) and a ROTATE; no transaction, so no commit, and the decoder follows the
/// rotation.
#[test]
fn previous_gtids_alone_produce_no_commit() {
    let path = fixture_or_skip!("rust_mysql_common/binlog_transaction_previous_GTID_no_tag.000001");
    let run = replay(&path, "binlog.000007", vec![], &["x.y"], 0).clean();
    assert_eq!(run.seen, vec![]);
    assert_eq!(run.events, 3);
    assert_eq!(run.position.to_string(), "binlog.000008:4");
    assert!(!run.in_transaction);
}

// ---------------------------------------------------------------------------------------------
// Column types

/// mysql_type_bit.000001 (MySQL 8.0.26): `CREATE TABLE foo(a BIT(3), b TEXT, c BIT(8))` and one
/// row. The values are not in the file as SQL; from the row bytes: a = 0x04, c = 0x20.
#[test]
fn bit_columns_keep_their_width() {
    let path = fixture_or_skip!("rust_mysql_common/mysql_type_bit.000001");
    let m = map_table(&path, "mysql", "foo", Flavor::MySql);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(types, ["bit(3)", "text", "bit(8)"]);
    // No key on the source: key on all three columns.
    let table = plan_with_key(&m, &[0, 1, 2]);
    assert_eq!(table.columns[0].pg_type, PgType::Bit(3));
    assert_eq!(table.columns[2].pg_type, PgType::Bit(8));
    let run = replay(&path, "binlog.000001", vec![table], &["mysql.foo"], 0).clean();
    let uuid = "fbda2ad0-7c46-11ec-ae30-4ef7efc81a2a";
    let row = all(&["100", "foo", "00100000"]);
    assert_eq!(
        run.seen,
        vec![
            commit("binlog.000001:491", Some(&format!("{uuid}:1"))),
            commit("binlog.000001:702", Some(&format!("{uuid}:1-2"))),
            upsert("mysql.foo", &row, &row),
            commit("binlog.000001:1001", Some(&format!("{uuid}:1-3"))),
        ]
    );
}

/// binlog-invisible-columns.000001 (MySQL 8.0.26): `CREATE TABLE t1 (f1 INT UNSIGNED
/// INVISIBLE, f2 INT UNSIGNED INVISIBLE, f3 INT, f4 TEXT, f5 BLOB, f6 BIGINT UNSIGNED
/// INVISIBLE)`; two inserts and an update of the second row. The values are not in the file as
/// SQL; from the row bytes: (1, 2, -3, '4', 0x05, 6000000000), (NULL, NULL, -33, '44', 'U', NULL),
/// then (111, 222, -333, '444', 'U', NULL). Invisible columns are replicated like any other.
#[test]
fn invisible_columns_are_replicated() {
    let path = fixture_or_skip!("rust_mysql_common/binlog-invisible-columns.000001");
    let m = map_table(&path, "mysql", "t1", Flavor::MySql);
    assert!(m.present.visibility);
    let invisible: Vec<bool> = m.columns.iter().map(|c| c.invisible).collect();
    assert_eq!(invisible, [true, true, false, false, false, true]);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "int unsigned",
            "int unsigned",
            "int",
            "text",
            "blob",
            "bigint unsigned"
        ]
    );
    // No key on the source: key on f3, the one column set in every row; the update changes it,
    // which must show as a delete of the old key and an upsert of the new row.
    let table = plan_with_key(&m, &[2]);
    assert_eq!(table.columns[5].pg_type, PgType::Numeric(Some((20, 0))));
    let run = replay(&path, "binlog.000001", vec![table], &["mysql.t1"], 0).clean();
    assert_eq!(
        run.rows(),
        vec![
            upsert(
                "mysql.t1",
                &[Some("-3")],
                &all(&["1", "2", "-3", "4", "\\x05", "6000000000"])
            ),
            upsert(
                "mysql.t1",
                &[Some("-33")],
                &[None, None, Some("-33"), Some("44"), Some("\\x55"), None]
            ),
            delete("mysql.t1", &[Some("-33")]),
            upsert(
                "mysql.t1",
                &[Some("-333")],
                &[
                    Some("111"),
                    Some("222"),
                    Some("-333"),
                    Some("444"),
                    Some("\\x55"),
                    None
                ]
            ),
        ]
    );
    assert_eq!(run.commits().len(), 5, "ALTER USER, CREATE TABLE, 3 DML");
}

/// time_issue.000001 (MySQL 8.0.40): `INSERT INTO t VALUES ('-507:48:27')` into a TIME column
/// (rust_mysql_common issue #169: hours past 255 overflowed a u8). As a PostgreSQL interval.
#[test]
fn time_beyond_255_hours_keeps_its_hours() {
    let path = fixture_or_skip!("rust_mysql_common/time_issue.000001");
    let m = map_table(&path, "noria", "t", Flavor::MySql);
    assert_eq!(m.columns[0].column_type, "time");
    assert_eq!(
        m.present,
        Present::default(),
        "a lone TIME carries no optional metadata"
    );
    let run = replay(
        &path,
        "binlog.000004",
        vec![plan_with_key(&m, &[0])],
        &["noria.t"],
        0,
    )
    .clean();
    assert_eq!(
        run.seen,
        vec![
            upsert("noria.t", &[Some("-507:48:27")], &[Some("-507:48:27")]),
            commit("binlog.000004:428", None),
        ]
    );
}

/// vector.binlog (MySQL 9.0.1): `foo(id SERIAL, vector_column VECTOR(3) NOT NULL)` and
/// `bar(id SERIAL, vector_column VECTOR(2) NOT NULL, foo TEXT, vector_column2 VECTOR(4) NOT
/// NULL)`, created twice (a `drop database dtb` between). Values are not in the file as SQL;
/// from the float32 bytes: foo (1, [1.1,2.2,3.3]), (2, [1,-1,0]); bar (1, [1.1,2.2], NULL,
/// [1.1,2.2,3.3,4.4]), (2, [1.01,-1.01], 'bar', [42,43,44,45]); then bar 2 is deleted and
/// (3, [2.01,-2.01], NULL, [42.1,43.2,44.3,45.4]) inserted. Each text is the shortest that reads
/// back to the same float32.
#[test]
fn vectors_become_real_arrays() {
    let path = fixture_or_skip!("rust_mysql_common/vector.binlog");
    let foo = map_table(&path, "dtb", "foo", Flavor::MySql);
    let bar = map_table(&path, "dtb", "bar", Flavor::MySql);
    let types: Vec<&str> = bar.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(types, ["bigint unsigned", "vector(2)", "text", "vector(4)"]);
    assert_eq!(bar.columns[2].charset.as_deref(), Some("utf8mb4"));
    assert_eq!(
        foo.primary_key,
        vec![(0, None)],
        "SERIAL's unique key, as the map names it"
    );
    let (foo, bar) = (
        foo.plan("dtb", &TypeOptions::default()).expect("plans"),
        bar.plan("dtb", &TypeOptions::default()).expect("plans"),
    );
    assert_eq!(bar.key_source, KeySource::PrimaryKey);
    assert_eq!(bar.columns[1].pg_type, PgType::RealArray);
    // From the second creation on: the first half ends with `drop database dtb`.
    let run = replay(&path, "binlog.000001", vec![foo, bar], &["dtb.*"], 2303).clean();
    assert_eq!(
        run.seen,
        vec![
            upsert("dtb.foo", &[Some("1")], &all(&["1", "{1.1,2.2,3.3}"])),
            upsert("dtb.foo", &[Some("2")], &all(&["2", "{1.0,-1.0,0.0}"])),
            upsert(
                "dtb.bar",
                &[Some("1")],
                &[
                    Some("1"),
                    Some("{1.1,2.2}"),
                    None,
                    Some("{1.1,2.2,3.3,4.4}")
                ]
            ),
            upsert(
                "dtb.bar",
                &[Some("2")],
                &all(&["2", "{1.01,-1.01}", "bar", "{42.0,43.0,44.0,45.0}"])
            ),
            commit("binlog.000001:2884", None),
            delete("dtb.bar", &[Some("2")]),
            upsert(
                "dtb.bar",
                &[Some("3")],
                &[
                    Some("3"),
                    Some("{2.01,-2.01}"),
                    None,
                    Some("{42.1,43.2,44.3,45.4}")
                ]
            ),
            commit("binlog.000001:3443", None),
        ]
    );
}

/// The same file from its start: `drop database dtb` drops replicated tables, which the decoder
/// refuses before any later row, at that statement's position.
#[test]
fn drop_database_of_replicated_tables_stops_the_stream() {
    let path = fixture_or_skip!("rust_mysql_common/vector.binlog");
    let tables = ["foo", "bar"].map(|t| {
        map_table(&path, "dtb", t, Flavor::MySql)
            .plan("dtb", &TypeOptions::default())
            .expect("plans")
    });
    let run = replay(&path, "binlog.000001", tables.to_vec(), &["dtb.*"], 0);
    match &run.error {
        Some(DecodeError::DropDatabase { db, position }) => {
            assert_eq!(db, "dtb");
            assert_eq!(position.to_string(), "binlog.000001:1509");
        }
        other => panic!("expected DropDatabase, got {other:?}"),
    }
    assert_eq!(
        run.rows().len(),
        4,
        "the first transaction's rows came before the drop"
    );
}

/// mysql-enum-string-set.000001 (MySQL 8.0.28): `CREATE TABLE t(f1 CHAR(128), f2 VARCHAR(300),
/// f3 ENUM('var1', 'variant2', 'foo'), f4 SET('one', 'two', 'three', 'four'), f5 TEXT)` (in the
/// file); one insert, an update of every column, a delete. ENUM and SET arrive as an index and a
/// bitmask and leave as their names; SET members in definition order. Values from the row bytes:
/// f3 1 then 2, f4 0b0101 then 0b1010, strings of digits.
#[test]
fn enum_and_set_names_in_definition_order() {
    let path = fixture_or_skip!("rust_mysql_common/mysql-enum-string-set.000001");
    let m = map_table(&path, "mysql", "t", Flavor::MySql);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "char(128)",
            "varchar(300)",
            "enum('var1','variant2','foo')",
            "set('one','two','three','four')",
            "text"
        ]
    );
    assert_eq!(m.columns[2].charset.as_deref(), Some("utf8mb4"));
    // No key on the source: key on f1, which the update changes (delete + upsert).
    let table = plan_with_key(&m, &[0]);
    let run = replay(&path, "binlog.000001", vec![table], &["mysql.t"], 0).clean();
    let digits = "0123456789";
    let f1 = digits.repeat(10);
    let part = format!("{}012345678", digits.repeat(12));
    let f2 = format!("{part}{part}{}", digits.repeat(4));
    assert_eq!(f2.len(), 298);
    let first = [f1.as_str(), f2.as_str(), "var1", "one,three", digits];
    let second = ["field1", "field_2", "variant2", "two,four", f2.as_str()];
    let uuid = "93e95066-a2f4-11ec-9b69-9657f0ae95e2";
    assert_eq!(
        run.seen,
        vec![
            commit("binlog.000001:493", Some(&format!("{uuid}:1"))),
            commit("binlog.000001:791", Some(&format!("{uuid}:1-2"))),
            upsert("mysql.t", &[Some(&f1)], &all(&first)),
            commit("binlog.000001:1560", Some(&format!("{uuid}:1-3"))),
            delete("mysql.t", &[Some(&f1)]),
            upsert("mysql.t", &[Some("field1")], &all(&second)),
            commit("binlog.000001:2659", Some(&format!("{uuid}:1-4"))),
            delete("mysql.t", &[Some("field1")]),
            commit("binlog.000001:3331", Some(&format!("{uuid}:1-5"))),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// mysql-cdc-rs: int_table, values from sql.sql

const CDC_INT_TABLE: &str = "test.int_table";

/// `int_table` (TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT, TINYINT(1), all nullable, no key);
/// metadata MINIMAL. The test keys it on all six columns, so an update shows its before image
/// as a delete and its after image as an upsert.
fn cdc_int_table(path: &Path) -> Table {
    let m = map_table(path, "test", "int_table", Flavor::MySql);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "tinyint",
            "smallint",
            "mediumint",
            "int",
            "bigint",
            "tinyint"
        ]
    );
    assert!(m.columns.iter().all(|c| c.nullable && !c.unsigned));
    plan_with_key(&m, &[0, 1, 2, 3, 4, 5])
}

const INSERTED: [&str; 6] = ["1", "11", "111", "1111", "11111", "1"];
const UPDATED: [&str; 6] = ["1", "22", "222", "1111", "11111", "1"];

fn cdc_sql(dir: &str) -> Option<String> {
    let path = fixture(&format!("mysql-cdc-rs/8.0/{dir}/sql.sql"))?;
    let sql = utf16le_text(&path);
    // The statements the expected values are read from (`true` is stored as 1).
    assert!(sql.contains("insert into int_table values(1,11,111,1111,11111,true);"));
    assert!(sql.contains("update int_table set col2=22,col3=222 where col1=1;"));
    Some(sql)
}

#[test]
fn cdc_int_table_update_before_and_after() {
    let path = fixture_or_skip!("mysql-cdc-rs/8.0/31_update_rows_v2/binlog.000001");
    cdc_sql("31_update_rows_v2").expect("sql.sql beside the binlog");
    // From the first data transaction (after DROP/CREATE TABLE, which end at 832).
    let run = replay(
        &path,
        "binlog.000001",
        vec![cdc_int_table(&path)],
        &[CDC_INT_TABLE],
        832,
    )
    .clean();
    assert_eq!(
        run.seen,
        vec![
            upsert(CDC_INT_TABLE, &all(&INSERTED), &all(&INSERTED)),
            commit("binlog.000001:1132", None),
            delete(CDC_INT_TABLE, &all(&INSERTED)),
            upsert(CDC_INT_TABLE, &all(&UPDATED), &all(&UPDATED)),
            commit("binlog.000001:1462", None),
        ]
    );
}

#[test]
fn cdc_int_table_delete() {
    let path = fixture_or_skip!("mysql-cdc-rs/8.0/32_delete_rows_v2/binlog.000001");
    let sql = cdc_sql("32_delete_rows_v2").expect("sql.sql beside the binlog");
    assert!(sql.contains("delete from int_table where col1=1;"));
    let run = replay(
        &path,
        "binlog.000001",
        vec![cdc_int_table(&path)],
        &[CDC_INT_TABLE],
        832,
    )
    .clean();
    assert_eq!(
        run.seen[5..],
        [
            delete(CDC_INT_TABLE, &all(&UPDATED)),
            commit("binlog.000001:1762", None),
        ]
    );
    assert_eq!(run.seen.len(), 7);
}

/// The same session from the file's start: `DROP TABLE int_table` (to recreate it) is a schema
/// change of a replicated table, handed to the reader to carry at its position (show.txt:
/// `Query` at 234), before any later row.
#[test]
fn cdc_drop_table_of_a_replicated_table_is_carried_at_its_position() {
    let path = fixture_or_skip!("mysql-cdc-rs/8.0/32_delete_rows_v2/binlog.000001");
    let show = utf16le_text(&path.with_file_name("show.txt"));
    assert!(show.contains(
        "|  234 | Query          |         1 |         368 | use `test`; DROP TABLE `int_table`"
    ));
    let run = replay(
        &path,
        "binlog.000001",
        vec![cdc_int_table(&path)],
        &[CDC_INT_TABLE],
        0,
    );
    match run.needs.first() {
        Some(Need::SchemaChange(change)) => {
            assert_eq!(change.position.to_string(), "binlog.000001:234");
            match &change.kind {
                ChangeKind::Drop(names) => {
                    assert_eq!(names.len(), 1);
                    assert_eq!(names[0].to_string(), CDC_INT_TABLE);
                }
                other => panic!("expected a drop, got {other:?}"),
            }
        }
        other => panic!("expected a schema change, got {other:?}"),
    }
}

/// 19_30 (MySQL 8.2.0) has no sql.sql, only show.txt; its one WRITE_ROWS holds, by its bytes,
/// the same row as the sibling sessions' `insert into int_table values(1,11,111,1111,11111,true)`.
#[test]
fn cdc_table_map_with_signedness_and_one_insert() {
    let path = fixture_or_skip!(
        "mysql-cdc-rs/8.0/19_30_Table_map_event_Write_rows_log_event/binlog.000018"
    );
    let show = utf16le_text(&path.with_file_name("show.txt"));
    assert!(show.contains("| binlog.000018 | 1189 | Write_rows "));
    // After the two CREATE TABLE statements (the second ends at 975).
    let run = replay(
        &path,
        "binlog.000018",
        vec![cdc_int_table(&path)],
        &["test.*"],
        975,
    )
    .clean();
    assert_eq!(
        run.seen,
        vec![
            upsert(CDC_INT_TABLE, &all(&INSERTED), &all(&INSERTED)),
            commit("binlog.000018:1275", None),
        ]
    );
}

/// 02_query_bigger (MySQL 8.0.31): TPC-H LINEITEM, composite key (L_ORDERKEY, L_LINENUMBER,
/// L_SHIPDATE) from sql.sql, DECIMALs of four scales, DATE (given datetimes; MySQL keeps the
/// date), utf8mb3 VARCHAR with Chinese text. sql.sql's inserts, update and two deletes.
#[test]
fn cdc_lineitem_decimals_dates_and_text() {
    let path = fixture_or_skip!("mysql-cdc-rs/8.0/02_query_bigger/binlog.000733");
    let sql = utf16le_text(&path.with_file_name("sql.sql"));
    for stmt in [
        "VALUES (1234567890111, 1235111, 13711, 888878711, 99.911, 76.11, 888.1, 109.1, 'code', 'Y',",
        "update LINEITEM set L_QUANTITY = 88.880, L_RETURNFLAG = 'update L_RETURNFLAG ' where L_ORDERKEY = 12345678909877;",
        "delete from LINEITEM where L_ORDERKEY > 12345678909879;",
        "delete from LINEITEM where L_ORDERKEY >= 12345678909879;",
    ] {
        assert!(sql.contains(stmt), "sql.sql has {stmt}");
    }
    // The one non-ASCII comment, exactly as sql.sql quotes it.
    let start = sql.find("'使用").expect("the Chinese comment") + 1;
    let len = sql[start..].find('\'').expect("closing quote");
    let chinese = &sql[start..start + len];
    assert!(chinese.ends_with("SQL 语句的命令结束符为分号 ;。"));

    let m = map_table(&path, "test", "LINEITEM", Flavor::MySql);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "bigint",
            "int",
            "int",
            "bigint",
            "decimal(12,3)",
            "decimal(13,2)",
            "decimal(10,1)",
            "decimal(12,1)",
            "varchar(128)",
            "varchar(8)",
            "date",
            "date",
            "date",
            "varchar(128)",
            "varchar(128)",
            "varchar(128)"
        ]
    );
    let table = plan_with_key(&m, &[0, 3, 10]);
    let run = replay(&path, "binlog.000733", vec![table], &["test.LINEITEM"], 0).clean();
    let line = |v: [&str; 8], flag: &str, comment: &str| -> Vec<String> {
        let mut r: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        r.extend(
            [
                flag,
                "Y",
                "1990-08-01",
                "1990-06-01",
                "1990-01-01",
                "test@test.com",
                "test",
                comment,
            ]
            .map(String::from),
        );
        r
    };
    let rows = [
        line(
            [
                "1234567890111",
                "1235111",
                "13711",
                "888878711",
                "99.911",
                "76.11",
                "888.1",
                "109.1",
            ],
            "code",
            "com",
        ),
        line(
            [
                "12345678909876",
                "12356789",
                "13789",
                "888878787",
                "99.998",
                "76.77",
                "888.7",
                "109.7",
            ],
            "code",
            "com",
        ),
        line(
            [
                "12345678909877",
                "12356790",
                "13789",
                "888878788",
                "99.997",
                "76.88",
                "888.1",
                "109.8",
            ],
            "code",
            "com",
        ),
        line(
            [
                "12345678909878",
                "12356791",
                "13790",
                "888878789",
                "99.999",
                "76.99",
                "888.5",
                "109.9",
            ],
            "code",
            chinese,
        ),
        line(
            [
                "12345678909879",
                "12356792",
                "13791",
                "888878790",
                "99.995",
                "76.01",
                "888.3",
                "109.1",
            ],
            "code",
            "com",
        ),
        line(
            [
                "12345678909880",
                "12356792",
                "13791",
                "888878791",
                "99.999",
                "76.22",
                "888.8",
                "109.0",
            ],
            "code",
            "com",
        ),
    ];
    let updated = {
        let mut r = rows[2].clone();
        r[4] = "88.880".into();
        r[8] = "update L_RETURNFLAG ".into();
        r
    };
    fn key(r: &[String]) -> Vec<Option<&str>> {
        vec![Some(r[0].as_str()), Some(r[3].as_str()), Some("1990-08-01")]
    }
    let t = "test.LINEITEM";
    let mut want = vec![commit("binlog.000733:1182", None)]; // CREATE TABLE LINEITEM
    want.push(upsert(t, &key(&rows[0]), &opt(&rows[0])));
    want.push(commit("binlog.000733:1586", None));
    for r in &rows[1..] {
        want.push(upsert(t, &key(r), &opt(r)));
    }
    want.push(commit("binlog.000733:2584", None));
    want.push(upsert(t, &key(&updated), &opt(&updated)));
    want.push(commit("binlog.000733:3107", None));
    want.push(delete(t, &key(&rows[5])));
    want.push(commit("binlog.000733:3511", None));
    want.push(delete(t, &key(&rows[4])));
    want.push(commit("binlog.000733:3915", None));
    // Demo (not selected): three CREATEs, a DROP, and an insert transaction pass as commits.
    for at in [4910, 5897, 6103, 7104, 7843] {
        want.push(commit(&format!("binlog.000733:{at}"), None));
    }
    assert_eq!(run.seen, want);
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// mariadb-bin.000001 (MariaDB 10.5.15): GTID_LIST, BINLOG_CHECKPOINT, MariaDB GTID events
/// (0-1-1, 0-1-2) that open transactions without BEGIN, ANNOTATE_ROWS, WRITE_ROWS_v1, TIMESTAMP2.
/// The ANNOTATE_ROWS events hold the statements: two `insert into outbox (topic, event_type,
/// event) values ('foo', 'JSON', '{"foo":1}')`; ids 62 and 63 come from the AUTO_INCREMENT and
/// `created` from its default, the insert time (the events' timestamps, 1650493084 and
/// 1650493195).
#[test]
fn mariadb_write_rows_v1_with_gtids() {
    let path = fixture_or_skip!("rust_mysql_common/mariadb-bin.000001");
    let m = map_table(&path, "toddy_test", "outbox", Flavor::MariaDb);
    assert!(m.present.column_names && m.present.primary_key);
    let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "topic", "event_type", "event", "created"]);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "int",
            "varchar(255)",
            "enum('BLOB','JSON','PROTOBUF')",
            "blob",
            "timestamp"
        ]
    );
    assert_eq!(m.columns[1].charset.as_deref(), Some("utf8mb4"));
    let table = m
        .plan("toddy_test", &TypeOptions::default())
        .expect("plans");
    assert_eq!(table.key, vec![0]);
    let annotate = std::fs::read(&path).expect("read");
    let stmt =
        br#"insert into outbox (topic, event_type, event) values ('foo', 'JSON', '{"foo":1}')"#;
    assert_eq!(
        annotate.windows(stmt.len()).filter(|w| w == stmt).count(),
        2,
        "both ANNOTATE_ROWS statements"
    );
    let run = replay(
        &path,
        "mariadb-bin.000001",
        vec![table],
        &["toddy_test.outbox"],
        0,
    )
    .clean();
    let blob = "\\x7b22666f6f223a317d"; // '{"foo":1}' in a BLOB column: bytes
    assert_eq!(
        run.seen,
        vec![
            upsert(
                "toddy_test.outbox",
                &[Some("62")],
                &all(&["62", "foo", "JSON", blob, "2022-04-20 22:18:04+00"])
            ),
            commit("mariadb-bin.000001:702", Some("0-1-1")),
            upsert(
                "toddy_test.outbox",
                &[Some("63")],
                &all(&["63", "foo", "JSON", blob, "2022-04-20 22:19:55+00"])
            ),
            commit("mariadb-bin.000001:1074", Some("0-1-2")),
        ]
    );
}

/// mariadb-poc (MariaDB 11.8.5), statement-logged administration only: every standalone
/// statement is its own transaction, and the commits carry MariaDB GTIDs of domain 1
/// (domain_id_1) and domain 0 with a GTID_LIST of 0-10-292196 (domain_id_0/000010).
#[test]
fn mariadb_standalone_statements_carry_their_gtids() {
    let path = fixture_or_skip!("mariadb-poc/domain_id_1/mariadb-repl-bin.000002");
    let run = replay(&path, "mariadb-repl-bin.000002", vec![], &["app.*"], 0).clean();
    let commits = run.commits();
    assert_eq!(commits.len(), 12);
    assert_eq!(
        commits[0],
        commit("mariadb-repl-bin.000002:537", Some("1-10-1"))
    );
    assert_eq!(
        commits[11],
        commit("mariadb-repl-bin.000002:2541", Some("1-10-12"))
    );
    assert_eq!(run.position.to_string(), "mariadb-repl-bin.000003:4");

    let path = fixture_or_skip!("mariadb-poc/domain_id_0/mariadb-repl-bin.000010");
    let run = replay(&path, "mariadb-repl-bin.000010", vec![], &["app.*"], 0).clean();
    let commits = run.commits();
    assert_eq!(commits.len(), 10);
    assert_eq!(
        commits[0],
        commit("mariadb-repl-bin.000010:536", Some("0-10-292197"))
    );
    assert_eq!(
        commits[9],
        commit("mariadb-repl-bin.000010:2187", Some("0-10-292206"))
    );
}

// ---------------------------------------------------------------------------------------------
// Reader edge cases

/// mysql-bin.checksum-none (MySQL 5.7.20, binlog_checksum=NONE): events carry no CRC32, and 5.7
/// writes no optional table-map metadata. account_db.account per the file's own statements:
/// `CREATE DATABASE ... default charset utf8` (so utf8mb3 is assumed for its strings) and
/// `create table account (id CHAR(36) not null, ..., primary key (id))`. Two inserts, then both
/// rows' usernames updated.
#[test]
fn checksum_none_file_decodes_to_its_end() {
    let path = fixture_or_skip!("mysql-binlog-connector-java/mysql-bin.checksum-none");
    let mut events = BinlogEvents::open(&path).expect("opens");
    let fde = events.next().expect("first event").expect("FDE reads");
    assert_eq!(
        fde.event
            .footer()
            .get_checksum_alg()
            .expect("known algorithm"),
        Some(mysql_common::binlog::consts::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF)
    );
    let map = table_map(&path, "account_db", "account");
    let bare = describe(&map, Flavor::MySql).expect("describable");
    assert_eq!(
        bare.present,
        Present::default(),
        "5.7: no optional metadata"
    );
    assert_eq!(bare.columns[3].charset, None, "not guessed");
    let mut m = describe_assuming(&map, Flavor::MySql, "utf8mb3").expect("describable");
    let names = [
        "id",
        "created_at",
        "updated_at",
        "country_code",
        "lang",
        "mobile",
        "nickname",
        "password",
        "username",
    ];
    for (c, n) in m.columns.iter_mut().zip(names) {
        c.name = n.to_string();
    }
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "char(36)",
            "datetime",
            "datetime",
            "varchar(16)",
            "varchar(16)",
            "varchar(36)",
            "varchar(200)",
            "varchar(36)",
            "varchar(200)"
        ]
    );
    assert!(!m.columns[0].nullable && !m.columns[1].nullable && m.columns[2].nullable);
    let table = plan_with_key(&m, &[0]);
    let run = replay(
        &path,
        "mysql-bin.000001",
        vec![table],
        &["account_db.account"],
        0,
    )
    .clean();
    let first = [
        "42b0a771-9345-4b19-b503-d51b5fff30ef",
        "2018-10-30 18:02:09",
        "2018-10-30 18:02:09",
        "086",
        "zh-cn",
        "18888888888",
        "test_nickname",
        "14e1b600b1fd579f47433b88e8d85291",
        "test_user_name",
    ];
    let second = [
        "e5c736b8-3fc2-4149-b824-8f12ca8386ab",
        "2018-11-02 16:52:28",
        "2018-11-02 16:52:28",
        "086",
        "zh-cn",
        "18888888889",
        "test_nickname2",
        "14e1b600b1fd579f47433b88e8d85291",
        "test_user_name2",
    ];
    let mut first_after = first;
    first_after[8] = "user1";
    let mut second_after = second;
    second_after[8] = "user2";
    let a = "account_db.account";
    assert_eq!(
        run.rows(),
        vec![
            upsert(a, &[Some(first[0])], &all(&first)),
            upsert(a, &[Some(second[0])], &all(&second)),
            upsert(a, &[Some(first[0])], &all(&first_after)),
            upsert(a, &[Some(second[0])], &all(&second_after)),
        ]
    );
    assert_eq!(run.commits().len(), 40, "36 XIDs and 4 DDL statements");
    assert_eq!(
        run.position.to_string(),
        "mysql-bin.000001:37643",
        "every event read, up to the final STOP at the file's end"
    );
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        37643,
        "the file ends there"
    );
}

/// mysql-bin.aurora-padding (Aurora MySQL 5.7.12): an event of type 100, which no MySQL knows,
/// between a transaction's GTID and its BEGIN (Debezium DBZ-2499). It is skipped: no error, no
/// message, and the position moves past it.
#[test]
fn unknown_event_type_is_skipped() {
    let path = fixture_or_skip!("mysql-binlog-connector-java/mysql-bin.aurora-padding");
    let types: Vec<u8> = BinlogEvents::open(&path)
        .expect("opens")
        .map(|e| e.expect("event").event.header().event_type_raw())
        .collect();
    assert_eq!(types, [15, 35, 34, 100, 2]);
    let full = replay(&path, "mysql-bin.000001", vec![], &["db_netpay.*"], 0).clean();
    assert_eq!(full.events, 5);
    assert!(full.seen.is_empty());
    assert_eq!(full.position.to_string(), "mysql-bin.000001:1294");
    assert!(full.in_transaction, "the file ends inside the transaction");
    // Stopping right after the unknown event shows its own effect on the position.
    let upto: Vec<_> = BinlogEvents::open(&path)
        .expect("opens")
        .map(|e| e.expect("event").event)
        .take(4)
        .collect();
    let selector = TableSelector::new(&["db_netpay.*".into()], &[], BTreeMap::new()).expect("ok");
    let mut decoder = Decoder::new(
        Registry::default(),
        selector,
        TypeOptions::default(),
        "mysql-bin.000001".into(),
        None,
        None,
    );
    for event in &upto {
        let out = decoder
            .handle(event, &|_| None, &|_, _| {})
            .expect("no error");
        assert!(out.messages.is_empty());
    }
    assert_eq!(decoder.position().to_string(), "mysql-bin.000001:1209");
}

/// minimal_row_metadata.000001 (MySQL 8.0.40): a WRITE_ROWS with binlog_row_image=MINIMAL
/// (only the columns the INSERT set). ferry refuses it with the variable to change, naming the
/// first column the image lacks.
#[test]
fn minimal_row_image_is_refused_with_the_fix() {
    let path = fixture_or_skip!("rust_mysql_common/minimal_row_metadata.000001");
    let m = map_table(&path, "noria", "t1", Flavor::MySql);
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(types, ["int", "blob", "char(2)", "int", "int unsigned"]);
    let run = replay(
        &path,
        "binlog.000020",
        vec![plan_with_key(&m, &[0])],
        &["noria.t1"],
        0,
    );
    let err = run.error.expect("refused");
    let msg = err.to_string();
    match &err {
        DecodeError::PartialRowImage {
            table,
            position,
            column,
        } => {
            assert_eq!(table.to_string(), "noria.t1");
            assert_eq!(position.to_string(), "binlog.000020:374");
            assert!(column.starts_with('@'), "{column}");
        }
        other => panic!("expected PartialRowImage, got {other}"),
    }
    assert!(msg.contains("binlog_row_image=FULL"), "{msg}");
    assert!(run.seen.is_empty());
}

/// mysql-bin.000080 (MySQL 5.7.40, GTIDs, no optional table-map metadata): `a.emoji (id INT NOT
/// NULL PRIMARY KEY, value VARCHAR(255) utf8mb4)` is created mid-file and receives one row,
/// `(2, '')` (the bytes after the key are a zero length). Only `a.emoji` is replicated: the
/// row changes on `a.b` and the CREATE/DROP of other tables pass without a message, and the
/// decoder reads to the file's end.
#[test]
fn mysql57_file_with_gtids_replicates_only_the_selected_table() {
    let path = fixture_or_skip!("mysql-binlog-connector-rust/mysql-bin.000080");
    let map = table_map(&path, "a", "emoji");
    let bare = describe(&map, Flavor::MySql).expect("describable");
    assert_eq!(
        bare.present,
        Present::default(),
        "5.7: no optional metadata"
    );
    let mut m = describe_assuming(&map, Flavor::MySql, "utf8mb4").expect("describable");
    for (c, n) in m.columns.iter_mut().zip(["id", "value"]) {
        c.name = n.to_string();
    }
    let types: Vec<&str> = m.columns.iter().map(|c| c.column_type.as_str()).collect();
    assert_eq!(types, ["int", "varchar(255)"]);
    assert!(!m.columns[0].nullable && !m.columns[1].nullable);
    let table = plan_with_key(&m, &[0]);
    let run = replay(&path, "mysql-bin.000080", vec![table], &["a.emoji"], 0);
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(
        run.rows(),
        vec![upsert("a.emoji", &[Some("2")], &[Some("2"), Some("")])]
    );
    // Ten GTID events (gno 53..62 of server 58cf6502-…-0242ac110002; PREVIOUS_GTIDS holds 1-52):
    // every transaction commits, selected table or not, with the executed set so far.
    let sid = "58cf6502-63db-11ed-8079-0242ac110002";
    let commits = run.commits();
    assert_eq!(commits.len(), 10, "{commits:?}");
    assert_eq!(
        commits[0],
        commit("mysql-bin.000080:445", Some(&format!("{sid}:1-53")))
    );
    assert_eq!(
        commits[9],
        commit("mysql-bin.000080:2454", Some(&format!("{sid}:1-62")))
    );
    assert_eq!(run.position.to_string(), "mysql-bin.000080:2454");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 2454);
}
