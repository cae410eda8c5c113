//! Unit tests of the mail store, pipeline, queries and actions against a temporary SQLite
//! file and blob store.

use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use super::actions::FlagChange;
use super::deliver::Envelope;
use super::store::Target;
use super::view::Scope;
use super::*;
use crate::config::Config;
use crate::domains::prefs::{Expect, PrefsService};
use crate::platform::bus::outbox;

/// A mail service over a temporary SQLite file and blob store, with users ada and bob.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) mail: MailService,
    pub(crate) prefs: PrefsService,
    pub(crate) db: Db,
    pub(crate) bus: Bus,
    pub(crate) ada: i64,
    pub(crate) bob: i64,
}

/// A fresh [`Fixture`].
pub(crate) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = crate::platform::db::open(&url, 4, Duration::from_secs(5), true).await.unwrap();
    let mut config = Config::default();
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    let bus = Bus::new(db.clone());
    let auth = AuthService::new(db.clone(), bus.clone(), &config, &crate::platform::secrets::ServerSecret::generate())
        .unwrap();
    let client = crate::domains::auth::ClientInfo::local("test");
    let ada = auth.create_user("ada", "correct horse battery", &client).await.unwrap().id;
    let bob = auth.create_user("bob", "correct horse battery", &client).await.unwrap().id;
    let blobs = Blobs::open(dir.path().join("blobs"), db.clone()).unwrap();
    let prefs = PrefsService::new(db.clone(), blobs.clone(), bus.clone(), Default::default());
    let mail =
        MailService::new(db.clone(), blobs, bus.clone(), auth, prefs.clone(), Default::default(), None, "localhost");
    Fixture { dir, mail, prefs, db, bus, ada, bob }
}

fn envelope(recipients: Vec<i64>) -> Envelope {
    Envelope {
        mail_from: "carol@c.test".into(),
        recipients,
        peer: Some("192.0.2.7".parse().unwrap()),
        helo: "mx.c.test".into(),
        protocol: "ESMTP",
        trace: vec!["Authentication-Results: localhost; spf=none".into()],
        check_auth: false,
        forwarded: false,
    }
}

fn mail(id: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@c.test>\r\nTo: ada@localhost, bob@localhost\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{extra}\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nBody of {id}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn delivery_stores_one_blob_a_row_per_recipient_and_an_event_each() {
    let f = fixture().await;
    let d = f.mail.deliver(&envelope(vec![f.ada, f.bob, f.ada]), mail("m1@c", "Hi", "")).await.unwrap();
    assert_eq!(d.stored.len(), 2, "ada named twice gets one copy");
    assert_eq!(outbox::Entity::find().count(&f.db).await.unwrap(), 4, "2 registrations + 2 MailStored");
    let raw = f.mail.raw(f.ada, d.stored[0].id).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("Authentication-Results: localhost; spf=none\r\nReceived: from mx.c.test ([192.0.2.7])"));
    assert!(text.ends_with("Body of m1@c\r\n"));
    let refs = crate::platform::blobs::blob_ref::Entity::find().all(&f.db).await.unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0].blob_id, refs[1].blob_id, "identical raw messages are stored once");
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    let page = f.mail.list(f.ada, Scope::Mailbox(inbox), None, 50).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].subject, "Hi");
    assert_eq!(page.messages[0].from.address, "carol@c.test");
    assert!(!page.messages[0].seen);
}

#[tokio::test]
async fn concurrent_deliveries_get_distinct_uids_in_order_of_commit() {
    let f = fixture().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mail_svc = f.mail.clone();
        let env = envelope(vec![f.ada]);
        tasks.push(tokio::spawn(async move { mail_svc.deliver(&env, mail(&format!("c{i}@c"), "x", "")).await }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap().unwrap().stored[0].uid);
    }
    uids.sort_unstable();
    assert_eq!(uids, (1..=60).collect::<Vec<_>>());
    let boxes = f.mail.mailboxes(f.ada).await.unwrap();
    let inbox = boxes.iter().find(|b| b.role == Some(Role::Inbox)).unwrap();
    assert_eq!((inbox.total, inbox.unread), (60, 60));
}

#[tokio::test]
async fn replies_join_the_thread_by_reference_or_by_subject_and_people() {
    let f = fixture().await;
    let env = envelope(vec![f.ada]);
    let first = f.mail.deliver(&env, mail("t1@c", "Plans", "")).await.unwrap().stored[0];
    let by_ref = f.mail.deliver(&env, mail("t2@c", "Something else", "In-Reply-To: <t1@c>\r\n")).await.unwrap();
    assert_eq!(by_ref.stored[0].thread_id, first.thread_id);
    let by_subject = f.mail.deliver(&env, mail("t3@c", "Re: plans", "")).await.unwrap();
    assert_eq!(by_subject.stored[0].thread_id, first.thread_id);
    let stranger = b"From: dan@d.test\r\nTo: ada@localhost\r\nSubject: Plans\r\n\r\nhi\r\n".to_vec();
    let other = f.mail.deliver(&env, stranger).await.unwrap();
    assert_ne!(other.stored[0].thread_id, first.thread_id, "same subject from a stranger is a new thread");
    let thread = f.mail.thread(f.ada, first.thread_id).await.unwrap();
    assert_eq!(thread.iter().map(|m| m.id).collect::<Vec<_>>().len(), 3);
    assert!(matches!(f.mail.thread(f.bob, first.thread_id).await, Err(MailError::NotFound)));
}

#[tokio::test]
async fn filters_from_preferences_label_file_and_mark() {
    let f = fixture().await;
    let doc = json!({"mail": {"filters": [{"match": {"from": "carol@"}, "label": "Friends", "skip_inbox": true, "mark_read": true, "star": true}]}});
    f.prefs.replace(f.ada, doc, &Expect::Any).await.unwrap();
    let d = f.mail.deliver(&envelope(vec![f.ada, f.bob]), mail("f1@c", "Filtered", "")).await.unwrap();
    let ada_copy = d.stored.iter().find(|s| s.user_id == f.ada).unwrap();
    let bob_copy = d.stored.iter().find(|s| s.user_id == f.bob).unwrap();
    assert_eq!(ada_copy.mailbox_id, f.mail.role_mailbox(f.ada, Role::Archive).await.unwrap());
    assert_eq!(bob_copy.mailbox_id, f.mail.role_mailbox(f.bob, Role::Inbox).await.unwrap(), "bob has no filters");
    let view = f.mail.message(f.ada, ada_copy.id, false).await.unwrap();
    assert!(view.summary.seen && view.summary.starred);
    assert_eq!(view.summary.labels.len(), 1);
    let starred = f.mail.list(f.ada, Scope::Starred, None, 10).await.unwrap();
    assert_eq!(starred.messages.len(), 1);
    let label = view.summary.labels[0];
    assert_eq!(f.mail.list(f.ada, Scope::Label(label), None, 10).await.unwrap().messages.len(), 1);
    assert!(matches!(f.mail.list(f.bob, Scope::Label(label), None, 10).await, Err(MailError::NotFound)));
}

#[tokio::test]
async fn pages_walk_newest_first_without_gaps_or_repeats() {
    let f = fixture().await;
    for i in 0..25 {
        f.mail.deliver(&envelope(vec![f.ada]), mail(&format!("p{i}@c"), &format!("n{i}"), "")).await.unwrap();
    }
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let page = f.mail.list(f.ada, Scope::Mailbox(inbox), cursor.as_deref(), 10).await.unwrap();
        seen.extend(page.messages.iter().map(|m| m.subject.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..25).rev().map(|i| format!("n{i}")).collect::<Vec<_>>());
    assert!(matches!(f.mail.list(f.ada, Scope::Mailbox(inbox), Some("x"), 10).await, Err(MailError::Invalid(_))));
    assert!(matches!(f.mail.list(f.bob, Scope::Mailbox(inbox), None, 10).await, Err(MailError::NotFound)));
}

#[tokio::test]
async fn actions_change_flags_move_and_delete_only_the_owners_messages() {
    let f = fixture().await;
    let d = f.mail.deliver(&envelope(vec![f.ada, f.bob]), mail("a1@c", "Act", "")).await.unwrap();
    let ada_msg = d.stored.iter().find(|s| s.user_id == f.ada).unwrap().id;
    let bob_msg = d.stored.iter().find(|s| s.user_id == f.bob).unwrap().id;
    let change = FlagChange { seen: Some(true), ..Default::default() };
    assert!(matches!(f.mail.set_flags(f.ada, &[ada_msg, bob_msg], change).await, Err(MailError::NotFound)));
    assert!(!f.mail.message(f.ada, ada_msg, false).await.unwrap().summary.seen, "refused as a whole");
    f.mail.set_flags(f.ada, &[ada_msg], change).await.unwrap();
    let before = f.mail.row(f.ada, ada_msg).await.unwrap();
    assert!(Flags(before.flags).has(Flags::SEEN));
    f.mail.move_to(f.ada, &[ada_msg], Target::Role(Role::Trash)).await.unwrap();
    let after = f.mail.row(f.ada, ada_msg).await.unwrap();
    assert_eq!(after.mailbox_id, f.mail.role_mailbox(f.ada, Role::Trash).await.unwrap());
    assert!(after.modseq > 1 && after.uid == 1);
    assert!(matches!(f.mail.message(f.bob, ada_msg, false).await, Err(MailError::NotFound)));
    assert_eq!(f.mail.empty_trash(f.ada).await.unwrap(), 1);
    assert!(matches!(f.mail.raw(f.ada, ada_msg).await, Err(MailError::NotFound)));
    assert!(f.mail.raw(f.bob, bob_msg).await.is_ok(), "bob's copy keeps the shared blob");
    let mb = f.mail.create_mailbox(f.ada, "Projects/2026").await.unwrap();
    assert!(f.mail.create_mailbox(f.ada, "projects/2026").await.is_ok(), "names are case-sensitive");
    assert!(matches!(f.mail.create_mailbox(f.ada, "Projects/2026").await, Err(MailError::Exists)));
    assert!(matches!(f.mail.create_mailbox(f.ada, "inbox").await, Err(MailError::Invalid(_))));
    assert!(matches!(f.mail.rename_mailbox(f.bob, mb, "x").await, Err(MailError::NotFound)));
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    assert!(matches!(f.mail.delete_mailbox(f.ada, inbox).await, Err(MailError::Invalid(_))));
}

#[tokio::test]
async fn unparseable_mail_is_stored_and_shown_raw_and_html_is_cleaned() {
    let f = fixture().await;
    let d = f.mail.deliver(&envelope(vec![f.ada]), b"\x00\x01 not a message at all".to_vec()).await.unwrap();
    let view = f.mail.message(f.ada, d.stored[0].id, false).await.unwrap();
    assert!(view.raw.is_some_and(|r| r.contains("not a message at all")));
    let html = "From: x@y.test\r\nTo: ada@localhost\r\nSubject: h\r\nContent-Type: text/html\r\n\r\n\
<p onclick=\"evil()\">Hi<script>alert(1)</script><img src=\"https://track.example/p.gif\"><img src=\"cid:logo\"></p>\r\n";
    let d = f.mail.deliver(&envelope(vec![f.ada]), html.as_bytes().to_vec()).await.unwrap();
    let view = f.mail.message(f.ada, d.stored[0].id, false).await.unwrap();
    let clean = view.html.unwrap();
    assert!(!clean.contains("script") && !clean.contains("onclick") && !clean.contains("track.example"), "{clean}");
    assert!(clean.contains("cid:logo") && view.remote_images_blocked);
    let allowed = f.mail.message(f.ada, d.stored[0].id, true).await.unwrap();
    assert!(allowed.html.unwrap().contains("track.example") && !allowed.remote_images_blocked);
}

#[tokio::test]
async fn one_batch_threads_a_reply_to_a_message_of_the_same_batch() {
    let f = fixture().await;
    let put = |raw: Vec<u8>| {
        let meta = Arc::new(parse::meta(&raw));
        f.mail.store(bytes::Bytes::from(raw), meta, vec![store::NewMessage::new(f.ada, Target::Role(Role::Inbox))])
    };
    let (first, by_ref, by_subject, stranger) = tokio::join!(
        put(mail("b1@c", "Plans", "")),
        put(mail("b2@c", "Something else", "In-Reply-To: <b1@c>\r\n")),
        put(mail("b3@c", "Re: plans", "")),
        put(b"From: dan@d.test\r\nTo: ada@localhost\r\nSubject: Plans\r\n\r\nhi\r\n".to_vec()),
    );
    let [first, by_ref, by_subject, stranger] = [first, by_ref, by_subject, stranger].map(|s| s.unwrap()[0]);
    let mut modseqs = Vec::new();
    for s in [first, by_ref, by_subject, stranger] {
        modseqs.push(f.mail.row(f.ada, s.id).await.unwrap().modseq);
    }
    assert!(modseqs.iter().all(|m| *m == modseqs[0]), "one batch, one MODSEQ: {modseqs:?}");
    assert_eq!([by_ref.uid, by_subject.uid, stranger.uid], [first.uid + 1, first.uid + 2, first.uid + 3]);
    assert_eq!(by_ref.thread_id, first.thread_id, "by reference, within the batch");
    assert_eq!(by_subject.thread_id, first.thread_id, "by subject and people, within the batch");
    assert_ne!(stranger.thread_id, first.thread_id);
}

/// ada's SMTP-style submission of `raw` to bob.
fn ada_submits(f: &Fixture) -> send::Submission {
    send::Submission {
        user_id: f.ada,
        username: "ada".into(),
        envelope_from: "ada@localhost".into(),
        recipients: vec!["bob@localhost".into()],
        peer: None,
        helo: "client.test".into(),
        protocol: "ESMTPSA",
    }
}

/// How many messages `user` has in the mailbox of `role`.
async fn count(f: &Fixture, user: i64, role: Role) -> usize {
    let mailbox = f.mail.role_mailbox(user, role).await.unwrap();
    f.mail.list(user, Scope::Mailbox(mailbox), None, 50).await.unwrap().messages.len()
}

#[tokio::test]
async fn submission_needs_one_from_mailbox_and_a_sender_that_are_the_users() {
    let f = fixture().await;
    let sub = ada_submits(&f);
    let message = |head: &str| format!("{head}To: bob@localhost\r\nSubject: s\r\n\r\nbody\r\n").into_bytes();
    for head in [
        "From: ada@localhost\r\nFrom: ceo@localhost\r\n",
        "From: ceo@localhost\r\nFrom: ada@localhost\r\n",
        "From: ada@localhost, ceo@localhost\r\n",
        "From: board: ada@localhost;\r\n",
        "",
        "From: ada@localhost\r\nSender: ada@localhost, bob@localhost\r\n",
        "From: ada@localhost\r\nSender: ada@localhost\r\nSender: ada+x@localhost\r\n",
    ] {
        let err = f.mail.submit(&sub, message(head)).await.unwrap_err();
        assert!(matches!(err, send::SendError::BadFrom(_)), "{head:?}: {err:?}");
    }
    for (head, foreign) in [
        ("From: bob@localhost\r\n", "bob@localhost"),
        ("From: ada@localhost\r\nSender: bob@localhost\r\n", "bob@localhost"),
        ("From: bob@localhost\r\nSender: ada@localhost\r\n", "bob@localhost"),
    ] {
        let err = f.mail.submit(&sub, message(head)).await.unwrap_err();
        assert!(matches!(&err, send::SendError::NotYourAddress(a) if a == foreign), "{head:?}: {err:?}");
    }
    assert_eq!(count(&f, f.ada, Role::Sent).await, 0, "nothing refused is kept in Sent");
    assert_eq!(count(&f, f.bob, Role::Inbox).await, 0, "nor delivered");
    let ok = "From: Ada <ada@localhost>\r\nSender: ada+desk@localhost\r\n";
    f.mail.submit(&sub, message(ok)).await.expect("her own From and Sender");
    assert_eq!((count(&f, f.ada, Role::Sent).await, count(&f, f.bob, Role::Inbox).await), (1, 1));
}

/// The header section of `raw`, one unfolded-as-written line each.
fn header_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.split("\r\n").map(str::to_owned).collect()
}

#[tokio::test]
async fn compose_input_and_replied_subjects_never_start_a_header() {
    let f = fixture().await;
    let author = compose::Author { user_id: f.ada, username: "ada".into(), display_name: "Ada\r\nX-Display: 1".into() };
    let draft = compose::Draft {
        to: vec!["Bob\r\nX-Injected: 1 <bob@localhost>".into()],
        subject: "hi\r\nBcc: victim@evil.example".into(),
        text: Some("hello".into()),
        ..Default::default()
    };
    let sent = f.mail.send_draft(&author, &draft).await.expect("sent with its header values cleaned");
    let raw = f.mail.raw(f.ada, sent.sent_copy.id).await.unwrap();
    let lines = header_lines(&raw);
    for injected in ["bcc:", "x-injected:", "x-display:"] {
        assert!(!lines.iter().any(|l| l.to_ascii_lowercase().starts_with(injected)), "{injected} in {lines:#?}");
    }
    let msg = parse::message(&raw).unwrap();
    assert!(msg.bcc().is_none() && msg.header("X-Injected").is_none());
    assert_eq!(msg.subject(), Some("hi  Bcc: victim@evil.example"));
    assert_eq!(sent.local.len(), 1, "bob alone got it");

    // An address with a line break is refused, and nothing is sent.
    let bad = compose::Draft { to: vec!["bob@localhost\r\nBcc: victim@evil.example".into()], ..draft.clone() };
    assert!(matches!(f.mail.send_draft(&author, &bad).await, Err(send::SendError::BadRecipient(_))));
    assert_eq!(count(&f, f.ada, Role::Sent).await, 1);

    // A subject decoded from a stored message (an encoded CR LF) is copied on one line.
    let evil = b"From: carol@c.test\r\nTo: ada@localhost\r\nMessage-ID: <e1@c.test>\r\n\
Subject: =?utf-8?q?Plans=0D=0ABcc:_victim@evil.example?=\r\n\r\nhi\r\n";
    let got = f.mail.deliver(&envelope(vec![f.ada]), evil.to_vec()).await.unwrap().stored[0];
    assert!(f.mail.row(f.ada, got.id).await.unwrap().subject.contains('\n'), "the stored subject keeps its break");
    for draft in [
        compose::Draft { to: vec!["bob@localhost".into()], reply_to_id: Some(got.id), ..Default::default() },
        compose::Draft { to: vec!["bob@localhost".into()], forward_id: Some(got.id), ..Default::default() },
    ] {
        let sent = f.mail.send_draft(&author, &draft).await.expect("reply or forward sent");
        let raw = f.mail.raw(f.ada, sent.sent_copy.id).await.unwrap();
        let lines = header_lines(&raw);
        assert!(!lines.iter().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{lines:#?}");
        let subject = parse::meta(&raw).subject;
        assert!(subject.ends_with(": Plans  Bcc: victim@evil.example"), "{subject:?}");
    }
}

/// Stores `raw` in `user`'s Inbox through the group-committed store.
async fn store_raw(mail: &MailService, user: i64, raw: Vec<u8>) -> Result<Vec<store::Stored>, MailError> {
    let meta = std::sync::Arc::new(parse::meta(&raw));
    mail.store(bytes::Bytes::from(raw), meta, vec![store::NewMessage::new(user, Target::Role(Role::Inbox))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_share_commits() {
    let f = fixture().await;
    let stores: Vec<_> = (0..64)
        .map(|i| {
            let mail = f.mail.clone();
            let ada = f.ada;
            tokio::spawn(async move { store_raw(&mail, ada, mail_bytes(i)).await })
        })
        .collect();
    for s in stores {
        s.await.unwrap().unwrap();
    }
    // One batch hands one MODSEQ to all its messages in a mailbox.
    let rows = entities::message::Entity::find().all(&f.db).await.unwrap();
    assert_eq!(rows.len(), 64);
    let commits: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.modseq).collect();
    assert!(commits.len() < 64, "64 concurrent deliveries took {} commits: no batch held two", commits.len());
}

fn mail_bytes(i: usize) -> Vec<u8> {
    mail(&format!("c{i}@c"), &format!("Batch {i}"), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_commit_fails_only_its_own_delivery_and_the_store_goes_on() {
    let f = fixture().await;
    let mut poisoned = store::test_hooks::PANIC_MARKER.to_vec();
    poisoned.extend(mail("bad@c", "Bad", ""));
    // The poisoned message and good ones in flight together, so they may share a batch.
    let bad = {
        let (mail, ada) = (f.mail.clone(), f.ada);
        tokio::spawn(async move { store_raw(&mail, ada, poisoned).await })
    };
    let good: Vec<_> = (0..8)
        .map(|i| {
            let (mail, ada) = (f.mail.clone(), f.ada);
            tokio::spawn(async move { store_raw(&mail, ada, mail_bytes(i)).await })
        })
        .collect();
    assert!(matches!(bad.await.unwrap(), Err(MailError::Interrupted)));
    for g in good {
        g.await.unwrap().expect("a neighbour of the panicking delivery is stored");
    }
    // Later deliveries are stored as usual.
    store_raw(&f.mail, f.ada, mail_bytes(100)).await.expect("the committer is still running");
    let rows = entities::message::Entity::find().all(&f.db).await.unwrap();
    assert_eq!(rows.len(), 9, "eight neighbours and the later one, nothing of the poisoned one");
}

#[tokio::test]
async fn postmaster_and_abuse_reach_the_administrator() {
    let f = fixture().await;
    // ada was the first account, so she is the administrator.
    for address in
        ["postmaster@localhost", "Postmaster@LOCALHOST", "<ABUSE@localhost>", "abuse+x@localhost", "Postmaster"]
    {
        assert_eq!(f.mail.local_user(address).await.unwrap(), Some(f.ada), "{address}");
        assert!(f.mail.is_local_address(address), "{address}");
    }
    for address in ["postmaster@example.org", "webmaster@localhost", "hostmaster@localhost", "admin@localhost"] {
        assert_eq!(f.mail.local_user(address).await.unwrap(), None, "{address}");
    }
    assert_eq!(f.mail.local_user("bob@localhost").await.unwrap(), Some(f.bob));
}

/// An outbound queue for `f` (its worker not started, so queued mail stays queued).
fn queue_for(f: &Fixture) -> outbound::OutboundQueue {
    use outbound::dkim::test_key;
    test_key::install(f.dir.path(), "postcast");
    let dns = dns::Dns::new(&config::DnsConfig { nameservers: vec!["127.0.0.1:9".into()] }).unwrap();
    let settings = outbound::QueueSettings {
        domain: "localhost".into(),
        data_dir: f.dir.path().to_owned(),
        selector: "postcast".into(),
        config: Default::default(),
    };
    let queue = outbound::OutboundQueue::new(
        f.db.clone(),
        Blobs::open(f.dir.path().join("blobs"), f.db.clone()).unwrap(),
        dns,
        settings,
        Arc::new(f.mail.clone()),
    )
    .unwrap();
    f.mail.set_outbound(queue.clone());
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_is_stored_whole_or_not_at_all() {
    let f = fixture().await;
    let queue = queue_for(&f);
    let mut sub = ada_submits(&f);
    sub.recipients = vec!["bob@localhost".into(), "zed@remote.test".into()];
    let body = b"From: ada@localhost\r\nTo: bob@localhost, zed@remote.test\r\nSubject: once\r\n\r\nhi\r\n";
    // The store fails while committing the sending: nothing of it may be left anywhere.
    let mut poisoned = store::test_hooks::PANIC_MARKER.to_vec();
    poisoned.extend_from_slice(body);
    let err = f.mail.submit(&sub, poisoned).await.unwrap_err();
    assert!(matches!(err, send::SendError::Store(MailError::Interrupted)), "{err:?}");
    assert_eq!(count(&f, f.ada, Role::Sent).await, 0, "no Sent copy");
    assert_eq!(count(&f, f.bob, Role::Inbox).await, 0, "no local copy");
    assert!(queue.list(None).await.unwrap().is_empty(), "nothing queued for the remote recipient");
    // The client tries again: one copy of each, the remote one queued once.
    let sent = f.mail.submit(&sub, body.to_vec()).await.expect("sent");
    assert_eq!((count(&f, f.ada, Role::Sent).await, count(&f, f.bob, Role::Inbox).await), (1, 1));
    let queued = queue.list(None).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(Some(queued[0].id), sent.queued);
    assert_eq!(queued[0].recipients.len(), 1);
}

#[tokio::test]
async fn uploads_never_sent_are_collected_after_a_day() {
    let f = fixture().await;
    let old = f.mail.upload(f.ada, bytes::Bytes::from_static(b"old plan")).await.unwrap();
    let kept = f.mail.upload(f.bob, bytes::Bytes::from_static(b"new plan")).await.unwrap();
    let blobs = Blobs::open(f.dir.path().join("blobs"), f.db.clone()).unwrap();
    let id = |s: &str| crate::platform::blobs::BlobId::try_from(s.to_owned()).unwrap();
    // Nothing is a day old yet.
    assert_eq!(f.mail.collect_uploads(crate::platform::db::now() + 60).await.unwrap(), 0);
    assert!(blobs.is_held_by(&id(&old), &format!("mail-upload:{}", f.ada)).await.unwrap());
    // A day and a bit later, both go; an upload made after that stays.
    let later = crate::platform::db::now() + 86_400 + 60;
    assert_eq!(f.mail.collect_uploads(later).await.unwrap(), 2);
    assert!(!blobs.exists(&id(&old)).await.unwrap() && !blobs.exists(&id(&kept)).await.unwrap());
    let fresh = f.mail.upload(f.ada, bytes::Bytes::from_static(b"fresh plan")).await.unwrap();
    assert_eq!(f.mail.collect_uploads(crate::platform::db::now() + 60).await.unwrap(), 0);
    assert!(blobs.exists(&id(&fresh)).await.unwrap());
    // A collected upload can no longer be attached.
    let author = compose::Author { user_id: f.ada, username: "ada".into(), display_name: "Ada".into() };
    let draft: compose::Draft = serde_json::from_value(json!({
        "to": ["bob@localhost"], "subject": "s", "text": "t",
        "attachments": [{"id": old, "name": "plan.txt", "content_type": "text/plain"}]
    }))
    .unwrap();
    assert!(f.mail.send_draft(&author, &draft).await.is_err());
    assert_eq!(count(&f, f.bob, Role::Inbox).await, 0);
}
