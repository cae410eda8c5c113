//! The application's events: what one domain tells the others through the bus
//! (`platform::bus`, which is generic and names none of them). Mail events that must not
//! be lost go through the durable outbox in the same transaction as their data;
//! streaming events are in-memory only ([`Bus::emit`]).

use serde::{Deserialize, Serialize};

/// The bus carrying [`Event`]s.
pub type Bus = crate::platform::bus::Bus<Event>;

/// A subscriber's handler of [`Event`]s.
pub type Handler = crate::platform::bus::Handler<Event>;

/// Everything that happens and that another module may care about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A new account exists.
    UserRegistered {
        /// The account.
        user_id: i64,
        /// Its login name.
        username: String,
    },
    /// An account was disabled: its sessions are gone.
    UserDisabled {
        /// The account.
        user_id: i64,
    },
    /// A user's preference document changed.
    PrefsChanged {
        /// The owner.
        user_id: i64,
    },
    /// A message was stored in a user's mailbox (received, sent copy, imported or drafted).
    MailStored {
        /// The owner.
        user_id: i64,
        /// The stored message's row id.
        message_id: i64,
        /// The mailbox it landed in.
        mailbox_id: i64,
    },
    /// A user sent a message (web compose or SMTP submission): it is in Sent and on its way.
    MailSent {
        /// The sender.
        user_id: i64,
        /// The row id of the copy in Sent.
        message_id: i64,
        /// Every recipient address (To, Cc and Bcc, after group expansion), lower-cased.
        recipients: Vec<String>,
    },
    /// A stream went live (in-memory only: see [`Bus::emit`]).
    StreamStarted {
        /// The stream.
        stream_id: String,
        /// Its owner.
        user_id: i64,
    },
    /// A stream ended and is now a recording (in-memory only).
    StreamEnded {
        /// The stream.
        stream_id: String,
    },
}
