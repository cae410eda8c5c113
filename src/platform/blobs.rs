//! The blob store: immutable byte strings addressed by their SHA-256. Blobs up to
//! [`INLINE_MAX`] bytes live in the database (`blob_inline`), written in the same
//! transaction as the reference that keeps them; larger ones are files on local disk through
//! object_store (S3 later, same trait), written atomically and durably (temp file, fsync,
//! rename, fsync of the folder; or one `syncfs` for a batch). Storage is deduplicated; each
//! stored blob carries the set of owners that reference it (`blob_refs`) and is deleted when
//! the last owner lets go. Writers share the reference lock, so batches are written and
//! synced side by side; only a release (which may delete a blob) takes it alone. It knows
//! nothing of what the bytes mean.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::db::Db;

/// Blobs of at most this many bytes are kept in the database rather than as files: storing
/// one is a row in the caller's transaction, with no file, folder entry or file-system sync
/// of its own. SQLite reads and writes blobs of this size faster than the file system does
/// (<https://www.sqlite.org/intern-v-extern-blob.html>), and most mail is smaller.
pub const INLINE_MAX: usize = 64 * 1024;

/// A batch holding at most this many bytes in all is hashed on the calling task; a larger
/// one goes to a blocking thread.
const HASH_ON_TASK_MAX: usize = 1 << 20;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The id is not 64 lowercase hex characters.
    #[error("invalid blob id")]
    InvalidId,
    /// No blob with that id.
    #[error("blob not found")]
    NotFound,
    /// Disk or object store failure.
    #[error("blob storage: {0}")]
    Io(String),
    /// Reference bookkeeping failed.
    #[error("blob references: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// A blob's name: the lowercase hex SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId(String);

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn object_path(&self) -> ObjectPath {
        ObjectPath::from(format!("{}/{}/{}", &self.0[..2], &self.0[2..4], self.0))
    }
}

impl TryFrom<String> for BlobId {
    type Error = BlobError;
    fn try_from(s: String) -> Result<Self, BlobError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s))
        } else {
            Err(BlobError::InvalidId)
        }
    }
}

impl From<BlobId> for String {
    fn from(id: BlobId) -> String {
        id.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reference rows: which owner keeps which blob alive.
pub mod blob_ref {
    use sea_orm::entity::prelude::*;

    /// One (blob, owner) pair.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blob_refs")]
    pub struct Model {
        /// The blob's hex id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub blob_id: String,
        /// Who holds it, e.g. `prefs:attachment:ID`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub owner: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Small blobs stored in the database (see [`INLINE_MAX`]).
pub mod blob_inline {
    use sea_orm::entity::prelude::*;

    /// One blob's bytes.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "blob_inline")]
    pub struct Model {
        /// The blob's hex id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub blob_id: String,
        /// Its bytes.
        pub bytes: Vec<u8>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The store.
#[derive(Clone)]
pub struct Blobs {
    root: PathBuf,
    store: Arc<dyn ObjectStore>,
    db: Db,
    /// Writers and new references hold it shared (from the file check until their
    /// reference is committed); a release holds it alone, so a blob being re-added is never
    /// deleted under its new owner, while writers never wait for each other's fsync.
    refs_lock: Arc<RwLock<()>>,
}

impl Blobs {
    /// Opens (creating) the store under `root`.
    pub fn open(root: PathBuf, db: Db) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("tmp")).map_err(|e| BlobError::Io(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| BlobError::Io(e.to_string()))?;
        Ok(Self { root, store: Arc::new(store), db, refs_lock: Arc::new(RwLock::new(())) })
    }

    /// Stores `bytes` durably for `owner` and returns its id. Storing bytes that are
    /// already there writes nothing and only adds the reference.
    pub async fn put(&self, bytes: Bytes, owner: &str) -> Result<BlobId, BlobError> {
        let id = BlobId::of(&bytes);
        let _guard = self.refs_lock.read().await;
        if bytes.len() <= INLINE_MAX {
            let txn = self.db.begin().await?;
            insert_inline(&txn, &[(id.clone(), bytes)]).await?;
            Self::add_ref_in(&txn, &id, owner).await?;
            txn.commit().await?;
        } else {
            self.write_file(&id, bytes).await?;
            Self::add_ref_in(&self.db, &id, owner).await?;
        }
        Ok(id)
    }

    /// Adds `owner` as a holder of an existing blob.
    pub async fn retain(&self, id: &BlobId, owner: &str) -> Result<(), BlobError> {
        let _guard = self.refs_lock.read().await;
        if !self.exists(id).await? {
            return Err(BlobError::NotFound);
        }
        Self::add_ref_in(&self.db, id, owner).await
    }

    /// Drops `owner`'s reference; deletes the blob once nobody holds it.
    pub async fn release(&self, id: &BlobId, owner: &str) -> Result<(), BlobError> {
        let _guard = self.refs_lock.write().await;
        blob_ref::Entity::delete_many()
            .filter(blob_ref::Column::BlobId.eq(id.as_str()))
            .filter(blob_ref::Column::Owner.eq(owner))
            .exec(&self.db)
            .await?;
        let left = blob_ref::Entity::find().filter(blob_ref::Column::BlobId.eq(id.as_str())).count(&self.db).await?;
        if left == 0 {
            blob_inline::Entity::delete_by_id(id.as_str()).exec(&self.db).await?;
            match self.store.delete(&id.object_path()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BlobError::Io(e.to_string())),
            }
        }
        Ok(())
    }

    /// Whether `owner` holds `id`.
    pub async fn is_held_by(&self, id: &BlobId, owner: &str) -> Result<bool, BlobError> {
        let n = blob_ref::Entity::find()
            .filter(blob_ref::Column::BlobId.eq(id.as_str()))
            .filter(blob_ref::Column::Owner.eq(owner))
            .count(&self.db)
            .await?;
        Ok(n > 0)
    }

    /// Reads a whole blob.
    pub async fn get(&self, id: &BlobId) -> Result<Bytes, BlobError> {
        if let Some(row) = blob_inline::Entity::find_by_id(id.as_str()).one(&self.db).await? {
            return Ok(Bytes::from(row.bytes));
        }
        match self.store.get(&id.object_path()).await {
            Ok(r) => r.bytes().await.map_err(|e| BlobError::Io(e.to_string())),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(BlobError::Io(e.to_string())),
        }
    }

    /// Whether the blob is stored.
    pub async fn exists(&self, id: &BlobId) -> Result<bool, BlobError> {
        if blob_inline::Entity::find_by_id(id.as_str()).count(&self.db).await? > 0 {
            return Ok(true);
        }
        match self.store.head(&id.object_path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::Io(e.to_string())),
        }
    }

    /// Temp file, fsync, rename, fsync of the folder: after this returns the blob survives
    /// a crash. object_store's local backend renames but never fsyncs, hence this path.
    async fn write_file(&self, id: &BlobId, bytes: Bytes) -> Result<(), BlobError> {
        let dest = self.root.join(id.object_path().as_ref());
        let tmp_dir = self.root.join("tmp");
        tokio::task::spawn_blocking(move || {
            // A file already there may have been renamed into place by a writer that has
            // not synced it yet: make it durable too before saying it is stored. One that
            // is not whole (cut short by a crash) is written again.
            if holds(&dest, &bytes) {
                std::fs::File::open(&dest)?.sync_all()?;
            } else {
                write_synced(&tmp_dir, &dest, &bytes)?;
            }
            sync_parent(&dest)
        })
        .await
        .map_err(|e| BlobError::Io(e.to_string()))?
        .map_err(|e| BlobError::Io(e.to_string()))
    }

    /// Writes many blobs at once, for group commit. Blobs larger than [`INLINE_MAX`] are
    /// written as files: on Linux they are renamed into place, then one `syncfs` makes all of
    /// them (data, names and folders) durable in a single journal commit; elsewhere each file
    /// and folder is fsynced, on a blocking thread either way. Small blobs are only hashed:
    /// the returned [`BlobBatch`] stores them with [`BlobBatch::store_in`] inside the
    /// caller's transaction. The batch also holds a share of the reference lock: the caller
    /// adds its references with [`Blobs::add_refs_in`] in that transaction and drops the
    /// batch after the commit, so no release can delete a blob between its write and the new
    /// reference. Other batches write and sync meanwhile; only releases wait.
    pub async fn write_many(&self, items: &[Bytes]) -> Result<(Vec<BlobId>, BlobBatch), BlobError> {
        let guard = self.refs_lock.clone().read_owned().await;
        let root = self.root.clone();
        let items = items.to_vec();
        let light = items.iter().all(|b| b.len() <= INLINE_MAX)
            && items.iter().map(Bytes::len).sum::<usize>() <= HASH_ON_TASK_MAX;
        let work = move || write_batch(&root, &items);
        let (ids, inline) = if light {
            work()
        } else {
            tokio::task::spawn_blocking(work).await.map_err(|e| BlobError::Io(e.to_string()))?
        }
        .map_err(|e| BlobError::Io(e.to_string()))?;
        Ok((ids, BlobBatch { _guard: guard, inline }))
    }

    /// Adds `owner` as a holder of `id` on `conn`, which may be the caller's transaction.
    pub async fn add_ref_in<C: ConnectionTrait>(conn: &C, id: &BlobId, owner: &str) -> Result<(), BlobError> {
        Self::add_refs_in(conn, &[(id, owner.to_owned())]).await
    }

    /// Adds every (blob, owner) pair in a few multi-row statements inside the caller's
    /// transaction (see [`Blobs::write_many`]).
    pub async fn add_refs_in<C: ConnectionTrait>(conn: &C, refs: &[(&BlobId, String)]) -> Result<(), BlobError> {
        for chunk in refs.chunks(ROWS_PER_INSERT) {
            let rows = chunk
                .iter()
                .map(|(id, owner)| blob_ref::ActiveModel { blob_id: Set(id.to_string()), owner: Set(owner.clone()) });
            blob_ref::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([blob_ref::Column::BlobId, blob_ref::Column::Owner]).do_nothing().to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        Ok(())
    }
}

/// Rows per multi-row INSERT: well inside SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_INSERT: usize = 500;

/// What [`Blobs::write_many`] leaves to the caller's transaction: the small blobs to store
/// with [`BlobBatch::store_in`], and the share of the reference lock to drop after commit.
pub struct BlobBatch {
    _guard: OwnedRwLockReadGuard<()>,
    inline: Vec<(BlobId, Bytes)>,
}

impl BlobBatch {
    /// Stores the batch's small blobs on `conn` (the transaction that references them).
    pub async fn store_in<C: ConnectionTrait>(&self, conn: &C) -> Result<(), BlobError> {
        insert_inline(conn, &self.inline).await
    }
}

/// Inserts small blobs, keeping any already stored (same id, same bytes).
async fn insert_inline<C: ConnectionTrait>(conn: &C, blobs: &[(BlobId, Bytes)]) -> Result<(), BlobError> {
    for chunk in blobs.chunks(ROWS_PER_INSERT) {
        let rows = chunk
            .iter()
            .map(|(id, bytes)| blob_inline::ActiveModel { blob_id: Set(id.to_string()), bytes: Set(bytes.to_vec()) });
        blob_inline::Entity::insert_many(rows)
            .on_conflict(OnConflict::column(blob_inline::Column::BlobId).do_nothing().to_owned())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// A batch's ids in the order of its items, and its small blobs (once each) for the database.
type Written = (Vec<BlobId>, Vec<(BlobId, Bytes)>);

/// Hashes a batch; writes the large blobs not stored yet and makes every large blob of the
/// batch durable, the ones found on disk too: another writer may have renamed them into
/// place without having synced them yet (see [`Blobs::write_many`]).
fn write_batch(root: &std::path::Path, items: &[Bytes]) -> std::io::Result<Written> {
    let ids: Vec<BlobId> = items.iter().map(|b| BlobId::of(b)).collect();
    let mut seen = std::collections::HashSet::new();
    let (mut todo, mut found, mut inline) = (Vec::new(), Vec::new(), Vec::new());
    for (id, bytes) in ids.iter().zip(items) {
        if !seen.insert(id) {
            continue;
        }
        if bytes.len() <= INLINE_MAX {
            inline.push((id.clone(), bytes.clone()));
            continue;
        }
        let dest = root.join(id.object_path().as_ref());
        if holds(&dest, bytes) { found.push(dest) } else { todo.push((dest, bytes)) }
    }
    if !todo.is_empty() || !found.is_empty() {
        write_durably(root, &todo, &found)?;
    }
    Ok((ids, inline))
}

/// Largest file whose content is re-hashed before it is trusted as a copy of new bytes.
const REHASH_MAX: u64 = 4 << 20;

/// Whether the file at `dest` already holds `bytes`: same size, and the same content where
/// it is small enough to compare ([`REHASH_MAX`]; larger files are compared by size, their
/// name being the hash they were written under). A missing, empty or cut-short file does not.
fn holds(dest: &std::path::Path, bytes: &[u8]) -> bool {
    let Ok(meta) = std::fs::metadata(dest) else { return false };
    if meta.len() != bytes.len() as u64 {
        return false;
    }
    meta.len() > REHASH_MAX || std::fs::read(dest).is_ok_and(|on_disk| on_disk == bytes)
}

/// Writes new blobs, then one `syncfs` makes them and the `found` ones durable. When the
/// sync fails the new files are removed again, so a retry writes them anew instead of
/// trusting pages the kernel may have dropped.
#[cfg(target_os = "linux")]
fn write_durably(root: &std::path::Path, todo: &[(PathBuf, &Bytes)], _found: &[PathBuf]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tmp_dir = root.join("tmp");
    for (dest, bytes) in todo {
        let dir = dest.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir)?;
        tmp.write_all(bytes)?;
        tmp.persist(dest).map_err(|e| e.error)?;
    }
    let fs = std::fs::File::open(root)?;
    // SAFETY: syncfs only uses the descriptor, which `fs` keeps open during the call.
    if unsafe { libc::syncfs(fs.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    for (dest, _) in todo {
        let _ = std::fs::remove_file(dest);
    }
    Err(error)
}

/// Writes new blobs and fsyncs every file (the `found` ones too) and folder.
#[cfg(not(target_os = "linux"))]
fn write_durably(root: &std::path::Path, todo: &[(PathBuf, &Bytes)], found: &[PathBuf]) -> std::io::Result<()> {
    let tmp_dir = root.join("tmp");
    let mut folders = std::collections::BTreeSet::new();
    for (dest, bytes) in todo {
        write_synced(&tmp_dir, dest, bytes)?;
        folders.insert(dest.clone());
    }
    for dest in found {
        std::fs::File::open(dest)?.sync_all()?;
        folders.insert(dest.clone());
    }
    folders.iter().try_for_each(|dest| sync_parent(dest))
}

/// Writes `bytes` to a temp file, fsyncs it and renames it to `dest`.
fn write_synced(tmp_dir: &std::path::Path, dest: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dest.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Fsyncs the folder holding `path`, making a rename into it durable.
fn sync_parent(path: &std::path::Path) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn store() -> (tempfile::TempDir, Blobs) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = super::super::db::open(&url, 2, std::time::Duration::from_secs(5), true).await.unwrap();
        let blobs = Blobs::open(dir.path().join("blobs"), db).unwrap();
        (dir, blobs)
    }

    #[tokio::test]
    async fn put_is_content_addressed_deduplicated_and_refcounted() {
        let (dir, blobs) = store().await;
        let a = blobs.put(Bytes::from_static(b"hello"), "one").await.unwrap();
        assert_eq!(a.as_str(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let large = Bytes::from(vec![7u8; INLINE_MAX + 1]);
        for bytes in [Bytes::from_static(b"hello"), large.clone()] {
            let a = blobs.put(bytes.clone(), "one").await.unwrap();
            let b = blobs.put(bytes.clone(), "two").await.unwrap();
            assert_eq!(a, b);
            assert_eq!(blobs.get(&a).await.unwrap(), bytes);
            blobs.release(&a, "one").await.unwrap();
            assert!(blobs.exists(&a).await.unwrap(), "still held by two");
            blobs.release(&a, "two").await.unwrap();
            assert!(!blobs.exists(&a).await.unwrap());
            assert!(matches!(blobs.get(&a).await, Err(BlobError::NotFound)));
        }
        // Where each lived: the small one in the database only, the large one as one file.
        let id = blobs.put(large.clone(), "one").await.unwrap();
        blobs.put(large, "two").await.unwrap();
        blobs.put(Bytes::from_static(b"hello"), "one").await.unwrap();
        let files: Vec<_> =
            walk(&dir.path().join("blobs")).into_iter().filter(|p| !p.contains("/blobs/tmp/")).collect();
        assert_eq!(files, vec![dir.path().join("blobs").join(id.object_path().as_ref()).display().to_string()]);
        let inline = blob_inline::Entity::find().all(&blobs.db).await.unwrap();
        assert_eq!(inline.len(), 1);
        assert_eq!(inline[0].bytes, b"hello");
    }

    #[tokio::test]
    async fn a_batch_keeps_small_blobs_for_the_transaction_and_writes_large_ones() {
        let (_dir, blobs) = store().await;
        let small = Bytes::from_static(b"small");
        let large = Bytes::from(vec![1u8; INLINE_MAX + 1]);
        let (ids, batch) = blobs.write_many(&[small.clone(), large.clone(), small.clone()]).await.unwrap();
        assert_eq!(ids[0], ids[2]);
        assert!(!blobs.exists(&ids[0]).await.unwrap(), "a small blob waits for the caller's transaction");
        assert_eq!(blobs.get(&ids[1]).await.unwrap(), large, "a large blob is on disk at once");
        let txn = blobs.db.begin().await.unwrap();
        batch.store_in(&txn).await.unwrap();
        Blobs::add_refs_in(&txn, &[(&ids[0], "a".to_owned()), (&ids[1], "b".to_owned())]).await.unwrap();
        txn.commit().await.unwrap();
        drop(batch);
        assert_eq!(blobs.get(&ids[0]).await.unwrap(), small);
        assert!(blobs.is_held_by(&ids[0], "a").await.unwrap() && blobs.is_held_by(&ids[1], "b").await.unwrap());
    }

    #[tokio::test]
    async fn batches_share_the_lock_and_a_release_waits_for_their_references() {
        let (_dir, blobs) = store().await;
        let id = blobs.put(Bytes::from_static(b"shared"), "old").await.unwrap();
        let (ids, first) = blobs.write_many(&[Bytes::from_static(b"shared")]).await.unwrap();
        assert_eq!(ids, vec![id.clone()]);
        // A second batch is written and synced while the first still holds its share.
        let other = [Bytes::from_static(b"other")];
        let second = tokio::time::timeout(Duration::from_secs(10), blobs.write_many(&other));
        let (_, second) = second.await.expect("not blocked").unwrap();
        // The old owner lets go meanwhile: the release waits for the batches to commit.
        let release = tokio::spawn({
            let (blobs, id) = (blobs.clone(), id.clone());
            async move { blobs.release(&id, "old").await }
        });
        let mut release = std::pin::pin!(release);
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut release).await.is_err(), "release must wait");
        Blobs::add_ref_in(&blobs.db, &id, "new").await.unwrap();
        drop((first, second));
        release.await.unwrap().unwrap();
        assert!(blobs.exists(&id).await.unwrap(), "the new owner's blob survives the old owner's release");
        assert!(blobs.is_held_by(&id, "new").await.unwrap());
    }

    #[tokio::test]
    async fn a_cut_short_file_is_written_again_not_trusted() {
        let (dir, blobs) = store().await;
        let bytes = Bytes::from(vec![9u8; INLINE_MAX + 10]);
        let id = BlobId::of(&bytes);
        let path = dir.path().join("blobs").join(id.object_path().as_ref());
        for damage in [&b""[..], &bytes[..100], &[0u8; INLINE_MAX + 10][..]] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, damage).unwrap();
            blobs.put(bytes.clone(), "one").await.unwrap();
            assert_eq!(blobs.get(&id).await.unwrap(), bytes, "put over {} damaged bytes", damage.len());
            std::fs::write(&path, damage).unwrap();
            let (ids, _batch) = blobs.write_many(std::slice::from_ref(&bytes)).await.unwrap();
            assert_eq!(ids, vec![id.clone()]);
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "a batch over {} damaged bytes", damage.len());
        }
    }

    #[test]
    fn ids_are_validated() {
        assert!(BlobId::try_from("../../etc/passwd".to_string()).is_err());
        assert!(BlobId::try_from("A".repeat(64)).is_err());
        assert!(BlobId::try_from("a".repeat(64)).is_ok());
    }

    fn walk(p: &std::path::Path) -> Vec<String> {
        let mut out = vec![];
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() { out.extend(walk(&path)) } else { out.push(path.display().to_string()) }
        }
        out
    }
}
