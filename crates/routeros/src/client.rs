//! The façade: validation, version decisions, read-back checks, concurrency bound, deadlines
//! and tracing, in one place for both transports.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::access::AllowedHosts;
use crate::breaker::{self, Breaker, BreakerConfig, BreakerState};
use crate::config::{ClientConfig, TlsPolicy, TransportConfig};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::judge::{check_slots, judge_add};
use crate::model::{
    CreateDisk, CreateOutcome, DiskItem, DiskSpec, FileDisk, FileEntry, ImageRemoval, Pool,
    SystemInfo, VolumeFacts, verify_grown,
};
use crate::reply::ExecOutput;
use crate::rest::{RestSettings, RestTransport};
use crate::ssh::{SshSettings, SshTransport};
use crate::tls::{TlsTrust, parse_cert_fingerprint};
use crate::transport::Transport;
use crate::validate::{DirPath, FilePath, ItemId, Slot, check_name, check_slot_prefix};
use crate::version::RouterOsVersion;

/// Limits applied to every command.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrency: usize,
    pub command_timeout: Duration,
    pub breaker: BreakerConfig,
}

/// A ticket of the breaker not yet recorded; abandoned when dropped so.
struct PendingTicket<'a> {
    client: &'a Client,
    ticket: Option<breaker::Ticket>,
}

impl Drop for PendingTicket<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.client.breaker().abandon(ticket);
        }
    }
}

/// A RouterOS client. Cheap to clone; clones share the connection and the limits.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    permits: Semaphore,
    command_timeout: Duration,
    /// Version of the device, tagged with the transport's connection epoch.
    version: std::sync::Mutex<Option<(u64, RouterOsVersion)>>,
    /// Serialises version detection so a burst of first commands asks the device once.
    version_fetch: tokio::sync::Mutex<()>,
    breaker: std::sync::Mutex<Breaker>,
    /// Told about every command (metrics).
    observer: Option<Arc<dyn CommandObserver>>,
}

/// Hears about every command the client sends, for metrics. Called on the command's path:
/// implementations must not block.
pub trait CommandObserver: Send + Sync {
    /// A command of `verb` starts waiting for a session.
    fn started(&self, verb: &'static str);
    /// It ended after `elapsed` (waiting included); `answered` when the device answered
    /// (with a result or a refusal), false for transport failures and fail-fast rejections.
    fn finished(&self, verb: &'static str, elapsed: Duration, answered: bool);
    /// The breaker is now in `state`.
    fn breaker(&self, state: BreakerState);
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.inner.transport.kind())
            .field("command_timeout", &self.inner.command_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client (loads keys, pins and TLS settings). No network I/O happens until the
    /// first command; use [`Client::connect`] to fail early on bad credentials.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let port = config.effective_port();
        let limits = Limits {
            max_concurrency: config.max_concurrency,
            command_timeout: config.command_timeout,
            breaker: config.breaker,
        };
        let transport: Arc<dyn Transport> = match config.transport {
            TransportConfig::Ssh { auth, host_key } => Arc::new(SshTransport::new(SshSettings {
                host: config.address,
                port,
                user: config.user,
                auth,
                host_key,
                connect_timeout: config.connect_timeout,
                backoff: config.backoff,
            })?),
            TransportConfig::Rest { password, tls } => {
                let trust = match tls {
                    TlsPolicy::CaFile(path) => {
                        TlsTrust::CaPem(std::fs::read(&path).map_err(|e| {
                            Error::Invalid(format!("cannot read CA file {}: {e}", path.display()))
                        })?)
                    }
                    TlsPolicy::CaPem(pem) => TlsTrust::CaPem(pem.into_bytes()),
                    TlsPolicy::Fingerprint(fp) => {
                        TlsTrust::Fingerprint(parse_cert_fingerprint(&fp)?)
                    }
                    TlsPolicy::Insecure => TlsTrust::Insecure,
                };
                Arc::new(RestTransport::new(RestSettings {
                    host: config.address,
                    port,
                    user: config.user,
                    password,
                    trust,
                    connect_timeout: config.connect_timeout,
                    request_timeout: config.command_timeout,
                    max_idle_connections: config.max_concurrency,
                })?)
            }
        };
        Self::with_transport(transport, limits)
    }

    /// Builds a client and reads the device's identity and version, proving reachability,
    /// trust and credentials.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let client = Self::new(config)?;
        client.system_info().await?;
        Ok(client)
    }

    /// A client over any transport (for example a test double).
    pub fn with_transport(transport: Arc<dyn Transport>, limits: Limits) -> Result<Self> {
        if limits.max_concurrency == 0 {
            return Err(Error::Invalid("max_concurrency must be at least 1".into()));
        }
        if limits.command_timeout.is_zero() {
            return Err(Error::Invalid("command_timeout must be positive".into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                permits: Semaphore::new(limits.max_concurrency),
                command_timeout: limits.command_timeout,
                version: std::sync::Mutex::new(None),
                version_fetch: tokio::sync::Mutex::new(()),
                breaker: std::sync::Mutex::new(Breaker::new(limits.breaker)),
                observer: None,
            }),
        })
    }

    /// The same client, telling `observer` about every command. Set before the client is
    /// cloned or used.
    pub fn with_observer(mut self, observer: Arc<dyn CommandObserver>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("observer set before the client is shared")
            .observer = Some(observer);
        self
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker().state()
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // Changed by whole calls; a panic elsewhere leaves it consistent.
        self.inner.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `ssh` or `rest` (or the name of a substituted transport).
    pub fn transport(&self) -> &'static str {
        self.inner.transport.kind()
    }

    /// Runs one transport operation under the concurrency bound and the deadline (which
    /// covers waiting for a permit and reconnecting), inside a tracing span.
    async fn run<T, F>(&self, verb: &'static str, subject: &str, operation: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.run_within(verb, subject, self.inner.command_timeout, operation)
            .await
    }

    /// [`Client::run`] with its own deadline, for commands that last as long as their work.
    async fn run_within<T, F>(
        &self,
        verb: &'static str,
        subject: &str,
        deadline: Duration,
        operation: F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let inner = &self.inner;
        let observer = inner.observer.as_deref();
        if let Some(observer) = observer {
            observer.started(verb);
        }
        let started = Instant::now();
        let admitted = self.breaker().admit(started);
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(rejected) => {
                if let Some(observer) = observer {
                    observer.finished(verb, started.elapsed(), false);
                }
                return Err(Error::Unavailable(format!("{verb} {subject}: {rejected}")));
            }
        };
        // Gives an unfinished probe back if this future is dropped (its caller gave up).
        let mut pending = PendingTicket {
            client: self,
            ticket: Some(ticket),
        };
        let span = tracing::debug_span!(
            "routeros",
            verb,
            subject,
            transport = inner.transport.kind()
        );
        let bounded = async {
            let _permit = inner
                .permits
                .acquire()
                .await
                .map_err(|_| Error::Unavailable("client is shut down".into()))?;
            operation.await
        };
        let outcome = match tokio::time::timeout(deadline, bounded)
            .instrument(span.clone())
            .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "{verb} {subject}: no answer within {} ms",
                deadline.as_millis()
            ))),
        };
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| match &outcome {
            Ok(_) => tracing::debug!(elapsed_ms, "done"),
            Err(error) => tracing::debug!(elapsed_ms, %error, "failed"),
        });
        let answered = !matches!(&outcome, Err(error) if error.is_retryable());
        let heard = if answered {
            breaker::Outcome::Answered
        } else {
            let reason = outcome
                .as_ref()
                .err()
                .map(Error::message)
                .unwrap_or_default();
            breaker::Outcome::TransportFailed(reason.to_owned())
        };
        let (before, after) = {
            let mut breaker = self.breaker();
            let before = breaker.state();
            if let Some(ticket) = pending.ticket.take() {
                breaker.record(ticket, heard, Instant::now());
            }
            (before, breaker.state())
        };
        if before != after {
            match after {
                BreakerState::Open => tracing::warn!(
                    transport = inner.transport.kind(),
                    "the RDS stopped answering: commands fail at once until a probe gets through"
                ),
                BreakerState::Closed => {
                    tracing::info!(transport = inner.transport.kind(), "the RDS answers again")
                }
                BreakerState::HalfOpen => {}
            }
        }
        if let Some(observer) = observer {
            observer.finished(verb, elapsed, answered);
            if before != after {
                observer.breaker(after);
            }
        }
        outcome
    }

    /// Identity and version; refreshes the cached version.
    pub async fn system_info(&self) -> Result<SystemInfo> {
        let transport = &self.inner.transport;
        let info = self.run("system-info", "", transport.system_info()).await?;
        let epoch = transport.connection_epoch();
        *self.inner.version.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((epoch, info.version.clone()));
        Ok(info)
    }

    /// The device's version, read once per connection.
    pub async fn version(&self) -> Result<RouterOsVersion> {
        if let Some(version) = self.cached_version() {
            return Ok(version);
        }
        let _fetching = self.inner.version_fetch.lock().await;
        if let Some(version) = self.cached_version() {
            return Ok(version);
        }
        Ok(self.system_info().await?.version)
    }

    fn cached_version(&self) -> Option<RouterOsVersion> {
        let epoch = self.inner.transport.connection_epoch();
        let cached = self.inner.version.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, v)| v.clone())
    }

    /// Creates an NVMe/TCP-exported file disk, guarded: the device adds it only when no item
    /// holds the slot and no file exists at the image path, and the outcome says which of
    /// those facts it found (one round trip). Nothing here removes anything.
    ///
    /// On RouterOS before 7.21 the NQN cannot be set: the disk is created without it and
    /// reports the slot as its NQN (`NqnSource::SlotName`).
    pub async fn create_file_disk(&self, spec: &DiskSpec) -> Result<CreateOutcome> {
        spec.validate()?;
        let version = self.version().await?;
        version.require_file_disks()?;
        let request = CreateDisk {
            spec,
            send_nqn: version.supports_server_nqn(),
        };
        let transport = &self.inner.transport;
        let report = self
            .run(
                "create-disk",
                spec.slot.as_str(),
                transport.create_disk(request),
            )
            .await?;
        judge_add(&request, report)
    }

    /// Every item holding the slot: file disks and any other kind.
    pub async fn slot_items(&self, slot: &Slot) -> Result<Vec<DiskItem>> {
        let transport = &self.inner.transport;
        let items = self
            .run("slot-items", slot.as_str(), transport.slot_items(slot))
            .await?;
        check_slots(slot, &items)?;
        Ok(items)
    }

    /// The file disk in the slot, if any; another kind of disk there, or several items, are
    /// errors.
    pub async fn get_disk(&self, slot: &Slot) -> Result<Option<FileDisk>> {
        let mut items = self.slot_items(slot).await?;
        if items.len() > 1 {
            return Err(Error::Protocol(format!(
                "{} items hold slot {slot}, expected at most one",
                items.len()
            )));
        }
        match items.pop() {
            None => Ok(None),
            Some(DiskItem::File(disk)) => Ok(Some(disk)),
            Some(DiskItem::Other { kind, .. }) => Err(Error::Invalid(format!(
                "disk {slot} is of type {kind}, not a file disk"
            ))),
        }
    }

    /// A volume's slot items, the files named `<slot>.img` under `dir`, and the file disks
    /// backed by a file of that name (one round trip).
    pub async fn volume_facts(&self, slot: &Slot, dir: &DirPath) -> Result<VolumeFacts> {
        let transport = &self.inner.transport;
        let facts = self
            .run(
                "volume-facts",
                slot.as_str(),
                transport.volume_facts(slot, dir),
            )
            .await?;
        check_slots(slot, &facts.slot_items)?;
        let image_name = format!("{slot}.img");
        let prefix = format!("{dir}/");
        if let Some(stray) = facts
            .images
            .iter()
            .find(|f| !(f.name.starts_with(&prefix) && f.name.ends_with(&image_name)))
        {
            return Err(Error::Protocol(format!(
                "looking for {image_name} under {dir}, the device returned {}",
                stray.name
            )));
        }
        Ok(facts)
    }

    /// The device clock, every file disk and the `.img` files under `dir` (one round trip),
    /// for the orphan reconciler.
    pub async fn inventory(&self, dir: &DirPath) -> Result<Inventory> {
        let transport = &self.inner.transport;
        self.run("inventory", dir.as_str(), transport.inventory(dir))
            .await
    }

    /// File disks whose slot starts with `prefix` (slot characters only; empty = all).
    pub async fn list_disks(&self, prefix: &str) -> Result<Vec<FileDisk>> {
        check_slot_prefix(prefix)?;
        let transport = &self.inner.transport;
        let disks = self
            .run("list-disks", prefix, transport.list_disks(prefix))
            .await?;
        if let Some(stray) = disks.iter().find(|d| !d.slot.starts_with(prefix)) {
            return Err(Error::Protocol(format!(
                "listing prefix {prefix:?} returned disk {}",
                stray.slot
            )));
        }
        Ok(disks)
    }

    /// Grows the disk's backing file to exactly `size` bytes and verifies it. RouterOS refuses
    /// to shrink (`Invalid`).
    pub async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk> {
        if size == 0 {
            return Err(Error::Invalid("invalid size 0".into()));
        }
        self.version().await?.require_file_disks()?;
        let transport = &self.inner.transport;
        let disk = self
            .run("grow-disk", slot.as_str(), transport.grow_disk(slot, size))
            .await?;
        verify_grown(slot, size, &disk)?;
        Ok(disk)
    }

    /// Who may connect to the disk's export; `NotFound` when the slot holds no disk.
    pub async fn export_hosts(&self, slot: &Slot) -> Result<AllowedHosts> {
        let transport = &self.inner.transport;
        self.run(
            "export-access",
            slot.as_str(),
            transport.export_access(slot),
        )
        .await?
        .map(|access| access.hosts())
        .ok_or_else(|| Error::NotFound(format!("no disk with slot {slot}")))
    }

    /// Lets only `hosts` (or, with [`AllowedHosts::Any`], anyone) connect to the disk's export
    /// and verifies that the device shows exactly that afterwards: a device that stores the
    /// value differently fails here instead of fencing the wrong hosts unnoticed. Whether the
    /// change reaches hosts already connected is the device's affair.
    pub async fn set_export_hosts(
        &self,
        slot: &Slot,
        hosts: &AllowedHosts,
    ) -> Result<AllowedHosts> {
        if let AllowedHosts::Unrecognized(value) = hosts {
            return Err(Error::Invalid(format!(
                "refusing to write an unrecognized host list {value:?}"
            )));
        }
        let value = hosts.to_value();
        let transport = &self.inner.transport;
        let access = self
            .run(
                "set-export-access",
                slot.as_str(),
                transport.set_export_access(slot, &value),
            )
            .await?;
        if access.hosts() != *hosts {
            return Err(Error::Protocol(format!(
                "disk {slot}: set nvme-tcp-server-allow-host-name to {value:?}, the device shows \
                 {:?}",
                access.value
            )));
        }
        Ok(access.hosts())
    }

    /// Removes the one disk `id`, then `image` when given, in one round trip. RouterOS keeps
    /// a disk's file otherwise. The image goes only if, in that same command, no disk is backed
    /// by a file of its name (else `InUse`); a failing disk removal leaves it in place. An id
    /// that is gone fails as the device says (`no such item`), with the image untouched.
    pub async fn remove_disk(
        &self,
        id: &ItemId,
        image: Option<&FilePath>,
    ) -> Result<Option<ImageRemoval>> {
        let transport = &self.inner.transport;
        self.run("remove-disk", id.as_str(), transport.remove_disk(id, image))
            .await
    }

    /// Removes an image unless a disk is backed by a file of its name, checked in the same
    /// command (one round trip).
    pub async fn remove_unused_image(&self, path: &FilePath) -> Result<ImageRemoval> {
        let transport = &self.inner.transport;
        self.run(
            "remove-unused-image",
            path.as_str(),
            transport.remove_unused_image(path),
        )
        .await
    }

    pub async fn get_file(&self, path: &FilePath) -> Result<Option<FileEntry>> {
        let transport = &self.inner.transport;
        let file = self
            .run("get-file", path.as_str(), transport.get_file(path))
            .await?;
        if let Some(f) = &file
            && f.name != path.as_str()
        {
            return Err(Error::Protocol(format!(
                "asked for file {path}, device returned {}",
                f.name
            )));
        }
        Ok(file)
    }

    /// Removes a file. Removing an absent file succeeds.
    pub async fn remove_file(&self, path: &FilePath) -> Result<()> {
        let transport = &self.inner.transport;
        self.run("remove-file", path.as_str(), transport.remove_file(path))
            .await
    }

    /// Runs one of this crate's own scripts under the client's bounds and returns its
    /// `values` JSON values.
    pub(crate) async fn query_script(
        &self,
        verb: &'static str,
        subject: &str,
        script: &str,
        values: usize,
    ) -> Result<Vec<serde_json::Value>> {
        let transport = &self.inner.transport;
        self.run(verb, subject, transport.query_script(script, Some(values)))
            .await
    }

    /// Like [`Client::query_script`], for scripts whose number of values tells what they did.
    pub(crate) async fn query_script_any(
        &self,
        verb: &'static str,
        subject: &str,
        script: &str,
    ) -> Result<Vec<serde_json::Value>> {
        let transport = &self.inner.transport;
        self.run(verb, subject, transport.query_script(script, None))
            .await
    }

    /// Runs a script and returns the device's raw answer (stdout or REST `ret`, exit status),
    /// for diagnostics that record how the device words its answers. Volume operations never
    /// go through here.
    pub async fn run_script(&self, script: &str) -> Result<ExecOutput> {
        let transport = &self.inner.transport;
        self.run("script", "", transport.run_script(script)).await
    }

    /// Runs a script that lasts as long as its work (a block copy) within `deadline`; its
    /// raw answer is for the caller to judge.
    pub(crate) async fn run_long_script(
        &self,
        verb: &'static str,
        subject: &str,
        script: &str,
        deadline: Duration,
    ) -> Result<ExecOutput> {
        let transport = &self.inner.transport;
        self.run_within(verb, subject, deadline, transport.run_script(script))
            .await
    }

    /// The device's sensors (`/system health`): temperatures, fans, power supplies, as the
    /// board has them.
    pub async fn system_health(&self) -> Result<crate::health::DeviceHealth> {
        let transport = &self.inner.transport;
        self.run("system-health", "", transport.system_health())
            .await
    }

    /// The pool mounted at `mount_point` (for example `storage-pool`).
    pub async fn pool(&self, mount_point: &str) -> Result<Pool> {
        check_name("pool name", mount_point)?;
        let transport = &self.inner.transport;
        self.run("pool", mount_point, transport.pool(mount_point))
            .await
    }
}

#[cfg(test)]
mod tests;
