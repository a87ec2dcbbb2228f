//! Character classes and string helpers with the exact meaning BuildKit's Go code gives them.
//!
//! BuildKit's parser leans on Go's `unicode` and `strconv` packages; where Rust's standard
//! library draws a line elsewhere (letters, digits, printable characters, lower-casing), a
//! Dockerfile would parse differently. Everything that must match Go lives here, once.

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

/// Go's `unicode.IsSpace`: the Unicode White_Space property, which is also Rust's.
pub fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Go's `unicode.IsSpace(rune(b))` applied to one byte, as BuildKit's byte-wise scanners do
/// (`extractBuilderFlags`, `parseHealthConfig`): bytes 0x85 and 0xA0 count as spaces.
pub fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// Go's `unicode.IsLetter`: general category L.
pub fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    c.general_category_group() == GeneralCategoryGroup::Letter
}

/// Go's `unicode.IsDigit`: general category Nd.
pub fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    c.general_category() == GeneralCategory::DecimalNumber
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Mark
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

/// Go's `strconv.Quote`: a double-quoted string with Go escape sequences.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// Appends `quote(s)` to `out`.
pub fn quote_into(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// Go's `strings.ToLower`: per-character simple case mapping (no context rules).
pub fn to_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    // Rust's full mapping turns U+0130 into two characters; Go's simple mapping keeps the first.
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Go's `strings.ToUpper`, with the same simple mapping as [`to_lower`].
pub fn to_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.EqualFold` for the ASCII words it is used on here.
pub fn eq_fold(a: &str, b: &str) -> bool {
    a.len() == b.len() && to_lower(a) == to_lower(b)
}

/// Splits on runs of `[\t\v\f\r ]` (BuildKit's `reWhitespace`) into at most `n` parts
/// (`n == 0`: no limit), like Go's `Regexp.Split`.
pub fn split_ascii_ws(s: &str, n: usize) -> Vec<&str> {
    let is_ws = |b: u8| matches!(b, b'\t' | 0x0b | 0x0c | b'\r' | b' ');
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if n != 0 && parts.len() + 1 == n {
            break;
        }
        if is_ws(bytes[i]) {
            let mut j = i;
            while j < bytes.len() && is_ws(bytes[j]) {
                j += 1;
            }
            parts.push(&s[start..i]);
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Lossy text from bytes that BuildKit treats as a Go string (which may hold any bytes).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("\u{0}\x07\x1b"), r#""\x00\a\x1b""#);
        assert_eq!(quote("♥☃"), "\"♥☃\"");
        assert_eq!(quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(quote("\u{e0001}"), r#""\U000e0001""#);
    }

    #[test]
    fn split_ws_like_go_regexp_split() {
        assert_eq!(split_ascii_ws("a  b\tc", 0), vec!["a", "b", "c"]);
        assert_eq!(split_ascii_ws("a  b\tc", 2), vec!["a", "b\tc"]);
        assert_eq!(split_ascii_ws("abc", 2), vec!["abc"]);
        assert_eq!(split_ascii_ws("", 0), vec![""]);
    }

    #[test]
    fn lower_is_simple_mapping() {
        assert_eq!(to_lower("RUN"), "run");
        assert_eq!(to_lower("\u{130}X"), "ix");
    }
}
