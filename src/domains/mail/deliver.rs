//! The delivery pipeline every message for a local mailbox goes through (ARCHITECTURE.md,
//! "Receiving mail"): trace headers, parse, virus slot, then per recipient the spam slot
//! and their filters, then one durable store of all copies. The SMTP door calls it for
//! mail from outside; sending calls it for local recipients.
//!
//! Forwards asked for by filters carry `Delivered-To: <the forwarding address>` on top; a
//! message whose `Delivered-To` fields already name the forwarding address or the target
//! is not forwarded again, which ends forward loops between accounts on different servers
//! (on one server, internal copies are never forwarded at all).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::authn::{AuthVerdict, DmarcPolicy, Outcome, Sender};
use super::config::DmarcReject;
use super::filters::{self, Actions};
use super::parse::{self, Meta};
use super::scan::{ScanError, ScanInput, VirusVerdict};
use super::store::{NewMessage, Part, Stored, Target};
use super::{Flags, MailError, MailService, Role, SpamVerdict};
use crate::platform::db::now;

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
    /// The message fails DMARC and its author domain asks for rejection (`p=reject`).
    #[error("message refused: it fails the DMARC policy of {0}")]
    DmarcRejected(String),
}

/// What the authentication results make of a message from another server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judged {
    /// Deliver as the filters say.
    Deliver,
    /// Spam for every recipient, for this reason.
    Spam(&'static str),
    /// Refuse it (DMARC `p=reject`, unless configured to Spam).
    Refuse(String),
}

/// Applies the author domain's DMARC policy (RFC 7489 §6.7) and keeps mail that claims to
/// be from `own_domain` (or a subdomain) but is not authenticated as such out of the
/// Inbox: such mail never legitimately arrives from outside unsigned by us.
fn judge(verdict: &AuthVerdict, own_domain: &str, on_reject: DmarcReject) -> Judged {
    let from = verdict.from_domain.to_ascii_lowercase();
    let ours = |d: &str| d == own_domain || d.ends_with(&format!(".{own_domain}"));
    if !from.is_empty() && ours(&from) {
        let signed_by_us = verdict.dkim == Outcome::Pass && verdict.dkim_domains.iter().any(|d| ours(d));
        if verdict.dmarc != Outcome::Pass && !signed_by_us {
            return Judged::Spam("claims this server's domain without authentication");
        }
    }
    if verdict.dmarc != Outcome::Fail {
        return Judged::Deliver;
    }
    match (verdict.dmarc_policy, on_reject) {
        (DmarcPolicy::Reject, DmarcReject::Refuse) => Judged::Refuse(from),
        (DmarcPolicy::Reject, DmarcReject::Spam) => Judged::Spam("fails DMARC (p=reject)"),
        (DmarcPolicy::Quarantine, _) => Judged::Spam("fails DMARC (p=quarantine)"),
        (DmarcPolicy::None | DmarcPolicy::Unspecified, _) => Judged::Deliver,
    }
}

/// One copy a filter asks to forward.
#[derive(Debug, Clone)]
struct Forward {
    /// The account whose filter asked.
    user_id: i64,
    /// Its address: the envelope sender and the Delivered-To of the copy.
    from: String,
    /// Where the copy goes.
    to: String,
}

/// A delivery that went through the pipeline and waits to be committed.
#[derive(Debug, Clone)]
pub(crate) struct ReadyDelivery {
    /// The message with its trace header and a placement per recipient.
    pub part: Part,
    /// What the recipients' filters ask to forward once it is stored.
    forwards: Vec<Forward>,
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
        let ready = self.prepare_delivery(envelope, Bytes::from(data)).await?;
        let part = ready.part.clone();
        let stored = self.store(part.raw, part.meta, part.targets).await?;
        Ok(self.delivered(ready, stored).await)
    }

    /// Runs the pipeline up to the store: the message with its trace header and one
    /// placement per recipient, ready to be committed (alone by [`MailService::deliver`],
    /// or with the rest of a sending).
    pub(crate) async fn prepare_delivery(
        &self,
        envelope: &Envelope,
        data: Bytes,
    ) -> Result<ReadyDelivery, DeliverError> {
        let (meta, verdict) = self.read(envelope, &data).await;
        let judged = match &verdict {
            Some(v) => judge(v, &self.inner.domain, self.inbound_policy().dmarc_reject),
            None => Judged::Deliver,
        };
        match &judged {
            Judged::Refuse(domain) => {
                tracing::info!(from_domain = %domain, "refused: fails DMARC with p=reject");
                metrics::counter!("postcast_mail_refused_total", "reason" => "dmarc").increment(1);
                return Err(DeliverError::DmarcRejected(domain.clone()));
            }
            Judged::Spam(reason) => tracing::info!(reason, "filed as spam by authentication policy"),
            Judged::Deliver => {}
        }
        let mut envelope = envelope.clone();
        if let Some(v) = &verdict {
            envelope.trace.insert(0, v.header.trim_end().to_owned());
        }
        // Mail from outside may not carry results in our name: only ours, added above, stay.
        let data = match (&self.inner.authn, envelope.check_auth) {
            (Some(authn), true) => {
                super::authn::strip_forged_results(&data, authn.authserv_id()).map_or(data, Bytes::from)
            }
            _ => data,
        };
        let envelope = &envelope;
        let raw = Bytes::from(self.with_trace(envelope, &data));
        // From here on the message is `raw`, under its trace fields: the bytes as received
        // go now, so a large message is not held twice through scanning and storing.
        drop(data);
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
        // Read only when a filter forwards: the trace fields on top of `raw` are never
        // Delivered-To, so its Delivered-To fields are the received message's.
        let mut seen = None;
        for user_id in recipients {
            let input = ScanInput { raw: &raw, meta: &meta, user_id, auth: verdict.as_ref() };
            let mut spam = scanners.spam.judge(&input).await?;
            spam.is_spam |= matches!(judged, Judged::Spam(_));
            let actions = self.filter_actions(user_id, &meta).await;
            if !envelope.forwarded && !spam.is_spam && !actions.forward.is_empty() {
                let seen = seen.get_or_insert_with(|| delivered_to(&raw));
                forwards.extend(self.forwards_of(user_id, &actions.forward, seen).await);
            }
            targets.push(placement(user_id, spam.is_spam, spam.score, &actions));
        }
        Ok(ReadyDelivery { part: Part { raw, meta, targets }, forwards })
    }

    /// Finishes a committed delivery: counts it and sends the forwards its recipients'
    /// filters asked for.
    pub(crate) async fn delivered(&self, ready: ReadyDelivery, stored: Vec<Stored>) -> Delivered {
        metrics::counter!("postcast_mail_delivered_total").increment(stored.len() as u64);
        for forward in &ready.forwards {
            self.forward(forward, &ready.part.raw).await;
        }
        let forwards = ready.forwards.into_iter().map(|f| (f.user_id, f.to)).collect();
        Delivered { stored, forwards }
    }

    /// The forwards of `user_id` to `targets` that would not loop: none when the message
    /// has been delivered to the user's address before (`seen`, its Delivered-To
    /// addresses), none to a target it has been delivered to.
    async fn forwards_of(&self, user_id: i64, targets: &[String], seen: &[String]) -> Vec<Forward> {
        let from = match self.inner.auth.me(user_id).await {
            Ok(user) => user.address.to_ascii_lowercase(),
            Err(e) => {
                tracing::warn!(user_id, error = %e, "forwarding skipped: account unreadable");
                return Vec::new();
            }
        };
        if seen.contains(&from) {
            tracing::info!(user_id, %from, "not forwarding: the message was delivered to this address before");
            return Vec::new();
        }
        let mut out = Vec::with_capacity(targets.len());
        for to in targets {
            if seen.contains(&to.to_ascii_lowercase()) {
                tracing::info!(user_id, %to, "not forwarding: the message was delivered there before");
            } else {
                out.push(Forward { user_id, from: from.clone(), to: to.clone() });
            }
        }
        out
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
        let large = data.len() > parse::PARSE_INLINE_BYTES;
        let parsed = if large { None } else { parse::message(data) };
        let meta = match &parsed {
            Some(parsed) => parse::meta_of(parsed),
            None if large => parse::meta_of_bytes(data).await.unwrap_or_default(),
            None => Meta::default(),
        };
        let verdict = match (checks, &parsed) {
            (Some((authn, sender)), Some(parsed)) => Some(authn.check_parsed(parsed, data, sender).await),
            (Some((authn, s)), None) => Some(authn.check(data, s.peer, s.helo, s.mail_from).await),
            (None, _) => None,
        };
        (meta, verdict)
    }

    /// Sends a copy of a stored message on, as a filter asked, with `Delivered-To: FROM`
    /// on top: to another local user directly (without forwarding it further), elsewhere
    /// through the outbound queue with the user's own address as envelope sender, so
    /// bounces come back to them. A failure is logged: the message itself is already stored.
    async fn forward(&self, forward: &Forward, raw: &[u8]) {
        let Forward { user_id, from, to } = forward;
        let mut copy = Vec::with_capacity(raw.len() + from.len() + 16);
        copy.extend_from_slice(format!("Delivered-To: {}\r\n", header_safe(from)).as_bytes());
        copy.extend_from_slice(raw);
        let result: Result<(), String> = async {
            if self.is_local_address(to) {
                let target = self.local_user(to).await.map_err(|e| e.to_string())?.ok_or("no such local user")?;
                let envelope = Envelope::internal(vec![target]);
                return Box::pin(self.deliver(&envelope, copy)).await.map(|_| ()).map_err(|e| e.to_string());
            }
            let queue = self.inner.outbound.get().ok_or("no outbound queue")?;
            queue
                .enqueue(Some(*user_id), from, std::slice::from_ref(to), &copy)
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

/// The addresses of the `Delivered-To` fields (RFC 9228) in the header section of `raw`
/// (up to the first empty line), folded lines joined, angle brackets dropped, lowercased.
fn delivered_to(raw: &[u8]) -> Vec<String> {
    parse::header_fields(raw)
        .filter(|f| f.is("Delivered-To"))
        .map(|f| f.value().trim_start_matches('<').trim_end_matches('>').trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Text safe inside a header: printable ASCII without CR/LF, at most 255 characters.
fn header_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(255).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{Fixture, fixture};
    use super::super::view::Scope;
    use super::*;
    use crate::domains::prefs::Expect;

    #[test]
    fn authentication_results_decide_between_inbox_spam_and_refusal() {
        let verdict = |from: &str, dmarc: Outcome, policy: DmarcPolicy, dkim: &[&str]| AuthVerdict {
            header: String::new(),
            spf: Outcome::Fail,
            dkim: if dkim.is_empty() { Outcome::None } else { Outcome::Pass },
            dkim_domains: dkim.iter().map(|d| d.to_string()).collect(),
            dmarc,
            dmarc_policy: policy,
            from_domain: from.into(),
        };
        let refuse = DmarcReject::Refuse;
        let j = |v: AuthVerdict, on_reject| judge(&v, "postcast.test", on_reject);
        assert_eq!(
            j(verdict("x.test", Outcome::Fail, DmarcPolicy::Reject, &[]), refuse),
            Judged::Refuse("x.test".into())
        );
        assert!(matches!(
            j(verdict("x.test", Outcome::Fail, DmarcPolicy::Reject, &[]), DmarcReject::Spam),
            Judged::Spam(_)
        ));
        assert!(matches!(j(verdict("x.test", Outcome::Fail, DmarcPolicy::Quarantine, &[]), refuse), Judged::Spam(_)));
        for (dmarc, policy) in [
            (Outcome::Fail, DmarcPolicy::None),
            (Outcome::Fail, DmarcPolicy::Unspecified),
            (Outcome::Pass, DmarcPolicy::Reject),
            (Outcome::TempError, DmarcPolicy::Reject),
            (Outcome::None, DmarcPolicy::Unspecified),
        ] {
            assert_eq!(j(verdict("x.test", dmarc, policy, &[]), refuse), Judged::Deliver, "{dmarc:?} {policy:?}");
        }
        // Our own domain (or a subdomain) from outside: Spam unless we signed it or DMARC passes.
        for from in ["postcast.test", "Mail.Postcast.Test"] {
            let unsigned = verdict(from, Outcome::None, DmarcPolicy::Unspecified, &[]);
            assert!(matches!(j(unsigned, refuse), Judged::Spam(_)), "{from}");
            let foreign_signature = verdict(from, Outcome::None, DmarcPolicy::Unspecified, &["evil.test"]);
            assert!(matches!(j(foreign_signature, refuse), Judged::Spam(_)), "{from}");
        }
        let signed = verdict("postcast.test", Outcome::None, DmarcPolicy::Unspecified, &["postcast.test"]);
        assert_eq!(j(signed, refuse), Judged::Deliver);
        let lookalike = verdict("notpostcast.test", Outcome::None, DmarcPolicy::Unspecified, &[]);
        assert_eq!(j(lookalike, refuse), Judged::Deliver);
    }

    #[test]
    fn delivered_to_reads_the_header_section_only() {
        let raw = b"Delivered-To: Ada@Here.test\r\ndelivered-to:<bob@there.test>\r\nX-Delivered-To: no@x.test\r\n\
DELIVERED-TO:\r\n  carol@folded.test\r\nSubject: s\r\n\r\nDelivered-To: body@x.test\r\n";
        assert_eq!(delivered_to(raw), ["ada@here.test", "bob@there.test", "carol@folded.test"]);
        assert_eq!(delivered_to(b"Delivered-To: a@b.test\nSubject: s\n\nDelivered-To: c@d.test\n"), ["a@b.test"]);
        assert!(delivered_to(b"Subject: none\r\n\r\n").is_empty());
    }

    /// Ada's filter forwards everything from carol to bob, on the same server.
    async fn forwarding_fixture() -> Fixture {
        let f = fixture().await;
        let doc = json!({"mail": {"filters": [{"match": {"from": "carol@"}, "forward": "bob@localhost"}]}});
        f.prefs.replace(f.ada, doc, &Expect::Any).await.unwrap();
        f
    }

    /// Delivers a message from carol with `extra` header lines to ada; returns the forwards.
    async fn deliver_to_ada(f: &Fixture, extra: &str) -> Vec<(i64, String)> {
        let raw = format!("{extra}From: carol@c.test\r\nTo: ada@localhost\r\nSubject: Hops\r\n\r\nhi\r\n");
        let envelope = Envelope { forwarded: false, ..Envelope::internal(vec![f.ada]) };
        f.mail.deliver(&envelope, raw.into_bytes()).await.unwrap().forwards
    }

    async fn raw_in_inbox(f: &Fixture, user_id: i64) -> Vec<String> {
        let inbox = f.mail.role_mailbox(user_id, super::super::Role::Inbox).await.unwrap();
        let page = f.mail.list(user_id, Scope::Mailbox(inbox), None, 50).await.unwrap();
        let mut out = Vec::new();
        for m in page.messages {
            out.push(String::from_utf8_lossy(&f.mail.raw(user_id, m.id).await.unwrap()).into_owned());
        }
        out
    }

    #[tokio::test]
    async fn a_forwarded_copy_carries_delivered_to_the_forwarding_address() {
        let f = forwarding_fixture().await;
        let forwards = deliver_to_ada(&f, "Delivered-To: someone@elsewhere.test\r\n").await;
        assert_eq!(forwards, [(f.ada, "bob@localhost".to_owned())]);
        let bob = raw_in_inbox(&f, f.bob).await;
        assert_eq!(bob.len(), 1);
        assert!(bob[0].contains("\r\nDelivered-To: ada@localhost\r\nReceived: "), "{}", bob[0]);
        assert_eq!(delivered_to(bob[0].as_bytes()), ["ada@localhost", "someone@elsewhere.test"]);
    }

    #[tokio::test]
    async fn a_message_delivered_to_the_target_or_the_forwarder_before_is_not_forwarded() {
        let f = forwarding_fixture().await;
        // Bob's server forwarded it to ada: sending it back to bob would loop.
        assert!(deliver_to_ada(&f, "Delivered-To: Bob@Localhost\r\n").await.is_empty());
        // It passed through ada's forwarding once already.
        assert!(deliver_to_ada(&f, "Delivered-To: <ada@localhost>\r\n").await.is_empty());
        assert!(raw_in_inbox(&f, f.bob).await.is_empty(), "bob got no copy");
        assert_eq!(raw_in_inbox(&f, f.ada).await.len(), 2, "ada keeps both");
    }
}
