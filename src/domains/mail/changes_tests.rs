//! Tests of the store's change bookkeeping against a temporary SQLite file: counters
//! against a full recount after a seeded random run of every kind of change, the expunge
//! log, and change events reaching a subscriber after a restart and a live listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::EntityTrait;

use super::actions::FlagChange;
use super::entities::{label, mailbox, message, message_label};
use super::store::{NewMessage, Target};
use super::tests::{Fixture, fixture};
use super::*;
use crate::events::{Event, Handler};

/// Stores one small message for `user` in `target`, with `labels`.
async fn store(f: &Fixture, user: i64, target: Target, labels: &[String], n: usize) -> i64 {
    let raw = format!("From: carol@c.test\r\nTo: ada@localhost\r\nSubject: m{n}\r\n\r\nbody {n}\r\n");
    let meta = Arc::new(parse::meta(raw.as_bytes()));
    let mut new = NewMessage::new(user, target);
    new.labels = labels.to_vec();
    new.flags = Flags(if n.is_multiple_of(3) { Flags::SEEN } else { 0 });
    f.mail.store(bytes::Bytes::from(raw), meta, vec![new]).await.unwrap()[0].id
}

/// The counters as stored and as recounted from every row: (mailboxes, labels), each
/// id → (total, unread).
type Counts = HashMap<i64, (i64, i64)>;

async fn counters_and_recount(f: &Fixture) -> ((Counts, Counts), (Counts, Counts)) {
    let boxes = mailbox::Entity::find().all(&f.db).await.unwrap();
    let labels = label::Entity::find().all(&f.db).await.unwrap();
    let kept = (
        boxes.iter().map(|m| (m.id, (m.total, m.unread))).collect::<Counts>(),
        labels.iter().map(|l| (l.id, (l.total, l.unread))).collect::<Counts>(),
    );
    let messages: HashMap<i64, message::Model> =
        message::Entity::find().all(&f.db).await.unwrap().into_iter().map(|m| (m.id, m)).collect();
    let unread = |m: &message::Model| i64::from(!Flags(m.flags).has(Flags::SEEN));
    let mut by_box: Counts = boxes.iter().map(|m| (m.id, (0, 0))).collect();
    for m in messages.values() {
        let e = by_box.entry(m.mailbox_id).or_default();
        *e = (e.0 + 1, e.1 + unread(m));
    }
    let mut by_label: Counts = labels.iter().map(|l| (l.id, (0, 0))).collect();
    for link in message_label::Entity::find().all(&f.db).await.unwrap() {
        let m = &messages[&link.message_id];
        let e = by_label.entry(link.label_id).or_default();
        *e = (e.0 + 1, e.1 + unread(m));
    }
    (kept, (by_box, by_label))
}

/// A seeded random run of every kind of change to ada's mail.
struct RandomRun {
    rng: StdRng,
    names: Vec<String>,
    labels: Vec<i64>,
    own_boxes: Vec<i64>,
    /// How often each kind of change ran.
    done: [usize; 9],
}

impl RandomRun {
    async fn new(f: &Fixture, seed: u64) -> RandomRun {
        let names: Vec<String> = ["Work", "Bills", "Family"].map(String::from).to_vec();
        let mut labels = Vec::new();
        for name in &names {
            labels.push(f.mail.create_label(f.ada, name, None).await.unwrap().id);
        }
        let own_boxes = vec![f.mail.create_mailbox(f.ada, "Projects").await.unwrap()];
        RandomRun { rng: StdRng::seed_from_u64(seed), names, labels, own_boxes, done: [0; 9] }
    }

    /// Runs `steps` random changes.
    async fn run(&mut self, f: &Fixture, steps: usize) {
        for step in 0..steps {
            let ids: Vec<i64> = message::Entity::find()
                .all(&f.db)
                .await
                .unwrap()
                .iter()
                .filter(|m| m.user_id == f.ada)
                .map(|m| m.id)
                .collect();
            let n = self.rng.gen_range(1..4);
            let some: Vec<i64> = ids.choose_multiple(&mut self.rng, n).copied().collect();
            let op = if ids.is_empty() { 0 } else { self.rng.gen_range(0..9) };
            self.change(f, op, step, &some).await;
            self.done[op] += 1;
        }
    }

    /// Runs change kind `op` on the messages `some`.
    async fn change(&mut self, f: &Fixture, op: usize, step: usize, some: &[i64]) {
        let rng = &mut self.rng;
        match op {
            0 => {
                let target =
                    if rng.gen_bool(0.7) { Target::Role(Role::Inbox) } else { Target::Mailbox(self.own_boxes[0]) };
                let n = rng.gen_range(0..3);
                let picked: Vec<String> = self.names.choose_multiple(rng, n).cloned().collect();
                store(f, f.ada, target, &picked, step).await;
                if step.is_multiple_of(7) {
                    store(f, f.bob, Target::Role(Role::Inbox), &[], step).await;
                }
            }
            1 => {
                let seen = Some(rng.gen_bool(0.5));
                let change = FlagChange { seen, starred: Some(rng.gen_bool(0.5)), ..Default::default() };
                f.mail.set_flags(f.ada, some, change).await.unwrap();
            }
            2 => {
                let roles = [Role::Inbox, Role::Archive, Role::Trash, Role::Spam];
                let to = match self.own_boxes.choose(rng) {
                    Some(own) if rng.gen_bool(0.3) => Target::Mailbox(*own),
                    _ => Target::Role(roles[rng.gen_range(0..roles.len())]),
                };
                f.mail.move_to(f.ada, some, to).await.unwrap();
            }
            3 | 4 => {
                let label = self.labels[rng.gen_range(0..self.labels.len())];
                f.mail.set_label(f.ada, label, some, op == 3).await.unwrap();
            }
            5 => assert_eq!(f.mail.delete_forever(f.ada, some).await.unwrap(), some.len()),
            6 => {
                f.mail.empty_trash(f.ada).await.unwrap();
            }
            7 => {
                if let Some(gone) = self.own_boxes.pop() {
                    f.mail.delete_mailbox(f.ada, gone).await.unwrap();
                }
                self.own_boxes.push(f.mail.create_mailbox(f.ada, &format!("Box {step}")).await.unwrap());
            }
            _ => {
                let gone = self.labels.remove(rng.gen_range(0..self.labels.len()));
                f.mail.delete_label(f.ada, gone).await.unwrap();
                self.labels.push(f.mail.create_label(f.ada, &format!("L{step}"), None).await.unwrap().id);
            }
        }
    }
}

#[tokio::test]
async fn counters_match_a_full_recount_after_random_operations() {
    let f = fixture().await;
    let mut run = RandomRun::new(&f, 0x5eed_0008).await;
    run.run(&f, 400).await;
    assert!(run.done.iter().all(|&n| n >= 10), "every kind of change ran: {:?}", run.done);
    let (kept, recount) = counters_and_recount(&f).await;
    assert_eq!(kept.0, recount.0, "mailbox counters");
    assert_eq!(kept.1, recount.1, "label counters");
    assert!(recount.0.values().any(|&(t, u)| t > 0 && u > 0 && u < t), "the run left mixed mailboxes to compare");
    assert!(recount.1.values().any(|&(t, _)| t > 0), "the run left labelled mail to compare");
    // The lists read the counters.
    let listed = f.mail.mailboxes(f.ada).await.unwrap();
    assert!(listed.iter().all(|m| recount.0[&m.id] == (m.total, m.unread)));
    let listed = f.mail.labels(f.ada).await.unwrap();
    assert!(listed.iter().all(|l| recount.1[&l.id] == (l.total, l.unread)));
}

#[tokio::test]
async fn the_migration_fills_the_counters_of_existing_mail() {
    use migrations::{Migrator, MigratorTrait};
    let f = fixture().await;
    RandomRun::new(&f, 7).await.run(&f, 60).await;
    let (_, recount) = counters_and_recount(&f).await;
    assert!(recount.0.values().any(|&(t, _)| t > 0) && recount.1.values().any(|&(t, _)| t > 0));
    // Back to the schema without counters (the counters migration and every later one),
    // then forward again over the existing rows.
    let steps = Migrator::migrations().iter().rev().position(|m| m.name() == "m20261130_000009_mail_changes");
    let steps = steps.expect("the counters migration exists") as u32 + 1;
    Migrator::down(&f.db, Some(steps)).await.unwrap();
    Migrator::up(&f.db, None).await.unwrap();
    let (kept, again) = counters_and_recount(&f).await;
    assert_eq!(again, recount, "the rows are untouched");
    assert_eq!(kept, recount, "the migration counted them");
}

#[tokio::test]
async fn the_expunge_log_keeps_deletes_moves_and_emptied_trash_with_their_modseq() {
    let f = fixture().await;
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    let trash = f.mail.role_mailbox(f.ada, Role::Trash).await.unwrap();
    let a = store(&f, f.ada, Target::Role(Role::Inbox), &[], 1).await;
    let b = store(&f, f.ada, Target::Role(Role::Inbox), &[], 2).await;
    let c = store(&f, f.ada, Target::Role(Role::Inbox), &[], 4).await;
    let (ua, ub, uc) = (
        f.mail.row(f.ada, a).await.unwrap().uid,
        f.mail.row(f.ada, b).await.unwrap().uid,
        f.mail.row(f.ada, c).await.unwrap().uid,
    );
    let start = f.mail.own_mailbox(f.ada, inbox).await.unwrap().highest_modseq;
    assert!(f.mail.expunged_since(f.ada, inbox, 0).await.unwrap().is_empty());

    f.mail.delete_forever(f.ada, &[a]).await.unwrap();
    let after_delete = f.mail.own_mailbox(f.ada, inbox).await.unwrap().highest_modseq;
    assert_eq!(
        f.mail.expunged_since(f.ada, inbox, start).await.unwrap(),
        vec![changes::ExpungedUid { uid: ua, modseq: after_delete }]
    );

    f.mail.move_to(f.ada, &[b], Target::Role(Role::Trash)).await.unwrap();
    let log = f.mail.expunged_since(f.ada, inbox, after_delete).await.unwrap();
    assert_eq!(log.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![ub], "the source side of a move is an expunge");
    assert!(log[0].modseq > after_delete);
    assert_eq!(f.mail.expunged_since(f.ada, inbox, start).await.unwrap().len(), 2);

    let trash_uid = f.mail.row(f.ada, b).await.unwrap().uid;
    let before_empty = f.mail.own_mailbox(f.ada, trash).await.unwrap().highest_modseq;
    assert_eq!(f.mail.empty_trash(f.ada).await.unwrap(), 1);
    let emptied = f.mail.expunged_since(f.ada, trash, before_empty).await.unwrap();
    assert_eq!(emptied.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![trash_uid]);

    let changes = f.mail.changes_since(f.ada, inbox, start).await.unwrap();
    assert!(changes.changed.is_empty(), "c did not change: {changes:?}");
    assert_eq!(changes.expunged.len(), 2);
    assert_eq!(changes.highest_modseq, log[0].modseq);
    assert!(f.mail.changes_since(f.ada, inbox, 0).await.unwrap().changed.iter().any(|m| m.id == c && m.uid == uc));
    assert!(matches!(f.mail.expunged_since(f.bob, inbox, 0).await, Err(MailError::NotFound)), "ada's log is hers");

    // A mailbox's log goes with it.
    let own = f.mail.create_mailbox(f.ada, "Old").await.unwrap();
    f.mail.move_to(f.ada, &[c], Target::Mailbox(own)).await.unwrap();
    f.mail.move_to(f.ada, &[c], Target::Role(Role::Inbox)).await.unwrap();
    assert_eq!(f.mail.expunged_since(f.ada, own, 0).await.unwrap().len(), 1);
    f.mail.delete_mailbox(f.ada, own).await.unwrap();
    let left = super::entities::expunged::Entity::find().all(&f.db).await.unwrap();
    assert!(left.iter().all(|e| e.mailbox_id != own), "{left:?}");
}

/// Runs every kind of change once; returns the message ids involved.
async fn one_of_each(f: &Fixture) -> (i64, i64) {
    let label = f.mail.create_label(f.ada, "Work", None).await.unwrap().id;
    let a = store(f, f.ada, Target::Role(Role::Inbox), &[], 1).await;
    let b = store(f, f.ada, Target::Role(Role::Inbox), &[], 2).await;
    f.mail.set_flags(f.ada, &[a], FlagChange { seen: Some(true), ..Default::default() }).await.unwrap();
    f.mail.set_label(f.ada, label, &[a], true).await.unwrap();
    f.mail.move_to(f.ada, &[a], Target::Role(Role::Archive)).await.unwrap();
    f.mail.delete_forever(f.ada, &[b]).await.unwrap();
    let own = f.mail.create_mailbox(f.ada, "Projects").await.unwrap();
    f.mail.rename_mailbox(f.ada, own, "Plans").await.unwrap();
    f.mail.delete_mailbox(f.ada, own).await.unwrap();
    (a, b)
}

/// The mail change events of `events`, each as its kind, mailbox and MODSEQ.
fn kinds(events: &[Event]) -> Vec<(&'static str, i64, i64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::MailStored { mailbox_id, modseq, .. } => Some(("stored", *mailbox_id, *modseq)),
            Event::MailFlagsChanged { mailbox_id, modseq, .. } => Some(("flags", *mailbox_id, *modseq)),
            Event::MailLabelsChanged { mailbox_id, modseq, .. } => Some(("labels", *mailbox_id, *modseq)),
            Event::MailMoved { to_mailbox_id, modseq, .. } => Some(("moved", *to_mailbox_id, *modseq)),
            Event::MailExpunged { mailbox_id, modseq, .. } => Some(("expunged", *mailbox_id, *modseq)),
            Event::MailboxCreated { mailbox_id, .. } => Some(("created", *mailbox_id, 0)),
            Event::MailboxRenamed { mailbox_id, .. } => Some(("renamed", *mailbox_id, 0)),
            Event::MailboxDeleted { mailbox_id, .. } => Some(("deleted", *mailbox_id, 0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn change_events_carry_the_modseq_and_reach_a_live_listener_within_a_second() {
    let f = fixture().await;
    let mut live = f.bus.listen().await.unwrap();
    let (a, b) = one_of_each(&f).await;
    let mut got = Vec::new();
    while got.len() < 9 {
        let next = tokio::time::timeout(Duration::from_secs(1), live.recv()).await;
        let event = next.expect("an event within a second").unwrap();
        if kinds(std::slice::from_ref(&event)).is_empty() {
            continue;
        }
        got.push(event);
    }
    let inbox = f.mail.role_mailbox(f.ada, Role::Inbox).await.unwrap();
    let archive = f.mail.role_mailbox(f.ada, Role::Archive).await.unwrap();
    let names: Vec<&str> = kinds(&got).iter().map(|k| k.0).collect();
    assert_eq!(names, ["stored", "stored", "flags", "labels", "moved", "expunged", "created", "renamed", "deleted"]);
    let Event::MailStored { message_id, uid, modseq: stored_at, .. } = &got[1] else { unreachable!() };
    assert_eq!(*message_id, b);
    assert!(*uid > 0 && *stored_at > 1, "the arrival carries its UID and MODSEQ");
    let Event::MailFlagsChanged { messages, modseq, .. } = &got[2] else { unreachable!() };
    assert_eq!((messages[0].message_id, messages[0].flags & Flags::SEEN), (a, Flags::SEEN));
    let Event::MailMoved { from_mailbox_id, to_mailbox_id, modseq: moved_at, messages, .. } = &got[4] else {
        unreachable!()
    };
    assert_eq!((*from_mailbox_id, *to_mailbox_id, messages[0].message_id), (inbox, archive, a));
    assert!(*moved_at > 1 && *modseq > 1);
    assert_eq!(f.mail.row(f.ada, a).await.unwrap().modseq, *moved_at, "the event carries the row's MODSEQ");
    let Event::MailExpunged { messages, modseq, .. } = &got[5] else { unreachable!() };
    assert_eq!(messages[0].message_id, b);
    let log = f.mail.expunged_since(f.ada, inbox, 0).await.unwrap();
    assert!(log.iter().any(|e| e.modseq == *modseq), "the event's MODSEQ is the log's");
}

#[tokio::test]
async fn change_events_reach_a_subscriber_after_a_restart() {
    let f = fixture().await;
    one_of_each(&f).await;
    let written = kinds(&outbox_events(&f.db).await);
    // A second life of the bus on the same file, as after a crash: nothing was handled.
    let url = format!("sqlite://{}?mode=rwc", f.dir.path().join("t.db").display());
    let db = crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap();
    let bus = Bus::new(db);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |e| {
        let tx = tx.clone();
        Box::pin(async move {
            tx.send(e)?;
            Ok(())
        })
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = bus.subscribe("indexer", handler, stop_rx);
    let mut got = Vec::new();
    while kinds(&got).len() < written.len() {
        let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        got.push(next.expect("replayed events").unwrap());
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(kinds(&got), written);
    assert_eq!(written.len(), 9, "{written:?}");
}

async fn outbox_events(db: &Db) -> Vec<Event> {
    crate::platform::bus::outbox::Entity::find()
        .all(db)
        .await
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_str(&r.event).ok())
        .collect()
}
