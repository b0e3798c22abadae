//! One view of MQTT 3.1.1 and 5.0 for the server: what a client sends, decoded by either
//! version into the same plain values ([`Inbound`], [`ConnectInfo`]), and what the server
//! answers, encoded for the connection's version by the crate ([`Out`]). The server's session
//! logic is written once against these; the version differences (v5's reason codes and
//! properties, v3's return codes) stay here.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{v3, v5, Pid, QoS, QosPid};

use super::decode::{Connect, MqttError, Packet, Version};
use super::encode::encode;

/// A CONNECT's content, in either version. MQTT 5 properties the server uses are lifted out;
/// a v3 client gets their v3 meanings (no session expiry unless clean is false, no limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The version the rest of the connection speaks.
    pub version: Version,
    /// The protocol level byte (3 for MQTT 3.1, 4 for 3.1.1, 5).
    pub level: u8,
    /// The client identifier (may be empty).
    pub client_id: Arc<str>,
    /// Clean session (v3) or clean start (v5).
    pub clean: bool,
    /// Keep-alive in seconds (0: none).
    pub keep_alive: u16,
    /// The user name, if given.
    pub username: Option<Arc<str>>,
    /// The password, if given.
    pub password: Option<Bytes>,
    /// The will, if any.
    pub will: Option<Will>,
    /// v5 session expiry interval in seconds (v3: 0).
    pub session_expiry: u32,
    /// v5 receive maximum: QoS 1 messages the client takes unacknowledged (v3: 65,535).
    pub receive_max: u16,
    /// v5 largest packet the client takes (v3: no limit).
    pub max_packet: Option<u32>,
    /// v5: the client wants reason strings (default true).
    pub problem_info: bool,
    /// v5: the client asked for enhanced authentication (not supported).
    pub auth_method: Option<Arc<str>>,
    /// v5 user properties, in order.
    pub user_properties: Vec<(Arc<str>, Arc<str>)>,
}

/// A will message from CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Bytes,
    /// Its QoS (0, 1 or 2).
    pub qos: u8,
    /// Whether it is retained.
    pub retain: bool,
    /// v5 will delay interval in seconds.
    pub delay: u32,
    /// v5 will properties but the delay, as the PUBLISH the will becomes carries them
    /// (boxed; None when there are none, and for 3.1.1).
    pub properties: Option<Box<v5::PublishProperties>>,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest {
    /// The filter as written (`$share/...` included).
    pub filter: Arc<str>,
    /// The most QoS the client wants.
    pub qos: u8,
    /// v5: do not send the client its own publishes.
    pub no_local: bool,
    /// v5: keep the retain flag as published.
    pub retain_as_published: bool,
    /// v5 retain handling: 0 send retained at subscribe, 1 only for a new subscription, 2 never.
    pub retain_handling: u8,
}

/// A PUBLISH from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPublish {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its payload.
    pub payload: Bytes,
    /// Its QoS (0, 1 or 2).
    pub qos: u8,
    /// Its packet id (QoS 1 and 2).
    pub pid: Option<u16>,
    /// The retain flag.
    pub retain: bool,
    /// The DUP flag.
    pub dup: bool,
    /// v5 properties (boxed: most publishes have none worth keeping, and v3 has none).
    pub properties: Option<Box<v5::PublishProperties>>,
}

/// A packet from the client after CONNECT, in either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// PUBLISH.
    Publish(InPublish),
    /// PUBACK for a QoS 1 message we sent.
    Puback(u16),
    /// PUBREC for a QoS 2 message we sent (we send none: a protocol error).
    Pubrec(u16),
    /// PUBREL for a QoS 2 message the client sent.
    Pubrel(u16),
    /// PUBCOMP (we send no QoS 2: a protocol error).
    Pubcomp(u16),
    /// SUBSCRIBE.
    Subscribe {
        /// Its packet id.
        pid: u16,
        /// Its filters, in order.
        filters: Vec<SubRequest>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Its packet id.
        pid: u16,
        /// Its filters, in order.
        filters: Vec<Arc<str>>,
    },
    /// PINGREQ.
    Pingreq,
    /// DISCONNECT with its reason code (v3: 0).
    Disconnect(u8),
    /// v5 AUTH (enhanced authentication is not supported).
    Auth,
    /// A second CONNECT, or a packet only a server sends: a protocol error.
    Unexpected(&'static str),
}

fn qos_u8(q: QoS) -> u8 {
    q as u8
}

fn pid_u16(q: QosPid) -> Option<u16> {
    q.pid().map(Pid::value)
}

/// The plain values of a decoded CONNECT.
pub fn connect_info(connect: Connect) -> ConnectInfo {
    match connect {
        Connect::V3(c) => ConnectInfo {
            version: Version::V3,
            level: c.protocol as u8,
            client_id: c.client_id,
            clean: c.clean_session,
            keep_alive: c.keep_alive,
            username: c.username,
            password: c.password,
            will: c.last_will.map(|w| Will {
                topic: Arc::from(&*w.topic_name),
                payload: w.message,
                qos: qos_u8(w.qos),
                retain: w.retain,
                delay: 0,
                properties: None,
            }),
            session_expiry: 0,
            receive_max: u16::MAX,
            max_packet: None,
            problem_info: true,
            auth_method: None,
            user_properties: Vec::new(),
        },
        Connect::V5(c) => {
            let p = c.properties;
            ConnectInfo {
                version: Version::V5,
                level: 5,
                client_id: c.client_id,
                clean: c.clean_start,
                keep_alive: c.keep_alive,
                username: c.username,
                password: c.password,
                will: c.last_will.map(|w| Will {
                    topic: Arc::from(&*w.topic_name),
                    payload: w.payload,
                    qos: qos_u8(w.qos),
                    retain: w.retain,
                    delay: w.properties.delay_interval.unwrap_or(0),
                    properties: will_publish_props(w.properties),
                }),
                session_expiry: p.session_expiry_interval.unwrap_or(0),
                receive_max: p.receive_max.unwrap_or(u16::MAX),
                max_packet: p.max_packet_size,
                problem_info: p.request_problem_info.unwrap_or(true),
                auth_method: p.auth_method,
                user_properties: p
                    .user_properties
                    .into_iter()
                    .map(|u| (u.name, u.value))
                    .collect(),
            }
        }
    }
}

/// The plain value of a decoded packet (after CONNECT).
pub fn inbound(packet: Packet) -> Inbound {
    match packet {
        Packet::V3(p) => match p {
            v3::Packet::Publish(p) => Inbound::Publish(InPublish {
                topic: Arc::from(&*p.topic_name),
                payload: p.payload,
                qos: qos_u8(p.qos_pid.qos()),
                pid: pid_u16(p.qos_pid),
                retain: p.retain,
                dup: p.dup,
                properties: None,
            }),
            v3::Packet::Puback(pid) => Inbound::Puback(pid.value()),
            v3::Packet::Pubrec(pid) => Inbound::Pubrec(pid.value()),
            v3::Packet::Pubrel(pid) => Inbound::Pubrel(pid.value()),
            v3::Packet::Pubcomp(pid) => Inbound::Pubcomp(pid.value()),
            v3::Packet::Subscribe(s) => Inbound::Subscribe {
                pid: s.pid.value(),
                filters: s
                    .topics
                    .into_iter()
                    .map(|(f, q)| SubRequest {
                        filter: Arc::from(&*f),
                        qos: qos_u8(q),
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: 0,
                    })
                    .collect(),
            },
            v3::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pid: u.pid.value(),
                filters: u.topics.iter().map(|f| Arc::from(&**f)).collect(),
            },
            v3::Packet::Pingreq => Inbound::Pingreq,
            v3::Packet::Disconnect => Inbound::Disconnect(0),
            v3::Packet::Connect(_) => Inbound::Unexpected("a second CONNECT"),
            _ => Inbound::Unexpected("a packet only a server sends"),
        },
        Packet::V5(p) => match p {
            v5::Packet::Publish(p) => {
                let props = p.properties;
                let empty = props == v5::PublishProperties::default();
                Inbound::Publish(InPublish {
                    topic: Arc::from(&*p.topic_name),
                    payload: p.payload,
                    qos: qos_u8(p.qos_pid.qos()),
                    pid: pid_u16(p.qos_pid),
                    retain: p.retain,
                    dup: p.dup,
                    properties: (!empty).then(|| Box::new(props)),
                })
            }
            v5::Packet::Puback(a) => Inbound::Puback(a.pid.value()),
            v5::Packet::Pubrec(a) => Inbound::Pubrec(a.pid.value()),
            v5::Packet::Pubrel(a) => Inbound::Pubrel(a.pid.value()),
            v5::Packet::Pubcomp(a) => Inbound::Pubcomp(a.pid.value()),
            v5::Packet::Subscribe(s) => Inbound::Subscribe {
                pid: s.pid.value(),
                filters: s
                    .topics
                    .into_iter()
                    .map(|(f, o)| SubRequest {
                        filter: Arc::from(&*f),
                        qos: qos_u8(o.max_qos),
                        no_local: o.no_local,
                        retain_as_published: o.retain_as_published,
                        retain_handling: o.retain_handling as u8,
                    })
                    .collect(),
            },
            v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
                pid: u.pid.value(),
                filters: u.topics.iter().map(|f| Arc::from(&**f)).collect(),
            },
            v5::Packet::Pingreq => Inbound::Pingreq,
            v5::Packet::Disconnect(d) => Inbound::Disconnect(d.reason_code as u8),
            v5::Packet::Auth(_) => Inbound::Auth,
            v5::Packet::Connect(_) => Inbound::Unexpected("a second CONNECT"),
            _ => Inbound::Unexpected("a packet only a server sends"),
        },
    }
}

/// What a CONNACK says beside its code (MQTT 5 only; a v3 CONNACK has no properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnackInfo {
    /// QoS 1 messages the server takes unacknowledged.
    pub receive_max: Option<u16>,
    /// Largest packet the server takes.
    pub max_packet: Option<u32>,
    /// The keep-alive the server imposes (when it lowered the client's).
    pub server_keep_alive: Option<u16>,
    /// The client id the server assigned (the client sent an empty one).
    pub assigned_client_id: Option<Arc<str>>,
    /// The session expiry the server grants, when it differs from the client's.
    pub session_expiry: Option<u32>,
    /// A human-readable reason.
    pub reason_string: Option<Arc<str>>,
    /// Whether wildcard subscriptions are available.
    pub wildcards: bool,
    /// Whether shared subscriptions are available.
    pub shared: bool,
}

/// A packet the server sends (all but PUBLISH, whose head the fan-out writes itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// CONNACK: session present, the code (v3 return code or v5 reason code, as the
    /// connection's version reads it) and v5 properties.
    Connack {
        /// Session present.
        session_present: bool,
        /// The code in the connection's version.
        code: u8,
        /// v5 properties.
        info: Box<ConnackInfo>,
    },
    /// SUBACK with one code per filter (v3: 0, 1, 2 or 0x80; v5 reason codes).
    Suback {
        /// The SUBSCRIBE's packet id.
        pid: u16,
        /// One per filter.
        codes: Vec<u8>,
    },
    /// UNSUBACK (v5: one success code per filter).
    Unsuback {
        /// The UNSUBSCRIBE's packet id.
        pid: u16,
        /// One per filter (v5).
        codes: Vec<u8>,
    },
    /// PUBACK with a v5 reason code (v3: no code).
    Puback {
        /// The PUBLISH's packet id.
        pid: u16,
        /// v5 reason code.
        code: u8,
    },
    /// PUBREC with a v5 reason code.
    Pubrec {
        /// The PUBLISH's packet id.
        pid: u16,
        /// v5 reason code.
        code: u8,
    },
    /// PUBCOMP.
    Pubcomp {
        /// The PUBREL's packet id.
        pid: u16,
    },
    /// PINGRESP.
    Pingresp,
    /// v5 DISCONNECT with a reason code (v3 has no server DISCONNECT: nothing is written).
    Disconnect {
        /// v5 reason code.
        code: u8,
    },
}

fn pid(n: u16) -> Result<Pid, MqttError> {
    Ok(Pid::try_from(n)?)
}

fn bad_code(code: u8) -> MqttError {
    MqttError::V5(v5::ErrorV5::InvalidReasonCode(
        v5::PacketType::Connack,
        code,
    ))
}

/// Encodes `out` for a connection of `version`; empty when `version` has no such packet (a
/// v3 DISCONNECT from the server). Errors only on a code the version does not define.
pub fn encode_out(version: Version, out: &Out) -> Result<Vec<u8>, MqttError> {
    let packet = match (version, out) {
        (Version::V3, Out::Disconnect { .. }) => return Ok(Vec::new()),
        (
            Version::V3,
            Out::Connack {
                session_present,
                code,
                ..
            },
        ) => Packet::V3(v3::Packet::Connack(v3::Connack::new(
            *session_present,
            v3::ConnectReturnCode::from_u8(*code)?,
        ))),
        (Version::V3, Out::Suback { pid: p, codes }) => {
            let codes = codes
                .iter()
                .map(|c| match c {
                    0 => v3::SubscribeReturnCode::MaxLevel0,
                    1 => v3::SubscribeReturnCode::MaxLevel1,
                    2 => v3::SubscribeReturnCode::MaxLevel2,
                    _ => v3::SubscribeReturnCode::Failure,
                })
                .collect();
            Packet::V3(v3::Packet::Suback(v3::Suback::new(pid(*p)?, codes)))
        }
        (Version::V3, Out::Unsuback { pid: p, .. }) => Packet::V3(v3::Packet::Unsuback(pid(*p)?)),
        (Version::V3, Out::Puback { pid: p, .. }) => Packet::V3(v3::Packet::Puback(pid(*p)?)),
        (Version::V3, Out::Pubrec { pid: p, .. }) => Packet::V3(v3::Packet::Pubrec(pid(*p)?)),
        (Version::V3, Out::Pubcomp { pid: p }) => Packet::V3(v3::Packet::Pubcomp(pid(*p)?)),
        (Version::V3, Out::Pingresp) => Packet::V3(v3::Packet::Pingresp),
        (
            Version::V5,
            Out::Connack {
                session_present,
                code,
                info,
            },
        ) => {
            let reason = v5::ConnectReasonCode::from_u8(*code).ok_or_else(|| bad_code(*code))?;
            let mut c = v5::Connack::new(*session_present, reason);
            let p = &mut c.properties;
            p.receive_max = info.receive_max;
            p.max_packet_size = info.max_packet;
            p.server_keep_alive = info.server_keep_alive;
            p.assigned_client_id = info.assigned_client_id.clone();
            p.session_expiry_interval = info.session_expiry;
            p.reason_string = info.reason_string.clone();
            if *code == 0 {
                // no Maximum QoS: QoS 2 publishes are taken (and handled as QoS 1, which a
                // v5 client told Maximum QoS 1 could not send at all)
                p.topic_alias_max = Some(0);
                p.wildcard_subscription_available = Some(info.wildcards);
                p.shared_subscription_available = Some(info.shared);
                p.subscription_id_available = Some(false);
                p.retain_available = Some(true);
            }
            Packet::V5(v5::Packet::Connack(c))
        }
        (Version::V5, Out::Suback { pid: p, codes }) => {
            let codes = codes
                .iter()
                .map(|c| v5::SubscribeReasonCode::from_u8(*c).ok_or_else(|| bad_code(*c)))
                .collect::<Result<_, _>>()?;
            Packet::V5(v5::Packet::Suback(v5::Suback::new(pid(*p)?, codes)))
        }
        (Version::V5, Out::Unsuback { pid: p, codes }) => {
            let codes = codes
                .iter()
                .map(|c| v5::UnsubscribeReasonCode::from_u8(*c).ok_or_else(|| bad_code(*c)))
                .collect::<Result<_, _>>()?;
            Packet::V5(v5::Packet::Unsuback(v5::Unsuback::new(pid(*p)?, codes)))
        }
        (Version::V5, Out::Puback { pid: p, code }) => {
            let reason = v5::PubackReasonCode::from_u8(*code).ok_or_else(|| bad_code(*code))?;
            Packet::V5(v5::Packet::Puback(v5::Puback::new(pid(*p)?, reason)))
        }
        (Version::V5, Out::Pubrec { pid: p, code }) => {
            let reason = v5::PubrecReasonCode::from_u8(*code).ok_or_else(|| bad_code(*code))?;
            Packet::V5(v5::Packet::Pubrec(v5::Pubrec::new(pid(*p)?, reason)))
        }
        (Version::V5, Out::Pubcomp { pid: p }) => {
            Packet::V5(v5::Packet::Pubcomp(v5::Pubcomp::new_success(pid(*p)?)))
        }
        (Version::V5, Out::Pingresp) => Packet::V5(v5::Packet::Pingresp),
        (Version::V5, Out::Disconnect { code }) => {
            let reason = v5::DisconnectReasonCode::from_u8(*code).ok_or_else(|| bad_code(*code))?;
            Packet::V5(v5::Packet::Disconnect(v5::Disconnect::new(reason)))
        }
    };
    Ok(encode(&packet)?.as_ref().to_vec())
}

/// A v5 will's properties as those of the PUBLISH it becomes (all but the delay); None when
/// it has none.
fn will_publish_props(w: v5::WillProperties) -> Option<Box<v5::PublishProperties>> {
    let p = v5::PublishProperties {
        payload_is_utf8: w.payload_is_utf8,
        message_expiry_interval: w.message_expiry_interval,
        response_topic: w.response_topic,
        correlation_data: w.correlation_data,
        user_properties: w.user_properties,
        content_type: w.content_type,
        ..v5::PublishProperties::default()
    };
    (p != v5::PublishProperties::default()).then(|| Box::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{decode, decode_connect, scan, Scan};

    fn frame_and_decode(version: Version, wire: &[u8]) -> Packet {
        let Ok(Scan::Frame(f)) = scan(wire, 1 << 20) else {
            panic!("no frame")
        };
        decode(version, f, &wire[usize::from(f.header_len)..]).unwrap()
    }

    #[test]
    fn v3_connect_becomes_plain_values() {
        let mut c = v3::Connect::new(Arc::from("dev-1"), 30);
        c.username = Some(Arc::from("alice"));
        c.password = Some(Bytes::from_static(b"s3cret"));
        c.clean_session = false;
        c.last_will = Some(v3::LastWill::new(
            QoS::Level1,
            mqtt_proto::TopicName::try_from("status/dev-1").unwrap(),
            Bytes::from_static(b"gone"),
        ));
        let wire = v3::Packet::Connect(c).encode().unwrap();
        let body = &wire.as_ref()[2..];
        let info = connect_info(decode_connect(body).unwrap());
        assert_eq!(info.version, Version::V3);
        assert_eq!(info.level, 4);
        assert_eq!(&*info.client_id, "dev-1");
        assert!(!info.clean);
        assert_eq!(info.keep_alive, 30);
        assert_eq!(info.username.as_deref(), Some("alice"));
        assert_eq!(info.password.as_deref(), Some(&b"s3cret"[..]));
        let will = info.will.unwrap();
        assert_eq!(
            (&*will.topic, will.qos, &will.payload[..]),
            ("status/dev-1", 1, &b"gone"[..])
        );
        assert_eq!(info.receive_max, u16::MAX);
    }

    #[test]
    fn v5_connect_lifts_its_properties() {
        let mut c = v5::Connect::new(Arc::from(""), 60);
        c.properties.session_expiry_interval = Some(300);
        c.properties.receive_max = Some(10);
        c.properties.max_packet_size = Some(4096);
        let wire = v5::Packet::Connect(c).encode().unwrap();
        let Ok(Scan::Frame(f)) = scan(wire.as_ref(), 1 << 20) else {
            panic!()
        };
        let info =
            connect_info(decode_connect(&wire.as_ref()[usize::from(f.header_len)..]).unwrap());
        assert_eq!(info.version, Version::V5);
        assert_eq!((info.session_expiry, info.receive_max), (300, 10));
        assert_eq!(info.max_packet, Some(4096));
        assert!(info.client_id.is_empty());
    }

    #[test]
    fn subscribe_and_publish_in_both_versions() {
        let filter = mqtt_proto::TopicFilter::try_from("a/+/c").unwrap();
        let v3s = v3::Packet::Subscribe(v3::Subscribe::new(
            Pid::try_from(7).unwrap(),
            vec![(filter.clone(), QoS::Level1)],
        ));
        let got = inbound(frame_and_decode(
            Version::V3,
            v3s.encode().unwrap().as_ref(),
        ));
        let Inbound::Subscribe { pid, filters } = got else {
            panic!("{got:?}")
        };
        assert_eq!((pid, &*filters[0].filter, filters[0].qos), (7, "a/+/c", 1));

        let mut opts = v5::SubscriptionOptions::new(QoS::Level0);
        opts.no_local = true;
        let v5s = v5::Packet::Subscribe(v5::Subscribe::new(
            Pid::try_from(9).unwrap(),
            vec![(filter, opts)],
        ));
        let got = inbound(frame_and_decode(
            Version::V5,
            v5s.encode().unwrap().as_ref(),
        ));
        let Inbound::Subscribe { filters, .. } = got else {
            panic!("{got:?}")
        };
        assert!(filters[0].no_local);

        let topic = mqtt_proto::TopicName::try_from("t").unwrap();
        let p = v5::Packet::Publish(v5::Publish::new(
            QosPid::Level1(Pid::try_from(3).unwrap()),
            topic,
            Bytes::from_static(b"hi"),
        ));
        let got = inbound(frame_and_decode(Version::V5, p.encode().unwrap().as_ref()));
        let Inbound::Publish(p) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            (&*p.topic, &p.payload[..], p.qos, p.pid),
            ("t", &b"hi"[..], 1, Some(3))
        );
        assert!(p.properties.is_none());
    }

    #[test]
    fn server_packets_round_trip_in_both_versions() {
        for version in [Version::V3, Version::V5] {
            for out in [
                Out::Suback {
                    pid: 4,
                    codes: vec![1, 0x80],
                },
                Out::Puback { pid: 4, code: 0 },
                Out::Pingresp,
                Out::Connack {
                    session_present: false,
                    code: 0,
                    info: Box::default(),
                },
                Out::Unsuback {
                    pid: 5,
                    codes: vec![0],
                },
            ] {
                let wire = encode_out(version, &out).unwrap();
                let Ok(Scan::Frame(f)) = scan(&wire, 1 << 20) else {
                    panic!("{out:?}")
                };
                assert_eq!(f.total_len(), wire.len(), "{out:?}");
            }
        }
        // v3 has no server DISCONNECT; v5's carries its code
        assert!(encode_out(Version::V3, &Out::Disconnect { code: 0x8B })
            .unwrap()
            .is_empty());
        assert_eq!(
            encode_out(Version::V5, &Out::Disconnect { code: 0x8B }).unwrap(),
            vec![0xE0, 1, 0x8B]
        );
        // the v3 SUBACK failure code is 0x80
        let wire = encode_out(
            Version::V3,
            &Out::Suback {
                pid: 1,
                codes: vec![0x87],
            },
        )
        .unwrap();
        assert_eq!(wire.last(), Some(&0x80));
        // a code v5 does not define is an error, not a panic
        assert!(encode_out(Version::V5, &Out::Puback { pid: 1, code: 0x42 }).is_err());
        assert!(encode_out(Version::V3, &Out::Puback { pid: 0, code: 0 }).is_err());
    }
}
