//! Crash-safe replacement of a file.
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes concurrent writes from one process (the pid alone does not).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file in the same directory (same file
/// system, so the final rename is atomic): a reader sees the old file or the new one, never a
/// partial one. On failure the temporary file is removed and an existing target is untouched.
/// A symbolic link is followed, so the file it names is replaced and the link stays; a path
/// that is not a regular file (a FIFO, a device, `/dev/stdout`) is written to directly, since
/// a rename would replace the node instead of writing to it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(Error::file(path, "cannot write: it is a folder")),
        Ok(m) if !m.is_file() => {
            let mut f = OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
            return f.write_all(bytes).and_then(|()| f.flush()).map_err(|e| Error::io(path, e));
        }
        _ => {}
    }
    let target = link_target(path);
    replace(&target, bytes)
}

/// The file a chain of symbolic links ends at (itself when `path` is none); a dangling link's
/// missing target is where the file will be created.
fn link_target(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    // Past 40 links (Linux's own limit) the rename reports the loop.
    for _ in 0..40 {
        let Ok(next) = std::fs::read_link(&at) else { break };
        at = match at.parent() {
            Some(dir) if next.is_relative() => dir.join(next),
            _ => next,
        };
    }
    at
}

fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::file(path, "cannot write: the path names no file"));
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", tmp.display()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| context("cannot create temporary file", e))?;
        f.write_all(bytes).map_err(|e| context("cannot write temporary file", e))?;
        f.sync_all().map_err(|e| context("cannot sync temporary file", e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| context("cannot move into place temporary file", e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Persist the rename itself; best effort, since not every platform can sync a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
