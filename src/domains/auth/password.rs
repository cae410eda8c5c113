//! Password and name rules, Argon2id hashing (on the blocking pool: it is deliberately
//! slow and memory-hungry, so at most one hash per core runs at once, each in working
//! memory kept for its slot, and a flood waits briefly, then is told to come back), and
//! the random secrets the domain hands out (session tokens, codes, app passwords) with
//! their SHA-256 fingerprints.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Names that cannot be registered: RFC 2142 role addresses and the like.
const RESERVED: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "hostmaster",
    "mailer-daemon",
    "no-reply",
    "noreply",
    "postmaster",
    "root",
    "security",
    "webmaster",
    "www",
    "support",
    "info",
];

/// Passwords refused outright, however long.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password123",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "iloveyou123",
    "letmein123",
    "administrator",
    "welcome123",
    "changeme123",
    "passw0rd123",
];

/// Checks and normalises a user name: 1–32 of `a-z 0-9 . _ -`, starting with a letter or
/// digit, lowercased.
pub fn normalise_username(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > 32 {
        return Err("a user name has 1 to 32 characters".into());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err("a user name uses only letters, digits, '.', '_' and '-'".into());
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() || name.ends_with('.') || name.contains("..") {
        return Err("a user name starts with a letter or digit and has no '..' or trailing '.'".into());
    }
    if RESERVED.contains(&name.as_str()) {
        return Err(format!("the name {name:?} is reserved"));
    }
    Ok(name)
}

/// Checks a new password against the rules.
pub fn check_password(password: &str, username: &str, min_len: usize) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < min_len {
        return Err(format!("a password needs at least {min_len} characters"));
    }
    if password.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    let lower = password.to_lowercase();
    if lower.contains(&username.to_lowercase()) && !username.is_empty() {
        return Err("a password must not contain the user name".into());
    }
    let distinct: std::collections::HashSet<char> = password.chars().collect();
    if distinct.len() < 4 || COMMON.contains(&lower.as_str()) {
        return Err("this password is too easy to guess".into());
    }
    Ok(())
}

/// How long a hash waits for its turn before the caller is told the server is busy.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// Every Argon2 slot was taken for [`HASH_QUEUE_WAIT`]: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again shortly")]
pub struct Busy;

/// Argon2id with fixed parameters, at most [`Hasher::slots`] hashes at once.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// A hash of a random password, verified against when the user does not exist so that
    /// unknown names take as long as wrong passwords.
    dummy: String,
    /// One permit per hash allowed to run.
    slots: Arc<Semaphore>,
    /// How long a hash waits for a permit.
    wait: Duration,
    /// Argon2 working memory (m_cost KiB each) of the slots, reused from hash to hash:
    /// memory stays at slots × m_cost whichever blocking threads run them, where
    /// allocating it per hash would leave freed 19 MiB blocks in each thread's malloc arena.
    memory: Arc<std::sync::Mutex<Vec<Vec<Block>>>>,
}

impl Hasher {
    /// A hasher with the given cost (OWASP: 19456 KiB, 2 iterations, 1 lane).
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, String> {
        let params = Params::new(memory_kib, iterations, parallelism, None).map_err(|e| e.to_string())?;
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        let (slots, wait) = (Arc::new(Semaphore::new(cores)), HASH_QUEUE_WAIT);
        let memory = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut h = Self { params, dummy: String::new(), slots, wait, memory };
        h.dummy = h.hash_now(&random_token())?;
        Ok(h)
    }

    fn argon2(&self) -> Argon2<'_> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes synchronously (for benchmarks and the CLI).
    pub fn hash_now(&self, password: &str) -> Result<String, String> {
        self.hash_in(password, &mut Vec::new())
    }

    /// Verifies synchronously; a malformed stored hash counts as a mismatch.
    pub fn verify_now(&self, password: &str, phc: &str) -> bool {
        self.verify_in(password, phc, &mut Vec::new())
    }

    /// Hashes `password` with a new salt into a PHC string, in `memory` (grown to size).
    fn hash_in(&self, password: &str, memory: &mut Vec<Block>) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| e.to_string())?;
        let len = self.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = raw_hash(&self.argon2(), &self.params, password, salt_bytes, len, memory)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| e.to_string())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Checks `password` against the PHC string `phc` (with the cost stored in it), in
    /// `memory`; a malformed stored hash counts as a mismatch. The comparison is in
    /// constant time.
    fn verify_in(&self, password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
        let mut check = || -> Option<bool> {
            let parsed = PasswordHash::new(phc).ok()?;
            let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
            let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
            let params = Params::try_from(&parsed).ok()?;
            let expected = parsed.hash?;
            let mut salt_buf = [0u8; 64];
            let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
            let argon2 = Argon2::new(algorithm, version, params.clone());
            let got = raw_hash(&argon2, &params, password, salt, expected.len(), memory).ok()?;
            Some(got == expected)
        };
        check().unwrap_or(false)
    }

    /// The same hasher with `slots` hashes at once and `wait` for a turn (tests).
    pub fn with_slots(mut self, slots: usize, wait: Duration) -> Self {
        (self.slots, self.wait) = (Arc::new(Semaphore::new(slots.max(1))), wait);
        self
    }

    /// Runs `work` on the blocking pool once a slot is free, or fails with [`Busy`].
    async fn in_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self, &mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                metrics::counter!("postcast_auth_hash_busy_total").increment(1);
                return Err(Busy);
            }
        };
        let me = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = me.memory.lock().ok().and_then(|mut m| m.pop()).unwrap_or_default();
            let out = work(&me, &mut memory);
            if let Ok(mut pool) = me.memory.lock() {
                pool.push(memory);
            }
            out
        });
        // A panic inside Argon2 is our fault, not the client's: report it as busy.
        out.await.map_err(|_| Busy)
    }

    /// Hashes on the blocking pool, waiting for a free slot.
    pub async fn hash(&self, password: String) -> Result<Result<String, String>, Busy> {
        self.in_slot(move |me, memory| me.hash_in(&password, memory)).await
    }

    /// Verifies on the blocking pool, waiting for a free slot; with `None` checks against
    /// the dummy hash and fails, taking as long as a real check.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        self.in_slot(move |me, memory| match phc {
            Some(p) => me.verify_in(&password, &p, memory),
            None => {
                let _ = me.verify_in(&password, &me.dummy, memory);
                false
            }
        })
        .await
    }
}

/// The raw Argon2 output of `len` bytes for `password` and `salt`, computed in `memory`
/// (grown to the cost of `params` when smaller, never shrunk).
fn raw_hash(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    len: usize,
    memory: &mut Vec<Block>,
) -> Result<Output, String> {
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    Output::init_with(len, |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    .map_err(|e| e.to_string())
}

/// 32 random bytes, URL-safe base64: session tokens and pending-login handles.
pub fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = OsRng.r#gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `n` characters from an alphabet without look-alikes (no 0/o, 1/l/i).
pub fn random_code(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..n).map(|_| ALPHABET[OsRng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Six random digits (SMS codes).
pub fn random_digits() -> String {
    format!("{:06}", OsRng.gen_range(0..1_000_000))
}

/// Hex SHA-256: how tokens, codes and app passwords are stored. These secrets are random
/// and long, so a fast hash is enough; passwords chosen by people use Argon2id.
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Recovery and app codes are typed by people: ignore case, spaces and dashes.
pub fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_lowercased() {
        assert_eq!(normalise_username(" Alice.B ").unwrap(), "alice.b");
        for bad in ["", "a b", "-x", "x.", "a..b", "postmaster", &"x".repeat(33), "ä"] {
            assert!(normalise_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_password("short", "bob", 10).is_err());
        assert!(check_password("aaaaaaaaaaaa", "bob", 10).is_err());
        assert!(check_password("password123", "bob", 10).is_err());
        assert!(check_password("mybob-secret-1", "bob", 10).is_err());
        assert!(check_password("correct horse battery", "bob", 10).is_ok());
    }

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let h = Hasher::new(1024, 1, 1).unwrap();
        let a = h.hash_now("correct horse").unwrap();
        let b = h.hash_now("correct horse").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(h.verify_now("correct horse", &a));
        assert!(!h.verify_now("wrong horse", &a));
        assert!(!h.verify_now("x", "not a hash"));
    }

    #[test]
    fn hashes_are_standard_phc_strings_that_the_argon2_crate_reads_and_writes() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = Hasher::new(1024, 1, 1).unwrap();
        let ours = h.hash_now("correct horse").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(h.argon2().verify_password(b"correct horse", &parsed).is_ok(), "the crate accepts ours");
        assert!(h.argon2().verify_password(b"wrong horse", &parsed).is_err());
        // A hash the crate made, at another cost (an older configuration), verifies here.
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(2048, 2, 1, None).unwrap());
        let theirs = other.hash_password(b"correct horse", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert!(h.verify_now("correct horse", &theirs));
        assert!(!h.verify_now("correct hors", &theirs));
        let truncated = &theirs[..theirs.len() - 4];
        assert!(!h.verify_now("correct horse", truncated));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn working_memory_is_kept_per_slot_not_per_hash() {
        let h = Hasher::new(1024, 1, 1).unwrap().with_slots(2, Duration::from_secs(30));
        let phc = h.hash_now("correct horse").unwrap();
        let checks: Vec<_> = (0..16)
            .map(|_| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(async move { h.verify("correct horse".into(), Some(phc)).await })
            })
            .collect();
        for c in checks {
            assert_eq!(c.await.unwrap(), Ok(true));
        }
        let pool = h.memory.lock().unwrap();
        assert!((1..=2).contains(&pool.len()), "{} buffers kept for 2 slots", pool.len());
        assert!(pool.iter().all(|m| m.len() == 1024), "1024 blocks of 1 KiB each");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_slots_wait_then_are_refused() {
        let h = Hasher::new(8192, 4, 1).unwrap().with_slots(1, Duration::from_millis(1));
        let phc = h.hash_now("correct horse").unwrap();
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (h, phc) = (h.clone(), phc.clone());
                tokio::spawn(async move { h.verify("correct horse".into(), Some(phc)).await })
            })
            .collect();
        let mut results = Vec::new();
        for c in checks {
            results.push(c.await.unwrap());
        }
        assert!(results.contains(&Ok(true)), "the first check runs: {results:?}");
        assert!(results.contains(&Err(Busy)), "the rest find the one slot taken: {results:?}");
        // With room to wait, every check gets its turn.
        let patient = h.with_slots(1, Duration::from_secs(30));
        for _ in 0..3 {
            assert_eq!(patient.verify("correct horse".into(), Some(phc.clone())).await, Ok(true));
        }
    }

    #[test]
    fn codes_normalise() {
        assert_eq!(normalise_code("AbC-d e"), "abcde");
        assert_eq!(random_code(10).len(), 10);
        assert_eq!(random_digits().len(), 6);
    }
}
