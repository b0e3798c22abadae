//! Gripway's broker: channels, subscriptions and fan-out, with no HTTP in sight.
//!
//! A published item becomes a [`Message`](message::Message); the [`Broker`](dispatch::Broker)
//! queues it on the shard that owns its channel, where dedup ([`dedup`]) and `prev-id`
//! ordering ([`sequencer`], which also hands each message the shard's shared channel name,
//! [`names`]) decide when it goes out, and the [`Registry`](registry::Registry)
//! hands it to every [`Subscriber`](subscriber::Subscriber) of the channel. Transports
//! implement `Subscriber` in the server crate; the broker never touches a socket.
//!
//! Per-channel history lives behind the [`history::HistoryStore`] seam: each shard appends
//! what it fans out, before the fan-out. A fan-out to many subscribers runs on the shard's
//! lane ([`lanes`]), off the shard's thread. A bus between nodes plugs in later, in front of
//! the shard queues.

mod ack;
pub mod aged;
pub mod dedup;
pub mod dispatch;
mod grouping;
pub mod history;
mod inline;
pub mod lanes;
pub mod last_ids;
pub mod message;
pub mod names;
pub mod patterns;
pub mod registry;
pub mod sequencer;
pub mod stats;
pub mod subscriber;

pub use dispatch::{Broker, BrokerConfig, PublishError};
pub use message::{ChannelName, Message, StreamAction, StreamFormat, WsFormat, WsOp};
pub use patterns::PatternSubscription;
pub use registry::{NewChannels, Registry, Subscription};
pub use stats::BrokerStats;
pub use subscriber::{Delivery, Subscriber, Transport};
