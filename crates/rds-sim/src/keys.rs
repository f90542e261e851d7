//! Key material kept in the data directory: the SSH host key and the REST
//! TLS certificate, generated on first start and reused afterwards (a
//! device keeps its identity across reboots).

use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::authorized_keys::Entry;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use sha2::{Digest, Sha256};

use crate::storage::write_atomic;

pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
pub const CERT_FILE: &str = "rest-cert.pem";
pub const CERT_KEY_FILE: &str = "rest-key.pem";
/// The names the certificate was made for, to regenerate it when they change.
const CERT_NAMES_FILE: &str = "rest-cert-names.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Ssh {
        path: PathBuf,
        source: russh::keys::ssh_key::Error,
    },
    #[error("{path} line {line}: not an OpenSSH public key ({source})")]
    AuthorizedKey {
        path: PathBuf,
        line: usize,
        source: russh::keys::ssh_key::Error,
    },
    #[error("generating the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a secret file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))
}

/// The ed25519 host key in `dir`, generated on first use.
pub fn load_or_create_host_key(dir: &Path) -> Result<PrivateKey, KeyError> {
    let path = dir.join(HOST_KEY_FILE);
    let ssh_err = |source| KeyError::Ssh {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text).map_err(ssh_err),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            key.set_comment("rds-sim host key");
            let text = key.to_openssh(LineEnding::LF).map_err(ssh_err)?;
            write_private(&path, text.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// `SHA256:...`, exactly as `ssh-keygen -lf` prints the fingerprint.
pub fn ssh_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Public keys of an OpenSSH `authorized_keys` text (options allowed,
/// comments and blank lines skipped). Any unreadable line is an error.
pub fn parse_authorized_keys(path: &Path, text: &str) -> Result<Vec<PublicKey>, KeyError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry: Entry = line.parse().map_err(|source| KeyError::AuthorizedKey {
            path: path.to_path_buf(),
            line: index + 1,
            source,
        })?;
        keys.push(entry.public_key().clone());
    }
    Ok(keys)
}

/// Reads an `authorized_keys` file.
pub fn read_authorized_keys(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_authorized_keys(path, &text)
}

/// The REST server's self-signed certificate.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub cert_path: PathBuf,
}

impl TlsIdentity {
    /// SHA-256 of the DER certificate, upper-case hex pairs joined by `:`
    /// (the form `openssl x509 -noout -fingerprint -sha256` prints).
    pub fn fingerprint(&self) -> String {
        sha256_colon_hex(&self.cert_der)
    }
}

pub fn sha256_colon_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Names the certificate must cover: localhost, 127.0.0.1, ::1 and the
/// listen address when it is a specific one.
pub fn certificate_names(listen: IpAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen.is_unspecified() && !names.contains(&listen.to_string()) {
        names.push(listen.to_string());
    }
    names
}

/// The certificate in `dir`, made on first use and remade when the names
/// it must cover change.
pub fn load_or_create_certificate(dir: &Path, names: &[String]) -> Result<TlsIdentity, KeyError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(CERT_KEY_FILE);
    let names_path = dir.join(CERT_NAMES_FILE);
    let wanted = serde_json::to_string(names).expect("strings serialize");
    let current = fs::read_to_string(&names_path).ok();
    if current.as_deref() != Some(wanted.as_str()) || !cert_path.exists() || !key_path.exists() {
        let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
        for path in [&cert_path, &key_path] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(path)(e)),
                _ => {}
            }
        }
        write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
        write_atomic(&cert_path, certified.cert.pem().as_bytes()).map_err(io_err(&cert_path))?;
        write_atomic(&names_path, wanted.as_bytes()).map_err(io_err(&names_path))?;
    }
    let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
    let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|source| KeyError::Pem {
            path: cert_path.clone(),
            source,
        })?
        .to_vec();
    let key_der = PrivatePkcs8KeyDer::from_pem_file(&key_path)
        .map_err(|source| KeyError::Pem {
            path: key_path.clone(),
            source,
        })?
        .secret_pkcs8_der()
        .to_vec();
    Ok(TlsIdentity {
        cert_pem,
        cert_der,
        key_der,
        cert_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_host_key(dir.path()).unwrap();
        let second = load_or_create_host_key(dir.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        let fp = ssh_fingerprint(first.public_key());
        assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }

    #[test]
    fn authorized_keys_with_options_and_comments() {
        let key = load_or_create_host_key(tempfile::tempdir().unwrap().path()).unwrap();
        let line = key.public_key().to_openssh().unwrap();
        let text = format!("# admin keys\n\n{line} someone@host\nfrom=\"10.0.0.0/8\" {line}\n");
        let keys = parse_authorized_keys(Path::new("ak"), &text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key_data(), key.public_key().key_data());
        let err = parse_authorized_keys(Path::new("ak"), "ssh-ed25519 not-base64\n").unwrap_err();
        assert!(err.to_string().starts_with("ak line 1:"), "{err}");
        let err =
            parse_authorized_keys(Path::new("ak"), "# c\n\nssh-ed25519 not-base64\n").unwrap_err();
        assert!(err.to_string().starts_with("ak line 3:"), "{err}");
    }

    #[test]
    fn certificate_is_kept_until_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let names = certificate_names("127.0.0.1".parse().unwrap());
        assert_eq!(names, ["localhost", "127.0.0.1", "::1"]);
        let first = load_or_create_certificate(dir.path(), &names).unwrap();
        let again = load_or_create_certificate(dir.path(), &names).unwrap();
        assert_eq!(first.cert_der, again.cert_der);
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        let other = certificate_names("192.0.2.7".parse().unwrap());
        assert_eq!(other.last().unwrap(), "192.0.2.7");
        let remade = load_or_create_certificate(dir.path(), &other).unwrap();
        assert_ne!(first.cert_der, remade.cert_der);
        assert!(certificate_names("0.0.0.0".parse().unwrap()).len() == 3);
    }
}
