//! One MQTT connection's task, from CONNECT to close: it reads and decodes what the device
//! sends, answers it, subscribes it in the broker, publishes what it publishes, and watches
//! its keep-alive. Published items reach the device without this task: the fan-out writes
//! them through [`MqttSub`]; this task only flushes what the socket did not take.
//!
//! Input is read into a stack buffer and only an incomplete packet is kept (`partial`), so an
//! idle connection holds no read buffer. A packet's length is checked from its first five
//! bytes, before any of its body is kept. The device's publishes are handed to the broker in
//! the order they came, and acknowledged once the broker has them; reading waits meanwhile, so
//! a device that publishes faster than the broker takes is held back by TCP, not buffered.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gripway_broker::{PatternSubscription, Subscription};
use gripway_proto::mqtt::{
    connect_info, decode, decode_connect, encode_out, inbound, scan, ConnackInfo, ConnectInfo,
    FrameError, Inbound, MqttError, Out, Scan, Version, Will,
};
use gripway_proto::mqtt_origin::WillRule;
use gripway_proto::publish::Item;
use tokio::time::{Instant, Sleep};

use super::authorize;
use super::decide::{self, Asked, Granted};
use super::origin::OriginLink;
use super::share::Membership;
use super::subscriber::MqttSub;
use crate::conn::Tokens;
use crate::error::Refusal;
use crate::hold::sink::{Ending, Input, Sink, Wake};
use crate::metrics::{ConnGuard, ConnKind};
use crate::routing::RouteEntry;
use crate::transport::ClientConn;
use crate::ws::client::ClientProtocol;
use crate::Shared;

/// Bytes read from the socket per wake before the packets in them are handled.
pub(super) const READ_CHUNK: usize = 4096;
/// Most bytes read in one wake (then the task yields; input waits in the socket).
const READ_PER_WAKE: usize = 64 * 1024;
/// Device publishes handed to the broker together, at most.
const PUBLISH_BATCH: usize = 64;

/// Why a connection ended, for the will and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// DISCONNECT with reason 0: no will.
    Clean,
    /// DISCONNECT 0x04 (v5): the will is sent.
    WithWill,
    /// The device went away, broke the protocol, or timed out: the will is sent.
    Lost,
    /// The server is shutting down: no will.
    Drain,
    /// Another connection took the session over: no will, nothing stored here.
    TakenOver,
}

/// One granted subscription held by the task: dropping it unsubscribes.
pub(super) struct Held {
    pub(super) filter: Arc<str>,
    pub(super) _subscription: Holding,
}

/// What keeps a subscription in the broker: the connection's own place in a channel, or its
/// place in a shared subscription's group.
pub(super) enum Holding {
    Channel(Subscription),
    Group(#[allow(dead_code, reason = "held for its Drop")] Membership),
    Pattern(#[allow(dead_code, reason = "held for its Drop")] PatternSubscription),
}

/// A device's publish, decided: the item, and how to acknowledge it.
pub(super) struct ToPublish {
    pub(super) item: Item,
    pub(super) ack: Option<Out>,
    /// The item's id was made here (the origin gave none).
    pub(super) fresh: bool,
}

pub(crate) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) sub: Arc<MqttSub>,
    /// None until CONNECT was accepted.
    pub(super) route: Option<Arc<RouteEntry>>,
    /// Requests to the route's origin and the answers it let us reuse (None: the demo
    /// origin, which decides in process).
    pub(super) link: Option<Box<OriginLink>>,
    pub(super) version: Version,
    /// An incomplete packet (empty and unallocated between packets).
    pub(super) partial: BytesMut,
    timer: Pin<Box<Sleep>>,
    /// Keep-alive × 1.5, in milliseconds (zero: none); not a `Duration`, so that the task
    /// stays within 280 B, under tokio's next 128-byte step.
    keep_alive_ms: u32,
    last_seen: Instant,
    pub(super) held: Vec<Held>,
    /// What few sessions need (a will, a persistent session, QoS 2, retained messages being
    /// sent), boxed: an ordinary idle connection keeps one pointer for it.
    pub(super) extra: Option<Box<Extra>>,
    pub(super) to_publish: Vec<ToPublish>,
    /// MQTT over WebSocket: the WebSocket protocol state (packets come in binary messages).
    pub(super) ws: Option<Box<ClientProtocol>>,
    _tokens: Tokens,
    guard: ConnGuard,
}

/// The parts of a session few connections use.
#[derive(Default)]
pub(super) struct Extra {
    /// The will and the channel it goes to.
    pub(super) will: Option<(Will, String)>,
    /// Retained messages found by the subscriptions of the SUBSCRIBE being handled, sent
    /// after its SUBACK (the fan-out is held back meanwhile).
    pub(super) retained: Option<Vec<Arc<gripway_broker::Message>>>,
    /// Seconds the session outlives the connection (0: it ends with it).
    pub(super) expiry: u32,
    /// QoS 2 packet ids published and awaiting the device's PUBREL.
    pub(super) awaiting_rel: Vec<u16>,
}

/// Runs an MQTT connection on a task of its own, sized for it: the task that accepted it is
/// sized for HTTP's larger future (768 B a connection, for its whole life, against 384).
pub(crate) async fn run(shared: Arc<Shared>, conn: ClientConn, tokens: Tokens) {
    tokio::spawn(start(shared, conn, tokens));
}

/// An MQTT connection's future, until it ends. The session is made before the future, so
/// that the future keeps it once.
pub(crate) fn start(
    shared: Arc<Shared>,
    conn: ClientConn,
    tokens: Tokens,
) -> impl Future<Output = ()> + Send + 'static {
    drive(setup(shared, conn, tokens, false))
}

/// Runs an MQTT connection whose packets travel in WebSocket messages (the handshake was
/// answered).
pub(crate) fn run_ws(
    shared: Arc<Shared>,
    conn: ClientConn,
    tokens: Tokens,
) -> impl Future<Output = ()> + Send + 'static {
    drive(setup(shared, conn, tokens, true))
}

/// The session of a connection that has not sent CONNECT yet.
fn setup(shared: Arc<Shared>, conn: ClientConn, tokens: Tokens, ws: bool) -> Session {
    let ClientConn {
        sock, guard, buf, ..
    } = conn;
    drop(buf);
    let sink = Sink::new(sock, shared.config.grip.subscriber_queue_bytes);
    let deadline = Instant::now() + shared.config.proxy.request_head_timeout;
    let s = Session {
        sub: Arc::new(MqttSub::new(sink, Version::V3, u32::MAX, u16::MAX)),
        shared: shared.clone(),
        route: None,
        link: None,
        version: Version::V3,
        partial: BytesMut::new(),
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        keep_alive_ms: 0,
        last_seen: Instant::now(),
        held: Vec::new(),
        extra: None,
        to_publish: Vec::new(),
        ws: ws.then(|| {
            // binary messages up to the largest packet (plus a frame's worth of slack)
            let max = shared.config.mqtt.max_packet_bytes as usize + 16;
            Box::new(ClientProtocol::new(max, false))
        }),
        _tokens: tokens,
        guard,
    };
    s.sub.state.lock().ws = ws;
    s
}

/// Runs a session until it ends. Not an async fn: that would keep the session twice, as its
/// argument and as the variable the body uses.
#[allow(clippy::manual_async_fn)] // see above
fn drive(mut s: Session) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let end = loop {
            let wake = s
                .sub
                .sink
                .wait_with(Some(s.timer.as_mut()), Input::Report)
                .await;
            let mut step = match wake {
                Wake::Readable => s.on_input(),
                Wake::Timer => s.on_timer(),
                Wake::Notified => s.on_notified(),
                Wake::End(Ending::Slow) => {
                    s.shared.metrics.dropped("slow-subscriber");
                    Step::End(End::Lost)
                }
                Wake::End(_) => Step::End(End::Lost),
            };
            // publishing awaits the broker, asking awaits the origin: both boxed, so the
            // task is not sized for them
            step = loop {
                step = match step {
                    Step::Publish(then) => match Box::pin(s.publish()).await {
                        Step::End(e) => Step::End(e),
                        _ => match then {
                            Some(e) => Step::End(e),
                            // input may be waiting behind the batch: read on
                            None => s.on_input(),
                        },
                    },
                    Step::Ask(asked) => {
                        if !s.to_publish.is_empty() {
                            if let Step::End(e) = Box::pin(s.publish()).await {
                                break Step::End(e);
                            }
                        }
                        match Box::pin(s.ask(*asked)).await {
                            // packets may be waiting behind the one asked about
                            Step::Continue => s.on_input(),
                            other => other,
                        }
                    }
                    other => break other,
                };
            };
            if let Step::End(end) = step {
                break end;
            }
        };
        // boxed: winding down needs more state than running, and only once
        Box::pin(s.finish(end)).await;
    }
}

/// What handling input leads to.
pub(super) enum Step {
    Continue,
    /// Publish what the device sent, then end (Some) or go on reading (None).
    Publish(Option<End>),
    /// Ask the origin (after publishing what came before), then go on.
    Ask(Box<Asked>),
    End(End),
}

impl Session {
    /// Reads what the device sent and handles every complete packet in it; stops early to
    /// publish a batch the device sent.
    fn on_input(&mut self) -> Step {
        let mut read = 0;
        loop {
            let (got, closed) = match self.read_some() {
                Ok(x) => x,
                Err(_) => return Step::End(End::Lost),
            };
            read += got;
            if got > 0 {
                self.last_seen = Instant::now();
            }
            let end = match self.handle_packets() {
                Step::End(e) => Some(e),
                // the drive loop publishes what came before, then asks
                ask @ Step::Ask(_) => return ask,
                _ if closed => Some(End::Lost),
                _ => None,
            };
            // what came before a DISCONNECT (or a violation) is published all the same
            if !self.to_publish.is_empty() {
                return Step::Publish(end);
            }
            if let Some(e) = end {
                return Step::End(e);
            }
            if got == 0 || read >= READ_PER_WAKE {
                return Step::Continue;
            }
        }
    }

    /// Reads up to a chunk into `partial`: bytes read, and whether the device closed.
    fn read_some(&mut self) -> io::Result<(usize, bool)> {
        if self.ws.is_some() {
            return self.read_ws();
        }
        let mut buf = [0u8; READ_CHUNK];
        match self.sub.sink.try_read(&mut buf) {
            Ok(0) => Ok((0, true)),
            Ok(n) => {
                self.partial.extend_from_slice(&buf[..n]);
                Ok((n, false))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((0, false)),
            Err(e) => Err(e),
        }
    }

    /// Handles the complete packets in `partial`, leaving an incomplete one there.
    fn handle_packets(&mut self) -> Step {
        let max = self.shared.config.mqtt.max_packet_bytes;
        loop {
            if self.to_publish.len() >= PUBLISH_BATCH {
                return Step::Continue;
            }
            if self.route.is_none() && self.partial.first().is_some_and(|b| *b != 0x10) {
                // not CONNECT: refused at its first byte, not when its length has arrived
                return self.refuse("mqtt-no-connect", "the first packet was not CONNECT");
            }
            let frame = match scan(&self.partial, max) {
                Ok(Scan::NeedMore) => break,
                Ok(Scan::Frame(f)) => f,
                Err(FrameError::TooLarge { remaining }) => {
                    return self.violation(
                        0x95,
                        "mqtt-packet-too-large",
                        format!("a packet of {remaining} bytes (the limit is {max})"),
                    );
                }
                Err(FrameError::Malformed) => {
                    return self.violation(
                        0x81,
                        "mqtt-malformed",
                        "a malformed packet length".into(),
                    )
                }
            };
            let total = frame.total_len();
            if self.partial.len() < total {
                break;
            }
            let packet = self.partial.split_to(total);
            let body = &packet[usize::from(frame.header_len)..];
            let step = if self.route.is_none() {
                match decode_connect(body) {
                    Ok(c) => self.on_connect(connect_info(c)),
                    Err(MqttError::UnsupportedProtocol { level }) => {
                        // a v3 CONNACK: 0x01, unacceptable protocol version
                        self.send_out(Version::V3, &connack(1));
                        self.refuse(
                            "mqtt-unsupported-protocol",
                            &format!("protocol level {level}"),
                        )
                    }
                    Err(e) => self.refuse("mqtt-malformed", &e.to_string()),
                }
            } else {
                match decode(self.version, frame, body) {
                    Ok(p) => self.on_packet(inbound(p)),
                    Err(e) => self.violation(0x81, "mqtt-malformed", e.to_string()),
                }
            };
            if !matches!(step, Step::Continue) {
                // ended, or the origin is asked before the packets after this one
                return step;
            }
        }
        if self.partial.is_empty() {
            // an idle connection keeps no read buffer
            self.partial = BytesMut::new();
        }
        Step::Continue
    }

    /// Writes one packet of the connection's protocol; false if the device is too slow.
    pub(super) fn send_out(&self, version: Version, out: &Out) -> bool {
        let Ok(bytes) = encode_out(version, out) else {
            return true;
        };
        self.send_packet(&[&bytes::Bytes::from(bytes)])
    }

    /// The rarely used parts, made on first use.
    pub(super) fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Seconds the session outlives the connection (0: it ends with it).
    pub(super) fn expiry(&self) -> u32 {
        self.extra.as_deref().map_or(0, |e| e.expiry)
    }

    pub(super) fn send(&self, out: &Out) -> bool {
        self.send_out(self.version, out)
    }

    /// Counts and logs a refusal of the device's input, and ends the connection.
    pub(super) fn refuse(&self, reason: &'static str, detail: &str) -> Step {
        let refusal = Refusal::client(400, reason, format!("MQTT client: {detail}"));
        self.shared.metrics.error(&refusal);
        refusal.log("");
        Step::End(End::Lost)
    }

    /// A protocol violation after CONNECT: v5 gets DISCONNECT with `code` first.
    pub(super) fn violation(&self, code: u8, reason: &'static str, detail: String) -> Step {
        if self.route.is_some() {
            self.send(&Out::Disconnect { code });
        }
        self.refuse(reason, &detail)
    }

    fn on_connect(&mut self, c: ConnectInfo) -> Step {
        let shared = self.shared.clone();
        let cfg = &shared.config.mqtt;
        self.version = c.version;
        // a connect's refusals by the server itself
        let refuse_with = |s: &Self, v5: u8, v3: u8, reason: &'static str, detail: &str| {
            let code = if c.version == Version::V5 { v5 } else { v3 };
            s.send(&connack(code));
            s.refuse(reason, detail)
        };
        if c.client_id.len() > cfg.max_client_id_bytes {
            return refuse_with(
                self,
                0x85,
                2,
                "mqtt-client-id-invalid",
                "client id too long",
            );
        }
        if c.client_id.is_empty() && !c.clean {
            // MQTT 3.1.1 §3.1.3-8: an empty id needs a clean session
            return refuse_with(self, 0x85, 2, "mqtt-client-id-invalid", "empty client id");
        }
        if c.auth_method.is_some() {
            return refuse_with(self, 0x8C, 5, "mqtt-auth-method", "enhanced authentication");
        }
        let routes = self.shared.routes.current();
        let tls = self.sub.sink.is_tls();
        let Some(route) = routes
            .find("", &cfg.path, gripway_proto::routes::RouteProto::Http, tls)
            .cloned()
        else {
            // ours, as for HTTP: no route takes MQTT
            let code = if c.version == Version::V5 { 0x88 } else { 3 };
            self.send(&connack(code));
            let refusal = Refusal::internal(502, "no-route", "no route for MQTT");
            self.shared.metrics.error(&refusal);
            refusal.log("");
            return Step::End(End::Lost);
        };
        if authorize::is_demo(&route) {
            return self.accept(c, route, Granted::default());
        }
        // the route's origin decides
        let peer = self
            .sub
            .sink
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        self.link = Some(Box::new(OriginLink::new(
            c.level,
            c.client_id.to_string(),
            c.username.as_deref().map(str::to_string),
            peer,
            tls,
        )));
        Step::Ask(Box::new(Asked::Connect {
            info: Box::new(c),
            route,
        }))
    }

    /// Accepts a CONNECT as `granted` says: CONNACK, the subscriber set up, keep-alive armed.
    pub(super) fn accept(
        &mut self,
        c: ConnectInfo,
        route: Arc<RouteEntry>,
        granted: Granted,
    ) -> Step {
        let shared = self.shared.clone();
        let cfg = &shared.config.mqtt;
        let mut info = ConnackInfo {
            receive_max: Some(cfg.max_inflight),
            max_packet: Some(cfg.max_packet_bytes),
            // the origin maps wildcard filters to channels; the demo to channel patterns
            wildcards: true,
            shared: true,
            ..ConnackInfo::default()
        };
        let client_id: Arc<str> = if let Some(id) = granted.client_id {
            let id: Arc<str> = Arc::from(id);
            if *id != *c.client_id {
                info.assigned_client_id = Some(id.clone());
            }
            id
        } else if c.client_id.is_empty() {
            let id: Arc<str> = Arc::from(format!("gw-{}", uuid::Uuid::new_v4().simple()));
            info.assigned_client_id = Some(id.clone());
            id
        } else {
            c.client_id.clone()
        };
        if let Some(link) = self.link.as_mut() {
            link.client_id = client_id.to_string();
        }
        let mut keep_alive = c.keep_alive;
        let max = granted
            .keep_alive
            .map_or(cfg.max_keep_alive_secs, |k| k.min(cfg.max_keep_alive_secs));
        if c.version == Version::V5 && (keep_alive == 0 || keep_alive > max) {
            keep_alive = max;
            info.server_keep_alive = Some(keep_alive);
        }
        // a session outlives the connection when asked (v3 clean_session = 0, v5 an expiry),
        // for at most max_session_secs, and at most what the origin allows
        let cap = granted
            .session_expiry
            .map_or(cfg.max_session_secs, |s| s.min(cfg.max_session_secs));
        let expiry = match c.version {
            Version::V3 if !c.clean => cap,
            Version::V3 => 0,
            Version::V5 => c.session_expiry.min(cap),
        };
        if expiry > 0 {
            self.extra().expiry = expiry;
        }
        if c.version == Version::V5 && c.session_expiry > cap {
            info.session_expiry = Some(cap);
        }
        let sessions = &self.shared.mqtt_sessions;
        let mut stored = sessions.take(&route.label, &client_id);
        // a connection live under this id is taken over: told 0x8E and closed; its session
        // (subscriptions, unacknowledged messages) comes here
        if let Some(old) = sessions.go_live(&route.label, &client_id, &self.sub) {
            let kept = super::resume::keep(&old, expiry.max(1));
            {
                let mut st = old.sink.lock();
                old.state.lock().close = Some(0x8E);
                old.sink.notify(&mut st);
            }
            if !kept.is_empty() {
                stored = Some(kept);
            }
        }
        // clean start: what was stored is dropped
        let stored = stored.filter(|_| !c.clean);
        {
            let mut state = self.sub.state.lock();
            state.track = expiry > 0;
            state.client_id = Some(client_id.clone());
            state.version = c.version;
            state.max_packet = c.max_packet.unwrap_or(u32::MAX);
            state.receive_max = c.receive_max.max(1);
        }
        let prefix = &route.route.prefix;
        let will = c.will.and_then(|w| {
            let channel = match granted.will {
                WillRule::Default => format!("{prefix}{}", w.topic),
                WillRule::Channel(c) => format!("{prefix}{c}"),
                WillRule::Drop => return None,
            };
            Some((w, channel))
        });
        if will.is_some() {
            self.extra().will = will;
        }
        self.route = Some(route);
        self.guard.become_kind(ConnKind::Mqtt);
        self.shared.drain.roster.enlist(&self.sub);
        if !self.send(&Out::Connack {
            session_present: stored.is_some(),
            code: 0,
            info: Box::new(info),
        }) {
            return Step::End(End::Lost);
        }
        // keep-alive: 1.5 times what the device asked (MQTT §3.1.2.10)
        self.keep_alive_ms = u32::from(keep_alive) * 1500;
        self.arm_keep_alive();
        if let Some(stored) = stored {
            self.resume(stored);
        }
        Step::Continue
    }

    fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive_ms > 0).then(|| Duration::from_millis(self.keep_alive_ms.into()))
    }

    fn arm_keep_alive(&mut self) {
        let due = match self.keep_alive() {
            // none asked (v3): only the drain or the device ends it
            None => Instant::now() + Duration::from_secs(86_400 * 365),
            Some(k) => self.last_seen + k,
        };
        self.timer.as_mut().reset(due);
    }

    fn on_timer(&mut self) -> Step {
        if self.route.is_none() {
            return self.refuse("mqtt-connect-timeout", "no CONNECT in time");
        }
        if self
            .keep_alive()
            .is_some_and(|k| Instant::now() >= self.last_seen + k)
        {
            return self.violation(0x8D, "mqtt-keep-alive-timeout", "keep-alive passed".into());
        }
        self.arm_keep_alive();
        Step::Continue
    }

    fn on_notified(&mut self) -> Step {
        let close = self.sub.state.lock().close.take();
        match close {
            Some(code) => {
                self.send(&Out::Disconnect { code });
                Step::End(if code == 0x8E {
                    End::TakenOver
                } else {
                    End::Drain
                })
            }
            None => Step::Continue,
        }
    }

    fn on_packet(&mut self, p: Inbound) -> Step {
        match p {
            Inbound::Publish(p) => self.on_publish(p),
            Inbound::Puback(pid) => {
                self.sub.acknowledged(pid);
                Step::Continue
            }
            Inbound::Pubrel(pid) => {
                if let Some(e) = self.extra.as_deref_mut() {
                    e.awaiting_rel.retain(|p| *p != pid);
                }
                self.ok(self.send(&Out::Pubcomp { pid }))
            }
            Inbound::Pubrec(_) | Inbound::Pubcomp(_) => self.violation(
                0x82,
                "mqtt-protocol-error",
                "PUBREC or PUBCOMP, but no QoS 2 message was sent".into(),
            ),
            Inbound::Subscribe { pid, filters } => self.on_subscribe(pid, filters),
            Inbound::Unsubscribe { pid, filters } => self.on_unsubscribe(pid, filters),
            Inbound::Pingreq => self.ok(self.send(&Out::Pingresp)),
            // MQTT 5 §3.14.4: only a normal disconnection (0x00) discards the will
            Inbound::Disconnect(0) => Step::End(End::Clean),
            Inbound::Disconnect(_) => Step::End(End::WithWill),
            Inbound::Auth => self.violation(
                0x82,
                "mqtt-protocol-error",
                "AUTH, but no enhanced authentication was agreed".into(),
            ),
            Inbound::Unexpected(what) => {
                self.violation(0x82, "mqtt-protocol-error", what.to_string())
            }
        }
    }

    pub(super) fn ok(&self, written: bool) -> Step {
        if written {
            Step::Continue
        } else {
            Step::End(End::Lost)
        }
    }

    /// Hands the device's decided publishes to the broker, in order, then acknowledges them.
    async fn publish(&mut self) -> Step {
        let batch = std::mem::take(&mut self.to_publish);
        let (items, acks): (Vec<(Item, bool)>, Vec<Option<Out>>) = batch
            .into_iter()
            .map(|t| ((t.item, t.fresh), t.ack))
            .unzip();
        match crate::publish_api::publish_device_items(&self.shared, items).await {
            Ok(()) => {
                // the batch's acknowledgements in one write
                let mut out = Vec::new();
                for ack in acks.iter().flatten() {
                    if let Ok(bytes) = encode_out(self.version, ack) {
                        out.extend_from_slice(&bytes);
                    }
                }
                if !out.is_empty() && !self.send_packet(&[&bytes::Bytes::from(out)]) {
                    return Step::End(End::Lost);
                }
                Step::Continue
            }
            Err(refusal) => {
                self.shared.metrics.error(&refusal);
                refusal.log("MQTT publish: ");
                // not acknowledged: v5 says why; a v3 device resends after reconnecting
                if self.version == Version::V5 {
                    for ack in acks.into_iter().flatten() {
                        if let Out::Puback { pid, .. } = ack {
                            self.send(&Out::Puback { pid, code: 0x80 });
                        }
                    }
                    Step::Continue
                } else {
                    Step::End(End::Lost)
                }
            }
        }
    }

    /// Ends the connection: the will (unless it ended cleanly or at a drain), then what is
    /// queued is flushed briefly.
    async fn finish(mut self, end: End) {
        self.shared.drain.roster.leave(&self.sub);
        self.held.clear();
        // what the session was sent stays, for storing it below

        let client_id = self.sub.state.lock().client_id.clone();
        let will_sent = match end {
            End::Lost | End::WithWill => self.send_will(client_id.as_ref()).await,
            _ => false,
        };
        let persistent = client_id.clone().map(|id| (self.expiry(), id));
        if let (Some(route), Some((expiry, client_id))) = (&self.route, persistent) {
            if !matches!(end, End::Drain | End::TakenOver) && expiry > 0 {
                let stored = super::resume::keep(&self.sub, expiry);
                self.shared
                    .mqtt_sessions
                    .put(&route.label, &client_id, stored);
            }
        }
        if let Some(route) = &self.route {
            if let Some(client_id) = client_id.as_deref() {
                self.shared
                    .mqtt_sessions
                    .leave(&route.label, client_id, &self.sub);
            }
            self.notify(decide::will_event(will_sent, end));
        }
        // what the device was sent last (a DISCONNECT, an answer) goes out if it can
        let sink = &self.sub.sink;
        if !sink.is_drained() {
            let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(2)));
            {
                let mut st = sink.lock();
                sink.finish(&mut st);
            }
            loop {
                match sink.wait(Some(timer.as_mut())).await {
                    Wake::End(_) | Wake::Timer => break,
                    _ => {}
                }
            }
        }
    }
}

/// Makes room for one more subscription, exactly while there are few: most devices
/// subscribe once, and a `Vec`'s first growth makes room for four (224 B of entries).
pub(super) fn room_for_one<T>(v: &mut Vec<T>) {
    if v.len() < 4 {
        v.reserve_exact(1);
    }
}

#[cfg(test)]
#[test]
fn one_subscription_takes_room_for_one() {
    let mut v = Vec::new();
    for n in 1..=6 {
        room_for_one(&mut v);
        v.push(n);
        let room = if n <= 4 { n } else { 8 };
        assert_eq!(v.capacity(), room, "after {n}");
    }
}

/// A CONNACK refusing with `code` (v3 return code or v5 reason code).
pub(super) fn connack(code: u8) -> Out {
    Out::Connack {
        session_present: false,
        code,
        info: Box::default(),
    }
}

#[cfg(test)]
pub(crate) const SESSION_SIZE: usize = std::mem::size_of::<Session>();
