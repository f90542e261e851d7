//! CSI services for the RDS. The driver's decisions (naming, sizes, parameters, capabilities,
//! volume plans) are pure and unit-tested; the services build on them: [`identity`],
//! [`controller`], served by [`server`]. Errors are typed ([`error`]) and become gRPC statuses
//! in one place ([`status`]).

pub mod cache;
pub mod capabilities;
pub mod capacity;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod device_health;
pub mod error;
pub mod identity;
pub mod leader;
pub mod locks;
pub mod metrics;
pub mod naming;
pub mod node;
pub mod node_id;
pub mod params;
pub mod server;
pub mod status;
pub mod traced;

pub use config::ControllerConfig;
pub use error::DriverError;
