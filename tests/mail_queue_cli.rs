//! The outbound queue from the command line: mail to a domain whose server cannot be
//! reached waits in the queue; `postcast queue list` shows it, `queue retry` and
//! `queue drop` steer it.

mod common;

use common::{Server, User, output_text, postcast_cli};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn queue_list_retry_and_drop_through_the_cli() {
    // Nothing listens on the override's port: every attempt fails and the message waits.
    let closed = Server::free_port();
    let config =
        format!("[outbound]\nallow_private_targets = true\n\n[outbound.mx_override]\n\"far.example\" = \"{closed}\"\n");
    let server = Server::start_with(&config);
    let ada = User::new(&server, "ada").await;
    let sent =
        ada.ok(Method::POST, "/api/v1/mail/send", Some(json!({"to": ["bob@far.example"], "subject": "Waiting"}))).await;
    let id = sent["queued"].as_i64().unwrap().to_string();
    let config_path = server.config_path.clone().unwrap();
    let data = server.stop();
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", config_path.to_str().unwrap()];
        all.extend_from_slice(args);
        postcast_cli(data.path(), &all, None)
    };

    let list = cli(&["queue", "list"]);
    let text = output_text(&list);
    assert!(list.status.success(), "{text}");
    assert!(text.contains(&id) && text.contains("bob@far.example") && text.contains("queued"), "{text}");
    let retry = cli(&["queue", "retry", &id]);
    assert!(retry.status.success(), "{}", output_text(&retry));
    let drop = cli(&["queue", "drop", &id]);
    assert!(drop.status.success(), "{}", output_text(&drop));
    let after = output_text(&cli(&["queue", "list"]));
    assert!(!after.contains("bob@far.example"), "{after}");
    let missing = cli(&["queue", "drop", "999999"]);
    assert!(!missing.status.success(), "dropping an unknown id fails");
}
