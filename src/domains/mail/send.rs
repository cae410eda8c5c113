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
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::config::SendingConfig;
use super::deliver::{DeliverError, Envelope};
use super::entities::sending;
use super::outbound::{BounceError, QueueError};
use super::parse;
use super::store::{NewMessage, Part, Sending, Stored, Target, Work};
use super::{Flags, MailError, MailService, Role};
use crate::platform::db::now;
use crate::platform::quota::{Quota, QuotaConfig, QuotaError};

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
    /// More recipients than one message may have.
    #[error("too many recipients: at most {0} per message")]
    TooManyRecipients(u32),
    /// The user sent as many messages as allowed in an hour; try again after this many
    /// seconds.
    #[error("sending limit reached: at most {limit} messages per hour; try again in {retry_after} s")]
    HourlyLimit {
        /// Messages per hour.
        limit: u32,
        /// Seconds until one more may be sent.
        retry_after: u64,
    },
    /// This message would take the user past their recipients of the last 24 hours.
    #[error("daily sending limit reached: at most {limit} recipients per day; try again in {retry_after} s")]
    DailyLimit {
        /// Recipients per day.
        limit: u32,
        /// Seconds until enough older sendings leave the window (at most a day).
        retry_after: u64,
    },
    /// The sender's storage is full (the Sent copy would not fit).
    #[error(transparent)]
    OverQuota(QuotaError),
    /// A local recipient's storage is full.
    #[error("mailbox full: {0}")]
    MailboxFull(String),
}

/// What users may send and store: `[sending]` and the storage quota.
#[derive(Clone)]
pub struct Limits {
    /// Messages and recipients per user.
    pub sending: SendingConfig,
    /// Storage per user.
    pub quota: Quota,
}

impl Default for Limits {
    /// The default sending limits and no storage limit.
    fn default() -> Self {
        Self { sending: SendingConfig::default(), quota: Quota::new(&QuotaConfig { storage_mb: 0 }) }
    }
}

/// Seconds in the window of the hourly limit.
const HOUR: i64 = 3600;
/// Seconds in the window of the daily limit.
const DAY: i64 = 86_400;

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
    /// Sets the sending limits and the storage quota (before the first message; the
    /// defaults hold until then).
    pub fn set_limits(&self, limits: Limits) {
        let _ = self.inner.limits.set(limits);
    }

    /// The sending limits and the storage quota.
    pub(crate) fn limits(&self) -> &Limits {
        self.inner.limits.get_or_init(Limits::default)
    }

    /// Refuses a sending of `recipients` recipients by `user_id` at time `at` that would
    /// break the hourly or daily limit, counting the sendings of the last day.
    async fn check_rate(&self, user_id: i64, recipients: usize, at: i64) -> Result<(), SendError> {
        let limits = &self.limits().sending;
        let rows: Vec<(i64, i64)> = sending::Entity::find()
            .select_only()
            .columns([sending::Column::SentAt, sending::Column::Recipients])
            .filter(sending::Column::UserId.eq(user_id))
            .filter(sending::Column::SentAt.gt(at - DAY))
            .order_by_asc(sending::Column::SentAt)
            .into_tuple()
            .all(self.db())
            .await
            .map_err(MailError::from)?;
        let last_hour: Vec<i64> = rows.iter().map(|r| r.0).filter(|t| *t > at - HOUR).collect();
        if last_hour.len() >= limits.messages_per_hour as usize {
            // One more may go once the oldest of the last hour is an hour old.
            let oldest = last_hour.len() - limits.messages_per_hour as usize;
            let retry_after = (last_hour[oldest] + HOUR - at).max(1) as u64;
            return Err(SendError::HourlyLimit { limit: limits.messages_per_hour, retry_after });
        }
        let limit = i64::from(limits.recipients_per_day);
        let mut total: i64 = rows.iter().map(|r| r.1).sum::<i64>() + recipients as i64;
        if total > limit {
            // Enough older sendings must leave the window for this one to fit.
            let mut retry_after = DAY;
            for (sent_at, n) in &rows {
                total -= n;
                if total <= limit {
                    retry_after = sent_at + DAY - at;
                    break;
                }
            }
            return Err(SendError::DailyLimit {
                limit: limits.recipients_per_day,
                retry_after: retry_after.max(1) as u64,
            });
        }
        Ok(())
    }

    /// Whether `user_id`'s storage is full, so new mail for them is deferred. A usage that
    /// cannot be read counts as not full: the store itself reports real failures.
    pub async fn is_full(&self, user_id: i64) -> bool {
        matches!(self.limits().quota.check(user_id, 0).await, Err(QuotaError::Exceeded { .. }))
    }

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
        let per_message = self.limits().sending.recipients_per_message;
        if recipients.len() > per_message as usize {
            return Err(SendError::TooManyRecipients(per_message));
        }
        // One message of a user at a time from the limit checks to the commit, so parallel
        // sendings cannot pass a limit together.
        let lock = self.inner.senders.get_with(sub.user_id, Default::default);
        let _sending = lock.lock().await;
        self.check_rate(sub.user_id, recipients.len(), now()).await?;
        let quota = &self.limits().quota;
        quota.check(sub.user_id, data.len() as u64).await.map_err(SendError::OverQuota)?;
        let (mut local_users, mut remote) = (Vec::new(), Vec::new());
        for r in &recipients {
            if !r.contains('@') || r.starts_with('@') || r.ends_with('@') {
                return Err(SendError::BadRecipient(r.clone()));
            }
            if self.is_local_address(r) {
                let user = self.local_user(r).await?.ok_or_else(|| SendError::UnknownLocalUser(r.clone()))?;
                if quota.check(user, data.len() as u64).await.is_err() {
                    return Err(SendError::MailboxFull(r.clone()));
                }
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
            Some(self.prepare_delivery(&envelope, data.clone()).await?)
        };
        let queue = if remote.is_empty() { None } else { Some(self.inner.outbound.get().ok_or(SendError::NoQueue)?) };
        let mut work =
            Work { sending: Some(Sending { user_id: sub.user_id, recipients: recipients.len() }), ..Work::default() };
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
        let mut committed = self.commit(work).await.map_err(|e| match e {
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
