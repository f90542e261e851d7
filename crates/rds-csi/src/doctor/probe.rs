//! Looking at the RDS before logging in: is the port open, which SSH host key or TLS
//! certificate does it present, does a CA vouch for that certificate. Every probe has a
//! deadline, and none sends a credential.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use routeros::tls::LeafVerifier;
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Where a probe leaves what it saw.
type Seen<T> = Arc<Mutex<Option<T>>>;

/// Why a TCP connection was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpFailure {
    /// The name did not resolve.
    Resolve(String),
    /// Something answered that nothing listens on the port.
    Refused,
    /// Nothing answered before the deadline (filtered, wrong address, host down).
    NoAnswer(Duration),
    Other(String),
}

/// A TCP connection was accepted: by which address, after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached {
    pub peer: SocketAddr,
    pub connect_time: Duration,
}

/// Opens (and closes) one TCP connection to `address:port`, trying each resolved address.
pub async fn tcp_connect(
    address: &str,
    port: u16,
    deadline: Duration,
) -> Result<Reached, TcpFailure> {
    let attempt = async {
        let peers: Vec<SocketAddr> = tokio::net::lookup_host((address, port))
            .await
            .map_err(|e| TcpFailure::Resolve(e.to_string()))?
            .collect();
        let mut last = TcpFailure::Resolve("the name has no address".into());
        for peer in peers {
            let started = Instant::now();
            match TcpStream::connect(peer).await {
                Ok(_) => {
                    return Ok(Reached {
                        peer,
                        connect_time: started.elapsed(),
                    });
                }
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = TcpFailure::Refused;
                }
                Err(error) => last = TcpFailure::Other(format!("{peer}: {error}")),
            }
        }
        Err(last)
    };
    timeout(deadline, attempt)
        .await
        .unwrap_or(Err(TcpFailure::NoAnswer(deadline)))
}

/// The SSH host key `address:port` presents, as its wire-format blob. The key exchange is
/// completed (the server proves it holds the key) and the connection refused right after, so
/// no credential is ever sent.
pub async fn ssh_host_key(address: &str, port: u16, deadline: Duration) -> Result<Vec<u8>, String> {
    let seen = Arc::new(Mutex::new(None));
    let handler = KeyCapture(seen.clone());
    let config = Arc::new(client::Config::default());
    let outcome = timeout(deadline, client::connect(config, (address, port), handler)).await;
    if let Some(key) = seen.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return key;
    }
    Err(match outcome {
        Err(_) => format!("no SSH key exchange within {} s", deadline.as_secs()),
        Ok(Err(error)) => format!("no SSH host key received ({error}): is this an SSH service?"),
        Ok(Ok(_)) => "the SSH server skipped host key verification".to_owned(),
    })
}

/// Records the server's key and refuses it, ending the connection before authentication.
struct KeyCapture(Seen<Result<Vec<u8>, String>>);

impl client::Handler for KeyCapture {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key
                .to_bytes()
                .map_err(|e| format!("unreadable host key: {e}")),
            PublicKeyOrCertificate::Certificate(_) => Err(
                "the device presents an SSH host certificate; only plain host keys can be pinned"
                    .to_owned(),
            ),
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
        Ok(false)
    }
}

/// The leaf certificate (DER) `address:port` presents in a TLS handshake. The handshake is
/// abandoned once the certificate is seen.
pub async fn tls_certificate(
    address: &str,
    port: u16,
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    let seen: Seen<Vec<u8>> = Arc::new(Mutex::new(None));
    // Records the leaf certificate and stops the handshake there.
    let capture = LeafVerifier::new({
        let seen = seen.clone();
        move |leaf: &CertificateDer<'_>| {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(leaf.to_vec());
            Err(rustls::Error::General("certificate recorded".into()))
        }
    });
    let config = rustls::ClientConfig::builder_with_provider(routeros::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(capture))
        .with_no_client_auth();
    let outcome = handshake(address, port, config, deadline).await;
    if let Some(der) = seen.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Ok(der);
    }
    Err(match outcome {
        Ok(()) => "the TLS handshake completed without a certificate".to_owned(),
        Err(error) => format!("no TLS certificate received ({error}): is this an HTTPS service?"),
    })
}

/// Whether the CA bundle `ca_pem` vouches for the certificate `address:port` presents, for
/// that host name, exactly as the REST client will check it.
pub async fn tls_verify_with_ca(
    address: &str,
    port: u16,
    ca_pem: Vec<u8>,
    deadline: Duration,
) -> Result<(), String> {
    let config = routeros::tls::client_config(&routeros::tls::TlsTrust::CaPem(ca_pem))
        .map_err(|e| e.message().to_owned())?;
    handshake(address, port, config, deadline).await
}

async fn handshake(
    address: &str,
    port: u16,
    config: rustls::ClientConfig,
    deadline: Duration,
) -> Result<(), String> {
    let name = ServerName::try_from(address.to_owned())
        .map_err(|e| format!("{address:?} is not a TLS server name: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = TcpStream::connect((address, port))
            .await
            .map_err(|e| e.to_string())?;
        connector.connect(name, tcp).await.map_err(|error| {
            routeros::tls::find_tls_error(&error)
                .map(|tls| tls.to_string())
                .unwrap_or_else(|| error.to_string())
        })?;
        Ok(())
    };
    timeout(deadline, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no TLS handshake within {} s", deadline.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_at_once() {
        // Bound but not listening: connections are refused, and no other test can take the
        // port while the socket holds it.
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = closed.local_addr().unwrap().port();
        let started = Instant::now();
        let result = tcp_connect("127.0.0.1", port, Duration::from_secs(5)).await;
        assert_eq!(result, Err(TcpFailure::Refused));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_open_port_is_reached_and_timed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reached = tcp_connect("localhost", port, Duration::from_secs(5)).await;
        let reached = reached.expect("reached");
        assert_eq!(reached.peer.port(), port);
        assert!(reached.connect_time < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_said_so() {
        let result = tcp_connect("no-such-host.invalid", 22, Duration::from_secs(2)).await;
        assert!(
            matches!(
                result,
                Err(TcpFailure::Resolve(_)) | Err(TcpFailure::NoAnswer(_))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_service_that_is_not_ssh_or_tls_is_named_as_such() {
        // A listener that accepts and says something that is neither SSH nor TLS.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let ssh = ssh_host_key("127.0.0.1", port, Duration::from_secs(5)).await;
        assert!(ssh.unwrap_err().contains("is this an SSH service?"));
        let tls = tls_certificate("127.0.0.1", port, Duration::from_secs(5)).await;
        assert!(tls.unwrap_err().contains("is this an HTTPS service?"));
    }
}
