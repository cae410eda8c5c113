//! Unit tests of mail import and export against a temporary SQLite file and blob store,
//! with real mbox files and Maildir folders on disk.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::*;
use crate::domains::mail::entities::{mailbox, message};

use crate::domains::mail::tests::{Fixture, fixture};

/// Three entries: one quoted the mboxrd way, one without a Message-ID, and a repeat of the first's id.
const MBOX: &str = "From carol@c.test Wed Jan  3 01:05:34 1996\n\
From: Carol <carol@c.test>\nTo: ada@localhost\nSubject: One\nMessage-ID: <one@c>\n\n\
Hello\n>From the quoted line\n>>From doubly quoted\n> From is not quoted\n\n\
From dan@d.test Tue Jul 23 19:39:23 2002\n\
From: dan@d.test\nSubject: No id\n\nbody without id\n\n\
From x@y Tue Jul 23 19:39:23 2002\n\
From: Carol <carol@c.test>\nSubject: Dup\nMessage-ID: <one@c>\n\nsame id again\n";

fn no_progress(_: u64, _: u64) {}

async fn rows(f: &Fixture, user: i64) -> Vec<message::Model> {
    message::Entity::find()
        .filter(message::Column::UserId.eq(user))
        .order_by_asc(message::Column::Id)
        .all(&f.db)
        .await
        .unwrap()
}

async fn mailbox_name(f: &Fixture, id: i64) -> String {
    mailbox::Entity::find_by_id(id).one(&f.db).await.unwrap().unwrap().name
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn mbox_import_stores_each_message_once_with_from_line_dates() {
    let f = fixture().await;
    let file = f.dir.path().join("in.mbox");
    write(&file, MBOX);
    let seen = Mutex::new(Vec::new());
    let progress = |done, total| seen.lock().unwrap().push((done, total));
    let r = f.mail.import_mbox(f.ada, &file, None, &progress).await.unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (2, 1, 0), "{r:?}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.last(), Some(&(MBOX.len() as u64, MBOX.len() as u64)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "progress only moves forward: {calls:?}");
    assert!(calls.len() >= 3, "one call per message at least: {calls:?}");

    let stored = rows(&f, f.ada).await;
    assert_eq!(stored.len(), 2);
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    assert!(stored.iter().all(|m| m.mailbox_id == inbox));
    assert_eq!(stored[0].subject, "One");
    assert_eq!(stored[0].internal_date, 820_631_134, "the From_ line's date");
    assert_eq!(stored[1].internal_date, 1_027_453_163);
    assert_eq!(stored[0].flags, 0);
    let raw = f.mail.raw(f.ada, stored[0].id).await.unwrap();
    assert_eq!(
        &raw[..],
        &b"From: Carol <carol@c.test>\r\nTo: ada@localhost\r\nSubject: One\r\nMessage-ID: <one@c>\r\n\r\n\
Hello\r\nFrom the quoted line\r\n>From doubly quoted\r\n> From is not quoted\r\n"[..],
        "CRLF lines, one > removed, the separator line dropped"
    );

    let again = f.mail.import_mbox(f.ada, &file, None, &no_progress).await.unwrap();
    assert_eq!((again.imported, again.skipped, again.failed), (0, 3, 0), "a second import adds nothing");
    assert_eq!(rows(&f, f.ada).await.len(), 2);

    let bob = f.mail.import_mbox(f.bob, &file, None, &no_progress).await.unwrap();
    assert_eq!(bob.imported, 2, "duplicates are per user");
}

#[tokio::test]
async fn many_messages_are_stored_concurrently_with_distinct_uids() {
    let f = fixture().await;
    let mut text = String::new();
    for i in 0..300 {
        // Every 50th repeats the previous Message-ID.
        let id = if i % 50 == 49 { i - 1 } else { i };
        text.push_str(&format!(
            "From a@b Mon Jan 15 15:30:00 2018\nFrom: a@b\nSubject: m{i}\nMessage-ID: <{id}@many>\n\nbody {i}\n\n"
        ));
    }
    let file = f.dir.path().join("many.mbox");
    write(&file, &text);
    let r = f.mail.import_mbox(f.ada, &file, Some("Bulk"), &no_progress).await.unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (294, 6, 0));
    let stored = rows(&f, f.ada).await;
    let mut uids: Vec<i64> = stored.iter().map(|m| m.uid).collect();
    uids.sort_unstable();
    assert_eq!(uids, (1..=294).collect::<Vec<_>>());
    assert_eq!(mailbox_name(&f, stored[0].mailbox_id).await, "Bulk");
}

#[tokio::test]
async fn named_mailboxes_are_created_once_and_system_names_map_to_roles() {
    let f = fixture().await;
    let file = f.dir.path().join("in.mbox");
    write(&file, MBOX);
    f.mail.import_mbox(f.ada, &file, Some("Projects/2024"), &no_progress).await.unwrap();
    let first = rows(&f, f.ada).await;
    assert_eq!(mailbox_name(&f, first[0].mailbox_id).await, "Projects/2024");
    assert_eq!(f.mail.import_target(f.ada, "Projects/2024").await.unwrap(), Target::Mailbox(first[0].mailbox_id));
    f.mail.import_mbox(f.bob, &file, Some("sent"), &no_progress).await.unwrap();
    let sent = f.mail.role_mailbox(f.bob, Role::Sent).await.unwrap();
    assert!(rows(&f, f.bob).await.iter().all(|m| m.mailbox_id == sent));
    for (name, role) in
        [("inbox", Role::Inbox), ("TRASH", Role::Trash), ("Junk", Role::Spam), ("Sent Items", Role::Sent)]
    {
        assert_eq!(f.mail.import_target(f.ada, name).await.unwrap(), Target::Role(role), "{name}");
    }
    assert!(matches!(f.mail.import_target(f.ada, "  ").await, Err(MailError::Invalid(_))));
    let boxes = f.mail.mailboxes(f.bob).await.unwrap();
    assert_eq!(boxes.len(), Role::ALL.len(), "bob got no mailbox of ada's");
}

#[tokio::test]
async fn files_that_are_not_mailboxes_are_refused() {
    let f = fixture().await;
    let eml = f.dir.path().join("one.eml");
    write(&eml, "Subject: hi\n\nbody\n");
    let e = f.mail.import_mbox(f.ada, &eml, None, &no_progress).await.unwrap_err();
    assert!(matches!(e, TransferError::NotMbox(_)), "{e}");
    let missing = f.dir.path().join("missing.mbox");
    let e = f.mail.import_mbox(f.ada, &missing, None, &no_progress).await.unwrap_err();
    assert!(matches!(e, TransferError::Io { .. }), "{e}");
    let empty = f.dir.path().join("empty.mbox");
    write(&empty, "");
    assert_eq!(f.mail.import_mbox(f.ada, &empty, None, &no_progress).await.unwrap(), ImportReport::default());
    let blank = f.dir.path().join("blank.mbox");
    write(&blank, "From a@b Mon Jan 15 15:30:00 2018\n\nFrom a@b Mon Jan 15 15:30:00 2018\nSubject: x\n\nok\n");
    let r = f.mail.import_mbox(f.ada, &blank, None, &no_progress).await.unwrap();
    assert_eq!((r.imported, r.failed), (1, 1), "an empty entry fails alone: {r:?}");
    assert!(r.errors[0].contains("empty"), "{r:?}");
    let not_maildir = f.dir.path().join("plain");
    std::fs::create_dir_all(not_maildir.join("stuff")).unwrap();
    let e = f.mail.import_maildir(f.ada, &not_maildir, None, &no_progress).await.unwrap_err();
    assert!(matches!(e, TransferError::NotMaildir(_)), "{e}");
    assert!(rows(&f, f.ada).await.len() == 1);
}

fn maildir_message(root: &Path, file: &str, subject: &str) {
    write(&root.join(file), &format!("From: eve@e.test\nSubject: {subject}\nMessage-ID: <{subject}@e>\n\nhi\n"));
}

#[tokio::test]
async fn maildir_flags_folders_and_dates_are_kept() {
    let f = fixture().await;
    let root = f.dir.path().join("Maildir");
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    maildir_message(&root, "cur/1.a.host:2,S", "seen");
    maildir_message(&root, "cur/2.b.host:2,FR", "flagged-answered");
    maildir_message(&root, "cur/3.c.host:2,ST", "trashed");
    maildir_message(&root, "cur/4.d.host:2,D", "draft");
    maildir_message(&root, "new/5.e.host", "new");
    maildir_message(&root, ".Work.Projects/cur/6.f.host:2,S", "project");
    std::fs::create_dir_all(root.join(".Work.Projects/new")).unwrap();
    maildir_message(&root, ".Sent/cur/7.g.host:2,S", "sent");
    std::fs::create_dir_all(root.join(".Sent/new")).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
    std::fs::File::options().write(true).open(root.join("cur/1.a.host:2,S")).unwrap().set_modified(old).unwrap();

    let seen = Mutex::new(Vec::new());
    let progress = |done, total| seen.lock().unwrap().push((done, total));
    let r = f.mail.import_maildir(f.ada, &root, None, &progress).await.unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (7, 0, 0), "{r:?}");
    assert_eq!(*seen.lock().unwrap().last().unwrap(), (7, 7));
    let stored = rows(&f, f.ada).await;
    let by_subject = |s: &str| stored.iter().find(|m| m.subject == s).unwrap().clone();
    assert_eq!(by_subject("seen").flags, Flags::SEEN);
    assert_eq!(by_subject("seen").internal_date, 978_307_200, "the file's time");
    assert_eq!(by_subject("flagged-answered").flags, Flags::FLAGGED | Flags::ANSWERED);
    assert_eq!(by_subject("trashed").flags, Flags::SEEN | Flags::DELETED);
    assert_eq!(by_subject("draft").flags, Flags::DRAFT);
    assert_eq!(by_subject("new").flags, 0);
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    assert_eq!(by_subject("new").mailbox_id, inbox);
    assert_eq!(mailbox_name(&f, by_subject("project").mailbox_id).await, "Work/Projects");
    assert_eq!(by_subject("sent").mailbox_id, f.mail.role_mailbox(f.ada, Role::Sent).await.unwrap());

    let r = f.mail.import_maildir(f.bob, &root, Some("Old"), &no_progress).await.unwrap();
    assert_eq!(r.imported, 7);
    let mut names = Vec::new();
    for m in rows(&f, f.bob).await {
        names.push(mailbox_name(&f, m.mailbox_id).await);
    }
    names.sort();
    names.dedup();
    assert_eq!(names, ["Old", "Old/Sent", "Old/Work/Projects"]);
    let again = f.mail.import_maildir(f.bob, &root, Some("Old"), &no_progress).await.unwrap();
    assert_eq!((again.imported, again.skipped), (0, 7));
}

#[tokio::test]
async fn export_writes_mboxrd_that_imports_back_to_the_same_bytes() {
    let f = fixture().await;
    let file = f.dir.path().join("in.mbox");
    write(&file, MBOX);
    f.mail.import_mbox(f.ada, &file, None, &no_progress).await.unwrap();
    let mut out = Vec::new();
    assert_eq!(f.mail.export_mbox(f.ada, None, &mut out).await.unwrap(), 2);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("From carol@c.test Wed Jan  3 01:05:34 1996\nFrom: Carol"), "{text}");
    assert!(text.contains("\nHello\n>From the quoted line\n>>From doubly quoted\n> From is not quoted\n\n"), "{text}");
    assert!(text.contains("\n\nFrom dan@d.test Tue Jul 23 19:39:23 2002\n"), "{text}");
    assert!(!text.contains('\r'));

    let exported = f.dir.path().join("out.mbox");
    std::fs::write(&exported, &out).unwrap();
    let r = f.mail.import_mbox(f.bob, &exported, None, &no_progress).await.unwrap();
    assert_eq!((r.imported, r.skipped), (2, 0));
    let (ada_rows, bob_rows) = (rows(&f, f.ada).await, rows(&f, f.bob).await);
    for (a, b) in ada_rows.iter().zip(&bob_rows) {
        assert_eq!(f.mail.raw(f.ada, a.id).await.unwrap(), f.mail.raw(f.bob, b.id).await.unwrap());
        assert_eq!((a.internal_date, &a.blob_id), (b.internal_date, &b.blob_id));
    }
    let again = f.mail.import_mbox(f.ada, &exported, None, &no_progress).await.unwrap();
    assert_eq!((again.imported, again.skipped), (0, 2), "the export is a duplicate of what ada has");

    let mut one = Vec::new();
    assert_eq!(f.mail.export_mbox(f.ada, Some("inbox"), &mut one).await.unwrap(), 2);
    let mut none = Vec::new();
    assert_eq!(f.mail.export_mbox(f.ada, Some("Trash"), &mut none).await.unwrap(), 0);
    assert!(none.is_empty());
    let e = f.mail.export_mbox(f.ada, Some("Nope"), Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("no mailbox named"), "{e}");
    let other = f.mail.create_mailbox(f.bob, "Secret").await.unwrap();
    assert!(other > 0);
    let e = f.mail.export_mbox(f.ada, Some("Secret"), Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("no mailbox named"), "another user's mailbox is not found: {e}");
}

#[test]
fn line_endings_separators_and_quoting() {
    assert_eq!(to_crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
    assert_eq!(to_crlf(b"\n".to_vec()), b"\r\n");
    assert_eq!(to_crlf(b"a\r\n".to_vec()), b"a\r\n");
    assert_eq!(strip_separator(b"x\n\n".to_vec()), b"x\n");
    assert_eq!(strip_separator(b"x\r\n\r\n".to_vec()), b"x\r\n");
    assert_eq!(strip_separator(b"x\n".to_vec()), b"x\n");
    for (line, quote) in [
        (&b"From x"[..], true),
        (b">From x", true),
        (b">>From ", true),
        (b"> From", false),
        (b"From:", false),
        (b"", false),
    ] {
        assert_eq!(needs_quoting(line), quote, "{line:?}");
    }
    let mut out = Vec::new();
    mboxrd_entry("", 0, b"Subject: s\r\n\r\nFrom me\r\nlast", &mut out);
    assert_eq!(out, b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: s\n\n>From me\nlast\n\n");
    out.clear();
    mboxrd_entry("bad sender", 1_795_773_600, b"x\n", &mut out);
    assert_eq!(out, b"From MAILER-DAEMON Fri Nov 27 10:00:00 2026\nx\n\n");
    assert_eq!(folder_name(None, None), "INBOX");
    assert_eq!(folder_name(Some("Old/"), Some("A/B")), "Old/A/B");
    assert_eq!(folder_name(None, Some("Sent")), "Sent");
    assert_eq!(system_role("archive"), Some(Role::Archive));
    assert_eq!(system_role("Archives"), None);
}
