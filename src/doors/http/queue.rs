//! HTTP routes of the outbound queue under `/api/v1/mail/queue`: the caller's own mail on
//! its way to other servers with each recipient's state, "try again now" and "remove from
//! the queue". It turns requests into [`OutboundQueue`] calls and [`QueueError`]s into
//! [`AppError`]s; it holds no SQL and no business rule.
//!
//! Invariants: every route takes a [`CurrentUser`] and passes its id as the owner, so a
//! user only ever sees and changes their own queued mail; somebody else's id is "not
//! found", never "forbidden".
//!
//! [`OutboundQueue`]: crate::domains::mail::outbound::OutboundQueue

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::{AppError, CurrentUser, HttpState};
use crate::domains::mail::outbound::{QueueError, QueuedMessage};

/// The queue routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/mail/queue", get(list_queue))
        .route("/mail/queue/{id}/retry", post(retry))
        .route("/mail/queue/{id}", delete(cancel))
}

/// One recipient's delivery state.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientView {
    /// The address.
    pub address: String,
    /// `queued` (waiting for another attempt), `delivered` or `failed`.
    pub status: String,
    /// The receiving server's last reply, or why it could not be reached.
    pub reply: Option<String>,
    /// The server that answered last.
    pub remote_mta: Option<String>,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A message in the outbound queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedMessageView {
    /// The queue id.
    pub id: i64,
    /// The envelope sender.
    pub from: String,
    /// The Subject.
    pub subject: String,
    /// Size in bytes.
    pub size: i64,
    /// `queued` while recipients wait, `done` once every recipient is delivered or failed.
    pub status: String,
    /// Delivery attempts made.
    pub attempts: i32,
    /// When it was queued, Unix seconds.
    pub created_at: i64,
    /// When it is tried next, Unix seconds (meaningless once done).
    pub next_attempt_at: i64,
    /// When it was last tried, Unix seconds.
    pub last_attempt_at: Option<i64>,
    /// Why the last attempt left recipients waiting.
    pub last_error: Option<String>,
    /// Every recipient with its state.
    pub recipients: Vec<RecipientView>,
}

/// The caller's queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Newest first; finished messages stay listed for a week.
    pub messages: Vec<QueuedMessageView>,
}

impl From<QueuedMessage> for QueuedMessageView {
    fn from(m: QueuedMessage) -> Self {
        Self {
            id: m.id,
            from: m.envelope_from,
            subject: m.subject,
            size: m.size,
            status: m.status,
            attempts: m.attempts,
            created_at: m.created_at,
            next_attempt_at: m.next_attempt_at,
            last_attempt_at: m.last_attempt_at,
            last_error: m.last_error,
            recipients: m
                .recipients
                .into_iter()
                .map(|r| RecipientView {
                    address: r.address,
                    status: r.status,
                    reply: r.reply,
                    remote_mta: r.remote_mta,
                    updated_at: r.updated_at,
                })
                .collect(),
        }
    }
}

impl From<QueueError> for AppError {
    fn from(e: QueueError) -> Self {
        let msg = e.to_string();
        match e {
            QueueError::NotFound => AppError::not_found("queued message"),
            QueueError::Finished => AppError::new(StatusCode::CONFLICT, "finished", msg),
            QueueError::InvalidAddress(_) | QueueError::NoRecipients | QueueError::InvalidMessage(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", msg)
            }
            QueueError::Dkim(_) | QueueError::Db(_) | QueueError::Blob(_) | QueueError::Internal(_) => {
                AppError::internal(msg)
            }
        }
    }
}

/// A queue id from the path; anything that is not one names no message.
fn queue_id(raw: &str) -> Result<i64, AppError> {
    raw.parse().map_err(|_| AppError::not_found("queued message"))
}

#[utoipa::path(get, path = "/api/v1/mail/queue", tag = "mail",
    description = "The caller's mail on its way to other servers, with each recipient's state.",
    responses((status = 200, body = QueueList), (status = 401, body = ErrorBody)))]
async fn list_queue(State(s): State<HttpState>, user: CurrentUser) -> Result<Json<QueueList>, AppError> {
    let messages = s.services.outbound.list(Some(user.user_id)).await?;
    Ok(Json(QueueList { messages: messages.into_iter().map(QueuedMessageView::from).collect() }))
}

#[utoipa::path(post, path = "/api/v1/mail/queue/{id}/retry", tag = "mail",
    description = "Tries the waiting recipients now instead of at the next scheduled attempt.",
    params(("id" = i64, Path, description = "The queue id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Already delivered or bounced")))]
async fn retry(State(s): State<HttpState>, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    s.services.outbound.retry_now(Some(user.user_id), queue_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/mail/queue/{id}", tag = "mail",
    description = "Removes the message from the queue: waiting recipients are not tried again and no bounce is sent.",
    params(("id" = i64, Path, description = "The queue id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn cancel(State(s): State<HttpState>, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    s.services.outbound.cancel(Some(user.user_id), queue_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(list_queue, retry, cancel),
    components(schemas(QueueList, QueuedMessageView, RecipientView, ErrorBody, ErrorDetail))
)]
struct QueueApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    QueueApi::openapi()
}

#[cfg(test)]
mod tests;
