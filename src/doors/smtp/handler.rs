//! The SMTP door's answers, from the auth and mail services: who may log in (app
//! passwords, or the account password while no second factor is on), which recipients a
//! session may name (local users for everyone; any address once authenticated on
//! submission: never an open relay), and where a message goes (the delivery pipeline for
//! inbound mail, the sending path for submitted mail).

use crate::domains::auth::{AuthError, AuthService, ClientInfo};
use crate::domains::mail::MailService;
use crate::domains::mail::deliver::{DeliverError, Envelope};
use crate::domains::mail::scan::ScanError;
use crate::domains::mail::send::{SendError, Submission};
use crate::platform::quota::QuotaError;

use super::{AuthMechanism, AuthVerdict, MessageVerdict, RcptVerdict, SessionContext, SessionKind, SmtpHandler};

/// The handler of all three SMTP doors.
#[derive(Clone)]
pub struct MailDoor {
    auth: AuthService,
    mail: MailService,
}

impl MailDoor {
    /// A handler over the auth and mail services.
    pub fn new(auth: AuthService, mail: MailService) -> Self {
        Self { auth, mail }
    }
}

fn client(ctx: &SessionContext) -> ClientInfo {
    ClientInfo { ip: ctx.peer, user_agent: "smtp".into() }
}

fn rejected(code: u16, enhanced: &str, text: impl Into<String>) -> MessageVerdict {
    MessageVerdict::Rejected(code, enhanced.into(), text.into())
}

/// A scanner gave no verdict: the sender tries again later, the message never passes
/// unscanned (README, "Mail").
/// The answer to a message the delivery pipeline did not take.
fn refused(e: DeliverError) -> MessageVerdict {
    match e {
        DeliverError::Infected(name) => rejected(554, "5.7.1", format!("Message refused: malware found ({name})")),
        DeliverError::Scan(e) => not_scanned(&e),
        DeliverError::DmarcRejected(domain) => {
            rejected(550, "5.7.1", format!("Message refused: it fails the DMARC policy of {domain} (p=reject)"))
        }
        DeliverError::Store(e) => {
            tracing::error!(error = %e, "storing a message failed");
            MessageVerdict::TemporaryFailure
        }
    }
}

fn not_scanned(e: &ScanError) -> MessageVerdict {
    tracing::warn!(error = %e, "message not scanned; deferred");
    rejected(451, "4.7.1", "Message could not be scanned, try again later")
}

impl SmtpHandler for MailDoor {
    async fn authenticate(
        &self,
        ctx: &SessionContext,
        _mechanism: AuthMechanism,
        username: &str,
        password: &str,
    ) -> AuthVerdict {
        match self.auth.verify_client_password(username, password, &client(ctx)).await {
            Ok(_) => AuthVerdict::Accepted,
            // Throttled or banned network, or every hashing slot busy: 454 4.7.0 (RFC 4954 §6).
            Err(AuthError::Busy(_) | AuthError::RateLimited(_)) => AuthVerdict::TryLater,
            Err(_) => AuthVerdict::Refused,
        }
    }

    async fn check_sender(&self, ctx: &SessionContext, address: &str) -> bool {
        match (ctx.kind, ctx.user.as_deref()) {
            (SessionKind::Submission, Some(username)) => self.mail.is_own_address(username, address),
            _ => true,
        }
    }

    async fn check_recipient(&self, ctx: &SessionContext, address: &str) -> RcptVerdict {
        if self.mail.is_local_address(address) {
            return match self.mail.local_user(address).await {
                Ok(Some(user)) if ctx.kind == SessionKind::Inbound && self.mail.is_full(user).await => {
                    RcptVerdict::MailboxFull
                }
                Ok(Some(_)) => RcptVerdict::Local,
                Ok(None) => RcptVerdict::UnknownUser,
                Err(e) => {
                    tracing::warn!(error = %e, "recipient lookup failed");
                    RcptVerdict::TemporaryFailure
                }
            };
        }
        if ctx.kind == SessionKind::Submission && ctx.user.is_some() {
            RcptVerdict::Local
        } else {
            RcptVerdict::RelayDenied
        }
    }

    async fn deliver(&self, ctx: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        match (ctx.kind, ctx.user.as_deref()) {
            (SessionKind::Submission, Some(username)) => self.submit(ctx, username, from, to, data).await,
            (SessionKind::Submission, None) => rejected(530, "5.7.0", "Authentication required"),
            (SessionKind::Inbound, _) => self.receive(ctx, from, to, data).await,
        }
    }
}

impl MailDoor {
    async fn receive(&self, ctx: &SessionContext, from: String, to: Vec<String>, data: Vec<u8>) -> MessageVerdict {
        let mut recipients = Vec::with_capacity(to.len());
        for address in &to {
            match self.mail.local_user(address).await {
                Ok(Some(id)) => recipients.push(id),
                // Accepted at RCPT, gone since (disabled meanwhile): refuse the message.
                Ok(None) => return rejected(550, "5.1.1", format!("no such user: {address}")),
                Err(_) => return MessageVerdict::TemporaryFailure,
            }
        }
        let envelope = Envelope {
            mail_from: from,
            recipients,
            peer: Some(ctx.peer),
            helo: ctx.helo.clone().unwrap_or_default(),
            protocol: if ctx.tls { "ESMTPS" } else { "ESMTP" },
            trace: Vec::new(),
            check_auth: true,
            forwarded: false,
        };
        match self.mail.deliver(&envelope, data).await {
            Ok(_) => MessageVerdict::Accepted,
            Err(e) => refused(e),
        }
    }

    async fn submit(
        &self,
        ctx: &SessionContext,
        username: &str,
        from: String,
        to: Vec<String>,
        data: Vec<u8>,
    ) -> MessageVerdict {
        let user = match self.auth.find_by_username(username).await {
            Ok(Some(user)) => user,
            Ok(None) => return rejected(535, "5.7.8", "Authentication credentials invalid"),
            Err(_) => return MessageVerdict::TemporaryFailure,
        };
        let submission = Submission {
            user_id: user.id,
            username: user.username.clone(),
            envelope_from: from,
            recipients: to,
            peer: Some(ctx.peer),
            helo: ctx.helo.clone().unwrap_or_default(),
            protocol: "ESMTPSA",
        };
        match self.mail.submit(&submission, data).await {
            Ok(_) => MessageVerdict::Accepted,
            Err(SendError::NotYourAddress(a)) => {
                rejected(550, "5.7.1", format!("Sender {a} is not one of your addresses"))
            }
            // RFC 3463 X.6.0: the message's own header is unacceptable.
            Err(SendError::BadFrom(e)) => rejected(554, "5.6.0", format!("Message refused: {e}")),
            Err(SendError::UnknownLocalUser(a)) => rejected(550, "5.1.1", format!("No such user: {a}")),
            Err(SendError::BadRecipient(a)) => rejected(553, "5.1.3", format!("Invalid recipient {a}")),
            Err(SendError::NoRecipients) => rejected(554, "5.5.1", "No valid recipients"),
            Err(SendError::Deliver(e)) => refused(e),
            Err(e @ SendError::TooManyRecipients(_)) => rejected(550, "5.5.3", e.to_string()),
            Err(e @ SendError::HourlyLimit { .. }) => rejected(451, "4.7.0", e.to_string()),
            // Gmail's answer to a user over the daily limit.
            Err(e @ SendError::DailyLimit { .. }) => rejected(550, "5.4.5", e.to_string()),
            Err(SendError::OverQuota(QuotaError::Exceeded { .. })) => {
                rejected(552, "5.2.2", "Your storage is full: delete mail to send more")
            }
            Err(SendError::MailboxFull(a)) => rejected(452, "4.2.2", format!("Mailbox full: {a}")),
            Err(e) => {
                tracing::error!(error = %e, "sending a submitted message failed");
                MessageVerdict::TemporaryFailure
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scanner_without_a_verdict_is_a_temporary_451_4_7_1() {
        let down = ScanError::Failed { scanner: "clamd", reason: "no answer".into() };
        let MessageVerdict::Rejected(code, enhanced, _) = not_scanned(&down) else {
            panic!("a scanner failure must not be accepted");
        };
        assert_eq!((code, enhanced.as_str()), (451, "4.7.1"));
    }
}
