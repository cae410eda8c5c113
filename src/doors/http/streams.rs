//! HTTP routes of the stream domain under `/api/v1`: the owner's stream key with the OBS
//! settings to use (`/stream-key`: whether there is one, rotate to make one and see it
//! once, revoke), the public list of live streams
//! and recordings (`/streams`), one stream's status (`/streams/{id}`) and the owner's
//! deletion of a recording. It turns requests into [`StreamService`] calls and
//! [`StreamError`]s into [`AppError`]s (the mapping lives beside the HLS routes); it holds
//! no SQL and no business rule.
//!
//! Invariants: the key routes and deletion take a [`CurrentUser`] and only ever touch that
//! user's key and streams (someone else's stream is "not found", never "forbidden"); the
//! list and status routes are public and never show a stream key; no handler logs a key.
//!
//! [`StreamService`]: crate::domains::stream::StreamService

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::{AppError, CurrentUser, HttpState};
use crate::domains::stream::{RenditionStatus, StreamList, StreamStatus, StreamSummary, is_valid_name};

/// The stream routes, relative to `/api/v1`.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/stream-key", get(get_key).delete(revoke_key))
        .route("/stream-key/rotate", post(rotate_key))
        .route("/streams", get(list_streams))
        .route("/streams/{id}", get(stream_status).delete(delete_recording))
}

/// The caller's stream key, where to send the stream, and how to set up OBS.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamKeyBody {
    /// The secret OBS sends as its stream key: answered once, by the rotation that makes
    /// it (only its fingerprint is stored); null otherwise.
    pub key: Option<String>,
    /// Whether the user has a key (it works for publishing even when `key` is null).
    pub has_key: bool,
    /// When the current key was made (Unix seconds); null without a key.
    pub created_at: Option<i64>,
    /// Where to publish: `rtmp://HOST:PORT/live`; OBS appends the key.
    pub ingest_url: String,
    /// The OBS settings to use with this server.
    pub obs: ObsSettings,
}

/// What to enter in OBS (Settings → Stream, and Settings → Output in "Advanced" mode).
#[derive(Debug, Serialize, ToSchema)]
pub struct ObsSettings {
    /// Stream → Service "Custom…" → Server.
    pub server: String,
    /// Stream → Stream Key; null except in the answer of the rotation that made it.
    pub stream_key: Option<String>,
    /// Output → Keyframe Interval in seconds: at most the server's chunk length, so every
    /// chunk (and HLS segment) starts on a keyframe.
    pub keyframe_interval_s: u32,
    /// Output → Rate Control.
    pub rate_control: &'static str,
    /// Output → Bitrate in kbit/s: a suggestion; 2500 suits 720p30, up to 6000 for 1080p60.
    pub bitrate_kbps: u32,
    /// Output → Video Encoder.
    pub encoder: &'static str,
    /// Output → CPU Usage Preset.
    pub preset: &'static str,
    /// Output → Profile.
    pub profile: &'static str,
    /// Output → Tune (optional: lowers latency a little).
    pub tune: Option<&'static str>,
    /// Output → Audio → Bitrate in kbit/s (the audio is copied into every quality).
    pub audio_bitrate_kbps: u32,
}

impl ObsSettings {
    /// The settings for publishing to `server` with `key`, for chunks of `chunk_seconds`.
    fn new(server: String, key: Option<String>, chunk_seconds: f64) -> Self {
        Self {
            server,
            stream_key: key,
            keyframe_interval_s: keyframe_interval_s(chunk_seconds),
            rate_control: "CBR",
            bitrate_kbps: 4500,
            encoder: "x264",
            preset: "veryfast",
            profile: "high",
            tune: Some("zerolatency"),
            audio_bitrate_kbps: 160,
        }
    }
}

/// OBS takes whole seconds: the longest interval that still cuts every chunk on time.
fn keyframe_interval_s(chunk_seconds: f64) -> u32 {
    if chunk_seconds.is_finite() { chunk_seconds.floor().clamp(1.0, 30.0) as u32 } else { 2 }
}

/// The ingest URL as a broadcaster must type it: a server listening on every address
/// (`0.0.0.0`, `[::]`) is reached by the host name the browser used for this page.
fn public_ingest_url(url: &str, request_host: Option<&str>) -> String {
    let Some(rest) = url.strip_prefix("rtmp://") else { return url.to_owned() };
    let authority = rest.split('/').next().unwrap_or(rest);
    let path = &rest[authority.len()..];
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i..]),
        _ => (authority, ""),
    };
    let unspecified = matches!(host, "0.0.0.0" | "[::]" | "[0:0:0:0:0:0:0:0]");
    match request_host.and_then(host_name) {
        Some(name) if unspecified => format!("rtmp://{name}{port}{path}"),
        _ => url.to_owned(),
    }
}

/// The host name of a `Host` header (without its port), when it is a plain name or address.
fn host_name(value: &str) -> Option<&str> {
    let name =
        if value.starts_with('[') { &value[..=value.find(']')?] } else { value.split(':').next().unwrap_or(value) };
    let plain = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    plain.then_some(name)
}

/// The answer of the key routes: `key` only when it was just made, `created_at` of the
/// current key if there is one.
fn key_body(s: &HttpState, headers: &HeaderMap, key: Option<String>, created_at: Option<i64>) -> StreamKeyBody {
    let request_host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let ingest_url = public_ingest_url(&s.stream.ingest_url(), request_host);
    let obs = ObsSettings::new(ingest_url.clone(), key.clone(), s.settings.keyframe_seconds);
    StreamKeyBody { key, has_key: created_at.is_some(), created_at, ingest_url, obs }
}

#[utoipa::path(get, path = "/api/v1/stream-key", tag = "streams",
    description = "Whether the caller has a key and how to set up OBS; the key itself is shown only when made.",
    responses((status = 200, body = StreamKeyBody), (status = 401, body = ErrorBody)))]
async fn get_key(
    State(s): State<HttpState>,
    headers: HeaderMap,
    user: CurrentUser,
) -> Result<Json<StreamKeyBody>, AppError> {
    let made = s.stream.stream_key_made(user.user_id).await?;
    Ok(Json(key_body(&s, &headers, None, made)))
}

#[utoipa::path(post, path = "/api/v1/stream-key/rotate", tag = "streams",
    description = "A new key replaces the old one (made when there was none); OBS needs the new key. \
        This answer is the only one that holds the key.",
    responses((status = 200, body = StreamKeyBody), (status = 401, body = ErrorBody)))]
async fn rotate_key(
    State(s): State<HttpState>,
    headers: HeaderMap,
    user: CurrentUser,
) -> Result<Json<StreamKeyBody>, AppError> {
    let key = s.stream.rotate_key(user.user_id).await?;
    let made = s.stream.stream_key_made(user.user_id).await?;
    Ok(Json(key_body(&s, &headers, Some(key), made)))
}

#[utoipa::path(delete, path = "/api/v1/stream-key", tag = "streams",
    description = "Revokes the key: publishing with it is refused until a new one is made.",
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn revoke_key(State(s): State<HttpState>, user: CurrentUser) -> Result<StatusCode, AppError> {
    s.stream.revoke_key(user.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/streams", tag = "streams",
    description = "Public: who is live now, and the recordings.",
    responses((status = 200, body = StreamList)))]
async fn list_streams(State(s): State<HttpState>) -> Result<Json<StreamList>, AppError> {
    Ok(Json(s.stream.list().await?))
}

#[utoipa::path(get, path = "/api/v1/streams/{id}", tag = "streams",
    description = "Public: a stream's state, viewers, renditions, ingest figures and warnings.",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 200, body = StreamStatus), (status = 404, body = ErrorBody)))]
async fn stream_status(State(s): State<HttpState>, Path(id): Path<String>) -> Result<Json<StreamStatus>, AppError> {
    if !is_valid_name(&id) {
        return Err(AppError::not_found("stream"));
    }
    Ok(Json(s.stream.status(&id).await?))
}

#[utoipa::path(delete, path = "/api/v1/streams/{id}", tag = "streams",
    description = "Deletes one of the caller's recordings; anybody else's stream is 404.",
    params(("id" = String, Path, description = "The stream's id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_recording(
    State(s): State<HttpState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    if !is_valid_name(&id) {
        return Err(AppError::not_found("stream"));
    }
    s.stream.delete_recording(user.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI description of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_key, rotate_key, revoke_key, list_streams, stream_status, delete_recording),
    components(schemas(
        StreamKeyBody,
        ObsSettings,
        StreamList,
        StreamSummary,
        StreamStatus,
        RenditionStatus,
        ErrorBody,
        ErrorDetail
    ))
)]
struct StreamsApi;

/// The OpenAPI description of the stream routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    StreamsApi::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_takes_the_page_host() {
        let url = "rtmp://0.0.0.0:1935/live";
        assert_eq!(public_ingest_url(url, Some("media.example.org:8080")), "rtmp://media.example.org:1935/live");
        assert_eq!(public_ingest_url(url, Some("[2001:db8::1]:8080")), "rtmp://[2001:db8::1]:1935/live");
        assert_eq!(public_ingest_url("rtmp://[::]:1935/live", Some("tv.example")), "rtmp://tv.example:1935/live");
        assert_eq!(public_ingest_url(url, None), url);
        assert_eq!(public_ingest_url(url, Some("bad host/<x>")), url);
    }

    #[test]
    fn a_specific_listen_address_is_kept() {
        for url in ["rtmp://127.0.0.1:1935/live", "rtmp://[::1]:1935/live", "rtmp://tv.example/live"] {
            assert_eq!(public_ingest_url(url, Some("other.example:8080")), url);
        }
    }

    #[test]
    fn the_keyframe_interval_fits_the_chunk() {
        assert_eq!(keyframe_interval_s(2.0), 2);
        assert_eq!(keyframe_interval_s(2.5), 2);
        assert_eq!(keyframe_interval_s(1.0), 1);
        assert_eq!(keyframe_interval_s(0.5), 1);
        assert_eq!(keyframe_interval_s(f64::NAN), 2);
    }

    #[test]
    fn only_plausible_ids_are_looked_up() {
        assert!(is_valid_name("a1B2-c_3"));
        for id in ["", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(!is_valid_name(id), "{id}");
        }
    }

    #[test]
    fn obs_settings_name_the_key_and_server() {
        let obs = ObsSettings::new("rtmp://h:1935/live".into(), Some("k".into()), 2.0);
        let v = serde_json::to_value(&obs).unwrap_or_default();
        assert_eq!(v["server"], "rtmp://h:1935/live");
        assert_eq!(v["stream_key"], "k");
        assert_eq!(v["keyframe_interval_s"], 2);
        assert_eq!(v["rate_control"], "CBR");
        assert_eq!(v["encoder"], "x264");
        assert_eq!(v["profile"], "high");
        assert_eq!(v["tune"], "zerolatency");
        assert!((2500..=6000).contains(&v["bitrate_kbps"].as_u64().unwrap_or(0)));
    }
}
