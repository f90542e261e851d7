//! REST transport: HTTPS with basic auth against `/rest`, one pooled `reqwest::Client`.
//!
//! Grow and remove need the item's `.id`; they look it up with a GET first rather than
//! caching slot → id, so a disk removed and re-added elsewhere can never be hit by a stale id.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::access::ExportAccess;
use crate::config::Secret;
use crate::error::{Error, Result, rest_error, truncate};
use crate::inventory::Inventory;
use crate::model::{
    AddReport, CreateDisk, DiskItem, FileDisk, FileEntry, ImageRemoval, Pool, SystemInfo,
    VolumeFacts,
};
use crate::reply::{self, ExecOutput, Object};
use crate::tls::{TlsTrust, client_config, find_tls_error};
use crate::transport::Transport;
use crate::validate::{DirPath, FilePath, ItemId, Slot};

/// Settings of a [`RestTransport`].
pub struct RestSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub trust: TlsTrust,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_idle_connections: usize,
}

pub struct RestTransport {
    http: reqwest::Client,
    /// Bumped when a request fails at the transport level (the device may have restarted,
    /// perhaps into another version), so the façade re-reads the version.
    epoch: std::sync::atomic::AtomicU64,
    base: String,
    user: String,
    password: Secret,
}

impl RestTransport {
    pub fn new(settings: RestSettings) -> Result<Self> {
        if matches!(settings.trust, TlsTrust::Insecure) {
            tracing::warn!(
                host = %settings.host,
                "INSECURE: REST certificate checking is disabled; any server will be trusted"
            );
        }
        let tls = client_config(&settings.trust)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .http1_only()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.max_idle_connections)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client setup: {e}")))?;
        // An IPv6 literal needs brackets in a URL.
        let host = if settings.host.contains(':') && !settings.host.starts_with('[') {
            format!("[{}]", settings.host)
        } else {
            settings.host
        };
        Ok(Self {
            http,
            epoch: std::sync::atomic::AtomicU64::new(0),
            base: format!("https://{host}:{}/rest", settings.port),
            user: settings.user,
            password: settings.password,
        })
    }

    /// One request; 2xx bodies are parsed as JSON (empty = `null`), errors are typed.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        let mut url = format!("{}{path}", self.base);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&percent_encode(key));
            url.push('=');
            url.push_str(&percent_encode(value));
        }
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.user, Some(self.password.expose()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&method, path, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(&method, path, &e))?;
        if !status.is_success() {
            return Err(rest_error(status.as_u16(), &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::Protocol(format!(
                "{method} {path}: reply is not JSON ({e}): {}",
                truncate(&text, 256)
            ))
        })
    }

    fn transport_error(&self, method: &Method, path: &str, error: &reqwest::Error) -> Error {
        let what = format!("{method} {}{path}", self.base);
        if let Some(tls) = find_tls_error(error) {
            return Error::Unauthenticated(format!("{what}: TLS peer not trusted: {tls}"));
        }
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if error.is_timeout() {
            return Error::Unavailable(format!("{what}: timed out"));
        }
        // Include the cause chain: reqwest's own message is often just "error sending request".
        let mut message = format!("{what}: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        if error.is_decode() {
            Error::Protocol(message)
        } else {
            Error::Unavailable(message)
        }
    }

    async fn find_items(&self, path: &str, key: &str, value: &str) -> Result<Vec<Object>> {
        let reply = self.call(Method::GET, path, &[(key, value)], None).await?;
        reply::items(reply)
    }

    async fn find_one(&self, path: &str, key: &str, value: &str) -> Result<Option<Object>> {
        let reply = self.call(Method::GET, path, &[(key, value)], None).await?;
        reply::at_most_one(reply, &format!("{key}={value}"))
    }

    /// Deletes by id; an id that vanished meanwhile counts as deleted.
    async fn delete(&self, collection: &str, item: &Object) -> Result<()> {
        let id = item_id(item)?;
        match self
            .call(Method::DELETE, &format!("{collection}/{id}"), &[], None)
            .await
        {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs a script through `/execute`; its output (`ret`) comes back as exec output would.
    async fn execute(&self, script: &str) -> Result<ExecOutput> {
        let reply = self
            .call(Method::POST, "/execute", &[], Some(execute_body(script)))
            .await?;
        Ok(ExecOutput {
            stdout: execute_output(&reply)?.as_bytes().to_vec(),
            ..ExecOutput::default()
        })
    }

    async fn single_object(&self, path: &str) -> Result<Object> {
        reply::single_object(self.call(Method::GET, path, &[], None).await?, path)
    }
}

/// Percent-encodes a query component. Values are validated names already; this only keeps
/// the URL well-formed should that ever change.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An item's `.id`, checked to be RouterOS's `*HEX` form before it goes into a URL path.
fn item_id(item: &Object) -> Result<String> {
    let id = reply::req_str(item, ".id")?;
    ItemId::try_from(id.as_str())
        .map(|id| id.as_str().to_owned())
        .map_err(|_| Error::Protocol(format!("unexpected item id {id:?}")))
}

/// `as-string` makes the device wait for the script and return its output, instead of
/// starting a background job.
fn execute_body(script: &str) -> Value {
    json!({ "script": script, "as-string": "" })
}

/// The text in `ret`: what the script printed, including the error that stopped it
/// (`/execute` answers 200 even when the script fails).
fn execute_output(reply: &Value) -> Result<&str> {
    match reply.get("ret") {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Ok(""),
        Some(other) => Err(Error::Protocol(format!(
            "execute: unexpected ret {}",
            truncate(&other.to_string(), 256)
        ))),
    }
}

#[async_trait]
impl Transport for RestTransport {
    fn kind(&self) -> &'static str {
        "rest"
    }

    /// Connections are pooled invisibly; the epoch moves on transport failures instead.
    fn connection_epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn system_info(&self) -> Result<SystemInfo> {
        // Sequential, so this command holds one device session at a time like every other.
        let resource = self.single_object("/system/resource").await?;
        let identity = self.single_object("/system/identity").await?;
        reply::system_info(&resource, &identity)
    }

    async fn slot_items(&self, slot: &Slot) -> Result<Vec<DiskItem>> {
        self.find_items("/disk", "slot", slot.as_str())
            .await?
            .iter()
            .map(reply::disk_item)
            .collect()
    }

    async fn list_disks(&self, prefix: &str) -> Result<Vec<FileDisk>> {
        // REST filters by equality only; the prefix is applied here.
        let listed = self
            .call(Method::GET, "/disk", &[("type", "file")], None)
            .await?;
        let mut disks = reply::file_disks_lenient(listed)?;
        disks.retain(|d| d.slot.starts_with(prefix));
        Ok(disks)
    }

    /// The same script as over SSH, through `/execute`: REST has no conditional add, and a
    /// look-up before a PUT would cost a round trip and leave a gap between check and add.
    async fn create_disk(&self, request: CreateDisk<'_>) -> Result<AddReport> {
        let output = self.execute(&crate::command::create_disk(&request)).await?;
        reply::add_report(reply::script_values(&output)?)
    }

    async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk> {
        let disk = self
            .find_one("/disk", "slot", slot.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no disk with slot {slot}")))?;
        let id = item_id(&disk)?;
        let body = json!({ "file-size": size.to_string() });
        let reply = self
            .call(Method::PATCH, &format!("/disk/{id}"), &[], Some(body))
            .await?;
        reply::file_disk(&reply::single_object(reply, "PATCH /disk")?)
    }

    async fn export_access(&self, slot: &Slot) -> Result<Option<ExportAccess>> {
        self.find_one("/disk", "slot", slot.as_str())
            .await?
            .map(|obj| reply::export_access(&obj))
            .transpose()
    }

    async fn set_export_access(&self, slot: &Slot, value: &str) -> Result<ExportAccess> {
        let disk = self
            .find_one("/disk", "slot", slot.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no disk with slot {slot}")))?;
        let id = item_id(&disk)?;
        let body = json!({ "nvme-tcp-server-allow-host-name": value });
        let reply = self
            .call(Method::PATCH, &format!("/disk/{id}"), &[], Some(body))
            .await?;
        reply::export_access(&reply::single_object(reply, "PATCH /disk")?)
    }

    /// One `/execute` instead of three GETs.
    async fn volume_facts(&self, slot: &Slot, dir: &DirPath) -> Result<VolumeFacts> {
        let output = self
            .execute(&crate::command::volume_facts(slot, dir))
            .await?;
        reply::volume_facts(reply::expect_values(&output, 3)?, &format!("{slot}.img"))
    }

    /// The same script as over SSH: the clock first, then the listings, in one request.
    async fn inventory(&self, dir: &DirPath) -> Result<Inventory> {
        let output = self.execute(&crate::command::inventory(dir)).await?;
        crate::inventory::parse(reply::expect_values(&output, 3)?, dir.as_str())
    }

    /// One `/execute` of the same script the SSH transport runs: a DELETE by id plus a file
    /// look-up and its DELETE would cost three round trips.
    async fn remove_disk(
        &self,
        id: &ItemId,
        image: Option<&FilePath>,
    ) -> Result<Option<ImageRemoval>> {
        let output = self
            .execute(&crate::command::remove_disk(id, image))
            .await?;
        let removal = reply::image_removal(reply::script_values(&output)?)?;
        Ok(image.map(|_| removal))
    }

    async fn remove_unused_image(&self, path: &FilePath) -> Result<ImageRemoval> {
        let output = self
            .execute(&crate::command::remove_unused_image(path))
            .await?;
        reply::image_removal(reply::script_values(&output)?)
    }

    async fn get_file(&self, path: &FilePath) -> Result<Option<FileEntry>> {
        self.find_one("/file", "name", path.as_str())
            .await?
            .map(|obj| reply::file_entry(&obj))
            .transpose()
    }

    async fn remove_file(&self, path: &FilePath) -> Result<()> {
        match self.find_one("/file", "name", path.as_str()).await? {
            Some(file) => self.delete("/file", &file).await,
            None => Ok(()),
        }
    }

    async fn pool(&self, mount_point: &str) -> Result<Pool> {
        let obj = self
            .find_one("/disk", "mount-point", mount_point)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no disk is mounted at {mount_point}")))?;
        reply::pool(&obj)
    }

    async fn system_health(&self) -> Result<crate::health::DeviceHealth> {
        crate::health::device_health(self.call(Method::GET, "/system/health", &[], None).await?)
    }

    async fn query_script(&self, script: &str, values: Option<usize>) -> Result<Vec<Value>> {
        let output = self.execute(script).await?;
        match values {
            Some(n) => reply::expect_values(&output, n),
            None => reply::script_values(&output),
        }
    }

    async fn run_script(&self, script: &str) -> Result<ExecOutput> {
        self.execute(script).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_output_is_judged_by_its_text() {
        let judged = |reply: Value| {
            let text = execute_output(&reply)?;
            let output = ExecOutput {
                stdout: text.as_bytes().to_vec(),
                ..ExecOutput::default()
            };
            reply::expect_values(&output, 0).map(drop)
        };
        assert!(judged(json!({"ret": ""})).is_ok());
        assert!(judged(json!({"ret": "\r\n"})).is_ok());
        assert!(judged(json!({})).is_ok());
        assert!(matches!(
            judged(json!({"ret": "no such item (line 1 column 15)\r\n"})),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            judged(json!({"ret": "what is this"})),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(judged(json!({"ret": 3})), Err(Error::Protocol(_))));
        assert_eq!(
            execute_body("/disk remove 1"),
            json!({"script": "/disk remove 1", "as-string": ""})
        );
    }

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(
            percent_encode("storage-pool/pvc-1.img"),
            "storage-pool/pvc-1.img"
        );
        assert_eq!(percent_encode("a b&c=d#é"), "a%20b%26c%3Dd%23%C3%A9");
    }

    #[test]
    fn ids_must_look_like_routeros_ids() {
        let obj = |id: &str| json!({".id": id}).as_object().unwrap().clone();
        assert_eq!(item_id(&obj("*1A")).unwrap(), "*1A");
        for bad in ["1A", "*", "*1/../x", "*1?a=b", "*G"] {
            assert!(item_id(&obj(bad)).is_err(), "{bad}");
        }
    }
}
