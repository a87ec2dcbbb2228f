//! Parallel gzip (the pigz scheme): the stream is cut into 1 MiB chunks, each deflated on its
//! own core with the previous chunk's last 32 KiB as dictionary and ended with a sync flush,
//! so the pieces concatenate into one ordinary deflate stream inside one gzip member. The
//! output depends only on the level and the chunk size, never on the number of threads, so
//! layers stay reproducible.
//!
//! Each chunk becomes a job on rayon's pool the moment it is full, and the writer keeps a
//! window of jobs in flight: the cores never wait for a whole batch to end, which is where
//! a batch-at-a-time scheme loses its last few percent.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, sync_channel};

use flate2::{Compress, Compression, FlushCompress};

const CHUNK: usize = 1 << 20;
const DICT: usize = 32 * 1024;

/// The compressed form of one chunk and the crc32 of its input, once a worker is done.
type Pending = Receiver<io::Result<(Vec<u8>, crc32fast::Hasher)>>;

/// A gzip encoder that compresses chunks in parallel, in order.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    /// Input not yet handed to a worker, less than one chunk.
    pending: Vec<u8>,
    /// The last 32 KiB of the chunk handed over last: the next chunk's dictionary.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    /// Jobs handed over, oldest first; at most `window` of them.
    inflight: VecDeque<Pending>,
    window: usize,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut out: W, level: u32) -> io::Result<Self> {
        // Header: deflate, no name, mtime 0, OS unknown (reproducible, like `gzip -n`).
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        Ok(ParallelGzip {
            out,
            level,
            pending: Vec::with_capacity(CHUNK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            inflight: VecDeque::new(),
            // Enough queued work that no core idles while the caller produces the next chunk.
            window: 2 * rayon::current_num_threads().max(1) + 2,
        })
    }

    /// Hands the pending chunk to a worker; `last` ends the deflate stream.
    fn hand_over(&mut self, last: bool) -> io::Result<()> {
        while self.inflight.len() >= self.window {
            self.collect_oldest()?;
        }
        let data = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.size += data.len() as u64;
        let dict = std::mem::replace(
            &mut self.dict,
            data[data.len().saturating_sub(DICT)..].to_vec(),
        );
        let level = self.level;
        let (tx, rx) = sync_channel(1);
        rayon::spawn(move || {
            let result = deflate_chunk(&data, &dict, level, last).map(|out| {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&data);
                (out, crc)
            });
            let _ = tx.send(result);
        });
        self.inflight.push_back(rx);
        Ok(())
    }

    /// Waits for the oldest job and writes its output.
    fn collect_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.inflight.pop_front() {
            let (out, crc) = rx
                .recv()
                .map_err(|_| io::Error::other("gzip worker died"))??;
            self.crc.combine(&crc);
            self.out.write_all(&out)?;
        }
        Ok(())
    }

    /// Ends the stream (last block, crc32, size) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.hand_over(true)?;
        while !self.inflight.is_empty() {
            self.collect_oldest()?;
        }
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn deflate_chunk(input: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == input.len();
        let has_room = out.capacity() > out.len();
        match status {
            flate2::Status::StreamEnd => break,
            _ if done_input && has_room && !last => break,
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.hand_over(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunk boundaries must not depend on when callers flush: nothing to do here.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8]) {
        let mut gz = ParallelGzip::new(Vec::new(), 6).unwrap();
        // Odd write sizes, to cross chunk boundaries anywhere.
        for piece in data.chunks(77_777) {
            gz.write_all(piece).unwrap();
        }
        let out = gz.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn decodes_to_the_input() {
        roundtrip(b"");
        roundtrip(b"hello");
        let mut text = Vec::new();
        for i in 0..400_000u32 {
            text.extend_from_slice(format!("line {i} of a repetitive layer\n").as_bytes());
        }
        roundtrip(&text); // ~12 MiB: several batches
        let mut state = 1u64;
        let random: Vec<u8> = (0..5_000_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect();
        roundtrip(&random);
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut a = ParallelGzip::new(Vec::new(), 6).unwrap();
        a.write_all(&data).unwrap();
        let mut b = ParallelGzip::new(Vec::new(), 6).unwrap();
        for piece in data.chunks(4096) {
            b.write_all(piece).unwrap();
        }
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
    }
}
