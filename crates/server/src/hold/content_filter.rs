//! The content-transforming filters, `var-subst` and `build-id` (reference §1.9), as pure
//! functions over bytes.
//!
//! Both read the same directive syntax: `%%` is a `%`, `%<letter>` and `%(<arg>)<letter>` are
//! directives (a `\` inside the parentheses takes the next byte as it is); any other `%` is
//! an error, as is a directive the filter does not know. `var-subst` knows `%(<name>)s`, the
//! subscription meta `<name>`; `build-id` knows `%I`, the subscription's current id, and
//! `%(<literal>)I`, that literal — both hex-encoded when the meta `id_encoding` is `hex`.
//! The current id comes from the meta `id_format`, a template whose `%(<channel>)s` is that
//! channel's prev-id ([`render_id`]).
//!
//! Each filter is one full pass over the content, so with both on a channel the first one's
//! output is the second one's input (a `%%(name)s` passes `build-id` as `%(name)s`). An error
//! names what went wrong; the caller drops the message and counts it. Nothing here runs for a
//! subscription without content filters.

use std::fmt::Write as _;

/// Why a filter could not render a message.
pub(crate) type FilterError = String;

/// Runs `input` through the directive syntax, each directive expanded by `expand(letter, arg,
/// out)`.
fn process(
    input: &[u8],
    out: &mut Vec<u8>,
    mut expand: impl FnMut(u8, Option<&[u8]>, &mut Vec<u8>) -> Result<(), FilterError>,
) -> Result<(), FilterError> {
    let mut arg = Vec::new();
    let mut n = 0;
    while n < input.len() {
        // copy the run up to the next '%' in one go
        let Some(at) = input[n..].iter().position(|&b| b == b'%') else {
            out.extend_from_slice(&input[n..]);
            break;
        };
        out.extend_from_slice(&input[n..n + at]);
        n += at + 1;
        let Some(&c) = input.get(n) else {
            return Err(format!("expected a directive after '%' at {}", n - 1));
        };
        match c {
            b'%' => out.push(b'%'),
            b'(' => {
                let start = n;
                arg.clear();
                n += 1;
                loop {
                    match input.get(n) {
                        None => return Err(format!("unterminated field at {start}")),
                        Some(b'\\') => {
                            n += 1;
                            let Some(&e) = input.get(n) else {
                                return Err(format!("expected a byte after '\\' at {}", n - 1));
                            };
                            arg.push(e);
                        }
                        Some(b')') => break,
                        Some(&b) => arg.push(b),
                    }
                    n += 1;
                }
                n += 1;
                let Some(&letter) = input.get(n) else {
                    return Err(format!("expected a directive after ')' at {}", n - 1));
                };
                expand(letter, Some(&arg), out).map_err(|e| format!("{e} at {n}"))?;
            }
            c if c.is_ascii_alphabetic() => {
                expand(c, None, out).map_err(|e| format!("{e} at {n}"))?
            }
            c => return Err(format!("unknown directive '{}' at {n}", c.escape_ascii())),
        }
        n += 1;
    }
    Ok(())
}

/// `var-subst`: `%(<name>)s` becomes the value of `name` in `vars`.
pub(crate) fn var_subst(input: &[u8], vars: &[(String, String)]) -> Result<Vec<u8>, FilterError> {
    let mut out = Vec::with_capacity(input.len() + 32);
    process(input, &mut out, |letter, arg, out| {
        let name = named_s(letter, arg)?;
        let value = vars
            .iter()
            .find(|(k, _)| k.as_bytes() == name)
            .ok_or_else(|| format!("no such variable '{}'", name.escape_ascii()))?;
        out.extend_from_slice(value.1.as_bytes());
        Ok(())
    })?;
    Ok(out)
}

/// The argument of a `%(<name>)s` directive.
fn named_s(letter: u8, arg: Option<&[u8]>) -> Result<&[u8], FilterError> {
    if letter != b's' {
        return Err(format!("unknown directive '{}'", letter.escape_ascii()));
    }
    arg.ok_or_else(|| "directive 's' requires an argument".to_string())
}

/// The current id from the `id_format` template: `%(<channel>)s` is that channel's prev-id
/// in `prev_ids` (a channel with none is an unknown variable). None when the connection has
/// no channel at all (then only `%(<literal>)I` renders), as Pushpin.
pub(crate) fn render_id<'a>(
    id_format: &str,
    prev_ids: impl Iterator<Item = (&'a str, Option<&'a str>)> + Clone,
) -> Result<Option<Vec<u8>>, FilterError> {
    if prev_ids.clone().next().is_none() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(id_format.len() + 16);
    process(id_format.as_bytes(), &mut out, |letter, arg, out| {
        let name = named_s(letter, arg)?;
        let value = prev_ids
            .clone()
            .find(|(c, _)| c.as_bytes() == name)
            .and_then(|(_, v)| v)
            .ok_or_else(|| format!("no such variable '{}'", name.escape_ascii()))?;
        out.extend_from_slice(value.as_bytes());
        Ok(())
    })
    .map_err(|e| format!("id_format: {e}"))?;
    Ok(Some(out))
}

/// `build-id`: `%I` becomes `id` (an error without one, or the error that rendering it
/// met), `%(<literal>)I` the literal, each hex-encoded when `hex`.
pub(crate) fn build_id(
    input: &[u8],
    id: Result<Option<&[u8]>, &FilterError>,
    hex: bool,
) -> Result<Vec<u8>, FilterError> {
    let mut out = Vec::with_capacity(input.len() + 32);
    process(input, &mut out, |letter, arg, out| {
        if letter != b'I' {
            return Err(format!("unknown directive '{}'", letter.escape_ascii()));
        }
        let value = match (arg, id) {
            (Some(literal), _) => literal,
            (None, Ok(Some(id))) => id,
            (None, Ok(None)) => return Err("no id given and none in context".to_string()),
            (None, Err(e)) => return Err(e.clone()),
        };
        if hex {
            let mut s = String::with_capacity(value.len() * 2);
            for b in value {
                let _ = write!(s, "{b:02x}");
            }
            out.extend_from_slice(s.as_bytes());
        } else {
            out.extend_from_slice(value);
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![("name".into(), "alice".into()), ("p".into(), "a%b".into())]
    }

    #[test]
    fn var_subst_as_pushpin() {
        let s = |i: &str| var_subst(i.as_bytes(), &vars()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            s("hi %(name)s 100%% %(p)s\n").unwrap(),
            "hi alice 100% a%b\n"
        );
        assert_eq!(s("no directives").unwrap(), "no directives");
        assert_eq!(
            s("%(na\\)me)s").unwrap_err(),
            "no such variable 'na)me' at 9"
        );
        assert!(s("%(nope)s")
            .unwrap_err()
            .contains("no such variable 'nope'"));
        assert!(s("%I").unwrap_err().contains("unknown directive 'I'"));
        assert!(s("%s").unwrap_err().contains("requires an argument"));
        assert!(s("trail %").is_err());
        assert!(s("%(open").unwrap_err().contains("unterminated"));
        assert!(s("%(name)").is_err());
        assert!(s("% x").unwrap_err().contains("unknown directive ' '"));
    }

    #[test]
    fn build_id_as_pushpin() {
        let b = |i: &str, id: Option<&str>, hex| {
            build_id(i.as_bytes(), Ok(id.map(str::as_bytes)), hex)
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(b("a %I 1%%", Some("6"), false).unwrap(), "a 6 1%");
        assert_eq!(b("a %(lit)I", None, false).unwrap(), "a lit");
        assert_eq!(b("%(ab)I %I", Some("<6>"), true).unwrap(), "6162 3c363e");
        assert!(b("%I", None, false).is_err());
        assert!(
            b("%(n)s", Some("1"), false).is_err(),
            "var-subst's directive"
        );
        let e = "id_format: no such variable 'c'".to_string();
        assert_eq!(build_id(b"%(x)I", Err(&e), false).unwrap(), b"x");
        assert_eq!(
            build_id(b"%I", Err(&e), false).unwrap_err(),
            format!("{e} at 1")
        );
    }

    #[test]
    fn ids_render_from_prev_ids() {
        let ids = [("a", Some("6")), ("b", Some("x")), ("c", None)];
        let r = |f: &str| render_id(f, ids.iter().copied());
        assert_eq!(r("<%(a)s-%(b)s>").unwrap().unwrap(), b"<6-x>");
        assert_eq!(r("fixed").unwrap().unwrap(), b"fixed");
        assert!(r("%(c)s").unwrap_err().contains("no such variable 'c'"));
        assert!(r("%(d)s").is_err());
        assert_eq!(render_id("fixed", [].iter().copied()).unwrap(), None);
    }
}
