//! KubeVirt hotplug serialization (`--serialize-vmi-attach`): ControllerPublish calls for
//! volumes of one VirtualMachineInstance run one at a time, the others of that VMI wait their
//! turn. Some KubeVirt releases mishandle several volumes hot-plugged into one VMI at once;
//! attaching them one by one avoids it. Volumes of different VMIs, and volumes no VMI uses,
//! never wait for each other.
//!
//! A volume's VMIs are found through its PersistentVolume (named like the volume, as the
//! external-provisioner names them) and claim, then the VMIs in the claim's namespace whose
//! `spec.volumes` name the claim (directly, or as a DataVolume of the same name). The lookup
//! is bounded; when it fails (no KubeVirt installed, API server away) the publish goes ahead
//! unserialized: this is a workaround for a KubeVirt race, never a reason to refuse an attach.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use tokio::sync::OwnedMutexGuard;

use super::events::claim_of;

/// Time the lookup of a volume's VMIs may take before the publish goes ahead without a turn.
const LOOKUP_TIME: Duration = Duration::from_secs(5);

/// The names of the VMIs, among `vmis` (name, spec), whose volumes use claim `claim`: as a
/// `persistentVolumeClaim.claimName` or a `dataVolume.name` (a DataVolume's claim has its
/// name). Sorted and without repeats, the order their turns are taken in, so that two calls
/// never wait on each other's turns.
pub fn vmis_using<'a>(
    vmis: impl IntoIterator<Item = (&'a str, &'a Value)>,
    claim: &str,
) -> Vec<String> {
    let mut names: Vec<String> = vmis
        .into_iter()
        .filter(|(_, spec)| {
            spec.get("volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|volume| {
                    let pvc = volume.pointer("/persistentVolumeClaim/claimName");
                    let data_volume = volume.pointer("/dataVolume/name");
                    [pvc, data_volume]
                        .into_iter()
                        .flatten()
                        .any(|name| name.as_str() == Some(claim))
                })
        })
        .map(|(name, _)| name.to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The VirtualMachineInstance resource (kubevirt.io/v1).
fn vmi_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstance".into(),
        plural: "virtualmachineinstances".into(),
    }
}

/// One publish's turn: the VMIs' turns it holds, released when dropped.
#[derive(Debug)]
pub struct VmiTurn {
    pub vmis: Vec<String>,
    _held: Vec<OwnedMutexGuard<()>>,
}

/// Hands out turns per VMI.
pub struct VmiTurns {
    client: kube::Client,
    volumes: Api<PersistentVolume>,
    driver: String,
    /// `namespace/name` of a VMI → its turn; entries of turns no one holds or waits for are
    /// dropped as new ones are made.
    turns: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for VmiTurns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmiTurns")
            .field("driver", &self.driver)
            .finish()
    }
}

impl VmiTurns {
    pub fn new(client: kube::Client, driver: &str) -> Self {
        Self {
            volumes: Api::all(client.clone()),
            client,
            driver: driver.into(),
            turns: Mutex::default(),
        }
    }

    /// Waits for the turn of every VMI that uses `volume_id` and holds them; `None` when no
    /// VMI uses it or the lookup failed (logged).
    pub async fn turn(&self, volume_id: &str) -> Option<VmiTurn> {
        let looked_up = tokio::time::timeout(LOOKUP_TIME, self.vmis_of(volume_id)).await;
        let vmis = match looked_up {
            Ok(Ok(vmis)) => vmis,
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer in {LOOKUP_TIME:?}"),
                };
                tracing::warn!(
                    volume_id,
                    error,
                    "cannot tell which VMI uses the volume; publishing without a turn"
                );
                return None;
            }
        };
        if vmis.is_empty() {
            return None;
        }
        let mut held = Vec::with_capacity(vmis.len());
        for vmi in &vmis {
            let turn = self.turn_of(vmi);
            if turn.try_lock().is_err() {
                tracing::info!(
                    volume_id,
                    vmi,
                    "another volume of the VMI is attaching; waiting for its turn"
                );
            }
            held.push(turn.lock_owned().await);
        }
        Some(VmiTurn { vmis, _held: held })
    }

    /// `namespace/name` of the VMIs using the volume's claim.
    async fn vmis_of(&self, volume_id: &str) -> Result<Vec<String>, kube::Error> {
        let Some(pv) = self.volumes.get_opt(volume_id).await? else {
            return Ok(Vec::new());
        };
        let Some(claim) = claim_of(&pv, &self.driver, volume_id) else {
            return Ok(Vec::new());
        };
        let (Some(namespace), Some(name)) = (claim.namespace, claim.name) else {
            return Ok(Vec::new());
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &vmi_resource());
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // KubeVirt is not installed: no VMI uses anything.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let null = Value::Null;
        let named = list.items.iter().filter_map(|vmi| {
            let spec = vmi.data.get("spec").unwrap_or(&null);
            vmi.metadata.name.as_deref().map(|name| (name, spec))
        });
        Ok(vmis_using(named, &name)
            .into_iter()
            .map(|vmi| format!("{namespace}/{vmi}"))
            .collect())
    }

    fn turn_of(&self, vmi: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(turn) = turns.get(vmi).and_then(Weak::upgrade) {
            return turn;
        }
        turns.retain(|_, turn| turn.strong_count() > 0);
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        turns.insert(vmi.to_owned(), Arc::downgrade(&turn));
        turn
    }

    /// VMIs with a turn someone holds or waits for.
    pub fn busy(&self) -> usize {
        let turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        turns.values().filter(|t| t.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_vmis_naming_the_claim_directly_or_as_a_data_volume() {
        let by_claim = json!({"volumes": [
            {"name": "root", "containerDisk": {"image": "x"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data", "hotpluggable": true}},
        ]});
        let by_data_volume = json!({"volumes": [{"name": "d", "dataVolume": {"name": "data"}}]});
        let other =
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "logs"}}]});
        let none = json!({});
        let vmis = [
            ("vm-b", &by_claim),
            ("vm-c", &other),
            ("vm-a", &by_data_volume),
            ("vm-d", &none),
            ("vm-b", &by_claim),
        ];
        assert_eq!(vmis_using(vmis, "data"), ["vm-a", "vm-b"]);
        assert_eq!(vmis_using(vmis, "logs"), ["vm-c"]);
        assert!(vmis_using(vmis, "root").is_empty());
    }
}
