//! `ferry verify` and the continuous verifier against the real servers: injected drift is found
//! exactly (and equivalent spellings are not drift), a concurrent write load yields no false
//! differences, `--repair` makes the target match and is audited, every mapped type verifies
//! clean and a single changed value of each type is found, and the daemon's verifier exports
//! drift to `/metrics` and `ferry status`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

/// Runs `ferry verify --json` (plus `args`); returns the exit code and the parsed report (or the
/// raw output when it is not JSON).
fn verify(config: &Path, args: &[&str]) -> (i32, Json, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("verify")
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .output()
        .expect("run ferry verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Json::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}\n{stderr}"),
    )
}

/// The reported differences as (table, kind, key) triples.
fn differences(report: &Json) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for t in report["tables"].as_array().expect("tables") {
        let table = t["table"].as_str().expect("name").to_string();
        for d in t["differences"].as_array().expect("differences") {
            out.insert((
                table.clone(),
                d["kind"].as_str().expect("kind").to_string(),
                d["key_text"].as_str().expect("key").to_string(),
            ));
        }
    }
    out
}

fn triple(table: &str, kind: &str, key: &str) -> (String, String, String) {
    (table.to_string(), kind.to_string(), key.to_string())
}

async fn start_streaming(db: &TestDb, schema: &str, extra: &str) -> (std::path::PathBuf, Ferry) {
    let mut my = db.my().await;
    my.query_drop(schema).await.expect("schema");
    let start = db.start_position().await;
    let config = db.config("main", &start, extra);
    let ferry = Ferry::start(&config, &[]);
    (config, ferry)
}

// `code` has its own collation: `items` hashes text as binary strings, `pairs` as it is.
const ITEMS: &str =
    "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(40), price DECIMAL(10,2), \
    seen TIMESTAMP(3) NULL, doc JSON, code VARCHAR(10) COLLATE utf8mb4_bin);
    CREATE TABLE pairs (a BIGINT UNSIGNED, b INT, note VARCHAR(10), PRIMARY KEY (a, b))";

const ITEMS_ROWS: &str = "INSERT INTO items SELECT seq, CONCAT('item ', seq), seq * 1.25, \
    FROM_UNIXTIME(1700000000 + seq + 0.25), \
    JSON_OBJECT('n', seq, 'price', 1.50, 'tags', JSON_ARRAY('a', 'b')), CONCAT('C', seq % 7) \
    FROM seq_1_to_3000;
    INSERT INTO pairs SELECT seq % 100, seq, CONCAT('n', seq) FROM seq_1_to_2000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_drift_is_found_exactly_and_equivalent_spellings_are_not() {
    let db = TestDb::new("vdrift").await;
    let (config, mut ferry) = start_streaming(&db, ITEMS, "").await;
    db.my().await.query_drop(ITEMS_ROWS).await.expect("rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    let (code, report, out) = verify(&config, &["--chunk-rows", "500", "--sample", "50"]);
    assert_eq!(code, 0, "a faithful copy verifies clean:\n{out}");
    assert_eq!(report["tables"][0]["source_rows"], 3000, "{out}");
    assert_eq!(
        report["tables"][0]["chunks"], 7,
        "3000 rows in 500-row chunks: {out}"
    );
    assert_eq!(
        report["tables"][0]["json_chunks_by_row"], 0,
        "JSON written by MariaDB hashes as PostgreSQL prints jsonb: {out}"
    );

    // Same values, spelled differently in PostgreSQL: not drift.
    let pg = db.pg().await;
    pg.batch_execute(
        r#"UPDATE items SET doc = '{"tags":["a","b"],   "price": 1.5, "n": 3}' WHERE id = 3;
           UPDATE items SET seen = (to_char(seen AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS.MS') || '+05:30')::timestamptz WHERE id = 10;
           ALTER TABLE items ALTER COLUMN price TYPE numeric;
           UPDATE items SET price = (price::text || '000')::numeric WHERE id IN (10, 11);"#,
    )
    .await
    .expect("equivalent spellings");
    let shown: String = pg
        .query_one("SELECT price::text FROM items WHERE id = 10", &[])
        .await
        .expect("price")
        .get(0);
    assert_eq!(
        shown, "12.50000",
        "the target now spells the decimal differently"
    );
    let (code, _, out) = verify(&config, &["--chunk-rows", "500"]);
    assert_eq!(
        code, 0,
        "reordered JSON, another time zone and trailing zeros are not differences:\n{out}"
    );

    // Real drift: a changed value, a deleted row, an extra row, a changed key.
    pg.batch_execute(
        "UPDATE items SET label = 'tampered' WHERE id = 17;
         DELETE FROM items WHERE id = 40;
         INSERT INTO items (id, label) VALUES (5000, 'ghost');
         UPDATE items SET id = 7025 WHERE id = 25;
         UPDATE pairs SET note = 'x' WHERE a = 5 AND b = 105;
         UPDATE items SET doc = '{\"n\": 1234}' WHERE id = 2999;",
    )
    .await
    .expect("drift");
    let (code, report, out) = verify(&config, &["--chunk-rows", "500", "--sample", "20"]);
    assert_eq!(code, 1, "differences exit 1:\n{out}");
    let items = format!("{}.items", db.name);
    let pairs = format!("{}.pairs", db.name);
    let want: BTreeSet<_> = [
        triple(&items, "value_differs", "id=17"),
        triple(&items, "missing_in_target", "id=40"),
        triple(&items, "extra_in_target", "id=5000"),
        triple(&items, "missing_in_target", "id=25"),
        triple(&items, "extra_in_target", "id=7025"),
        triple(&items, "value_differs", "id=2999"),
        triple(&pairs, "value_differs", "a=5, b=105"),
    ]
    .into_iter()
    .collect();
    assert_eq!(differences(&report), want, "{out}");
    let changed = report["tables"][0]["differences"]
        .as_array()
        .expect("diffs")
        .iter()
        .find(|d| d["key_text"] == "id=17")
        .expect("id=17 reported")
        .clone();
    assert_eq!(changed["columns"][0]["column"], "label");
    assert_eq!(changed["columns"][0]["source"], "item 17");
    assert_eq!(changed["columns"][0]["target"], "tampered");
    assert_eq!(report["differing_rows"], 7);

    // The human report names the rows too.
    let (code, text) = ferry_cmd(&[
        "verify",
        "--config",
        config.to_str().expect("utf8"),
        "--table",
        &items,
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("missing in target  id=40"), "{text}");
    assert!(
        text.contains("label: source \"item 17\"  target \"tampered\""),
        "{text}"
    );
    assert!(text.contains("DIFFERENT"), "{text}");

    // Unknown tables and bad configs are errors (exit 2), not differences.
    let (code, _, out) = verify(&config, &["--table", "nope.nothing"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("not replicated by this configuration"),
        "{out}"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_makes_the_target_match_and_is_audited() {
    let db = TestDb::new("vrepair").await;
    let (config, mut ferry) = start_streaming(&db, ITEMS, "").await;
    let mut my = db.my().await;
    my.query_drop(ITEMS_ROWS).await.expect("rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    let pg = db.pg().await;
    pg.batch_execute(
        "UPDATE items SET label = 'tampered', price = 0 WHERE id = 17;
         DELETE FROM items WHERE id = 40;
         INSERT INTO items (id, label) VALUES (5000, 'ghost');",
    )
    .await
    .expect("drift");

    let (code, report, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 0, "every difference repaired and re-checked:\n{out}");
    assert_eq!(report["result"], "different", "the run found drift: {out}");
    assert_eq!(report["repair"]["repaired"], 3, "{out}");
    assert_eq!(report["repair"]["remaining"], 0, "{out}");
    let (code, _, out) = verify(&config, &[]);
    assert_eq!(code, 0, "after the repair the target matches:\n{out}");

    let audit: Vec<(String, String, String, bool, bool)> = pg
        .query(
            "SELECT action, key->>'id', source_table, before IS NOT NULL, after IS NOT NULL \
             FROM ferry.verify_repairs WHERE stream = 'main' ORDER BY key->>'id'",
            &[],
        )
        .await
        .expect("audit table")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let table = format!("{}.items", db.name);
    assert_eq!(
        audit,
        vec![
            ("update".into(), "17".into(), table.clone(), true, true),
            ("insert".into(), "40".into(), table.clone(), false, true),
            ("delete".into(), "5000".into(), table.clone(), true, false),
        ]
    );
    let before: String = pg
        .query_one(
            "SELECT before::text FROM ferry.verify_repairs WHERE key->>'id' = '17'",
            &[],
        )
        .await
        .expect("before image")
        .get(0);
    let before: Json = serde_json::from_str(&before).expect("before is JSON");
    assert_eq!(
        before["label"], "tampered",
        "the audit keeps the replaced values"
    );

    // Replication carries on after the repair's lock.
    my.query_drop("UPDATE items SET label = 'after repair' WHERE id = 17")
        .await
        .expect("update");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let label: String = pg
        .query_one("SELECT label FROM items WHERE id = 17", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(label, "after repair");
    let (code, _, out) = verify(&config, &[]);
    assert_eq!(code, 0, "{out}");

    // A table missing on the target is a difference no repair can fix.
    pg.batch_execute("DROP TABLE pairs").await.expect("drop");
    let (code, report, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["tables"][1]["result"], "missing_table", "{out}");
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_write_load_yields_no_false_differences() {
    let db = TestDb::new("vload").await;
    let schema = "CREATE TABLE acct (id INT PRIMARY KEY, balance DECIMAL(12,2) NOT NULL, \
                  note VARCHAR(50), updated DATETIME(6) NOT NULL, doc JSON)";
    let (config, mut ferry) = start_streaming(&db, schema, "").await;
    let mut my = db.my().await;
    my.query_drop(
        "INSERT INTO acct SELECT seq, seq, CONCAT('n', seq), NOW(6), JSON_OBJECT('v', seq) FROM seq_1_to_6000",
    )
    .await
    .expect("rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let stop = stop.clone();
        let writes = writes.clone();
        let mut conn = db.my().await;
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let mut next_id = 100_000 + w * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let mut statement = || {
                let id = rng.gen_range(1..=6000);
                match rng.gen_range(0..10) {
                    0..=5 => format!(
                        "UPDATE acct SET balance = balance + 1.25, note = 'w{w} {}', updated = NOW(6), \
                         doc = JSON_OBJECT('v', {}) WHERE id = {id}",
                        rng.gen::<u16>(),
                        rng.gen::<u16>()
                    ),
                    6..=7 => {
                        next_id += 1;
                        format!(
                            "INSERT INTO acct VALUES ({next_id}, 1, 'new', NOW(6), '{{\"new\": true}}')"
                        )
                    }
                    _ => format!("DELETE FROM acct WHERE id = {id}"),
                }
                };
                let (a, b) = (statement(), statement());
                conn.query_drop(format!("BEGIN; {a}; {b}; COMMIT"))
                    .await
                    .expect("write");
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut in_flight = 0;
    for _ in 0..2 {
        let cfg = config.clone();
        let (code, report, out) = tokio::task::spawn_blocking(move || {
            verify(&cfg, &["--chunk-rows", "300", "--sample", "100"])
        })
        .await
        .expect("verify ran");
        assert_eq!(
            code,
            0,
            "changes in flight are not drift (writes so far: {}):\n{out}",
            writes.load(Ordering::Relaxed)
        );
        assert!(report["tables"][0]["source_rows"].as_u64().expect("rows") > 5000);
        in_flight += report["settle"]["in_flight"].as_u64().expect("in flight");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(
        writes.load(Ordering::Relaxed) > 100,
        "the load really ran during verification"
    );
    eprintln!(
        "{} write transactions during verification; {in_flight} candidate rows were changes in flight",
        writes.load(Ordering::Relaxed)
    );

    // The check is not vacuous: once the load is over, real drift is still found.
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    db.pg()
        .await
        .batch_execute("UPDATE acct SET note = 'drift' WHERE id = (SELECT min(id) FROM acct)")
        .await
        .expect("drift");
    let (code, report, out) = verify(&config, &["--chunk-rows", "300"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["differing_rows"], 1, "{out}");
    db.cleanup_dir();
}

const TYPES: &str = "CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT UNSIGNED, ii INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d10 DECIMAL(10,0),
  fl FLOAT, db DOUBLE,
  dt DATE, dtm DATETIME(6), dt0 DATETIME, ts TIMESTAMP(3) NULL, tm TIME(6), yr YEAR,
  ch CHAR(10) CHARACTER SET utf8mb4, vc VARCHAR(50) CHARACTER SET utf8mb4,
  lat VARCHAR(50) CHARACTER SET latin1, tx TEXT,
  bl BLOB, bn BINARY(4), vb VARBINARY(20),
  en ENUM('red','green','blue'), st SET('a','b','c','d'),
  js JSON, bt BIT(12), b64 BIT(64), el ENUM('naïve','plain') CHARACTER SET latin1
) CHARACTER SET utf8mb4";

const EDGES: &str = r#"INSERT INTO types VALUES
 (1, -128, 255, -32768, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -9999999999,
  3.4028234e38, 1.7976931348623157e308,
  '1000-01-01', '1000-01-01 00:00:00.000000', '9999-12-31 23:59:59', '1970-01-01 00:00:01.000', '-838:59:59.000000', 1901,
  'héllo', '🚀 rocket ünïcode', 'café € ÿ', REPEAT('long text # with separators ~ ', 200),
  0x00FF10, 0x0102, '', 'red', 'a,d', '{"b": 1, "a": [1.50, null, "x"], "n": 18446744073709551615}',
  b'101010101010', b'1111111111111111111111111111111111111111111111111111111111111111', 'naïve'),
 (2, 127, 0, 32767, 0, 2147483647, 0, 9223372036854775807, 0,
  '0.000000000000000000000000000001', 9999999999,
  1.17549435e-38, 4.9406564584124654e-324,
  '9999-12-31', '9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', '2038-01-19 03:14:07.999', '838:59:59.000000', 2155,
  '', '', '', '', '', 0x00000000, 0x00, 'blue', '', '[]', b'0', b'0', 'plain'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 1, 0, 1, 0, 1, 0, 1, '0', 0, 0.1, -0.0, '2024-02-29', '2024-02-29 12:00:00.000001',
  '2024-02-29 12:00:00', '2024-02-29 12:00:00.001', '-00:00:00.000001', 0,
  'a#b', '~', '#', '1:x', 0x23, 0x7E7E, 0x7E, 'green', 'a,b,c,d', '{"a": "é\\n\\"q\\""}', b'1', b'1', 'naïve')"#;

/// Columns changed (in PostgreSQL) one per row, with the change.
const CHANGES: &[(&str, &str)] = &[
    ("ti", "ti + 1"),
    ("tu", "tu + 1"),
    ("si", "si + 1"),
    ("mi", "mi + 1"),
    ("ii", "ii + 1"),
    ("iu", "iu + 1"),
    ("bi", "bi + 1"),
    ("bu", "bu + 1"),
    ("d65", "d65 + 0.000000000000000000000000000001"),
    ("d10", "d10 + 1"),
    ("fl", "fl * 1.000001"),
    ("db", "db * 1.000000000000001"),
    ("dt", "dt + 1"),
    ("dtm", "dtm + interval '1 microsecond'"),
    ("dt0", "dt0 + interval '1 second'"),
    ("ts", "ts + interval '1 millisecond'"),
    ("tm", "tm - interval '1 microsecond'"),
    ("yr", "yr + 1"),
    ("ch", "'Z' || left(ch, 8)"),
    ("vc", "vc || 'é'"),
    ("lat", "lat || 'ß'"),
    ("tx", "tx || '.'"),
    ("bl", "bl || '\\x00'::bytea"),
    ("bn", "'\\xfffefdfc'::bytea"),
    ("vb", "vb || '\\x01'::bytea"),
    ("en", "CASE WHEN en = 'red' THEN 'green' ELSE 'red' END"),
    ("st", "CASE WHEN st = 'b,c' THEN 'a' ELSE 'b,c' END"),
    ("js", "jsonb_set(js, '{n}', '-1')"),
    ("bt", "~bt"),
    ("b64", "~b64"),
    ("el", "CASE WHEN el = 'plain' THEN 'naïve' ELSE 'plain' END"),
];

fn random_rows(rng: &mut rand::rngs::StdRng, first: u32, n: u32) -> String {
    let mut rows = Vec::new();
    for id in first..first + n {
        // Finite floats from random bit patterns, exact in their shortest text form.
        let fl = loop {
            let f = f32::from_bits(rng.gen());
            if f.is_finite() && f != 0.0 {
                break f;
            }
        };
        let db = loop {
            let d = f64::from_bits(rng.gen());
            if d.is_finite() && d != 0.0 {
                break d;
            }
        };
        let us: u32 = rng.gen_range(0..1_000_000);
        rows.push(format!(
            "({id}, {}, {}, {}, {}, {}, {}, {}, {}, '{}.{:030}', {}, {fl:?}, {db:?}, \
             '2001-02-{:02}', '2001-02-03 04:05:06.{us:06}', '2001-02-03 04:05:{:02}', \
             FROM_UNIXTIME({}.{:03}), '{}{}:{:02}:{:02}.{us:06}', {}, 'c{}', 'v{} ü', 'l{} é', 't{}', \
             0x{:08x}, 0x{:04x}, 0x{:06x}, '{}', '{}', '{{\"n\": {}, \"s\": \"x{}\"}}', {}, {}, '{}')",
            rng.gen_range(-100..100),
            rng.gen_range(0..200),
            rng.gen_range(-30000..30000),
            rng.gen_range(0..16_000_000),
            rng.gen_range(-2_000_000_000..2_000_000_000),
            rng.gen_range(0..4_000_000_000u32),
            rng.gen_range(-9_000_000_000_000_000_000i64..9_000_000_000_000_000_000),
            rng.gen_range(0..18_000_000_000_000_000_000u64),
            rng.gen_range(-99_999_999_999i64..99_999_999_999),
            rng.gen_range(0..u64::MAX / 2),
            rng.gen_range(-999_999_999i64..999_999_999),
            rng.gen_range(1..28),
            rng.gen_range(0..60),
            rng.gen_range(1_000_000_000..2_000_000_000u32),
            rng.gen_range(0..1000),
            if rng.gen_bool(0.5) { "-" } else { "" },
            rng.gen_range(0..838),
            rng.gen_range(0..60),
            rng.gen_range(0..60),
            rng.gen_range(1901..2150),
            rng.gen_range(0..1000),
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen::<u32>(),
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen_range(0..0xffffff),
            ["red", "green", "blue"][rng.gen_range(0..3)],
            ["a", "b", "a,c", "b,d", "a,b,c,d"][rng.gen_range(0..5)],
            rng.gen::<i32>(),
            rng.gen::<u16>(),
            rng.gen_range(1..4095),
            rng.gen_range(1..u64::MAX),
            ["naïve", "plain"][rng.gen_range(0..2)],
        ));
    }
    format!("INSERT INTO types VALUES {}", rows.join(",\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_verifies_clean_and_one_changed_value_of_each_type_is_found() {
    let db = TestDb::new("vtypes").await;
    let (config, mut ferry) = start_streaming(&db, TYPES, "").await;
    let mut my = db.my().await;
    my.query_drop(EDGES).await.expect("edge rows");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    my.query_drop(random_rows(&mut rng, 10, 300))
        .await
        .expect("random rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    let (code, report, out) = verify(&config, &["--chunk-rows", "50", "--sample", "40"]);
    assert_eq!(
        code, 0,
        "every type's values, edges and NULLs verify clean:\n{out}"
    );
    assert_eq!(report["tables"][0]["source_rows"], 304, "{out}");
    assert_eq!(report["tables"][0]["compared_outside"][0], "js", "{out}");

    // One changed value per type, each in its own row.
    let pg = db.pg().await;
    let mut want = BTreeMap::new();
    for (i, (col, change)) in CHANGES.iter().enumerate() {
        let id = 20 + i as i32;
        let n = pg
            .execute(
                &format!("UPDATE types SET {col} = {change} WHERE id = $1"),
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("changing {col}: {e}"));
        assert_eq!(n, 1, "{col}");
        want.insert(format!("id={id}"), vec![col.to_string()]);
    }
    let (code, report, out) = verify(&config, &["--chunk-rows", "50"]);
    assert_eq!(code, 1, "{out}");
    let mut got = BTreeMap::new();
    for d in report["tables"][0]["differences"]
        .as_array()
        .expect("differences")
    {
        assert_eq!(d["kind"], "value_differs", "{d}");
        let cols: Vec<String> = d["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["column"].as_str().expect("name").to_string())
            .collect();
        got.insert(d["key_text"].as_str().expect("key").to_string(), cols);
    }
    assert_eq!(
        got, want,
        "exactly the changed value of each type is found:\n{out}"
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_verifies_continuously_and_exports_drift() {
    let db = TestDb::new("vcont").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let mut my = db.my().await;
    my.query_drop(ITEMS).await.expect("schema");
    let start = db.start_position().await;
    let config = db.config(
        "main",
        &start,
        "[verify]\npass_interval_seconds = 0.2\nrows_per_second = 100000\nchunk_rows = 500\n",
    );
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    std::fs::write(&config, text).expect("config");
    let mut ferry = Ferry::start(&config, &[]);
    my.query_drop(ITEMS_ROWS).await.expect("rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    db.pg()
        .await
        .batch_execute(
            "UPDATE items SET label = 'x' WHERE id IN (5, 6); DELETE FROM pairs WHERE b = 7",
        )
        .await
        .expect("drift");
    let cfg = config.to_str().expect("utf8").to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let wait_for = |want: u64| {
        let cfg = cfg.clone();
        let log = ferry.log();
        async move {
            let started = Instant::now();
            loop {
                let (code, out) = ferry_cmd(&["status", "--config", &cfg, "--json"]);
                if code == 0 {
                    let s: Json = serde_json::from_str(&out).expect("status JSON");
                    if s["verification"]["differing_rows"] == want {
                        return s;
                    }
                }
                assert!(
                    started.elapsed() < Duration::from_secs(90),
                    "the verifier did not report {want} differing rows; last status: {out}\n{log}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let status = wait_for(3).await;
    assert_eq!(status["verification"]["matched"], false);
    assert_eq!(status["verification"]["tables"], 2);
    let (code, metrics) = ferry::http::get(addr, "/metrics", None)
        .await
        .expect("metrics");
    assert_eq!(code, 200);
    let drift = |table: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "ferry_drift_rows{{table=\"{}.{table}\"}}",
                    db.name
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(drift("items"), Some(2.0), "{metrics}");
    assert_eq!(drift("pairs"), Some(1.0), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "ferry_verify_coverage_ratio{{table=\"{}.items\"}}",
            db.name
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferry_verify_last_full_pass_timestamp_seconds"),
        "{metrics}"
    );
    let (text_code, dashboard) = ferry_cmd(&["status", "--config", &cfg]);
    assert_eq!(text_code, 0);
    assert!(
        dashboard.contains("DIFFERENCES (2 tables, 3 differing rows;"),
        "{dashboard}"
    );

    // Repaired, the next pass reports a match.
    let (code, _, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    let status = wait_for(0).await;
    assert_eq!(status["verification"]["matched"], true);
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_keys_the_engines_order_differently_verify_exactly() {
    let db = TestDb::new("vtext").await;
    let schema = "CREATE TABLE tags (name VARCHAR(20) PRIMARY KEY, n INT) \
                  CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci";
    let (config, mut ferry) = start_streaming(&db, schema, "").await;
    let mut names: Vec<String> = [
        "apple", "Banana", "cherry", "_under", "Zebra", "ärger", "éclair", "Ölkanne", "10", "9",
        "a b", "a-b", "Äpfel", "zulu", "ZZ top", "~tilde",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend((0..120).map(|i| {
        if i % 2 == 0 {
            format!("Key{i:03}")
        } else {
            format!("key{i:03}x")
        }
    }));
    let values: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("('{n}', {i})"))
        .collect();
    db.my()
        .await
        .query_drop(format!("INSERT INTO tags VALUES {}", values.join(", ")))
        .await
        .expect("rows");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(90), &mut ferry)
        .await;
    // Tiny chunks: MySQL (case-insensitive) and PostgreSQL (C collation) disagree on the order
    // of many keys, so many chunks hold keys the other side puts elsewhere.
    let (code, report, out) = verify(&config, &["--chunk-rows", "7", "--sample", "30"]);
    assert_eq!(code, 0, "a different key order is not drift:\n{out}");
    assert_eq!(report["tables"][0]["source_rows"], names.len(), "{out}");
    assert_eq!(report["tables"][0]["target_rows"], names.len(), "{out}");
    assert_eq!(
        report["tables"][0]["differing_chunks"], 0,
        "the target is read by the source's keys, so a different order costs nothing: {out}"
    );

    db.pg()
        .await
        .batch_execute(
            "UPDATE tags SET n = -1 WHERE name = 'éclair';
             DELETE FROM tags WHERE name = 'Zebra';
             INSERT INTO tags VALUES ('zzz extra', 0);
             UPDATE tags SET name = 'KEY010' WHERE name = 'Key010';",
        )
        .await
        .expect("drift");
    let (code, report, out) = verify(&config, &["--chunk-rows", "7"]);
    assert_eq!(code, 1, "{out}");
    let table = format!("{}.tags", db.name);
    let want: BTreeSet<_> = [
        triple(&table, "value_differs", "name=éclair"),
        triple(&table, "missing_in_target", "name=Zebra"),
        triple(&table, "extra_in_target", "name=zzz extra"),
        triple(&table, "missing_in_target", "name=Key010"),
        triple(&table, "extra_in_target", "name=KEY010"),
    ]
    .into_iter()
    .collect();
    assert_eq!(differences(&report), want, "{out}");
    db.cleanup_dir();
}
