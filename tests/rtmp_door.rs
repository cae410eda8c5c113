//! The RTMP door of the real binary under hostile clients: garbage, a truncated
//! handshake, a slow-loris and an oversized message each close only their own connection,
//! while RTMP and HTTP keep serving (`/healthz`, a new handshake, a refused wrong key);
//! the stream key shown once is accepted while only its fingerprint is stored. The real
//! publish path is covered by `tests/stream.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Server;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A small message limit, so that an oversized message is cheap to send, and short
/// deadlines, so that hanging clients are closed within the test.
const CONFIG: &str = "[stream]\nmax_message_bytes = 65536\nrtmp_handshake_seconds = 1\nrtmp_read_timeout_seconds = 2\n";

/// A short publish deadline and a long idle one, so that only the publish deadline can
/// close a connection that never publishes within the test.
const PUBLISH_DEADLINE: &str = "[stream]\nrtmp_publish_seconds = 1\nrtmp_read_timeout_seconds = 30\n";

/// Completes the client side of the RTMP handshake.
async fn handshake(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    socket.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "server closed during the handshake");
        if let HandshakeProcessResult::Completed { response_bytes, .. } = hs.process_bytes(&buf[..n]).unwrap() {
            socket.write_all(&response_bytes).await.unwrap();
            return socket;
        }
    }
}

/// Reads until the server closes; fails if it stays open past `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 8192];
    let until_closed = async { while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(within, until_closed).await.expect("the server closes the connection");
}

/// Connects and publishes with `key`; returns the client's events once the server answers.
async fn publish(addr: SocketAddr, key: &str) -> Vec<ClientSessionEvent> {
    let mut socket = handshake(addr).await;
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    let mut outbound = vec![session.request_connection("live".into()).unwrap()];
    let mut events = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        for result in outbound.drain(..) {
            match result {
                ClientSessionResult::OutboundResponse(p) => socket.write_all(&p.bytes).await.unwrap(),
                ClientSessionResult::RaisedEvent(e) => {
                    if e == ClientSessionEvent::ConnectionRequestAccepted {
                        let request = session.request_publishing(key.into(), PublishRequestType::Live).unwrap();
                        socket.write_all(&outbound_bytes(request)).await.unwrap();
                    }
                    events.push(e);
                }
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        let answered = events.iter().any(|e| {
            *e == ClientSessionEvent::PublishRequestAccepted
                || matches!(e, ClientSessionEvent::UnknownTransactionResultReceived { .. })
        });
        if answered {
            return events;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "server closed before answering the publish: {events:?}");
        outbound = session.handle_input(&buf[..n]).unwrap();
    }
}

fn outbound_bytes(result: ClientSessionResult) -> Vec<u8> {
    match result {
        ClientSessionResult::OutboundResponse(p) => p.bytes,
        _ => Vec::new(),
    }
}

async fn healthy(s: &Server) {
    let r = s.client().get(s.url("/healthz")).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hostile_rtmp_clients_close_only_their_own_connection() {
    let s = Server::start_with(CONFIG);
    let rtmp = s.rtmp.expect("the server prints its RTMP address");

    // Not RTMP at all: closed at once.
    let mut garbage = TcpStream::connect(rtmp).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    closed_within(&mut garbage, Duration::from_secs(2)).await;

    // Half a handshake, left hanging.
    let mut truncated = TcpStream::connect(rtmp).await.unwrap();
    let c0c1 = Handshake::new(PeerType::Client).generate_outbound_p0_and_p1().unwrap();
    truncated.write_all(&c0c1[..700]).await.unwrap();

    // A slow-loris: a chunk header announcing a large message, then a byte now and then.
    let mut loris = handshake(rtmp).await;
    loris.write_all(&[0x03, 0, 0, 0, 0, 0x10, 0x00, 0x14, 0, 0, 0, 0]).await.unwrap();
    // It keeps dribbling until the server has closed it; returns how long that took.
    let dribble = tokio::spawn(async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if loris.write_all(&[0]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the slow-loris connection is still open after 20 s");
    });

    // Garbage after a good handshake.
    let mut noisy = handshake(rtmp).await;
    let junk: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let _ = noisy.write_all(&junk).await;
    closed_within(&mut noisy, Duration::from_secs(5)).await;

    // A message far over `max_message_bytes`.
    let mut big = handshake(rtmp).await;
    let mut serializer = ChunkSerializer::new();
    let mut bytes = serializer.set_max_chunk_size(65536, RtmpTimestamp::new(0)).unwrap().bytes;
    let message = RtmpMessage::VideoData { data: vec![0x27u8; 4 << 20].into() };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    bytes.extend(serializer.serialize(&payload, true, false).unwrap().bytes);
    let _ = big.write_all(&bytes).await;
    closed_within(&mut big, Duration::from_secs(5)).await;

    // Meanwhile both doors still answer.
    healthy(&s).await;
    let events = publish(rtmp, "live_not_a_key").await;
    let reply = format!("{events:?}");
    assert!(reply.contains("NetStream.Publish.BadName"), "a wrong key is refused with a reason: {reply}");
    // The half handshake is closed at its deadline (1 s), the slow-loris at its read
    // deadline (2 s without a whole message).
    closed_within(&mut truncated, Duration::from_secs(5)).await;
    let loris_open_for = dribble.await.unwrap();
    assert!(loris_open_for < Duration::from_secs(8), "the slow-loris lived {loris_open_for:?}");
    healthy(&s).await;
}

#[tokio::test]
async fn a_connection_that_never_publishes_is_closed_at_the_publish_deadline() {
    let s = Server::start_with(PUBLISH_DEADLINE);
    let rtmp = s.rtmp.expect("the server prints its RTMP address");
    // Handshake and `connect`, then no publish.
    let mut socket = handshake(rtmp).await;
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
    socket.write_all(&outbound_bytes(session.request_connection("live".into()).unwrap())).await.unwrap();
    let started = std::time::Instant::now();
    closed_within(&mut socket, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(800), "closed by the publish deadline, not before: {elapsed:?}");
    // The door still serves publishers.
    let events = publish(rtmp, "live_not_a_key").await;
    assert!(format!("{events:?}").contains("NetStream.Publish.BadName"));
    healthy(&s).await;
}

#[tokio::test]
async fn the_key_shown_once_publishes_and_only_its_fingerprint_is_stored() {
    use sha2::{Digest, Sha256};
    let s = Server::start();
    let rtmp = s.rtmp.expect("the server prints its RTMP address");
    let token = s.register_and_login("rita", "correct horse battery").await;
    let r = s.client().post(s.url("/api/v1/stream-key/rotate")).bearer_auth(&token).send().await.unwrap();
    let key = r.json::<serde_json::Value>().await.unwrap()["key"].as_str().expect("the new key, shown once").to_owned();

    let url = format!("sqlite://{}?mode=ro", s.data.path().join("postcast.db").display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    let sql = sea_orm::Statement::from_string(db.get_database_backend(), "SELECT key_hash FROM stream_keys");
    let rows = sea_orm::ConnectionTrait::query_all_raw(&db, sql).await.unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.try_get_by_index(0).unwrap()).collect();
    let fingerprint = hex::encode(Sha256::digest(key.as_bytes()));
    assert_eq!(stored, vec![fingerprint.clone()], "the key itself is not stored");

    // The stored fingerprint is no key; the key is.
    let events = publish(rtmp, &fingerprint).await;
    assert!(format!("{events:?}").contains("NetStream.Publish.BadName"), "{events:?}");
    let events = publish(rtmp, &key).await;
    assert!(events.contains(&ClientSessionEvent::PublishRequestAccepted), "{events:?}");
}
