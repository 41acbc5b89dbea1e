//! Spatial columns into PostGIS against the real servers: geometries of every kind and several
//! SRIDs arrive bit for bit through the backfill and through the binlog, a SPATIAL index becomes
//! a GiST index, `ferry verify` finds them equal and finds a changed SRID; `types.spatial =
//! "postgis"` without the extension fails preflight with the fix; a bytea column created before
//! PostGIS was installed is refused, not written with the wrong form. (Without PostGIS in the
//! target, spatial columns are bytea: the type matrix in `types.rs` covers that.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

const PLACES: &str = "CREATE TABLE places (id INT PRIMARY KEY, g GEOMETRY, pt POINT NOT NULL, \
    area POLYGON, SPATIAL INDEX (pt))";

/// Rows written before the backfill: every geometry kind, SRIDs 0, 4326 and 3857, coordinates
/// that need all 64 bits of a double.
const BEFORE: &str = "INSERT INTO places VALUES
    (1, ST_GeomFromText('POINT(1.5 -2.25)', 4326), POINT(0, 0),
        ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 2))')),
    (2, ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 2),LINESTRING(0 0,1 1))', 3857),
        POINT(0.1 + 0.2, -1e300), NULL),
    (3, NULL, POINT(1/3, 2/3), NULL),
    (4, ST_GeomFromText('MULTIPOINT(1 1,2 2)', 4326), POINT(-0.000001, 180), NULL)";

/// Changes that travel through the binlog.
const CHANGES: &str = "INSERT INTO places VALUES
    (5, ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)),((5 5,6 5,6 6,5 5)))', 4326),
        POINT(5, 5), ST_GeomFromText('POLYGON((0 0,1 0,0 1,0 0))', 3857)),
    (6, ST_GeomFromText('MULTILINESTRING((0 0,1 1),(2 2,3 3,4 5))'), POINT(6, 6), NULL);
    UPDATE places SET g = ST_GeomFromText('LINESTRING(0 0,1e-10 1e10,3 4)', 4326) WHERE id = 1;
    UPDATE places SET g = NULL, pt = POINT(7, 7) WHERE id = 4;
    DELETE FROM places WHERE id = 2";

/// Each row as (id, SRID and WKB of every spatial column) from MySQL.
async fn source_rows(my: &mut mysql_async::Conn) -> Vec<Vec<Option<String>>> {
    mysql_rows(
        my,
        "SELECT id, ST_SRID(g), LOWER(HEX(ST_AsBinary(g))), ST_SRID(pt), \
         LOWER(HEX(ST_AsBinary(pt))), ST_SRID(area), LOWER(HEX(ST_AsBinary(area))) FROM places",
    )
    .await
}

/// The same from PostGIS (WKB little-endian, as MySQL writes it).
async fn target_rows(db: &TestDb) -> Vec<Vec<Option<String>>> {
    let pg = db.pg().await;
    pg_rows(
        &pg,
        "SELECT id::text, ST_SRID(g)::text, encode(ST_AsBinary(g, 'NDR'), 'hex'), \
         ST_SRID(pt)::text, encode(ST_AsBinary(pt, 'NDR'), 'hex'), ST_SRID(area)::text, \
         encode(ST_AsBinary(area, 'NDR'), 'hex') FROM places",
    )
    .await
}

async fn create_postgis(db: &TestDb) {
    pg(&db.name)
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS postgis")
        .await
        .expect("CREATE EXTENSION postgis (scripts/test.sh installs the PostGIS package)");
}

/// Runs `ferry verify --json --sample 10`: the exit code, the (table, kind, key) of every
/// difference, and the output for messages.
fn ferry_verify(config: &Path) -> (i32, Vec<(String, String, String)>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--json", "--sample", "10", "--config"])
        .arg(config)
        .output()
        .expect("run ferry verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let mut diffs = Vec::new();
    for t in report["tables"].as_array().into_iter().flatten() {
        for d in t["differences"].as_array().into_iter().flatten() {
            diffs.push((
                t["table"].as_str().unwrap_or("").to_string(),
                d["kind"].as_str().unwrap_or("").to_string(),
                d["key_text"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    (out.status.code().unwrap_or(-1), diffs, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geometries_arrive_in_postgis_bit_for_bit_and_verify_clean() {
    let db = TestDb::new("gis").await;
    create_postgis(&db).await;
    let mut my = db.my().await;
    my.query_drop(PLACES).await.expect("table");
    my.query_drop(BEFORE)
        .await
        .expect("rows before the backfill");

    let config = db.config_backfill("main", "chunk_rows = 2", "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    let pg = db.pg().await;
    let types = pg_rows(
        &pg,
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'places'::regclass AND attname IN ('g', 'pt', 'area')",
    )
    .await;
    assert!(
        types.iter().all(|r| r[1].as_deref() == Some("geometry")),
        "spatial columns are PostGIS geometry: {types:?}"
    );
    assert_eq!(
        target_rows(&db).await,
        source_rows(&mut my).await,
        "backfilled rows"
    );

    my.query_drop(CHANGES).await.expect("changes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let want = source_rows(&mut my).await;
    assert_eq!(want.len(), 5, "rows 1, 3, 4, 5, 6");
    assert_eq!(target_rows(&db).await, want, "after binlog changes");

    // The SPATIAL index is built as GiST once the copy is done.
    let indexes = pg_rows(
        &pg,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'places'",
    )
    .await;
    assert!(
        indexes.iter().any(|r| r[0]
            .as_deref()
            .is_some_and(|d| d.contains("USING gist (pt)"))),
        "{indexes:?}"
    );

    let (code, diffs, out) = ferry_verify(&config);
    assert_eq!(
        (code, diffs.len()),
        (0, 0),
        "verify finds the copy equal:\n{out}"
    );
    // A changed SRID (same coordinates) is a difference, and the only one.
    pg.batch_execute("UPDATE places SET g = ST_SetSRID(g, 3857) WHERE id = 5")
        .await
        .expect("inject drift");
    let (code, diffs, out) = ferry_verify(&config);
    assert_eq!(code, 1, "verify finds the changed SRID:\n{out}");
    assert_eq!(
        diffs,
        vec![(
            format!("{}.places", db.name),
            "value_differs".into(),
            "id=5".into()
        )],
        "{out}"
    );

    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );
    db.cleanup_dir();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgis_required_or_mismatched_is_refused_with_the_fix() {
    let db = TestDb::new("gisno").await;
    let mut my = db.my().await;
    my.query_drop(PLACES).await.expect("table");
    let start = db.start_position().await;

    // Required but not installed: preflight names the fix.
    let required = db.config("req", &start, "[types]\nspatial = \"postgis\"\n");
    let (code, out) = ferry_cmd(&[
        "validate",
        "--config",
        required.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("spatial types") && out.contains("CREATE EXTENSION postgis"),
        "{out}"
    );

    // Auto without PostGIS: bytea.
    let auto = db.config("main", &start, "");
    let mut ferry = Ferry::start(&auto, &[]);
    my.query_drop("INSERT INTO places VALUES (1, NULL, POINT(1, 2), NULL)")
        .await
        .expect("row");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let pg = db.pg().await;
    let t = pg_rows(
        &pg,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'places'::regclass AND attname = 'pt'",
    )
    .await;
    assert_eq!(t, vec![vec![Some("bytea".to_string())]]);
    ferry.signal("TERM");
    assert_eq!(
        ferry.wait_exit(Duration::from_secs(30)).await.code(),
        Some(0)
    );

    // PostGIS installed afterwards: the existing bytea column is refused with the fix, before a
    // row is written in the other form.
    create_postgis(&db).await;
    my.query_drop("INSERT INTO places VALUES (2, NULL, POINT(3, 4), NULL)")
        .await
        .expect("row");
    ferry.start_again();
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(78), "{}", ferry.log());
    assert!(
        ferry.log().contains("spatial column g of type bytea")
            && ferry.log().contains("types.spatial"),
        "{}",
        ferry.log()
    );
    assert_eq!(
        pg_rows(&pg, "SELECT id::text FROM places").await,
        vec![vec![Some("1".to_string())]]
    );
    db.cleanup_dir();
}
