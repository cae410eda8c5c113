//! Byte-level tests of the RTMP core: rml_rtmp's client session on the other side, bytes
//! split at awkward places, garbage, rml_rtmp's panics and the size limit. No sockets.

use bytes::Bytes;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;

use super::*;

/// A server core and an rml_rtmp client, wired together in memory.
struct Pair {
    server: RtmpSession,
    client: ClientSession,
    /// Size of the pieces the client's bytes are cut into.
    piece: usize,
}

impl Pair {
    fn new(max_message_bytes: usize, piece: usize) -> Pair {
        let mut server = RtmpSession::new(max_message_bytes);
        let mut hs = Handshake::new(PeerType::Client);
        let c0c1 = hs.generate_outbound_p0_and_p1().unwrap();
        let mut s0s1s2 = Vec::new();
        for part in c0c1.chunks(piece) {
            assert!(!server.is_open());
            s0s1s2.extend(server.receive(part).unwrap().outbound);
        }
        let (c2, rest) = match hs.process_bytes(&s0s1s2).unwrap() {
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => (response_bytes, remaining_bytes),
            other => panic!("client handshake: {other:?}"),
        };
        assert!(rest.is_empty());
        let mut initial = Vec::new();
        for part in c2.chunks(piece) {
            initial.extend(server.receive(part).unwrap().outbound);
        }
        assert!(server.is_open());
        let (client, _) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut pair = Pair { server, client, piece };
        let (events, _) = pair.deliver_to_client(&initial);
        assert!(events.is_empty());
        pair
    }

    /// Sends client bytes to the server, pumping replies both ways until quiet. Returns
    /// the server's events and the client's events.
    fn deliver_to_server(&mut self, bytes: &[u8]) -> (Vec<Event>, Vec<ClientSessionEvent>) {
        let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
        for part in bytes.chunks(self.piece) {
            let received = self.server.receive(part).expect("server takes the bytes");
            server_events.extend(received.events);
            let (s, c) = self.deliver_to_client(&received.outbound);
            server_events.extend(s);
            client_events.extend(c);
        }
        (server_events, client_events)
    }

    fn deliver_to_client(&mut self, bytes: &[u8]) -> (Vec<Event>, Vec<ClientSessionEvent>) {
        if bytes.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let results = self.client.handle_input(bytes).expect("client takes the bytes");
        self.client_results(results)
    }

    fn client_results(&mut self, results: Vec<ClientSessionResult>) -> (Vec<Event>, Vec<ClientSessionEvent>) {
        let (mut server_events, mut client_events) = (Vec::new(), Vec::new());
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    let (s, c) = self.deliver_to_server(&packet.bytes);
                    server_events.extend(s);
                    client_events.extend(c);
                }
                ClientSessionResult::RaisedEvent(e) => client_events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        (server_events, client_events)
    }

    fn send(&mut self, result: ClientSessionResult) -> (Vec<Event>, Vec<ClientSessionEvent>) {
        self.client_results(vec![result])
    }

    fn connect(&mut self) {
        let request = self.client.request_connection("live".into()).unwrap();
        let (server, client) = self.send(request);
        assert!(server.is_empty(), "{server:?}");
        assert!(client.contains(&ClientSessionEvent::ConnectionRequestAccepted), "{client:?}");
    }

    /// Connects and asks to publish `key`; returns the request id.
    fn request_publish(&mut self, key: &str) -> u32 {
        self.connect();
        let request = self.client.request_publishing(key.into(), PublishRequestType::Live).unwrap();
        let (server, _) = self.send(request);
        match server.as_slice() {
            [Event::PublishRequested { request_id, app, key: k }] if app == "live" && k == key => *request_id,
            other => panic!("expected a publish request: {other:?}"),
        }
    }

    fn publishing(max_message_bytes: usize, piece: usize) -> Pair {
        let mut pair = Pair::new(max_message_bytes, piece);
        let id = pair.request_publish("k3y");
        let reply = pair.server.accept(id).unwrap();
        let (_, client) = pair.deliver_to_client(&reply);
        assert!(client.contains(&ClientSessionEvent::PublishRequestAccepted), "{client:?}");
        pair
    }
}

#[test]
fn handshake_and_publish_with_bytes_split_everywhere() {
    for piece in [1, 3, 7, 128, 1537, 4096] {
        let mut pair = Pair::publishing(1 << 20, piece);
        let metadata = StreamMetadata {
            video_width: Some(1280),
            video_height: Some(720),
            video_frame_rate: Some(30.0),
            video_bitrate_kbps: Some(2500),
            audio_bitrate_kbps: Some(160),
            encoder: Some("obs-output module".into()),
            ..StreamMetadata::new()
        };
        let packet = pair.client.publish_metadata(&metadata).unwrap();
        let (server, _) = pair.send(packet);
        let expected = SourceMetadata {
            width: Some(1280),
            height: Some(720),
            fps: Some(30.0),
            video_kbps: Some(2500),
            audio_kbps: Some(160),
            encoder: Some("obs-output module".into()),
        };
        assert_eq!(server, [Event::Metadata(expected)]);
        let frame = Bytes::from(vec![0x17u8; 10_000]);
        let video = pair.client.publish_video_data(frame.clone(), RtmpTimestamp::new(40), false).unwrap();
        let (server, _) = pair.send(video);
        let expected = MediaTag { kind: TagKind::Video, timestamp_ms: 40, data: frame };
        assert_eq!(server, [Event::Media(expected)], "piece {piece}");
        let audio = pair.client.publish_audio_data(Bytes::from_static(&[0xaf, 1, 2]), RtmpTimestamp::new(45), false);
        let (server, _) = pair.send(audio.unwrap());
        assert!(matches!(&server[..], [Event::Media(MediaTag { kind: TagKind::Audio, timestamp_ms: 45, .. })]));
        let stop = pair.client.stop_publishing().unwrap();
        let (server, _) = pair.client_results(stop);
        assert!(server.contains(&Event::PublishFinished), "{server:?}");
    }
}

#[test]
fn a_refused_publish_reaches_the_client() {
    let mut pair = Pair::new(1 << 20, 512);
    let id = pair.request_publish("wrong");
    let reply = pair.server.reject(id, "NetStream.Publish.BadName", "unknown stream key").unwrap();
    let (_, client) = pair.deliver_to_client(&reply);
    // rml_rtmp answers with an `_error` result carrying the code and the reason.
    let reply = format!("{client:?}");
    assert!(reply.contains("NetStream.Publish.BadName") && reply.contains("unknown stream key"), "{reply}");
}

#[test]
fn play_is_refused() {
    let mut pair = Pair::new(1 << 20, 512);
    pair.connect();
    let request = pair.client.request_playback("someone".into()).unwrap();
    let (server, _) = pair.send(request);
    assert_eq!(server, [Event::PlayRefused { key: "someone".into() }]);
}

#[test]
fn non_rtmp_bytes_fail_the_handshake() {
    let mut server = RtmpSession::new(1 << 20);
    assert!(matches!(server.receive(b"GET / HTTP/1.1\r\n\r\n"), Err(RtmpError::Handshake(_))));
    assert!(matches!(server.receive(b"\x03"), Err(RtmpError::Failed)), "a failed session stays failed");
}

#[test]
fn a_panic_inside_rml_rtmp_is_caught() {
    // rml_rtmp indexes past the end of an `@setDataFrame` message without arguments.
    let mut pair = Pair::publishing(1 << 20, 4096);
    let message = RtmpMessage::Amf0Data { values: vec![Amf0Value::Utf8String("@setDataFrame".into())] };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    let packet = ChunkSerializer::new().serialize(&payload, true, false).unwrap();
    assert!(matches!(pair.server.receive(&packet.bytes), Err(RtmpError::Malformed)));
    assert!(matches!(pair.server.accept(1), Err(RtmpError::Failed)));
}

#[test]
fn a_message_over_the_limit_fails() {
    let mut pair = Pair::publishing(16 * 1024, 4096);
    let mut serializer = ChunkSerializer::new();
    let mut bytes = serializer.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap().bytes;
    let message = RtmpMessage::VideoData { data: Bytes::from(vec![0x27u8; 1 << 20]) };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    bytes.extend(serializer.serialize(&payload, true, false).unwrap().bytes);
    let mut fed = 0;
    let error = bytes.chunks(4096).find_map(|part| {
        fed += part.len();
        pair.server.receive(part).err()
    });
    assert!(matches!(error, Some(RtmpError::MessageTooLarge { limit: 16384 })), "{error:?}");
    assert!(fed < 100 * 1024, "stopped early, after {fed} bytes");

    // Under the limit, the same message passes.
    let mut pair = Pair::publishing(2 << 20, 4096);
    let (server, _) = pair.deliver_to_server(&bytes);
    assert_eq!(server.len(), 1);
}

/// Chunk-stream bytes of one video message of `size` bytes, in 4096-byte chunks.
fn video_message(size: usize) -> Vec<u8> {
    let mut serializer = ChunkSerializer::new();
    let mut bytes = serializer.set_max_chunk_size(4096, RtmpTimestamp::new(0)).unwrap().bytes;
    let message = RtmpMessage::VideoData { data: Bytes::from(vec![0x27u8; size]) };
    let payload = message.into_message_payload(RtmpTimestamp::new(0), 1).unwrap();
    bytes.extend(serializer.serialize(&payload, true, false).unwrap().bytes);
    bytes
}

#[test]
fn the_limit_is_small_until_a_publish_is_accepted() {
    let bytes = video_message(1 << 20);
    // Connected, publish asked for but not yet accepted: 1 MiB is over the small limit,
    // although `max_message_bytes` is 8 MiB.
    let mut pair = Pair::new(8 << 20, 4096);
    pair.request_publish("k3y");
    assert_eq!(pair.server.max_message_bytes(), UNAUTHENTICATED_MESSAGE_BYTES);
    let mut fed = 0;
    let error = bytes.chunks(4096).find_map(|part| {
        fed += part.len();
        pair.server.receive(part).err()
    });
    let limit = UNAUTHENTICATED_MESSAGE_BYTES;
    assert!(matches!(error, Some(RtmpError::MessageTooLarge { limit: l }) if l == limit), "{error:?}");
    assert!(fed < 4 * limit, "stopped early, after {fed} bytes");

    // Once accepted, the configured limit applies and the same message passes.
    let mut pair = Pair::publishing(8 << 20, 4096);
    assert_eq!(pair.server.max_message_bytes(), 8 << 20);
    let (server, _) = pair.deliver_to_server(&bytes);
    assert_eq!(server.len(), 1);
}

#[test]
fn garbage_after_the_handshake_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..200 {
        let mut pair = if round % 2 == 0 { Pair::new(64 * 1024, 4096) } else { Pair::publishing(64 * 1024, 4096) };
        for _ in 0..64 {
            let len = (next() % 700) as usize + 1;
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if pair.server.receive(&junk).is_err() {
                break;
            }
        }
    }
}
