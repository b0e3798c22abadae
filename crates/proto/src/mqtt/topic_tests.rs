//! Tests of the topic rules: the examples of MQTT 3.1.1 §4.7 and 5.0 §4.7 / §4.8.2, edge cases
//! (empty levels, `$` topics, lengths, NUL), and a property test of `matches` against a plain
//! level-by-level reference.

use proptest::prelude::*;

use super::*;

#[test]
fn spec_multi_level_wildcard() {
    // 3.1.1 §4.7.1.2 / 5.0 §4.7.1.2
    let f = "sport/tennis/player1/#";
    assert!(valid_filter(f));
    for t in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        assert!(matches(f, t), "{t}");
    }
    assert!(!matches(f, "sport/tennis/player2"));
    assert!(!matches(f, "sport/tennis"));
    // "sport/#" also matches the singular "sport": # includes the parent level
    assert!(matches("sport/#", "sport"));
    assert!(matches("sport/#", "sport/"));
    assert!(valid_filter("#"));
    assert!(matches("#", "sport/tennis"));
    assert!(matches("#", "/"));
    assert!(valid_filter("sport/tennis/#"));
    assert!(!valid_filter("sport/tennis#"));
    assert!(!valid_filter("sport/tennis/#/ranking"));
}

#[test]
fn spec_single_level_wildcard() {
    // 3.1.1 §4.7.1.3 / 5.0 §4.7.1.3
    let f = "sport/tennis/+";
    assert!(matches(f, "sport/tennis/player1"));
    assert!(matches(f, "sport/tennis/player2"));
    assert!(!matches(f, "sport/tennis/player1/ranking"));
    assert!(!matches("sport/+", "sport"));
    assert!(matches("sport/+", "sport/"));
    for f in ["+", "+/tennis/#", "sport/+/player1"] {
        assert!(valid_filter(f), "{f}");
    }
    assert!(!valid_filter("sport+"));
    assert!(matches("+/+", "/finance"));
    assert!(matches("/+", "/finance"));
    assert!(!matches("+", "/finance"));
    assert!(matches("sport/+/player1", "sport/tennis/player1"));
    assert!(matches("sport/+/player1", "sport//player1"));
    assert!(!matches("sport/+/player1", "sport/tennis/player2"));
}

#[test]
fn spec_topics_beginning_with_dollar() {
    // 3.1.1 §4.7.2 / 5.0 §4.7.2
    assert!(!matches("#", "$SYS/monitor/Clients"));
    assert!(!matches("#", "$SYS"));
    assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!matches("+", "$SYS"));
    assert!(!matches("+/#", "$SYS/a"));
    assert!(matches("$SYS/#", "$SYS/"));
    assert!(matches("$SYS/#", "$SYS"));
    assert!(matches("$SYS/#", "$SYS/broker/load"));
    assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    // only the first level counts: a $ deeper in the topic is ordinary
    assert!(matches("#", "a/$SYS"));
    assert!(matches("a/+", "a/$x"));
}

#[test]
fn spec_topic_semantics() {
    // 3.1.1 §4.7.3 / 5.0 §4.7.3: case-sensitive, spaces allowed, "/" alone valid, leading
    // "/" makes a distinct topic, NUL never allowed, at least one character
    assert!(!matches("ACCOUNTS", "Accounts"));
    assert!(matches("Accounts payable", "Accounts payable"));
    assert!(valid_topic_name("Accounts payable"));
    assert!(valid_topic_name("/"));
    assert!(valid_filter("/"));
    assert!(matches("/", "/"));
    assert!(!matches("/finance", "finance"));
    assert!(!matches("finance", "/finance"));
    assert!(!valid_topic_name(""));
    assert!(!valid_filter(""));
    assert!(!valid_topic_name("a\0b"));
    assert!(!valid_filter("a/\0"));
}

#[test]
fn topic_names() {
    for ok in [
        "a",
        "a/b",
        "a//b",
        "/a/",
        "//",
        "$SYS/x",
        "sport/tennis/player1",
        "é/€/𝄞",
    ] {
        assert!(valid_topic_name(ok), "{ok}");
        assert!(valid_filter(ok), "{ok}");
        assert!(!has_wildcards(ok), "{ok}");
        // a name without wildcards matches exactly itself
        assert!(matches(ok, ok), "{ok}");
    }
    for bad in ["+", "#", "a/+", "a/#", "a+", "a#b", "\0"] {
        assert!(!valid_topic_name(bad), "{bad}");
    }
    let longest = "x".repeat(MAX_TOPIC_BYTES);
    assert!(valid_topic_name(&longest));
    assert!(valid_filter(&longest));
    let too_long = "x".repeat(MAX_TOPIC_BYTES + 1);
    assert!(!valid_topic_name(&too_long));
    assert!(!valid_filter(&too_long));
}

#[test]
fn filters() {
    for ok in [
        "#", "+", "+/+", "/+", "+/", "a/+/b", "a/#", "+/#", "//#", "a//+", "$SYS/#", "$share",
    ] {
        assert!(valid_filter(ok), "{ok}");
    }
    for bad in [
        "a+", "+a", "a/b+", "a/+b", "##", "#/", "#/a", "a/#/", "a/#b", "a/b#", "++", "+#",
    ] {
        assert!(!valid_filter(bad), "{bad}");
    }
    assert!(has_wildcards("a/+"));
    assert!(has_wildcards("#"));
    assert!(!has_wildcards("a/b"));
}

#[test]
fn matching_edges() {
    assert!(matches("+", "a"));
    assert!(!matches("+", "a/b"));
    assert!(matches("+/+", "a/"));
    assert!(matches("+/+", "/"));
    assert!(!matches("+/+", "a"));
    assert!(matches("a/+/#", "a/b"));
    assert!(matches("a/+/#", "a/b/c/d"));
    assert!(!matches("a/+/#", "a"));
    assert!(matches("a//#", "a/"));
    assert!(matches("a//#", "a//b"));
    assert!(!matches("a//#", "a/b"));
    assert!(!matches("a/b", "a/b/"));
    assert!(!matches("a/b/", "a/b"));
    assert!(!matches("a/b", "a"));
    assert!(!matches("a", "a/b"));
    // invalid input compares as text and never panics
    assert!(matches("a#", "a#"));
    assert!(!matches("a#", "a/b"));
    assert!(!matches("", "a"));
    assert!(matches("", ""));
}

#[test]
fn spec_shared_subscriptions() {
    // 5.0 §4.8.2
    let s = parse_shared("$share/consumer1/sport/tennis/+").unwrap();
    assert_eq!(
        s,
        Shared {
            group: "consumer1",
            filter: "sport/tennis/+"
        }
    );
    assert!(matches(s.filter, "sport/tennis/player1"));
    assert_eq!(
        parse_shared("$share/consumer2/sport/tennis/+")
            .unwrap()
            .group,
        "consumer2"
    );
    // "$share/consumer1//finance" is the filter "/finance"
    assert_eq!(
        parse_shared("$share/consumer1//finance"),
        Some(Shared {
            group: "consumer1",
            filter: "/finance"
        })
    );
    assert_eq!(parse_shared("$share/g/#").unwrap().filter, "#");
    assert_eq!(parse_shared("$share/g/+").unwrap().filter, "+");
    assert_eq!(parse_shared("$share/g/$SYS/#").unwrap().filter, "$SYS/#");
    assert_eq!(parse_shared("$share/é/a").unwrap().group, "é");
    for bad in [
        "$share/",
        "$share//a",
        "$share/g",
        "$share/g/",
        "$share/+/a",
        "$share/#/a",
        "$share/g+/a",
        "$share/#",
        "$share/g/a#",
        "$share/g/a/#/b",
        "$share/g/\0",
    ] {
        assert!(is_shared(bad), "{bad}");
        assert_eq!(parse_shared(bad), None, "{bad}");
    }
    // not shared at all
    for plain in [
        "sport/tennis",
        "$share",
        "$SHARE/g/a",
        "share/g/a",
        "$sharex/g/a",
    ] {
        assert!(!is_shared(plain), "{plain}");
        assert_eq!(parse_shared(plain), None, "{plain}");
    }
    let long = format!("$share/g/{}", "x".repeat(MAX_TOPIC_BYTES));
    assert_eq!(parse_shared(&long), None);
}

/// The reference: split both into level lists and walk them with indexes.
fn reference(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    for (i, level) in f.iter().enumerate() {
        if *level == "#" && i == f.len() - 1 {
            return true;
        }
        if i >= t.len() || (*level != "+" && *level != t[i]) {
            return false;
        }
    }
    f.len() == t.len()
}

/// Names and filters are at least one character long.
fn non_empty(s: String) -> String {
    if s.is_empty() {
        "a".to_owned()
    } else {
        s
    }
}

/// Filters and topics over a tiny alphabet, so that they often share levels.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ab$]{1,2}"]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5).prop_map(|l| non_empty(l.join("/")))
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+".to_owned())], 1..5),
        any::<bool>(),
    )
        .prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".to_owned());
            }
            non_empty(l.join("/"))
        })
}

proptest! {
    #[test]
    fn matches_agrees_with_the_reference(f in filter(), t in topic()) {
        prop_assert!(valid_filter(&f), "{f}");
        prop_assert!(valid_topic_name(&t), "{t}");
        prop_assert_eq!(matches(&f, &t), reference(&f, &t), "{} {}", f, t);
        // the shared form has the same inner filter
        let shared = format!("$share/g/{f}");
        prop_assert_eq!(parse_shared(&shared).map(|s| s.filter), Some(f.as_str()));
    }

    #[test]
    fn arbitrary_strings_never_panic(f in "[a+#/$\0]{0,8}", t in "[a+#/$]{0,8}") {
        let _ = (valid_filter(&f), valid_topic_name(&t), has_wildcards(&f), parse_shared(&f));
        let _ = matches(&f, &t);
        // a valid wildcard-free filter matches exactly the equal topic
        if valid_filter(&f) && !has_wildcards(&f) && valid_topic_name(&t) {
            prop_assert_eq!(matches(&f, &t), f == t);
        }
    }
}
