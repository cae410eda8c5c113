//! Operational routes and cross-cutting middleware: `/healthz`, Prometheus `/metrics`,
//! the OpenAPI document, security headers (a strict Content-Security-Policy among them)
//! and request metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;

use super::{HttpState, Origin};

/// The page policy: nothing but our own scripts and styles; images may also be data:
/// and blob: URLs (QR codes, previews).
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; \
    style-src 'self'; script-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// `/healthz`, `/metrics` and `/api/v1/openapi.json`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
}

/// A dependency `/healthz` asks whether it answers (the database, ...).
pub trait Probe: Send + Sync {
    /// Its name in the report.
    fn name(&self) -> &'static str;
    /// Ok when it answers.
    fn check(&self) -> BoxFuture<'_, Result<(), Box<dyn std::error::Error + Send + Sync>>>;
}

/// 200 with one `NAME ok` line per dependency when all answer; 503 naming the ones that
/// do not otherwise.
async fn healthz(State(s): State<HttpState>) -> Response {
    let mut report = String::new();
    let mut healthy = true;
    for probe in s.probes.iter() {
        match probe.check().await {
            Ok(()) => report.push_str(&format!("{} ok\n", probe.name())),
            Err(e) => {
                tracing::error!(dependency = probe.name(), error = %e, "health check failed");
                report.push_str(&format!("{} unavailable\n", probe.name()));
                healthy = false;
            }
        }
    }
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, report).into_response()
}

/// Prometheus text, for loopback clients or a caller with `server.metrics_token`; 403
/// for anyone else. The number of banned networks is counted as the page is made.
async fn metrics(State(s): State<HttpState>, origin: Origin, headers: HeaderMap) -> Response {
    if !origin.is_loopback() && !bearer_matches(&headers, &s.settings.metrics_token) {
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    // Read at each scrape: bans end on their own and on the command line, not only here.
    match s.auth.banned_networks().await {
        Ok(n) => metrics::gauge!("postcast_auth_banned_networks").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count banned networks"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

/// Whether `headers` carry `Authorization: Bearer TOKEN` with TOKEN equal to a non-empty
/// `expected`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if !expected.is_empty() => bool::from(given.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// The whole API description, merged from each route module.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = super::auth::openapi();
    doc.merge(super::admin::openapi());
    doc.merge(super::profile::openapi());
    doc.merge(super::prefs::openapi());
    doc.merge(super::streams::openapi());
    doc.merge(super::mail::openapi());
    doc.merge(super::compose::openapi());
    doc.merge(super::contacts::openapi());
    doc.merge(super::queue::openapi());
    doc.info.title = "postcast API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description =
        Some("Mail and live streaming for self-hosters. Errors: {\"error\":{\"code\",\"message\"}}.".into());
    doc
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

fn set_default(resp: &mut Response, name: HeaderName, value: &'static str) {
    resp.headers_mut().entry(name).or_insert(HeaderValue::from_static(value));
}

/// Adds the security headers every response carries unless a handler chose otherwise.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut resp = next.run(req).await;
    set_default(&mut resp, header::CONTENT_SECURITY_POLICY, CSP);
    set_default(&mut resp, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(&mut resp, header::X_FRAME_OPTIONS, "DENY");
    set_default(&mut resp, header::REFERRER_POLICY, "no-referrer");
    set_default(&mut resp, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set_default(&mut resp, HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()");
    if is_api {
        set_default(&mut resp, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// Counts requests and their latency by route and status.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("postcast_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("postcast_http_request_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use futures::future::BoxFuture;
    use tower::ServiceExt;

    use super::Probe;
    use crate::app;
    use crate::config::Config;

    /// A dependency that answers or not, as told.
    struct Fixed(&'static str, bool);

    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }

        fn check(&self) -> BoxFuture<'_, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
            let up = self.1;
            Box::pin(async move { if up { Ok(()) } else { Err("connection refused".into()) } })
        }
    }

    async fn healthz(probes: Vec<Arc<dyn Probe>>) -> (StatusCode, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        let services = app::build(config).await.expect("services");
        let mut state = app::http_state(&services);
        state.probes = probes.into();
        let req = Request::builder().uri("/healthz").body(Body::empty()).expect("request");
        let resp = super::super::router(state).oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_names_each_dependency_and_fails_when_one_is_down() {
        let up: Vec<Arc<dyn Probe>> = vec![Arc::new(Fixed("database", true)), Arc::new(Fixed("blobs", true))];
        assert_eq!(healthz(up).await, (StatusCode::OK, "database ok\nblobs ok\n".to_owned()));
        let down: Vec<Arc<dyn Probe>> = vec![Arc::new(Fixed("database", true)), Arc::new(Fixed("blobs", false))];
        assert_eq!(
            healthz(down).await,
            (StatusCode::SERVICE_UNAVAILABLE, "database ok\nblobs unavailable\n".to_owned())
        );
    }

    /// The status of `GET /metrics` from `peer`, with `headers`, on a server whose
    /// `[server]` section is changed by `setup`.
    async fn metrics_status(setup: impl FnOnce(&mut Config), peer: &str, headers: &[(&str, &str)]) -> StatusCode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        setup(&mut config);
        let services = app::build(config).await.expect("services");
        let state = app::http_state(&services);
        let mut req = Request::builder().uri("/metrics");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Body::empty()).expect("request");
        let peer: std::net::SocketAddr = peer.parse().expect("peer");
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        super::super::router(state).oneshot(req).await.expect("infallible").status()
    }

    #[tokio::test]
    async fn metrics_answer_loopback_clients_and_the_token_only() {
        let none = |_: &mut Config| {};
        let token = |c: &mut Config| c.server.metrics_token = "s3cret-token".into();
        let proxied = |c: &mut Config| c.server.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
        let bearer = |t: &'static str| [("authorization", t)];
        assert_eq!(metrics_status(none, "127.0.0.1:5000", &[]).await, StatusCode::OK);
        assert_eq!(metrics_status(none, "[::1]:5000", &[]).await, StatusCode::OK);
        assert_eq!(metrics_status(none, "[::ffff:127.0.0.1]:5000", &[]).await, StatusCode::OK);
        assert_eq!(metrics_status(none, "192.0.2.1:5000", &[]).await, StatusCode::FORBIDDEN);
        // An empty token opens nothing.
        assert_eq!(metrics_status(none, "192.0.2.1:5000", &bearer("Bearer ")).await, StatusCode::FORBIDDEN);
        assert_eq!(metrics_status(token, "192.0.2.1:5000", &bearer("Bearer s3cret-token")).await, StatusCode::OK);
        assert_eq!(
            metrics_status(token, "192.0.2.1:5000", &bearer("Bearer s3cret-tokem")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(metrics_status(token, "192.0.2.1:5000", &bearer("Bearer s3cret")).await, StatusCode::FORBIDDEN);
        assert_eq!(metrics_status(token, "192.0.2.1:5000", &bearer("s3cret-token")).await, StatusCode::FORBIDDEN);
        // A loopback proxy forwarding an outside client does not make it local...
        let outside = [("x-forwarded-for", "192.0.2.1")];
        assert_eq!(metrics_status(proxied, "127.0.0.1:5000", &outside).await, StatusCode::FORBIDDEN);
        // ...and an untrusted outside peer cannot claim to be local.
        let claims_local = [("x-forwarded-for", "127.0.0.1")];
        assert_eq!(metrics_status(none, "192.0.2.1:5000", &claims_local).await, StatusCode::FORBIDDEN);
    }
}
