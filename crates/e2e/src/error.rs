//! What can go wrong while driving a flow.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: driver::server::ServerError,
    },
    #[error("{call}: {status}")]
    Call {
        call: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("{call}: no answer within {seconds} s")]
    Timeout { call: &'static str, seconds: u64 },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("check failed: {0}")]
    Check(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = E2eError> = std::result::Result<T, E>;

pub(crate) fn io_at(
    context: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> E2eError {
    let path = path.into();
    move |source| E2eError::Io {
        context,
        path,
        source,
    }
}
