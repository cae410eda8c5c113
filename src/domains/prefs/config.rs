//! The preferences domain's configuration, `[prefs]`: document and attachment limits.
//! Types and defaults only; the domain reads them, the application's `Config` names them.

use serde::{Deserialize, Serialize};

/// `[prefs]`: preference document limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrefsConfig {
    /// Largest preference document, in bytes of JSON.
    pub max_bytes: usize,
    /// Largest attachment, in bytes.
    pub attachment_max_bytes: usize,
    /// Seconds an attachment no preference value mentions is kept before it is deleted,
    /// so a client can upload first and reference it afterwards.
    pub attachment_grace_seconds: u64,
}

impl Default for PrefsConfig {
    fn default() -> Self {
        Self { max_bytes: 64 << 10, attachment_max_bytes: 10 << 20, attachment_grace_seconds: 3600 }
    }
}
