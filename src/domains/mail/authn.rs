//! Authentication of received mail: SPF for the envelope sender (RFC 7208), every DKIM
//! signature (RFC 6376) and the DMARC policy of the author's domain (RFC 7489), checked
//! with mail-auth over the shared [`Dns`] resolver and its caches, on the parse the delivery
//! pipeline already made (or on the raw bytes). The result is the
//! `Authentication-Results:` header line to prepend (RFC 8601) and the outcomes as plain
//! values for the spam filter. It decides nothing about the message (that is the spam
//! filter's and the store's job) and never fails: input mail-auth cannot parse gets
//! `none`/`permerror` results, and a panic inside the checks is caught.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, SpfResult, dmarc::verify::DmarcParameters,
};
use mail_parser::Message;

use super::dns::Dns;
use super::parse;

/// The outcome of one check, in the words of RFC 8601 §2.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed.
    Fail,
    /// SPF only: the domain says the sender is probably not allowed.
    SoftFail,
    /// The domain makes no assertion (SPF `?all`, a DKIM signature that could not be checked).
    Neutral,
    /// Nothing to check (no SPF record, no signature, no DMARC record).
    None,
    /// A temporary error, usually DNS; the check may pass later.
    TempError,
    /// A permanent error: broken records or an unparseable message.
    PermError,
}

impl Outcome {
    /// The RFC 8601 keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

/// What the author's domain asks receivers to do with mail failing DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    /// No DMARC record (or no valid policy in it).
    Unspecified,
    /// `p=none`: monitor only.
    None,
    /// `p=quarantine`: treat as suspicious (the spam folder).
    Quarantine,
    /// `p=reject`: refuse.
    Reject,
}

impl DmarcPolicy {
    /// The `policy.dmarc` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::Unspecified => "unspecified",
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The authentication verdict of one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    /// The full `Authentication-Results: ...` header field, folded, ending in CRLF, ready
    /// to prepend to the message.
    pub header: String,
    /// SPF of the MAIL FROM identity (or of the HELO name for the null sender).
    pub spf: Outcome,
    /// DKIM: `pass` when at least one signature verified, `none` without signatures, else
    /// the best result among the signatures.
    pub dkim: Outcome,
    /// The domains whose signatures verified (`d=`), lowercase.
    pub dkim_domains: Vec<String>,
    /// DMARC of the author (RFC 5322 From) domain.
    pub dmarc: Outcome,
    /// The author domain's DMARC policy.
    pub dmarc_policy: DmarcPolicy,
    /// The RFC 5322 From domain DMARC looked at; empty when there was none.
    pub from_domain: String,
}

/// Checks SPF, DKIM and DMARC of received mail.
#[derive(Clone)]
pub struct InboundAuth {
    dns: Dns,
    hostname: String,
}

/// Who handed the message over: the client's address, its EHLO name and its MAIL FROM
/// (empty for the null sender).
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The client's address.
    pub peer: IpAddr,
    /// The name it gave in EHLO/HELO.
    pub helo: &'a str,
    /// The reverse-path.
    pub mail_from: &'a str,
}

impl InboundAuth {
    /// A checker over `dns` that names itself `hostname` (the `authserv-id`).
    pub fn new(dns: Dns, hostname: impl Into<String>) -> Self {
        Self { dns, hostname: hostname.into() }
    }

    /// The name this server signs its `Authentication-Results` with.
    pub fn authserv_id(&self) -> &str {
        &self.hostname
    }

    /// Checks a raw message from `peer`, which said `helo` and `MAIL FROM:<mail_from>`
    /// (empty for the null sender), reading its headers itself. Never fails and never panics.
    pub async fn check(&self, raw: &[u8], peer: IpAddr, helo: &str, mail_from: &str) -> AuthVerdict {
        let message = std::panic::catch_unwind(AssertUnwindSafe(|| AuthenticatedMessage::parse(raw))).ok().flatten();
        self.check_message(message.as_ref(), Sender { peer, helo, mail_from }).await
    }

    /// Checks a message the delivery pipeline already parsed with mail-parser (`parsed` is
    /// that parse of `raw`), so its headers are not read a second time. Never fails and never
    /// panics.
    pub async fn check_parsed(&self, parsed: &Message<'_>, raw: &[u8], sender: Sender<'_>) -> AuthVerdict {
        let message = std::panic::catch_unwind(AssertUnwindSafe(|| {
            (!parsed.root_part().headers.is_empty()).then(|| AuthenticatedMessage::from_parsed(parsed, raw, true))
        }))
        .ok()
        .flatten();
        self.check_message(message.as_ref(), sender).await
    }

    /// The checks over `message` (None: nothing readable), with a panic inside mail-auth
    /// recorded as permerror.
    async fn check_message(&self, message: Option<&AuthenticatedMessage<'_>>, sender: Sender<'_>) -> AuthVerdict {
        let checks = AssertUnwindSafe(run_checks(&self.dns, &self.hostname, message, sender));
        match checks.catch_unwind().await {
            Ok(verdict) => verdict,
            Err(_) => {
                tracing::warn!(peer = %sender.peer, "authentication checks crashed; recording permerror");
                let header = format!(
                    "Authentication-Results: {};\r\n\tspf=permerror;\r\n\tdkim=permerror;\r\n\tdmarc=permerror\r\n",
                    self.hostname
                );
                AuthVerdict {
                    header,
                    spf: Outcome::PermError,
                    dkim: Outcome::PermError,
                    dkim_domains: vec![],
                    dmarc: Outcome::PermError,
                    dmarc_policy: DmarcPolicy::Unspecified,
                    from_domain: String::new(),
                }
            }
        }
    }
}

/// The checks themselves, every look-up through the shared caches of `dns`.
async fn run_checks(
    dns: &Dns,
    hostname: &str,
    message: Option<&AuthenticatedMessage<'_>>,
    sender: Sender<'_>,
) -> AuthVerdict {
    let (auth, peer, mail_from) = (dns.authenticator(), sender.peer, sender.mail_from);
    // RFC 7208 §2.4: for the null sender the HELO identity is checked instead.
    let helo_domain = if sender.helo.is_empty() { "unknown" } else { sender.helo };
    let spf_out = if mail_from.is_empty() {
        auth.verify_spf(dns.cached(SpfParameters::verify_ehlo(peer, helo_domain, hostname))).await
    } else {
        auth.verify_spf(dns.cached(SpfParameters::verify_mail_from(peer, helo_domain, hostname, mail_from))).await
    };
    let spf = spf_outcome(spf_out.result());
    let mail_from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo_domain);
    let spf_part =
        AuthenticationResults::new(hostname).with_spf_mailfrom_result(&spf_out, peer, mail_from, helo_domain);

    let Some(message) = message else {
        // Nothing to verify a signature or an author domain on.
        let header = format!("Authentication-Results: {spf_part};\r\n\tdkim=none;\r\n\tdmarc=permerror\r\n");
        return AuthVerdict {
            header,
            spf,
            dkim: Outcome::None,
            dkim_domains: vec![],
            dmarc: Outcome::PermError,
            dmarc_policy: DmarcPolicy::Unspecified,
            from_domain: String::new(),
        };
    };
    let dkim_out = auth.verify_dkim(dns.cached(message)).await;
    let dkim_domains: Vec<String> = dkim_out
        .iter()
        .filter(|o| o.result() == &DkimResult::Pass)
        .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
        .collect();
    let dkim = dkim_outcome(dkim_out.iter().map(|o| o.result()));
    let dmarc_params = DmarcParameters::new(message, &dkim_out, mail_from_domain, &spf_out);
    let dmarc_out = auth.verify_dmarc(dns.cached(dmarc_params)).await;
    let dmarc = dmarc_outcome(dmarc_out.spf_result(), dmarc_out.dkim_result(), dmarc_out.dmarc_record().is_some());
    let dmarc_policy = match dmarc_out.policy() {
        Policy::None => DmarcPolicy::None,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Unspecified => DmarcPolicy::Unspecified,
    };
    let results = AuthenticationResults::new(hostname)
        .with_spf_mailfrom_result(&spf_out, peer, mail_from, helo_domain)
        .with_dkim_results(&dkim_out, message.from());
    let mut header = format!("Authentication-Results: {results}");
    if dkim_out.is_empty() {
        header.push_str(";\r\n\tdkim=none");
    }
    // Written here rather than by mail-auth, which says "none" when a policy exists but
    // neither identifier passed; RFC 7489 §6.6.2 calls that a fail.
    header.push_str(&format!(";\r\n\tdmarc={}", dmarc.as_str()));
    if !dmarc_out.domain().is_empty() {
        let domain: String =
            dmarc_out.domain().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')).collect();
        header.push_str(&format!(" header.from={domain} policy.dmarc={}", dmarc_policy.as_str()));
    }
    header.push_str("\r\n");
    AuthVerdict { header, spf, dkim, dkim_domains, dmarc, dmarc_policy, from_domain: dmarc_out.domain().to_owned() }
}

fn spf_outcome(r: SpfResult) -> Outcome {
    match r {
        SpfResult::Pass => Outcome::Pass,
        SpfResult::Fail => Outcome::Fail,
        SpfResult::SoftFail => Outcome::SoftFail,
        SpfResult::Neutral => Outcome::Neutral,
        SpfResult::TempError => Outcome::TempError,
        SpfResult::PermError => Outcome::PermError,
        SpfResult::None => Outcome::None,
    }
}

/// Pass if any signature passed; otherwise the most telling failure; none without any.
fn dkim_outcome<'a>(results: impl Iterator<Item = &'a DkimResult>) -> Outcome {
    let mut best = Outcome::None;
    let rank = |o: Outcome| match o {
        Outcome::Pass => 6,
        Outcome::Fail => 5,
        Outcome::PermError => 4,
        Outcome::TempError => 3,
        Outcome::Neutral => 2,
        Outcome::SoftFail => 1,
        Outcome::None => 0,
    };
    for r in results {
        let o = match r {
            DkimResult::Pass => Outcome::Pass,
            DkimResult::Neutral(_) => Outcome::Neutral,
            DkimResult::Fail(_) => Outcome::Fail,
            DkimResult::PermError(_) => Outcome::PermError,
            DkimResult::TempError(_) => Outcome::TempError,
            DkimResult::None => Outcome::None,
        };
        if rank(o) > rank(best) {
            best = o;
        }
    }
    best
}

/// DMARC passes when either aligned identifier passes, and fails when the author domain
/// has a policy record and neither does (RFC 7489 §6.6.2).
fn dmarc_outcome(spf: &DmarcResult, dkim: &DmarcResult, has_record: bool) -> Outcome {
    let one = |r: &DmarcResult| match r {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    };
    match (one(spf), one(dkim)) {
        (Outcome::Pass, _) | (_, Outcome::Pass) => Outcome::Pass,
        (e @ (Outcome::TempError | Outcome::PermError), _) | (_, e @ (Outcome::TempError | Outcome::PermError)) => e,
        _ if has_record => Outcome::Fail,
        (Outcome::None, other) => other,
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests;

/// `raw` without the `Authentication-Results` header fields that claim to come from
/// `authserv_id` (RFC 8601 §5: a receiver removes such claims before adding its own, so a
/// sender cannot forge our verdict); `None` when there is none to remove. Only the header
/// section is read; a field's folded continuation lines go with it.
pub fn strip_forged_results(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let forged = |f: &parse::HeaderField<'_>| {
        f.is("Authentication-Results")
            && f.value()
                .split(|c: char| c == ';' || c.is_whitespace())
                .next()
                .unwrap_or("")
                .eq_ignore_ascii_case(authserv_id)
    };
    let mut fields = parse::header_fields(raw);
    let kept: Vec<(parse::HeaderField<'_>, bool)> = fields.by_ref().map(|f| (f, forged(&f))).collect();
    if !kept.iter().any(|(_, forged)| *forged) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    for (field, _) in kept.iter().filter(|(_, forged)| !forged) {
        out.extend_from_slice(field.raw);
    }
    out.extend_from_slice(&raw[fields.body_start()..]);
    Some(out)
}
