//! Running ffmpeg on one source chunk for one rendition: locating the system ffmpeg, the
//! argument list, and the process itself. It owns the temporary files of a job (an FLV chunk
//! in, an MPEG-TS segment out) and nothing else: it does not store segments, retry, or time
//! jobs out — the caller does, by dropping the future.
//!
//! Invariants:
//! - **Dropping a transcode future kills its ffmpeg** (SIGKILL through the child handle) and
//!   removes its temporary files; the blocking thread that drained the process then reaps it,
//!   so no orphan or zombie ffmpeg outlives a cancelled job.
//! - Temporary files are named `postcast-chunk-{label}-{unique}.flv` / `.ts`, so
//!   an operator (or a test: `pkill -f postcast-chunk`) can find the process of a job.
//! - The options follow ARCHITECTURE.md ("What makes or breaks per-chunk transcoding"):
//!   source timestamps kept (`-copyts`, the muxer's default delay), an IDR first, MPEG-TS
//!   continuity marked at every segment start, audio copied.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio::io::AsyncWriteExt as _;

use super::config::RenditionConfig;

/// How many of ffmpeg's last error lines a [`TranscodeError::Failed`] keeps.
const MAX_ERROR_LINES: usize = 8;
/// Longest kept error line, in characters.
const MAX_ERROR_LINE_CHARS: usize = 300;

/// Why a transcode failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// ffmpeg is not installed or not runnable.
    #[error("ffmpeg not found at {0:?}: install it (Debian: apt-get install ffmpeg) or set stream.ffmpeg")]
    Missing(String),
    /// ffmpeg ran and failed.
    #[error("ffmpeg failed: {0}")]
    Failed(String),
    /// Temporary files.
    #[error("transcode I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The located ffmpeg binary.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    path: PathBuf,
    /// First line of `ffmpeg -version`.
    pub version: String,
}

impl Ffmpeg {
    /// Finds `configured` (a bare name looked up on `PATH`, or a path) and runs
    /// `ffmpeg -version` once. Blocking (a few milliseconds): call it at start-up or from
    /// `spawn_blocking`.
    pub fn locate(configured: &str) -> Result<Self, TranscodeError> {
        let missing = || TranscodeError::Missing(configured.to_owned());
        let path = resolve_program(configured).ok_or_else(missing)?;
        let out = std::process::Command::new(&path)
            .arg("-version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|_| missing())?;
        if !out.status.success() {
            return Err(missing());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.lines().next().unwrap_or_default().trim().to_owned();
        if version.is_empty() {
            return Err(missing());
        }
        Ok(Self { path, version })
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A path (anything with a `/`) is taken as it is; a bare name is searched on `PATH`.
fn resolve_program(configured: &str) -> Option<PathBuf> {
    if configured.is_empty() {
        return None;
    }
    if configured.contains(std::path::MAIN_SEPARATOR) {
        let path = PathBuf::from(configured);
        return is_executable(&path).then_some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).map(|dir| dir.join(configured)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// ffmpeg's arguments (after the program name) to turn `input` (FLV) into the `rendition` as
/// MPEG-TS at `output`.
///
/// `-loglevel level+error` is `-loglevel error` with a `[error]` prefix on every line, which
/// ffmpeg-sidecar's log parser needs to tell error lines apart.
pub fn ffmpeg_args(rendition: &RenditionConfig, input: &Path, output: &Path) -> Vec<String> {
    let mut args: Vec<String> =
        ["-hide_banner", "-nostdin", "-loglevel", "level+error", "-f", "flv", "-i"].map(String::from).to_vec();
    args.push(input.to_string_lossy().into_owned());
    // Keep the broadcaster's timestamps so segments from separate processes line up; keep
    // the muxer's default delay (with `-muxdelay 0` the first frames go negative).
    args.extend(["-copyts", "-avoid_negative_ts", "disabled", "-map", "0:v:0", "-map", "0:a:0?"].map(String::from));
    if rendition.height == 0 {
        args.extend(["-c:v", "copy"].map(String::from));
    } else {
        args.extend(video_encode_args(rendition));
    }
    if rendition.audio.is_empty() || rendition.audio.eq_ignore_ascii_case("copy") {
        args.extend(["-c:a", "copy"].map(String::from));
    } else {
        args.extend(["-c:a".into(), "aac".into(), "-b:a".into(), rendition.audio.clone()]);
    }
    // Each process starts the continuity counters afresh: flag it, or players and ffprobe
    // see corrupt packets at every segment boundary.
    args.extend(["-f", "mpegts", "-mpegts_flags", "+initial_discontinuity"].map(String::from));
    args.push(output.to_string_lossy().into_owned());
    args
}

/// x264 options: an IDR on the first frame and no other keyframe (`-g`, `-keyint_min`, no
/// scene cuts), so every segment of every rendition starts on the source's keyframe.
fn video_encode_args(rendition: &RenditionConfig) -> Vec<String> {
    let preset = if rendition.preset.is_empty() { "veryfast" } else { rendition.preset.as_str() };
    let mut args: Vec<String> = vec![
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        preset.into(),
        "-profile:v".into(),
        "high".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-vf".into(),
        format!("scale=-2:{},setsar=1", rendition.height),
    ];
    if rendition.video_kbps > 0 {
        let kbps = u64::from(rendition.video_kbps);
        args.extend([
            "-b:v".into(),
            format!("{kbps}k"),
            "-maxrate".into(),
            format!("{}k", kbps * 6 / 5),
            "-bufsize".into(),
            format!("{}k", kbps * 2),
        ]);
    }
    args.extend(
        ["-force_key_frames", "expr:eq(n,0)", "-g", "100000", "-keyint_min", "100000", "-sc_threshold", "0"]
            .map(String::from),
    );
    args
}

/// Transcodes one FLV chunk into one MPEG-TS segment, using `workdir` for temporary files.
pub async fn transcode(
    ffmpeg: &Ffmpeg,
    rendition: &RenditionConfig,
    flv: &Bytes,
    workdir: &Path,
) -> Result<Bytes, TranscodeError> {
    transcode_labeled(ffmpeg, rendition, flv, workdir, "").await
}

/// [`transcode`], with `label` (e.g. `{stream}-{seq}-{rendition}`) in the temporary file
/// names and so in ffmpeg's command line: `postcast-chunk-{label}-{unique}.flv` (without a
/// label: `postcast-chunk-{rendition}-{unique}.flv`).
///
/// Dropping the returned future (a timeout) kills the ffmpeg process and removes the files.
pub async fn transcode_labeled(
    ffmpeg: &Ffmpeg,
    rendition: &RenditionConfig,
    flv: &Bytes,
    workdir: &Path,
    label: &str,
) -> Result<Bytes, TranscodeError> {
    tokio::fs::create_dir_all(workdir).await?;
    let files = JobFiles::create(workdir, label, &rendition.name, flv).await?;
    let args = ffmpeg_args(rendition, &files.input, &files.output);
    let outcome = {
        let process = Process::spawn(ffmpeg, &args)?;
        process.finish().await?
    };
    if !outcome.success {
        return Err(TranscodeError::Failed(outcome.describe()));
    }
    let ts = tokio::fs::read(&files.output).await?;
    if ts.is_empty() {
        return Err(TranscodeError::Failed("ffmpeg wrote an empty segment".into()));
    }
    Ok(Bytes::from(ts))
}

/// The input and output files of one job; removed on drop.
struct JobFiles {
    input: PathBuf,
    output: PathBuf,
}

impl JobFiles {
    /// Writes `flv` to a new, unique input file.
    async fn create(workdir: &Path, label: &str, rendition: &str, flv: &Bytes) -> Result<Self, TranscodeError> {
        let name = if label.is_empty() { rendition } else { label };
        let mut stem = format!("postcast-chunk-{}-", file_name_safe(name));
        let unique = uuid::Uuid::new_v4().simple().to_string();
        stem.push_str(&unique[..12]);
        let files = Self { input: workdir.join(format!("{stem}.flv")), output: workdir.join(format!("{stem}.ts")) };
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&files.input).await?;
        file.write_all(flv).await?;
        // tokio hands writes to a blocking thread: flush, or ffmpeg may read a partial file.
        file.flush().await?;
        Ok(files)
    }
}

impl Drop for JobFiles {
    fn drop(&mut self) {
        // Either may not exist (ffmpeg failed early, or creation failed): nothing to do then.
        let _ = std::fs::remove_file(&self.input);
        let _ = std::fs::remove_file(&self.output);
    }
}

/// Keeps `[A-Za-z0-9_-]` and replaces anything else, so a label cannot leave `workdir`.
fn file_name_safe(s: &str) -> String {
    s.chars().take(100).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// How an ffmpeg run ended.
struct Outcome {
    success: bool,
    status: Option<ExitStatus>,
    errors: Vec<String>,
}

impl Outcome {
    /// ffmpeg's error lines, or the exit status when it printed none.
    fn describe(&self) -> String {
        if !self.errors.is_empty() {
            return self.errors.join("; ");
        }
        #[cfg(unix)]
        if let Some(signal) = self.status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
            return format!("ffmpeg was killed by signal {signal}");
        }
        match self.status {
            Some(s) => format!("ffmpeg exited with {s}"),
            None => "ffmpeg ended without a status".into(),
        }
    }
}

/// A running ffmpeg. Dropping it (or the future of [`Process::finish`]) kills the process.
struct Process {
    child: Arc<Mutex<FfmpegChild>>,
    drain: Option<tokio::task::JoinHandle<Outcome>>,
}

impl Process {
    /// Starts ffmpeg and a blocking task that drains its events until it exits.
    fn spawn(ffmpeg: &Ffmpeg, args: &[String]) -> Result<Self, TranscodeError> {
        let mut child = FfmpegCommand::new_with_path(ffmpeg.path()).args(args).spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                TranscodeError::Missing(ffmpeg.path().display().to_string())
            }
            _ => TranscodeError::Io(e),
        })?;
        let events = child.iter();
        let child = Arc::new(Mutex::new(child));
        let mut process = Self { child: Arc::clone(&child), drain: None };
        // If the event iterator could not start, `process` drops here and kills ffmpeg.
        let events = events.map_err(|e| TranscodeError::Failed(format!("reading ffmpeg's output: {e}")))?;
        process.drain = Some(tokio::task::spawn_blocking(move || drain(&child, events)));
        Ok(process)
    }

    /// Waits for ffmpeg to exit.
    async fn finish(mut self) -> Result<Outcome, TranscodeError> {
        let Some(drain) = self.drain.as_mut() else {
            return Err(TranscodeError::Failed("ffmpeg was not started".into()));
        };
        let outcome = drain.await.map_err(|e| TranscodeError::Failed(format!("ffmpeg drain task: {e}")));
        self.drain = None;
        outcome
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The drain task still running means ffmpeg may be running: kill it. The task then
        // sees the end of stderr and reaps the process. `Child::kill` does nothing once the
        // child has been reaped, so a recycled pid is never signalled.
        if self.drain.is_some() {
            let _ = lock(&self.child).kill();
        }
    }
}

fn lock(child: &Mutex<FfmpegChild>) -> MutexGuard<'_, FfmpegChild> {
    child.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blocking: reads ffmpeg's events to the end (keeping its error lines), then reaps it.
/// The lock is only held for `try_wait`, so a drop can always take it to kill.
fn drain(child: &Mutex<FfmpegChild>, events: ffmpeg_sidecar::iter::FfmpegIterator) -> Outcome {
    let mut errors = Vec::new();
    for event in events {
        let line = match event {
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal | LogLevel::Unknown, line) => line,
            FfmpegEvent::Error(line) if !line.contains("No output streams found") => line,
            _ => continue,
        };
        let line = line.trim().trim_start_matches("[error]").trim_start_matches("[fatal]").trim();
        if line.is_empty() {
            continue;
        }
        if errors.len() == MAX_ERROR_LINES {
            errors.remove(0);
        }
        errors.push(line.chars().take(MAX_ERROR_LINE_CHARS).collect());
    }
    loop {
        match lock(child).as_inner_mut().try_wait() {
            Ok(Some(status)) => return Outcome { success: status.success(), status: Some(status), errors },
            Ok(None) => {}
            Err(e) => {
                errors.push(format!("waiting for ffmpeg: {e}"));
                return Outcome { success: false, status: None, errors };
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Instant;

    use serde_json::Value;

    use crate::domains::stream::chunker::{Chunker, SourceChunk, read_flv};

    /// 90 kHz ticks allowed between "last PTS + its duration" and the next segment's first
    /// PTS: FLV timestamps are whole milliseconds, and ffprobe interpolates the timestamps of
    /// the audio frames packed into one PES, so up to ~2 ms of rounding is expected.
    const TOLERANCE_TICKS: i64 = 180;

    fn rendition(name: &str, height: u32, video_kbps: u32) -> RenditionConfig {
        RenditionConfig { name: name.into(), height, video_kbps, audio: "copy".into(), preset: "veryfast".into() }
    }

    fn ladder() -> Vec<RenditionConfig> {
        crate::domains::stream::config::StreamConfig::default().ladder
    }

    fn system_ffmpeg() -> Ffmpeg {
        match Ffmpeg::locate("ffmpeg") {
            Ok(f) => f,
            Err(e) => panic!("these tests need the system ffmpeg and ffprobe: {e}"),
        }
    }

    fn run(program: &str, args: &[&str]) -> std::process::Output {
        match std::process::Command::new(program).args(args).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) => panic!("running {program}: {e}"),
        }
    }

    /// A 6 s 720p30 test pattern with a tone, as an FLV file.
    fn make_source_flv(dir: &Path) -> Vec<u8> {
        let path = dir.join("source.flv");
        let path_str = path.to_string_lossy().into_owned();
        let args: Vec<&str> = "-hide_banner -nostdin -loglevel error -f lavfi -i testsrc=size=1280x720:rate=30 \
                               -f lavfi -i sine=frequency=440 -t 6 -pix_fmt yuv420p -c:v libx264 -preset veryfast \
                               -g 60 -c:a aac -f flv"
            .split_whitespace()
            .chain([path_str.as_str()])
            .collect();
        let out = run("ffmpeg", &args);
        assert!(out.status.success(), "making the source: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(&path).unwrap_or_default()
    }

    /// The source cut into chunks by the real chunker (2 s): (chunk FLV, duration ms).
    fn chunks_of(flv: Vec<u8>) -> Vec<(Bytes, u64)> {
        let tags = read_flv(&Bytes::from(flv)).unwrap_or_else(|e| panic!("reading the source: {e}"));
        let mut chunker = Chunker::new(Duration::from_secs(2));
        let mut chunks: Vec<SourceChunk> = tags.into_iter().filter_map(|t| chunker.push(t)).collect();
        chunks.extend(chunker.finish());
        chunks.into_iter().map(|c| (c.flv, c.duration_ms)).collect()
    }

    fn ffprobe_json(path: &Path, args: &[&str]) -> Value {
        let path_str = path.to_string_lossy().into_owned();
        let mut all = vec!["-v", "error", "-of", "json"];
        all.extend_from_slice(args);
        all.push(&path_str);
        let out = run("ffprobe", &all);
        assert!(out.status.success(), "ffprobe {path_str}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn int(v: &Value, key: &str) -> i64 {
        match &v[key] {
            Value::Number(n) => n.as_i64().unwrap_or_default(),
            Value::String(s) => s.parse().unwrap_or_default(),
            _ => 0,
        }
    }

    /// NAL unit types of an Annex B packet, from ffprobe's `-show_data` hex dump.
    fn nal_types(hexdump: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for line in hexdump.lines() {
            let Some((_, rest)) = line.split_once(": ") else { continue };
            let hex = rest.split("  ").next().unwrap_or_default();
            for group in hex.split_whitespace() {
                bytes.extend(hex::decode(group).unwrap_or_default());
            }
        }
        bytes.windows(4).filter(|w| w[..3] == [0, 0, 1]).map(|w| w[3] & 0x1f).collect()
    }

    /// First and last PTS and the last packet's duration, per stream type.
    struct Span {
        first: i64,
        last: i64,
        last_duration: i64,
    }

    fn spans(segment: &Path) -> Vec<(String, Span)> {
        let probe = ffprobe_json(segment, &["-show_streams", "-show_packets"]);
        let empty = Vec::new();
        let streams = probe["streams"].as_array().unwrap_or(&empty);
        let packets = probe["packets"].as_array().unwrap_or(&empty);
        let mut out = Vec::new();
        for stream in streams {
            let mut own: Vec<&Value> = packets.iter().filter(|p| p["stream_index"] == stream["index"]).collect();
            own.sort_by_key(|p| int(p, "pts"));
            let (Some(first), Some(last)) = (own.first(), own.last()) else { continue };
            let kind = stream["codec_type"].as_str().unwrap_or_default().to_owned();
            out.push((
                kind,
                Span { first: int(first, "pts"), last: int(last, "pts"), last_duration: int(last, "duration") },
            ));
        }
        out
    }

    /// The segment starts with an IDR frame and has the expected picture.
    fn check_segment_start(segment: &Path, r: &RenditionConfig) {
        let name = segment.display();
        let streams = ffprobe_json(segment, &["-show_streams", "-select_streams", "v:0"]);
        let video = &streams["streams"][0];
        assert_eq!(video["codec_name"], "h264", "{name}");
        assert_eq!(video["pix_fmt"], "yuv420p", "{name}");
        let (w, h) = (int(video, "width"), int(video, "height"));
        match r.height {
            0 => assert_eq!((w, h), (1280, 720), "{name}"),
            480 => assert!(w == 854 || w == 852, "{name}: width {w}"),
            _ => assert_eq!(h, i64::from(r.height), "{name}"),
        }
        assert_eq!(h, if r.height == 0 { 720 } else { i64::from(r.height) }, "{name}");
        let frames = ffprobe_json(segment, &["-show_frames", "-select_streams", "v:0", "-read_intervals", "%+#1"]);
        let frame = &frames["frames"][0];
        assert_eq!(int(frame, "key_frame"), 1, "{name}: first frame not a keyframe");
        assert_eq!(frame["pict_type"], "I", "{name}");
        let packets = ffprobe_json(segment, &["-show_packets", "-show_data", "-select_streams", "v:0"]);
        let types = nal_types(packets["packets"][0]["data"].as_str().unwrap_or_default());
        let idr = types.iter().position(|&t| t == 5);
        let slice = types.iter().position(|&t| t == 1);
        assert!(idr.is_some() && slice.is_none_or(|s| Some(s) > idr), "{name}: NAL types {types:?}");
    }

    /// Timestamps run on across `segments` with neither gap nor overlap, per stream.
    fn check_continuity(segments: &[PathBuf]) {
        let all: Vec<Vec<(String, Span)>> = segments.iter().map(|s| spans(s)).collect();
        for (i, pair) in all.windows(2).enumerate() {
            for (kind, prev) in &pair[0] {
                let Some((_, next)) = pair[1].iter().find(|(k, _)| k == kind) else {
                    panic!("{kind} missing from {}", segments[i + 1].display())
                };
                let gap = next.first - prev.last;
                assert!(
                    (gap - prev.last_duration).abs() <= TOLERANCE_TICKS,
                    "{kind} at {}: last pts {} + {} but next starts at {}",
                    segments[i + 1].display(),
                    prev.last,
                    prev.last_duration,
                    next.first
                );
                assert!(prev.first < prev.last, "{kind} in {}", segments[i].display());
            }
        }
    }

    /// `cat` of the segments is one clean transport stream: ffprobe (at debug level, where
    /// ffmpeg 5.1 logs continuity-counter failures) finds no broken counter or corrupt packet.
    fn check_concatenation(dir: &Path, name: &str, segments: &[PathBuf]) {
        let mut all = Vec::new();
        for s in segments {
            all.extend(std::fs::read(s).unwrap_or_default());
        }
        let path = dir.join(format!("all-{name}.ts"));
        std::fs::write(&path, all).unwrap_or_default();
        let path_str = path.to_string_lossy().into_owned();
        let warn = run("ffprobe", &["-v", "warning", "-show_packets", "-of", "csv", &path_str]);
        assert!(warn.stderr.is_empty(), "{name}: {}", String::from_utf8_lossy(&warn.stderr));
        let debug = run("ffprobe", &["-v", "debug", "-show_entries", "packet=flags", "-of", "csv=p=0", &path_str]);
        let log = String::from_utf8_lossy(&debug.stderr).to_lowercase();
        assert!(!log.contains("continuity check failed"), "{name}: continuity");
        assert!(!log.contains("corrupt"), "{name}: corrupt packets");
        assert!(!String::from_utf8_lossy(&debug.stdout).contains('C'), "{name}: a packet flagged corrupt");
    }

    #[tokio::test]
    async fn every_chunk_of_every_rendition_starts_on_an_idr_and_runs_on() {
        let ffmpeg = system_ffmpeg();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let chunks = chunks_of(make_source_flv(dir.path()));
        assert_eq!(chunks.len(), 3, "a 6 s source with a keyframe every 2 s");
        let work = dir.path().join("work");
        let mut first_video_pts: Vec<Vec<i64>> = Vec::new();
        for r in ladder() {
            let mut segments = Vec::new();
            let mut wall = Duration::ZERO;
            for (i, (flv, _)) in chunks.iter().enumerate() {
                let started = Instant::now();
                let ts = transcode_labeled(&ffmpeg, &r, flv, &work, &format!("test-{i}")).await;
                wall += started.elapsed();
                let ts = ts.unwrap_or_else(|e| panic!("{} chunk {i}: {e}", r.name));
                let path = dir.path().join(format!("{}-{i}.ts", r.name));
                std::fs::write(&path, &ts).unwrap_or_default();
                check_segment_start(&path, &r);
                segments.push(path);
            }
            let media_ms: u64 = chunks.iter().map(|(_, d)| d).sum();
            eprintln!("{}: {:.1}x real time", r.name, media_ms as f64 / 1000.0 / wall.as_secs_f64());
            check_continuity(&segments);
            check_concatenation(dir.path(), &r.name, &segments);
            first_video_pts.push(segments.iter().map(|s| video_first_pts(s)).collect());
        }
        // Keyframes aligned across renditions: each segment starts at the same time everywhere.
        for other in &first_video_pts[1..] {
            for (a, b) in first_video_pts[0].iter().zip(other) {
                assert!((a - b).abs() <= 90, "segment starts differ: {a} vs {b}");
            }
        }
        let left = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or_default();
        assert_eq!(left, 0, "temporary files left behind");
    }

    fn video_first_pts(segment: &Path) -> i64 {
        spans(segment).into_iter().find(|(k, _)| k == "video").map(|(_, s)| s.first).unwrap_or(-1)
    }

    #[test]
    fn a_missing_ffmpeg_is_reported_as_missing() {
        for configured in ["", "/nonexistent/dir/ffmpeg", "postcast-no-such-ffmpeg-binary"] {
            match Ffmpeg::locate(configured) {
                Err(TranscodeError::Missing(m)) => assert_eq!(m, configured),
                other => panic!("{configured:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_system_ffmpeg_is_located_with_its_version() {
        let ffmpeg = system_ffmpeg();
        assert!(ffmpeg.path().is_absolute());
        assert!(ffmpeg.version.starts_with("ffmpeg version"), "{}", ffmpeg.version);
    }

    #[tokio::test]
    async fn a_broken_chunk_fails_with_ffmpegs_message() {
        let ffmpeg = system_ffmpeg();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let garbage = Bytes::from_static(b"this is not an FLV file at all");
        match transcode(&ffmpeg, &rendition("480p", 480, 1200), &garbage, dir.path()).await {
            Err(TranscodeError::Failed(m)) => assert!(!m.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(1), 0);
    }

    /// Pids of live processes whose command line contains `needle`.
    fn processes_with(needle: &str) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(needle)
            })
            .collect()
    }

    /// An "ffmpeg" that answers `-version`, then hangs with our arguments on its command line.
    #[cfg(unix)]
    fn hanging_ffmpeg(dir: &Path) -> Ffmpeg {
        use std::os::unix::fs::PermissionsExt;
        let fake = dir.join("hanging-ffmpeg");
        let script = "#!/bin/sh\n[ \"$1\" = -version ] && { echo 'ffmpeg version hang'; exit 0; }\n\
                      exec perl -e 'sleep 600' -- \"$@\"\n";
        std::fs::write(&fake, script).unwrap_or_default();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap_or_default();
        Ffmpeg::locate(&fake.to_string_lossy()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until a process with `needle` in its command line runs; its pid.
    async fn wait_for_process(needle: &str) -> u32 {
        loop {
            if let Some(&pid) = processes_with(needle).first() {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn dropping_a_hung_transcode_kills_and_reaps_ffmpeg() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ffmpeg = hanging_ffmpeg(dir.path());
        let label = format!("hang{}", std::process::id());
        let work = dir.path().join("work");
        let (r, flv) = (rendition("240p", 240, 400), Bytes::from_static(b"x"));
        let job = transcode_labeled(&ffmpeg, &r, &flv, &work, &label);
        let pid = tokio::select! {
            r = job => panic!("the hung job ended: {r:?}"),
            pid = wait_for_process(&label) => pid,
        }; // the job's future is dropped here
        let gone = async {
            while Path::new(&format!("/proc/{pid}")).exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        assert!(tokio::time::timeout(Duration::from_secs(5), gone).await.is_ok(), "ffmpeg {pid} still there");
        assert_eq!(std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(1), 0, "temporary files left");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_ffmpeg_killed_from_outside_is_a_failure() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ffmpeg = hanging_ffmpeg(dir.path());
        let label = format!("killed{}", std::process::id());
        let (r, flv) = (rendition("480p", 480, 1200), Bytes::from_static(b"x"));
        let job = transcode_labeled(&ffmpeg, &r, &flv, dir.path(), &label);
        let killer = async {
            let pid = wait_for_process(&label).await;
            let _ = run("kill", &["-9", &pid.to_string()]);
            std::future::pending::<()>().await
        };
        let result = tokio::select! {
            r = job => r,
            () = killer => unreachable!(),
        };
        match result {
            Err(TranscodeError::Failed(m)) => assert_eq!(m, "ffmpeg was killed by signal 9"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arguments_for_a_scaled_and_a_copied_rendition() {
        let (i, o) = (Path::new("/w/in.flv"), Path::new("/w/out.ts"));
        let head = "-hide_banner -nostdin -loglevel level+error -f flv -i /w/in.flv -copyts -avoid_negative_ts disabled \
                    -map 0:v:0 -map 0:a:0?";
        let tail = "-f mpegts -mpegts_flags +initial_discontinuity /w/out.ts";
        assert_eq!(
            ffmpeg_args(&rendition("source", 0, 0), i, o).join(" "),
            format!("{head} -c:v copy -c:a copy {tail}")
        );
        let scaled = "-c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -vf scale=-2:480,setsar=1 \
                      -b:v 1200k -maxrate 1440k -bufsize 2400k -force_key_frames expr:eq(n,0) -g 100000 \
                      -keyint_min 100000 -sc_threshold 0";
        assert_eq!(
            ffmpeg_args(&rendition("480p", 480, 1200), i, o).join(" "),
            format!("{head} {scaled} -c:a copy {tail}")
        );
        let mut aac = rendition("240p", 240, 400);
        aac.audio = "64k".into();
        assert!(ffmpeg_args(&aac, i, o).join(" ").contains(" -c:a aac -b:a 64k -f mpegts "));
    }

    #[test]
    fn labels_cannot_leave_the_work_directory() {
        assert_eq!(file_name_safe("../etc/passwd x"), "___etc_passwd_x");
        assert_eq!(file_name_safe("abc-12_3"), "abc-12_3");
    }
}
