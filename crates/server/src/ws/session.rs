//! One WebSocket connection after the handshake: client messages go to the origin, origin
//! messages and control messages are acted on, published messages arrive through the sink,
//! and both close handshakes are seen through.
//!
//! The task waits on one `select!`: the sink (client input, the socket becoming writable,
//! a notification from the fan-out, or the next timer) and the origin link (a request's
//! answer, or the origin WebSocket's next message). Timers are the control messages'
//! keep-alive and delayed messages, WebSocket-over-HTTP retries and keep-alives, and the
//! close handshake's deadline. When the connection ends, the origin is told (`DISCONNECT`)
//! unless it already knows; at shutdown the drain waits for that request.
//!
//! While the origin link holds all it may of the client's messages (`origin_queue_bytes`),
//! the client is not read at all: the sink waits with its input paused, the kernel's buffers
//! fill and TCP closes the client's window. Reading resumes once the origin has taken some.
//! Counted in `gripway_input_paused_total`. When the origin fails for good, the client is
//! closed with the close code of the origin's [`Refusal`] (1014).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gripway_broker::{Subscriber, Subscription};

use super::recover;
use gripway_proto::woh::{close_code_and_reason, Event, EventKind};
use gripway_proto::ws_control::{ControlMessage, GripExtension};
use gripway_proto::ws_frame::{encode_frame, FrameKind};
use tungstenite::Message;

use super::client::{ClientMessage, ClientProtocol, ReadEnd};
use super::grip::{from_origin, FromOrigin, Timed};
use super::open::{Link, Opened};
use super::subscriber::WsSub;
use super::woh::{Answer, Reply};
use crate::error::Refusal;
use crate::hold::filters::Filters;
use crate::hold::sink::{Ending, Input, Sink, Wake};
use crate::hold::FilterSet;
use crate::metrics::ConnKind;
use crate::routing::RouteEntry;
use crate::transport::ClientConn;
use crate::Shared;

/// How long the client has to answer our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

struct Channel {
    name: String,
    filters: FilterSet,
    /// From the target's `sub=`: not removable by `unsubscribe`.
    implicit: bool,
    _subscription: Subscription,
}

/// What a connection keeps while it runs: its future holds this and the `step` being
/// awaited, so what most connections never use is boxed.
struct Session {
    shared: Arc<Shared>,
    route: Arc<RouteEntry>,
    sub: Arc<WsSub>,
    proto: ClientProtocol,
    grip: Option<GripExtension>,
    channels: Vec<Channel>,
    meta: Vec<(String, String)>,
    /// The control messages' `keep-alive`, once the origin sets one.
    keep_alive: Option<Box<Timed>>,
    /// A `send-delayed` message waiting.
    delayed: Option<Box<Timed>>,
    link: Link,
    /// The close handshake is under way; drop the connection if not done by then.
    closing_deadline: Option<Instant>,
    /// The origin has been told the connection ended (CLOSE or DISCONNECT sent).
    origin_told: bool,
    refresh: bool,
    /// Reading the client is paused because the origin link is full.
    paused: bool,
}

enum Step {
    Continue,
    End,
}

/// Runs the connection until it ends. The session is set up before the future is made, so
/// that the future keeps only the session (an async fn's future keeps its arguments too).
pub(crate) fn run(
    shared: &Arc<Shared>,
    conn: ClientConn,
    route: Arc<RouteEntry>,
    opened: Opened,
    deflate: bool,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (s, ended) = start(shared, conn, route, opened, deflate);
    drive(s, ended)
}

/// Sets the session up and acts on what came with the origin's acceptance; true if that
/// already ended it.
fn start(
    shared: &Arc<Shared>,
    conn: ClientConn,
    route: Arc<RouteEntry>,
    opened: Opened,
    deflate: bool,
) -> (Session, bool) {
    let ClientConn {
        sock,
        mut guard,
        buf,
        peer: _,
    } = conn;
    drop(buf);
    guard.become_kind(ConnKind::WebSocket);
    let sub = WsSub::new(
        Sink::new(sock, shared.config.grip.subscriber_queue_bytes),
        deflate,
    );
    // at shutdown the drain closes the client with 1001; the origin is told as in `finish`
    shared.drain.roster.enlist(&sub);
    let mut s = Session {
        shared: shared.clone(),
        route: route.clone(),
        sub,
        proto: ClientProtocol::new(shared.config.websocket.max_message_bytes, deflate),
        grip: opened.grip,
        channels: Vec::new(),
        meta: Vec::new(),
        keep_alive: None,
        delayed: None,
        link: opened.link,
        closing_deadline: None,
        origin_told: false,
        refresh: false,
        paused: false,
    };
    let implicit: Vec<String> = route
        .route
        .targets
        .iter()
        .flat_map(|t| t.subs.iter())
        .map(|c| format!("{}{}", route.route.prefix, c))
        .collect();
    for name in implicit {
        s.subscribe(&name, FilterSet::default(), true);
    }
    let ended = match opened.first {
        Some(reply) => matches!(s.on_reply(*reply, true), Step::End),
        None => false,
    };
    (s, ended)
}

/// Runs a session until it ends (at once if `ended`). Not an async fn: that would keep the
/// session twice, as its argument and as the variable the body uses.
#[allow(clippy::manual_async_fn)] // see above: the async fn form costs the session's size again
fn drive(mut s: Session, ended: bool) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        if !ended {
            loop {
                if let Step::End = s.step().await {
                    break;
                }
            }
        }
        s.shared.drain.roster.leave(&s.sub);
        // boxed: winding down needs more state than running, and only once
        Box::pin(s.finish()).await;
    }
}

impl Session {
    async fn step(&mut self) -> Step {
        if let Link::Http(link) = &mut self.link {
            link.pump(&self.meta, std::mem::take(&mut self.refresh));
        }
        let input = self.input();
        let deadline = self.next_deadline();
        let mut timer = deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into())));
        let sink = &self.sub.sink;
        let link = &mut self.link;
        tokio::select! {
            wake = sink.wait_with(timer.as_mut().map(|t| t.as_mut()), input) => match wake {
                Wake::Readable => self.on_client_input(),
                Wake::Notified => self.on_notified(),
                Wake::Timer => self.on_timer(),
                Wake::End(Ending::Slow) => {
                    self.shared.metrics.dropped("slow-subscriber");
                    Step::End
                }
                Wake::End(_) => Step::End,
            },
            from_origin = link_next(link) => self.on_origin(from_origin),
        }
    }

    /// Whether to read the client now: not while the origin link is full (counted once
    /// each time reading stops).
    fn input(&mut self) -> Input {
        let (full, reason) = match &self.link {
            Link::Http(l) => (l.is_full(), "websocket-over-http-queue-full"),
            Link::Ws(l) => (l.is_full(), "websocket-origin-outbox-full"),
            Link::None => (false, ""),
        };
        if full && !self.paused {
            self.shared.metrics.input_paused(reason);
            tracing::debug!(route = %self.route.label, "origin is slow; reading the WebSocket client paused");
        }
        self.paused = full;
        if full {
            Input::Pause
        } else {
            Input::Report
        }
    }

    /// Bytes of messages the client may send now before the origin link is full.
    fn room(&self) -> usize {
        match &self.link {
            Link::Http(l) => l.room(),
            Link::Ws(l) => l.room(),
            Link::None => usize::MAX,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let link = match &self.link {
            Link::Http(l) => l.deadline(),
            _ => None,
        };
        [
            self.keep_alive.as_ref().map(|t| t.due),
            self.delayed.as_ref().map(|t| t.due),
            self.closing_deadline,
            link,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Writes frames to the client through the sink; false if the client is too slow.
    fn send(&self, frames: &[&Bytes]) -> bool {
        let mut st = self.sub.sink.lock();
        self.sub.sink.send(&mut st, frames)
    }

    fn send_bytes(&self, bytes: Vec<u8>) -> bool {
        bytes.is_empty() || self.send(&[&Bytes::from(bytes)])
    }

    fn on_client_input(&mut self) -> Step {
        let mut messages = Vec::new();
        let mut out = Vec::new();
        let budget = self.room();
        let end = self
            .proto
            .read(&self.sub.sink, &mut messages, &mut out, budget);
        if !self.send_bytes(out) {
            return Step::End;
        }
        for m in messages {
            self.on_client_message(m);
        }
        match end {
            ReadEnd::Drained => Step::Continue,
            ReadEnd::Closed => Step::End,
            ReadEnd::Violation(code) => {
                let refusal = crate::error::Refusal::client(
                    400,
                    "websocket-protocol-error",
                    format!("client broke the WebSocket protocol (closed with {code})"),
                );
                self.shared.metrics.error(&refusal);
                refusal.log("");
                Step::End
            }
        }
    }

    fn on_client_message(&mut self, m: ClientMessage) {
        let close_handshake_done =
            matches!(m, ClientMessage::Close(_)) && self.closing_deadline.is_some();
        if let ClientMessage::Close(_) = m {
            // tungstenite has answered the close; give the client a moment to read it
            self.closing_deadline
                .get_or_insert(Instant::now() + CLOSE_TIMEOUT);
        }
        if close_handshake_done {
            return;
        }
        match (&mut self.link, m) {
            (Link::None, _) => {}
            (Link::Http(link), m) => {
                let event = match m {
                    ClientMessage::Text(t) => Event::text(t),
                    ClientMessage::Binary(b) => Event::binary(b),
                    ClientMessage::Ping(p) => Event::ping(p),
                    ClientMessage::Pong(p) => Event::pong(p),
                    ClientMessage::Close(c) => {
                        self.origin_told = true;
                        match c {
                            Some((code, reason)) => Event::close(Some(code), &reason),
                            None => Event::close(None, ""),
                        }
                    }
                };
                link.push(event);
            }
            (Link::Ws(link), m) => {
                let message = match m {
                    // tungstenite validated it already; no copy
                    ClientMessage::Text(t) => match tungstenite::Utf8Bytes::try_from(t) {
                        Ok(text) => Message::Text(text),
                        Err(_) => return,
                    },
                    ClientMessage::Binary(b) => Message::Binary(b),
                    ClientMessage::Ping(p) => Message::Ping(p),
                    ClientMessage::Pong(p) => Message::Pong(p),
                    ClientMessage::Close(c) => {
                        self.origin_told = true;
                        Message::Close(c.map(|(code, reason)| tungstenite::protocol::CloseFrame {
                            code: code.into(),
                            reason: reason.into(),
                        }))
                    }
                };
                link.push(message);
            }
        }
    }

    fn on_notified(&mut self) -> Step {
        let (close, refresh) = {
            let mut r = self.sub.requests.lock();
            (r.close.take(), std::mem::take(&mut r.refresh))
        };
        self.refresh |= refresh;
        if let Some(close) = close {
            let (code, reason) = *close;
            self.close_client(code, &reason);
        }
        Step::Continue
    }

    fn on_timer(&mut self) -> Step {
        let now = Instant::now();
        if self.closing_deadline.is_some_and(|d| now >= d) {
            return Step::End;
        }
        if let Some(ka) = self.keep_alive.as_deref_mut() {
            if now >= ka.due {
                let quiet = !(ka.idle && self.sub.sink.take_activity());
                ka.due = now + ka.period;
                if quiet {
                    let frame = ka.frame.clone();
                    if !self.send(&[&frame]) {
                        return Step::End;
                    }
                    self.sub.sink.take_activity();
                }
            }
        }
        if self.delayed.as_ref().is_some_and(|d| now >= d.due) {
            if let Some(d) = self.delayed.take() {
                if !self.send(&[&d.frame]) {
                    return Step::End;
                }
            }
        }
        Step::Continue
    }

    fn on_origin(&mut self, result: OriginUpdate) -> Step {
        match result {
            OriginUpdate::Reply(reply) => self.on_reply(*reply, false),
            OriginUpdate::Retrying | OriginUpdate::Room => Step::Continue,
            OriginUpdate::Message(m) => self.on_origin_message(m),
            OriginUpdate::Gone(refusal) => {
                self.shared.metrics.error(&refusal);
                refusal.log("WebSocket origin side ended: ");
                self.origin_told = true;
                self.link = Link::None;
                if self.closing_deadline.is_some() {
                    return Step::End;
                }
                self.close_client(Some(refusal.close_code()), "origin error");
                Step::Continue
            }
        }
    }

    /// Acts on a WebSocket-over-HTTP response.
    fn on_reply(&mut self, reply: Reply, opening: bool) -> Step {
        for (name, value) in reply.set_meta {
            self.set_meta(name, value);
        }
        if let (Some(interval), Link::Http(link)) = (reply.keep_alive, &mut self.link) {
            link.set_keep_alive(interval);
        }
        for (i, event) in reply.events.into_iter().enumerate() {
            let step = match event.kind {
                EventKind::Open if opening && i == 0 => Step::Continue,
                EventKind::Open | EventKind::Disconnect => {
                    self.origin_told = true;
                    Step::End
                }
                EventKind::Text => self.deliver_from_origin(false, event.content),
                EventKind::Binary => self.deliver_from_origin(true, event.content),
                EventKind::Ping => self.frame_to_client(FrameKind::Ping, event.content),
                EventKind::Pong => self.frame_to_client(FrameKind::Pong, event.content),
                EventKind::Close => {
                    self.origin_told = true;
                    let (code, reason) = close_code_and_reason(&event.content)
                        .map_or((None, String::new()), |(c, r)| (Some(c), r));
                    self.close_client(code, &reason);
                    self.link = Link::None;
                    Step::Continue
                }
            };
            if let Step::End = step {
                return Step::End;
            }
        }
        Step::Continue
    }

    fn on_origin_message(&mut self, m: Message) -> Step {
        match m {
            Message::Text(t) => self.deliver_from_origin(false, Bytes::from(t)),
            Message::Binary(b) => self.deliver_from_origin(true, b),
            Message::Ping(p) => self.frame_to_client(FrameKind::Ping, p),
            Message::Pong(p) => self.frame_to_client(FrameKind::Pong, p),
            Message::Close(frame) => {
                self.origin_told = true;
                let (code, reason) = frame.map_or((None, String::new()), |f| {
                    (Some(u16::from(f.code)), f.reason.to_string())
                });
                self.close_client(code, &reason);
                self.link = Link::None;
                Step::Continue
            }
            Message::Frame(_) => Step::Continue,
        }
    }

    fn frame_to_client(&self, kind: FrameKind, payload: Bytes) -> Step {
        if !self.proto.is_open() || payload.len() > 125 {
            return Step::Continue;
        }
        if self.send(&[&encode_frame(kind, payload)]) {
            Step::Continue
        } else {
            Step::End
        }
    }

    fn deliver_from_origin(&mut self, binary: bool, content: Bytes) -> Step {
        match from_origin(self.grip.as_ref(), binary, content) {
            FromOrigin::Frame(frame) => {
                if self.proto.is_open() && !self.send(&[&frame]) {
                    return Step::End;
                }
                Step::Continue
            }
            FromOrigin::Control(c) => self.on_control(c),
            FromOrigin::Drop => Step::Continue,
            FromOrigin::Fatal(why) => {
                let refusal = Refusal::origin(false, "websocket-bad-control-message", why);
                self.shared.metrics.error(&refusal);
                refusal.log("closing WebSocket: ");
                // 1011 rather than the origin's usual 1014: what Pushpin closes with here
                self.close_client(Some(1011), "invalid control message");
                Step::Continue
            }
        }
    }

    fn on_control(&mut self, control: ControlMessage) -> Step {
        match control {
            ControlMessage::Subscribe {
                channel,
                filters,
                prev_id,
            } => {
                let name = format!("{}{}", self.route.route.prefix, channel);
                let new = !self.channels.iter().any(|c| c.name == name);
                let recover = new && prev_id.is_some() && recover::prepare(&self.shared, &self.sub);
                self.subscribe(&name, FilterSet::from_names(&filters), false);
                if let (true, Some(prev)) = (recover, prev_id) {
                    recover::recover(&self.shared, &self.sub, &name, &prev);
                }
            }
            ControlMessage::Unsubscribe { channel } => {
                let name = format!("{}{}", self.route.route.prefix, channel);
                self.channels.retain(|c| c.implicit || c.name != name);
                self.update_filters();
            }
            ControlMessage::Detach => {
                self.origin_told = true;
                self.link = Link::None;
            }
            ControlMessage::Session { .. } => {}
            ControlMessage::SetMeta { name, value } => self.set_meta(name, value),
            ControlMessage::KeepAlive(timed) => {
                self.keep_alive = timed.map(|t| Box::new(Timed::new(&t, Instant::now())));
                self.sub.sink.take_activity();
            }
            ControlMessage::SendDelayed(timed) => {
                if let Some(previous) = self.delayed.take() {
                    if !self.send(&[&previous.frame]) {
                        return Step::End;
                    }
                }
                self.delayed = Some(Box::new(Timed::new(&timed, Instant::now())));
            }
            ControlMessage::FlushDelayed => {
                if let Some(d) = self.delayed.take() {
                    if !self.send(&[&d.frame]) {
                        return Step::End;
                    }
                }
            }
        }
        Step::Continue
    }

    fn subscribe(&mut self, name: &str, filters: FilterSet, implicit: bool) {
        if self.channels.iter().any(|c| c.name == name) {
            return;
        }
        if self.channels.len() >= self.shared.config.grip.max_channels_per_connection {
            tracing::debug!(channel = name, "too many subscriptions; ignored");
            return;
        }
        let subscription = self
            .shared
            .broker
            .registry()
            .subscribe(name, self.sub.clone() as Arc<dyn Subscriber>);
        if self.channels.is_empty() {
            // most connections keep one channel; a `Vec` would start with room for four
            self.channels.reserve_exact(1);
        }
        self.channels.push(Channel {
            name: name.to_string(),
            filters,
            implicit,
            _subscription: subscription,
        });
        self.update_filters();
    }

    fn set_meta(&mut self, name: String, value: Option<String>) {
        self.meta.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        if let Some(v) = value {
            self.meta.push((name, v));
        }
        self.update_filters();
    }

    fn update_filters(&self) {
        let list: Vec<(String, FilterSet)> = self
            .channels
            .iter()
            .map(|c| (c.name.clone(), c.filters))
            .collect();
        *self.sub.filters.lock() = Filters::new(&list, &self.meta, &[], &self.shared.metrics);
    }

    /// Starts the close handshake with the client (once).
    fn close_client(&mut self, code: Option<u16>, reason: &str) {
        if !self.proto.is_open() {
            return;
        }
        let mut out = Vec::new();
        self.proto.close(&self.sub.sink, code, reason, &mut out);
        self.send_bytes(out);
        self.closing_deadline
            .get_or_insert(Instant::now() + CLOSE_TIMEOUT);
    }

    /// Ends the connection: tells the origin if it does not know, flushes what is queued.
    async fn finish(mut self) {
        self.channels.clear();
        let link = std::mem::replace(&mut self.link, Link::None);
        if let Link::Ws(mut link) = link {
            if !self.origin_told {
                link.push(Message::Close(None));
            }
            // send the client's close (or ours) and give the origin a moment to answer it
            if link.has_outbox() {
                let busy = self.shared.drain.busy();
                tokio::spawn(async move {
                    let _busy = busy;
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Some(Ok(m)) = link.next().await {
                            if m.is_some_and(|m| m.is_close()) {
                                break;
                            }
                        }
                    })
                    .await;
                });
            }
        } else if let Link::Http(mut link) = link {
            if !self.origin_told {
                link.push(Event::disconnect());
            }
            if link.has_work() {
                // in the background and bounded: the client is gone either way, but what it
                // said last (its CLOSE, or DISCONNECT) still goes to the origin
                let meta = std::mem::take(&mut self.meta);
                let farewells = self.shared.farewells.clone();
                // a drain at shutdown waits for it (within its deadline)
                let busy = self.shared.drain.busy();
                tokio::spawn(async move {
                    let _busy = busy;
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let Ok(Ok(_permit)) =
                        tokio::time::timeout_at(deadline.into(), farewells.acquire_owned()).await
                    else {
                        return;
                    };
                    while link.has_work() && Instant::now() < deadline {
                        link.pump(&meta, false);
                        if let Some(at) = link.deadline() {
                            // nothing in flight: a retry's backoff
                            tokio::time::sleep_until(at.min(deadline).into()).await;
                            continue;
                        }
                        match tokio::time::timeout_at(deadline.into(), link.next()).await {
                            Ok(Err(_)) if !link.retrying() => break, // given up
                            _ => {}
                        }
                    }
                });
            }
        }
        let sink = &self.sub.sink;
        {
            let mut st = sink.lock();
            sink.finish(&mut st);
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.wait_end()).await;
    }
}

/// What the origin link produced.
enum OriginUpdate {
    Reply(Box<Reply>),
    Message(Message),
    Retrying,
    /// A full outbox to the origin has room again.
    Room,
    /// The origin failed for good (its fault).
    Gone(Refusal),
}

async fn link_next(link: &mut Link) -> OriginUpdate {
    match link {
        Link::None => std::future::pending().await,
        Link::Http(l) => match l.next().await {
            Ok(Answer::Events(reply)) => OriginUpdate::Reply(reply),
            Ok(Answer::Refused { status, .. }) => OriginUpdate::Gone(Refusal::origin(
                false,
                "websocket-origin-refused",
                format!("the origin answered {status} to a WebSocket-over-HTTP request"),
            )),
            Err(_) if l.retrying() => OriginUpdate::Retrying,
            Err(e) if l.stalled_out() => OriginUpdate::Gone(Refusal::origin(
                false,
                "websocket-nothing-accepted",
                e.message,
            )),
            Err(e) => OriginUpdate::Gone(e.refusal()),
        },
        Link::Ws(l) => match l.next().await {
            Some(Ok(Some(m))) => OriginUpdate::Message(m),
            Some(Ok(None)) => OriginUpdate::Room,
            Some(Err(e)) => OriginUpdate::Gone(Refusal::origin(
                false,
                "websocket-origin-failed",
                format!("the origin's WebSocket failed: {e}"),
            )),
            None => OriginUpdate::Gone(Refusal::origin(
                false,
                "websocket-origin-closed",
                "the origin closed its WebSocket without a close frame",
            )),
        },
    }
}

#[cfg(test)]
pub(crate) mod size_probe {
    use super::*;

    /// Sizes of the futures a WebSocket connection keeps, for the budget test.
    pub(crate) async fn sizes(
        shared: &Arc<Shared>,
        conn: ClientConn,
    ) -> (usize, usize, usize, usize) {
        let route = shared.routes.current().entries()[0].clone();
        let ClientConn { sock, .. } = conn;
        let mut s = Session {
            shared: shared.clone(),
            route: route.clone(),
            sub: WsSub::new(Sink::new(sock, 1024), false),
            proto: ClientProtocol::new(1024, false),
            grip: None,
            channels: Vec::new(),
            meta: Vec::new(),
            keep_alive: None,
            delayed: None,
            link: Link::None,
            closing_deadline: None,
            origin_told: false,
            refresh: false,
            paused: false,
        };
        let session = std::mem::size_of::<Session>();
        let step = std::mem::size_of_val(&s.step());
        let link = std::mem::size_of_val(&link_next(&mut s.link));
        let finish = std::mem::size_of_val(&s.finish());
        (session, step, link, finish)
    }
}
