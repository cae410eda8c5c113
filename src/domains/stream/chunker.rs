//! The chunker: cuts the incoming FLV tag stream at video keyframes into self-contained
//! source chunks of about `chunk_seconds`, ready for ffmpeg. Each chunk is a complete FLV
//! file: the FLV header, the cached metadata and AVC/AAC sequence headers (stamped with the
//! chunk's start so ffmpeg sees no time jump), then the chunk's tags with their original
//! timestamps (Adobe FLV spec v10.1, annex E).
//!
//! Pure: no I/O, no clock, no panics on any input. It does not parse codecs beyond the
//! first bytes of a tag body (frame type, codec id, packet type).
//!
//! Invariants:
//! - **Every chunk starts with a video keyframe**; tags before the first keyframe are dropped
//!   (sequence headers are cached, not dropped).
//! - **Chunk durations are contiguous**: a chunk closed by a keyframe lasts until that
//!   keyframe, which starts the next chunk, so durations add up to the stream's length.
//! - Memory is bounded: a chunk is closed without a keyframe once it exceeds
//!   [`MAX_CHUNK_BYTES`] or 16 × the target (at least [`MIN_MAX_CHUNK_MS`]); tags are then
//!   dropped until the next keyframe.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// What an RTMP media message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// An FLV audio tag body.
    Audio,
    /// An FLV video tag body.
    Video,
    /// An AMF0 script data body (metadata).
    Script,
}

impl TagKind {
    /// The FLV TagType byte.
    fn flv_type(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }
}

/// One media message: an FLV tag body with its RTMP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTag {
    /// Audio, video or script data.
    pub kind: TagKind,
    /// RTMP timestamp in milliseconds.
    pub timestamp_ms: u32,
    /// The FLV tag body (for video: frame type/codec byte, AVC packet type, ...).
    pub data: Bytes,
}

/// A closed chunk of the source stream.
#[derive(Debug, Clone)]
pub struct SourceChunk {
    /// Position within this publish session, from 0.
    pub index: u64,
    /// Timestamp of its first tag (a keyframe), ms.
    pub start_ms: u64,
    /// Until the next chunk's first keyframe (or the last frame for the final chunk), ms.
    pub duration_ms: u64,
    /// A complete FLV file: header, sequence headers, then the tags.
    pub flv: Bytes,
    /// Video frames in the chunk.
    pub video_frames: u32,
    /// Media bytes received for the chunk.
    pub bytes_in: u64,
}

/// A chunk is closed without waiting for a keyframe past this many bytes.
pub const MAX_CHUNK_BYTES: usize = 128 << 20;
/// A chunk is closed without waiting for a keyframe past 16 × the target, and at least this.
pub const MIN_MAX_CHUNK_MS: u64 = 30_000;
/// A timestamp step larger than this (either way) is a jump, not the stream's pace: the
/// chunk is cut there and its duration is taken from its own frames.
const TS_JUMP_MS: u64 = 10_000;
/// The largest tag body an FLV tag can carry (24-bit DataSize).
const MAX_TAG_BODY: usize = 0x00FF_FFFF;
/// FLV header (9 bytes, flags patched when the chunk closes) and PreviousTagSize0.
const FLV_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0, 0, 0, 0, 9, 0, 0, 0, 0];
/// Offset of the TypeFlags byte in the FLV header.
const FLAGS_OFFSET: usize = 4;
/// AMF0 string "@setDataFrame", which RTMP puts before "onMetaData" and FLV files do not.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
/// AMF0 string "onMetaData".
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// True for a video tag body holding a keyframe's coded data (frame type 1), not a
/// sequence header or end-of-sequence marker. Legacy FLV and enhanced RTMP headers.
pub fn is_keyframe(data: &[u8]) -> bool {
    let Some(&first) = data.first() else { return false };
    if (first >> 4) & 0x07 != 1 {
        return false;
    }
    if first & 0x80 != 0 {
        // Enhanced RTMP: packet type in the low nibble; 1 = CodedFrames, 3 = CodedFramesX.
        return matches!(first & 0x0f, 1 | 3) && data.len() > 5;
    }
    match first & 0x0f {
        // AVC (7) and the common HEVC extension (12): AVCPacketType 1 = NALU.
        7 | 12 => data.get(1) == Some(&1),
        _ => data.len() > 1,
    }
}

/// True for a codec configuration tag: an AVC/HEVC sequence header (AVCPacketType 0, or
/// enhanced RTMP SequenceStart) or an AAC sequence header (AACPacketType 0).
pub fn is_sequence_header(kind: TagKind, data: &[u8]) -> bool {
    let Some(&first) = data.first() else { return false };
    match kind {
        TagKind::Video if first & 0x80 != 0 => first & 0x0f == 0,
        TagKind::Video => matches!(first & 0x0f, 7 | 12) && data.get(1) == Some(&0),
        TagKind::Audio => first >> 4 == 10 && data.get(1) == Some(&0),
        TagKind::Script => false,
    }
}

/// Whether a tag body is long enough to be written and understood by ffmpeg.
fn is_plausible(kind: TagKind, data: &[u8]) -> bool {
    let Some(&first) = data.first() else { return false };
    if data.len() > MAX_TAG_BODY {
        return false;
    }
    match kind {
        TagKind::Video if first & 0x80 != 0 => data.len() >= 5,
        // AVC/HEVC: packet type and a 24-bit composition time before any data.
        TagKind::Video if matches!(first & 0x0f, 7 | 12) => data.len() >= 5,
        TagKind::Video => data.len() >= 2,
        TagKind::Audio if first >> 4 == 10 => data.len() >= 2,
        TagKind::Audio => true,
        TagKind::Script => data.len() >= 3,
    }
}

/// The onMetaData body as an FLV file carries it (without "@setDataFrame"), if it is one.
fn flv_metadata(data: &Bytes) -> Option<Bytes> {
    let body = if data.starts_with(SET_DATA_FRAME) { data.slice(SET_DATA_FRAME.len()..) } else { data.clone() };
    body.starts_with(ON_METADATA).then_some(body)
}

/// Appends one FLV tag and its PreviousTagSize. The caller checked `data.len() <= MAX_TAG_BODY`.
fn write_tag(out: &mut BytesMut, kind: TagKind, timestamp_ms: u32, data: &[u8]) {
    let size = data.len() as u32;
    let ts = timestamp_ms.to_be_bytes();
    out.put_u8(kind.flv_type());
    out.put_slice(&size.to_be_bytes()[1..]);
    // Timestamp: the lower 24 bits, then the upper 8 bits (TimestampExtended).
    out.put_slice(&[ts[1], ts[2], ts[3], ts[0]]);
    out.put_slice(&[0, 0, 0]); // StreamID, always 0.
    out.put_slice(data);
    out.put_u32(size + 11);
}

/// The chunk being filled.
struct OpenChunk {
    start_ms: u64,
    /// Largest timestamp of any tag in the chunk.
    max_ts: u64,
    first_video_ts: u64,
    last_video_ts: u64,
    video_frames: u32,
    bytes_in: u64,
    has_audio: bool,
    has_video: bool,
    flv: BytesMut,
    /// Sequence headers that changed mid-chunk: written before the next tag that stays in
    /// this chunk, or superseded by the next chunk's header tags.
    pending_headers: Vec<MediaTag>,
}

impl OpenChunk {
    fn append(&mut self, tag: &MediaTag) {
        for header in std::mem::take(&mut self.pending_headers) {
            write_tag(&mut self.flv, header.kind, header.timestamp_ms, &header.data);
        }
        let ts = u64::from(tag.timestamp_ms);
        self.max_ts = self.max_ts.max(ts);
        match tag.kind {
            TagKind::Video => {
                self.has_video = true;
                self.video_frames = self.video_frames.saturating_add(1);
                self.last_video_ts = ts;
            }
            TagKind::Audio => self.has_audio = true,
            TagKind::Script => {}
        }
        write_tag(&mut self.flv, tag.kind, tag.timestamp_ms, &tag.data);
    }

    /// Average video frame spacing within this chunk, if it has two frames moving forward.
    fn frame_ms(&self) -> Option<u64> {
        let span = self.last_video_ts.checked_sub(self.first_video_ts)?;
        (self.video_frames >= 2 && span > 0).then(|| span / u64::from(self.video_frames - 1))
    }
}

/// Accumulates tags and emits chunks. One per publish session.
pub struct Chunker {
    target_ms: u64,
    max_chunk_ms: u64,
    video_header: Option<Bytes>,
    audio_header: Option<Bytes>,
    metadata: Option<Bytes>,
    current: Option<OpenChunk>,
    next_index: u64,
    last_keyframe_ts: Option<u64>,
    keyframe_interval: Option<u64>,
    last_video_ts: Option<u64>,
    /// Last positive spacing between two video frames, ms.
    frame_ms: Option<u64>,
    dropped: u64,
}

impl Chunker {
    /// A chunker aiming at chunks of `target` length (at least 1 ms).
    pub fn new(target: Duration) -> Self {
        let target_ms = u64::try_from(target.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            target_ms,
            max_chunk_ms: target_ms.saturating_mul(16).max(MIN_MAX_CHUNK_MS),
            video_header: None,
            audio_header: None,
            metadata: None,
            current: None,
            next_index: 0,
            last_keyframe_ts: None,
            keyframe_interval: None,
            last_video_ts: None,
            frame_ms: None,
            dropped: 0,
        }
    }

    /// Takes one tag; returns the chunk it closed, if any.
    pub fn push(&mut self, tag: MediaTag) -> Option<SourceChunk> {
        if !is_plausible(tag.kind, &tag.data) {
            self.dropped += 1;
            return None;
        }
        if tag.kind == TagKind::Script {
            match flv_metadata(&tag.data) {
                Some(body) => self.metadata = Some(body),
                None => self.dropped += 1,
            }
            return None;
        }
        if is_sequence_header(tag.kind, &tag.data) {
            self.cache_header(tag);
            return None;
        }
        let ts = u64::from(tag.timestamp_ms);
        let keyframe = tag.kind == TagKind::Video && is_keyframe(&tag.data);
        if tag.kind == TagKind::Video {
            self.note_video_frame(ts, keyframe);
        }
        let mut closed = None;
        if keyframe {
            if self.current.as_ref().is_some_and(|cur| self.should_cut(cur, ts)) {
                closed = self.close(Some(ts));
            }
            if self.current.is_none() {
                self.open(ts);
            }
        } else if self.current.as_ref().is_some_and(|cur| self.over_limit(cur)) {
            closed = self.close(None);
        }
        match self.current.as_mut() {
            Some(cur) => {
                cur.bytes_in += tag.data.len() as u64;
                cur.append(&tag);
            }
            None => self.dropped += 1,
        }
        closed
    }

    /// Closes the last chunk at the end of the stream.
    pub fn finish(&mut self) -> Option<SourceChunk> {
        self.close(None)
    }

    /// The last observed distance between two video keyframes, ms.
    pub fn keyframe_interval_ms(&self) -> Option<u64> {
        self.keyframe_interval
    }

    /// Tags dropped so far: before the first keyframe, malformed, or unknown script data.
    pub fn dropped_tags(&self) -> u64 {
        self.dropped
    }

    /// The target chunk length, ms.
    pub fn target_ms(&self) -> u64 {
        self.target_ms
    }

    fn cache_header(&mut self, tag: MediaTag) {
        let slot = match tag.kind {
            TagKind::Video => &mut self.video_header,
            _ => &mut self.audio_header,
        };
        if slot.as_ref() == Some(&tag.data) {
            return; // Repeated unchanged (some encoders send it before every keyframe).
        }
        *slot = Some(tag.data.clone());
        if let Some(cur) = self.current.as_mut() {
            cur.bytes_in += tag.data.len() as u64;
            cur.pending_headers.retain(|h| h.kind != tag.kind);
            cur.pending_headers.push(tag);
        }
    }

    fn note_video_frame(&mut self, ts: u64, keyframe: bool) {
        if let Some(prev) = self.last_video_ts
            && ts > prev
            && ts - prev <= TS_JUMP_MS
        {
            self.frame_ms = Some(ts - prev);
        }
        self.last_video_ts = Some(ts);
        if keyframe {
            if let Some(prev) = self.last_keyframe_ts
                && ts > prev
            {
                self.keyframe_interval = Some(ts - prev);
            }
            self.last_keyframe_ts = Some(ts);
        }
    }

    /// At a keyframe at `ts`: has the chunk lasted long enough, or did time jump?
    fn should_cut(&self, cur: &OpenChunk, ts: u64) -> bool {
        ts >= cur.start_ms.saturating_add(self.target_ms)
            || ts.saturating_add(TS_JUMP_MS) < cur.max_ts
            || self.over_limit(cur)
    }

    fn over_limit(&self, cur: &OpenChunk) -> bool {
        cur.flv.len() >= MAX_CHUNK_BYTES || cur.max_ts.saturating_sub(cur.start_ms) >= self.max_chunk_ms
    }

    /// Starts a chunk at keyframe time `ts` with the cached headers.
    fn open(&mut self, ts: u64) {
        let mut flv = BytesMut::with_capacity(64 * 1024);
        flv.put_slice(&FLV_HEADER);
        let stamp = u32::try_from(ts).unwrap_or(u32::MAX);
        let headers = [
            (TagKind::Script, &self.metadata),
            (TagKind::Video, &self.video_header),
            (TagKind::Audio, &self.audio_header),
        ];
        for (kind, body) in headers {
            if let Some(body) = body {
                write_tag(&mut flv, kind, stamp, body);
            }
        }
        self.current = Some(OpenChunk {
            start_ms: ts,
            max_ts: ts,
            first_video_ts: ts,
            last_video_ts: ts,
            video_frames: 0,
            bytes_in: 0,
            has_audio: self.audio_header.is_some(),
            has_video: self.video_header.is_some(),
            flv,
            pending_headers: Vec::new(),
        });
    }

    /// Closes the current chunk; `next_keyframe` is the timestamp of the keyframe that
    /// starts the next chunk, if that is what closed it.
    fn close(&mut self, next_keyframe: Option<u64>) -> Option<SourceChunk> {
        let cur = self.current.take()?;
        let frame = cur.frame_ms().or(self.frame_ms).unwrap_or(0);
        let natural_end = cur.max_ts.saturating_add(frame);
        let end = match next_keyframe {
            Some(k)
                if k >= cur.start_ms
                    && k.saturating_add(TS_JUMP_MS) >= cur.max_ts
                    && k <= natural_end.saturating_add(TS_JUMP_MS) =>
            {
                k
            }
            _ => natural_end,
        };
        let mut flv = cur.flv;
        flv[FLAGS_OFFSET] = (u8::from(cur.has_audio) << 2) | u8::from(cur.has_video);
        let index = self.next_index;
        self.next_index += 1;
        Some(SourceChunk {
            index,
            start_ms: cur.start_ms,
            duration_ms: end.saturating_sub(cur.start_ms).max(1),
            flv: flv.freeze(),
            video_frames: cur.video_frames,
            bytes_in: cur.bytes_in,
        })
    }
}

/// Why an FLV file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    /// The first bytes are not an FLV header.
    #[error("not an FLV file")]
    NotFlv,
    /// The file ends inside a tag.
    #[error("FLV truncated at byte {0}")]
    Truncated(usize),
    /// A PreviousTagSize does not match the tag before it.
    #[error("FLV PreviousTagSize mismatch at byte {0}")]
    BadTagSize(usize),
    /// A tag type other than audio, video or script data.
    #[error("FLV tag type {ty} at byte {at}")]
    UnknownTag {
        /// The TagType byte.
        ty: u8,
        /// Offset of the tag.
        at: usize,
    },
}

/// Reads an FLV file into its tags: the inverse of a chunk's `flv`. Checks the header,
/// every tag's size and PreviousTagSize; never panics. Used by tests and for re-reading
/// raw backups.
pub fn read_flv(file: &Bytes) -> Result<Vec<MediaTag>, FlvError> {
    if file.len() < 13 || &file[..3] != b"FLV" {
        return Err(FlvError::NotFlv);
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let mut at = header_len.checked_add(4).filter(|&n| n <= file.len()).ok_or(FlvError::NotFlv)?;
    let mut tags = Vec::new();
    while at < file.len() {
        let head = file.get(at..at + 11).ok_or(FlvError::Truncated(at))?;
        let kind = match head[0] & 0x1f {
            8 => TagKind::Audio,
            9 => TagKind::Video,
            18 => TagKind::Script,
            ty => return Err(FlvError::UnknownTag { ty, at }),
        };
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let timestamp_ms = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        let body_end = at + 11 + size;
        let prev = file.get(body_end..body_end + 4).ok_or(FlvError::Truncated(at))?;
        if u32::from_be_bytes([prev[0], prev[1], prev[2], prev[3]]) as usize != size + 11 {
            return Err(FlvError::BadTagSize(body_end));
        }
        tags.push(MediaTag { kind, timestamp_ms, data: file.slice(at + 11..body_end) });
        at = body_end + 4;
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVC_SEQ: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f];
    const AAC_SEQ: &[u8] = &[0xaf, 0, 0x12, 0x10];

    fn tag(kind: TagKind, ts: u32, data: &[u8]) -> MediaTag {
        MediaTag { kind, timestamp_ms: ts, data: Bytes::copy_from_slice(data) }
    }

    fn video(ts: u32, key: bool) -> MediaTag {
        let first = if key { 0x17 } else { 0x27 };
        tag(TagKind::Video, ts, &[first, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88])
    }

    fn audio(ts: u32) -> MediaTag {
        tag(TagKind::Audio, ts, &[0xaf, 1, 0x21, 0x10, 0x04])
    }

    /// 30 fps video with a keyframe every `gop` frames, AAC audio every ~23 ms, for `secs`.
    fn stream(secs: u32, gop: u32) -> Vec<MediaTag> {
        let mut tags = vec![tag(TagKind::Video, 0, AVC_SEQ), tag(TagKind::Audio, 0, AAC_SEQ)];
        let (mut frame, mut sample) = (0u32, 0u32);
        loop {
            let vts = frame * 1000 / 30;
            let ats = sample * 1024 * 1000 / 44100;
            if vts >= secs * 1000 && ats >= secs * 1000 {
                break;
            }
            if vts <= ats {
                tags.push(video(vts, frame % gop == 0));
                frame += 1;
            } else {
                tags.push(audio(ats));
                sample += 1;
            }
        }
        tags
    }

    fn run(chunker: &mut Chunker, tags: Vec<MediaTag>) -> Vec<SourceChunk> {
        let mut chunks: Vec<SourceChunk> = tags.into_iter().filter_map(|t| chunker.push(t)).collect();
        chunks.extend(chunker.finish());
        chunks
    }

    /// Checks the FLV structure of a chunk and returns its tags.
    fn check_flv(chunk: &SourceChunk) -> Vec<MediaTag> {
        assert_eq!(&chunk.flv[..3], b"FLV");
        assert_eq!(chunk.flv[3], 1, "version");
        let tags = read_flv(&chunk.flv).expect("chunk parses as FLV");
        let mut media = tags.iter().skip_while(|t| t.kind == TagKind::Script);
        let seq_v = media.next().expect("video sequence header");
        assert!(is_sequence_header(TagKind::Video, &seq_v.data));
        assert_eq!(u64::from(seq_v.timestamp_ms), chunk.start_ms);
        let first = media.find(|t| !is_sequence_header(t.kind, &t.data)).expect("a media tag");
        assert!(first.kind == TagKind::Video && is_keyframe(&first.data), "first media tag is a keyframe");
        assert_eq!(u64::from(first.timestamp_ms), chunk.start_ms);
        tags
    }

    #[test]
    fn cuts_at_keyframes_and_durations_add_up() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let chunks = run(&mut chunker, stream(10, 60));
        let starts: Vec<u64> = chunks.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, [0, 2000, 4000, 6000, 8000]);
        assert_eq!(chunks.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].start_ms + pair[0].duration_ms, pair[1].start_ms, "contiguous");
            assert_eq!(pair[0].video_frames, 60);
        }
        let total: u64 = chunks.iter().map(|c| c.duration_ms).sum();
        assert!((9990..=10_040).contains(&total), "total {total}");
        assert_eq!(chunker.keyframe_interval_ms(), Some(2000));
        assert!(chunks.iter().all(|c| c.bytes_in > 0));
    }

    #[test]
    fn every_chunk_is_a_complete_flv() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        for chunk in run(&mut chunker, stream(7, 60)) {
            assert_eq!(chunk.flv[FLAGS_OFFSET], 0x05, "audio and video flags");
            let tags = check_flv(&chunk);
            assert!(tags.iter().any(|t| t.kind == TagKind::Audio && !is_sequence_header(t.kind, &t.data)));
            let frames = tags.iter().filter(|t| t.kind == TagKind::Video && !is_sequence_header(t.kind, &t.data));
            assert_eq!(frames.count() as u32, chunk.video_frames);
            assert!(tags.iter().all(|t| u64::from(t.timestamp_ms) >= chunk.start_ms));
        }
    }

    #[test]
    fn drops_tags_before_the_first_keyframe() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let mut tags = vec![audio(0), video(0, false), tag(TagKind::Video, 10, AVC_SEQ), audio(20), video(33, false)];
        tags.push(video(66, true));
        tags.push(audio(70));
        let chunks = run(&mut chunker, tags);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].start_ms, 66);
        assert_eq!(chunker.dropped_tags(), 4);
        // Video only in the header: no AAC sequence header was cached, but audio arrived.
        assert_eq!(chunks[0].flv[FLAGS_OFFSET], 0x05);
        check_flv(&chunks[0]);
    }

    #[test]
    fn long_keyframe_interval_makes_long_chunks_and_is_reported() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let chunks = run(&mut chunker, stream(12, 150));
        let starts: Vec<u64> = chunks.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, [0, 5000, 10_000]);
        assert_eq!(chunker.keyframe_interval_ms(), Some(5000));
    }

    #[test]
    fn short_keyframe_interval_groups_gops() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let chunks = run(&mut chunker, stream(6, 15)); // a keyframe every 0.5 s
        let starts: Vec<u64> = chunks.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, [0, 2000, 4000]);
        assert_eq!(chunker.keyframe_interval_ms(), Some(500));
    }

    #[test]
    fn finish_adds_one_frame_and_is_idempotent() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let tags: Vec<MediaTag> = std::iter::once(tag(TagKind::Video, 0, AVC_SEQ))
            .chain((0..10).map(|i| video(1000 + i * 40, i == 0)))
            .collect();
        let chunks = run(&mut chunker, tags);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].start_ms, 1000);
        assert_eq!(chunks[0].duration_ms, 400);
        assert_eq!(chunks[0].flv[FLAGS_OFFSET], 0x01, "video only");
        assert!(chunker.finish().is_none());
        let mut single = Chunker::new(Duration::from_secs(2));
        single.push(video(5, true));
        assert_eq!(single.finish().map(|c| c.duration_ms), Some(1), "at least 1 ms");
    }

    #[test]
    fn sequence_header_change_replaces_the_cached_one() {
        let new_seq: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x4d, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x4d, 0, 0x1e];
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let mut tags = vec![tag(TagKind::Video, 0, AVC_SEQ)];
        tags.extend((0..60).map(|i| video(i * 33, i == 0)));
        tags.push(tag(TagKind::Video, 1990, new_seq));
        tags.push(tag(TagKind::Video, 1995, new_seq)); // repeated: ignored
        tags.push(video(2000, true));
        tags.push(video(2033, false));
        let chunks = run(&mut chunker, tags);
        assert_eq!(chunks.len(), 2);
        let first = read_flv(&chunks[0].flv).unwrap();
        assert!(first.iter().all(|t| t.data.as_ref() != new_seq), "superseded before any frame used it");
        let second = check_flv(&chunks[1]);
        assert_eq!(second[0].data.as_ref(), new_seq);
        // A change followed by frames inside the chunk is written in place.
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let tags = vec![video(0, true), tag(TagKind::Video, 10, new_seq), video(33, false)];
        let chunks = run(&mut chunker, tags);
        let tags = read_flv(&chunks[0].flv).unwrap();
        assert_eq!(tags[1].data.as_ref(), new_seq);
        assert_eq!(tags[1].timestamp_ms, 10);
    }

    #[test]
    fn metadata_is_cached_without_set_data_frame() {
        let mut body = SET_DATA_FRAME.to_vec();
        body.extend_from_slice(ON_METADATA);
        body.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        let mut chunker = Chunker::new(Duration::from_secs(2));
        chunker.push(tag(TagKind::Script, 0, &body));
        chunker.push(tag(TagKind::Script, 0, b"\x02\x00\x0aonCuePoint\x05"));
        chunker.push(tag(TagKind::Video, 0, AVC_SEQ));
        chunker.push(video(0, true));
        let chunk = chunker.finish().unwrap();
        let tags = check_flv(&chunk);
        assert_eq!(tags[0].kind, TagKind::Script);
        assert!(tags[0].data.starts_with(ON_METADATA));
        assert_eq!(tags.iter().filter(|t| t.kind == TagKind::Script).count(), 1);
    }

    #[test]
    fn extended_timestamps_round_trip() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let base = 0x0123_4567u32;
        chunker.push(tag(TagKind::Video, base, AVC_SEQ));
        chunker.push(video(base, true));
        chunker.push(video(base + 40, false));
        let chunk = chunker.finish().unwrap();
        assert_eq!(chunk.start_ms, u64::from(base));
        let tags = check_flv(&chunk);
        assert_eq!(tags.last().unwrap().timestamp_ms, base + 40);
    }

    #[test]
    fn timestamps_going_backwards_do_not_panic() {
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let mut tags = vec![tag(TagKind::Video, 0, AVC_SEQ)];
        tags.extend((0..100).map(|i| video(50_000 + i * 33, i % 30 == 0)));
        tags.extend((0..100).map(|i| video(i * 33, i % 30 == 0))); // encoder restarted its clock
        tags.push(video(10, true)); // slightly backwards keyframe
        tags.push(video(u32::MAX, true));
        tags.push(video(0, true));
        let chunks = run(&mut chunker, tags);
        assert!(chunks.iter().all(|c| c.duration_ms >= 1 && c.duration_ms < 60_000), "{chunks:?}");
        assert!(chunks.iter().any(|c| c.start_ms == 0), "cut at the backwards jump");
        for chunk in &chunks {
            check_flv(chunk);
        }
    }

    #[test]
    fn a_chunk_without_keyframes_is_bounded() {
        let mut chunker = Chunker::new(Duration::from_secs(1)); // 16 × 1 s < MIN_MAX_CHUNK_MS
        let tags: Vec<MediaTag> = (0..2000).map(|i| video(i * 33, i == 0 || i == 1500)).collect();
        let chunks = run(&mut chunker, tags);
        assert_eq!(chunks[0].start_ms, 0);
        assert!(chunks[0].duration_ms >= MIN_MAX_CHUNK_MS && chunks[0].duration_ms < MIN_MAX_CHUNK_MS + 100);
        assert_eq!(chunks[1].start_ms, 1500 * 33, "resumes at the next keyframe");
    }

    #[test]
    fn garbage_tags_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut chunker = Chunker::new(Duration::from_millis(300));
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let kind = [TagKind::Audio, TagKind::Video, TagKind::Script][(next() % 3) as usize];
            let len = (next() % 24) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = data.first_mut().filter(|_| next() % 2 == 0) {
                *b = [0x17, 0x27, 0xaf, 0x97, 0x90][(next() % 5) as usize];
            }
            let ts = if next() % 50 == 0 { next() as u32 } else { (next() % 100_000) as u32 };
            out.extend(chunker.push(MediaTag { kind, timestamp_ms: ts, data: data.into() }));
        }
        out.extend(chunker.finish());
        for chunk in &out {
            assert!(read_flv(&chunk.flv).is_ok());
            // Truncated or corrupted files are refused, not a panic.
            for cut in [0, 5, 13, 20, chunk.flv.len() / 2, chunk.flv.len().saturating_sub(1)] {
                let _ = read_flv(&chunk.flv.slice(..cut.min(chunk.flv.len())));
            }
        }
        let junk: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
        let mut flv = FLV_HEADER.to_vec();
        flv.extend_from_slice(&junk);
        assert!(read_flv(&Bytes::from(flv)).is_err());
        assert_eq!(read_flv(&Bytes::from_static(b"FLV\x01\x05\xff\xff\xff\xff\0\0\0\0")), Err(FlvError::NotFlv));
    }

    /// Runs the system ffmpeg; CI installs it.
    fn ffmpeg_flv(secs: u32) -> Bytes {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine", "-t", &secs.to_string(), "-pix_fmt", "yuv420p"])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "aac", "-f", "flv", "-"])
            .output()
            .expect("ffmpeg is installed (apt-get install ffmpeg)");
        assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
        Bytes::from(out.stdout)
    }

    fn ffprobe(path: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error"])
            .args(args)
            .arg(path)
            .output()
            .expect("ffprobe is installed");
        assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "ffprobe complained: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn ffprobe_reads_a_chunk_of_a_real_stream() {
        let tags = read_flv(&ffmpeg_flv(5)).expect("ffmpeg's FLV parses");
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let chunks = run(&mut chunker, tags);
        let starts: Vec<u64> = chunks.iter().map(|c| c.start_ms).collect();
        assert_eq!(starts, [0, 2000, 4000]);
        let total: u64 = chunks.iter().map(|c| c.duration_ms).sum();
        assert!((4990..=5100).contains(&total), "total {total}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunk1.flv");
        std::fs::write(&path, &chunks[1].flv).unwrap();
        let streams = ffprobe(&path, &["-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"]);
        assert!(streams.contains("h264,320,240"), "{streams}");
        assert!(streams.contains("aac"), "{streams}");
        let frames =
            ffprobe(&path, &["-select_streams", "v", "-show_entries", "frame=key_frame,pts_time", "-of", "csv=p=0"]);
        let mut lines = frames.lines();
        let first = lines.next().unwrap_or_default();
        assert!(first.starts_with("1,2.0"), "first frame is a keyframe at 2 s: {first}");
        assert_eq!(1 + lines.count(), 60, "one GOP of frames");
    }
}
