//! How long the results of an MQTT-over-HTTP answer may be reused: its `Cache-Control`.
//!
//! The rule is small and conservative, because a reused allow means the origin does not see
//! what it covers: only `max-age=N` (N > 0) permits reuse, for at most the caller's cap, and
//! `no-store`, `no-cache` or `private` anywhere forbids it, whatever else is there. A header
//! that cannot be read as a whole (an unterminated quoted string, an `N` that is not digits,
//! two `max-age`s that disagree) forbids it too: RFC 9111 §4.2.1 lets a cache treat such a
//! response as stale. `s-maxage` and every other directive are ignored.

/// Seconds the answer's results may be reused, from its `Cache-Control` value (several
/// header lines joined with `", "`), at most `cap`. `None`: no reuse (also for `max-age=0`
/// and a `cap` of 0).
pub fn max_age(cache_control: &str, cap: u32) -> Option<u32> {
    let mut age: Option<u32> = None;
    for directive in Directives(cache_control.as_bytes()) {
        let (name, value) = directive?;
        if name.eq_ignore_ascii_case(b"no-store")
            || name.eq_ignore_ascii_case(b"no-cache")
            || name.eq_ignore_ascii_case(b"private")
        {
            return None;
        }
        if name.eq_ignore_ascii_case(b"max-age") {
            let secs = seconds(value?)?;
            if age.is_some_and(|earlier| earlier != secs) {
                return None;
            }
            age = Some(secs);
        }
    }
    age.map(|secs| secs.min(cap)).filter(|secs| *secs > 0)
}

/// Delta-seconds: ASCII digits, saturating (RFC 9111 §1.2.2).
fn seconds(value: &[u8]) -> Option<u32> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u32, |n, d| {
        n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
    }))
}

/// The directives of a `Cache-Control` value: `name [= token | quoted-string]`, separated
/// by commas, with optional whitespace. Yields `None` once, then stops, on bad syntax; a
/// quoted value is yielded without its quotes (escapes are irrelevant to the digits wanted).
struct Directives<'a>(&'a [u8]);

type Directive<'a> = Option<(&'a [u8], Option<&'a [u8]>)>;

impl<'a> Iterator for Directives<'a> {
    type Item = Directive<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self
            .0
            .iter()
            .position(|&b| !matches!(b, b',' | b' ' | b'\t'))
            .unwrap_or(self.0.len());
        let s = &self.0[start..];
        if s.is_empty() {
            return None;
        }
        let name_end = s
            .iter()
            .position(|&b| matches!(b, b'=' | b',' | b' ' | b'\t'))
            .unwrap_or(s.len());
        let (name, rest) = s.split_at(name_end);
        let rest = trim_start(rest);
        let Some(rest) = rest.strip_prefix(b"=") else {
            self.0 = rest;
            return Some(check_separator(name, None, rest));
        };
        let rest = trim_start(rest);
        if let Some(quoted) = rest.strip_prefix(b"\"") {
            let mut i = 0;
            while i < quoted.len() && quoted[i] != b'"' {
                i += if quoted[i] == b'\\' { 2 } else { 1 };
            }
            if i >= quoted.len() {
                self.0 = b"";
                return Some(None);
            }
            self.0 = trim_start(&quoted[i + 1..]);
            return Some(check_separator(name, Some(&quoted[..i]), self.0));
        }
        let end = rest
            .iter()
            .position(|&b| matches!(b, b',' | b' ' | b'\t'))
            .unwrap_or(rest.len());
        self.0 = trim_start(&rest[end..]);
        Some(check_separator(name, Some(&rest[..end]), self.0))
    }
}

/// A directive must be followed by a comma or the end; an empty name is bad syntax.
fn check_separator<'a>(name: &'a [u8], value: Option<&'a [u8]>, rest: &[u8]) -> Directive<'a> {
    (!name.is_empty() && (rest.is_empty() || rest[0] == b',')).then_some((name, value))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::max_age;

    #[test]
    fn max_age_allows_reuse_up_to_the_cap() {
        assert_eq!(max_age("max-age=60", 3600), Some(60));
        assert_eq!(max_age("Max-Age=60", 3600), Some(60));
        assert_eq!(max_age("public, max-age=60", 3600), Some(60));
        assert_eq!(max_age("max-age = 60 , must-revalidate", 3600), Some(60));
        assert_eq!(max_age("max-age=\"60\"", 3600), Some(60));
        assert_eq!(max_age("max-age=7200", 3600), Some(3600));
        assert_eq!(max_age("max-age=99999999999999999999", 3600), Some(3600));
        assert_eq!(max_age("max-age=60, max-age=60", 3600), Some(60));
        assert_eq!(max_age("s-maxage=5, max-age=60", 3600), Some(60));
        assert_eq!(
            max_age("x=\"a, no-store, \\\" private\", max-age=9", 3600),
            Some(9),
            "directives inside a quoted value are not directives"
        );
    }

    #[test]
    fn no_reuse() {
        for header in [
            "",
            "   ",
            "public",
            "s-maxage=60",
            "max-age=0",
            "no-store",
            "no-store, max-age=60",
            "max-age=60, no-cache",
            "max-age=60, NO-CACHE=\"set-cookie\"",
            "private, max-age=60",
            "max-age=60, private=\"x\"",
            "max-age=",
            "max-age",
            "max-age=-1",
            "max-age=1.5",
            "max-age=0x10",
            "max-age=60s",
            "max-age=60 30",
            "max-age=60, max-age=61",
            "max-age=\"60",
            "max-age=60, x=\"unterminated",
            "=60",
            ", , max-age=60 junk",
        ] {
            assert_eq!(max_age(header, 3600), None, "{header:?}");
        }
        assert_eq!(
            max_age("max-age=60", 0),
            None,
            "a cap of 0 turns caching off"
        );
    }

    #[test]
    fn empty_directives_between_commas_are_skipped() {
        assert_eq!(max_age(",max-age=60,", 3600), Some(60));
        assert_eq!(max_age("public,,max-age=60", 3600), Some(60));
    }

    #[test]
    fn never_panics_on_any_short_input() {
        let alphabet = [
            b'm', b'a', b'x', b'-', b'=', b'"', b'\\', b',', b' ', b'6', b'0',
        ];
        let mut input = Vec::new();
        for n in 0..(alphabet.len().pow(5)) {
            input.clear();
            let mut k = n;
            for _ in 0..5 {
                input.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            let text = std::str::from_utf8(&input).expect("ascii");
            let _ = max_age(text, 3600);
        }
    }
}
