//! TLS trust for the REST transport: a pinned CA bundle, a pinned certificate fingerprint, or
//! an explicit insecure mode. Always the `ring` provider.

use std::fmt::Write as _;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// SHA-256 of a certificate's DER, as uppercase colon-separated hex (`AB:CD:...`).
pub fn cert_fingerprint(der: &[u8]) -> String {
    let mut out = String::with_capacity(95);
    for (i, b) in Sha256::digest(der).iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// Parses a certificate fingerprint: 64 hex digits, with or without `:` separators, any case,
/// optionally prefixed with `sha256:`/`SHA256:`.
pub fn parse_cert_fingerprint(text: &str) -> Result<[u8; 32], Error> {
    let bad = |why: &str| Error::Invalid(format!("certificate fingerprint {text:?}: {why}"));
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let hex: Vec<u8> = body.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if hex.len() != 64 {
        return Err(bad("expected 64 hex digits (SHA-256)"));
    }
    let mut digest = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad("not hex"))?;
        digest[i] = u8::from_str_radix(s, 16).map_err(|_| bad("not hex"))?;
    }
    Ok(digest)
}

/// The ring provider, shared by every TLS config we build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How the REST transport decides to trust the device's certificate.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// PEM bundle of CA (or self-signed) certificates; the host name is verified.
    CaPem(Vec<u8>),
    /// SHA-256 of the leaf certificate's DER; the host name is not checked.
    Fingerprint([u8; 32]),
    /// Any certificate (still proven by a handshake signature). Logged loudly.
    Insecure,
}

/// Builds the rustls client configuration for `trust` (HTTP/1.1 only: RouterOS speaks no h2).
pub fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS setup: {e}")))?;
    let mut config = match trust {
        TlsTrust::CaPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Invalid(format!("CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Invalid(format!("CA bundle: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::Invalid("CA bundle holds no certificate".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsTrust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier::new({
                let pin = *pin;
                move |leaf: &CertificateDer<'_>| judge_pinned(Some(pin), leaf)
            })))
            .with_no_client_auth(),
        TlsTrust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier::new(
                |leaf: &CertificateDer<'_>| judge_pinned(None, leaf),
            )))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts exactly the pinned leaf certificate (or, with no pin, any certificate, loudly).
fn judge_pinned(
    pin: Option<[u8; 32]>,
    leaf: &CertificateDer<'_>,
) -> Result<ServerCertVerified, rustls::Error> {
    let digest: [u8; 32] = Sha256::digest(leaf.as_ref()).into();
    match pin {
        Some(pin) if pin == digest => Ok(ServerCertVerified::assertion()),
        Some(_) => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        )),
        None => {
            tracing::warn!(
                fingerprint = %cert_fingerprint(leaf.as_ref()),
                "INSECURE: accepting the device's TLS certificate without verification; \
                 pin this fingerprint instead"
            );
            Ok(ServerCertVerified::assertion())
        }
    }
}

/// A certificate verifier that judges the leaf certificate with `judge` alone (a pin, or a
/// probe recording what the device presents), and still verifies the handshake signatures
/// with the ring provider's algorithms, so the peer proves it holds the certificate's key.
pub struct LeafVerifier<F> {
    judge: F,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<F> LeafVerifier<F>
where
    F: Fn(&CertificateDer<'_>) -> Result<ServerCertVerified, rustls::Error> + Send + Sync,
{
    pub fn new(judge: F) -> Self {
        Self {
            judge,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl<F> std::fmt::Debug for LeafVerifier<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafVerifier").finish_non_exhaustive()
    }
}

impl<F> ServerCertVerifier for LeafVerifier<F>
where
    F: Fn(&CertificateDer<'_>) -> Result<ServerCertVerified, rustls::Error> + Send + Sync,
{
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.judge)(end_entity)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Finds a rustls error in an error's source chain (reqwest wraps it in hyper and io errors).
pub fn find_tls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error hides its payload from `source()`; look inside explicitly.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_format_and_parse_in_all_spellings() {
        let der = b"not really a certificate";
        let fp = cert_fingerprint(der);
        assert_eq!(fp.len(), 95);
        assert_eq!(fp, fp.to_uppercase());
        let digest: [u8; 32] = Sha256::digest(der).into();
        assert_eq!(parse_cert_fingerprint(&fp).unwrap(), digest);
        assert_eq!(parse_cert_fingerprint(&fp.to_lowercase()).unwrap(), digest);
        assert_eq!(
            parse_cert_fingerprint(&fp.replace(':', "")).unwrap(),
            digest
        );
        assert_eq!(
            parse_cert_fingerprint(&format!("sha256:{fp}")).unwrap(),
            digest
        );
        for bad in [
            String::new(),
            "AB:CD".into(),
            fp[..93].to_string(),
            "ZZ".repeat(32),
        ] {
            assert!(parse_cert_fingerprint(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pinned_leaf_accepts_only_its_certificate() {
        let der = CertificateDer::from(b"leaf-der".to_vec());
        let other = CertificateDer::from(b"other-der".to_vec());
        let pin: [u8; 32] = Sha256::digest(b"leaf-der").into();
        let verifier =
            LeafVerifier::new(move |leaf: &CertificateDer<'_>| judge_pinned(Some(pin), leaf));
        let name = ServerName::try_from("ignored.example").unwrap();
        let now = UnixTime::now();
        assert!(
            verifier
                .verify_server_cert(&der, &[], &name, &[], now)
                .is_ok()
        );
        assert!(
            verifier
                .verify_server_cert(&other, &[], &name, &[], now)
                .is_err()
        );
        let insecure = LeafVerifier::new(|leaf: &CertificateDer<'_>| judge_pinned(None, leaf));
        assert!(
            insecure
                .verify_server_cert(&other, &[], &name, &[], now)
                .is_ok()
        );
        assert!(!insecure.supported_verify_schemes().is_empty());
    }

    #[test]
    fn ca_bundle_must_hold_certificates() {
        assert!(client_config(&TlsTrust::CaPem(b"garbage".to_vec())).is_err());
        assert!(client_config(&TlsTrust::Fingerprint([0; 32])).is_ok());
        assert!(client_config(&TlsTrust::Insecure).is_ok());
    }

    #[test]
    fn finds_tls_errors_through_io_wrappers() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls.clone());
        assert_eq!(find_tls_error(&io), Some(&tls));
        let plain = std::io::Error::other("nope");
        assert_eq!(find_tls_error(&plain), None);
    }
}
