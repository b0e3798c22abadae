//! Choosing a `permessage-deflate` offer (RFC 7692 §5 and §7.1) from a client's
//! `Sec-WebSocket-Extensions` values. Invariants: the answer always carries both
//! `server_no_context_takeover` and `client_no_context_takeover`, so neither side keeps a
//! compression window between messages; an offer is taken only if every parameter in it is
//! known, well formed and present at most once, and it lets the server use a 15-bit window.
//!
//! The parser borrows the header bytes and allocates nothing but the answer; its time is
//! linear in the header length, which the HTTP parser has already bounded.

/// The agreed parameters (both no-context-takeover in practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses every message with a fresh window.
    pub server_no_context_takeover: bool,
    /// The client must compress every message with a fresh window.
    pub client_no_context_takeover: bool,
}

/// The extension name, compared ASCII case-insensitively.
const EXTENSION_NAME: &str = "permessage-deflate";

/// What the server answers to any offer it takes.
pub const RESPONSE_VALUE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The window the server compresses with (miniz cannot use a smaller one).
const SERVER_WINDOW_BITS: u8 = 15;

/// Picks the first acceptable `permessage-deflate` offer from the client's
/// Sec-WebSocket-Extensions values (each value may list several offers, comma-separated).
///
/// Offers are refused when they limit `server_max_window_bits` below 15 (miniz cannot compress
/// with a smaller window), carry an unknown or repeated parameter, or are malformed;
/// `client_max_window_bits` is accepted with or without a value, since the server always
/// inflates with a 15-bit window, which decodes anything. Returns the params and the response
/// header value, [`RESPONSE_VALUE`].
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a [u8]>,
) -> Option<(DeflateParams, String)> {
    let taken = offers
        .into_iter()
        .flat_map(split_extension_list)
        .any(is_acceptable_offer);
    taken.then(|| {
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
        };
        (params, RESPONSE_VALUE.to_string())
    })
}

/// The comma-separated elements of one header value, honouring quoted strings (a comma inside
/// quotes does not split). Empty elements (`a, , b`) are skipped later as malformed.
fn split_extension_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (index, &byte) in current.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if in_quotes {
                match byte {
                    b'\\' => escaped = true,
                    b'"' => in_quotes = false,
                    _ => {}
                }
            } else if byte == b'"' {
                in_quotes = true;
            } else if byte == b',' {
                rest = current.get(index + 1..);
                return current.get(..index);
            }
        }
        rest = None;
        Some(current)
    })
}

/// Which parameters one offer has named so far (each may appear once).
#[derive(Default)]
struct SeenParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: bool,
    client_max_window_bits: bool,
}

/// Whether one extension element is a `permessage-deflate` offer the server can take.
fn is_acceptable_offer(element: &[u8]) -> bool {
    let mut reader = Reader { rest: element };
    reader.skip_whitespace();
    let Some(name) = reader.token() else {
        return false;
    };
    if !name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes()) {
        return false;
    }
    let mut seen = SeenParams::default();
    loop {
        reader.skip_whitespace();
        if reader.rest.is_empty() {
            return true;
        }
        if !reader.eat(b';') {
            return false;
        }
        reader.skip_whitespace();
        let Some(param) = reader.token() else {
            return false;
        };
        reader.skip_whitespace();
        let value = if reader.eat(b'=') {
            reader.skip_whitespace();
            match reader.value() {
                Some(value) => Some(value),
                None => return false,
            }
        } else {
            None
        };
        if !accept_param(&mut seen, param, value) {
            return false;
        }
    }
}

/// Records one parameter; false when the offer must be refused because of it.
fn accept_param(seen: &mut SeenParams, name: &[u8], value: Option<ParamValue>) -> bool {
    let (flag, value_ok) = if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
        (&mut seen.server_no_context_takeover, value.is_none())
    } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
        (&mut seen.client_no_context_takeover, value.is_none())
    } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
        let bits = value.and_then(|value| value.window_bits());
        (
            &mut seen.server_max_window_bits,
            bits.is_some_and(|bits| bits >= SERVER_WINDOW_BITS),
        )
    } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
        let valid = value.is_none_or(|value| value.window_bits().is_some());
        (&mut seen.client_max_window_bits, valid)
    } else {
        return false;
    };
    let repeated = std::mem::replace(flag, true);
    value_ok && !repeated
}

/// A parameter value: a token, or the contents of a quoted string (still escaped).
#[derive(Clone, Copy)]
enum ParamValue<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl ParamValue<'_> {
    /// The value as a window size: 8 to 15, decimal, no leading zero (RFC 7692 §7.1.2).
    fn window_bits(self) -> Option<u8> {
        // Unescape into a two-byte buffer: any longer value is out of range anyway.
        let mut digits = [0u8; 2];
        let mut count = 0;
        let (raw, quoted) = match self {
            ParamValue::Token(raw) => (raw, false),
            ParamValue::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        for &byte in raw {
            if quoted && !escaped && byte == b'\\' {
                escaped = true;
                continue;
            }
            escaped = false;
            *digits.get_mut(count)? = byte;
            count += 1;
        }
        match digits.get(..count)? {
            [digit @ b'8'..=b'9'] => Some(digit - b'0'),
            [b'1', digit @ b'0'..=b'5'] => Some(10 + digit - b'0'),
            _ => None,
        }
    }
}

/// A cursor over one extension element.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn skip_whitespace(&mut self) {
        while let [b' ' | b'\t', tail @ ..] = self.rest {
            self.rest = tail;
        }
    }

    fn eat(&mut self, expected: u8) -> bool {
        match self.rest {
            [first, tail @ ..] if *first == expected => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    /// An RFC 7230 token (one or more tchars).
    fn token(&mut self) -> Option<&'a [u8]> {
        let length = self.rest.iter().take_while(|&&byte| is_tchar(byte)).count();
        let (token, tail) = self.rest.split_at_checked(length)?;
        if token.is_empty() {
            return None;
        }
        self.rest = tail;
        Some(token)
    }

    /// A token or a quoted string with its quotes removed (escapes are kept).
    fn value(&mut self) -> Option<ParamValue<'a>> {
        let [b'"', quoted @ ..] = self.rest else {
            return self.token().map(ParamValue::Token);
        };
        let mut escaped = false;
        for (index, &byte) in quoted.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                self.rest = quoted.get(index + 1..)?;
                return quoted.get(..index).map(ParamValue::Quoted);
            }
        }
        None
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<String> {
        negotiate(values.iter().map(|value| value.as_bytes())).map(|(params, answer)| {
            assert!(params.server_no_context_takeover && params.client_no_context_takeover);
            answer
        })
    }

    fn accepted(values: &[&str]) -> bool {
        offer(values).is_some()
    }

    #[test]
    fn real_browser_offers() {
        // Chrome / Edge / Safari
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(RESPONSE_VALUE)
        );
        // Firefox
        assert_eq!(
            offer(&["permessage-deflate"]).as_deref(),
            Some(RESPONSE_VALUE)
        );
        // Python websockets client default
        assert!(accepted(&["permessage-deflate; client_max_window_bits"]));
        // ws (Node) with explicit settings
        assert!(accepted(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15; client_max_window_bits=10"
        ]));
        // Older Safari sent this non-standard extension first
        assert!(accepted(&[
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"
        ]));
    }

    #[test]
    fn exact_answer() {
        assert_eq!(
            RESPONSE_VALUE,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn small_server_window_refused_then_next_offer_taken() {
        assert!(!accepted(&[
            "permessage-deflate; server_max_window_bits=10"
        ]));
        assert!(accepted(&[
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        ]));
        // the second offer in a second header value
        assert!(accepted(&[
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
            "permessage-deflate; client_max_window_bits",
        ]));
        assert!(!accepted(&[
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=14",
        ]));
        assert!(accepted(&["permessage-deflate; server_max_window_bits=15"]));
        assert!(accepted(&[
            "permessage-deflate; server_max_window_bits=\"15\""
        ]));
        assert!(accepted(&[
            "permessage-deflate; server_max_window_bits=\"1\\5\""
        ]));
    }

    #[test]
    fn parameters_checked() {
        assert!(accepted(&["permessage-deflate; client_max_window_bits=8"]));
        assert!(accepted(&[
            "permessage-deflate; client_max_window_bits=\"9\""
        ]));
        assert!(accepted(&[
            "PerMessage-Deflate ;Client_Max_Window_Bits = 12 "
        ]));
        assert!(accepted(&[
            "permessage-deflate;\tserver_no_context_takeover"
        ]));
        let refused = [
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=150",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; mystery",
            "permessage-deflate; mystery=1",
            "permessage-deflate;",
            "permessage-deflate; ; client_max_window_bits",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; client_max_window_bits=\"10",
        ];
        for value in refused {
            assert!(!accepted(&[value]), "{value:?} must be refused");
        }
    }

    #[test]
    fn garbage_and_other_extensions() {
        for value in [
            "",
            ",",
            " , ,",
            "deflate",
            "permessage-deflat",
            "permessage-deflatex",
            "x-webkit-deflate-frame",
            "\"permessage-deflate\"",
            "permessage-deflate=1",
            "\u{0}\u{ff}",
            "permessage-deflate; client_max_window_bits=\"a,permessage-deflate",
        ] {
            assert!(!accepted(&[value]), "{value:?} must be refused");
        }
        assert!(!accepted(&[]));
        assert!(negotiate([&[0xffu8, 0xfe, b';'][..]]).is_none());
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        let elements: Vec<&[u8]> =
            split_extension_list(b"a; p=\"x,y\", b; q=\"\\\",\", c").collect();
        assert_eq!(
            elements,
            [&b"a; p=\"x,y\""[..], &b" b; q=\"\\\",\""[..], &b" c"[..]]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..4)) {
            let _ = negotiate(values.iter().map(Vec::as_slice));
        }

        #[test]
        fn accepted_offers_have_only_known_params(value in "[a-z_;=, \"0-9-]{0,60}") {
            if negotiate([value.as_bytes()]).is_some() {
                proptest::prop_assert!(value.contains("permessage-deflate"));
            }
        }
    }
}
