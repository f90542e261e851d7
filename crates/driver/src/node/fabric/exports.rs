//! The simulator's export record, `<sim-data-dir>/exports.json`: which NQN is served from
//! which backing file. Only the fields the loop fabric needs are read; others are ignored so
//! that the record can grow without breaking the node.

use std::path::{Path, PathBuf};

use nvme::NamespaceIds;
use serde::Deserialize;

use super::FabricError;

/// File name of the record inside the simulator's data directory.
pub const EXPORTS_FILE: &str = "exports.json";

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

#[derive(Deserialize)]
struct ExportsFile {
    exports: Vec<ExportEntry>,
}

/// Parses the record's text. Relative backing paths are refused: the record is read by a
/// process with another working directory.
pub fn parse_exports(path: &Path, text: &[u8]) -> Result<Vec<ExportEntry>, FabricError> {
    let file: ExportsFile =
        serde_json::from_slice(text).map_err(|error| FabricError::ExportRecord {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if let Some(relative) = file
        .exports
        .iter()
        .find(|entry| !entry.backing_file.is_absolute())
    {
        return Err(FabricError::ExportRecord {
            path: path.to_path_buf(),
            reason: format!(
                "backing file {} of {} is not absolute",
                relative.backing_file.display(),
                relative.nqn
            ),
        });
    }
    Ok(file.exports)
}

/// Reads `<data_dir>/exports.json`; a missing record means nothing is exported.
pub fn read_exports(data_dir: &Path) -> Result<Vec<ExportEntry>, FabricError> {
    let path = data_dir.join(EXPORTS_FILE);
    match std::fs::read(&path) {
        Ok(text) => parse_exports(&path, &text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(FabricError::ExportRecord {
            path,
            reason: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{
      "exports": [
        {
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
        }
      ]
    }"#;

    #[test]
    fn reads_the_fields_it_needs_and_ignores_the_rest() {
        let entries = parse_exports(Path::new("exports.json"), RECORD.as_bytes()).unwrap();
        assert_eq!(
            entries,
            vec![ExportEntry {
                nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
                port: 4420,
                backing_file: "/var/lib/sim/files/storage-pool/pvc-1.img".into(),
                uuid: Some("8F0C44E5-0B61-4F3A-9C1D-2A7B3E4D5F60".into()),
                nguid: Some("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90".into()),
            }]
        );
        // As a host shows them: lower case; a record without them gives none.
        let ids = entries[0].namespace_ids();
        assert_eq!(
            ids.uuid.as_deref(),
            Some("8f0c44e5-0b61-4f3a-9c1d-2a7b3e4d5f60")
        );
        assert_eq!(
            ids.nguid.as_deref(),
            Some("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90")
        );
        let old = r#"{"exports": [{"nqn": "x", "port": 1, "backing_file": "/f/x.img"}]}"#;
        let entries = parse_exports(Path::new("e.json"), old.as_bytes()).unwrap();
        assert!(entries[0].namespace_ids().is_empty());
    }

    #[test]
    fn malformed_records_and_relative_paths_are_errors() {
        for text in [
            "",
            "{}",
            r#"{"exports": [{"nqn": "x"}]}"#,
            r#"{"exports": [{"nqn": "x", "port": 1, "backing_file": "files/x.img"}]}"#,
        ] {
            assert!(
                matches!(
                    parse_exports(Path::new("e.json"), text.as_bytes()),
                    Err(FabricError::ExportRecord { .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_missing_record_exports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exports(dir.path()).unwrap(), vec![]);
        std::fs::write(dir.path().join(EXPORTS_FILE), RECORD).unwrap();
        assert_eq!(read_exports(dir.path()).unwrap().len(), 1);
    }
}
