//! The `--save` / `--compare` state file on disk: read and checked before anything else runs,
//! written whole (a temporary file renamed over the target), so a half-written or foreign file
//! is never taken for a reading.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::NodeFacts;
use super::namespaces::{Comparison, FORMAT, StateFile, compare, judge_comparison};
use crate::doctor::report::Check;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a doctor state file (from `rds-csi doctor --save`): {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "{path} is a doctor state file of format {found}; this doctor reads format {FORMAT}: \
         save it again with this version"
    )]
    Format { path: PathBuf, found: u64 },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and checks a state file; nothing is taken from a file of another format.
pub fn read(path: &Path) -> Result<StateFile, StateFileError> {
    let text = std::fs::read(path).map_err(|source| StateFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let malformed = |reason: String| StateFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| malformed(format!("not JSON: {e}")))?;
    // The version first: a later format may not parse as this one, and must say so.
    let found = value
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| malformed("no \"format\" number".into()))?;
    if found != u64::from(FORMAT) {
        return Err(StateFileError::Format {
            path: path.to_owned(),
            found,
        });
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

/// Writes `state` to `path` whole: a temporary file beside it, flushed to disk, then renamed
/// over it, so a crash or a full disk leaves the old file or none, never half of one.
pub fn write(path: &Path, state: &StateFile) -> Result<(), StateFileError> {
    let failed = |source| StateFileError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| failed(std::io::Error::other("not a file name")))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let mut text = serde_json::to_vec_pretty(state).expect("a state file serialises");
    text.push(b'\n');
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error));
    }
    // The rename is durable once the directory is; not being able to sync it is no failure.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Seconds since the epoch as RFC 3339 in UTC (`2026-12-04T23:40:00Z`).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(unix)).to_string()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The host NQN the node presents, when the doctor could resolve it.
fn host_nqn(facts: &NodeFacts) -> Option<String> {
    let identity = facts.identity.as_ref().ok()?;
    identity.resolved.as_ref().ok().map(|r| r.nqn.clone())
}

pub const SAVE: (&str, &str) = ("namespaces.save", "namespace state saved");

/// Writes the state file for `--save` and says how it went. Nothing is written when the
/// namespaces could not be read: an empty file would later read as "every volume gone".
pub fn save(path: &Path, facts: &NodeFacts, nqn_prefix: &str, unix: u64) -> Check {
    let (id, name) = SAVE;
    let shown = path.display();
    let volumes = match &facts.volumes {
        Ok(volumes) => volumes,
        Err(error) => {
            return Check::fail(id, name, format!("{shown} not written: {error}"));
        }
    };
    let state = StateFile {
        format: FORMAT,
        taken_at: rfc3339(unix),
        taken_at_unix: unix,
        host_nqn: host_nqn(facts),
        nqn_prefix: nqn_prefix.to_owned(),
        foreign_skipped: volumes.foreign_skipped,
        volumes: volumes.volumes.clone(),
    };
    match write(path, &state) {
        Ok(()) => Check::ok(
            id,
            name,
            format!(
                "wrote {} with {} managed volume(s), {} namespace(s); {} foreign NQN(s) \
                 skipped, not recorded",
                shown,
                volumes.volumes.len(),
                volumes.namespace_count(),
                volumes.foreign_skipped
            ),
        ),
        Err(error) => Check::fail(id, name, error.to_string())
            .fix("give --save a path in a directory this user can write to"),
    }
}

/// The `--compare` check and the report section, from a file already read by [`read`].
pub fn compare_with(
    path: &Path,
    saved: &StateFile,
    facts: &NodeFacts,
    nqn_prefix: &str,
) -> (Check, Option<Comparison>) {
    let (id, name) = super::namespaces::COMPARE;
    match &facts.volumes {
        Ok(volumes) => {
            let comparison = compare(
                &path.display().to_string(),
                saved,
                &volumes.volumes,
                host_nqn(facts).as_deref(),
                nqn_prefix,
            );
            (judge_comparison(&comparison), Some(comparison))
        }
        Err(error) => (
            Check::fail(
                id,
                name,
                format!("cannot compare with {}: {error}", path.display()),
            ),
            None,
        ),
    }
}

#[cfg(test)]
#[path = "state_file_tests.rs"]
mod tests;
