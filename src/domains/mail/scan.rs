//! The scanning hook of the delivery pipeline: two slots, virus and spam, each a trait
//! object. The defaults let everything through; the search-spam-virus work plugs ClamAV,
//! the built-in scanner and the Bayes filter into these slots without touching delivery.

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
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, VirusVerdict>;
}

/// A spam filter.
pub trait SpamFilter: Send + Sync {
    /// Judges one message for one recipient.
    fn judge<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, SpamScore>;
}

/// The pass-through virus scanner: everything is clean.
pub struct NoVirusScanner;

impl VirusScanner for NoVirusScanner {
    fn scan<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, VirusVerdict> {
        Box::pin(async { VirusVerdict::Clean })
    }
}

/// The pass-through spam filter: nothing is spam, and nothing is judged.
pub struct NoSpamFilter;

impl SpamFilter for NoSpamFilter {
    fn judge<'a>(&'a self, _input: &'a ScanInput<'a>) -> BoxFuture<'a, SpamScore> {
        Box::pin(async { SpamScore { is_spam: false, score: None } })
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
    fn default() -> Self {
        Self { virus: Arc::new(NoVirusScanner), spam: Arc::new(NoSpamFilter) }
    }
}
