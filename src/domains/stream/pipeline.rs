//! The transcode job: one (chunk, rendition) pair in the process's job pool. It declares
//! its chunk's size as its weight and the stream's transcode timeout as its time limit,
//! runs ffmpeg, stores the segment as a blob, warms the segment cache and reports the
//! outcome to the stream's aggregator; a job that fails for good is reported by the
//! service as a failed segment.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::live::{LiveStream, Outcome};
use super::transcode::{self, Ffmpeg, TranscodeError};
use super::{StreamService, segment_owner};
use crate::platform::blobs::BlobError;
use crate::platform::jobs::{Job, JobFailure};

/// Why one attempt at a segment failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// ffmpeg could not make it.
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    /// It could not be stored.
    #[error("segment not stored: {0}")]
    Store(#[from] BlobError),
}

/// Transcodes one chunk into one rendition.
pub struct TranscodeJob {
    /// The service (blobs, cache, persistence).
    pub service: StreamService,
    /// The stream the chunk belongs to.
    pub live: Arc<LiveStream>,
    /// Which rendition.
    pub rendition: usize,
    /// The chunk's sequence number.
    pub seq: u64,
    /// The chunk (FLV).
    pub flv: Bytes,
    /// ffmpeg.
    pub ffmpeg: Arc<Ffmpeg>,
    /// Where temporary files go.
    pub workdir: PathBuf,
}

impl TranscodeJob {
    /// One attempt: transcode, store, warm the cache, report.
    async fn attempt(&self) -> Result<(), SegmentError> {
        let (live, r, seq) = (&self.live, self.rendition, self.seq);
        let rendition = live.renditions()[r].clone();
        let label = format!("{}-{}-{}", live.id, seq, rendition.name);
        let ts = transcode::transcode_labeled(&self.ffmpeg, &rendition, &self.flv, &self.workdir, &label).await?;
        let size = ts.len() as u64;
        let owner = segment_owner(&live.id, &rendition.name, seq);
        let service = &self.service;
        let blob = service.inner.blobs.put(ts.clone(), &owner).await?;
        service.warm(&live.id, &rendition.name, seq, ts).await;
        service.segment_done(live, r, seq, Outcome::Ready(blob, size)).await;
        Ok(())
    }
}

impl Job for TranscodeJob {
    fn kind(&self) -> &'static str {
        "transcode"
    }

    /// The chunk's share: every rendition's job holds the same chunk bytes, so together
    /// they weigh the chunk once.
    fn weight(&self) -> u64 {
        (self.flv.len() as u64).div_ceil(self.live.renditions().len().max(1) as u64)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.service.inner.cfg.transcode_timeout_seconds.max(1)))
    }

    fn run(self: Arc<Self>) -> BoxFuture<'static, Result<(), JobFailure>> {
        Box::pin(async move { self.attempt().await.map_err(Into::into) })
    }
}
