//! HTTPS for `ferry serve --tls-cert FILE --tls-key FILE`: a rustls server configuration (ring
//! provider) built from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ServeError;

/// A server certificate chain and its private key, ready to serve HTTPS.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    certificate: PathBuf,
    config: Arc<rustls::ServerConfig>,
}

impl TlsConfig {
    /// Reads the certificate chain (PEM, leaf first, intermediates after it) and the private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1), and checks that the key belongs to the leaf certificate.
    /// Errors name the file at fault.
    pub fn load(certificate: &Path, key: &Path) -> Result<TlsConfig, ServeError> {
        let chain = read_certificates(certificate)?;
        let private_key = read_private_key(key)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| ServeError::TlsPair { certificate: certificate.to_owned(), key: key.to_owned(), source })?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|source| ServeError::TlsPair { certificate: certificate.to_owned(), key: key.to_owned(), source })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig { certificate: certificate.to_owned(), config: Arc::new(config) })
    }

    /// Path of the certificate file.
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    pub(super) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }
}

fn read_pem(path: &Path, file_kind: &'static str) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsRead { file_kind, path: path.to_owned(), source })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let bytes = read_pem(path, "certificate")?;
    let invalid = |reason: String| ServeError::TlsFile { file_kind: "certificate", path: path.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(format!("invalid PEM ({error})")))?;
    if chain.is_empty() {
        return Err(invalid("it contains no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned()));
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServeError> {
    let bytes = read_pem(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        let reason = match error {
            rustls::pki_types::pem::Error::NoItemsFound => "it contains no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
            other => format!("invalid PEM ({other})"),
        };
        ServeError::TlsFile { file_kind: "private key", path: path.to_owned(), reason }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        (certified.cert.pem(), certified.key_pair.serialize_pem())
    }

    #[test]
    fn tls_loads_matching_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, key) = pair();
        let config = TlsConfig::load(&write(dir.path(), "cert.pem", &certificate), &write(dir.path(), "key.pem", &key));
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn tls_names_missing_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, _) = pair();
        let missing = dir.path().join("absent.key");
        let error = TlsConfig::load(&write(dir.path(), "cert.pem", &certificate), &missing).unwrap_err();
        assert!(matches!(&error, ServeError::TlsRead { path, .. } if *path == missing), "{error:?}");
    }

    #[test]
    fn tls_rejects_key_in_certificate_place() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = pair();
        let key_path = write(dir.path(), "key.pem", &key);
        let error = TlsConfig::load(&key_path, &key_path).unwrap_err();
        assert!(matches!(&error, ServeError::TlsFile { file_kind: "certificate", .. }), "{error:?}");
    }

    #[test]
    fn tls_rejects_certificate_in_key_place() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, _) = pair();
        let certificate_path = write(dir.path(), "cert.pem", &certificate);
        let error = TlsConfig::load(&certificate_path, &certificate_path).unwrap_err();
        assert!(matches!(&error, ServeError::TlsFile { file_kind: "private key", .. }), "{error:?}");
    }

    #[test]
    fn tls_rejects_key_of_other_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (certificate, _) = pair();
        let (_, other_key) = pair();
        let error = TlsConfig::load(&write(dir.path(), "cert.pem", &certificate), &write(dir.path(), "key.pem", &other_key)).unwrap_err();
        assert!(matches!(&error, ServeError::TlsPair { .. }), "{error:?}");
    }
}
