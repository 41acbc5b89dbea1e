//! Least privilege: a source account with exactly the README's grants for streaming and the
//! backfill, and a PostgreSQL role with only CREATE on the database, copy and stream; one grant
//! less on either side is named by preflight with the GRANT that fixes it.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

fn validate(config: &std::path::Path) -> (i32, String) {
    ferry_cmd(&["validate", "--config", config.to_str().expect("utf-8")])
}

#[tokio::test]
async fn the_documented_grants_suffice_and_one_grant_less_is_named() {
    let db = TestDb::new("grants").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(40))")
        .await
        .expect("items");
    my.query_drop("INSERT INTO items SELECT seq, 'seed' FROM seq_1_to_300")
        .await
        .expect("seed");
    let suffix = rand::random::<u32>() % 1_000_000;
    let (my_user, pg_user) = (format!("fmin{suffix}"), format!("fmin{suffix}"));
    let mut root = mysql_at(db.my_port, None).await;
    for sql in [
        format!("CREATE USER '{my_user}'@'%' IDENTIFIED BY 'least-{suffix}'"),
        format!("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{my_user}'@'%'"),
        format!("GRANT SELECT ON `{}`.* TO '{my_user}'@'%'", db.name),
    ] {
        root.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let admin = pg(&db.name).await;
    admin
        .batch_execute(&format!("CREATE ROLE {pg_user} LOGIN"))
        .await
        .expect("role");
    let config = db.config_backfill("main", "", "");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replacen("user = \"ferry\"", &format!("user = \"{my_user}\""), 1)
        .replacen(
            "password = \"ferry\"",
            &format!("password = \"least-{suffix}\""),
            1,
        )
        .replacen("user = \"postgres\"", &format!("user = \"{pg_user}\""), 1);
    std::fs::write(&config, text).expect("config");

    // The role cannot create ferry's schema yet: named with its GRANT.
    let (code, out) = validate(&config);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("[FAIL] target writable"), "{out}");
    assert!(
        out.contains(&format!(
            "GRANT CREATE ON DATABASE {} TO {pg_user}",
            db.name
        )),
        "{out}"
    );
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE \"{}\" TO {pg_user}",
            db.name
        ))
        .await
        .expect("grant create");
    let (code, out) = validate(&config);
    assert_eq!(
        code, 0,
        "exactly the documented grants pass preflight:\n{out}"
    );

    // One source grant less at a time: each named, with its GRANT.
    for (revoke, grant, named) in [
        (
            format!("REVOKE BINLOG MONITOR ON *.* FROM '{my_user}'@'%'"),
            format!("GRANT BINLOG MONITOR ON *.* TO '{my_user}'@'%'"),
            "missing BINLOG MONITOR".to_string(),
        ),
        (
            format!("REVOKE REPLICATION SLAVE ON *.* FROM '{my_user}'@'%'"),
            format!("GRANT REPLICATION SLAVE ON *.* TO '{my_user}'@'%'"),
            "missing REPLICATION SLAVE".to_string(),
        ),
        (
            format!("REVOKE SELECT ON `{}`.* FROM '{my_user}'@'%'", db.name),
            format!("GRANT SELECT ON `{}`.* TO '{my_user}'@'%'", db.name),
            "GRANT SELECT ON `<db>`.* TO <ferry user>".to_string(),
        ),
        (
            // A privilege on the table other than SELECT makes it visible, still unreadable.
            format!(
                "REVOKE SELECT ON `{}`.* FROM '{my_user}'@'%'; GRANT INSERT ON `{}`.`items` TO '{my_user}'@'%'",
                db.name, db.name
            ),
            format!(
                "REVOKE INSERT ON `{}`.`items` FROM '{my_user}'@'%'; GRANT SELECT ON `{}`.* TO '{my_user}'@'%'",
                db.name, db.name
            ),
            format!("missing SELECT on {}.items", db.name),
        ),
    ] {
        root.query_drop(&revoke).await.unwrap_or_else(|e| panic!("{revoke}: {e}"));
        let (code, out) = validate(&config);
        assert_ne!(code, 0, "{revoke}:\n{out}");
        assert!(out.contains(&named), "{revoke}: {named:?} not in\n{out}");
        root.query_drop(&grant).await.unwrap_or_else(|e| panic!("{grant}: {e}"));
    }

    // With exactly those grants ferry copies and streams.
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    my.query_drop("INSERT INTO items VALUES (1000, 'streamed'); UPDATE items SET note = 'changed' WHERE id = 1")
        .await
        .expect("writes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 301);
    assert_eq!(
        db.count("SELECT count(*) FROM items WHERE note = 'changed'")
            .await,
        1
    );
    assert!(
        !ferry.log().contains(&format!("least-{suffix}")),
        "the password appeared in the log"
    );
    drop(ferry);
    let _ = root.query_drop(format!("DROP USER '{my_user}'@'%'")).await;
    let _ = admin
        .batch_execute(&format!(
            "REASSIGN OWNED BY {pg_user} TO postgres; DROP OWNED BY {pg_user}; DROP ROLE {pg_user}"
        ))
        .await;
    db.cleanup_dir();
}

/// The whole way there and back with exactly the README's grants: a source account with the
/// streaming, cutover-freeze and reverse-stream grants, a PostgreSQL role with `CREATE` on the
/// database, `REPLICATION`, `CREATEROLE` and `pg_signal_backend` — backfill, stream, cutover
/// (read-only switch, slot and publication), the application's writes on PostgreSQL carried
/// back, rollback (roles frozen, sessions ended, MySQL writable again) and the forward stream
/// resumed. Its own MariaDB: the cutover sets `read_only` server-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_grants_carry_a_cutover_and_a_rollback() {
    use common::migration::{cutover_cmd, pg_as, run_ferry, wait_for_matched_pass};
    let server = common::own_mariadb::OwnMariaDb::start("grantlife");
    let db = TestDb::new_on("grantlife", server.port).await;
    let mut my = db.my().await;
    my.query_drop(
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40)); \
         INSERT INTO items (id, note) SELECT seq, 'seed' FROM seq_1_to_300",
    )
    .await
    .expect("items");
    let suffix = rand::random::<u32>() % 1_000_000;
    let (my_user, pg_user, app) = (
        format!("flife{suffix}"),
        format!("flife{suffix}"),
        format!("fapp{suffix}"),
    );
    let mut root = mysql_at(db.my_port, None).await;
    for sql in [
        format!("CREATE USER '{my_user}'@'%' IDENTIFIED BY 'least-{suffix}'"),
        // streaming and backfill
        format!("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{my_user}'@'%'"),
        format!("GRANT SELECT ON `{}`.* TO '{my_user}'@'%'", db.name),
        // the cutover's freeze
        format!("GRANT READ_ONLY ADMIN, PROCESS ON *.* TO '{my_user}'@'%'"),
        // the reverse stream and the rollback
        format!(
            "GRANT INSERT, UPDATE, DELETE ON `{}`.* TO '{my_user}'@'%'",
            db.name
        ),
        format!("GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON `ferry`.* TO '{my_user}'@'%'"),
    ] {
        root.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let admin = pg(&db.name).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {pg_user} LOGIN REPLICATION CREATEROLE; \
             GRANT pg_signal_backend TO {pg_user}; \
             GRANT CREATE ON DATABASE \"{}\" TO {pg_user}; \
             CREATE ROLE {app} LOGIN",
            db.name
        ))
        .await
        .expect("roles");
    let config = db.config_backfill(
        "main",
        "",
        "[verify]\npass_interval_seconds = 0.5\nrows_per_second = 100000\n",
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replacen("user = \"ferry\"", &format!("user = \"{my_user}\""), 1)
        .replacen(
            "password = \"ferry\"",
            &format!("password = \"least-{suffix}\""),
            1,
        )
        .replacen("user = \"postgres\"", &format!("user = \"{pg_user}\""), 1);
    std::fs::write(&config, text).expect("config");

    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    wait_for_matched_pass(&db, &mut ferry).await;
    let (code, report, out) = cutover_cmd(&config, &["--yes"]).await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(report["outcome"], "switched", "{out}");

    // The application writes on PostgreSQL (tables owned by ferry's role; the admin grants).
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA \"{d}\" TO {app}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{d}\" TO {app}; \
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA \"{d}\" TO {app}",
            d = db.name
        ))
        .await
        .expect("application grants");
    let client = pg_as(&db, &app).await.expect("the application connects");
    client
        .batch_execute(
            "INSERT INTO items (note) SELECT 'pg' FROM generate_series(1, 50); \
             UPDATE items SET note = 'pg-updated' WHERE id <= 10; DELETE FROM items WHERE id BETWEEN 20 AND 29",
        )
        .await
        .expect("writes on PostgreSQL with a fresh id each");

    let rollback = || {
        run_ferry(vec![
            "rollback".into(),
            "--config".into(),
            config.to_str().expect("utf-8").into(),
            "--json".into(),
            "--app-role".into(),
            app.clone(),
        ])
    };
    // Without ALTER (the AUTO_INCREMENT counters) the rollback stops, names the grant and
    // undoes the freeze: the application can log in again.
    let (code, r, out) = rollback().await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(r["outcome"], "failed", "{out}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("GRANT ALTER ON `{}`.*", db.name))),
        "{out}"
    );
    drop(pg_as(&db, &app).await.expect("the freeze was undone"));
    let grant = format!("GRANT ALTER ON `{}`.* TO '{my_user}'@'%'", db.name);
    root.query_drop(&grant).await.expect("grant alter");

    let (code, r, out) = rollback().await;
    assert_eq!(code, 0, "{out}\n{}", ferry.log());
    assert_eq!(r["outcome"], "rolled_back", "{out}");
    assert!(
        pg_as(&db, &app).await.is_err(),
        "the application role is frozen"
    );
    let count: Option<i64> = my
        .query_first("SELECT COUNT(*) FROM items")
        .await
        .expect("count");
    assert_eq!(count, Some(300 + 50 - 10));

    // MySQL is primary again: its new writes reach PostgreSQL, and the copies are equal.
    my.query_drop("INSERT INTO items (note) VALUES ('mysql again')")
        .await
        .expect("MySQL takes writes");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    let (code, out) = ferry_cmd(&["verify", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !ferry.log().contains(&format!("least-{suffix}")),
        "the password appeared in the log"
    );
    drop(ferry);
    let _ = admin
        .batch_execute(&format!(
            "REASSIGN OWNED BY {pg_user} TO postgres; DROP OWNED BY {pg_user}; \
             DROP OWNED BY {app}; DROP ROLE {app}; DROP ROLE {pg_user}"
        ))
        .await;
    db.cleanup_dir();
}
