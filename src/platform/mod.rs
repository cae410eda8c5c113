//! The platform: configuration, database, blobs, caches, the event bus and the job pool.
//! Nothing here knows about mail, accounts or video.

pub mod blobs;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod jobs;
pub mod metrics;
