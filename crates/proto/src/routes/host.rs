//! Host names as routes files and requests write them: the checks applied to hosts in
//! conditions, targets and `host[:port]` options, and the reduction of a Host header value to
//! the bare name that routes are matched on.
//!
//! Invariants: a host that passes [`check_host_name`] is 1 to [`MAX_HOST_LEN`] bytes of ASCII
//! letters, digits, `-`, `.` and `_`; one that passes [`check_ipv6`] parses as an IPv6 address
//! (with an optional `%zone`). Nothing here allocates.

use super::MAX_HOST_LEN;

/// Splits `host[:port]` or `[v6][:port]`, checking the host; the port is returned unchecked.
pub(super) fn split_host_port(value: &str) -> Result<(&str, Option<&str>), &'static str> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or("missing ']' after IPv6 address")?;
        check_ipv6(address)?;
        match after {
            "" => (address, None),
            _ => (
                address,
                Some(after.strip_prefix(':').ok_or("unexpected text after ']'")?),
            ),
        }
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        };
        if host.contains(':') {
            return Err("an IPv6 address must be in brackets, e.g. [::1]:8080");
        }
        check_host_name(host)?;
        (host, port)
    };
    Ok((host, port))
}

/// A DNS name or IPv4 address: letters, digits, `-`, `.` and `_`, at most [`MAX_HOST_LEN`].
pub(super) fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.len() > MAX_HOST_LEN {
        return Err("the host is longer than 255 bytes");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("a host may only contain letters, digits, '-', '.' and '_'");
    }
    Ok(())
}

/// An IPv6 address, optionally with a `%zone` suffix.
pub(super) fn check_ipv6(address: &str) -> Result<(), &'static str> {
    let (ip, zone) = match address.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (address, None),
    };
    let zone_ok = zone.is_none_or(|z| {
        !z.is_empty()
            && z.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if zone_ok && ip.parse::<std::net::Ipv6Addr>().is_ok() {
        Ok(())
    } else {
        Err("not a valid IPv6 address")
    }
}

/// The host name in a Host header value: port removed, IPv6 brackets removed. A bare IPv6
/// address (several colons, no brackets) is taken whole.
pub(super) fn host_name(host: &str) -> &str {
    let host = host.trim_matches([' ', '\t']);
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(address, _)| address);
    }
    match host.rsplit_once(':') {
        Some((name, _port)) if !name.contains(':') => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_strips_port_and_brackets() {
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("[::1"), "::1");
        assert_eq!(host_name(""), "");
        assert_eq!(host_name(" a.b "), "a.b");
    }

    #[test]
    fn split_host_port_forms() {
        assert_eq!(split_host_port("a.example"), Ok(("a.example", None)));
        assert_eq!(
            split_host_port("a.example:80"),
            Ok(("a.example", Some("80")))
        );
        assert_eq!(split_host_port("a:"), Ok(("a", Some(""))));
        assert_eq!(split_host_port("[::1]"), Ok(("::1", None)));
        assert_eq!(split_host_port("[::1]:443"), Ok(("::1", Some("443"))));
        assert_eq!(
            split_host_port("::1"),
            Err("an IPv6 address must be in brackets, e.g. [::1]:8080")
        );
        assert_eq!(split_host_port("[::1]x"), Err("unexpected text after ']'"));
        assert_eq!(split_host_port(":80"), Err("the host is empty"));
    }

    #[test]
    fn ipv6_checks() {
        assert_eq!(check_ipv6("::1"), Ok(()));
        assert_eq!(check_ipv6("fe80::1%eth0"), Ok(()));
        assert_eq!(check_ipv6("fe80::1%"), Err("not a valid IPv6 address"));
        assert_eq!(check_ipv6("1.2.3.4"), Err("not a valid IPv6 address"));
    }
}
