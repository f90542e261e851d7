//! Container Storage Interface (CSI) v1: the protobuf messages and the gRPC
//! clients and servers of the CSI specification, generated at build time from
//! `proto/csi.proto` (spec version [`SPEC_VERSION`]).
//!
//! Every message with a field the specification marks `csi_secret` formats
//! through `Debug` with those values hidden, so requests can be logged with
//! `{:?}` without leaking credentials.

use std::collections::HashMap;
use std::fmt;

/// Version of the CSI specification whose interface definition is compiled in.
pub const SPEC_VERSION: &str = "1.12.0";

/// The encoded `google.protobuf.FileDescriptorSet` of `csi.proto` and its
/// imports, custom options included (e.g. for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/csi_v1_descriptor_set.bin"));

/// The well-known protobuf types the messages use (`Timestamp` of a snapshot).
pub use prost_types;

/// Generated code for the protobuf package `csi.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("csi.v1");
    include!(concat!(env!("OUT_DIR"), "/csi_v1_redacted_debug.rs"));
}

/// `Debug` view of a secrets map: key names are shown, values never are.
pub struct RedactedSecrets<'a>(pub &'a HashMap<String, String>);

impl fmt::Debug for RedactedSecrets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_map()
            .entries(
                keys.into_iter()
                    .map(|key| (key, format_args!("<redacted>"))),
            )
            .finish()
    }
}
