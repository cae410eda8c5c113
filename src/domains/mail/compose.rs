//! Writing mail in the web UI: a [`Draft`] (to, cc, bcc, subject, text and HTML bodies,
//! attachments uploaded first, reply or forward) becomes an RFC 5322 message built with
//! mail-builder; it is either saved in Drafts or sent through [`MailService::submit`].
//! Replies keep In-Reply-To and References (so they thread), forwards carry the original
//! as a `message/rfc822` attachment.
//!
//! Invariant: every header value taken from the draft, the profile or a replied or
//! forwarded message passes [`header_text`] (addresses and Message-IDs are refused or
//! left out instead) before mail-builder sees it, so no input can start a header line.

use std::sync::Arc;

use bytes::Bytes;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuilderAddress;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::Deserialize;

use super::entities::upload;
use super::send::{SendError, Sent, Submission};
use super::store::{NewMessage, Stored, Target};
use super::{Flags, MailError, MailService, Role, parse};
use crate::platform::blobs::BlobId;
use crate::platform::db::now;

/// The largest total size of a composed message's attachments.
pub const MAX_ATTACHMENTS_BYTES: usize = 25 * 1024 * 1024;

/// An uploaded file to attach.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct AttachmentRef {
    /// The upload's id (from the upload route).
    pub id: String,
    /// The file name shown to the recipient.
    pub name: String,
    /// Its MIME type.
    #[serde(default = "octet_stream")]
    pub content_type: String,
}

fn octet_stream() -> String {
    "application/octet-stream".into()
}

/// A message being written.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct Draft {
    /// To addresses (`Name <addr>` or `addr`; group names expanded by the caller).
    #[serde(default)]
    pub to: Vec<String>,
    /// Cc addresses.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Bcc addresses: they get the message, nobody sees them.
    #[serde(default)]
    pub bcc: Vec<String>,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// The plain text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Uploaded files to attach.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// The message this replies to (its id): sets In-Reply-To and References.
    pub reply_to_id: Option<i64>,
    /// The message this forwards (its id): attached as `message/rfc822`.
    pub forward_id: Option<i64>,
    /// The draft this replaces (deleted once sent or saved again).
    pub draft_id: Option<i64>,
}

/// Who writes.
#[derive(Debug, Clone)]
pub struct Author {
    /// The account.
    pub user_id: i64,
    /// Login name (the address is `username@domain`).
    pub username: String,
    /// Display name for From.
    pub display_name: String,
}

/// Seconds an upload is kept for a message that is never sent.
const UPLOAD_KEPT: i64 = 86_400;

/// The blob owner of a user's upload.
fn upload_owner(user_id: i64) -> String {
    format!("mail-upload:{user_id}")
}

/// Splits `Name <addr>` into its parts; a bare address has an empty name. The name is
/// made [`header_text`]; an address with blanks or control characters (CR, LF among
/// them) is refused, so neither can start a header line.
pub fn split_address(entry: &str) -> Result<(String, String), SendError> {
    let entry = entry.trim();
    let (name, address) = match (entry.rfind('<'), entry.rfind('>')) {
        (Some(l), Some(r)) if l < r => (entry[..l].trim().trim_matches('"').trim(), entry[l + 1..r].trim()),
        _ => ("", entry),
    };
    let valid = address.len() <= 254
        && address.split_once('@').is_some_and(|(l, d)| !l.is_empty() && (d.contains('.') || d == "localhost"))
        && !address.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',');
    if !valid {
        return Err(SendError::BadRecipient(header_text(entry)));
    }
    Ok((header_text(name).trim().to_owned(), address.to_ascii_lowercase()))
}

/// `value` fit for one header line: every control character (CR and LF among them)
/// becomes a space, so text from the user or from a stored message can never end the
/// line and start a header of its own (RFC 5322 §2.2).
pub fn header_text(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Whether a Message-ID taken from a stored message may be written into In-Reply-To or
/// References: no blanks, control characters or angle brackets.
fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 998
        && !id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

impl MailService {
    /// Keeps an uploaded attachment for `user_id` until it is sent (or for a day, see
    /// [`MailService::collect_uploads`]); returns its id. It counts against the storage
    /// quota meanwhile.
    pub async fn upload(&self, user_id: i64, bytes: Bytes) -> Result<String, MailError> {
        if bytes.len() > MAX_ATTACHMENTS_BYTES {
            return Err(MailError::Invalid("attachment too large".into()));
        }
        let size = bytes.len() as u64;
        self.limits().quota.check(user_id, size).await.map_err(MailError::from)?;
        let id = self.inner.blobs.put(bytes, &upload_owner(user_id)).await?;
        let row = upload::ActiveModel {
            id: NotSet,
            user_id: Set(user_id),
            blob_id: Set(id.to_string()),
            size: Set(size as i64),
            created_at: Set(now()),
        };
        upload::Entity::insert(row).exec_without_returning(self.db()).await?;
        self.limits().quota.charge(user_id, size);
        Ok(id.to_string())
    }

    /// Removes uploads never sent that are more than a day old at `at`; returns how many.
    pub async fn collect_uploads(&self, at: i64) -> Result<u64, MailError> {
        let old = upload::Entity::find().filter(upload::Column::CreatedAt.lt(at - UPLOAD_KEPT)).all(self.db()).await?;
        for row in &old {
            self.drop_upload(row.user_id, &row.blob_id, Some(row.id)).await?;
        }
        Ok(old.len() as u64)
    }

    /// Forgets upload `blob_id` of `user_id` (one row when `row` names it, else every row
    /// of that blob); the blob is released once no upload row of the user names it.
    async fn drop_upload(&self, user_id: i64, blob_id: &str, row: Option<i64>) -> Result<(), MailError> {
        let mut delete = upload::Entity::delete_many()
            .filter(upload::Column::UserId.eq(user_id))
            .filter(upload::Column::BlobId.eq(blob_id));
        if let Some(id) = row {
            delete = delete.filter(upload::Column::Id.eq(id));
        }
        delete.exec(self.db()).await?;
        let left = upload::Entity::find()
            .filter(upload::Column::UserId.eq(user_id))
            .filter(upload::Column::BlobId.eq(blob_id))
            .count(self.db())
            .await?;
        if left == 0
            && let Ok(id) = BlobId::try_from(blob_id.to_owned())
        {
            self.inner.blobs.release(&id, &upload_owner(user_id)).await?;
        }
        self.limits().quota.forget(user_id);
        Ok(())
    }

    /// Builds the message of `draft` by `author`; with `for_draft` the Bcc header is kept.
    async fn build(
        &self,
        author: &Author,
        draft: &Draft,
        for_draft: bool,
    ) -> Result<(Vec<u8>, Vec<String>), SendError> {
        let parse_list = |list: &[String]| list.iter().map(|e| split_address(e)).collect::<Result<Vec<_>, _>>();
        let (to, cc, bcc) = (parse_list(&draft.to)?, parse_list(&draft.cc)?, parse_list(&draft.bcc)?);
        let address = format!("{}@{}", author.username, self.inner.domain);
        let id = format!("{}@{}", uuid::Uuid::new_v4().simple(), self.inner.domain);
        let mut subject = header_text(&draft.subject).trim().to_owned();
        let mut builder = MessageBuilder::new()
            .from((header_text(&author.display_name).trim().to_owned(), address))
            .message_id(id)
            .date(time::OffsetDateTime::now_utc().unix_timestamp());
        let list = |l: &[(String, String)]| {
            BuilderAddress::new_list(
                l.iter()
                    .map(|(n, a)| BuilderAddress::new_address(Some(n.clone()).filter(|n| !n.is_empty()), a.clone()))
                    .collect(),
            )
        };
        if !to.is_empty() {
            builder = builder.to(list(&to));
        }
        if !cc.is_empty() {
            builder = builder.cc(list(&cc));
        }
        if for_draft && !bcc.is_empty() {
            builder = builder.bcc(list(&bcc));
        }
        if let Some(original) = draft.reply_to_id {
            let row = self.row(author.user_id, original).await?;
            let raw = self.raw(author.user_id, original).await?;
            let meta = parse::meta(&raw);
            if let Some(parent) = row.message_id_hdr.clone().filter(|id| safe_id(id)) {
                let mut refs = meta.references.clone();
                refs.retain(|r| *r != parent && safe_id(r));
                refs.push(parent.clone());
                builder = builder.in_reply_to(parent).references(refs);
            }
            if subject.is_empty() {
                subject = format!("Re: {}", header_text(&row.subject).trim());
            }
        }
        if let Some(original) = draft.forward_id {
            let row = self.row(author.user_id, original).await?;
            let raw = self.raw(author.user_id, original).await?;
            if let Some(parent) = row.message_id_hdr.clone().filter(|id| safe_id(id)) {
                builder = builder.references(vec![parent]);
            }
            if subject.is_empty() {
                subject = format!("Fwd: {}", header_text(&row.subject).trim());
            }
            builder = builder.attachment("message/rfc822", "forwarded.eml", raw.to_vec());
        }
        builder = builder.subject(subject);
        match (&draft.text, &draft.html) {
            (None, None) => builder = builder.text_body(String::new()),
            (text, html) => {
                if let Some(t) = text {
                    builder = builder.text_body(t.clone());
                }
                if let Some(h) = html {
                    builder = builder.html_body(ammonia::clean(h));
                }
            }
        }
        let mut total = 0;
        for a in &draft.attachments {
            let id = BlobId::try_from(a.id.clone()).map_err(|_| SendError::Store(MailError::NotFound))?;
            if !self.inner.blobs.is_held_by(&id, &upload_owner(author.user_id)).await.map_err(MailError::from)? {
                return Err(SendError::Store(MailError::NotFound));
            }
            let bytes = self.inner.blobs.get(&id).await.map_err(MailError::from)?;
            total += bytes.len();
            if total > MAX_ATTACHMENTS_BYTES {
                return Err(SendError::Store(MailError::Invalid("attachments too large".into())));
            }
            let content_type = if valid_mime(&a.content_type) { a.content_type.clone() } else { octet_stream() };
            builder = builder.attachment(content_type, header_text(&a.name), bytes.to_vec());
        }
        let raw = builder.write_to_vec().map_err(SendError::Build)?;
        let recipients = to.into_iter().chain(cc).chain(bcc).map(|(_, a)| a).collect();
        Ok((raw, recipients))
    }

    /// Sends `draft`: builds it, sends it, marks the replied message answered and removes
    /// the draft it replaces and the uploads it used.
    pub async fn send_draft(&self, author: &Author, draft: &Draft) -> Result<Sent, SendError> {
        self.check_replaced_draft(author.user_id, draft).await?;
        let (raw, recipients) = self.build(author, draft, false).await?;
        let submission = Submission {
            user_id: author.user_id,
            username: author.username.clone(),
            envelope_from: format!("{}@{}", author.username, self.inner.domain),
            recipients,
            peer: None,
            helo: String::new(),
            protocol: "HTTP",
        };
        let sent = self.submit(&submission, raw).await?;
        if let Some(original) = draft.reply_to_id {
            let change = super::actions::FlagChange { answered: Some(true), ..Default::default() };
            self.set_flags(author.user_id, &[original], change).await?;
        }
        self.finish_draft(author.user_id, draft).await;
        Ok(sent)
    }

    /// Saves `draft` in Drafts (replacing `draft.draft_id`); returns the stored copy.
    pub async fn save_draft(&self, author: &Author, draft: &Draft) -> Result<Stored, SendError> {
        self.check_replaced_draft(author.user_id, draft).await?;
        let (raw, _) = self.build(author, draft, true).await?;
        let meta = Arc::new(parse::meta(&raw));
        let mut copy = NewMessage::new(author.user_id, Target::Role(Role::Drafts));
        copy.flags = Flags(Flags::SEEN | Flags::DRAFT);
        let stored = self.store(Bytes::from(raw), meta, vec![copy]).await?.pop().ok_or(MailError::NotFound)?;
        if let Some(old) = draft.draft_id {
            self.delete_draft(author.user_id, old).await?;
        }
        Ok(stored)
    }

    /// Deletes one of the user's drafts (only a message in Drafts).
    pub async fn delete_draft(&self, user_id: i64, id: i64) -> Result<(), MailError> {
        self.check_draft(user_id, id).await?;
        self.delete_forever(user_id, &[id]).await.map(|_| ())
    }

    /// Whether `id` is a message in the user's Drafts: `NotFound` for anyone else's id.
    async fn check_draft(&self, user_id: i64, id: i64) -> Result<(), MailError> {
        let drafts = self.role_mailbox(user_id, Role::Drafts).await?;
        let row = self.row(user_id, id).await?;
        if row.mailbox_id != drafts {
            return Err(MailError::Invalid("not a draft".into()));
        }
        Ok(())
    }

    /// Checks the draft a send or save replaces before anything is stored or sent.
    async fn check_replaced_draft(&self, user_id: i64, draft: &Draft) -> Result<(), SendError> {
        match draft.draft_id {
            Some(old) => Ok(self.check_draft(user_id, old).await?),
            None => Ok(()),
        }
    }

    async fn finish_draft(&self, user_id: i64, draft: &Draft) {
        if let Some(old) = draft.draft_id
            && let Err(e) = self.delete_draft(user_id, old).await
        {
            tracing::warn!(error = %e, "removing a sent draft failed");
        }
        for a in &draft.attachments {
            if let Err(e) = self.drop_upload(user_id, &a.id, None).await {
                tracing::warn!(error = %e, "releasing a sent upload failed");
            }
        }
    }
}

fn valid_mime(ct: &str) -> bool {
    ct.len() <= 100
        && ct.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && ct.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_turns_every_control_character_into_a_space() {
        assert_eq!(header_text("hi\r\nBcc: eve@evil.example"), "hi  Bcc: eve@evil.example");
        assert_eq!(header_text("a\nb\rc\u{0}d\u{7f}e\u{85}f\tg"), "a b c d e f g");
        assert_eq!(header_text("Grüße, \"Ada\""), "Grüße, \"Ada\"");
    }

    #[test]
    fn names_lose_line_breaks_and_addresses_with_control_characters_are_refused() {
        let (name, address) = split_address("Bob\r\nX-Injected: 1 <Bob@localhost>").expect("a name is cleaned");
        assert_eq!((name.as_str(), address.as_str()), ("Bob  X-Injected: 1", "bob@localhost"));
        for bad in [
            "bob@localhost\r\nBcc: eve@evil.example",
            "Bob <bob@local\r\nhost>",
            "Bob <bob@localhost\nBcc: eve@evil.example>",
            "bob\u{0}@localhost",
            "bob@local\u{1b}host",
        ] {
            assert!(matches!(split_address(bad), Err(SendError::BadRecipient(_))), "{bad:?}");
        }
    }

    #[test]
    fn message_ids_with_blanks_breaks_or_brackets_are_left_out() {
        assert!(safe_id("m1@c.test"));
        for bad in ["", "a\r\nBcc: x@y", "a b@c", "a>\r\nX: <b", "a\u{0}b"] {
            assert!(!safe_id(bad), "{bad:?}");
        }
    }
}
