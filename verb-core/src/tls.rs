//! TLS (HTTPS and WSS) with rustls: certificate loading with errors that say what is wrong, and
//! self-signed development certificates.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig as RustlsConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS server configuration: a certificate chain and its private key, with ALPN `http/1.1`.
///
/// ```
/// use verb_core::{DevCertificate, TlsConfig};
///
/// let dev = DevCertificate::generate(["localhost", "127.0.0.1"])?;
/// let tls = TlsConfig::from_pem(dev.cert_pem().as_bytes(), dev.key_pem().as_bytes())?;
/// # let _ = tls;
/// # Ok::<(), verb_core::TlsError>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) rustls: Arc<RustlsConfig>,
    pub(crate) handshake_timeout: Duration,
}

/// Why a TLS configuration could not be built. Each variant names the file (or "PEM data") at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// `"certificate"` or `"private key"`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The certificate input holds no `CERTIFICATE` PEM block.
    #[error("no certificate (PEM `BEGIN CERTIFICATE`) found in {origin}")]
    NoCertificate {
        /// The file, or `PEM data`.
        origin: String,
    },
    /// The key input holds no private key PEM block (PKCS#8, PKCS#1 or SEC1).
    #[error(
        "no private key (PEM `BEGIN PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`) found in {origin}"
    )]
    NoPrivateKey {
        /// The file, or `PEM data`.
        origin: String,
    },
    /// A PEM block could not be decoded.
    #[error("invalid PEM in {origin}: {reason}")]
    InvalidPem {
        /// The file, or `PEM data`.
        origin: String,
        /// What the decoder said.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key ({key}) does not match the certificate ({cert})")]
    KeyMismatch {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
    },
    /// rustls refused the certificate or key (unsupported key type, ...).
    #[error("TLS refused the certificate {cert} or key {key}: {reason}")]
    Rejected {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// What rustls said.
        reason: String,
    },
    /// A development certificate could not be generated.
    #[error("cannot generate a development certificate: {reason}")]
    Generate {
        /// What the generator said.
        reason: String,
    },
}

const PEM_DATA: &str = "PEM data";

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key from files.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file and what is wrong with it.
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let cert = read("certificate", cert_path)?;
        let key = read("private key", key_path)?;
        Self::build(
            &cert,
            &key,
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
        )
    }

    /// Builds from PEM bytes in memory: a certificate chain (leaf first) and a private key.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] saying what is wrong.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Self::build(cert_chain, key, PEM_DATA, PEM_DATA)
    }

    fn build(
        cert: &[u8],
        key: &[u8],
        cert_origin: &str,
        key_origin: &str,
    ) -> Result<Self, TlsError> {
        let invalid = |origin: &str, err: pem::Error| TlsError::InvalidPem {
            origin: origin.to_owned(),
            reason: err.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid(cert_origin, err))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                origin: cert_origin.to_owned(),
            });
        }
        let key = match PrivateKeyDer::from_pem_slice(key) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(TlsError::NoPrivateKey {
                    origin: key_origin.to_owned(),
                });
            }
            Err(err) => return Err(invalid(key_origin, err)),
        };
        // The provider is named, not taken from the process default, so another crate enabling a
        // second provider cannot make this ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = RustlsConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Rejected {
                cert: cert_origin.to_owned(),
                key: key_origin.to_owned(),
                reason: err.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| match err {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    cert: cert_origin.to_owned(),
                    key: key_origin.to_owned(),
                },
                other => TlsError::Rejected {
                    cert: cert_origin.to_owned(),
                    key: key_origin.to_owned(),
                    reason: other.to_string(),
                },
            })?;
        // HTTP/2 first, as browsers prefer it; HTTP/1.1 for the rest.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            rustls: Arc::new(config),
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// How long a client may take to complete the TLS handshake before the connection is dropped.
    ///
    /// Default is 10 seconds.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &["h2", "http/1.1"])
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// A self-signed certificate for development and tests (never for production: browsers warn about
/// it, and clients must be told to trust it).
///
/// ```
/// use verb_core::DevCertificate;
///
/// let dev = DevCertificate::generate(["localhost", "127.0.0.1"])?;
/// assert!(dev.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// let tls = dev.tls_config()?;
/// # let _ = tls;
/// # Ok::<(), verb_core::TlsError>(())
/// ```
#[derive(Clone)]
pub struct DevCertificate {
    cert_pem: String,
    key_pem: String,
}

impl DevCertificate {
    /// A certificate for `names`: each is an IP address SAN if it parses as one, else a DNS name.
    ///
    /// # Errors
    ///
    /// [`TlsError::Generate`] if a name is not valid in a certificate.
    pub fn generate<I, S>(names: I) -> Result<Self, TlsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        let certified =
            rcgen::generate_simple_self_signed(names).map_err(|err| TlsError::Generate {
                reason: err.to_string(),
            })?;
        Ok(Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        })
    }

    /// The certificate, PEM-encoded (what a client adds to its trusted roots).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM-encoded (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A server configuration using this certificate.
    ///
    /// # Errors
    ///
    /// As [`TlsConfig::from_pem`] (which a generated certificate always passes).
    pub fn tls_config(&self) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Writes `cert.pem` and `key.pem` (the key readable by the owner only, on Unix) into `dir`,
    /// creating it; returns their paths.
    ///
    /// # Errors
    ///
    /// When the directory or files cannot be written.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> io::Result<(PathBuf, PathBuf)> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok((cert, key))
    }
}

impl fmt::Debug for DevCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("DevCertificate").finish_non_exhaustive()
    }
}
