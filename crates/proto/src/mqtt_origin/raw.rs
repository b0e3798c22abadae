//! The first pass of reading an answer (see `answer`): serde, driven by the request's event
//! kinds, reads each result of a connect, subscribe or publish into a raw struct whose fields
//! are all optional, skips the results of notifications and any past the last event without
//! keeping them, and caps every list while reading it, so what it allocates is bounded by the
//! body and those caps. It checks JSON types, integer ranges, unknown and repeated fields;
//! everything else is the second pass's.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{AnswerLimits, EventKind, MAX_CHANNELS_PER_FILTER, MAX_REPLIES};

/// Most entries a subscribe result's `filters` may have while being read (a SUBSCRIBE the
/// server asks about has at most its `max_subscriptions`, far fewer); the count must then
/// equal the event's.
const MAX_FILTERS_READ: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawResult {
    pub(super) allow: Option<bool>,
    pub(super) reason: Option<String>,
    pub(super) message: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) keep_alive: Option<u16>,
    pub(super) session_expiry: Option<u32>,
    pub(super) will: Option<Value>,
    #[serde(default, deserialize_with = "capped::<_, RawFilter, MAX_FILTERS_READ>")]
    pub(super) filters: Option<Vec<RawFilter>>,
    pub(super) channel: Option<String>,
    pub(super) id: Option<String>,
    pub(super) publish: Option<bool>,
    #[serde(default, deserialize_with = "capped::<_, RawReply, MAX_REPLIES>")]
    pub(super) reply: Option<Vec<RawReply>>,
    pub(super) formats: Option<Value>,
}

impl RawResult {
    /// The names of the fields that are present, in declaration order.
    pub(super) fn present(&self) -> impl Iterator<Item = &'static str> {
        [
            ("allow", self.allow.is_some()),
            ("reason", self.reason.is_some()),
            ("message", self.message.is_some()),
            ("client-id", self.client_id.is_some()),
            ("keep-alive", self.keep_alive.is_some()),
            ("session-expiry", self.session_expiry.is_some()),
            ("will", self.will.is_some()),
            ("filters", self.filters.is_some()),
            ("channel", self.channel.is_some()),
            ("id", self.id.is_some()),
            ("publish", self.publish.is_some()),
            ("reply", self.reply.is_some()),
            ("formats", self.formats.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) allow: Option<bool>,
    #[serde(
        default,
        deserialize_with = "capped::<_, String, MAX_CHANNELS_PER_FILTER>"
    )]
    pub(super) channels: Option<Vec<String>>,
    pub(super) qos: Option<u8>,
    pub(super) topic: Option<String>,
    pub(super) reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawReply {
    pub(super) topic: Option<String>,
    pub(super) content: Option<String>,
    pub(super) content_bin: Option<String>,
    pub(super) qos: Option<u8>,
}

/// An optional list of at most `N` entries, refused while reading the `N + 1`th.
fn capped<'de, D, T, const N: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Capped<T, N> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {N} entries")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(de::Error::custom(format!("more than {N} entries")));
                }
                out.push(item);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Capped::<T, N>(PhantomData))
}

pub(super) enum Slot {
    Ignored,
    Result(Box<RawResult>),
}

pub(super) struct RawAnswer {
    /// The slots read, and how many results the answer had in all.
    pub(super) results: Option<(Vec<Slot>, usize)>,
    /// The meta entries read (at most the limit), and how many there were in all.
    pub(super) meta: (Vec<(String, String)>, usize),
}

pub(super) struct AnswerSeed<'k, 'a, 'l> {
    pub(super) events: &'k [EventKind<'a>],
    pub(super) limits: &'l AnswerLimits,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_, '_, '_> {
    type Value = RawAnswer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawAnswer, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_, '_, '_> {
    type Value = RawAnswer;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an answer object {\"results\": [...], \"meta\": {...}}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAnswer, A::Error> {
        let mut answer = RawAnswer {
            results: None,
            meta: (Vec::new(), 0),
        };
        let mut seen_meta = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "results" if answer.results.is_none() => {
                    answer.results = Some(map.next_value_seed(ResultsSeed(self.events))?);
                }
                "meta" if !seen_meta => {
                    seen_meta = true;
                    answer.meta = map.next_value_seed(MetaSeed(self.limits.max_meta_entries))?;
                }
                "results" | "meta" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                other => {
                    return Err(de::Error::unknown_field(other, &["results", "meta"]));
                }
            }
        }
        Ok(answer)
    }
}

pub(super) struct ResultsSeed<'k, 'a>(&'k [EventKind<'a>]);

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_, '_> {
    type Value = (Vec<Slot>, usize);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_, '_> {
    type Value = (Vec<Slot>, usize);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of results, one per event")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut slots = Vec::with_capacity(self.0.len());
        let mut count = 0;
        loop {
            let more = match self.0.get(count) {
                Some(kind) if !kind.is_notification() => seq
                    .next_element::<RawResult>()?
                    .map(|r| slots.push(Slot::Result(Box::new(r)))),
                // notifications' results, and any past the last event, are read and dropped
                Some(_) => seq
                    .next_element::<IgnoredAny>()?
                    .map(|_| slots.push(Slot::Ignored)),
                None => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                return Ok((slots, count));
            }
            count += 1;
        }
    }
}

/// Reads up to `.0` meta entries, and counts (without keeping) any beyond.
pub(super) struct MetaSeed(usize);

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = (Vec<(String, String)>, usize);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed {
    type Value = (Vec<(String, String)>, usize);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut count = 0;
        while let Some(name) = map.next_key::<String>()? {
            let value: String = map.next_value()?;
            if count < self.0 {
                out.push((name, value));
            }
            count += 1;
        }
        Ok((out, count))
    }
}
