//! The client assertion of the `client_certificate` flow: a JWT signed RS256
//! with the app's private key, as Entra documents for certificate credentials.
//!
//! Header: `alg`, `typ` and `x5t#S256` (base64url SHA-256 of the certificate's
//! DER), which tells Entra which of the app's certificates to verify with.
//! Claims: `aud` = the token URL, `iss` = `sub` = the client id, a fresh `jti`,
//! `nbf` now and `exp` ten minutes on. The key and the signer never leave this
//! module; `Debug` shows only the thumbprint.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::error::{Error, Result};

/// How long a client assertion is valid: Entra accepts up to 10 minutes.
const LIFETIME_SECONDS: i64 = 600;

/// Signs client assertions for one app certificate.
pub struct AssertionSigner {
    key: RsaKeyPair,
    /// base64url SHA-256 of the certificate DER (`x5t#S256`).
    thumbprint: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// Parse the PEM certificate and RSA key (PKCS#8 or PKCS#1). Errors point into the asset (`/private_key`).
    pub fn from_pem(certificate_pem: &str, private_key_pem: &SecretString) -> Result<Self> {
        let cert = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).map_err(|e| {
            Error::invalid(
                "/certificate",
                format!("not a PEM certificate (-----BEGIN CERTIFICATE-----): {e}"),
            )
        })?;
        let key_der = PrivateKeyDer::from_pem_slice(private_key_pem.expose_secret().as_bytes())
            .map_err(|_| {
                Error::invalid(
                    "/private_key",
                    "not a PEM private key (PKCS#8 BEGIN PRIVATE KEY or PKCS#1 BEGIN RSA PRIVATE KEY)",
                )
            })?;
        let key = match &key_der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(Error::invalid(
                    "/private_key",
                    "only RSA keys are supported (Entra certificate credentials are RSA)",
                ));
            }
        }
        .map_err(|e| {
            Error::invalid(
                "/private_key",
                format!("the RSA private key is not usable: {e}"),
            )
        })?;
        let thumbprint = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, cert.as_ref()));
        Ok(AssertionSigner { key, thumbprint })
    }

    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A signed client assertion for one token request.
    pub fn assertion(&self, client_id: &str, token_url: &str) -> Result<SecretString> {
        let now = jiff::Timestamp::now().as_second();
        let header = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": self.thumbprint});
        let claims = json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + LIFETIME_SECONDS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::internal("signing the client assertion failed"))?;
        Ok(SecretString::from(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}
