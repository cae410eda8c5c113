//! The command line through the real binary: help, migrate, user add/list/disable, clear
//! errors with exit codes, start on an existing data folder and graceful SIGTERM.

mod common;

use std::process::Command;

use common::{Server, output_text, postcast_cli};
use serde_json::json;

#[test]
fn help_migrate_and_user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = postcast_cli(d, &["--help"], None);
    assert!(o.status.success());
    for cmd in ["serve", "migrate", "user"] {
        assert!(output_text(&o).contains(cmd), "{cmd} missing from --help");
    }
    let o = postcast_cli(d, &["migrate"], None);
    assert!(o.status.success(), "{}", output_text(&o));
    let steps = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/src"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('m'))
        .count();
    assert!(steps > 0);
    assert!(output_text(&o).contains(&format!("applied {steps} migration(s)")), "{}", output_text(&o));
    let o = postcast_cli(d, &["migrate"], None);
    assert!(output_text(&o).contains("applied 0 migration(s)"), "{}", output_text(&o));

    let o = postcast_cli(d, &["user", "add", "Zoe"], Some("correct horse battery\n"));
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(output_text(&o).contains("zoe@localhost"));
    let o = postcast_cli(d, &["user", "add", "zoe"], Some("correct horse battery\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("taken"), "{}", output_text(&o));
    let o = postcast_cli(d, &["user", "add", "yan"], Some("short\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("at least 10 characters"), "{}", output_text(&o));
    let o = postcast_cli(d, &["user", "add", "yan"], Some(""));
    assert_eq!(o.status.code(), Some(1));

    let o = postcast_cli(d, &["user", "list"], None);
    assert!(output_text(&o).contains("zoe") && output_text(&o).contains("active"), "{}", output_text(&o));
    let o = postcast_cli(d, &["user", "disable", "zoe"], None);
    assert!(o.status.success(), "{}", output_text(&o));
    let o = postcast_cli(d, &["user", "list"], None);
    assert!(output_text(&o).contains("disabled"), "{}", output_text(&o));
    let o = postcast_cli(d, &["user", "disable", "nobody"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("not found"));

    let o = postcast_cli(d, &["--no-such-flag"], None);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "[server]\nhttp = \"nonsense\"\n").unwrap();
    let o = postcast_cli(d, &["--config", bad.to_str().unwrap(), "migrate"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(output_text(&o).contains("bad.toml"), "{}", output_text(&o));
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
