//! A throwaway certificate authority for TLS registries and token signing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// Host names and addresses in the server certificate's subject alternative names.
pub const SERVER_NAMES: [&str; 6] = ["127.0.0.1", "127.0.0.2", "localhost", "::1", "registry.ferry.test", "token.ferry.test"];

/// A test CA, a server certificate for [`SERVER_NAMES`], and a token-signing certificate, all
/// written as PEM files to a temporary directory that lives as long as the last clone.
#[derive(Clone)]
pub struct Pki {
    inner: Arc<PkiFiles>,
}

struct PkiFiles {
    dir: TempDir,
    ca_pem: String,
    server_cert_der: Vec<u8>,
    server_key_der: Vec<u8>,
    signer_cert_der: Vec<u8>,
    signer_key_der: Vec<u8>,
}

impl Pki {
    /// Generates the CA and both certificates (ECDSA P-256) and writes them to disk.
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("failed to generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferry test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("failed to self-sign the CA");

        let server_key = KeyPair::generate().expect("failed to generate the server key");
        let names: Vec<String> = SERVER_NAMES.iter().map(|name| name.to_string()).collect();
        let mut server_params = CertificateParams::new(names).expect("invalid server names");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "ferry test registry");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("failed to sign the server certificate");

        // The registry trusts a token when the leaf in its `x5c` header chains to a certificate
        // in `rootcertbundle`. The bundle contains the CA, and the header carries this signer.
        let signer_key = KeyPair::generate().expect("failed to generate the token signing key");
        let mut signer_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        signer_params
            .distinguished_name
            .push(DnType::CommonName, "ferry test token signer");
        signer_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let signer_cert = signer_params
            .signed_by(&signer_key, &ca_cert, &ca_key)
            .expect("failed to sign the token signer certificate");

        let dir = tempfile::Builder::new()
            .prefix("ferry-test-pki-")
            .tempdir()
            .expect("failed to create the PKI directory");
        let write = |name: &str, contents: &str| {
            fs_err::write(dir.path().join(name), contents).expect("failed to write a PKI file")
        };
        write("ca.crt", &ca_cert.pem());
        write("server.crt", &server_cert.pem());
        write("server.key", &server_key.serialize_pem());
        write("token-signer.crt", &signer_cert.pem());
        fs_err::create_dir(dir.path().join("cert-dir")).unwrap();
        write("cert-dir/ca.crt", &ca_cert.pem());

        Pki {
            inner: Arc::new(PkiFiles {
                ca_pem: ca_cert.pem(),
                server_cert_der: server_cert.der().to_vec(),
                server_key_der: server_key.serialize_der(),
                signer_cert_der: signer_cert.der().to_vec(),
                signer_key_der: signer_key.serialize_der(),
                dir,
            }),
        }
    }

    /// Returns the path of the CA certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.inner.dir.path().join("ca.crt")
    }

    /// Returns the CA certificate as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.inner.ca_pem
    }

    /// Returns the path of the server certificate (PEM), valid for [`SERVER_NAMES`].
    pub fn server_cert_file(&self) -> PathBuf {
        self.inner.dir.path().join("server.crt")
    }

    /// Returns the path of the server's private key (PKCS#8 PEM).
    pub fn server_key_file(&self) -> PathBuf {
        self.inner.dir.path().join("server.key")
    }

    /// Returns a directory that contains only `ca.crt`, the layout skopeo's `--cert-dir` and
    /// `--dest-cert-dir` read.
    pub fn cert_dir(&self) -> PathBuf {
        self.inner.dir.path().join("cert-dir")
    }

    /// Writes `<root>/<host>/ca.crt`, the layout of Docker's `/etc/docker/certs.d`, and returns
    /// the path of the written file. `host` is `host` or `host:port`.
    pub fn write_docker_certs_dir(&self, root: &Path, host: &str) -> PathBuf {
        let host_dir = root.join(host);
        fs_err::create_dir_all(&host_dir).expect("failed to create the certs.d host directory");
        let path = host_dir.join("ca.crt");
        fs_err::write(&path, self.ca_pem()).expect("failed to write ca.crt");
        path
    }

    /// Returns a reqwest client that trusts this CA, ignores proxy variables, and does not
    /// follow redirects.
    pub fn reqwest_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem().as_bytes())
            .expect("failed to parse the test CA");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("failed to build a reqwest client")
    }

    pub(crate) fn server_cert_der(&self) -> &[u8] {
        &self.inner.server_cert_der
    }

    pub(crate) fn server_key_der(&self) -> &[u8] {
        &self.inner.server_key_der
    }

    /// DER of the token signer's certificate, sent in the JWT `x5c` header.
    pub(crate) fn signer_cert_der(&self) -> &[u8] {
        &self.inner.signer_cert_der
    }

    /// PKCS#8 DER of the token signer's ECDSA P-256 key.
    pub(crate) fn signer_key_der(&self) -> &[u8] {
        &self.inner.signer_key_der
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}
