//! Profiles, public cards, avatars, preference documents and their attachments, tested
//! through the real binary over HTTP on 127.0.0.1:0.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use common::{Server, User};
use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Cheap password hashing, small limits and no grace period, so tests run fast.
const CONFIG: &str = r#"
[auth]
argon2_memory_kib = 1024
argon2_iterations = 1

[profile]
avatar_max_bytes = 200000
thumbnail_px = 48

[http]
json_limit_bytes = 16384

[prefs]
max_bytes = 4096
attachment_grace_seconds = 0
"#;

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 99])));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

impl User<'_> {
    /// The document and its ETag.
    async fn prefs(&self) -> (Value, String) {
        let resp = self.req(Method::GET, "/api/v1/prefs").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()[ETAG].to_str().unwrap().to_owned();
        (resp.json().await.unwrap(), etag)
    }

    async fn send_prefs(
        &self,
        method: Method,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self.req(method, "/api/v1/prefs").header(CONTENT_TYPE, content_type).body(body);
        if let Some(tag) = if_match {
            r = r.header(IF_MATCH, tag);
        }
        r.send().await.unwrap()
    }

    async fn upload(&self, name: &str, content_type: &str, bytes: &'static [u8]) -> Value {
        let resp = self
            .req(Method::POST, &format!("/api/v1/prefs/attachments?name={name}"))
            .header(CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }
}

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn profile_roundtrip_with_a_sanitised_signature() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;

    let (status, p) = ada.json(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&p["username"], &p["display_name"], &p["time_zone"], &p["language"], &p["avatar_url"]),
        (&json!("ada"), &json!("ada"), &json!("UTC"), &json!("en"), &Value::Null)
    );

    let sig = r#"<p>hi<script>alert(1)</script><a href="javascript:x" onclick="y">l</a></p>"#;
    let change = json!({"display_name": "Ada Lovelace", "signature_html": sig, "time_zone": "Europe/Berlin", "language": "de-CH"});
    let (status, put) = ada.json(Method::PUT, "/api/v1/profile", Some(change)).await;
    assert_eq!(status, 200, "{put}");
    let (_, got) = ada.json(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(got, put);
    assert_eq!(
        (&got["display_name"], &got["time_zone"], &got["language"]),
        (&json!("Ada Lovelace"), &json!("Europe/Berlin"), &json!("de-CH"))
    );
    let stored = got["signature_html"].as_str().unwrap();
    assert!(stored.contains("hi") && stored.contains(">l</a>"), "{stored}");
    for banned in ["script", "alert", "javascript:", "onclick"] {
        assert!(!stored.contains(banned), "{banned} kept in {stored}");
    }

    // A refused field refuses the whole change.
    for bad in [
        json!({"display_name": "X", "time_zone": "Not A Zone"}),
        json!({"language": "en_US!"}),
        json!({"display_name": " "}),
    ] {
        let (status, e) = ada.json(Method::PUT, "/api/v1/profile", Some(bad)).await;
        assert_eq!((status, &e["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_fields")), "{e}");
    }
    let (_, after) = ada.json(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(after, got);

    let anon = server.client().get(server.url("/api/v1/profile")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
}

#[tokio::test]
async fn avatars_are_checked_thumbnailed_and_shown_on_the_public_card_only() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    ada.json(
        Method::PUT,
        "/api/v1/profile",
        Some(json!({"display_name": "Ada", "signature_html": "secret sig", "time_zone": "Europe/Berlin"})),
    )
    .await;

    let original = png(300, 200);
    let put = |ct: &'static str, body: Vec<u8>| {
        ada.req(Method::PUT, "/api/v1/profile/avatar").header(CONTENT_TYPE, ct).body(body).send()
    };
    let resp = put("image/png", original.clone()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let p: Value = resp.json().await.unwrap();
    assert_eq!(p["avatar_type"], "image/png");

    let own = ada.req(Method::GET, "/api/v1/profile/avatar").send().await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(own.headers()["x-content-type-options"], "nosniff");
    assert_eq!(own.bytes().await.unwrap().to_vec(), original);

    // Refused uploads: text claiming to be PNG, too large, a type that is not accepted.
    let resp = put("image/png", b"this is just text, not a picture".to_vec()).await.unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_eq!(error_code(resp).await, "invalid_image");
    let resp = put("image/png", vec![0x42; 250_000]).await.unwrap();
    assert_eq!(resp.status(), 413);
    let resp = put("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec()).await.unwrap();
    assert_eq!(resp.status(), 415);
    let own = ada.req(Method::GET, "/api/v1/profile/avatar").send().await.unwrap();
    assert_eq!(own.bytes().await.unwrap().to_vec(), original, "refused uploads kept the avatar");

    // Bob sees the card and the thumbnail, nothing else.
    let (status, card) = bob.json(Method::GET, "/api/v1/users/ada/card", None).await;
    assert_eq!(status, 200);
    let mut keys: Vec<&String> = card.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["avatar_url", "display_name", "username"], "{card}");
    assert_eq!((&card["username"], &card["display_name"]), (&json!("ada"), &json!("Ada")));
    let thumb = bob.req(Method::GET, card["avatar_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(thumb.headers()["x-content-type-options"], "nosniff");
    let img = image::load_from_memory_with_format(&thumb.bytes().await.unwrap(), ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (48, 48));
    assert!(!card.to_string().contains("secret sig") && !card.to_string().contains("Berlin"));
    let (status, _) = bob.json(Method::GET, "/api/v1/users/nobody/card", None).await;
    assert_eq!(status, 404);
    let anon = server.client().get(server.url("/api/v1/users/ada/card")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let anon = server.client().get(server.url("/api/v1/users/ada/avatar")).send().await.unwrap();
    assert_eq!(anon.status(), 401);

    // Removing it clears the card.
    assert_eq!(ada.req(Method::DELETE, "/api/v1/profile/avatar").send().await.unwrap().status(), 204);
    let (_, card) = bob.json(Method::GET, "/api/v1/users/ada/card", None).await;
    assert_eq!(card["avatar_url"], Value::Null);
    assert_eq!(bob.req(Method::GET, "/api/v1/users/ada/avatar").send().await.unwrap().status(), 404);
    assert_eq!(ada.req(Method::GET, "/api/v1/profile/avatar").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn prefs_merge_patch_with_etags_keeps_two_tabs_from_overwriting() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let (doc, e0) = ada.prefs().await;
    assert_eq!(doc, json!({}));

    let first = json!({"theme": "dark", "mail": {"density": "compact", "preview": true}, "keep": [1, 2]});
    let resp = ada.send_prefs(Method::PUT, "application/json", first.to_string(), Some(&e0)).await;
    assert_eq!(resp.status(), 200);
    let e1 = resp.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(e1, e0);
    assert!(e1.starts_with('"') && !e1.starts_with("W/"), "strong ETag: {e1}");
    assert_eq!(ada.prefs().await, (first.clone(), e1.clone()));

    // Tab one patches; RFC 7396: null removes, objects merge, arrays replace.
    let patch = json!({"mail": {"preview": null}, "theme": null, "lang": "de", "keep": [3]});
    let resp = ada.send_prefs(Method::PATCH, "application/merge-patch+json", patch.to_string(), Some(&e1)).await;
    assert_eq!(resp.status(), 200);
    let e2 = resp.headers()[ETAG].to_str().unwrap().to_owned();
    let expected = json!({"mail": {"density": "compact"}, "lang": "de", "keep": [3]});
    assert_eq!(resp.json::<Value>().await.unwrap(), expected);

    // Tab two still holds e1: refused, document unchanged.
    let resp = ada.send_prefs(Method::PATCH, "application/merge-patch+json", r#"{"lang":"fr"}"#, Some(&e1)).await;
    assert_eq!(resp.status(), 412);
    assert_eq!(resp.headers()[ETAG].to_str().unwrap(), e2, "the current ETag comes with the 412");
    assert_eq!(error_code(resp).await, "precondition_failed");
    let resp = ada.send_prefs(Method::PUT, "application/json", "{}", Some(&e1)).await;
    assert_eq!(resp.status(), 412);
    assert_eq!(ada.prefs().await, (expected, e2.clone()));

    // `*` and no If-Match at all both write.
    let resp = ada.send_prefs(Method::PATCH, "application/json", r#"{"lang":"fr"}"#, Some("*")).await;
    assert_eq!(resp.status(), 200);
    let resp = ada.send_prefs(Method::PATCH, "application/merge-patch+json", r#"{"x":1}"#, None).await;
    assert_eq!(resp.status(), 200);
    let (doc, _) = ada.prefs().await;
    assert_eq!((&doc["lang"], &doc["x"]), (&json!("fr"), &json!(1)));

    // Another user's document is separate.
    let bob = User::new(&server, "bob").await;
    assert_eq!(bob.prefs().await.0, json!({}));
}

#[tokio::test]
async fn bad_prefs_bodies_get_clear_errors_and_store_nothing() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let resp = ada.send_prefs(Method::PUT, "application/json", r#"{"a":1}"#, None).await;
    assert_eq!(resp.status(), 200);
    let before = ada.prefs().await;

    let big = json!({"blob": "x".repeat(5000)}).to_string();
    let huge = json!({"blob": "x".repeat(20_000)}).to_string();
    // (method, Content-Type, body, status, error code)
    #[rustfmt::skip]
    let cases: Vec<(Method, &str, Vec<u8>, u16, &str)> = vec![
        (Method::PUT, "application/json", b"[1,2,3]".to_vec(), 422, "not_an_object"),
        (Method::PUT, "application/json", b"\"text\"".to_vec(), 422, "not_an_object"),
        (Method::PATCH, "application/merge-patch+json", b"[1]".to_vec(), 422, "not_an_object"),
        (Method::PUT, "application/json", big.clone().into_bytes(), 413, "too_large"),
        (Method::PATCH, "application/merge-patch+json", big.into_bytes(), 413, "too_large"),
        // Past http.json_limit_bytes: refused before it is parsed.
        (Method::PUT, "application/json", huge.into_bytes(), 413, "too_large"),
        (Method::PUT, "application/json", b"{\"a\":".to_vec(), 400, "invalid_json"),
        (Method::PATCH, "application/merge-patch+json", b"{\"a\" 1}".to_vec(), 400, "invalid_json"),
        (Method::PUT, "application/json", b"{\"a\":\"\xff\xfe\"}".to_vec(), 400, "invalid_json"),
        (Method::PUT, "text/plain", b"{\"a\":2}".to_vec(), 415, "unsupported_media_type"),
        (Method::PUT, "application/merge-patch+json", b"{\"a\":2}".to_vec(), 415, "unsupported_media_type"),
        (Method::PATCH, "application/x-www-form-urlencoded", b"a=2".to_vec(), 415, "unsupported_media_type"),
    ];
    for (method, ct, body, status, code) in cases {
        let label = format!("{method} {ct} {:?}", String::from_utf8_lossy(&body[..body.len().min(20)]));
        let resp = ada.send_prefs(method, ct, body, None).await;
        assert_eq!(resp.status().as_u16(), status, "{label}");
        assert_eq!(error_code(resp).await, code, "{label}");
    }
    assert_eq!(ada.prefs().await, before);
}

#[tokio::test]
async fn attachments_are_private_and_unreferenced_ones_are_collected() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;

    let kept = ada.upload("bg.png", "image/png", b"background bytes").await;
    let dropped = ada.upload("notes.txt", "text/plain", b"scratch").await;
    assert_eq!(
        (&kept["name"], &kept["content_type"], &kept["size"]),
        (&json!("bg.png"), &json!("image/png"), &json!(16))
    );
    let (kept_id, dropped_id) = (kept["id"].as_str().unwrap(), dropped["id"].as_str().unwrap());
    let url = |id: &str| format!("/api/v1/prefs/attachments/{id}");

    let (_, list) = ada.json(Method::GET, "/api/v1/prefs/attachments", None).await;
    assert_eq!(list["attachments"].as_array().unwrap().len(), 2);
    let (_, list) = bob.json(Method::GET, "/api/v1/prefs/attachments", None).await;
    assert_eq!(list, json!({"attachments": []}));
    assert_eq!(bob.req(Method::GET, &url(kept_id)).send().await.unwrap().status(), 404);

    let got = ada.req(Method::GET, &url(kept_id)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert!(got.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(&got.bytes().await.unwrap()[..], b"background bytes");

    // Reference one of them; the PrefsChanged event collects the other.
    let patch = json!({"appearance": {"background": url(kept_id)}});
    let resp = ada.send_prefs(Method::PATCH, "application/merge-patch+json", patch.to_string(), None).await;
    assert_eq!(resp.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = ada.req(Method::GET, &url(dropped_id)).send().await.unwrap().status();
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "unreferenced attachment still served: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = ada.req(Method::GET, &url(kept_id)).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(&got.bytes().await.unwrap()[..], b"background bytes");
    let (_, list) = ada.json(Method::GET, "/api/v1/prefs/attachments", None).await;
    let ids: Vec<&str> = list["attachments"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [kept_id]);
}

#[tokio::test]
async fn attachment_uploads_are_size_limited() {
    let server = Server::start_with(&format!("{CONFIG}attachment_max_bytes = 10\n"));
    let ada = User::new(&server, "ada").await;
    let resp = ada
        .req(Method::POST, "/api/v1/prefs/attachments?name=a.bin")
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(vec![0u8; 11])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(error_code(resp).await, "too_large");
    let (_, list) = ada.json(Method::GET, "/api/v1/prefs/attachments", None).await;
    assert_eq!(list, json!({"attachments": []}));
}
