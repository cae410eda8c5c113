//! Unit tests of the contacts service against a temporary SQLite database: CRUD and its
//! refusals, ranking from sent mail, idempotent event handling, group expansion and vCard
//! import and export.

use std::time::Duration;

use super::*;
use crate::domains::profile::tests::insert_user;

/// A book over a fresh database holding users 1 (`ada`) and 2 (`bob`).
async fn service() -> (tempfile::TempDir, ContactsService) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = crate::platform::db::open(&url, 4, Duration::from_secs(5), true).await.unwrap();
    insert_user(&db, 1, "ada").await;
    insert_user(&db, 2, "bob").await;
    (dir, ContactsService::new(db))
}

fn new(name: &str, emails: &[&str]) -> NewContact {
    NewContact { name: name.into(), emails: emails.iter().map(|e| (*e).to_owned()).collect(), ..Default::default() }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn addresses(s: &Suggestions) -> Vec<&str> {
    s.addresses.iter().map(|a| a.address.as_str()).collect()
}

#[tokio::test]
async fn contacts_are_created_changed_listed_and_deleted_per_user() {
    let (_dir, svc) = service().await;
    let c = svc
        .create_contact(
            1,
            NewContact {
                name: " Grace Hopper ".into(),
                emails: strings(&["Grace@Navy.example", "grace@yale.example"]),
                phone: "+1 555 0100".into(),
                notes: "COBOL".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(c.name, "Grace Hopper");
    assert_eq!(c.primary(), Some("Grace@Navy.example"));
    assert_eq!(c.emails.iter().filter(|e| e.primary).count(), 1);
    assert_eq!(svc.contact(1, c.id).await.unwrap(), c);

    // The same address (any case) cannot go to a second contact.
    let dup = svc.create_contact(1, new("Other", &["GRACE@navy.example"])).await;
    assert!(matches!(dup, Err(ContactsError::AddressTaken { contact_id, .. }) if contact_id == c.id), "{dup:?}");
    // ...but another user has a book of their own.
    let bobs = svc.create_contact(2, new("Grace", &["grace@navy.example"])).await.unwrap();

    for bad in [new("", &[]), new("x", &["nope"]), new(&"n".repeat(201), &["a@b.example"])] {
        assert!(matches!(svc.create_contact(1, bad).await, Err(ContactsError::Invalid(_))));
    }
    assert_eq!(svc.list_contacts(1, &ListQuery::default()).await.unwrap().total, 1, "refusals stored nothing");

    // A new address list keeps the counts of the addresses that stay; the first is primary.
    svc.note_recipients_at(1, 10, &strings(&["grace@yale.example"]), 100).await.unwrap();
    let patch = ContactPatch {
        emails: Some(strings(&["grace@yale.example", "g@hopper.example"])),
        notes: Some(String::new()),
        ..Default::default()
    };
    let c2 = svc.update_contact(1, c.id, patch).await.unwrap();
    assert_eq!(c2.primary(), Some("grace@yale.example"));
    assert_eq!((c2.emails[0].use_count, c2.emails[0].last_used_at), (1, 100));
    assert_eq!((c2.name.as_str(), c2.phone.as_str(), c2.notes.as_str()), ("Grace Hopper", "+1 555 0100", ""));
    let stolen = ContactPatch { emails: Some(strings(&["x@y.example", "g@hopper.example"])), ..Default::default() };
    let other = svc.create_contact(1, new("Other", &["x@y.example"])).await.unwrap();
    assert!(matches!(svc.update_contact(1, other.id, stolen).await, Err(ContactsError::AddressTaken { .. })));
    assert_eq!(svc.contact(1, other.id).await.unwrap(), other, "a refused update changes nothing");

    // Another user's ids are "not found", for reading, changing and deleting.
    assert!(matches!(svc.contact(2, c.id).await, Err(ContactsError::ContactNotFound)));
    let rename = ContactPatch { name: Some("Mine".into()), ..Default::default() };
    assert!(matches!(svc.update_contact(2, c.id, rename).await, Err(ContactsError::ContactNotFound)));
    assert!(matches!(svc.delete_contact(2, c.id).await, Err(ContactsError::ContactNotFound)));
    let bob_list = svc.list_contacts(2, &ListQuery::default()).await.unwrap();
    assert_eq!(bob_list.contacts.iter().map(|c| c.id).collect::<Vec<_>>(), [bobs.id]);

    svc.delete_contact(1, c.id).await.unwrap();
    assert!(matches!(svc.contact(1, c.id).await, Err(ContactsError::ContactNotFound)));
    // Its addresses went with it: the address is free again.
    svc.create_contact(1, new("Again", &["grace@yale.example"])).await.unwrap();
}

#[tokio::test]
async fn lists_sort_by_name_page_and_search_name_words_and_addresses() {
    let (_dir, svc) = service().await;
    for (name, addr) in [
        ("Jean-Luc Picard", "jl@enterprise.example"),
        ("ada lovelace", "ada@math.example"),
        ("", "zed_x@nowhere.example"),
        ("Benjamin Sisko", "ben@ds9.example"),
    ] {
        svc.create_contact(1, new(name, &[addr])).await.unwrap();
    }
    let all = svc.list_contacts(1, &ListQuery::default()).await.unwrap();
    let names: Vec<&str> = all.contacts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ada lovelace", "Benjamin Sisko", "Jean-Luc Picard", ""]);
    let page = svc.list_contacts(1, &ListQuery { limit: 2, offset: 1, ..Default::default() }).await.unwrap();
    assert_eq!((page.total, page.contacts.len(), page.contacts[0].name.as_str()), (4, 2, "Benjamin Sisko"));
    let find = |q: &str| {
        let svc = svc.clone();
        let q = q.to_owned();
        async move {
            let l = svc.list_contacts(1, &ListQuery { q: Some(q), ..Default::default() }).await.unwrap();
            l.contacts.into_iter().map(|c| c.primary().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(find("luc").await, ["jl@enterprise.example"], "any word of the name");
    assert_eq!(find("LOVE").await, ["ada@math.example"], "ignoring case");
    assert_eq!(find("ben@").await, ["ben@ds9.example"], "an address prefix");
    assert_eq!(find("zed_").await, ["zed_x@nowhere.example"], "LIKE wildcards are literal");
    assert!(find("zed%").await.is_empty());
    assert!(find("icard").await.is_empty(), "prefixes only");
    assert!(svc.list_contacts(2, &ListQuery::default()).await.unwrap().contacts.is_empty());
}

#[tokio::test]
async fn autocomplete_ranks_by_use_count_then_recency_and_offers_groups() {
    let (_dir, svc) = service().await;
    let anna = svc.create_contact(1, new("Anna Karenina", &["anna@k.example"])).await.unwrap();
    svc.create_contact(1, new("Andrew Wiles", &["andrew@math.example", "wiles@ox.example"])).await.unwrap();
    svc.create_contact(1, new("Zoe Anderson", &["zoe@x.example"])).await.unwrap();
    svc.create_contact(2, new("Anne Other", &["anne@other.example"])).await.unwrap();
    // Andrew twice; Anna and Zoe once each, Zoe later.
    svc.note_recipients_at(1, 1, &strings(&["andrew@math.example"]), 100).await.unwrap();
    svc.note_recipients_at(1, 2, &strings(&["ANDREW@math.example", "anna@k.example"]), 200).await.unwrap();
    svc.note_recipients_at(1, 3, &strings(&["zoe@x.example"]), 300).await.unwrap();

    let s = svc.autocomplete(1, "an", 10).await.unwrap();
    assert_eq!(
        addresses(&s),
        ["andrew@math.example", "zoe@x.example", "anna@k.example", "wiles@ox.example"],
        "use count, then last use, then name; name words (Anderson) and address prefixes match"
    );
    assert_eq!(s.addresses[0].use_count, 2);
    assert_eq!(s.addresses[2].name, "Anna Karenina");
    assert_eq!(addresses(&svc.autocomplete(1, "wil", 10).await.unwrap()), ["andrew@math.example", "wiles@ox.example"]);
    assert_eq!(addresses(&svc.autocomplete(1, "an", 2).await.unwrap()).len(), 2, "limit");
    assert!(addresses(&svc.autocomplete(1, "anne", 10).await.unwrap()).is_empty(), "never another user's");

    let team = svc.create_group(1, "Annual Team", &[anna.id]).await.unwrap();
    svc.create_group(1, "Board", &[]).await.unwrap();
    let s = svc.autocomplete(1, "ann", 10).await.unwrap();
    assert_eq!(s.groups, [GroupSuggestion { group_id: team.id, name: "Annual Team".into(), members: 1 }]);
    assert_eq!(svc.autocomplete(1, "tea", 10).await.unwrap().groups.len(), 1, "any word of a group name");
    assert!(svc.autocomplete(2, "ann", 10).await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn sent_mail_is_counted_once_per_message_and_adds_unknown_recipients() {
    let (_dir, svc) = service().await;
    let known = svc.create_contact(1, new("Known", &["known@x.example"])).await.unwrap();
    let rcpts = strings(&[
        "known@x.example",
        "Ada Lovelace <Ada@Math.example>",
        "\"Hopper, Grace\" <grace@navy.example>",
        "plain@new.example",
        "not an address",
        "KNOWN@x.example",
    ]);
    let first = svc.note_recipients_at(1, 42, &rcpts, 500).await.unwrap();
    assert_eq!(first, Noted { already_noted: false, added: 3, counted: 1, ignored: 1 });
    // The bus delivers at least once: the same message again changes nothing.
    let event = Event::MailSent { user_id: 1, message_id: 42, recipients: rcpts.clone() };
    svc.handle_event(event.clone()).await.unwrap();
    svc.handle_event(event).await.unwrap();
    assert!(svc.note_recipients(1, 42, &rcpts).await.unwrap().already_noted);

    let k = svc.contact(1, known.id).await.unwrap();
    assert_eq!((k.emails[0].use_count, k.emails[0].last_used_at), (1, 500));
    let book = svc.list_contacts(1, &ListQuery::default()).await.unwrap();
    let mut entries: Vec<(String, String, i64)> =
        book.contacts.iter().map(|c| (c.name.clone(), c.emails[0].address.clone(), c.emails[0].use_count)).collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            (String::new(), "plain@new.example".into(), 1),
            ("Ada Lovelace".into(), "Ada@Math.example".into(), 1),
            ("Hopper, Grace".into(), "grace@navy.example".into(), 1),
            ("Known".into(), "known@x.example".into(), 1),
        ]
    );
    // A later message counts again; the same message id of another user is separate.
    svc.note_recipients_at(1, 43, &strings(&["ada@math.example"]), 600).await.unwrap();
    assert_eq!(addresses(&svc.autocomplete(1, "ada", 5).await.unwrap()), ["Ada@Math.example"]);
    assert_eq!(svc.autocomplete(1, "ada", 5).await.unwrap().addresses[0].use_count, 2);
    let bob = svc.note_recipients_at(2, 42, &strings(&["known@x.example"]), 700).await.unwrap();
    assert_eq!((bob.already_noted, bob.added), (false, 1));
    assert_eq!(svc.contact(1, known.id).await.unwrap().emails[0].use_count, 1);
    // Other events are ignored.
    svc.handle_event(Event::PrefsChanged { user_id: 1 }).await.unwrap();
}

#[tokio::test]
async fn groups_have_unique_names_and_only_the_users_contacts() {
    let (_dir, svc) = service().await;
    let a = svc.create_contact(1, new("A", &["a@x.example"])).await.unwrap();
    let b = svc.create_contact(1, new("B", &["b@x.example"])).await.unwrap();
    let theirs = svc.create_contact(2, new("T", &["t@x.example"])).await.unwrap();
    let g = svc.create_group(1, "Team", &[b.id, a.id, b.id]).await.unwrap();
    assert_eq!(g.member_ids, [a.id, b.id]);
    assert!(matches!(svc.create_group(1, "TEAM", &[]).await, Err(ContactsError::GroupNameTaken(_))));
    assert!(matches!(svc.create_group(1, "a@b", &[]).await, Err(ContactsError::Invalid(_))));
    assert!(
        matches!(svc.create_group(1, "Mixed", &[a.id, theirs.id]).await, Err(ContactsError::ContactsNotFound(ids)) if ids == [theirs.id])
    );
    assert_eq!(svc.groups(1).await.unwrap().len(), 1, "a refused group is not stored");
    svc.create_group(2, "team", &[]).await.unwrap(); // another user's names are separate

    let other = svc.create_group(1, "Other", &[]).await.unwrap();
    assert!(matches!(svc.rename_group(1, other.id, "team").await, Err(ContactsError::GroupNameTaken(_))));
    assert_eq!(svc.rename_group(1, g.id, "TEAM").await.unwrap().name, "TEAM", "its own name in another case");
    assert_eq!(svc.set_members(1, g.id, &[b.id]).await.unwrap().member_ids, [b.id]);
    assert!(matches!(svc.set_members(1, g.id, &[theirs.id]).await, Err(ContactsError::ContactsNotFound(_))));
    assert_eq!(svc.group(1, g.id).await.unwrap().member_ids, [b.id]);
    assert_eq!(svc.contact(1, b.id).await.unwrap().groups, [GroupRef { id: g.id, name: "TEAM".into() }]);

    // Another user's group is "not found" everywhere.
    assert!(matches!(svc.group(2, g.id).await, Err(ContactsError::GroupNotFound)));
    assert!(matches!(svc.rename_group(2, g.id, "x").await, Err(ContactsError::GroupNotFound)));
    assert!(matches!(svc.set_members(2, g.id, &[]).await, Err(ContactsError::GroupNotFound)));
    assert!(matches!(svc.delete_group(2, g.id).await, Err(ContactsError::GroupNotFound)));

    svc.delete_contact(1, b.id).await.unwrap();
    assert!(svc.group(1, g.id).await.unwrap().member_ids.is_empty(), "a deleted contact leaves its groups");
    svc.delete_group(1, g.id).await.unwrap();
    assert_eq!(svc.groups(1).await.unwrap().iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Other"]);
    assert!(svc.contact(1, a.id).await.is_ok(), "deleting a group keeps its contacts");
}

#[tokio::test]
async fn group_names_typed_as_recipients_expand_to_primary_addresses() {
    let (_dir, svc) = service().await;
    let a = svc.create_contact(1, new("Alice", &["Alice@X.example", "alice@home.example"])).await.unwrap();
    let b = svc.create_contact(1, new("Bob", &["bob@x.example"])).await.unwrap();
    let c = svc.create_contact(1, new("Carol", &["carol@x.example"])).await.unwrap();
    svc.create_group(1, "Team", &[b.id, a.id]).await.unwrap();
    svc.create_group(1, "Leads", &[c.id, a.id]).await.unwrap();
    svc.create_group(1, "Nobody", &[]).await.unwrap();
    svc.create_group(2, "Secret", &[]).await.unwrap();

    let out = svc
        .expand_recipients(
            1,
            &strings(&["first@y.example", " team ", "BOB@x.example", "\"Leads\"", "Carol <carol@X.example>", ""]),
        )
        .await
        .unwrap();
    assert_eq!(out, ["first@y.example", "Alice@X.example", "bob@x.example", "carol@x.example"]);
    let plain = strings(&["x@y.example", "X@Y.example", "Z <z@y.example>"]);
    assert_eq!(svc.expand_recipients(1, &plain).await.unwrap(), ["x@y.example", "Z <z@y.example>"]);

    let unknown = svc.expand_recipients(1, &strings(&["x@y.example", "Tema"])).await.unwrap_err();
    assert!(matches!(&unknown, ContactsError::UnknownGroup(n) if n == "Tema"));
    assert!(unknown.to_string().contains("Tema"));
    assert!(matches!(svc.expand_recipients(1, &strings(&["nobody"])).await, Err(ContactsError::EmptyGroup(_))));
    assert!(
        matches!(svc.expand_recipients(1, &strings(&["Secret"])).await, Err(ContactsError::UnknownGroup(_))),
        "another user's group is unknown"
    );
}

const CARDS: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n\
    EMAIL;TYPE=INTERNET,PREF:ada@math.example\r\nEMAIL:ada@home.example\r\nTEL:+44 20\r\n\
    NOTE:Analytical engine notes that run long enough to be folded by the wri\r\n ter of this file\r\n\
    CATEGORIES:Friends,Math\r\nEND:VCARD\r\n\
    BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Grace Hopper\r\nEMAIL:grace@navy.example\r\nCATEGORIES:friends\r\nEND:VCARD\r\n\
    BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nEMAIL:broken\r\nEND:VCARD\r\n\
    BEGIN:VCARD\r\nVERSION:3.0\r\nN:Turing;Alan;;;\r\nEMAIL:alan@bletchley.example\r\nEND:VCARD\r\n";

/// Name, addresses (primary first), phone, notes and group names of a contact.
type Shape = (String, Vec<String>, String, String, Vec<String>);

/// What an exported-and-imported book must keep, sorted.
fn shape(list: &ContactList) -> Vec<Shape> {
    let mut v: Vec<_> = list
        .contacts
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.emails.iter().map(|e| e.address.clone()).collect(),
                c.phone.clone(),
                c.notes.clone(),
                c.groups.iter().map(|g| g.name.clone()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn vcard_import_merges_known_addresses_and_export_round_trips() {
    let (_dir, svc) = service().await;
    let report = svc.import_vcard(1, CARDS).await.unwrap();
    assert_eq!(report, ImportReport { created: 3, merged: 0, skipped: 1 });
    let book = svc.list_contacts(1, &ListQuery::default()).await.unwrap();
    let ada = book.contacts.iter().find(|c| c.name == "Ada Lovelace").unwrap();
    assert!(ada.notes.ends_with("by the writer of this file"), "{}", ada.notes);
    assert_eq!(ada.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Friends", "Math"]);
    let groups = svc.groups(1).await.unwrap();
    assert_eq!(groups.len(), 2, "CATEGORIES match groups ignoring case: {groups:?}");
    assert!(book.contacts.iter().any(|c| c.name == "Alan Turing"), "name from N");

    // Importing again merges instead of duplicating.
    let again = svc.import_vcard(1, CARDS).await.unwrap();
    assert_eq!((again.created, again.merged, again.skipped), (0, 3, 1));
    assert_eq!(svc.list_contacts(1, &ListQuery::default()).await.unwrap().total, 3);
    // A card adding an address to a known contact fills it in.
    let more = "BEGIN:VCARD\nVERSION:3.0\nFN:Alan\nEMAIL:alan@bletchley.example\nEMAIL:alan@manchester.example\n\
        TEL:+44 161\nEND:VCARD\n";
    svc.import_vcard(1, more).await.unwrap();
    let alan = svc.list_contacts(1, &ListQuery { q: Some("alan".into()), ..Default::default() }).await.unwrap();
    let alan = &alan.contacts[0];
    assert_eq!(alan.name, "Alan Turing", "a name is kept");
    assert_eq!(alan.phone, "+44 161", "an empty phone is filled");
    assert_eq!(alan.emails.len(), 2);

    let file = svc.export_vcard(1).await.unwrap();
    assert_eq!(file.matches("BEGIN:VCARD").count(), 3);
    assert!(file.lines().all(|l| l.len() <= 75));
    assert!(svc.export_vcard(2).await.unwrap().is_empty(), "another user's export is their own");
    let into_bob = svc.import_vcard(2, &file).await.unwrap();
    assert_eq!(into_bob, ImportReport { created: 3, merged: 0, skipped: 0 });
    let ada_book = svc.list_contacts(1, &ListQuery::default()).await.unwrap();
    let bob_book = svc.list_contacts(2, &ListQuery::default()).await.unwrap();
    assert_eq!(shape(&bob_book), shape(&ada_book));

    let huge = format!("{}{}", CARDS, "BEGIN:VCARD\nEND:VCARD\n".repeat(MAX_IMPORT_CARDS));
    assert!(matches!(svc.import_vcard(2, &huge).await, Err(ContactsError::Invalid(_))));
    assert_eq!(shape(&svc.list_contacts(2, &ListQuery::default()).await.unwrap()), shape(&ada_book), "nothing stored");
}

#[tokio::test]
async fn a_mail_sent_event_on_the_bus_reaches_the_book_once() {
    use crate::events::{Bus, Handler};
    let (_dir, svc) = service().await;
    let db = svc.db().clone();
    let bus = Bus::new(db.clone());
    let event = Event::MailSent { user_id: 1, message_id: 7, recipients: strings(&["Ann <ann@x.example>"]) };
    // Published twice, as a redelivery after a crash would hand it over again.
    Bus::publish(&db, &event).await.unwrap();
    Bus::publish(&db, &event).await.unwrap();
    Bus::publish(&db, &Event::PrefsChanged { user_id: 1 }).await.unwrap();
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let book = svc.clone();
    let handler: Handler = std::sync::Arc::new(move |e| {
        let book = book.clone();
        let done_tx = done_tx.clone();
        Box::pin(async move {
            let r = book.handle_event(e).await;
            let _ = done_tx.send(());
            Ok(r?)
        })
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = bus.subscribe("contacts", handler, stop_rx);
    bus.wake();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(10), done.recv()).await.unwrap().unwrap();
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let s = svc.autocomplete(1, "ann", 10).await.unwrap();
    assert_eq!(addresses(&s), ["ann@x.example"]);
    assert_eq!((s.addresses[0].name.as_str(), s.addresses[0].use_count), ("Ann", 1));
}
