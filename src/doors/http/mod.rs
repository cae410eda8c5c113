//! The HTTP door: the JSON API under `/api/v1`, the embedded web UI, `/healthz` and
//! `/metrics`. It turns requests into calls on domain services and domain errors into
//! [`AppError`]s; it holds no SQL and no business rule.
//!
//! Invariants: every `/api/v1` route except registration and login takes a
//! [`CurrentUser`], so it only ever sees that user's data (public profile cards too are
//! for logged-in users only); no handler logs a password, token, code or body.

pub mod admin;
pub mod auth;
pub mod compose;
pub mod contacts;
pub mod download;
pub mod error;
pub mod hls;
pub mod mail;
pub mod meta;
pub mod origin;
pub mod prefs;
pub mod profile;
pub mod queue;
pub mod session;
pub mod streams;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::domains::auth::AuthService;
use crate::domains::contacts::ContactsService;
use crate::domains::mail::MailService;
use crate::domains::mail::outbound::OutboundQueue;
use crate::domains::prefs::PrefsService;
use crate::domains::profile::ProfileService;
use crate::domains::stream::StreamService;
use crate::platform::config::Cidr;
pub use error::{ApiJson, AppError};
pub use meta::Probe;
pub use origin::Origin;
pub use session::CurrentUser;

/// What every handler gets: the services this door calls, by name, and its settings.
/// Nothing else (no database, no blob store, no bus) is reachable from a handler.
#[derive(Clone)]
pub struct HttpState {
    /// Accounts, sessions and second factors.
    pub auth: AuthService,
    /// Profiles and avatars.
    pub profile: ProfileService,
    /// Preference documents.
    pub prefs: PrefsService,
    /// Live streams, recordings and HLS.
    pub stream: StreamService,
    /// The mail store.
    pub mail: MailService,
    /// Contact books and groups.
    pub contacts: ContactsService,
    /// The outbound queue.
    pub outbound: OutboundQueue,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// What `/healthz` asks.
    pub probes: Arc<[Arc<dyn Probe>]>,
    /// The door's settings.
    pub settings: Arc<HttpSettings>,
}

/// The settings the HTTP door reads.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest JSON body.
    pub json_limit_bytes: usize,
    /// Largest upload (avatars, attachments, vCards).
    pub upload_limit_bytes: usize,
    /// Session cookie lifetime.
    pub session_idle_hours: u64,
    /// Reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Bearer token that opens `/metrics` to non-loopback clients; empty: none.
    pub metrics_token: String,
    /// The keyframe interval OBS is told to use (the stream chunk length).
    pub keyframe_seconds: f64,
}

impl HttpSettings {
    /// The door's settings from `[http]`, `[auth]`, `[server]` and `[stream]`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            json_limit_bytes: config.http.json_limit_bytes,
            upload_limit_bytes: config.http.upload_limit_bytes,
            session_idle_hours: config.auth.session_idle_hours,
            trusted_proxies: config.server.trusted_proxies.clone(),
            metrics_token: config.server.metrics_token.clone(),
            keyframe_seconds: config.stream.chunk_seconds,
        }
    }
}

/// The whole HTTP application.
pub fn router(state: HttpState) -> Router {
    let json_limit = state.settings.json_limit_bytes;
    let api = Router::new()
        .merge(auth::routes())
        .merge(admin::routes())
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
