//! Role addresses of the mail domain: `postmaster@` (RFC 5321 §4.5.1) and `abuse@`
//! (RFC 2142 §2) reach the administrator's Inbox, though no account has those names (they
//! are reserved). The administrator comes from the auth service; this module reads no
//! table. With no administrator they name nobody, like any unknown name.

use super::{MailError, MailService};
use crate::domains::auth::User;

/// Local names whose mail goes to the administrator.
const ADMINISTRATOR_ROLES: &[&str] = &["postmaster", "abuse"];

impl MailService {
    /// The account a local name (lowercase, without `+tag`) delivers to: the user of that
    /// name, or the administrator for a role name.
    pub(crate) async fn recipient_account(&self, name: &str) -> Result<Option<User>, MailError> {
        let found = if ADMINISTRATOR_ROLES.contains(&name) {
            self.inner.auth.administrator().await
        } else {
            self.inner.auth.find_by_username(name).await
        };
        found.map_err(|e| MailError::Invalid(e.to_string()))
    }
}
