//! The simulator's export records, `<sim-data-dir>/exports/<nqn>.json`: which NQN is served
//! from which backing file, one file per export. Only the fields the loop fabric needs are
//! read; others are ignored so that the record can grow without breaking the node.

use std::path::{Path, PathBuf};

use nvme::NamespaceIds;
use serde::Deserialize;

use super::FabricError;

/// Directory of the records inside the simulator's data directory.
pub const EXPORTS_DIR: &str = "exports";

/// One exported disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportEntry {
    pub nqn: String,
    pub port: u16,
    /// Absolute path of the file behind the namespace.
    pub backing_file: PathBuf,
    /// The namespace's identifiers as a host would see them (absent in records of older
    /// simulators).
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub nguid: Option<String>,
}

impl ExportEntry {
    /// The identifiers a host connected to this export would read from sysfs.
    pub fn namespace_ids(&self) -> NamespaceIds {
        NamespaceIds::from_attributes(|attribute| match attribute {
            "uuid" => self.uuid.as_deref(),
            "nguid" => self.nguid.as_deref(),
            _ => None,
        })
    }
}

/// Parses one record. A relative backing path is refused: the record is read by a process
/// with another working directory.
pub fn parse_export(path: &Path, text: &[u8]) -> Result<ExportEntry, FabricError> {
    let refuse = |reason: String| FabricError::ExportRecord {
        path: path.to_path_buf(),
        reason,
    };
    let entry: ExportEntry = serde_json::from_slice(text).map_err(|e| refuse(e.to_string()))?;
    if !entry.backing_file.is_absolute() {
        return Err(refuse(format!(
            "backing file {} of {} is not absolute",
            entry.backing_file.display(),
            entry.nqn
        )));
    }
    Ok(entry)
}

/// Where the record of `nqn` lies; `None` for an NQN that cannot name a file there.
pub fn record_path(data_dir: &Path, nqn: &str) -> Option<PathBuf> {
    let fits = !nqn.is_empty() && !nqn.starts_with('.') && !nqn.contains(['/', '\0']);
    fits.then(|| data_dir.join(EXPORTS_DIR).join(format!("{nqn}.json")))
}

/// The export of `nqn`, read from its record; `None` when it has none (not exported).
pub fn read_export(data_dir: &Path, nqn: &str) -> Result<Option<ExportEntry>, FabricError> {
    let Some(path) = record_path(data_dir, nqn) else {
        return Ok(None);
    };
    let entry = match std::fs::read(&path) {
        Ok(text) => parse_export(&path, &text)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(FabricError::ExportRecord {
                path,
                reason: error.to_string(),
            });
        }
    };
    if entry.nqn != nqn {
        return Err(FabricError::ExportRecord {
            path,
            reason: format!("records {}, not {nqn}", entry.nqn),
        });
    }
    Ok(Some(entry))
}

/// Every export's record; no record directory means nothing is exported. A record that
/// vanishes while it is read (its export went) is skipped.
pub fn read_exports(data_dir: &Path) -> Result<Vec<ExportEntry>, FabricError> {
    let dir = data_dir.join(EXPORTS_DIR);
    let failed = |path: &Path, error: std::io::Error| FabricError::ExportRecord {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(failed(&dir, error)),
    };
    let mut exports = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| failed(&dir, e))?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path) {
            Ok(text) => exports.push(parse_export(&path, &text)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(&path, error)),
        }
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";
    const RECORD: &str = r#"{
      "slot": "pvc-1",
      "nqn": "nqn.2000-02.com.mikrotik:pvc-1",
      "address": "127.0.0.1",
      "port": 4420,
      "file_path": "/storage-pool/pvc-1.img",
      "backing_file": "/var/lib/sim/files/storage-pool/pvc-1.img",
      "size": 1073741824,
      "nvmet": false,
      "uuid": "8F0C44E5-0B61-4F3A-9C1D-2A7B3E4D5F60",
      "nguid": "a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90"
    }"#;

    #[test]
    fn reads_the_fields_it_needs_and_ignores_the_rest() {
        let entry = parse_export(Path::new("r.json"), RECORD.as_bytes()).unwrap();
        assert_eq!(
            entry,
            ExportEntry {
                nqn: NQN.into(),
                port: 4420,
                backing_file: "/var/lib/sim/files/storage-pool/pvc-1.img".into(),
                uuid: Some("8F0C44E5-0B61-4F3A-9C1D-2A7B3E4D5F60".into()),
                nguid: Some("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90".into()),
            }
        );
        // As a host shows them: lower case; a record without them gives none.
        let ids = entry.namespace_ids();
        assert_eq!(
            ids.uuid.as_deref(),
            Some("8f0c44e5-0b61-4f3a-9c1d-2a7b3e4d5f60")
        );
        assert_eq!(
            ids.nguid.as_deref(),
            Some("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90")
        );
        let old = r#"{"nqn": "x", "port": 1, "backing_file": "/f/x.img"}"#;
        let entry = parse_export(Path::new("e.json"), old.as_bytes()).unwrap();
        assert!(entry.namespace_ids().is_empty());
    }

    #[test]
    fn malformed_records_and_relative_paths_are_errors() {
        for text in [
            "",
            "{}",
            r#"{"nqn": "x"}"#,
            r#"{"nqn": "x", "port": 1, "backing_file": "files/x.img"}"#,
        ] {
            assert!(
                matches!(
                    parse_export(Path::new("e.json"), text.as_bytes()),
                    Err(FabricError::ExportRecord { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn records_are_read_by_nqn_and_all_together() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exports(dir.path()).unwrap(), vec![]);
        assert_eq!(read_export(dir.path(), NQN).unwrap(), None);
        let records = dir.path().join(EXPORTS_DIR);
        std::fs::create_dir(&records).unwrap();
        std::fs::write(records.join(format!("{NQN}.json")), RECORD).unwrap();
        // A scratch file of a record being written is not a record.
        std::fs::write(records.join(format!("{NQN}.json.tmp")), "{").unwrap();
        assert_eq!(read_exports(dir.path()).unwrap().len(), 1);
        assert_eq!(read_export(dir.path(), NQN).unwrap().unwrap().port, 4420);
        assert_eq!(read_export(dir.path(), "nqn.other").unwrap(), None);
        // Never a path outside the record directory.
        for outside in ["../x", "a/b", ".hidden", ""] {
            assert_eq!(record_path(dir.path(), outside), None, "{outside:?}");
            assert_eq!(read_export(dir.path(), outside).unwrap(), None);
        }
        // A record under another NQN's name is an error, not that export.
        std::fs::write(records.join("nqn.liar.json"), RECORD).unwrap();
        assert!(read_export(dir.path(), "nqn.liar").is_err());
    }
}
