//! Unit tests of the profile service against a temporary SQLite database and blob store.

use std::io::Cursor;
use std::time::Duration;

use image::{DynamicImage, ImageFormat, RgbImage};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Query};

use super::*;

/// A service over a fresh database holding user 1, `ada`.
pub(crate) async fn service_with_user(config: ProfileConfig) -> (tempfile::TempDir, ProfileService, Blobs) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let db = crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap();
    insert_user(&db, 1, "ada").await;
    let blobs = Blobs::open(dir.path().join("blobs"), db.clone()).unwrap();
    (dir, ProfileService::new(db, blobs.clone(), config), blobs)
}

/// Inserts a bare `users` row (the auth domain's table) so foreign keys hold.
pub(crate) async fn insert_user(db: &Db, id: i64, name: &str) {
    let stmt = Query::insert()
        .into_table(Alias::new("users"))
        .columns(["id", "username", "address", "password_hash", "created_at"].map(Alias::new))
        .values_panic([id.into(), name.into(), format!("{name}@localhost").into(), "x".into(), 0i64.into()])
        .to_owned();
    db.execute(&stmt).await.unwrap();
}

fn png(w: u32, h: u32) -> Bytes {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, _| image::Rgb([x as u8, 0, 0])));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    Bytes::from(out.into_inner())
}

#[tokio::test]
async fn registration_event_creates_the_default_profile_once() {
    let (_dir, svc, _) = service_with_user(ProfileConfig::default()).await;
    let ev = Event::UserRegistered { user_id: 1, username: "ada".into() };
    svc.handle_event(ev.clone()).await.unwrap();
    svc.update(1, "ada", ProfileUpdate { display_name: Some("Ada L.".into()), ..Default::default() }).await.unwrap();
    svc.handle_event(ev).await.unwrap(); // replayed: must not reset anything
    let p = svc.get(1, "ada").await.unwrap();
    assert_eq!(p.display_name, "Ada L.");
    assert_eq!((p.time_zone.as_str(), p.language.as_str()), (DEFAULT_TIME_ZONE, DEFAULT_LANGUAGE));
    assert_eq!(p.avatar, None);
}

#[tokio::test]
async fn a_refused_update_changes_nothing() {
    let (_dir, svc, _) = service_with_user(ProfileConfig::default()).await;
    let before = svc.get(1, "ada").await.unwrap();
    let bad = ProfileUpdate {
        display_name: Some("New".into()),
        time_zone: Some("Mars/Olympus Mons".into()),
        ..Default::default()
    };
    assert!(matches!(svc.update(1, "ada", bad).await, Err(ProfileError::Invalid { field: "time_zone", .. })));
    assert_eq!(svc.get(1, "ada").await.unwrap(), before);
}

#[tokio::test]
async fn replacing_and_deleting_the_avatar_releases_the_old_blobs() {
    let (_dir, svc, blobs) = service_with_user(ProfileConfig { thumbnail_px: 32, ..Default::default() }).await;
    let first = png(100, 50);
    let p = svc.set_avatar(1, "ada", "image/png", first.clone()).await.unwrap();
    let tag1 = p.avatar.unwrap().tag;
    let thumb1 = svc.avatar_thumbnail(1).await.unwrap();
    assert_eq!(thumb1.tag, tag1);
    let img = image::load_from_memory_with_format(&thumb1.bytes, ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
    assert_eq!(svc.avatar(1).await.unwrap().bytes, first);

    // The same image again keeps its blobs; another one replaces them.
    svc.set_avatar(1, "ada", "image/png", first.clone()).await.unwrap();
    assert!(blobs.exists(&BlobId::of(&first)).await.unwrap());
    let second = png(60, 60);
    svc.set_avatar(1, "ada", "image/png", second.clone()).await.unwrap();
    assert!(!blobs.exists(&BlobId::of(&first)).await.unwrap());
    assert!(!blobs.exists(&BlobId::of(&thumb1.bytes)).await.unwrap());

    svc.delete_avatar(1).await.unwrap();
    assert!(!blobs.exists(&BlobId::of(&second)).await.unwrap());
    assert!(matches!(svc.avatar(1).await, Err(ProfileError::NoAvatar)));
    assert!(matches!(svc.avatar_thumbnail(1).await, Err(ProfileError::NoAvatar)));
    svc.delete_avatar(1).await.unwrap();
}

#[tokio::test]
async fn refused_avatars_store_nothing() {
    let (_dir, svc, _) = service_with_user(ProfileConfig { avatar_max_bytes: 1000, ..Default::default() }).await;
    assert!(matches!(
        svc.set_avatar(1, "ada", "image/png", Bytes::from(vec![0u8; 1001])).await,
        Err(ProfileError::AvatarTooLarge { max: 1000 })
    ));
    assert!(matches!(
        svc.set_avatar(1, "ada", "image/svg+xml", png(4, 4)).await,
        Err(ProfileError::UnsupportedImageType(_))
    ));
    assert!(matches!(
        svc.set_avatar(1, "ada", "image/png", Bytes::from_static(b"just text")).await,
        Err(ProfileError::InvalidImage(_))
    ));
    assert_eq!(svc.get(1, "ada").await.unwrap().avatar, None);
}
