//! Secrets: a relative `password_file` is read from systemd's `$CREDENTIALS_DIRECTORY`
//! (`LoadCredential=`), and a recognisable password never appears in the log, `/status`,
//! `ferry status`, or the error of a refused login.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn credentials_come_from_the_credentials_directory_and_never_show() {
    let db = TestDb::new("secrets").await;
    let mut my = db.my().await;
    my.query_drop("CREATE TABLE items (id INT PRIMARY KEY, note VARCHAR(40))")
        .await
        .expect("items");
    let suffix = rand::random::<u32>() % 1_000_000;
    let user = format!("fsec{suffix}");
    let canary = format!("Canary-{suffix}-pw");
    let mut root = mysql_at(db.my_port, None).await;
    root.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{canary}'"))
        .await
        .expect("user");
    root.query_drop(format!("GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'"))
        .await
        .expect("grant");

    let credentials = db.dir.join("credentials");
    std::fs::create_dir_all(&credentials).expect("credentials dir");
    std::fs::write(credentials.join("source-password"), format!("{canary}\n")).expect("credential");
    let listen = free_listen_addr();
    let config = db.config_metrics("main", "current", &listen, "");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replacen("user = \"ferry\"", &format!("user = \"{user}\""), 1)
        .replacen(
            "password = \"ferry\"",
            "password_file = \"source-password\"",
            1,
        );
    std::fs::write(&config, text).expect("config");
    let path = config.to_str().expect("utf-8");

    // Without the directory the relative file is looked for beside the config: not there.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["validate", "--config", path])
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("validate");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("source-password"), "{text}");
    let cred = credentials.to_str().expect("utf-8");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["validate", "--config", path])
        .env("CREDENTIALS_DIRECTORY", cred)
        .output()
        .expect("validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(&canary), "{text}");

    let mut ferry = Ferry::start_with(&config, &[], &[("CREDENTIALS_DIRECTORY", cred)], &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    my.query_drop("INSERT INTO items VALUES (1, 'one')")
        .await
        .expect("row");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(60), &mut ferry)
        .await;
    assert_eq!(db.count("SELECT count(*) FROM items").await, 1);
    let (code, status) = http_get(&listen, "/status").expect("/status");
    assert_eq!(code, 200);
    assert!(!status.contains(&canary), "{status}");
    let (code, human) = ferry_cmd(&["status", "--config", path]);
    assert_eq!(code, 0, "{human}");
    assert!(!human.contains(&canary), "{human}");

    // A refused login: the error names the user and the server, not the password.
    root.query_drop(format!(
        "ALTER USER '{user}'@'%' IDENTIFIED BY 'other-{suffix}'"
    ))
    .await
    .expect("change password");
    ferry.kill9_and_restart();
    let status = ferry.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success());
    let log = ferry.log();
    assert!(log.contains("Access denied"), "{log}");
    assert!(
        !log.contains(&canary),
        "the password appeared in the log:\n{log}"
    );
    let _ = root.query_drop(format!("DROP USER '{user}'@'%'")).await;
    db.cleanup_dir();
}
