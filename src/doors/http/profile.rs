//! HTTP routes of the profile domain: the caller's own profile and avatar under
//! `/profile`, and other users' public cards and avatar thumbnails under
//! `/users/{username}`. It turns requests into [`ProfileService`] calls and
//! [`ProfileError`]s into [`AppError`]s; it holds no SQL and no business rule.
//!
//! Invariants: every route takes a [`CurrentUser`]; another user is only ever shown the
//! display name and the thumbnail (never the signature, time zone, language or the
//! uploaded original); images go out with their stored type and `nosniff`.
//!
//! [`ProfileService`]: crate::domains::profile::ProfileService

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::{ApiJson, AppError, CurrentUser, HttpState};
use crate::domains::profile::{Image, Profile, ProfileError, ProfileUpdate};

/// The caller's own profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    /// Login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Mail signature, sanitised HTML.
    pub signature_html: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// BCP 47 language tag, e.g. `de-CH`.
    pub language: String,
    /// The uploaded avatar (only its owner may fetch it), or null.
    pub avatar_url: Option<String>,
    /// The square PNG thumbnail others see, or null.
    pub avatar_thumb_url: Option<String>,
    /// Media type of the uploaded avatar, or null.
    pub avatar_type: Option<String>,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A change to the profile; fields left out keep their value, unknown fields (such as
/// the read-only ones of [`ProfileView`]) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProfileUpdateBody {
    /// Name shown to others (1 to 100 characters).
    pub display_name: Option<String>,
    /// Mail signature; HTML is sanitised (no scripts, handlers or `javascript:` links).
    pub signature_html: Option<String>,
    /// IANA time zone, e.g. `Europe/Berlin` or `UTC`.
    pub time_zone: Option<String>,
    /// BCP 47 language tag, e.g. `en` or `de-CH`.
    pub language: Option<String>,
}

/// What any logged-in user may see of another.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    /// Login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// The avatar thumbnail, or null.
    pub avatar_url: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    paths(get_profile, put_profile, get_avatar, put_avatar, delete_avatar, get_card, get_user_avatar),
    components(schemas(ProfileView, ProfileUpdateBody, CardView, ErrorBody, ErrorDetail))
)]
struct ProfileApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ProfileApi::openapi()
}

/// The routes, relative to `/api/v1`. The avatar upload may be as large as
/// `http.upload_limit_bytes`; the service then enforces `profile.avatar_max_bytes`.
pub fn routes(state: &HttpState) -> Router<HttpState> {
    let upload_limit = DefaultBodyLimit::max(state.settings.upload_limit_bytes);
    Router::new()
        .route("/profile", get(get_profile).put(put_profile))
        .route("/profile/avatar", get(get_avatar).put(put_avatar.layer(upload_limit)).delete(delete_avatar))
        .route("/users/{username}/card", get(get_card))
        .route("/users/{username}/avatar", get(get_user_avatar))
}

impl From<ProfileError> for AppError {
    fn from(e: ProfileError) -> Self {
        let msg = e.to_string();
        match e {
            ProfileError::Invalid { .. } => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", msg),
            ProfileError::AvatarTooLarge { .. } => AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg),
            ProfileError::UnsupportedImageType(_) => {
                AppError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", msg)
            }
            ProfileError::InvalidImage(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_image", msg),
            ProfileError::ImageDimensions { .. } => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "image_too_large", msg)
            }
            ProfileError::NoAvatar => AppError::not_found("avatar"),
            ProfileError::Db(_) | ProfileError::Blob(_) | ProfileError::Internal(_) => AppError::internal(msg),
        }
    }
}

/// Maps a failure to read a raw body (too large, cut off) onto the API error shape.
pub(super) fn body_rejection(rej: BytesRejection) -> AppError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body too large")
    } else {
        AppError::bad_request(rej.body_text())
    }
}

/// The request's `Content-Type`, if it is readable text.
pub(super) fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// `s` as one URL path segment (RFC 3986 §3.3: unreserved characters kept).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn thumb_url(username: &str, tag: &str) -> String {
    format!("/api/v1/users/{}/avatar?v={tag}", path_segment(username))
}

fn view(p: Profile, username: &str) -> ProfileView {
    let (avatar_url, avatar_thumb_url, avatar_type) = match p.avatar {
        Some(a) => {
            (Some(format!("/api/v1/profile/avatar?v={}", a.tag)), Some(thumb_url(username, &a.tag)), Some(a.media_type))
        }
        None => (None, None, None),
    };
    ProfileView {
        username: username.to_owned(),
        display_name: p.display_name,
        signature_html: p.signature_html,
        time_zone: p.time_zone,
        language: p.language,
        avatar_url,
        avatar_thumb_url,
        avatar_type,
        updated_at: p.updated_at,
    }
}

/// An image response: its stored type, never sniffed, revalidated by the browser.
fn image_response(img: Image) -> Response {
    let content_type =
        HeaderValue::from_str(&img.media_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let etag = HeaderValue::from_str(&format!("\"{}\"", img.tag)).ok();
    let mut resp = img.bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if let Some(etag) = etag {
        h.insert(header::ETAG, etag);
    }
    resp
}

/// Resolves a username to an account id through the auth service; unknown is 404.
async fn user_id_of(state: &HttpState, username: &str) -> Result<(i64, String), AppError> {
    let user = state.auth.find_by_username(username).await?;
    user.map(|u| (u.id, u.username)).ok_or_else(|| AppError::not_found("user"))
}

/// The caller's profile (created with defaults on first use).
#[utoipa::path(get, path = "/api/v1/profile", tag = "profile",
    responses((status = 200, body = ProfileView), (status = 401, body = ErrorBody)))]
async fn get_profile(State(state): State<HttpState>, user: CurrentUser) -> Result<ApiJson<ProfileView>, AppError> {
    let p = state.profile.get(user.user_id, &user.username).await?;
    Ok(ApiJson(view(p, &user.username)))
}

/// Changes the given fields; a refused field changes nothing.
#[utoipa::path(put, path = "/api/v1/profile", tag = "profile", request_body = ProfileUpdateBody,
    responses((status = 200, body = ProfileView), (status = 401, body = ErrorBody),
        (status = 422, description = "a field was refused", body = ErrorBody)))]
async fn put_profile(
    State(state): State<HttpState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<ProfileUpdateBody>,
) -> Result<ApiJson<ProfileView>, AppError> {
    let change = ProfileUpdate {
        display_name: body.display_name,
        signature_html: body.signature_html,
        time_zone: body.time_zone,
        language: body.language,
    };
    let p = state.profile.update(user.user_id, &user.username, change).await?;
    Ok(ApiJson(view(p, &user.username)))
}

/// The caller's uploaded avatar, as sent.
#[utoipa::path(get, path = "/api/v1/profile/avatar", tag = "profile",
    responses((status = 200, description = "the image", content_type = "image/*", body = [u8]),
        (status = 404, description = "no avatar", body = ErrorBody)))]
async fn get_avatar(State(state): State<HttpState>, user: CurrentUser) -> Result<Response, AppError> {
    Ok(image_response(state.profile.avatar(user.user_id).await?))
}

/// Sets the avatar: the raw image is the body, its type the `Content-Type`. The bytes
/// must decode as that type; a square PNG thumbnail is made.
#[utoipa::path(put, path = "/api/v1/profile/avatar", tag = "profile",
    request_body(content(("image/png"), ("image/jpeg"), ("image/gif"), ("image/webp"))),
    responses((status = 200, body = ProfileView),
        (status = 413, description = "larger than profile.avatar_max_bytes", body = ErrorBody),
        (status = 415, description = "not an accepted image type", body = ErrorBody),
        (status = 422, description = "not a valid image of that type, or too many pixels", body = ErrorBody)))]
async fn put_avatar(
    State(state): State<HttpState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ApiJson<ProfileView>, AppError> {
    let body = body.map_err(body_rejection)?;
    let media_type = content_type(&headers).unwrap_or_default();
    let p = state.profile.set_avatar(user.user_id, &user.username, media_type, body).await?;
    Ok(ApiJson(view(p, &user.username)))
}

/// Removes the avatar (also when there is none).
#[utoipa::path(delete, path = "/api/v1/profile/avatar", tag = "profile",
    responses((status = 204, description = "removed"), (status = 401, body = ErrorBody)))]
async fn delete_avatar(State(state): State<HttpState>, user: CurrentUser) -> Result<StatusCode, AppError> {
    state.profile.delete_avatar(user.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Another user's public card: display name and avatar thumbnail only.
#[utoipa::path(get, path = "/api/v1/users/{username}/card", tag = "profile",
    params(("username" = String, Path, description = "login name")),
    responses((status = 200, body = CardView), (status = 401, body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody)))]
async fn get_card(
    State(state): State<HttpState>,
    _caller: CurrentUser,
    Path(username): Path<String>,
) -> Result<ApiJson<CardView>, AppError> {
    let (id, username) = user_id_of(&state, &username).await?;
    let card = state.profile.card(id, &username).await?;
    Ok(ApiJson(CardView {
        avatar_url: card.avatar_tag.map(|t| thumb_url(&username, &t)),
        username,
        display_name: card.display_name,
    }))
}

/// Another user's avatar thumbnail (a square PNG).
#[utoipa::path(get, path = "/api/v1/users/{username}/avatar", tag = "profile",
    params(("username" = String, Path, description = "login name")),
    responses((status = 200, description = "the thumbnail", content_type = "image/png", body = [u8]),
        (status = 404, description = "no such user or no avatar", body = ErrorBody)))]
async fn get_user_avatar(
    State(state): State<HttpState>,
    _caller: CurrentUser,
    Path(username): Path<String>,
) -> Result<Response, AppError> {
    let (id, _) = user_id_of(&state, &username).await?;
    Ok(image_response(state.profile.avatar_thumbnail(id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_escaped_in_urls() {
        assert_eq!(path_segment("ada.l_-~9"), "ada.l_-~9");
        assert_eq!(path_segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }

    #[test]
    fn the_openapi_lists_every_route() {
        let doc = openapi();
        for p in [
            "/api/v1/profile",
            "/api/v1/profile/avatar",
            "/api/v1/users/{username}/card",
            "/api/v1/users/{username}/avatar",
        ] {
            assert!(doc.paths.paths.contains_key(p), "{p} missing");
        }
    }
}
