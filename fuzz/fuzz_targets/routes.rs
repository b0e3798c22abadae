//! Routes files and `--route` lines (`proto::routes`): the first input line is a request
//! (`host path-and-query`), the rest a routes file. The file is parsed, built into a table and
//! the request routed through it, as the proxy does for each request. Checks that nothing
//! panics and that a rewritten origin path starts with `/`.
#![no_main]

use gripway_proto::routes::{parse_route_line, parse_routes, RouteProto, RouteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (request, file) = text.split_once('\n').unwrap_or(("", &text));
    let (host, path_and_query) = request.split_once(' ').unwrap_or((request, "/"));
    let _ = parse_route_line(file.lines().next().unwrap_or(""), 1);
    let Ok(routes) = parse_routes(file) else {
        return;
    };
    let (table, _warnings) = RouteTable::new(routes);
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    for proto in [RouteProto::Http, RouteProto::Ws] {
        for ssl in [false, true] {
            let Some(route) = table.find(host, path, proto, ssl) else {
                continue;
            };
            assert!(route.matches(path, proto, ssl));
            let origin_path = route.origin_path(path_and_query);
            if origin_path != path_and_query {
                assert!(origin_path.starts_with('/'), "{origin_path:?}");
            }
            if let Some(id) = &route.id {
                let _ = table.by_id(id);
            }
        }
    }
});
