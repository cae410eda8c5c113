//! HTTP routes of the prefs domain: the caller's preference document under `/prefs`
//! (GET, PUT, PATCH as JSON Merge Patch, with `ETag`/`If-Match`) and its attachments under
//! `/prefs/attachments`. It parses bodies and HTTP preconditions, calls
//! [`PrefsService`] and maps [`PrefsError`]s onto [`AppError`]s; it holds no SQL and no
//! business rule.
//!
//! Invariants: every route takes a [`CurrentUser`] and passes only that user's id, so a
//! caller never reaches another user's document or files (another user's attachment is
//! "not found"); a write that adds a mail-forwarding filter (see
//! [`filters::adds_forwarding`]) is refused with 403 `reauth_required` unless the session
//! confirmed the password within ten minutes; a refused request stores nothing; downloads
//! are never rendered inline.
//!
//! [`PrefsService`]: crate::domains::prefs::PrefsService

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::download::download;
use super::error::{ErrorBody, ErrorDetail};
use super::profile::{body_rejection, content_type};
use super::{ApiJson, AppError, CurrentUser, HttpState};
use crate::domains::auth::AuthError;
use crate::domains::mail::filters;
use crate::domains::prefs::{Attachment, Expect, PrefsDocument, PrefsError};

/// The media type of a JSON Merge Patch (RFC 7396 §4).
const MERGE_PATCH: &str = "application/merge-patch+json";

/// An attachment as listed and as returned by an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    /// Mention this id anywhere in the preference document to keep the file.
    pub id: String,
    /// File name.
    pub name: String,
    /// Media type given at upload.
    pub content_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Upload time, Unix seconds.
    pub created_at: i64,
    /// Where to download it.
    pub url: String,
}

impl From<Attachment> for AttachmentView {
    fn from(a: Attachment) -> Self {
        Self {
            url: format!("/api/v1/prefs/attachments/{}", a.id),
            id: a.id,
            name: a.name,
            content_type: a.content_type,
            size: a.size,
            created_at: a.created_at,
        }
    }
}

/// Query of an attachment upload.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// File name; any folder part is dropped. Default `attachment`.
    pub name: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    paths(get_prefs, put_prefs, patch_prefs, upload_attachment, list_attachments, download_attachment),
    components(schemas(AttachmentView, ErrorBody, ErrorDetail))
)]
struct PrefsApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    PrefsApi::openapi()
}

/// The routes, relative to `/api/v1`. Uploads may be as large as
/// `http.upload_limit_bytes`; the service then enforces `prefs.attachment_max_bytes`.
pub fn routes(state: &HttpState) -> Router<HttpState> {
    let upload_limit = DefaultBodyLimit::max(state.settings.upload_limit_bytes);
    Router::new()
        .route("/prefs", get(get_prefs).put(put_prefs).patch(patch_prefs))
        .route("/prefs/attachments", get(list_attachments).post(upload_attachment.layer(upload_limit)))
        .route("/prefs/attachments/{id}", get(download_attachment))
}

impl From<PrefsError> for AppError {
    fn from(e: PrefsError) -> Self {
        let msg = e.to_string();
        match e {
            PrefsError::NotAnObject => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_an_object", msg),
            PrefsError::TooLarge { .. } | PrefsError::AttachmentTooLarge { .. } => {
                AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg)
            }
            PrefsError::PreconditionFailed { .. } => {
                AppError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", msg)
            }
            PrefsError::Busy => AppError::new(StatusCode::CONFLICT, "conflict", msg),
            // Only the forwarding check below refuses a write.
            PrefsError::Refused => AuthError::ReauthRequired.into(),
            PrefsError::InvalidAttachment(_) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_attachment", msg)
            }
            PrefsError::AttachmentNotFound => AppError::not_found("attachment"),
            PrefsError::Db(_) | PrefsError::Blob(_) | PrefsError::Internal(_) => AppError::internal(msg),
        }
    }
}

/// The strong ETag of a document version.
fn etag(version: i64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"v{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Reads `If-Match` (RFC 9110 §13.1.1): absent or `*` allows any version; otherwise only
/// the listed entity tags, compared strongly, so weak (`W/`) or foreign tags match nothing.
fn expect_from(headers: &HeaderMap) -> Result<Expect, AppError> {
    let mut versions = Vec::new();
    let mut present = false;
    for value in headers.get_all(header::IF_MATCH) {
        present = true;
        let text = value.to_str().map_err(|_| AppError::bad_request("If-Match must be ASCII"))?;
        for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Expect::Any);
            }
            if let Some(v) = tag.strip_prefix("\"v").and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse().ok()) {
                versions.push(v);
            }
        }
    }
    Ok(if present { Expect::OneOf(versions) } else { Expect::Any })
}

/// Checks the `Content-Type` against `accepted` (parameters ignored) and parses the body
/// as JSON; any failure is a clear 4xx and nothing is stored.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>, accepted: &[&str]) -> Result<Value, AppError> {
    let essence = content_type(headers)
        .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !accepted.contains(&essence.as_str()) {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send Content-Type: {}", accepted.join(" or ")),
        ));
    }
    let body = body.map_err(body_rejection)?;
    serde_json::from_slice(&body)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid JSON: {e}")))
}

/// The document with its `ETag`, or the error; a failed precondition also carries the
/// current `ETag` so the client can re-read and retry.
fn document_response(result: Result<PrefsDocument, PrefsError>) -> Response {
    match result {
        Ok(d) => {
            let mut resp = ApiJson(d.doc).into_response();
            resp.headers_mut().insert(header::ETAG, etag(d.version));
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
            resp
        }
        Err(e) => {
            let current = match e {
                PrefsError::PreconditionFailed { current } => Some(current),
                _ => None,
            };
            let mut resp = AppError::from(e).into_response();
            if let Some(v) = current {
                resp.headers_mut().insert(header::ETAG, etag(v));
            }
            resp
        }
    }
}

/// The caller's preference document (`{}` before the first write).
#[utoipa::path(get, path = "/api/v1/prefs", tag = "prefs",
    responses((status = 200, body = Object, headers(("ETag" = String, description = "strong, changes with every write"))),
        (status = 401, body = ErrorBody)))]
async fn get_prefs(State(state): State<HttpState>, user: CurrentUser) -> Response {
    document_response(state.prefs.get(user.user_id).await)
}

/// Replaces the whole document with the JSON object sent.
#[utoipa::path(put, path = "/api/v1/prefs", tag = "prefs",
    request_body(content = Object, content_type = "application/json"),
    params(("If-Match" = Option<String>, Header, description = "the ETag last read, or *")),
    responses((status = 200, body = Object, headers(("ETag" = String))),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 403, description = "reauth_required: it adds a forwarding filter", body = ErrorBody),
        (status = 412, description = "changed since the If-Match ETag", body = ErrorBody),
        (status = 413, description = "larger than prefs.max_bytes", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "not a JSON object", body = ErrorBody)))]
async fn put_prefs(
    State(state): State<HttpState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let expect = expect_from(&headers)?;
    let doc = json_body(&headers, body, &["application/json"])?;
    let allowed = forwarding_check(&state, &user).await;
    Ok(document_response(state.prefs.replace_if(user.user_id, doc, &expect, allowed).await))
}

/// The check every write passes: adding a forwarding filter needs a recent password
/// confirmation (asked once per write, before the write reads the stored document).
async fn forwarding_check(state: &HttpState, user: &CurrentUser) -> impl Fn(&Value, &Value) -> bool + use<> {
    let recent = state.auth.require_recent_auth(user.user_id, user.session_id).await.is_ok();
    move |before: &Value, after: &Value| recent || !filters::adds_forwarding(before, after)
}

/// Applies a JSON Merge Patch (RFC 7396): `null` removes a member, objects merge.
#[utoipa::path(patch, path = "/api/v1/prefs", tag = "prefs",
    request_body(content(("application/merge-patch+json"), ("application/json"))),
    params(("If-Match" = Option<String>, Header, description = "the ETag last read, or *")),
    responses((status = 200, body = Object, headers(("ETag" = String))),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 403, description = "reauth_required: it adds a forwarding filter", body = ErrorBody),
        (status = 412, description = "changed since the If-Match ETag", body = ErrorBody),
        (status = 413, description = "result larger than prefs.max_bytes", body = ErrorBody),
        (status = 415, description = "not a JSON media type", body = ErrorBody),
        (status = 422, description = "result not a JSON object", body = ErrorBody)))]
async fn patch_prefs(
    State(state): State<HttpState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let expect = expect_from(&headers)?;
    let patch = json_body(&headers, body, &[MERGE_PATCH, "application/json"])?;
    let allowed = forwarding_check(&state, &user).await;
    Ok(document_response(state.prefs.merge_patch_if(user.user_id, &patch, &expect, allowed).await))
}

/// Stores a file: the raw bytes are the body, `Content-Type` its type. It is deleted
/// once no string in the document mentions its id (after `prefs.attachment_grace_seconds`).
#[utoipa::path(post, path = "/api/v1/prefs/attachments", tag = "prefs", params(UploadQuery),
    request_body(content = [u8], content_type = "application/octet-stream"),
    responses((status = 201, body = AttachmentView),
        (status = 413, description = "larger than prefs.attachment_max_bytes", body = ErrorBody),
        (status = 422, description = "bad name or Content-Type", body = ErrorBody)))]
async fn upload_attachment(
    State(state): State<HttpState>,
    user: CurrentUser,
    headers: HeaderMap,
    query: Result<Query<UploadQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, ApiJson<AttachmentView>), AppError> {
    let Query(query) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    let body = body.map_err(body_rejection)?;
    let a = state.prefs.add_attachment(user.user_id, query.name.as_deref(), content_type(&headers), body).await?;
    Ok((StatusCode::CREATED, ApiJson(a.into())))
}

/// The caller's attachments, oldest first.
#[utoipa::path(get, path = "/api/v1/prefs/attachments", tag = "prefs",
    responses((status = 200, description = "{attachments: [AttachmentView]}"), (status = 401, body = ErrorBody)))]
async fn list_attachments(
    State(state): State<HttpState>,
    user: CurrentUser,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    let list = state.prefs.attachments(user.user_id).await?;
    let views: Vec<AttachmentView> = list.into_iter().map(AttachmentView::from).collect();
    Ok(ApiJson(serde_json::json!({ "attachments": views })))
}

/// Downloads one of the caller's attachments (always as a download, never inline).
#[utoipa::path(get, path = "/api/v1/prefs/attachments/{id}", tag = "prefs",
    params(("id" = String, Path, description = "attachment id")),
    responses((status = 200, description = "the file", body = [u8]),
        (status = 404, description = "no such attachment of the caller", body = ErrorBody)))]
async fn download_attachment(
    State(state): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (a, bytes) = state.prefs.attachment(user.user_id, &id).await?;
    Ok(download(&a.content_type, &a.name, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn if_match_allows_star_listed_strong_tags_or_nothing() {
        assert_eq!(expect_from(&headers(&[])).unwrap(), Expect::Any);
        assert_eq!(expect_from(&headers(&[("if-match", "*")])).unwrap(), Expect::Any);
        assert_eq!(expect_from(&headers(&[("if-match", "\"v3\"")])).unwrap(), Expect::OneOf(vec![3]));
        assert_eq!(
            expect_from(&headers(&[("if-match", "\"v3\", \"v5\""), ("if-match", "\"v7\"")])).unwrap(),
            Expect::OneOf(vec![3, 5, 7])
        );
        // RFC 9110 §13.1.1: strong comparison, so a weak tag never matches.
        assert_eq!(expect_from(&headers(&[("if-match", "W/\"v3\"")])).unwrap(), Expect::OneOf(vec![]));
        assert_eq!(expect_from(&headers(&[("if-match", "garbage")])).unwrap(), Expect::OneOf(vec![]));
        assert_eq!(etag(12), "\"v12\"");
    }

    #[test]
    fn json_bodies_need_a_json_type_and_valid_json() {
        let ok = headers(&[("content-type", "application/merge-patch+json; charset=utf-8")]);
        let v = json_body(&ok, Ok(Bytes::from_static(b"{\"a\":null}")), &[MERGE_PATCH]).unwrap();
        assert_eq!(v, serde_json::json!({"a": null}));
        let text = headers(&[("content-type", "text/plain")]);
        let e = json_body(&text, Ok(Bytes::from_static(b"{}")), &["application/json"]).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = json_body(&HeaderMap::new(), Ok(Bytes::from_static(b"{}")), &["application/json"]).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let json = headers(&[("content-type", "application/json")]);
        for bad in [&b"{\"a\":"[..], b"{\"a\":\"\xff\xfe\"}", b""] {
            let e = json_body(&json, Ok(Bytes::copy_from_slice(bad)), &["application/json"]).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_json"));
        }
    }

    #[test]
    fn the_openapi_lists_every_route() {
        let doc = openapi();
        for p in ["/api/v1/prefs", "/api/v1/prefs/attachments", "/api/v1/prefs/attachments/{id}"] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }
}
