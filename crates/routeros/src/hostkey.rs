//! SSH host-key pinning: OpenSSH-style SHA256 fingerprints and `known_hosts` lines.
//!
//! Everything here is pure: it works on the server key's wire-format blob, so it is tested
//! without a network and the SSH transport only feeds it the key it was shown.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::config::HostKeyPolicy;
use crate::error::Error;

/// The SHA-256 fingerprint of a public-key blob, formatted as `ssh-keygen -l` prints it.
pub fn sha256_fingerprint(key_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key_blob))
    )
}

/// Parses a pinned fingerprint (`SHA256:base64`, padding optional; the prefix may be left
/// out) into the raw digest.
pub fn parse_sha256_fingerprint(text: &str) -> Result<[u8; 32], Error> {
    let bad = |why: &str| Error::Invalid(format!("host key fingerprint {text:?}: {why}"));
    let text = text.trim();
    let b64 = match text.split_once(':') {
        Some((alg, rest)) if alg.eq_ignore_ascii_case("sha256") => rest,
        Some(_) => return Err(bad("only SHA256 fingerprints are supported")),
        None => text,
    };
    let digest = STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| bad("not base64"))?;
    digest
        .try_into()
        .map_err(|_| bad("not a 32-byte SHA-256 digest"))
}

/// Marker at the start of a known_hosts line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    CertAuthority,
    Revoked,
}

/// One parsed known_hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    pub marker: Option<Marker>,
    /// Comma-separated host patterns as written (plain, wildcard, negated or `|1|` hashed).
    pub patterns: Vec<String>,
    pub key_type: String,
    pub key_blob: Vec<u8>,
}

/// Parses one known_hosts line. Blank lines and comments give `Ok(None)`.
pub fn parse_known_hosts_line(line: &str) -> Result<Option<KnownHost>, Error> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let bad = |why: &str| Error::Invalid(format!("known_hosts line {line:?}: {why}"));
    let mut fields = line.split_ascii_whitespace();
    let mut first = fields.next().ok_or_else(|| bad("empty"))?;
    let marker = match first {
        "@cert-authority" => Some(Marker::CertAuthority),
        "@revoked" => Some(Marker::Revoked),
        m if m.starts_with('@') => return Err(bad("unknown marker")),
        _ => None,
    };
    if marker.is_some() {
        first = fields.next().ok_or_else(|| bad("missing host patterns"))?;
    }
    let key_type = fields.next().ok_or_else(|| bad("missing key type"))?;
    let key_b64 = fields.next().ok_or_else(|| bad("missing key"))?;
    let key_blob = STANDARD
        .decode(key_b64)
        .map_err(|_| bad("key is not base64"))?;
    // The blob starts with its own type name; a mismatch means a corrupt or edited line.
    if blob_key_type(&key_blob) != Some(key_type) {
        return Err(bad("key type does not match the key"));
    }
    Ok(Some(KnownHost {
        marker,
        patterns: first.split(',').map(str::to_owned).collect(),
        key_type: key_type.to_owned(),
        key_blob,
    }))
}

/// Parses a whole known_hosts file, skipping nothing silently: a bad line is an error.
pub fn parse_known_hosts(text: &str) -> Result<Vec<KnownHost>, Error> {
    text.lines()
        .filter_map(|line| parse_known_hosts_line(line).transpose())
        .collect()
}

fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` elsewhere.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHost {
    /// Whether the line applies to `name` (from [`lookup_name`]): some pattern matches and no
    /// negated pattern does.
    pub fn matches_host(&self, name: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            if let Some(negated) = pattern.strip_prefix('!') {
                if glob_match(negated, name) {
                    return false;
                }
            } else if pattern.starts_with("|1|") {
                matched |= hashed_match(pattern, name);
            } else {
                matched |= glob_match(pattern, name);
            }
        }
        matched
    }
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern["|1|".len()..].split('|');
    let (Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

/// OpenSSH host pattern matching: `*` and `?` wildcards, case-insensitive.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<u8> = pattern.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let n: Vec<u8> = name.bytes().map(|b| b.to_ascii_lowercase()).collect();
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What the user trusts.
#[derive(Debug, Clone, Default)]
pub struct HostKeyPins {
    pub fingerprints: Vec<[u8; 32]>,
    pub known_hosts: Vec<KnownHost>,
}

/// Why a presented key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyRejection {
    /// The key is listed as `@revoked`.
    Revoked { presented: String },
    /// Pins exist for this host but none is this key.
    Mismatch { presented: String },
    /// Nothing is pinned for this host.
    Unknown { presented: String },
}

impl HostKeyRejection {
    pub fn into_error(self, host: &str) -> Error {
        Error::Unauthenticated(match self {
            HostKeyRejection::Revoked { presented } => {
                format!("host key {presented} of {host} is marked @revoked in known_hosts")
            }
            HostKeyRejection::Mismatch { presented } => format!(
                "host key mismatch: {host} presented {presented}, which matches no pinned key \
                 (possible man-in-the-middle, or the device's key was regenerated)"
            ),
            HostKeyRejection::Unknown { presented } => format!(
                "unknown host key: {host} presented {presented} and no pin covers this host; \
                 pin that fingerprint if it is the device's"
            ),
        })
    }
}

impl HostKeyPins {
    /// What `policy` trusts, reading the known_hosts file it names; `None` when it trusts
    /// any key.
    pub fn from_policy(policy: &HostKeyPolicy) -> Result<Option<Self>, Error> {
        let known_hosts = |text: &str| -> Result<Option<Self>, Error> {
            Ok(Some(Self {
                fingerprints: Vec::new(),
                known_hosts: parse_known_hosts(text)?,
            }))
        };
        match policy {
            HostKeyPolicy::Insecure => Ok(None),
            HostKeyPolicy::Fingerprints(list) => {
                if list.is_empty() {
                    return Err(Error::Invalid("no SSH host key fingerprint given".into()));
                }
                let fingerprints = list
                    .iter()
                    .map(|f| parse_sha256_fingerprint(f))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Self {
                    fingerprints,
                    known_hosts: Vec::new(),
                }))
            }
            HostKeyPolicy::KnownHostsFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Invalid(format!("cannot read known_hosts {}: {e}", path.display()))
                })?;
                known_hosts(&text)
            }
            HostKeyPolicy::KnownHostsLines(text) => known_hosts(text),
        }
    }

    /// Decides whether `key_blob`, shown by `host:port`, is trusted.
    pub fn check(&self, host: &str, port: u16, key_blob: &[u8]) -> Result<(), HostKeyRejection> {
        let presented = sha256_fingerprint(key_blob);
        let name = lookup_name(host, port);
        let for_host: Vec<&KnownHost> = self
            .known_hosts
            .iter()
            .filter(|k| k.marker != Some(Marker::CertAuthority) && k.matches_host(&name))
            .collect();
        // Revocation wins over any pin, and applies whatever host the line names.
        if self
            .known_hosts
            .iter()
            .any(|k| k.marker == Some(Marker::Revoked) && k.key_blob == key_blob)
        {
            return Err(HostKeyRejection::Revoked { presented });
        }
        let digest: [u8; 32] = Sha256::digest(key_blob).into();
        let pinned = self.fingerprints.contains(&digest)
            || for_host
                .iter()
                .any(|k| k.marker.is_none() && k.key_blob == key_blob);
        if pinned {
            return Ok(());
        }
        if self.fingerprints.is_empty() && for_host.iter().all(|k| k.marker.is_some()) {
            Err(HostKeyRejection::Unknown { presented })
        } else {
            Err(HostKeyRejection::Mismatch { presented })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically valid ed25519 public-key blob with the given key bytes.
    fn blob(fill: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&11u32.to_be_bytes());
        b.extend_from_slice(b"ssh-ed25519");
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[fill; 32]);
        b
    }

    fn line(hosts: &str, fill: u8) -> String {
        format!(
            "{hosts} ssh-ed25519 {} comment here",
            STANDARD.encode(blob(fill))
        )
    }

    #[test]
    fn fingerprint_matches_openssh_format() {
        // Same digest through ssh-key's own implementation.
        let key = russh::keys::PublicKey::from_bytes(&blob(7)).unwrap();
        let theirs = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        assert_eq!(sha256_fingerprint(&blob(7)), theirs);
        assert!(theirs.starts_with("SHA256:") && !theirs.ends_with('='));
        assert_eq!(theirs.len(), "SHA256:".len() + 43);
    }

    #[test]
    fn fingerprint_pins_parse_with_or_without_prefix_and_padding() {
        let fp = sha256_fingerprint(&blob(1));
        let digest: [u8; 32] = Sha256::digest(blob(1)).into();
        assert_eq!(parse_sha256_fingerprint(&fp).unwrap(), digest);
        assert_eq!(
            parse_sha256_fingerprint(&format!(" {fp}= ")).unwrap(),
            digest
        );
        assert_eq!(
            parse_sha256_fingerprint(&fp["SHA256:".len()..]).unwrap(),
            digest
        );
        assert_eq!(
            parse_sha256_fingerprint(&fp.replace("SHA256", "sha256")).unwrap(),
            digest
        );
        for bad in ["MD5:aa:bb", "SHA256:not base64!", "SHA256:AAAA", ""] {
            assert!(parse_sha256_fingerprint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn known_hosts_lines_parse() {
        assert_eq!(parse_known_hosts_line("").unwrap(), None);
        assert_eq!(parse_known_hosts_line("   # comment").unwrap(), None);
        let k = parse_known_hosts_line(&line("rds.lan,10.0.0.5", 1))
            .unwrap()
            .unwrap();
        assert_eq!(k.patterns, ["rds.lan", "10.0.0.5"]);
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.marker, None);
        let tabbed = line("rds.lan", 1).replace(' ', "\t");
        assert!(parse_known_hosts_line(&tabbed).unwrap().is_some());
        let r = parse_known_hosts_line(&format!("@revoked {}", line("*", 2)))
            .unwrap()
            .unwrap();
        assert_eq!(r.marker, Some(Marker::Revoked));
        for bad in [
            "rds.lan".to_owned(),
            "rds.lan ssh-ed25519".to_owned(),
            "rds.lan ssh-ed25519 !!!".to_owned(),
            line("rds.lan", 1).replace("ssh-ed25519 ", "ssh-rsa "),
            format!("@bogus {}", line("x", 1)),
        ] {
            assert!(parse_known_hosts_line(&bad).is_err(), "{bad}");
        }
        let file = format!("# pins\n\n{}\n{}\n", line("a", 1), line("b", 2));
        assert_eq!(parse_known_hosts(&file).unwrap().len(), 2);
    }

    #[test]
    fn host_patterns() {
        let k = |hosts: &str| parse_known_hosts_line(&line(hosts, 1)).unwrap().unwrap();
        assert!(k("rds.lan").matches_host("rds.lan"));
        assert!(k("RDS.lan").matches_host("rds.LAN"));
        assert!(!k("rds.lan").matches_host("rds.lan2"));
        assert!(k("[rds.lan]:2222").matches_host(&lookup_name("rds.lan", 2222)));
        assert!(!k("rds.lan").matches_host(&lookup_name("rds.lan", 2222)));
        assert!(k("*.lan").matches_host("rds.lan"));
        assert!(k("10.0.0.?").matches_host("10.0.0.5"));
        assert!(!k("10.0.0.?").matches_host("10.0.0.55"));
        assert!(k("*").matches_host("anything"));
        assert!(!k("*.lan,!bad.lan").matches_host("bad.lan"));
        assert!(k("*.lan,!bad.lan").matches_host("good.lan"));
        assert!(k("a*b*c").matches_host("aXXbYYc"));
        assert!(!k("a*b*c").matches_host("aXXbYY"));
    }

    #[test]
    fn hashed_host_entries() {
        // Build a hashed entry the way `ssh-keygen -H` does.
        let salt = [9u8; 20];
        let name = lookup_name("10.0.0.5", 2222);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        let hashed = format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(tag.as_ref())
        );
        let k = parse_known_hosts_line(&line(&hashed, 3)).unwrap().unwrap();
        assert!(k.matches_host(&name));
        assert!(!k.matches_host("10.0.0.5"));
        assert!(!k.matches_host("[10.0.0.6]:2222"));
        let broken = parse_known_hosts_line(&line("|1|@@|@@", 3))
            .unwrap()
            .unwrap();
        assert!(!broken.matches_host(&name));
    }

    #[test]
    fn pin_decisions() {
        let fp_pins = HostKeyPins {
            fingerprints: vec![Sha256::digest(blob(1)).into()],
            known_hosts: vec![],
        };
        assert!(fp_pins.check("h", 22, &blob(1)).is_ok());
        assert!(matches!(
            fp_pins.check("h", 22, &blob(2)),
            Err(HostKeyRejection::Mismatch { .. })
        ));

        let kh = HostKeyPins {
            fingerprints: vec![],
            known_hosts: parse_known_hosts(&format!(
                "{}\n{}\n@revoked {}\n",
                line("[rds]:2222", 1),
                line("other", 2),
                line("*", 4)
            ))
            .unwrap(),
        };
        assert!(kh.check("rds", 2222, &blob(1)).is_ok());
        assert!(matches!(
            kh.check("rds", 2222, &blob(2)),
            Err(HostKeyRejection::Mismatch { .. })
        ));
        assert!(matches!(
            kh.check("rds", 22, &blob(1)),
            Err(HostKeyRejection::Unknown { .. })
        ));
        assert!(matches!(
            kh.check("rds", 2222, &blob(4)),
            Err(HostKeyRejection::Revoked { .. })
        ));
        let none = HostKeyPins::default();
        let Err(rej) = none.check("h", 22, &blob(1)) else {
            panic!("accepted")
        };
        let err = rej.into_error("h:22");
        assert!(matches!(err, Error::Unauthenticated(_)));
        assert!(
            err.message().contains(&sha256_fingerprint(&blob(1))),
            "{err}"
        );
    }
}
