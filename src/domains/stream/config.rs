//! The stream domain's configuration, `[stream]` and its `[[stream.ladder]]` entries:
//! ingest limits, chunking, the transcoding ladder and retention. Types, defaults and
//! range checks only; the domain and the RTMP door read them, the application's `Config`
//! names them.

use serde::{Deserialize, Serialize};

use crate::platform::config::ConfigError;

/// `[stream]`: live streaming.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Target length of a source chunk (and so of an HLS segment), in seconds. Chunks are
    /// cut at keyframes, so the broadcaster's keyframe interval should be this or less.
    pub chunk_seconds: f64,
    /// How long a publisher may be gone and reconnect into the same stream, in seconds.
    pub reconnect_grace_seconds: u64,
    /// Segments in the sliding live playlist.
    pub live_window_segments: usize,
    /// The ffmpeg binary (a name on PATH or a path).
    pub ffmpeg: String,
    /// Seconds one transcode of one chunk may take before it is killed and retried.
    pub transcode_timeout_seconds: u64,
    /// Hours the raw source chunks (the backup of what was received) are kept; 0 = forever.
    pub raw_retention_hours: u64,
    /// Days recordings are kept after a stream ends; 0 = forever.
    pub recording_retention_days: u64,
    /// Memory for hot segments served to viewers, in MiB.
    pub segment_cache_mib: u64,
    /// Largest RTMP message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Seconds an RTMP client may take for the whole handshake.
    pub rtmp_handshake_seconds: u64,
    /// Seconds an RTMP connection may go without completing a message before it is closed.
    pub rtmp_read_timeout_seconds: u64,
    /// Seconds after the RTMP handshake within which a publish with a valid stream key must
    /// be accepted; the connection is closed otherwise.
    pub rtmp_publish_seconds: u64,
    /// RTMP connections open at once; more are closed on arrival.
    pub rtmp_max_connections: usize,
    /// RTMP connections open at once from one client (an IPv4 address, an IPv6 /64); more
    /// are closed on arrival.
    pub rtmp_connections_per_ip: usize,
    /// The renditions every chunk is transcoded into.
    pub ladder: Vec<RenditionConfig>,
}

/// One `[[stream.ladder]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// Name used in URLs, e.g. `480p`; `source` copies the broadcaster's video.
    pub name: String,
    /// Output height in pixels; 0 keeps the source (video copied, not re-encoded).
    #[serde(default)]
    pub height: u32,
    /// Video bitrate in kbit/s (ignored for a copied rendition).
    #[serde(default)]
    pub video_kbps: u32,
    /// `copy` (recommended: no clicks at chunk boundaries) or an AAC bitrate like `96k`.
    #[serde(default = "default_audio")]
    pub audio: String,
    /// x264 preset.
    #[serde(default = "default_preset")]
    pub preset: String,
}

fn default_audio() -> String {
    "copy".into()
}

fn default_preset() -> String {
    "veryfast".into()
}

impl Default for StreamConfig {
    fn default() -> Self {
        let rendition = |name: &str, height, video_kbps| RenditionConfig {
            name: name.into(),
            height,
            video_kbps,
            audio: default_audio(),
            preset: default_preset(),
        };
        Self {
            chunk_seconds: 2.0,
            reconnect_grace_seconds: 15,
            live_window_segments: 6,
            ffmpeg: "ffmpeg".into(),
            transcode_timeout_seconds: 20,
            raw_retention_hours: 168,
            recording_retention_days: 30,
            segment_cache_mib: 256,
            max_message_bytes: 8 << 20,
            rtmp_handshake_seconds: 10,
            rtmp_read_timeout_seconds: 30,
            rtmp_publish_seconds: 10,
            rtmp_max_connections: 256,
            rtmp_connections_per_ip: 16,
            ladder: vec![rendition("source", 0, 0), rendition("480p", 480, 1200), rendition("240p", 240, 400)],
        }
    }
}

impl StreamConfig {
    /// Rejects a ladder, chunk length or ingest limit that cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        let names: std::collections::HashSet<&str> = self.ladder.iter().map(|r| r.name.as_str()).collect();
        if self.ladder.is_empty() || names.len() != self.ladder.len() {
            return Err(ConfigError::Invalid("stream.ladder needs at least one rendition, with distinct names".into()));
        }
        for r in &self.ladder {
            if !super::is_valid_name(&r.name) || (r.height > 0 && (r.height % 2 != 0 || r.video_kbps == 0)) {
                return Err(ConfigError::Invalid(format!(
                    "stream.ladder entry {:?}: name [a-z0-9_-], even height, video_kbps > 0",
                    r.name
                )));
            }
        }
        if !(0.5..=30.0).contains(&self.chunk_seconds) {
            return Err(ConfigError::Invalid("stream.chunk_seconds must be between 0.5 and 30".into()));
        }
        let rtmp = [
            self.rtmp_handshake_seconds,
            self.rtmp_read_timeout_seconds,
            self.rtmp_publish_seconds,
            self.rtmp_max_connections as u64,
            self.rtmp_connections_per_ip as u64,
        ];
        if rtmp.contains(&0) {
            return Err(ConfigError::Invalid("stream.rtmp_* timeouts and connection caps must be at least 1".into()));
        }
        Ok(())
    }
}
