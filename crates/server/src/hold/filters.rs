//! Delivery filters on a subscription (`Grip-Channel: c; filter=skip-self`), checked per
//! message against the publisher's `meta`:
//!
//! - `skip-self`: skip messages whose `sender` is this subscriber's `user` meta;
//! - `skip-users`: skip messages whose comma-separated `skip_users` names this `user`;
//! - `require-sub`: skip unless this connection is also subscribed to the `require_sub` channel.
//!
//! Content-transforming filters (`build-id`, `var-subst`, HTTP filters) are not implemented:
//! a message that asks for `content-filters` matches no subscription and is skipped, as
//! Pushpin does when the lists differ. A connection without filters pays one branch.

use gripway_broker::Message;

const SKIP_SELF: u8 = 1;
const SKIP_USERS: u8 = 2;
const REQUIRE_SUB: u8 = 4;

/// The delivery filters of one subscription.
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
                _ => 0,
            };
        }
        FilterSet(bits)
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A connection's filters: per channel, with the subscription meta they read.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// The subscriber's `user` meta.
    user: Option<String>,
    /// (channel, filters) for every channel of the connection.
    channels: Vec<(String, FilterSet)>,
}

impl Filters {
    /// None when no channel has a filter (the common case: nothing to check per message).
    pub(crate) fn new(
        channels: &[(String, FilterSet)],
        meta: &[(String, String)],
    ) -> Option<Box<Filters>> {
        if channels.iter().all(|(_, f)| f.is_empty()) {
            return None;
        }
        let user = meta
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
            .filter(|u| !u.is_empty());
        Some(Box::new(Filters {
            user,
            channels: channels.to_vec(),
        }))
    }

    /// True if `msg`, published on `channel`, may go to this connection.
    pub(crate) fn pass(&self, channel: &str, msg: &Message) -> bool {
        let set = self
            .channels
            .iter()
            .find(|(c, _)| c == channel)
            .map_or(FilterSet::default(), |(_, f)| *f);
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
}

/// True if a message (published on `channel`, with a format carrying `content_filters`)
/// may go to a connection with `filters`. Content filters are not implemented, so a
/// message asking for any matches no subscription.
pub(crate) fn admits(
    filters: Option<&Filters>,
    content_filters: &[String],
    channel: &str,
    msg: &Message,
) -> bool {
    content_filters.is_empty() && filters.is_none_or(|f| f.pass(channel, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gripway_proto::publish::{Formats, Item};

    fn msg(meta: &[(&str, &str)]) -> std::sync::Arc<Message> {
        Message::new(Item {
            channel: "a".into(),
            id: None,
            prev_id: None,
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            no_seq: false,
            formats: Formats::default(),
        })
    }

    #[test]
    fn filters_as_documented() {
        let names = |n: &[&str]| {
            FilterSet::from_names(&n.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert!(Filters::new(&[("a".into(), names(&["unknown"]))], &[]).is_none());
        let f = Filters::new(
            &[
                (
                    "a".into(),
                    names(&["skip-self", "skip-users", "require-sub"]),
                ),
                ("b".into(), FilterSet::default()),
            ],
            &[("user".into(), "alice".into())],
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
}
