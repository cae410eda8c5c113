//! The one error shape of the HTTP API, `{"error":{"code","message"}}`, and the JSON
//! extractor that turns every body rejection (bad JSON, wrong types, wrong content type,
//! too large) into it.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An API error: status, stable machine code and a human message.
#[derive(Debug, Clone)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code clients can branch on, e.g. `invalid_credentials`.
    pub code: &'static str,
    /// Human-readable explanation; never contains secrets.
    pub message: String,
    /// Seconds to wait, sent as `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl AppError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 with code `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 401 with code `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first")
    }

    /// 429 with a `Retry-After`.
    pub fn too_many(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many attempts; try again later")
        }
    }

    /// 500; the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

#[derive(Serialize, utoipa::ToSchema)]
/// The body of every error response.
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
/// Code and message of an error.
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// `Json<T>` whose rejections use the API error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// Maps axum's JSON rejections onto clear 4xx errors.
pub fn json_rejection(rej: JsonRejection) -> AppError {
    match rej {
        JsonRejection::JsonDataError(e) => {
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => AppError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()),
        JsonRejection::MissingJsonContentType(_) => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body too large")
        }
        other => AppError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// `Path<T>` whose rejections use the API error shape: a path segment that does not parse
/// (`/messages/abc`) names nothing, so it is 404.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(_) => Err(AppError::not_found("resource")),
        }
    }
}

/// `Query<T>` whose rejections use the API error shape (400 naming the bad parameter).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rej) => Err(AppError::bad_request(rej.body_text())),
        }
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}
