//! CSI services for the RDS. This crate holds the driver's decisions: naming, sizes,
//! parameters and volume context (pure, unit-tested); the gRPC services build on them.

pub mod capacity;
pub mod naming;
pub mod node;
pub mod params;
