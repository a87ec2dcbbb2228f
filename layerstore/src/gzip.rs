//! Parallel gzip (the pigz scheme): the stream is cut into 1 MiB chunks, each deflated on its
//! own core with the previous chunk's last 32 KiB as dictionary and ended with a sync flush,
//! so the pieces concatenate into one ordinary deflate stream inside one gzip member. The
//! output depends only on the level and the chunk size, never on the number of threads, so
//! layers stay reproducible.

use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress};
use rayon::prelude::*;

const CHUNK: usize = 1 << 20;
const DICT: usize = 32 * 1024;

/// A gzip encoder that compresses batches of chunks in parallel.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    /// Input not yet compressed, at most `batch` chunks.
    pending: Vec<u8>,
    /// The last 32 KiB of input already compressed: the next chunk's dictionary.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    batch: usize,
    /// The compressed form of the batch handed over last, when it is ready.
    inflight: Option<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(mut out: W, level: u32) -> io::Result<Self> {
        // Header: deflate, no name, mtime 0, OS unknown (reproducible, like `gzip -n`).
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
        let batch = 2 * rayon::current_num_threads().max(1);
        Ok(ParallelGzip {
            out,
            level,
            pending: Vec::with_capacity(batch * CHUNK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            batch,
            inflight: None,
        })
    }

    /// Hands the pending input to a compressing thread (one batch in flight, so the caller
    /// fills the next batch meanwhile); `last` ends the deflate stream and waits for it.
    fn flush_pending(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch * CHUNK));
        self.crc.update(&data);
        self.size += data.len() as u64;
        let dict = std::mem::take(&mut self.dict);
        // The next dictionary: the last 32 KiB of everything handed over so far.
        let mut next = dict.clone();
        next.extend_from_slice(&data[data.len().saturating_sub(DICT)..]);
        let keep = next.len().saturating_sub(DICT);
        next.drain(..keep);
        self.dict = next;

        self.collect()?;
        let level = self.level;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(compress_batch(&data, &dict, level, last));
        });
        self.inflight = Some(rx);
        if last {
            self.collect()?;
        }
        Ok(())
    }

    /// Writes the batch in flight, if any, once it is compressed.
    fn collect(&mut self) -> io::Result<()> {
        if let Some(rx) = self.inflight.take() {
            let out = rx
                .recv()
                .map_err(|_| io::Error::other("gzip worker thread died"))??;
            self.out.write_all(&out)?;
        }
        Ok(())
    }

    /// Ends the stream (last block, crc32, size) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_pending(true)?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Deflates one batch, its chunks on all cores; `dict` precedes the batch.
fn compress_batch(data: &[u8], dict: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(CHUNK).collect()
    };
    let n = chunks.len();
    let outputs: Vec<io::Result<Vec<u8>>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let d: &[u8] = if i == 0 {
                dict
            } else {
                let prev = chunks[i - 1];
                &prev[prev.len().saturating_sub(DICT)..]
            };
            deflate_chunk(chunks[i], d, level, last && i == n - 1)
        })
        .collect();
    let mut out = Vec::new();
    for o in outputs {
        out.extend_from_slice(&o?);
    }
    Ok(out)
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
        let room = self.batch * CHUNK - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == self.batch * CHUNK {
            self.flush_pending(false)?;
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
