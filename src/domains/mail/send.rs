//! Sending (ARCHITECTURE.md, "Sending mail"): a message a user submits (SMTP submission
//! or web compose) is checked to come from their own address (the envelope sender, the
//! one From mailbox and the Sender mailbox if any), run through the delivery pipeline for
//! local recipients and DKIM-signed for remote ones; then the local copies, the queued
//! remote copy and the sender's Sent copy (with the `MailSent` event) are committed in one
//! transaction. A message anything refuses (malware, a scanner without a verdict, the
//! queue) leaves nothing behind, and one that fails to commit leaves nothing either, so
//! a client retrying after a temporary failure never sends it twice.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::deliver::{DeliverError, Envelope};
use super::outbound::{BounceError, QueueError};
use super::parse;
use super::store::{NewMessage, Part, Stored, Target, Work};
use super::{Flags, MailError, MailService, Role};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The envelope sender, the From mailbox or the Sender mailbox is not one of the
    /// user's addresses.
    #[error("{0} is not one of your addresses")]
    NotYourAddress(String),
    /// The message does not have exactly one From field with exactly one mailbox, or has
    /// a Sender field that is not one mailbox.
    #[error(transparent)]
    BadFrom(#[from] parse::OriginatorError),
    /// The message has no recipients.
    #[error("no recipients")]
    NoRecipients,
    /// A recipient address is not valid.
    #[error("invalid recipient {0}")]
    BadRecipient(String),
    /// A local recipient does not exist.
    #[error("no such local user: {0}")]
    UnknownLocalUser(String),
    /// No outbound queue is wired for the remote recipients.
    #[error("remote delivery failed: no outbound queue")]
    NoQueue,
    /// The outbound queue refused the message for the remote recipients.
    #[error("remote delivery failed: {0}")]
    Queue(#[from] QueueError),
    /// The message could not be built from the draft.
    #[error("the message could not be built: {0}")]
    Build(#[source] std::io::Error),
    /// Local delivery or storage failed.
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] MailError),
}

/// What became of a sent message.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The copy in the sender's Sent mailbox.
    pub sent_copy: Stored,
    /// Copies delivered to local recipients.
    pub local: Vec<Stored>,
    /// The outbound queue entry for the remote recipients, if any.
    pub queued: Option<i64>,
}

/// Who submits a message and how.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The sending account.
    pub user_id: i64,
    /// Its login name.
    pub username: String,
    /// The envelope sender (MAIL FROM).
    pub envelope_from: String,
    /// Every recipient (To, Cc, Bcc), as addresses.
    pub recipients: Vec<String>,
    /// The client's address, for the trace header.
    pub peer: Option<IpAddr>,
    /// The name the client gave in EHLO (empty for web compose).
    pub helo: String,
    /// `ESMTPSA` for SMTP submission, `HTTP` for web compose.
    pub protocol: &'static str,
}

impl MailService {
    /// Installs the outbound queue used for remote recipients and forwards.
    pub fn set_outbound(&self, queue: super::outbound::OutboundQueue) {
        let _ = self.inner.outbound.set(queue);
    }

    /// Whether `address` is one of `username`'s: `username@domain` or `username+tag@domain`.
    pub fn is_own_address(&self, username: &str, address: &str) -> bool {
        // The login name may be given as the full address (AUTH ada@example.org).
        let username = username.trim().to_ascii_lowercase();
        let username = self.account_name(&username).unwrap_or(username);
        self.account_name(address).is_some_and(|name| name == username)
    }

    /// Sends `data` for `sub.user_id`; see the module doc.
    pub async fn submit(&self, sub: &Submission, data: Vec<u8>) -> Result<Sent, SendError> {
        if !self.is_own_address(&sub.username, &sub.envelope_from) {
            return Err(SendError::NotYourAddress(sub.envelope_from.clone()));
        }
        // The message's author must be the user too: one From mailbox and, if present, one
        // Sender mailbox, both theirs (RFC 5322 §3.6.2), before anything is stored or signed.
        // Parsing is CPU work: a blocking thread does it, with the bytes shared, not copied.
        let data = Bytes::from(data);
        let shared = data.clone();
        let parsed = tokio::task::spawn_blocking(move || match parse::message(&shared) {
            Some(msg) => (parse::meta_of(&msg), parse::originator(&msg)),
            None => (parse::Meta::default(), Err(parse::OriginatorError::FromFields(0))),
        });
        let (meta, originator) = parsed.await.map_err(|_| MailError::Interrupted)?;
        let originator = originator?;
        for address in std::iter::once(&originator.from).chain(&originator.sender) {
            if !self.is_own_address(&sub.username, address) {
                return Err(SendError::NotYourAddress(address.clone()));
            }
        }
        let mut recipients: Vec<String> = sub.recipients.iter().map(|r| r.trim().to_ascii_lowercase()).collect();
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(SendError::NoRecipients);
        }
        let (mut local_users, mut remote) = (Vec::new(), Vec::new());
        for r in &recipients {
            if !r.contains('@') || r.starts_with('@') || r.ends_with('@') {
                return Err(SendError::BadRecipient(r.clone()));
            }
            if self.is_local_address(r) {
                let user = self.local_user(r).await?.ok_or_else(|| SendError::UnknownLocalUser(r.clone()))?;
                local_users.push(user);
            } else {
                remote.push(r.clone());
            }
        }
        // Everything is checked and prepared before anything is stored: a message local
        // delivery refuses (malware, or a scanner that gave no verdict) or the queue refuses
        // leaves nothing behind, and what is accepted (Sent copy, local copies, queued
        // remote copy) is committed in one transaction, so a client that retries after a
        // temporary failure never sends it twice.
        let local = if local_users.is_empty() {
            None
        } else {
            let envelope = Envelope {
                mail_from: sub.envelope_from.clone(),
                recipients: local_users,
                peer: sub.peer,
                helo: sub.helo.clone(),
                protocol: sub.protocol,
                trace: Vec::new(),
                check_auth: false,
                forwarded: false,
            };
            Some(self.prepare_delivery(&envelope, data.to_vec()).await?)
        };
        let queue = if remote.is_empty() { None } else { Some(self.inner.outbound.get().ok_or(SendError::NoQueue)?) };
        let mut work = Work::default();
        if let Some(queue) = queue {
            work.outgoing.push(queue.prepare(Some(sub.user_id), &sub.envelope_from, &remote, &data).await?);
        }
        let mut copy = NewMessage::new(sub.user_id, Target::Role(Role::Sent));
        copy.flags = Flags(Flags::SEEN);
        copy.sent_to = Some(recipients);
        work.parts.push(Part { raw: data, meta: Arc::new(meta), targets: vec![copy] });
        if let Some(ready) = &local {
            work.parts.push(ready.part.clone());
        }
        let mut committed = self.inner.store.commit_work(work).await.map_err(|e| match e {
            MailError::Queue(e) => SendError::Queue(*e),
            e => SendError::Store(e),
        })?;
        if let Some(queue) = queue {
            queue.wake();
        }
        let mut stored = committed.stored.drain(..);
        let sent_copy = stored.next().and_then(|mut s| s.pop()).ok_or(MailError::NotFound)?;
        let local = match local {
            Some(ready) => self.delivered(ready, stored.next().unwrap_or_default()).await.stored,
            None => Vec::new(),
        };
        Ok(Sent { sent_copy, local, queued: committed.queued.first().copied() })
    }
}

impl super::outbound::BounceSink for MailService {
    /// A delivery status notification for `to`: delivered locally when `to` is ours,
    /// queued with the null sender otherwise (never bounced again).
    fn deliver_bounce(&self, to: &str, raw: Vec<u8>) -> futures::future::BoxFuture<'_, Result<(), BounceError>> {
        let to = to.to_owned();
        Box::pin(async move {
            if self.is_local_address(&to) {
                let Some(user) = self.local_user(&to).await? else {
                    tracing::warn!(%to, "bounce for an unknown local user dropped");
                    return Ok(());
                };
                self.deliver(&Envelope::internal(vec![user]), raw).await?;
            } else {
                let queue = self.inner.outbound.get().ok_or(BounceError::NoQueue)?;
                queue.enqueue(None, "", &[to], &raw).await.map_err(|e| BounceError::Queue(Box::new(e)))?;
            }
            Ok(())
        })
    }
}
