//! Turns routes lines into [`Route`]s: interprets the condition and target options that the
//! lexer split out, validates every value, and reports the first problem with its line.
//!
//! Invariants of the output are those listed in the parent module. Options are matched
//! case-sensitively, as in Pushpin; a single-valued option given twice keeps the last value;
//! flags take no value (`aco=no` is an error rather than silently meaning "on").

use super::host::{check_host_name, check_ipv6, split_host_port};
use super::lexer::{split_line, LexError, RawOption, RawSection};
use super::{
    HostMatch, Route, RouteProto, RoutesError, Target, TargetKind, MAX_LINE_LEN, MAX_ROUTES,
};

/// Condition options Pushpin supports that Gripway accepts without acting on them.
const IGNORED_ROUTE_OPTIONS: &[&str] = &[
    "session",
    "sockjs",
    "sockjs_as_path",
    "jsonp_mode",
    "jsonp_cb",
    "jsonp_body",
    "jsonp_defcb",
    "jsonp_defmethod",
];

/// Target options Pushpin supports that Gripway accepts without acting on them.
const IGNORED_TARGET_OPTIONS: &[&str] = &["ipc_file_mode"];

/// Why one routes line cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Problem {
    #[error(transparent)]
    Lex(#[from] LexError),
    #[error("line is longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("control character U+{0:04X} in route")]
    ControlChar(u32),
    #[error("more than {MAX_ROUTES} routes")]
    TooManyRoutes,
    #[error("route has a condition but no target (e.g. `* localhost:8080`)")]
    NoTarget,
    #[error("a route with an empty host needs an id= option")]
    UnnamedWithoutId,
    #[error("invalid route host \"{host}\": {reason}")]
    BadRouteHost { host: String, reason: &'static str },
    #[error("unknown route option \"{0}\"")]
    UnknownRouteOption(String),
    #[error("unknown target option \"{0}\"")]
    UnknownTargetOption(String),
    #[error("option {name} takes no value (found \"{name}={value}\")")]
    FlagWithValue { name: String, value: String },
    #[error("{0} needs a non-empty value")]
    EmptyValue(&'static str),
    #[error("proto must be \"http\" or \"ws\", found \"{0}\"")]
    BadProto(String),
    #[error("ssl must be \"yes\" or \"no\", found \"{0}\"")]
    BadSsl(String),
    #[error("path_rem must be a non-negative integer, found \"{0}\"")]
    BadPathRem(String),
    #[error("log_level must be an integer from 0 to 255, found \"{0}\"")]
    BadLogLevel(String),
    #[error("replace_beg needs path_beg (it replaces the path_beg prefix)")]
    ReplaceBegWithoutPathBeg,
    #[error("header must be written header=Name:Value, found \"header={0}\"")]
    HeaderFormat(String),
    #[error("\"{0}\" is not a valid HTTP header name")]
    BadHeaderName(String),
    #[error("value of header {0} contains a control character (such as CR or LF)")]
    BadHeaderValue(String),
    #[error("{option}=\"{value}\" is not a valid host[:port]: {reason}")]
    BadAuthority {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("ZeroMQ targets are not supported (\"{0}\"); use host:port")]
    ZmqTarget(String),
    #[error("target has options but no address (expected host:port, [ipv6]:port or test)")]
    EmptyTarget,
    #[error("target \"{0}\" has no port (expected host:port, [ipv6]:port or test)")]
    TargetNoPort(String),
    #[error("target \"{0}\" has an invalid port (expected 1 to 65535)")]
    TargetBadPort(String),
    #[error("target \"{target}\" has an invalid host: {reason}")]
    TargetBadHost {
        target: String,
        reason: &'static str,
    },
    #[error("target option {0} is not supported yet (TLS client certificates to the origin)")]
    ClientCertNotSupported(String),
}

/// Parses a whole routes file: one route per line, blank lines and `#` comments skipped, a
/// CR before each LF and a leading byte-order mark ignored. Stops at the first bad line.
pub fn parse_routes(text: &str) -> Result<Vec<Route>, RoutesError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut routes = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index.saturating_add(1);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(route) = parse_route_line(line, line_no)? {
            if routes.len() >= MAX_ROUTES {
                return Err(error_at(line_no, Problem::TooManyRoutes));
            }
            routes.push(route);
        }
    }
    Ok(routes)
}

/// Parses one routes line (from a file or a `--route` argument), numbering it `line_no`.
/// `Ok(None)` when the line is blank or only a comment.
pub fn parse_route_line(line: &str, line_no: usize) -> Result<Option<Route>, RoutesError> {
    route_from_line(line, line_no).map_err(|problem| error_at(line_no, problem))
}

fn error_at(line: usize, problem: Problem) -> RoutesError {
    RoutesError {
        line,
        message: problem.to_string(),
    }
}

fn route_from_line(line: &str, line_no: usize) -> Result<Option<Route>, Problem> {
    if line.len() > MAX_LINE_LEN {
        return Err(Problem::LineTooLong);
    }
    if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(Problem::ControlChar(u32::from(c)));
    }
    let sections = split_line(line)?;
    let Some((condition, targets)) = sections.split_first() else {
        return Ok(None);
    };
    if targets.is_empty() {
        return Err(Problem::NoTarget);
    }
    let mut route = parse_condition(condition, line_no)?;
    for section in targets {
        let target = parse_target(section, &mut route.ignored)?;
        route.targets.push(target);
    }
    Ok(Some(route))
}

fn parse_condition(section: &RawSection, line_no: usize) -> Result<Route, Problem> {
    let mut route = Route {
        line: line_no,
        id: None,
        host: parse_condition_host(&section.value)?,
        path_beg: None,
        proto: None,
        ssl: None,
        prefix: String::new(),
        replace_beg: None,
        path_rem: None,
        as_host: None,
        sig_iss: None,
        sig_key: None,
        headers: Vec::new(),
        aco: false,
        no_grip: false,
        debug: false,
        orig_headers: false,
        sse_id: false,
        no_recover: false,
        log_level: None,
        ignored: Vec::new(),
        targets: Vec::new(),
    };
    for option in &section.options {
        let value = option.value.as_deref().unwrap_or("");
        match option.name.as_str() {
            "proto" => {
                route.proto = Some(match value {
                    "http" => RouteProto::Http,
                    "ws" => RouteProto::Ws,
                    other => return Err(Problem::BadProto(other.to_owned())),
                });
            }
            "ssl" => {
                route.ssl = Some(match value {
                    "yes" => true,
                    "no" => false,
                    other => return Err(Problem::BadSsl(other.to_owned())),
                });
            }
            "path_beg" => route.path_beg = Some(non_empty("path_beg", value)?),
            "id" => route.id = Some(non_empty("id", value)?),
            "sig_iss" => route.sig_iss = optional(value),
            "sig_key" => route.sig_key = optional(value),
            "prefix" => route.prefix = value.to_owned(),
            "as_host" => {
                if !value.is_empty() {
                    check_authority("as_host", value)?;
                }
                route.as_host = optional(value);
            }
            "path_rem" => {
                route.path_rem = Some(
                    parse_decimal(value).ok_or_else(|| Problem::BadPathRem(value.to_owned()))?,
                );
            }
            "replace_beg" => route.replace_beg = Some(value.to_owned()),
            "header" => route.headers.push(parse_header(value)?),
            "log_level" => {
                let level = parse_decimal(value).and_then(|n| u8::try_from(n).ok());
                route.log_level =
                    Some(level.ok_or_else(|| Problem::BadLogLevel(value.to_owned()))?);
            }
            "aco" => route.aco = flag(option)?,
            "no_grip" => route.no_grip = flag(option)?,
            "debug" => route.debug = flag(option)?,
            "orig_headers" => route.orig_headers = flag(option)?,
            "sse_id" => route.sse_id = flag(option)?,
            "no_recover" => route.no_recover = flag(option)?,
            name if IGNORED_ROUTE_OPTIONS.contains(&name) => note_ignored(&mut route.ignored, name),
            name => return Err(Problem::UnknownRouteOption(name.to_owned())),
        }
    }
    if route.replace_beg.is_some() && route.path_beg.is_none() {
        return Err(Problem::ReplaceBegWithoutPathBeg);
    }
    if route.host == HostMatch::Unnamed && route.id.is_none() {
        return Err(Problem::UnnamedWithoutId);
    }
    Ok(route)
}

fn parse_target(section: &RawSection, ignored: &mut Vec<String>) -> Result<Target, Problem> {
    let mut target = Target {
        kind: parse_target_address(&section.value)?,
        ssl: false,
        insecure: false,
        untrusted: false,
        trust_connect_host: false,
        host: None,
        subs: Vec::new(),
        over_http: false,
        one_event: false,
    };
    for option in &section.options {
        let value = option.value.as_deref().unwrap_or("");
        match option.name.as_str() {
            "ssl" => target.ssl = flag(option)?,
            "insecure" => target.insecure = flag(option)?,
            "untrusted" => target.untrusted = flag(option)?,
            "trust_connect_host" => target.trust_connect_host = flag(option)?,
            "over_http" => target.over_http = flag(option)?,
            "one_event" => target.one_event = flag(option)?,
            "host" => {
                check_authority("host", value)?;
                target.host = Some(value.to_owned());
            }
            // Pushpin drops empty subscriptions silently; so do we.
            "sub" if value.is_empty() => {}
            "sub" => target.subs.push(value.to_owned()),
            name @ ("client_cert" | "client_key") => {
                return Err(Problem::ClientCertNotSupported(name.to_owned()))
            }
            name if IGNORED_TARGET_OPTIONS.contains(&name) => note_ignored(ignored, name),
            name => return Err(Problem::UnknownTargetOption(name.to_owned())),
        }
    }
    Ok(target)
}

fn note_ignored(ignored: &mut Vec<String>, name: &str) {
    if !ignored.iter().any(|n| n == name) {
        ignored.push(name.to_owned());
    }
}

/// A flag is on when present; it must not carry a value (an empty one is tolerated).
fn flag(option: &RawOption) -> Result<bool, Problem> {
    match option.value.as_deref() {
        None | Some("") => Ok(true),
        Some(value) => Err(Problem::FlagWithValue {
            name: option.name.clone(),
            value: value.to_owned(),
        }),
    }
}

fn non_empty(name: &'static str, value: &str) -> Result<String, Problem> {
    if value.is_empty() {
        Err(Problem::EmptyValue(name))
    } else {
        Ok(value.to_owned())
    }
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// ASCII digits only (no sign, no spaces), fitting in `usize`.
fn parse_decimal(value: &str) -> Option<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn parse_header(spec: &str) -> Result<(String, String), Problem> {
    let Some((name, value)) = spec.split_once(':') else {
        return Err(Problem::HeaderFormat(spec.to_owned()));
    };
    if name.is_empty() {
        return Err(Problem::HeaderFormat(spec.to_owned()));
    }
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(Problem::BadHeaderName(name.to_owned()));
    }
    let value = value.trim_start_matches([' ', '\t']);
    if http::HeaderValue::from_str(value).is_err() {
        return Err(Problem::BadHeaderValue(name.to_owned()));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The condition's host: `*`, empty (id-only), or one host name (lower-cased; brackets
/// around an IPv6 address removed; a port is an error, since only the name is matched).
fn parse_condition_host(value: &str) -> Result<HostMatch, Problem> {
    let bad = |reason| Problem::BadRouteHost {
        host: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Ok(HostMatch::Unnamed);
    }
    if value == "*" {
        return Ok(HostMatch::Any);
    }
    if value.contains('*') {
        return Err(bad("only a lone * is a wildcard"));
    }
    if let Some(inner) = value.strip_prefix('[') {
        let address = match inner.strip_suffix(']') {
            Some(address) => address,
            None if inner.contains("]:") => {
                return Err(bad("a route host must not include a port"))
            }
            None => return Err(bad("missing ']' after IPv6 address")),
        };
        check_ipv6(address).map_err(bad)?;
        return Ok(HostMatch::Exact(address.to_ascii_lowercase()));
    }
    match value.matches(':').count() {
        0 => check_host_name(value).map_err(bad)?,
        1 => return Err(bad("a route host must not include a port")),
        _ => check_ipv6(value).map_err(bad)?,
    }
    Ok(HostMatch::Exact(value.to_ascii_lowercase()))
}

fn parse_target_address(value: &str) -> Result<TargetKind, Problem> {
    if value == "test" {
        return Ok(TargetKind::Test);
    }
    if value.starts_with("zhttp/") || value.starts_with("zhttpreq/") {
        return Err(Problem::ZmqTarget(value.to_owned()));
    }
    if value.is_empty() {
        return Err(Problem::EmptyTarget);
    }
    let bad_host = |reason| Problem::TargetBadHost {
        target: value.to_owned(),
        reason,
    };
    let (host, port) = split_host_port(value).map_err(bad_host)?;
    let Some(port) = port else {
        return Err(Problem::TargetNoPort(value.to_owned()));
    };
    let port = parse_decimal(port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| Problem::TargetBadPort(value.to_owned()))?;
    Ok(TargetKind::Addr {
        host: host.to_owned(),
        port,
    })
}

/// Checks a `host[:port]` / `[v6][:port]` option value (`as_host=`, target `host=`).
fn check_authority(option: &'static str, value: &str) -> Result<(), Problem> {
    let bad = |reason| Problem::BadAuthority {
        option,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(Problem::EmptyValue(option));
    }
    let (_, port) = split_host_port(value).map_err(bad)?;
    if let Some(port) = port {
        if parse_decimal(port)
            .and_then(|p| u16::try_from(p).ok())
            .is_none_or(|p| p == 0)
        {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::MAX_HOST_LEN;
    use proptest::prelude::*;

    fn ok(line: &str) -> Route {
        match parse_route_line(line, 3) {
            Ok(Some(route)) => route,
            other => panic!("{line:?} did not parse: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_route_line(line, 3) {
            Err(e) => {
                assert_eq!(e.line, 3);
                e.message
            }
            other => panic!("{line:?} should fail, got {other:?}"),
        }
    }

    fn addr(host: &str, port: u16) -> TargetKind {
        TargetKind::Addr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn minimal_route_has_defaults() {
        let r = ok("* localhost:80");
        assert_eq!(r.line, 3);
        assert_eq!(r.host, HostMatch::Any);
        assert_eq!(
            (r.id, r.path_beg, r.proto, r.ssl, r.replace_beg, r.path_rem),
            (None, None, None, None, None, None)
        );
        assert_eq!(
            (r.as_host, r.sig_iss, r.sig_key, r.log_level),
            (None, None, None, None)
        );
        assert_eq!(r.prefix, "");
        assert!(r.headers.is_empty() && r.ignored.is_empty());
        assert!(!(r.aco || r.no_grip || r.debug || r.orig_headers));
        assert_eq!(
            r.targets,
            vec![Target {
                kind: addr("localhost", 80),
                ssl: false,
                insecure: false,
                untrusted: false,
                trust_connect_host: false,
                host: None,
                subs: vec![],
                over_http: false,
                one_event: false,
            }]
        );
    }

    #[test]
    fn every_condition_option() {
        let r = ok(
            "Example.COM,proto=http,ssl=yes,path_beg=/a,id=r1,sig_iss=iss,\
                    sig_key=base64:AAAA,prefix=p-,as_host=origin.example:8080,path_rem=2,\
                    replace_beg=/b,header=X-A:1,header=X-B:,aco,no_grip,debug,orig_headers,\
                    log_level=3 a:80",
        );
        assert_eq!(r.host, HostMatch::Exact("example.com".into()));
        assert_eq!(r.proto, Some(RouteProto::Http));
        assert_eq!(r.ssl, Some(true));
        assert_eq!(r.path_beg.as_deref(), Some("/a"));
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(r.sig_iss.as_deref(), Some("iss"));
        assert_eq!(r.sig_key.as_deref(), Some("base64:AAAA"));
        assert_eq!(r.prefix, "p-");
        assert_eq!(r.as_host.as_deref(), Some("origin.example:8080"));
        assert_eq!(r.path_rem, Some(2));
        assert_eq!(r.replace_beg.as_deref(), Some("/b"));
        assert_eq!(
            r.headers,
            vec![("X-A".into(), "1".into()), ("X-B".into(), String::new())]
        );
        assert!(r.aco && r.no_grip && r.debug && r.orig_headers);
        assert_eq!(r.log_level, Some(3));
        assert!(r.ignored.is_empty());
        assert_eq!(ok("*,proto=ws,ssl=no a:1").proto, Some(RouteProto::Ws));
        assert_eq!(ok("*,proto=ws,ssl=no a:1").ssl, Some(false));
    }

    #[test]
    fn header_value_is_left_trimmed_and_may_hold_colons() {
        let r = ok(r#"*,header="X-Url:  http://a:1/ b" a:1"#);
        assert_eq!(r.headers, vec![("X-Url".into(), "http://a:1/ b".into())]);
    }

    #[test]
    fn last_value_wins_and_empty_values_mean_unset() {
        let r = ok("*,ssl=yes,ssl=no,prefix=a,prefix=b,sig_iss=,sig_key=,as_host= a:1");
        assert_eq!(r.ssl, Some(false));
        assert_eq!(r.prefix, "b");
        assert_eq!((r.sig_iss, r.sig_key, r.as_host), (None, None, None));
    }

    #[test]
    fn ignored_options_are_listed_once() {
        let r = ok(
            "*,session,sockjs=/s,sockjs_as_path=/x,jsonp_mode=basic,jsonp_cb=cb,\
                    jsonp_body=b,jsonp_defcb=d,jsonp_defmethod=POST,session \
                    a:1,ipc_file_mode=777 b:2,ipc_file_mode=700",
        );
        assert_eq!(
            r.ignored,
            vec![
                "session",
                "sockjs",
                "sockjs_as_path",
                "jsonp_mode",
                "jsonp_cb",
                "jsonp_body",
                "jsonp_defcb",
                "jsonp_defmethod",
                "ipc_file_mode"
            ]
        );
    }

    #[test]
    fn every_target_option() {
        let r = ok(
            "* a:1,ssl,insecure,untrusted,trust_connect_host,host=api.internal:8443,\
                    sub=one,sub=,sub=two,over_http,one_event test",
        );
        let t = &r.targets[0];
        assert_eq!(t.kind, addr("a", 1));
        assert!(t.ssl && t.insecure && t.untrusted && t.trust_connect_host);
        assert!(t.over_http && t.one_event);
        assert_eq!(t.host.as_deref(), Some("api.internal:8443"));
        assert_eq!(t.subs, vec!["one", "two"]);
        assert_eq!(r.targets[1].kind, TargetKind::Test);
        assert!(!r.targets[1].ssl);
    }

    #[test]
    fn target_addresses() {
        assert_eq!(ok("* [::1]:9000").targets[0].kind, addr("::1", 9000));
        assert_eq!(
            ok("* [fe80::1%eth0]:1").targets[0].kind,
            addr("fe80::1%eth0", 1)
        );
        assert_eq!(
            ok("* 10.0.0.1:65535").targets[0].kind,
            addr("10.0.0.1", 65535)
        );
        assert_eq!(
            ok("* my_host-1.local:8080").targets[0].kind,
            addr("my_host-1.local", 8080)
        );
    }

    #[test]
    fn condition_hosts() {
        assert_eq!(ok("[::1] a:1").host, HostMatch::Exact("::1".into()));
        assert_eq!(ok("::1 a:1").host, HostMatch::Exact("::1".into()));
        assert_eq!(
            ok("127.0.0.1 a:1").host,
            HostMatch::Exact("127.0.0.1".into())
        );
        let r = ok("id=x,proto=ws a:1");
        assert_eq!((r.host, r.id.as_deref()), (HostMatch::Unnamed, Some("x")));
        assert_eq!(ok(",id=y a:1").host, HostMatch::Unnamed);
    }

    #[test]
    fn blank_and_comment_lines() {
        assert_eq!(parse_route_line("", 1), Ok(None));
        assert_eq!(parse_route_line("  # * a:1", 1), Ok(None));
    }

    #[test]
    fn reference_examples() {
        let text = "\
* localhost:80
*,path_beg=/jsonp,aco,debug origin:80
*,path_beg=/jsonp-basic,aco,jsonp_mode=basic,jsonp_body=bparam,jsonp_defcb=jpcb origin:80
api.example.com,proto=ws,id=ws-api,prefix=t1-,sig_key=file:keys/ws.key backend:8080,over_http,sub=all
*,path_beg=/stream,replace_beg=/v2/stream [::1]:9000,ssl,insecure,host=api.internal
";
        let routes = parse_routes(text).expect("reference routes parse");
        assert_eq!(routes.len(), 5);
        assert_eq!(routes[1].path_beg.as_deref(), Some("/jsonp"));
        assert!(routes[1].aco && routes[1].debug);
        assert_eq!(
            routes[2].ignored,
            vec!["jsonp_mode", "jsonp_body", "jsonp_defcb"]
        );
        let ws = &routes[3];
        assert_eq!(ws.line, 4);
        assert_eq!(ws.host, HostMatch::Exact("api.example.com".into()));
        assert_eq!(ws.proto, Some(RouteProto::Ws));
        assert_eq!(ws.id.as_deref(), Some("ws-api"));
        assert_eq!(ws.prefix, "t1-");
        assert_eq!(ws.sig_key.as_deref(), Some("file:keys/ws.key"));
        assert_eq!(ws.targets[0].kind, addr("backend", 8080));
        assert!(ws.targets[0].over_http);
        assert_eq!(ws.targets[0].subs, vec!["all"]);
        let stream = &routes[4];
        assert_eq!(stream.replace_beg.as_deref(), Some("/v2/stream"));
        assert_eq!(stream.targets[0].kind, addr("::1", 9000));
        assert!(stream.targets[0].ssl && stream.targets[0].insecure);
        assert_eq!(stream.targets[0].host.as_deref(), Some("api.internal"));

        assert_eq!(
            err("* zhttpreq/tcp://127.0.0.1:10000"),
            "ZeroMQ targets are not supported (\"zhttpreq/tcp://127.0.0.1:10000\"); use host:port"
        );
        assert_eq!(
            err("* zhttp/tcp://127.0.0.1:10000"),
            "ZeroMQ targets are not supported (\"zhttp/tcp://127.0.0.1:10000\"); use host:port"
        );
    }

    #[test]
    fn parse_routes_numbers_lines_and_handles_crlf_and_bom() {
        let routes = parse_routes("\u{feff}# comment\r\n\r\n* a:1\r\nb.example b:2").unwrap();
        assert_eq!(
            routes.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(routes[0].targets[0].kind, addr("a", 1));
        let e = parse_routes("* a:1\n\n* b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3: target \"b\" has no port (expected host:port, [ipv6]:port or test)"
        );
    }

    #[test]
    fn too_many_routes() {
        let text = "* a:1\n".repeat(MAX_ROUTES + 1);
        let e = parse_routes(&text).unwrap_err();
        assert_eq!(e.line, MAX_ROUTES + 1);
        assert_eq!(e.message, "more than 10000 routes");
    }

    #[test]
    fn condition_errors() {
        let cases: &[(&str, &str)] = &[
            ("*", "route has a condition but no target (e.g. `* localhost:8080`)"),
            ("*,aco", "route has a condition but no target (e.g. `* localhost:8080`)"),
            ("proto=ws a:1", "a route with an empty host needs an id= option"),
            ("*,ssl=maybe a:1", "ssl must be \"yes\" or \"no\", found \"maybe\""),
            ("*,ssl a:1", "ssl must be \"yes\" or \"no\", found \"\""),
            ("*,proto=https a:1", "proto must be \"http\" or \"ws\", found \"https\""),
            ("*,path_rem=x a:1", "path_rem must be a non-negative integer, found \"x\""),
            ("*,path_rem=-1 a:1", "path_rem must be a non-negative integer, found \"-1\""),
            ("*,log_level=256 a:1", "log_level must be an integer from 0 to 255, found \"256\""),
            ("*,log_level a:1", "log_level must be an integer from 0 to 255, found \"\""),
            ("*,path_beg= a:1", "path_beg needs a non-empty value"),
            ("*,id a:1", "id needs a non-empty value"),
            ("*,replace_beg=/v2 a:1", "replace_beg needs path_beg (it replaces the path_beg prefix)"),
            ("*,header=NoColon a:1", "header must be written header=Name:Value, found \"header=NoColon\""),
            ("*,header=:v a:1", "header must be written header=Name:Value, found \"header=:v\""),
            ("*,header a:1", "header must be written header=Name:Value, found \"header=\""),
            (r#"*,"header=Bad Name:v" a:1"#, "unknown route option \"header=Bad Name:v\""),
            (r#"*,header="Bad Name:v" a:1"#, "\"Bad Name\" is not a valid HTTP header name"),
            ("*,header=X(y):v a:1", "\"X(y)\" is not a valid HTTP header name"),
            ("*,header=X:\u{7f} a:1", "control character U+007F in route"),
            ("*,frobnicate a:1", "unknown route option \"frobnicate\""),
            ("*,Proto=ws a:1", "unknown route option \"Proto\""),
            ("*,aco=no a:1", "option aco takes no value (found \"aco=no\")"),
            ("*,debug=1 a:1", "option debug takes no value (found \"debug=1\")"),
            ("*,as_host=a/b a:1", "as_host=\"a/b\" is not a valid host[:port]: a host may only contain letters, digits, '-', '.' and '_'"),
            ("*,as_host=a:0 a:1", "as_host=\"a:0\" is not a valid host[:port]: the port must be a number from 1 to 65535"),
            ("*.example.com a:1", "invalid route host \"*.example.com\": only a lone * is a wildcard"),
            ("example.com:8080 a:1", "invalid route host \"example.com:8080\": a route host must not include a port"),
            ("[::1]:80 a:1", "invalid route host \"[::1]:80\": a route host must not include a port"),
            ("[::1 a:1", "invalid route host \"[::1\": missing ']' after IPv6 address"),
            ("[nope] a:1", "invalid route host \"[nope]\": not a valid IPv6 address"),
            ("::zz a:1", "invalid route host \"::zz\": not a valid IPv6 address"),
            ("a/b a:1", "invalid route host \"a/b\": a host may only contain letters, digits, '-', '.' and '_'"),
            ("* \"a:1", "unterminated quoted string"),
            ("*,,aco a:1", "empty option (check for a stray comma)"),
            ("* a:1\r", "control character U+000D in route"),
            ("* a:1\nb", "control character U+000A in route"),
        ];
        for (line, message) in cases {
            assert_eq!(&err(line), message, "for {line:?}");
        }
    }

    #[test]
    fn target_errors() {
        let cases: &[(&str, &str)] = &[
            ("* a", "target \"a\" has no port (expected host:port, [ipv6]:port or test)"),
            ("* [::1]", "target \"[::1]\" has no port (expected host:port, [ipv6]:port or test)"),
            ("* a:0", "target \"a:0\" has an invalid port (expected 1 to 65535)"),
            ("* a:65536", "target \"a:65536\" has an invalid port (expected 1 to 65535)"),
            ("* a:", "target \"a:\" has an invalid port (expected 1 to 65535)"),
            ("* a:+80", "target \"a:+80\" has an invalid port (expected 1 to 65535)"),
            ("* a:http", "target \"a:http\" has an invalid port (expected 1 to 65535)"),
            ("* :80", "target \":80\" has an invalid host: the host is empty"),
            ("* ::1:80", "target \"::1:80\" has an invalid host: an IPv6 address must be in brackets, e.g. [::1]:8080"),
            ("* [::1]x:80", "target \"[::1]x:80\" has an invalid host: unexpected text after ']'"),
            ("* [::1:80", "target \"[::1:80\" has an invalid host: missing ']' after IPv6 address"),
            ("* a@b:80", "target \"a@b:80\" has an invalid host: a host may only contain letters, digits, '-', '.' and '_'"),
            ("* ssl=x", "target has options but no address (expected host:port, [ipv6]:port or test)"),
            ("* a:1,client_cert=c.pem", "target option client_cert is not supported yet (TLS client certificates to the origin)"),
            ("* a:1,client_key=k.pem", "target option client_key is not supported yet (TLS client certificates to the origin)"),
            ("* a:1,bogus", "unknown target option \"bogus\""),
            ("* a:1,aco", "unknown target option \"aco\""),
            ("* a:1,ssl=yes", "option ssl takes no value (found \"ssl=yes\")"),
            ("* a:1,host=", "host needs a non-empty value"),
            ("* a:1,host=a:b", "host=\"a:b\" is not a valid host[:port]: the port must be a number from 1 to 65535"),
        ];
        for (line, message) in cases {
            assert_eq!(&err(line), message, "for {line:?}");
        }
    }

    #[test]
    fn header_values_with_line_breaks_are_rejected() {
        // The line check catches these first; parse_header guards callers of its own.
        assert_eq!(
            parse_header("X-A:a\r\nInjected: 1"),
            Err(Problem::BadHeaderValue("X-A".into()))
        );
        assert_eq!(
            Problem::BadHeaderValue("X-A".into()).to_string(),
            "value of header X-A contains a control character (such as CR or LF)"
        );
        assert_eq!(parse_header("X-A:\tv"), Ok(("X-A".into(), "v".into())));
    }

    #[test]
    fn limits() {
        let long_host = "a".repeat(MAX_HOST_LEN + 1);
        assert_eq!(
            err(&format!("{long_host} a:1")),
            format!("invalid route host \"{long_host}\": the host is longer than 255 bytes")
        );
        let long_line = format!("* a:1 #{}", "x".repeat(MAX_LINE_LEN));
        assert_eq!(err(&long_line), "line is longer than 16384 bytes");
    }

    proptest! {
        #[test]
        fn parse_route_line_never_panics(line in "\\PC{0,120}") {
            let _ = parse_route_line(&line, 1);
        }

        #[test]
        fn parse_route_line_never_panics_on_routes_like_input(
            line in "[*a-z:\\[\\]0-9,=\" #/\\\\._-]{0,80}"
        ) {
            if let Ok(Some(route)) = parse_route_line(&line, 1) {
                prop_assert!(!route.targets.is_empty());
                prop_assert!(route.replace_beg.is_none() || route.path_beg.is_some());
            }
        }

        #[test]
        fn valid_routes_parse_back(
            host in "[a-z][a-z0-9.-]{0,20}",
            path in "/[a-z0-9/]{0,10}",
            prefix in "[^\"\\\\\\p{Cc}]{0,10}",
            port in 1u16..,
            proto in prop_oneof![Just(None), Just(Some("http")), Just(Some("ws"))],
        ) {
            let mut line = format!("{host},path_beg={path},prefix=\"{prefix}\"");
            if let Some(p) = proto {
                line.push_str(",proto=");
                line.push_str(p);
            }
            line.push_str(&format!(" origin:{port},sub=\"{prefix}\""));
            let route = parse_route_line(&line, 9)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .ok_or_else(|| TestCaseError::fail("no route"))?;
            prop_assert_eq!(route.host, HostMatch::Exact(host));
            prop_assert_eq!(route.path_beg, Some(path));
            prop_assert_eq!(&route.prefix, &prefix);
            prop_assert_eq!(route.proto.is_some(), proto.is_some());
            prop_assert_eq!(&route.targets[0].kind, &TargetKind::Addr { host: "origin".into(), port });
            let subs: Vec<String> = if prefix.is_empty() { vec![] } else { vec![prefix.clone()] };
            prop_assert_eq!(&route.targets[0].subs, &subs);
        }
    }
}
