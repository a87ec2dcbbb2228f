//! Where a build reads its context and Dockerfile from: a directory as it is, or an
//! archive (a file, or standard input: plain, gzip or zstd) unpacked into a directory of
//! root's alone, or a bare Dockerfile on standard input with an empty context. Unpacking
//! goes through the store's one layer applier (paths resolved inside the directory, no
//! device nodes or setuid kept for another user to reach).

use std::io::Read;
use std::path::{Path, PathBuf};

/// A build context ready to read.
pub struct BuildContext {
    pub dir: PathBuf,
    /// A Dockerfile read from standard input instead of a file.
    pub dockerfile: Option<Vec<u8>>,
    /// Holds an unpacked archive for as long as the build runs.
    _unpacked: Option<tempfile::TempDir>,
}

/// Why a context could not be prepared (docker's messages).
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading the context from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("unable to prepare context: path {:?} not found", .0.display().to_string())]
    NotFound(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}unpacking the build context: {source}", archive.as_ref().map(|p| format!("context {}: ", p.display())).unwrap_or_default())]
    Unpack {
        /// The archive file, when it was one (not standard input).
        archive: Option<PathBuf>,
        #[source]
        source: lb_layerstore::Error,
    },
    #[error("a directory for the context: {0}")]
    Scratch(#[source] std::io::Error),
}

impl BuildContext {
    /// The context `arg` names (`-`: what `stdin` holds).
    pub fn prepare(arg: &Path, stdin: &mut dyn Read) -> Result<BuildContext, ContextError> {
        if arg.as_os_str() == "-" {
            let mut input = Vec::new();
            stdin.read_to_end(&mut input).map_err(ContextError::Stdin)?;
            if looks_like_tar(&input) {
                return unpacked(&input[..], None);
            }
            // A bare Dockerfile: the context is empty.
            let dir = scratch_dir()?;
            return Ok(BuildContext {
                dir: dir.path().to_path_buf(),
                dockerfile: Some(input),
                _unpacked: Some(dir),
            });
        }
        if arg.is_dir() {
            return Ok(BuildContext {
                dir: arg.to_path_buf(),
                dockerfile: None,
                _unpacked: None,
            });
        }
        if arg.is_file() {
            let file = std::fs::File::open(arg).map_err(|source| ContextError::Read {
                path: arg.to_path_buf(),
                source,
            })?;
            return unpacked(file, Some(arg));
        }
        Err(ContextError::NotFound(arg.to_path_buf()))
    }
}

/// Whether `bytes` start a tar archive, perhaps compressed.
fn looks_like_tar(bytes: &[u8]) -> bool {
    let mut head = Vec::new();
    if let Ok(r) = lb_layerstore::decompressed(bytes) {
        let _ = r.take(512).read_to_end(&mut head);
    }
    head.len() == 512 && &head[257..262] == b"ustar"
}

/// A directory for a context lb unpacks: root's alone (0700) before anything is in it, so
/// no other host user reaches its files (a setuid binary in the archive) while it builds.
fn scratch_dir() -> Result<tempfile::TempDir, ContextError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("lb-context-")
        .tempdir()
        .map_err(ContextError::Scratch)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(ContextError::Scratch)?;
    Ok(dir)
}

fn unpacked(archive: impl Read, file: Option<&Path>) -> Result<BuildContext, ContextError> {
    let dir = scratch_dir()?;
    lb_layerstore::apply_layer(
        archive,
        dir.path(),
        lb_layerstore::ApplyOptions {
            whiteouts: lb_layerstore::Whiteouts::Delete,
            privileged: false,
        },
    )
    .map_err(|source| ContextError::Unpack {
        archive: file.map(Path::to_path_buf),
        source,
    })?;
    Ok(BuildContext {
        dir: dir.path().to_path_buf(),
        dockerfile: None,
        _unpacked: Some(dir),
    })
}
