//! The sink's bounds, queue accounting, zero-copy queueing and recovery hand-over.

use super::*;

/// A sink on a connected socket whose peer reads nothing, with the kernel's buffers
/// already full, so everything sent from now on is queued.
async fn stalled_sink(max: usize) -> (Sink, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    for size in [65536, 1] {
        let chunk = vec![0u8; size];
        loop {
            match server.try_write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    (Sink::new(ClientStream::plain(server), max), client)
}

/// Messages sent one at a time before the sink gives up on the client.
async fn sends_until_slow(size: usize) -> usize {
    let max = 64 * 1024;
    let (sink, _client) = stalled_sink(max).await;
    let frame = Bytes::from(vec![b'x'; size]);
    for n in 1..=max + 1 {
        let mut st = sink.lock();
        if !sink.send(&mut st, &[&frame]) {
            return n;
        }
    }
    panic!("never cut off");
}

#[tokio::test]
async fn tiny_messages_are_cut_off_at_the_same_memory_as_large_ones() {
    let large = sends_until_slow(4096).await;
    assert!(
        (16..=17).contains(&large),
        "64 KiB of 4 KiB messages: {large}"
    );
    let tiny = sends_until_slow(1).await;
    // each 1-byte slice really costs its handle and queue slot too
    let expected = 64 * 1024 / (1 + SLOT_COST) + 1;
    assert!(tiny < 2048, "not 65,537 one-byte messages: {tiny}");
    assert_eq!(tiny, expected);
}

#[tokio::test]
async fn the_count_returns_to_zero_when_drained() {
    let (sink, mut client) = stalled_sink(1 << 20).await;
    let frame = Bytes::from_static(b"hello");
    {
        let mut st = sink.lock();
        for _ in 0..100 {
            assert!(sink.send(&mut st, &[&frame]));
        }
        assert_eq!(st.queued_bytes, 100 * (5 + SLOT_COST));
    }
    // the client reads everything; the sink flushes its queue
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            use tokio::io::AsyncReadExt;
            if client.read(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
        }
    });
    for _ in 0..500 {
        sink.flush().unwrap();
        if sink.lock().queue.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let st = sink.lock();
    assert!(st.queue.is_empty());
    assert_eq!(st.queued_bytes, 0);
    drop(st);
    reader.abort();
}

#[test]
fn a_queue_entry_is_no_larger_than_a_buffer_handle() {
    assert_eq!(std::mem::size_of::<Queued>(), std::mem::size_of::<Bytes>());
}

/// Flushes everything `sink` queued while `client` reads it, then closes the sink's side:
/// every byte the client received, in order.
async fn flush_to_client(sink: &Sink, mut client: TcpStream) -> Vec<u8> {
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    for _ in 0..2000 {
        sink.flush().unwrap();
        if sink.lock().queue.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(sink.lock().queue.is_empty(), "the queue never drained");
    let Out::Socket(sock) = &sink.out else {
        unreachable!()
    };
    let _ = socket2::SockRef::from(sock).shutdown(Shutdown::Write);
    reader.await.unwrap()
}

#[tokio::test]
async fn queued_message_encodings_go_out_whole_and_in_order_without_a_copy() {
    let (sink, client) = stalled_sink(1 << 22).await;
    let content = "abcdefghij".repeat(1000);
    let body = format!(
        r#"{{"items":[{{"channel":"c","id":"1","formats":{{"http-stream":{{"content":"{content}"}}}}}}]}}"#
    );
    let limits = gripway_proto::publish::PublishLimits::default();
    let item = gripway_proto::publish::parse_publish_body(body.as_bytes(), &limits)
        .unwrap()
        .remove(0);
    let m = Message::new(item);
    let own = Bytes::from_static(b"|own|");
    let mut want = Vec::new();
    {
        let mut st = sink.lock();
        for _ in 0..20 {
            let frames = [
                Frame::of(&m, Encoding::StreamChunk).unwrap(),
                Frame::Bytes(&own),
                Frame::of(&m, Encoding::StreamContent).unwrap(),
            ];
            assert!(sink.send(&mut st, &frames));
            for f in &frames {
                want.extend_from_slice(f.bytes());
            }
        }
        // the queue holds the message itself, not buffers of its own
        assert_eq!(Arc::strong_count(&m), 1 + 40);
        assert!(matches!(st.queue.front(), Some(Queued::Message { .. })));
    }
    let got = flush_to_client(&sink, client).await;
    assert_eq!(Arc::strong_count(&m), 1);
    // what the stalled socket held first is zeros
    let start = got.iter().position(|b| *b != 0).unwrap();
    assert_eq!(&got[start..], &want[..]);
}

#[tokio::test]
async fn small_batches_written_as_the_socket_fills_arrive_whole_and_in_order() {
    // small batches are copied into one buffer and sent at once (GATHER_MAX); the socket
    // fills midway through one of them, and the rest is queued from inside a frame
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let sink = Sink::new(ClientStream::plain(server), 1 << 24);
    let mut want = Vec::new();
    let mut queued = false;
    for n in 0u32..100_000 {
        let head = Bytes::from(format!("<{n}:"));
        let body = Bytes::from(vec![b'a' + (n % 26) as u8; 1 + (n as usize * 7) % 300]);
        let tail = Bytes::from_static(b">");
        let frames = [&head, &body, &tail];
        let mut st = sink.lock();
        assert!(sink.send(&mut st, &frames));
        for f in frames {
            want.extend_from_slice(f);
        }
        if !st.queue.is_empty() && n % 64 == 0 {
            queued = true;
            break;
        }
    }
    assert!(queued, "the socket never filled");
    let got = flush_to_client(&sink, client).await;
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes out of order or lost");
}

fn msg(channel: &str, id: &str) -> Arc<Message> {
    let body = format!(
        r#"{{"items":[{{"channel":"{channel}","id":"{id}","formats":{{"http-stream":{{"content":"x"}}}}}}]}}"#
    );
    let limits = gripway_proto::publish::PublishLimits::default();
    let item = gripway_proto::publish::parse_publish_body(body.as_bytes(), &limits)
        .unwrap()
        .remove(0);
    Message::new(item)
}

fn ids(v: &[Arc<Message>]) -> Vec<&str> {
    v.iter().map(|m| m.id().unwrap()).collect()
}

#[tokio::test]
async fn late_copies_of_recovered_items_are_dropped_once_then_delivery_is_plain() {
    let (sink, _peer) = stalled_sink(1 << 20).await;
    let mut st = sink.lock();
    sink.hold_back(&mut st);
    assert!(matches!(sink.held(&mut st, &[msg("c", "a")]), Intake::Kept));
    let recovered = [("c", "a"), ("c", "b"), ("c", "c")]
        .iter()
        .map(|(c, i)| (Arc::from(*c), Arc::from(*i)))
        .collect();
    let held = sink.release(&mut st, recovered);
    assert_eq!(ids(&held), ["a"]);
    // b was kept before history was read but fanned out only now: not sent twice
    match sink.held(&mut st, &[msg("c", "b"), msg("other", "b")]) {
        Intake::Filtered(pass) => assert_eq!(ids(&pass), ["b"]),
        _ => panic!("expected a filtered batch"),
    }
    // the first newer item of the channel ends the skipping (c never came late)
    match sink.held(&mut st, &[msg("c", "d"), msg("c", "c")]) {
        Intake::Filtered(pass) => assert_eq!(ids(&pass), ["d", "c"]),
        _ => panic!("expected a filtered batch"),
    }
    assert!(matches!(
        sink.held(&mut st, &[msg("c", "e")]),
        Intake::Deliver
    ));
}
