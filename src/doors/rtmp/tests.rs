//! The door over real loopback sockets with a fake stream service: deadlines, garbage,
//! the connection cap, publish and refusal, `finish()` exactly once, shutdown, and a real
//! ffmpeg publishing into it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::domains::stream::chunker::{Chunker, TagKind};

#[derive(Default)]
struct Seen {
    begun: usize,
    finished: usize,
    tags: Vec<MediaTag>,
    metadata: Vec<SourceMetadata>,
    peers: Vec<SocketAddr>,
}

/// Accepts app `live` with key `good`; records everything.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Seen>>);

impl Fake {
    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

struct FakePublisher(Arc<Mutex<Seen>>);

impl Streams for Fake {
    type Publisher = FakePublisher;
    type Error = String;

    async fn begin_publish(&self, app: &str, key: &str, peer: SocketAddr) -> Result<FakePublisher, String> {
        if app != "live" || key != "good" {
            return Err("unknown stream key".into());
        }
        let mut seen = self.0.lock().unwrap();
        seen.begun += 1;
        seen.peers.push(peer);
        Ok(FakePublisher(Arc::clone(&self.0)))
    }
}

impl PublishSession for FakePublisher {
    type Error = String;

    fn metadata(&mut self, metadata: SourceMetadata) {
        self.0.lock().unwrap().metadata.push(metadata);
    }

    async fn media(&mut self, tag: MediaTag) -> Result<(), String> {
        self.0.lock().unwrap().tags.push(tag);
        Ok(())
    }

    async fn finish(self) {
        self.0.lock().unwrap().finished += 1;
    }
}

struct Door {
    addr: SocketAddr,
    fake: Fake,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn limits() -> RtmpLimits {
    RtmpLimits {
        handshake_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_millis(400),
        publish_timeout: Duration::from_secs(2),
        max_message_bytes: 1 << 20,
        max_connections: 8,
        connections_per_ip: 8,
    }
}

async fn start(limits: RtmpLimits) -> Door {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Fake::default();
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(serve_with(listener, fake.clone(), limits, rx));
    Door { addr, fake, shutdown, task }
}

/// Reads until the server closes; fails if it stays open past `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 8192];
    let until_closed = async { while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(within, until_closed).await.expect("the server closes the connection");
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..500 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// An RTMP publisher built on rml_rtmp's client session.
struct Client {
    socket: TcpStream,
    session: ClientSession,
    events: Vec<ClientSessionEvent>,
}

impl Client {
    async fn handshake(addr: SocketAddr) -> TcpStream {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut hs = Handshake::new(PeerType::Client);
        socket.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed during the handshake");
            if let HandshakeProcessResult::Completed { response_bytes, .. } = hs.process_bytes(&buf[..n]).unwrap() {
                socket.write_all(&response_bytes).await.unwrap();
                return socket;
            }
        }
    }

    async fn connect(addr: SocketAddr) -> Client {
        let socket = Self::handshake(addr).await;
        let (session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut client = Client { socket, session, events: Vec::new() };
        let request = client.session.request_connection("live".into()).unwrap();
        client.send(vec![request]).await;
        client.until(|e| *e == ClientSessionEvent::ConnectionRequestAccepted).await;
        client
    }

    async fn send(&mut self, results: Vec<ClientSessionResult>) {
        for result in results {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                self.socket.write_all(&packet.bytes).await.unwrap();
            }
        }
    }

    /// Reads until an event matches; false if the server closed first.
    async fn until(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) -> bool {
        let mut buf = vec![0u8; 65536];
        loop {
            if self.events.iter().any(&want) {
                return true;
            }
            let read = tokio::time::timeout(Duration::from_secs(5), self.socket.read(&mut buf)).await;
            let n = match read.expect("server answers") {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let results = self.session.handle_input(&buf[..n]).unwrap();
            for result in results {
                match result {
                    ClientSessionResult::OutboundResponse(p) => self.socket.write_all(&p.bytes).await.unwrap(),
                    ClientSessionResult::RaisedEvent(e) => self.events.push(e),
                    ClientSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
        }
    }

    async fn publish(addr: SocketAddr, key: &str) -> (Client, bool) {
        let mut client = Client::connect(addr).await;
        let request = client.session.request_publishing(key.into(), PublishRequestType::Live).unwrap();
        client.send(vec![request]).await;
        let accepted = client
            .until(|e| {
                *e == ClientSessionEvent::PublishRequestAccepted
                    || matches!(e, ClientSessionEvent::UnknownTransactionResultReceived { .. })
            })
            .await;
        let accepted = accepted && client.events.contains(&ClientSessionEvent::PublishRequestAccepted);
        (client, accepted)
    }

    async fn video(&mut self, ts: u32, keyframe: bool) {
        let first = if keyframe { 0x17 } else { 0x27 };
        let data = Bytes::from(vec![first, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        let packet = self.session.publish_video_data(data, RtmpTimestamp::new(ts), false).unwrap();
        self.send(vec![packet]).await;
    }
}

#[tokio::test]
async fn a_truncated_handshake_times_out() {
    let door = start(limits()).await;
    let mut socket = TcpStream::connect(door.addr).await.unwrap();
    let mut c0c1 = Handshake::new(PeerType::Client).generate_outbound_p0_and_p1().unwrap();
    c0c1.truncate(700);
    socket.write_all(&c0c1).await.unwrap();
    let started = std::time::Instant::now();
    closed_within(&mut socket, Duration::from_secs(3)).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "closed by the handshake deadline");
}

#[tokio::test]
async fn non_rtmp_bytes_close_at_once() {
    let door = start(limits()).await;
    let mut socket = TcpStream::connect(door.addr).await.unwrap();
    socket.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    closed_within(&mut socket, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn garbage_after_the_handshake_closes_only_that_connection() {
    let door = start(limits()).await;
    let (mut publisher, accepted) = Client::publish(door.addr, "good").await;
    assert!(accepted);
    let mut socket = Client::handshake(door.addr).await;
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = socket.write_all(&garbage).await;
    closed_within(&mut socket, Duration::from_secs(3)).await;
    // The publisher next door is untouched.
    publisher.video(0, true).await;
    wait_until("the frame arrives", || door.fake.seen(|s| s.tags.len() == 1)).await;
    assert_eq!(door.fake.seen(|s| s.finished), 0);
}

#[tokio::test]
async fn a_slow_loris_is_closed_after_the_read_timeout() {
    let door = start(limits()).await;
    let mut socket = Client::handshake(door.addr).await;
    let started = std::time::Instant::now();
    // A valid chunk header announcing a large message, then one byte at a time.
    socket.write_all(&[0x03, 0, 0, 0, 0, 0x10, 0x00, 0x14, 0, 0, 0, 0]).await.unwrap();
    let dribble = async {
        for _ in 0..100 {
            if socket.write_all(&[0]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(4), dribble).await.ok();
    let elapsed = started.elapsed();
    closed_within(&mut socket, Duration::from_secs(1)).await;
    assert!(elapsed < Duration::from_secs(3), "closed after about read_timeout, not {elapsed:?}");
}

#[tokio::test]
async fn a_connection_without_a_publish_is_closed_at_the_publish_deadline() {
    // The idle deadline is far away: only the publish deadline can close it in time.
    let publish_timeout = Duration::from_millis(300);
    let door = start(RtmpLimits { read_timeout: Duration::from_secs(10), publish_timeout, ..limits() }).await;
    let mut client = Client::connect(door.addr).await;
    let started = std::time::Instant::now();
    closed_within(&mut client.socket, Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "closed by the publish deadline, not before: {elapsed:?}");
    assert_eq!(door.fake.seen(|s| s.begun), 0);
}

#[tokio::test]
async fn an_accepted_publish_outlives_the_publish_deadline() {
    let limits = RtmpLimits { publish_timeout: Duration::from_millis(200), ..limits() };
    let door = start(limits).await;
    let (mut client, accepted) = Client::publish(door.addr, "good").await;
    assert!(accepted);
    for i in 0..8 {
        client.video(i * 100, i == 0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until("all frames arrive", || door.fake.seen(|s| s.tags.len() == 8)).await;
    assert_eq!(door.fake.seen(|s| s.finished), 0, "still publishing after 800 ms");
}

#[tokio::test]
async fn a_large_message_before_the_publish_is_accepted_closes_the_connection() {
    // 8 MiB allowed to publishers; a peer without an accepted publish gets 64 KiB.
    // Both deadlines are far away: only the size limit can close it in time.
    let far = Duration::from_secs(10);
    let door =
        start(RtmpLimits { max_message_bytes: 8 << 20, read_timeout: far, publish_timeout: far, ..limits() }).await;
    let mut client = Client::connect(door.addr).await;
    let mut serializer = rml_rtmp::chunk_io::ChunkSerializer::new();
    let mut bytes = serializer.set_max_chunk_size(65536, RtmpTimestamp::new(0)).unwrap().bytes;
    let message = rml_rtmp::messages::RtmpMessage::VideoData { data: Bytes::from(vec![0x27u8; 1 << 20]) };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    bytes.extend(serializer.serialize(&payload, true, false).unwrap().bytes);
    let _ = client.socket.write_all(&bytes).await;
    closed_within(&mut client.socket, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed() {
    let door = start(RtmpLimits { max_connections: 2, ..limits() }).await;
    let _a = Client::connect(door.addr).await;
    let _b = Client::connect(door.addr).await;
    let mut third = TcpStream::connect(door.addr).await.unwrap();
    closed_within(&mut third, Duration::from_secs(2)).await;
    drop((_a, _b));
    // Once the server has seen both leave, a new connection gets through the handshake.
    for _ in 0..100 {
        let mut socket = TcpStream::connect(door.addr).await.unwrap();
        let c0c1 = Handshake::new(PeerType::Client).generate_outbound_p0_and_p1().unwrap();
        socket.write_all(&c0c1).await.unwrap();
        let mut buf = [0u8; 64];
        if matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("slots were never freed");
}

#[tokio::test]
async fn a_publish_reaches_the_service_and_finishes_once_on_disconnect() {
    let door = start(limits()).await;
    let (mut client, accepted) = Client::publish(door.addr, "good").await;
    assert!(accepted);
    let metadata = StreamMetadata { video_width: Some(640), encoder: Some("test".into()), ..StreamMetadata::new() };
    let packet = client.session.publish_metadata(&metadata).unwrap();
    client.send(vec![packet]).await;
    for i in 0..10 {
        client.video(i * 33, i == 0).await;
    }
    wait_until("all frames arrive", || door.fake.seen(|s| s.tags.len() == 10)).await;
    drop(client);
    wait_until("finish is called", || door.fake.seen(|s| s.finished == 1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    door.fake.seen(|s| {
        assert_eq!((s.begun, s.finished), (1, 1));
        assert_eq!(s.metadata[0].width, Some(640));
        assert_eq!(s.tags[3].timestamp_ms, 99);
        assert!(s.peers[0].ip().is_loopback());
    });
}

#[tokio::test]
async fn finish_is_called_once_when_the_client_ends_the_publish() {
    let door = start(limits()).await;
    let (mut client, accepted) = Client::publish(door.addr, "good").await;
    assert!(accepted);
    client.video(0, true).await;
    let stop = client.session.stop_publishing().unwrap();
    client.send(stop).await;
    wait_until("finish is called", || door.fake.seen(|s| s.finished == 1)).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(door.fake.seen(|s| s.finished), 1);
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_its_reason() {
    let door = start(limits()).await;
    let (mut client, accepted) = Client::publish(door.addr, "wrong").await;
    assert!(!accepted);
    // rml_rtmp answers with an `_error` result carrying the code and our reason.
    let reply = format!("{:?}", client.events);
    assert!(reply.contains("NetStream.Publish.BadName") && reply.contains("unknown stream key"), "{reply}");
    closed_within(&mut client.socket, Duration::from_secs(3)).await;
    assert_eq!(door.fake.seen(|s| (s.begun, s.finished)), (0, 0));
}

#[tokio::test]
async fn a_panic_inside_rml_rtmp_closes_the_connection_and_finishes_the_publish() {
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::RtmpMessage;
    use rml_rtmp::rml_amf0::Amf0Value;

    let door = start(limits()).await;
    let (mut client, accepted) = Client::publish(door.addr, "good").await;
    assert!(accepted);
    let message = RtmpMessage::Amf0Data { values: vec![Amf0Value::Utf8String("@setDataFrame".into())] };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    let packet = ChunkSerializer::new().serialize(&payload, true, false).unwrap();
    client.socket.write_all(&packet.bytes).await.unwrap();
    closed_within(&mut client.socket, Duration::from_secs(3)).await;
    wait_until("finish is called", || door.fake.seen(|s| s.finished == 1)).await;
}

#[tokio::test]
async fn shutdown_ends_every_publish_and_returns() {
    let door = start(limits()).await;
    let (mut a, ok_a) = Client::publish(door.addr, "good").await;
    let (_b, ok_b) = Client::publish(door.addr, "good").await;
    assert!(ok_a && ok_b);
    a.video(0, true).await;
    wait_until("the frame arrives", || door.fake.seen(|s| s.tags.len() == 1)).await;
    door.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(3), door.task).await.expect("serve returns").unwrap();
    assert_eq!(door.fake.seen(|s| (s.begun, s.finished)), (2, 2));
    assert!(TcpStream::connect(door.addr).await.is_err(), "no longer listening");
}

/// Pushes a 3 s test source with the system ffmpeg; CI installs it.
async fn ffmpeg_push(addr: SocketAddr, key: &str) -> std::process::Output {
    let url = format!("rtmp://{addr}/live/{key}");
    tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .args(["-preset", "veryfast", "-g", "60", "-c:a", "aac", "-f", "flv", &url])
        .kill_on_drop(true)
        .output()
        .await
        .expect("ffmpeg is installed (apt-get install ffmpeg)")
}

#[tokio::test]
async fn ffmpeg_publishes_through_the_door_into_the_chunker() {
    let door = start(RtmpLimits { read_timeout: Duration::from_secs(10), ..limits() }).await;
    let out = ffmpeg_push(door.addr, "good").await;
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    wait_until("finish is called", || door.fake.seen(|s| s.finished == 1)).await;
    let tags = door.fake.seen(|s| s.tags.clone());
    assert!(tags.iter().any(|t| t.kind == TagKind::Audio));
    let mut chunker = Chunker::new(Duration::from_secs(2));
    let mut chunks: Vec<_> = tags.into_iter().filter_map(|t| chunker.push(t)).collect();
    chunks.extend(chunker.finish());
    let starts: Vec<u64> = chunks.iter().map(|c| c.start_ms).collect();
    assert_eq!(starts, [0, 2000]);
    assert!(door.fake.seen(|s| s.metadata.first().and_then(|m| m.width)) == Some(320));

    let refused = ffmpeg_push(door.addr, "wrong").await;
    assert!(!refused.status.success(), "ffmpeg must fail on a wrong key");
    assert_eq!(door.fake.seen(|s| s.begun), 1);
}
