//! Sensitive account changes and secrets at rest, through the real binary: enrolling a
//! second factor, changing the SMS phone, creating an app password and adding a
//! forwarding filter need the password confirmed within ten minutes (403
//! `reauth_required` otherwise); a password change revokes the app passwords unless told
//! to keep them (checked with SMTP AUTH); the database holds no TOTP secret, recovery code
//! or stream key in the clear (the SQLite file is read here), rows from before sealing are
//! sealed at start, and logins with TOTP and recovery codes still work; SMS with the `log`
//! provider is for loopback and test set-ups only.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{PW, Server};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn totp(secret: &str) -> TOTP {
    TOTP::new(Algorithm::SHA1, 6, 1, 30, Secret::Encoded(secret.into()).to_bytes().unwrap(), None, "x".into()).unwrap()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Sends `body` (if any) with `token`; the status and the JSON answer.
async fn call(s: &Server, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = s.client().request(method, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The server's SQLite database, opened beside it.
async fn database(s: &Server) -> DatabaseConnection {
    let url = format!("sqlite://{}?mode=rw", s.data.path().join("postcast.db").display());
    sea_orm::Database::connect(url).await.unwrap()
}

/// Every row of `sql`'s first column, as text.
async fn column(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
}

/// What a sensitive route answers without a recent confirmation.
fn assert_reauth_required((status, body): &(StatusCode, Value), what: &str) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(body["error"]["code"], "reauth_required", "{what}: {body}");
}

/// A preference document with one filter that forwards to `to`.
fn forwarding_prefs(to: &str) -> Value {
    json!({"mail": {"filters": [{"match": {"subject": "invoice"}, "forward": to}]}})
}

/// Tries each sensitive change once (the filter forwards to `to`); answers what each
/// route said.
async fn sensitive_changes(s: &Server, token: &str, to: &str) -> Vec<(&'static str, (StatusCode, Value))> {
    vec![
        ("TOTP setup", call(s, Method::POST, "/api/v1/auth/totp/setup", token, Some(json!({}))).await),
        ("TOTP confirm", call(s, Method::POST, "/api/v1/auth/totp/confirm", token, Some(json!({"code": "1"}))).await),
        (
            "SMS phone",
            call(s, Method::POST, "/api/v1/auth/sms/phone", token, Some(json!({"phone": "+4915123456789"}))).await,
        ),
        ("SMS confirm", call(s, Method::POST, "/api/v1/auth/sms/confirm", token, Some(json!({"code": "1"}))).await),
        ("app password", call(s, Method::POST, "/api/v1/app-passwords", token, Some(json!({"name": "mutt"}))).await),
        ("forwarding filter", call(s, Method::PUT, "/api/v1/prefs", token, Some(forwarding_prefs(to))).await),
    ]
}

#[tokio::test]
async fn sensitive_changes_need_the_password_confirmed_within_ten_minutes() {
    let s = Server::start();
    let token = s.register_and_login("ada", PW).await;

    // A fresh login is not enough.
    for (what, answer) in sensitive_changes(&s, &token, "thief@elsewhere.example").await {
        assert_reauth_required(&answer, what);
    }
    let (_, prefs) = call(&s, Method::GET, "/api/v1/prefs", &token, None).await;
    assert_eq!(prefs, json!({}), "the refused filter was not stored");
    // Other preferences, and filters that do not forward, need nothing.
    let plain = json!({"theme": "dark", "mail": {"filters": [{"match": {"subject": "x"}, "label": "X"}]}});
    let (status, _) = call(&s, Method::PUT, "/api/v1/prefs", &token, Some(plain)).await;
    assert_eq!(status, StatusCode::OK);

    // A wrong password confirms nothing.
    let (status, body) =
        call(&s, Method::POST, "/api/v1/auth/reauth", &token, Some(json!({"password": "not my password"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    assert_reauth_required(&call(&s, Method::POST, "/api/v1/auth/totp/setup", &token, Some(json!({}))).await, "TOTP");

    // The right one opens ten minutes for this session only.
    let other = s.login("ada", PW).await;
    let (status, body) = call(&s, Method::POST, "/api/v1/auth/reauth", &token, Some(json!({"password": PW}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = body["reauth_until"].as_i64().unwrap();
    assert!((now() + 595..=now() + 600).contains(&until), "ten minutes: {until} vs {}", now());
    let answers = sensitive_changes(&s, &token, "me@elsewhere.example").await;
    for (what, (status, body)) in &answers {
        assert_ne!(body["error"]["code"], "reauth_required", "{what}: {status} {body}");
    }
    assert_eq!(answers[0].1.0, StatusCode::OK, "TOTP setup: {}", answers[0].1.1);
    assert_eq!(answers[2].1.0, StatusCode::NO_CONTENT, "SMS phone: {}", answers[2].1.1);
    assert_eq!(answers[4].1.0, StatusCode::CREATED, "app password: {}", answers[4].1.1);
    assert_eq!(answers[5].1.0, StatusCode::OK, "forwarding filter: {}", answers[5].1.1);
    let (_, prefs) = call(&s, Method::GET, "/api/v1/prefs", &token, None).await;
    assert_eq!(prefs["mail"]["filters"][0]["forward"], "me@elsewhere.example");
    assert_reauth_required(
        &call(&s, Method::POST, "/api/v1/app-passwords", &other, Some(json!({"name": "x"}))).await,
        "another session of the same user",
    );
    // Keeping or removing the forwarding filter needs nothing.
    let (status, _) = call(&s, Method::PATCH, "/api/v1/prefs", &other, Some(json!({"theme": "light", "x": 1}))).await;
    assert_eq!(status, StatusCode::OK);

    // Ten minutes later (the session's time moved back, as the clock cannot be): asked again.
    let db = database(&s).await;
    execute(&db, &format!("UPDATE sessions SET reauth_until = {} WHERE reauth_until IS NOT NULL", now() - 1)).await;
    for (what, answer) in sensitive_changes(&s, &token, "thief@elsewhere.example").await {
        assert_reauth_required(&answer, what);
    }
    let (_, prefs) = call(&s, Method::GET, "/api/v1/prefs", &token, None).await;
    assert_eq!(prefs["mail"]["filters"][0]["forward"], "me@elsewhere.example", "the new target was not stored");
    let log: Value = call(&s, Method::GET, "/api/v1/security-log", &token, None).await.1;
    let kinds: Vec<&str> = log["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"reauthenticated") && kinds.contains(&"password_check_failed"), "{kinds:?}");
}

/// Whether SMTP AUTH PLAIN as `user` with `password` succeeds on the submissions door.
fn smtp_auth(addr: SocketAddr, user: &str, password: &str) -> bool {
    let out = Command::new("swaks")
        .args(["--server", &addr.ip().to_string(), "--port", &addr.port().to_string(), "--helo", "client.test"])
        .args(["--tlsc", "--auth", "PLAIN", "--auth-user", user, "--auth-password", password])
        .args(["--quit-after", "AUTH", "--timeout", "20"])
        .output()
        .expect("swaks is installed (apt-get install swaks)");
    let text = String::from_utf8_lossy(&out.stdout);
    // swaks marks what the server said over TLS with `<~` (`<~*` for an error).
    let said = |code: &str| {
        text.lines().any(|l| l.starts_with("<~") && l[2..].trim_start_matches(['*', ' ']).starts_with(code))
    };
    let ok = said("235");
    assert!(ok || said("535"), "neither accepted nor refused:\n{text}");
    ok
}

#[tokio::test]
async fn a_password_change_revokes_app_passwords_unless_asked_to_keep_them() {
    let s = Server::start();
    let smtp = s.submissions.unwrap();
    let token = s.register_and_login("carl", PW).await;
    s.reauth(&token, PW).await;
    let (status, app) = call(&s, Method::POST, "/api/v1/app-passwords", &token, Some(json!({"name": "mutt"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let app_pw = app["password"].as_str().unwrap().to_owned();
    assert!(smtp_auth(smtp, "carl", &app_pw), "the new app password works");

    // By default every app password goes with the old password.
    let change = json!({"current": PW, "new": "second secret here"});
    let (status, _) = call(&s, Method::POST, "/api/v1/auth/password", &token, Some(change)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!smtp_auth(smtp, "carl", &app_pw), "the app password was revoked");
    let (_, list) = call(&s, Method::GET, "/api/v1/app-passwords", &token, None).await;
    assert_eq!(list["app_passwords"], json!([]));

    // Asked to keep them, it keeps them.
    let (_, app) = call(&s, Method::POST, "/api/v1/app-passwords", &token, Some(json!({"name": "mutt"}))).await;
    let app_pw = app["password"].as_str().unwrap().to_owned();
    let change = json!({"current": "second secret here", "new": "third secret here", "revoke_app_passwords": false});
    let (status, _) = call(&s, Method::POST, "/api/v1/auth/password", &token, Some(change)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(smtp_auth(smtp, "carl", &app_pw), "the app password was kept");
    let log: Value = call(&s, Method::GET, "/api/v1/security-log", &token, None).await.1;
    let details: Vec<&str> = log["events"].as_array().unwrap().iter().map(|e| e["detail"].as_str().unwrap()).collect();
    assert!(details.iter().any(|d| d.contains("1 app passwords revoked")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("app passwords kept")), "{details:?}");
}

/// Logs in as `name` and finishes the second step with `code`; the status of that step.
async fn login_with_code(s: &Server, name: &str, code: &str) -> StatusCode {
    let v: Value = s
        .client()
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": name, "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pending = v["pending"].as_str().expect("a second factor is asked for");
    let r = s
        .client()
        .post(s.url("/api/v1/auth/login/second-factor"))
        .json(&json!({"pending": pending, "code": code}))
        .send()
        .await
        .unwrap();
    r.status()
}

#[tokio::test]
async fn the_database_holds_no_second_factor_secret_or_stream_key_in_the_clear() {
    let s = Server::start();
    let token = s.register_and_login("dora", PW).await;
    s.reauth(&token, PW).await;
    let (_, setup) = call(&s, Method::POST, "/api/v1/auth/totp/setup", &token, Some(json!({}))).await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let t = totp(&secret);
    let code = t.generate(now() as u64);
    let (status, body) = call(&s, Method::POST, "/api/v1/auth/totp/confirm", &token, Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::OK);
    let codes: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
    let (_, key) = call(&s, Method::POST, "/api/v1/stream-key/rotate", &token, None).await;
    let stream_key = key["key"].as_str().unwrap().to_owned();

    let db = database(&s).await;
    let stored = column(&db, "SELECT totp_secret FROM users").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("v1:") && !stored[0].contains(&secret), "TOTP secret stored as {}", stored[0]);
    let hashes = column(&db, "SELECT code_hash FROM recovery_codes").await;
    assert_eq!(hashes.len(), 10);
    for c in &codes {
        let plain = c.replace('-', "");
        assert!(!hashes.iter().any(|h| h.contains(&plain) || *h == sha256_hex(&plain)), "{c} is guessable offline");
    }
    assert!(hashes.iter().all(|h| h.starts_with("v1:")), "{hashes:?}");
    let keys = column(&db, "SELECT key_hash FROM stream_keys").await;
    assert_eq!(keys, vec![sha256_hex(&stream_key)], "only the key's fingerprint is stored");
    drop(db);

    // The key that seals them is the server's own, private file.
    let key_file = s.data.path().join("secret.key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.trim().len(), 64, "32 random bytes, hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The factors still work, after a restart too (the same key file is read again).
    let s = Server::start_in(s.stop(), "");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), text, "the key is kept across starts");
    assert_eq!(login_with_code(&s, "dora", &t.generate(now() as u64 + 30)).await, StatusCode::OK, "TOTP");
    assert_eq!(login_with_code(&s, "dora", &codes[0]).await, StatusCode::OK, "a recovery code");
    assert_eq!(login_with_code(&s, "dora", &codes[0]).await, StatusCode::UNAUTHORIZED, "once");
}

#[tokio::test]
async fn secrets_stored_before_sealing_are_sealed_at_start_and_keep_working() {
    let s = Server::start();
    let token = s.register_and_login("erin", PW).await;
    s.reauth(&token, PW).await;
    let (_, setup) = call(&s, Method::POST, "/api/v1/auth/totp/setup", &token, Some(json!({}))).await;
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let t = totp(&secret);
    let code = t.generate(now() as u64);
    let (_, body) = call(&s, Method::POST, "/api/v1/auth/totp/confirm", &token, Some(json!({"code": code}))).await;
    let codes: Vec<String> = serde_json::from_value(body["recovery_codes"].clone()).unwrap();
    let data = s.stop();

    // Rows as an older postcast wrote them: the bare secret, bare SHA-256 fingerprints.
    let url = format!("sqlite://{}?mode=rw", data.path().join("postcast.db").display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    execute(&db, &format!("UPDATE users SET totp_secret = '{secret}'")).await;
    execute(&db, "DELETE FROM recovery_codes").await;
    for c in &codes[..2] {
        let legacy = sha256_hex(&c.replace('-', ""));
        execute(&db, &format!("INSERT INTO recovery_codes (user_id, code_hash) SELECT id, '{legacy}' FROM users"))
            .await;
    }
    db.close().await.unwrap();

    let s = Server::start_in(data, "");
    let db = database(&s).await;
    let stored = column(&db, "SELECT totp_secret FROM users").await;
    assert!(stored[0].starts_with("v1:") && !stored[0].contains(&secret), "sealed at start: {}", stored[0]);
    let hashes = column(&db, "SELECT code_hash FROM recovery_codes").await;
    assert_eq!(hashes.len(), 2);
    assert!(hashes.iter().all(|h| h.starts_with("v1:")), "sealed at start: {hashes:?}");
    drop(db);
    assert_eq!(login_with_code(&s, "erin", &t.generate(now() as u64 + 30)).await, StatusCode::OK, "TOTP");
    assert_eq!(login_with_code(&s, "erin", &codes[1]).await, StatusCode::OK, "an old recovery code");
    assert_eq!(login_with_code(&s, "erin", &codes[5]).await, StatusCode::UNAUTHORIZED, "a deleted one");
}

#[tokio::test]
async fn sms_with_the_log_provider_is_for_loopback_and_test_set_ups_only() {
    // On loopback alone (as every test server): offered, and the start says where codes go.
    let s = Server::start();
    assert!(s.banner.contains("SMS codes") && s.banner.contains("loopback and test set-ups only"), "{}", s.banner);
    let token = s.register_and_login("fay", PW).await;
    let (_, me) = call(&s, Method::GET, "/api/v1/me", &token, None).await;
    assert_eq!(me["sms_available"], true);
    drop(s);

    // Behind a proxy others reach it through: refused, and the start says so.
    let s = Server::start_with("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    assert!(s.banner.contains("SMS is not offered"), "{}", s.banner);
    let token = s.register_and_login("fay", PW).await;
    let (_, me) = call(&s, Method::GET, "/api/v1/me", &token, None).await;
    assert_eq!(me["sms_available"], false);
    s.reauth(&token, PW).await;
    let (status, body) =
        call(&s, Method::POST, "/api/v1/auth/sms/phone", &token, Some(json!({"phone": "+4915123456789"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("sms_unavailable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no SMS provider"), "{body}");
    drop(s);

    // A test set-up may allow it.
    let s = Server::start_with("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[sms]\nallow_log_provider = true\n");
    let token = s.register_and_login("fay", PW).await;
    s.reauth(&token, PW).await;
    let (status, body) =
        call(&s, Method::POST, "/api/v1/auth/sms/phone", &token, Some(json!({"phone": "+4915123456789"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}
