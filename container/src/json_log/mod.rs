//! A container's output as docker's json-file log driver keeps it: one JSON object per
//! entry (`{"log":…,"stream":…,"time":…}`) in `log.json`, lines longer than 16 KiB cut into
//! partial entries, `max-size`/`max-file` rotation (`log.json.1` the newest rotated file).
//! `copier` is the monitor's side (the container's pipes to the file, in bounded memory),
//! `reader` is `lb logs`'s (the files in order, streamed). Nothing here knows of the
//! store or the runtime: a directory and file descriptors are all it is given.

mod copier;
mod reader;

pub use copier::{Echo, Tee, Writer, copy};
pub use reader::{Shown, show};

use crate::error::{Error, Result, invalid};

/// The file the current entries go to, in the container's directory.
pub const LOG_FILE: &str = "log.json";

/// docker's copier buffer: a line longer than this is logged as several entries.
pub const MAX_LINE: usize = 16 * 1024;

/// How a container's output is kept (docker's `--log-driver` and `--log-opt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogConfig {
    /// `--log-driver none`: the output is read and dropped.
    None,
    /// `--log-driver json-file` (the default).
    JsonFile {
        /// `max-size`: the current file is rotated once it holds this many bytes.
        max_size: Option<u64>,
        /// `max-file`: files kept, the current one included (docker's default 1: the
        /// current file is truncated instead of rotated).
        max_file: u32,
    },
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig::JsonFile {
            max_size: None,
            max_file: 1,
        }
    }
}

/// How a container record keeps its log configuration: docker's `HostConfig.LogConfig`
/// (`{"Type": …, "Config": {…}}`), the options as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfigRecord {
    #[serde(rename = "Type", default)]
    pub driver: String,
    #[serde(rename = "Config", default)]
    pub options: std::collections::BTreeMap<String, String>,
}

impl LogConfig {
    /// The driver and `KEY=VALUE` options as given to `lb run`, checked as docker checks
    /// them; also the form kept in the container record.
    pub fn from_flags(driver: &str, opts: &[String]) -> Result<(LogConfig, LogConfigRecord)> {
        let mut record = LogConfigRecord {
            driver: driver.to_string(),
            options: Default::default(),
        };
        // docker's CLI refuses options for `none` before the daemon sees them.
        if driver == "none" && !opts.is_empty() {
            invalid!("invalid logging opts for driver none");
        }
        for o in opts {
            // A bare KEY is KEY with an empty value, as docker's CLI reads it.
            let (k, v) = o.split_once('=').unwrap_or((o, ""));
            record.options.insert(k.to_string(), v.to_string());
        }
        Ok((Self::from_record(Some(&record))?, record))
    }

    /// The configuration a container record keeps; a record without one (made before lb
    /// had log options) logs as docker's default.
    pub fn from_record(record: Option<&LogConfigRecord>) -> Result<LogConfig> {
        let Some(record) = record else {
            return Ok(LogConfig::default());
        };
        let opt = |k: &str| record.options.get(k).map(String::as_str);
        match record.driver.as_str() {
            // docker's `none` driver takes any options and ignores them.
            "none" => Ok(LogConfig::None),
            "json-file" | "" => {
                for key in record.options.keys() {
                    match key.as_str() {
                        "max-size" | "max-file" => {}
                        "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {
                            invalid!(
                                "log opt '{key}' of the json-file driver is not supported by lb"
                            )
                        }
                        _ => invalid!("unknown log opt '{key}' for json-file log driver"),
                    }
                }
                // The values are the driver's to read: docker says so when it starts it.
                let failed = |e: Error| {
                    Error::InvalidOption(format!("failed to initialize logging driver: {e}"))
                };
                let max_size = opt("max-size")
                    .map(parse_size)
                    .transpose()
                    .map_err(failed)?;
                let max_file = parse_max_file(opt("max-file")).map_err(failed)?;
                Ok(LogConfig::JsonFile { max_size, max_file })
            }
            other => invalid!("logger: no log driver named '{other}' is registered"),
        }
    }
}

/// `max-file` as docker's json-file driver reads it: a number of at least 1 (1 when not
/// given).
fn parse_max_file(s: Option<&str>) -> Result<u32> {
    let Some(s) = s else {
        return Ok(1);
    };
    let n: i64 = s.parse().map_err(|_| {
        Error::InvalidOption(format!("strconv.Atoi: parsing {s:?}: invalid syntax"))
    })?;
    if n < 1 {
        invalid!("max-file cannot be less than 1");
    }
    u32::try_from(n).map_err(|e| Error::InvalidOption(format!("max-file is too large: {e}")))
}

/// `max-size` as docker reads it (go-units `FromHumanSize`: decimal units, `10m` is
/// 10,000,000 bytes; `k`, `m`, `g`, `t`, `p` with an optional `i` and `b`).
fn parse_size(s: &str) -> Result<u64> {
    let invalid = || Error::InvalidOption(format!("invalid size: '{s}'"));
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let mut mul = 1f64;
    if let Some(&c) = chars.peek() {
        let m = match c.to_ascii_lowercase() {
            'k' => Some(1e3),
            'm' => Some(1e6),
            'g' => Some(1e9),
            't' => Some(1e12),
            'p' => Some(1e15),
            _ => None,
        };
        if let Some(m) = m {
            mul = m;
            chars.next();
        }
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() || num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(invalid());
    }
    let n: f64 = num.parse().map_err(|_| invalid())?;
    let size = (n * mul) as i64;
    if size <= 0 {
        invalid!("max-size must be a positive number");
    }
    Ok(size as u64)
}

/// The first newline in `bytes`.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// Now in RFC 3339 with nanoseconds, as docker stamps its entries (`RFC3339NanoFixed`).
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = lb_layerstore::rfc3339(now.as_secs() as i64);
    format!(
        "{}.{:09}Z",
        secs.strip_suffix('Z').unwrap_or(&secs),
        now.subsec_nanos()
    )
}

/// Appends one entry, `{"log":LINE[\n],"stream":STREAM,"time":TIME}` and a newline, escaped
/// as docker's jsonlog escapes (`<`, `>`, `&`, U+2028/9 and control characters as `\u…`,
/// each byte of invalid UTF-8 as `\ufffd`). A partial entry (`newline` false) has no
/// trailing `\n` in its `log`.
pub fn encode_entry(out: &mut Vec<u8>, line: &[u8], newline: bool, stream: &str, time: &str) {
    out.extend_from_slice(b"{\"log\":\"");
    escape(out, line);
    if newline {
        out.extend_from_slice(b"\\n");
    }
    out.extend_from_slice(b"\",\"stream\":\"");
    escape(out, stream.as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    escape(out, time.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Bytes that need more than copying: ASCII controls, `"`, `\`, `<`, `>`, `&`, and 0xE2
/// (the lead byte of U+2028/U+2029, checked further).
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in bytes.utf8_chunks() {
        let s = chunk.valid().as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if !SPECIAL[b as usize] {
                i += 1;
                continue;
            }
            if b == 0xE2 {
                // U+2028 and U+2029 are E2 80 A8 and E2 80 A9 (the chunk is valid UTF-8).
                if s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9) {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\u202");
                    out.push(HEX[(s[i + 2] & 0xF) as usize]);
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xF) as usize],
                ]),
            }
            i += 1;
            start = i;
        }
        out.extend_from_slice(&s[start..]);
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &[u8], newline: bool) -> String {
        let mut out = Vec::new();
        encode_entry(&mut out, line, newline, "stdout", "T");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn entries_are_escaped_as_dockers_jsonlog() {
        assert_eq!(
            entry(b"a\"b\\c\td<&>\r", true),
            "{\"log\":\"a\\\"b\\\\c\\u0009d\\u003c\\u0026\\u003e\\r\\n\",\"stream\":\"stdout\",\"time\":\"T\"}\n"
        );
        assert_eq!(
            entry("é\u{2028}€\u{2029}".as_bytes(), false),
            "{\"log\":\"é\\u2028€\\u2029\",\"stream\":\"stdout\",\"time\":\"T\"}\n"
        );
        // Each invalid byte is one replacement character, as Go's DecodeRune steps.
        assert_eq!(
            entry(b"x\xe2\x82\xffy\x00", false),
            "{\"log\":\"x\\ufffd\\ufffd\\ufffdy\\u0000\",\"stream\":\"stdout\",\"time\":\"T\"}\n"
        );
        // What is written parses back to the bytes (lossily for invalid UTF-8).
        let v: serde_json::Value = serde_json::from_str(&entry(b"<a>\x01\n", true)).unwrap();
        assert_eq!(v["log"], "<a>\x01\n\n");
    }

    #[test]
    fn sizes_and_options_as_docker_reads_them() {
        assert_eq!(parse_size("10m").unwrap(), 10_000_000);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("1KiB").unwrap(), 1000);
        assert_eq!(parse_size("1.5 MB").unwrap(), 1_500_000);
        assert_eq!(parse_size("300").unwrap(), 300);
        for bad in ["", "k", "10x", "1..2", "-1", "1mm"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(
            parse_size("0")
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (c, rec) =
            LogConfig::from_flags("json-file", &opts(&["max-size=1k", "max-file=3"])).unwrap();
        assert_eq!(
            c,
            LogConfig::JsonFile {
                max_size: Some(1000),
                max_file: 3
            }
        );
        assert_eq!(LogConfig::from_record(Some(&rec)).unwrap(), c);
        assert_eq!(LogConfig::from_record(None).unwrap(), LogConfig::default());
        // The record's form is docker's HostConfig.LogConfig, as lb's records hold it.
        let kept: LogConfigRecord = serde_json::from_str(
            r#"{"Type":"json-file","Config":{"max-size":"1k","max-file":"3"}}"#,
        )
        .unwrap();
        assert_eq!(kept, rec);
        assert_eq!(
            LogConfig::from_flags("none", &[]).unwrap().0,
            LogConfig::None
        );
        // docker's CLI refuses options for `none`; a bare key is a key (docker's words).
        assert_eq!(
            LogConfig::from_flags("none", &opts(&["max-size=1k"]))
                .unwrap_err()
                .to_string(),
            "invalid logging opts for driver none"
        );
        assert_eq!(
            LogConfig::from_flags("json-file", &opts(&["nokey"]))
                .unwrap_err()
                .to_string(),
            "unknown log opt 'nokey' for json-file log driver"
        );
        assert_eq!(
            LogConfig::from_flags("json-file", &opts(&["max-size=bad"]))
                .unwrap_err()
                .to_string(),
            "failed to initialize logging driver: invalid size: 'bad'"
        );
        for (driver, o, msg) in [
            ("json-file", "max-file=0", "max-file cannot be less than 1"),
            ("json-file", "nope=1", "unknown log opt 'nope'"),
            ("json-file", "max-size", "invalid size: ''"),
            ("syslog", "max-size=1k", "no log driver named 'syslog'"),
        ] {
            let e = LogConfig::from_flags(driver, &opts(&[o])).unwrap_err();
            assert!(format!("{e:#}").contains(msg), "{o}: {e:#}");
        }
    }
}
