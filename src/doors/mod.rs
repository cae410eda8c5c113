//! Doors: protocol servers that parse, authenticate and call one domain service each.
//! The TCP doors (SMTP, IMAP, RTMP) share one accept loop ([`accept`]).

pub mod accept;
pub mod http;
pub mod imap;
pub mod rtmp;
pub mod smtp;
