//! The publish-body parser: serde visitors that walk the JSON once, borrowing strings from
//! the input wherever they need no unescaping, and build [`Item`]s directly (no generic value
//! tree, except for a `body-patch`, whose values are arbitrary JSON).
//!
//! Every value is read with a visitor that accepts any JSON type, so a value of the wrong type
//! becomes a [`PublishError`] naming its path rather than a bare serde message. The first such
//! error is stored in [`Ctx`] and the walk is aborted with a placeholder serde error; `parse`
//! then returns the stored error, or, when there is none, reports the body as invalid JSON.
//! Nesting depth is bounded by serde_json's recursion limit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{
    Formats, HttpResponseFormat, HttpStreamFormat, Item, MqttMessageFormat, PublishError,
    PublishErrorKind, PublishLimits, WsMessageFormat, MAX_META_ENTRIES, MAX_META_KEY_BYTES,
    MAX_META_VALUE_BYTES,
};

pub(super) fn parse(body: &[u8], limits: &PublishLimits) -> Result<Vec<Item>, PublishError> {
    // JSON text is UTF-8 (RFC 8259 §8.1). Checking the whole body at once is faster than
    // letting serde_json check each string, which it skips for a `&str` input.
    let text = std::str::from_utf8(body).map_err(|e| {
        let at = e.valid_up_to();
        invalid(
            None,
            format!("Body is not valid JSON: invalid UTF-8 at byte offset {at}"),
        )
    })?;
    let mut ctx = Ctx {
        limits,
        // Typical items are about 100 bytes. The cap keeps a body of padding from reserving
        // much; a list longer than the guess just grows.
        items_hint: (body.len() / 100 + 1).min(limits.max_items.clamp(1, MAX_ITEMS_RESERVED)),
        error: None,
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let parsed = BodySeed { ctx: &mut ctx }
        .deserialize(&mut json)
        .and_then(|items| json.end().map(|()| items));
    parsed.map_err(|json_error| {
        ctx.error
            .take()
            .unwrap_or_else(|| invalid(None, format!("Body is not valid JSON: {json_error}")))
    })
}

/// Most items whose room is reserved before any is parsed.
const MAX_ITEMS_RESERVED: usize = 4096;

/// What the visitors share: the limits, and the first validation error found.
struct Ctx<'l> {
    limits: &'l PublishLimits,
    /// Capacity to reserve for the items list, estimated from the body's length.
    items_hint: usize,
    error: Option<PublishError>,
}

impl Ctx<'_> {
    /// Records `error` (unless one is already recorded) and returns the serde error that
    /// aborts the walk.
    fn reject<E: de::Error>(&mut self, error: PublishError) -> E {
        self.error.get_or_insert(error);
        E::custom("publish body rejected")
    }
}

fn invalid(item: Option<usize>, message: String) -> PublishError {
    PublishError {
        kind: PublishErrorKind::Invalid,
        item,
        message,
    }
}

fn too_large(item: Option<usize>, message: String) -> PublishError {
    PublishError {
        kind: PublishErrorKind::TooLarge,
        item,
        message,
    }
}

/// Where a format sits, for error messages: `items[0].formats.ws-message`, or
/// `items[0].ws-message` for a legacy format given directly on the item.
#[derive(Clone, Copy)]
struct FormatLoc {
    item: usize,
    name: FormatName,
    legacy: bool,
}

impl fmt::Display for FormatLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let under = if self.legacy { "" } else { "formats." };
        write!(f, "items[{}].{under}{}", self.item, self.name.key())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FormatName {
    HttpResponse,
    HttpStream,
    WsMessage,
    MqttMessage,
}

impl FormatName {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "http-response" => Some(Self::HttpResponse),
            "http-stream" => Some(Self::HttpStream),
            "ws-message" => Some(Self::WsMessage),
            "mqtt-message" => Some(Self::MqttMessage),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::HttpResponse => "http-response",
            Self::HttpStream => "http-stream",
            Self::WsMessage => "ws-message",
            Self::MqttMessage => "mqtt-message",
        }
    }
}

/// A JSON object key, borrowed from the input unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CowStrVisitor).map(Key)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Any JSON value where a scalar is expected; arrays and objects are skipped, only their
/// kind is kept, so a wrong type can be reported by name.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Bool(bool),
    UInt(u64),
    NegInt(i64),
    Float,
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Bool(_) => "a boolean",
            Scalar::UInt(_) | Scalar::NegInt(_) => "an integer",
            Scalar::Float => "a non-integer number",
            Scalar::Null => "null",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Scalar::NegInt(v), Scalar::UInt))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// Implements the scalar `visit_*` methods of a container visitor as type errors, through the
/// visitor's own `wrong_type(self, got)`.
macro_rules! reject_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong_type("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong_type("an integer"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong_type("an integer"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong_type("a non-integer number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong_type("a string"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong_type("null"))
        }
    };
}

/// [`reject_scalars`] plus arrays, for visitors that want an object.
macro_rules! expect_object {
    ($de:lifetime) => {
        reject_scalars!();
        fn visit_seq<A: SeqAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_type("an array"))
        }
    };
}

/// [`reject_scalars`] plus objects, for visitors that want an array.
macro_rules! expect_array {
    ($de:lifetime) => {
        reject_scalars!();
        fn visit_map<A: MapAccess<$de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_type("an object"))
        }
    };
}

/// The string in `value`, or a type error at `path`.
fn expect_str<'de, E: de::Error>(
    ctx: &mut Ctx<'_>,
    value: Scalar<'de>,
    item: Option<usize>,
    path: fmt::Arguments<'_>,
) -> Result<Cow<'de, str>, E> {
    match value {
        Scalar::Str(s) => Ok(s),
        other => Err(ctx.reject(invalid(
            item,
            format!("{path}: expected a string, got {}", other.kind()),
        ))),
    }
}

/// Tracks which keys of one object were seen, to reject duplicates.
#[derive(Default)]
struct SeenKeys(u32);

impl SeenKeys {
    /// True the first time `bit` is marked.
    fn first(&mut self, bit: u32) -> bool {
        let fresh = self.0 & (1 << bit) == 0;
        self.0 |= 1 << bit;
        fresh
    }
}

fn duplicate(item: Option<usize>, at: fmt::Arguments<'_>, key: &str) -> PublishError {
    invalid(item, format!("{at}: duplicate key '{key}'"))
}

// ---------------------------------------------------------------------------------------------
// The body and the items array.

struct BodySeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_> {
    type Value = Vec<Item>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl BodySeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("body: expected a JSON object with an 'items' array, got {got}");
        self.ctx.reject(invalid(None, message))
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, '_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a publish body object")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let mut items = None;
        while let Some(Key(key)) = map.next_key()? {
            if key != "items" {
                map.next_value::<IgnoredAny>()?;
            } else if items.is_some() {
                return Err(ctx.reject(duplicate(None, format_args!("body"), "items")));
            } else {
                items = Some(map.next_value_seed(ItemsSeed { ctx: &mut *ctx })?);
            }
        }
        items.ok_or_else(|| {
            let message = "body: missing 'items' (expected {\"items\": [...]})".to_owned();
            ctx.reject(invalid(None, message))
        })
    }
}

struct ItemsSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_, '_> {
    type Value = Vec<Item>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ItemsSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("items: expected an array, got {got}");
        self.ctx.reject(invalid(None, message))
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_, '_> {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of publish items")
    }

    expect_array!('de);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.ctx;
        let max = ctx.limits.max_items;
        let mut items = Vec::with_capacity(ctx.items_hint);
        loop {
            if items.len() == max {
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    let message = format!("items: over the limit of {max} items");
                    return Err(ctx.reject(too_large(None, message)));
                }
                return Ok(items);
            }
            // The item is pushed by the seed itself: moving it out through serde's layers of
            // `Result`s costs more than parsing it.
            let seed = ItemSeed {
                ctx: &mut *ctx,
                index: items.len(),
                out: &mut items,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(items);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One item.

/// Parses one item and pushes it onto `out`.
struct ItemSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
    out: &'c mut Vec<Item>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ItemSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("items[{}]: expected an object, got {got}", self.index);
        self.ctx.reject(invalid(Some(self.index), message))
    }
}

const ITEM_CHANNEL: u32 = 0;
const ITEM_ID: u32 = 1;
const ITEM_PREV_ID: u32 = 2;
const ITEM_META: u32 = 3;
const ITEM_NO_SEQ: u32 = 4;
const ITEM_SIZE: u32 = 5;
const ITEM_FORMATS: u32 = 6;

impl<'de> Visitor<'de> for ItemSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a publish item object")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ItemSeed { ctx, index, out } = self;
        let item = Some(index);
        let limits = ctx.limits;
        let mut seen = SeenKeys::default();
        let mut channel = None;
        let mut id = None;
        let mut prev_id = None;
        let mut meta = Vec::new();
        let mut no_seq = false;
        let mut formats = Formats::default();
        let mut has_formats = false;
        let mut legacy = Formats::default();

        while let Some(Key(key)) = map.next_key()? {
            let bit = match key.as_ref() {
                "channel" => ITEM_CHANNEL,
                "id" => ITEM_ID,
                "prev-id" => ITEM_PREV_ID,
                "meta" => ITEM_META,
                "no-seq" => ITEM_NO_SEQ,
                "size" => ITEM_SIZE,
                "formats" => ITEM_FORMATS,
                other => {
                    match FormatName::from_key(other) {
                        // Legacy form: formats directly on the item, used only without `formats`.
                        Some(name) if !has_formats => {
                            if slot_taken(&legacy, name) {
                                let at = format_args!("items[{index}]");
                                return Err(ctx.reject(duplicate(item, at, other)));
                            }
                            let loc = FormatLoc {
                                item: index,
                                name,
                                legacy: true,
                            };
                            map.next_value_seed(FormatSeed {
                                ctx: &mut *ctx,
                                loc,
                                out: &mut legacy,
                            })?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    continue;
                }
            };
            if !seen.first(bit) {
                return Err(ctx.reject(duplicate(item, format_args!("items[{index}]"), &key)));
            }
            match bit {
                ITEM_CHANNEL => {
                    let path = format_args!("items[{index}].channel");
                    let value = expect_str(ctx, map.next_value()?, item, path)?;
                    check_name(&value, limits.max_channel_bytes, item, path)
                        .map_err(|e| ctx.reject(e))?;
                    channel = Some(value.into_owned());
                }
                ITEM_ID | ITEM_PREV_ID => {
                    let path = format_args!("items[{index}].{key}");
                    let value = expect_str(ctx, map.next_value()?, item, path)?;
                    let slot = if bit == ITEM_ID {
                        &mut id
                    } else {
                        &mut prev_id
                    };
                    // An empty id means no id, as in Pushpin.
                    if !value.is_empty() {
                        check_name(&value, limits.max_id_bytes, item, path)
                            .map_err(|e| ctx.reject(e))?;
                        *slot = Some(value.into_owned());
                    }
                }
                ITEM_META => {
                    meta = map.next_value_seed(MetaSeed {
                        ctx: &mut *ctx,
                        index,
                    })?
                }
                ITEM_NO_SEQ => match map.next_value()? {
                    Scalar::Bool(b) => no_seq = b,
                    other => {
                        let message = format!(
                            "items[{index}].no-seq: expected a boolean, got {}",
                            other.kind()
                        );
                        return Err(ctx.reject(invalid(item, message)));
                    }
                },
                ITEM_SIZE => match map.next_value()? {
                    // Pushpin uses `size` only for statistics; it is checked and dropped.
                    Scalar::UInt(_) => {}
                    Scalar::NegInt(_) => {
                        let message = format!("items[{index}].size: must not be negative");
                        return Err(ctx.reject(invalid(item, message)));
                    }
                    other => {
                        let message = format!(
                            "items[{index}].size: expected a non-negative integer, got {}",
                            other.kind()
                        );
                        return Err(ctx.reject(invalid(item, message)));
                    }
                },
                _ => {
                    has_formats = true;
                    map.next_value_seed(FormatsSeed {
                        ctx: &mut *ctx,
                        index,
                        out: &mut formats,
                    })?;
                }
            }
        }

        let Some(channel) = channel else {
            let message = format!("items[{index}]: missing 'channel'");
            return Err(ctx.reject(invalid(item, message)));
        };
        let formats = if has_formats { formats } else { legacy };
        if formats.is_empty() {
            let message = format!(
                "items[{index}]: no formats; give at least one of 'http-response', \
                 'http-stream', 'ws-message' or 'mqtt-message' in 'formats'"
            );
            return Err(ctx.reject(invalid(item, message)));
        }
        out.push(Item {
            channel,
            id,
            prev_id,
            meta,
            no_seq,
            formats,
        });
        Ok(())
    }
}

/// Checks a channel or id: non-empty, at most `max` bytes, no control characters.
fn check_name(
    value: &str,
    max: usize,
    item: Option<usize>,
    path: fmt::Arguments<'_>,
) -> Result<(), PublishError> {
    if value.is_empty() {
        return Err(invalid(item, format!("{path}: must not be empty")));
    }
    if value.len() > max {
        let len = value.len();
        return Err(invalid(
            item,
            format!("{path}: {len} bytes, over the limit of {max}"),
        ));
    }
    // Control characters are C0 (< 0x20), DEL, and C1 (encoded as 0xC2 0x80..=0x9F), so
    // only a string holding one of those bytes needs decoding.
    let maybe_control = value.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
    if !maybe_control {
        return Ok(());
    }
    match value.chars().find(|c| c.is_control()) {
        Some(c) => {
            let message = format!("{path}: contains control character U+{:04X}", u32::from(c));
            Err(invalid(item, message))
        }
        None => Ok(()),
    }
}

struct MetaSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for MetaSeed<'_, '_> {
    type Value = Vec<(String, String)>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl MetaSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("items[{}].meta: expected an object, got {got}", self.index);
        self.ctx.reject(invalid(Some(self.index), message))
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_, '_> {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let MetaSeed { ctx, index } = self;
        let item = Some(index);
        let mut meta: Vec<(String, String)> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            let path = format_args!("items[{index}].meta[{key:?}]");
            let value = expect_str(ctx, map.next_value()?, item, path)?;
            let problem = if meta.len() == MAX_META_ENTRIES {
                Some(format!(
                    "items[{index}].meta: more than {MAX_META_ENTRIES} entries"
                ))
            } else if meta.iter().any(|(k, _)| *k == key) {
                Some(format!("items[{index}].meta: duplicate key {key:?}"))
            } else if key.len() > MAX_META_KEY_BYTES {
                Some(format!(
                    "{path}: key over the limit of {MAX_META_KEY_BYTES} bytes"
                ))
            } else if value.len() > MAX_META_VALUE_BYTES {
                Some(format!(
                    "{path}: value over the limit of {MAX_META_VALUE_BYTES} bytes"
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ctx.reject(invalid(item, message)));
            }
            meta.push((key.into_owned(), value.into_owned()));
        }
        Ok(meta)
    }
}

// ---------------------------------------------------------------------------------------------
// Formats.

fn slot_taken(formats: &Formats, name: FormatName) -> bool {
    match name {
        FormatName::HttpResponse => formats.http_response.is_some(),
        FormatName::HttpStream => formats.http_stream.is_some(),
        FormatName::WsMessage => formats.ws_message.is_some(),
        FormatName::MqttMessage => formats.mqtt_message.is_some(),
    }
}

/// One parsed format, before it is put in its slot of [`Formats`].
enum ParsedFormat {
    HttpResponse(HttpResponseFormat),
    HttpStream(HttpStreamFormat),
    WsMessage(WsMessageFormat),
    MqttMessage(MqttMessageFormat),
}

fn store_format(formats: &mut Formats, format: ParsedFormat) {
    match format {
        ParsedFormat::HttpResponse(f) => formats.http_response = Some(f),
        ParsedFormat::HttpStream(f) => formats.http_stream = Some(f),
        ParsedFormat::WsMessage(f) => formats.ws_message = Some(f),
        ParsedFormat::MqttMessage(f) => formats.mqtt_message = Some(f),
    }
}

/// Parses an item's `formats` object into `out`.
struct FormatsSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    index: usize,
    out: &'c mut Formats,
}

impl<'de> DeserializeSeed<'de> for FormatsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FormatsSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!(
            "items[{}].formats: expected an object, got {got}",
            self.index
        );
        self.ctx.reject(invalid(Some(self.index), message))
    }
}

impl<'de> Visitor<'de> for FormatsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of formats")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let FormatsSeed { ctx, index, out } = self;
        while let Some(Key(key)) = map.next_key()? {
            let Some(name) = FormatName::from_key(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if slot_taken(out, name) {
                let at = format_args!("items[{index}].formats");
                return Err(ctx.reject(duplicate(Some(index), at, &key)));
            }
            let loc = FormatLoc {
                item: index,
                name,
                legacy: false,
            };
            map.next_value_seed(FormatSeed {
                ctx: &mut *ctx,
                loc,
                out: &mut *out,
            })?;
        }
        Ok(())
    }
}

// The per-format visitors live in child modules so they share this module's private helpers
// and macros.
mod content;
mod format;
mod mqtt;
use format::FormatSeed;
