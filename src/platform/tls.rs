//! Server TLS for the doors (SMTP STARTTLS and implicit TLS; IMAP later): builds one rustls
//! `ServerConfig` from the PEM certificate chain and key named in `[tls]`, or, when none is
//! named, from a self-signed certificate (rcgen) made on first start for the names the
//! caller gives (the SMTP host name and the mail domain) and `localhost`, kept in
//! `DATA_DIR/tls/` and reused on later starts; and the client configuration for
//! opportunistic TLS. It knows nothing of the protocols that use it; building the server
//! configuration does blocking file I/O, so it is called once at start-up. The private key
//! is written with mode 0600 and never logged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::config::TlsConfig;

/// Why the doors' TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read (missing, no permission, ...).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The generated certificate or key could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file is not valid PEM, or holds no item of the kind wanted.
    #[error("{path} holds no valid PEM {what}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// What the PEM reader said.
        source: pem::Error,
    },
    /// The self-signed certificate could not be made (e.g. the domain is not a valid name).
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key (e.g. the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the self-signed certificate lives: `DATA_DIR/tls/cert.pem` and `key.pem`.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The TLS configuration of the doors: the `[tls]` certificate when set, else the
/// self-signed one under `data_dir` (made now for `names` and `localhost` if it does not
/// exist yet). No client authentication.
pub fn server_config(tls: &TlsConfig, data_dir: &Path, names: &[&str]) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = if tls.cert.as_os_str().is_empty() {
        let (cert, key) = self_signed_paths(data_dir);
        if !(cert.exists() && key.exists()) {
            generate(&certificate_names(names), &cert, &key)?;
        }
        (cert, key)
    } else {
        (tls.cert.clone(), tls.key.clone())
    };
    let chain = load_chain(&cert_path)?;
    let key = load_key(&key_path)?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(server))
}

/// The names a self-signed certificate is made for: `wanted` and `localhost`, without
/// empty names or repeats.
fn certificate_names(wanted: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for &name in wanted.iter().chain(&["localhost"]) {
        if !name.is_empty() && !names.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_string());
        }
    }
    names
}

/// Makes a self-signed certificate for `names` and writes it: the key first (mode 0600),
/// then the certificate, each through a temporary file renamed into place, so a crash
/// leaves either nothing usable (and the next start makes a new pair) or both files.
fn generate(names: &[String], cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, names.first().map_or("localhost", String::as_str));
    subject.push(rcgen::DnType::OrganizationName, "postcast self-signed");
    params.distinguished_name = subject;
    let signing_key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    write_private(key_path, signing_key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())?;
    tracing::info!(cert = %cert_path.display(), ?names, "made a self-signed TLS certificate");
    Ok(())
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    // tempfile creates the file with mode 0600 on Unix, before any byte is in it.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(err(dir))?;
    file.write_all(bytes).map_err(err(path))?;
    file.as_file().sync_all().map_err(err(path))?;
    file.persist(path).map_err(|e| TlsError::Write { path: path.to_owned(), source: e.error })?;
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(dir) {
        // Make the rename durable; a failure here only risks a new certificate next start.
        let _ = dir.sync_all();
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Every certificate in a PEM file, leaf first; at least one.
fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem_err = |source| TlsError::Pem { path: path.to_owned(), what: "certificate", source };
    let chain = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(pem_err)?;
    if chain.is_empty() {
        return Err(pem_err(pem::Error::NoItemsFound));
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        source,
    })
}

/// A client configuration that takes any server certificate (it still checks the handshake
/// signatures): opportunistic TLS, as to MX hosts, which checks nothing else (RFC 7435
/// §1.3), and clients of a server with a self-signed certificate.
pub fn unverified_client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

/// Accepts any certificate but still verifies the handshake signatures with the
/// provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The doors' TLS for a server with its data in `dir` and the mail domain `example.test`.
    fn server_config(tls: &TlsConfig, dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
        super::server_config(tls, dir, &["mx.example.test", "example.test"])
    }

    #[test]
    fn generates_once_then_reuses() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = TlsConfig::default();
        server_config(&config, dir.path())?;
        let (cert, key) = self_signed_paths(dir.path());
        let first = (std::fs::read(&cert)?, std::fs::read(&key)?);
        assert!(String::from_utf8_lossy(&first.0).starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
        }
        server_config(&config, dir.path())?;
        assert_eq!((std::fs::read(&cert)?, std::fs::read(&key)?), first);
        let leaf = load_chain(&cert)?.remove(0);
        assert!(leaf.windows(b"mx.example.test".len()).any(|w| w == b"mx.example.test"));
        assert!(leaf.windows(b"example.test".len()).any(|w| w == b"example.test"));
        assert!(leaf.windows(b"localhost".len()).any(|w| w == b"localhost"));
        Ok(())
    }

    #[test]
    fn configured_files_are_used() -> anyhow::Result<()> {
        let made = tempfile::tempdir()?;
        server_config(&TlsConfig::default(), made.path())?;
        let (cert, key) = self_signed_paths(made.path());
        let dir = tempfile::tempdir()?;
        let config = TlsConfig { cert, key };
        server_config(&config, dir.path())?;
        assert!(!self_signed_paths(dir.path()).0.exists(), "nothing is generated when [tls] is set");
        Ok(())
    }

    #[test]
    fn bad_or_missing_files_are_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let config = TlsConfig { cert: cert.clone(), key: key.clone() };
        let server_config = |config: &TlsConfig| server_config(config, dir.path());
        assert!(matches!(server_config(&config), Err(TlsError::Read { path, .. }) if path == cert));

        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")?;
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")?;
        let refused = server_config(&config);
        assert!(matches!(&refused, Err(TlsError::Pem { what: "certificate", .. })), "{refused:?}");

        std::fs::write(&cert, "just some text\n")?;
        let refused = server_config(&config);
        assert!(matches!(&refused, Err(TlsError::Pem { source: pem::Error::NoItemsFound, .. })), "{refused:?}");

        // A good certificate with a key of another pair.
        let other = tempfile::tempdir()?;
        super::server_config(&TlsConfig::default(), other.path(), &[])?;
        let again = tempfile::tempdir()?;
        super::server_config(&TlsConfig::default(), again.path(), &[])?;
        std::fs::copy(self_signed_paths(other.path()).0, &cert)?;
        std::fs::copy(self_signed_paths(again.path()).1, &key)?;
        let refused = server_config(&config);
        assert!(matches!(&refused, Err(TlsError::Rustls(_))), "{refused:?}");
        Ok(())
    }
}
