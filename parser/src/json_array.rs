//! The exec (JSON) form of RUN, CMD, ENTRYPOINT, SHELL, ADD, COPY and VOLUME.
//!
//! BuildKit decodes the text with Go's `encoding/json` into `[]any`: text that is not valid
//! JSON is not an error (the instruction falls back to its shell form), but a valid array
//! holding anything other than strings is. The validator here is iterative, so no input can
//! exhaust the stack, and it keeps Go's limit of 10,000 nested levels.

/// What the text after an instruction's flags is, read as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonArray {
    /// A valid JSON array of strings, decoded.
    Strings(Vec<String>),
    /// A valid JSON array with an element that is not a string.
    NotStrings,
    /// Not a valid JSON array: the shell form applies.
    Invalid,
}

const MAX_DEPTH: usize = 10_000;

/// Reads `text` (leading white space allowed) as a JSON array of strings.
pub fn parse(text: &str) -> JsonArray {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return JsonArray::Invalid;
    }
    let mut r = Reader {
        b: text.as_bytes(),
        pos: 1,
    };
    match r.array_of_strings() {
        Some(result) => {
            r.ws();
            if r.pos == r.b.len() {
                result
            } else {
                JsonArray::Invalid
            }
        }
        None => JsonArray::Invalid,
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// The top-level array, its `[` already read.
    fn array_of_strings(&mut self) -> Option<JsonArray> {
        let mut strings = Vec::new();
        let mut all_strings = true;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(JsonArray::Strings(strings));
        }
        loop {
            self.ws();
            if self.peek()? == b'"' {
                strings.push(self.string()?);
            } else {
                self.value(1)?;
                all_strings = false;
            }
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        Some(if all_strings {
            JsonArray::Strings(strings)
        } else {
            JsonArray::NotStrings
        })
    }

    /// Skips one JSON value of any kind, nested `depth` levels deep, without recursion.
    fn value(&mut self, depth: usize) -> Option<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value starts here.
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                c @ (b'[' | b'{') => {
                    if depth + open.len() + 1 > MAX_DEPTH {
                        return None;
                    }
                    self.pos += 1;
                    self.ws();
                    let close = if c == b'[' { b']' } else { b'}' };
                    if self.eat(close).is_none() {
                        open.push(c);
                        if c == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // A value ended: close every container that ends here.
            loop {
                let Some(&top) = open.last() else {
                    return Some(());
                };
                self.ws();
                match (self.peek()?, top) {
                    (b',', _) => {
                        self.pos += 1;
                        if top == b'{' {
                            self.key()?;
                        }
                        break;
                    }
                    (b']', b'[') | (b'}', b'{') => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        self.eat(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.pos..self.pos + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(s, 16).ok()
    }

    /// A string, decoded as Go decodes it (a lone surrogate becomes U+FFFD).
    fn string(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.pos += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                0..=0x1f => return None,
                b'\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let u = self.hex4()?;
                            self.unicode_escape(u)
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    fn unicode_escape(&mut self, u: u32) -> char {
        if (0xd800..0xdc00).contains(&u) {
            // A high surrogate pairs only with an immediately following \u low surrogate.
            let save = self.pos;
            if self.b[self.pos..].starts_with(b"\\u") {
                self.pos += 2;
                if let Some(lo) = self.hex4() {
                    if (0xdc00..0xe000).contains(&lo) {
                        let c = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                        return char::from_u32(c).unwrap_or('\u{fffd}');
                    }
                }
            }
            self.pos = save;
            return '\u{fffd}';
        }
        char::from_u32(u).unwrap_or('\u{fffd}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArray {
        JsonArray::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(parse("[]"), strings(&[]));
        assert_eq!(parse(" [ \"a\" ,\t\"b\" ]\t"), strings(&["a", "b"]));
        assert_eq!(
            parse(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2665"]"#),
            strings(&["\" \\ / \x08 \x0c \n \r \t \0 ♥"])
        );
        assert_eq!(
            parse(r#"["\ud83d\ude00", "\ud800x"]"#),
            strings(&["😀", "\u{fffd}x"])
        );
    }

    #[test]
    fn non_strings_are_reported() {
        assert_eq!(
            parse(r#"[ "echo", [ "nested json" ] ]"#),
            JsonArray::NotStrings
        );
        assert_eq!(
            parse(r#"[1, null, true, {"a": [1.5e3, {}]}]"#),
            JsonArray::NotStrings
        );
    }

    #[test]
    fn invalid_json_falls_back() {
        for t in [
            "[",
            r#"["a""#,
            r#"["a",]"#,
            r#"["a"] x"#,
            "[01]",
            "[1.]",
            "[tru]",
            r#"["a\x"]"#,
            "[\"a\u{1}\"]",
            r#"[{"a" 1}]"#,
            r#""[\"a\"]""#,
            "abc",
        ] {
            assert_eq!(parse(t), JsonArray::Invalid, "{t}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("[{}{}]", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(parse(&deep), JsonArray::Invalid);
        let ok = format!("[{}{}]", "[".repeat(9_000), "]".repeat(9_000));
        assert_eq!(parse(&ok), JsonArray::NotStrings);
    }
}
