//! Accounts end to end through the real binary: registration (the first account is the
//! administrator; then invitations while registration is closed), login, TOTP with one-time
//! codes and recovery codes, SMS codes through a loopback webhook, isolation between
//! users, rate limits and hostile input.

mod common;

use std::sync::{Arc, Mutex};

use common::{Server, authed};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use totp_rs::{Algorithm, Secret, TOTP};

const PW: &str = "correct horse battery";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn totp(secret: &str) -> TOTP {
    TOTP::new(Algorithm::SHA1, 6, 1, 30, Secret::Encoded(secret.into()).to_bytes().unwrap(), None, "x".into()).unwrap()
}

async fn post(s: &Server, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = s.client().post(s.url(path)).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn get(s: &Server, path: &str, token: &str) -> reqwest::Response {
    authed(&s.client(), Method::GET, s.url(path), token).send().await.unwrap()
}

#[tokio::test]
async fn register_login_totp_logout_and_one_time_codes() {
    let s = Server::start();
    let token = s.register_and_login("alice", PW).await;
    let me: Value = get(&s, "/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["address"], "alice@localhost");
    assert_eq!(me["totp_enabled"], false);

    // The cookie is safe: HttpOnly, SameSite=Strict.
    let r = post(&s, "/api/v1/auth/login", None, json!({"username":"alice","password":PW})).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");

    // TOTP enrolment, after confirming the password.
    s.reauth(&token, PW).await;
    let setup: Value = post(&s, "/api/v1/auth/totp/setup", Some(&token), json!({})).await.json().await.unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(setup["uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    assert!(setup["qr_svg"].as_str().unwrap().contains("<svg"));
    let t = totp(&secret);
    let r = post(&s, "/api/v1/auth/totp/confirm", Some(&token), json!({"code": "000000"})).await;
    assert_eq!(r.status(), 401, "a wrong code does not enrol");
    let enrol_code = t.generate(now());
    let r = post(&s, "/api/v1/auth/totp/confirm", Some(&token), json!({"code": enrol_code})).await;
    assert_eq!(r.status(), 200);
    let codes: Vec<String> =
        serde_json::from_value(r.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);

    // Logout ends the session.
    let r = post(&s, "/api/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(get(&s, "/api/v1/me", &token).await.status(), 401);

    // Login now needs the code.
    let login = |s: &Server| {
        let c = s.client();
        let url = s.url("/api/v1/auth/login");
        async move {
            let v: Value = c
                .post(url)
                .json(&json!({"username":"alice","password":PW}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(v.get("token").is_none(), "no session before the second factor: {v}");
            assert!(v["second_factor"].as_array().unwrap().contains(&json!("totp")));
            v["pending"].as_str().unwrap().to_owned()
        }
    };
    let pending = login(&s).await;
    // The code used for enrolment was used once already.
    let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": enrol_code})).await;
    assert_eq!(r.status(), 401, "a reused code is refused");
    let next = t.generate(now() + 30);
    let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": next})).await;
    assert_eq!(r.status(), 200);
    let token2 = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&s, "/api/v1/me", &token2).await.status(), 200);

    let pending = login(&s).await;
    let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": next})).await;
    assert_eq!(r.status(), 401, "the same code is refused in a new login too");

    // A recovery code works once.
    let pending = login(&s).await;
    let r = post(
        &s,
        "/api/v1/auth/login/second-factor",
        None,
        json!({"pending": pending, "code": codes[0].to_uppercase()}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let pending = login(&s).await;
    let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": codes[0]})).await;
    assert_eq!(r.status(), 401);
    let me: Value = get(&s, "/api/v1/me", &token2).await.json().await.unwrap();
    assert_eq!(me["recovery_codes_left"], 9);

    // The security log tells the story.
    let log: Value = get(&s, "/api/v1/security-log", &token2).await.json().await.unwrap();
    let kinds: Vec<&str> = log["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["register", "login", "totp_enabled", "logout", "second_factor_failed", "recovery_code_used"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

/// A loopback SMS gateway: records every `{to, text}` it is sent.
async fn sms_gateway() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                assert_eq!(headers["authorization"], "Bearer gateway-secret");
                sink.lock().unwrap().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

fn last_code(got: &Arc<Mutex<Vec<Value>>>) -> String {
    let v = got.lock().unwrap();
    let text = v.last().expect("an SMS was sent")["text"].as_str().unwrap().to_owned();
    text.split_whitespace().next().unwrap().to_owned()
}

fn sms_config(url: &str, ttl: u64) -> String {
    format!(
        "[sms]\nprovider = \"webhook\"\nwebhook_url = \"{url}\"\nwebhook_token = \"gateway-secret\"\n\
         resend_interval_seconds = 0\ncode_ttl_seconds = {ttl}\nmax_attempts = 3\n"
    )
}

#[tokio::test]
async fn sms_codes_through_a_webhook_gateway() {
    let (url, got) = sms_gateway().await;
    let s = Server::start_with(&sms_config(&url, 300));
    let token = s.register_and_login("bob", PW).await;
    s.reauth(&token, PW).await;
    let r = post(&s, "/api/v1/auth/sms/phone", Some(&token), json!({"phone": "12345"})).await;
    assert_eq!(r.status(), 422, "not E.164");
    let r = post(&s, "/api/v1/auth/sms/phone", Some(&token), json!({"phone": "+49 151 2345 6789"})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(got.lock().unwrap().last().unwrap()["to"], "+4915123456789");
    let r = post(&s, "/api/v1/auth/sms/confirm", Some(&token), json!({"code": last_code(&got)})).await;
    assert_eq!(r.status(), 200);
    let me: Value = get(&s, "/api/v1/me", &token).await.json().await.unwrap();
    assert_eq!(me["sms_enabled"], true);
    assert_eq!(me["phone"], "+491********89");

    // Login: the code is sent at once and logs in.
    let sent_before = got.lock().unwrap().len();
    let v: Value =
        post(&s, "/api/v1/auth/login", None, json!({"username":"bob","password":PW})).await.json().await.unwrap();
    assert_eq!(got.lock().unwrap().len(), sent_before + 1);
    let pending = v["pending"].as_str().unwrap();
    let r =
        post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": last_code(&got)})).await;
    assert_eq!(r.status(), 200);

    // Attempt limit: three wrong tries burn the pending login and the code.
    let v: Value =
        post(&s, "/api/v1/auth/login", None, json!({"username":"bob","password":PW})).await.json().await.unwrap();
    let pending = v["pending"].as_str().unwrap().to_owned();
    let good = last_code(&got);
    let bad = if good == "123456" { "654321" } else { "123456" };
    for _ in 0..3 {
        let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": bad})).await;
        assert_eq!(r.status(), 401);
    }
    let r = post(&s, "/api/v1/auth/login/second-factor", None, json!({"pending": pending, "code": good})).await;
    assert_eq!(r.status(), 401, "no more tries after the limit");
    drop(s);

    // Expiry: with a zero lifetime every code is already expired.
    let (url, got) = sms_gateway().await;
    let s = Server::start_with(&sms_config(&url, 0));
    let token = s.register_and_login("bob", PW).await;
    s.reauth(&token, PW).await;
    post(&s, "/api/v1/auth/sms/phone", Some(&token), json!({"phone": "+4915123456789"})).await;
    let r = post(&s, "/api/v1/auth/sms/confirm", Some(&token), json!({"code": last_code(&got)})).await;
    assert_eq!(r.status(), 401, "an expired code is refused");
}

#[tokio::test]
async fn every_account_route_refuses_another_users_data() {
    let s = Server::start();
    let a = s.register_and_login("anna", PW).await;
    let b = s.register_and_login("bert", PW).await;
    let c = s.client();
    s.reauth(&a, PW).await;
    let app: Value =
        post(&s, "/api/v1/app-passwords", Some(&a), json!({"name": "thunderbird"})).await.json().await.unwrap();
    let app_id = app["id"].as_i64().unwrap();
    assert_eq!(app["password"].as_str().unwrap().len(), 19);
    let sessions: Value = get(&s, "/api/v1/auth/sessions", &a).await.json().await.unwrap();
    let a_session = sessions["sessions"][0]["id"].as_i64().unwrap();

    // B cannot see or touch A's things.
    let r = authed(&c, Method::DELETE, s.url(&format!("/api/v1/app-passwords/{app_id}")), &b).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = authed(&c, Method::DELETE, s.url(&format!("/api/v1/auth/sessions/{a_session}")), &b).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let list: Value = get(&s, "/api/v1/app-passwords", &b).await.json().await.unwrap();
    assert_eq!(list["app_passwords"].as_array().unwrap().len(), 0);
    let list: Value = get(&s, "/api/v1/auth/sessions", &b).await.json().await.unwrap();
    assert!(list["sessions"].as_array().unwrap().iter().all(|x| x["id"].as_i64() != Some(a_session)));
    let me: Value = get(&s, "/api/v1/me", &b).await.json().await.unwrap();
    assert_eq!(me["username"], "bert");
    let log: Value = get(&s, "/api/v1/security-log", &b).await.json().await.unwrap();
    assert!(!log["events"].as_array().unwrap().iter().any(|e| e["kind"] == "app_password_created"));
    // B's password does not change A's.
    let r = post(&s, "/api/v1/auth/password", Some(&b), json!({"current": PW, "new": "another fine secret"})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(get(&s, "/api/v1/me", &a).await.status(), 200, "A's session lives on");

    // A's things still work for A; revoking A's session ends it.
    let r = authed(&c, Method::DELETE, s.url(&format!("/api/v1/app-passwords/{app_id}")), &a).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let a2 = s.login("anna", PW).await;
    let r = authed(&c, Method::DELETE, s.url(&format!("/api/v1/auth/sessions/{a_session}")), &a2).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&s, "/api/v1/me", &a).await.status(), 401);

    // Without a session nothing is served.
    for path in ["/api/v1/me", "/api/v1/auth/sessions", "/api/v1/app-passwords", "/api/v1/security-log"] {
        assert_eq!(c.get(s.url(path)).send().await.unwrap().status(), 401, "{path}");
    }
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let s = Server::start();
    let t1 = s.register_and_login("carl", PW).await;
    let t2 = s.login("carl", PW).await;
    let r =
        post(&s, "/api/v1/auth/password", Some(&t1), json!({"current": "wrong one!", "new": "new secret here"})).await;
    assert_eq!(r.status(), 401);
    let r = post(&s, "/api/v1/auth/password", Some(&t1), json!({"current": PW, "new": "new secret here"})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(get(&s, "/api/v1/me", &t1).await.status(), 200);
    assert_eq!(get(&s, "/api/v1/me", &t2).await.status(), 401, "the other session ended");
    let r = post(&s, "/api/v1/auth/login", None, json!({"username":"carl","password":PW})).await;
    assert_eq!(r.status(), 401);
    s.login("carl", "new secret here").await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let s = Server::start_with("[auth]\nattempts_per_ip_per_minute = 3\nregistrations_per_ip_per_hour = 2\n");
    s.register_and_login("dora", PW).await; // 1 registration, 1 login attempt
    for _ in 0..2 {
        let r = post(&s, "/api/v1/auth/login", None, json!({"username":"dora","password":"nope nope nope"})).await;
        assert_eq!(r.status(), 401);
    }
    let r = post(&s, "/api/v1/auth/login", None, json!({"username":"dora","password":PW})).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    post(&s, "/api/v1/auth/register", None, json!({"username":"eve1","password":PW})).await;
    let r = post(&s, "/api/v1/auth/register", None, json!({"username":"eve2","password":PW})).await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn hostile_input_gets_a_clear_4xx_and_stores_nothing() {
    let s = Server::start();
    let c = s.client();
    let url = s.url("/api/v1/auth/register");
    let send = |body: Vec<u8>, ct: Option<&'static str>| {
        let mut r = c.post(url.clone()).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
        (b"{\"username\": \"mallory\", \"password\": ".to_vec(), Some("application/json"), 400, "invalid_json"),
        (
            br#"{"username": 42, "password": "correct horse battery"}"#.to_vec(),
            Some("application/json"),
            422,
            "invalid_fields",
        ),
        (br#"{"username": "mallory"}"#.to_vec(), Some("application/json"), 422, "invalid_fields"),
        (
            b"{\"username\": \"mal\xff\xfe\", \"password\": \"correct horse battery\"}".to_vec(),
            Some("application/json"),
            400,
            "invalid_json",
        ),
        (
            br#"{"username": "mallory", "password": "correct horse battery"}"#.to_vec(),
            None,
            415,
            "unsupported_media_type",
        ),
        (
            br#"{"username": "mallory", "password": "correct horse battery"}"#.to_vec(),
            Some("text/plain"),
            415,
            "unsupported_media_type",
        ),
        (br#"{"username": "mallory", "password": "short"}"#.to_vec(), Some("application/json"), 422, "weak_password"),
        (
            br#"{"username": "../etc", "password": "correct horse battery"}"#.to_vec(),
            Some("application/json"),
            422,
            "invalid_username",
        ),
    ];
    for (body, ct, status, code) in cases {
        let r = send(body.clone(), ct).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{}", String::from_utf8_lossy(&body));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let mut huge = br#"{"username": "mallory", "password": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    huge.extend(br#""}"#);
    let r = send(huge, Some("application/json")).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "too_large");

    // Nothing was stored: the name is still free and nobody can log in as it. (A new
    // client: the server closed the connection that carried the oversized body.)
    let c = s.client();
    let r =
        c.post(s.url("/api/v1/auth/login")).json(&json!({"username":"mallory","password":PW})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    s.register_and_login("mallory", PW).await;
    // Unknown routes and garbage tokens are refused cleanly.
    assert_eq!(c.get(s.url("/api/v1/nope")).send().await.unwrap().status(), 404);
    let r = c.get(s.url("/api/v1/me")).header("authorization", "Bearer \"garbage;\\x00").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn health_metrics_openapi_and_security_headers() {
    let s = Server::start();
    let c = s.client();
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    s.register_and_login("hank", PW).await;
    let m = c.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("postcast_http_requests_total"), "{m}");
    let doc: Value = c.get(s.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in
        ["/api/v1/auth/login", "/api/v1/auth/totp/setup", "/api/v1/app-passwords", "/api/v1/profile", "/api/v1/prefs"]
    {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn twilio_provider_speaks_the_messages_api() {
    // A loopback stand-in for api.twilio.com records the form it is sent.
    let got = Arc::new(Mutex::new(Vec::<(String, String, String)>::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        axum::routing::post(
            move |axum::extract::Path(sid): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: String| {
                let sink = sink.clone();
                async move {
                    let auth = headers["authorization"].to_str().unwrap().to_owned();
                    sink.lock().unwrap().push((sid, auth, body));
                    (axum::http::StatusCode::CREATED, "{\"sid\":\"SM1\"}")
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let s = Server::start_with(&format!(
        "[sms]\nprovider = \"twilio\"\ntwilio_base_url = \"{base}\"\ntwilio_account_sid = \"AC123\"\n\
         twilio_auth_token = \"tok\"\ntwilio_from = \"+15550001111\"\n"
    ));
    let token = s.register_and_login("tina", PW).await;
    s.reauth(&token, PW).await;
    let r = post(&s, "/api/v1/auth/sms/phone", Some(&token), json!({"phone": "+49 151 2345 6789"})).await;
    assert_eq!(r.status(), 204);
    let (sid, auth, body) = got.lock().unwrap().last().cloned().expect("Twilio was called");
    assert_eq!(sid, "AC123");
    // Basic auth with the account SID and token: base64("AC123:tok").
    assert_eq!(auth, "Basic QUMxMjM6dG9r");
    assert!(body.contains("To=%2B4915123456789") && body.contains("From=%2B15550001111"), "{body}");
    let code = body.split("Body=").nth(1).unwrap()[..6].to_owned();
    let r = post(&s, "/api/v1/auth/sms/confirm", Some(&token), json!({"code": code})).await;
    assert_eq!(r.status(), 200, "the code Twilio carried confirms the phone");
}

/// `POST /api/v1/auth/register`; returns the status and the JSON answer.
async fn register(s: &Server, name: &str, invitation: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({"username": name, "password": PW});
    if let Some(token) = invitation {
        body["invitation"] = json!(token);
    }
    let r = post(s, "/api/v1/auth/register", None, body).await;
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_first_account_is_the_administrator_and_invites_the_others() {
    let s = Server::start_with("[auth]\nopen_registration = false\n");
    let (status, v) = register(&s, "ada", None).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"]["is_admin"], true, "the first account is the administrator: {v}");
    let ada = s.login("ada", PW).await;
    let me: Value = get(&s, "/api/v1/me", &ada).await.json().await.unwrap();
    assert_eq!(me["is_admin"], true);

    let (status, v) = register(&s, "bob", None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("registration_closed")), "{v}");
    let (status, v) = register(&s, "bob", Some("made-up-token")).await;
    assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_invitation")), "{v}");

    let r = post(&s, "/api/v1/admin/invitations", Some(&ada), json!({})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let inv: Value = r.json().await.unwrap();
    let token = inv["token"].as_str().expect("token").to_owned();
    assert_eq!(inv["url"], format!("http://{}/register?invitation={token}", s.http), "{inv}");
    let expires = inv["expires_at"].as_u64().expect("expires_at");
    assert!(expires > now() + 6 * 86_400 && expires <= now() + 7 * 86_400 + 5, "about a week: {inv}");
    let page = s.client().get(inv["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(page.status(), 200, "the link opens the register page");

    let (status, v) = register(&s, "bob", Some(&token)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"]["is_admin"], false);
    let (status, v) = register(&s, "carl", Some(&token)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_invitation")), "{v}");

    let bob = s.login("bob", PW).await;
    let r = post(&s, "/api/v1/admin/invitations", Some(&bob), json!({})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "only the administrator invites");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_admin");
    let r = post(&s, "/api/v1/admin/invitations", None, json!({})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // `postcast user invite` prints a link that works once.
    let cfg = s.config_path.clone().unwrap();
    let base = s.url("");
    let args = ["--config", cfg.to_str().unwrap(), "user", "invite", "--base-url", &base];
    let out = common::postcast_cli(s.data.path(), &args, None);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let cli_token = link.strip_prefix(&format!("{base}/register?invitation=")).expect("a register link").to_owned();
    assert_eq!(register(&s, "dora", Some(&cli_token)).await.0, StatusCode::CREATED);
    assert_eq!(register(&s, "erin", Some(&cli_token)).await.0, StatusCode::FORBIDDEN);

    // The administrator sees the invitations (never their tokens) and withdraws an unused one.
    let r = post(&s, "/api/v1/admin/invitations", Some(&ada), json!({})).await;
    let unused: Value = r.json().await.unwrap();
    let listed: Value = get(&s, "/api/v1/admin/invitations", &ada).await.json().await.unwrap();
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "two used and one unused: {listed:?}");
    assert!(!serde_json::to_string(&listed).unwrap().contains(unused["token"].as_str().unwrap()));
    assert!(listed[1]["used_at"].is_i64() && listed[2]["used_by"].is_i64(), "{listed:?}");
    let (used_id, unused_id) = (listed[1]["id"].as_i64().unwrap(), listed[0]["id"].as_i64().unwrap());
    assert!(listed[0]["used_at"].is_null());
    let del = |token: &str, id: i64| {
        s.client().delete(s.url(&format!("/api/v1/admin/invitations/{id}"))).bearer_auth(token.to_owned()).send()
    };
    assert_eq!(del(&bob, unused_id).await.unwrap().status(), StatusCode::FORBIDDEN, "only the administrator");
    assert_eq!(get(&s, "/api/v1/admin/invitations", &bob).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(del(&ada, used_id).await.unwrap().status(), StatusCode::NOT_FOUND, "a used one stays on record");
    assert_eq!(del(&ada, unused_id).await.unwrap().status(), StatusCode::NO_CONTENT);
    let (status, v) = register(&s, "fred", unused["token"].as_str()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_invitation")), "{v}");
}

#[tokio::test]
async fn open_registration_needs_no_invitation() {
    let s = Server::start_with("[auth]\nopen_registration = true\n");
    assert_eq!(register(&s, "ada", None).await.1["user"]["is_admin"], true);
    let (status, v) = register(&s, "bob", None).await;
    assert_eq!((status, &v["user"]["is_admin"]), (StatusCode::CREATED, &json!(false)), "{v}");
}

/// A login as `name` sending `headers`; the response's `Set-Cookie`.
async fn login_with(s: &Server, name: &str, password: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = s.client().post(s.url("/api/v1/auth/login")).json(&json!({"username": name, "password": password}));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn secure_cookie(r: &reqwest::Response) -> bool {
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("postcast_session="), "{cookie}");
    cookie.split(';').any(|a| a.trim().eq_ignore_ascii_case("secure"))
}

/// The addresses in the security log, newest first.
async fn logged_ips(s: &Server, token: &str) -> Vec<String> {
    let log: Value = get(s, "/api/v1/security-log", token).await.json().await.unwrap();
    log["events"].as_array().unwrap().iter().map(|e| e["ip"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_and_scheme_count() {
    let s = Server::start_with("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    s.register_and_login("ada", PW).await;
    let https = [("x-forwarded-proto", "https"), ("x-forwarded-for", "6.6.6.6, 198.51.100.7")];
    let r = login_with(&s, "ada", PW, &https).await;
    assert_eq!(r.status(), 200);
    assert!(secure_cookie(&r), "https through the proxy: Secure");
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let r = login_with(&s, "ada", PW, &[("x-forwarded-for", "198.51.100.7")]).await;
    assert!(!secure_cookie(&r), "plain http through the proxy: not Secure");
    // The client is the right-most address the proxy forwarded, not the proxy.
    assert_eq!(logged_ips(&s, &token).await[..2], ["198.51.100.7", "198.51.100.7"]);
    // The proxy is local; the client it forwards is not.
    let r = s.client().get(s.url("/metrics")).header("x-forwarded-for", "198.51.100.7").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.client().get(s.url("/metrics")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let s = Server::start_with("[auth]\nattempts_per_ip_per_minute = 3\n");
    let token = s.register_and_login("bea", PW).await; // 1 login attempt
    let r = login_with(&s, "bea", PW, &[("x-forwarded-proto", "https"), ("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(r.status(), 200);
    assert!(!secure_cookie(&r), "an untrusted peer's X-Forwarded-Proto makes nothing Secure");
    assert!(logged_ips(&s, &token).await.iter().all(|ip| ip == "127.0.0.1"));
    // A fresh X-Forwarded-For per attempt does not escape the per-address limit.
    let r = login_with(&s, "bea", "nope nope nope", &[("x-forwarded-for", "198.51.100.8")]).await;
    assert_eq!(r.status(), 401);
    let r = login_with(&s, "bea", PW, &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
