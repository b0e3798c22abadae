//! Budgets for what every held connection costs, checked by a test so they cannot creep up
//! unnoticed: the size of each per-connection future (allocated once per task). Raise a
//! budget only with a measurement that says why.
//!
//! Measured with fanbench at 5,000 subscribers (RSS growth per idle connection): SSE
//! 2.6 KiB, WebSocket-over-HTTP 2.7 KiB (5.4 before the session's future kept only the
//! session, the handshake headers were kept compactly and tungstenite's state was made on
//! first client input). Of a WebSocket, heaptrack now attributes 0.64 KiB to the task, 0.34
//! KiB to the boxed WebSocket future, 0.25 KiB to the socket registration, ~0.19 KiB to the
//! WebSocket-over-HTTP link, ~0.18 KiB to the subscriber state, ~0.15 KiB to the handshake
//! headers every origin request repeats and ~0.05 KiB to the channel list.
//!
//! An idle MQTT connection (one subscription, QoS 0): 1.2 KiB by heaptrack, 1.3 KiB of RSS
//! (2.1 before it had a task of its own, 384 B instead of HTTP's 768, exact room for its
//! subscription and its QoS 1 window boxed): the task 384 B, the socket registration 256,
//! the subscriber state 208, the keep-alive timer 112, the subscription 96 (+ 48 for its
//! filter and channel names), the client id 32, the registry and drain roster ~60.

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::{Bytes, BytesMut};
    use gripway_proto::http1::Version;
    use gripway_proto::instruct::HoldMode;
    use tokio::net::{TcpListener, TcpStream};

    use crate::config::Config;
    use crate::hold::{self, HoldPlan};
    use crate::metrics::ConnKind;
    use crate::relay::FullResponse;
    use crate::transport::ClientConn;
    use crate::Shared;

    /// Bytes of the task future that serves a connection between requests (8 of them for
    /// the TLS session's pointer, 8 for handing a WebSocket to MQTT; its task cell stays 640
    /// B either way: the future plus 104 B, in steps of 128).
    const SERVE_FUTURE: usize = 464;
    /// Bytes of the future that holds a stream (inline in its task, alive as long as the
    /// stream): what the hold keeps, the connection already taken apart.
    const STREAM_HOLD_FUTURE: usize = 200;
    /// Bytes of a held stream's task future: the hold's and a few pointers (the request
    /// loop's task has ended).
    const HELD_TASK: usize = 256;
    /// Bytes of the future that holds a long-poll, inline (the long-poll's own state is
    /// boxed beside it, so a stream's task is not sized for a long-poll).
    const POLL_HOLD_FUTURE: usize = 200;
    /// Bytes of the future that runs a WebSocket after its handshake (boxed): the session
    /// and the step it awaits; no arguments, no tungstenite state (boxed, made on first use).
    const WEBSOCKET_FUTURE: usize = 336;
    /// Bytes of a stream subscriber's state shared with the broker (one `Arc` each).
    const STREAM_STATE: usize = 160;
    /// Bytes of a long-poll subscriber's state (it keeps the timeout response's parts, and
    /// the `body-patch` size limit and skip count: 8 bytes; the sink's pointer to messages
    /// held back while history is read: 8; the TLS session's: 8).
    const POLL_STATE: usize = 376;
    /// Bytes of a WebSocket subscriber's state shared with the broker (8 of them for the
    /// TLS session's pointer).
    const WEBSOCKET_STATE: usize = 184;
    /// Bytes of a WebSocket-over-HTTP link (boxed, one per such connection; the handshake
    /// headers it repeats are kept beside it, encoded).
    const WOH_LINK: usize = 168;
    /// Bytes of an MQTT connection's task future (its own task): the session (its read
    /// buffer empty when idle, its keep-alive timer boxed) and the step it awaits. tokio's
    /// task cell is the future plus 104 B, in steps of 128: up to 280 B it is 384 B, past it
    /// 512.
    const MQTT_FUTURE: usize = 280;
    /// Bytes of an MQTT subscriber's state shared with the broker: the sink and what the
    /// fan-out needs (subscriptions, packet ids; the QoS 1 window boxed, made when needed),
    /// and the client id a second connection's takeover finds it by.
    const MQTT_STATE: usize = 208;

    #[test]
    fn per_connection_state_stays_within_budget() {
        let (stream, poll) = hold::STATE_SIZES;
        let ws = std::mem::size_of::<crate::ws::WsSubState>();
        let woh = std::mem::size_of::<crate::ws::WohLinkState>();
        let mqtt = crate::mqtt::STATE_SIZE;
        eprintln!("mqtt subscriber {mqtt} B");
        assert!(
            mqtt <= MQTT_STATE,
            "mqtt subscriber {mqtt} B > {MQTT_STATE}"
        );
        eprintln!("stream subscriber {stream} B, long-poll subscriber {poll} B, websocket subscriber {ws} B, websocket-over-http link {woh} B");
        assert!(
            stream <= STREAM_STATE,
            "stream subscriber {stream} B > {STREAM_STATE}"
        );
        assert!(
            poll <= POLL_STATE,
            "long-poll subscriber {poll} B > {POLL_STATE}"
        );
        assert!(
            ws <= WEBSOCKET_STATE,
            "websocket subscriber {ws} B > {WEBSOCKET_STATE}"
        );
        assert!(
            woh <= WOH_LINK,
            "websocket-over-http link {woh} B > {WOH_LINK}"
        );
    }

    async fn conn(shared: &Arc<Shared>) -> (ClientConn, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (sock, peer) = l.accept().await.unwrap();
        let conn = ClientConn {
            sock: crate::transport::ClientStream::plain(sock),
            peer,
            buf: BytesMut::new(),
            guard: shared.metrics.connection(ConnKind::Http),
        };
        (conn, client)
    }

    fn plan(mode: HoldMode) -> Box<HoldPlan> {
        Box::new(HoldPlan {
            mode,
            version: Version::Http11,
            keep_alive: true,
            head_only: false,
            response: FullResponse {
                status: 200,
                reason: None,
                headers: http::HeaderMap::new(),
                body: Bytes::new(),
            },
            channels: vec![("c".into(), hold::FilterSet::default())],
            meta: vec![],
            prev_ids: vec![],
            sse: true,
            sse_id: false,
            last_event_id: None,
            prefix: String::new(),
            timeout: std::time::Duration::from_secs(55),
            keep_alive_data: None,
            request: None,
            links: None,
        })
    }

    #[tokio::test]
    async fn per_connection_futures_stay_within_budget() {
        let shared = Shared::for_tests(Config::default());
        let (c, _client) = conn(&shared).await;
        let tokens = || crate::conn::Tokens {
            _admitted: None,
            _busy: shared.drain.busy(),
        };
        let serve = std::mem::size_of_val(&crate::conn::serve(
            shared.clone(),
            c,
            tokens(),
            crate::conn::Start::First,
        ));
        let (c, _client) = conn(&shared).await;
        let held_stream = std::mem::size_of_val(&crate::conn::held(
            shared.clone(),
            c,
            plan(HoldMode::Stream),
            tokens(),
        ));
        let (c, _client) = conn(&shared).await;
        let stream = std::mem::size_of_val(&hold::run(shared.clone(), c, plan(HoldMode::Stream)));
        let (c, _client) = conn(&shared).await;
        let poll = std::mem::size_of_val(&hold::run(shared.clone(), c, plan(HoldMode::Response)));
        let head = gripway_proto::http1::parse_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        let route = shared.routes.current().entries()[0].clone();
        let (c, _client) = conn(&shared).await;
        let ws = std::mem::size_of_val(&crate::ws::run(
            shared.clone(),
            c,
            Box::new(crate::ws::WsPlan {
                route,
                head,
                trusted: false,
                accept: String::new(),
            }),
        ));
        let (c, _client) = conn(&shared).await;
        let mqtt = std::mem::size_of_val(&crate::mqtt::session::start(shared.clone(), c, tokens()));
        eprintln!(
            "mqtt future {mqtt} B, session {} B",
            crate::mqtt::session::SESSION_SIZE
        );
        assert!(mqtt <= MQTT_FUTURE, "mqtt future {mqtt} B > {MQTT_FUTURE}");
        let (c, _client) = conn(&shared).await;
        let (session, step, link, finish) = crate::ws::session_sizes(&shared, c).await;
        eprintln!("ws session {session} B, step {step} B, link {link} B, finish {finish} B");
        eprintln!("serve future {serve} B, stream hold {stream} B (its task's future {held_stream} B), long-poll hold {poll} B, websocket {ws} B");
        assert!(
            serve <= SERVE_FUTURE,
            "serve future {serve} B > {SERVE_FUTURE}"
        );
        assert!(
            held_stream <= HELD_TASK,
            "held stream task future {held_stream} B > {HELD_TASK}"
        );
        assert!(
            stream <= STREAM_HOLD_FUTURE,
            "stream hold future {stream} B > {STREAM_HOLD_FUTURE}"
        );
        assert!(
            poll <= POLL_HOLD_FUTURE,
            "long-poll hold future {poll} B > {POLL_HOLD_FUTURE}"
        );
        assert!(
            ws <= WEBSOCKET_FUTURE,
            "websocket future {ws} B > {WEBSOCKET_FUTURE}"
        );
    }
}
