//! Content digests: the one place lb computes and parses them.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::Error;

/// A `sha256:<64 lowercase hex>` content digest (the only algorithm lb writes; OCI's
/// registered alternative, sha512, is refused with a clear error rather than misread).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the bare hex form used in store paths.
    pub fn from_hex(hex: &str) -> Result<Digest, Error> {
        let bad = || Error::InvalidDigest(hex.to_string());
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let nibble = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            out[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
        }
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Digest, Error> {
        match s.split_once(':') {
            Some(("sha256", hex)) => {
                Digest::from_hex(hex).map_err(|_| Error::InvalidDigest(s.to_string()))
            }
            Some((alg, _)) if !alg.is_empty() => Err(Error::UnsupportedDigest(s.to_string())),
            _ => Err(Error::InvalidDigest(s.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// Serialised as its text form, `sha256:<hex>`, and parsed as strictly as `FromStr`.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hashes everything written through it, counting bytes: one pass over the data.
pub struct Digester<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Digester<W> {
    pub fn new(inner: W) -> Self {
        Digester {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The digest and size of what passed so far, and the inner writer or reader.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest(self.hasher.finalize().into()), self.size, self.inner)
    }
}

impl<W: Write> Write for Digester<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Digester<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// A [`Digester`] for writing whose hashing runs on a thread of its own: for long streams
/// (a layer's tar) where SHA-256, at about 1.5 GB/s, would otherwise be most of the writing
/// thread's work. Each write is copied to the hashing thread, so it wants large writes: put
/// a `BufWriter` in front of it.
pub struct ThreadedDigester<W> {
    inner: W,
    size: u64,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<Sha256>>,
}

/// Buffers in flight between the writer and the hashing thread.
const HASH_DEPTH: usize = 4;

impl<W> ThreadedDigester<W> {
    pub fn new(inner: W) -> Self {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(HASH_DEPTH);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(HASH_DEPTH + 1);
        for _ in 0..HASH_DEPTH {
            empty_tx.send(Vec::new()).expect("fresh channel");
        }
        let hasher = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for mut buf in full_rx {
                h.update(&buf);
                buf.clear();
                // The writer may have finished meanwhile: nobody wants the buffer back.
                let _ = empty_tx.send(buf);
            }
            h
        });
        ThreadedDigester {
            inner,
            size: 0,
            full: Some(full_tx),
            empty: empty_rx,
            hasher: Some(hasher),
        }
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        self.full = None; // the hashing thread sees the end of the stream
        let hasher = self.hasher.take().expect("hashing thread");
        let h = hasher
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        Ok((Digest(h.finalize().into()), self.size, self.inner))
    }

    fn hashing_stopped() -> io::Error {
        io::Error::other("the hashing thread stopped")
    }
}

impl<W: Write> Write for ThreadedDigester<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut chunk = self.empty.recv().map_err(|_| Self::hashing_stopped())?;
        chunk.extend_from_slice(&buf[..n]);
        let full = self.full.as_ref().expect("open until finish");
        full.send(chunk).map_err(|_| Self::hashing_stopped())?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_values_and_round_trip() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        let mut w = Digester::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, inner) = w.finish();
        assert_eq!((d, n), (Digest::of(b"hello world"), 11));
        assert_eq!(inner, b"hello world");

        // Hashed on a thread: the same digest, over many writes of any size.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = ThreadedDigester::new(Vec::new());
        for part in data.chunks(77_777) {
            w.write_all(part).unwrap();
        }
        let (d, n, inner) = w.finish().unwrap();
        assert_eq!((d, n), (Digest::of(&data), data.len() as u64));
        assert_eq!(inner, data);
    }

    #[test]
    fn bad_digests_are_refused() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            &EMPTY.to_uppercase().replace("SHA256", "sha256"),
            "sha256:../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(Error::UnsupportedDigest(_))
        ));
    }
}
