//! Who is calling: the session cookie or bearer token resolved to a [`CurrentUser`] (a
//! [`RecentAuth`] when the change asked for needs a recent password confirmation), and
//! the caller's address (see [`Origin`]) and user agent as a [`ClientInfo`] for rate limits and the
//! security log.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;

use super::{AppError, HttpState, Origin};
use crate::domains::auth::ClientInfo;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "postcast_session";

/// The logged-in user behind a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The account id.
    pub user_id: i64,
    /// The login name.
    pub username: String,
    /// The session in use.
    pub session_id: i64,
    /// The raw session token (to log out this very session).
    pub token: String,
}

/// Reads the session token from `Authorization: Bearer` or the session cookie.
pub fn token_from(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_owned());
    }
    CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE).map(|c| c.value().to_owned())
}

impl FromRequestParts<HttpState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, AppError> {
        let token = token_from(parts).ok_or_else(AppError::unauthenticated)?;
        let s = state.auth.authenticate(&token).await.map_err(|_| AppError::unauthenticated())?;
        Ok(CurrentUser { user_id: s.user_id, username: s.username, session_id: s.session_id, token })
    }
}

/// A logged-in user whose session confirmed the password within the last ten minutes
/// (`POST /api/v1/auth/reauth`): what a sensitive change takes. Otherwise the request is
/// refused with 403 `reauth_required`.
#[derive(Debug, Clone)]
pub struct RecentAuth(pub CurrentUser);

impl FromRequestParts<HttpState> for RecentAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, AppError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        state.auth.require_recent_auth(user.user_id, user.session_id).await?;
        Ok(Self(user))
    }
}

impl FromRequestParts<HttpState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Self::Rejection> {
        let Ok(origin) = Origin::from_request_parts(parts, state).await;
        let ip = origin.ip;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        Ok(ClientInfo { ip, user_agent })
    }
}
