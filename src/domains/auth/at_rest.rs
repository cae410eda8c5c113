//! How the auth domain's second-factor secrets are stored, with keys derived from the
//! server's secret (`secret.key`, see [`ServerSecret`]):
//!
//! - **Recovery codes**: `v1:` + hex HMAC-SHA256(key, SHA-256 hex of the normalised
//!   code). A stolen database alone does not let anybody try codes offline.
//! - **TOTP secrets**: `v1:` + base64(nonce ‖ ChaCha20-Poly1305 ciphertext ‖ tag) of the
//!   base32 secret, bound to the account by its id as associated data, so a sealed secret
//!   copied to another row does not open.
//!
//! Rows written before this scheme (a bare SHA-256 hex for recovery codes, the bare
//! base32 secret for TOTP) carry no `v1:` prefix. A migration cannot seal them (it has no
//! key), so [`AuthService::seal_stored_secrets`] rewrites them at every start, before any
//! door opens: the old recovery-code hash is exactly what the new HMAC is taken over, so
//! old codes keep working. A TOTP secret without the prefix is still read as it is.

use base64::Engine;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use super::entities::{recovery_code, user};
use super::password::{fingerprint, normalise_code};
use super::{AuthError, AuthService};
use crate::platform::secrets::ServerSecret;

/// The prefix of values stored in the current scheme.
const V1: &str = "v1:";

/// Rows rewritten per query at start.
const BATCH: u64 = 500;

/// The keys the auth domain seals with.
#[derive(Clone)]
pub(super) struct AtRest {
    recovery: hmac::Key,
    totp: std::sync::Arc<LessSafeKey>,
}

impl AtRest {
    /// The keys derived from `secret`.
    pub(super) fn new(secret: &ServerSecret) -> Result<Self, AuthError> {
        let recovery = hmac::Key::new(hmac::HMAC_SHA256, &secret.derive("auth/recovery-codes"));
        let totp = UnboundKey::new(&CHACHA20_POLY1305, &secret.derive("auth/totp-secrets"))
            .map_err(|_| AuthError::Internal("cannot make the TOTP sealing key".into()))?;
        Ok(Self { recovery, totp: std::sync::Arc::new(LessSafeKey::new(totp)) })
    }

    /// The stored form of a recovery code as the user types it.
    pub(super) fn recovery_hash(&self, code: &str) -> String {
        self.recovery_hash_of_legacy(&fingerprint(&normalise_code(code)))
    }

    /// The stored form of a recovery code stored before as the bare SHA-256 `legacy`.
    fn recovery_hash_of_legacy(&self, legacy: &str) -> String {
        format!("{V1}{}", hex::encode(hmac::sign(&self.recovery, legacy.as_bytes()).as_ref()))
    }

    /// Seals the base32 TOTP secret of account `user_id`.
    pub(super) fn seal_totp(&self, user_id: i64, secret: &str) -> Result<String, AuthError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut data = secret.as_bytes().to_vec();
        self.totp
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad(user_id), &mut data)
            .map_err(|_| AuthError::Internal("cannot seal a TOTP secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{V1}{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)))
    }

    /// The base32 TOTP secret of account `user_id` from its stored form (sealed, or from
    /// before sealing).
    pub(super) fn open_totp(&self, user_id: i64, stored: &str) -> Result<String, AuthError> {
        let Some(sealed) = stored.strip_prefix(V1) else { return Ok(stored.to_owned()) };
        let unreadable = || {
            AuthError::Internal(format!(
                "the TOTP secret of account {user_id} does not open: was secret.key replaced or lost?"
            ))
        };
        let mut bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(sealed).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| unreadable())?;
        let plain = self.totp.open_in_place(nonce, aad(user_id), &mut data).map_err(|_| unreadable())?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable())
    }
}

/// The associated data that binds a sealed TOTP secret to its account.
fn aad(user_id: i64) -> Aad<[u8; 8]> {
    Aad::from(user_id.to_be_bytes())
}

impl AuthService {
    /// Rewrites TOTP secrets and recovery codes stored before they were sealed (see the
    /// module documentation); answers how many rows it rewrote. Run at every start: it
    /// finds nothing once done. Each row is replaced only if it still holds the value
    /// read, so a concurrent change is never overwritten.
    pub async fn seal_stored_secrets(&self) -> Result<u64, AuthError> {
        let keys = &self.inner.at_rest;
        let mut done = 0;
        loop {
            let rows: Vec<(i64, Option<String>)> = user::Entity::find()
                .select_only()
                .columns([user::Column::Id, user::Column::TotpSecret])
                .filter(user::Column::TotpSecret.is_not_null())
                .filter(user::Column::TotpSecret.not_like(format!("{V1}%")))
                .limit(BATCH)
                .into_tuple()
                .all(self.db())
                .await?;
            if rows.is_empty() {
                break;
            }
            for (id, plain) in rows {
                let Some(plain) = plain else { continue };
                user::Entity::update_many()
                    .col_expr(user::Column::TotpSecret, keys.seal_totp(id, &plain)?.into())
                    .filter(user::Column::Id.eq(id))
                    .filter(user::Column::TotpSecret.eq(plain))
                    .exec(self.db())
                    .await?;
                self.forget_user(id).await;
                done += 1;
            }
        }
        loop {
            let rows: Vec<(i64, String)> = recovery_code::Entity::find()
                .select_only()
                .columns([recovery_code::Column::Id, recovery_code::Column::CodeHash])
                .filter(recovery_code::Column::CodeHash.not_like(format!("{V1}%")))
                .limit(BATCH)
                .into_tuple()
                .all(self.db())
                .await?;
            if rows.is_empty() {
                break;
            }
            for (id, legacy) in rows {
                recovery_code::Entity::update_many()
                    .col_expr(recovery_code::Column::CodeHash, keys.recovery_hash_of_legacy(&legacy).into())
                    .filter(recovery_code::Column::Id.eq(id))
                    .filter(recovery_code::Column::CodeHash.eq(legacy))
                    .exec(self.db())
                    .await?;
                done += 1;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sealed(stored: &str) -> bool {
        stored.starts_with(V1)
    }

    #[test]
    fn totp_secrets_open_only_with_their_key_and_account() {
        let keys = AtRest::new(&ServerSecret::generate()).unwrap();
        let sealed = keys.seal_totp(7, "JBSWY3DPEHPK3PXP").unwrap();
        assert!(is_sealed(&sealed) && !sealed.contains("JBSWY3DPEHPK3PXP"), "{sealed}");
        assert_ne!(sealed, keys.seal_totp(7, "JBSWY3DPEHPK3PXP").unwrap(), "a fresh nonce each time");
        assert_eq!(keys.open_totp(7, &sealed).unwrap(), "JBSWY3DPEHPK3PXP");
        assert!(keys.open_totp(8, &sealed).is_err(), "bound to its account");
        let other = AtRest::new(&ServerSecret::generate()).unwrap();
        assert!(other.open_totp(7, &sealed).is_err(), "another server's key does not open it");
        assert!(keys.open_totp(7, "v1:!!").is_err());
        assert_eq!(keys.open_totp(7, "JBSWY3DPEHPK3PXP").unwrap(), "JBSWY3DPEHPK3PXP", "the old form is read");
    }

    #[test]
    fn recovery_hashes_are_keyed_and_normalised() {
        let keys = AtRest::new(&ServerSecret::generate()).unwrap();
        let h = keys.recovery_hash("abcde-fghjk");
        assert!(is_sealed(&h));
        assert_eq!(h, keys.recovery_hash("ABCDE FGHJK"));
        assert_ne!(h, AtRest::new(&ServerSecret::generate()).unwrap().recovery_hash("abcde-fghjk"));
        assert_eq!(h, keys.recovery_hash_of_legacy(&fingerprint("abcdefghjk")), "old rows convert to the same value");
    }
}
