//! Doors: protocol servers that parse, authenticate and call one domain service each.

pub mod http;
pub mod rtmp;
pub mod smtp;
