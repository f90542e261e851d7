//! SSH transport: one russh connection, one exec channel per command.
//!
//! Reads use `:serialize to=json`, writes are batched with their read-back into one exec.
//! The connection is made lazily and remade lazily: when a command finds it dead (closed
//! handle, failed channel open) it reconnects, after an exponential backoff if earlier
//! attempts failed. No background task probes the device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelWriteHalf};
use tokio::time::Instant;

use crate::access::ExportAccess;
use crate::command;
use crate::config::{Backoff, HostKeyPolicy, SshAuth};
use crate::error::{Error, Result};
use crate::hostkey::{HostKeyPins, HostKeyRejection, sha256_fingerprint};
use crate::inventory::Inventory;
use crate::model::{
    AddReport, CreateDisk, DiskItem, FileDisk, FileEntry, ImageRemoval, Pool, SystemInfo,
    VolumeFacts,
};
use crate::reply::{self, ExecOutput, expect_values};
use crate::transport::Transport;
use crate::validate::{DirPath, FilePath, ItemId, Slot};

/// Upper bound on one command's output; far above any real reply, it only stops a runaway.
const MAX_OUTPUT: usize = 64 << 20;

/// Commands one connection carries before the next goes over a new one (those in flight
/// finish on the old, which ends with them). A server may keep something of every channel
/// until its connection ends (the simulator's SSH library keeps about 2.5 KB of each
/// channel it closed), so a connection used for days would grow the server; a new one
/// every thousand commands costs one handshake and one version read.
pub const COMMANDS_PER_CONNECTION: u32 = 1000;

/// Credentials ready to use (key files are read once, at construction).
enum Credentials {
    Password(crate::config::Secret),
    Key(Arc<PrivateKey>),
}

/// Settings of an [`SshTransport`].
pub struct SshSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub host_key: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
}

pub struct SshTransport {
    host: String,
    port: u16,
    user: String,
    credentials: Credentials,
    /// `None` = insecure mode (any host key, logged).
    pins: Option<Arc<HostKeyPins>>,
    russh_config: Arc<client::Config>,
    connect_timeout: Duration,
    backoff: Backoff,
    state: tokio::sync::Mutex<ConnState>,
    epoch: AtomicU64,
}

#[derive(Default)]
struct ConnState {
    handle: Option<Arc<Handle<HostKeyCheck>>>,
    /// Commands handed the current connection.
    commands: u32,
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<Error>,
}

impl SshTransport {
    /// Loads the key and pins; no network I/O happens until the first command.
    pub fn new(settings: SshSettings) -> Result<Self> {
        let credentials = match settings.auth {
            SshAuth::Password(p) => Credentials::Password(p),
            SshAuth::KeyFile { path, passphrase } => {
                let key =
                    russh::keys::load_secret_key(&path, passphrase.as_ref().map(|p| p.expose()))
                        .map_err(|e| {
                            Error::Invalid(format!("cannot load SSH key {}: {e}", path.display()))
                        })?;
                Credentials::Key(Arc::new(key))
            }
        };
        if matches!(settings.host_key, HostKeyPolicy::Insecure) {
            tracing::warn!(
                host = %settings.host,
                "INSECURE: SSH host key checking is disabled; any server will be trusted"
            );
        }
        let pins = HostKeyPins::from_policy(&settings.host_key)?.map(Arc::new);
        let russh_config = client::Config {
            // Liveness is learnt from failed commands, never from background traffic.
            inactivity_timeout: None,
            keepalive_interval: None,
            nodelay: true,
            ..Default::default()
        };
        Ok(Self {
            host: settings.host,
            port: settings.port,
            user: settings.user,
            credentials,
            pins,
            russh_config: Arc::new(russh_config),
            connect_timeout: settings.connect_timeout,
            backoff: settings.backoff,
            state: tokio::sync::Mutex::new(ConnState::default()),
            epoch: AtomicU64::new(0),
        })
    }

    fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The live connection, (re)connecting if there is none. After a failed attempt, commands
    /// fail fast with that attempt's error until the backoff delay has passed.
    async fn connection(&self) -> Result<Arc<Handle<HostKeyCheck>>> {
        let mut state = self.state.lock().await;
        if let Some(handle) = &state.handle {
            if handle.is_closed() {
                tracing::info!(target_addr = %self.target(), "SSH connection closed; reconnecting");
            } else if state.commands < COMMANDS_PER_CONNECTION {
                let handle = handle.clone();
                state.commands += 1;
                return Ok(handle);
            } else {
                tracing::debug!(target_addr = %self.target(), "SSH connection retired after its commands; connecting anew");
            }
            state.handle = None;
        }
        if let Some(at) = state.next_attempt {
            let now = Instant::now();
            if at > now {
                let wait = at - now;
                let last = state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| Error::Unavailable("SSH connect failed".into()));
                return Err(last.with_suffix(&format!(
                    " (next reconnect attempt in {} ms)",
                    wait.as_millis()
                )));
            }
        }
        match tokio::time::timeout(self.connect_timeout, self.connect()).await {
            Ok(Ok(handle)) => {
                let handle = Arc::new(handle);
                state.handle = Some(handle.clone());
                state.commands = 1;
                state.failures = 0;
                state.next_attempt = None;
                state.last_error = None;
                self.epoch.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(target_addr = %self.target(), "SSH connected");
                Ok(handle)
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e,
                    _ => Error::Unavailable(format!(
                        "SSH connect to {} timed out after {} ms",
                        self.target(),
                        self.connect_timeout.as_millis()
                    )),
                };
                state.failures = state.failures.saturating_add(1);
                let delay = self.backoff.delay(state.failures, rand::random::<f64>());
                state.next_attempt = Some(Instant::now() + delay);
                state.last_error = Some(error.clone());
                tracing::warn!(
                    target_addr = %self.target(),
                    failures = state.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %error,
                    "SSH connect failed"
                );
                Err(error)
            }
        }
    }

    /// Drops `dead` if it is still the current connection (another task may have replaced it).
    async fn forget(&self, dead: &Arc<Handle<HostKeyCheck>>) {
        let mut state = self.state.lock().await;
        if state.handle.as_ref().is_some_and(|h| Arc::ptr_eq(h, dead)) {
            state.handle = None;
        }
    }

    async fn connect(&self) -> Result<Handle<HostKeyCheck>> {
        let rejection = Arc::new(Mutex::new(None));
        let checker = HostKeyCheck {
            host: self.host.clone(),
            port: self.port,
            pins: self.pins.clone(),
            rejection: rejection.clone(),
        };
        let connected = client::connect(
            self.russh_config.clone(),
            (self.host.as_str(), self.port),
            checker,
        )
        .await;
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(e) => {
                let rejected = rejection.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(match rejected {
                    Some(r) => r.into_error(&self.target()),
                    None => Error::Unavailable(format!("SSH connect to {}: {e}", self.target())),
                });
            }
        };
        let unavailable = |e: russh::Error| {
            Error::Unavailable(format!("SSH authentication with {}: {e}", self.target()))
        };
        let result = match &self.credentials {
            Credentials::Password(p) => handle
                .authenticate_password(self.user.as_str(), p.expose())
                .await
                .map_err(unavailable)?,
            Credentials::Key(key) => {
                // RSA keys sign with the best hash the server announces (SHA-2 if it says nothing).
                let hash = if key.algorithm().is_rsa() {
                    match handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(unavailable)?
                    {
                        Some(alg) => alg,
                        None => Some(russh::keys::HashAlg::Sha256),
                    }
                } else {
                    None
                };
                handle
                    .authenticate_publickey(
                        self.user.as_str(),
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await
                    .map_err(unavailable)?
            }
        };
        if !result.success() {
            return Err(Error::Unauthenticated(format!(
                "SSH authentication as {:?} refused by {}",
                self.user,
                self.target()
            )));
        }
        Ok(handle)
    }

    /// Runs one script in one exec channel.
    pub async fn exec(&self, script: &str) -> Result<ExecOutput> {
        let mut stdout = Vec::new();
        let mut output = self
            .exec_into(script, &mut |data| append(&mut stdout, data))
            .await?;
        output.stdout = stdout;
        Ok(output)
    }

    /// Runs one script in one exec channel, handing its standard output to `stdout` as it
    /// arrives (the output returned has none).
    async fn exec_into(
        &self,
        script: &str,
        stdout: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
    ) -> Result<ExecOutput> {
        let mut reconnected = false;
        loop {
            let handle = self.connection().await?;
            // A connection that silently stopped answering (no RST, e.g. a powered-off device)
            // would leave the open pending until TCP gives up; bound it and treat it as dead.
            let opened =
                tokio::time::timeout(self.connect_timeout, handle.channel_open_session()).await;
            let failure = match opened {
                Ok(Ok(channel)) => {
                    return run_channel(channel, script, &self.target(), stdout).await;
                }
                Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    // The connection is alive; the device declined another session.
                    return Err(Error::Unavailable(format!(
                        "{} refused a new SSH session ({reason:?}); its session limit may be reached",
                        self.target()
                    )));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "no answer to a session request within {} ms",
                    self.connect_timeout.as_millis()
                ),
            };
            // Nothing was sent, so one retry on a fresh connection is safe.
            self.forget(&handle).await;
            if reconnected {
                return Err(Error::Unavailable(format!(
                    "SSH session to {}: {failure}",
                    self.target()
                )));
            }
            tracing::info!(target_addr = %self.target(), error = %failure, "SSH connection unusable; reconnecting");
            reconnected = true;
        }
    }

    async fn query(&self, script: &str, values: usize) -> Result<Vec<serde_json::Value>> {
        let output = self.exec(script).await?;
        expect_values(&output, values)
    }

    async fn query_one(&self, script: &str) -> Result<serde_json::Value> {
        let mut values = self.query(script, 1).await?;
        Ok(values.pop().unwrap_or(serde_json::Value::Null))
    }

    async fn read_disk(&self, script: &str, slot: &Slot) -> Result<Option<FileDisk>> {
        let value = self.query_one(script).await?;
        reply::at_most_one(value, &format!("slot {slot}"))?
            .map(|obj| reply::file_disk(&obj))
            .transpose()
    }
}

/// Closes the channel if the command future is dropped (deadline) before the device closed
/// it, so an abandoned command does not keep holding one of the device's sessions.
struct CloseOnDrop {
    write: Option<ChannelWriteHalf<Msg>>,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(write) = self.write.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = write.close().await;
            });
        }
    }
}

async fn run_channel(
    channel: russh::Channel<Msg>,
    script: &str,
    target: &str,
    stdout: &mut (dyn FnMut(&[u8]) -> Result<()> + Send),
) -> Result<ExecOutput> {
    let (mut read, write) = channel.split();
    let lost = |what: &str| {
        Error::Unavailable(format!(
            "SSH connection to {target} lost {what}; the command may or may not have run"
        ))
    };
    write
        .exec(true, script.as_bytes())
        .await
        .map_err(|_| lost("while sending the command"))?;
    let mut guard = CloseOnDrop { write: Some(write) };
    let mut output = ExecOutput::default();
    let mut ended = false;
    while let Some(message) = read.wait().await {
        match message {
            ChannelMsg::Data { data } => stdout(&data)?,
            ChannelMsg::ExtendedData { data, ext: 1 } => append(&mut output.stderr, &data)?,
            ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
            ChannelMsg::Eof => ended = true,
            ChannelMsg::Close => {
                ended = true;
                guard.write = None;
                break;
            }
            ChannelMsg::Failure => {
                return Err(Error::Invalid(format!("{target} refused the exec request")));
            }
            _ => {}
        }
    }
    if !ended && output.exit_status.is_none() {
        return Err(lost("before the command finished"));
    }
    Ok(output)
}

fn append(buffer: &mut Vec<u8>, data: &[u8]) -> Result<()> {
    if buffer.len() + data.len() > MAX_OUTPUT {
        return Err(Error::Protocol(format!(
            "reply larger than {MAX_OUTPUT} bytes"
        )));
    }
    buffer.extend_from_slice(data);
    Ok(())
}

/// russh handler that applies the host-key policy and remembers why it refused a key.
struct HostKeyCheck {
    host: String,
    port: u16,
    pins: Option<Arc<HostKeyPins>>,
    rejection: Arc<Mutex<Option<HostKeyRejection>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Certificates would need a CA policy; we pin plain keys only.
            PublicKeyOrCertificate::Certificate(cert) => {
                let blob = russh::keys::PublicKey::new(cert.public_key().clone(), "")
                    .to_bytes()
                    .unwrap_or_default();
                if self.pins.is_none() {
                    tracing::warn!(host = %self.host, fingerprint = %sha256_fingerprint(&blob), "INSECURE: accepting unverified SSH host certificate");
                    return Ok(true);
                }
                return self.refuse(HostKeyRejection::Unknown {
                    presented: sha256_fingerprint(&blob),
                });
            }
        };
        let blob = key.to_bytes().map_err(|_| russh::Error::UnknownKey)?;
        match &self.pins {
            None => {
                tracing::warn!(
                    host = %self.host,
                    port = self.port,
                    fingerprint = %sha256_fingerprint(&blob),
                    "INSECURE: accepting the device's SSH host key without verification; pin this fingerprint"
                );
                Ok(true)
            }
            Some(pins) => match pins.check(&self.host, self.port, &blob) {
                Ok(()) => Ok(true),
                Err(rejection) => self.refuse(rejection),
            },
        }
    }
}

impl HostKeyCheck {
    fn refuse(&self, rejection: HostKeyRejection) -> Result<bool, russh::Error> {
        tracing::error!(host = %self.host, port = self.port, ?rejection, "SSH host key refused");
        *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(rejection);
        Ok(false)
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn connection_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    async fn system_info(&self) -> Result<SystemInfo> {
        let mut values = self.query(&command::system_info(), 2).await?.into_iter();
        let (Some(resource), Some(identity)) = (values.next(), values.next()) else {
            return Err(Error::Protocol("system info reply incomplete".into()));
        };
        reply::system_info(
            &reply::single_object(resource, "/system resource")?,
            &reply::single_object(identity, "/system identity")?,
        )
    }

    async fn slot_items(&self, slot: &Slot) -> Result<Vec<DiskItem>> {
        let value = self.query_one(&command::get_disk(slot)).await?;
        reply::items(value)?.iter().map(reply::disk_item).collect()
    }

    /// Read as the listing arrives (see [`reply::ListingReader`]).
    async fn list_disks(&self, prefix: &str) -> Result<Vec<FileDisk>> {
        let mut reader = reply::ListingReader::new(MAX_OUTPUT);
        let output = self
            .exec_into(&command::list_disks(prefix), &mut |data| reader.push(data))
            .await?;
        reader.finish(output)
    }

    async fn create_disk(&self, request: CreateDisk<'_>) -> Result<AddReport> {
        let output = self.exec(&command::create_disk(&request)).await?;
        reply::add_report(reply::script_values(&output)?)
    }

    async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk> {
        // `set [find ...]` on no match is a silent no-op; the empty read-back tells.
        self.read_disk(&command::grow_disk(slot, size), slot)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no disk with slot {slot}")))
    }

    async fn export_access(&self, slot: &Slot) -> Result<Option<ExportAccess>> {
        let value = self.query_one(&command::get_disk(slot)).await?;
        reply::at_most_one(value, &format!("slot {slot}"))?
            .map(|obj| reply::export_access(&obj))
            .transpose()
    }

    async fn set_export_access(&self, slot: &Slot, value: &str) -> Result<ExportAccess> {
        // `set [find ...]` on no match is a silent no-op; the empty read-back tells.
        let read = self
            .query_one(&command::set_allow_host_name(slot, value))
            .await?;
        reply::at_most_one(read, &format!("slot {slot}"))?
            .map(|obj| reply::export_access(&obj))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("no disk with slot {slot}")))
    }

    async fn volume_facts(&self, slot: &Slot, dir: &DirPath) -> Result<VolumeFacts> {
        let values = self.query(&command::volume_facts(slot, dir), 3).await?;
        reply::volume_facts(values, &format!("{slot}.img"))
    }

    async fn inventory(&self, dir: &DirPath) -> Result<Inventory> {
        let values = self.query(&command::inventory(dir), 3).await?;
        crate::inventory::parse(values, dir.as_str())
    }

    async fn remove_disk(
        &self,
        id: &ItemId,
        image: Option<&FilePath>,
    ) -> Result<Option<ImageRemoval>> {
        let output = self.exec(&command::remove_disk(id, image)).await?;
        let removal = reply::image_removal(reply::script_values(&output)?)?;
        Ok(image.map(|_| removal))
    }

    async fn remove_unused_image(&self, path: &FilePath) -> Result<ImageRemoval> {
        let output = self.exec(&command::remove_unused_image(path)).await?;
        reply::image_removal(reply::script_values(&output)?)
    }

    async fn get_file(&self, path: &FilePath) -> Result<Option<FileEntry>> {
        let value = self.query_one(&command::get_file(path)).await?;
        reply::at_most_one(value, &format!("file {path}"))?
            .map(|obj| reply::file_entry(&obj))
            .transpose()
    }

    async fn remove_file(&self, path: &FilePath) -> Result<()> {
        self.query(&command::remove_file(path), 0).await.map(drop)
    }

    async fn pool(&self, mount_point: &str) -> Result<Pool> {
        let value = self.query_one(&command::pool(mount_point)).await?;
        let obj = reply::at_most_one(value, &format!("mount-point {mount_point}"))?
            .ok_or_else(|| Error::NotFound(format!("no disk is mounted at {mount_point}")))?;
        reply::pool(&obj)
    }

    async fn system_health(&self) -> Result<crate::health::DeviceHealth> {
        crate::health::device_health(self.query_one(&command::system_health()).await?)
    }

    async fn query_script(
        &self,
        script: &str,
        values: Option<usize>,
    ) -> Result<Vec<serde_json::Value>> {
        match values {
            Some(n) => self.query(script, n).await,
            None => reply::script_values(&self.exec(script).await?),
        }
    }

    async fn run_script(&self, script: &str) -> Result<ExecOutput> {
        self.exec(script).await
    }
}
