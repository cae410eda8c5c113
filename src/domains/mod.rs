//! Domains: each owns its tables and exposes one service.

pub mod auth;
pub mod contacts;
pub mod mail;
pub mod prefs;
pub mod profile;
pub mod stream;
