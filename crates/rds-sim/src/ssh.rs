//! The SSH server: exec requests run RouterOS scripts; no PTY or shell.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Secret;
use crate::engine::{Engine, ExecReply};
use crate::faults::SessionPermit;
use crate::kill::{KillSwitch, KillableStream};

/// Who may log in.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub user: String,
    pub password: Option<Secret>,
    pub keys: Vec<PublicKey>,
    pub insecure_no_auth: bool,
}

impl AuthPolicy {
    /// RouterOS ignores `+opts` after the login name (`admin+ct80w`).
    fn user_matches(&self, login: &str) -> bool {
        login.split('+').next() == Some(self.user.as_str())
    }

    pub fn password_ok(&self, login: &str, password: &str) -> bool {
        self.user_matches(login) && self.password.as_ref().is_some_and(|p| p.matches(password))
    }

    fn key_ok(&self, login: &str, key: &PublicKey) -> bool {
        self.user_matches(login) && self.keys.iter().any(|k| k.key_data() == key.key_data())
    }

    fn methods(&self) -> MethodSet {
        let mut kinds = Vec::new();
        if self.insecure_no_auth {
            kinds.push(MethodKind::None);
        }
        if self.password.is_some() {
            kinds.push(MethodKind::Password);
        }
        if !self.keys.is_empty() {
            kinds.push(MethodKind::PublicKey);
        }
        MethodSet::from(kinds.as_slice())
    }
}

/// The russh server configuration for a host key and policy.
pub fn server_config(host_key: PrivateKey, policy: &AuthPolicy) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-ROSSSH".into()),
        methods: policy.methods(),
        keys: vec![host_key],
        // Clients probe with "none" first; answer that at once.
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        ..Default::default()
    }
}

const SHELL_NOTICE: &str = "This RDS simulator runs commands only: ssh user@host '/disk print'\r\n";

/// Accepts SSH connections until `shutdown` turns true; then drops every
/// live connection.
pub async fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    policy: Arc<AuthPolicy>,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let server_kill = Arc::new(KillSwitch::default());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "ssh accept failed");
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let kill = Arc::new(KillSwitch::default());
                let stream = KillableStream::new(tcp, Arc::clone(&kill));
                let handler = Connection {
                    engine: Arc::clone(&engine),
                    policy: Arc::clone(&policy),
                    kill: Arc::clone(&kill),
                    peer,
                    opened: HashMap::new(),
                };
                let config = Arc::clone(&config);
                let server_kill = Arc::clone(&server_kill);
                connections.spawn(async move {
                    let run = async {
                        match russh::server::run_stream(config, stream, handler).await {
                            Ok(session) => {
                                if let Err(e) = session.await {
                                    tracing::debug!(%peer, error = %e, "ssh connection ended");
                                }
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "ssh handshake failed"),
                        }
                    };
                    tokio::pin!(run);
                    tokio::select! {
                        () = &mut run => {}
                        () = server_kill.killed() => {
                            // The session runs in russh's own task: end it
                            // through its stream, then wait for it.
                            kill.kill();
                            run.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    server_kill.kill();
    while connections.join_next().await.is_some() {}
}

struct Connection {
    engine: Arc<Engine>,
    policy: Arc<AuthPolicy>,
    kill: Arc<KillSwitch>,
    peer: SocketAddr,
    /// Session slots of channels opened but not yet running a command.
    opened: HashMap<ChannelId, SessionPermit>,
}

impl Connection {
    /// A refusal that leaves every method open for another try (russh
    /// would otherwise drop a method after its first failure; OpenSSH
    /// servers allow retries up to a limit, which russh also enforces).
    fn verdict(&self, accepted: bool) -> Auth {
        if accepted {
            Auth::Accept
        } else {
            Auth::Reject {
                proceed_with_methods: Some(self.policy.methods()),
                partial_success: false,
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        Ok(self.verdict(self.policy.insecure_no_auth && self.policy.user_matches(user)))
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = self.policy.password_ok(user, password);
        if !ok {
            tracing::info!(peer = %self.peer, user, "ssh password login refused");
        }
        Ok(self.verdict(ok))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(self.policy.key_ok(user, offer.public_key)))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(self.policy.key_ok(user, key.public_key)))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.engine.admit() {
            Some(permit) => {
                self.opened.insert(channel.id(), permit);
                reply.accept().await;
            }
            None => {
                tracing::info!(peer = %self.peer, "session refused: too many sessions");
                reply.reject(ChannelOpenFailure::ResourceShortage).await;
            }
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.opened.remove(&channel);
        session.channel_success(channel)?;
        session.data(channel, SHELL_NOTICE)?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(permit) = self.opened.remove(&channel) else {
            // One command per channel, as on the device.
            return session.channel_failure(channel);
        };
        session.channel_success(channel)?;
        let text = String::from_utf8_lossy(data).into_owned();
        tracing::debug!(peer = %self.peer, command = %text, "ssh exec");
        let engine = Arc::clone(&self.engine);
        let kill = Arc::clone(&self.kill);
        let handle = session.handle();
        // Commands of one connection run concurrently, like separate sessions.
        tokio::spawn(async move {
            match engine.exec(text).await {
                ExecReply::Drop => {
                    tracing::info!("fault: dropping the connection");
                    kill.kill();
                }
                ExecReply::Output {
                    stdout,
                    exit_status,
                } => {
                    if !stdout.is_empty() {
                        let _ = handle.data(channel, stdout.into_bytes()).await;
                    }
                    let _ = handle.exit_status_request(channel, exit_status).await;
                    let _ = handle.eof(channel).await;
                    // Free the slot before the client learns the channel is closed,
                    // so it can open the next one at once.
                    drop(permit);
                    let _ = handle.close(channel).await;
                }
            }
        });
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.opened.remove(&channel);
        Ok(())
    }
}
