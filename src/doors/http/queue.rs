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
use crate::domains::mail::outbound::{QueueError, QueuedMessage, RecipientState};

/// The queue routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/mail/queue", get(list_queue))
        .route("/mail/queue/{id}/retry", post(retry))
        .route("/mail/queue/{id}", delete(cancel))
}

/// The caller's queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Newest first; finished messages stay listed for a week.
    pub messages: Vec<QueuedMessage>,
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
    let messages = s.outbound.list(Some(user.user_id)).await?;
    Ok(Json(QueueList { messages }))
}

#[utoipa::path(post, path = "/api/v1/mail/queue/{id}/retry", tag = "mail",
    description = "Tries the waiting recipients now instead of at the next scheduled attempt.",
    params(("id" = i64, Path, description = "The queue id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Already delivered or bounced")))]
async fn retry(State(s): State<HttpState>, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    s.outbound.retry_now(Some(user.user_id), queue_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/mail/queue/{id}", tag = "mail",
    description = "Removes the message from the queue: waiting recipients are not tried again and no bounce is sent.",
    params(("id" = i64, Path, description = "The queue id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn cancel(State(s): State<HttpState>, user: CurrentUser, Path(id): Path<String>) -> Result<StatusCode, AppError> {
    s.outbound.cancel(Some(user.user_id), queue_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(list_queue, retry, cancel),
    components(schemas(QueueList, QueuedMessage, RecipientState, ErrorBody, ErrorDetail))
)]
struct QueueApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    QueueApi::openapi()
}

#[cfg(test)]
mod tests;
