//! What the broker's integration tests share: a subscriber that records the `http-stream`
//! content it is handed, and items that carry such content.

use std::sync::Arc;

use gripway_broker::{Delivery, Message, Subscriber, Transport};
use gripway_proto::publish::{Formats, HttpStreamAction, HttpStreamFormat, Item};
use parking_lot::Mutex;

/// Records the content of what it is handed, in order.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    pub(crate) fn got(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

impl Subscriber for Recorder {
    fn transport(&self) -> Transport {
        Transport::HttpStream
    }
    fn deliver(&self, _channel: &str, messages: &[Arc<Message>]) -> Delivery {
        let mut got = self.0.lock();
        for m in messages {
            let content = m.stream_content().unwrap_or_default();
            got.push(String::from_utf8_lossy(content).into_owned());
        }
        Delivery::Sent(messages.len() as u32)
    }
}

/// An item without an id whose content is `text`.
pub(crate) fn item(channel: &str, text: &str) -> Item {
    Item {
        channel: channel.into(),
        id: None,
        prev_id: None,
        meta: vec![],
        no_seq: false,
        formats: Formats {
            http_stream: Some(HttpStreamFormat {
                action: HttpStreamAction::Send(text.as_bytes().to_vec().into()),
                content_filters: vec![],
            }),
            ..Formats::default()
        },
    }
}

/// `item` with the id `id`.
pub(crate) fn with_id(mut item: Item, id: &str) -> Item {
    item.id = Some(id.into());
    item
}
