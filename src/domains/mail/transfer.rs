//! Mail import and export for the command line: mbox files and Maildir folders in, mboxrd
//! out. Reading uses mail-parser's own mailbox readers on a blocking thread, one message at
//! a time; storing goes through [`MailService::store`] from up to [`IN_FLIGHT`] tasks at
//! once, so the committer groups them and one transaction and fsync round serve many.
//!
//! Invariants:
//! - **An import is idempotent**: a message whose Message-ID the user already has (in any
//!   mailbox) is skipped; one without a Message-ID is skipped when the user already has a
//!   row with its exact bytes (its blob id, the SHA-256 of the stored bytes).
//! - **Stored bytes are RFC 5322 lines**: mailbox files use bare LF; import turns bare LF
//!   into CRLF and export turns CRLF back into LF, so export then import gives the same
//!   bytes again.
//! - Export quotes `^>*From ` lines the mboxrd way (one more `>`), and the mbox reader
//!   removes exactly one, so a body line starting with "From " survives a round trip.
//! - **Memory stays bounded**: messages read but not yet stored hold at most
//!   [`BUDGET_KIB`] of a budget (a larger message goes alone), so a multi-gigabyte mbox is
//!   never held in memory.
//! - This module never touches the terminal: callers get counts and a progress callback.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use mail_parser::mailbox::{maildir, mbox};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::entities::message;
use super::parse::{self, Meta};
use super::store::{NewMessage, Target};
use super::{Flags, MailError, MailService, Role};
use crate::platform::blobs::BlobId;
use crate::platform::db::now;

/// How many messages are handed to the store at once; the committer takes them as one batch.
const IN_FLIGHT: usize = 32;
/// How many read messages may wait for the store.
const READ_AHEAD: usize = 64;
/// The most message bytes read and not yet stored, in KiB (a larger message goes alone).
const BUDGET_KIB: u32 = 128 * 1024;
/// The most failure descriptions a report keeps.
const MAX_ERRORS: usize = 20;
/// Rows read per query on export.
const EXPORT_PAGE: u64 = 256;
/// Raw messages read from the blob store at once on export.
const EXPORT_READS: usize = 8;
/// The sender on a From_ line when the message has none (RFC 4155).
const NO_SENDER: &str = "MAILER-DAEMON";

/// Why an import or export stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A file or folder cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file does not start with a From_ line.
    #[error("{0} is not an mbox file (it does not start with a \"From \" line)")]
    NotMbox(String),
    /// The folder has no `cur/` and `new/` folders, nor Maildir++ subfolders.
    #[error("{0} is not a Maildir (no cur/ and new/ folders found)")]
    NotMaildir(String),
    /// The store failed, or a mailbox name is not valid.
    #[error(transparent)]
    Mail(#[from] MailError),
}

impl TransferError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        TransferError::Io { path: path.display().to_string(), source }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Messages stored.
    pub imported: u64,
    /// Messages the user already had (or that came twice).
    pub skipped: u64,
    /// Messages that could not be read or stored.
    pub failed: u64,
    /// Why, for the first few failures.
    pub errors: Vec<String>,
}

impl ImportReport {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(why);
        }
    }
}

/// Told how far an import is: (done, total), in bytes for mbox and messages for Maildir.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// A message read from a mailbox file, ready to store.
struct Incoming {
    raw: Bytes,
    meta: Meta,
    blob: String,
    internal_date: i64,
    flags: Flags,
    /// The Maildir subfolder (`/`-separated), None for the top folder.
    folder: Option<String>,
    /// Its share of the memory budget, given back once it is stored or skipped.
    _budget: OwnedSemaphorePermit,
}

/// What the reading thread hands over.
enum Reading {
    /// A message, and the progress once it is read.
    Message(Box<Incoming>, u64),
    /// A message that cannot be read, and the progress.
    Failed(String, u64),
    /// Reading cannot go on.
    Fatal(TransferError),
}

/// The Message-IDs and blob ids the user has, plus those of this import so far.
struct Seen {
    ids: HashSet<String>,
    blobs: HashSet<String>,
}

impl Seen {
    async fn load(mail: &MailService, user_id: i64) -> Result<Self, MailError> {
        let rows: Vec<(Option<String>, String)> = message::Entity::find()
            .select_only()
            .column(message::Column::MessageIdHdr)
            .column(message::Column::BlobId)
            .filter(message::Column::UserId.eq(user_id))
            .into_tuple()
            .all(mail.db())
            .await?;
        let mut seen = Seen { ids: HashSet::with_capacity(rows.len()), blobs: HashSet::with_capacity(rows.len()) };
        for (id, blob) in rows {
            seen.ids.extend(id);
            seen.blobs.insert(blob);
        }
        Ok(seen)
    }

    /// Whether `m` is new; if so it counts as seen from now on.
    fn admit(&mut self, m: &Incoming) -> bool {
        let new = match &m.meta.message_id {
            Some(id) => self.ids.insert(id.clone()),
            None => !self.blobs.contains(&m.blob),
        };
        if new {
            self.blobs.insert(m.blob.clone());
        }
        new
    }
}

impl MailService {
    /// Imports an mbox file (mboxrd or mboxo) into `mailbox` (INBOX when None, created when
    /// missing); From_ line dates become internal dates. `progress` gets bytes read.
    pub async fn import_mbox(
        &self,
        user_id: i64,
        path: &Path,
        mailbox: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<ImportReport, TransferError> {
        let total = tokio::fs::metadata(path).await.map_err(|e| TransferError::io(path, e))?.len();
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let (file, reader) = (path.to_path_buf(), Reader::new(tx));
        let reader = tokio::task::spawn_blocking(move || read_mbox(&file, &reader));
        let report = self.import_from(user_id, mailbox, rx, total, progress).await;
        let _ = reader.await;
        report
    }

    /// Imports a Maildir and its Maildir++ subfolders: the top folder goes to `mailbox`
    /// (INBOX when None), a subfolder `.A.B` to `A/B` (under `mailbox/` when given).
    /// Flags come from the file names (S seen, R answered, F flagged, T deleted, D draft),
    /// internal dates from the files' times. `progress` gets messages read.
    pub async fn import_maildir(
        &self,
        user_id: i64,
        dir: &Path,
        mailbox: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<ImportReport, TransferError> {
        let root = dir.to_path_buf();
        let (folders, total) = tokio::task::spawn_blocking(move || count_maildir(&root, 0))
            .await
            .map_err(|e| MailError::Invalid(e.to_string()))?;
        if folders == 0 {
            return Err(TransferError::NotMaildir(dir.display().to_string()));
        }
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let (root, reader) = (dir.to_path_buf(), Reader::new(tx));
        let reader = tokio::task::spawn_blocking(move || read_maildir(&root, &reader));
        let report = self.import_from(user_id, mailbox, rx, total, progress).await;
        let _ = reader.await;
        report
    }

    /// Stores what the reader sends, skipping duplicates, with up to [`IN_FLIGHT`] stores
    /// waiting at once.
    async fn import_from(
        &self,
        user_id: i64,
        mailbox: Option<&str>,
        mut rx: mpsc::Receiver<Reading>,
        total: u64,
        progress: Progress<'_>,
    ) -> Result<ImportReport, TransferError> {
        let mut seen = Seen::load(self, user_id).await?;
        let mut targets: HashMap<Option<String>, Target> = HashMap::new();
        let mut tally = Tally { report: ImportReport::default(), done: 0, total, progress };
        let mut in_flight = JoinSet::new();
        let mut fatal = None;
        while let Some(read) = rx.recv().await {
            let (m, at) = match read {
                Reading::Message(m, at) => (m, at),
                Reading::Failed(why, at) => {
                    tally.count(at, Outcome::Failed(why));
                    continue;
                }
                Reading::Fatal(e) => {
                    fatal = Some(e);
                    break;
                }
            };
            if !seen.admit(&m) {
                tally.count(at, Outcome::Skipped);
                continue;
            }
            let target = match targets.get(&m.folder) {
                Some(t) => t.clone(),
                None => match self.import_target(user_id, &folder_name(mailbox, m.folder.as_deref())).await {
                    Ok(t) => targets.entry(m.folder.clone()).or_insert(t).clone(),
                    Err(e) => {
                        fatal = Some(e.into());
                        break;
                    }
                },
            };
            while in_flight.len() >= IN_FLIGHT
                && let Some(result) = in_flight.join_next().await
            {
                tally.joined(result);
            }
            let mail = self.clone();
            in_flight.spawn(async move { (at, mail.store_import(user_id, target, *m).await) });
        }
        // Dropping the receiver stops the reader; what was handed to the store finishes.
        drop(rx);
        while let Some(result) = in_flight.join_next().await {
            tally.joined(result);
        }
        progress(total, total);
        match fatal {
            Some(e) => Err(e),
            None => Ok(tally.report),
        }
    }

    async fn store_import(&self, user_id: i64, target: Target, m: Incoming) -> Result<(), String> {
        let mut new = NewMessage::new(user_id, target);
        new.flags = m.flags;
        new.internal_date = m.internal_date;
        let subject = m.meta.subject.clone();
        self.store(m.raw, Arc::new(m.meta), vec![new]).await.map(|_| ()).map_err(|e| format!("{subject:?}: {e}"))
    }

    /// Where imported mail named `name` goes: a system mailbox when the name is one (case
    /// aside), else the user's mailbox of that name, created when missing.
    pub async fn import_target(&self, user_id: i64, name: &str) -> Result<Target, MailError> {
        let name = name.trim().trim_matches('/');
        if let Some(role) = system_role(name) {
            return Ok(Target::Role(role));
        }
        if let Some(m) = self.mailbox_named(user_id, name).await? {
            return Ok(Target::Mailbox(m.id));
        }
        match self.create_mailbox(user_id, name).await {
            Ok(id) => Ok(Target::Mailbox(id)),
            Err(MailError::Exists) => {
                self.mailbox_named(user_id, name).await?.map(|m| Target::Mailbox(m.id)).ok_or(MailError::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the user's mail as an mboxrd file to `out`: every mailbox, or only `mailbox`.
    /// Returns how many messages were written.
    pub async fn export_mbox<W: AsyncWrite + Unpin>(
        &self,
        user_id: i64,
        mailbox: Option<&str>,
        out: W,
    ) -> Result<u64, TransferError> {
        let mailbox_id = match mailbox {
            Some(name) => Some(self.existing_mailbox(user_id, name).await?),
            None => None,
        };
        let mut out = tokio::io::BufWriter::new(out);
        let write_err = |e| TransferError::io(Path::new("output"), e);
        let (mut after, mut count, mut entry) = (0, 0, Vec::new());
        loop {
            let mut q = message::Entity::find()
                .filter(message::Column::UserId.eq(user_id))
                .filter(message::Column::Id.gt(after));
            if let Some(id) = mailbox_id {
                q = q.filter(message::Column::MailboxId.eq(id));
            }
            let rows =
                q.order_by_asc(message::Column::Id).limit(EXPORT_PAGE).all(self.db()).await.map_err(MailError::from)?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            let blobs = self.inner.blobs.clone();
            let mut raws = futures::stream::iter(rows)
                .map(|row| {
                    let blobs = blobs.clone();
                    async move {
                        let raw = blobs.get(&BlobId::try_from(row.blob_id.clone())?).await?;
                        Ok::<_, MailError>((row, raw))
                    }
                })
                .buffered(EXPORT_READS);
            while let Some(next) = raws.next().await {
                let (row, raw) = next?;
                entry.clear();
                mboxrd_entry(&row.from_addr, row.internal_date, &raw, &mut entry);
                out.write_all(&entry).await.map_err(write_err)?;
                count += 1;
            }
        }
        out.flush().await.map_err(write_err)?;
        Ok(count)
    }

    /// The id of the user's mailbox `name` (system names case-insensitively); not created.
    async fn existing_mailbox(&self, user_id: i64, name: &str) -> Result<i64, MailError> {
        let name = name.trim().trim_matches('/');
        if let Some(role) = system_role(name) {
            return self.role_mailbox(user_id, role).await;
        }
        self.mailbox_named(user_id, name)
            .await?
            .map(|m| m.id)
            .ok_or_else(|| MailError::Invalid(format!("no mailbox named {name:?}")))
    }
}

/// What became of one message.
enum Outcome {
    Stored,
    Skipped,
    Failed(String),
}

/// The counts of an import so far, and its progress: how far the reader was when the
/// last finished message was read.
struct Tally<'a> {
    report: ImportReport,
    done: u64,
    total: u64,
    progress: Progress<'a>,
}

impl Tally<'_> {
    fn count(&mut self, at: u64, outcome: Outcome) {
        match outcome {
            Outcome::Stored => self.report.imported += 1,
            Outcome::Skipped => self.report.skipped += 1,
            Outcome::Failed(why) => self.report.fail(why),
        }
        self.done = self.done.max(at);
        (self.progress)(self.done, self.total);
    }

    /// Counts a finished store task.
    fn joined(&mut self, result: Result<(u64, Result<(), String>), tokio::task::JoinError>) {
        match result {
            Ok((at, Ok(()))) => self.count(at, Outcome::Stored),
            Ok((at, Err(why))) => self.count(at, Outcome::Failed(why)),
            Err(e) => self.count(self.done, Outcome::Failed(format!("storing a message stopped: {e}"))),
        }
    }
}

/// The reading thread's end of an import: hands messages over within the memory budget.
struct Reader {
    tx: mpsc::Sender<Reading>,
    budget: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
}

impl Reader {
    /// Made on the runtime; used on a blocking thread.
    fn new(tx: mpsc::Sender<Reading>) -> Self {
        let budget = Arc::new(Semaphore::new(BUDGET_KIB as usize));
        Self { tx, budget, runtime: tokio::runtime::Handle::current() }
    }

    /// Hands over `reading`; false once the importer has stopped listening.
    fn send(&self, reading: Reading) -> bool {
        self.tx.blocking_send(reading).is_ok()
    }

    /// Waits until `raw` fits in the budget, then prepares and hands it over.
    fn message(&self, raw: Vec<u8>, date: u64, flags: Flags, folder: Option<String>, at: u64) -> bool {
        let kib = u32::try_from(raw.len() / 1024 + 1).unwrap_or(u32::MAX).min(BUDGET_KIB);
        let Ok(permit) = self.runtime.block_on(self.budget.clone().acquire_many_owned(kib)) else {
            return false;
        };
        self.send(Reading::Message(Box::new(prepare(raw, date, flags, folder, permit)), at))
    }
}

/// The system mailbox a name stands for: its own name (INBOX, Sent, ...) in any case, or
/// a name other programs give it.
fn system_role(name: &str) -> Option<Role> {
    const ALIASES: [(&str, Role); 7] = [
        ("junk", Role::Spam),
        ("junk e-mail", Role::Spam),
        ("sent items", Role::Sent),
        ("sent messages", Role::Sent),
        ("sent mail", Role::Sent),
        ("deleted items", Role::Trash),
        ("deleted messages", Role::Trash),
    ];
    Role::ALL.into_iter().find(|r| r.mailbox_name().eq_ignore_ascii_case(name)).or_else(|| {
        let lower = name.to_ascii_lowercase();
        ALIASES.iter().find(|(alias, _)| *alias == lower).map(|(_, role)| *role)
    })
}

/// The mailbox a message of `folder` goes to, given the `--mailbox` choice.
fn folder_name(mailbox: Option<&str>, folder: Option<&str>) -> String {
    match (mailbox, folder) {
        (Some(base), Some(sub)) => format!("{}/{sub}", base.trim().trim_end_matches('/')),
        (Some(base), None) => base.to_owned(),
        (None, Some(sub)) => sub.to_owned(),
        (None, None) => Role::Inbox.mailbox_name().to_owned(),
    }
}

/// Counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads an mbox file message by message into `tx` (on a blocking thread).
fn read_mbox(path: &Path, reader: &Reader) {
    let fatal = |e| {
        reader.send(Reading::Fatal(e));
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return fatal(TransferError::io(path, e)),
    };
    let count = Arc::new(AtomicU64::new(0));
    let mut input = BufReader::with_capacity(64 * 1024, Counting { inner: file, count: count.clone() });
    match input.fill_buf() {
        Ok(start) if !start.is_empty() && !start.starts_with(b"From ") => {
            return fatal(TransferError::NotMbox(path.display().to_string()));
        }
        Ok(_) => {}
        Err(e) => return fatal(TransferError::io(path, e)),
    }
    for (n, next) in mbox::MessageIterator::new(input).enumerate() {
        let at = count.load(Ordering::Relaxed);
        let going_on = match next {
            Err(e) => return fatal(TransferError::io(path, e)),
            Ok(m) => {
                let date = m.internal_date();
                let raw = strip_separator(m.unwrap_contents());
                if raw.iter().all(u8::is_ascii_whitespace) {
                    reader.send(Reading::Failed(format!("message {} of {} is empty", n + 1, path.display()), at))
                } else {
                    reader.message(raw, date, Flags::default(), None, at)
                }
            }
        };
        if !going_on {
            return;
        }
    }
}

/// Reads a Maildir and its Maildir++ subfolders into `tx` (on a blocking thread).
fn read_maildir(root: &Path, reader: &Reader) {
    let folders = match maildir::FolderIterator::new(root, Some(".")) {
        Ok(f) => f,
        Err(e) => {
            reader.send(Reading::Fatal(TransferError::io(root, e)));
            return;
        }
    };
    let mut done = 0;
    for folder in folders {
        let folder = match folder {
            Ok(f) => f,
            Err(e) => {
                if !reader.send(Reading::Failed(format!("a folder of {}: {e}", root.display()), done)) {
                    return;
                }
                continue;
            }
        };
        let name = folder.name().map(|n| n.split('.').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("/"));
        for next in folder {
            done += 1;
            let going_on = match next {
                Err(e) => reader.send(Reading::Failed(format!("a message of {}: {e}", root.display()), done)),
                Ok(m) => {
                    let flags = maildir_flags(m.flags());
                    let date = m.internal_date();
                    reader.message(m.unwrap_contents(), date, flags, name.clone(), done)
                }
            };
            if !going_on {
                return;
            }
        }
    }
}

/// The number of Maildir folders and message files under `dir` (the top and Maildir++
/// `.sub` folders, as mail-parser's reader walks them).
fn count_maildir(dir: &Path, depth: usize) -> (u64, u64) {
    let files = |sub: &str| {
        std::fs::read_dir(dir.join(sub)).map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && e.path().is_file())
                .count() as u64
        })
    };
    let (mut folders, mut messages) = match (files("cur"), files("new")) {
        (Ok(cur), Ok(new)) => (1, cur + new),
        _ => (0, 0),
    };
    if depth < 32
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') && path.is_dir() {
                let (f, m) = count_maildir(&path, depth + 1);
                folders += f;
                messages += m;
            }
        }
    }
    (folders, messages)
}

/// Maildir info flags (`:2,` suffix) as message flags; P (passed) has no counterpart.
fn maildir_flags(flags: &[maildir::Flag]) -> Flags {
    flags.iter().fold(Flags::default(), |f, flag| match flag {
        maildir::Flag::Seen => f.with(Flags::SEEN, true),
        maildir::Flag::Replied => f.with(Flags::ANSWERED, true),
        maildir::Flag::Flagged => f.with(Flags::FLAGGED, true),
        maildir::Flag::Trashed => f.with(Flags::DELETED, true),
        maildir::Flag::Draft => f.with(Flags::DRAFT, true),
        maildir::Flag::Passed => f,
    })
}

/// A read message with CRLF lines, its metadata, blob id and internal date (the mailbox's
/// date, else the Date header, else now).
fn prepare(raw: Vec<u8>, date: u64, flags: Flags, folder: Option<String>, budget: OwnedSemaphorePermit) -> Incoming {
    let raw = to_crlf(raw);
    let meta = parse::meta(&raw);
    let internal_date =
        i64::try_from(date).ok().filter(|d| *d > 0).or(meta.date.filter(|d| *d > 0)).unwrap_or_else(now);
    let blob = BlobId::of(&raw).to_string();
    Incoming { raw: Bytes::from(raw), meta, blob, internal_date, flags, folder, _budget: budget }
}

/// Drops the blank line that separates a message from the next From_ line (RFC 4155).
fn strip_separator(mut raw: Vec<u8>) -> Vec<u8> {
    if raw.ends_with(b"\r\n\r\n") {
        raw.truncate(raw.len() - 2);
    } else if raw.ends_with(b"\n\n") {
        raw.truncate(raw.len() - 1);
    }
    raw
}

/// `raw` with every bare LF turned into CRLF (RFC 5322 §2.1 lines).
fn to_crlf(raw: Vec<u8>) -> Vec<u8> {
    let bare = raw.iter().enumerate().filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r')).count();
    if bare == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + bare);
    let mut prev = 0;
    for &b in &raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Whether a line needs one more `>` in mboxrd (`^>*From `).
fn needs_quoting(line: &[u8]) -> bool {
    let start = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
    line[start..].starts_with(b"From ")
}

/// Appends one mboxrd entry: the From_ line (sender, asctime date in UTC), the message
/// with LF lines and `^>*From ` lines quoted, and the blank separator line (RFC 4155).
fn mboxrd_entry(sender: &str, date: i64, raw: &[u8], out: &mut Vec<u8>) {
    let sender = if sender.is_empty() || sender.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        NO_SENDER
    } else {
        sender
    };
    let date = chrono::DateTime::from_timestamp(date, 0).unwrap_or_default().format("%a %b %e %H:%M:%S %Y");
    out.extend_from_slice(format!("From {sender} {date}\n").as_bytes());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if needs_quoting(line) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
#[path = "transfer_tests.rs"]
mod tests;
