//! The route table: picks the route for each request (the hot path) and finds routes by id.
//!
//! Invariants: built once and never mutated; each candidate list (per exact host, and for `*`)
//! is sorted by precedence (explicit `proto`, longer `path_beg`, explicit `ssl`, file order),
//! so a lookup returns the first candidate whose conditions match; no two kept routes share
//! host, proto, ssl and path_beg. Lookups do not allocate unless the request's host is longer
//! than [`MAX_HOST_LEN`] and contains upper-case letters.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::host::host_name;
use super::{HostMatch, Route, RouteProto, MAX_HOST_LEN};

/// The routes in effect, indexed for matching; immutable and cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Lower-case host name → indexes into `routes`, in precedence order.
    by_host: HashMap<String, Vec<usize>>,
    /// Indexes of the `*` routes, in precedence order.
    any_host: Vec<usize>,
    /// Route id → index, or `None` when several routes share the id (unusable, as in Pushpin).
    by_id: HashMap<String, Option<usize>>,
}

/// What makes two conditions duplicates: host, proto, ssl and path_beg.
type ConditionKey = (String, Option<RouteProto>, Option<bool>, Option<String>);

impl RouteTable {
    /// Builds the table. Routes whose condition repeats an earlier one (same host, proto,
    /// ssl and path_beg) are dropped, and ids used by more than one route become unusable;
    /// each case yields a warning naming the lines.
    pub fn new(routes: Vec<Route>) -> (RouteTable, Vec<String>) {
        let mut warnings = Vec::new();
        let mut kept: Vec<Route> = Vec::with_capacity(routes.len());
        let mut first_line: HashMap<ConditionKey, usize> = HashMap::new();
        for route in routes {
            let host = match &route.host {
                HostMatch::Any => Some(String::from("*")),
                HostMatch::Exact(name) => Some(name.to_ascii_lowercase()),
                HostMatch::Unnamed => None,
            };
            if let Some(host) = host {
                let key = (host, route.proto, route.ssl, route.path_beg.clone());
                match first_line.entry(key) {
                    Entry::Occupied(earlier) => {
                        warnings.push(format!(
                            "line {}: skipping duplicate condition (same host, proto, ssl and \
                             path_beg as line {})",
                            route.line,
                            earlier.get()
                        ));
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(route.line);
                    }
                }
            }
            kept.push(route);
        }

        let mut table = RouteTable::default();
        for (index, route) in kept.iter().enumerate() {
            match &route.host {
                HostMatch::Any => table.any_host.push(index),
                HostMatch::Exact(name) => table
                    .by_host
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(index),
                HostMatch::Unnamed => {}
            }
            if let Some(id) = &route.id {
                match table.by_id.entry(id.clone()) {
                    Entry::Vacant(slot) => {
                        slot.insert(Some(index));
                    }
                    Entry::Occupied(mut slot) => {
                        let earlier = slot.get().and_then(|i| kept.get(i)).map(|r| r.line);
                        if let Some(earlier) = earlier {
                            warnings.push(format!(
                                "line {}: route id \"{id}\" is also used at line {earlier}; \
                                 routes sharing an id cannot be selected by it",
                                route.line
                            ));
                        } else {
                            warnings.push(format!(
                                "line {}: route id \"{id}\" is used more than once; routes \
                                 sharing an id cannot be selected by it",
                                route.line
                            ));
                        }
                        slot.insert(None);
                    }
                }
            }
        }

        let precedence = |&index: &usize| {
            let route = kept.get(index);
            (
                route.is_none_or(|r| r.proto.is_none()),
                std::cmp::Reverse(
                    route
                        .and_then(|r| r.path_beg.as_ref())
                        .map_or(0, String::len),
                ),
                route.is_none_or(|r| r.ssl.is_none()),
            )
        };
        // Stable sorts: equal precedence keeps file order.
        table.any_host.sort_by_key(precedence);
        for candidates in table.by_host.values_mut() {
            candidates.sort_by_key(precedence);
        }
        table.routes = kept;
        (table, warnings)
    }

    /// The route for a request, or `None` (Pushpin answers 502 "Route not found").
    ///
    /// `host` is the Host header value as received (any case, optionally with `:port`,
    /// IPv6 in brackets); `path` is the request path as received (a `?query` is ignored).
    pub fn find(&self, host: &str, path: &str, proto: RouteProto, ssl: bool) -> Option<&Route> {
        let path = path.split_once('?').map_or(path, |(before, _)| before);
        self.candidates(host)
            .iter()
            .filter_map(|&index| self.routes.get(index))
            .find(|route| route.matches(path, proto, ssl))
    }

    /// The route with this `id=`, unless several routes share it.
    pub fn by_id(&self, id: &str) -> Option<&Route> {
        self.by_id
            .get(id)
            .copied()
            .flatten()
            .and_then(|index| self.routes.get(index))
    }

    /// Every route kept (duplicates dropped), in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether the table has no routes at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes to choose from for this Host value: the exact-host ones if there are any,
    /// otherwise the `*` ones.
    fn candidates(&self, host: &str) -> &[usize] {
        if self.by_host.is_empty() {
            return &self.any_host;
        }
        let name = host_name(host);
        let found = if !name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(name)
        } else if name.len() <= MAX_HOST_LEN {
            let mut buffer = [0u8; MAX_HOST_LEN];
            match buffer.get_mut(..name.len()) {
                Some(lowered) => {
                    lowered.copy_from_slice(name.as_bytes());
                    lowered.make_ascii_lowercase();
                    std::str::from_utf8(lowered)
                        .ok()
                        .and_then(|key| self.by_host.get(key))
                }
                None => None,
            }
        } else {
            self.by_host.get(&name.to_ascii_lowercase())
        };
        found.map_or(&self.any_host, Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::parse_routes;
    use proptest::prelude::*;

    fn table(text: &str) -> (RouteTable, Vec<String>) {
        RouteTable::new(parse_routes(text).expect("routes parse"))
    }

    /// The line of the route chosen, or 0 for none.
    fn pick(t: &RouteTable, host: &str, path: &str, proto: RouteProto, ssl: bool) -> usize {
        t.find(host, path, proto, ssl).map_or(0, |r| r.line)
    }

    const HTTP: RouteProto = RouteProto::Http;
    const WS: RouteProto = RouteProto::Ws;

    #[test]
    fn wildcard_when_no_host_named() {
        let (t, w) = table("* a:1\nother.example b:2");
        assert!(w.is_empty());
        assert_eq!(pick(&t, "example.com", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "OTHER.Example:443", "/", HTTP, true), 2);
    }

    #[test]
    fn exact_host_shadows_wildcard_even_without_path_match() {
        let (t, _) = table("* a:1\napi.example,path_beg=/v1 b:2");
        assert_eq!(pick(&t, "api.example", "/v1/x", HTTP, false), 2);
        assert_eq!(pick(&t, "api.example", "/v2/x", HTTP, false), 0);
        assert_eq!(pick(&t, "www.example", "/v2/x", HTTP, false), 1);
    }

    #[test]
    fn host_matching_is_case_insensitive_and_ignores_port() {
        let (t, _) = table("Api.Example.COM a:1\n[::1] b:2\n* c:3");
        assert_eq!(pick(&t, "api.example.com", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "API.EXAMPLE.COM:8443", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "[::1]:7999", "/", HTTP, false), 2);
        assert_eq!(pick(&t, "[::1]", "/", HTTP, false), 2);
        assert_eq!(pick(&t, "::1", "/", HTTP, false), 2);
        assert_eq!(pick(&t, "[::2]:80", "/", HTTP, false), 3);
        let long = "A".repeat(MAX_HOST_LEN + 10);
        assert_eq!(pick(&t, &long, "/", HTTP, false), 3);
    }

    #[test]
    fn longer_path_beg_wins_regardless_of_order() {
        for text in [
            "*,path_beg=/a x:1\n*,path_beg=/a/b y:2\n* z:3",
            "* z:3\n*,path_beg=/a/b y:2\n*,path_beg=/a x:1",
        ] {
            let (t, _) = table(text);
            let line_of = |beg: &str| {
                t.routes()
                    .iter()
                    .find(|r| r.path_beg.as_deref() == Some(beg))
                    .map(|r| r.line)
                    .unwrap()
            };
            let catch_all = t
                .routes()
                .iter()
                .find(|r| r.path_beg.is_none())
                .unwrap()
                .line;
            assert_eq!(pick(&t, "h", "/a/b/c", HTTP, false), line_of("/a/b"));
            assert_eq!(pick(&t, "h", "/a/c", HTTP, false), line_of("/a"));
            assert_eq!(pick(&t, "h", "/q", HTTP, false), catch_all);
        }
    }

    #[test]
    fn explicit_proto_beats_longer_path() {
        let (t, _) = table("*,path_beg=/ws/chat a:1\n*,proto=ws b:2");
        assert_eq!(pick(&t, "h", "/ws/chat", WS, false), 2);
        assert_eq!(pick(&t, "h", "/ws/chat", HTTP, false), 1);
        assert_eq!(pick(&t, "h", "/other", HTTP, false), 0);
    }

    #[test]
    fn proto_must_match() {
        let (t, _) = table("*,proto=http a:1\n*,proto=ws b:2");
        assert_eq!(pick(&t, "h", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "h", "/", WS, false), 2);
    }

    #[test]
    fn explicit_ssl_breaks_path_ties_only() {
        let (t, _) = table("* a:1\n*,ssl=yes b:2\n*,ssl=no,path_beg=/x c:3\n*,path_beg=/x/y d:4");
        assert_eq!(pick(&t, "h", "/", HTTP, true), 2);
        assert_eq!(pick(&t, "h", "/", HTTP, false), 1);
        assert_eq!(pick(&t, "h", "/x", HTTP, false), 3);
        assert_eq!(pick(&t, "h", "/x", HTTP, true), 2);
        assert_eq!(pick(&t, "h", "/x/y", HTTP, false), 4);
        // Pushpin would let a later ssl= route win over an earlier longer path_beg; the
        // documented order (longer path_beg first) is applied regardless of line order.
        let (t, _) = table("*,path_beg=/api a:1\n*,ssl=yes b:2");
        assert_eq!(pick(&t, "h", "/api/x", HTTP, true), 1);
    }

    #[test]
    fn query_is_ignored_when_matching() {
        let (t, _) = table("*,path_beg=/a?b x:1\n*,path_beg=/a y:2");
        assert_eq!(pick(&t, "h", "/a?b=1", HTTP, false), 2);
    }

    #[test]
    fn unnamed_routes_match_only_by_id() {
        let (t, w) = table("id=hidden a:1\nid=shared b:2\n* c:3,sub=x\nh.example,id=shared d:4");
        assert_eq!(
            w,
            vec![
                "line 4: route id \"shared\" is also used at line 2; routes sharing an id \
                  cannot be selected by it"
            ]
        );
        assert_eq!(pick(&t, "anything", "/", HTTP, false), 3);
        assert_eq!(t.by_id("hidden").map(|r| r.line), Some(1));
        assert!(t.by_id("shared").is_none());
        assert!(t.by_id("nope").is_none());
        assert_eq!(t.routes().len(), 4);
    }

    #[test]
    fn id_used_three_times_warns_each_time() {
        let (t, w) = table("*,id=x a:1\n*,id=x,path_beg=/b b:2\n*,id=x,path_beg=/c c:3");
        assert_eq!(w.len(), 2);
        assert!(w[1].starts_with("line 3: route id \"x\" is used more than once"));
        assert!(t.by_id("x").is_none());
    }

    #[test]
    fn duplicate_conditions_are_skipped_with_a_warning() {
        let (t, w) = table(
            "*,path_beg=/a a:1\n*,path_beg=/a b:2\nH.example,ssl=yes c:3\nh.example,ssl=yes d:4\n\
             h.example,ssl=no e:5\n*,path_beg=/a,proto=ws f:6",
        );
        assert_eq!(
            w,
            vec![
                "line 2: skipping duplicate condition (same host, proto, ssl and path_beg as line 1)",
                "line 4: skipping duplicate condition (same host, proto, ssl and path_beg as line 3)",
            ]
        );
        assert_eq!(
            t.routes().iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 3, 5, 6]
        );
        assert_eq!(pick(&t, "x", "/a", HTTP, false), 1);
        assert_eq!(pick(&t, "h.example", "/", HTTP, true), 3);
    }

    #[test]
    fn empty_table_finds_nothing() {
        let (t, w) = RouteTable::new(Vec::new());
        assert!(w.is_empty() && t.is_empty());
        assert!(t.find("h", "/", HTTP, false).is_none());
    }

    proptest! {
        #[test]
        fn find_never_panics(host in "\\PC{0,300}", path in "\\PC{0,40}", ws: bool, ssl: bool) {
            let (t, _) = table("* a:1\n*,path_beg=/a,proto=ws b:2\nExample.com,ssl=yes c:3\n[::1] d:4\nid=z e:5");
            let proto = if ws { WS } else { HTTP };
            let _ = t.find(&host, &path, proto, ssl);
            let _ = t.by_id(&host);
        }

        #[test]
        fn wildcard_host_with_no_conditions_always_matches(host in "[a-zA-Z0-9.:\\[\\]-]{0,40}", path in "\\PC{0,40}") {
            let (t, _) = table("* a:1");
            prop_assert_eq!(pick(&t, &host, &path, HTTP, false), 1);
        }
    }
}
