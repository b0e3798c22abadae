//! An MQTT connection as a subscriber: the broker's fan-out writes published items to it as
//! PUBLISH packets, straight to the socket through the shared sink, as it does for SSE and
//! WebSocket clients.
//!
//! A PUBLISH differs per subscriber only in its first bytes: the fixed header, the topic's
//! length, and (QoS 1) the packet id. So the fan-out builds those few bytes on the stack for
//! each subscriber and sends them beside the parts every subscriber shares, borrowed from the
//! message: its payload and its MQTT 5 property block, encoded once. One vectored write
//! sends a batch; the payload is never copied (unless the socket does not take it and it is
//! queued, as the message itself, not a copy).
//!
//! What the fan-out cannot do under the sink's lock (sending DISCONNECT at a drain) it asks
//! the connection's task to do, through [`SubState::close`] and a notification.

use std::collections::VecDeque;
use std::sync::Arc;

use gripway_broker::message::{Encoding, MqttView};
use gripway_broker::{Delivery, Message, Subscriber, Transport};
use gripway_proto::mqtt::{
    matches, publish_head, publish_total_len, PublishHead, PublishTail, Version,
};
use gripway_proto::ws_frame::{frame_header, FrameKind};
use parking_lot::Mutex;

use crate::drain::Drainable;
use crate::hold::sink::{Frame, Intake, Sink, SinkState};

/// Most QoS 1 messages a connection may have unacknowledged before it counts as too slow
/// (beside the sink's byte bound; a v5 client's receive maximum lowers it).
pub(crate) const MAX_UNACKED: usize = 10_000;

/// Messages turned into packets per vectored write (six slices each, at most).
const PER_WRITE: usize = 10;

/// The PUBLISH flags a write sets.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    /// RETAIN: a retained message sent at subscribe.
    pub(crate) retain: bool,
    /// DUP: a QoS 1 message sent again (a resumed session's unacknowledged ones).
    pub(crate) dup: bool,
}

/// One granted subscription, as the fan-out needs it.
pub(crate) struct Entry {
    /// The channel it receives.
    pub(crate) channel: Arc<str>,
    /// The topic filter the client subscribed with.
    pub(crate) filter: Arc<str>,
    /// Where the filter proper starts in `filter`: past a shared subscription's
    /// `$share/<group>/`, 0 otherwise (found once at subscribe, not per delivery).
    pub(crate) filter_at: u16,
    /// The topic of items that carry none: the filter when it is exact, else the channel.
    pub(crate) topic: Arc<str>,
    /// The QoS granted.
    pub(crate) qos: u8,
    /// MQTT 5 No Local: nothing this client id published is sent to this subscription.
    pub(crate) no_local: bool,
    /// MQTT 5 Retain As Published: items go out with the retain flag they were published
    /// with (otherwise only a retained message sent at subscribe has it).
    pub(crate) retain_as_published: bool,
    /// The filter has wildcards: an item's own topic must match it.
    pub(crate) wildcard: bool,
    /// `channel` is a pattern over channel names (a demo wildcard filter).
    pub(crate) pattern: bool,
    /// The filter (without `$share/<group>/`) is exact and is the channel's name, as where
    /// topic = channel: an item's topic is then checked against the channel's name, which
    /// the fan-out has at hand, instead of reading the filter's string.
    pub(crate) exact_is_channel: bool,
    /// A persistent session's last item sent on the channel (history is read after it when
    /// the device comes back); None otherwise.
    pub(crate) last: Option<Arc<Message>>,
}

/// What the fan-out and the connection's task share beside the sink.
pub(crate) struct SubState {
    pub(crate) version: Version,
    /// Largest packet the client takes (MQTT 5 maximum packet size).
    pub(crate) max_packet: u32,
    /// QoS 1 messages the client takes unacknowledged (its receive maximum).
    pub(crate) receive_max: u16,
    pub(crate) entries: Vec<Entry>,
    next_pid: u16,
    /// QoS 1 messages unacknowledged; None while there are none.
    pub(crate) window: Option<Box<Window>>,
    /// The connection's task is asked to end it with this v5 reason code (a drain).
    pub(crate) close: Option<u8>,
    /// The session outlives the connection: each entry keeps its last item sent.
    pub(crate) track: bool,
    /// MQTT over WebSocket: each packet goes in a binary message.
    pub(crate) ws: bool,
    /// The client id, once CONNECT was accepted (a second connection with it takes over).
    pub(crate) client_id: Option<Arc<str>>,
}

/// QoS 1 messages the client has not acknowledged yet. Boxed beside the state, and only
/// while there are some: most connections have none, and an idle one keeps none (the two
/// queues inline would be 64 B of every connection's state).
#[derive(Default)]
pub(crate) struct Window {
    /// Sent, by packet id, oldest first, until the client's PUBACK.
    pub(crate) inflight: VecDeque<(u16, Arc<Message>)>,
    /// Waiting for room in the client's receive maximum, with their topic.
    pub(crate) pending: VecDeque<(Arc<Message>, Arc<str>)>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.inflight.is_empty() && self.pending.is_empty()
    }
}

/// The parts of an MQTT connection the fan-out reaches.
pub(crate) struct MqttSub {
    pub(crate) sink: Sink,
    pub(crate) state: Mutex<SubState>,
}

impl MqttSub {
    pub(crate) fn new(sink: Sink, version: Version, max_packet: u32, receive_max: u16) -> Self {
        MqttSub {
            sink,
            state: Mutex::new(SubState {
                version,
                max_packet,
                receive_max,
                entries: Vec::new(),
                next_pid: 0,
                window: None,
                close: None,
                track: false,
                ws: false,
                client_id: None,
            }),
        }
    }
}

impl Drainable for MqttSub {
    fn drain(&self) {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return;
        }
        // v5: DISCONNECT 0x8B (server shutting down); the task writes it and ends
        self.state.lock().close.get_or_insert(0x8B);
        self.sink.notify(&mut st);
    }
}

impl Subscriber for MqttSub {
    fn transport(&self) -> Transport {
        Transport::Mqtt
    }

    fn deliver(&self, channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut st = self.sink.lock();
        if Sink::is_closed(&st) {
            return Delivery::Closed(messages.len() as u32);
        }
        match self.sink.held(&mut st, messages) {
            Intake::Deliver => self.deliver_locked(&mut st, channel, messages),
            Intake::Kept => Delivery::Sent(messages.len() as u32),
            Intake::Slow => Delivery::DroppedSlow(messages.len() as u32),
            Intake::Filtered(pass) => self.deliver_locked(&mut st, channel, &pass),
        }
    }
}

/// One PUBLISH decided: its head and packet id on the stack, and what it borrows.
struct Planned<'a> {
    /// Over WebSocket: the binary frame's header.
    frame: ([u8; 10], usize),
    head: PublishHead,
    pid: PublishTail,
    topic: &'a [u8],
    /// The message's MQTT 5 property block (`Encoding::MqttV5Props`).
    props: &'a [u8],
    /// The message's payload (`Encoding::MqttPayload`).
    payload: &'a [u8],
    msg: &'a Arc<Message>,
}

impl MqttSub {
    /// Writes `messages` of `channel` (under the sink's lock).
    pub(crate) fn deliver_locked(
        &self,
        st: &mut SinkState,
        channel: &str,
        messages: &[Arc<Message>],
    ) -> Delivery {
        self.write(st, channel, messages, Flags::default())
    }

    /// Writes `messages` of `channel` with `flags` (live deliveries have neither).
    pub(crate) fn write(
        &self,
        st: &mut SinkState,
        channel: &str,
        messages: &[Arc<Message>],
        flags: Flags,
    ) -> Delivery {
        let mut guard = self.state.lock();
        let SubState {
            version,
            max_packet,
            receive_max,
            entries,
            next_pid,
            window,
            track,
            ws,
            client_id,
            ..
        } = &mut *guard;
        let me = client_id.as_deref();
        let v5 = *version == Version::V5;
        let mut sent = 0u32;
        for chunk in messages.chunks(PER_WRITE) {
            let mut planned: [Option<Planned<'_>>; PER_WRITE] = Default::default();
            let mut marks: [Option<(usize, &Arc<Message>)>; PER_WRITE] = [None; PER_WRITE];
            let mut n = 0;
            for msg in chunk {
                let Some((qos, topic, entry, view)) = route(entries, channel, msg, me) else {
                    continue;
                };
                let props: &[u8] = if v5 { view.props } else { &[] };
                let mut pid = None;
                if qos == 1 {
                    let w = window.get_or_insert_with(Box::default);
                    if w.inflight.len() + w.pending.len() >= MAX_UNACKED {
                        self.sink.cut_off(st);
                        return Delivery::DroppedSlow(messages.len() as u32);
                    }
                    if w.inflight.len() >= usize::from(*receive_max) {
                        w.pending
                            .push_back((msg.clone(), entries[entry].channel.clone()));
                        sent += 1;
                        continue;
                    }
                    let id = take_pid(next_pid, &w.inflight);
                    pid = Some(id);
                }
                let head = publish_head(
                    *version,
                    qos,
                    flags.dup && qos > 0,
                    flags.retain || (entries[entry].retain_as_published && view.retain),
                    topic.len(),
                    pid,
                    props.len(),
                    view.payload.len(),
                );
                let Ok((head, tail)) = head else {
                    continue;
                };
                let total =
                    publish_total_len(topic.len(), pid.is_some(), props.len(), view.payload.len());
                if total > *max_packet as usize {
                    // MQTT 5: a packet over the client's maximum is not sent to it
                    continue;
                }
                if let Some(id) = pid {
                    let w = window.get_or_insert_with(Box::default);
                    w.inflight.push_back((id, msg.clone()));
                }
                let frame = if *ws {
                    frame_header(FrameKind::Binary, total)
                } else {
                    ([0; 10], 0)
                };
                planned[n] = Some(Planned {
                    frame,
                    head,
                    pid: tail,
                    topic: topic.as_bytes(),
                    props: view.props,
                    payload: view.payload,
                    msg,
                });
                marks[n] = Some((entry, msg));
                n += 1;
            }
            if n == 0 {
                continue;
            }
            let mut frames: [Frame<'_>; PER_WRITE * 6] = [Frame::Slice(&[]); PER_WRITE * 6];
            let mut f = 0;
            for p in planned[..n].iter().flatten() {
                if p.frame.1 > 0 {
                    frames[f] = Frame::Slice(&p.frame.0[..p.frame.1]);
                    f += 1;
                }
                frames[f] = Frame::Slice(p.head.as_slice());
                frames[f + 1] = Frame::Slice(p.topic);
                f += 2;
                if !p.pid.as_slice().is_empty() {
                    frames[f] = Frame::Slice(p.pid.as_slice());
                    f += 1;
                }
                // the property block and payload are the message's: queued, if need be,
                // as the message itself, never copied (the view read them already)
                if v5 {
                    frames[f] = Frame::Message {
                        msg: p.msg,
                        which: Encoding::MqttV5Props,
                        bytes: p.props,
                    };
                    f += 1;
                }
                if !p.payload.is_empty() {
                    frames[f] = Frame::Message {
                        msg: p.msg,
                        which: Encoding::MqttPayload,
                        bytes: p.payload,
                    };
                    f += 1;
                }
            }
            if !self.sink.send(st, &frames[..f]) {
                return Delivery::DroppedSlow(messages.len() as u32);
            }
            sent += n as u32;
            if *track {
                for (entry, msg) in marks.iter().flatten() {
                    entries[*entry].last = Some(Arc::clone(msg));
                }
            }
        }
        if window.as_ref().is_some_and(|w| w.is_empty()) {
            // made for a message that was not sent after all (too large for the client)
            *window = None;
        }
        if sent == 0 {
            Delivery::Skipped
        } else {
            Delivery::Sent(sent)
        }
    }
}

/// The next free packet id (1..=65535, skipping ids still unacknowledged).
fn take_pid(next: &mut u16, inflight: &VecDeque<(u16, Arc<Message>)>) -> u16 {
    loop {
        *next = next.wrapping_add(1).max(1);
        if !inflight.iter().any(|(p, _)| p == next) {
            return *next;
        }
    }
}

/// The QoS and topic `msg` goes out with on this connection, the subscription that takes it
/// and the message's MQTT form: one delivery per connection, at the highest QoS its
/// subscriptions to `channel` grant.
fn route<'a>(
    entries: &'a [Entry],
    channel: &str,
    msg: &'a Message,
    me: Option<&str>,
) -> Option<(u8, &'a str, usize, MqttView<'a>)> {
    let view = msg.mqtt()?;
    // published by this client id (only read when a subscription asks for No Local)
    let own = || me.is_some() && msg.meta_value(super::PUBLISHER_META) == me;
    let mut best: Option<(u8, &'a str, usize)> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.no_local && own() {
            continue;
        }
        let on_channel = if e.pattern {
            gripway_broker::patterns::matches(&e.channel, channel)
        } else {
            // the fan-out passes the registry's own name, which the entry shares once
            // subscribed (`decide`): equal by address, without reading the entry's string
            (std::ptr::eq(e.channel.as_ptr(), channel.as_ptr()) && e.channel.len() == channel.len())
                || &*e.channel == channel
        };
        if !on_channel {
            continue;
        }
        // a shared subscription's filter is matched without its `$share/<group>/`
        let filter = e
            .filter
            .get(usize::from(e.filter_at)..)
            .unwrap_or(&e.filter);
        let topic = match view.topic {
            Some(t) if e.exact_is_channel && t != channel => continue,
            Some(t) if e.exact_is_channel => t,
            Some(t) if e.wildcard && !matches(filter, t) => continue,
            Some(t) if !e.wildcard && t != filter => continue,
            Some(t) => t,
            // a pattern's items go out with their channel's name as topic
            None if e.pattern => &msg.channel,
            None => &e.topic,
        };
        let qos = view.qos.min(e.qos);
        if best.is_none_or(|(q, _, _)| qos > q) {
            best = Some((qos, topic, i));
        }
    }
    best.map(|(qos, topic, i)| (qos, topic, i, view))
}

impl MqttSub {
    /// The device acknowledged QoS 1 packet `pid`: it leaves the inflight window, and
    /// messages waiting for room go out.
    pub(crate) fn acknowledged(&self, pid: u16) {
        let mut st = self.sink.lock();
        let next = {
            let mut state = self.state.lock();
            let receive_max = usize::from(state.receive_max);
            let Some(w) = state.window.as_mut() else {
                return;
            };
            let Some(at) = w.inflight.iter().position(|(p, _)| *p == pid) else {
                return;
            };
            w.inflight.remove(at);
            let room = receive_max.saturating_sub(w.inflight.len());
            let n = room.min(w.pending.len());
            let next: Vec<_> = w.pending.drain(..n).collect();
            if w.is_empty() {
                // an idle connection keeps no window
                state.window = None;
            }
            next
        };
        for (msg, channel) in next {
            if let Delivery::DroppedSlow(_) =
                self.deliver_locked(&mut st, &channel, std::slice::from_ref(&msg))
            {
                return;
            }
        }
    }
}
