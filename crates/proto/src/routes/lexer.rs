//! Splits one routes line into sections and options, undoing quoting; knows nothing about
//! what the options mean.
//!
//! Invariants: a returned section's options all have non-empty names; `=` inside quotes never
//! separates a name from a value; text after an unquoted `#` is never looked at. The output is
//! never larger than the input line (plus small per-item overhead).

use std::iter::Peekable;
use std::str::Chars;

/// A line's section before interpretation: `value,name=value,flag,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawSection {
    /// The section's value (host, `*`, target address); empty when the section starts with
    /// an option.
    pub(super) value: String,
    /// Options in the order written.
    pub(super) options: Vec<RawOption>,
}

/// One `name[=value]` item of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawOption {
    /// Never empty.
    pub(super) name: String,
    /// `None` when the item had no `=`.
    pub(super) value: Option<String>,
}

/// Why a line cannot be split into sections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LexError {
    /// A `"` with no closing `"` on the line.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A backslash inside quotes followed by something other than `\` or `"`.
    #[error("unsupported escape \\{0} in quoted string (only \\\\ and \\\" are allowed)")]
    BadEscape(char),
    /// Two commas in a row, or a comma at the end of a section.
    #[error("empty option (check for a stray comma)")]
    EmptyOption,
    /// An item that starts with `=`.
    #[error("option with no name: \"{0}\"")]
    EmptyOptionName(String),
}

/// One comma-separated item, quotes removed; `eq_at` is the byte offset in `text` of the
/// first `=` that was not inside quotes.
struct RawItem {
    text: String,
    eq_at: Option<usize>,
}

fn is_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits `line` into sections; an empty result means the line is blank or a comment.
pub(super) fn split_line(line: &str) -> Result<Vec<RawSection>, LexError> {
    let mut sections = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| is_separator(*c)).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut items = Vec::new();
        loop {
            items.push(read_item(&mut chars)?);
            if chars.next_if_eq(&',').is_none() {
                break;
            }
        }
        sections.push(section_from_items(items)?);
    }
    Ok(sections)
}

/// Reads up to the next unquoted `,`, separator, `#` or end of line.
fn read_item(chars: &mut Peekable<Chars<'_>>) -> Result<RawItem, LexError> {
    let mut text = String::new();
    let mut eq_at = None;
    while let Some(&c) = chars.peek() {
        if c == ',' || c == '#' || is_separator(c) {
            break;
        }
        chars.next();
        match c {
            '"' => read_quoted(chars, &mut text)?,
            '=' => {
                if eq_at.is_none() {
                    eq_at = Some(text.len());
                }
                text.push('=');
            }
            _ => text.push(c),
        }
    }
    Ok(RawItem { text, eq_at })
}

/// Reads the rest of a quoted stretch (the opening `"` already consumed) into `out`.
fn read_quoted(chars: &mut Peekable<Chars<'_>>, out: &mut String) -> Result<(), LexError> {
    loop {
        match chars.next() {
            None => return Err(LexError::UnterminatedQuote),
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some(c @ ('\\' | '"')) => out.push(c),
                Some(other) => return Err(LexError::BadEscape(other)),
                None => return Err(LexError::UnterminatedQuote),
            },
            Some(c) => out.push(c),
        }
    }
}

fn section_from_items(items: Vec<RawItem>) -> Result<RawSection, LexError> {
    let mut items = items.into_iter();
    let mut section = RawSection {
        value: String::new(),
        options: Vec::new(),
    };
    if let Some(first) = items.next() {
        if first.eq_at.is_some() {
            section.options.push(option_from_item(first)?);
        } else {
            section.value = first.text;
        }
    }
    for item in items {
        section.options.push(option_from_item(item)?);
    }
    Ok(section)
}

fn option_from_item(item: RawItem) -> Result<RawOption, LexError> {
    let RawItem { mut text, eq_at } = item;
    match eq_at {
        _ if text.is_empty() => Err(LexError::EmptyOption),
        Some(0) => Err(LexError::EmptyOptionName(text)),
        Some(at) => {
            let value = text.get(at + 1..).unwrap_or("").to_owned();
            text.truncate(at);
            Ok(RawOption {
                name: text,
                value: Some(value),
            })
        }
        None => Ok(RawOption {
            name: text,
            value: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt(name: &str, value: Option<&str>) -> RawOption {
        RawOption {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    fn section(value: &str, options: Vec<RawOption>) -> RawSection {
        RawSection {
            value: value.into(),
            options,
        }
    }

    #[test]
    fn blank_and_comment_lines_are_empty() {
        assert_eq!(split_line(""), Ok(vec![]));
        assert_eq!(split_line("   \t "), Ok(vec![]));
        assert_eq!(split_line("# * a:80"), Ok(vec![]));
        assert_eq!(split_line("   # x"), Ok(vec![]));
    }

    #[test]
    fn sections_and_options() {
        assert_eq!(
            split_line("*,path_beg=/a,aco  \t b:80,ssl,sub=x # trailing"),
            Ok(vec![
                section("*", vec![opt("path_beg", Some("/a")), opt("aco", None)]),
                section("b:80", vec![opt("ssl", None), opt("sub", Some("x"))]),
            ])
        );
    }

    #[test]
    fn comment_may_follow_a_value_directly() {
        assert_eq!(
            split_line("* a:80#c"),
            Ok(vec![section("*", vec![]), section("a:80", vec![])])
        );
        assert_eq!(
            split_line("*,aco#c"),
            Ok(vec![section("*", vec![opt("aco", None)])])
        );
    }

    #[test]
    fn first_item_with_equals_means_empty_value() {
        assert_eq!(
            split_line("id=x,proto=ws a:80"),
            Ok(vec![
                section("", vec![opt("id", Some("x")), opt("proto", Some("ws"))]),
                section("a:80", vec![]),
            ])
        );
        assert_eq!(
            split_line(",id=x a:80"),
            Ok(vec![
                section("", vec![opt("id", Some("x"))]),
                section("a:80", vec![]),
            ])
        );
    }

    #[test]
    fn quoting_protects_separators_and_escapes() {
        assert_eq!(
            split_line(r#"*,prefix="a b,c#d=e",sub=x"y\"z\\"w a:80"#),
            Ok(vec![
                section(
                    "*",
                    vec![
                        opt("prefix", Some("a b,c#d=e")),
                        opt("sub", Some("xy\"z\\w"))
                    ]
                ),
                section("a:80", vec![]),
            ])
        );
        // A quoted '=' does not split name from value.
        assert_eq!(
            split_line(r#"*,"a=b" c:1"#),
            Ok(vec![
                section("*", vec![opt("a=b", None)]),
                section("c:1", vec![])
            ])
        );
        // Only the first unquoted '=' splits.
        assert_eq!(
            split_line("*,header=X-A:b=c d:1"),
            Ok(vec![
                section("*", vec![opt("header", Some("X-A:b=c"))]),
                section("d:1", vec![]),
            ])
        );
        // Empty quotes give an empty value.
        assert_eq!(
            split_line(r#"*,prefix="" d:1"#),
            Ok(vec![
                section("*", vec![opt("prefix", Some(""))]),
                section("d:1", vec![]),
            ])
        );
    }

    #[test]
    fn backslash_outside_quotes_is_literal() {
        assert_eq!(
            split_line(r"*,prefix=a\b d:1"),
            Ok(vec![
                section("*", vec![opt("prefix", Some(r"a\b"))]),
                section("d:1", vec![]),
            ])
        );
    }

    #[test]
    fn lexical_errors() {
        assert_eq!(split_line(r#"* "abc"#), Err(LexError::UnterminatedQuote));
        assert_eq!(split_line(r#"* "abc\"#), Err(LexError::UnterminatedQuote));
        assert_eq!(split_line(r#"* "a\nb""#), Err(LexError::BadEscape('n')));
        assert_eq!(split_line("*,,aco a:1"), Err(LexError::EmptyOption));
        assert_eq!(split_line("*,aco, a:1"), Err(LexError::EmptyOption));
        assert_eq!(
            split_line("*,=x a:1"),
            Err(LexError::EmptyOptionName("=x".into()))
        );
        assert_eq!(
            LexError::BadEscape('n').to_string(),
            r#"unsupported escape \n in quoted string (only \\ and \" are allowed)"#
        );
        assert_eq!(
            LexError::EmptyOption.to_string(),
            "empty option (check for a stray comma)"
        );
        assert_eq!(
            LexError::EmptyOptionName("=x".into()).to_string(),
            "option with no name: \"=x\""
        );
    }

    proptest! {
        #[test]
        fn never_panics(line in "\\PC{0,80}") {
            let _ = split_line(&line);
        }

        #[test]
        fn quoting_round_trips(text in "\\PC{0,40}") {
            let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
            let line = format!("*,prefix=\"{quoted}\" a:1");
            let sections = split_line(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(sections.len(), 2);
            prop_assert_eq!(&sections[0].options, &vec![opt("prefix", Some(&text))]);
        }
    }
}
