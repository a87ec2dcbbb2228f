//! A blob's temporary file written on a thread of its own, with `O_DIRECT` where the file
//! system takes it. A layer of hundreds of megabytes is otherwise copied into the page
//! cache by the thread that also reads the upper directory and hashes the tar: measured
//! here, that copy cost as much as the rest of a commit together (fresh page-cache pages
//! are slow to come by in this VM). With the write on another thread, reading, hashing and
//! writing overlap; with `O_DIRECT` the bytes go from our buffer to the disk, with no
//! page-cache copy at all. File systems without `O_DIRECT` (tmpfs) get plain writes.

use std::alloc::{Layout, alloc, dealloc};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes per write: a multiple of every logical block size `O_DIRECT` asks alignment to.
const CHUNK: usize = 1 << 20;
const ALIGN: usize = 4096;
/// Chunks in flight between the producer and the writing thread.
const DEPTH: usize = 4;

/// A `CHUNK`-byte buffer aligned for `O_DIRECT`.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is owned memory passed between threads by value, never shared.
unsafe impl Send for Aligned {}

impl Aligned {
    fn new() -> Aligned {
        let layout = Layout::from_size_align(CHUNK, ALIGN).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Aligned { ptr, len: 0 }
    }

    fn spare(&mut self) -> &mut [u8] {
        // SAFETY: ptr holds CHUNK bytes, len <= CHUNK.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(self.len), CHUNK - self.len) }
    }

    fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: n <= CHUNK; bytes past len are initialised by the caller (zeroed pad).
        unsafe { std::slice::from_raw_parts(self.ptr, n) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe {
            dealloc(
                self.ptr,
                Layout::from_size_align(CHUNK, ALIGN).expect("layout"),
            )
        }
    }
}

/// Writes to a file on a thread; [`Spool::finish`] waits for it and leaves the file
/// exactly as long as what was written, its data synced.
pub struct Spool {
    buf: Option<Aligned>,
    full: Option<SyncSender<Aligned>>,
    empty: Receiver<Aligned>,
    writer: Option<JoinHandle<io::Result<()>>>,
    /// What the writing thread failed with, once it has.
    failed: Option<io::Error>,
    written: u64,
}

impl Spool {
    /// Spools into `file` (opened for writing, empty), reopening `path` (the same file)
    /// with `O_DIRECT` when the file system allows.
    pub fn new(file: &File, path: &std::path::Path) -> io::Result<Spool> {
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        let (out, is_direct) = match direct {
            Ok(f) => (f, true),
            Err(_) => (file.try_clone()?, false),
        };
        let (full_tx, full_rx) = sync_channel::<Aligned>(DEPTH);
        let (empty_tx, empty_rx) = sync_channel::<Aligned>(DEPTH + 2);
        for _ in 0..DEPTH + 1 {
            empty_tx.send(Aligned::new()).expect("fresh channel");
        }
        let writer = std::thread::spawn(move || write_chunks(out, is_direct, full_rx, empty_tx));
        Ok(Spool {
            buf: Some(Aligned::new()),
            full: Some(full_tx),
            empty: empty_rx,
            writer: Some(writer),
            failed: None,
            written: 0,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.full.is_none() {
            return Err(self.failure());
        }
        let Ok(next) = self.empty.recv() else {
            return Err(self.writer_error());
        };
        let Some(done) = self.buf.replace(next) else {
            return Err(io::Error::other("the blob spool lost its buffer"));
        };
        match self.full.as_ref().map(|f| f.send(done)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.writer_error()),
        }
    }

    /// The writing thread stopped early: its error (remembered: every later write gets it
    /// again, never a panic).
    fn writer_error(&mut self) -> io::Error {
        self.full = None;
        let Some(writer) = self.writer.take() else {
            return self.failure();
        };
        let e = match writer.join() {
            Ok(Err(e)) => e,
            Ok(Ok(())) => io::Error::other("the blob writer thread stopped"),
            Err(_) => io::Error::other("the blob writer thread panicked"),
        };
        self.failed = Some(copy_of(&e));
        e
    }

    /// The error the writing thread stopped with, again.
    fn failure(&self) -> io::Error {
        self.failed
            .as_ref()
            .map(copy_of)
            .unwrap_or_else(|| io::Error::other("the blob writer thread stopped"))
    }

    /// Waits for every byte to be written, sets the file's length and syncs its data.
    pub fn finish(mut self, file: &File) -> io::Result<u64> {
        if self.buf.as_ref().is_some_and(|b| b.len > 0) {
            self.send()?;
        }
        self.full = None; // the writer sees the end of the stream
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(r)) => r?,
            Some(Err(_)) => return Err(io::Error::other("the blob writer thread panicked")),
            None => return Err(self.failure()),
        }
        // The last chunk was padded to the alignment: cut the file to what was written.
        file.set_len(self.written)?;
        file.sync_all()?;
        Ok(self.written)
    }
}

/// An `io::Error` like `e` (which is not `Clone`): the same OS error, or kind and text.
fn copy_of(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The writing thread: each full buffer at its offset (the last one padded with zeros to
/// the alignment), then back to the producer.
fn write_chunks(
    out: File,
    direct: bool,
    full: Receiver<Aligned>,
    empty: SyncSender<Aligned>,
) -> io::Result<()> {
    let mut offset = 0u64;
    while let Ok(mut buf) = full.recv() {
        let len = buf.len;
        let n = if direct && len % ALIGN != 0 {
            let padded = len.div_ceil(ALIGN) * ALIGN;
            buf.spare()[..padded - len].fill(0);
            padded
        } else {
            len
        };
        out.write_all_at(buf.bytes(n), offset)?;
        offset += len as u64;
        buf.len = 0;
        let _ = empty.send(buf);
    }
    Ok(())
}

impl Write for Spool {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(buf) = self.buf.as_mut() else {
            return Err(io::Error::other("the blob spool lost its buffer"));
        };
        let spare = buf.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        buf.len += n;
        self.written += n as u64;
        if buf.len == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.full = None;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_bytes_land_in_order_with_the_exact_length() {
        for size in [0usize, 1, 4095, 4096, CHUNK - 1, CHUNK, 3 * CHUNK + 517] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("blob");
            let file = File::create(&path).unwrap();
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut s = Spool::new(&file, &path).unwrap();
            // Uneven writes, as a tar writer makes them.
            for part in data.chunks(1000) {
                s.write_all(part).unwrap();
            }
            assert_eq!(s.finish(&file).unwrap(), size as u64);
            assert_eq!(std::fs::read(&path).unwrap(), data, "size {size}");
        }
    }

    #[test]
    fn a_full_disk_is_an_error_on_every_write_and_at_the_end_never_a_panic() {
        // /dev/full: every write fails with ENOSPC (and it takes no O_DIRECT).
        let path = std::path::Path::new("/dev/full");
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
            return;
        };
        let mut s = Spool::new(&file, path).unwrap();
        let data = vec![7u8; 64 << 10];
        let mut errors = 0;
        for _ in 0..(12 * CHUNK / data.len()) {
            if let Err(e) = s.write_all(&data) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                errors += 1;
            }
        }
        assert!(errors > 0);
        let e = s.finish(&file).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    }
}
