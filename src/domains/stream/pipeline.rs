//! The transcode job: one (chunk, rendition) pair in the job pool. It runs ffmpeg, stores
//! the segment as a blob, warms the segment cache and reports the outcome to the stream's
//! aggregator; a job that fails for good is reported by the service as a failed segment.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::live::{LiveStream, Outcome};
use super::transcode::{self, Ffmpeg};
use super::{StreamService, segment_owner};
use crate::platform::jobs::Job;

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

impl Job for TranscodeJob {
    fn kind(&self) -> &'static str {
        "transcode"
    }

    fn run(&self) -> BoxFuture<'static, Result<(), String>> {
        let service = self.service.clone();
        let live = self.live.clone();
        let (r, seq) = (self.rendition, self.seq);
        let flv = self.flv.clone();
        let ffmpeg = self.ffmpeg.clone();
        let workdir = self.workdir.clone();
        Box::pin(async move {
            let rendition = live.renditions()[r].clone();
            let label = format!("{}-{}-{}", live.id, seq, rendition.name);
            let ts = transcode::transcode_labeled(&ffmpeg, &rendition, &flv, &workdir, &label)
                .await
                .map_err(|e| e.to_string())?;
            let size = ts.len() as u64;
            let owner = segment_owner(&live.id, &rendition.name, seq);
            let blob = service.inner.blobs.put(ts.clone(), &owner).await.map_err(|e| e.to_string())?;
            service.warm(&live.id, &rendition.name, seq, ts).await;
            service.segment_done(&live, r, seq, Outcome::Ready(blob, size)).await;
            Ok(())
        })
    }
}
