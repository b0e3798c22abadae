//! The parameter grammar shared by every `Grip-*` header (reference §0.1): a header value is a
//! comma-separated list of elements, and each element is a first token followed by
//! `;`-separated `name[=value]` parameters.
//!
//! ```text
//! header-value = element *( "," element )   ; commas inside double quotes do not split
//! element      = first *( ";" param )        ; `first` may itself be name=value (Grip-Set-Meta)
//! param        = name [ "=" value ]
//! value        = token | quoted-string       ; inside quotes a backslash escapes the next char
//! ```
//!
//! Invariants and decisions:
//! * Several header lines are equivalent to one line joined with commas.
//! * Every comma outside quotes separates elements, so `a,` and `a, ,b` contain empty elements;
//!   they are returned as [`HeaderElement::is_empty`] elements and the caller decides (most
//!   `Grip-*` headers reject them).
//! * The first token is the raw text before the first `;` outside quotes, whitespace-trimmed and
//!   *not* unquoted (Pushpin keeps the quotes of a channel name). With `first_is_param` it is
//!   parsed like a parameter instead: its name (case kept) goes to `first` and its unquoted value
//!   to `first_value`.
//! * Parameter names are lower-cased; values are trimmed and, when quoted, unquoted with
//!   backslash escapes resolved. Text after a closing quote up to the next `;` is ignored (as in
//!   Pushpin). Parameters with an empty name (`a;;b`, `a; =x`) are skipped.
//! * An unterminated quoted string is an error (Pushpin silently drops such an element; a loud
//!   error is more useful to the origin's developer). Text that is not UTF-8 is an error.
//! * The parser never panics and its output is linear in the input size; the HTTP layer bounds
//!   the size of header values.

/// One comma-separated element of a header value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderElement {
    /// The first token, trimmed; quotes kept. With `first_is_param`, the first token's name.
    pub first: String,
    /// With `first_is_param`: the first token's value (unquoted), `None` when it has no `=`.
    /// Always `None` otherwise.
    pub first_value: Option<String>,
    /// The `;` parameters in order: lower-cased name, and the value (`None` when there is no `=`).
    pub params: Vec<(String, Option<String>)>,
}

impl HeaderElement {
    /// True when the element is blank (for example the middle of `a, ,b`).
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.first_value.is_none() && self.params.is_empty()
    }

    /// The first parameter called `name` (give it lower-case): `None` when absent,
    /// `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }

    /// Every parameter called `name` (give it lower-case), in order, for repeatable ones
    /// such as `filter`.
    pub fn params_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Option<&'s str>> {
        self.params
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }
}

/// Why a header value does not follow the parameter grammar. `element` counts from 1 across
/// all lines of the header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// A double quote is never closed (or a backslash ends the value inside quotes).
    #[error("element {element} has an unterminated quoted string")]
    UnterminatedQuote {
        /// 1-based index of the element.
        element: usize,
    },
    /// The element's bytes are not UTF-8.
    #[error("element {element} is not valid UTF-8")]
    NotUtf8 {
        /// 1-based index of the element.
        element: usize,
    },
}

/// Parses every element of every line of a header (pass `HeaderMap::get_all(..)` values as
/// bytes). Stops at the first malformed element.
pub fn parse_header_elements<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    first_is_param: bool,
) -> Result<Vec<HeaderElement>, ParamsError> {
    header_elements(values, first_is_param).collect()
}

/// Like [`parse_header_elements`] but lazy, so a caller that keeps only the first N elements
/// does not store the rest.
pub fn header_elements<'a, I>(
    values: I,
    first_is_param: bool,
) -> impl Iterator<Item = Result<HeaderElement, ParamsError>> + use<'a, I>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    values
        .into_iter()
        .flat_map(split_elements)
        .enumerate()
        .map(move |(index, raw)| parse_element_at(raw, first_is_param, index + 1))
}

/// Parses one element on its own, without splitting on commas: for headers whose first token
/// may contain commas, such as `Grip-Keep-Alive` data. Errors report element 1.
pub fn parse_header_element(
    value: &[u8],
    first_is_param: bool,
) -> Result<HeaderElement, ParamsError> {
    parse_element_at(value, first_is_param, 1)
}

/// Splits one header line on commas outside double quotes, trimming each piece. An
/// unterminated quote makes the rest of the line one piece. Yields at least one piece
/// (`""` for an empty line).
pub fn split_elements(value: &[u8]) -> SplitElements<'_> {
    SplitElements { rest: Some(value) }
}

/// Iterator returned by [`split_elements`].
#[derive(Debug, Clone)]
pub struct SplitElements<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for SplitElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest.take()?;
        match find_unquoted(rest, b',') {
            Unquoted::At(at) => {
                let (piece, after) = rest.split_at(at);
                self.rest = after.get(1..);
                Some(trim_bytes(piece))
            }
            Unquoted::End | Unquoted::Unterminated => Some(trim_bytes(rest)),
        }
    }
}

/// Where the next delimiter outside quotes is.
enum Unquoted {
    At(usize),
    End,
    Unterminated,
}

fn find_unquoted(bytes: &[u8], delimiter: u8) -> Unquoted {
    let mut in_quote = false;
    let mut escaped = false;
    for (at, &byte) in bytes.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_quote = false;
            }
        } else if byte == b'"' {
            in_quote = true;
        } else if byte == delimiter {
            return Unquoted::At(at);
        }
    }
    if in_quote {
        Unquoted::Unterminated
    } else {
        Unquoted::End
    }
}

fn is_space(byte: u8) -> bool {
    byte.is_ascii_whitespace()
}

/// `bytes` without leading and trailing ASCII whitespace.
pub(crate) fn trim_bytes(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |p| p + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn trim_str(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii_whitespace())
}

fn parse_element_at(
    raw: &[u8],
    first_is_param: bool,
    element: usize,
) -> Result<HeaderElement, ParamsError> {
    let text = std::str::from_utf8(raw).map_err(|_| ParamsError::NotUtf8 { element })?;
    let mut segments = Segments { rest: Some(text) };
    let mut out = HeaderElement::default();

    if let Some(first) = segments.next_segment(element)? {
        if first_is_param {
            let (name, value) = split_param(first, element)?;
            out.first = name.to_owned();
            out.first_value = value;
        } else {
            out.first = trim_str(first).to_owned();
        }
    }
    while let Some(segment) = segments.next_segment(element)? {
        let (name, value) = split_param(segment, element)?;
        if !name.is_empty() {
            out.params.push((name.to_ascii_lowercase(), value));
        }
    }
    Ok(out)
}

/// Splits an element on `;` outside quotes.
struct Segments<'a> {
    rest: Option<&'a str>,
}

impl<'a> Segments<'a> {
    fn next_segment(&mut self, element: usize) -> Result<Option<&'a str>, ParamsError> {
        let Some(rest) = self.rest.take() else {
            return Ok(None);
        };
        match find_unquoted(rest.as_bytes(), b';') {
            // `;` is ASCII, so both sides of it are on char boundaries.
            Unquoted::At(at) => {
                self.rest = rest.get(at + 1..);
                Ok(rest.get(..at))
            }
            Unquoted::End => Ok(Some(rest)),
            Unquoted::Unterminated => Err(ParamsError::UnterminatedQuote { element }),
        }
    }
}

/// Splits `name[=value]`: the name trimmed, the value trimmed and unquoted.
fn split_param(segment: &str, element: usize) -> Result<(&str, Option<String>), ParamsError> {
    let Some((name, raw_value)) = segment.split_once('=') else {
        return Ok((trim_str(segment), None));
    };
    let raw_value = trim_str(raw_value);
    let value = match raw_value.strip_prefix('"') {
        Some(quoted) => unquote(quoted, element)?,
        None => raw_value.to_owned(),
    };
    Ok((trim_str(name), Some(value)))
}

/// Reads a quoted string whose opening quote is already consumed, up to the closing quote.
fn unquote(quoted: &str, element: usize) -> Result<String, ParamsError> {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => break,
            },
            '"' => return Ok(out),
            other => out.push(other),
        }
    }
    Err(ParamsError::UnterminatedQuote { element })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(lines: &[&str], first_is_param: bool) -> Result<Vec<HeaderElement>, ParamsError> {
        parse_header_elements(lines.iter().map(|l| l.as_bytes()), first_is_param)
    }

    fn el(first: &str, params: &[(&str, Option<&str>)]) -> HeaderElement {
        HeaderElement {
            first: first.to_owned(),
            first_value: None,
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn channel_example_from_reference() {
        let parsed = parse(
            &["fruit; prev-id=3; filter=skip-self; filter=build-id, vegetables"],
            false,
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                el(
                    "fruit",
                    &[
                        ("prev-id", Some("3")),
                        ("filter", Some("skip-self")),
                        ("filter", Some("build-id")),
                    ],
                ),
                el("vegetables", &[]),
            ]
        );
        assert_eq!(parsed[0].param("prev-id"), Some(Some("3")));
        assert_eq!(parsed[0].param("missing"), None);
        let filters: Vec<_> = parsed[0].params_named("filter").collect();
        assert_eq!(filters, vec![Some("skip-self"), Some("build-id")]);
    }

    #[test]
    fn several_lines_equal_one_joined_line() {
        let a = parse(&["a; x=1", "b, c;y"], false).unwrap();
        let b = parse(&["a; x=1, b, c;y"], false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[2], el("c", &[("y", None)]));
    }

    #[test]
    fn names_lower_cased_values_kept_and_trimmed() {
        let parsed = parse(&["  Name ;  REL = Next ; Empty= ;Flag "], false).unwrap();
        assert_eq!(
            parsed,
            vec![el(
                "Name",
                &[("rel", Some("Next")), ("empty", Some("")), ("flag", None)],
            )]
        );
    }

    #[test]
    fn quoted_values_unescape_and_protect_delimiters() {
        let parsed = parse(&[r#"a; v="x, y; \"z\" \\ w"; n=1, b"#], false).unwrap();
        assert_eq!(
            parsed,
            vec![
                el("a", &[("v", Some(r#"x, y; "z" \ w"#)), ("n", Some("1"))]),
                el("b", &[]),
            ]
        );
    }

    #[test]
    fn text_after_closing_quote_is_ignored() {
        let parsed = parse(&[r#"a; v="x"junk; n=1"#], false).unwrap();
        assert_eq!(parsed, vec![el("a", &[("v", Some("x")), ("n", Some("1"))])]);
    }

    #[test]
    fn first_token_keeps_quotes_and_may_hold_commas() {
        let parsed = parse(&[r#""a,b"; prev-id=1, c"#], false).unwrap();
        assert_eq!(parsed[0].first, "\"a,b\"");
        assert_eq!(parsed[1].first, "c");
    }

    #[test]
    fn first_is_param_parses_name_and_value() {
        let parsed = parse(&[r#"user="alice", Id_Format=%(fruit)s; x=1, bare"#], true).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].first, "user");
        assert_eq!(parsed[0].first_value.as_deref(), Some("alice"));
        assert_eq!(parsed[1].first, "Id_Format");
        assert_eq!(parsed[1].first_value.as_deref(), Some("%(fruit)s"));
        assert_eq!(
            parsed[1].params,
            vec![("x".to_owned(), Some("1".to_owned()))]
        );
        assert_eq!(parsed[2].first, "bare");
        assert_eq!(parsed[2].first_value, None);
    }

    #[test]
    fn empty_elements_are_returned() {
        let parsed = parse(&["a, ,b,", ""], false).unwrap();
        let firsts: Vec<_> = parsed.iter().map(|e| e.first.as_str()).collect();
        assert_eq!(firsts, vec!["a", "", "b", "", ""]);
        assert!(parsed[1].is_empty());
        assert!(!parsed[0].is_empty());
        // A blank first token with parameters is not an empty element.
        assert!(!parse(&["; x=1"], false).unwrap()[0].is_empty());
    }

    #[test]
    fn empty_parameter_names_are_skipped() {
        let parsed = parse(&["a;;b; =x"], false).unwrap();
        assert_eq!(parsed, vec![el("a", &[("b", None)])]);
    }

    #[test]
    fn unterminated_quotes_are_errors_naming_the_element() {
        let err = parse(&["ok", r#"a; v="open"#], false).unwrap_err();
        assert_eq!(err, ParamsError::UnterminatedQuote { element: 2 });
        assert_eq!(
            err.to_string(),
            "element 2 has an unterminated quoted string"
        );
        // A backslash right before the end inside quotes cannot close the quote.
        let err = parse(&[r#"a; v="x\"#], false).unwrap_err();
        assert_eq!(err, ParamsError::UnterminatedQuote { element: 1 });
        // Also in the first token.
        assert!(parse(&[r#""abc; x=1"#], false).is_err());
    }

    #[test]
    fn non_utf8_is_an_error() {
        let lines: [&[u8]; 2] = [b"a", b"b\xff; x=1"];
        let err = parse_header_elements(lines, false).unwrap_err();
        assert_eq!(err, ParamsError::NotUtf8 { element: 2 });
        assert_eq!(err.to_string(), "element 2 is not valid UTF-8");
    }

    #[test]
    fn single_element_does_not_split_on_commas() {
        let parsed = parse_header_element(br#"{"a":1,"b":2}; format=raw"#, false).unwrap();
        assert_eq!(parsed.first, r#"{"a":1,"b":2}"#);
        assert_eq!(parsed.param("format"), Some(Some("raw")));
    }

    #[test]
    fn split_elements_respects_quotes() {
        let pieces: Vec<&[u8]> = split_elements(br#" a , "b,c" ,d"#).collect();
        assert_eq!(pieces, vec![&b"a"[..], &br#""b,c""#[..], &b"d"[..]]);
        let pieces: Vec<&[u8]> = split_elements(br#"a, "b,c"#).collect();
        assert_eq!(pieces, vec![&b"a"[..], &br#""b,c"#[..]]);
    }

    /// Test-only encoder: quotes every value so any string round-trips.
    fn encode(elements: &[(String, Vec<(String, String)>)]) -> String {
        let quote = |v: &str| {
            let mut out = String::from("\"");
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        };
        elements
            .iter()
            .map(|(first, params)| {
                let mut s = first.clone();
                for (n, v) in params {
                    s.push_str("; ");
                    s.push_str(n);
                    s.push('=');
                    s.push_str(&quote(v));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
                        first_is_param in any::<bool>()) {
            let _ = parse_header_elements(lines.iter().map(Vec::as_slice), first_is_param);
            for line in &lines {
                let _ = parse_header_element(line, first_is_param);
            }
        }

        #[test]
        fn never_panics_on_grammar_chars(line in "[a-z\"\\\\,;= \t]{0,40}", first_is_param in any::<bool>()) {
            let _ = parse_header_elements([line.as_bytes()], first_is_param);
        }

        #[test]
        fn quoted_values_round_trip(
            elements in proptest::collection::vec(
                ("[a-z][a-z0-9-]{0,8}",
                 proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", "\\PC{0,12}"), 0..4)),
                1..4)
        ) {
            let line = encode(&elements);
            let parsed = parse_header_elements([line.as_bytes()], false).unwrap();
            prop_assert_eq!(parsed.len(), elements.len());
            for (got, (first, params)) in parsed.iter().zip(&elements) {
                prop_assert_eq!(&got.first, first);
                let want: Vec<(String, Option<String>)> =
                    params.iter().map(|(n, v)| (n.clone(), Some(v.clone()))).collect();
                prop_assert_eq!(&got.params, &want);
            }
        }
    }
}
