//! Tests for the inflater: client frames are built with tungstenite's `Frame::format` (the
//! client side), and the output is checked byte for byte and by a tungstenite server.

use super::super::{compress, SYNC_FLUSH_TAIL};
use super::*;
use bytes::Bytes;
use std::io::{Read, Write};
use tungstenite::protocol::frame::coding::Control;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{Message, Role, WebSocket};

const KEY_A: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KEY_B: [u8; 4] = [0x01, 0x80, 0xfe, 0x42];
const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);
const CONTINUE: OpCode = OpCode::Data(Data::Continue);

/// One client frame as it goes on the wire.
fn client_frame(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut frame = Frame::message(Bytes::copy_from_slice(payload), TEXT, fin);
    let header = frame.header_mut();
    header.opcode = opcode;
    header.rsv1 = rsv1;
    header.mask = mask;
    let mut wire = Vec::new();
    frame.format(&mut wire).unwrap();
    wire
}

fn ping(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame(
        OpCode::Control(Control::Ping),
        true,
        false,
        payload,
        Some(mask),
    )
}

/// What tungstenite should be given for a whole compressed message: one plain masked frame.
fn plain(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    client_frame(opcode, true, false, payload, mask)
}

fn inflate_all(max_message: usize, input: &[u8]) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Inflater::new(max_message);
    let mut out = Vec::new();
    inflater.process(input, &mut out)?;
    assert_eq!(inflater.buffered(), 0);
    Ok(out)
}

/// A tungstenite server reading `wire` (what the inflater produced) as a client's bytes.
fn tungstenite_messages(wire: Vec<u8>) -> Vec<Message> {
    struct Stream(std::io::Cursor<Vec<u8>>);
    impl Read for Stream {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl Write for Stream {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut socket =
        WebSocket::from_raw_socket(Stream(std::io::Cursor::new(wire)), Role::Server, None);
    let mut messages = Vec::new();
    while let Ok(message) = socket.read() {
        messages.push(message);
    }
    messages
}

#[test]
fn python_websockets_single_frame() {
    // Produced by websockets 17.4 (Python) as a client with
    // PerMessageDeflate(True, True, 15, 15) and
    // Frame(Opcode.TEXT, "Gripway says héllo to websockets, héllo héllo héllo!".encode())
    //     .serialize(mask=True, extensions=[ext])
    let wire = hex("c1a9d35d503da1729a11fb12fc69fb13fc1185956881e17a776272790f9cef68f905ec646b887705571b591f793fd3");
    let out = inflate_all(1 << 20, &wire).unwrap();
    assert_eq!(
        tungstenite_messages(out),
        [Message::text(
            "Gripway says héllo to websockets, héllo héllo héllo!"
        )]
    );
}

#[test]
fn python_websockets_fragmented_binary() {
    // Same encoder: Frame(Opcode.BINARY, bytes(range(256)) * 4, fin=False) then
    // Frame(Opcode.CONT, b"tail " * 20, fin=True), each serialized with a random mask; the
    // first frame keeps its sync-flush tail, the last drops it.
    let mut wire = hex(concat!(
        "42fe011d4917b6162b77d2742f76d375aef752f4aff653f55e07a2045f06a305de872284df8623851e47e2",
        "441f46e3459ec762c49fc663c57e2782247f268325fea702a4ffa603a53e67c2643f66c365bee742e4bfe6",
        "43e5461fba1c471ebb1dc69f3a9cc79e3b9d065ffa5c075efb5d86df7adc87de7bdd663f9a3c673e9b3de6",
        "bf1abce7be1bbd267fda7c277edb7da6ff5afca7fe5bfdd627c7c4ad3ee5b1048887659ffb8f65aedae9a6",
        "39c6543302809b49f86563fc7c7c61bb96a7c7c5af3aeda124c807659ef98b6dbefa8966b9c757350e98ab",
        "2938e562ff7a70798bf66747c4ac3ce1b914a8c7e59ffa8d61a6cac9e6b9c6553106888b69b8e563fd7e78",
        "69abb6e747c5ae38e9a934e847e59ef88969b6ead10ebce81ee90ea749174917b6e9b6"
    ));
    wire.extend(hex("80890e7be4fa243228365fdbd5fb0e"));
    let expected = [
        (0..=255u8).collect::<Vec<u8>>().repeat(4),
        b"tail ".repeat(20),
    ]
    .concat();
    let out = inflate_all(1 << 20, &wire).unwrap();
    // the output frame is masked with the first frame's key, 49 17 b6 16
    assert_eq!(
        out,
        plain(BINARY, &expected, Some([0x49, 0x17, 0xb6, 0x16]))
    );
    assert_eq!(tungstenite_messages(out), [Message::binary(expected)]);
}

#[test]
fn rfc_7692_examples_as_client_frames() {
    let hello = plain(TEXT, b"Hello", Some(KEY_A));
    // §7.2.3.1 one compressed frame
    let one = client_frame(
        TEXT,
        true,
        true,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        Some(KEY_A),
    );
    assert_eq!(inflate_all(100, &one).unwrap(), hello);
    // §7.2.3.1 the same message in two fragments
    let mut two = client_frame(TEXT, false, true, &[0xf2, 0x48, 0xcd], Some(KEY_A));
    two.extend(client_frame(
        CONTINUE,
        true,
        false,
        &[0xc9, 0xc9, 0x07, 0x00],
        Some(KEY_B),
    ));
    assert_eq!(inflate_all(100, &two).unwrap(), hello);
    // §7.2.3.2 stored (uncompressed) block
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    let stored = client_frame(TEXT, true, true, &stored, Some(KEY_A));
    assert_eq!(inflate_all(100, &stored).unwrap(), hello);
    // §7.2.3.4 a final block (BFINAL=1) with padding after it
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let last = client_frame(TEXT, true, true, &last, Some(KEY_A));
    assert_eq!(inflate_all(100, &last).unwrap(), hello);
    // §7.2.3.5 two DEFLATE blocks in one message
    let blocks = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let blocks = client_frame(TEXT, true, true, &blocks, Some(KEY_A));
    assert_eq!(inflate_all(100, &blocks).unwrap(), hello);
    // §7.2.3.6 the empty message
    let empty = client_frame(BINARY, true, true, &[0x00], Some(KEY_B));
    assert_eq!(
        inflate_all(100, &empty).unwrap(),
        plain(BINARY, b"", Some(KEY_B))
    );
}

#[test]
fn compress_then_inflate_round_trip() {
    let message = r#"{"type":"chat","text":"héllo wörld","n":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(40);
    let wire = client_frame(TEXT, true, true, &compress(message.as_bytes()), Some(KEY_A));
    assert!(wire.len() < message.len() / 4);
    let out = inflate_all(1 << 20, &wire).unwrap();
    assert!(out == plain(TEXT, message.as_bytes(), Some(KEY_A)));
    assert_eq!(tungstenite_messages(out), [Message::text(message)]);
    // binary over 64 KiB: 8-byte length in the output header
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    let wire = client_frame(BINARY, true, true, &compress(&big), Some(KEY_B));
    let out = inflate_all(1 << 20, &wire).unwrap();
    assert!(out == plain(BINARY, &big, Some(KEY_B)));
}

/// A stream mixing everything: a plain text message, a compressed message in three fragments
/// with a ping between the first two, a plain fragmented binary message, a compressed binary
/// message, and a close. Returns the client bytes and what tungstenite must be given.
fn mixed_stream() -> (Vec<u8>, Vec<u8>) {
    let long_text = "gripway ".repeat(300);
    let compressed = compress(long_text.as_bytes());
    let (first, rest) = compressed.split_at(compressed.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);
    let mut input = Vec::new();
    let mut expected = Vec::new();

    let plain_text = client_frame(TEXT, true, false, b"plain", Some(KEY_A));
    input.extend(&plain_text);
    expected.extend(&plain_text);

    input.extend(client_frame(TEXT, false, true, first, Some(KEY_A)));
    let ping = ping(b"are you there", KEY_B);
    input.extend(&ping);
    expected.extend(&ping);
    input.extend(client_frame(CONTINUE, false, false, second, Some(KEY_B)));
    input.extend(client_frame(
        CONTINUE,
        true,
        false,
        third,
        Some([9, 8, 7, 6]),
    ));
    expected.extend(plain(TEXT, long_text.as_bytes(), Some(KEY_A)));

    for frame in [
        client_frame(BINARY, false, false, &[1, 2, 3], Some(KEY_B)),
        client_frame(CONTINUE, true, false, &[4, 5], Some(KEY_A)),
    ] {
        input.extend(&frame);
        expected.extend(&frame);
    }

    input.extend(client_frame(
        BINARY,
        true,
        true,
        &compress(&[0xee; 500]),
        Some(KEY_B),
    ));
    expected.extend(plain(BINARY, &[0xee; 500], Some(KEY_B)));

    let close = client_frame(
        OpCode::Control(Control::Close),
        true,
        false,
        &[0x03, 0xe8],
        Some(KEY_A),
    );
    input.extend(&close);
    expected.extend(&close);
    (input, expected)
}

#[test]
fn fragments_with_a_ping_between_them() {
    let (input, expected) = mixed_stream();
    assert!(inflate_all(1 << 16, &input).unwrap() == expected);
    let messages = tungstenite_messages(expected);
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[0], Message::text("plain"));
    assert_eq!(
        messages[1],
        Message::Ping(Bytes::from_static(b"are you there"))
    );
    assert_eq!(messages[2], Message::text("gripway ".repeat(300)));
    assert_eq!(messages[3], Message::binary(vec![1, 2, 3, 4, 5]));
    assert_eq!(messages[4], Message::binary(vec![0xee; 500]));
    assert!(matches!(messages[5], Message::Close(_)));
}

#[test]
fn ping_between_fragments_is_passed_on_immediately() {
    let compressed = compress(b"one two three four five six seven");
    let (first, second) = compressed.split_at(5);
    let mut inflater = Inflater::new(1000);
    let mut out = Vec::new();
    inflater
        .process(
            &client_frame(TEXT, false, true, first, Some(KEY_A)),
            &mut out,
        )
        .unwrap();
    assert!(out.is_empty());
    let ping = ping(b"p", KEY_B);
    inflater.process(&ping, &mut out).unwrap();
    assert_eq!(out, ping);
    assert!(inflater.buffered() <= 33);
    inflater
        .process(
            &client_frame(CONTINUE, true, false, second, Some(KEY_B)),
            &mut out,
        )
        .unwrap();
    assert_eq!(
        out[ping.len()..],
        plain(TEXT, b"one two three four five six seven", Some(KEY_A))
    );
    assert_eq!(inflater.buffered(), 0);
}

#[test]
fn input_split_at_every_offset() {
    let (input, expected) = mixed_stream();
    for split in 0..=input.len() {
        let mut inflater = Inflater::new(1 << 16);
        let mut out = Vec::new();
        inflater.process(&input[..split], &mut out).unwrap();
        inflater.process(&input[split..], &mut out).unwrap();
        assert!(out == expected, "split at {split}");
        assert_eq!(inflater.buffered(), 0);
    }
    let mut inflater = Inflater::new(1 << 16);
    let mut out = Vec::new();
    for byte in &input {
        inflater
            .process(std::slice::from_ref(byte), &mut out)
            .unwrap();
        assert!(inflater.buffered() <= MAX_HEADER_BYTES + 2400);
    }
    assert!(out == expected, "one byte at a time");
}

#[test]
fn partial_header_is_held() {
    let frame = client_frame(BINARY, true, false, &[5; 70_000], Some(KEY_A));
    let mut inflater = Inflater::new(10);
    let mut out = Vec::new();
    inflater.process(&frame[..7], &mut out).unwrap();
    assert_eq!((inflater.buffered(), out.len()), (7, 0));
    // header complete (14 bytes): passed on with the payload received so far, nothing held
    inflater.process(&frame[7..20], &mut out).unwrap();
    assert_eq!((inflater.buffered(), out.len()), (0, 20));
    inflater.process(&frame[20..], &mut out).unwrap();
    assert!(out == frame);
}

#[test]
fn uncompressed_traffic_passes_through_byte_identical() {
    let mut input = Vec::new();
    input.extend(client_frame(
        TEXT,
        true,
        false,
        "héllo".as_bytes(),
        Some(KEY_A),
    ));
    input.extend(client_frame(
        BINARY,
        true,
        false,
        &vec![0xab; 70_000],
        Some(KEY_B),
    ));
    input.extend(client_frame(TEXT, false, false, b"frag", Some(KEY_A)));
    input.extend(ping(b"", KEY_A));
    input.extend(client_frame(CONTINUE, true, false, b"ment", Some(KEY_B)));
    input.extend(client_frame(
        OpCode::Control(Control::Pong),
        true,
        false,
        b"x",
        Some(KEY_B),
    ));
    input.extend(client_frame(TEXT, true, false, b"", None));
    // the inflater never polices what tungstenite already checks
    input.extend(client_frame(CONTINUE, true, false, b"stray", Some(KEY_A)));
    let out = inflate_all(16, &input).unwrap();
    assert!(out == input);
}

#[test]
fn decompression_bomb_is_refused_without_allocating_it() {
    let bomb = compress(&vec![0; 16 << 20]);
    assert!(bomb.len() < 100_000, "{} compressed bytes", bomb.len());
    let wire = client_frame(BINARY, true, true, &bomb, Some(KEY_A));
    let error = inflate_all(1 << 20, &wire).unwrap_err();
    assert_eq!(error, InflateError::TooBig { limit: 1 << 20 });
    assert_eq!(
        error.to_string(),
        "compressed message inflates to more than the 1048576-byte message limit"
    );
    assert_eq!(error.close_code(), 1009);

    // the message buffer never grows past the limit plus one byte
    let mut message = CompressedMessage::start(BINARY, None);
    let error = message.inflate(&bomb, 100_000).unwrap_err();
    assert_eq!(error, InflateError::TooBig { limit: 100_000 });
    assert!(
        message.inflated.capacity() <= 100_001,
        "{}",
        message.inflated.capacity()
    );

    // exactly at the limit is fine
    let wire = client_frame(BINARY, true, true, &compress(&[7; 4096]), Some(KEY_A));
    assert!(inflate_all(4096, &wire).is_ok());
    assert_eq!(
        inflate_all(4095, &wire),
        Err(InflateError::TooBig { limit: 4095 })
    );
}

#[test]
fn endless_compressed_data_is_refused() {
    // empty stored blocks inflate to nothing but still have to be bounded
    let padding = [0x00, 0x00, 0x00, 0xff, 0xff].repeat(400);
    let mut inflater = Inflater::new(100);
    assert_eq!(inflater.compressed_limit(), 1124);
    let mut out = Vec::new();
    let error = inflater
        .process(
            &client_frame(TEXT, true, true, &padding, Some(KEY_A)),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(error, InflateError::CompressedTooBig { limit: 1124 });
    assert_eq!(error.close_code(), 1009);
}

#[test]
fn corrupt_data_is_an_error_and_stays_one() {
    let mut inflater = Inflater::new(1000);
    let mut out = Vec::new();
    // BTYPE=11 is reserved
    let wire = client_frame(TEXT, true, true, &[0xff, 0xff, 0xff, 0xff], Some(KEY_A));
    let error = inflater.process(&wire, &mut out).unwrap_err();
    assert!(matches!(error, InflateError::Corrupt { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with("compressed message is not valid DEFLATE data: "));
    assert_eq!(error.close_code(), 1002);
    assert_eq!(inflater.buffered(), 0);
    assert_eq!(inflater.process(&ping(b"", KEY_A), &mut out), Err(error));
    assert!(out.is_empty());
}

#[test]
fn context_takeover_by_the_client_reads_zeros_not_old_data() {
    // A client ignoring client_no_context_takeover: its second message refers back into the
    // first one's window. miniz's streaming inflater does not reject such distances; it reads
    // its window, which is zeroed for every message, so nothing of an earlier message (or
    // another connection's, through the decompressor pool) can come back.
    let sentence = b"a sentence long enough to be referenced";
    // the first message fills the whole 32 KiB window and ends with the sentence
    let first_message = [vec![b'x'; 32_768 - sentence.len()], sentence.to_vec()].concat();
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let mut wire = Vec::new();
    for message in [&first_message[..], sentence] {
        let mut compressed = Vec::with_capacity(40_000);
        compressor
            .compress_vec(message, &mut compressed, flate2::FlushCompress::Sync)
            .unwrap();
        compressed.truncate(compressed.len() - SYNC_FLUSH_TAIL.len());
        wire.extend(client_frame(TEXT, true, true, &compressed, Some(KEY_A)));
    }
    let out = inflate_all(40_000, &wire).unwrap();
    let first = plain(TEXT, &first_message, Some(KEY_A));
    assert!(out[..first.len()] == first);
    let second = tungstenite_messages(out[first.len()..].to_vec());
    let Some(Message::Text(text)) = second.first() else {
        panic!("{second:?}");
    };
    assert_eq!(text.len(), sentence.len());
    assert!(text.bytes().all(|byte| byte == 0), "{text:?}");
}

#[test]
fn protocol_errors() {
    let cases: [(Vec<u8>, InflateError, &str); 6] = [
        (
            client_frame(OpCode::Control(Control::Ping), true, true, b"", Some(KEY_A)),
            InflateError::CompressedControl { opcode: 9 },
            "control frame (opcode 0x9) has RSV1 set; control frames are never compressed",
        ),
        (
            [
                client_frame(TEXT, false, true, &[0xf2, 0x48], Some(KEY_A)),
                client_frame(CONTINUE, true, true, &[0xcd], Some(KEY_A)),
            ]
            .concat(),
            InflateError::CompressedContinuation,
            "continuation frame has RSV1 set; only the first frame of a message may",
        ),
        (
            {
                let mut frame = Frame::message(Bytes::from_static(b"x"), TEXT, true);
                frame.header_mut().rsv2 = true;
                let mut wire = Vec::new();
                frame.format(&mut wire).unwrap();
                wire
            },
            InflateError::ReservedBits,
            "frame has RSV2 or RSV3 set, which no negotiated extension defines",
        ),
        (
            vec![0x83, 0x80, 1, 2, 3, 4],
            InflateError::BadHeader { detail: "WebSocket protocol error: Encountered invalid opcode: 3".into() },
            "invalid WebSocket frame header: WebSocket protocol error: Encountered invalid opcode: 3",
        ),
        (
            [
                client_frame(TEXT, false, true, &[0xf2, 0x48], Some(KEY_A)),
                client_frame(BINARY, true, false, b"new", Some(KEY_A)),
            ]
            .concat(),
            InflateError::MessageInterrupted,
            "a new data message started before the previous message's final frame",
        ),
        (
            [
                client_frame(TEXT, false, false, b"plain start", Some(KEY_A)),
                client_frame(TEXT, true, true, &[0x00], Some(KEY_A)),
            ]
            .concat(),
            InflateError::MessageInterrupted,
            "a new data message started before the previous message's final frame",
        ),
    ];
    for (input, error, message) in cases {
        assert_eq!(inflate_all(1000, &input).as_ref(), Err(&error));
        assert_eq!(error.to_string(), message);
        assert_eq!(error.close_code(), 1002);
    }
}

#[test]
fn unmasked_compressed_message_stays_unmasked() {
    // tungstenite, not the inflater, decides whether unmasked client frames are allowed
    let wire = client_frame(TEXT, true, true, &compress(b"hi"), None);
    assert_eq!(inflate_all(100, &wire).unwrap(), plain(TEXT, b"hi", None));
    let mut wire = client_frame(TEXT, false, true, &compress(b"hi")[..1], Some(KEY_A));
    wire.extend(client_frame(
        CONTINUE,
        true,
        false,
        &compress(b"hi")[1..],
        None,
    ));
    assert_eq!(inflate_all(100, &wire).unwrap(), plain(TEXT, b"hi", None));
}

#[test]
fn decompressors_are_recycled() {
    let before = SPARE_DECOMPRESSORS.with(|spares| spares.borrow().len());
    let wire = client_frame(TEXT, true, true, &compress(b"recycled"), Some(KEY_A));
    inflate_all(100, &wire).unwrap();
    let after = SPARE_DECOMPRESSORS.with(|spares| spares.borrow().len());
    assert_eq!(after, (before + 1).min(MAX_SPARE_DECOMPRESSORS).max(before));
    // a message left unfinished returns its decompressor when the inflater is dropped
    let mut inflater = Inflater::new(100);
    inflater
        .process(&wire[..wire.len() - 1], &mut Vec::new())
        .unwrap();
    let taken = SPARE_DECOMPRESSORS.with(|spares| spares.borrow().len());
    drop(inflater);
    let returned = SPARE_DECOMPRESSORS.with(|spares| spares.borrow().len());
    assert_eq!(returned, (taken + 1).min(MAX_SPARE_DECOMPRESSORS));
}

#[test]
fn mask_applies_at_any_offset() {
    let mut data: Vec<u8> = (0..11).collect();
    apply_mask(&mut data[..3], KEY_A, 0);
    apply_mask(&mut data[3..], KEY_A, 3);
    let expected: Vec<u8> = (0..11u8).map(|i| i ^ KEY_A[usize::from(i) % 4]).collect();
    assert_eq!(data, expected);
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

proptest::proptest! {
    #[test]
    fn never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..400), split in 0usize..400) {
        let mut inflater = Inflater::new(1000);
        let mut out = Vec::new();
        let split = split.min(input.len());
        let _ = inflater.process(&input[..split], &mut out);
        let _ = inflater.process(&input[split..], &mut out);
        proptest::prop_assert!(inflater.buffered() <= MAX_HEADER_BYTES + 1001);
    }

    #[test]
    fn compressed_payloads_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let wire = client_frame(BINARY, true, true, &payload, Some(KEY_A));
        let _ = inflate_all(1000, &wire);
    }

    #[test]
    fn round_trips_any_fragmentation(
        message in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
        cuts in proptest::collection::vec(0usize..2000, 0..4),
        split in 0usize..3000,
    ) {
        let compressed = compress(&message);
        let mut bounds: Vec<usize> = cuts.into_iter().map(|cut| cut.min(compressed.len())).collect();
        bounds.sort_unstable();
        bounds.insert(0, 0);
        bounds.push(compressed.len());
        let last = bounds.len() - 2;
        let mut input = Vec::new();
        for (index, pair) in bounds.windows(2).enumerate() {
            let opcode = if index == 0 { BINARY } else { CONTINUE };
            let mask = [index as u8, 0x5a, 0xa5, 0xff];
            input.extend(client_frame(opcode, index == last, index == 0, &compressed[pair[0]..pair[1]], Some(mask)));
        }
        let mut inflater = Inflater::new(2000);
        let mut out = Vec::new();
        let split = split.min(input.len());
        inflater.process(&input[..split], &mut out).unwrap();
        inflater.process(&input[split..], &mut out).unwrap();
        proptest::prop_assert!(out == plain(BINARY, &message, Some([0, 0x5a, 0xa5, 0xff])));
    }
}
