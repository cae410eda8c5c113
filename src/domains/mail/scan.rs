//! The scanning hook of the delivery pipeline: two slots, virus and spam, each a trait
//! object handed to `MailService::new` by `app.rs`. The pass-through defaults let
//! everything through. A scanner that cannot give an answer (clamd down, a model that
//! fails to load) returns a [`ScanError`]; delivery then refuses the message with a
//! temporary error (SMTP 451 4.7.1) and stores nothing, so unscanned mail never passes
//! silently. It decides nothing about where a message goes: delivery does.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::parse::Meta;

/// What a scanner is shown of a message.
pub struct ScanInput<'a> {
    /// The raw message as it will be stored (Authentication-Results included).
    pub raw: &'a [u8],
    /// Its metadata.
    pub meta: &'a Meta,
    /// The recipient's account.
    pub user_id: i64,
    /// SPF, DKIM and DMARC results, for mail from other servers.
    pub auth: Option<&'a super::authn::AuthVerdict>,
}

/// Why a scanner gave no verdict. Every variant is temporary: the sender tries again later.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner (e.g. a clamd daemon) could not be reached or did not answer in time.
    #[error("{scanner} unavailable: {source}")]
    Unavailable {
        /// Which scanner.
        scanner: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The scanner answered something it should not have.
    #[error("{scanner} failed: {reason}")]
    Failed {
        /// Which scanner.
        scanner: &'static str,
        /// Its answer.
        reason: String,
    },
}

/// The virus slot's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirusVerdict {
    /// Nothing found.
    Clean,
    /// Malware found (the name of what was found): the message goes to quarantine.
    Infected(String),
}

/// The spam slot's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpamScore {
    /// Whether the message goes to Spam.
    pub is_spam: bool,
    /// The score behind the decision, when the filter has one.
    pub score: Option<f64>,
}

/// A virus scanner.
pub trait VirusScanner: Send + Sync {
    /// Scans one message.
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<VirusVerdict, ScanError>>;
}

/// A spam filter.
pub trait SpamFilter: Send + Sync {
    /// Judges one message for one recipient.
    fn judge<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<SpamScore, ScanError>>;
}

/// The pass-through virus scanner: everything is clean.
pub struct NoVirusScanner;

impl VirusScanner for NoVirusScanner {
    fn scan<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<VirusVerdict, ScanError>> {
        Box::pin(async { Ok(VirusVerdict::Clean) })
    }
}

/// The pass-through spam filter: nothing is spam, and nothing is judged.
pub struct NoSpamFilter;

impl SpamFilter for NoSpamFilter {
    fn judge<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<SpamScore, ScanError>> {
        Box::pin(async { Ok(SpamScore { is_spam: false, score: None }) })
    }
}

/// The two slots.
#[derive(Clone)]
pub struct Scanners {
    /// The virus slot.
    pub virus: Arc<dyn VirusScanner>,
    /// The spam slot.
    pub spam: Arc<dyn SpamFilter>,
}

impl Default for Scanners {
    /// The pass-through scanners.
    fn default() -> Self {
        Self { virus: Arc::new(NoVirusScanner), spam: Arc::new(NoSpamFilter) }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, PaginatorTrait};

    use super::*;
    use crate::domains::auth::AuthService;
    use crate::domains::mail::MailService;
    use crate::domains::mail::deliver::{DeliverError, Envelope};
    use crate::domains::mail::entities::message;
    use crate::domains::mail::send::{SendError, Submission};
    use crate::domains::mail::tests::{Fixture, fixture};
    use crate::events::Bus;
    use crate::platform::blobs::{Blobs, blob_ref};
    use crate::platform::bus::outbox;

    /// A virus scanner whose daemon is down.
    struct ClamdDown;

    impl VirusScanner for ClamdDown {
        fn scan<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<VirusVerdict, ScanError>> {
            Box::pin(async {
                let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                Err(ScanError::Unavailable { scanner: "clamd", source: refused.into() })
            })
        }
    }

    /// A spam filter that answers nonsense.
    struct BrokenFilter;

    impl SpamFilter for BrokenFilter {
        fn judge<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<SpamScore, ScanError>> {
            Box::pin(async { Err(ScanError::Failed { scanner: "bayes", reason: "model unreadable".into() }) })
        }
    }

    /// A second mail service over the fixture's database and blobs, with `scanners`.
    fn with_scanners(f: &Fixture, scanners: Scanners) -> MailService {
        let mut config = crate::config::Config::default();
        config.auth.argon2_memory_kib = 64;
        config.auth.argon2_iterations = 1;
        let bus = Bus::new(f.db.clone());
        let auth =
            AuthService::new(f.db.clone(), bus.clone(), &config, &crate::platform::secrets::ServerSecret::generate())
                .expect("auth service");
        let blobs = Blobs::open(f.dir.path().join("blobs"), f.db.clone()).expect("blob store");
        MailService::new(f.db.clone(), blobs, bus, auth, f.prefs.clone(), scanners, None, "localhost")
    }

    async fn counts(f: &Fixture) -> (u64, u64, u64) {
        let messages = message::Entity::find().count(&f.db).await.expect("count");
        let blobs = blob_ref::Entity::find().count(&f.db).await.expect("count");
        let events = outbox::Entity::find().count(&f.db).await.expect("count");
        (messages, blobs, events)
    }

    #[tokio::test]
    async fn a_failing_scanner_refuses_the_message_for_now_and_stores_nothing() {
        let f = fixture().await;
        let raw = b"From: carol@c.test\r\nTo: ada@localhost\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
        let sent = b"From: ada@localhost\r\nTo: bob@localhost\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
        let submission = Submission {
            user_id: f.ada,
            username: "ada".into(),
            envelope_from: "ada@localhost".into(),
            recipients: vec!["bob@localhost".into()],
            peer: None,
            helo: String::new(),
            protocol: "ESMTPSA",
        };
        let before = counts(&f).await;
        let failing = [
            Scanners { virus: Arc::new(ClamdDown), spam: Arc::new(NoSpamFilter) },
            Scanners { virus: Arc::new(NoVirusScanner), spam: Arc::new(BrokenFilter) },
        ];
        for scanners in failing {
            let mail = with_scanners(&f, scanners);
            let err = mail.deliver(&Envelope::internal(vec![f.ada]), raw.clone()).await.unwrap_err();
            assert!(matches!(err, DeliverError::Scan(_)), "{err:?}");
            assert_eq!(counts(&f).await, before, "nothing stored after: {err}");
            let err = mail.submit(&submission, sent.clone()).await.unwrap_err();
            assert!(matches!(err, SendError::Deliver(DeliverError::Scan(_))), "{err:?}");
            assert_eq!(counts(&f).await, before, "no Sent copy after: {err}");
        }
        // The same message with scanners that answer is stored: the counts can change.
        let mail = with_scanners(&f, Scanners::default());
        mail.deliver(&Envelope::internal(vec![f.ada]), raw).await.expect("delivered");
        let delivered = counts(&f).await;
        assert_ne!(delivered, before);
        mail.submit(&submission, sent).await.expect("sent");
        assert_ne!(counts(&f).await, delivered);
    }
}
