//! Administrator routes under `/api/v1/admin`: invitations to register while
//! registration is closed (make, list, withdraw). It turns requests into auth-service calls; the service decides
//! who the administrator is, so everybody else gets 403 `not_admin`.

use axum::extract::Path;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::{AppError, CurrentUser, HttpState, Origin};
use crate::domains::auth::{ClientInfo, InvitationView};

/// The administrator routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/admin/invitations", post(create_invitation).get(list_invitations))
        .route("/admin/invitations/{id}", delete(revoke_invitation))
}

/// A new invitation; the token is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationBody {
    /// The single-use secret.
    pub token: String,
    /// The registration page with the token, on the host the request was sent to.
    pub url: String,
    /// Unix seconds from which it is refused.
    pub expires_at: i64,
}

/// The link to the registration page with `token`, on the host the request named (the
/// scheme is `https` when cookies are marked secure, that is behind a TLS proxy).
fn invitation_url(host: Option<&str>, secure: bool, token: &str) -> String {
    let path = format!("/register?invitation={token}");
    match host.filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b))) {
        Some(h) => format!("{}://{h}{path}", if secure { "https" } else { "http" }),
        None => path,
    }
}

#[utoipa::path(post, path = "/api/v1/admin/invitations", tag = "admin",
    description = "Makes a single-use invitation to register, valid for 7 days. Administrator only.",
    responses((status = 201, body = InvitationBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`not_admin`: the caller is not the administrator")))]
async fn create_invitation(
    State(s): State<HttpState>,
    client: ClientInfo,
    origin: Origin,
    user: CurrentUser,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, AppError> {
    let made = s.auth.create_invitation(user.user_id, &client).await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let url = invitation_url(host, origin.https, &made.token);
    Ok((StatusCode::CREATED, Json(InvitationBody { token: made.token, url, expires_at: made.expires_at })))
}

#[utoipa::path(get, path = "/api/v1/admin/invitations", tag = "admin",
    description = "The invitations made so far, newest first, used or not (never their tokens). Administrator only.",
    responses((status = 200, body = [InvitationView]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`not_admin`")))]
async fn list_invitations(
    State(s): State<HttpState>,
    user: CurrentUser,
) -> Result<Json<Vec<InvitationView>>, AppError> {
    Ok(Json(s.auth.invitations(user.user_id).await?))
}

#[utoipa::path(delete, path = "/api/v1/admin/invitations/{id}", tag = "admin",
    description = "Withdraws an unused invitation. Administrator only.",
    params(("id" = i64, Path, description = "The invitation")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such unused invitation")))]
async fn revoke_invitation(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    s.auth.revoke_invitation(user.user_id, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(create_invitation, list_invitations, revoke_invitation),
    components(schemas(InvitationBody, InvitationView, ErrorBody, ErrorDetail))
)]
struct AdminApi;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AdminApi::openapi()
}

#[cfg(test)]
mod tests {
    use super::invitation_url;

    #[test]
    fn the_link_uses_the_request_host_or_stays_relative() {
        assert_eq!(
            invitation_url(Some("mail.example:8080"), false, "t"),
            "http://mail.example:8080/register?invitation=t"
        );
        assert_eq!(invitation_url(Some("mail.example"), true, "t"), "https://mail.example/register?invitation=t");
        for odd in [None, Some(""), Some("evil.example/x"), Some("a b"), Some("u@evil.example")] {
            assert_eq!(invitation_url(odd, false, "t"), "/register?invitation=t", "{odd:?}");
        }
    }
}
