//! The HLS door: `/hls/{stream}/master.m3u8`, each rendition's live window
//! (`index.m3u8`) and whole recording (`recording.m3u8`), and its segments (`{seq}.ts`).
//! Public (no session), for any player on any origin (CORS). It validates the path, asks the
//! stream service, and turns the answer into HTTP: content types, caching, `ETag`, `Range`.
//! It builds no playlist and keeps no segment cache itself — the service does both.
//!
//! Invariants:
//! - **Every path part is checked before the service sees it**: stream and rendition names
//!   are `[A-Za-z0-9_-]`, a segment is `{seq}.ts` with a canonical decimal `seq`; anything
//!   else is a 404, never a panic.
//! - Segments are immutable once listed, so they are cached for a year; playlists that may
//!   still grow are never cached.
//! - Every response under `/hls` carries `Access-Control-Allow-Origin: *`.
//!
//! Also here: the one mapping of [`StreamError`] onto [`AppError`], used by every route that
//! calls the stream service.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_http::cors::{Any, CorsLayer};

use super::{AppError, HttpState};
use crate::domains::auth::ClientInfo;
use crate::domains::stream::{HlsFetch, PlaylistKind, StreamError, is_valid_name};

/// RFC 8216 §4: the media type of playlists.
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// RFC 8216 §3.2: MPEG-2 transport stream segments.
const SEGMENT_TYPE: &str = "video/mp2t";
/// A listed segment never changes.
const SEGMENT_CACHE: &str = "public, max-age=31536000, immutable";
/// A playlist that may still grow: players must always ask again.
const LIVE_PLAYLIST_CACHE: &str = "no-cache";
/// A finished playlist (`EXT-X-ENDLIST`) is stable, but the recording may be deleted.
const ENDED_PLAYLIST_CACHE: &str = "public, max-age=30";

impl From<StreamError> for AppError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::NotFound(what) => AppError::not_found(what),
            StreamError::UnknownApp(_) => AppError::bad_request(e.to_string()),
            StreamError::InvalidKey => AppError::new(StatusCode::FORBIDDEN, "invalid_key", e.to_string()),
            StreamError::AlreadyLive => AppError::new(StatusCode::CONFLICT, "already_live", e.to_string()),
            StreamError::AccountDisabled => AppError::new(StatusCode::FORBIDDEN, "account_disabled", e.to_string()),
            StreamError::Stopped => AppError::new(StatusCode::CONFLICT, "stream_stopped", e.to_string()),
            StreamError::OverQuota => AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "over_quota", e.to_string()),
            StreamError::FfmpegMissing(m) => AppError::new(StatusCode::SERVICE_UNAVAILABLE, "ffmpeg_missing", m),
            StreamError::Db(_) | StreamError::Blob(_) | StreamError::Account(_) => AppError::internal(e),
        }
    }
}

/// The `/hls` routes (absolute paths), CORS included. One catch-all route parses the path
/// itself (axum cannot mix `{stream}` and a catch-all at one level), so anything under
/// `/hls` that is not a playlist or segment is a 404 here, not the web UI's page.
pub fn routes() -> Router<HttpState> {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers([header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES, header::ETAG])
        .max_age(std::time::Duration::from_secs(86_400));
    Router::new()
        .route("/hls", get(not_found))
        .route("/hls/", get(not_found))
        .route("/hls/{*path}", get(hls))
        .layer(cors)
}

/// `?session=`: the player session id a page may add to every HLS request.
#[derive(Debug, Deserialize)]
struct ViewerQuery {
    session: Option<String>,
}

/// What an `/hls/...` path asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HlsPath {
    /// `{stream}/master.m3u8`
    Master { stream: String },
    /// `{stream}/{rendition}/{file}`
    Rendition { stream: String, rendition: String, file: RenditionFile },
}

/// What a rendition path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RenditionFile {
    /// `index.m3u8`
    Live,
    /// `recording.m3u8`
    Recording,
    /// `{seq}.ts`
    Segment(u64),
}

/// Parses the part after `/hls/`; `None` for anything that is not ours.
fn parse_path(path: &str) -> Option<HlsPath> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [stream, "master.m3u8"] if is_valid_name(stream) => Some(HlsPath::Master { stream: (*stream).to_owned() }),
        [stream, rendition, file] if is_valid_name(stream) && is_valid_name(rendition) => Some(HlsPath::Rendition {
            stream: (*stream).to_owned(),
            rendition: (*rendition).to_owned(),
            file: parse_file(file)?,
        }),
        _ => None,
    }
}

async fn not_found() -> AppError {
    AppError::not_found("playlist or segment")
}

async fn hls(
    State(s): State<HttpState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ViewerQuery>, QueryRejection>,
    client: ClientInfo,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(path) = path.ok().and_then(|Path(p)| parse_path(&p)) else { return Err(not_found().await) };
    let service = &s.stream;
    let (stream, fetch, response) = match path {
        HlsPath::Master { stream } => {
            let text = service.master_playlist(&stream).await?;
            (stream, HlsFetch::Master, playlist_response(text, LIVE_PLAYLIST_CACHE))
        }
        HlsPath::Rendition { stream, rendition, file: file @ (RenditionFile::Live | RenditionFile::Recording) } => {
            let kind = if file == RenditionFile::Live { PlaylistKind::Live } else { PlaylistKind::Recording };
            let text = service.media_playlist(&stream, &rendition, kind).await?;
            // RFC 8216 §4.3.3.4: a playlist with EXT-X-ENDLIST gets no more segments.
            let cache = if text.contains("#EXT-X-ENDLIST") { ENDED_PLAYLIST_CACHE } else { LIVE_PLAYLIST_CACHE };
            (stream, HlsFetch::MediaPlaylist, playlist_response(text, cache))
        }
        HlsPath::Rendition { stream, rendition, file: RenditionFile::Segment(seq) } => {
            let bytes = service.segment(&stream, &rendition, seq).await?;
            let etag = format!("\"{stream}-{rendition}-{seq}-{:x}\"", bytes.len());
            let response = segment_response(bytes, &etag, &headers);
            (stream, HlsFetch::Segment, response)
        }
    };
    let viewer = viewer_key(query.ok().and_then(|Query(q)| q.session), &client);
    service.note_viewer(&stream, &viewer, fetch, client.ip);
    Ok(response)
}

/// `index.m3u8`, `recording.m3u8` or `{seq}.ts` with a canonical decimal `seq` (no sign, no
/// leading zero), so one segment has one URL.
fn parse_file(file: &str) -> Option<RenditionFile> {
    match file {
        "index.m3u8" => Some(RenditionFile::Live),
        "recording.m3u8" => Some(RenditionFile::Recording),
        _ => {
            let digits = file.strip_suffix(".ts")?;
            let canonical = !digits.is_empty()
                && digits.len() <= 20
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            if !canonical {
                return None;
            }
            digits.parse().ok().map(RenditionFile::Segment)
        }
    }
}

/// Who is watching, for the viewer count: the player's `?session=` when it sends a sane
/// one, else a hash of address and user agent (never stored in the clear).
fn viewer_key(session: Option<String>, client: &ClientInfo) -> String {
    if let Some(session) = session.filter(|s| is_valid_name(s)) {
        return format!("s:{session}");
    }
    let digest = Sha256::new().chain_update(client.ip.to_string()).chain_update([0]).chain_update(&client.user_agent);
    format!("c:{}", hex::encode(&digest.finalize()[..12]))
}

fn playlist_response(text: String, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        text,
    )
        .into_response()
}

/// Which part of a segment to send (RFC 9110 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// No usable `Range`: the whole body, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// Nothing of the body is in the range: 416.
    Unsatisfiable,
}

/// Reads one `Range: bytes=a-b | a- | -n` against a body of `len` bytes. A header that is
/// malformed, not about bytes, or asks for several ranges is ignored (RFC 9110 §14.2 lets a
/// server do so), which serves the whole body.
fn parse_range(value: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = value.map(str::trim).and_then(|v| v.strip_prefix("bytes=")) else { return ByteRange::Full };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return ByteRange::Full };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(n) if len > 0 => ByteRange::Part { start: len.saturating_sub(n), end: len - 1 },
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Full,
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            Some(a) if a < len => ByteRange::Part { start: a, end: len - 1 },
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Full,
        },
        // `a-b`: b past the end means the end; b < a makes the header invalid.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b && a < len => ByteRange::Part { start: a, end: b.min(len - 1) },
            (Some(a), Some(b)) if a <= b => ByteRange::Unsatisfiable,
            _ => ByteRange::Full,
        },
        (true, true) => ByteRange::Full,
    }
}

/// `If-None-Match` lists `etag` (or `*`): the client already has the segment.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == etag))
}

/// A segment, whole or in part, with its caching headers; HEAD gets the same headers.
fn segment_response(bytes: Bytes, etag: &str, request: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SEGMENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(SEGMENT_CACHE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if etag_matches(request, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let len = bytes.len() as u64;
    // RFC 9110 §13.1.5: a Range under an If-Range that no longer matches gets the whole body.
    let if_range_ok = request.get(header::IF_RANGE).is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == etag));
    let range = if if_range_ok {
        parse_range(request.get(header::RANGE).and_then(|v| v.to_str().ok()), len)
    } else {
        ByteRange::Full
    };
    let (status, body) = match range {
        ByteRange::Full => (StatusCode::OK, bytes),
        ByteRange::Part { start, end } => {
            set(&mut headers, header::CONTENT_RANGE, &format!("bytes {start}-{end}/{len}"));
            let (start, end) = (usize::try_from(start).unwrap_or(0), usize::try_from(end).unwrap_or(0));
            (StatusCode::PARTIAL_CONTENT, bytes.slice(start..=end))
        }
        ByteRange::Unsatisfiable => {
            set(&mut headers, header::CONTENT_RANGE, &format!("bytes */{len}"));
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    };
    set(&mut headers, header::CONTENT_LENGTH, &body.len().to_string());
    (status, headers, Body::from(body)).into_response()
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn names_are_checked() {
        for ok in ["abc", "A-b_9", "0", &"x".repeat(64)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "a.b", "a/b", "..", "a b", "é", "a%2F", &"x".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn files_are_checked() {
        assert_eq!(parse_file("index.m3u8"), Some(RenditionFile::Live));
        assert_eq!(parse_file("recording.m3u8"), Some(RenditionFile::Recording));
        assert_eq!(parse_file("0.ts"), Some(RenditionFile::Segment(0)));
        assert_eq!(parse_file("18446744073709551615.ts"), Some(RenditionFile::Segment(u64::MAX)));
        for bad in [
            ".ts",
            "01.ts",
            "+1.ts",
            "-1.ts",
            "1.TS",
            "1.ts.ts",
            "1x.ts",
            "18446744073709551616.ts",
            "999999999999999999999.ts",
            "master.m3u8",
            "index.m3u",
            "",
        ] {
            assert_eq!(parse_file(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        let r = |v: &str| parse_range(Some(v), 1000);
        assert_eq!(parse_range(None, 1000), Full);
        assert_eq!(r("bytes=0-99"), Part { start: 0, end: 99 });
        assert_eq!(r("bytes=500-"), Part { start: 500, end: 999 });
        assert_eq!(r("bytes=-100"), Part { start: 900, end: 999 });
        assert_eq!(r("bytes=-5000"), Part { start: 0, end: 999 });
        assert_eq!(r("bytes=900-5000"), Part { start: 900, end: 999 });
        assert_eq!(r("bytes=999-999"), Part { start: 999, end: 999 });
        assert_eq!(r("bytes=1000-"), Unsatisfiable);
        assert_eq!(r("bytes=1000-2000"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
        for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=a-b", "bytes=-", "bytes=1", "bytes=+1-2"] {
            assert_eq!(r(ignored), Full, "{ignored}");
        }
        assert_eq!(r("bytes=18446744073709551615-"), Unsatisfiable);
        assert_eq!(r("bytes=99999999999999999999-"), Full);
    }

    #[test]
    fn viewers_are_told_apart_by_session_or_by_address_and_agent() {
        let client = |ip: [u8; 4], ua: &str| ClientInfo { ip: ip.into(), user_agent: ua.into() };
        let a = client([10, 0, 0, 1], "hls.js");
        assert_eq!(viewer_key(Some("abc-1".into()), &a), "s:abc-1");
        let hashed = viewer_key(None, &a);
        assert!(hashed.starts_with("c:") && hashed.len() == 26, "{hashed}");
        assert_eq!(viewer_key(Some("bad session!".into()), &a), hashed);
        assert_ne!(viewer_key(None, &client([10, 0, 0, 2], "hls.js")), hashed);
        assert_ne!(viewer_key(None, &client([10, 0, 0, 1], "VLC")), hashed);
    }

    #[test]
    fn every_stream_error_has_a_status() {
        assert_eq!(AppError::from(StreamError::NotFound("segment")).status, StatusCode::NOT_FOUND);
        assert_eq!(AppError::from(StreamError::InvalidKey).status, StatusCode::FORBIDDEN);
        assert_eq!(AppError::from(StreamError::AlreadyLive).status, StatusCode::CONFLICT);
        assert_eq!(AppError::from(StreamError::FfmpegMissing("x".into())).status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(AppError::from(StreamError::Account("x".into())).status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// A router serving one fixed segment through [`segment_response`], with the same CORS.
    fn segment_app(body: &'static [u8]) -> Router {
        let cors = CorsLayer::new().allow_origin(Any).allow_methods([Method::GET, Method::HEAD]).allow_headers(Any);
        Router::new()
            .route(
                "/s.ts",
                get(move |headers: HeaderMap| async move { segment_response(Bytes::from_static(body), "\"e1\"", &headers) }),
            )
            .layer(cors)
    }

    async fn call(app: Router, method: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri("/s.ts");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::empty()).unwrap_or_default();
        let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        (parts.status, parts.headers, bytes.to_vec())
    }

    fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn segments_answer_get_head_range_and_conditional_requests() {
        let app = segment_app(b"0123456789");
        let (status, headers, body) = call(app.clone(), "GET", &[("origin", "https://elsewhere.example")]).await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"0123456789"[..]));
        assert_eq!(h(&headers, "content-type"), "video/mp2t");
        assert_eq!(h(&headers, "cache-control"), "public, max-age=31536000, immutable");
        assert_eq!(h(&headers, "accept-ranges"), "bytes");
        assert_eq!(h(&headers, "etag"), "\"e1\"");
        assert_eq!(h(&headers, "access-control-allow-origin"), "*");

        let (status, headers, body) = call(app.clone(), "HEAD", &[]).await;
        assert_eq!((status, h(&headers, "content-length"), body.len()), (StatusCode::OK, "10", 0));

        let (status, headers, body) = call(app.clone(), "GET", &[("range", "bytes=2-4")]).await;
        assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &b"234"[..]));
        assert_eq!((h(&headers, "content-range"), h(&headers, "content-length")), ("bytes 2-4/10", "3"));

        let (status, _, body) = call(app.clone(), "GET", &[("range", "bytes=-3")]).await;
        assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &b"789"[..]));

        let (status, headers, _) = call(app.clone(), "HEAD", &[("range", "bytes=5-")]).await;
        assert_eq!((status, h(&headers, "content-length")), (StatusCode::PARTIAL_CONTENT, "5"));

        let (status, headers, body) = call(app.clone(), "GET", &[("range", "bytes=10-")]).await;
        assert_eq!(
            (status, h(&headers, "content-range"), body.len()),
            (StatusCode::RANGE_NOT_SATISFIABLE, "bytes */10", 0)
        );

        let (status, _, body) = call(app.clone(), "GET", &[("range", "bytes=2-4"), ("if-range", "\"old\"")]).await;
        assert_eq!((status, body.len()), (StatusCode::OK, 10));

        let (status, _, body) = call(app.clone(), "GET", &[("if-none-match", "\"x\", \"e1\"")]).await;
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

        let preflight = [
            ("origin", "https://elsewhere.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "range"),
        ];
        let (status, headers, _) = call(app, "OPTIONS", &preflight).await;
        assert!(status.is_success(), "{status}");
        assert_eq!(h(&headers, "access-control-allow-origin"), "*");
        assert!(h(&headers, "access-control-allow-methods").contains("GET"));
    }

    #[test]
    fn paths_are_checked() {
        let master = |s: &str| Some(HlsPath::Master { stream: s.into() });
        let file = |s: &str, r: &str, file| Some(HlsPath::Rendition { stream: s.into(), rendition: r.into(), file });
        assert_eq!(parse_path("abc/master.m3u8"), master("abc"));
        assert_eq!(parse_path("abc/480p/index.m3u8"), file("abc", "480p", RenditionFile::Live));
        assert_eq!(parse_path("abc/480p/recording.m3u8"), file("abc", "480p", RenditionFile::Recording));
        assert_eq!(parse_path("abc/source/12.ts"), file("abc", "source", RenditionFile::Segment(12)));
        for bad in [
            "",
            "abc",
            "abc/",
            "master.m3u8",
            "abc/master.m3u8/",
            "../master.m3u8",
            "abc/../index.m3u8",
            "abc/480p/../1.ts",
            "abc/480p/1.ts/x",
            "abc//1.ts",
            "a.b/480p/1.ts",
            "abc/480p/index.m3u8?x",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_routes_can_be_built_beside_the_web_ui_catch_all() {
        let ui: Router<HttpState> = Router::new().route("/{*path}", get(|| async { "page" }));
        let _ = ui.merge(routes());
    }
}
