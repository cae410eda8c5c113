//! The contact book through the real binary over HTTP on 127.0.0.1:0: contacts and their
//! validation, search and paging, groups and autocomplete, vCard import and export, and
//! that no route ever reaches another user's contacts or groups.

mod common;

use common::{Server, User};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Cheap password hashing so registration is fast.
const CONFIG: &str = r#"
[auth]
argon2_memory_kib = 1024
argon2_iterations = 1
"#;

impl User<'_> {
    async fn import(&self, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self.req(Method::POST, "/api/v1/contacts/import").header(CONTENT_TYPE, content_type).body(body);
        let resp = resp.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn export(&self) -> String {
        let resp = self.req(Method::GET, "/api/v1/contacts/export").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/vcard; charset=utf-8");
        assert!(resp.headers()[CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
        resp.text().await.unwrap()
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn emails_of(list: &Value) -> Vec<String> {
    list["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["emails"][0]["address"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn contacts_are_validated_searched_paged_changed_and_deleted() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;

    let body = json!({"name": "Grace Hopper", "emails": ["Grace@Navy.example", "grace@yale.example"],
        "phone": "+1 555 0100", "notes": "COBOL"});
    let (status, grace) = ada.json(Method::POST, "/api/v1/contacts", Some(body)).await;
    assert_eq!(status, 201, "{grace}");
    let gid = grace["id"].as_i64().unwrap();
    assert_eq!(
        grace["emails"][0],
        json!({"address": "Grace@Navy.example", "primary": true, "use_count": 0, "last_used_at": 0})
    );
    assert_eq!(grace["emails"][1]["primary"], false);
    for (name, addr) in [("Jean-Luc Picard", "jl@enterprise.example"), ("", "zed@nowhere.example")] {
        ada.ok(Method::POST, "/api/v1/contacts", Some(json!({"name": name, "emails": [addr]}))).await;
    }

    // Refusals are clear and store nothing.
    let too_many: Vec<String> = (0..21).map(|i| format!("u{i}@x.example")).collect();
    let refusals = [
        (json!({"emails": ["not an address"]}), 422, "invalid_input"),
        (json!({"emails": []}), 422, "invalid_input"),
        (json!({"emails": too_many}), 422, "invalid_input"),
        (json!({"name": "x".repeat(201), "emails": ["a@b.example"]}), 422, "invalid_input"),
        (json!({"emails": ["a@b.example"], "nickname": "x"}), 422, "invalid_fields"),
        (json!({"emails": ["GRACE@navy.example"]}), 409, "address_taken"),
    ];
    for (body, status, want) in refusals {
        let (s, v) = ada.json(Method::POST, "/api/v1/contacts", Some(body.clone())).await;
        assert_eq!((s.as_u16(), code(&v)), (status, want), "{body} -> {v}");
    }
    let raw = ada.req(Method::POST, "/api/v1/contacts").header(CONTENT_TYPE, "application/json").body("{");
    assert_eq!(raw.send().await.unwrap().status(), 400);

    let all = ada.ok(Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(all["total"], 3);
    assert_eq!(emails_of(&all), ["Grace@Navy.example", "jl@enterprise.example", "zed@nowhere.example"]);
    let page = ada.ok(Method::GET, "/api/v1/contacts?limit=2", None).await;
    assert_eq!((page["contacts"].as_array().unwrap().len(), &page["next_offset"]), (2, &json!(2)));
    let last = ada.ok(Method::GET, "/api/v1/contacts?limit=2&offset=2", None).await;
    assert_eq!((emails_of(&last), &last["next_offset"]), (vec!["zed@nowhere.example".to_owned()], &Value::Null));
    assert_eq!(emails_of(&ada.ok(Method::GET, "/api/v1/contacts?q=luc", None).await), ["jl@enterprise.example"]);
    assert_eq!(emails_of(&ada.ok(Method::GET, "/api/v1/contacts?q=GRACE%40", None).await), ["Grace@Navy.example"]);
    for bad in ["?limit=0", "?limit=501", "?offset=-1", "?offset=18446744073709551615", "?limit=x"] {
        let (s, _) = ada.json(Method::GET, &format!("/api/v1/contacts{bad}"), None).await;
        assert_eq!(s, 400, "{bad}");
    }

    let path = format!("/api/v1/contacts/{gid}");
    assert_eq!(ada.ok(Method::GET, &path, None).await, grace);
    let patched =
        ada.ok(Method::PATCH, &path, Some(json!({"emails": ["grace@yale.example"], "notes": "Navy, then Yale"}))).await;
    assert_eq!((&patched["name"], &patched["notes"]), (&json!("Grace Hopper"), &json!("Navy, then Yale")));
    assert_eq!(patched["emails"].as_array().unwrap().len(), 1);
    let (s, v) = ada.json(Method::PATCH, &path, Some(json!({"phone": "1\u{7}"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    let (s, _) = ada.json(Method::DELETE, &path, None).await;
    assert_eq!(s, 204);
    for method in [Method::GET, Method::DELETE] {
        let (s, v) = ada.json(method, &path, None).await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    }
    let (s, _) = ada.json(Method::GET, "/api/v1/contacts/not-a-number", None).await;
    assert_eq!(s, 404);
    let anonymous = server.client().get(server.url("/api/v1/contacts")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let doc: Value =
        server.client().get(server.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    for p in
        ["/api/v1/contacts", "/api/v1/contacts/{id}", "/api/v1/contacts/groups/{id}/members", "/api/v1/contacts/export"]
    {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from the OpenAPI document");
    }
}

#[tokio::test]
async fn groups_autocomplete_and_vcard_round_trip() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;

    let a = ada
        .ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Anna Karenina", "emails": ["anna@k.example"]})))
        .await;
    let b = ada
        .ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Lovelace, Ada", "emails": ["ada@math.example"]})))
        .await;
    let (aid, bid) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());

    let (s, team) = ada
        .json(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "Annual Team", "member_ids": [aid]})))
        .await;
    assert_eq!(s, 201, "{team}");
    let tid = team["id"].as_i64().unwrap();
    let (s, v) = ada.json(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "annual TEAM"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "group_exists"));
    let (s, v) = ada.json(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "x@y"}))).await;
    assert_eq!((s, code(&v)), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"));
    let members = format!("/api/v1/contacts/groups/{tid}/members");
    assert_eq!(ada.ok(Method::PUT, &members, Some(json!([bid, aid, bid]))).await["member_ids"], json!([aid, bid]));
    assert_eq!(ada.ok(Method::PUT, &members, Some(json!({"contact_ids": [bid]}))).await["member_ids"], json!([bid]));
    let renamed =
        ada.ok(Method::PATCH, &format!("/api/v1/contacts/groups/{tid}"), Some(json!({"name": "Annual Board"}))).await;
    assert_eq!(renamed["name"], "Annual Board");
    let groups = ada.ok(Method::GET, "/api/v1/contacts/groups", None).await;
    assert_eq!(groups["groups"].as_array().unwrap().len(), 1);
    assert_eq!(
        ada.ok(Method::GET, &format!("/api/v1/contacts/{bid}"), None).await["groups"][0]["name"],
        "Annual Board"
    );

    let s = ada.ok(Method::GET, "/api/v1/contacts/autocomplete?q=ann", None).await;
    assert_eq!(s["addresses"][0]["address"], "anna@k.example");
    assert_eq!(s["addresses"][0]["display"], "Anna Karenina <anna@k.example>");
    assert_eq!(s["groups"], json!([{"id": tid, "name": "Annual Board", "members": 1}]));
    let s = ada.ok(Method::GET, "/api/v1/contacts/autocomplete?q=ada&limit=5", None).await;
    assert_eq!(s["addresses"][0]["display"], "\"Lovelace, Ada\" <ada@math.example>");
    let (status, _) = ada.json(Method::GET, "/api/v1/contacts/autocomplete?q=a&limit=51", None).await;
    assert_eq!(status, 400);

    // Three good cards (one with a folded NOTE line, one vCard 4.0) and a broken one.
    let file = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Alan Turing\r\nN:Turing;Alan;;;\r\n\
        EMAIL;TYPE=INTERNET,PREF:alan@bletchley.example\r\nEMAIL:alan@manchester.example\r\nTEL:+44 161\r\n\
        NOTE:Computable numbers\\, morphogenesis and a note long enough to need fol\r\n ding\r\n\
        CATEGORIES:Annual Board,Scientists\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:4.0\r\nN:Hopper;Grace;;;\r\nEMAIL;PREF=1:grace@navy.example\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nEMAIL:no-at-sign\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Émilie du Châtelet\r\nEMAIL:emilie@cirey.example\r\nEND:VCARD\r\n";
    let (status, report) = ada.import("text/vcard", file).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report, json!({"imported": 3, "created": 3, "merged": 0, "skipped": 1}));
    let alan = ada.ok(Method::GET, "/api/v1/contacts?q=alan", None).await;
    let alan = &alan["contacts"][0];
    assert_eq!(alan["notes"], "Computable numbers, morphogenesis and a note long enough to need folding");
    let alan_groups: Vec<&str> =
        alan["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(alan_groups, ["Annual Board", "Scientists"], "CATEGORIES join existing groups or make new ones");
    let (status, v) = ada.import("application/json", file).await;
    assert_eq!((status, code(&v)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    let (status, _) = ada.import("text/vcard", vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(status, 400);

    let exported = ada.export().await;
    assert_eq!(exported.matches("BEGIN:VCARD").count(), 5);
    assert!(exported.lines().all(|l| l.len() <= 75), "folded:\n{exported}");
    let (status, report) = bob.import("text/vcard; charset=utf-8", exported.clone()).await;
    assert_eq!((status, &report["created"], &report["skipped"]), (StatusCode::OK, &json!(5), &json!(0)));
    let shape = |list: &Value| {
        let mut v: Vec<Value> = list["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let emails: Vec<&Value> = c["emails"].as_array().unwrap().iter().map(|e| &e["address"]).collect();
                let groups: Vec<&Value> = c["groups"].as_array().unwrap().iter().map(|g| &g["name"]).collect();
                json!([c["name"], emails, c["phone"], c["notes"], groups])
            })
            .collect();
        v.sort_by_key(|x| x.to_string());
        v
    };
    let ada_book = ada.ok(Method::GET, "/api/v1/contacts", None).await;
    let bob_book = bob.ok(Method::GET, "/api/v1/contacts", None).await;
    assert_eq!(shape(&bob_book), shape(&ada_book));
    assert_eq!(bob.export().await, exported, "the same book exports the same file");

    let (status, _) = ada.json(Method::DELETE, &format!("/api/v1/contacts/groups/{tid}"), None).await;
    assert_eq!(status, 204);
    assert!(
        ada.ok(Method::GET, &format!("/api/v1/contacts/{bid}"), None).await["groups"].as_array().unwrap().is_empty()
    );
}

#[tokio::test]
async fn no_route_reaches_another_users_contacts_or_groups() {
    let server = Server::start_with(CONFIG);
    let ada = User::new(&server, "ada").await;
    let bob = User::new(&server, "bob").await;
    let c = ada
        .ok(Method::POST, "/api/v1/contacts", Some(json!({"name": "Secret Friend", "emails": ["secret@x.example"]})))
        .await;
    let cid = c["id"].as_i64().unwrap();
    let g = ada
        .ok(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "Secret Club", "member_ids": [cid]})))
        .await;
    let gid = g["id"].as_i64().unwrap();
    let bobs_group = bob.ok(Method::POST, "/api/v1/contacts/groups", Some(json!({"name": "Mine"}))).await;
    let bgid = bobs_group["id"].as_i64().unwrap();

    let attempts = [
        (Method::GET, format!("/api/v1/contacts/{cid}"), None),
        (Method::PATCH, format!("/api/v1/contacts/{cid}"), Some(json!({"name": "Stolen"}))),
        (Method::DELETE, format!("/api/v1/contacts/{cid}"), None),
        (Method::GET, format!("/api/v1/contacts/groups/{gid}"), None),
        (Method::PATCH, format!("/api/v1/contacts/groups/{gid}"), Some(json!({"name": "Stolen"}))),
        (Method::DELETE, format!("/api/v1/contacts/groups/{gid}"), None),
        (Method::PUT, format!("/api/v1/contacts/groups/{gid}/members"), Some(json!([]))),
        (Method::PUT, format!("/api/v1/contacts/groups/{bgid}/members"), Some(json!([cid]))),
        (Method::POST, "/api/v1/contacts/groups".to_owned(), Some(json!({"name": "Other", "member_ids": [cid]}))),
    ];
    for (method, path, body) in attempts {
        let (s, v) = bob.json(method.clone(), &path, body).await;
        assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{method} {path}: {v}");
    }
    // Bob's lists, searches, suggestions and export never show Ada's data.
    let list = bob.ok(Method::GET, "/api/v1/contacts?q=secret", None).await;
    assert_eq!((&list["total"], list["contacts"].as_array().unwrap().len()), (&json!(0), 0));
    assert_eq!(bob.ok(Method::GET, "/api/v1/contacts", None).await["total"], 0);
    let s = bob.ok(Method::GET, "/api/v1/contacts/autocomplete?q=sec", None).await;
    assert_eq!((&s["addresses"], &s["groups"]), (&json!([]), &json!([])));
    let groups = bob.ok(Method::GET, "/api/v1/contacts/groups", None).await;
    let names: Vec<&Value> = groups["groups"].as_array().unwrap().iter().map(|g| &g["name"]).collect();
    assert_eq!(names, [&json!("Mine")]);
    assert_eq!(groups["groups"][0]["member_ids"], json!([]));
    assert!(!bob.export().await.contains("secret"));
    // Ada's data is untouched.
    assert_eq!(ada.ok(Method::GET, &format!("/api/v1/contacts/{cid}"), None).await["name"], "Secret Friend");
    assert_eq!(ada.ok(Method::GET, &format!("/api/v1/contacts/groups/{gid}"), None).await["member_ids"], json!([cid]));
}
