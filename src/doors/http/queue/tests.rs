//! The queue routes through `Router::oneshot` on the real services (SQLite file, blob
//! store): each user sees and steers only their own queued mail; another user's id is 404.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use crate::app;
use crate::config::Config;
use crate::domains::auth::{ClientInfo, LoginOutcome};
use crate::domains::mail::outbound::dkim::test_key;
use crate::doors::http::{HttpState, router};

async fn call(state: &HttpState, method: Method, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(state.clone()).oneshot(req.body(Body::empty()).expect("request")).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn login(state: &HttpState, name: &str) -> (i64, String) {
    let auth = &state.auth;
    let client = ClientInfo::local("test");
    let user = auth.create_user(name, "correct horse battery", &client).await.expect("user");
    let LoginOutcome::Session { token, .. } = auth.login(name, "correct horse battery", &client).await.expect("login")
    else {
        panic!("no second factor was set up");
    };
    (user.id, token)
}

#[tokio::test]
async fn each_user_sees_and_steers_only_their_own_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_owned();
    config.server.domain = "postcast.test".into();
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    test_key::install(dir.path(), &config.dkim.selector);
    let services = app::build(config).await.expect("services");
    let state = app::http_state(&services);
    let (alice_id, alice) = login(&state, "alice").await;
    let (_, bob) = login(&state, "bob").await;

    // No worker runs here, so the message stays queued.
    let raw = b"From: alice@postcast.test\r\nTo: x@far.test\r\nSubject: to the queue\r\n\r\nhi\r\n";
    let id = services
        .outbound
        .enqueue(Some(alice_id), "alice@postcast.test", &["x@far.test".to_string()], raw)
        .await
        .expect("enqueue");

    let (status, body) = call(&state, Method::GET, "/api/v1/mail/queue", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    let messages = body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{body}");
    assert_eq!(messages[0]["id"], id);
    assert_eq!(messages[0]["subject"], "to the queue");
    assert_eq!(messages[0]["status"], "queued");
    assert_eq!(messages[0]["recipients"][0]["address"], "x@far.test");
    assert_eq!(messages[0]["recipients"][0]["status"], "queued");

    let (status, body) = call(&state, Method::GET, "/api/v1/mail/queue", Some(&bob)).await;
    assert_eq!((status, body["messages"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let retry = format!("/api/v1/mail/queue/{id}/retry");
    let one = format!("/api/v1/mail/queue/{id}");
    let (status, body) = call(&state, Method::POST, &retry, Some(&bob)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    assert_eq!(call(&state, Method::DELETE, &one, Some(&bob)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&state, Method::POST, "/api/v1/mail/queue/nope/retry", Some(&alice)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(call(&state, Method::GET, "/api/v1/mail/queue", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&state, Method::POST, &retry, None).await.0, StatusCode::UNAUTHORIZED);

    assert_eq!(call(&state, Method::POST, &retry, Some(&alice)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&state, Method::DELETE, &one, Some(&alice)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&state, Method::DELETE, &one, Some(&alice)).await.0, StatusCode::NOT_FOUND);
    let (_, body) = call(&state, Method::GET, "/api/v1/mail/queue", Some(&alice)).await;
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(0));

    let (status, doc) = call(&state, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/mail/queue/{id}/retry"].is_object(), "routes are documented");
}
