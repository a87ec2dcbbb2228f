//! Compressed copies of local layers, for pushing: lb keeps the layers it builds
//! uncompressed (building never pays for compression), and a push compresses each once.
//! The compressed blob lives in the content store like any other; which blob compresses
//! which is remembered in `compressed/<algorithm>/<uncompressed hex>` (the compressed
//! digest and size), so a second push, to any registry, sends the same bytes without
//! compressing again.

use std::fs;
use std::io::{BufReader, Write};
use std::str::FromStr;

use crate::Error;
use crate::content::BlobInfo;
use crate::diff::LayerCompression;
use crate::digest::Digest;
use crate::store::Store;

impl Store {
    /// The compressed blob of the uncompressed layer blob `layer` (`Gzip` or `Zstd`),
    /// made and remembered the first time. The caller holds [`Store::writing`].
    pub fn compressed_layer(
        &self,
        layer: &Digest,
        compression: LayerCompression,
    ) -> Result<BlobInfo, Error> {
        let algo = match compression {
            LayerCompression::Gzip(_) => "gzip",
            LayerCompression::Zstd(_) => "zstd",
            LayerCompression::None => return self.content().info(layer),
        };
        let dir = self.layout().compressed(algo);
        let record = dir.join(layer.hex());
        if let Some(known) = fs::read_to_string(&record)
            .ok()
            .and_then(|t| {
                let (d, s) = t.trim().split_once(' ')?;
                Some((Digest::from_str(d).ok()?, s.parse::<u64>().ok()?))
            })
            .filter(|(d, s)| self.content().info(d).is_ok_and(|i| i.size == *s))
        {
            return Ok(BlobInfo {
                digest: known.0,
                size: known.1,
            });
        }
        let mut input = BufReader::with_capacity(1 << 20, self.content().open_blob(layer)?);
        let mut w = self.content().writer()?;
        let ctx = |e| Error::layer(&format!("compressing layer {layer}"), e);
        match compression {
            LayerCompression::Gzip(level) => {
                let mut enc = crate::gzip::ParallelGzip::new(&mut w, level).map_err(ctx)?;
                std::io::copy(&mut input, &mut enc).map_err(ctx)?;
                enc.finish().map_err(ctx)?.flush().map_err(ctx)?;
            }
            LayerCompression::Zstd(level) => {
                let mut enc = zstd::stream::write::Encoder::new(&mut w, level).map_err(ctx)?;
                enc.multithread(std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
                    .map_err(ctx)?;
                std::io::copy(&mut input, &mut enc).map_err(ctx)?;
                enc.finish().map_err(ctx)?.flush().map_err(ctx)?;
            }
            LayerCompression::None => unreachable!("handled above"),
        }
        let info = w.commit(None, None)?;
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
        writeln!(tmp, "{} {}", info.digest, info.size).map_err(|e| Error::io(&record, e))?;
        tmp.persist(&record)
            .map_err(|e| Error::io(&record, e.error))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_is_compressed_once_and_decompresses_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 7).to_le_bytes())
            .collect();
        let layer = store.content().put(&tar).unwrap().digest;
        for c in [LayerCompression::Gzip(6), LayerCompression::Zstd(3)] {
            let first = store.compressed_layer(&layer, c).unwrap();
            assert!(first.size < tar.len() as u64 / 4, "{first:?}");
            let blob = store.content().read_verified(&first.digest).unwrap();
            let mut back = Vec::new();
            std::io::Read::read_to_end(
                &mut crate::apply::decompressed(&blob[..]).unwrap(),
                &mut back,
            )
            .unwrap();
            assert_eq!(back, tar);
            // Remembered: the same blob, even with a different level asked.
            let again = match c {
                LayerCompression::Gzip(_) => LayerCompression::Gzip(1),
                _ => LayerCompression::Zstd(1),
            };
            assert_eq!(store.compressed_layer(&layer, again).unwrap(), first);
        }
    }
}
