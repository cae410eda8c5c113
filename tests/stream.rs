//! Live streaming end to end: the real ffmpeg pushes RTMP into the real binary, the HLS
//! output is fetched over HTTP and checked with ffprobe (renditions, IDR starts,
//! continuous timestamps, durations), reconnects, refusals, two streams at once, and a
//! killed transcode that must leave no hole.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

const PW: &str = "correct horse battery";

/// Small, fast settings for most tests: 1 s chunks, a short grace, source + 240p.
const SMALL: &str = "[stream]\nchunk_seconds = 1.0\nreconnect_grace_seconds = 2\n\
[[stream.ladder]]\nname = \"source\"\nheight = 0\n\
[[stream.ladder]]\nname = \"240p\"\nheight = 240\nvideo_kbps = 300\n";

/// Starts ffmpeg pushing a test pattern with a tone for `seconds`.
fn push(rtmp: std::net::SocketAddr, key: &str, size: &str, gop: u32, seconds: u32) -> Child {
    encode(true, size, gop, seconds)
        .arg(format!("rtmp://{rtmp}/live/{key}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (apt-get install ffmpeg)")
}

/// ffmpeg encoding `seconds` of a test picture of `size` at 30 fps with a keyframe every
/// `gop` frames and a 440 Hz tone, as FLV to the output argument still to be added (at the
/// pace of a live source with `realtime`).
fn encode(realtime: bool, size: &str, gop: u32, seconds: u32) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        c.arg("-re");
    }
    c.args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
        .arg(seconds.to_string())
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-g"])
        .arg(gop.to_string())
        .args(["-c:a", "aac", "-f", "flv"]);
    c
}

/// How long the stream [`push`] sends lasts, as ffprobe reads the same encode written to
/// a file (the later of the audio and video ends).
fn pushed_seconds(size: &str, gop: u32, seconds: u32) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pushed.flv");
    let made = encode(false, size, gop, seconds).arg(&file).status().unwrap();
    assert!(made.success());
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn user_with_key(s: &Server, name: &str) -> (String, String) {
    let token = s.register_and_login(name, PW).await;
    let r = s.client().post(s.url("/api/v1/stream-key/rotate")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let key = r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    (token, key)
}

async fn get_json(s: &Server, path: &str) -> Value {
    s.client().get(s.url(path)).send().await.unwrap().json().await.unwrap()
}

async fn get_text(s: &Server, path: &str) -> (u16, String) {
    let r = s.client().get(s.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `check` every 100 ms until it yields a value or `limit` passes.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The id of `user`'s live stream.
async fn live_stream_of(s: &Server, user: &str) -> String {
    wait_for(Duration::from_secs(30), "the stream to be live", || async {
        let list = get_json(s, "/api/v1/streams").await;
        list["live"].as_array()?.iter().find(|x| x["username"] == user).map(|x| x["id"].as_str().unwrap().to_owned())
    })
    .await
}

/// Waits until every rendition's playlist ends and returns them by name.
async fn ended_playlists(s: &Server, id: &str, renditions: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for r in renditions {
        let path = format!("/hls/{id}/{r}/index.m3u8");
        let text = wait_for(Duration::from_secs(60), "ENDLIST", || async {
            let (code, text) = get_text(s, &path).await;
            (code == 200 && text.contains("#EXT-X-ENDLIST")).then_some(text)
        })
        .await;
        out.insert(r.to_string(), text);
    }
    out
}

/// (number, duration s, uri, gap) of each segment of a media playlist; the number is read
/// from the segment's URI (`N.ts`, or `../RENDITION/N.ts` for a stand-in), so a hole in
/// the numbering shows. The first must match `EXT-X-MEDIA-SEQUENCE`.
fn segments(playlist: &str) -> Vec<(u64, f64, String, bool)> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let number = |uri: &str| -> u64 {
        let file = uri.rsplit('/').next().unwrap_or(uri);
        file.strip_suffix(".ts").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("segment URI {uri:?}"))
    };
    let mut out = vec![];
    let mut dur = None;
    let mut gap = false;
    for line in playlist.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            dur = Some(d.trim_end_matches(',').split(',').next().unwrap().parse::<f64>().unwrap());
        } else if line == "#EXT-X-GAP" {
            gap = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push((number(line), dur.take().unwrap(), line.to_owned(), gap));
            gap = false;
        }
    }
    if let Some((n, ..)) = out.first() {
        assert_eq!(*n, first, "the first segment is EXT-X-MEDIA-SEQUENCE\n{playlist}");
    }
    out
}

fn ffprobe_json(path: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Downloads every segment of a rendition; checks each starts with a keyframe and that
/// video timestamps run on without a jump from one segment to the next. Returns the
/// concatenation.
async fn check_rendition(
    s: &Server,
    id: &str,
    name: &str,
    playlist: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let segs = segments(playlist);
    assert!(!segs.is_empty());
    let all = dir.join(format!("{name}.ts"));
    let mut whole = vec![];
    let mut last_end: Option<f64> = None;
    for (seq, _dur, uri, gap) in &segs {
        assert!(!gap, "{name} segment {seq} is a gap");
        let url = format!("/hls/{id}/{name}/{uri}");
        let r = s.client().get(s.url(&url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "video/mp2t");
        let bytes = r.bytes().await.unwrap();
        let file = dir.join(format!("{name}-{seq}.ts"));
        std::fs::write(&file, &bytes).unwrap();
        whole.extend_from_slice(&bytes);
        let frames = ffprobe_json(
            &file,
            &["-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time,flags", "-show_packets"],
        );
        let packets = frames["packets"].as_array().unwrap();
        assert!(packets[0]["flags"].as_str().unwrap().starts_with('K'), "{name} segment {seq} starts with a keyframe");
        let first: f64 =
            packets.iter().map(|p| p["pts_time"].as_str().unwrap().parse::<f64>().unwrap()).fold(f64::MAX, f64::min);
        let end: f64 = packets
            .iter()
            .map(|p| {
                p["pts_time"].as_str().unwrap().parse::<f64>().unwrap()
                    + p["duration_time"].as_str().unwrap_or("0.0333").parse::<f64>().unwrap()
            })
            .fold(0.0, f64::max);
        if let Some(prev) = last_end {
            assert!(
                (first - prev).abs() < 0.05,
                "{name} segment {seq}: starts at {first:.3}, previous ended {prev:.3}"
            );
        }
        last_end = Some(end);
    }
    std::fs::write(&all, &whole).unwrap();
    all
}

fn stream_info(path: &std::path::Path) -> (u64, u64, String, String) {
    let v = ffprobe_json(path, &["-show_streams"]);
    let video = v["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "video").unwrap().clone();
    (
        video["width"].as_u64().unwrap(),
        video["height"].as_u64().unwrap(),
        video["codec_name"].as_str().unwrap().to_owned(),
        video["pix_fmt"].as_str().unwrap().to_owned(),
    )
}

/// What ffprobe reports while reading the whole file packet by packet: at debug level,
/// because ffmpeg 5.1 reports MPEG-TS "Continuity check failed" only there. Lines from
/// before the packet read are dropped: ffprobe estimates the duration by seeking to an
/// arbitrary (not packet-aligned) offset near the end, where it may "see" a TEI flag in
/// what is the middle of a packet.
fn decode_warnings(path: &std::path::Path) -> String {
    let out =
        Command::new("ffprobe").args(["-v", "debug", "-show_packets", "-of", "compact"]).arg(path).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let continuity: Vec<&str> = log.lines().filter(|l| l.contains("Continuity check failed")).collect();
    let reading = log.split("After avformat_find_stream_info()").nth(1).unwrap_or("");
    let corrupt: Vec<&str> = reading.lines().filter(|l| l.contains("corrupt")).collect();
    [continuity, corrupt].concat().join("\n")
}

#[tokio::test]
async fn obs_style_push_becomes_a_ladder_of_playable_hls_and_a_recording() {
    let s = Server::start_with("[stream]\nchunk_seconds = 2.0\nreconnect_grace_seconds = 2\n");
    let rtmp = s.rtmp.expect("the ready file names the RTMP door");
    let (_token, key) = user_with_key(&s, "olive").await;
    // What OBS sends by default: 20 s of 720p30, a keyframe every 2 s.
    let mut ff = push(rtmp, &key, "1280x720", 60, 20);
    let id = live_stream_of(&s, "olive").await;

    let (code, master) = wait_for(Duration::from_secs(20), "the master playlist", || async {
        let (c, t) = get_text(&s, &format!("/hls/{id}/master.m3u8")).await;
        (c == 200 && t.contains("RESOLUTION=1280x720")).then_some((c, t))
    })
    .await;
    assert_eq!(code, 200);
    for r in ["source/index.m3u8", "480p/index.m3u8", "240p/index.m3u8"] {
        assert!(master.contains(r), "{r} missing from\n{master}");
    }
    assert!(master.contains("BANDWIDTH=") && master.contains("CODECS=\"avc1."), "{master}");
    let status = wait_for(Duration::from_secs(20), "ingest figures", || async {
        let st = get_json(&s, &format!("/api/v1/streams/{id}")).await;
        st["fps"].as_f64().is_some().then_some(st)
    })
    .await;
    assert_eq!(status["live"], true);
    assert!((25.0..=35.0).contains(&status["fps"].as_f64().unwrap()), "{status}");
    assert!(status["ingest_kbps"].as_u64().unwrap() > 50, "{status}");
    assert_eq!(status["renditions"].as_array().unwrap().len(), 3);

    let pushed = ff.wait().unwrap();
    assert!(pushed.success(), "ffmpeg push failed");
    let playlists = ended_playlists(&s, &id, &["source", "480p", "240p"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut counts = vec![];
    for (name, pl) in &playlists {
        let segs = segments(pl);
        let total: f64 = segs.iter().map(|x| x.1).sum();
        assert!((18.0..=22.0).contains(&total), "{name}: {total:.2} s listed for a 20 s push\n{pl}");
        assert!(pl.contains("#EXT-X-PROGRAM-DATE-TIME:") && pl.contains("#EXT-X-TARGETDURATION:"), "{pl}");
        assert!(segs.iter().map(|x| x.0).eq(0..segs.len() as u64), "{name}: the recording starts at 0, no holes");
        counts.push(segs.len());
        let all = check_rendition(&s, &id, name, pl, dir.path()).await;
        let (w, h, codec, pix) = stream_info(&all);
        assert_eq!((codec.as_str(), pix.as_str()), ("h264", "yuv420p"), "{name}");
        let expected_h = match name.as_str() {
            "source" => 720,
            "480p" => 480,
            _ => 240,
        };
        assert_eq!(h, expected_h, "{name}");
        assert!(w >= expected_h * 16 / 9 - 2 && w <= expected_h * 16 / 9 + 2, "{name} width {w}");
        let warnings = decode_warnings(&all);
        assert!(warnings.is_empty(), "{name}: {warnings}\n{pl}");
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "every rendition has the same segments: {counts:?}");
    // The recording: from the start, ended.
    let (_, rec) = get_text(&s, &format!("/hls/{id}/source/recording.m3u8")).await;
    assert!(rec.contains("#EXT-X-MEDIA-SEQUENCE:0") && rec.contains("#EXT-X-ENDLIST"), "{rec}");
    let list = get_json(&s, "/api/v1/streams").await;
    assert!(list["recordings"].as_array().unwrap().iter().any(|x| x["id"] == id.as_str()));
    // Segments are immutable and range-able; playlists are not cached long; CORS for players.
    let first = segments(&playlists["240p"])[0].2.clone();
    let r =
        s.client().get(s.url(&format!("/hls/{id}/240p/{first}"))).header("range", "bytes=0-187").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.bytes().await.unwrap().len(), 188);
}

#[tokio::test]
async fn keys_are_checked_and_two_streams_run_at_once() {
    let s = Server::start_with(SMALL);
    let rtmp = s.rtmp.unwrap();
    let (token_a, key_a) = user_with_key(&s, "amy").await;
    let (_token_b, key_b) = user_with_key(&s, "ben").await;

    let mut wrong = push(rtmp, "live_not_a_key", "320x240", 30, 3);
    assert!(!wrong.wait().unwrap().success(), "a wrong key is refused");

    let mut a = push(rtmp, &key_a, "320x240", 30, 6);
    let mut b = push(rtmp, &key_b, "320x240", 30, 6);
    let ida = live_stream_of(&s, "amy").await;
    let idb = live_stream_of(&s, "ben").await;
    assert_ne!(ida, idb);
    let list = get_json(&s, "/api/v1/streams").await;
    assert!(list["live"].as_array().unwrap().len() >= 2, "{list}");
    // A second publisher on a live key is refused; the first goes on.
    let mut dup = push(rtmp, &key_a, "320x240", 30, 3);
    assert!(!dup.wait().unwrap().success(), "a second publisher is refused");
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    ended_playlists(&s, &ida, &["source", "240p"]).await;
    ended_playlists(&s, &idb, &["source", "240p"]).await;

    // Revoked keys are refused.
    let r = s.client().delete(s.url("/api/v1/stream-key")).bearer_auth(&token_a).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let mut revoked = push(rtmp, &key_a, "320x240", 30, 3);
    assert!(!revoked.wait().unwrap().success(), "a revoked key is refused");
}

#[tokio::test]
async fn a_reconnect_continues_the_stream_after_a_discontinuity() {
    let s = Server::start_with(&SMALL.replace("reconnect_grace_seconds = 2", "reconnect_grace_seconds = 8"));
    let rtmp = s.rtmp.unwrap();
    let (_t, key) = user_with_key(&s, "cara").await;
    assert!(push(rtmp, &key, "320x240", 30, 3).wait().unwrap().success());
    let id = live_stream_of(&s, "cara").await;
    assert!(push(rtmp, &key, "320x240", 30, 3).wait().unwrap().success());
    assert_eq!(live_stream_of(&s, "cara").await, id, "the same stream continues");
    let playlists = ended_playlists(&s, &id, &["source", "240p"]).await;
    for (name, pl) in &playlists {
        assert_eq!(pl.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{name}:\n{pl}");
        let total: f64 = segments(pl).iter().map(|x| x.1).sum();
        assert!((5.0..=7.5).contains(&total), "{name}: {total}");
    }
}

#[tokio::test]
async fn a_killed_transcode_leaves_no_hole() {
    let s = Server::start_with(SMALL);
    let rtmp = s.rtmp.unwrap();
    let (_t, key) = user_with_key(&s, "dan").await;
    let mut ff = push(rtmp, &key, "640x360", 30, 8);
    let id = live_stream_of(&s, "dan").await;
    // Kill transcoding ffmpeg processes of this stream as they appear.
    let pattern = format!("postcast-chunk-{id}");
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline && killed < 3 {
        if Command::new("pkill").args(["-KILL", "-f", &pattern]).status().unwrap().success() {
            killed += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed > 0, "no transcode process was seen to kill");
    assert!(ff.wait().unwrap().success());
    let pushed = pushed_seconds("640x360", 30, 8);
    let playlists = ended_playlists(&s, &id, &["source", "240p"]).await;
    for (name, pl) in &playlists {
        let segs = segments(pl);
        assert!(segs.iter().map(|x| x.0).eq(0..segs.len() as u64), "{name}: no hole\n{pl}");
        // The killed transcodes were retried: every segment is the rendition's own, none
        // a gap or a stand-in from another rendition, and together they last what was
        // pushed (the 8 s of video and the audio's tail after it) to within one frame.
        assert!(segs.iter().all(|(_, _, uri, gap)| !gap && !uri.contains('/')), "{name}: a lost segment\n{pl}");
        let total: f64 = segs.iter().map(|x| x.1).sum();
        let frame = 1.0 / 30.0;
        assert!((total - pushed).abs() <= frame, "{name}: {total:.3} s listed for a {pushed:.3} s push\n{pl}");
        for (seq, _, uri, gap) in &segs {
            if !gap {
                let r = s.client().get(s.url(&format!("/hls/{id}/{name}/{uri}"))).send().await.unwrap();
                assert_eq!(r.status(), 200, "{name} segment {seq}");
            }
        }
    }
    let metrics = s.client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("postcast_jobs_retried_total"), "the kill shows up as a retry in /metrics");
}

#[tokio::test]
async fn a_missing_ffmpeg_is_one_clear_error() {
    let s = Server::start_logged("[stream]\nffmpeg = \"/nonexistent/ffmpeg\"\n");
    let rtmp = s.rtmp.unwrap();
    let (_t, key) = user_with_key(&s, "eli").await;
    let out = push(rtmp, &key, "320x240", 30, 2).wait_with_output().unwrap();
    assert!(!out.status.success(), "publishing is refused without ffmpeg");
    // The publisher's software shows the server's reason.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("ffmpeg not found") && said.contains("apt-get install ffmpeg"), "{said}");
    // The log says it once at start, and again for the refused publisher.
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ffmpeg not found")).collect();
    assert!(lines.iter().any(|l| l.contains("ERROR") && l.contains("refuse publishers")), "{log}");
    assert!(lines.iter().any(|l| l.contains("127.0.0.1") && l.contains("apt-get install ffmpeg")), "{log}");
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the server keeps running");
}

#[tokio::test]
async fn a_long_keyframe_interval_is_reported_and_the_raw_feed_is_kept() {
    let s = Server::start_with(SMALL);
    let rtmp = s.rtmp.unwrap();
    let (_t, key) = user_with_key(&s, "fay").await;
    // A keyframe every 3 s against 1 s chunks.
    let mut ff = push(rtmp, &key, "320x240", 90, 8);
    let id = live_stream_of(&s, "fay").await;
    let status = wait_for(Duration::from_secs(20), "a keyframe warning", || async {
        let st = get_json(&s, &format!("/api/v1/streams/{id}")).await;
        (!st["warnings"].as_array()?.is_empty()).then_some(st)
    })
    .await;
    let warning = status["warnings"][0].as_str().unwrap();
    assert!(warning.contains("Keyframe Interval") && warning.contains("OBS"), "{warning}");
    assert_eq!(status["keyframe_interval_ms"], 3000);
    assert!(ff.wait().unwrap().success());
    ended_playlists(&s, &id, &["source", "240p"]).await;
    // The raw backup: FLV chunks in the blob store (files, or database rows when small),
    // beside the MPEG-TS segments.
    let mut blobs = Vec::new();
    let mut stack = vec![s.data.path().join("blobs")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                blobs.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let url = format!("sqlite://{}?mode=ro", s.data.path().join("postcast.db").display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    let small = sea_orm::Statement::from_string(db.get_database_backend(), "SELECT bytes FROM blob_inline");
    for row in sea_orm::ConnectionTrait::query_all_raw(&db, small).await.unwrap() {
        blobs.push(row.try_get::<Vec<u8>>("", "bytes").unwrap());
    }
    let flv = blobs.iter().filter(|b| b.starts_with(b"FLV\x01")).count();
    assert!(flv >= 2, "the source chunks are kept as FLV blobs ({flv} found)");
}
