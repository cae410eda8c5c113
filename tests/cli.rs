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

#[tokio::test]
async fn failed_events_are_listed_and_retried_through_their_subscriber() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = postcast_cli(d, &["user", "add", "zoe"], Some("correct horse battery\n"));
    assert!(o.status.success(), "{}", output_text(&o));
    let o = postcast_cli(d, &["events", "failed"], None);
    assert!(output_text(&o).contains("no failed events"), "{}", output_text(&o));
    // Two dead letters of zoe's registration event: one for a real subscriber, one for a
    // subscriber this build does not have.
    let url = format!("sqlite://{}?mode=rw", d.join("postcast.db").display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    for subscriber in ["profile", "gone"] {
        let insert = format!(
            "INSERT INTO bus_dead_letters (subscriber, outbox_id, event, error, failed_at) \
             SELECT '{subscriber}', id, event, 'handler failed', 0 FROM outbox ORDER BY id LIMIT 1"
        );
        let res = sea_orm::ConnectionTrait::execute_raw(&db, sea_orm::Statement::from_string(backend, insert));
        assert_eq!(res.await.unwrap().rows_affected(), 1);
    }
    db.close().await.unwrap();
    let o = postcast_cli(d, &["events", "failed"], None);
    let listed = output_text(&o);
    assert!(listed.contains("profile") && listed.contains("gone") && listed.contains("handler failed"), "{listed}");
    let o = postcast_cli(d, &["events", "retry"], None);
    assert_eq!(o.status.code(), Some(1), "one letter fails again: {}", output_text(&o));
    assert!(output_text(&o).contains("1 delivered, 1 failed again"), "{}", output_text(&o));
    let o = postcast_cli(d, &["events", "failed"], None);
    let left = output_text(&o);
    assert!(!left.contains("profile") && left.contains("no subscriber named \"gone\""), "{left}");
}

#[test]
fn the_data_folder_and_everything_in_it_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A folder and a file left open to others, as an older version or a careless copy might.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.join("notes.txt"), "x").unwrap();
    std::fs::set_permissions(d.join("notes.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = postcast_cli(d, &["user", "add", "zoe"], Some("correct horse battery\n"));
    assert!(o.status.success(), "{}", output_text(&o));
    let o = postcast_cli(d, &["dns"], None);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700);
    let mut stack = vec![d.to_path_buf()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is open to others ({mode:o})", path.display());
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
            }
        }
    }
    assert!(files >= 3, "the database, the DKIM key and notes.txt at least ({files})");
}
