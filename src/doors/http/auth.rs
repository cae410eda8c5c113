//! Account routes: registration, login and its second step, logout, `me`, password
//! confirmation for sensitive changes (`/auth/reauth`), password change, sessions, TOTP
//! and SMS enrolment, recovery codes, app passwords and the security log. Each handler
//! calls the auth service and maps [`AuthError`] to HTTP.
//!
//! Invariant: the handlers that add a way into the account (TOTP and SMS enrolment, app
//! passwords) take a [`RecentAuth`], so they answer 403 `reauth_required` unless the
//! session confirmed the password within the last ten minutes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use super::session::{RecentAuth, SESSION_COOKIE};
use super::{ApiJson, AppError, CurrentUser, HttpState, Origin};
use crate::domains::auth::password;
use crate::domains::auth::{
    AppPasswordView, AuthError, ClientInfo, LoginOutcome, SecurityEvent, SessionView, TotpSetup, User,
};

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        use AuthError as E;
        let msg = e.to_string();
        match e {
            E::InvalidCredentials => AppError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", msg),
            E::RateLimited(secs) => AppError::too_many(secs),
            E::Busy(_) => AppError::too_many(password::HASH_QUEUE_WAIT.as_secs().max(1)),
            E::UsernameTaken => AppError::new(StatusCode::CONFLICT, "username_taken", msg),
            E::InvalidUsername(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_username", msg),
            E::WeakPassword(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "weak_password", msg),
            E::RegistrationClosed => AppError::new(StatusCode::FORBIDDEN, "registration_closed", msg),
            E::InvalidInvitation => AppError::new(StatusCode::FORBIDDEN, "invalid_invitation", msg),
            E::NotAdmin => AppError::new(StatusCode::FORBIDDEN, "not_admin", msg),
            E::InvalidCode => AppError::new(StatusCode::UNAUTHORIZED, "invalid_code", msg),
            E::PendingExpired => AppError::new(StatusCode::UNAUTHORIZED, "login_expired", msg),
            E::FactorState(_) => AppError::new(StatusCode::CONFLICT, "factor_state", msg),
            E::InvalidPhone => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_phone", msg),
            E::SmsFailed => AppError::new(StatusCode::BAD_GATEWAY, "sms_failed", msg),
            E::Disabled => AppError::new(StatusCode::FORBIDDEN, "account_disabled", msg),
            E::NotFound(what) => AppError::not_found(what),
            E::InvalidInput(_) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", msg),
            E::ReauthRequired => AppError::new(StatusCode::FORBIDDEN, "reauth_required", msg),
            E::SmsUnavailable(_) => AppError::new(StatusCode::CONFLICT, "sms_unavailable", msg),
            E::Db(e) => AppError::internal(e),
            E::Internal(e) => AppError::internal(e),
        }
    }
}

/// The account routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/login/second-factor", post(login_second_factor))
        .route("/auth/login/sms", post(login_sms))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/auth/reauth", post(reauth))
        .route("/auth/password", post(change_password))
        .route("/auth/sessions", get(sessions))
        .route("/auth/sessions/{id}", delete(revoke_session))
        .route("/auth/totp/setup", post(totp_setup))
        .route("/auth/totp/confirm", post(totp_confirm))
        .route("/auth/totp/disable", post(totp_disable))
        .route("/auth/recovery-codes", post(recovery_codes))
        .route("/auth/sms/phone", post(sms_phone))
        .route("/auth/sms/confirm", post(sms_confirm))
        .route("/auth/sms/disable", post(sms_disable))
        .route("/app-passwords", get(list_app_passwords).post(create_app_password))
        .route("/app-passwords/{id}", delete(revoke_app_password))
        .route("/security-log", get(security_log))
}

/// Name and password.
#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    /// Login name (or full address for login).
    pub username: String,
    /// Password.
    pub password: String,
}

/// A new account.
#[derive(Deserialize, ToSchema)]
pub struct Registration {
    /// Login name; it becomes the mail address.
    pub username: String,
    /// Password.
    pub password: String,
    /// An invitation token from the administrator, needed while registration is closed.
    #[serde(default)]
    pub invitation: Option<String>,
}

/// `{user}`.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    /// The account.
    pub user: User,
}

/// A finished login.
#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    /// Session token (also set as the cookie); send as `Authorization: Bearer`.
    pub token: String,
    /// The account.
    pub user: User,
}

/// A login waiting for its second factor.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorBody {
    /// Factors accepted: `totp`, `sms`, `recovery`.
    pub second_factor: Vec<&'static str>,
    /// Handle for `POST /auth/login/second-factor`.
    pub pending: String,
}

/// Second step of a login.
#[derive(Deserialize, ToSchema)]
pub struct SecondFactorRequest {
    /// From the first step.
    pub pending: String,
    /// TOTP code, SMS code or recovery code.
    pub code: String,
}

/// `{pending}`.
#[derive(Deserialize, ToSchema)]
pub struct PendingRequest {
    /// From the first step.
    pub pending: String,
}

/// `{code}`.
#[derive(Deserialize, ToSchema)]
pub struct CodeRequest {
    /// The code.
    pub code: String,
}

/// `{password}`.
#[derive(Deserialize, ToSchema)]
pub struct PasswordRequest {
    /// The account password.
    pub password: String,
}

/// Password change.
#[derive(Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// The current password.
    pub current: String,
    /// The new one.
    pub new: String,
    /// Also revoke every app password (mail programs then need new ones). Default true.
    #[serde(default = "yes")]
    pub revoke_app_passwords: bool,
}

fn yes() -> bool {
    true
}

/// Until when the session may make sensitive changes.
#[derive(Serialize, ToSchema)]
pub struct ReauthBody {
    /// Unix seconds.
    pub reauth_until: i64,
}

/// `{phone}`.
#[derive(Deserialize, ToSchema)]
pub struct PhoneRequest {
    /// Phone number with country code.
    pub phone: String,
}

/// `{name}`.
#[derive(Deserialize, ToSchema)]
pub struct NameRequest {
    /// A label.
    pub name: String,
}

/// `{recovery_codes}`.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesBody {
    /// One-time codes; shown once.
    pub recovery_codes: Vec<String>,
}

/// The account with its factor state.
#[derive(Serialize, ToSchema)]
pub struct MeBody {
    /// The account.
    #[serde(flatten)]
    pub user: User,
    /// Unused recovery codes.
    pub recovery_codes_left: u64,
    /// Whether SMS codes can be turned on (this server has an SMS provider).
    pub sms_available: bool,
}

/// A new app password.
#[derive(Serialize, ToSchema)]
pub struct NewAppPasswordBody {
    /// The stored record.
    #[serde(flatten)]
    pub app_password: AppPasswordView,
    /// The secret, shown this once.
    pub password: String,
}

/// The session cookie; `Secure` when the browser came over HTTPS (through a trusted proxy).
fn session_cookie(state: &HttpState, token: String, origin: &Origin) -> Cookie<'static> {
    let hours = state.settings.session_idle_hours;
    Cookie::build((SESSION_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(origin.https)
        .path("/")
        .max_age(time_hours(hours))
        .build()
}

fn time_hours(h: u64) -> time::Duration {
    time::Duration::hours(h.min(24 * 365) as i64)
}

fn logged_in(state: &HttpState, origin: &Origin, jar: CookieJar, token: String, user: User) -> Response {
    let jar = jar.add(session_cookie(state, token.clone(), origin));
    (jar, Json(SessionBody { token, user })).into_response()
}

#[utoipa::path(post, path = "/api/v1/auth/register", request_body = Registration,
    description = "The first account of the server is its administrator; after it, registration needs \
        `auth.open_registration` or an invitation (403 `registration_closed`, `invalid_invitation`).",
    responses((status = 201, body = UserBody), (status = 403, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody),
              (status = 422, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
async fn register(
    State(s): State<HttpState>,
    client: ClientInfo,
    ApiJson(c): ApiJson<Registration>,
) -> Result<impl IntoResponse, AppError> {
    let user = s.auth.register(&c.username, &c.password, c.invitation.as_deref(), &client).await?;
    Ok((StatusCode::CREATED, Json(UserBody { user })))
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = Credentials,
    responses((status = 200, description = "SessionBody, or SecondFactorBody when a second factor is on"),
              (status = 401, body = super::error::ErrorBody,
                description = "`invalid_credentials`: unknown name, disabled account or wrong password, alike"),
              (status = 429, body = super::error::ErrorBody, description = "`rate_limited` with `Retry-After`: \
                too many attempts from this address, too many failures on this account from this network, \
                or the network is banned")))]
async fn login(
    State(s): State<HttpState>,
    client: ClientInfo,
    origin: Origin,
    jar: CookieJar,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Response, AppError> {
    match s.auth.login(&c.username, &c.password, &client).await? {
        LoginOutcome::Session { token, user } => Ok(logged_in(&s, &origin, jar, token, user)),
        LoginOutcome::SecondFactor { pending, methods } => {
            Ok(Json(SecondFactorBody { second_factor: methods, pending }).into_response())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login/second-factor", request_body = SecondFactorRequest,
    responses((status = 200, body = SessionBody), (status = 401, body = super::error::ErrorBody)))]
async fn login_second_factor(
    State(s): State<HttpState>,
    client: ClientInfo,
    origin: Origin,
    jar: CookieJar,
    ApiJson(r): ApiJson<SecondFactorRequest>,
) -> Result<Response, AppError> {
    let (token, user) = s.auth.login_second_factor(&r.pending, &r.code, &client).await?;
    Ok(logged_in(&s, &origin, jar, token, user))
}

#[utoipa::path(post, path = "/api/v1/auth/login/sms", request_body = PendingRequest,
    responses((status = 204), (status = 429, body = super::error::ErrorBody)))]
async fn login_sms(
    State(s): State<HttpState>,
    client: ClientInfo,
    ApiJson(r): ApiJson<PendingRequest>,
) -> Result<StatusCode, AppError> {
    s.auth.send_login_sms(&r.pending, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", responses((status = 204)))]
async fn logout(
    State(s): State<HttpState>,
    client: ClientInfo,
    origin: Origin,
    jar: CookieJar,
    user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    s.auth.logout(&user.token, &client).await?;
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/").secure(origin.https).build());
    Ok((jar, StatusCode::NO_CONTENT))
}

#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = MeBody), (status = 401, body = super::error::ErrorBody)))]
async fn me(State(s): State<HttpState>, user: CurrentUser) -> Result<Json<MeBody>, AppError> {
    let u = s.auth.me(user.user_id).await?;
    let left = if u.has_second_factor() { s.auth.recovery_codes_left(user.user_id).await? } else { 0 };
    Ok(Json(MeBody { user: u, recovery_codes_left: left, sms_available: s.auth.sms_available() }))
}

#[utoipa::path(post, path = "/api/v1/auth/reauth", request_body = PasswordRequest,
    description = "Confirms the password: for ten minutes this session may enrol second factors, \
        create app passwords and add forwarding filters (otherwise 403 `reauth_required`).",
    responses((status = 200, body = ReauthBody), (status = 401, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody)))]
async fn reauth(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    ApiJson(r): ApiJson<PasswordRequest>,
) -> Result<Json<ReauthBody>, AppError> {
    let reauth_until = s.auth.reauthenticate(user.user_id, user.session_id, &r.password, &client).await?;
    Ok(Json(ReauthBody { reauth_until }))
}

#[utoipa::path(post, path = "/api/v1/auth/password", request_body = ChangePasswordRequest,
    description = "Ends the other sessions and, unless `revoke_app_passwords` is false, every app password.",
    responses((status = 204), (status = 401, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
async fn change_password(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    ApiJson(r): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, AppError> {
    s.auth.change_password(user.user_id, user.session_id, &r.current, &r.new, r.revoke_app_passwords, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/sessions", responses((status = 200, description = "{sessions: [SessionView]}")))]
async fn sessions(State(s): State<HttpState>, user: CurrentUser) -> Result<impl IntoResponse, AppError> {
    let list: Vec<SessionView> = s.auth.sessions(user.user_id, user.session_id).await?;
    Ok(Json(json!({ "sessions": list })))
}

#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
async fn revoke_session(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    s.auth.revoke_session(user.user_id, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/totp/setup",
    responses((status = 200, body = TotpSetup), (status = 403, description = "reauth_required", body = super::error::ErrorBody)))]
async fn totp_setup(State(s): State<HttpState>, RecentAuth(user): RecentAuth) -> Result<Json<TotpSetup>, AppError> {
    Ok(Json(s.auth.totp_setup(user.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodesBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "reauth_required", body = super::error::ErrorBody)))]
async fn totp_confirm(
    State(s): State<HttpState>,
    client: ClientInfo,
    RecentAuth(user): RecentAuth,
    ApiJson(r): ApiJson<CodeRequest>,
) -> Result<Json<RecoveryCodesBody>, AppError> {
    let recovery_codes = s.auth.totp_confirm(user.user_id, &r.code, &client).await?;
    Ok(Json(RecoveryCodesBody { recovery_codes }))
}

#[utoipa::path(post, path = "/api/v1/auth/totp/disable", request_body = PasswordRequest, responses((status = 204)))]
async fn totp_disable(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    ApiJson(r): ApiJson<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    s.auth.totp_disable(user.user_id, &r.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/recovery-codes", request_body = PasswordRequest,
    responses((status = 200, body = RecoveryCodesBody)))]
async fn recovery_codes(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    ApiJson(r): ApiJson<PasswordRequest>,
) -> Result<Json<RecoveryCodesBody>, AppError> {
    let recovery_codes = s.auth.regenerate_recovery_codes(user.user_id, &r.password, &client).await?;
    Ok(Json(RecoveryCodesBody { recovery_codes }))
}

#[utoipa::path(post, path = "/api/v1/auth/sms/phone", request_body = PhoneRequest,
    responses((status = 204), (status = 403, description = "reauth_required", body = super::error::ErrorBody),
        (status = 409, description = "sms_unavailable", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
async fn sms_phone(
    State(s): State<HttpState>,
    client: ClientInfo,
    RecentAuth(user): RecentAuth,
    ApiJson(r): ApiJson<PhoneRequest>,
) -> Result<StatusCode, AppError> {
    s.auth.sms_start(user.user_id, &r.phone, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/sms/confirm", request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodesBody), (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "reauth_required", body = super::error::ErrorBody)))]
async fn sms_confirm(
    State(s): State<HttpState>,
    client: ClientInfo,
    RecentAuth(user): RecentAuth,
    ApiJson(r): ApiJson<CodeRequest>,
) -> Result<Json<RecoveryCodesBody>, AppError> {
    let recovery_codes = s.auth.sms_confirm(user.user_id, &r.code, &client).await?;
    Ok(Json(RecoveryCodesBody { recovery_codes }))
}

#[utoipa::path(post, path = "/api/v1/auth/sms/disable", request_body = PasswordRequest, responses((status = 204)))]
async fn sms_disable(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    ApiJson(r): ApiJson<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    s.auth.sms_disable(user.user_id, &r.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/app-passwords", responses((status = 200, description = "{app_passwords: [AppPasswordView]}")))]
async fn list_app_passwords(State(s): State<HttpState>, user: CurrentUser) -> Result<impl IntoResponse, AppError> {
    let list = s.auth.app_passwords(user.user_id).await?;
    Ok(Json(json!({ "app_passwords": list })))
}

#[utoipa::path(post, path = "/api/v1/app-passwords", request_body = NameRequest,
    responses((status = 201, body = NewAppPasswordBody),
        (status = 403, description = "reauth_required", body = super::error::ErrorBody)))]
async fn create_app_password(
    State(s): State<HttpState>,
    client: ClientInfo,
    RecentAuth(user): RecentAuth,
    ApiJson(r): ApiJson<NameRequest>,
) -> Result<impl IntoResponse, AppError> {
    let (app_password, password) = s.auth.create_app_password(user.user_id, &r.name, &client).await?;
    Ok((StatusCode::CREATED, Json(NewAppPasswordBody { app_password, password })))
}

#[utoipa::path(delete, path = "/api/v1/app-passwords/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)))]
async fn revoke_app_password(
    State(s): State<HttpState>,
    client: ClientInfo,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    s.auth.revoke_app_password(user.user_id, id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/security-log", responses((status = 200, description = "{events: [SecurityEvent]}")))]
async fn security_log(State(s): State<HttpState>, user: CurrentUser) -> Result<impl IntoResponse, AppError> {
    let events: Vec<SecurityEvent> = s.auth.security_log(user.user_id, 200).await?;
    Ok(Json(json!({ "events": events })))
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(
        register,
        login,
        login_second_factor,
        login_sms,
        logout,
        me,
        reauth,
        change_password,
        sessions,
        revoke_session,
        totp_setup,
        totp_confirm,
        totp_disable,
        recovery_codes,
        sms_phone,
        sms_confirm,
        sms_disable,
        list_app_passwords,
        create_app_password,
        revoke_app_password,
        security_log
    ),
    components(schemas(
        Credentials,
        Registration,
        UserBody,
        SessionBody,
        SecondFactorBody,
        SecondFactorRequest,
        PendingRequest,
        CodeRequest,
        PasswordRequest,
        ChangePasswordRequest,
        ReauthBody,
        PhoneRequest,
        NameRequest,
        RecoveryCodesBody,
        MeBody,
        NewAppPasswordBody,
        User,
        SessionView,
        TotpSetup,
        AppPasswordView,
        SecurityEvent,
        super::error::ErrorBody,
        super::error::ErrorDetail
    ))
)]
pub struct AuthApi;

/// The OpenAPI description of the account routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AuthApi::openapi()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, header};
    use tower::ServiceExt;

    use crate::app;
    use crate::config::Config;
    use crate::domains::auth::ClientInfo;
    use crate::doors::http::router;

    /// The `Set-Cookie` of a login from `peer` with `headers`, on a server trusting the
    /// proxies `trusted`.
    async fn login_cookie(trusted: &[&str], peer: &str, headers: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.trusted_proxies = trusted.iter().map(|t| t.parse().expect("cidr")).collect();
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        let services = app::build(config).await.expect("services");
        let state = app::http_state(&services);
        state.auth.create_user("ada", "correct horse battery", &ClientInfo::local("test")).await.expect("user");
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req =
            req.body(Body::from(r#"{"username":"ada","password":"correct horse battery"}"#)).expect("request");
        req.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().expect("peer")));
        let resp = router(state).oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 200);
        resp.headers()[header::SET_COOKIE].to_str().expect("ascii").to_owned()
    }

    fn is_secure(cookie: &str) -> bool {
        cookie.split(';').any(|a| a.trim().eq_ignore_ascii_case("secure"))
    }

    #[tokio::test]
    async fn session_cookies_are_secure_when_a_trusted_proxy_says_https() {
        let https = [("x-forwarded-proto", "https")];
        let cookie = login_cookie(&["127.0.0.1"], "127.0.0.1:4000", &https).await;
        assert!(cookie.starts_with("postcast_session=") && is_secure(&cookie), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        for (trusted, peer, headers) in [
            (&["127.0.0.1"][..], "127.0.0.1:4000", &[("x-forwarded-proto", "http")][..]),
            (&["127.0.0.1"][..], "127.0.0.1:4000", &[][..]),
            (&["127.0.0.1"][..], "192.0.2.1:4000", &https[..]),
            (&[][..], "127.0.0.1:4000", &https[..]),
        ] {
            let cookie = login_cookie(trusted, peer, headers).await;
            assert!(!is_secure(&cookie), "{trusted:?} {peer} {headers:?}: {cookie}");
        }
    }
}
