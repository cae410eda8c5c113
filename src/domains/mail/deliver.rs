//! The delivery pipeline every message for a local mailbox goes through (ARCHITECTURE.md,
//! "Receiving mail"): trace headers, parse, virus slot, then per recipient the spam slot
//! and their filters, then one durable store of all copies. The SMTP door calls it for
//! mail from outside; sending calls it for local recipients.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::authn::{AuthVerdict, Sender};
use super::filters::{self, Actions};
use super::parse::{self, Meta};
use super::scan::{ScanError, ScanInput, VirusVerdict};
use super::store::{NewMessage, Stored, Target};
use super::{Flags, MailError, MailService, Role, SpamVerdict};
use crate::platform::db::now;

/// Messages larger than this are parsed on a blocking thread.
const PARSE_INLINE_BYTES: usize = 256 * 1024;

/// How a message reached us, for its trace header.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The reverse-path (empty for bounces).
    pub mail_from: String,
    /// The local accounts to deliver to (an account named twice gets one copy).
    pub recipients: Vec<i64>,
    /// The client's address, when it came over the network.
    pub peer: Option<IpAddr>,
    /// The name the client gave in EHLO.
    pub helo: String,
    /// `ESMTP`, `ESMTPS`, `ESMTPSA` (RFC 3848) or `LOCAL`.
    pub protocol: &'static str,
    /// Header lines to prepend, each without CRLF.
    pub trace: Vec<String>,
    /// Check SPF, DKIM and DMARC (mail from other servers) and record the results as an
    /// Authentication-Results header.
    pub check_auth: bool,
    /// The message is itself a forward or a bounce: filters do not forward it again.
    pub forwarded: bool,
}

impl Envelope {
    /// A message handed over inside postcast (a forward or a bounce) to `recipients`: no
    /// network peer, no authentication checks, and filters do not forward it again.
    pub fn internal(recipients: Vec<i64>) -> Self {
        Self {
            mail_from: String::new(),
            recipients,
            peer: None,
            helo: String::new(),
            protocol: "LOCAL",
            trace: Vec::new(),
            check_auth: false,
            forwarded: true,
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The virus slot found malware (the name of what was found).
    #[error("message refused: malware found ({0})")]
    Infected(String),
    /// A scanner gave no verdict: the sender should try again later.
    #[error("message not scanned: {0}")]
    Scan(#[from] ScanError),
    /// Storage failed: the sender should try again later.
    #[error(transparent)]
    Store(#[from] MailError),
}

/// The outcome of a delivery.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// Every stored copy.
    pub stored: Vec<Stored>,
    /// Copies the recipients' filters ask to forward: (user, address).
    pub forwards: Vec<(i64, String)>,
}

impl MailService {
    /// The local account an address belongs to: `name@domain` or `name+tag@domain`,
    /// case-insensitively; `postmaster@` and `abuse@` are the administrator's (see
    /// `roles`). Addresses at other domains are not local.
    pub async fn local_user(&self, address: &str) -> Result<Option<i64>, MailError> {
        let Some(name) = self.account_name(address) else {
            return Ok(None);
        };
        let user = self.recipient_account(&name).await?;
        Ok(user.filter(|u| !u.disabled).map(|u| u.id))
    }

    /// Whether `address` is at our mail domain.
    pub fn is_local_address(&self, address: &str) -> bool {
        self.account_name(address).is_some()
    }

    /// The account name an address at our domain points to: `Name+tag@Domain` and
    /// `<name@domain>` give `name`; addresses elsewhere give None.
    pub(crate) fn account_name(&self, address: &str) -> Option<String> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase();
        if address == "postmaster" {
            return Some(address); // RFC 5321 §4.5.1: `<Postmaster>` without a domain is ours.
        }
        let (local, domain) = address.rsplit_once('@')?;
        (domain == self.inner.domain).then(|| local.split_once('+').map_or(local, |(name, _)| name).to_owned())
    }

    /// Runs the pipeline and stores one copy per recipient; returns once all are durable.
    pub async fn deliver(&self, envelope: &Envelope, data: Vec<u8>) -> Result<Delivered, DeliverError> {
        let data = Bytes::from(data);
        let (meta, verdict) = self.read(envelope, &data).await;
        let mut envelope = envelope.clone();
        if let Some(v) = &verdict {
            envelope.trace.insert(0, v.header.trim_end().to_owned());
        }
        let envelope = &envelope;
        let raw = Bytes::from(self.with_trace(envelope, &data));
        let meta = Arc::new(meta);
        let scanners = &self.inner.scanners;
        let mut recipients = envelope.recipients.clone();
        recipients.sort_unstable();
        recipients.dedup();
        if let Some(&first) = recipients.first() {
            let input = ScanInput { raw: &raw, meta: &meta, user_id: first, auth: verdict.as_ref() };
            if let VirusVerdict::Infected(name) = scanners.virus.scan(&input).await? {
                return Err(DeliverError::Infected(name));
            }
        }
        let mut targets = Vec::with_capacity(recipients.len());
        let mut forwards = Vec::new();
        for user_id in recipients {
            let input = ScanInput { raw: &raw, meta: &meta, user_id, auth: verdict.as_ref() };
            let spam = scanners.spam.judge(&input).await?;
            let actions = self.filter_actions(user_id, &meta).await;
            if !envelope.forwarded && !spam.is_spam {
                forwards.extend(actions.forward.iter().map(|a| (user_id, a.clone())));
            }
            targets.push(placement(user_id, spam.is_spam, spam.score, &actions));
        }
        let stored = self.store(raw.clone(), meta, targets).await?;
        metrics::counter!("postcast_mail_delivered_total").increment(stored.len() as u64);
        for (user_id, to) in &forwards {
            self.forward(*user_id, to, &raw).await;
        }
        Ok(Delivered { stored, forwards })
    }

    /// Reads a message once: its metadata for the store and, for mail from other servers
    /// (`check_auth`), the SPF/DKIM/DMARC verdict over the same parse. A large message is
    /// parsed on a blocking thread; its checks then read the headers themselves.
    async fn read(&self, envelope: &Envelope, data: &Bytes) -> (Meta, Option<AuthVerdict>) {
        let checks = match (&self.inner.authn, envelope.peer) {
            (Some(authn), Some(peer)) if envelope.check_auth => {
                Some((authn, Sender { peer, helo: &envelope.helo, mail_from: &envelope.mail_from }))
            }
            _ => None,
        };
        let large = data.len() > PARSE_INLINE_BYTES;
        let parsed = if large { None } else { parse::message(data) };
        let meta = match &parsed {
            Some(parsed) => parse::meta_of(parsed),
            None if large => {
                let bytes = data.clone();
                tokio::task::spawn_blocking(move || parse::meta(&bytes)).await.unwrap_or_default()
            }
            None => Meta::default(),
        };
        let verdict = match (checks, &parsed) {
            (Some((authn, sender)), Some(parsed)) => Some(authn.check_parsed(parsed, data, sender).await),
            (Some((authn, s)), None) => Some(authn.check(data, s.peer, s.helo, s.mail_from).await),
            (None, _) => None,
        };
        (meta, verdict)
    }

    /// Sends a copy of a stored message on, as a filter asked: to another local user
    /// directly (without forwarding it further), elsewhere through the outbound queue
    /// with the user's own address as envelope sender, so bounces come back to them. A
    /// failure is logged: the message itself is already stored.
    async fn forward(&self, user_id: i64, to: &str, raw: &[u8]) {
        let result: Result<(), String> = async {
            if self.is_local_address(to) {
                let target = self.local_user(to).await.map_err(|e| e.to_string())?.ok_or("no such local user")?;
                let envelope = Envelope::internal(vec![target]);
                return Box::pin(self.deliver(&envelope, raw.to_vec())).await.map(|_| ()).map_err(|e| e.to_string());
            }
            let user = self.inner.auth.me(user_id).await.map_err(|e| e.to_string())?;
            let queue = self.inner.outbound.get().ok_or("no outbound queue")?;
            queue
                .enqueue(Some(user_id), &user.address, &[to.to_owned()], raw)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(user_id, %to, error = %e, "forwarding failed");
        }
    }

    /// The recipient's filters applied to `meta`; a preference read failure applies none.
    async fn filter_actions(&self, user_id: i64, meta: &Meta) -> Actions {
        match self.inner.prefs.get(user_id).await {
            Ok(doc) => filters::apply(&filters::from_prefs(&doc.doc), meta),
            Err(e) => {
                tracing::warn!(user_id, error = %e, "preferences unreadable; delivering without filters");
                Actions::default()
            }
        }
    }

    /// The message with its Received line (RFC 5321 §4.4) and other trace lines on top.
    fn with_trace(&self, envelope: &Envelope, data: &[u8]) -> Vec<u8> {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_else(|_| now().to_string());
        let from = match envelope.peer {
            Some(ip) => format!("from {} ([{ip}])\r\n\t", header_safe(&envelope.helo)),
            None => String::new(),
        };
        let mut out = Vec::with_capacity(data.len() + 512);
        for line in &envelope.trace {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!("Received: {from}by {} with {}; {date}\r\n", self.inner.domain, envelope.protocol).as_bytes(),
        );
        out.extend_from_slice(data);
        out
    }
}

/// Where a recipient's copy goes and how it is marked.
fn placement(user_id: i64, is_spam: bool, score: Option<f64>, actions: &Actions) -> NewMessage {
    let role = if is_spam {
        Role::Spam
    } else if actions.delete {
        Role::Trash
    } else if actions.skip_inbox {
        Role::Archive
    } else {
        Role::Inbox
    };
    let mut new = NewMessage::new(user_id, Target::Role(role));
    new.flags = Flags::default().with(Flags::SEEN, actions.mark_read).with(Flags::FLAGGED, actions.star);
    new.labels = actions.labels.clone();
    new.spam = if score.is_some() || is_spam {
        if is_spam { SpamVerdict::Spam } else { SpamVerdict::Ham }
    } else {
        SpamVerdict::Unknown
    };
    new.spam_score = score;
    new
}

/// Text safe inside a header: printable ASCII without CR/LF, at most 255 characters.
fn header_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(255).collect()
}
