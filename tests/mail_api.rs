//! The mail API through the real binary: writing (groups expanded, Bcc, attachments,
//! replies threaded, drafts), new recipients landing in contacts, filters from
//! preferences, labels, actions and counts, every route refusing another user's ids, and
//! line breaks in compose input (or in a replied subject) never starting a header.

mod common;

use common::{Server, User};
use reqwest::Method;
use serde_json::{Value, json};

impl User<'_> {
    async fn list(&self, query: &str) -> Vec<Value> {
        self.ok(Method::GET, &format!("/api/v1/mail/messages?{query}"), None).await["messages"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn mailbox(&self, role: &str) -> Value {
        let boxes = self.ok(Method::GET, "/api/v1/mail/mailboxes", None).await;
        boxes.as_array().unwrap().iter().find(|b| b["role"] == role).unwrap().clone()
    }
}

#[tokio::test]
async fn compose_groups_bcc_attachments_replies_drafts_and_contacts() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let carol = User::new(&server, "carol").await;

    let b = ada.ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Bob", "emails": ["bob@localhost"]}))).await;
    let c =
        ada.ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Carol", "emails": ["carol@localhost"]}))).await;
    let group = json!({"name": "Team", "member_ids": [b["id"], c["id"]]});
    ada.ok(Method::POST, "/api/v1/contacts/groups", Some(group)).await;

    let file = ada.req(Method::POST, "/api/v1/mail/uploads").body("plan,v1\n").send().await.unwrap();
    assert_eq!(file.status(), 201);
    let upload: Value = file.json().await.unwrap();
    let draft = json!({
        "to": ["Team"], "bcc": ["dave@localhost"], "subject": "Kick-off", "text": "See the plan.",
        "attachments": [{"id": upload["id"], "name": "plan.csv", "content_type": "text/csv"}]
    });
    let dave = User::new(&server, "dave").await;
    let sent = ada.ok(Method::POST, "/api/v1/mail/send", Some(draft)).await;
    assert_eq!(sent["delivered_locally"], 3, "the group expanded to bob and carol, plus dave in Bcc");

    for (user, name) in [(&bob, "bob"), (&carol, "carol"), (&dave, "dave")] {
        let inbox = user.list("role=inbox").await;
        assert_eq!(inbox.len(), 1, "{name}");
        assert_eq!(inbox[0]["subject"], "Kick-off");
        assert_eq!(inbox[0]["to"], json!(["bob@localhost", "carol@localhost"]), "Bcc stays hidden");
    }
    let bob_copy = bob.list("role=inbox").await[0].clone();
    let bob_id = bob_copy["id"].as_i64().unwrap();
    let att = bob.req(Method::GET, &format!("/api/v1/mail/messages/{bob_id}/attachments/0")).send().await.unwrap();
    assert_eq!(att.text().await.unwrap(), "plan,v1\n");

    // A new recipient (dave, from Bcc) lands in ada's contacts through the MailSent event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = ada.ok(Method::GET, "/api/v1/contacts?q=dave", None).await;
        if found["contacts"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "dave never landed in ada's contacts");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Autocomplete ranks by how often ada writes to someone: Carol (written to once) comes
    // before Carl (never written to), though "Carl" sorts first by name.
    ada.ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Carl", "emails": ["carl@elsewhere.example"]}))).await;
    let s = ada.ok(Method::GET, "/api/v1/contacts/autocomplete?q=car", None).await;
    assert_eq!(s["addresses"][0]["address"], "carol@localhost", "{s}");
    assert_eq!(s["addresses"][1]["address"], "carl@elsewhere.example", "{s}");

    // Bob replies: it lands in ada's inbox in the same thread as her sent copy.
    let reply = json!({"to": ["ada@localhost"], "text": "Sounds good.", "reply_to_id": bob_id});
    bob.ok(Method::POST, "/api/v1/mail/send", Some(reply)).await;
    let ada_inbox = ada.list("role=inbox").await;
    assert_eq!(ada_inbox[0]["subject"], "Re: Kick-off");
    assert_eq!(ada_inbox[0]["thread_id"], sent["thread_id"], "the reply joins ada's thread");
    let thread = ada.ok(Method::GET, &format!("/api/v1/mail/threads/{}", sent["thread_id"]), None).await;
    assert_eq!(thread.as_array().unwrap().len(), 2);
    assert_eq!(bob.list("role=inbox").await[0]["answered"], true);

    // Drafts: saved, replaced, deleted; the same upload cannot be used by someone else.
    let d1 =
        ada.ok(Method::PUT, "/api/v1/mail/drafts", Some(json!({"to": ["bob@localhost"], "subject": "draft 1"}))).await;
    let d2 =
        ada.ok(Method::PUT, "/api/v1/mail/drafts", Some(json!({"subject": "draft 2", "draft_id": d1["id"]}))).await;
    let drafts = ada.list("role=drafts").await;
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0]["subject"], "draft 2");
    assert_eq!(drafts[0]["draft"], true);
    let (status, _) = bob.json(Method::DELETE, &format!("/api/v1/mail/drafts/{}", d2["id"]), None).await;
    assert_eq!(status, 404);
    ada.ok(Method::DELETE, &format!("/api/v1/mail/drafts/{}", d2["id"]), None).await;
    assert!(ada.list("role=drafts").await.is_empty());

    let theft = json!({"to": ["ada@localhost"], "attachments": [{"id": upload["id"], "name": "x"}]});
    let (status, _) = bob.json(Method::POST, "/api/v1/mail/send", Some(theft)).await;
    assert_eq!(status, 404, "an upload is its uploader's only");
    let (status, v) = ada.json(Method::POST, "/api/v1/mail/send", Some(json!({"to": ["Nobody Group"]}))).await;
    assert_eq!(status, 422, "{v}");
    let (status, _) = ada.json(Method::POST, "/api/v1/mail/send", Some(json!({"to": ["ghost@localhost"]}))).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn labels_actions_filters_and_isolation() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let carol = User::new(&server, "carol").await;
    let filters = json!({"mail": {"filters": [
        {"match": {"subject": "invoice"}, "label": "Bills", "skip_inbox": true, "forward": "carol@localhost"}
    ]}});
    // A forwarding filter needs the password confirmed first.
    server.reauth(&ada.token, common::PW).await;
    ada.ok(Method::PUT, "/api/v1/prefs", Some(filters)).await;
    for subject in ["Hello", "Lunch?", "Invoice 42"] {
        bob.ok(
            Method::POST,
            "/api/v1/mail/send",
            Some(json!({"to": ["ada@localhost"], "subject": subject, "text": "hi"})),
        )
        .await;
    }
    let inbox = ada.list("role=inbox").await;
    assert_eq!(inbox.len(), 2, "the invoice skipped the inbox");
    let archive = ada.list("role=archive").await;
    assert_eq!(archive[0]["subject"], "Invoice 42");
    let forwarded = carol.list("role=inbox").await;
    assert_eq!(forwarded.len(), 1, "the filter forwarded the invoice to carol");
    assert_eq!(forwarded[0]["subject"], "Invoice 42");

    // Forwarding by hand attaches the original.
    let fwd = json!({"to": ["carol@localhost"], "forward_id": archive[0]["id"], "text": "FYI"});
    ada.ok(Method::POST, "/api/v1/mail/send", Some(fwd)).await;
    let got = carol.list("role=inbox").await;
    assert_eq!(got[0]["subject"], "Fwd: Invoice 42");
    let view = carol.ok(Method::GET, &format!("/api/v1/mail/messages/{}", got[0]["id"]), None).await;
    assert_eq!(view["attachments"][0]["content_type"], "message/rfc822");

    let labels = ada.ok(Method::GET, "/api/v1/mail/labels", None).await;
    assert_eq!(labels[0]["name"], "Bills");
    assert_eq!((labels[0]["total"].as_i64(), labels[0]["unread"].as_i64()), (Some(1), Some(1)));
    assert_eq!(ada.mailbox("inbox").await["unread"], 2);

    let ids: Vec<i64> = inbox.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    let work = ada.ok(Method::POST, "/api/v1/mail/labels", Some(json!({"name": "Work", "color": "#1a73e8"}))).await;
    let act = |action: &str, extra: Value| {
        let mut body = json!({"action": action, "ids": ids});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(act("label", json!({"label_id": work["id"]})))).await;
    assert_eq!(ada.list(&format!("label={}", work["id"])).await.len(), 2);
    let whole_thread = json!({"action": "label", "thread_ids": [archive[0]["thread_id"]], "label_id": work["id"]});
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(whole_thread)).await;
    assert_eq!(ada.list(&format!("label={}", work["id"])).await.len(), 4, "the invoice and the forward of it");
    let unlabel = json!({"action": "unlabel", "thread_ids": [archive[0]["thread_id"]], "label_id": work["id"]});
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(unlabel)).await;
    assert_eq!(ada.list(&format!("label={}", work["id"])).await.len(), 2);
    ada.ok(
        Method::PATCH,
        &format!("/api/v1/mail/labels/{}", work["id"]),
        Some(json!({"name": "Office", "color": null})),
    )
    .await;
    let labels = ada.ok(Method::GET, "/api/v1/mail/labels", None).await;
    assert!(labels.as_array().unwrap().iter().any(|l| l["name"] == "Office" && l["color"].is_null()));
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(act("read", json!({})))).await;
    assert_eq!(ada.mailbox("inbox").await["unread"], 0);
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(act("star", json!({})))).await;
    assert_eq!(ada.list("starred=true").await.len(), 2);
    ada.ok(Method::PATCH, &format!("/api/v1/mail/messages/{}", ids[0]), Some(json!({"starred": false}))).await;
    assert_eq!(ada.list("starred=true").await.len(), 1);
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(act("trash", json!({})))).await;
    assert!(ada.list("role=inbox").await.is_empty());
    assert_eq!(ada.list("starred=true").await.len(), 0, "Trash is left out of starred");
    let emptied = ada.ok(Method::POST, "/api/v1/mail/trash/empty", None).await;
    assert_eq!(emptied["affected"], 2);

    // Bob, with ada's ids, finds nothing.
    let own = archive[0]["id"].as_i64().unwrap();
    let label = labels[0]["id"].as_i64().unwrap();
    let inbox_id = ada.mailbox("inbox").await["id"].as_i64().unwrap();
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/mail/messages/{own}"), None),
        (Method::GET, format!("/api/v1/mail/messages/{own}/raw"), None),
        (Method::GET, format!("/api/v1/mail/messages/{own}/attachments/0"), None),
        (Method::PATCH, format!("/api/v1/mail/messages/{own}"), Some(json!({"seen": true}))),
        (Method::GET, format!("/api/v1/mail/threads/{}", archive[0]["thread_id"]), None),
        (Method::GET, format!("/api/v1/mail/messages?mailbox={inbox_id}"), None),
        (Method::GET, format!("/api/v1/mail/messages?label={label}"), None),
        (Method::PATCH, format!("/api/v1/mail/mailboxes/{inbox_id}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/api/v1/mail/mailboxes/{inbox_id}"), None),
        (Method::PATCH, format!("/api/v1/mail/labels/{label}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/api/v1/mail/labels/{label}"), None),
        (Method::POST, "/api/v1/mail/messages/actions".into(), Some(json!({"action": "delete", "ids": [own]}))),
        (
            Method::POST,
            "/api/v1/mail/messages/actions".into(),
            Some(json!({"action": "trash", "thread_ids": [archive[0]["thread_id"]]})),
        ),
    ] {
        let (status, v) = bob.json(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {v}");
    }
    assert_eq!(ada.list("role=archive").await.len(), 1, "still there");

    // Hostile input gets the API's error shape, never a panic or a plain-text 400.
    for (path, status) in [
        ("/api/v1/mail/messages/abc", 404),
        ("/api/v1/mail/threads/99999999999999999999", 404),
        ("/api/v1/mail/messages/1/attachments/x", 404),
        ("/api/v1/mail/messages?limit=-1", 400),
        ("/api/v1/mail/messages?mailbox=x", 400),
        ("/api/v1/mail/messages?role=nope", 400),
        ("/api/v1/mail/messages?cursor=not-a-cursor", 400),
        ("/api/v1/mail/messages?starred=true&important=true", 400),
    ] {
        let (got, v) = ada.json(Method::GET, path, None).await;
        assert_eq!(got, status, "{path}: {v}");
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
    let (got, v) =
        ada.json(Method::POST, "/api/v1/mail/messages/actions", Some(json!({"action": "explode", "ids": [1]}))).await;
    assert_eq!(got, 422, "{v}");
    assert_eq!(ada.ok(Method::GET, &format!("/api/v1/mail/messages/{own}"), None).await["seen"], false);
}

#[tokio::test]
async fn deleting_through_the_api_fills_the_expunge_log_with_its_modseq() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    for subject in ["one", "two"] {
        let mail = json!({"to": ["ada@localhost"], "subject": subject, "text": "hi"});
        bob.ok(Method::POST, "/api/v1/mail/send", Some(mail)).await;
    }
    let inbox = ada.mailbox("inbox").await;
    let inbox_id = inbox["id"].as_i64().unwrap();
    assert_eq!((inbox["total"].as_i64(), inbox["unread"].as_i64()), (Some(2), Some(2)));
    let changes = |since: i64| format!("/api/v1/mail/mailboxes/{inbox_id}/changes?since={since}");
    let before = ada.ok(Method::GET, &changes(0), None).await;
    assert_eq!(before["changed"].as_array().unwrap().len(), 2, "{before}");
    assert!(before["expunged"].as_array().unwrap().is_empty(), "{before}");
    let seen = before["highest_modseq"].as_i64().unwrap();

    let doomed = &before["changed"][0];
    let delete = json!({"action": "delete", "ids": [doomed["id"]]});
    ada.ok(Method::POST, "/api/v1/mail/messages/actions", Some(delete)).await;
    let after = ada.ok(Method::GET, &changes(seen), None).await;
    let expunged = after["expunged"].as_array().unwrap();
    assert_eq!(expunged.len(), 1, "{after}");
    assert_eq!(expunged[0]["uid"], doomed["uid"]);
    let modseq = expunged[0]["modseq"].as_i64().unwrap();
    assert!(modseq > seen, "{after}");
    assert_eq!(after["highest_modseq"].as_i64(), Some(modseq), "the delete is the newest change");
    assert!(after["changed"].as_array().unwrap().is_empty(), "{after}");
    let nothing_new = ada.ok(Method::GET, &changes(modseq), None).await;
    assert!(nothing_new["expunged"].as_array().unwrap().is_empty(), "{nothing_new}");
    assert_eq!((ada.mailbox("inbox").await["total"].as_i64()), Some(1), "the counter followed");

    let (status, v) = bob.json(Method::GET, &changes(0), None).await;
    assert_eq!(status, 404, "another user's mailbox: {v}");
    let (status, v) = ada.json(Method::GET, &format!("/api/v1/mail/mailboxes/{inbox_id}/changes?since=x"), None).await;
    assert_eq!(status, 400, "{v}");
    let doc = ada.ok(Method::GET, "/api/v1/openapi.json", None).await;
    assert!(doc["paths"].get("/api/v1/mail/mailboxes/{id}/changes").is_some(), "the route is documented");
}

/// The header lines of a raw message, as written (folded lines start with a blank).
fn header_lines(raw: &str) -> Vec<String> {
    raw.split("\r\n\r\n").next().unwrap_or_default().split("\r\n").map(str::to_ascii_lowercase).collect()
}

#[tokio::test]
async fn line_breaks_in_compose_input_never_start_a_header() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let raw_of = |user: &User<'_>, id: &Value| {
        let req = user.req(Method::GET, &format!("/api/v1/mail/messages/{id}/raw"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let injected = |raw: &str| {
        header_lines(raw)
            .into_iter()
            .filter(|l| l.starts_with("bcc:") || l.starts_with("x-injected:"))
            .collect::<Vec<_>>()
    };

    let mail = json!({
        "to": ["Bob\r\nX-Injected: 1 <bob@localhost>"],
        "subject": "hi\r\nBcc: victim@evil.example",
        "text": "hello",
    });
    let sent = ada.ok(Method::POST, "/api/v1/mail/send", Some(mail)).await;
    assert_eq!(sent["delivered_locally"], 1);
    let sent_raw = raw_of(&ada, &sent["id"]).await;
    assert_eq!(injected(&sent_raw), Vec::<String>::new(), "{sent_raw}");
    let got = bob.list("role=inbox").await;
    assert_eq!(got[0]["subject"], "hi  Bcc: victim@evil.example");
    let got_raw = raw_of(&bob, &got[0]["id"]).await;
    assert_eq!(injected(&got_raw), Vec::<String>::new(), "{got_raw}");

    // An address with a line break is refused and nothing is sent.
    let bad = json!({"to": ["bob@localhost\r\nBcc: victim@evil.example"], "subject": "x"});
    let (status, v) = ada.json(Method::POST, "/api/v1/mail/send", Some(bad)).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "bad_recipient", "{v}");
    assert_eq!(ada.list("role=sent").await.len(), 1);
    assert_eq!(bob.list("role=inbox").await.len(), 1);

    // A subject that decodes to a line break, copied into a reply, stays on one line.
    let evil = "From: carol@c.test\r\nTo: ada@localhost\r\nMessage-ID: <e1@c.test>\r\n\
Subject: =?utf-8?q?Plans=0D=0ABcc:_victim@evil.example?=\r\n\r\nhi\r\n";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("evil.eml");
    std::fs::write(&data, evil).unwrap();
    let mx = server.smtp.unwrap();
    let out = std::process::Command::new("swaks")
        .args(["--server", &mx.ip().to_string(), "--port", &mx.port().to_string(), "--helo", "mx.c.test"])
        .args(["--from", "carol@c.test", "--to", "ada@localhost", "--data", &format!("@{}", data.display())])
        .output()
        .expect("swaks is installed (apt-get install swaks)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let original = ada.list("role=inbox").await[0]["id"].clone();
    for (key, prefix) in [("reply_to_id", "Re: "), ("forward_id", "Fwd: ")] {
        let mail = json!({"to": ["bob@localhost"], key: original, "text": "see below"});
        let sent = ada.ok(Method::POST, "/api/v1/mail/send", Some(mail)).await;
        let raw = raw_of(&ada, &sent["id"]).await;
        assert_eq!(injected(&raw), Vec::<String>::new(), "{key}: {raw}");
        let got = &bob.list("role=inbox").await[0];
        assert_eq!(got["subject"], format!("{prefix}Plans  Bcc: victim@evil.example"), "{key}");
    }
}

#[tokio::test]
async fn compose_and_actions_refuse_another_users_ids() {
    let server = Server::start();
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    // Ada's things: a sent message with an attachment, a draft, a label, her mailboxes.
    let file = ada.req(Method::POST, "/api/v1/mail/uploads").body("secret,plan\n").send().await.unwrap();
    let upload: Value = file.json().await.unwrap();
    let with_file = json!({"to": ["bob@localhost"], "subject": "Plan", "text": "attached",
        "attachments": [{"id": upload["id"], "name": "plan.csv", "content_type": "text/csv"}]});
    ada.ok(Method::POST, "/api/v1/mail/send", Some(with_file)).await;
    let ada_sent = ada.list("role=sent").await[0].clone();
    assert_eq!(ada_sent["has_attachments"], true, "the target really has an attachment");
    let ada_msg = ada_sent["id"].as_i64().unwrap();
    let attachment = format!("/api/v1/mail/messages/{ada_msg}/attachments/0");
    assert_eq!(ada.req(Method::GET, &attachment).send().await.unwrap().text().await.unwrap(), "secret,plan\n");
    let draft = ada.ok(Method::PUT, "/api/v1/mail/drafts", Some(json!({"subject": "ada's draft"}))).await;
    let label = ada.ok(Method::POST, "/api/v1/mail/labels", Some(json!({"name": "Private"}))).await;
    let ada_inbox = ada.mailbox("inbox").await["id"].as_i64().unwrap();
    let bob_msg = bob.list("role=inbox").await[0]["id"].as_i64().unwrap();

    let (status, v) = bob.json(Method::GET, &attachment, None).await;
    assert_eq!(status, 404, "ada's attachment: {v}");
    for (what, body) in [
        ("reply_to_id", json!({"to": ["bob@localhost"], "text": "x", "reply_to_id": ada_msg})),
        ("forward_id", json!({"to": ["bob@localhost"], "text": "x", "forward_id": ada_msg})),
        ("draft_id", json!({"to": ["bob@localhost"], "text": "x", "draft_id": draft["id"]})),
    ] {
        let (status, v) = bob.json(Method::POST, "/api/v1/mail/send", Some(body)).await;
        assert_eq!(status, 404, "send with ada's {what}: {v}");
    }
    let (status, v) = bob
        .json(Method::PUT, "/api/v1/mail/drafts", Some(json!({"subject": "mine now", "draft_id": draft["id"]})))
        .await;
    assert_eq!(status, 404, "saving over ada's draft: {v}");
    for body in [
        json!({"action": "label", "ids": [bob_msg], "label_id": label["id"]}),
        json!({"action": "move", "ids": [bob_msg], "mailbox_id": ada_inbox}),
    ] {
        let (status, v) = bob.json(Method::POST, "/api/v1/mail/messages/actions", Some(body.clone())).await;
        assert_eq!(status, 404, "{body}: {v}");
    }
    // Nothing of ada's moved into bob's mail, nothing of bob's into ada's.
    assert_eq!(bob.list("role=inbox").await.len(), 1);
    assert!(bob.list("role=sent").await.is_empty(), "none of bob's sends went out");
    assert!(ada.list("role=inbox").await.is_empty());
    assert_eq!(ada.list(&format!("label={}", label["id"])).await.len(), 0);
    assert_eq!(ada.list("role=drafts").await[0]["subject"], "ada's draft");
}
