//! Who is watching one stream, for its viewer count. A player session (its `?session=` or
//! a hash of address and agent, made by the HLS door) counts once it has fetched a media
//! playlist AND a segment, as every real player does, and for `window` after its last
//! request. It owns no I/O and no storage.
//!
//! Invariants:
//! - **Bounded**: sessions not yet counted, sessions counted and per-address counters are
//!   each a moka cache of at most `max_sessions` entries; nothing grows with the requests.
//! - **Not inflatable by inventing session ids**: a client address may start at most
//!   `new_per_address` sessions per minute (IPv6 counted per /64); others are not tracked.

use std::net::IpAddr;

use crate::platform::net::client_network;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a viewer counts after their last request.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// Sessions tracked per stream (counted, and not yet counted, each).
pub const MAX_SESSIONS: u64 = 10_000;
/// New player sessions one client address may start per minute and stream: a household or
/// office behind one address with a few players, not a script inventing ids.
pub const NEW_SESSIONS_PER_ADDRESS: u32 = 20;
/// The window of [`NEW_SESSIONS_PER_ADDRESS`].
const ADDRESS_WINDOW: Duration = Duration::from_secs(60);

/// What a player fetched, as far as the viewer count cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFetch {
    /// The master playlist: says nothing about watching.
    Master,
    /// A media playlist (live or recording).
    MediaPlaylist,
    /// A segment.
    Segment,
}

/// What a session not yet counted has fetched.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    playlist: bool,
    segment: bool,
}

/// The viewers of one stream.
pub struct Viewers {
    /// Sessions seen that have not fetched both a media playlist and a segment yet.
    pending: moka::sync::Cache<String, Progress>,
    /// Sessions counted; each expires `window` after its last request.
    watching: moka::sync::Cache<String, ()>,
    /// Sessions started per client address in the current minute.
    started: moka::sync::Cache<IpAddr, Arc<AtomicU32>>,
    new_per_address: u32,
}

impl Default for Viewers {
    fn default() -> Self {
        Self::new(VIEWER_WINDOW, MAX_SESSIONS, NEW_SESSIONS_PER_ADDRESS)
    }
}

impl Viewers {
    /// Viewers counted for `window` after their last request, at most `max_sessions` of
    /// each kind, at most `new_per_address` new sessions per address and minute.
    pub fn new(window: Duration, max_sessions: u64, new_per_address: u32) -> Self {
        Self {
            pending: moka::sync::Cache::builder().max_capacity(max_sessions).time_to_idle(window).build(),
            watching: moka::sync::Cache::builder().max_capacity(max_sessions).time_to_idle(window).build(),
            started: moka::sync::Cache::builder().max_capacity(max_sessions).time_to_live(ADDRESS_WINDOW).build(),
            new_per_address,
        }
    }

    /// Notes one request of session `viewer` from `address`.
    pub fn note(&self, viewer: &str, fetch: HlsFetch, address: IpAddr) {
        // Counted already: the lookup keeps it counted for another window.
        if self.watching.get(viewer).is_some() {
            return;
        }
        let progress = match self.pending.get(viewer) {
            Some(p) => p,
            None if fetch == HlsFetch::Master => return,
            None if !self.admit(address) => return,
            None => Progress::default(),
        };
        let progress = match fetch {
            HlsFetch::Master => return,
            HlsFetch::MediaPlaylist => Progress { playlist: true, ..progress },
            HlsFetch::Segment => Progress { segment: true, ..progress },
        };
        if progress.playlist && progress.segment {
            self.pending.invalidate(viewer);
            self.watching.insert(viewer.to_owned(), ());
        } else {
            self.pending.insert(viewer.to_owned(), progress);
        }
    }

    /// Sessions counted now.
    pub fn count(&self) -> u64 {
        // Evicts expired entries first, so that the count is exact.
        self.watching.run_pending_tasks();
        self.watching.entry_count()
    }

    /// Counts a new session of `address`; false once over the limit for this minute.
    fn admit(&self, address: IpAddr) -> bool {
        let counter = self.started.get_with(client_network(address), || Arc::new(AtomicU32::new(0)));
        counter.fetch_add(1, Ordering::Relaxed) < self.new_per_address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_session_counts_after_a_media_playlist_and_a_segment() {
        let v = Viewers::default();
        let a = ip("10.0.0.1");
        v.note("s:one", HlsFetch::Master, a);
        v.note("s:one", HlsFetch::MediaPlaylist, a);
        v.note("s:one", HlsFetch::MediaPlaylist, a);
        assert_eq!(v.count(), 0, "playlists alone are not watching");
        v.note("s:one", HlsFetch::Segment, a);
        assert_eq!(v.count(), 1);
        v.note("s:one", HlsFetch::Segment, a);
        v.note("s:two", HlsFetch::Segment, a);
        assert_eq!(v.count(), 1, "a segment alone is not watching either");
        v.note("s:two", HlsFetch::MediaPlaylist, a);
        assert_eq!(v.count(), 2, "in either order");
    }

    #[test]
    fn one_address_cannot_invent_sessions_faster_than_the_limit() {
        let v = Viewers::default();
        for i in 0..500 {
            let id = format!("s:fake-{i}");
            v.note(&id, HlsFetch::MediaPlaylist, ip("203.0.113.7"));
            v.note(&id, HlsFetch::Segment, ip("203.0.113.7"));
        }
        assert_eq!(v.count(), u64::from(NEW_SESSIONS_PER_ADDRESS));
        // Another address of the same IPv6 /64 is the same client; another /64 is not.
        let v = Viewers::default();
        for i in 0..100 {
            let address = ip(&format!("2001:db8:1:2::{i:x}"));
            v.note(&format!("s:{i}"), HlsFetch::MediaPlaylist, address);
            v.note(&format!("s:{i}"), HlsFetch::Segment, address);
        }
        assert_eq!(v.count(), u64::from(NEW_SESSIONS_PER_ADDRESS));
        v.note("s:other", HlsFetch::MediaPlaylist, ip("2001:db8:1:3::1"));
        v.note("s:other", HlsFetch::Segment, ip("2001:db8:1:3::1"));
        assert_eq!(v.count(), u64::from(NEW_SESSIONS_PER_ADDRESS) + 1);
    }

    #[test]
    fn the_map_is_bounded_and_viewers_expire() {
        let v = Viewers::new(Duration::from_millis(200), 50, u32::MAX);
        for i in 0..5_000 {
            let address = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            v.note(&format!("s:{i}"), HlsFetch::MediaPlaylist, address);
            v.note(&format!("s:{i}"), HlsFetch::Segment, address);
        }
        assert!(v.count() <= 50, "{} sessions kept", v.count());
        v.pending.run_pending_tasks();
        v.started.run_pending_tasks();
        assert!(v.pending.entry_count() <= 50 && v.started.entry_count() <= 50);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(v.count(), 0, "gone a window after their last request");
    }
}
