//! The accept loop every TCP door shares (SMTP, RTMP, IMAP): it takes connections,
//! admits each under two caps (open connections from one client address and open
//! connections on the door), runs each admitted connection as its own task, logs tasks
//! that panicked, and on shutdown stops accepting at once and gives open connections a
//! grace period before aborting them. It knows no protocol: what a refused client is told
//! and what a connection does are the door's.
//!
//! Invariants:
//! - **The loop never waits on a client**: refusing is a non-blocking callback, and every
//!   admitted connection runs in its own task.
//! - **No connection outlives its admission**: the address slot and the door permit are
//!   held by the connection's task and released when it ends, however it ends.
//! - **Shutdown stops accepting at once**; open connections get the grace, then are
//!   aborted (dropped), and `serve` returns only after every task has ended.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::platform::net::client_network;

/// How one door admits connections and shuts down.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// The door's name in logs and metrics (`mx`, `submission`, `rtmp`, ...).
    pub name: &'static str,
    /// Open connections allowed on the door.
    pub max_connections: usize,
    /// Open connections allowed from one client (an IPv4 address, an IPv6 /64).
    pub per_ip: usize,
    /// How long open connections may go on after shutdown before they are aborted.
    pub shutdown_grace: Duration,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client address has `per_ip` connections open.
    PerIp,
    /// The door has `max_connections` open.
    Busy,
}

impl Refusal {
    /// The label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "per_ip",
            Refusal::Busy => "busy",
        }
    }
}

/// What a door does with connections: refuse one politely, or serve one.
pub trait Door: Send + Sync + 'static {
    /// Tells a refused client why, without waiting (e.g. a 421 line with `try_write`), or
    /// does nothing and lets the socket close.
    fn refuse(&self, socket: &TcpStream, peer: SocketAddr, why: Refusal);

    /// Serves one admitted connection to its end. `shutdown` turns true when the server
    /// stops; the connection may use it to finish early and cleanly.
    fn serve(
        self: Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Accepts connections on `listener` for `door` until `shutdown` turns true (or its
/// sender is dropped); then waits up to the grace for open connections and aborts the rest.
pub async fn serve<D: Door>(
    listener: TcpListener,
    settings: AcceptSettings,
    door: Arc<D>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = settings.name;
    let admission = Admission::new(settings.max_connections, settings.per_ip);
    let mut tasks = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            biased;
            changed = shutdown.changed() => if changed.is_err() { break },
            Some(joined) = tasks.join_next() => log_join(name, joined),
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let ticket = match admission.admit(peer.ip()) {
                        Ok(ticket) => ticket,
                        Err(why) => {
                            metrics::counter!("postcast_connections_refused_total", "door" => name, "reason" => why.as_str())
                                .increment(1);
                            tracing::debug!(door = name, %peer, reason = why.as_str(), "connection refused");
                            door.refuse(&socket, peer, why);
                            continue;
                        }
                    };
                    metrics::counter!("postcast_connections_total", "door" => name).increment(1);
                    let task = Arc::clone(&door).serve(socket, peer, shutdown.clone());
                    tasks.spawn(async move {
                        let _open = OpenGauge::new(name);
                        task.await;
                        drop(ticket);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(door = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            log_join(name, joined);
        }
    };
    if tokio::time::timeout(settings.shutdown_grace, drain).await.is_err() {
        tracing::info!(door = name, "connections still open after the shutdown grace; closing them");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

fn log_join(door: &'static str, joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(door, error = %e, "connection task panicked");
    }
}

/// The door's two caps.
struct Admission {
    permits: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_ip_limit: usize,
}

/// A connection's place under both caps; released on drop.
struct Ticket {
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
}

impl Admission {
    fn new(max_connections: usize, per_ip_limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_connections)), per_ip: Arc::default(), per_ip_limit }
    }

    /// A ticket for a new connection from `ip`, or why not.
    fn admit(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        let slot = IpSlot::take(&self.per_ip, client_network(ip), self.per_ip_limit).ok_or(Refusal::PerIp)?;
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| Refusal::Busy)?;
        Ok(Ticket { _permit: permit, _slot: slot })
    }
}

/// One connection's count against its client address.
struct IpSlot {
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(table: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, limit: usize) -> Option<Self> {
        let mut counts = table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Self { table: Arc::clone(table), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The open-connections gauge of a door, up while this lives.
struct OpenGauge(&'static str);

impl OpenGauge {
    fn new(door: &'static str) -> Self {
        metrics::gauge!("postcast_connections_open", "door" => door).increment(1.0);
        Self(door)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!("postcast_connections_open", "door" => self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes one line back, or holds the connection until shutdown when told to.
    struct Echo;

    impl Door for Echo {
        fn refuse(&self, socket: &TcpStream, _peer: SocketAddr, why: Refusal) {
            let _ = socket.try_write(format!("refused {}\n", why.as_str()).as_bytes());
        }

        async fn serve(self: Arc<Self>, mut socket: TcpStream, _peer: SocketAddr, _shutdown: watch::Receiver<bool>) {
            let mut buf = [0u8; 64];
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }

    async fn start(max: usize, per_ip: usize) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let settings =
            AcceptSettings { name: "test", max_connections: max, per_ip, shutdown_grace: Duration::from_millis(200) };
        (addr, stop, tokio::spawn(serve(listener, settings, Arc::new(Echo), rx)))
    }

    async fn echo(stream: &mut TcpStream, text: &str) -> String {
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn caps_per_address_and_per_door_are_enforced_and_released() {
        let (addr, stop, task) = start(3, 2).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echo(&mut a, "a").await, "a");
        assert_eq!(echo(&mut b, "b").await, "b");
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut line = String::new();
        c.read_to_string(&mut line).await.unwrap();
        assert_eq!(line, "refused per_ip\n", "a third connection from one address is refused");
        drop(a);
        // The slot comes back once the first connection's task has ended.
        let mut d = loop {
            let mut d = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 64];
            d.write_all(b"d").await.unwrap();
            match d.read(&mut buf).await.unwrap() {
                1 => break d,
                _ => tokio::task::yield_now().await,
            }
        };
        assert_eq!(echo(&mut d, "again").await, "again");
        stop.send(true).unwrap();
        task.await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).await.unwrap_or(0), 0, "open connections are closed after the grace");
    }

    #[tokio::test]
    async fn the_door_cap_refuses_with_busy() {
        let (addr, stop, task) = start(1, 10).await;
        let mut a = TcpStream::connect(addr).await.unwrap();
        assert_eq!(echo(&mut a, "a").await, "a");
        let mut b = TcpStream::connect(addr).await.unwrap();
        let mut line = String::new();
        b.read_to_string(&mut line).await.unwrap();
        assert_eq!(line, "refused busy\n");
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_its_ipv4_address() {
        let admission = Admission::new(10, 1);
        let _held = admission.admit("127.0.0.1".parse().unwrap()).ok().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(admission.admit(mapped).err(), Some(Refusal::PerIp));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_the_per_client_limit() {
        let admission = Admission::new(10, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = admission.admit(ip("2001:db8:1:2::1")).ok().unwrap();
        let _b = admission.admit(ip("2001:db8:1:2:ffff::7")).ok().unwrap();
        assert_eq!(admission.admit(ip("2001:db8:1:2::99")).err(), Some(Refusal::PerIp));
        assert!(admission.admit(ip("2001:db8:1:3::1")).is_ok(), "the next /64 is another client");
    }
}
