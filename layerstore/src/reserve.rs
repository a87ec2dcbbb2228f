//! The free-space reserve: what the store writes in bulk (layers unpacked, layer blobs, blobs
//! loaded or pulled, a build's copies) stops with [`NoSpace`] before the file system it
//! writes to falls below a reserve, so that a decompression bomb or a huge layer fails
//! early and leaves the machine room to work (and the store room to clean up), instead of
//! filling the disk. The reserve is 1 GiB or 5% of the file system, whichever is smaller;
//! `LB_MIN_FREE` sets it (bytes, or sizes like `512m`, `2g`; `0` turns it off).
//!
//! A [`SpaceGuard`] is told how much was written and asks the file system (`fstatvfs`)
//! only every few MiB: cheap next to the writes themselves. Its error names what was being
//! written and where; the caller's cleanup (temporary directories, ingest files) removes
//! the partial output.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, NoSpace};

/// The environment variable that sets the reserve.
pub const VARIABLE: &str = "LB_MIN_FREE";
/// The default reserve's ceiling: 1 GiB...
const DEFAULT_MAX: u64 = 1 << 30;
/// ...or this share of the file system (in percent), when that is less.
const DEFAULT_PERCENT: u64 = 5;
/// Bytes written between two looks at the file system.
pub const CHECK_EVERY: u64 = 4 << 20;

/// The reserve asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    /// 1 GiB or 5% of the file system, whichever is smaller.
    Auto,
    /// Exactly this many bytes; 0: no reserve.
    Bytes(u64),
}

impl MinFree {
    /// `LB_MIN_FREE` as set (unset or empty: [`MinFree::Auto`]); a value that is no size
    /// is an error naming the variable.
    pub fn from_env() -> Result<MinFree, Error> {
        let Some(raw) = std::env::var_os(VARIABLE) else {
            return Ok(MinFree::Auto);
        };
        let value = raw.to_string_lossy().into_owned();
        if value.trim().is_empty() {
            return Ok(MinFree::Auto);
        }
        parse_size(&value)
            .map(MinFree::Bytes)
            .ok_or_else(|| Error::InvalidSetting {
                variable: VARIABLE,
                value,
                reason: "want bytes or a size such as 512m or 2g (0 turns the reserve off)".into(),
            })
    }

    /// The reserve on a file system of `fs_size` bytes.
    pub fn bytes_for(self, fs_size: u64) -> u64 {
        match self {
            MinFree::Auto => DEFAULT_MAX.min(fs_size / 100 * DEFAULT_PERCENT),
            MinFree::Bytes(b) => b,
        }
    }
}

/// A size: bytes, or a number with a unit `k`, `m`, `g` or `t` (powers of 1024, as docker's
/// sizes; `kb`/`kib` and the like too, any case), perhaps with a fraction (`1.5g`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let shift = match unit.trim_start() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    if number.is_empty() || number == "." {
        return None;
    }
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(1u64 << shift);
    }
    let f: f64 = number.parse().ok()?;
    let bytes = f * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `1.0 GiB`, `3.2 MiB`, `512 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Where a [`SpaceGuard`] looks: a descriptor on the file system, or a path.
enum On {
    Fd(OwnedFd),
    Path(PathBuf),
}

/// Watches bulk writes to one file system against the reserve; see the module's comment.
pub struct SpaceGuard {
    on: On,
    /// `None`: no reserve (`LB_MIN_FREE=0`).
    min: Option<MinFree>,
    /// Bytes written since the last look.
    pending: u64,
    what: String,
    path: PathBuf,
}

impl SpaceGuard {
    /// Guards writes to the file system `fd` is on, described by `what` and `path` in its
    /// error. Fails only when `LB_MIN_FREE` is not a size.
    pub fn new(fd: impl AsFd, what: &str, path: &Path) -> Result<SpaceGuard, Error> {
        let on = match fd.as_fd().try_clone_to_owned() {
            Ok(fd) => On::Fd(fd),
            Err(_) => On::Path(path.to_path_buf()),
        };
        SpaceGuard::on(on, what, path)
    }

    /// Guards writes under `path` (a directory that exists).
    pub fn for_path(path: &Path, what: &str) -> Result<SpaceGuard, Error> {
        SpaceGuard::on(On::Path(path.to_path_buf()), what, path)
    }

    fn on(on: On, what: &str, path: &Path) -> Result<SpaceGuard, Error> {
        let min = match MinFree::from_env()? {
            MinFree::Bytes(0) => None,
            m => Some(m),
        };
        Ok(SpaceGuard {
            on,
            min,
            pending: 0,
            what: what.to_string(),
            path: path.to_path_buf(),
        })
    }

    /// What and where the error names from now on.
    pub fn describe(&mut self, what: &str, path: &Path) {
        self.what = what.to_string();
        self.path = path.to_path_buf();
    }

    /// A [`NoSpace`] (the disk itself full) for what this guard watches.
    pub fn full(&self) -> NoSpace {
        NoSpace::new(self.what.clone(), self.path.clone())
    }

    /// `n` more bytes were written: every [`CHECK_EVERY`] bytes, whether the next ones
    /// would take the file system below the reserve.
    pub fn wrote(&mut self, n: u64) -> Result<(), NoSpace> {
        if self.min.is_none() {
            return Ok(());
        }
        self.pending += n;
        if self.pending < CHECK_EVERY {
            return Ok(());
        }
        self.pending = 0;
        self.check(CHECK_EVERY)
    }

    /// `n` bytes are about to be written at once (a file copied): a big one is checked
    /// before it is written, small ones count as [`SpaceGuard::wrote`].
    pub fn will_write(&mut self, n: u64) -> Result<(), NoSpace> {
        if self.min.is_none() {
            return Ok(());
        }
        if n < CHECK_EVERY {
            return self.wrote(n);
        }
        self.pending = 0;
        self.check(n)
    }

    /// Fails when fewer than `reserve + headroom` bytes are available (to unprivileged
    /// users, as `df` counts: what root alone may use is not counted). A file system that
    /// cannot say passes.
    fn check(&self, headroom: u64) -> Result<(), NoSpace> {
        let Some(min) = self.min else {
            return Ok(());
        };
        let st = match &self.on {
            On::Fd(fd) => rustix::fs::fstatvfs(fd),
            On::Path(p) => rustix::fs::statvfs(p),
        };
        let Ok(st) = st else {
            return Ok(());
        };
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        let reserve = min.bytes_for(total);
        if reserve == 0 || avail >= reserve.saturating_add(headroom) {
            return Ok(());
        }
        Err(NoSpace {
            what: self.what.clone(),
            path: self.path.clone(),
            reserve: Some(reserve),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_writes_them() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("64 kb"), Some(64 << 10));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("1t"), Some(1 << 40));
        for bad in [
            "",
            "m",
            "-1",
            "1x",
            "1.2.3g",
            "lots",
            "99999999999999999999t",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_default_is_a_gibibyte_or_five_percent() {
        assert_eq!(MinFree::Auto.bytes_for(64 << 20), (64 << 20) / 100 * 5);
        assert_eq!(MinFree::Auto.bytes_for(1 << 40), 1 << 30);
        assert_eq!(MinFree::Bytes(7).bytes_for(1 << 40), 7);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
    }

    #[test]
    fn a_reserve_larger_than_the_disk_stops_the_first_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = SpaceGuard {
            on: On::Path(dir.path().to_path_buf()),
            min: Some(MinFree::Bytes(u64::MAX / 2)),
            pending: 0,
            what: "testing".into(),
            path: dir.path().to_path_buf(),
        };
        assert!(g.wrote(1).is_ok(), "no look before CHECK_EVERY bytes");
        let e = g.wrote(CHECK_EVERY).unwrap_err();
        assert_eq!(e.reserve, Some(u64::MAX / 2));
        let text = e.to_string();
        assert!(
            text.starts_with("no space left on device while testing ("),
            "{text}"
        );
        assert!(text.ends_with("(LB_MIN_FREE)"), "{text}");
        assert!(g.will_write(CHECK_EVERY * 2).is_err());
        // Off: never looks.
        g.min = None;
        assert!(g.wrote(u64::MAX / 4).is_ok());
    }
}
