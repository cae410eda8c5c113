//! The HLS door over real HTTP against the real binary: what players and CDNs rely on —
//! content types, caching, CORS (preflight included), `HEAD`, `Range`, `ETag`/304 — and
//! that anything under `/hls` that is not a playlist or segment is a 404, never the web UI.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// 1 s chunks and two renditions, so a short push gives a few segments quickly.
const SMALL: &str = "[stream]\nchunk_seconds = 1.0\nreconnect_grace_seconds = 1\n\
[[stream.ladder]]\nname = \"source\"\nheight = 0\n\
[[stream.ladder]]\nname = \"240p\"\nheight = 240\nvideo_kbps = 300\n";

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn paths_that_are_not_playlists_or_segments_are_404_with_cors() {
    let s = Server::start();
    let c = s.client();
    for path in [
        "/hls",
        "/hls/",
        "/hls/nope/master.m3u8",
        "/hls/nope/source/index.m3u8",
        "/hls/nope/source/0.ts",
        "/hls/nope/source/00.ts",
        "/hls/nope/source/-1.ts",
        "/hls/nope/source/1.mp4",
        "/hls/nope/source/99999999999999999999999.ts",
        "/hls/a.b/source/0.ts",
        "/hls/nope/sou%20rce/0.ts",
        "/hls/nope/source/0.ts/more",
        "/hls/nope",
        "/hls/%ff/master.m3u8",
    ] {
        let r = c.get(s.url(path)).header("origin", "https://player.example").send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(header(&r, "access-control-allow-origin"), "*", "{path}");
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let r = c
        .request(reqwest::Method::OPTIONS, s.url("/hls/any/source/1.ts"))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
}

/// Pushes `seconds` of the test pattern to `key`.
fn push(s: &Server, key: &str, seconds: u32) -> std::process::Child {
    let rtmp = s.rtmp.unwrap();
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", &seconds.to_string()])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-c:a", "aac"])
        .args(["-f", "flv", &format!("rtmp://{rtmp}/live/{key}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg is installed (apt-get install ffmpeg)")
}

/// Registers `user` and returns a fresh stream key.
async fn stream_key(s: &Server, user: &str) -> String {
    let token = s.register_and_login(user, "correct horse battery").await;
    let r = s.client().post(s.url("/api/v1/stream-key/rotate")).bearer_auth(&token).send().await.unwrap();
    r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
}

/// Waits for the live stream to list a segment in `rendition`: (stream id, segment URI).
async fn first_segment(s: &Server, rendition: &str) -> (String, String) {
    let c = s.client();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no segment listed in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let list: Value = c.get(s.url("/api/v1/streams")).send().await.unwrap().json().await.unwrap();
        let Some(id) = list["live"].as_array().and_then(|l| l.first()).and_then(|x| x["id"].as_str()) else {
            continue;
        };
        let playlist = s.url(&format!("/hls/{id}/{rendition}/index.m3u8"));
        let text = c.get(playlist).send().await.unwrap().text().await.unwrap();
        if let Some(uri) = text.lines().find(|l| l.ends_with(".ts")) {
            return (id.to_owned(), uri.to_owned());
        }
    }
}

#[tokio::test]
async fn playlists_and_segments_carry_the_headers_players_need() {
    let s = Server::start_with(SMALL);
    let c = s.client();
    let mut ffmpeg = push(&s, &stream_key(&s, "hlsviewer").await, 4);
    // The stream and its first listed segment.
    let (id, first) = first_segment(&s, "240p").await;

    let r = c.get(s.url(&format!("/hls/{id}/master.m3u8"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    assert!(r.text().await.unwrap().contains("240p/index.m3u8"));
    let r = c.get(s.url(&format!("/hls/{id}/240p/index.m3u8"))).send().await.unwrap();
    assert_eq!(
        (header(&r, "content-type"), header(&r, "cache-control")),
        ("application/vnd.apple.mpegurl", "no-cache")
    );

    let url = s.url(&format!("/hls/{id}/240p/{first}?session=player-1"));
    let r = c.get(&url).header("origin", "https://player.example").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "video/mp2t");
    assert_eq!(header(&r, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    let etag = header(&r, "etag").to_owned();
    let body = r.bytes().await.unwrap();
    assert!(body.len() > 188 && body[0] == 0x47, "an MPEG-TS segment");

    let r = c.head(&url).send().await.unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "content-length")), (200, body.len().to_string().as_str()));
    let r = c.get(&url).header("range", "bytes=188-375").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), format!("bytes 188-375/{}", body.len()));
    assert_eq!(r.bytes().await.unwrap(), body.slice(188..376));
    let r = c.get(&url).header("range", format!("bytes={}-", body.len())).send().await.unwrap();
    assert_eq!((r.status().as_u16(), header(&r, "content-range")), (416, format!("bytes */{}", body.len()).as_str()));
    let r = c.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);

    let _ = ffmpeg.wait();
}

#[tokio::test]
async fn invented_session_ids_from_one_client_do_not_make_viewers() {
    let s = Server::start_with(SMALL);
    let c = s.client();
    let mut ffmpeg = push(&s, &stream_key(&s, "hlscounter").await, 8);
    let (id, first) = first_segment(&s, "source").await;
    let viewers = |c: reqwest::Client, url: String| async move {
        let status: Value = c.get(url).send().await.unwrap().json().await.unwrap();
        status["viewers"].as_u64().expect("the status has a viewer count")
    };
    let status_url = s.url(&format!("/api/v1/streams/{id}"));

    // A real player: a media playlist, then a segment. The polling above (no `?session=`,
    // playlists only) is not a viewer.
    let before = viewers(c.clone(), status_url.clone()).await;
    let playlist = c.get(s.url(&format!("/hls/{id}/source/index.m3u8?session=real-1"))).send().await.unwrap();
    assert_eq!(playlist.status(), 200);
    let segment = c.get(s.url(&format!("/hls/{id}/source/{first}?session=real-1"))).send().await.unwrap();
    assert_eq!(segment.status(), 200);
    let with_player = viewers(c.clone(), status_url.clone()).await;
    assert_eq!(with_player, before + 1, "a player that fetched a playlist and a segment counts");

    // 500 invented sessions from one address, each behaving like a player.
    for i in 0..500 {
        for path in [
            format!("/hls/{id}/source/index.m3u8?session=fake-{i}"),
            format!("/hls/{id}/source/{first}?session=fake-{i}"),
        ] {
            assert_eq!(c.get(s.url(&path)).send().await.unwrap().status(), 200, "{path}");
        }
    }
    let after = viewers(c.clone(), status_url.clone()).await;
    assert!(after >= with_player, "real viewers still count: {after}");
    assert!(after <= with_player + 20, "500 invented sessions made {} viewers", after - with_player);

    // Segments alone, with yet other ids, are not players either.
    for i in 0..50 {
        let path = format!("/hls/{id}/source/{first}?session=segment-only-{i}");
        assert_eq!(c.get(s.url(&path)).send().await.unwrap().status(), 200);
    }
    assert_eq!(viewers(c.clone(), status_url).await, after);
    let _ = ffmpeg.wait();
}
