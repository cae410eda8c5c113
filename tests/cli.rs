//! The command line through the real binary: help, migrate, user add/list/disable, clear
//! errors with exit codes, start on an existing data folder and graceful SIGTERM.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::Server;
use serde_json::json;

fn postcast(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postcast"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn help_migrate_and_user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = postcast(d, &["--help"], None);
    assert!(o.status.success());
    for cmd in ["serve", "migrate", "user"] {
        assert!(text(&o).contains(cmd), "{cmd} missing from --help");
    }
    let o = postcast(d, &["migrate"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("applied 7 migration(s)"), "{}", text(&o));
    let o = postcast(d, &["migrate"], None);
    assert!(text(&o).contains("applied 0 migration(s)"), "{}", text(&o));

    let o = postcast(d, &["user", "add", "Zoe"], Some("correct horse battery\n"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("zoe@localhost"));
    let o = postcast(d, &["user", "add", "zoe"], Some("correct horse battery\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("taken"), "{}", text(&o));
    let o = postcast(d, &["user", "add", "yan"], Some("short\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("at least 10 characters"), "{}", text(&o));
    let o = postcast(d, &["user", "add", "yan"], Some(""));
    assert_eq!(o.status.code(), Some(1));

    let o = postcast(d, &["user", "list"], None);
    assert!(text(&o).contains("zoe") && text(&o).contains("active"), "{}", text(&o));
    let o = postcast(d, &["user", "disable", "zoe"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = postcast(d, &["user", "list"], None);
    assert!(text(&o).contains("disabled"), "{}", text(&o));
    let o = postcast(d, &["user", "disable", "nobody"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not found"));

    let o = postcast(d, &["--no-such-flag"], None);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[server]\nhttp = \"nonsense\"\n").unwrap();
    let o = postcast(d, &["--config", bad.to_str().unwrap(), "migrate"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("bad.toml"), "{}", text(&o));
}

#[tokio::test]
async fn restart_keeps_accounts_and_sigterm_stops_cleanly() {
    let s = Server::start();
    let token = s.register_and_login("ivy", "correct horse battery").await;
    let data = s.stop();
    let s = Server::start_in(data, "");
    let r = s.client().get(s.url("/api/v1/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "sessions survive a restart");
    let r = s
        .client()
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": "ivy", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut s = s;
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
