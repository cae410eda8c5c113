//! The platform: configuration, database, blobs, caches, the event bus, the job pool, the
//! doors' TLS certificate and the server's secret.
//! Nothing here knows about mail, accounts or video.

pub mod blobs;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod quota;
pub mod secrets;
pub mod tls;
