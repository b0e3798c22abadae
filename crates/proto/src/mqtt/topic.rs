//! MQTT topic names and topic filters as the specifications define them (3.1.1 §4.7, 5.0 §4.7
//! and §4.8.2): which strings are valid names and filters, whether a filter matches a topic
//! (`+` one level, `#` the rest including the parent level, and no wildcard first level
//! matching a topic that starts with `$`), and the `$share/{group}/{filter}` form of a shared
//! subscription. Pure functions on `&str`; matching walks both strings once and never
//! allocates, since it runs per delivered message (docs/mqtt-design.md §4.6, §4.7).

/// The longest topic name or filter MQTT can carry (a 2-byte length prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// The prefix of a shared subscription's filter (MQTT 5.0 §4.8.2).
const SHARE_PREFIX: &str = "$share/";

/// Whether `name` can be a PUBLISH topic name: 1 to 65,535 bytes, no `+`, `#` or NUL. Empty
/// levels (`a//b`, `/a`, `/`) are allowed. A v5 PUBLISH may carry an empty name with a topic
/// alias; that is the caller's case, not a valid name.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_BYTES
        && !name.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// Whether `filter` is a syntactically valid topic filter: 1 to 65,535 bytes, no NUL, `+` only
/// as a whole level, `#` only as a whole last level. Empty levels are allowed. A filter that
/// starts with `$share/` is valid here when its text is; check it with [`parse_shared`] for the
/// shared form's own rules.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_BYTES || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "+" => {}
            "#" if levels.peek().is_none() => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// Whether `filter` contains a wildcard (`+` or `#`). For a valid filter, a filter without one
/// matches exactly the topic equal to it.
pub fn has_wildcards(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether the valid `filter` matches the valid topic name `topic`, by the specifications'
/// rules: levels are compared exactly (case-sensitive, empty levels included), `+` matches any
/// one level, `#` matches any number of levels including none (so `sport/#` matches `sport`),
/// and a filter whose first level is a wildcard does not match a topic starting with `$`. For a
/// shared subscription, pass the inner filter. Invalid input never panics; a misplaced
/// wildcard simply compares as text.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Whether `filter` names a shared subscription (starts with `$share/`). Such a filter is
/// either parsed by [`parse_shared`] or refused as malformed, never used as a plain filter.
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

/// A shared subscription's parts: `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared<'a> {
    /// The share name: non-empty, without `/`, `+` or `#`.
    pub group: &'a str,
    /// The topic filter the group subscribes to, itself a valid filter.
    pub filter: &'a str,
}

/// Splits `$share/{group}/{filter}`. `None` when `filter` is not a shared subscription, or is
/// one that the specification calls malformed: an empty group, a group with `+` or `#`, or a
/// missing or invalid inner filter (`$share/g`, `$share/g/`, `$share/g/a#`).
pub fn parse_shared(filter: &str) -> Option<Shared<'_>> {
    if filter.len() > MAX_TOPIC_BYTES || filter.contains('\0') {
        return None;
    }
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || !valid_filter(inner) {
        return None;
    }
    Some(Shared {
        group,
        filter: inner,
    })
}

#[cfg(test)]
#[path = "topic_tests.rs"]
mod tests;
