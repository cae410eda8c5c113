//! The platform: configuration, database, blobs, caches, the event bus, the job pool and
//! the doors' TLS certificate.
//! Nothing here knows about mail, accounts or video.

pub mod blobs;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod jobs;
pub mod metrics;
pub mod quota;
pub mod tls;
