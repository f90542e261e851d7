//! The options string written to `/dev/nvme-fabrics` to create a controller, and the reply.
//!
//! The kernel splits that string on `,` and newlines and each option on its first `=`, so a
//! value containing one of those characters could smuggle in another option. Values are
//! therefore either typed (an IP address, numbers) or checked to contain none of them; the
//! string can only be built through [`FabricsOptions::build`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::identity::{HostIdentity, is_uuid, validate_nqn};
use crate::{Error, Result};

/// Address and port of an NVMe/TCP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub address: IpAddr,
    pub port: u16,
}

impl Target {
    pub const DEFAULT_PORT: u16 = 4420;

    pub fn new(address: IpAddr, port: u16) -> Self {
        Self { address, port }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(address) => write!(f, "{address}:{}", self.port),
            IpAddr::V6(address) => write!(f, "[{address}]:{}", self.port),
        }
    }
}

/// How long the kernel keeps trying to reconnect a lost controller before deleting it (and
/// failing every I/O to its namespaces). The kernel default is 600 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlLossTimeout {
    Seconds(u32),
    /// Reconnect forever (`-1`).
    Unlimited,
}

impl FromStr for CtrlLossTimeout {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim() {
            "-1" => Ok(Self::Unlimited),
            number => number.parse().map(Self::Seconds).map_err(|_| {
                Error::invalid(
                    "ctrl_loss_tmo",
                    format!("{text:?} is neither -1 nor a number of seconds"),
                )
            }),
        }
    }
}

impl fmt::Display for CtrlLossTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seconds(seconds) => write!(f, "{seconds}"),
            Self::Unlimited => f.write_str("-1"),
        }
    }
}

/// Tunables of a connection; `None` leaves the kernel default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectParams {
    pub ctrl_loss_tmo: Option<CtrlLossTimeout>,
    /// Seconds between reconnect attempts (at least 1).
    pub reconnect_delay: Option<u32>,
    /// Keep-alive timeout in seconds.
    pub keep_alive_tmo: Option<u32>,
    /// Number of I/O queues (at least 1).
    pub nr_io_queues: Option<u32>,
}

/// What to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The subsystem NQN of the volume.
    pub nqn: String,
    pub target: Target,
    pub params: ConnectParams,
}

/// A validated options string for the fabrics device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricsOptions(String);

impl FabricsOptions {
    /// `transport=tcp,traddr=…,trsvcid=…,nqn=…,hostnqn=…,hostid=…[,ctrl_loss_tmo=…]…`
    pub fn build(request: &ConnectRequest, host: &HostIdentity) -> Result<Self> {
        validate_nqn("subsystem NQN", &request.nqn)?;
        validate_nqn("host NQN", &host.nqn)?;
        if !is_uuid(&host.id) {
            return Err(Error::invalid(
                "host ID",
                format!("{:?} is not a UUID", host.id),
            ));
        }
        let params = &request.params;
        if params.reconnect_delay == Some(0) {
            return Err(Error::invalid(
                "reconnect_delay",
                "must be at least 1 second",
            ));
        }
        if params.nr_io_queues == Some(0) {
            return Err(Error::invalid("nr_io_queues", "must be at least 1"));
        }
        if let Some(CtrlLossTimeout::Seconds(seconds)) = params.ctrl_loss_tmo
            && seconds > i32::MAX as u32
        {
            return Err(Error::invalid(
                "ctrl_loss_tmo",
                "too large; use -1 for unlimited",
            ));
        }
        let mut text = format!(
            "transport=tcp,traddr={},trsvcid={},nqn={},hostnqn={},hostid={}",
            request.target.address, request.target.port, request.nqn, host.nqn, host.id
        );
        let optional = [
            ("ctrl_loss_tmo", params.ctrl_loss_tmo.map(|v| v.to_string())),
            (
                "reconnect_delay",
                params.reconnect_delay.map(|v| v.to_string()),
            ),
            (
                "keep_alive_tmo",
                params.keep_alive_tmo.map(|v| v.to_string()),
            ),
            ("nr_io_queues", params.nr_io_queues.map(|v| v.to_string())),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                text.push_str(&format!(",{key}={value}"));
            }
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fabrics device's answer to a successful connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReply {
    /// The new controller is `nvme<instance>`.
    pub instance: u32,
    pub cntlid: u16,
}

impl ConnectReply {
    pub fn controller_name(&self) -> String {
        format!("nvme{}", self.instance)
    }

    /// Parses `instance=N,cntlid=M` (a trailing newline and unknown keys are tolerated).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::BadReply(text.to_owned());
        let (mut instance, mut cntlid) = (None, None);
        for pair in text.trim().split(',') {
            let (key, value) = pair.split_once('=').ok_or_else(bad)?;
            match key {
                "instance" => instance = Some(value.parse().map_err(|_| bad())?),
                "cntlid" => cntlid = Some(value.parse().map_err(|_| bad())?),
                _ => {}
            }
        }
        Ok(Self {
            instance: instance.ok_or_else(bad)?,
            cntlid: cntlid.ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentitySource;

    fn host() -> HostIdentity {
        HostIdentity {
            nqn: "nqn.2014-08.org.nvmexpress:uuid:2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f".into(),
            id: "2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f".into(),
            source: IdentitySource::Configured,
            warnings: vec![],
        }
    }

    fn request(nqn: &str) -> ConnectRequest {
        ConnectRequest {
            nqn: nqn.into(),
            target: Target::new("10.0.0.1".parse().unwrap(), 4420),
            params: ConnectParams::default(),
        }
    }

    #[test]
    fn minimal_options_string() {
        let options =
            FabricsOptions::build(&request("nqn.2000-02.com.mikrotik:pvc-1"), &host()).unwrap();
        assert_eq!(
            options.as_str(),
            "transport=tcp,traddr=10.0.0.1,trsvcid=4420,nqn=nqn.2000-02.com.mikrotik:pvc-1,\
             hostnqn=nqn.2014-08.org.nvmexpress:uuid:2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f,\
             hostid=2b1c3f0e-8d7a-4e5b-9c6d-0a1b2c3d4e5f"
        );
    }

    #[test]
    fn tunables_are_appended_in_a_fixed_order() {
        let mut request = request("pvc-1");
        request.target = Target::new("fd00::7".parse().unwrap(), 4421);
        request.params = ConnectParams {
            ctrl_loss_tmo: Some(CtrlLossTimeout::Unlimited),
            reconnect_delay: Some(2),
            keep_alive_tmo: Some(5),
            nr_io_queues: Some(4),
        };
        let options = FabricsOptions::build(&request, &host()).unwrap();
        assert!(
            options
                .as_str()
                .starts_with("transport=tcp,traddr=fd00::7,trsvcid=4421,nqn=pvc-1,")
        );
        assert!(
            options
                .as_str()
                .ends_with(",ctrl_loss_tmo=-1,reconnect_delay=2,keep_alive_tmo=5,nr_io_queues=4")
        );
    }

    #[test]
    fn injection_through_any_text_value_is_impossible() {
        for nqn in [
            "pvc,hostnqn=evil",
            "pvc=1",
            "pvc\nnqn=x",
            "pvc 1",
            "",
            &"n".repeat(224),
        ] {
            assert!(
                matches!(
                    FabricsOptions::build(&request(nqn), &host()),
                    Err(Error::Invalid { .. })
                ),
                "{nqn:?}"
            );
        }
        let mut bad_host = host();
        bad_host.nqn = "nqn.x,ctrl_loss_tmo=0".into();
        assert!(FabricsOptions::build(&request("pvc"), &bad_host).is_err());
        let mut bad_id = host();
        bad_id.id = "2b1c3f0e,traddr=1.1.1.1".into();
        assert!(FabricsOptions::build(&request("pvc"), &bad_id).is_err());
    }

    #[test]
    fn nonsensical_tunables_are_refused() {
        let mut zero_delay = request("pvc");
        zero_delay.params.reconnect_delay = Some(0);
        assert!(FabricsOptions::build(&zero_delay, &host()).is_err());
        let mut zero_queues = request("pvc");
        zero_queues.params.nr_io_queues = Some(0);
        assert!(FabricsOptions::build(&zero_queues, &host()).is_err());
        let mut huge = request("pvc");
        huge.params.ctrl_loss_tmo = Some(CtrlLossTimeout::Seconds(u32::MAX));
        assert!(FabricsOptions::build(&huge, &host()).is_err());
    }

    #[test]
    fn ctrl_loss_tmo_parses_unlimited_and_seconds() {
        assert_eq!(
            "-1".parse::<CtrlLossTimeout>().unwrap(),
            CtrlLossTimeout::Unlimited
        );
        assert_eq!(
            " 1800 ".parse::<CtrlLossTimeout>().unwrap(),
            CtrlLossTimeout::Seconds(1800)
        );
        assert!("-2".parse::<CtrlLossTimeout>().is_err());
        assert!("forever".parse::<CtrlLossTimeout>().is_err());
    }

    #[test]
    fn replies_parse_and_garbage_does_not() {
        assert_eq!(
            ConnectReply::parse("instance=3,cntlid=17\n").unwrap(),
            ConnectReply {
                instance: 3,
                cntlid: 17
            }
        );
        assert_eq!(
            ConnectReply::parse("cntlid=1,instance=12")
                .unwrap()
                .controller_name(),
            "nvme12"
        );
        for bad in [
            "",
            "instance=3",
            "instance=x,cntlid=1",
            "garbage",
            "instance=1,cntlid=70000",
        ] {
            assert!(
                matches!(ConnectReply::parse(bad), Err(Error::BadReply(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn targets_display_with_brackets_for_ipv6() {
        assert_eq!(
            Target::new("10.0.0.1".parse().unwrap(), 4420).to_string(),
            "10.0.0.1:4420"
        );
        assert_eq!(
            Target::new("fd00::1".parse().unwrap(), 4420).to_string(),
            "[fd00::1]:4420"
        );
    }
}
