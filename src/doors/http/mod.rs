//! The HTTP door: the JSON API under `/api/v1`, the embedded web UI, `/healthz` and
//! `/metrics`. It turns requests into calls on domain services and domain errors into
//! [`AppError`]s; it holds no SQL and no business rule.
//!
//! Invariants: every `/api/v1` route except registration and login takes a
//! [`CurrentUser`], so it only ever sees that user's data (public profile cards too are
//! for logged-in users only); no handler logs a password, token, code or body.

pub mod auth;
pub mod compose;
pub mod contacts;
pub mod download;
pub mod error;
pub mod hls;
pub mod mail;
pub mod meta;
pub mod prefs;
pub mod profile;
pub mod queue;
pub mod session;
pub mod streams;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::app::Services;
pub use error::{ApiJson, AppError};
pub use session::CurrentUser;

/// What every handler gets: the services this door may call.
#[derive(Clone)]
pub struct HttpState {
    /// The domain services.
    pub services: Arc<Services>,
}

/// The whole HTTP application.
pub fn router(state: HttpState) -> Router {
    let json_limit = state.services.config.http.json_limit_bytes;
    let api = Router::new()
        .merge(auth::routes())
        .merge(profile::routes(&state))
        .merge(prefs::routes(&state))
        .merge(streams::routes())
        .merge(mail::routes())
        .merge(compose::routes(&state))
        .merge(contacts::routes(&state))
        .merge(queue::routes())
        .layer(DefaultBodyLimit::max(json_limit));
    Router::new()
        .nest("/api/v1", api)
        .merge(meta::routes())
        .merge(hls::routes())
        .merge(web::routes())
        .layer(axum::middleware::from_fn(meta::security_headers))
        .layer(axum::middleware::from_fn(meta::track_requests))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}
