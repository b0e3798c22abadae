//! Cluster mode's bus: how a Gripway node publishes channel items to, and receives them from,
//! the other nodes through one NATS JetStream stream. JetStream stores each item (replicated,
//! deduplicated by id, retained by count, age and bytes) and gives it the sequence number
//! that is the one order of its channel on every node; its RePublish pushes each stored item
//! to the nodes that subscribed to the channel; this crate adds the per-channel gap check and
//! catch-up so that a node delivers every stored item of a subscribed channel once, in order,
//! across lost messages, server kills and reconnects. Design and verified NATS behaviour:
//! [`bus`]'s docs.
//!
//! It knows nothing of the server or the broker: payloads are opaque bytes (the item in
//! publish-item JSON), and deliveries come out of one bounded queue for the broker to take.

mod atomic;
pub mod bus;
pub mod config;
mod direct;
pub mod error;
mod interest;
pub mod peers;
pub mod subject;

pub use bus::{Ack, Bus, BusStats, Delivery, Stored};
pub use config::{Auth, ClusterConfig, ConfigError, Tls};
pub use error::BusError;
pub use peers::{ClusterCount, ClusterTotals, LocalCounts, Peers};
