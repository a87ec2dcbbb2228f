//! `logs`: a container's json-file entries written to the caller's stdout and stderr, the rotated
//! files first (oldest first), streamed: memory stays bounded however large the logs are
//! (`--tail` finds its start by reading the files backwards, as docker's tail reader).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LOG_FILE;

/// An entry longer than this is not one lb wrote (its largest is a 16 KiB line with every
/// byte escaped): skipped, not buffered.
const MAX_ENTRY: usize = 1024 * 1024;

#[derive(serde::Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// Writes the logs in `dir` to `stdout` and `stderr` (each entry to its stream's): the last
/// `tail` entries (all when None) and, with `running`, what comes after while it answers
/// true (the container runs), across rotations. A reader gone (a broken pipe) ends it.
pub fn show(
    dir: &Path,
    shown: &Shown,
    running: Option<&dyn Fn() -> bool>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> std::io::Result<()> {
    let mut out = Printer::new(shown, stdout, stderr);
    match show_inner(dir, shown.tail, running, &mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn show_inner(
    dir: &Path,
    tail: Option<usize>,
    running: Option<&dyn Fn() -> bool>,
    out: &mut Printer<'_>,
) -> std::io::Result<()> {
    let path = dir.join(LOG_FILE);
    // The current file first: a rotation meanwhile then shows an entry twice at worst.
    let current = File::open(&path).ok();
    let mut files: Vec<File> = rotated(dir)
        .iter()
        .filter_map(|p| File::open(p).ok())
        .collect();
    let has_current = current.is_some();
    files.extend(current);
    let (first, offset) = match tail {
        None => (0, 0),
        Some(n) => tail_start(&files, n)?,
    };
    let mut last = None;
    let count = files.len();
    for (i, f) in files.into_iter().enumerate().skip(first) {
        let mut lines = Lines::new(f, if i == first { offset } else { 0 })?;
        while let Some(l) = lines.next()? {
            out.entry(l)?;
        }
        if i + 1 == count && has_current {
            last = Some(lines);
        }
    }
    let Some(running) = running else {
        return Ok(());
    };
    out.flush()?;
    // Following: the current file from where it was left, reopened when rotated.
    loop {
        let live = running();
        let mut changed = false;
        match &mut last {
            Some(lines) => {
                while let Some(l) = lines.next()? {
                    out.entry(l)?;
                }
                match std::fs::metadata(&path) {
                    Ok(m) if m.ino() == lines.ino && m.dev() == lines.dev => {
                        if m.len() < lines.pos {
                            // Truncated in place (max-file 1): from the start again.
                            lines.restart()?;
                            changed = true;
                        }
                    }
                    // Rotated (renamed away, a new file made): what the old one held is
                    // read, so on to the new one.
                    Ok(_) => {
                        if let Ok(f) = File::open(&path) {
                            last = Some(Lines::new(f, 0)?);
                            changed = true;
                        }
                    }
                    Err(_) => {}
                }
            }
            None => {
                if let Ok(f) = File::open(&path) {
                    last = Some(Lines::new(f, 0)?);
                    changed = true;
                }
            }
        }
        if changed {
            continue;
        }
        out.flush()?;
        if !live {
            // The monitor records the exit after its last write: all has been read.
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rotated files in `dir`, oldest (highest number) first.
fn rotated(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{LOG_FILE}.");
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Where the last `n` entries of `files` (oldest first) start: a file's index and an offset
/// in it. Reads backwards block by block, counting newlines.
fn tail_start(files: &[File], n: usize) -> std::io::Result<(usize, u64)> {
    const BLOCK: u64 = 64 * 1024;
    let mut want = n;
    let mut buf = vec![0u8; BLOCK as usize];
    for (i, f) in files.iter().enumerate().rev() {
        let mut end = f.metadata()?.len();
        // The start is just after the (want+1)-th newline from the end (the entry before
        // the ones wanted ends there); a trailing piece being written is no entry.
        let mut seen = 0;
        while end > 0 {
            let start = end.saturating_sub(BLOCK);
            let block = &mut buf[..(end - start) as usize];
            f.read_exact_at(block, start)?;
            for (k, _) in block.iter().enumerate().rev().filter(|(_, b)| **b == b'\n') {
                seen += 1;
                if seen == want + 1 {
                    return Ok((i, start + k as u64 + 1));
                }
            }
            end = start;
        }
        want -= seen.min(want);
    }
    Ok((0, 0))
}

/// A file's complete lines, one at a time; a line still being written stays buffered (up
/// to `MAX_ENTRY`) until its end arrives.
struct Lines {
    reader: BufReader<File>,
    line: Vec<u8>,
    complete: bool,
    skipping: bool,
    /// Bytes consumed from the file.
    pos: u64,
    ino: u64,
    dev: u64,
}

impl Lines {
    fn new(mut file: File, offset: u64) -> std::io::Result<Lines> {
        let m = file.metadata()?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Lines {
            reader: BufReader::with_capacity(64 * 1024, file),
            line: Vec::new(),
            complete: false,
            skipping: false,
            pos: offset,
            ino: m.ino(),
            dev: m.dev(),
        })
    }

    fn restart(&mut self) -> std::io::Result<()> {
        self.reader.seek(SeekFrom::Start(0))?;
        self.line.clear();
        self.complete = false;
        self.skipping = false;
        self.pos = 0;
        Ok(())
    }

    /// The next complete line (with its newline), or None at the end of the file for now.
    fn next(&mut self) -> std::io::Result<Option<&[u8]>> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        loop {
            let avail = self.reader.fill_buf()?;
            if avail.is_empty() {
                return Ok(None);
            }
            let (take, found) = match super::find_newline(avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if !self.skipping {
                self.line.extend_from_slice(&avail[..take]);
                if self.line.len() > MAX_ENTRY {
                    self.line.clear();
                    self.skipping = true;
                }
            }
            self.reader.consume(take);
            self.pos += take as u64;
            if found {
                if self.skipping {
                    self.skipping = false;
                    self.line.clear();
                    continue;
                }
                self.complete = true;
                return Ok(Some(&self.line));
            }
        }
    }
}

/// Which entries `show` shows, and how.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// The last this many; all when none.
    pub tail: Option<usize>,
    /// Each line after its entry's RFC 3339 time.
    pub timestamps: bool,
    /// Only entries of these times and between (nanoseconds since the epoch).
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// An entry's time (`2026-12-07T21:24:41.123456789Z`) in nanoseconds since the epoch.
fn entry_nanos(time: &str) -> Option<i64> {
    let (whole, frac) = match time.split_once('.') {
        Some((w, f)) => (format!("{w}Z"), f.trim_end_matches('Z')),
        None => (time.to_string(), ""),
    };
    let secs = lb_layerstore::parse_rfc3339(&whole)?;
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos: i64 = format!("{digits:0<9}").parse().ok()?;
    Some(secs * 1_000_000_000 + nanos)
}

/// Entries to lb's stdout or stderr (as their stream), buffered; the other stream is
/// flushed first when the stream changes, so their order holds on a shared terminal.
struct Printer<'w> {
    timestamps: bool,
    since: Option<i64>,
    until: Option<i64>,
    stdout: std::io::BufWriter<&'w mut dyn Write>,
    stderr: std::io::BufWriter<&'w mut dyn Write>,
    last_err: bool,
}

impl<'w> Printer<'w> {
    fn new(shown: &Shown, stdout: &'w mut dyn Write, stderr: &'w mut dyn Write) -> Printer<'w> {
        Printer {
            timestamps: shown.timestamps,
            since: shown.since,
            until: shown.until,
            stdout: std::io::BufWriter::with_capacity(64 * 1024, stdout),
            stderr: std::io::BufWriter::with_capacity(64 * 1024, stderr),
            last_err: false,
        }
    }

    fn entry(&mut self, line: &[u8]) -> std::io::Result<()> {
        let Ok(e) = serde_json::from_slice::<Entry>(line) else {
            return Ok(());
        };
        if self.since.is_some() || self.until.is_some() {
            let t = entry_nanos(&e.time).unwrap_or(0);
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return Ok(());
            }
        }
        let err = e.stream == "stderr";
        if err != self.last_err {
            self.flush()?;
            self.last_err = err;
        }
        let w: &mut dyn Write = if err {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        if self.timestamps {
            w.write_all(e.time.as_bytes())?;
            w.write_all(b" ")?;
        }
        w.write_all(e.log.as_bytes())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdout.flush()?;
        self.stderr.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_entries(path: &Path, from: usize, to: usize) {
        let mut out = Vec::new();
        for i in from..to {
            super::super::encode_entry(&mut out, format!("{i}").as_bytes(), true, "stdout", "t");
        }
        std::fs::write(path, out).unwrap();
    }

    /// The entries `tail` finds, read as `show` reads them.
    fn tail(dir: &Path, n: Option<usize>) -> Vec<String> {
        let mut files: Vec<File> = rotated(dir)
            .iter()
            .map(|p| File::open(p).unwrap())
            .collect();
        files.extend(File::open(dir.join(LOG_FILE)).ok());
        let (first, offset) = n.map_or(Ok((0, 0)), |n| tail_start(&files, n)).unwrap();
        let mut got = Vec::new();
        for (i, f) in files.into_iter().enumerate().skip(first) {
            let mut lines = Lines::new(f, if i == first { offset } else { 0 }).unwrap();
            while let Some(l) = lines.next().unwrap() {
                let e: Entry = serde_json::from_slice(l).unwrap();
                got.push(e.log.trim_end().to_string());
            }
        }
        got
    }

    #[test]
    fn tail_reads_rotated_files_oldest_first_and_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_entries(&d.join("log.json.10"), 0, 5000);
        write_entries(&d.join("log.json.2"), 5000, 5003);
        write_entries(&d.join("log.json.1"), 5003, 5004);
        write_entries(&d.join(LOG_FILE), 5004, 5006);
        std::fs::write(d.join("log.json.x"), "not a log").unwrap();
        let all: Vec<String> = (0..5006).map(|i| i.to_string()).collect();
        assert_eq!(tail(d, None), all);
        for n in [0, 1, 2, 3, 6, 7, 4000, 5006, 9999] {
            let want = &all[all.len().saturating_sub(n)..];
            assert_eq!(tail(d, Some(n)), want, "--tail {n}");
        }
        // A piece of an entry being written is not counted, nor shown.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(LOG_FILE))
            .unwrap();
        f.write_all(b"{\"log\":\"half").unwrap();
        assert_eq!(tail(d, Some(2)), ["5004", "5005"]);
    }
}
