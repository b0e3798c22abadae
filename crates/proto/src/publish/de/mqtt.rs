//! The `mqtt-message` format object and its `properties` (the JSON is in
//! `publish/mqtt.rs`): fields gathered in one pass, each checked as it is read against MQTT's
//! rules (topic names, 2-byte string lengths, no NUL, at most [`MAX_META_ENTRIES`] user
//! properties), the content against the content limit. Unknown keys are ignored and a
//! repeated key is an error, as in the other formats.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::content::payload;
use super::{duplicate, expect_str, invalid, Ctx, FormatLoc, Key, Scalar, SeenKeys};
use crate::publish::mqtt::{mqtt_topic_problem, string_problem};
use crate::publish::{
    MqttMessageFormat, MqttProperties, PublishError, MAX_META_ENTRIES, MAX_MQTT_STRING_BYTES,
};

const CONTENT: u32 = 0;
const CONTENT_BIN: u32 = 1;
const TOPIC: u32 = 2;
const QOS: u32 = 3;
const RETAIN: u32 = 4;
const PROPERTIES: u32 = 5;

/// Reads the rest of an `mqtt-message` object whose first key has not been read yet.
pub(super) fn visit<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx<'_>,
    loc: FormatLoc,
    mut map: A,
) -> Result<MqttMessageFormat, A::Error> {
    let item = Some(loc.item);
    let mut seen = SeenKeys::default();
    let (mut content, mut content_bin) = (None, None);
    let mut format = MqttMessageFormat::default();
    while let Some(Key(key)) = map.next_key()? {
        let bit = match key.as_ref() {
            "content" => CONTENT,
            "content-bin" => CONTENT_BIN,
            "topic" => TOPIC,
            "qos" => QOS,
            "retain" => RETAIN,
            "properties" => PROPERTIES,
            _ => {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
        };
        if !seen.first(bit) {
            return Err(ctx.reject(duplicate(item, format_args!("{loc}"), &key)));
        }
        let path = format_args!("{loc}.{key}");
        match bit {
            CONTENT => content = Some(expect_str(ctx, map.next_value()?, item, path)?),
            CONTENT_BIN => content_bin = Some(expect_str(ctx, map.next_value()?, item, path)?),
            TOPIC => {
                let topic = expect_str(ctx, map.next_value()?, item, path)?;
                if let Some(why) = mqtt_topic_problem(&topic) {
                    return Err(ctx.reject(invalid(item, format!("{path}: {why}"))));
                }
                format.topic = Some(topic.into_owned());
            }
            QOS => {
                format.qos = Some(match map.next_value()? {
                    Scalar::UInt(0) => 0,
                    Scalar::UInt(1 | 2) => 1,
                    other => {
                        let got = scalar_text(&other);
                        let message = format!("{path}: expected 0, 1 or 2, got {got}");
                        return Err(ctx.reject(invalid(item, message)));
                    }
                })
            }
            RETAIN => match map.next_value()? {
                Scalar::Bool(b) => format.retain = b,
                other => {
                    let message = format!("{path}: expected a boolean, got {}", other.kind());
                    return Err(ctx.reject(invalid(item, message)));
                }
            },
            _ => {
                format.properties = map.next_value_seed(PropsSeed {
                    ctx: &mut *ctx,
                    loc,
                })?
            }
        }
    }
    let max = ctx.limits.max_content_bytes;
    match payload(loc, max, content, "content", content_bin, "content-bin") {
        Ok(Some(p)) => {
            if format.properties.payload_utf8 == Some(true)
                && std::str::from_utf8(&p.bytes).is_err()
            {
                let message = format!(
                    "{loc}.{}: properties.payload-format 1 says UTF-8, but the content is not",
                    p.field
                );
                return Err(ctx.reject(invalid(item, message)));
            }
            format.content = p.bytes;
        }
        Ok(None) => {
            let message = format!("{loc}: needs 'content' or 'content-bin'");
            return Err(ctx.reject(invalid(item, message)));
        }
        Err(e) => return Err(ctx.reject(e)),
    }
    Ok(format)
}

/// The `properties` object.
struct PropsSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
    loc: FormatLoc,
}

impl<'de> DeserializeSeed<'de> for PropsSeed<'_, '_> {
    type Value = MqttProperties;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl PropsSeed<'_, '_> {
    fn wrong_type<E: de::Error>(self, got: &str) -> E {
        let message = format!("{}.properties: expected an object, got {got}", self.loc);
        self.ctx.reject(invalid(Some(self.loc.item), message))
    }
}

const CONTENT_TYPE: u32 = 0;
const PAYLOAD_FORMAT: u32 = 1;
const MESSAGE_EXPIRY: u32 = 2;
const RESPONSE_TOPIC: u32 = 3;
const CORRELATION: u32 = 4;
const CORRELATION_BIN: u32 = 5;
const USER: u32 = 6;

impl<'de> Visitor<'de> for PropsSeed<'_, '_> {
    type Value = MqttProperties;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MQTT properties")
    }

    expect_object!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let PropsSeed { ctx, loc } = self;
        let item = Some(loc.item);
        let mut seen = SeenKeys::default();
        let mut props = MqttProperties::default();
        let (mut correlation, mut correlation_bin) = (None, None);
        while let Some(Key(key)) = map.next_key()? {
            let bit = match key.as_ref() {
                "content-type" => CONTENT_TYPE,
                "payload-format" => PAYLOAD_FORMAT,
                "message-expiry" => MESSAGE_EXPIRY,
                "response-topic" => RESPONSE_TOPIC,
                "correlation-data" => CORRELATION,
                "correlation-data-bin" => CORRELATION_BIN,
                "user" => USER,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if !seen.first(bit) {
                let at = format_args!("{loc}.properties");
                return Err(ctx.reject(duplicate(item, at, &key)));
            }
            let path = format_args!("{loc}.properties.{key}");
            let problem = match bit {
                CONTENT_TYPE | RESPONSE_TOPIC => {
                    let text = expect_str(ctx, map.next_value()?, item, path)?;
                    let why = if bit == CONTENT_TYPE {
                        string_problem(&text)
                    } else {
                        mqtt_topic_problem(&text)
                    };
                    let slot = if bit == CONTENT_TYPE {
                        &mut props.content_type
                    } else {
                        &mut props.response_topic
                    };
                    *slot = Some(text.into_owned());
                    why
                }
                PAYLOAD_FORMAT => match map.next_value()? {
                    Scalar::UInt(n @ (0 | 1)) => {
                        props.payload_utf8 = Some(n == 1);
                        None
                    }
                    other => Some(format!("expected 0 or 1, got {}", scalar_text(&other))),
                },
                MESSAGE_EXPIRY => match map.next_value()? {
                    Scalar::UInt(n) => match u32::try_from(n) {
                        Ok(n) => {
                            props.message_expiry = Some(n);
                            None
                        }
                        Err(_) => Some(format!("{n} is over the limit of {}", u32::MAX)),
                    },
                    other => Some(format!(
                        "expected a number of seconds, got {}",
                        scalar_text(&other)
                    )),
                },
                CORRELATION | CORRELATION_BIN => {
                    let text = expect_str(ctx, map.next_value()?, item, path)?;
                    if bit == CORRELATION {
                        correlation = Some(text);
                    } else {
                        correlation_bin = Some(text);
                    }
                    None
                }
                _ => {
                    props.user =
                        user_pairs(map.next_value::<Value>()?, loc).map_err(|e| ctx.reject(e))?;
                    None
                }
            };
            if let Some(why) = problem {
                return Err(ctx.reject(invalid(item, format!("{path}: {why}"))));
            }
        }
        props.correlation_data = payload(
            loc,
            MAX_MQTT_STRING_BYTES,
            correlation,
            "properties.correlation-data",
            correlation_bin,
            "properties.correlation-data-bin",
        )
        .map_err(|e| ctx.reject(e))?
        .map(|p| p.bytes);
        Ok(props)
    }
}

/// A scalar for an error message: a number as itself, anything else by its kind.
fn scalar_text(value: &Scalar<'_>) -> String {
    match value {
        Scalar::UInt(n) => n.to_string(),
        Scalar::NegInt(n) => n.to_string(),
        other => other.kind().to_owned(),
    }
}

/// `user`: an array of `[name, value]` string pairs.
fn user_pairs(value: Value, loc: FormatLoc) -> Result<Vec<(String, String)>, PublishError> {
    let item = Some(loc.item);
    let Value::Array(entries) = value else {
        let message = format!(
            "{loc}.properties.user: expected an array of [name, value] pairs, got {}",
            value_kind(&value)
        );
        return Err(invalid(item, message));
    };
    if entries.len() > MAX_META_ENTRIES {
        let message = format!("{loc}.properties.user: more than {MAX_META_ENTRIES} properties");
        return Err(invalid(item, message));
    }
    let mut pairs = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let path = format!("{loc}.properties.user[{i}]");
        let pair = match entry {
            Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                Ok([Value::String(name), Value::String(value)]) => Some((name, value)),
                _ => None,
            },
            _ => None,
        };
        let Some((name, value)) = pair else {
            let message = format!("{path}: expected a [name, value] pair of strings");
            return Err(invalid(item, message));
        };
        if let Some(why) = string_problem(&name).or_else(|| string_problem(&value)) {
            return Err(invalid(item, format!("{path}: {why}")));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
