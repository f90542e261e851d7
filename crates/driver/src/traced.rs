//! Runs one RPC inside its tracing span, logs its outcome and converts its error.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tracing::{Instrument as _, Span};

use crate::error::DriverError;

/// How loudly a successful call is logged: changes at `info`, queries (which the CO repeats
/// often) at `debug`. Failures are `info` when they are ordinary answers to the caller
/// (a bad argument, a missing volume, a call already pending) and `warn` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Change,
    Query,
}

/// Runs `call` (the RPC `method`) in `span`, logs how it ended and how long it took, counts
/// it in the RPC metrics (when registered, [`crate::metrics::rpc`]), and turns its error into
/// the gRPC status (the conversion itself lives in [`crate::status`]).
pub async fn traced<T>(
    method: &'static str,
    span: Span,
    verbosity: Verbosity,
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<Response<T>, Status> {
    async move {
        let started = Instant::now();
        let outcome = call.await.map_err(Status::from);
        let elapsed = started.elapsed();
        let elapsed_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
        let code = outcome.as_ref().map_or_else(Status::code, |_| Code::Ok);
        if let Some(metrics) = crate::metrics::rpc() {
            metrics.observe(method, code, elapsed);
        }
        match outcome {
            Ok(reply) => {
                match verbosity {
                    Verbosity::Change => tracing::info!(elapsed_ms, "ok"),
                    Verbosity::Query => tracing::debug!(elapsed_ms, "ok"),
                }
                Ok(Response::new(reply))
            }
            Err(status) => {
                let (code, message) = (status.code(), status.message());
                if is_answer_to_the_caller(code) {
                    tracing::info!(elapsed_ms, ?code, message, "refused");
                } else {
                    tracing::warn!(elapsed_ms, ?code, message, "failed");
                }
                Err(status)
            }
        }
    }
    .instrument(span)
    .await
}

/// Codes that describe the request rather than a fault of the plugin or the device.
fn is_answer_to_the_caller(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Aborted
            | Code::OutOfRange
    )
}
