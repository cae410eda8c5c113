//! Live streaming through the web: the stream-key and stream routes over HTTP, and a real
//! broadcast watched in a real browser. The server runs with a small ladder (`source` +
//! `240p`, 1 s chunks); ffmpeg pushes a test picture and tone over RTMP the way OBS would;
//! then `tests/ui/watch.mjs` (headless Debian Chromium through `playwright-core`) opens
//! the Live page logged out, plays the stream on the watch page with hls.js (the video's
//! time must advance, the quality menu must list every rendition, the viewer count must
//! count it) and checks that the owner's "Go live" page shows their key. Then ffmpeg is
//! killed, and once the stream is a recording the script plays it from the start and the
//! owner deletes it on the "Go live" page.
//!
//! Needs Node.js, `npm ci` (for `playwright-core` and `hls.js`), `/usr/bin/chromium` and
//! `ffmpeg` with libx264. When one is missing the browser test fails and says what to
//! install: it never skips.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "correct horse battery staple";

/// The server's config for these tests: a short ladder and short chunks, so the first
/// segments are ready about a second after the push starts.
const STREAM_CONFIG: &str = "[stream]\nchunk_seconds = 1.0\nreconnect_grace_seconds = 2\n\
    [[stream.ladder]]\nname = \"source\"\nheight = 0\n\
    [[stream.ladder]]\nname = \"240p\"\nheight = 240\nvideo_kbps = 300\n";

/// A child process killed when it goes out of scope (ffmpeg must not outlive a failed test).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The RTMP address of a server started by the harness.
fn rtmp_of(s: &Server) -> SocketAddr {
    s.rtmp.expect("the ready file names the RTMP door")
}

/// Sends `method path` with an optional bearer token; answers status and JSON (or null).
async fn call(
    c: &reqwest::Client,
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = c.request(method, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn stream_keys_are_private_and_the_stream_list_is_public() {
    use reqwest::Method;
    let s = Server::start_with(STREAM_CONFIG);
    let c = reqwest::Client::new();

    let (status, _) = call(&c, &s, Method::GET, "/api/v1/stream-key", None).await;
    assert_eq!(status, 401, "the key needs a login");
    let (status, _) = call(&c, &s, Method::POST, "/api/v1/stream-key/rotate", None).await;
    assert_eq!(status, 401);

    let ada = s.register_and_login("ada", PASSWORD).await;
    let bob = s.register_and_login("bob", PASSWORD).await;
    let (status, none) = call(&c, &s, Method::GET, "/api/v1/stream-key", Some(&ada)).await;
    assert_eq!(status, 200);
    assert_eq!(none["key"], Value::Null, "no key before the first rotation: {none}");
    assert_eq!(none["has_key"], false);
    let ingest = format!("rtmp://{}/live", rtmp_of(&s));
    assert_eq!(none["ingest_url"], ingest.as_str());
    let obs = &none["obs"];
    assert_eq!(obs["server"], ingest.as_str());
    assert_eq!(obs["stream_key"], Value::Null);
    assert_eq!(obs["keyframe_interval_s"], 1, "1 s chunks want a keyframe every second: {obs}");
    assert_eq!(obs["rate_control"], "CBR");
    assert_eq!(obs["encoder"], "x264");
    assert_eq!(obs["profile"], "high");
    assert!((2500..=6000).contains(&obs["bitrate_kbps"].as_u64().unwrap_or(0)), "{obs}");

    let (status, first) = call(&c, &s, Method::POST, "/api/v1/stream-key/rotate", Some(&ada)).await;
    assert_eq!(status, 200);
    let k1 = first["key"].as_str().expect("a new key").to_owned();
    assert!(k1.len() >= 16, "a key long enough not to be guessed: {k1}");
    assert_eq!(first["obs"]["stream_key"], k1.as_str());
    let (_, again) = call(&c, &s, Method::GET, "/api/v1/stream-key", Some(&ada)).await;
    assert_eq!((&again["key"], &again["has_key"]), (&Value::Null, &json!(true)), "the key is shown once: {again}");
    assert_eq!(again["obs"]["stream_key"], Value::Null);
    assert!(again["created_at"].as_i64().is_some(), "{again}");
    let (_, second) = call(&c, &s, Method::POST, "/api/v1/stream-key/rotate", Some(&ada)).await;
    let k2 = second["key"].as_str().expect("a rotated key").to_owned();
    assert_ne!(k1, k2, "rotation makes a new key");

    let (_, bobs) = call(&c, &s, Method::GET, "/api/v1/stream-key", Some(&bob)).await;
    assert_eq!((&bobs["key"], &bobs["has_key"]), (&Value::Null, &json!(false)), "ada's key is not bob's");
    let (status, _) = call(&c, &s, Method::DELETE, "/api/v1/stream-key", Some(&bob)).await;
    assert_eq!(status, 204, "revoking no key is fine");
    let (_, still) = call(&c, &s, Method::GET, "/api/v1/stream-key", Some(&ada)).await;
    assert_eq!(still["has_key"], true, "bob's revocation leaves ada's key alone");

    let (status, _) = call(&c, &s, Method::DELETE, "/api/v1/stream-key", Some(&ada)).await;
    assert_eq!(status, 204);
    let (_, gone) = call(&c, &s, Method::GET, "/api/v1/stream-key", Some(&ada)).await;
    assert_eq!((&gone["key"], &gone["has_key"]), (&Value::Null, &json!(false)), "a revoked key is gone");

    let (status, list) = call(&c, &s, Method::GET, "/api/v1/streams", None).await;
    assert_eq!(status, 200, "the list is public");
    assert_eq!(list, json!({"live": [], "recordings": []}));
    for path in ["/api/v1/streams/nope", "/api/v1/streams/..%2F..%2Fetc", "/api/v1/streams/a%20b"] {
        let (status, body) = call(&c, &s, Method::GET, path, None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let (status, _) = call(&c, &s, Method::DELETE, "/api/v1/streams/nope", None).await;
    assert_eq!(status, 401, "deleting needs a login");
    let (status, _) = call(&c, &s, Method::DELETE, "/api/v1/streams/nope", Some(&ada)).await;
    assert_eq!(status, 404);

    for page in ["/live", "/watch", "/golive"] {
        let r = c.get(s.url(page)).send().await.expect(page);
        assert_eq!(r.status(), 200, "{page}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8", "{page}");
    }
    let (status, doc) = call(&c, &s, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in ["/api/v1/stream-key", "/api/v1/stream-key/rotate", "/api/v1/streams", "/api/v1/streams/{id}"] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
}

/// Panics with an install hint unless everything the browser test needs is present.
fn require_tools(root: &Path) {
    let ok = |cmd: &str, arg: &str| Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success());
    assert!(ok("node", "--version"), "the stream UI test needs Node.js 20 or later on PATH; then run `npm ci`");
    for file in ["node_modules/playwright-core/package.json", "node_modules/hls.js/dist/hls.min.js"] {
        assert!(root.join(file).is_file(), "the stream UI test needs `npm ci` in {} (missing {file})", root.display());
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "the stream UI test needs Chromium at {CHROMIUM}: `apt-get install -y chromium`"
    );
    assert!(ok("ffmpeg", "-version"), "the stream UI test needs ffmpeg with libx264: `apt-get install -y ffmpeg`");
}

/// Starts ffmpeg publishing 30 s of test picture and tone to `rtmp://ADDR/live/KEY`, like
/// OBS with a keyframe every second; its messages go to `log`.
fn push(rtmp: SocketAddr, key: &str, log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).expect("ffmpeg log file");
    let args = "-hide_banner -loglevel warning -re -f lavfi -i testsrc=size=640x360:rate=30 \
        -f lavfi -i sine=frequency=440 -t 30 -pix_fmt yuv420p -c:v libx264 -preset veryfast -g 30 -c:a aac -f flv";
    let child = Command::new("ffmpeg")
        .args(args.split_whitespace())
        .arg(format!("rtmp://{rtmp}/live/{key}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ffmpeg");
    KillOnDrop(child)
}

/// Polls the public list until `username` is live with at least two segments in every
/// rendition; answers the stream's id.
async fn wait_until_playable(
    c: &reqwest::Client,
    s: &Server,
    username: &str,
    ffmpeg: &mut KillOnDrop,
    log: &Path,
) -> String {
    let until = Instant::now() + Duration::from_secs(25);
    let mut last = Value::Null;
    loop {
        if let Ok(Some(exit)) = ffmpeg.0.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("ffmpeg stopped ({exit}) before the stream was playable:\n{text}\nlast status: {last}");
        }
        let (_, list) = call(c, s, reqwest::Method::GET, "/api/v1/streams", None).await;
        let live = list["live"].as_array().cloned().unwrap_or_default();
        if let Some(id) = live.iter().find(|x| x["username"] == username).and_then(|x| x["id"].as_str()) {
            let (_, status) = call(c, s, reqwest::Method::GET, &format!("/api/v1/streams/{id}"), None).await;
            let renditions = status["renditions"].as_array().cloned().unwrap_or_default();
            if renditions.len() == 2 && renditions.iter().all(|r| r["segments"].as_u64().unwrap_or(0) >= 2) {
                return id.to_owned();
            }
            last = status;
        } else {
            last = list;
        }
        assert!(Instant::now() < until, "the stream was not playable 25 s after the push began; last answer: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_live_stream_plays_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);
    let s = Server::start_with(STREAM_CONFIG);
    let c = reqwest::Client::new();
    let token = s.register_and_login("caster", PASSWORD).await;
    let (status, body) = call(&c, &s, reqwest::Method::POST, "/api/v1/stream-key/rotate", Some(&token)).await;
    assert_eq!(status, 200, "rotate: {body}");
    let key = body["key"].as_str().expect("a stream key").to_owned();

    let log = s.data.path().join("ffmpeg.log");
    let started = Instant::now();
    let mut ffmpeg = push(rtmp_of(&s), &key, &log);
    let id = wait_until_playable(&c, &s, "caster", &mut ffmpeg, &log).await;
    println!("# playable {:.1} s after the push began: stream {id}", started.elapsed().as_secs_f64());

    let live = run_watch_script(root, &s, &id, &token, &key, "live").await;
    drop(ffmpeg);
    if let Err(report) = &live {
        panic!("{report}\n--- ffmpeg ---\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    // The publisher is gone: after the reconnect grace the stream is a recording.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = call(&c, &s, reqwest::Method::GET, "/api/v1/streams", None).await;
        let recorded = list["recordings"].as_array().is_some_and(|r| r.iter().any(|x| x["id"] == id.as_str()));
        if recorded {
            break;
        }
        assert!(Instant::now() < until, "the stream did not become a recording within 20 s: {list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Err(report) = run_watch_script(root, &s, &id, &token, &key, "recording").await {
        panic!("{report}");
    }
    let (status, _) = call(&c, &s, reqwest::Method::GET, &format!("/api/v1/streams/{id}"), None).await;
    assert_eq!(status, 404, "the recording deleted on the Go live page is gone");
}

/// Runs `tests/ui/watch.mjs` in `mode` and prints its report; answers the report as the
/// error when it failed.
async fn run_watch_script(root: &Path, s: &Server, id: &str, token: &str, key: &str, mode: &str) -> Result<(), String> {
    let out = tokio::process::Command::new("node")
        .arg("tests/ui/watch.mjs")
        .args([&s.url(""), id, token, key, "caster", mode])
        .current_dir(root)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run node: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "tests/ui/watch.mjs {mode} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            out.status
        ));
    }
    print!("{stdout}");
    Ok(())
}
