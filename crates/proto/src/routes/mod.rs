//! Pushpin's routes file: the one-rule-per-line syntax that says which origin serves which
//! request, parsed into typed [`Route`]s, and the [`RouteTable`] that picks a route for a
//! request on the hot path.
//!
//! A line is `<condition> <target> [<target> ...]`. Sections are separated by spaces or tabs;
//! each section is `value[,option[=value]]*`; `"..."` quotes a stretch of text (spaces, commas,
//! `#` and `=` lose their meaning inside; `\\` and `\"` are the only escapes); `#` outside quotes
//! starts a comment. A section whose first item contains `=` has an empty value and that item
//! is an option (so `id=api,proto=ws backend:80` is a route with no host).
//!
//! Invariants: every parsed route has at least one target; an [`HostMatch::Exact`] host is
//! ASCII lower-case and has no port or IPv6 brackets; `replace_beg` is only set together with
//! `path_beg`; header names are valid HTTP header names and header values hold no control
//! characters. Input size is bounded by [`MAX_LINE_LEN`] per line and [`MAX_ROUTES`] per file,
//! which also bounds the number of targets, headers and subscriptions a route can carry.
//!
//! Matching follows Pushpin: if any route names the request's host, only those routes are
//! candidates (they shadow `*` even when none of them matches the path); otherwise the `*`
//! routes are. Among candidates that match, an explicit `proto` wins, then the longer
//! `path_beg`, then an explicit `ssl`, then the route listed first. (Pushpin compares
//! candidates pairwise in file order, so a later `ssl=` route can beat an earlier longer
//! `path_beg`; Gripway applies the documented order strictly, independent of line order.)

use std::borrow::Cow;

mod host;
mod lexer;
mod parse;
mod table;

pub use parse::{parse_route_line, parse_routes};
pub use table::RouteTable;

/// Longest routes line accepted, in bytes.
pub const MAX_LINE_LEN: usize = 16 * 1024;
/// Most routes one routes file may hold.
pub const MAX_ROUTES: usize = 10_000;
/// Longest host name accepted in a condition or target (the DNS limit, with room for a dot).
pub const MAX_HOST_LEN: usize = 255;

/// Which request hosts a route's condition names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `*`: any host not named by an exact-host route.
    Any,
    /// One host name: ASCII lower-case, without port or IPv6 brackets.
    Exact(String),
    /// No host at all: the route is only reachable by its `id=` (e.g. via `Pushpin-Route`).
    Unnamed,
}

/// The protocol of a request, and of a route's `proto=` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteProto {
    /// Plain HTTP requests (`proto=http`).
    Http,
    /// WebSocket upgrades (`proto=ws`).
    Ws,
}

/// One rule of a routes file: a condition with its options, and the targets to proxy to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// 1-based line in its source (file line, or the `--route` argument's position).
    pub line: usize,
    /// `id=`: an explicit route id (per-route stats, selection by `Pushpin-Route`).
    pub id: Option<String>,
    /// The condition's host.
    pub host: HostMatch,
    /// `path_beg=`: the request path must start with this (never empty).
    pub path_beg: Option<String>,
    /// `proto=http|ws`: the request protocol must be this.
    pub proto: Option<RouteProto>,
    /// `ssl=yes|no`: the request must (or must not) have arrived over TLS.
    pub ssl: Option<bool>,
    /// `prefix=`: channel-name prefix ("" if none).
    pub prefix: String,
    /// `replace_beg=`: replaces the `path_beg` prefix of the path sent to the origin.
    pub replace_beg: Option<String>,
    /// `path_rem=`: number of leading path bytes to drop before sending to the origin.
    pub path_rem: Option<usize>,
    /// `as_host=`: rewrite the request URL's host (`host[:port]`) before proxying.
    pub as_host: Option<String>,
    /// `sig_iss=`: Grip-Sig issuer for this route (the global one when `None`).
    pub sig_iss: Option<String>,
    /// `sig_key=`: the raw key spec (plain / `base64:...` / `file:...`), resolved elsewhere.
    pub sig_key: Option<String>,
    /// `header=Name:Value`, in order; an empty value means "remove the header".
    pub headers: Vec<(String, String)>,
    /// `aco`: automatic CORS headers (reference §5.3).
    pub aco: bool,
    /// `no_grip`: proxy without GRIP processing.
    pub no_grip: bool,
    /// `debug`: debug mode (error details in responses).
    pub debug: bool,
    /// `orig_headers`: mark the original request headers for the origin.
    pub orig_headers: bool,
    /// `sse_id`: write an SSE `id:` line from the item id into published `http-stream`
    /// content that has none (so `Last-Event-ID` names items without publisher help).
    pub sse_id: bool,
    /// `no_recover`: do not recover missed items from history for `Last-Event-ID` (for an
    /// origin that answers it itself); `prev-id` recovery is unaffected.
    pub no_recover: bool,
    /// `log_level=`: the most verbose log level for this route (0 error … 3 debug, 4+ trace).
    pub log_level: Option<u8>,
    /// Pushpin options accepted but not implemented (`session`, `sockjs`, `jsonp_*`,
    /// `ipc_file_mode`, ...), each named once, for a start-up warning.
    pub ignored: Vec<String>,
    /// Where to proxy, in failover order; never empty for a parsed route.
    pub targets: Vec<Target>,
}

/// What a target connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// An origin at `host:port` (or `[v6]:port`); `host` is stored without brackets.
    Addr {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port, 1 to 65535.
        port: u16,
    },
    /// The built-in demo origin, Pushpin's `test` target.
    Test,
}

/// One origin a route can proxy to, with its connection options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Address (or the built-in test origin).
    pub kind: TargetKind,
    /// `ssl`: connect with TLS (https / wss).
    pub ssl: bool,
    /// `insecure`: do not verify the origin's certificate.
    pub insecure: bool,
    /// `untrusted`: treat the origin as untrusted (apply outbound policies).
    pub untrusted: bool,
    /// `trust_connect_host`: verify the certificate against the connect host, not `host=`.
    pub trust_connect_host: bool,
    /// `host=`: Host header / TLS name override (`host[:port]`).
    pub host: Option<String>,
    /// `sub=`: channels every connection through this target is subscribed to.
    pub subs: Vec<String>,
    /// `over_http`: speak WebSocket-over-HTTP to this origin.
    pub over_http: bool,
    /// `one_event`: at most one WebSocket event per WebSocket-over-HTTP request.
    pub one_event: bool,
}

/// A routes line that cannot be used, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RoutesError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the option or value at fault.
    pub message: String,
}

impl Route {
    /// Whether this route's `proto`, `ssl` and `path_beg` conditions accept a request (the
    /// host is the table's business). `path` is the request path as received, without query.
    pub fn matches(&self, path: &str, proto: RouteProto, ssl: bool) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && self.ssl.is_none_or(|s| s == ssl)
            && self
                .path_beg
                .as_deref()
                .is_none_or(|beg| path.starts_with(beg))
    }

    /// The path to send to the origin: `path_rem` bytes dropped, or with `replace_beg` the
    /// `path_beg` prefix replaced (as in Pushpin, `replace_beg` takes precedence over
    /// `path_rem`); the query is kept. A rewritten path always starts with `/`. Borrows the
    /// input when nothing is inserted.
    pub fn origin_path<'a>(&self, path_and_query: &'a str) -> Cow<'a, str> {
        let (remove, insert) = match &self.replace_beg {
            Some(replacement) => (
                self.path_beg.as_ref().map_or(0, String::len),
                replacement.as_str(),
            ),
            None => (self.path_rem.unwrap_or(0), ""),
        };
        if remove == 0 && insert.is_empty() {
            return Cow::Borrowed(path_and_query);
        }
        let path_len = path_and_query.find('?').unwrap_or(path_and_query.len());
        let (path, query) = path_and_query.split_at(path_len);
        let rest_start = first_char_boundary_from(path, remove);
        let rest = path.get(rest_start..).unwrap_or("");
        let needs_slash = if insert.is_empty() {
            !rest.starts_with('/')
        } else {
            !insert.starts_with('/')
        };
        if insert.is_empty() && !needs_slash {
            // rest and query are contiguous in the input.
            return Cow::Borrowed(path_and_query.get(rest_start..).unwrap_or(""));
        }
        let mut out = String::with_capacity(1 + insert.len() + rest.len() + query.len());
        if needs_slash {
            out.push('/');
        }
        out.push_str(insert);
        out.push_str(rest);
        out.push_str(query);
        Cow::Owned(out)
    }
}

/// The smallest char boundary of `s` at or after `at` (`s.len()` when `at` is past the end).
fn first_char_boundary_from(s: &str, at: usize) -> usize {
    (at..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(line: &str) -> Route {
        match parse_route_line(line, 1) {
            Ok(Some(r)) => r,
            other => panic!("{line:?} did not parse: {other:?}"),
        }
    }

    #[test]
    fn origin_path_unchanged_borrows() {
        let r = route("* a:80");
        assert!(matches!(r.origin_path("/x?y=1"), Cow::Borrowed("/x?y=1")));
    }

    #[test]
    fn origin_path_path_rem_keeps_query_and_borrows() {
        let r = route("*,path_beg=/api,path_rem=4 a:80");
        assert!(matches!(
            r.origin_path("/api/items?q=1"),
            Cow::Borrowed("/items?q=1")
        ));
        assert_eq!(r.origin_path("/api?q=1"), "/?q=1");
        assert_eq!(r.origin_path("/api"), "/");
        assert_eq!(r.origin_path("/apixyz"), "/xyz");
        assert_eq!(r.origin_path("/a"), "/");
    }

    #[test]
    fn origin_path_replace_beg() {
        let r = route("*,path_beg=/stream,replace_beg=/v2/stream a:80");
        assert_eq!(r.origin_path("/stream/x?since=5"), "/v2/stream/x?since=5");
        assert_eq!(r.origin_path("/stream"), "/v2/stream");
        let r = route("*,path_beg=/api/,replace_beg=/ a:80");
        assert_eq!(r.origin_path("/api/x?q"), "/x?q");
        let r = route("*,path_beg=/api,replace_beg= a:80");
        assert_eq!(r.origin_path("/api/x"), "/x");
        assert_eq!(r.origin_path("/api?q"), "/?q");
        let r = route("*,path_beg=/api,replace_beg=v1 a:80");
        assert_eq!(r.origin_path("/api/x"), "/v1/x");
    }

    #[test]
    fn origin_path_replace_beg_overrides_path_rem() {
        let r = route("*,path_beg=/api,path_rem=1,replace_beg=/b a:80");
        assert_eq!(r.origin_path("/api/x"), "/b/x");
    }

    #[test]
    fn origin_path_never_splits_a_character() {
        let r = route("*,path_rem=2 a:80");
        assert_eq!(r.origin_path("/é/x"), "/x");
        assert_eq!(r.origin_path("/éa"), "/a");
    }

    #[test]
    fn matches_checks_each_condition() {
        let r = route("*,proto=ws,ssl=yes,path_beg=/ws a:80");
        assert!(r.matches("/ws/1", RouteProto::Ws, true));
        assert!(!r.matches("/ws/1", RouteProto::Http, true));
        assert!(!r.matches("/ws/1", RouteProto::Ws, false));
        assert!(!r.matches("/w", RouteProto::Ws, true));
    }

    #[test]
    fn error_display_names_the_line() {
        let err = RoutesError {
            line: 7,
            message: "boom".into(),
        };
        assert_eq!(err.to_string(), "line 7: boom");
    }

    proptest! {
        #[test]
        fn origin_path_never_panics(rem in 0usize..40, beg in "[/a-zé]{1,6}", rep in proptest::option::of("[/a-z]{0,6}"), input in "\\PC{0,30}") {
            let mut r = route("* a:80");
            r.path_rem = Some(rem);
            r.path_beg = Some(beg);
            r.replace_beg = rep;
            let out = r.origin_path(&input);
            if r.replace_beg.is_some() || rem > 0 {
                prop_assert!(out.starts_with('/'));
            }
        }
    }
}
