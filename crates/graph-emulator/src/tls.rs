//! `--tls`: HTTPS with a certificate made at start, for clients that insist on it
//! (Microsoft's Python libraries send tokens over `https` only).
//!
//! Two certificates, both new on every start and never written with their keys: a
//! certificate authority, whose PEM the caller writes where clients can be told to
//! trust it (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, the asset's `ca_file`), and the
//! server's certificate it signs, for `127.0.0.1`, `::1` and `localhost`. A CA and a leaf
//! rather than one self-signed certificate, because webpki (the connector's rustls)
//! refuses a CA certificate used as a server's own. Served with rustls on aws-lc-rs,
//! the TLS stack reqwest already brings: no second one.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::EmulatorError;

/// The certificates of one start: the CA's PEM for clients, the server's config.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Config(format!("--tls: cannot {what}: {e}"))
}

/// A new CA and the server certificate it signs.
pub(crate) fn generate() -> Result<TlsMaterial, EmulatorError> {
    let ca_key = KeyPair::generate().map_err(|e| failed("make a key", e))?;
    let mut ca =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("make a CA", e))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "msgraph-connector emulator CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(|e| failed("sign the CA", e))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(|e| failed("make a key", e))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut leaf = CertificateParams::new(names).map_err(|e| failed("name the server", e))?;
    leaf.distinguished_name
        .push(DnType::CommonName, "msgraph-connector emulator");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(|e| failed("sign the server certificate", e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed("configure TLS", e))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| failed("configure TLS", e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}
