//! Diff: an overlay upper directory to an OCI layer tar, in one pass.
//!
//! The upper directory of a step already is the change, so only it is read, never the lower
//! layers. Overlay whiteouts are translated back (a 0/0 character device is `.wh.NAME`, an
//! opaque directory gets `.wh..wh..opq`). Output is deterministic: entries sorted by name,
//! numeric owners only, no user or group names, no access times, PAX records only for what
//! ustar cannot hold (long names and link targets, xattrs), mtimes clamped to
//! `SOURCE_DATE_EPOCH` when given. The diffID is hashed while the tar is written, and the
//! compressed stream, when asked for, is produced and hashed in the same pass.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::digest::{Digest, Digester, ThreadedDigester};

/// How the layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// `application/vnd.oci.image.layer.v1.tar`: what lb keeps locally.
    None,
    /// `+gzip`, level 0-9, compressed on every core (see `gzip.rs`).
    Gzip(u32),
    /// `+zstd`, level 1-22.
    Zstd(i32),
}

/// What a diff produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDiff {
    /// Digest of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// Digest and size of the blob as written (equal to the above when uncompressed).
    pub blob_digest: Digest,
    pub blob_size: u64,
    pub entries: u64,
}

/// Options of a diff.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions {
    /// `SOURCE_DATE_EPOCH`: no mtime in the layer is later than this.
    pub source_date_epoch: Option<i64>,
}

/// Writes the layer for `upper` to `out`. A full disk where `out` writes is
/// [`Error::NoSpace`] (naming the blob when `out` is the store's blob writer).
pub fn write_diff(
    upper: &Path,
    out: impl Write,
    compression: LayerCompression,
    opts: DiffOptions,
) -> Result<LayerDiff, Error> {
    write_layer(
        &UpperDir { upper, lowers: &[] },
        upper,
        out,
        compression,
        opts,
    )
}

/// What a layer's tar holds, written through the one [`TarWriter`]: an upper directory
/// ([`write_diff`]) or the changes between two full trees (`differ.rs`), so both make the
/// same bytes for the same change.
pub(crate) trait TarSource {
    fn write_entries<W: Write>(&self, tar: &mut TarWriter<'_, W>) -> Result<(), Error>;

    /// Whether a directory's overlay opaque xattr is written as `.wh..wh..opq` (an upper
    /// dir written as it is), or the source says which directories are opaque.
    fn opaque_marks(&self) -> bool {
        false
    }
}

/// An overlay upper directory: every entry in it is the change. Stacked on `lowers` (top
/// first), its opaque directories are written in the differ's form (`differ::write_stacked`).
pub(crate) struct UpperDir<'a> {
    pub(crate) upper: &'a Path,
    pub(crate) lowers: &'a [PathBuf],
}

impl TarSource for UpperDir<'_> {
    fn write_entries<W: Write>(&self, tar: &mut TarWriter<'_, W>) -> Result<(), Error> {
        if self.lowers.is_empty() {
            return tar.dir(self.upper, "");
        }
        let lowers = crate::lower::OldDir::stack(self.lowers);
        crate::differ::write_stacked(tar, &lowers, self.upper, "")
    }

    fn opaque_marks(&self) -> bool {
        self.lowers.is_empty()
    }
}

/// The layer of `src` to `out`, compressed and hashed as [`write_diff`] does; `upper`
/// names the layer in errors.
pub(crate) fn write_layer(
    src: &impl TarSource,
    upper: &Path,
    out: impl Write,
    compression: LayerCompression,
    opts: DiffOptions,
) -> Result<LayerDiff, Error> {
    let out = NoSpaceNamed { inner: out, upper };
    let ctx = |e| Error::layer(&format!("writing the layer of {}", upper.display()), e);
    match compression {
        LayerCompression::None => {
            // Hashed beside the tar's making (half its work otherwise), in 1 MiB pieces.
            let mut tar = BufWriter::with_capacity(1 << 20, ThreadedDigester::new(out));
            let entries = write_tar(src, upper, &mut tar, opts)?;
            let digester = tar.into_inner().map_err(|e| ctx(e.into_error()))?;
            let (diff_id, size, mut w) = digester.finish().map_err(ctx)?;
            w.flush().map_err(ctx)?;
            Ok(LayerDiff {
                diff_id,
                size,
                blob_digest: diff_id,
                blob_size: size,
                entries,
            })
        }
        LayerCompression::Gzip(level) => {
            let blob = Digester::new(BufWriter::with_capacity(1 << 20, out));
            let enc = crate::gzip::ParallelGzip::new(blob, level).map_err(ctx)?;
            compressed(src, upper, opts, enc, |e| e.finish())
        }
        LayerCompression::Zstd(level) => {
            let blob = Digester::new(BufWriter::with_capacity(1 << 20, out));
            let enc = zstd::stream::write::Encoder::new(blob, level).map_err(ctx)?;
            compressed(src, upper, opts, enc, |e| e.finish())
        }
    }
}

/// The tar written through `enc`, a compressor over the blob's digester, in one pass.
fn compressed<E: Write, W: Write>(
    src: &impl TarSource,
    upper: &Path,
    opts: DiffOptions,
    enc: E,
    end: impl FnOnce(E) -> io::Result<Digester<BufWriter<W>>>,
) -> Result<LayerDiff, Error> {
    let ctx = |e| Error::layer(&format!("writing the layer of {}", upper.display()), e);
    let mut tar = Digester::new(BufWriter::with_capacity(1 << 20, enc));
    let entries = write_tar(src, upper, &mut tar, opts)?;
    let (diff_id, size, w) = tar.finish();
    let enc = w.into_inner().map_err(|e| ctx(e.into_error()))?;
    let blob = end(enc).map_err(ctx)?;
    finish(blob, diff_id, size, entries).map_err(ctx)
}

fn finish<W: Write>(
    blob: Digester<BufWriter<W>>,
    diff_id: Digest,
    size: u64,
    entries: u64,
) -> io::Result<LayerDiff> {
    let (blob_digest, blob_size, mut w) = blob.finish();
    w.flush()?;
    Ok(LayerDiff {
        diff_id,
        size,
        blob_digest,
        blob_size,
        entries,
    })
}

/// The layer's output: a full disk it meets (and that its writer did not name already) is
/// a [`crate::NoSpace`] naming the layer, not the upper-dir file being read at the time.
struct NoSpaceNamed<'a, W> {
    inner: W,
    upper: &'a Path,
}

impl<W: Write> NoSpaceNamed<'_, W> {
    fn named(&self, e: io::Error) -> io::Error {
        if crate::error::is_no_space(&e) && crate::NoSpace::carried(&e).is_none() {
            crate::NoSpace::new("writing a layer", self.upper).into_io()
        } else {
            e
        }
    }
}

impl<W: Write> Write for NoSpaceNamed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| self.named(e))
    }
}

pub(crate) struct TarWriter<'a, W: Write> {
    out: &'a mut W,
    opts: DiffOptions,
    /// (device, inode) of files with several links, to the first name written.
    links: HashMap<(u64, u64), String>,
    entries: u64,
    /// [`TarSource::opaque_marks`].
    marks: bool,
}

fn write_tar<W: Write>(
    src: &impl TarSource,
    upper: &Path,
    out: &mut W,
    opts: DiffOptions,
) -> Result<u64, Error> {
    let mut w = TarWriter {
        out,
        opts,
        links: HashMap::new(),
        entries: 0,
        marks: src.opaque_marks(),
    };
    src.write_entries(&mut w)?;
    w.out
        .write_all(&[0u8; 1024])
        .map_err(|e| Error::io(upper, e))?;
    Ok(w.entries)
}

impl<W: Write> TarWriter<'_, W> {
    /// Writes the children of `dir` (whose name in the layer is `prefix`), sorted by name.
    pub(crate) fn dir(&mut self, dir: &Path, prefix: &str) -> Result<(), Error> {
        for (name, path) in sorted_children(dir)? {
            self.child(&path, prefix, &name)?;
        }
        Ok(())
    }

    /// Writes `path`, named `prefix` + `name` in the layer: its entry, and a directory's
    /// whole content after it.
    pub(crate) fn child(&mut self, path: &Path, prefix: &str, name: &str) -> Result<(), Error> {
        let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let stat = Stat::of(&meta);
        let ft = meta.file_type();
        let rel = format!("{prefix}{name}");
        let io_err = |e| Error::io(path, e);
        if crate::lower::is_whiteout(&meta) {
            // An overlay whiteout: the name was deleted in this layer.
            self.whiteout(prefix, name, &stat).map_err(io_err)?;
        } else if ft.is_dir() {
            let dname = self.dir_entry(path, &rel, &meta, false)?;
            self.dir(path, &dname)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            let target = String::from_utf8_lossy(target.as_os_str().as_bytes()).into_owned();
            self.entry(
                &rel,
                tar::EntryType::Symlink,
                &stat,
                0,
                &target,
                &[],
                &mut io::empty(),
            )
            .map_err(io_err)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    self.entry(
                        &rel,
                        tar::EntryType::Link,
                        &stat,
                        0,
                        &first,
                        &[],
                        &mut io::empty(),
                    )
                    .map_err(io_err)?;
                    return Ok(());
                }
                self.links.insert(key, rel.clone());
            }
            // overlayfs's own attributes (`trusted.overlay.origin` on a copied-up file: a
            // file handle of this host's lower) are no part of the file, as for directories.
            let xattrs: Vec<_> = xattrs(path)
                .map_err(io_err)?
                .into_iter()
                .filter(|(k, _)| !is_overlay(k))
                .collect();
            let mut file = File::open(path).map_err(io_err)?;
            self.entry(
                &rel,
                tar::EntryType::Regular,
                &stat,
                meta.len(),
                "",
                &xattrs,
                &mut file,
            )
            .map_err(io_err)?;
        } else {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                return Ok(()); // sockets have no place in a layer
            };
            self.entry(&rel, kind, &stat, 0, "", &[], &mut io::empty())
                .map_err(io_err)?;
        }
        Ok(())
    }

    /// Writes the entry of the directory `path` (named `rel`) alone, with the opaque marker
    /// when `opaque` is asked for or its overlay xattr says so (where the source's marks
    /// are read); returns the prefix of its children's names.
    pub(crate) fn dir_entry(
        &mut self,
        path: &Path,
        rel: &str,
        meta: &fs::Metadata,
        opaque: bool,
    ) -> Result<String, Error> {
        let io_err = |e| Error::io(path, e);
        let stat = Stat::of(meta);
        let xattrs = xattrs(path).map_err(io_err)?;
        let opaque = opaque || (self.marks && has_opaque_mark(&xattrs));
        let keep: Vec<_> = xattrs.into_iter().filter(|(k, _)| !is_overlay(k)).collect();
        let dname = format!("{rel}/");
        self.entry(
            &dname,
            tar::EntryType::Directory,
            &stat,
            0,
            "",
            &keep,
            &mut io::empty(),
        )
        .map_err(io_err)?;
        if opaque {
            let marker = format!("{rel}/.wh..wh..opq");
            self.entry(
                &marker,
                tar::EntryType::Regular,
                &stat,
                0,
                "",
                &[],
                &mut io::empty(),
            )
            .map_err(io_err)?;
        }
        Ok(dname)
    }

    /// Writes `.wh.NAME` in the directory named `prefix`: NAME was deleted.
    pub(crate) fn whiteout(&mut self, prefix: &str, name: &str, stat: &Stat) -> io::Result<()> {
        let wh = format!("{prefix}.wh.{name}");
        self.entry(
            &wh,
            tar::EntryType::Regular,
            stat,
            0,
            "",
            &[],
            &mut io::empty(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        stat: &Stat,
        size: u64,
        link: &str,
        xattrs: &[(String, Vec<u8>)],
        data: &mut dyn io::Read,
    ) -> io::Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut h = tar::Header::new_ustar();
        if name.len() > 100 {
            pax.push(("path".into(), name.as_bytes().to_vec()));
        }
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name.as_bytes()[..n]);
        if link.len() > 100 {
            pax.push(("linkpath".into(), link.as_bytes().to_vec()));
        }
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link.as_bytes()[..l]);
        for (k, v) in xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        h.set_entry_type(kind);
        h.set_mode(stat.mode & 0o7777);
        h.set_uid(u64::from(stat.uid));
        h.set_gid(u64::from(stat.gid));
        let mut mtime = stat.mtime;
        if let Some(epoch) = self.opts.source_date_epoch {
            mtime = mtime.min(epoch);
        }
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(size);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(rustix::fs::major(stat.rdev))?;
            h.set_device_minor(rustix::fs::minor(stat.rdev))?;
        }
        h.set_cksum();
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                // "<len> <key>=<value>\n", where len counts itself.
                let rest = k.len() + v.len() + 3;
                let mut len = rest + 1;
                while len.to_string().len() + rest != len {
                    len = rest + len.to_string().len();
                }
                body.extend_from_slice(format!("{len} {k}=").as_bytes());
                body.extend_from_slice(v);
                body.push(b'\n');
            }
            let mut ph = tar::Header::new_ustar();
            let pname = b"PaxHeaders/entry";
            ph.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            ph.set_mtime(h.mtime().unwrap_or(0));
            ph.set_cksum();
            self.out.write_all(ph.as_bytes())?;
            self.out.write_all(&body)?;
            pad(self.out, body.len() as u64)?;
        }
        self.out.write_all(h.as_bytes())?;
        let copied = io::copy(&mut io::Read::take(data, size), self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} changed size while it was read"),
            ));
        }
        pad(self.out, size)?;
        self.entries += 1;
        Ok(())
    }
}

/// What an entry's header says of its file: from the file's metadata, or made up for an
/// entry no file stands for (a whiteout the differ writes for a deleted name).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds; tar keeps no fraction.
    pub mtime: i64,
    pub rdev: u64,
}

impl Stat {
    pub(crate) fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            rdev: meta.rdev(),
        }
    }
}

/// The entries of `dir` as (name, path), sorted by the name's bytes: the layer's order.
pub(crate) fn sorted_children(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let mut children: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| (e.file_name().as_bytes().to_vec(), e.path())))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::io(dir, e))?;
    children.sort();
    Ok(children
        .into_iter()
        .map(|(name, path)| (String::from_utf8_lossy(&name).into_owned(), path))
        .collect())
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..rem as usize])
}

/// Whether the xattr `key` is overlayfs' own (no part of a file in a layer).
pub(crate) fn is_overlay(key: &str) -> bool {
    key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.")
}

/// Whether these xattrs of an overlay upper dir's directory make it opaque.
fn has_opaque_mark(xattrs: &[(String, Vec<u8>)]) -> bool {
    xattrs
        .iter()
        .any(|(k, v)| (k == "trusted.overlay.opaque" || k == "user.overlay.opaque") && v == b"y")
}

/// Whether the directory `path` of an overlay upper dir is opaque (hides the lowers).
pub(crate) fn is_opaque(path: &Path) -> bool {
    xattrs(path).is_ok_and(|x| has_opaque_mark(&x))
}

/// The extended attributes of `path` (not following symlinks), sorted by name.
pub(crate) fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, key.as_str(), &mut value) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        };
        value.truncate(len);
        out.push((key, value));
    }
    out.sort();
    Ok(out)
}
