//! postcast: one binary for self-hosted mail and live streaming. See `ARCHITECTURE.md` in
//! the README: doors (protocols) call domains (business rules) that stand on the platform
//! (storage, cache, bus, jobs).

pub mod app;
pub mod config;
pub mod domains;
pub mod doors;
pub mod events;
pub mod platform;
