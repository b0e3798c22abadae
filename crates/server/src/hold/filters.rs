//! Filters on a subscription (`Grip-Channel: c; filter=skip-self`), checked per message
//! against the publisher's `meta` (reference §1.9):
//!
//! - `skip-self`: skip messages whose `sender` is this subscriber's `user` meta;
//! - `skip-users`: skip messages whose comma-separated `skip_users` names this `user`;
//! - `require-sub`: skip unless this connection is also subscribed to the `require_sub` channel;
//! - `var-subst` and `build-id` transform the content per subscriber ([`content_filter`]).
//!
//! A published format that names `content-filters` reaches only subscriptions whose content
//! filters are that list, in that order (Pushpin ends an HTTP session on a mismatch; Gripway
//! skips the message for it). A content filter that cannot render a message drops it for
//! that subscriber, counted as the publisher's `filter-error` (Pushpin ends the stream or
//! answers 502). A connection without filters pays one branch; one whose channel has no
//! content filter keeps the message's shared, encoded-once bytes.
//!
//! [`content_filter`]: super::content_filter

use std::sync::Arc;

use bytes::Bytes;
use gripway_broker::Message;
use parking_lot::Mutex;

use super::content_filter::{self, FilterError};
use crate::error::Source;
use crate::metrics::Metrics;

const SKIP_SELF: u8 = 1;
const SKIP_USERS: u8 = 2;
const REQUIRE_SUB: u8 = 4;
const BUILD_ID: u8 = 8;
const VAR_SUBST: u8 = 16;
/// `var-subst` was named before `build-id` (the content filters run in the order named).
const VAR_SUBST_FIRST: u8 = 32;

/// The filters of one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FilterSet(u8);

impl FilterSet {
    /// The filters named (unknown names are ignored, as in Pushpin).
    pub(crate) fn from_names(names: &[String]) -> FilterSet {
        let mut bits = 0;
        for n in names {
            bits |= match n.as_str() {
                "skip-self" => SKIP_SELF,
                "skip-users" => SKIP_USERS,
                "require-sub" => REQUIRE_SUB,
                "build-id" => BUILD_ID,
                "var-subst" if bits & BUILD_ID == 0 => VAR_SUBST | VAR_SUBST_FIRST,
                "var-subst" => VAR_SUBST,
                _ => 0,
            };
        }
        if bits & BUILD_ID == 0 {
            bits &= !VAR_SUBST_FIRST;
        }
        FilterSet(bits)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if a content filter transforms what this subscription gets.
    pub(crate) fn transforms(self) -> bool {
        self.0 & (BUILD_ID | VAR_SUBST) != 0
    }

    pub(crate) fn builds_id(self) -> bool {
        self.0 & BUILD_ID != 0
    }

    /// The content filters, in the order they run (what a format's `content-filters` must
    /// equal).
    pub(crate) fn content_names(self) -> &'static [&'static str] {
        match (self.0 & BUILD_ID != 0, self.0 & VAR_SUBST != 0) {
            (false, false) => &[],
            (true, false) => &["build-id"],
            (false, true) => &["var-subst"],
            (true, true) if self.0 & VAR_SUBST_FIRST != 0 => &["var-subst", "build-id"],
            (true, true) => &["build-id", "var-subst"],
        }
    }
}

/// What content filters need: the whole subscription meta, and per channel the prev-id
/// that `build-id` renders ids from, advancing with each item delivered. Boxed: only
/// connections with a content filter have one.
struct ContentState {
    meta: Vec<(String, String)>,
    /// Per channel of [`Filters::channels`], its current prev-id (kept only if some channel
    /// builds ids).
    prev_ids: Option<Mutex<Vec<Option<Arc<str>>>>>,
    metrics: Arc<Metrics>,
}

/// A connection's filters: per channel, with the subscription meta they read.
pub(crate) struct Filters {
    /// The subscriber's `user` meta.
    user: Option<String>,
    /// (channel, filters) for every channel of the connection.
    channels: Vec<(String, FilterSet)>,
    content: Option<Box<ContentState>>,
}

/// How a message reaches a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Not at all.
    No,
    /// As it was published: the shared, encoded-once bytes.
    Shared,
    /// Through [`Filters::transform`], per subscriber.
    Transformed,
}

impl Filters {
    /// None when no channel has a filter (the common case: nothing to check per message).
    /// `prev_ids` are the origin's (channel, prev-id) pairs; `metrics` counts filter errors.
    pub(crate) fn new(
        channels: &[(String, FilterSet)],
        meta: &[(String, String)],
        prev_ids: &[(String, String)],
        metrics: &Arc<Metrics>,
    ) -> Option<Box<Filters>> {
        if channels.iter().all(|(_, f)| f.is_empty()) {
            return None;
        }
        let user = meta
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
            .filter(|u| !u.is_empty());
        let content = channels.iter().any(|(_, f)| f.transforms()).then(|| {
            let ids = channels.iter().any(|(_, f)| f.builds_id()).then(|| {
                Mutex::new(
                    channels
                        .iter()
                        .map(|(c, _)| {
                            let p = prev_ids.iter().find(|(pc, _)| pc == c);
                            p.map(|(_, id)| Arc::from(id.as_str()))
                        })
                        .collect(),
                )
            });
            Box::new(ContentState {
                meta: meta.to_vec(),
                prev_ids: ids,
                metrics: metrics.clone(),
            })
        });
        Some(Box::new(Filters {
            user,
            channels: channels.to_vec(),
            content,
        }))
    }

    fn set(&self, channel: &str) -> (usize, FilterSet) {
        self.channels
            .iter()
            .enumerate()
            .find(|(_, (c, _))| c == channel)
            .map_or((usize::MAX, FilterSet::default()), |(i, (_, f))| (i, *f))
    }

    /// True if `msg`, published on `channel`, may go to this connection.
    #[cfg(test)]
    pub(crate) fn pass(&self, channel: &str, msg: &Message) -> bool {
        self.pass_set(self.set(channel).1, msg)
    }

    fn pass_set(&self, set: FilterSet, msg: &Message) -> bool {
        if set.0 & SKIP_SELF != 0 {
            if let (Some(user), Some(sender)) = (&self.user, msg.meta_value("sender")) {
                if user == sender {
                    return false;
                }
            }
        }
        if set.0 & SKIP_USERS != 0 {
            if let (Some(user), Some(list)) = (&self.user, msg.meta_value("skip_users")) {
                if list.split(',').any(|u| u.trim() == user) {
                    return false;
                }
            }
        }
        if set.0 & REQUIRE_SUB != 0 {
            if let Some(required) = msg.meta_value("require_sub") {
                if !self.channels.iter().any(|(c, _)| c == required) {
                    return false;
                }
            }
        }
        true
    }

    /// Decides for a message on `channel` whose format names `content_filters`; a channel's
    /// prev-id advances to the message's id first, as Pushpin's does.
    fn admit(&self, channel: &str, content_filters: &[String], msg: &Message) -> Admit {
        let (index, set) = self.set(channel);
        if let Some(ids) = self.content.as_ref().and_then(|c| c.prev_ids.as_ref()) {
            if let Some(slot) = ids.lock().get_mut(index) {
                if slot.is_some() {
                    *slot = msg.id().map(Arc::from);
                }
            }
        }
        if !content_filters.is_empty() && !same_list(content_filters, set.content_names()) {
            return Admit::No;
        }
        if !self.pass_set(set, msg) {
            return Admit::No;
        }
        if set.transforms() {
            Admit::Transformed
        } else {
            Admit::Shared
        }
    }

    /// `content` as the content filters of `channel` render it for this subscriber; None
    /// (counted, logged) when a filter cannot render it: the message is dropped.
    pub(crate) fn transform(&self, channel: &str, content: &[u8]) -> Option<Bytes> {
        let content_state = self.content.as_deref()?;
        match self.render(channel, content) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                content_state
                    .metrics
                    .count_error(Source::Publisher, "filter-error");
                crate::warn_limited!(
                    "filter-error",
                    channel,
                    "message dropped for a subscriber: filter error: {e}"
                );
                None
            }
        }
    }

    fn render(&self, channel: &str, content: &[u8]) -> Result<Vec<u8>, FilterError> {
        let set = self.set(channel).1;
        let state = self.content.as_deref().ok_or("no content state")?;
        let mut out = content.to_vec();
        for name in set.content_names() {
            out = if *name == "var-subst" {
                content_filter::var_subst(&out, &state.meta)?
            } else {
                let ids = state.prev_ids.as_ref().map(|m| m.lock().clone());
                let ids = ids.unwrap_or_default();
                let (id, hex) = id_settings(&state.meta, &self.channels, &ids)?;
                content_filter::build_id(&out, id.as_ref().map(|i| i.as_deref()), hex)?
            };
        }
        Ok(out)
    }
}

/// The id `build-id` renders (from the meta `id_format` over the channels' prev-ids: an
/// error there matters only to a `%I`, unlike Pushpin, which drops the message) and whether
/// it is hex-encoded (the meta `id_encoding`). A missing `id_format` is an error at once.
type IdSettings = (Result<Option<Vec<u8>>, FilterError>, bool);

fn id_settings(
    meta: &[(String, String)],
    channels: &[(String, FilterSet)],
    prev_ids: &[Option<Arc<str>>],
) -> Result<IdSettings, FilterError> {
    let value = |name: &str| {
        meta.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let format = value("id_format").ok_or("no sub meta 'id_format'")?;
    let hex = match value("id_encoding") {
        None => false,
        Some("hex") => true,
        Some(other) => return Err(format!("unsupported id_encoding '{other}'")),
    };
    let vars = channels
        .iter()
        .zip(prev_ids.iter().chain(std::iter::repeat(&None)))
        .map(|((c, _), p)| (c.as_str(), p.as_deref()));
    Ok((content_filter::render_id(format, vars), hex))
}

/// The initial response body of a hold through `build-id`, if any channel has it (Pushpin
/// applies it to a stream's first body; here `%I` renders from the origin's prev-ids).
pub(crate) fn initial_body(
    channels: &[(String, FilterSet)],
    meta: &[(String, String)],
    prev_ids: &[(String, String)],
    body: &Bytes,
) -> Result<Option<Bytes>, FilterError> {
    if body.is_empty() || !channels.iter().any(|(_, f)| f.builds_id()) {
        return Ok(None);
    }
    let ids: Vec<Option<Arc<str>>> = channels
        .iter()
        .map(|(c, _)| {
            let p = prev_ids.iter().find(|(pc, _)| pc == c);
            p.map(|(_, id)| Arc::from(id.as_str()))
        })
        .collect();
    let (id, hex) = id_settings(meta, channels, &ids)?;
    let out = content_filter::build_id(body, id.as_ref().map(|i| i.as_deref()), hex)?;
    Ok(Some(Bytes::from(out)))
}

fn same_list(a: &[String], b: &[&str]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// How a message (published on `channel`, with a format carrying `content_filters`) reaches
/// a connection with `filters`.
pub(crate) fn admit(
    filters: Option<&Filters>,
    content_filters: &[String],
    channel: &str,
    msg: &Message,
) -> Admit {
    match filters {
        None if content_filters.is_empty() => Admit::Shared,
        // the subscription has no content filter: a list naming any does not match
        None => Admit::No,
        Some(f) => f.admit(channel, content_filters, msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::publish::{Formats, Item};

    fn msg(meta: &[(&str, &str)]) -> std::sync::Arc<Message> {
        msg_id(meta, None)
    }

    fn msg_id(meta: &[(&str, &str)], id: Option<&str>) -> std::sync::Arc<Message> {
        Message::new(Item {
            channel: "a".into(),
            id: id.map(Into::into),
            prev_id: None,
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            no_seq: false,
            formats: Formats::default(),
        })
    }

    fn metrics() -> Arc<Metrics> {
        Metrics::new(gripway_broker::Broker::start(Default::default()))
    }

    fn names(n: &[&str]) -> FilterSet {
        FilterSet::from_names(&n.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn filters_as_documented() {
        let metrics = metrics();
        assert!(Filters::new(&[("a".into(), names(&["unknown"]))], &[], &[], &metrics).is_none());
        let f = Filters::new(
            &[
                (
                    "a".into(),
                    names(&["skip-self", "skip-users", "require-sub"]),
                ),
                ("b".into(), FilterSet::default()),
            ],
            &[("user".into(), "alice".into())],
            &[],
            &metrics,
        )
        .unwrap();
        assert!(!f.pass("a", &msg(&[("sender", "alice")])));
        assert!(f.pass("a", &msg(&[("sender", "bob")])));
        assert!(f.pass("b", &msg(&[("sender", "alice")])), "no filter on b");
        assert!(!f.pass("a", &msg(&[("skip_users", "bob, alice")])));
        assert!(f.pass("a", &msg(&[("skip_users", "bob")])));
        assert!(f.pass("a", &msg(&[("require_sub", "b")])));
        assert!(!f.pass("a", &msg(&[("require_sub", "c")])));
    }

    #[test]
    fn content_filter_lists_keep_their_order() {
        assert_eq!(names(&["var-subst"]).content_names(), ["var-subst"]);
        assert_eq!(
            names(&["build-id", "skip-self", "var-subst"]).content_names(),
            ["build-id", "var-subst"]
        );
        assert_eq!(
            names(&["var-subst", "build-id"]).content_names(),
            ["var-subst", "build-id"]
        );
        assert!(names(&["skip-self"]).content_names().is_empty());
    }

    #[tokio::test]
    async fn content_filters_transform_per_subscriber() {
        let metrics = metrics();
        let cf = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = Filters::new(
            &[
                ("a".into(), names(&["build-id", "var-subst"])),
                ("b".into(), FilterSet::default()),
                ("c".into(), names(&["skip-self"])),
            ],
            &[
                ("id_format".into(), "%(a)s/%(b)s".into()),
                ("n".into(), "N".into()),
            ],
            &[("a".into(), "5".into()), ("b".into(), "x".into())],
            &metrics,
        )
        .unwrap();
        let m = msg_id(&[], Some("6"));
        assert_eq!(admit(Some(&f), &[], "a", &m), Admit::Transformed);
        let out = f.transform("a", b"%I %%(n)s").unwrap();
        assert_eq!(&out[..], b"6/x N", "a advanced to 6 before rendering");
        assert_eq!(
            admit(Some(&f), &[], "b", &msg_id(&[], Some("y"))),
            Admit::Shared
        );
        assert_eq!(&f.transform("a", b"%I").unwrap()[..], b"6/y");
        assert_eq!(
            admit(Some(&f), &cf(&["build-id", "var-subst"]), "a", &m),
            Admit::Transformed
        );
        assert_eq!(
            admit(Some(&f), &cf(&["var-subst", "build-id"]), "a", &m),
            Admit::No
        );
        assert_eq!(admit(Some(&f), &cf(&["build-id"]), "a", &m), Admit::No);
        assert_eq!(admit(Some(&f), &cf(&["var-subst"]), "c", &m), Admit::No);
        assert_eq!(admit(Some(&f), &[], "c", &m), Admit::Shared);
        assert_eq!(admit(None, &cf(&["var-subst"]), "c", &m), Admit::No);
        assert_eq!(admit(None, &[], "c", &m), Admit::Shared);
        assert!(f.transform("a", b"%(nope)s").is_none(), "dropped");
        // an item without an id ends the channel's prev-id: ids render no more
        admit(Some(&f), &[], "a", &msg_id(&[], None));
        assert!(f.transform("a", b"%I").is_none());
        assert_eq!(
            &f.transform("a", b"%(lit)I").unwrap()[..],
            b"lit",
            "no %I: no id needed"
        );
    }

    #[tokio::test]
    async fn initial_body_renders_from_the_origins_prev_ids() {
        let chans = [("a".to_string(), names(&["build-id"]))];
        let meta = [
            ("id_format".to_string(), "<%(a)s>".to_string()),
            ("id_encoding".to_string(), "hex".to_string()),
        ];
        let body = Bytes::from_static(b"open %I %(z)I\n");
        let got = initial_body(&chans, &meta, &[("a".into(), "5".into())], &body).unwrap();
        assert_eq!(&got.unwrap()[..], b"open 3c353e 7a\n");
        assert!(
            initial_body(&chans, &meta, &[], &body).is_err(),
            "a has no prev-id"
        );
        let lit = Bytes::from_static(b"%(z)I");
        assert_eq!(
            &initial_body(&chans, &meta, &[], &lit).unwrap().unwrap()[..],
            b"7a"
        );
        assert!(
            initial_body(&chans, &[], &[], &lit).is_err(),
            "no id_format"
        );
        let plain = [("a".to_string(), names(&["var-subst"]))];
        assert!(initial_body(&plain, &meta, &[], &body).unwrap().is_none());
    }
}
