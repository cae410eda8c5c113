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
        /// Its IMAP UID there (0 in events written before UIDs were carried).
        #[serde(default)]
        uid: i64,
        /// The mailbox's MODSEQ that the arrival gave it (0 in events written before).
        #[serde(default)]
        modseq: i64,
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
    /// Flags of messages in one mailbox changed (read, starred, important, answered).
    MailFlagsChanged {
        /// The owner.
        user_id: i64,
        /// The mailbox the messages are in.
        mailbox_id: i64,
        /// The MODSEQ the change gave them (RFC 7162).
        modseq: i64,
        /// Each changed message with its new flags.
        messages: Vec<FlaggedMessage>,
    },
    /// A label was put on or taken off messages of one mailbox.
    MailLabelsChanged {
        /// The owner.
        user_id: i64,
        /// The mailbox the messages are in.
        mailbox_id: i64,
        /// The MODSEQ the change gave them.
        modseq: i64,
        /// The label.
        label_id: i64,
        /// True when added, false when removed.
        added: bool,
        /// The messages whose labels changed.
        messages: Vec<MessageUid>,
    },
    /// Messages moved from one mailbox to another (new UIDs there).
    MailMoved {
        /// The owner.
        user_id: i64,
        /// The mailbox they left; their old UIDs are in its expunge log.
        from_mailbox_id: i64,
        /// The source mailbox's MODSEQ of the removal.
        from_modseq: i64,
        /// The mailbox they are in now.
        to_mailbox_id: i64,
        /// Their MODSEQ in the target mailbox.
        modseq: i64,
        /// Each moved message with its old and new UID.
        messages: Vec<MovedMessage>,
    },
    /// Messages were deleted for good from a mailbox (delete, empty Trash).
    MailExpunged {
        /// The owner.
        user_id: i64,
        /// The mailbox.
        mailbox_id: i64,
        /// The MODSEQ of the removal, as in the expunge log.
        modseq: i64,
        /// The removed messages.
        messages: Vec<MessageUid>,
    },
    /// A user created a mailbox of their own.
    MailboxCreated {
        /// The owner.
        user_id: i64,
        /// The new mailbox.
        mailbox_id: i64,
        /// Its name.
        name: String,
    },
    /// A mailbox was renamed.
    MailboxRenamed {
        /// The owner.
        user_id: i64,
        /// The mailbox.
        mailbox_id: i64,
        /// The name it had.
        old_name: String,
        /// The name it has.
        name: String,
    },
    /// A mailbox was deleted (its messages moved to Trash first, see `MailMoved`).
    MailboxDeleted {
        /// The owner.
        user_id: i64,
        /// The mailbox that is gone.
        mailbox_id: i64,
        /// The name it had.
        name: String,
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

/// A message named by a change event: its row id and its UID in the event's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageUid {
    /// The message row (stable across moves).
    pub message_id: i64,
    /// Its IMAP UID in the mailbox.
    pub uid: i64,
}

/// A message whose flags changed, with the flags it has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedMessage {
    /// The message row.
    pub message_id: i64,
    /// Its IMAP UID in the mailbox.
    pub uid: i64,
    /// Its flag bits now (see `mail::Flags`).
    pub flags: i64,
}

/// A moved message with its UIDs before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedMessage {
    /// The message row.
    pub message_id: i64,
    /// Its UID in the mailbox it left.
    pub from_uid: i64,
    /// Its UID in the mailbox it is in now.
    pub to_uid: i64,
}
