//! Live streaming: stream keys, the publish lifecycle (live → reconnecting → ended), the
//! raw backup of every source chunk, one transcode job per (chunk, rendition), the
//! playlists, segments for the HLS door, the status of each stream and retention. It owns
//! the `stream_keys`, `streams`, `stream_chunks` and `stream_segments` tables; it never
//! speaks RTMP or HTTP.

pub mod chunker;
pub mod config;
pub mod entities;
mod keys;
pub mod live;
mod pipeline;
pub mod playlist;
pub mod transcode;
mod usage;
pub mod viewers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};

use crate::domains::auth::AuthService;
use crate::events::{Bus, Event};
use crate::platform::blobs::{BlobId, Blobs};
use crate::platform::db::{Db, now};
use crate::platform::jobs::JobPool;
use crate::platform::quota::{Quota, QuotaError};
use chunker::{Chunker, MediaTag, SourceChunk, TagKind};
use config::StreamConfig;
use entities::{stream, stream_chunk, stream_segment};
use live::{ChunkFacts, LiveStream, Outcome, Segment, StreamHead};
pub use live::{Phase, PlaylistKind, RenditionStatus};
use transcode::{Ffmpeg, TranscodeError};
pub use viewers::HlsFetch;

/// What the stream domain refuses, and why.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Publishing to an application other than `live`.
    #[error("unknown application {0:?}: publish to rtmp://HOST/live/KEY")]
    UnknownApp(String),
    /// The key is wrong or revoked.
    #[error("invalid or revoked stream key")]
    InvalidKey,
    /// Somebody is already publishing with this key.
    #[error("this stream key is already live")]
    AlreadyLive,
    /// The key belongs to a disabled account.
    #[error("this account is disabled and cannot publish")]
    AccountDisabled,
    /// The owner's storage is full: recordings could not be kept.
    #[error("your storage is full: delete recordings or mail to go live")]
    OverQuota,
    /// The stream was ended by the server (its owner's account was disabled).
    #[error("this stream was ended by the server")]
    Stopped,
    /// ffmpeg is missing: nothing can be transcoded.
    #[error("{0}")]
    FfmpegMissing(String),
    /// No such stream (or rendition, or segment).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Storage failure.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Blob store failure.
    #[error("blob store: {0}")]
    Blob(#[from] crate::platform::blobs::BlobError),
    /// The owner could not be looked up.
    #[error("account lookup: {0}")]
    Account(String),
}

/// What the broadcaster says about its stream (RTMP `onMetaData`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMetadata {
    /// Pixels.
    pub width: Option<u32>,
    /// Pixels.
    pub height: Option<u32>,
    /// Frames per second.
    pub fps: Option<f64>,
    /// Video bitrate, kbit/s.
    pub video_kbps: Option<u32>,
    /// Audio bitrate, kbit/s.
    pub audio_kbps: Option<u32>,
    /// Encoder name, e.g. `obs-output module`.
    pub encoder: Option<String>,
}

/// A stream in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamSummary {
    /// Public id.
    pub id: String,
    /// Owner.
    pub username: String,
    /// Title.
    pub title: String,
    /// Whether it is live (a publisher is connected or may reconnect).
    pub live: bool,
    /// Where it is in its life.
    pub state: Phase,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds.
    pub ended_at: Option<i64>,
    /// Listed length, ms.
    pub duration_ms: u64,
    /// Player sessions that fetched a media playlist and a segment, within the last 30 s.
    pub viewers: u64,
    /// The master playlist.
    pub master_url: String,
}

/// Everything the status page shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamStatus {
    /// The summary.
    #[serde(flatten)]
    pub summary: StreamSummary,
    /// The renditions.
    pub renditions: Vec<RenditionStatus>,
    /// Ingest bitrate over the last chunk, kbit/s.
    pub ingest_kbps: Option<u64>,
    /// Frames per second over the last chunk.
    pub fps: Option<f64>,
    /// The broadcaster's keyframe interval, ms.
    pub keyframe_interval_ms: Option<u64>,
    /// Plain-language problems and what to change.
    pub warnings: Vec<String>,
    /// Chunk closed → listed in every rendition, ms.
    pub transcode_lag_ms: Option<u64>,
    /// Segments that failed to transcode.
    pub failures: u64,
}

/// Live streams and recordings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamList {
    /// Live now.
    pub live: Vec<StreamSummary>,
    /// Ended, newest first.
    pub recordings: Vec<StreamSummary>,
}

/// Whether `s` can name a stream, rendition or player session: 1–64 of `[A-Za-z0-9_-]`.
/// Doors answer anything else with 404 without a lookup.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The blob owner name of a segment.
fn segment_owner(stream: &str, rendition: &str, seq: u64) -> String {
    format!("stream:{stream}:{rendition}:{seq}")
}

fn chunk_owner(stream: &str, seq: u64) -> String {
    format!("stream:{stream}:chunk:{seq}")
}

pub(crate) struct Inner {
    db: Db,
    blobs: Blobs,
    bus: Bus,
    auth: AuthService,
    cfg: StreamConfig,
    ffmpeg: Result<Arc<Ffmpeg>, TranscodeError>,
    jobs: JobPool,
    workdir: PathBuf,
    /// Streams in memory: live ones, and recordings loaded for viewers.
    streams: RwLock<HashMap<String, Arc<LiveStream>>>,
    /// User → their live or reconnecting stream.
    by_user: tokio::sync::Mutex<HashMap<i64, String>>,
    segments: moka::future::Cache<String, Bytes>,
    ingest_url: RwLock<String>,
    /// The storage quota a publisher must be under to go live (none: no limit).
    quota: std::sync::OnceLock<Quota>,
}

/// The stream service; cheap to clone.
#[derive(Clone)]
pub struct StreamService {
    inner: Arc<Inner>,
}

impl StreamService {
    /// Builds the service, whose transcodes run in `jobs`; a missing ffmpeg is logged once
    /// here and refused per publish.
    pub fn new(
        db: Db,
        blobs: Blobs,
        bus: Bus,
        auth: AuthService,
        cfg: StreamConfig,
        jobs: JobPool,
        data: PathBuf,
    ) -> Self {
        let ffmpeg = match Ffmpeg::locate(&cfg.ffmpeg) {
            Ok(f) => {
                tracing::info!(version = %f.version, "ffmpeg found");
                Ok(Arc::new(f))
            }
            Err(e) => {
                tracing::error!("{e}; live streaming will refuse publishers until it is installed");
                Err(e)
            }
        };
        let workdir = data.join("tmp").join("transcode");
        let _ = std::fs::create_dir_all(&workdir);
        let segments = moka::future::Cache::builder()
            .max_capacity(cfg.segment_cache_mib.max(1) << 20)
            .weigher(|_k: &String, v: &Bytes| v.len().try_into().unwrap_or(u32::MAX))
            .time_to_idle(Duration::from_secs(600))
            .build();
        Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                bus,
                auth,
                cfg,
                ffmpeg,
                jobs,
                workdir,
                streams: RwLock::new(HashMap::new()),
                by_user: tokio::sync::Mutex::new(HashMap::new()),
                segments,
                ingest_url: RwLock::new(String::new()),
                quota: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets the storage quota: an owner whose storage is full cannot go live.
    pub fn set_quota(&self, quota: Quota) {
        let _ = self.inner.quota.set(quota);
    }

    /// Records where the RTMP door listens, for the "Go live" page.
    pub fn set_ingest_addr(&self, addr: SocketAddr) {
        if let Ok(mut u) = self.inner.ingest_url.write() {
            *u = format!("rtmp://{addr}/live");
        }
    }

    /// `rtmp://HOST:PORT/live`: the server URL for OBS.
    pub fn ingest_url(&self) -> String {
        self.inner.ingest_url.read().map(|u| u.clone()).unwrap_or_default()
    }

    /// Whether ffmpeg was found (else the reason).
    pub fn ffmpeg_status(&self) -> Result<(), &TranscodeError> {
        self.inner.ffmpeg.as_ref().map(|_| ())
    }

    /// Marks streams left live by a previous run as ended: their segments are the recording.
    pub async fn recover(&self) -> Result<u64, StreamError> {
        let res = stream::Entity::update_many()
            .col_expr(stream::Column::State, Expr::value(Phase::Ended))
            .col_expr(stream::Column::EndedAt, now().into())
            .filter(stream::Column::State.ne(Phase::Ended))
            .exec(&self.inner.db)
            .await?;
        Ok(res.rows_affected)
    }

    fn cached(&self, id: &str) -> Option<Arc<LiveStream>> {
        self.inner.streams.read().ok()?.get(id).cloned()
    }

    fn remember(&self, live: Arc<LiveStream>) {
        if let Ok(mut m) = self.inner.streams.write() {
            // Keep memory bounded: drop ended streams first when the map grows large.
            if m.len() > 256 {
                m.retain(|_, s| s.phase() != Phase::Ended);
            }
            m.insert(live.id.clone(), live);
        }
    }

    /// A stream by id, from memory or rebuilt from the database.
    async fn get(&self, id: &str) -> Result<Arc<LiveStream>, StreamError> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        if !is_valid_name(id) {
            return Err(StreamError::NotFound("stream"));
        }
        let row = stream::Entity::find_by_id(id.to_owned())
            .one(&self.inner.db)
            .await?
            .ok_or(StreamError::NotFound("stream"))?;
        let saved: SavedRenditions = serde_json::from_str(&row.renditions).unwrap_or_default();
        let username = self.username(row.user_id).await;
        let head = StreamHead {
            id: row.id.clone(),
            user_id: row.user_id,
            username,
            title: row.title.clone(),
            started_at: row.started_at,
        };
        let live = Arc::new(LiveStream::new(
            head,
            saved.ladder.clone(),
            self.inner.cfg.live_window_segments,
            (self.inner.cfg.chunk_seconds * 1000.0) as u64,
        ));
        let rows = stream_segment::Entity::find()
            .filter(stream_segment::Column::StreamId.eq(id))
            .order_by_asc(stream_segment::Column::Seq)
            .all(&self.inner.db)
            .await?;
        let segments = rows
            .into_iter()
            .filter_map(|s| {
                let r = live.rendition_index(&s.rendition)?;
                let blob = s.blob_id.and_then(|b| BlobId::try_from(b).ok());
                // A filled segment was stored with the other rendition's blob; after a
                // restart it is served from this rendition's URL, so no link is needed.
                let filled_from = None;
                Some((
                    r,
                    Segment {
                        seq: s.seq as u64,
                        duration_ms: s.duration_ms as u64,
                        gap: blob.is_none(),
                        blob,
                        filled_from,
                        discontinuity: s.discontinuity,
                        program_date_ms: s.program_date_ms,
                        bytes: u64::try_from(s.bytes).unwrap_or(0),
                    },
                ))
            })
            .collect();
        live.restore(segments, row.ended_at, saved.source);
        self.remember(live.clone());
        Ok(live)
    }

    async fn username(&self, user_id: i64) -> String {
        self.inner.auth.me(user_id).await.map(|u| u.username).unwrap_or_else(|_| format!("user{user_id}"))
    }

    /// Starts (or resumes, after a drop within the grace period) a publish for `key`.
    pub async fn begin_publish(&self, app: &str, key: &str, peer: SocketAddr) -> Result<Publisher, StreamError> {
        if app != "live" {
            return Err(StreamError::UnknownApp(app.chars().take(64).collect()));
        }
        let ffmpeg = self.inner.ffmpeg.as_ref().map_err(|e| StreamError::FfmpegMissing(e.to_string()))?.clone();
        let user_id = self.key_owner(key).await?.ok_or(StreamError::InvalidKey)?;
        // Asked of the auth service: the stream domain never reads the users table.
        let owner = self.inner.auth.me(user_id).await.map_err(|e| StreamError::Account(e.to_string()))?;
        if owner.disabled {
            return Err(StreamError::AccountDisabled);
        }
        if let Some(quota) = self.inner.quota.get() {
            match quota.check(user_id, 0).await {
                Err(QuotaError::Exceeded { .. }) => return Err(StreamError::OverQuota),
                Err(QuotaError::Db(e)) => return Err(e.into()),
                Ok(()) => {}
            }
        }
        let mut by_user = self.inner.by_user.lock().await;
        if let Some(id) = by_user.get(&user_id).cloned()
            && let Some(live) = self.cached(&id)
            && live.phase() != Phase::Ended
        {
            if !live.attach_publisher() {
                return Err(StreamError::AlreadyLive);
            }
            self.set_state(&live.id, Phase::Live, None).await?;
            tracing::info!(stream = %live.id, %peer, "publisher reconnected");
            return Ok(Publisher::new(self.clone(), live, ffmpeg, true));
        }
        let id = new_stream_id();
        let username = self.username(user_id).await;
        let started_at = now();
        let title = format!("{username} live");
        let ladder = self.inner.cfg.ladder.clone();
        stream::Entity::insert(stream::ActiveModel {
            id: Set(id.clone()),
            user_id: Set(user_id),
            title: Set(title.clone()),
            state: Set(Phase::Live),
            started_at: Set(started_at),
            ended_at: Set(None),
            renditions: Set(serde_json::to_string(&SavedRenditions {
                ladder: ladder.clone(),
                source: Default::default(),
            })
            .unwrap_or_default()),
        })
        .exec(&self.inner.db)
        .await?;
        let head = StreamHead { id: id.clone(), user_id, username, title, started_at };
        let live = Arc::new(LiveStream::new(
            head,
            ladder,
            self.inner.cfg.live_window_segments,
            (self.inner.cfg.chunk_seconds * 1000.0) as u64,
        ));
        self.remember(live.clone());
        by_user.insert(user_id, id.clone());
        drop(by_user);
        tracing::info!(stream = %id, %peer, "stream started");
        metrics::gauge!("postcast_streams_live").increment(1.0);
        self.inner.bus.emit(Event::StreamStarted { stream_id: id, user_id });
        Ok(Publisher::new(self.clone(), live, ffmpeg, false))
    }

    async fn set_state(&self, id: &str, phase: Phase, ended_at: Option<i64>) -> Result<(), StreamError> {
        stream::Entity::update_many()
            .col_expr(stream::Column::State, Expr::value(phase))
            .col_expr(stream::Column::EndedAt, ended_at.into())
            .filter(stream::Column::Id.eq(id))
            .exec(&self.inner.db)
            .await?;
        Ok(())
    }

    /// Takes a closed chunk: backs it up and queues one transcode per rendition.
    async fn accept_chunk(&self, live: &Arc<LiveStream>, ffmpeg: &Arc<Ffmpeg>, chunk: SourceChunk, facts: ChunkFacts) {
        let seq = live.add_chunk(facts);
        metrics::counter!("postcast_stream_chunks_total").increment(1);
        for r in 0..live.renditions().len() {
            let job = pipeline::TranscodeJob {
                service: self.clone(),
                live: live.clone(),
                rendition: r,
                seq,
                flv: chunk.flv.clone(),
                ffmpeg: ffmpeg.clone(),
                workdir: self.inner.workdir.clone(),
            };
            match self.inner.jobs.submit(Arc::new(job)) {
                Ok(handle) => {
                    let me = self.clone();
                    let live = live.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle.outcome().await {
                            tracing::warn!(stream = %live.id, seq, rendition = r, error = %e, "segment failed");
                            me.segment_done(&live, r, seq, Outcome::Failed).await;
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(stream = %live.id, seq, error = %e, "transcode not queued");
                    self.segment_done(live, r, seq, Outcome::Failed).await;
                }
            }
        }
        // The raw backup is written beside the transcodes, not before them.
        let me = self.clone();
        let id = live.id.clone();
        tokio::spawn(async move {
            if let Err(e) = me.back_up(&id, seq, &chunk).await {
                tracing::error!(stream = %id, seq, error = %e, "raw chunk backup failed");
            }
        });
    }

    async fn back_up(&self, id: &str, seq: u64, chunk: &SourceChunk) -> Result<(), StreamError> {
        let blob = self.inner.blobs.put(chunk.flv.clone(), &chunk_owner(id, seq)).await?;
        stream_chunk::Entity::insert(stream_chunk::ActiveModel {
            stream_id: Set(id.to_owned()),
            seq: Set(seq as i64),
            blob_id: Set(blob.to_string()),
            start_ms: Set(chunk.start_ms as i64),
            duration_ms: Set(chunk.duration_ms as i64),
            created_at: Set(now()),
            bytes: Set(chunk.flv.len() as i64),
        })
        .on_conflict_do_nothing()
        .exec(&self.inner.db)
        .await?;
        Ok(())
    }

    /// Reports a transcode outcome and stores whatever got listed.
    async fn segment_done(&self, live: &Arc<LiveStream>, r: usize, seq: u64, outcome: Outcome) {
        let listed = live.segment_done(r, seq, outcome);
        for (r, seg) in listed {
            let row = stream_segment::ActiveModel {
                stream_id: Set(live.id.clone()),
                rendition: Set(live.renditions()[r].name.clone()),
                seq: Set(seg.seq as i64),
                duration_ms: Set(seg.duration_ms as i64),
                blob_id: Set(seg.blob.as_ref().map(ToString::to_string)),
                discontinuity: Set(seg.discontinuity),
                gap: Set(seg.gap),
                program_date_ms: Set(seg.program_date_ms),
                bytes: Set(seg.bytes as i64),
            };
            if let Err(e) = stream_segment::Entity::insert(row).on_conflict_do_nothing().exec(&self.inner.db).await {
                tracing::error!(stream = %live.id, seq = seg.seq, error = %e, "segment row not stored");
            }
        }
    }

    /// Puts a fresh segment into the hot cache.
    async fn warm(&self, id: &str, rendition: &str, seq: u64, bytes: Bytes) {
        self.inner.segments.insert(format!("{id}/{rendition}/{seq}"), bytes).await;
    }

    /// The publisher left: wait out the grace period, then end the stream.
    fn publisher_gone(&self, live: Arc<LiveStream>) {
        live.detach_publisher();
        if live.phase() == Phase::Ended {
            // Already ended by the server (`end_streams_of`).
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.set_state(&live.id, Phase::Reconnecting, None).await {
                tracing::warn!(stream = %live.id, error = %e, "state not stored");
            }
            tokio::time::sleep(Duration::from_secs(me.inner.cfg.reconnect_grace_seconds)).await;
            let mut by_user = me.inner.by_user.lock().await;
            if !live.end(now()) {
                return;
            }
            by_user.remove(&live.user_id);
            drop(by_user);
            me.stream_ended(&live).await;
        });
    }

    /// Stores the end of a stream that has just ended in memory, and announces it.
    async fn stream_ended(&self, live: &LiveStream) {
        let saved = SavedRenditions { ladder: live.renditions().to_vec(), source: live.metadata() };
        let renditions = serde_json::to_string(&saved).unwrap_or_default();
        let res = stream::Entity::update_many()
            .col_expr(stream::Column::State, Expr::value(Phase::Ended))
            .col_expr(stream::Column::EndedAt, live.ended_at().into())
            .col_expr(stream::Column::Renditions, renditions.into())
            .filter(stream::Column::Id.eq(live.id.as_str()))
            .exec(&self.inner.db)
            .await;
        if let Err(e) = res {
            tracing::error!(stream = %live.id, error = %e, "end state not stored");
        }
        metrics::gauge!("postcast_streams_live").decrement(1.0);
        tracing::info!(stream = %live.id, "stream ended; the recording stays");
        self.inner.bus.emit(Event::StreamEnded { stream_id: live.id.clone() });
    }

    /// Ends `user_id`'s live or reconnecting stream now, publisher connected or not: its
    /// publisher's next media is refused ([`StreamError::Stopped`]), so the door closes
    /// the connection. Returns whether a stream was ended.
    pub async fn end_streams_of(&self, user_id: i64) -> bool {
        let mut by_user = self.inner.by_user.lock().await;
        let Some(id) = by_user.remove(&user_id) else { return false };
        drop(by_user);
        let Some(live) = self.cached(&id) else { return false };
        if !live.stop(now()) {
            return false;
        }
        tracing::info!(stream = %live.id, user_id, "stream ended by the server: account disabled");
        self.stream_ended(&live).await;
        true
    }

    /// Bus subscriber: a disabled account's live stream ends. Idempotent.
    pub async fn handle_event(&self, event: Event) -> Result<(), StreamError> {
        if let Event::UserDisabled { user_id } = event {
            self.end_streams_of(user_id).await;
        }
        Ok(())
    }

    /// The master playlist of a stream.
    pub async fn master_playlist(&self, stream_id: &str) -> Result<String, StreamError> {
        Ok(self.get(stream_id).await?.master_playlist())
    }

    /// A media playlist of one rendition.
    pub async fn media_playlist(
        &self,
        stream_id: &str,
        rendition: &str,
        kind: PlaylistKind,
    ) -> Result<String, StreamError> {
        let live = self.get(stream_id).await?;
        let r = live.rendition_index(rendition).ok_or(StreamError::NotFound("rendition"))?;
        live.media_playlist(r, kind).ok_or(StreamError::NotFound("rendition"))
    }

    /// A segment's bytes, from memory when hot.
    pub async fn segment(&self, stream_id: &str, rendition: &str, seq: u64) -> Result<Bytes, StreamError> {
        let key = format!("{stream_id}/{rendition}/{seq}");
        if let Some(b) = self.inner.segments.get(&key).await {
            return Ok(b);
        }
        let live = self.get(stream_id).await?;
        let r = live.rendition_index(rendition).ok_or(StreamError::NotFound("rendition"))?;
        let blob = live.segment_blob(r, seq).ok_or(StreamError::NotFound("segment"))?;
        let bytes = self.inner.blobs.get(&blob).await?;
        self.inner.segments.insert(key, bytes.clone()).await;
        Ok(bytes)
    }

    /// Notes a request of a player session of a stream from `address`: it counts as a
    /// viewer once it fetched a media playlist and a segment ([`viewers`]).
    pub fn note_viewer(&self, stream_id: &str, viewer: &str, fetch: HlsFetch, address: IpAddr) {
        if let Some(s) = self.cached(stream_id) {
            s.note_viewer(viewer, fetch, address);
        }
    }

    fn summary(&self, live: &LiveStream) -> StreamSummary {
        let f = live.figures();
        let phase = live.phase();
        StreamSummary {
            id: live.id.clone(),
            username: live.username.clone(),
            title: live.title.clone(),
            live: phase != Phase::Ended,
            state: phase,
            started_at: live.started_at,
            ended_at: live.ended_at(),
            duration_ms: f.duration_ms,
            viewers: f.viewers,
            master_url: format!("/hls/{}/master.m3u8", live.id),
        }
    }

    /// The status page of a stream.
    pub async fn status(&self, stream_id: &str) -> Result<StreamStatus, StreamError> {
        let live = self.get(stream_id).await?;
        let f = live.figures();
        let mut warnings = vec![];
        let target = (self.inner.cfg.chunk_seconds * 1000.0) as u64;
        if let Some(k) = f.keyframe_interval_ms
            && k > target + target / 4
            && live.phase() != Phase::Ended
        {
            warnings.push(format!(
                "keyframe interval is {:.1} s, longer than {:.0} s segments: set Keyframe Interval to {:.0} in OBS → \
                 Settings → Output (or -g {} in ffmpeg); segments are {:.1} s until then",
                k as f64 / 1000.0,
                self.inner.cfg.chunk_seconds,
                self.inner.cfg.chunk_seconds,
                (self.inner.cfg.chunk_seconds * 30.0) as u64,
                k as f64 / 1000.0
            ));
        }
        if f.failures > 0 {
            warnings.push(format!("{} segment(s) could not be transcoded and were filled or skipped", f.failures));
        }
        if let Err(e) = &self.inner.ffmpeg {
            warnings.push(e.to_string());
        }
        Ok(StreamStatus {
            summary: self.summary(&live),
            renditions: live.rendition_status(),
            ingest_kbps: f.ingest_kbps,
            fps: f.fps,
            keyframe_interval_ms: f.keyframe_interval_ms,
            warnings,
            transcode_lag_ms: f.transcode_lag_ms,
            failures: f.failures,
        })
    }

    /// Live streams and the newest 200 recordings. Streams in memory report themselves;
    /// the others are summarised from their rows and one aggregate query, without loading
    /// their segments (the live page polls this).
    pub async fn list(&self) -> Result<StreamList, StreamError> {
        let rows =
            stream::Entity::find().order_by_desc(stream::Column::StartedAt).limit(200).all(&self.inner.db).await?;
        let stored: Vec<&stream::Model> = rows.iter().filter(|r| self.cached(&r.id).is_none()).collect();
        let durations = self.recorded_durations(stored.iter().map(|r| r.id.clone()).collect()).await?;
        let mut names: HashMap<i64, String> = HashMap::new();
        let mut out = StreamList { live: vec![], recordings: vec![] };
        for row in &rows {
            let s = match self.cached(&row.id) {
                Some(live) => self.summary(&live),
                None => {
                    let username = match names.get(&row.user_id) {
                        Some(n) => n.clone(),
                        None => {
                            let n = self.username(row.user_id).await;
                            names.insert(row.user_id, n.clone());
                            n
                        }
                    };
                    StreamSummary {
                        id: row.id.clone(),
                        username,
                        title: row.title.clone(),
                        live: false,
                        state: Phase::Ended,
                        started_at: row.started_at,
                        ended_at: row.ended_at,
                        duration_ms: durations.get(&row.id).copied().unwrap_or(0),
                        viewers: 0,
                        master_url: format!("/hls/{}/master.m3u8", row.id),
                    }
                }
            };
            if s.live { out.live.push(s) } else { out.recordings.push(s) }
        }
        Ok(out)
    }

    /// Recorded length of each stream (its longest rendition), in one query.
    async fn recorded_durations(&self, ids: Vec<String>) -> Result<HashMap<String, u64>, StreamError> {
        use sea_orm::sea_query::{Alias, Expr, ExprTrait};
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let totals: Vec<(String, i64)> = stream_segment::Entity::find()
            .select_only()
            .column(stream_segment::Column::StreamId)
            .column_as(Expr::col(stream_segment::Column::DurationMs).sum().cast_as(Alias::new("BIGINT")), "total")
            .filter(stream_segment::Column::StreamId.is_in(ids))
            .group_by(stream_segment::Column::StreamId)
            .group_by(stream_segment::Column::Rendition)
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        let mut out: HashMap<String, u64> = HashMap::new();
        for (id, total) in totals {
            let e = out.entry(id).or_default();
            *e = Ord::max(*e, u64::try_from(total).unwrap_or(0));
        }
        Ok(out)
    }

    /// Deletes one of the owner's recordings (a live stream cannot be deleted).
    pub async fn delete_recording(&self, user_id: i64, stream_id: &str) -> Result<(), StreamError> {
        let live = self.get(stream_id).await?;
        if live.user_id != user_id || live.phase() != Phase::Ended {
            return Err(StreamError::NotFound("recording"));
        }
        self.remove_stream(&live).await?;
        if let Some(quota) = self.inner.quota.get() {
            quota.forget(user_id);
        }
        Ok(())
    }

    async fn remove_stream(&self, live: &LiveStream) -> Result<(), StreamError> {
        for (r, seq, blob) in live.own_blobs() {
            self.inner.blobs.release(&blob, &segment_owner(&live.id, &live.renditions()[r].name, seq)).await?;
        }
        self.drop_chunks(&live.id, None).await?;
        stream::Entity::delete_by_id(live.id.clone()).exec(&self.inner.db).await?;
        if let Ok(mut m) = self.inner.streams.write() {
            m.remove(&live.id);
        }
        Ok(())
    }

    /// Deletes raw chunks of a stream (created before `before`, if given).
    async fn drop_chunks(&self, id: &str, before: Option<i64>) -> Result<u64, StreamError> {
        let mut q = stream_chunk::Entity::find().filter(stream_chunk::Column::StreamId.eq(id));
        if let Some(t) = before {
            q = q.filter(stream_chunk::Column::CreatedAt.lt(t));
        }
        let rows = q.all(&self.inner.db).await?;
        for c in &rows {
            if let Ok(b) = BlobId::try_from(c.blob_id.clone()) {
                self.inner.blobs.release(&b, &chunk_owner(id, c.seq as u64)).await?;
            }
            stream_chunk::Entity::delete_many()
                .filter(stream_chunk::Column::StreamId.eq(id))
                .filter(stream_chunk::Column::Seq.eq(c.seq))
                .exec(&self.inner.db)
                .await?;
        }
        Ok(rows.len() as u64)
    }

    /// Applies the retention settings at time `at`: raw chunks older than
    /// `raw_retention_hours`, recordings ended more than `recording_retention_days` ago.
    pub async fn apply_retention(&self, at: i64) -> Result<(u64, u64), StreamError> {
        let cfg = &self.inner.cfg;
        let mut chunks = 0;
        let mut recordings = 0;
        let rows = stream::Entity::find().all(&self.inner.db).await?;
        for row in rows {
            if cfg.recording_retention_days > 0
                && row.state == Phase::Ended
                && row.ended_at.is_some_and(|e| e < at - (cfg.recording_retention_days * 86_400) as i64)
            {
                let live = self.get(&row.id).await?;
                self.remove_stream(&live).await?;
                recordings += 1;
            } else if cfg.raw_retention_hours > 0 {
                chunks += self.drop_chunks(&row.id, Some(at - (cfg.raw_retention_hours * 3600) as i64)).await?;
            }
        }
        Ok((chunks, recordings))
    }
}

/// What is stored with a stream to rebuild its master playlist later.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SavedRenditions {
    ladder: Vec<config::RenditionConfig>,
    source: SourceMetadata,
}

/// A short public id.
fn new_stream_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..10).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// The RFC 6381 name of an AVC stream from its FLV sequence header tag body.
fn avc_codec(data: &[u8]) -> Option<String> {
    // FLV VideoTagHeader (5 bytes) then AVCDecoderConfigurationRecord: version, profile,
    // compatibility, level (ISO/IEC 14496-15 §5.3.3.1).
    if data.len() >= 9 && data[0] & 0x0f == 7 && chunker::is_sequence_header(TagKind::Video, data) {
        Some(format!("avc1.{:02x}{:02x}{:02x}", data[6], data[7], data[8]))
    } else {
        None
    }
}

/// One connected broadcaster: feeds media into the chunker and chunks into the pipeline.
pub struct Publisher {
    service: StreamService,
    live: Arc<LiveStream>,
    ffmpeg: Arc<Ffmpeg>,
    chunker: Chunker,
    resumed: bool,
    first_ts: Option<u32>,
    started_ms: i64,
}

impl Publisher {
    fn new(service: StreamService, live: Arc<LiveStream>, ffmpeg: Arc<Ffmpeg>, resumed: bool) -> Self {
        let target = Duration::from_secs_f64(service.inner.cfg.chunk_seconds);
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self { service, live, ffmpeg, chunker: Chunker::new(target), resumed, first_ts: None, started_ms }
    }

    /// The stream's public id.
    pub fn stream_id(&self) -> &str {
        &self.live.id
    }

    /// The broadcaster's metadata.
    pub fn metadata(&mut self, m: SourceMetadata) {
        self.live.set_metadata(m);
    }

    /// One audio, video or script message.
    pub async fn media(&mut self, tag: MediaTag) -> Result<(), StreamError> {
        if self.live.phase() == Phase::Ended {
            return Err(StreamError::Stopped);
        }
        metrics::counter!("postcast_stream_ingest_bytes_total").increment(tag.data.len() as u64);
        if tag.kind == TagKind::Video
            && let Some(codec) = avc_codec(&tag.data)
        {
            self.live.set_source_codec(codec);
        }
        self.first_ts.get_or_insert(tag.timestamp_ms);
        if let Some(chunk) = self.chunker.push(tag) {
            self.close(chunk).await;
        }
        Ok(())
    }

    async fn close(&mut self, chunk: SourceChunk) {
        self.live.set_keyframe_interval(self.chunker.keyframe_interval_ms());
        let offset = chunk.start_ms as i64 - self.first_ts.unwrap_or(0) as i64;
        let facts = ChunkFacts {
            duration_ms: chunk.duration_ms,
            discontinuity: self.resumed && chunk.index == 0,
            program_date_ms: self.started_ms + offset,
            bytes_in: chunk.bytes_in,
            video_frames: chunk.video_frames,
        };
        self.service.accept_chunk(&self.live, &self.ffmpeg, chunk, facts).await;
    }

    /// The broadcaster is gone: close the last chunk and start the grace period.
    pub async fn finish(mut self) {
        // A stream the server ended takes no more chunks.
        if self.live.phase() != Phase::Ended
            && let Some(chunk) = self.chunker.finish()
        {
            self.close(chunk).await;
        }
        self.service.publisher_gone(self.live.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    async fn service(dir: &std::path::Path) -> (StreamService, i64) {
        let url = format!("sqlite://{}?mode=rwc", dir.join("s.db").display());
        let db = crate::platform::db::open(&url, 2, Duration::from_secs(5), true).await.unwrap();
        let blobs = Blobs::open(dir.join("blobs"), db.clone()).unwrap();
        let bus = Bus::new(db.clone());
        let mut config = Config::default();
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        config.stream.raw_retention_hours = 1;
        config.stream.recording_retention_days = 1;
        let auth =
            AuthService::new(db.clone(), bus.clone(), &config, &crate::platform::secrets::ServerSecret::generate())
                .unwrap();
        let user =
            auth.create_user("rita", "correct horse battery", &crate::domains::auth::ClientInfo::local("t")).await;
        let jobs = JobPool::start(crate::platform::jobs::PoolSettings::from_config(&config.jobs));
        let svc = StreamService::new(db, blobs, bus, auth, config.stream.clone(), jobs, dir.to_owned());
        (svc, user.unwrap().id)
    }

    async fn stored_stream(svc: &StreamService, id: &str, user: i64, ended_at: i64, chunk_at: i64) -> (BlobId, BlobId) {
        let db = &svc.inner.db;
        let saved = SavedRenditions { ladder: svc.inner.cfg.ladder.clone(), source: Default::default() };
        stream::Entity::insert(stream::ActiveModel {
            id: Set(id.into()),
            user_id: Set(user),
            title: Set("t".into()),
            state: Set(Phase::Ended),
            started_at: Set(ended_at - 60),
            ended_at: Set(Some(ended_at)),
            renditions: Set(serde_json::to_string(&saved).unwrap()),
        })
        .exec(db)
        .await
        .unwrap();
        let seg =
            svc.inner.blobs.put(Bytes::from(format!("ts of {id}")), &segment_owner(id, "source", 0)).await.unwrap();
        stream_segment::Entity::insert(stream_segment::ActiveModel {
            stream_id: Set(id.into()),
            rendition: Set("source".into()),
            seq: Set(0),
            duration_ms: Set(2000),
            blob_id: Set(Some(seg.to_string())),
            discontinuity: Set(false),
            gap: Set(false),
            program_date_ms: Set(0),
            bytes: Set(600 * 1024),
        })
        .exec(db)
        .await
        .unwrap();
        let chunk = svc.inner.blobs.put(Bytes::from(format!("flv of {id}")), &chunk_owner(id, 0)).await.unwrap();
        stream_chunk::Entity::insert(stream_chunk::ActiveModel {
            stream_id: Set(id.into()),
            seq: Set(0),
            blob_id: Set(chunk.to_string()),
            start_ms: Set(0),
            duration_ms: Set(2000),
            created_at: Set(chunk_at),
            bytes: Set(600 * 1024),
        })
        .exec(db)
        .await
        .unwrap();
        (seg, chunk)
    }

    #[tokio::test]
    async fn publishing_emits_started_and_ended_and_checks_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (mut svc, user) = service(dir.path()).await;
        if let Some(inner) = Arc::get_mut(&mut svc.inner) {
            inner.cfg.reconnect_grace_seconds = 0;
        }
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(matches!(svc.begin_publish("live", "live_nope", peer).await, Err(StreamError::InvalidKey)));
        let key = svc.rotate_key(user).await.unwrap();
        assert!(matches!(svc.begin_publish("other", &key, peer).await, Err(StreamError::UnknownApp(_))));
        let mut events = svc.inner.bus.listen().await.unwrap();
        let publisher = svc.begin_publish("live", &key, peer).await.unwrap();
        let id = publisher.stream_id().to_owned();
        assert_eq!(events.recv().await.unwrap(), Event::StreamStarted { stream_id: id.clone(), user_id: user });
        assert!(matches!(svc.begin_publish("live", &key, peer).await, Err(StreamError::AlreadyLive)));
        publisher.finish().await;
        assert_eq!(events.recv().await.unwrap(), Event::StreamEnded { stream_id: id.clone() });
        assert_eq!(svc.status(&id).await.unwrap().summary.state, Phase::Ended);
        svc.revoke_key(user).await.unwrap();
        assert!(matches!(svc.begin_publish("live", &key, peer).await, Err(StreamError::InvalidKey)));
    }

    #[tokio::test]
    async fn recordings_count_against_the_quota_and_a_full_account_cannot_go_live() {
        use crate::platform::quota::{QuotaConfig, UsageSource};
        let dir = tempfile::tempdir().unwrap();
        let (svc, user) = service(dir.path()).await;
        let key = svc.rotate_key(user).await.unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        stored_stream(&svc, "rec1", user, now(), now()).await;
        assert_eq!(svc.bytes_used(user).await.unwrap(), 1_200 * 1024, "its segment and its raw chunk");
        let quota = Quota::new(&QuotaConfig { storage_mb: 1 });
        quota.add_source(Arc::new(svc.clone()));
        svc.set_quota(quota);
        let refused = svc.begin_publish("live", &key, peer).await;
        assert!(matches!(refused, Err(StreamError::OverQuota)), "{:?}", refused.err());
        svc.delete_recording(user, "rec1").await.unwrap();
        assert_eq!(svc.bytes_used(user).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_disabled_account_cannot_publish() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, user) = service(dir.path()).await;
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let key = svc.rotate_key(user).await.unwrap();
        svc.inner.auth.disable_user("rita").await.unwrap();
        let refused = svc.begin_publish("live", &key, peer).await;
        assert!(matches!(refused, Err(StreamError::AccountDisabled)), "{:?}", refused.err());
        assert_eq!(StreamError::AccountDisabled.to_string(), "this account is disabled and cannot publish");
    }

    #[tokio::test]
    async fn disabling_the_owner_ends_the_live_stream_through_the_bus() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, user) = service(dir.path()).await;
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let key = svc.rotate_key(user).await.unwrap();
        let mut publisher = svc.begin_publish("live", &key, peer).await.unwrap();
        let id = publisher.stream_id().to_owned();
        let mut events = svc.inner.bus.listen().await.unwrap();
        // The subscriber as the application starts it: the event comes from the outbox.
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let me = svc.clone();
        let handler: crate::events::Handler = Arc::new(move |e| {
            let me = me.clone();
            Box::pin(async move { me.handle_event(e).await.map_err(|e| e.into()) })
        });
        let task = svc.inner.bus.subscribe("stream", handler, stop_rx);
        svc.inner.auth.disable_user("rita").await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(Event::StreamEnded { stream_id }) = events.recv().await {
                    return stream_id;
                }
            }
        })
        .await
        .expect("the stream ends when its owner is disabled");
        assert_eq!(ended, id);
        let status = svc.status(&id).await.unwrap();
        assert_eq!((status.summary.state, status.summary.live), (Phase::Ended, false));
        // The connected publisher's next media is refused, so the door closes it.
        let tag = MediaTag { kind: TagKind::Video, timestamp_ms: 0, data: Bytes::from_static(&[0x17, 1]) };
        assert!(matches!(publisher.media(tag).await, Err(StreamError::Stopped)));
        publisher.finish().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(svc.status(&id).await.unwrap().summary.state, Phase::Ended, "finish does not revive it");
        let stored = stream::Entity::find_by_id(id.clone()).one(&svc.inner.db).await.unwrap().unwrap();
        assert_eq!(stored.state, Phase::Ended);
        assert!(!svc.end_streams_of(user).await, "idempotent: nothing left to end");
        let _ = stop.send(true);
        let _ = task.await;
    }

    #[tokio::test]
    async fn retention_drops_old_raw_chunks_and_old_recordings() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, user) = service(dir.path()).await;
        let t = now();
        let (old_seg, old_chunk) = stored_stream(&svc, "oldrec", user, t - 3 * 86_400, t - 3 * 86_400).await;
        let (new_seg, new_chunk) = stored_stream(&svc, "newrec", user, t - 600, t - 7200).await;
        // Listed from their rows and one aggregate query, without being loaded.
        let list = svc.list().await.unwrap();
        let rec = list.recordings.iter().find(|r| r.id == "newrec").unwrap();
        assert_eq!((rec.duration_ms, rec.username.as_str(), rec.live), (2000, "rita", false));
        assert!(svc.cached("newrec").is_none());
        assert_eq!(svc.apply_retention(t).await.unwrap(), (1, 1));
        let blobs = &svc.inner.blobs;
        assert!(!blobs.exists(&old_seg).await.unwrap() && !blobs.exists(&old_chunk).await.unwrap());
        assert!(matches!(svc.status("oldrec").await, Err(StreamError::NotFound(_))));
        assert!(blobs.exists(&new_seg).await.unwrap(), "a recent recording stays");
        assert!(!blobs.exists(&new_chunk).await.unwrap(), "its raw chunk past raw_retention_hours goes");
        assert!(svc.media_playlist("newrec", "source", PlaylistKind::Recording).await.unwrap().contains("0.ts"));
    }

    #[test]
    fn avc_codec_names_profile_and_level() {
        let hdr = [0x17, 0, 0, 0, 0, 1, 0x64, 0x00, 0x1f, 0xff];
        assert_eq!(avc_codec(&hdr).as_deref(), Some("avc1.64001f"));
        assert_eq!(avc_codec(&[0x17, 1, 0, 0]), None);
        assert_eq!(new_stream_id().len(), 10);
    }
}
