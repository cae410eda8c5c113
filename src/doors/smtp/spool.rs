//! The SMTP spool: the body of a message past `smtp.spool_threshold` is written, piece by
//! piece as the session hands it out ([`super::Event::Spool`]), to a temporary file in
//! `DATA_DIR/spool` instead of being kept in memory, and read back whole for delivery
//! (once the door's memory budget has room for it). It owns those files only: what goes
//! in them and when is the session's call, and delivery is the handler's.
//!
//! Invariants:
//! - **A spool file is readable by the server's user only and never outlives its
//!   message**: it is made with `tempfile::tempfile_in` (mode 0600, unlinked at once, with
//!   `O_TMPFILE` where the file system has it), so it is gone when the message is
//!   delivered or refused, when the session ends, and after a crash.
//! - **File I/O runs on tokio's blocking threads**, with the bytes (and their budget
//!   charge) moved there and dropped once written: no copy is kept on the way.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Held;

/// Why a spooled message could not be handed to delivery.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Making, writing or reading the file failed (disk full, folder not writable, ...).
    #[error("spool file i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The file holds another length than the session handed out.
    #[error("spool file holds {written} bytes, the message has {expected}")]
    Length {
        /// Bytes written.
        written: usize,
        /// Bytes the session said the message has.
        expected: usize,
    },
}

/// The spool of one session: at most one file, for the message being received.
pub(super) struct Spool {
    dir: PathBuf,
    file: Option<File>,
    written: usize,
    /// A write failed: the message is answered 452 at its end.
    failed: Option<std::io::Error>,
}

impl Spool {
    /// A spool writing its files in `dir` (made when first needed).
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir, file: None, written: 0, failed: None }
    }

    /// Appends the next piece of the body, making the file at the first. A failure is kept
    /// and reported by [`Spool::read_back`]; later pieces are then dropped.
    pub(super) async fn append(&mut self, held: Held) {
        if self.failed.is_some() {
            return;
        }
        let len = held.bytes.len();
        let (file, dir) = (self.file.take(), self.dir.clone());
        let written = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(file) => file,
                None => create(&dir)?,
            };
            file.write_all(&held.bytes)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match written {
            Ok(file) => {
                self.file = Some(file);
                self.written += len;
            }
            Err(e) => self.failed = Some(e),
        }
    }

    /// Removes the file of a refused message (closing it removes it) and starts afresh.
    pub(super) fn discard(&mut self) {
        self.file = None;
        self.written = 0;
        self.failed = None;
    }

    /// The whole message of `len` bytes, read back (its memory is the caller's to budget);
    /// the file is removed either way.
    pub(super) async fn read_back(&mut self, len: usize) -> Result<Vec<u8>, SpoolError> {
        let (file, written, failed) = (self.file.take(), self.written, self.failed.take());
        self.discard();
        if let Some(e) = failed {
            return Err(SpoolError::Io(e));
        }
        let file = match file {
            Some(file) if written == len => file,
            _ => return Err(SpoolError::Length { written, expected: len }),
        };
        let bytes = tokio::task::spawn_blocking(move || read_all(file, len))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        Ok(bytes)
    }
}

/// A new unnamed file in `dir`, making the folder (0700) if it is missing.
fn create(dir: &Path) -> std::io::Result<File> {
    let file = match tempfile::tempfile_in(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            make_dir(dir)?;
            tempfile::tempfile_in(dir)?
        }
        other => other?,
    };
    metrics::counter!("postcast_smtp_spooled_messages_total").increment(1);
    Ok(file)
}

/// Makes `dir` readable by the server's user only.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The first `len` bytes of `file`, from its start.
fn read_all(mut file: File, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = vec![0u8; len];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Makes the spool folder at start and removes files a crash left there (only a file made
/// where `O_TMPFILE` is missing, in the instant before it is unlinked, can be left).
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    make_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::smtp::MemoryBudget;

    fn held(budget: &MemoryBudget, bytes: &[u8]) -> Held {
        let mut charge = budget.charge();
        assert!(charge.try_grow_to(bytes.len()));
        Held { bytes: bytes.to_vec(), charge }
    }

    #[tokio::test]
    async fn pieces_come_back_whole_and_the_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join("spool");
        let budget = MemoryBudget::new(1000);
        let mut spool = Spool::new(spool_dir.clone());
        spool.append(held(&budget, b"Subject: a\r\n\r\n")).await;
        spool.append(held(&budget, b"body\r\n")).await;
        assert_eq!(budget.free(), 1000, "written pieces give their bytes back");
        assert!(spool_dir.is_dir(), "the folder is made when first needed");
        assert_eq!(std::fs::read_dir(&spool_dir).unwrap().count(), 0, "the file has no name");
        assert_eq!(spool.read_back(20).await.unwrap(), b"Subject: a\r\n\r\nbody\r\n");
        assert!(matches!(spool.read_back(20).await, Err(SpoolError::Length { written: 0, expected: 20 })));
        spool.append(held(&budget, b"refused")).await;
        spool.discard();
        spool.append(held(&budget, b"next")).await;
        assert_eq!(spool.read_back(4).await.unwrap(), b"next", "a discarded message leaves nothing behind");
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::new(10);
        // A file where the folder should be: nothing can be made there.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let mut spool = Spool::new(blocked.join("spool"));
        spool.append(held(&budget, b"abc")).await;
        spool.append(held(&budget, b"def")).await;
        assert!(matches!(spool.read_back(6).await, Err(SpoolError::Io(_))));
        assert_eq!(budget.free(), 10);
    }

    #[test]
    fn prepare_makes_the_folder_private_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::write(spool.join(".tmpLEFT"), b"left by a crash").unwrap();
        prepare(&spool).unwrap();
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let fresh = dir.path().join("fresh");
            prepare(&fresh).unwrap();
            assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }
}
