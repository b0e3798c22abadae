//! What a device may do, and what follows: its CONNECT, SUBSCRIBE and PUBLISH are decided by
//! the demo origin in process ([`authorize`]) or asked of the route's origin over HTTP
//! ([`origin`]), or answered from what the origin let us reuse; this file applies the
//! decision (CONNACK, subscriptions and SUBACK, the item to publish and its acknowledgement,
//! packets the origin replies to the device with).
//!
//! A packet that needs the origin stops the handling of later packets until the answer is
//! in (they wait, undecoded, in the session's buffer), so a device's packets take effect in
//! the order it sent them.

use std::sync::Arc;

use bytes::Bytes;
use gripway_broker::Subscriber;
use gripway_proto::mqtt::{
    parse_shared, publish_head, ConnectInfo, InPublish, Out, SubRequest, Version,
};
use gripway_proto::mqtt_origin::{
    default_channel, Connect, ConnectProperties, Event, EventResult, FilterResult,
    MessageProperties, Publish, PublishResult, SubscribeFilter, WillRule,
};

use super::origin;
use super::session::{End, Held, Holding, Session, Step, ToPublish};
use super::subscriber::Entry;
use super::{authorize, device_item};
use crate::error::{Refusal, Source};
use crate::routing::RouteEntry;

/// What the origin is being asked about, and what is needed to act on its answer.
pub(crate) enum Asked {
    Connect {
        info: Box<ConnectInfo>,
        route: Arc<RouteEntry>,
    },
    Subscribe {
        pid: u16,
        filters: Vec<SubRequest>,
        /// Codes decided already; None for the filters asked about.
        codes: Vec<Option<u8>>,
    },
    Publish {
        p: InPublish,
        ack: Option<Out>,
    },
}

/// What an accepted CONNECT is granted beyond the server's own limits.
#[derive(Default)]
pub(crate) struct Granted {
    /// The client id the origin assigned.
    pub(crate) client_id: Option<String>,
    /// The most keep-alive the origin allows.
    pub(crate) keep_alive: Option<u16>,
    /// The longest the origin lets the session outlive the connection, in seconds.
    pub(crate) session_expiry: Option<u32>,
    /// What becomes of the will.
    pub(crate) will: WillRule,
}

fn message_props(p: &InPublish) -> MessageProperties {
    let Some(v) = p.properties.as_deref() else {
        return MessageProperties::default();
    };
    MessageProperties {
        payload_format: v.payload_is_utf8.map(u8::from),
        message_expiry: v.message_expiry_interval,
        content_type: v.content_type.as_deref().map(str::to_string),
        response_topic: v.response_topic.as_deref().map(str::to_string),
        correlation_data: v.correlation_data.clone(),
        user: v
            .user_properties
            .iter()
            .map(|u| (u.name.to_string(), u.value.to_string()))
            .collect(),
        will_delay: None,
    }
}

impl Asked {
    /// The events of the request.
    fn events(&self) -> Vec<Event> {
        match self {
            Asked::Connect { info, .. } => vec![Event::Connect(Connect {
                password: info.password.clone(),
                clean: info.clean,
                keep_alive: info.keep_alive,
                will: info
                    .will
                    .as_ref()
                    .map(|w| gripway_proto::mqtt_origin::Will {
                        topic: w.topic.to_string(),
                        qos: w.qos,
                        retain: w.retain,
                        content: w.payload.clone(),
                        properties: MessageProperties {
                            will_delay: (w.delay > 0).then_some(w.delay),
                            ..MessageProperties::default()
                        },
                    }),
                properties: ConnectProperties {
                    session_expiry: (info.session_expiry > 0).then_some(info.session_expiry),
                    user: info
                        .user_properties
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                },
            })],
            Asked::Subscribe { filters, codes, .. } => vec![Event::Subscribe {
                filters: filters
                    .iter()
                    .zip(codes)
                    .filter(|(_, c)| c.is_none())
                    .map(|(f, _)| SubscribeFilter {
                        filter: f.filter.to_string(),
                        qos: f.qos,
                    })
                    .collect(),
            }],
            Asked::Publish { p, .. } => vec![Event::Publish(Publish {
                topic: p.topic.to_string(),
                qos: p.qos,
                retain: p.retain,
                content: p.payload.clone(),
                properties: message_props(p),
            })],
        }
    }
}

impl Session {
    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// Asks the origin about `asked` and acts on the answer.
    pub(super) async fn ask(&mut self, asked: Asked) -> Step {
        let route = match &asked {
            Asked::Connect { route, .. } => route.clone(),
            _ => match &self.route {
                Some(r) => r.clone(),
                None => return Step::End(End::Lost),
            },
        };
        let Some(link) = self.link.as_deref() else {
            return Step::End(End::Lost);
        };
        let events = asked.events();
        let answer = origin::ask(&self.shared, &route, link, &events).await;
        let (mut answer, secs) = match answer {
            Ok(a) => a,
            Err(refusal) => {
                self.shared.metrics.error(&refusal);
                refusal.log("MQTT origin: ");
                return self.origin_failed(asked);
            }
        };
        if let Some(link) = self.link.as_deref_mut() {
            link.set_meta(std::mem::take(&mut answer.meta));
            link.remember(&events, &answer, secs);
        }
        let result = answer.results.into_iter().next();
        match (asked, result) {
            (Asked::Connect { info, route }, Some(EventResult::Connect(r))) => {
                if r.allow {
                    let granted = Granted {
                        client_id: r.client_id,
                        keep_alive: r.keep_alive,
                        session_expiry: r.session_expiry,
                        will: r.will,
                    };
                    self.accept(*info, route, granted)
                } else {
                    let reason = r
                        .reason
                        .unwrap_or(gripway_proto::mqtt_origin::Reason::NotAuthorized);
                    let code = if info.version == Version::V5 {
                        reason.connack_v5()
                    } else {
                        reason.connack_v3()
                    };
                    self.send_out(
                        info.version,
                        &Out::Connack {
                            session_present: false,
                            code,
                            info: Box::new(gripway_proto::mqtt::ConnackInfo {
                                reason_string: r
                                    .message
                                    .filter(|_| info.problem_info)
                                    .map(Arc::from),
                                ..Default::default()
                            }),
                        },
                    );
                    self.refuse("mqtt-connect-denied", reason.name())
                }
            }
            (
                Asked::Subscribe {
                    pid,
                    filters,
                    mut codes,
                },
                Some(EventResult::Subscribe(r)),
            ) => {
                let mut results = r.filters.into_iter();
                for (f, code) in filters.iter().zip(codes.iter_mut()) {
                    if code.is_none() {
                        let r = results.next();
                        *code = Some(match r {
                            Some(r) => self.apply_filter(f, &r),
                            None => 0x80,
                        });
                    }
                }
                let codes = codes.into_iter().map(|c| c.unwrap_or(0x80)).collect();
                self.suback(pid, codes)
            }
            (Asked::Publish { p, ack }, Some(EventResult::Publish(r))) => {
                self.apply_publish(p, ack, r)
            }
            // parse_answer gives one result of the event's kind: not reached
            _ => Step::End(End::Lost),
        }
    }

    /// The origin could not be asked (unreachable, timed out, a bad answer).
    fn origin_failed(&mut self, asked: Asked) -> Step {
        match asked {
            Asked::Connect { info, .. } => {
                // v5 0x88 server unavailable, v3 3
                let code = if info.version == Version::V5 { 0x88 } else { 3 };
                self.send_out(info.version, &super::session::connack(code));
                Step::End(End::Lost)
            }
            Asked::Subscribe { pid, mut codes, .. } => {
                for c in codes.iter_mut().filter(|c| c.is_none()) {
                    *c = Some(0x80);
                }
                let codes = codes.into_iter().map(|c| c.unwrap_or(0x80)).collect();
                self.suback(pid, codes)
            }
            Asked::Publish { ack, .. } => match ack {
                // v5: not published, and says so; v3 cannot: the connection closes without
                // the acknowledgement, so the device sends it again when it reconnects
                Some(Out::Puback { pid, .. }) if self.v5() => {
                    self.ok(self.send(&Out::Puback { pid, code: 0x80 }))
                }
                Some(Out::Pubrec { pid, .. }) if self.v5() => {
                    self.ok(self.send(&Out::Pubrec { pid, code: 0x80 }))
                }
                Some(_) => Step::End(End::Lost),
                None => {
                    self.shared
                        .metrics
                        .count_error(Source::Origin, "mqtt-publish-origin-failed");
                    Step::Continue
                }
            },
        }
    }

    pub(super) fn on_publish(&mut self, p: InPublish) -> Step {
        let Some(route) = self.route.clone() else {
            return Step::End(End::Lost);
        };
        if p.qos == 2 {
            let pid = p.pid.unwrap_or(0);
            let awaiting = self.extra.as_deref().map_or(&[][..], |e| &e.awaiting_rel);
            if awaiting.contains(&pid) {
                // a resend of one already taken: answer again, publish nothing
                return self.ok(self.send(&Out::Pubrec { pid, code: 0 }));
            }
            if awaiting.len() >= usize::from(self.shared.config.mqtt.max_inflight) {
                return self.violation(
                    0x93,
                    "mqtt-receive-maximum-exceeded",
                    "too many QoS 2 publishes unacknowledged".into(),
                );
            }
        }
        let ack = match (p.qos, p.pid) {
            (1, Some(pid)) => Some(Out::Puback { pid, code: 0 }),
            (2, Some(pid)) => {
                self.extra().awaiting_rel.push(pid);
                Some(Out::Pubrec { pid, code: 0 })
            }
            _ => None,
        };
        if let Some(link) = self.link.as_deref_mut() {
            return match link.cached_publish(&p.topic) {
                Some(r) => self.apply_publish(p, ack, r),
                None => Step::Ask(Box::new(Asked::Publish { p, ack })),
            };
        }
        let channel = authorize::publish(&route, &p.topic);
        let result = PublishResult {
            allow: channel.is_ok(),
            channel: channel.ok(),
            id: None,
            publish: true,
            reply: Vec::new(),
            formats: None,
            reason: None,
        };
        self.apply_publish(p, ack, result)
    }

    /// Acts on a publish's decision: the item published (acknowledged once the broker has it),
    /// the origin's replies sent to the device, or the refusal acknowledged with its code.
    fn apply_publish(&mut self, p: InPublish, ack: Option<Out>, r: PublishResult) -> Step {
        let refused = if r.allow {
            for reply in &r.reply {
                if !self.send_reply(&reply.topic, &reply.content) {
                    return Step::End(End::Lost);
                }
            }
            if !r.publish {
                // the origin took it itself
                return match &ack {
                    Some(out) => self.ok(self.send(out)),
                    None => Step::Continue,
                };
            }
            let prefix = self.route.as_ref().map_or("", |r| r.route.prefix.as_str());
            let channel = match &r.channel {
                Some(c) if self.link.is_some() => format!("{prefix}{c}"),
                Some(c) => c.clone(),
                None => [prefix, &*p.topic].concat(),
            };
            if !self.channel_ok(&channel) {
                // an item's channel has a bound MQTT topics do not
                self.shared
                    .metrics
                    .count_error(Source::Client, "mqtt-channel-too-long");
                return self.refuse_publish(ack, 0x90);
            }
            let me = self.sub.state.lock().client_id.clone();
            let item = device_item(channel, r.id.clone(), &p, me.as_deref());
            match item.and_then(|item| self.origin_formats(item, r.formats.as_ref())) {
                Ok(item) => {
                    let fresh = r.id.is_none();
                    self.to_publish.push(ToPublish { item, ack, fresh });
                    return Step::Continue;
                }
                Err(problem) if r.formats.is_some() && problem.starts_with(FORMATS) => {
                    // the origin's formats do not make an item: its fault, not the device's
                    let refusal = Refusal::origin(false, "mqtt-origin-bad-answer", problem);
                    self.shared.metrics.error(&refusal);
                    refusal.log("MQTT publish: ");
                    0x80
                }
                Err(problem) => {
                    // MQTT allows it, an item cannot carry it (a v5 property past a limit)
                    let refusal = Refusal::client(
                        400,
                        "mqtt-publish-invalid",
                        format!("MQTT publish: {problem}"),
                    );
                    self.shared.metrics.error(&refusal);
                    refusal.log("");
                    0x83
                }
            }
        } else {
            self.shared
                .metrics
                .count_error(Source::Client, "mqtt-publish-denied");
            r.reason.map_or(0x87, |reason| reason.puback_v5())
        };
        self.refuse_publish(ack, refused)
    }

    /// `item` with the origin's `formats`, when it gave some: they replace the `http-stream`,
    /// `http-response` and `ws-message` forms Gripway made (one it leaves out is not sent to
    /// that kind of subscriber), and its `mqtt-message`, if any, the device's. Read by the
    /// publish API's own parser and limits; why not, starting with [`FORMATS`].
    fn origin_formats(
        &self,
        mut item: gripway_proto::publish::Item,
        formats: Option<&serde_json::Value>,
    ) -> Result<gripway_proto::publish::Item, String> {
        let Some(formats) = formats else {
            return Ok(item);
        };
        let body = serde_json::json!({"items": [{"channel": &*item.channel, "formats": formats}]});
        let limits = &self.shared.config.publish.limits;
        let mut parsed =
            gripway_proto::publish::parse_publish_body(body.to_string().as_bytes(), limits)
                .map_err(|e| format!("{FORMATS}{e}"))?;
        let given = parsed.pop().map(|i| i.formats).unwrap_or_default();
        item.formats.http_stream = given.http_stream;
        item.formats.http_response = given.http_response;
        item.formats.ws_message = given.ws_message;
        if given.mqtt_message.is_some() {
            item.formats.mqtt_message = given.mqtt_message;
        }
        Ok(item)
    }

    /// Acknowledges a publish that was not published, with `code` (v5).
    fn refuse_publish(&mut self, ack: Option<Out>, code: u8) -> Step {
        // v3 has no negative acknowledgement: acknowledged and dropped, as brokers do
        let code = if self.v5() { code } else { 0 };
        match ack {
            Some(Out::Puback { pid, .. }) => self.ok(self.send(&Out::Puback { pid, code })),
            Some(Out::Pubrec { pid, .. }) => self.ok(self.send(&Out::Pubrec { pid, code })),
            _ => Step::Continue,
        }
    }

    /// Whether `channel` is within the publish API's bound on channel names.
    pub(super) fn channel_ok(&self, channel: &str) -> bool {
        !channel.is_empty() && channel.len() <= self.shared.config.publish.limits.max_channel_bytes
    }

    /// Sends the device a QoS 0 PUBLISH of its own (an origin's reply); false if too slow.
    fn send_reply(&self, topic: &str, content: &Bytes) -> bool {
        let props: &[u8] = if self.v5() { &[0] } else { &[] };
        let Ok((head, _)) = publish_head(
            self.version,
            0,
            false,
            false,
            topic.len(),
            None,
            props.len(),
            content.len(),
        ) else {
            return true;
        };
        let head = Bytes::copy_from_slice(head.as_slice());
        let topic = Bytes::copy_from_slice(topic.as_bytes());
        let props = Bytes::from_static(if props.is_empty() { b"" } else { b"\0" });
        self.send_packet(&[&head, &topic, &props, content])
    }

    pub(super) fn on_subscribe(&mut self, pid: u16, filters: Vec<SubRequest>) -> Step {
        let Some(route) = self.route.clone() else {
            return Step::End(End::Lost);
        };
        let v5 = self.v5();
        let max = self.shared.config.mqtt.max_subscriptions;
        let mut codes = Vec::with_capacity(filters.len());
        let mut ask = false;
        for f in &filters {
            let replacing = self.held.iter().any(|h| h.filter == f.filter);
            let code = if !replacing && self.filters() >= max {
                Some(if v5 { 0x97 } else { 0x80 })
            } else if f.filter.starts_with("$share/") && parse_shared(&f.filter).is_none() {
                // a malformed shared filter
                Some(if v5 { 0x8F } else { 0x80 })
            } else if let Some(link) = self.link.as_deref_mut() {
                match link.cached_filter(&f.filter) {
                    Some(r) => Some(self.apply_filter(f, &r)),
                    None => {
                        ask = true;
                        None
                    }
                }
            } else {
                Some(match authorize::subscribe(&route, &f.filter) {
                    Ok((channel, _)) if !self.channel_ok(&channel) => {
                        if v5 {
                            0x8F
                        } else {
                            0x80
                        }
                    }
                    Ok((channel, pattern)) => {
                        let qos = f.qos.min(1);
                        // a pattern has no one channel to read a retained message from
                        let retained = wants_retained(f, replacing) && !pattern;
                        let grant = Grant::of(f, qos);
                        if self.subscribe(&f.filter, vec![channel], grant, None, retained, pattern)
                        {
                            qos
                        } else if v5 {
                            0x97
                        } else {
                            0x80
                        }
                    }
                    Err((c5, c3)) => {
                        if v5 {
                            c5
                        } else {
                            c3
                        }
                    }
                })
            };
            codes.push(code);
        }
        if ask {
            return Step::Ask(Box::new(Asked::Subscribe {
                pid,
                filters,
                codes,
            }));
        }
        let codes = codes.into_iter().map(|c| c.unwrap_or(0x80)).collect();
        self.suback(pid, codes)
    }

    /// Topic filters held (one may hold several channels).
    fn filters(&self) -> usize {
        let mut n = 0;
        for (i, h) in self.held.iter().enumerate() {
            if !self.held[..i].iter().any(|o| o.filter == h.filter) {
                n += 1;
            }
        }
        n
    }

    /// Acts on the origin's result for one filter: its SUBACK code.
    fn apply_filter(&mut self, f: &SubRequest, r: &FilterResult) -> u8 {
        if !r.allow {
            return if self.v5() {
                r.reason.map_or(0x87, |reason| reason.suback_v5())
            } else {
                0x80
            };
        }
        let prefix = self
            .route
            .as_ref()
            .map_or(String::new(), |r| r.route.prefix.clone());
        let channels: Vec<String> = match &r.channels {
            Some(c) => c.iter().map(|c| format!("{prefix}{c}")).collect(),
            None => match default_channel(&f.filter) {
                Some(c) => vec![format!("{prefix}{c}")],
                None => return 0x80,
            },
        };
        if !channels.iter().all(|c| self.channel_ok(c)) {
            return if self.v5() { 0x8F } else { 0x80 };
        }
        let qos = f.qos.min(r.qos.unwrap_or(1)).min(1);
        let replacing = self.held.iter().any(|h| h.filter == f.filter);
        let retained = wants_retained(f, replacing);
        if self.subscribe(
            &f.filter,
            channels,
            Grant::of(f, qos),
            r.topic.as_deref(),
            retained,
            false,
        ) {
            qos
        } else {
            0x80
        }
    }

    /// Subscribes `filter` (replacing a subscription with the same filter) to `channels`
    /// (to the channels a `pattern` matches, for a demo wildcard filter); items without a
    /// topic of their own go out with `topic` (default: the filter when it is exact, else
    /// the channel). False if the node holds all the patterns it may.
    pub(super) fn subscribe(
        &mut self,
        filter: &Arc<str>,
        channels: Vec<String>,
        grant: Grant,
        topic: Option<&str>,
        retained: bool,
        pattern: bool,
    ) -> bool {
        self.unsubscribe(filter);
        // a shared subscription gets no retained messages (MQTT 5 §4.8.2)
        let shared = parse_shared(filter);
        let retained = retained && shared.is_none();
        // held back while the retained messages are read and until they follow the SUBACK:
        // none goes out after a newer one
        if retained && self.extra.as_deref().is_none_or(|e| e.retained.is_none()) {
            let sink = &self.sub.sink;
            sink.hold_back(&mut sink.lock());
            self.extra().retained = Some(Vec::new());
        }
        let wildcard = filter.contains(['+', '#']);
        let topic: Option<Arc<str>> = topic.map(Arc::from);
        for channel in channels {
            let channel: Arc<str> = Arc::from(channel);
            // a persistent session recovers after the channel's newest item at subscribe time
            // when nothing was sent to it since
            let last = (self.expiry() > 0 && !pattern)
                .then(|| {
                    self.shared
                        .broker
                        .history()
                        .last_now(&channel, std::time::Instant::now())
                })
                .flatten()
                .map(|k| k.msg);
            {
                let mut state = self.sub.state.lock();
                super::session::room_for_one(&mut state.entries);
                state.entries.push(Entry {
                    topic: match (&topic, shared) {
                        (Some(t), _) => t.clone(),
                        (None, _) if wildcard => channel.clone(),
                        (None, Some(s)) => Arc::from(s.filter),
                        (None, None) => filter.clone(),
                    },
                    channel: channel.clone(),
                    filter: filter.clone(),
                    filter_at: shared.map_or(0, |s| {
                        u16::try_from(filter.len() - s.filter.len()).unwrap_or(0)
                    }),
                    qos: grant.qos,
                    no_local: grant.no_local,
                    retain_as_published: grant.retain_as_published,
                    wildcard,
                    pattern,
                    exact_is_channel: !wildcard
                        && !pattern
                        && shared.map_or(&**filter, |s| s.filter) == &*channel,
                    last,
                });
            }
            let Some(subscription) = self.attach(filter, &channel, pattern) else {
                return false;
            };
            if let Holding::Channel(s) = &subscription {
                // the registry's own name from now on, so the fan-out matches by address
                if let Some(e) = self.sub.state.lock().entries.last_mut() {
                    if *e.channel == **s.name() {
                        e.channel = s.name().clone();
                    }
                }
            }
            if retained {
                if let Some(msg) = super::retained::newest(&self.shared, &channel) {
                    if let Some(found) = self.extra().retained.as_mut() {
                        found.push(msg);
                    }
                }
            }
            super::session::room_for_one(&mut self.held);
            self.held.push(Held {
                filter: filter.clone(),
                _subscription: subscription,
            });
        }
        true
    }

    /// Sends SUBACK, then the retained messages the subscriptions found (releasing what the
    /// fan-out held back meanwhile).
    fn suback(&mut self, pid: u16, codes: Vec<u8>) -> Step {
        let written = self.send(&Out::Suback { pid, codes });
        if let Some(found) = self.extra.as_deref_mut().and_then(|e| e.retained.take()) {
            super::retained::send(&self.sub, found);
        }
        self.ok(written)
    }

    /// Puts the connection in the broker for `channel`: itself, for a shared `filter` its
    /// group's place, for a `pattern` its place among the patterns (None: none left).
    pub(super) fn attach(&self, filter: &str, channel: &str, pattern: bool) -> Option<Holding> {
        let registry = self.shared.broker.registry();
        let me = || self.sub.clone() as Arc<dyn Subscriber>;
        if pattern {
            return registry
                .subscribe_pattern(channel, me())
                .map(Holding::Pattern);
        }
        Some(match (parse_shared(filter), &self.route) {
            (Some(s), Some(route)) => Holding::Group(self.shared.mqtt_groups.join(
                registry,
                &route.label,
                s.group,
                channel,
                self.sub.clone(),
            )),
            _ => Holding::Channel(registry.subscribe(channel, me())),
        })
    }

    /// Drops the subscriptions with this filter; whether there were any.
    pub(super) fn unsubscribe(&mut self, filter: &str) -> bool {
        let before = self.held.len();
        self.held.retain(|h| &*h.filter != filter);
        self.sub
            .state
            .lock()
            .entries
            .retain(|e| &*e.filter != filter);
        self.held.len() != before
    }

    pub(super) fn on_unsubscribe(&mut self, pid: u16, filters: Vec<Arc<str>>) -> Step {
        let codes = filters
            .iter()
            .map(|f| if self.unsubscribe(f) { 0x00 } else { 0x11 })
            .collect();
        if self.link.is_some() {
            self.notify(Event::Unsubscribe {
                filters: filters.iter().map(|f| f.to_string()).collect(),
            });
        }
        self.ok(self.send(&Out::Unsuback { pid, codes }))
    }

    /// Tells the origin something whose answer does not matter (an unsubscribe, the end),
    /// in the background. At most [`MAX_FAREWELLS`](crate::MAX_FAREWELLS) go out at once
    /// node-wide, so a burst of devices leaving waits its turn (a drain waits for it too);
    /// skipped and counted only when [`MAX_WAITING_NOTICES`](crate::MAX_WAITING_NOTICES)
    /// already wait or the turn does not come within [`NOTICE_WAIT`](crate::NOTICE_WAIT).
    pub(super) fn notify(&self, event: Event) {
        let (Some(route), Some(link)) = (self.route.clone(), self.link.as_deref()) else {
            return;
        };
        let Ok(waiting) = self.shared.waiting_notices.clone().try_acquire_owned() else {
            self.shared
                .metrics
                .count_error(Source::Internal, "mqtt-origin-notification-skipped");
            return;
        };
        let shared = self.shared.clone();
        let link = link.for_notification();
        let busy = shared.drain.busy();
        tokio::spawn(async move {
            let _busy = busy;
            let turn =
                tokio::time::timeout(crate::NOTICE_WAIT, shared.farewells.clone().acquire_owned());
            let Ok(Ok(_permit)) = turn.await else {
                shared
                    .metrics
                    .count_error(Source::Internal, "mqtt-origin-notification-skipped");
                return;
            };
            drop(waiting);
            if let Err(refusal) = origin::ask(&shared, &route, &link, &[event]).await {
                shared.metrics.error(&refusal);
                refusal.log("MQTT origin notification: ");
            }
        });
    }
}

/// Whether the device's will should go out, and the origin's request naming it sent.
pub(super) fn will_event(will_sent: bool, end: End) -> Event {
    use gripway_proto::mqtt_origin::DisconnectReason;
    let reason = match end {
        End::Clean | End::WithWill => DisconnectReason::Normal,
        End::Drain => DisconnectReason::Shutdown,
        End::TakenOver => DisconnectReason::TakenOver,
        End::Lost => DisconnectReason::Gone,
    };
    Event::Disconnect { reason, will_sent }
}

/// How the problem with an origin's `formats` starts.
const FORMATS: &str = "the origin's formats: ";

/// What a subscription was granted: its QoS and its MQTT 5 options that shape deliveries.
#[derive(Clone, Copy)]
pub(super) struct Grant {
    pub(super) qos: u8,
    pub(super) no_local: bool,
    pub(super) retain_as_published: bool,
}

impl Grant {
    fn of(f: &SubRequest, qos: u8) -> Grant {
        Grant {
            qos,
            no_local: f.no_local,
            retain_as_published: f.retain_as_published,
        }
    }
}

/// Whether a subscription gets the channel's retained message now (MQTT 5 retain handling:
/// 0 always, 1 only for a new subscription, 2 never).
fn wants_retained(f: &SubRequest, replacing: bool) -> bool {
    match f.retain_handling {
        0 => true,
        1 => !replacing,
        _ => false,
    }
}
