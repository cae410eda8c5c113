//! A loopback DNS stand-in for tests: a tiny UDP server on `127.0.0.1:0` (its own thread,
//! so it answers whatever the test's runtime is doing) that answers MX, A, AAAA and TXT
//! questions from a map built with hickory-proto. A name it knows without a record of
//! the asked type gets an empty NOERROR answer; any other name gets NXDOMAIN. It is also
//! compiled into the library's unit tests (`#[path]`), so it depends only on std and
//! hickory-proto.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// One record the stand-in serves.
#[derive(Debug, Clone)]
enum Entry {
    Mx(u16, String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
}

type Zone = HashMap<String, Vec<Entry>>;

/// A running DNS stand-in; stops when dropped.
pub struct DnsStandIn {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsStandIn {
    /// Starts an empty stand-in.
    pub fn start() -> DnsStandIn {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS stand-in");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        let addr = socket.local_addr().expect("stand-in address");
        let zone = Arc::new(Mutex::new(Zone::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (z, s, q) = (zone.clone(), stop.clone(), queries.clone());
        std::thread::spawn(move || serve(socket, z, s, q));
        DnsStandIn { addr, zone, stop, queries }
    }

    fn add(&self, name: &str, entry: Entry) {
        self.zone.lock().expect("zone lock").entry(key(name)).or_default().push(entry);
    }

    /// Adds `domain MX preference host`.
    pub fn add_mx(&self, domain: &str, preference: u16, host: &str) {
        self.add(domain, Entry::Mx(preference, host.to_owned()));
    }

    /// Adds `host A ip`.
    pub fn add_a(&self, host: &str, ip: Ipv4Addr) {
        self.add(host, Entry::A(ip));
    }

    /// Adds `host AAAA ip`.
    pub fn add_aaaa(&self, host: &str, ip: Ipv6Addr) {
        self.add(host, Entry::Aaaa(ip));
    }

    /// Adds `name TXT value` (split into 255-byte strings as DNS requires).
    pub fn add_txt(&self, name: &str, value: &str) {
        self.add(name, Entry::Txt(value.to_owned()));
    }

    /// Removes every record of `name`.
    pub fn remove(&self, name: &str) {
        self.zone.lock().expect("zone lock").remove(&key(name));
    }

    /// Questions answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// The `[dns]` config section pointing at this stand-in.
    pub fn config(&self) -> String {
        format!("[dns]\nnameservers = [\"{}\"]\n", self.addr)
    }
}

impl Drop for DnsStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>, stop: Arc<AtomicBool>, queries: Arc<AtomicUsize>) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
        queries.fetch_add(1, Ordering::SeqCst);
        let answer = {
            let zone = zone.lock().expect("zone lock");
            answer(&query, &zone)
        };
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
}

fn answer(query: &Message, zone: &Zone) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(q.clone());
    let Some(entries) = zone.get(&key(&q.name.to_ascii())) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return reply;
    };
    for e in entries {
        let rdata = match (e, q.query_type) {
            (Entry::Mx(pref, host), RecordType::MX) => match Name::from_ascii(format!("{}.", key(host))) {
                Ok(name) => RData::MX(MX::new(*pref, name)),
                Err(_) => continue,
            },
            (Entry::A(ip), RecordType::A) => RData::A(A(*ip)),
            (Entry::Aaaa(ip), RecordType::AAAA) => RData::AAAA(AAAA(*ip)),
            (Entry::Txt(value), RecordType::TXT) => {
                let chunks = value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                RData::TXT(TXT::new(chunks))
            }
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(q.name.clone(), 60, rdata));
    }
    reply
}
