//! HTTP routes for writing mail under `/api/v1/mail`: upload an attachment, send, save
//! and delete drafts. Group names in To/Cc/Bcc are expanded by the contacts service
//! before the mail service builds and sends the message; the From display name comes
//! from the profile. No SQL and no business rule here.
//!
//! Invariants: the sender is always the [`CurrentUser`]; uploads, replied and forwarded
//! messages and drafts must be theirs (404 otherwise).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::error::ApiPath;
use super::error::{ErrorBody, ErrorDetail};
use super::{ApiJson, AppError, CurrentUser, HttpState};
use crate::domains::mail::compose::{AttachmentRef, Author, Draft};
use crate::domains::mail::send::SendError;

/// The compose routes, relative to `/api/v1`.
pub fn routes(state: &HttpState) -> Router<HttpState> {
    let upload_limit = DefaultBodyLimit::max(state.settings.upload_limit_bytes);
    Router::new()
        .route("/mail/uploads", post(upload.layer(upload_limit)))
        .route("/mail/send", post(send))
        .route("/mail/drafts", put(save_draft))
        .route("/mail/drafts/{id}", delete(delete_draft))
}

impl From<SendError> for AppError {
    fn from(e: SendError) -> Self {
        let msg = e.to_string();
        match e {
            SendError::NotYourAddress(_) => AppError::new(StatusCode::FORBIDDEN, "not_your_address", msg),
            SendError::BadFrom(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_from", msg),
            SendError::NoRecipients | SendError::BadRecipient(_) | SendError::UnknownLocalUser(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_recipient", msg)
            }
            SendError::Store(e) => e.into(),
            SendError::Deliver(crate::domains::mail::deliver::DeliverError::Store(e)) => e.into(),
            // A scanner gave no verdict: nothing was sent or kept; the user may try again.
            SendError::Deliver(crate::domains::mail::deliver::DeliverError::Scan(_)) => {
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "not_scanned", msg)
            }
            SendError::Deliver(e) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string()),
            SendError::Queue(_) | SendError::NoQueue | SendError::Build(_) => AppError::internal(msg),
            SendError::TooManyRecipients(_) => AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_recipients", msg),
            SendError::HourlyLimit { retry_after, .. } | SendError::DailyLimit { retry_after, .. } => {
                AppError { code: "sending_limit", message: msg, ..AppError::too_many(retry_after) }
            }
            SendError::OverQuota(crate::platform::quota::QuotaError::Db(e)) => AppError::internal(e),
            SendError::OverQuota(_) => AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "over_quota", msg),
            SendError::MailboxFull(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "mailbox_full", msg),
        }
    }
}

/// An uploaded file's id, to name in `attachments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// The id.
    pub id: String,
    /// Its size in octets.
    pub size: usize,
}

/// What became of a sent message.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentBody {
    /// The copy in Sent.
    pub id: i64,
    /// Its conversation.
    pub thread_id: i64,
    /// How many local recipients got it.
    pub delivered_locally: usize,
    /// The outbound queue entry for remote recipients.
    pub queued: Option<i64>,
}

/// A saved draft.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftSaved {
    /// The draft's message id (pass as `draft_id` to replace or send it).
    pub id: i64,
}

async fn author(s: &HttpState, user: &CurrentUser) -> Author {
    let display_name = match s.profile.get(user.user_id, &user.username).await {
        Ok(p) => p.display_name,
        Err(_) => String::new(),
    };
    Author { user_id: user.user_id, username: user.username.clone(), display_name }
}

/// Expands group names in every recipient list.
async fn expand(s: &HttpState, user: &CurrentUser, mut draft: Draft) -> Result<Draft, AppError> {
    let contacts = &s.contacts;
    draft.to = contacts.expand_recipients(user.user_id, &draft.to).await?;
    draft.cc = contacts.expand_recipients(user.user_id, &draft.cc).await?;
    draft.bcc = contacts.expand_recipients(user.user_id, &draft.bcc).await?;
    Ok(draft)
}

#[utoipa::path(post, path = "/api/v1/mail/uploads", tag = "mail",
    description = "Uploads a file (the raw body) to attach to a message being written.",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Uploaded), (status = 413, body = ErrorBody)))]
async fn upload(
    State(s): State<HttpState>,
    user: CurrentUser,
    body: Bytes,
) -> Result<(StatusCode, Json<Uploaded>), AppError> {
    let size = body.len();
    let id = s.mail.upload(user.user_id, body).await?;
    Ok((StatusCode::CREATED, Json(Uploaded { id, size })))
}

#[utoipa::path(post, path = "/api/v1/mail/send", tag = "mail", request_body = Draft,
    description = "Builds and sends a message from the caller: a copy goes to Sent, local recipients get it at once, remote ones through the outbound queue. Group names in To/Cc/Bcc expand to their members.",
    responses((status = 200, body = SentBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn send(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiJson(draft): ApiJson<Draft>,
) -> Result<Json<SentBody>, AppError> {
    let draft = expand(&s, &user, draft).await?;
    let sent = s.mail.send_draft(&author(&s, &user).await, &draft).await?;
    Ok(Json(SentBody {
        id: sent.sent_copy.id,
        thread_id: sent.sent_copy.thread_id,
        delivered_locally: sent.local.len(),
        queued: sent.queued,
    }))
}

#[utoipa::path(put, path = "/api/v1/mail/drafts", tag = "mail", request_body = Draft,
    description = "Saves the message being written in Drafts, replacing `draft_id` if given.",
    responses((status = 200, body = DraftSaved), (status = 404, body = ErrorBody)))]
async fn save_draft(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiJson(draft): ApiJson<Draft>,
) -> Result<Json<DraftSaved>, AppError> {
    let stored = s.mail.save_draft(&author(&s, &user).await, &draft).await?;
    Ok(Json(DraftSaved { id: stored.id }))
}

#[utoipa::path(delete, path = "/api/v1/mail/drafts/{id}", tag = "mail", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_draft(
    State(s): State<HttpState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, AppError> {
    s.mail.delete_draft(user.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(upload, send, save_draft, delete_draft),
    components(schemas(Draft, AttachmentRef, Uploaded, SentBody, DraftSaved, ErrorBody, ErrorDetail))
)]
struct ComposeApi;

/// The OpenAPI description of the compose routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ComposeApi::openapi()
}
