//! The server's own secret: 32 random bytes kept hex-encoded in `secret.key` in the data
//! folder (mode 0600), made on first start and read on every later one. Domains never see
//! the secret itself: each asks for a key derived for one purpose (HMAC-SHA256 of the
//! secret over the purpose's name), so a key used to seal one kind of data is never used
//! for another. It knows nothing of what the keys protect.
//!
//! Losing the file makes whatever was sealed with it unreadable, so it belongs in every
//! backup of the database; servers sharing one database must share the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Bytes in the secret and in every derived key.
pub const KEY_BYTES: usize = 32;

/// The file name of the secret in the data folder.
pub const FILE_NAME: &str = "secret.key";

/// Why the secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file holds something other than 64 hex digits.
    #[error("{0} is damaged: it must hold 64 hex digits (restore it from a backup)")]
    Damaged(PathBuf),
}

/// The server's secret; derive keys from it with [`ServerSecret::derive`].
#[derive(Clone)]
pub struct ServerSecret([u8; KEY_BYTES]);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl ServerSecret {
    /// A fresh random secret that is kept nowhere (tests, throw-away services).
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads `DATA_DIR/secret.key`, making it first when it does not exist.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, SecretError> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).ok_or(SecretError::Damaged(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made = Self::generate();
                write_new_private(&path, format!("{}\n", hex::encode(made.0)).as_bytes())
                    .map_err(|source| SecretError::Io { path: path.clone(), source })?;
                // A concurrent first start may have won the race: everybody uses the file.
                let text =
                    std::fs::read_to_string(&path).map_err(|source| SecretError::Io { path: path.clone(), source })?;
                Self::parse(&text).ok_or(SecretError::Damaged(path))
            }
            Err(source) => Err(SecretError::Io { path, source }),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key for `purpose` (a fixed name such as `auth/recovery-codes`).
    pub fn derive(&self, purpose: &str) -> [u8; KEY_BYTES] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&key, purpose.as_bytes());
        let mut out = [0u8; KEY_BYTES];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Creates `path` with `bytes`, readable by the owner only (0600 from the start), written
/// through a temporary file and a link, so the file is never seen half-written and an
/// existing one is never replaced.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // tempfile creates the file with mode 0600 on Unix, before any byte is in it.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e.error),
    }
    if let Ok(dir) = std::fs::File::open(dir) {
        dir.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_then_reused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = ServerSecret::load_or_create(dir.path())?;
        let path = dir.path().join(FILE_NAME);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&path)?.trim().len(), 2 * KEY_BYTES);
        let again = ServerSecret::load_or_create(dir.path())?;
        assert_eq!(first.derive("a"), again.derive("a"));
        assert_ne!(first.derive("a"), first.derive("b"), "each purpose has its own key");
        assert_ne!(first.derive("a"), ServerSecret::generate().derive("a"));
        Ok(())
    }

    #[test]
    fn a_damaged_file_is_refused_not_replaced() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "not hex")?;
        assert!(matches!(ServerSecret::load_or_create(dir.path()), Err(SecretError::Damaged(_))));
        assert_eq!(std::fs::read_to_string(&path)?, "not hex");
        Ok(())
    }
}
