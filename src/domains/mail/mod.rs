//! The mail domain: the message store (mailboxes, messages, threads), the authentication
//! checks of received mail, the DNS resolver they share, and the outbound queue that
//! delivers mail to other servers.

pub mod authn;
pub mod dns;
pub mod outbound;
