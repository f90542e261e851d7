//! Attach fencing decisions, free of I/O and clocks: who may hold a volume, given who holds it
//! now. Both attachment states (in memory, and the one watched from Kubernetes) hand these
//! functions the same plain snapshot, so they decide alike.
//!
//! The model (see `docs/fencing.md`): a volume is detached, attached to one node, or migrating
//! from a source to a target node (KubeVirt live migration, raw block MULTI_NODE_MULTI_WRITER
//! only). Holders are ordered oldest first; their order gives the roles: the older of two is
//! the source, the newer the target. A migration older than its window is overdue: new targets
//! are refused, and no holder is ever removed by the driver itself.

use std::time::{Duration, SystemTime};

use csi::v1::volume_capability::access_mode::Mode;

use crate::capabilities::Supported;

/// The migration window when the volume names none (the Go driver's default).
pub const DEFAULT_MIGRATION_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Shortest window: a live migration copies the VM's memory first; less would refuse the
/// handover of any VM of some size.
pub const MIN_MIGRATION_WINDOW: Duration = Duration::from_secs(30);
/// Longest window: beyond it, two nodes writing one disk is a forgotten migration, not one in
/// progress.
pub const MAX_MIGRATION_WINDOW: Duration = Duration::from_secs(60 * 60);

/// How long two nodes may hold a volume at once, within the bounds above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationWindow(Duration);

impl Default for MigrationWindow {
    fn default() -> Self {
        Self(DEFAULT_MIGRATION_WINDOW)
    }
}

impl MigrationWindow {
    /// The window for a volume's `migrationTimeoutSeconds`: the default when absent, clamped
    /// into the bounds otherwise (as the Go driver did, so its volumes keep their meaning).
    pub fn from_seconds(seconds: Option<u32>) -> Self {
        match seconds {
            None => Self::default(),
            Some(s) => Self(
                Duration::from_secs(u64::from(s)).clamp(MIN_MIGRATION_WINDOW, MAX_MIGRATION_WINDOW),
            ),
        }
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

/// A node holding a volume: the CO's publish to it was granted and not yet undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The node id, as NodeGetInfo returned it.
    pub node: String,
    /// When the publish was granted (for the watched state: the VolumeAttachment's creation).
    pub since: SystemTime,
    /// How the volume was published there, when the state knows it.
    pub access: Option<Supported>,
}

/// What an attachment state knows of one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    /// Oldest first.
    pub holders: Vec<Holder>,
    pub window: MigrationWindow,
}

/// Where a volume stands, read from its holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase<'a> {
    Detached,
    Attached(&'a Holder),
    Migrating {
        source: &'a Holder,
        target: &'a Holder,
    },
    /// More than two holders: never granted by these rules; a state written around them.
    Crowded(&'a [Holder]),
}

/// The phase of a volume with these holders (oldest first).
pub fn phase(holders: &[Holder]) -> Phase<'_> {
    match holders {
        [] => Phase::Detached,
        [only] => Phase::Attached(only),
        [source, target] => Phase::Migrating { source, target },
        many => Phase::Crowded(many),
    }
}

/// Why a publish is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    #[error(
        "volume {volume_id} is published to node {holder}; it cannot also be published to node \
         {node}: {reason}. Unpublish it from {holder} first"
    )]
    HeldElsewhere {
        volume_id: String,
        node: String,
        holder: String,
        reason: String,
    },
    #[error(
        "volume {volume_id} is migrating from node {from} to node {to}; a third node \
         ({node}) is refused until one of them unpublishes it"
    )]
    MigrationBusy {
        volume_id: String,
        node: String,
        from: String,
        to: String,
    },
    #[error(
        "volume {volume_id}: the migration from node {from} to node {to} is overdue \
         (started {age_s}s ago, window {window_s}s); node {node} is refused. Unpublish {from} to \
         complete the migration or {to} to roll it back; the driver detaches neither by itself"
    )]
    MigrationOverdue {
        volume_id: String,
        node: String,
        from: String,
        to: String,
        age_s: u64,
        window_s: u64,
    },
    #[error(
        "volume {volume_id} is held by nodes {nodes} at once, more than a migration allows; \
         node {node} is refused",
        nodes = nodes.join(", ")
    )]
    Crowded {
        volume_id: String,
        node: String,
        nodes: Vec<String>,
    },
    /// The CSI row "volume published but is incompatible" (ALREADY_EXISTS).
    #[error("volume {volume_id} is already published to node {node} as {held}, not as {requested}")]
    Incompatible {
        volume_id: String,
        node: String,
        held: String,
        requested: String,
    },
}

/// What a granted publish changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    /// The node holds the volume already: nothing changes, the same answer is given.
    Already,
    /// The first holder.
    Attach,
    /// A second holder: a live migration from `source` to the requesting node.
    StartMigration { source: String },
}

impl PublishDecision {
    /// Whether the node becomes a holder.
    pub fn records(&self) -> bool {
        !matches!(self, Self::Already)
    }
}

fn describe(access: &Supported) -> String {
    format!("{} {}", access.kind, access.mode.as_str_name())
}

fn multi_node(access: &Supported) -> bool {
    access.mode == Mode::MultiNodeMultiWriter
}

/// A migration past its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub source: String,
    pub target: String,
    /// When the target was published, i.e. the migration started.
    pub started: SystemTime,
    pub age: Duration,
    pub window: Duration,
}

/// The volume's migration, when it has one older than its window at `now`.
pub fn overdue(holders: &Holders, now: SystemTime) -> Option<Overdue> {
    let Phase::Migrating { source, target } = phase(&holders.holders) else {
        return None;
    };
    // A clock that went backwards makes the migration young, never overdue.
    let age = now.duration_since(target.since).unwrap_or_default();
    let window = holders.window.duration();
    (age > window).then(|| Overdue {
        source: source.node.clone(),
        target: target.node.clone(),
        started: target.since,
        age,
        window,
    })
}

/// How the migration `decision` ends, if it ends one, and how long it ran by `now`: from
/// its target's publish (a clock that went backwards counts zero).
pub fn migration_end(
    holders: &Holders,
    decision: &UnpublishDecision,
    now: SystemTime,
) -> Option<(crate::metrics::MigrationOutcome, Duration)> {
    use crate::metrics::MigrationOutcome;
    let (outcome, target) = match decision {
        UnpublishDecision::CompleteMigration { target, .. } => {
            (MigrationOutcome::Completed, target)
        }
        UnpublishDecision::RollBack { target, .. } => (MigrationOutcome::RolledBack, target),
        _ => return None,
    };
    let since = holders.holders.iter().find(|h| &h.node == target)?.since;
    Some((outcome, now.duration_since(since).unwrap_or_default()))
}

/// Whether `node` may have the volume with `access`, given its holders at `now`.
///
/// A holder whose access is unknown (the watched state may not know it) is taken to share the
/// request's: in Kubernetes every attachment of one volume comes from the same PV, hence the
/// same access modes.
pub fn decide_publish(
    volume_id: &str,
    holders: &Holders,
    node: &str,
    access: Supported,
    now: SystemTime,
) -> Result<PublishDecision, FenceError> {
    if let Some(held) = holders.holders.iter().find(|h| h.node == node) {
        return match held.access {
            Some(held) if held != access => Err(FenceError::Incompatible {
                volume_id: volume_id.to_owned(),
                node: node.to_owned(),
                held: describe(&held),
                requested: describe(&access),
            }),
            _ => Ok(PublishDecision::Already),
        };
    }
    match phase(&holders.holders) {
        Phase::Detached => Ok(PublishDecision::Attach),
        Phase::Attached(holder) => {
            let held = holder.access.unwrap_or(access);
            if multi_node(&access) && multi_node(&held) {
                return Ok(PublishDecision::StartMigration {
                    source: holder.node.clone(),
                });
            }
            let single = if multi_node(&access) { held } else { access };
            Err(FenceError::HeldElsewhere {
                volume_id: volume_id.to_owned(),
                node: node.to_owned(),
                holder: holder.node.clone(),
                reason: format!("{} allows one node at a time", single.mode.as_str_name()),
            })
        }
        Phase::Migrating { source, target } => Err(match overdue(holders, now) {
            Some(late) => FenceError::MigrationOverdue {
                volume_id: volume_id.to_owned(),
                node: node.to_owned(),
                from: late.source,
                to: late.target,
                age_s: late.age.as_secs(),
                window_s: late.window.as_secs(),
            },
            None => FenceError::MigrationBusy {
                volume_id: volume_id.to_owned(),
                node: node.to_owned(),
                from: source.node.clone(),
                to: target.node.clone(),
            },
        }),
        Phase::Crowded(many) => Err(FenceError::Crowded {
            volume_id: volume_id.to_owned(),
            node: node.to_owned(),
            nodes: many.iter().map(|h| h.node.clone()).collect(),
        }),
    }
}

/// What an unpublish changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpublishDecision {
    /// The node does not hold the volume (or nobody does): OK, nothing changes.
    NotHeld,
    /// The only holder leaves: detached.
    Detach { node: String },
    /// The source leaves: the target becomes the only holder.
    CompleteMigration { source: String, target: String },
    /// The target leaves: the source stays the only holder.
    RollBack { source: String, target: String },
    /// No node named: every holder leaves (the CSI spec's empty `node_id`).
    DetachAll { nodes: Vec<String> },
}

impl UnpublishDecision {
    /// The nodes that stop holding the volume.
    pub fn leaving(&self) -> Vec<&str> {
        match self {
            Self::NotHeld => Vec::new(),
            Self::Detach { node } => vec![node],
            Self::CompleteMigration { source, .. } => vec![source],
            Self::RollBack { target, .. } => vec![target],
            Self::DetachAll { nodes } => nodes.iter().map(String::as_str).collect(),
        }
    }
}

/// What unpublishing the volume from `node` (or, with `None`, from every node) means.
pub fn decide_unpublish(holders: &[Holder], node: Option<&str>) -> UnpublishDecision {
    let Some(node) = node else {
        return if holders.is_empty() {
            UnpublishDecision::NotHeld
        } else {
            UnpublishDecision::DetachAll {
                nodes: holders.iter().map(|h| h.node.clone()).collect(),
            }
        };
    };
    if !holders.iter().any(|h| h.node == node) {
        return UnpublishDecision::NotHeld;
    }
    match phase(holders) {
        Phase::Migrating { source, target } => {
            let (source, target) = (source.node.clone(), target.node.clone());
            if source == node {
                UnpublishDecision::CompleteMigration { source, target }
            } else {
                UnpublishDecision::RollBack { source, target }
            }
        }
        _ => UnpublishDecision::Detach {
            node: node.to_owned(),
        },
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
