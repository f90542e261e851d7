//! Configuration: the `rds-csi sim` flags and the in-process [`SimConfig`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use russh::keys::PublicKey;

use crate::faults::Faults;
use crate::keys::{KeyError, read_authorized_keys};
use crate::nvmet::DEFAULT_NVMET_ROOT;
use crate::quirks::Quirk;
use crate::units::parse_size;
use crate::version::RouterOsVersion;

/// Whether exports become real nvmet subsystems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NvmetMode {
    /// Use nvmet when its configfs directory exists.
    #[default]
    Auto,
    /// Require nvmet; refuse to start without it.
    On,
    /// Never touch nvmet; exports are only recorded in `exports/`.
    Off,
}

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the inputs differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the simulator needs to start. Build it with [`SimConfig::new`]
/// and adjust the public fields.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub data_dir: PathBuf,
    /// SSH listen address; port 0 picks a free port.
    pub ssh_listen: SocketAddr,
    /// REST listen address; port 0 picks a free port.
    pub rest_listen: SocketAddr,
    /// Login name (a `+opts` suffix at login is ignored, as on RouterOS).
    pub user: String,
    pub password: Option<Secret>,
    pub authorized_keys: Vec<PublicKey>,
    /// Accept any login without credentials. Never for real use.
    pub insecure_no_auth: bool,
    /// Serve REST over plain HTTP instead of HTTPS.
    pub rest_plain_http: bool,
    /// Pool name: its slot and mount point, the first part of file paths.
    pub pool: String,
    /// Pool size in bytes.
    pub capacity: u64,
    /// `/system identity` name for a new data directory.
    pub identity: String,
    pub routeros_version: RouterOsVersion,
    pub nvmet: NvmetMode,
    /// Root of the nvmet configfs tree (tests point it at a temp dir).
    pub nvmet_root: PathBuf,
    /// Address NVMe/TCP exports listen on (the port comes from each disk).
    pub nvme_listen: SocketAddr,
    /// Initial faults (the control file and the API can change them).
    pub faults: Faults,
}

impl SimConfig {
    /// Defaults for embedding in tests: loopback on free ports, user
    /// `admin` with no credentials yet (set `password` or
    /// `authorized_keys`), a 1 TiB pool named `storage-pool`, RouterOS
    /// 7.21.5 and nvmet off (so tests never touch a host's configfs).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ssh_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rest_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            user: "admin".to_string(),
            password: None,
            authorized_keys: Vec::new(),
            insecure_no_auth: false,
            rest_plain_http: false,
            pool: "storage-pool".to_string(),
            capacity: 1 << 40,
            identity: "MikroTik".to_string(),
            routeros_version: RouterOsVersion::default(),
            nvmet: NvmetMode::Off,
            nvmet_root: PathBuf::from(DEFAULT_NVMET_ROOT),
            nvme_listen: SocketAddr::from(([0, 0, 0, 0], 4420)),
            faults: Faults::default(),
        }
    }

    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }
}

/// Command-line flags of `rds-csi sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Directory holding state, backing files, keys and the certificate.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// SSH listen address (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub ssh_listen: SocketAddr,
    /// REST listen address (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub rest_listen: SocketAddr,
    /// Login name for SSH and REST.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// File holding the password (one trailing newline is ignored).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// OpenSSH authorized_keys file for public-key login (ed25519, rsa).
    #[arg(long)]
    pub authorized_keys: Option<PathBuf>,
    /// Accept logins without any credentials (never expose this).
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Serve REST over plain HTTP instead of HTTPS.
    #[arg(long)]
    pub rest_plain_http: bool,
    /// Pool name (slot and mount point; file paths start with it).
    #[arg(long, default_value = "storage-pool")]
    pub pool: String,
    /// Pool size: bytes or with a binary suffix (500M, 10G, 1T).
    #[arg(long, default_value = "10T", value_parser = parse_capacity)]
    pub capacity: u64,
    /// `/system identity` name of a new device.
    #[arg(long, default_value = "MikroTik")]
    pub identity: String,
    /// RouterOS version to emulate (switches arguments and behaviour).
    #[arg(long, default_value = RouterOsVersion::DEFAULT)]
    pub routeros_version: RouterOsVersion,
    /// Real nvmet exports: auto (when configfs has nvmet), on (required), off.
    #[arg(long, value_enum, default_value_t = NvmetMode::Auto)]
    pub nvmet: NvmetMode,
    /// Root of the nvmet configfs tree.
    #[arg(long, default_value = DEFAULT_NVMET_ROOT)]
    pub nvmet_root: PathBuf,
    /// Address for NVMe/TCP exports; each disk's nvme-tcp-server-port is its port.
    #[arg(long, default_value = "0.0.0.0:4420")]
    pub nvme_listen: SocketAddr,
    /// Fault: latency added to every command, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: up to this many more milliseconds, random per command.
    #[arg(long, default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Sessions (SSH exec channels, REST requests) allowed at once.
    #[arg(long, default_value_t = 20)]
    pub max_sessions: usize,
    /// Fault: extra milliseconds for every `/disk add`.
    #[arg(long, default_value_t = 0)]
    pub slow_add_ms: u64,
    /// Fault: the pool reports no free space.
    #[arg(long)]
    pub pool_full: bool,
    /// Fault: exit status 1 instead of 0 when a command fails.
    #[arg(long)]
    pub exit_status_on_error: bool,
    /// Fault: `:serialize` prints numbers as floats.
    #[arg(long)]
    pub float_numbers: bool,
    /// Behave like a device that differs from our facts: comma-separated quirk names.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub quirks: Vec<Quirk>,
    /// `/system health` readings instead of the defaults: NAME=VALUE, comma-separated or
    /// repeated (`psu2-state=fail,cpu-temperature=85`); an empty VALUE removes the sensor.
    #[arg(long, value_delimiter = ',', value_name = "NAME=VALUE",
        value_parser = crate::health::parse_override)]
    pub health: Vec<(String, String)>,
}

fn parse_capacity(text: &str) -> Result<u64, String> {
    match parse_size(text) {
        Some(0) | None => Err(format!(
            "{text:?} is not a size (examples: 500M, 10G, 1T, 1073741824)"
        )),
        Some(n) => Ok(n),
    }
}

/// Why the flags do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the password file {0} is empty")]
    EmptyPassword(PathBuf),
    #[error(transparent)]
    AuthorizedKeys(#[from] KeyError),
}

/// Reads a password file: the content without one trailing newline.
pub fn read_password_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
        path: path.to_path_buf(),
        source,
    })?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(ConfigError::EmptyPassword(path.to_path_buf()));
    }
    Ok(Secret::new(password))
}

impl SimArgs {
    /// The configuration these flags describe (reads the credential files).
    pub fn into_config(self) -> Result<SimConfig, ConfigError> {
        let password = self
            .password_file
            .as_deref()
            .map(read_password_file)
            .transpose()?;
        let authorized_keys = match &self.authorized_keys {
            Some(path) => read_authorized_keys(path)?,
            None => Vec::new(),
        };
        Ok(SimConfig {
            data_dir: self.data_dir,
            ssh_listen: self.ssh_listen,
            rest_listen: self.rest_listen,
            user: self.user,
            password,
            authorized_keys,
            insecure_no_auth: self.insecure_no_auth,
            rest_plain_http: self.rest_plain_http,
            pool: self.pool,
            capacity: self.capacity,
            identity: self.identity,
            routeros_version: self.routeros_version,
            nvmet: self.nvmet,
            nvmet_root: self.nvmet_root,
            nvme_listen: self.nvme_listen,
            faults: Faults {
                latency_ms: self.latency_ms,
                latency_jitter_ms: self.latency_jitter_ms,
                max_sessions: self.max_sessions,
                slow_add_ms: self.slow_add_ms,
                pool_full: self.pool_full,
                exit_status_on_error: self.exit_status_on_error,
                float_numbers: self.float_numbers,
                quirks: self.quirks.into_iter().collect(),
                health: self.health.into_iter().collect(),
                ..Faults::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn defaults_match_the_cli_contract() {
        let cli = Cli::try_parse_from(["sim", "--data-dir", "/tmp/x"]).unwrap();
        let a = cli.args;
        assert_eq!(a.ssh_listen, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(a.rest_listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(a.pool, "storage-pool");
        assert_eq!(a.routeros_version.to_string(), "7.21.5");
        assert_eq!(a.nvmet, NvmetMode::Auto);
        assert_eq!(a.nvme_listen, "0.0.0.0:4420".parse().unwrap());
        assert_eq!(a.max_sessions, 20);
    }

    #[test]
    fn flags_parse_sizes_versions_and_modes() {
        let cli = Cli::try_parse_from([
            "sim",
            "--data-dir",
            "d",
            "--capacity",
            "500M",
            "--routeros-version",
            "7.20.1",
            "--nvmet",
            "off",
            "--latency-ms",
            "20",
            "--max-sessions",
            "16",
        ])
        .unwrap();
        assert_eq!(cli.args.capacity, 500 << 20);
        assert!(!cli.args.routeros_version.has_server_nqn());
        let config = cli.args.into_config().unwrap();
        assert_eq!(config.faults.latency_ms, 20);
        assert_eq!(config.faults.max_sessions, 16);
        assert_eq!(config.nvmet, NvmetMode::Off);
        assert!(Cli::try_parse_from(["sim", "--data-dir", "d", "--capacity", "lots"]).is_err());
        assert!(
            Cli::try_parse_from(["sim", "--data-dir", "d", "--routeros-version", "6.49"]).is_err()
        );
    }

    #[test]
    fn quirks_are_a_comma_separated_list_of_known_names() {
        let cli = Cli::try_parse_from([
            "sim",
            "--data-dir",
            "d",
            "--quirks",
            "generic-errors,reuse-existing-file",
        ])
        .unwrap();
        let quirks = cli.args.into_config().unwrap().faults.quirks;
        assert_eq!(
            quirks.iter().collect::<Vec<_>>(),
            [Quirk::GenericErrors, Quirk::ReuseExistingFile]
        );
        let none = Cli::try_parse_from(["sim", "--data-dir", "d"]).unwrap();
        assert_eq!(
            none.args.into_config().unwrap().faults.quirks,
            Default::default()
        );
        assert!(
            Cli::try_parse_from(["sim", "--data-dir", "d", "--quirks", "generic-errors,nope"])
                .is_err()
        );
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for quirk in Quirk::ALL {
            let name = clap::ValueEnum::to_possible_value(&quirk).unwrap();
            let name = name.get_name();
            assert!(help.contains(name), "{name} missing from:\n{help}");
        }
        assert!(help.contains("fresh-namespace-ids"));
    }

    #[test]
    fn password_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), "s3cret");
        std::fs::write(&path, "two words \r\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), "two words ");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_password_file(&path),
            Err(ConfigError::EmptyPassword(_))
        ));
    }

    #[test]
    fn secrets_do_not_leak_and_compare_exactly() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(
            format!("{:?}", SimConfig::new("d").with_password("hunter2")).contains("Secret(***)")
        );
        assert!(!format!("{:?}", SimConfig::new("d").with_password("hunter2")).contains("hunter2"));
        assert!(secret.matches("hunter2"));
        assert!(!secret.matches("hunter"));
        assert!(!secret.matches("hunter22"));
        assert!(!secret.matches(""));
    }
}
