//! The monitor's side: a detached container's output streams into json-file entries.
//!
//! Memory is bounded whatever the container writes: one read buffer, at most `MAX_LINE`
//! pending bytes per stream (a longer line is cut into partial entries, as docker's
//! copier cuts it), and a batch of encoded entries written with one `write` once a read
//! batch is done (or the batch is large). Only new bytes are searched for newlines. Reads
//! are non-blocking and a stream gets a bounded number of them per turn, so a flooding
//! stream neither starves the other nor keeps the monitor from writing.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::PollFlags;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{LOG_FILE, LogConfig, MAX_LINE, encode_entry, timestamp};

/// One read's size: a pipe's worth of data and more.
const READ_SIZE: usize = 256 * 1024;
/// Reads of one stream per turn before the other gets its go and the batch is written.
const READS_PER_TURN: usize = 4;
/// A batch this large is written at once.
const BATCH: usize = 512 * 1024;
/// The pipes' capacity (F_SETPIPE_SZ): a flooding writer fills more per wake-up of the
/// monitor. The pages are the writer's (the container's memory cgroup).
const PIPE_SIZE: i32 = 1024 * 1024;

/// Who else reads a container's output as it is copied (an attached terminal), with
/// descriptors of its own polled beside the streams: the copy's loop is the monitor's only
/// one.
pub trait Tee {
    /// The descriptors to poll, and for what.
    fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)>;
    /// What a poll found on them, in `poll_fds`' order.
    fn ready(&mut self, revents: &[PollFlags]);
    /// Bytes the container wrote to `stream` ("stdout" or "stderr"); false when the
    /// stream is to be read no more (its reader is gone: the container's next write to
    /// it fails, as it would have on the reader's own pipe).
    fn output(&mut self, stream: &'static str, data: &[u8]) -> bool;
}

/// A tee that writes each stream on to a writer of its own (a foreground run's terminal,
/// while the log keeps it too); a stream without one is only logged (`run -a`).
pub struct Echo {
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

impl Tee for Echo {
    fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        Vec::new()
    }

    fn ready(&mut self, _: &[PollFlags]) {}

    fn output(&mut self, stream: &'static str, data: &[u8]) -> bool {
        let to = if stream == "stderr" {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        match to {
            Some(f) => f.write_all(data).is_ok(),
            None => true,
        }
    }
}

/// Copies the container's output `streams` (read ends, and "stdout"/"stderr") into the
/// logs in `dir` as `config` says, and to `tee`, until every stream is closed (EOF, or EIO
/// from a pty's master once the container's side is gone). A failing write drops entries
/// (as docker drops them), never blocks the container.
pub fn copy(
    dir: &Path,
    config: &LogConfig,
    streams: Vec<(OwnedFd, &'static str)>,
    mut tee: Option<&mut dyn Tee>,
) {
    // Without a file (driver none, or it cannot be opened) the streams are still drained:
    // a container must not block on a full pipe.
    let mut sink = open_sink(dir, config);
    let mut streams: Vec<Stream> = streams
        .into_iter()
        .map(|(fd, name)| {
            set_nonblocking(&fd);
            // SAFETY: F_SETPIPE_SZ on a descriptor this function owns (fails harmlessly on
            // a pty).
            unsafe {
                libc::fcntl(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    libc::F_SETPIPE_SZ,
                    PIPE_SIZE,
                )
            };
            Stream {
                file: File::from(fd),
                line: Line::new(name),
                closed: false,
            }
        })
        .collect();
    let mut buf = vec![0u8; READ_SIZE];
    while !streams.is_empty() {
        match wait_readable(&streams, tee.as_deref()) {
            Some(revents) => {
                if let Some(t) = tee.as_deref_mut() {
                    t.ready(&revents);
                }
            }
            None => continue,
        }
        for s in &mut streams {
            for _ in 0..READS_PER_TURN {
                match s.file.read(&mut buf) {
                    Ok(0) => s.closed = true,
                    Ok(n) => {
                        if let Some(t) = tee.as_deref_mut()
                            && !t.output(s.line.name, &buf[..n])
                        {
                            s.closed = true;
                        }
                        if let Some(sink) = &mut sink {
                            s.line.feed(&buf[..n], &timestamp(), sink);
                        }
                        if n < buf.len() || s.closed {
                            break;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO: a pty whose other side is closed; anything else ends it too.
                    Err(_) => s.closed = true,
                }
                break;
            }
            if let (true, Some(sink)) = (s.closed, &mut sink) {
                s.line.finish(sink);
            }
        }
        streams.retain(|s| !s.closed);
        if let Some(sink) = &mut sink {
            sink.flush();
        }
    }
}

/// The log file in `dir` as `config` says: none with the none driver, or when it cannot be
/// opened (then nothing is logged).
fn open_sink(dir: &Path, config: &LogConfig) -> Option<LogFile> {
    match config {
        LogConfig::None => None,
        LogConfig::JsonFile { max_size, max_file } => {
            LogFile::open(dir.join(LOG_FILE), *max_size, *max_file).ok()
        }
    }
}

/// Blocks until a stream can be read (or has closed) or the tee has work; what the poll
/// found on the tee's descriptors, or none when it failed (EINTR).
fn wait_readable(streams: &[Stream], tee: Option<&dyn Tee>) -> Option<Vec<PollFlags>> {
    use nix::poll::{PollFd, PollTimeout, poll};
    let mut fds: Vec<PollFd> = streams
        .iter()
        .map(|s| PollFd::new(s.file.as_fd(), PollFlags::POLLIN))
        .collect();
    let tee_fds = tee.map(|t| t.poll_fds()).unwrap_or_default();
    fds.extend(tee_fds.iter().map(|(fd, flags)| PollFd::new(*fd, *flags)));
    poll(&mut fds, PollTimeout::NONE).ok()?;
    Some(
        fds[streams.len()..]
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect(),
    )
}

fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        );
    }
}

/// One output stream being read.
struct Stream {
    file: File,
    line: Line,
    closed: bool,
}

/// A stream's current line, cut into entries.
struct Line {
    name: &'static str,
    /// The current line's bytes so far: fewer than `MAX_LINE`.
    pending: Vec<u8>,
    /// The first partial entry's time: the line's later pieces carry it too (docker's).
    partial_time: Option<String>,
}

/// A log written from bytes handed to it, one stream's (a foreground terminal's output,
/// which lb relays itself); what is pending is logged when it is dropped.
pub struct Writer {
    sink: Option<LogFile>,
    line: Line,
}

impl Writer {
    /// The log in `dir` as `config` says (none with the none driver, or when it cannot be
    /// opened: then nothing is logged), for `stream`'s bytes.
    pub fn open(dir: &Path, config: &LogConfig, stream: &'static str) -> Writer {
        Writer {
            sink: open_sink(dir, config),
            line: Line::new(stream),
        }
    }

    /// Logs the whole lines of `data` (and keeps the rest for the next call).
    pub fn write(&mut self, data: &[u8]) {
        if let Some(sink) = &mut self.sink {
            self.line.feed(data, &timestamp(), sink);
            sink.flush();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(sink) = &mut self.sink {
            self.line.finish(sink);
            sink.flush();
        }
    }
}

impl Line {
    fn new(name: &'static str) -> Line {
        Line {
            name,
            pending: Vec::with_capacity(MAX_LINE),
            partial_time: None,
        }
    }

    /// Logs the complete lines and full 16 KiB pieces in `pending` + `data`, keeping the
    /// rest pending. Each byte is looked at once.
    fn feed(&mut self, mut data: &[u8], now: &str, sink: &mut LogFile) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let look = &data[..data.len().min(room)];
            match super::find_newline(look) {
                Some(q) => {
                    let time = self.partial_time.take();
                    let time = time.as_deref().unwrap_or(now);
                    if self.pending.is_empty() {
                        sink.entry(self.name, &look[..q], true, time);
                    } else {
                        self.pending.extend_from_slice(&look[..q]);
                        sink.entry(self.name, &self.pending, true, time);
                        self.pending.clear();
                    }
                    data = &data[q + 1..];
                }
                None => {
                    if self.pending.is_empty() && look.len() == MAX_LINE {
                        let time = self.partial_time.get_or_insert_with(|| now.to_string());
                        sink.entry(self.name, look, false, time);
                    } else {
                        self.pending.extend_from_slice(look);
                        if self.pending.len() == MAX_LINE {
                            let time = self.partial_time.get_or_insert_with(|| now.to_string());
                            sink.entry(self.name, &self.pending, false, time);
                            self.pending.clear();
                        }
                    }
                    data = &data[look.len()..];
                }
            }
        }
    }

    /// At the stream's end, what is pending is logged as a partial entry (docker's).
    fn finish(&mut self, sink: &mut LogFile) {
        if !self.pending.is_empty() {
            let time = self.partial_time.take().unwrap_or_else(timestamp);
            sink.entry(self.name, &self.pending, false, &time);
            self.pending.clear();
        }
    }
}

/// `log.json` and its rotation (docker's loggerutils.LogFile): once the current file holds
/// `max_size` bytes, the next entry goes to a new one; with `max_file` > 1 the full one is
/// kept as `log.json.1` (older ones shifted up, the oldest beyond `max_file - 1` removed),
/// else it is truncated.
///
/// A batch that cannot be written (a full disk) is dropped whole: the file is cut back to
/// its last whole entry, so no torn line is ever left for `lb logs`. The first drop says
/// so in the log itself, in the room a small reserve file kept for it
/// ([`RESERVE_FILE`], given up then); writing resumes once the reserve can be made again,
/// its first write counting what was dropped: the container runs on and `lb logs` tells
/// why lines are missing.
struct LogFile {
    path: PathBuf,
    file: File,
    /// The current file's size with the batch not yet written.
    size: u64,
    /// The current file's length up to its last whole entry.
    written: u64,
    max_size: Option<u64>,
    max_file: u32,
    batch: Vec<u8>,
    /// Entries dropped since the log last said so (while not 0, entries are dropped).
    dropped: u64,
}

/// Room kept beside the log for the notice that entries are being dropped.
pub(crate) const RESERVE_FILE: &str = "log.reserve";
const RESERVE: i64 = 64 * 1024;
/// Free bytes that end dropping: a reserve and a few batches.
const RESUME_ROOM: u64 = 4 * BATCH as u64;

impl LogFile {
    fn open(path: PathBuf, max_size: Option<u64>, max_file: u32) -> std::io::Result<LogFile> {
        let file = Self::create(&path, false)?;
        let len = file.metadata()?.len();
        let log = LogFile {
            size: len,
            written: len,
            path,
            file,
            max_size,
            max_file,
            batch: Vec::with_capacity(BATCH + 2 * 6 * MAX_LINE),
            dropped: 0,
        };
        log.keep_reserve();
        Ok(log)
    }

    fn reserve_path(&self) -> PathBuf {
        self.path.with_file_name(RESERVE_FILE)
    }

    /// Makes the reserve (blocks allocated, not a sparse file) where it is missing;
    /// whether it is there whole.
    fn keep_reserve(&self) -> bool {
        let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.reserve_path())
        else {
            return false;
        };
        f.metadata().is_ok_and(|m| m.len() >= RESERVE as u64)
            || nix::fcntl::posix_fallocate(f.as_fd(), 0, RESERVE).is_ok()
    }

    fn create(path: &Path, truncate: bool) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(!truncate)
            .write(true)
            .truncate(truncate)
            .mode(0o640)
            .open(path)
    }

    fn entry(&mut self, stream: &str, line: &[u8], newline: bool, time: &str) {
        if self.max_size.is_some_and(|max| self.size >= max) {
            self.flush();
            self.rotate();
        }
        let before = self.batch.len();
        encode_entry(&mut self.batch, line, newline, stream, time);
        self.size += (self.batch.len() - before) as u64;
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.dropped > 0 {
            // Dropping: resumed only once there is room again (what freed a few blocks
            // would fill at once) and the reserve can be made again, with the count of
            // what was dropped in the same write as what comes next.
            if self.room_again() && self.keep_reserve() {
                let mut out = Vec::with_capacity(batch.len() + 128);
                let text = format!(
                    "lb: {} log entries were dropped: no space left on device\n",
                    self.dropped
                );
                encode_entry(&mut out, text.as_bytes(), false, "stderr", &timestamp());
                out.extend_from_slice(&batch);
                if self.write_whole(&out) {
                    self.dropped = 0;
                    self.done_with(batch);
                    return;
                }
            }
            self.drop_batch(batch);
            return;
        }
        if self.write_whole(&batch) {
            self.done_with(batch);
            return;
        }
        self.drop_batch(batch);
        // The reserve's room for the notice.
        let _ = std::fs::remove_file(self.reserve_path());
        let mut notice = Vec::new();
        let text = "lb: no space left on device: log entries are being dropped; \
                    the container runs on\n";
        encode_entry(&mut notice, text.as_bytes(), false, "stderr", &timestamp());
        self.write_whole(&notice);
        self.size = self.written;
    }

    /// Writes `bytes` whole at the end of the file, or cuts the file back to its last
    /// whole entry and says false.
    fn write_whole(&mut self, bytes: &[u8]) -> bool {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                true
            }
            Err(_) => {
                let _ = self.file.set_len(self.written);
                false
            }
        }
    }

    /// The batch buffer back, empty, after its entries were written.
    fn done_with(&mut self, mut batch: Vec<u8>) {
        batch.clear();
        self.batch = batch;
        self.size = self.written;
    }

    /// Whether the log's file system has room for writing to resume.
    fn room_again(&self) -> bool {
        nix::sys::statvfs::fstatvfs(&self.file)
            .is_ok_and(|st| st.blocks_available() * st.fragment_size() >= RESUME_ROOM)
    }

    /// Counts the batch's entries as dropped and forgets them.
    fn drop_batch(&mut self, batch: Vec<u8>) {
        self.dropped += batch.iter().filter(|b| **b == b'\n').count() as u64;
        self.done_with(batch);
    }

    fn rotate(&mut self) {
        if self.max_file > 1 {
            let name = |i: u32| {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{i}"));
                PathBuf::from(p)
            };
            let _ = std::fs::remove_file(name(self.max_file - 1));
            for i in (2..self.max_file).rev() {
                let _ = std::fs::rename(name(i - 1), name(i));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        if let Ok(f) = Self::create(&self.path, true) {
            self.file = f;
        }
        self.size = 0;
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Feeds `chunks` through a stream as reads would bring them; the entries' logs.
    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LogFile::open(dir.path().join(LOG_FILE), None, 1).unwrap();
        let mut s = Line::new("stdout");
        for (i, c) in chunks.iter().enumerate() {
            s.feed(c, &format!("t{i}"), &mut sink);
        }
        s.finish(&mut sink);
        sink.flush();
        entries(dir.path(), LOG_FILE)
            .iter()
            .map(|e| {
                format!(
                    "{}@{}",
                    e["log"].as_str().unwrap(),
                    e["time"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn lines_are_cut_at_16k_as_dockers_copier_cuts_them() {
        let a = "a".repeat(MAX_LINE);
        // Lines, a line across reads, and a trailing piece without a newline (logged at
        // the end, stamped then).
        let got = split(&[b"one\ntw", b"o\nthr", b"ee"]);
        assert_eq!(got[..2], ["one\n@t0", "two\n@t1"]);
        assert!(got[2].starts_with("three@20"), "{got:?}");
        assert_eq!(got.len(), 3);
        // Exactly 16 KiB and a newline: a full partial piece, then an empty last piece.
        let mut line = a.clone().into_bytes();
        line.push(b'\n');
        assert_eq!(split(&[&line]), [format!("{a}@t0"), "\n@t0".to_string()]);
        // 40 KiB across reads of odd sizes: pieces of 16 KiB, 16 KiB, the rest with the
        // newline, all with the time the first piece was cut (when the third read filled
        // it); the next line has its own.
        let long = "b".repeat(40 * 1024);
        let text = format!("{long}\nnext\n");
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(7000).collect();
        let got = split(&chunks);
        assert_eq!(
            got.len(),
            4,
            "{:?}",
            got.iter().map(|g| g.len()).collect::<Vec<_>>()
        );
        assert_eq!(got[0], format!("{}@t2", &long[..MAX_LINE]));
        assert_eq!(got[1], format!("{}@t2", &long[..MAX_LINE]));
        assert_eq!(got[2], format!("{}\n@t2", &long[2 * MAX_LINE..]));
        assert_eq!(got[3], "next\n@t5");
    }

    #[test]
    fn rotation_keeps_max_file_files_of_about_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let mut sink = LogFile::open(path.clone(), Some(1000), 3).unwrap();
        for i in 0..100 {
            sink.entry("stdout", format!("line {i:03}").as_bytes(), true, "t");
            if i % 7 == 0 {
                sink.flush();
            }
        }
        sink.flush();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["log.json", "log.json.1", "log.json.2", RESERVE_FILE]
        );
        let mut all = Vec::new();
        for n in ["log.json.2", "log.json.1", "log.json"] {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            // One entry past max-size at most (docker checks before each write).
            assert!(len < 1100, "{n}: {len}");
            all.extend(entries(dir.path(), n));
        }
        let logs: Vec<&str> = all.iter().map(|e| e["log"].as_str().unwrap()).collect();
        assert_eq!(*logs.last().unwrap(), "line 099\n");
        // In order, with nothing lost within the files kept.
        let first: usize = logs[0][5..8].parse().unwrap();
        for (k, l) in logs.iter().enumerate() {
            assert_eq!(*l, format!("line {:03}\n", first + k));
        }
        // Reopened (lb start), it goes on from the current file's size.
        let before = std::fs::metadata(&path).unwrap().len();
        let mut again = LogFile::open(path.clone(), Some(1000), 3).unwrap();
        assert_eq!(again.size, before);
        again.entry("stderr", b"more", true, "t");
        again.flush();
        assert_eq!(
            entries(dir.path(), LOG_FILE).last().unwrap()["stream"],
            "stderr"
        );
    }
}
