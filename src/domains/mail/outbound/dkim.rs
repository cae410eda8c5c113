//! The DKIM key of the mail domain and the signing of outgoing mail (RFC 6376). On first
//! use an RSA-2048 key (RSA for interoperability: every receiver verifies it) is made with
//! the `rsa` crate and kept as PKCS#8 PEM in `DATA_DIR/dkim/SELECTOR.pem` (mode 0600);
//! later starts reuse it. Signing itself is mail-auth's (ring underneath), relaxed/relaxed
//! over the headers a reader sees. It also renders the DNS records to publish.
//!
//! Note: the `rsa` crate is used only to generate and encode the key; it never signs, so
//! its known timing side channel in private-key operations (RUSTSEC-2023-0071) does not
//! apply here.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The headers signed, when present (RFC 6376 §5.4.1 names From as required).
pub const SIGNED_HEADERS: [&str; 10] =
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "MIME-Version", "Content-Type"];

/// What can go wrong with the key or a signature.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// Reading or writing the key file failed.
    #[error("DKIM key file {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The key file does not hold a usable RSA key.
    #[error("DKIM key file {0}: {1}")]
    BadKey(PathBuf, #[source] KeyError),
    /// Making a new key failed.
    #[error("cannot generate the DKIM key: {0}")]
    Generate(#[source] KeyError),
    /// The message cannot be signed (no headers to sign).
    #[error("cannot sign the message: {0}")]
    Sign(#[source] mail_auth::Error),
}

/// Why key material could not be made, read or encoded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// PKCS#8 encoding or decoding.
    #[error("PKCS#8: {0}")]
    Pkcs8(#[from] rsa::pkcs8::Error),
    /// The public key's encoding.
    #[error("public key: {0}")]
    PublicKey(#[from] rsa::pkcs8::spki::Error),
    /// Key generation.
    #[error("RSA: {0}")]
    Rsa(#[from] rsa::Error),
    /// The signer refused the key.
    #[error("signer: {0}")]
    Signer(#[from] mail_auth::Error),
}

/// The domain's signing key.
pub struct DkimKey {
    domain: String,
    selector: String,
    /// Base64 of the DER SubjectPublicKeyInfo: the `p=` of the DNS record.
    public_b64: String,
    signer: DkimSigner<RsaKey<Sha256>, Done>,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey").field("domain", &self.domain).field("selector", &self.selector).finish()
    }
}

/// Where the key of `selector` lives under `data_dir`.
pub fn key_path(data_dir: &Path, selector: &str) -> PathBuf {
    data_dir.join("dkim").join(format!("{selector}.pem"))
}

impl DkimKey {
    /// Loads the key of `selector` from `data_dir`, making and storing a new one first if
    /// there is none. Signatures name `domain`.
    pub fn load_or_create(data_dir: &Path, domain: &str, selector: &str) -> Result<Self, DkimError> {
        let path = key_path(data_dir, selector);
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(&path, generate_pem()?.as_bytes())?;
                tracing::info!(path = %path.display(), "made a new DKIM key; publish it (postcast dns)");
                // Read back: a concurrent first start may have stored its key first.
                std::fs::read_to_string(&path).map_err(|e| DkimError::Io(path.clone(), e))?
            }
            Err(e) => return Err(DkimError::Io(path, e)),
        };
        Self::from_pem(&pem, domain, selector).map_err(|e| DkimError::BadKey(path, e))
    }

    /// A key from PKCS#8 PEM text.
    pub fn from_pem(pem: &str, domain: &str, selector: &str) -> Result<Self, KeyError> {
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(pem)?;
        let public_der = private.to_public_key().to_public_key_der()?;
        let der = private.to_pkcs8_der()?;
        let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.as_bytes())))?;
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Self {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            public_b64: base64::engine::general_purpose::STANDARD.encode(public_der.as_bytes()),
            signer,
        })
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// Base64 of the public key (DER SubjectPublicKeyInfo), as published in `p=`.
    pub fn public_key_b64(&self) -> &str {
        &self.public_b64
    }

    /// The name the key is published at: `SELECTOR._domainkey.DOMAIN`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT value to publish at [`DkimKey::record_name`] (RFC 6376 §3.6.1).
    pub fn record_value(&self) -> String {
        format!("v=DKIM1; k=rsa; p={}", self.public_b64)
    }

    /// `message` with a `DKIM-Signature:` header prepended.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let signature = self.signer.sign(message).map_err(DkimError::Sign)?;
        let mut out = signature.to_header().into_bytes();
        out.extend_from_slice(message);
        Ok(out)
    }
}

fn generate_pem() -> Result<String, DkimError> {
    let mut rng = rand::rngs::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| DkimError::Generate(e.into()))?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| DkimError::Generate(e.into()))?;
    Ok(pem.to_string())
}

/// Writes a private file: a temporary file with mode 0600, fsync, rename, fsync of the folder.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DkimError> {
    let io = |e| DkimError::Io(path.to_owned(), e);
    let dir = path.parent().ok_or_else(|| io(std::io::Error::other("no parent folder")))?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // A key made by a concurrent first start wins; ours is dropped.
        if path.exists() {
            return Ok(());
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(&tmp);
    result.map_err(io)
}

/// The DNS records to publish for `domain`: MX, SPF, DKIM and DMARC, as zone-file lines
/// (long TXT values split into 255-byte strings) followed by the plain values.
pub fn dns_records(domain: &str, mx_host: &str, key: &DkimKey) -> String {
    let quoted = |value: &str| {
        value
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let spf = "v=spf1 mx -all";
    let dmarc = "v=DMARC1; p=quarantine; adkim=s; aspf=s";
    let dkim = key.record_value();
    let mut out = String::new();
    out.push_str(&format!("; DNS records for {domain}\n"));
    out.push_str(&format!("{domain}.\t3600\tIN\tMX\t10 {mx_host}.\n"));
    out.push_str(&format!("{domain}.\t3600\tIN\tTXT\t{}\n", quoted(spf)));
    out.push_str(&format!("{}.\t3600\tIN\tTXT\t( {} )\n", key.record_name(), quoted(&dkim)));
    out.push_str(&format!("_dmarc.{domain}.\t3600\tIN\tTXT\t{}\n", quoted(dmarc)));
    out.push_str("\n; The same values for a provider's web form:\n");
    out.push_str(&format!("MX   {domain}  ->  10 {mx_host}\n"));
    out.push_str(&format!("TXT  {domain}  ->  {spf}\n"));
    out.push_str(&format!("TXT  {}  ->  {dkim}\n", key.record_name()));
    out.push_str(&format!("TXT  _dmarc.{domain}  ->  {dmarc}\n"));
    out
}

#[cfg(test)]
pub(crate) mod test_key {
    //! One RSA key for all unit tests: generating 2048-bit keys is slow.

    use std::sync::OnceLock;

    static PEM: OnceLock<String> = OnceLock::new();

    /// The shared test key as PKCS#8 PEM.
    pub fn pem() -> &'static str {
        PEM.get_or_init(|| super::generate_pem().expect("test key"))
    }

    /// Puts the shared key where [`super::DkimKey::load_or_create`] looks.
    pub fn install(data_dir: &std::path::Path, selector: &str) {
        let path = super::key_path(data_dir, selector);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dkim dir");
        std::fs::write(path, pem()).expect("write key");
    }
}
