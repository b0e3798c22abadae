//! A byte-level MQTT client for tests that need to see exactly what the server sends (reason
//! codes, packet ids, DISCONNECT before a close) or to send what a well-behaved client library
//! never would. Packets are encoded and decoded by the `mqtt-proto` crate through
//! `gripway_proto::mqtt`, never by hand, except where a test means to send malformed bytes
//! ([`MqttClient::send_raw`]). It speaks over TCP ([`MqttClient::open`]) or over any stream,
//! a TLS one say ([`MqttClient::over`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gripway_proto::mqtt::{decode, scan, v3, v5, Packet, Scan, Version};
use gripway_proto::mqtt::{Pid, QoS, QosPid, TopicFilter, TopicName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// What a test's CONNECT says.
#[derive(Clone)]
pub struct ConnectOptions {
    /// MQTT 3.1.1 or 5.0.
    pub version: Version,
    /// The client id.
    pub client_id: String,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Clean session / clean start.
    pub clean: bool,
    /// User name and password.
    pub login: Option<(String, Vec<u8>)>,
    /// A will: topic, payload, QoS.
    pub will: Option<(String, Vec<u8>, u8)>,
    /// v5 session expiry.
    pub session_expiry: Option<u32>,
    /// v5 will delay interval, in seconds.
    pub will_delay: Option<u32>,
    /// v5 will properties (the delay above is set in them).
    pub will_properties: Option<v5::WillProperties>,
    /// v5 receive maximum.
    pub receive_max: Option<u16>,
}

impl ConnectOptions {
    /// A clean session with this id, keep-alive 60 s.
    pub fn new(version: Version, client_id: &str) -> Self {
        ConnectOptions {
            version,
            client_id: client_id.into(),
            keep_alive: 60,
            clean: true,
            login: None,
            will: None,
            session_expiry: None,
            will_delay: None,
            will_properties: None,
            receive_max: None,
        }
    }
}

/// A stream an MQTT client can speak over (TCP, TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One MQTT connection over TCP or another stream.
pub struct MqttClient {
    sock: Box<dyn Io>,
    buf: Vec<u8>,
    /// The version CONNECT chose.
    pub version: Version,
    next_pid: u16,
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).expect("qos 0-2")
}

impl MqttClient {
    /// Opens a TCP connection without sending anything.
    pub async fn open(addr: SocketAddr) -> MqttClient {
        let sock = TcpStream::connect(addr).await.expect("MQTT connect");
        sock.set_nodelay(true).expect("nodelay");
        Self::over(sock)
    }

    /// A client over `stream` (already connected: a TLS stream after its handshake, say),
    /// nothing sent yet.
    pub fn over(stream: impl Io + 'static) -> MqttClient {
        MqttClient {
            sock: Box::new(stream),
            buf: Vec::new(),
            version: Version::V3,
            next_pid: 0,
        }
    }

    /// Sends CONNECT over `stream` (see [`MqttClient::over`]); returns the client and the
    /// CONNACK.
    pub async fn connect_over(
        stream: impl Io + 'static,
        o: &ConnectOptions,
    ) -> (MqttClient, Packet) {
        let mut c = Self::over(stream);
        c.send_connect(o).await;
        let ack = c.next().await.expect("a CONNACK");
        (c, ack)
    }

    /// Connects and sends CONNECT; returns the client and the CONNACK (a v3 or v5 packet).
    pub async fn connect(addr: SocketAddr, o: &ConnectOptions) -> (MqttClient, Packet) {
        let mut c = Self::open(addr).await;
        c.version = o.version;
        c.send_connect(o).await;
        let ack = c.next().await.expect("a CONNACK");
        (c, ack)
    }

    /// Sends CONNECT as `o` says.
    pub async fn send_connect(&mut self, o: &ConnectOptions) {
        self.version = o.version;
        let id: Arc<str> = Arc::from(o.client_id.as_str());
        let bytes = match o.version {
            Version::V3 => {
                let mut c = v3::Connect::new(id, o.keep_alive);
                c.clean_session = o.clean;
                if let Some((u, p)) = &o.login {
                    c.username = Some(Arc::from(u.as_str()));
                    c.password = Some(Bytes::from(p.clone()));
                }
                if let Some((t, p, q)) = &o.will {
                    c.last_will = Some(v3::LastWill::new(
                        qos(*q),
                        TopicName::try_from(t.as_str()).expect("will topic"),
                        Bytes::from(p.clone()),
                    ));
                }
                v3::Packet::Connect(c)
                    .encode()
                    .expect("encode")
                    .as_ref()
                    .to_vec()
            }
            Version::V5 => {
                let mut c = v5::Connect::new(id, o.keep_alive);
                c.clean_start = o.clean;
                c.properties.session_expiry_interval = o.session_expiry;
                c.properties.receive_max = o.receive_max;
                if let Some((u, p)) = &o.login {
                    c.username = Some(Arc::from(u.as_str()));
                    c.password = Some(Bytes::from(p.clone()));
                }
                if let Some((t, p, q)) = &o.will {
                    let mut will = v5::LastWill::new(
                        qos(*q),
                        TopicName::try_from(t.as_str()).expect("will topic"),
                        Bytes::from(p.clone()),
                    );
                    if let Some(p) = &o.will_properties {
                        will.properties = p.clone();
                    }
                    will.properties.delay_interval = o.will_delay;
                    c.last_will = Some(will);
                }
                v5::Packet::Connect(c)
                    .encode()
                    .expect("encode")
                    .as_ref()
                    .to_vec()
            }
        };
        self.send_raw(&bytes).await;
    }

    fn pid(&mut self) -> Pid {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        Pid::try_from(self.next_pid).expect("pid")
    }

    /// Sends SUBSCRIBE for `filters` (filter, QoS) and returns the SUBACK's codes.
    pub async fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        let pid = self.pid();
        let bytes = match self.version {
            Version::V3 => v3::Packet::Subscribe(v3::Subscribe::new(
                pid,
                filters
                    .iter()
                    .map(|(f, q)| (TopicFilter::try_from(*f).expect("filter"), qos(*q)))
                    .collect(),
            ))
            .encode()
            .expect("encode")
            .as_ref()
            .to_vec(),
            Version::V5 => v5::Packet::Subscribe(v5::Subscribe::new(
                pid,
                filters
                    .iter()
                    .map(|(f, q)| {
                        (
                            TopicFilter::try_from(*f).expect("filter"),
                            v5::SubscriptionOptions::new(qos(*q)),
                        )
                    })
                    .collect(),
            ))
            .encode()
            .expect("encode")
            .as_ref()
            .to_vec(),
        };
        self.send_raw(&bytes).await;
        self.read_suback().await
    }

    /// Subscribes (MQTT 5) to one filter with the given options; returns its SUBACK code.
    pub async fn subscribe_with(&mut self, filter: &str, options: v5::SubscriptionOptions) -> u8 {
        let pid = self.pid();
        let topics = vec![(TopicFilter::try_from(filter).expect("filter"), options)];
        let bytes = v5::Packet::Subscribe(v5::Subscribe::new(pid, topics))
            .encode()
            .expect("encode")
            .as_ref()
            .to_vec();
        self.send_raw(&bytes).await;
        self.read_suback().await[0]
    }

    /// Reads packets until a SUBACK; returns its codes.
    async fn read_suback(&mut self) -> Vec<u8> {
        loop {
            match self.next().await.expect("a SUBACK") {
                Packet::V3(v3::Packet::Suback(s)) => {
                    return s
                        .topics
                        .iter()
                        .map(|c| match c {
                            v3::SubscribeReturnCode::MaxLevel0 => 0,
                            v3::SubscribeReturnCode::MaxLevel1 => 1,
                            v3::SubscribeReturnCode::MaxLevel2 => 2,
                            v3::SubscribeReturnCode::Failure => 0x80,
                        })
                        .collect()
                }
                Packet::V5(v5::Packet::Suback(s)) => {
                    return s.topics.iter().map(|c| *c as u8).collect()
                }
                _ => continue,
            }
        }
    }

    /// Sends UNSUBSCRIBE for `filters` (the UNSUBACK is not waited for).
    pub async fn unsubscribe(&mut self, filters: &[&str]) {
        let pid = self.pid();
        let topics = filters
            .iter()
            .map(|f| TopicFilter::try_from(*f).expect("filter"))
            .collect();
        let bytes = match self.version {
            Version::V3 => v3::Packet::Unsubscribe(v3::Unsubscribe::new(pid, topics))
                .encode()
                .expect("encode")
                .as_ref()
                .to_vec(),
            Version::V5 => v5::Packet::Unsubscribe(v5::Unsubscribe::new(pid, topics))
                .encode()
                .expect("encode")
                .as_ref()
                .to_vec(),
        };
        self.send_raw(&bytes).await;
    }

    /// Sends PUBLISH (QoS 1 gets a packet id; the PUBACK is not waited for).
    pub async fn publish(&mut self, topic: &str, payload: &[u8], q: u8) {
        let bytes = self.publish_bytes(topic, payload, q);
        self.send_raw(&bytes).await;
    }

    /// A PUBLISH packet's bytes (the next packet id taken for QoS 1 and 2), to send later,
    /// several in one write for instance.
    pub fn publish_bytes(&mut self, topic: &str, payload: &[u8], q: u8) -> Vec<u8> {
        let qos_pid = match q {
            0 => QosPid::Level0,
            1 => QosPid::Level1(self.pid()),
            _ => QosPid::Level2(self.pid()),
        };
        let topic = TopicName::try_from(topic).expect("topic");
        let payload = Bytes::copy_from_slice(payload);
        match self.version {
            Version::V3 => v3::Packet::Publish(v3::Publish::new(qos_pid, topic, payload))
                .encode()
                .expect("encode")
                .as_ref()
                .to_vec(),
            Version::V5 => v5::Packet::Publish(v5::Publish::new(qos_pid, topic, payload))
                .encode()
                .expect("encode")
                .as_ref()
                .to_vec(),
        }
    }

    /// Acknowledges a QoS 1 PUBLISH.
    pub async fn puback(&mut self, pid: u16) {
        let pid = Pid::try_from(pid).expect("pid");
        let bytes = match self.version {
            Version::V3 => v3::Packet::Puback(pid)
                .encode()
                .expect("e")
                .as_ref()
                .to_vec(),
            Version::V5 => v5::Packet::Puback(v5::Puback::new_success(pid))
                .encode()
                .expect("e")
                .as_ref()
                .to_vec(),
        };
        self.send_raw(&bytes).await;
    }

    /// Sends PINGREQ.
    pub async fn ping(&mut self) {
        self.send_raw(&[0xC0, 0]).await;
    }

    /// Sends DISCONNECT (v5 with reason `code`).
    pub async fn disconnect(&mut self, code: u8) {
        match self.version {
            Version::V3 => self.send_raw(&[0xE0, 0]).await,
            Version::V5 => self.send_raw(&[0xE0, 1, code]).await,
        }
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.expect("MQTT write");
    }

    /// The next packet within [`WAIT`]; None if the server closed the connection.
    pub async fn next(&mut self) -> Option<Packet> {
        self.next_within(WAIT).await
    }

    /// The next packet within `within`; None if the server closed the connection; panics
    /// if nothing came in time.
    pub async fn next_within(&mut self, within: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + within;
        self.read_packet(deadline)
            .await
            .expect("an MQTT packet in time")
    }

    /// The next packet, None at the close, Err when `deadline` passes first.
    async fn read_packet(&mut self, deadline: tokio::time::Instant) -> Result<Option<Packet>, ()> {
        loop {
            if let Ok(Scan::Frame(f)) = scan(&self.buf, 1 << 28) {
                if self.buf.len() >= f.total_len() {
                    let packet: Vec<u8> = self.buf.drain(..f.total_len()).collect();
                    let body = &packet[usize::from(f.header_len)..];
                    let p = decode(self.version, f, body).expect("server packet decodes");
                    return Ok(Some(p));
                }
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.sock.read(&mut chunk))
                .await
                .map_err(|_| ())?;
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next PUBLISH's (topic, payload, QoS, packet id), acknowledging QoS 1 when `ack`;
    /// other packets (PUBACK, PINGRESP) are skipped.
    pub async fn next_publish(&mut self, ack: bool) -> (String, Vec<u8>, u8, Option<u16>) {
        loop {
            let p = self.next().await.expect("a PUBLISH before the close");
            let (topic, payload, q) = match p {
                Packet::V3(v3::Packet::Publish(p)) => (p.topic_name, p.payload, p.qos_pid),
                Packet::V5(v5::Packet::Publish(p)) => (p.topic_name, p.payload, p.qos_pid),
                _ => continue,
            };
            let pid = q.pid().map(Pid::value);
            if let (true, Some(pid)) = (ack, pid) {
                self.puback(pid).await;
            }
            return (topic.to_string(), payload.to_vec(), q.qos() as u8, pid);
        }
    }

    /// True if the server closes the connection within `within` (packets before the close
    /// are pushed to `seen`).
    pub async fn closed_within(&mut self, within: Duration, seen: &mut Vec<Packet>) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.read_packet(deadline).await {
                Ok(Some(p)) => seen.push(p),
                Ok(None) => return true,
                Err(()) => return false,
            }
        }
    }
}

/// The reason code of a CONNACK (v3 return code or v5 reason code).
pub fn connack_code(p: &Packet) -> u8 {
    match p {
        Packet::V3(v3::Packet::Connack(c)) => c.code as u8,
        Packet::V5(v5::Packet::Connack(c)) => c.reason_code as u8,
        other => panic!("not a CONNACK: {other:?}"),
    }
}

/// The session-present flag of a CONNACK.
pub fn session_present(p: &Packet) -> bool {
    match p {
        Packet::V3(v3::Packet::Connack(c)) => c.session_present,
        Packet::V5(v5::Packet::Connack(c)) => c.session_present,
        other => panic!("not a CONNACK: {other:?}"),
    }
}
