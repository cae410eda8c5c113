//! The read side of the store for the web UI: mailboxes with counts, message pages with
//! cursor pagination (rows only, newest first), threads, a message's rendered view (HTML
//! cleaned by ammonia, remote images held back until allowed), raw and attachment
//! downloads. Every function takes the owner's id and finds nothing of anybody else's.

use std::collections::HashMap;

use mail_parser::{MessageParser, MimeHeaders};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use super::entities::{mailbox, message, message_label};
use super::labels::own_label;
use super::parse::Mailbox as Address;
use super::store::ensure_system_mailboxes;
use super::{Flags, MailError, MailService, Role};
use crate::platform::blobs::BlobId;

/// The most messages in one page.
pub const MAX_PAGE: u64 = 200;

/// A mailbox with its counts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailboxInfo {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The system role, if any.
    pub role: Option<Role>,
    /// Messages in it.
    pub total: i64,
    /// Unread messages in it.
    pub unread: i64,
}

/// A message as a list shows it (from its row only).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Message id.
    pub id: i64,
    /// Its mailbox.
    pub mailbox_id: i64,
    /// Its conversation.
    pub thread_id: i64,
    /// Sender.
    pub from: Address,
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Start of the text.
    pub snippet: String,
    /// Arrival, Unix seconds.
    pub date: i64,
    /// The Date header, Unix seconds.
    pub sent_at: i64,
    /// Size in octets.
    pub size: i64,
    /// Has attachments.
    pub has_attachments: bool,
    /// Read.
    pub seen: bool,
    /// Starred (`\Flagged`).
    pub starred: bool,
    /// Important.
    pub important: bool,
    /// Answered.
    pub answered: bool,
    /// Draft.
    pub draft: bool,
    /// Label ids.
    pub labels: Vec<i64>,
    /// `ham`, `spam` or `unknown`.
    pub spam: String,
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The messages, newest first.
    pub messages: Vec<Summary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Which messages a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One mailbox.
    Mailbox(i64),
    /// Every message carrying a label.
    Label(i64),
    /// Starred messages outside Trash and Spam.
    Starred,
    /// Important messages outside Trash and Spam.
    Important,
}

/// An attachment of a message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttachmentInfo {
    /// Its position, for the download route.
    pub index: u32,
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Decoded size in octets.
    pub size: usize,
}

/// A message opened for reading.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: Summary,
    /// Message-ID.
    pub message_id: Option<String>,
    /// The plain text body.
    pub text: Option<String>,
    /// The HTML body, sanitised; remote images removed unless allowed.
    pub html: Option<String>,
    /// Whether remote images were held back (ask with `images=allow`).
    pub remote_images_blocked: bool,
    /// Attachments.
    pub attachments: Vec<AttachmentInfo>,
    /// False when the message could not be parsed: show `raw` instead.
    pub parsed: bool,
    /// The raw message as text, when it could not be parsed.
    pub raw: Option<String>,
}

impl MailService {
    /// The user's mailboxes, system ones first, with their total and unread counters.
    pub async fn mailboxes(&self, user_id: i64) -> Result<Vec<MailboxInfo>, MailError> {
        ensure_system_mailboxes(self.db(), user_id).await?;
        let rows = mailbox::Entity::find().filter(mailbox::Column::UserId.eq(user_id)).all(self.db()).await?;
        let mut out: Vec<MailboxInfo> = rows
            .into_iter()
            .map(|m| MailboxInfo {
                id: m.id,
                name: m.name,
                role: m.role.as_deref().and_then(Role::parse),
                total: m.total,
                unread: m.unread,
            })
            .collect();
        let order =
            |m: &MailboxInfo| m.role.map_or(Role::ALL.len(), |r| Role::ALL.iter().position(|x| *x == r).unwrap_or(0));
        out.sort_by(|a, b| order(a).cmp(&order(b)).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The id of the user's system mailbox `role`.
    pub async fn role_mailbox(&self, user_id: i64, role: Role) -> Result<i64, MailError> {
        super::store::resolve_mailbox(self.db(), user_id, &super::store::Target::Role(role)).await
    }

    /// One page of `scope`, newest first; `cursor` comes from the previous page.
    pub async fn list(&self, user_id: i64, scope: Scope, cursor: Option<&str>, limit: u64) -> Result<Page, MailError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut q = message::Entity::find().filter(message::Column::UserId.eq(user_id));
        q = match scope {
            Scope::Mailbox(id) => {
                self.own_mailbox(user_id, id).await?;
                q.filter(message::Column::MailboxId.eq(id))
            }
            Scope::Label(id) => {
                own_label(self.db(), user_id, id).await?;
                q.filter(
                    message::Column::Id.in_subquery(
                        sea_orm::sea_query::Query::select()
                            .column(message_label::Column::MessageId)
                            .from(message_label::Entity)
                            .and_where(message_label::Column::LabelId.eq(id))
                            .to_owned(),
                    ),
                )
            }
            Scope::Starred | Scope::Important => {
                let bit = if scope == Scope::Starred { Flags::FLAGGED } else { Flags::IMPORTANT };
                let hidden =
                    [self.role_mailbox(user_id, Role::Trash).await?, self.role_mailbox(user_id, Role::Spam).await?];
                q.filter(Expr::col(message::Column::Flags).bit_and(bit).ne(0))
                    .filter(message::Column::MailboxId.is_not_in(hidden))
            }
        };
        if let Some(cursor) = cursor {
            let (date, id) = parse_cursor(cursor)?;
            // A row-value comparison, so SQLite seeks the (mailbox, date, id) index
            // straight to the cursor instead of scanning from the newest message.
            let key = Expr::tuple([Expr::col(message::Column::InternalDate), Expr::col(message::Column::Id)]);
            q = q.filter(key.lt(Expr::tuple([Expr::val(date), Expr::val(id)])));
        }
        let mut rows = q
            .order_by_desc(message::Column::InternalDate)
            .order_by_desc(message::Column::Id)
            .limit(limit + 1)
            .all(self.db())
            .await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|m| format!("{}.{}", m.internal_date, m.id))
        } else {
            None
        };
        Ok(Page { messages: self.summaries(rows).await?, next_cursor })
    }

    /// Every message of a conversation the user can see, oldest first.
    pub async fn thread(&self, user_id: i64, thread_id: i64) -> Result<Vec<Summary>, MailError> {
        let rows = message::Entity::find()
            .filter(message::Column::UserId.eq(user_id))
            .filter(message::Column::ThreadId.eq(thread_id))
            .order_by_asc(message::Column::InternalDate)
            .order_by_asc(message::Column::Id)
            .limit(1000)
            .all(self.db())
            .await?;
        if rows.is_empty() {
            return Err(MailError::NotFound);
        }
        self.summaries(rows).await
    }

    /// A message opened for reading; remote images stay out unless `allow_remote_images`.
    pub async fn message(&self, user_id: i64, id: i64, allow_remote_images: bool) -> Result<MessageView, MailError> {
        let row = self.row(user_id, id).await?;
        let raw = self.inner.blobs.get(&BlobId::try_from(row.blob_id.clone())?).await?;
        let parsed_ok = row.parsed;
        let summary = self.summaries(vec![row.clone()]).await?.pop().ok_or(MailError::NotFound)?;
        let message_id = row.message_id_hdr.clone();
        let view = MessageView {
            summary,
            message_id,
            text: None,
            html: None,
            remote_images_blocked: false,
            attachments: Vec::new(),
            parsed: parsed_ok,
            raw: None,
        };
        // Parsing and sanitising a large message is CPU work: a blocking thread does it.
        off_the_runtime(move || render(view, &raw, allow_remote_images)).await
    }

    /// The raw RFC 5322 message.
    pub async fn raw(&self, user_id: i64, id: i64) -> Result<bytes::Bytes, MailError> {
        let row = self.row(user_id, id).await?;
        Ok(self.inner.blobs.get(&BlobId::try_from(row.blob_id)?).await?)
    }

    /// One attachment: its name, MIME type and decoded bytes (decoded on a blocking thread).
    pub async fn attachment(&self, user_id: i64, id: i64, index: u32) -> Result<(String, String, Vec<u8>), MailError> {
        let raw = self.raw(user_id, id).await?;
        off_the_runtime(move || {
            let msg = MessageParser::default().parse(&raw[..]).ok_or(MailError::NotFound)?;
            let part = msg.attachments().nth(index as usize).ok_or(MailError::NotFound)?;
            let name = part.attachment_name().unwrap_or("attachment").to_owned();
            Ok((name, content_type(part), part.contents().to_vec()))
        })
        .await
    }

    /// The user's row `id`.
    pub(crate) async fn row(&self, user_id: i64, id: i64) -> Result<message::Model, MailError> {
        message::Entity::find_by_id(id)
            .filter(message::Column::UserId.eq(user_id))
            .one(self.db())
            .await?
            .ok_or(MailError::NotFound)
    }

    /// The user's mailbox `id`.
    pub(crate) async fn own_mailbox(&self, user_id: i64, id: i64) -> Result<mailbox::Model, MailError> {
        super::actions::mailbox_of(self.db(), user_id, id).await
    }

    /// Rows to summaries, with their labels in one query.
    async fn summaries(&self, rows: Vec<message::Model>) -> Result<Vec<Summary>, MailError> {
        let ids: Vec<i64> = rows.iter().map(|m| m.id).collect();
        let mut labels: HashMap<i64, Vec<i64>> = HashMap::new();
        if !ids.is_empty() {
            let links = message_label::Entity::find()
                .filter(message_label::Column::MessageId.is_in(ids))
                .all(self.db())
                .await?;
            for l in links {
                labels.entry(l.message_id).or_default().push(l.label_id);
            }
        }
        let split = |s: &str| s.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        Ok(rows
            .into_iter()
            .map(|m| {
                let flags = Flags(m.flags);
                Summary {
                    id: m.id,
                    mailbox_id: m.mailbox_id,
                    thread_id: m.thread_id,
                    from: Address { name: m.from_name, address: m.from_addr },
                    to: split(&m.to_addrs),
                    cc: split(&m.cc_addrs),
                    subject: m.subject,
                    snippet: m.snippet,
                    date: m.internal_date,
                    sent_at: m.sent_at,
                    size: m.size,
                    has_attachments: m.has_attachments,
                    seen: flags.has(Flags::SEEN),
                    starred: flags.has(Flags::FLAGGED),
                    important: flags.has(Flags::IMPORTANT),
                    answered: flags.has(Flags::ANSWERED),
                    draft: flags.has(Flags::DRAFT),
                    labels: labels.remove(&m.id).unwrap_or_default(),
                    spam: m.spam_verdict,
                }
            })
            .collect())
    }
}

/// Whether the message has an HTML part of its own (mail-parser converts text to HTML
/// when there is none; showing that conversion adds nothing).
fn has_real_html(msg: &mail_parser::Message<'_>) -> bool {
    msg.html_bodies().any(|p| p.is_text_html())
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// Runs CPU-heavy `work` (MIME parsing, HTML sanitising) on the blocking pool, keeping the
/// async threads free for I/O.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MailError> + Send + 'static,
) -> Result<T, MailError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| MailError::Interrupted)?
}

/// Fills `view`'s body, HTML and attachment list from the raw message; a message that
/// does not parse is shown raw.
fn render(mut view: MessageView, raw: &[u8], allow_remote_images: bool) -> Result<MessageView, MailError> {
    let parsed = if view.parsed { MessageParser::default().parse(raw) } else { None };
    let Some(msg) = parsed else {
        view.parsed = false;
        view.raw = Some(String::from_utf8_lossy(raw).into_owned());
        return Ok(view);
    };
    view.text = msg.body_text(0).map(|t| t.into_owned());
    if let Some(html) = msg.body_html(0).filter(|_| msg.html_body_count() > 0 && has_real_html(&msg)) {
        let (clean, blocked) = sanitise_html(&html, allow_remote_images);
        view.html = Some(clean);
        view.remote_images_blocked = blocked;
    }
    view.attachments = msg
        .attachments()
        .enumerate()
        .map(|(i, part)| AttachmentInfo {
            index: i as u32,
            name: part.attachment_name().unwrap_or("attachment").to_owned(),
            content_type: content_type(part),
            size: part.contents().len(),
        })
        .collect();
    Ok(view)
}

fn parse_cursor(cursor: &str) -> Result<(i64, i64), MailError> {
    let bad = || MailError::Invalid("invalid cursor".into());
    let (date, id) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((date.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// The CSS properties a `style` attribute of mail may keep: text, colour, box and table
/// layout. Left out are every property that can load a resource (`background`,
/// `background-image`, `border-image`, `list-style`, `content`, `cursor`, `mask`, `filter`,
/// ...), so no form of `url()` or `image-set()` survives, and `position` with its offsets
/// and `z-index`, so a message cannot lay an overlay over the page.
const MAIL_STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "opacity",
    "visibility",
    "display",
    "float",
    "clear",
    "overflow",
    "box-sizing",
    "vertical-align",
    "direction",
    "unicode-bidi",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "white-space",
    "word-break",
    "word-wrap",
    "overflow-wrap",
    "text-align",
    "text-indent",
    "text-transform",
    "text-overflow",
    "text-decoration",
    "text-decoration-color",
    "text-decoration-line",
    "text-decoration-style",
    "width",
    "height",
    "min-width",
    "min-height",
    "max-width",
    "max-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-width",
    "border-style",
    "border-color",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "border-top-color",
    "border-right-color",
    "border-bottom-color",
    "border-left-color",
    "border-top-width",
    "border-right-width",
    "border-bottom-width",
    "border-left-width",
    "border-top-style",
    "border-right-style",
    "border-bottom-style",
    "border-left-style",
    "table-layout",
    "caption-side",
    "empty-cells",
    "list-style-type",
    "list-style-position",
];

/// Cleans mail HTML with ammonia: no scripts, styles sheets, forms or event handlers;
/// links open in a new tab without referrer; `img` sources other than `data:` and `cid:`
/// are removed unless `allow_remote` (tracking pixels). `style` attributes are parsed by
/// ammonia's CSS tokenizer (cssparser) and keep only [`MAIL_STYLE_PROPERTIES`], so CSS never
/// loads anything, whatever `allow_remote` says. Returns the HTML and whether an image
/// (or a style that named a URL) was held back.
pub fn sanitise_html(html: &str, allow_remote: bool) -> (String, bool) {
    let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = blocked.clone();
    let clean = ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .add_url_schemes(["cid"])
        .set_tag_attribute_value("a", "target", "_blank")
        .add_generic_attributes(["style"])
        .filter_style_properties(MAIL_STYLE_PROPERTIES.iter().copied().collect())
        .attribute_filter(move |element, attribute, value| {
            if element == "img" && attribute == "src" {
                let remote = !(value.starts_with("data:") || value.starts_with("cid:"));
                if remote && !allow_remote {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                    return None;
                }
            }
            if attribute == "style" && value.to_ascii_lowercase().contains("url") {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Some(value.into())
        })
        .clean(html)
        .to_string();
    (clean, blocked.load(std::sync::atomic::Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::sanitise_html;

    #[test]
    fn styles_keep_text_and_box_properties_and_never_load_or_overlay() {
        let (clean, _) = sanitise_html(r#"<p style="color: red; font-weight: bold; margin: 0 4px">hi</p>"#, false);
        assert!(clean.contains("color:red") && clean.contains("font-weight:bold"), "{clean}");
        for (hostile, allow) in [
            (r#"<div style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:9">x</div>"#, true),
            (r#"<div style="position: absolute">x</div>"#, false),
            (r#"<p style="background:\75 rl(http://evil.example/a.png)">x</p>"#, true),
            (r#"<p style="background-image:url('http://evil.example/a.png')">x</p>"#, true),
            (r#"<p style="background-image:image-set('http://evil.example/a.png' 1x)">x</p>"#, true),
            (r#"<p style="list-style:url(http://evil.example/a.png)">x</p>"#, true),
            (r#"<p style="border-image:url(http://evil.example/a.png) 30">x</p>"#, true),
            (r#"<p style="cursor:url(http://evil.example/c.cur),auto">x</p>"#, true),
            (r#"<p style="color:red;@import 'http://evil.example/x.css'">x</p>"#, true),
        ] {
            let (clean, _) = sanitise_html(hostile, allow);
            let lower = clean.to_ascii_lowercase();
            assert!(!lower.contains("evil") && !lower.contains("position"), "{hostile} -> {clean}");
            assert!(!lower.contains("url") && !lower.contains("image-set"), "{hostile} -> {clean}");
        }
    }
}
