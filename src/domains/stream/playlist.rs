//! HLS playlist text (RFC 8216): media playlists (sliding live window or the whole
//! recording) and the master playlist. Pure: data in, text out. It decides nothing about
//! which segments exist or are listed — the caller windows and orders them — and it never
//! touches storage.
//!
//! Invariants: every `EXTINF` duration, rounded, is at most `EXT-X-TARGETDURATION` (the
//! target is raised if a caller's is too small, RFC 8216 §4.3.3.1); text that goes into a
//! line or a quoted string never carries a line break or a `"`.

use std::fmt::Write as _;

/// `EXT-X-VERSION`: 6 covers everything written here (`EXT-X-GAP`, from the RFC 8216
/// revision, is understood by hls.js and ignored by older players).
const VERSION: u32 = 6;

/// One segment as a playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistSegment {
    /// Media sequence number.
    pub seq: u64,
    /// Duration in ms.
    pub duration_ms: u64,
    /// URI relative to the playlist.
    pub uri: String,
    /// `EXT-X-DISCONTINUITY` before this segment (publisher reconnected).
    pub discontinuity: bool,
    /// `EXT-X-GAP`: the segment could not be made; players skip it.
    pub gap: bool,
    /// Wall-clock time of its first frame, Unix ms (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_ms: i64,
}

/// A media playlist to render.
#[derive(Debug, Clone)]
pub struct MediaPlaylist<'a> {
    /// The segments to list, in order (already windowed for live).
    pub segments: &'a [PlaylistSegment],
    /// `EXT-X-TARGETDURATION`, seconds.
    pub target_duration_s: u64,
    /// Discontinuities before the first listed segment (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// The stream ended: `EXT-X-ENDLIST`.
    pub ended: bool,
    /// A whole recording (`EXT-X-PLAYLIST-TYPE:EVENT` or `VOD` once ended).
    pub recording: bool,
}

/// One rendition in the master playlist.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Path of its media playlist relative to the master.
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// Pixels, if known.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Frames per second, if known.
    pub frame_rate: Option<f64>,
    /// Human name, e.g. `480p`.
    pub name: String,
}

/// Renders a media playlist (RFC 8216 §4.3.3, §4.3.2).
pub fn media_playlist(p: &MediaPlaylist<'_>) -> String {
    let mut out = String::with_capacity(128 + p.segments.len() * 96);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
    // §4.3.3.1: each EXTINF, rounded to the nearest integer, must not exceed the target.
    let longest = p.segments.iter().map(|s| s.duration_ms.saturating_add(500) / 1000).max().unwrap_or(0);
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", p.target_duration_s.max(longest).max(1));
    // §4.3.3.2: the sequence number of the first segment listed.
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", p.segments.first().map_or(0, |s| s.seq));
    // §4.3.3.3
    let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", p.discontinuity_sequence);
    // §4.3.3.5: EVENT lists grow only at the end; VOD ones never change again.
    if p.recording {
        out.push_str(if p.ended { "#EXT-X-PLAYLIST-TYPE:VOD\n" } else { "#EXT-X-PLAYLIST-TYPE:EVENT\n" });
    }
    // §4.3.5.1: every segment starts with an IDR frame.
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    for s in p.segments {
        write_segment(&mut out, s);
    }
    // §4.3.3.4
    if p.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// One segment's tags and URI (RFC 8216 §4.3.2).
fn write_segment(out: &mut String, s: &PlaylistSegment) {
    if s.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n"); // §4.3.2.3
    }
    // §4.3.2.6: ISO 8601 with milliseconds, UTC.
    if let Some(at) = chrono::DateTime::from_timestamp_millis(s.program_date_ms) {
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    }
    if s.gap {
        out.push_str("#EXT-X-GAP\n"); // RFC 8216bis §4.4.4.7
    }
    // §4.3.2.1: decimal-floating-point seconds (version ≥ 3), empty title.
    let _ = writeln!(out, "#EXTINF:{}.{:03},", s.duration_ms / 1000, s.duration_ms % 1000);
    out.push_str(&one_line(&s.uri));
    out.push('\n');
}

/// Renders the master playlist (RFC 8216 §4.3.4.2), listing the variants in the order
/// given: the first is where players such as Safari start, so the caller puts the
/// preferred one (the source) first.
pub fn master_playlist(variants: &[Variant]) -> String {
    let mut out = String::with_capacity(64 + variants.len() * 160);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{VERSION}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        // BANDWIDTH is required and a positive decimal-integer.
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if !v.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", quoted(&v.codecs));
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        // Not an RFC 8216 STREAM-INF attribute (clients ignore unknown ones); hls.js shows it.
        if !v.name.is_empty() {
            let _ = write!(out, ",NAME=\"{}\"", quoted(&v.name));
        }
        out.push('\n');
        out.push_str(&one_line(&v.uri));
        out.push('\n');
    }
    out
}

/// A quoted-string may not hold `"`, CR or LF (RFC 8216 §4.2).
fn quoted(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '"' | '\r' | '\n')).collect()
}

/// A URI line may not hold a line break.
fn one_line(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T10:00:00.000Z
    const T0: i64 = 1_795_773_600_000;

    fn seg(seq: u64, duration_ms: u64) -> PlaylistSegment {
        PlaylistSegment {
            seq,
            duration_ms,
            uri: format!("{seq}.ts"),
            discontinuity: false,
            gap: false,
            program_date_ms: T0 + i64::try_from(seq).unwrap_or_default() * 2000,
        }
    }

    #[test]
    fn a_live_window() {
        let segments = [seg(7, 2000), seg(8, 2033), seg(9, 1967)];
        let text = media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s: 2,
            discontinuity_sequence: 0,
            ended: false,
            recording: false,
        });
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:14.000Z\n#EXTINF:2.000,\n7.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:16.000Z\n#EXTINF:2.033,\n8.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:18.000Z\n#EXTINF:1.967,\n9.ts\n"
        );
    }

    #[test]
    fn a_live_recording_with_a_reconnect_and_a_gap() {
        let mut segments = vec![seg(0, 2000), seg(1, 2000), seg(2, 2000)];
        segments[1].gap = true;
        segments[2].discontinuity = true;
        segments[2].program_date_ms = T0 + 30_123;
        let text = media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s: 2,
            discontinuity_sequence: 0,
            ended: false,
            recording: true,
        });
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:00.000Z\n#EXTINF:2.000,\n0.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:02.000Z\n#EXT-X-GAP\n#EXTINF:2.000,\n1.ts\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-11-27T10:00:30.123Z\n#EXTINF:2.000,\n2.ts\n"
        );
    }

    #[test]
    fn an_ended_recording_is_vod_with_an_endlist() {
        let segments = [seg(0, 2000), seg(1, 1500)];
        let text = media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s: 2,
            discontinuity_sequence: 0,
            ended: true,
            recording: true,
        });
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.ends_with("#EXTINF:1.500,\n1.ts\n#EXT-X-ENDLIST\n"), "{text}");
    }

    #[test]
    fn an_ended_live_window_ends_too_and_keeps_its_discontinuity_sequence() {
        let segments = [seg(40, 2000)];
        let text = media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s: 2,
            discontinuity_sequence: 3,
            ended: true,
            recording: false,
        });
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:40\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n"));
        assert!(!text.contains("PLAYLIST-TYPE"));
        assert!(text.ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn the_target_duration_covers_every_segment() {
        // A 4.6 s chunk (the broadcaster's keyframes are far apart) rounds to 5.
        let segments = [seg(0, 2000), seg(1, 4600)];
        let text = media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s: 2,
            discontinuity_sequence: 0,
            ended: false,
            recording: false,
        });
        assert!(text.contains("#EXT-X-TARGETDURATION:5\n"), "{text}");
    }

    #[test]
    fn an_empty_playlist_is_still_valid() {
        let text = media_playlist(&MediaPlaylist {
            segments: &[],
            target_duration_s: 2,
            discontinuity_sequence: 0,
            ended: false,
            recording: false,
        });
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        );
    }

    #[test]
    fn the_master_playlist() {
        let variants = [
            Variant {
                uri: "source/index.m3u8".into(),
                bandwidth: 3_300_000,
                resolution: Some((1280, 720)),
                codecs: "avc1.64001f,mp4a.40.2".into(),
                frame_rate: Some(30.0),
                name: "source".into(),
            },
            Variant {
                uri: "480p/index.m3u8".into(),
                bandwidth: 1_540_000,
                resolution: Some((854, 480)),
                codecs: "avc1.64001e,mp4a.40.2".into(),
                frame_rate: Some(29.97),
                name: "480p".into(),
            },
            Variant {
                uri: "240p/index.m3u8\n#EXT-X-EVIL".into(),
                bandwidth: 0,
                resolution: None,
                codecs: String::new(),
                frame_rate: None,
                name: "24\"0p".into(),
            },
        ];
        assert_eq!(
            master_playlist(&variants),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=3300000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",\
             FRAME-RATE=30.000,NAME=\"source\"\nsource/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1540000,RESOLUTION=854x480,CODECS=\"avc1.64001e,mp4a.40.2\",\
             FRAME-RATE=29.970,NAME=\"480p\"\n480p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1,NAME=\"240p\"\n240p/index.m3u8#EXT-X-EVIL\n"
        );
    }
}
