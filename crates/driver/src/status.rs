//! The one place where a driver error becomes a gRPC status, following the CSI spec's error
//! tables.
//!
//! Decisions worth knowing:
//! - A RouterOS `Invalid` is a command the device refused after our own validation accepted
//!   it: our bug or a device difference, not the caller's fault, so `INTERNAL`.
//! - `Unauthenticated` from the RDS is `UNAVAILABLE`: the CO should keep retrying while the
//!   operator fixes the controller's credentials; the message says so.
//! - An operation already running for a volume, and a stale listing token, are `ABORTED`.

use tonic::{Code, Status};

use crate::capacity::SizeError;
use crate::error::DriverError;

/// The gRPC code for an error.
pub fn code_of(error: &DriverError) -> Code {
    match error {
        DriverError::MissingField(_)
        | DriverError::Name(_)
        | DriverError::Params(_)
        | DriverError::Capability(_)
        | DriverError::InvalidField { .. }
        | DriverError::NotSupported(_) => Code::InvalidArgument,
        DriverError::Size(SizeError::Negative { .. } | SizeError::Unset) => Code::InvalidArgument,
        DriverError::Size(_) => Code::OutOfRange,
        DriverError::VolumeNotFound(_) => Code::NotFound,
        DriverError::Incompatible { .. } => Code::AlreadyExists,
        DriverError::InsufficientSpace { .. } => Code::ResourceExhausted,
        DriverError::OperationPending(_) | DriverError::InvalidToken(_) => Code::Aborted,
        DriverError::PoolUnusable { .. } => Code::FailedPrecondition,
        DriverError::Internal(_) => Code::Internal,
        DriverError::Rds(rds) => match rds {
            routeros::Error::NotFound(_) => Code::NotFound,
            routeros::Error::AlreadyExists(_) => Code::AlreadyExists,
            routeros::Error::NoSpace(_) => Code::ResourceExhausted,
            routeros::Error::Unavailable(_) | routeros::Error::Unauthenticated(_) => {
                Code::Unavailable
            }
            routeros::Error::Unsupported(_) => Code::FailedPrecondition,
            routeros::Error::Invalid(_) | routeros::Error::Protocol(_) => Code::Internal,
        },
    }
}

impl From<DriverError> for Status {
    fn from(error: DriverError) -> Self {
        let code = code_of(&error);
        let message = match &error {
            DriverError::Rds(routeros::Error::Unauthenticated(_)) => format!(
                "{error}; the RDS refused the controller's credentials or identity: the operator \
                 must fix the configured user, key, password or pinned host key/certificate"
            ),
            _ => error.to_string(),
        };
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::CapabilityError;
    use crate::naming::NameError;
    use crate::params::ParamError;

    #[test]
    fn every_error_has_its_spec_code() {
        let rds = |e: routeros::Error| DriverError::Rds(e);
        let cases = [
            (DriverError::MissingField("name"), Code::InvalidArgument),
            (DriverError::Name(NameError::Empty), Code::InvalidArgument),
            (
                DriverError::Params(ParamError::Unknown("x".into())),
                Code::InvalidArgument,
            ),
            (
                DriverError::Capability(CapabilityError::Empty),
                Code::InvalidArgument,
            ),
            (
                DriverError::NotSupported("snapshots".into()),
                Code::InvalidArgument,
            ),
            (
                DriverError::InvalidField {
                    field: "max_entries",
                    reason: "negative".into(),
                },
                Code::InvalidArgument,
            ),
            (
                DriverError::Size(SizeError::Negative {
                    required: -1,
                    limit: 0,
                }),
                Code::InvalidArgument,
            ),
            (DriverError::Size(SizeError::Unset), Code::InvalidArgument),
            (
                DriverError::Size(SizeError::RequiredAboveLimit {
                    required: 2,
                    limit: 1,
                }),
                Code::OutOfRange,
            ),
            (
                DriverError::Size(SizeError::CannotShrink {
                    current: 2,
                    limit: 1,
                }),
                Code::OutOfRange,
            ),
            (DriverError::VolumeNotFound("v".into()), Code::NotFound),
            (
                DriverError::Incompatible {
                    volume_id: "v".into(),
                    reason: "r".into(),
                },
                Code::AlreadyExists,
            ),
            (
                DriverError::InsufficientSpace {
                    pool: "p".into(),
                    wanted: 2,
                    free: 1,
                },
                Code::ResourceExhausted,
            ),
            (DriverError::OperationPending("v".into()), Code::Aborted),
            (DriverError::InvalidToken("t".into()), Code::Aborted),
            (
                DriverError::PoolUnusable {
                    pool: "p".into(),
                    reason: "r".into(),
                },
                Code::FailedPrecondition,
            ),
            (DriverError::Internal("x".into()), Code::Internal),
            (rds(routeros::Error::NotFound("x".into())), Code::NotFound),
            (
                rds(routeros::Error::AlreadyExists("x".into())),
                Code::AlreadyExists,
            ),
            (
                rds(routeros::Error::NoSpace("x".into())),
                Code::ResourceExhausted,
            ),
            (
                rds(routeros::Error::Unavailable("x".into())),
                Code::Unavailable,
            ),
            (
                rds(routeros::Error::Unauthenticated("x".into())),
                Code::Unavailable,
            ),
            (
                rds(routeros::Error::Unsupported("x".into())),
                Code::FailedPrecondition,
            ),
            (rds(routeros::Error::Invalid("x".into())), Code::Internal),
            (rds(routeros::Error::Protocol("x".into())), Code::Internal),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{shown}");
            assert!(status.message().contains(&shown), "{shown}");
        }
    }

    #[test]
    fn refused_credentials_tell_the_operator_what_to_fix() {
        let status = Status::from(DriverError::Rds(routeros::Error::Unauthenticated(
            "password rejected".into(),
        )));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("password rejected"));
        assert!(status.message().contains("operator must fix"));
    }
}
