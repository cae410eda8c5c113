//! Unit tests of the prefs service against a temporary SQLite database and blob store.

use std::time::Duration;

use sea_orm::PaginatorTrait;
use serde_json::json;

use super::*;
use crate::domains::profile::tests::insert_user;
use crate::platform::bus::outbox;

async fn service(config: PrefsConfig) -> (tempfile::TempDir, PrefsService, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = crate::platform::db::open(&url, 4, Duration::from_secs(5), true).await.unwrap();
    insert_user(&db, 1, "ada").await;
    insert_user(&db, 2, "bob").await;
    let blobs = Blobs::open(dir.path().join("blobs"), db.clone()).unwrap();
    let svc = PrefsService::new(db.clone(), blobs, Bus::new(db.clone()), config);
    (dir, svc, db)
}

#[tokio::test]
async fn writes_bump_the_version_and_publish_in_the_same_transaction() {
    let (_dir, svc, db) = service(PrefsConfig::default()).await;
    assert_eq!(svc.get(1).await.unwrap(), PrefsDocument { doc: json!({}), version: 0 });
    let v1 = svc.replace(1, json!({"theme": "dark", "n": 1}), &Expect::OneOf(vec![0])).await.unwrap();
    assert_eq!(v1.version, 1);
    let v2 = svc.merge_patch(1, &json!({"n": null, "lang": "de"}), &Expect::Any).await.unwrap();
    assert_eq!(v2, PrefsDocument { doc: json!({"theme": "dark", "lang": "de"}), version: 2 });
    assert_eq!(svc.get(1).await.unwrap(), v2);
    assert_eq!(outbox::Entity::find().count(&db).await.unwrap(), 2);
    assert_eq!(svc.get(2).await.unwrap().version, 0, "another user's document is separate");
}

#[tokio::test]
async fn refused_writes_store_nothing_and_publish_nothing() {
    let (_dir, svc, db) = service(PrefsConfig { max_bytes: 40, ..Default::default() }).await;
    let stored = svc.replace(1, json!({"a": 1}), &Expect::Any).await.unwrap();
    let stale = Expect::OneOf(vec![0]);
    assert!(matches!(
        svc.replace(1, json!({"a": 2}), &stale).await,
        Err(PrefsError::PreconditionFailed { current: 1 })
    ));
    assert!(matches!(svc.replace(1, json!([1]), &Expect::Any).await, Err(PrefsError::NotAnObject)));
    assert!(matches!(svc.merge_patch(1, &json!("x"), &Expect::Any).await, Err(PrefsError::NotAnObject)));
    let big = json!({"a": "x".repeat(50)});
    assert!(matches!(svc.replace(1, big, &Expect::Any).await, Err(PrefsError::TooLarge { max: 40 })));
    assert_eq!(svc.get(1).await.unwrap(), stored);
    assert_eq!(outbox::Entity::find().count(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn of_two_writers_expecting_the_same_version_exactly_one_wins() {
    let (_dir, svc, _db) = service(PrefsConfig::default()).await;
    svc.replace(1, json!({"tab": 0}), &Expect::Any).await.unwrap();
    let expect = Expect::OneOf(vec![1]);
    let (a, b) =
        tokio::join!(svc.replace(1, json!({"tab": "a"}), &expect), svc.replace(1, json!({"tab": "b"}), &expect));
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{a:?} {b:?}");
    assert_eq!(svc.get(1).await.unwrap().version, 2);
    // Without a precondition both land, one after the other.
    let (px, py) = (json!({"x": 1}), json!({"y": 2}));
    let (a, b) = tokio::join!(svc.merge_patch(1, &px, &Expect::Any), svc.merge_patch(1, &py, &Expect::Any));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    let now = svc.get(1).await.unwrap();
    assert_eq!(now.version, 4);
    assert_eq!((&now.doc["x"], &now.doc["y"]), (&json!(1), &json!(2)));
}

#[tokio::test]
async fn attachments_are_private_and_collected_once_unmentioned() {
    let (_dir, svc, _db) = service(PrefsConfig { attachment_grace_seconds: 0, ..Default::default() }).await;
    let kept = svc.add_attachment(1, Some("bg.png"), Some("image/png"), Bytes::from_static(b"one")).await.unwrap();
    let dropped = svc.add_attachment(1, None, None, Bytes::from_static(b"two")).await.unwrap();
    assert_eq!((dropped.name.as_str(), dropped.content_type.as_str()), ("attachment", "application/octet-stream"));
    assert_eq!(svc.attachments(1).await.unwrap().len(), 2);
    assert!(svc.attachments(2).await.unwrap().is_empty());
    assert!(matches!(svc.attachment(2, &kept.id).await, Err(PrefsError::AttachmentNotFound)));
    assert!(matches!(svc.attachment(1, "../x").await, Err(PrefsError::AttachmentNotFound)));

    svc.merge_patch(1, &json!({"background": format!("/api/v1/prefs/attachments/{}", kept.id)}), &Expect::Any)
        .await
        .unwrap();
    let ev = Event::PrefsChanged { user_id: 1 };
    svc.handle_event(ev.clone()).await.unwrap();
    svc.handle_event(ev).await.unwrap(); // delivered twice: nothing more happens
    assert_eq!(&svc.attachment(1, &kept.id).await.unwrap().1[..], b"one");
    assert!(matches!(svc.attachment(1, &dropped.id).await, Err(PrefsError::AttachmentNotFound)));
    assert_eq!(svc.attachments(1).await.unwrap(), vec![kept]);
}

#[tokio::test]
async fn young_attachments_survive_the_grace_period_and_big_ones_are_refused() {
    let (_dir, svc, _db) = service(PrefsConfig { attachment_max_bytes: 4, ..Default::default() }).await;
    let young = svc.add_attachment(1, None, None, Bytes::from_static(b"1234")).await.unwrap();
    assert_eq!(svc.collect_attachments(1).await.unwrap(), 0);
    assert!(svc.attachment(1, &young.id).await.is_ok());
    assert!(matches!(
        svc.add_attachment(1, None, None, Bytes::from_static(b"12345")).await,
        Err(PrefsError::AttachmentTooLarge { max: 4 })
    ));
    assert!(matches!(
        svc.add_attachment(1, None, Some("not a type"), Bytes::from_static(b"1")).await,
        Err(PrefsError::InvalidAttachment(_))
    ));
    assert_eq!(svc.attachments(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_read_that_loses_the_race_never_puts_back_an_older_document() {
    let (_dir, svc, _db) = service(PrefsConfig::default()).await;
    let old = svc.get(1).await.unwrap();
    let new = svc.replace(1, json!({"theme": "dark"}), &Expect::Any).await.unwrap();
    // A read that started before the write finishes after it.
    svc.remember(1, &old).await;
    assert_eq!(svc.get(1).await.unwrap(), new);
}
