//! HTTP routes of the mail store under `/api/v1/mail`: mailboxes and labels with counts,
//! message pages (cursor pagination), threads, a message's view, raw and attachment
//! downloads, and the actions (read, star, important, move, archive, trash, spam, delete
//! for good, empty Trash, labels), one by one or in bulk, and a mailbox's changes after a
//! MODSEQ (changed messages and expunged UIDs). It turns requests into [`MailService`]
//! calls; it holds no SQL and no business rule.
//!
//! Invariants: every route takes a [`CurrentUser`] and passes its id down; another user's
//! ids are "not found"; downloads are served as attachments with `nosniff` and a sandbox
//! CSP, so a hostile attachment can never run as this origin.
//!
//! [`MailService`]: crate::domains::mail::MailService

use crate::platform::quota::QuotaError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::download::download;
use super::error::{ApiPath, ApiQuery};
use super::error::{ErrorBody, ErrorDetail};
use super::{ApiJson, AppError, CurrentUser, HttpState};
use crate::domains::mail::actions::FlagChange;
use crate::domains::mail::changes::{ChangedUid, ExpungedUid, MailboxChanges};
use crate::domains::mail::labels::LabelInfo;
use crate::domains::mail::store::Target;
use crate::domains::mail::view::{AttachmentInfo, MailboxInfo, MessageView, Page, Scope, Summary};
use crate::domains::mail::{Address, MailError, Role};

/// The mail routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/mail/mailboxes", get(list_mailboxes).post(create_mailbox))
        .route("/mail/mailboxes/{id}", patch(rename_mailbox).delete(delete_mailbox))
        .route("/mail/mailboxes/{id}/changes", get(mailbox_changes))
        .route("/mail/labels", get(list_labels).post(create_label))
        .route("/mail/labels/{id}", patch(update_label).delete(delete_label))
        .route("/mail/messages", get(list_messages))
        .route("/mail/messages/actions", post(bulk_action))
        .route("/mail/messages/{id}", get(read_message).patch(change_flags))
        .route("/mail/messages/{id}/raw", get(raw_message))
        .route("/mail/messages/{id}/attachments/{index}", get(attachment))
        .route("/mail/threads/{id}", get(read_thread))
        .route("/mail/trash/empty", post(empty_trash))
}

impl From<MailError> for AppError {
    fn from(e: MailError) -> Self {
        match e {
            MailError::NotFound => AppError::not_found("message or mailbox"),
            MailError::Invalid(m) => AppError::bad_request(m),
            MailError::Exists => AppError::new(StatusCode::CONFLICT, "exists", "a mailbox with that name exists"),
            MailError::LabelExists => AppError::new(StatusCode::CONFLICT, "exists", "a label with that name exists"),
            MailError::Closed => AppError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "shutting down"),
            e @ MailError::Interrupted => AppError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
            e @ MailError::Quota(QuotaError::Exceeded { .. }) => {
                AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "over_quota", e.to_string())
            }
            e @ (MailError::Db(_) | MailError::Blob(_) | MailError::Queue(_) | MailError::Quota(_)) => {
                AppError::internal(e)
            }
        }
    }
}

/// A new mailbox or a new name.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MailboxName {
    /// The name, `/` for hierarchy.
    pub name: String,
}

/// The id of something created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// Its id.
    pub id: i64,
}

#[utoipa::path(get, path = "/api/v1/mail/mailboxes", tag = "mail",
    description = "The caller's mailboxes, system ones first, with total and unread counts.",
    responses((status = 200, body = [MailboxInfo]), (status = 401, body = ErrorBody)))]
async fn list_mailboxes(State(s): State<HttpState>, user: CurrentUser) -> Result<Json<Vec<MailboxInfo>>, AppError> {
    Ok(Json(s.mail.mailboxes(user.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/mail/mailboxes", tag = "mail", request_body = MailboxName,
    responses((status = 201, body = Created), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_mailbox(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<MailboxName>,
) -> Result<(StatusCode, Json<Created>), AppError> {
    let id = s.mail.create_mailbox(user.user_id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

#[utoipa::path(patch, path = "/api/v1/mail/mailboxes/{id}", tag = "mail", request_body = MailboxName,
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn rename_mailbox(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<MailboxName>,
) -> Result<StatusCode, AppError> {
    s.mail.rename_mailbox(user.user_id, id, &body.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/mail/mailboxes/{id}", tag = "mail",
    description = "Deletes one of the caller's own mailboxes; its messages go to Trash.",
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_mailbox(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    s.mail.delete_mailbox(user.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which changes of a mailbox to show.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ChangesQuery {
    /// The MODSEQ the caller has seen (0 or absent: everything).
    #[serde(default)]
    pub since: i64,
}

#[utoipa::path(get, path = "/api/v1/mail/mailboxes/{id}/changes", tag = "mail",
    params(("id" = i64, Path), ChangesQuery),
    description = "What changed in one of the caller's mailboxes after a MODSEQ (RFC 7162): messages added or changed, and UIDs expunged (deleted or moved away), each with its MODSEQ.",
    responses((status = 200, body = MailboxChanges), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn mailbox_changes(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<MailboxChanges>, AppError> {
    Ok(Json(s.mail.changes_since(user.user_id, id, q.since).await?))
}

/// A new label.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewLabel {
    /// Name, unique per user.
    pub name: String,
    /// `#rgb` or `#rrggbb`.
    pub color: Option<String>,
}

/// A label change; absent fields stay, `"color": null` clears the colour.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LabelChange {
    /// New name.
    pub name: Option<String>,
    /// New colour.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub color: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/api/v1/mail/labels", tag = "mail",
    responses((status = 200, body = [LabelInfo]), (status = 401, body = ErrorBody)))]
async fn list_labels(State(s): State<HttpState>, user: CurrentUser) -> Result<Json<Vec<LabelInfo>>, AppError> {
    Ok(Json(s.mail.labels(user.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/mail/labels", tag = "mail", request_body = NewLabel,
    responses((status = 201, body = LabelInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_label(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewLabel>,
) -> Result<(StatusCode, Json<LabelInfo>), AppError> {
    let label = s.mail.create_label(user.user_id, &body.name, body.color.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(label)))
}

#[utoipa::path(patch, path = "/api/v1/mail/labels/{id}", tag = "mail", request_body = LabelChange,
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_label(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<LabelChange>,
) -> Result<StatusCode, AppError> {
    let color = body.color.as_ref().map(|c| c.as_deref());
    s.mail.update_label(user.user_id, id, body.name.as_deref(), color).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/mail/labels/{id}", tag = "mail",
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_label(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    s.mail.delete_label(user.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which list to show: one of `mailbox`, `role`, `label`, `starred`, `important`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// A mailbox id.
    pub mailbox: Option<i64>,
    /// A system mailbox: inbox, sent, drafts, spam, trash, archive.
    pub role: Option<String>,
    /// A label id.
    pub label: Option<i64>,
    /// Starred messages.
    #[serde(default)]
    pub starred: bool,
    /// Important messages.
    #[serde(default)]
    pub important: bool,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/mail/messages", tag = "mail", params(ListQuery),
    description = "One page of a list, newest first, read from message rows only (INBOX when no list is named).",
    responses((status = 200, body = Page), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_messages(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page>, AppError> {
    let mail = &s.mail;
    let scope = match (q.mailbox, q.role.as_deref(), q.label, q.starred, q.important) {
        (Some(id), None, None, false, false) => Scope::Mailbox(id),
        (None, Some(role), None, false, false) => {
            let role = Role::parse(role).ok_or_else(|| AppError::bad_request("unknown role"))?;
            Scope::Mailbox(mail.role_mailbox(user.user_id, role).await?)
        }
        (None, None, Some(id), false, false) => Scope::Label(id),
        (None, None, None, true, false) => Scope::Starred,
        (None, None, None, false, true) => Scope::Important,
        (None, None, None, false, false) => Scope::Mailbox(mail.role_mailbox(user.user_id, Role::Inbox).await?),
        _ => return Err(AppError::bad_request("name one list: mailbox, role, label, starred or important")),
    };
    Ok(Json(mail.list(user.user_id, scope, q.cursor.as_deref(), q.limit.unwrap_or(50)).await?))
}

/// Options of the message view.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ViewQuery {
    /// `allow` shows remote images.
    pub images: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/mail/messages/{id}", tag = "mail", params(("id" = i64, Path), ViewQuery),
    description = "A message opened for reading: text, sanitised HTML (remote images held back unless images=allow), attachments; raw text when it could not be parsed.",
    responses((status = 200, body = MessageView), (status = 404, body = ErrorBody)))]
async fn read_message(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<Json<MessageView>, AppError> {
    let allow = q.images.as_deref() == Some("allow");
    Ok(Json(s.mail.message(user.user_id, id, allow).await?))
}

#[utoipa::path(patch, path = "/api/v1/mail/messages/{id}", tag = "mail", request_body = FlagChange,
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn change_flags(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(change): ApiJson<FlagChange>,
) -> Result<StatusCode, AppError> {
    s.mail.set_flags(user.user_id, &[id], change).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/mail/messages/{id}/raw", tag = "mail", params(("id" = i64, Path)),
    description = "The raw RFC 5322 message as a download (message/rfc822).",
    responses((status = 200, content_type = "message/rfc822"), (status = 404, body = ErrorBody)))]
async fn raw_message(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, AppError> {
    let raw = s.mail.raw(user.user_id, id).await?;
    Ok(download("message/rfc822", &format!("message-{id}.eml"), raw))
}

#[utoipa::path(get, path = "/api/v1/mail/messages/{id}/attachments/{index}", tag = "mail",
    params(("id" = i64, Path), ("index" = u32, Path)),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
async fn attachment(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath((id, index)): ApiPath<(i64, u32)>,
) -> Result<Response, AppError> {
    let (name, content_type, bytes) = s.mail.attachment(user.user_id, id, index).await?;
    Ok(download(&content_type, &name, bytes))
}

#[utoipa::path(get, path = "/api/v1/mail/threads/{id}", tag = "mail", params(("id" = i64, Path)),
    description = "Every message of a conversation, oldest first.",
    responses((status = 200, body = [Summary]), (status = 404, body = ErrorBody)))]
async fn read_thread(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Summary>>, AppError> {
    Ok(Json(s.mail.thread(user.user_id, id).await?))
}

/// What a bulk action does.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Mark read.
    Read,
    /// Mark unread.
    Unread,
    /// Star.
    Star,
    /// Unstar.
    Unstar,
    /// Mark important.
    Important,
    /// Mark not important.
    Unimportant,
    /// Move to Archive.
    Archive,
    /// Move to Trash.
    Trash,
    /// Move to Spam.
    Spam,
    /// Move to INBOX (undo archive, not spam, restore from Trash).
    Inbox,
    /// Move to `mailbox_id`.
    Move,
    /// Add `label_id`.
    Label,
    /// Remove `label_id`.
    Unlabel,
    /// Delete for good.
    Delete,
}

/// One action on many messages and/or whole threads.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkAction {
    /// What to do.
    pub action: Action,
    /// Message ids.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Thread ids: every message of each thread.
    #[serde(default)]
    pub thread_ids: Vec<i64>,
    /// The target of `move`.
    pub mailbox_id: Option<i64>,
    /// The label of `label` and `unlabel`.
    pub label_id: Option<i64>,
}

/// How many messages an action touched.
#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    /// The count.
    pub affected: usize,
}

#[utoipa::path(post, path = "/api/v1/mail/messages/actions", tag = "mail", request_body = BulkAction,
    description = "One action on many messages or whole threads; refused as a whole (404) if any id is not the caller's.",
    responses((status = 200, body = Affected), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn bulk_action(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<BulkAction>,
) -> Result<Json<Affected>, AppError> {
    let mail = &s.mail;
    let uid = user.user_id;
    let mut ids = body.ids.clone();
    // Each thread is a query: refuse an oversized list before running them.
    crate::domains::mail::actions::check_bulk(&body.thread_ids)?;
    for t in &body.thread_ids {
        ids.extend(mail.thread_ids(uid, *t).await?);
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(AppError::bad_request("no messages named"));
    }
    match body.action {
        Action::Read => mail.set_flags(uid, &ids, FlagChange { seen: Some(true), ..Default::default() }).await?,
        Action::Unread => mail.set_flags(uid, &ids, FlagChange { seen: Some(false), ..Default::default() }).await?,
        Action::Star => mail.set_flags(uid, &ids, FlagChange { starred: Some(true), ..Default::default() }).await?,
        Action::Unstar => mail.set_flags(uid, &ids, FlagChange { starred: Some(false), ..Default::default() }).await?,
        Action::Important => {
            mail.set_flags(uid, &ids, FlagChange { important: Some(true), ..Default::default() }).await?
        }
        Action::Unimportant => {
            mail.set_flags(uid, &ids, FlagChange { important: Some(false), ..Default::default() }).await?
        }
        Action::Archive => mail.move_to(uid, &ids, Target::Role(Role::Archive)).await?,
        Action::Trash => mail.move_to(uid, &ids, Target::Role(Role::Trash)).await?,
        Action::Spam => mail.move_to(uid, &ids, Target::Role(Role::Spam)).await?,
        Action::Inbox => mail.move_to(uid, &ids, Target::Role(Role::Inbox)).await?,
        Action::Move => {
            let to = body.mailbox_id.ok_or_else(|| AppError::bad_request("move needs mailbox_id"))?;
            mail.move_to(uid, &ids, Target::Mailbox(to)).await?
        }
        Action::Label | Action::Unlabel => {
            let label = body.label_id.ok_or_else(|| AppError::bad_request("label needs label_id"))?;
            mail.set_label(uid, label, &ids, body.action == Action::Label).await?
        }
        Action::Delete => {
            mail.delete_forever(uid, &ids).await?;
        }
    }
    Ok(Json(Affected { affected: ids.len() }))
}

#[utoipa::path(post, path = "/api/v1/mail/trash/empty", tag = "mail",
    responses((status = 200, body = Affected), (status = 401, body = ErrorBody)))]
async fn empty_trash(State(s): State<HttpState>, user: CurrentUser) -> Result<Json<Affected>, AppError> {
    Ok(Json(Affected { affected: s.mail.empty_trash(user.user_id).await? }))
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_mailboxes,
        create_mailbox,
        rename_mailbox,
        delete_mailbox,
        mailbox_changes,
        list_labels,
        create_label,
        update_label,
        delete_label,
        list_messages,
        read_message,
        change_flags,
        raw_message,
        attachment,
        read_thread,
        bulk_action,
        empty_trash
    ),
    components(schemas(
        MailboxInfo,
        MailboxName,
        Created,
        MailboxChanges,
        ChangedUid,
        ExpungedUid,
        LabelInfo,
        NewLabel,
        LabelChange,
        Page,
        Summary,
        Address,
        MessageView,
        AttachmentInfo,
        FlagChange,
        BulkAction,
        Action,
        Affected,
        Role,
        ErrorBody,
        ErrorDetail
    ))
)]
struct MailApi;

/// The OpenAPI description of the mail routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    MailApi::openapi()
}
