//! MQTT 3.1, 3.1.1 and 5.0 as bytes and values, with no I/O: a thin adapter over the
//! `mqtt-proto` crate that frames packets itself and calls the crate only on paths that cannot
//! panic or allocate from an untrusted length (docs/mqtt-design.md §1.2–1.3).
//!
//! `frame` finds one packet's fixed header and refuses an over-limit length before any body is
//! buffered; `decode` turns one complete body into a packet (`decode_connect` for the first,
//! whose protocol level picks the version); `encode` writes the server's packets through the
//! crate. The crate's own stream/poll decoders are never used: they pre-allocate the declared
//! length and reach `unreachable!()` on some packet types. `packets` gives the server one view
//! of both versions: plain values in, plain answers out. `props` encodes a message's MQTT 5
//! property block once, through the crate; `publish` writes the few bytes of a PUBLISH that
//! differ per subscriber (its head and packet id), checked byte for byte against the crate's
//! own encoding; `topic` validates and matches topic names and filters. The crate's `v3` and `v5` modules and common types
//! are re-exported so callers need no direct dependency on it.

mod decode;
mod encode;
mod frame;
mod packets;
mod props;
mod publish;
mod topic;

pub use decode::{decode, decode_connect, Connect, MqttError, Packet, Version};
pub use encode::encode;
pub use frame::{scan, Frame, FrameError, Scan};
pub use mqtt_proto::{v3, v5, Pid, QoS, QosPid, TopicFilter, TopicName};
pub use packets::{
    connect_info, encode_out, inbound, ConnackInfo, ConnectInfo, InPublish, Inbound, Out,
    SubRequest, Will,
};
pub use props::{decode_v5_publish_props, from_v5, v5_publish_props};
pub use publish::{
    encode_v5_props, publish_head, publish_total_len, PublishHead, PublishTail, MAX_REMAINING,
};
pub use topic::{
    has_wildcards, is_shared, matches, parse_shared, valid_filter, valid_topic_name, Shared,
    MAX_TOPIC_BYTES,
};
