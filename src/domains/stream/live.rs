//! One stream's state in memory: the chunks handed out, the segments each rendition has
//! finished, and the playlists. Segments are listed strictly in sequence: a later chunk
//! that finishes early waits for the earlier ones. A segment that could not be made is
//! filled from another rendition, or marked `EXT-X-GAP`, never left as a hole. Also the
//! stream's live status: viewers, ingest rate, keyframe interval, lag and failures.
//!
//! Invariant: the state mutex is never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use sea_orm::sea_query::StringLen;
use serde::Serialize;

use super::SourceMetadata;
use super::config::RenditionConfig;
use super::playlist::{self, MediaPlaylist, PlaylistSegment, Variant};
use super::viewers::{HlsFetch, Viewers};
use crate::platform::blobs::BlobId;

/// Where a stream is in its life; stored (the `streams.state` column) and shown as its
/// lowercase name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema, sea_orm::EnumIter, sea_orm::DeriveActiveEnum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A publisher is sending.
    #[sea_orm(string_value = "live")]
    Live,
    /// The publisher is gone; it may come back within the grace period.
    #[sea_orm(string_value = "reconnecting")]
    Reconnecting,
    /// Over: the playlists end and the stream is a recording.
    #[sea_orm(string_value = "ended")]
    Ended,
}

/// Which playlist of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistKind {
    /// The sliding live window (the whole recording once the stream ended).
    Live,
    /// Every segment from the start.
    Recording,
}

/// A listed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Media sequence number.
    pub seq: u64,
    /// Length, ms.
    pub duration_ms: u64,
    /// The MPEG-TS blob (none for a gap).
    pub blob: Option<BlobId>,
    /// Set when the segment was filled from another rendition (its index).
    pub filled_from: Option<usize>,
    /// The publisher reconnected before it.
    pub discontinuity: bool,
    /// Could not be made.
    pub gap: bool,
    /// Wall-clock time of its first frame, Unix ms.
    pub program_date_ms: i64,
    /// Size of its own blob in bytes (0 for a gap or a fill).
    pub bytes: u64,
}

/// How a transcode of one (chunk, rendition) ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The segment exists, with its size in bytes.
    Ready(BlobId, u64),
    /// Failed for good (after retries).
    Failed,
}

/// Facts about a chunk, recorded when it is handed out.
#[derive(Debug, Clone)]
pub struct ChunkFacts {
    /// Length, ms.
    pub duration_ms: u64,
    /// First chunk after a reconnect.
    pub discontinuity: bool,
    /// Wall-clock time of the first frame, Unix ms.
    pub program_date_ms: i64,
    /// Bytes received for it.
    pub bytes_in: u64,
    /// Video frames in it.
    pub video_frames: u32,
}

struct ChunkState {
    facts: ChunkFacts,
    closed_at: Instant,
    listed_in: usize,
}

#[derive(Default)]
struct Track {
    waiting: BTreeMap<u64, Outcome>,
    listed: Vec<Segment>,
    sizes: HashMap<u64, u64>,
    failures: u64,
    peak_bps: u64,
}

struct State {
    phase: Phase,
    publisher_connected: bool,
    next_seq: u64,
    chunks: BTreeMap<u64, ChunkState>,
    tracks: Vec<Track>,
    meta: SourceMetadata,
    source_codec: Option<String>,
    keyframe_interval_ms: Option<u64>,
    last_chunk: Option<ChunkFacts>,
    lag_ms: Option<u64>,
    ended_at: Option<i64>,
}

/// A rendition as the status page shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RenditionStatus {
    /// Name used in URLs.
    pub name: String,
    /// Pixels, if known.
    pub width: Option<u32>,
    /// Pixels, if known.
    pub height: Option<u32>,
    /// Peak bits per second (measured, else estimated).
    pub bandwidth: u64,
    /// Segments listed.
    pub segments: u64,
    /// Segments that failed to transcode.
    pub failures: u64,
}

/// Measured figures of a live stream.
#[derive(Debug, Clone, Default)]
pub struct LiveFigures {
    /// Viewers in the last 30 s.
    pub viewers: u64,
    /// Ingest bitrate over the last chunk, kbit/s.
    pub ingest_kbps: Option<u64>,
    /// Frames per second over the last chunk.
    pub fps: Option<f64>,
    /// Last keyframe interval, ms.
    pub keyframe_interval_ms: Option<u64>,
    /// Chunk closed → listed in every rendition, ms (last chunk).
    pub transcode_lag_ms: Option<u64>,
    /// Failed segments over all renditions.
    pub failures: u64,
    /// Listed duration of the first rendition, ms.
    pub duration_ms: u64,
}

/// Who and what a stream is.
#[derive(Debug, Clone)]
pub struct StreamHead {
    /// Public id.
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// Owner's name.
    pub username: String,
    /// Title.
    pub title: String,
    /// Unix seconds.
    pub started_at: i64,
}

/// One stream in memory.
pub struct LiveStream {
    /// Public id.
    pub id: String,
    /// Owner.
    pub user_id: i64,
    /// Owner's name.
    pub username: String,
    /// Title.
    pub title: String,
    /// Unix seconds.
    pub started_at: i64,
    renditions: Vec<RenditionConfig>,
    window: usize,
    chunk_ms: u64,
    state: Mutex<State>,
    /// Bounded and locked on its own: counting a viewer never waits for the state.
    viewers: Viewers,
}

impl LiveStream {
    /// A new, live stream.
    pub fn new(head: StreamHead, renditions: Vec<RenditionConfig>, window: usize, chunk_ms: u64) -> Self {
        let tracks = renditions.iter().map(|_| Track::default()).collect();
        Self {
            id: head.id,
            user_id: head.user_id,
            username: head.username,
            title: head.title,
            started_at: head.started_at,
            renditions,
            window: window.max(3),
            chunk_ms,
            state: Mutex::new(State {
                phase: Phase::Live,
                publisher_connected: true,
                next_seq: 0,
                chunks: BTreeMap::new(),
                tracks,
                meta: SourceMetadata::default(),
                source_codec: None,
                keyframe_interval_ms: None,
                last_chunk: None,
                lag_ms: None,
                ended_at: None,
            }),
            viewers: Viewers::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would poison it; the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The renditions, in ladder order.
    pub fn renditions(&self) -> &[RenditionConfig] {
        &self.renditions
    }

    /// Index of a rendition by name.
    pub fn rendition_index(&self, name: &str) -> Option<usize> {
        self.renditions.iter().position(|r| r.name == name)
    }

    /// Rebuilds an ended stream from its stored segments (per rendition, in order).
    pub fn restore(&self, segments: Vec<(usize, Segment)>, ended_at: Option<i64>, meta: SourceMetadata) {
        let mut st = self.lock();
        for (r, seg) in segments {
            st.next_seq = st.next_seq.max(seg.seq + 1);
            if let Some(t) = st.tracks.get_mut(r) {
                t.listed.push(seg);
            }
        }
        st.phase = Phase::Ended;
        st.publisher_connected = false;
        st.ended_at = ended_at;
        st.meta = meta;
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// When it ended (Unix seconds).
    pub fn ended_at(&self) -> Option<i64> {
        self.lock().ended_at
    }

    /// Whether a publisher is connected right now.
    pub fn publisher_connected(&self) -> bool {
        self.lock().publisher_connected
    }

    /// A publisher (re)connected: live again. `false` if one is already connected or the
    /// stream is over.
    pub fn attach_publisher(&self) -> bool {
        let mut st = self.lock();
        if st.publisher_connected || st.phase == Phase::Ended {
            return false;
        }
        st.publisher_connected = true;
        st.phase = Phase::Live;
        true
    }

    /// The publisher left: reconnecting.
    pub fn detach_publisher(&self) {
        let mut st = self.lock();
        st.publisher_connected = false;
        if st.phase == Phase::Live {
            st.phase = Phase::Reconnecting;
        }
    }

    /// Ends the stream unless a publisher came back; `true` if it ended now.
    pub fn end(&self, at: i64) -> bool {
        let mut st = self.lock();
        if st.publisher_connected || st.phase == Phase::Ended {
            return false;
        }
        st.phase = Phase::Ended;
        st.ended_at = Some(at);
        true
    }

    /// Ends the stream now, even with a publisher connected; `true` if it ended now.
    pub fn stop(&self, at: i64) -> bool {
        let mut st = self.lock();
        if st.phase == Phase::Ended {
            return false;
        }
        st.phase = Phase::Ended;
        st.publisher_connected = false;
        st.ended_at = Some(at);
        true
    }

    /// Source facts from the broadcaster's metadata.
    pub fn set_metadata(&self, meta: SourceMetadata) {
        self.lock().meta = meta;
    }

    /// The source metadata.
    pub fn metadata(&self) -> SourceMetadata {
        self.lock().meta.clone()
    }

    /// The source's RFC 6381 video codec, from its AVC sequence header.
    pub fn set_source_codec(&self, codec: String) {
        self.lock().source_codec = Some(codec);
    }

    /// The last keyframe interval seen.
    pub fn set_keyframe_interval(&self, ms: Option<u64>) {
        if ms.is_some() {
            self.lock().keyframe_interval_ms = ms;
        }
    }

    /// Hands out the next sequence number for a closed chunk.
    pub fn add_chunk(&self, facts: ChunkFacts) -> u64 {
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.last_chunk = Some(facts.clone());
        st.chunks.insert(seq, ChunkState { facts, closed_at: Instant::now(), listed_in: 0 });
        seq
    }

    /// Records how the transcode of (`rendition`, `seq`) ended and lists whatever is now
    /// in order. Returns the newly listed segments with their rendition index.
    pub fn segment_done(&self, rendition: usize, seq: u64, outcome: Outcome) -> Vec<(usize, Segment)> {
        let mut st = self.lock();
        let Some(track) = st.tracks.get_mut(rendition) else { return vec![] };
        if matches!(outcome, Outcome::Failed) {
            track.failures += 1;
            metrics::counter!("postcast_stream_segment_failures_total").increment(1);
        }
        track.waiting.insert(seq, outcome);
        let mut listed = vec![];
        // A failure may complete another rendition's fill, so drain every track.
        loop {
            let mut progressed = false;
            for r in 0..st.tracks.len() {
                while let Some(seg) = Self::list_next(&mut st, r) {
                    listed.push((r, seg));
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        listed
    }

    fn list_next(st: &mut State, r: usize) -> Option<Segment> {
        let next = st.tracks[r].listed.last().map(|s| s.seq + 1).unwrap_or(0);
        let outcome = st.tracks[r].waiting.get(&next)?.clone();
        let facts = st.chunks.get(&next)?.facts.clone();
        let (blob, filled_from, size) = match outcome {
            Outcome::Ready(b, size) => (Some(b), None, size),
            Outcome::Failed => match Self::fill_for(st, r, next) {
                Fill::From(other, b) => (Some(b), Some(other), 0),
                Fill::Wait => return None,
                Fill::Gap => (None, None, 0),
            },
        };
        let track = &mut st.tracks[r];
        track.waiting.remove(&next);
        if size > 0 && facts.duration_ms > 0 {
            track.sizes.insert(next, size);
            track.peak_bps = track.peak_bps.max(size * 8 * 1000 / facts.duration_ms);
        }
        let seg = Segment {
            seq: next,
            duration_ms: facts.duration_ms,
            gap: blob.is_none(),
            blob,
            filled_from,
            discontinuity: facts.discontinuity,
            program_date_ms: facts.program_date_ms,
            bytes: size,
        };
        track.listed.push(seg.clone());
        let renditions = st.tracks.len();
        if let Some(c) = st.chunks.get_mut(&next) {
            c.listed_in += 1;
            if c.listed_in == renditions {
                let lag = c.closed_at.elapsed();
                metrics::histogram!("postcast_stream_segment_latency_seconds").record(lag.as_secs_f64());
                st.lag_ms = Some(lag.as_millis() as u64);
            }
        }
        Some(seg)
    }

    /// What to put in rendition `r`'s place for a failed `seq`: another rendition's segment
    /// (the copied source first), a gap when none can be had, or wait for one still running.
    fn fill_for(st: &State, r: usize, seq: u64) -> Fill {
        let mut pending = false;
        for (i, t) in st.tracks.iter().enumerate() {
            if i == r {
                continue;
            }
            if let Some(s) = t.listed.iter().rev().find(|s| s.seq == seq) {
                if let (Some(b), None) = (&s.blob, s.filled_from) {
                    return Fill::From(i, b.clone());
                }
                continue;
            }
            match t.waiting.get(&seq) {
                Some(Outcome::Ready(b, _)) => return Fill::From(i, b.clone()),
                Some(Outcome::Failed) => {}
                None => pending = true,
            }
        }
        if pending { Fill::Wait } else { Fill::Gap }
    }

    /// Whether every handed-out chunk is listed in every rendition.
    fn complete(st: &State) -> bool {
        st.tracks.iter().all(|t| t.listed.last().map(|s| s.seq + 1).unwrap_or(0) == st.next_seq)
    }

    /// The blob of a listed segment of `rendition`.
    pub fn segment_blob(&self, rendition: usize, seq: u64) -> Option<BlobId> {
        let st = self.lock();
        let t = st.tracks.get(rendition)?;
        let idx = t.listed.binary_search_by_key(&seq, |s| s.seq).ok()?;
        let s = &t.listed[idx];
        if s.filled_from.is_some() { None } else { s.blob.clone() }
    }

    /// Renders a media playlist.
    pub fn media_playlist(&self, rendition: usize, kind: PlaylistKind) -> Option<String> {
        let st = self.lock();
        let track = st.tracks.get(rendition)?;
        let ended = st.phase == Phase::Ended && Self::complete(&st);
        let whole = kind == PlaylistKind::Recording || st.phase == Phase::Ended;
        let start = if whole { 0 } else { track.listed.len().saturating_sub(self.window) };
        let shown = &track.listed[start..];
        let segments: Vec<PlaylistSegment> = shown
            .iter()
            .map(|s| PlaylistSegment {
                seq: s.seq,
                duration_ms: s.duration_ms,
                uri: match s.filled_from {
                    Some(o) => format!("../{}/{}.ts", self.renditions[o].name, s.seq),
                    None => format!("{}.ts", s.seq),
                },
                discontinuity: s.discontinuity && s.seq > 0,
                gap: s.gap,
                program_date_ms: s.program_date_ms,
            })
            .collect();
        let longest = st.tracks.iter().flat_map(|t| t.listed.iter()).map(|s| s.duration_ms).max().unwrap_or(0);
        let target_duration_s = longest.max(self.chunk_ms).div_ceil(1000).max(1);
        let discontinuity_sequence =
            track.listed[..start].iter().filter(|s| s.discontinuity && s.seq > 0).count() as u64;
        Some(playlist::media_playlist(&MediaPlaylist {
            segments: &segments,
            target_duration_s,
            discontinuity_sequence,
            ended,
            recording: whole,
        }))
    }

    /// Width and height of rendition `r`, from the source's size.
    fn size_of(&self, st: &State, r: usize) -> (Option<u32>, Option<u32>) {
        let (w, h) = (st.meta.width, st.meta.height);
        match self.renditions[r].height {
            0 => (w, h),
            target => {
                let width = match (w, h) {
                    (Some(w), Some(h)) if h > 0 => Some(((w as u64 * target as u64 / h as u64) as u32).div_ceil(2) * 2),
                    _ => None,
                };
                (width, Some(target))
            }
        }
    }

    fn bandwidth_of(&self, st: &State, r: usize) -> u64 {
        let measured = st.tracks[r].peak_bps;
        if measured > 0 {
            return measured;
        }
        let audio = st.meta.audio_kbps.unwrap_or(128) as u64 * 1000;
        match self.renditions[r].video_kbps {
            0 => st.meta.video_kbps.map(|v| v as u64 * 1000 + audio).unwrap_or(2_500_000),
            v => v as u64 * 1100 + audio,
        }
    }

    /// Renders the master playlist: one variant per rendition.
    pub fn master_playlist(&self) -> String {
        let st = self.lock();
        let variants: Vec<Variant> = (0..self.renditions.len())
            .map(|r| {
                let (w, h) = self.size_of(&st, r);
                let video = if self.renditions[r].height == 0 {
                    st.source_codec.clone().unwrap_or_else(|| "avc1.640028".into())
                } else {
                    "avc1.64001f".into()
                };
                Variant {
                    uri: format!("{}/index.m3u8", self.renditions[r].name),
                    bandwidth: self.bandwidth_of(&st, r),
                    resolution: w.zip(h),
                    codecs: format!("{video},mp4a.40.2"),
                    frame_rate: st.meta.fps,
                    name: self.renditions[r].name.clone(),
                }
            })
            .collect();
        playlist::master_playlist(&variants)
    }

    /// The renditions with their sizes and counts.
    pub fn rendition_status(&self) -> Vec<RenditionStatus> {
        let st = self.lock();
        (0..self.renditions.len())
            .map(|r| {
                let (width, height) = self.size_of(&st, r);
                RenditionStatus {
                    name: self.renditions[r].name.clone(),
                    width,
                    height,
                    bandwidth: self.bandwidth_of(&st, r),
                    segments: st.tracks[r].listed.len() as u64,
                    failures: st.tracks[r].failures,
                }
            })
            .collect()
    }

    /// Notes a request of a player session from `address` ([`Viewers::note`]).
    pub fn note_viewer(&self, viewer: &str, fetch: HlsFetch, address: IpAddr) {
        self.viewers.note(viewer, fetch, address);
    }

    /// The live figures for the status page.
    pub fn figures(&self) -> LiveFigures {
        let viewers = self.viewers.count();
        let st = self.lock();
        let (ingest_kbps, fps) = match &st.last_chunk {
            Some(c) if c.duration_ms > 0 && st.phase != Phase::Ended => (
                Some(c.bytes_in * 8 / c.duration_ms),
                Some((c.video_frames as f64 * 1000.0 / c.duration_ms as f64 * 100.0).round() / 100.0),
            ),
            _ => (None, None),
        };
        LiveFigures {
            viewers,
            ingest_kbps,
            fps,
            keyframe_interval_ms: st.keyframe_interval_ms,
            transcode_lag_ms: st.lag_ms,
            failures: st.tracks.iter().map(|t| t.failures).sum(),
            duration_ms: st.tracks.first().map(|t| t.listed.iter().map(|s| s.duration_ms).sum()).unwrap_or(0),
        }
    }

    /// Every listed segment of every rendition with a blob of its own (for retention).
    pub fn own_blobs(&self) -> Vec<(usize, u64, BlobId)> {
        let st = self.lock();
        let mut out = vec![];
        for (r, t) in st.tracks.iter().enumerate() {
            for s in &t.listed {
                if let (Some(b), None) = (&s.blob, s.filled_from) {
                    out.push((r, s.seq, b.clone()));
                }
            }
        }
        out
    }
}

enum Fill {
    From(usize, BlobId),
    Wait,
    Gap,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Vec<RenditionConfig> {
        crate::domains::stream::config::StreamConfig::default().ladder
    }

    fn stream() -> LiveStream {
        let head = StreamHead { id: "s".into(), user_id: 1, username: "u".into(), title: "t".into(), started_at: 0 };
        LiveStream::new(head, ladder(), 3, 2000)
    }

    fn facts(d: bool) -> ChunkFacts {
        ChunkFacts { duration_ms: 2000, discontinuity: d, program_date_ms: 0, bytes_in: 1000, video_frames: 60 }
    }

    fn blob(n: u8) -> BlobId {
        BlobId::of(&[n])
    }

    #[test]
    fn later_chunks_wait_for_earlier_ones() {
        let s = stream();
        for _ in 0..3 {
            s.add_chunk(facts(false));
        }
        assert!(s.segment_done(0, 2, Outcome::Ready(blob(2), 10)).is_empty());
        assert!(s.segment_done(0, 1, Outcome::Ready(blob(1), 10)).is_empty());
        let listed = s.segment_done(0, 0, Outcome::Ready(blob(0), 10));
        assert_eq!(listed.iter().map(|(_, s)| s.seq).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_failed_segment_is_filled_or_marked_as_a_gap() {
        let s = stream();
        s.add_chunk(facts(false));
        s.add_chunk(facts(false));
        // seq 0: 480p fails, source is ready → filled from source.
        s.segment_done(0, 0, Outcome::Ready(blob(0), 10));
        let listed = s.segment_done(1, 0, Outcome::Failed);
        assert_eq!(listed[0].1.filled_from, Some(0));
        s.segment_done(2, 0, Outcome::Ready(blob(2), 10));
        // seq 1: every rendition fails → gaps, and the playlist still moves on.
        s.segment_done(0, 1, Outcome::Failed);
        s.segment_done(1, 1, Outcome::Failed);
        let listed = s.segment_done(2, 1, Outcome::Failed);
        assert!(listed.iter().any(|(r, seg)| *r == 2 && seg.gap), "{listed:?}");
        let p = s.media_playlist(1, PlaylistKind::Live).unwrap();
        assert!(p.contains("../source/0.ts"), "{p}");
    }

    #[test]
    fn endlist_only_once_everything_is_listed() {
        let s = stream();
        s.add_chunk(facts(false));
        s.detach_publisher();
        assert!(s.end(1));
        assert!(!s.media_playlist(0, PlaylistKind::Live).unwrap().contains("#EXT-X-ENDLIST"));
        for r in 0..3 {
            s.segment_done(r, 0, Outcome::Ready(blob(r as u8), 10));
        }
        assert!(s.media_playlist(0, PlaylistKind::Live).unwrap().contains("#EXT-X-ENDLIST"));
    }

    #[test]
    fn a_second_publisher_is_refused_while_one_is_connected() {
        let s = stream();
        assert!(!s.attach_publisher());
        s.detach_publisher();
        assert_eq!(s.phase(), Phase::Reconnecting);
        assert!(s.attach_publisher());
        assert_eq!(s.phase(), Phase::Live);
    }
}
