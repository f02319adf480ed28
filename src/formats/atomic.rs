//! [`write_atomic`]: replace a file all at once or not at all.
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random number drawn once per process: with the process id it tells this process' temporary files from
/// those of an earlier process that had the same id (a restarted container often reuses its process ids).
fn process_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        h.finish() & 0xffff_ffff
    })
}

/// The prefix of every temporary file of `file_name`: `.<file_name>.tmp-`.
fn tmp_prefix(file_name: &str) -> String {
    format!(".{file_name}.tmp-")
}

/// Whether process `pid` is running. `None` where the system cannot tell (no `/proc`).
fn is_running(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Removes the temporary files of earlier saves of `file_name` in `dir` whose writer is gone (killed during a
/// save: a crash, the OOM killer, a preempted job): files `.<file_name>.tmp-<pid>-<nonce>-<n>` of a process
/// that no longer runs, or of an earlier process with this one's id. Where the system cannot tell whether a
/// process runs (no `/proc`), files older than a day are removed. Errors are ignored: cleaning is best effort.
fn remove_stale(dir: &Path, file_name: &str) {
    let prefix = tmp_prefix(file_name);
    let Ok(entries) = fs::read_dir(dir) else { return };
    let me = (std::process::id(), process_nonce());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let mut parts = rest.split('-');
        let (Some(pid), Some(nonce), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(pid), Ok(nonce)) = (pid.parse::<u32>(), u64::from_str_radix(nonce, 16)) else { continue };
        let stale = if pid == me.0 {
            nonce != me.1
        } else {
            match is_running(pid) {
                Some(running) => !running,
                None => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 24 * 3600),
            }
        };
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes a file atomically: `write` fills a temporary file beside `path` (same folder, so the rename stays on
/// one file system); it is flushed and synced to disk, then renamed over `path`, and the folder is synced
/// (Unix). If `write` fails, or anything after it, the temporary file is removed and `path` is left as it was:
/// a reader sees the old file or the new one, never a mix, even after a crash or a full disk.
///
/// A writer killed mid-save (`SIGKILL`, the OOM killer) cannot remove its temporary file; the next save of the
/// same `path` does: temporary files of `path` whose process is no longer running are removed first, so
/// repeated kills leave at most one temporary file per target. (The temporary file is named
/// `.<name>.tmp-<pid>-<nonce>-<n>`; where there is no `/proc` to ask whether a process runs, such files older
/// than a day are removed.)
///
/// ```
/// let path = std::env::temp_dir().join(format!("kerust-doc-atomic-{}.txt", std::process::id()));
/// kerust::saving::write_atomic(&path, |w| Ok(w.write_all(b"first")?))?;
/// // A write that fails half-way leaves the first version.
/// let failed = kerust::saving::write_atomic(&path, |w| {
///     w.write_all(b"sec")?;
///     Err(std::io::Error::other("disk full").into())
/// });
/// assert!(failed.is_err());
/// assert_eq!(std::fs::read(&path).unwrap(), b"first");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] naming `path` (or the folder) for a failed create, write, sync or rename; or the error of
/// `write`.
pub fn write_atomic(path: impl AsRef<Path>, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let path = path.as_ref();
    let Some(file_name) = path.file_name() else {
        return Err(Error::invalid_argument("path", path.display(), "must name a file"));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = file_name.to_string_lossy();
    remove_stale(&dir, &file_name);
    let tmp = dir.join(format!(
        "{}{}-{:x}-{}",
        tmp_prefix(&file_name),
        std::process::id(),
        process_nonce(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_then_rename(&tmp, path, write);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        sync_dir(&dir);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    // Errors name the user's path: the temporary file is ours, and a message about `.m.tmp-123-...` sends the
    // user looking for a file they never asked for.
    let on_tmp = |e: std::io::Error| {
        let kind = e.kind();
        Error::io(
            path,
            std::io::Error::new(kind, format!("{e} (writing the temporary file {})", tmp.display())),
        )
    };
    let file = OpenOptions::new().write(true).create_new(true).open(tmp).map_err(|e| {
        match tmp.parent().filter(|dir| e.kind() == std::io::ErrorKind::NotFound && !dir.is_dir()) {
            Some(dir) => Error::io(
                path,
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "the folder {} does not exist; create it first (std::fs::create_dir_all)",
                        dir.display()
                    ),
                ),
            ),
            None => on_tmp(e),
        }
    })?;
    let mut writer = TmpWriter { inner: BufWriter::new(file), failed: false };
    // Only an error of the temporary file itself is reported as one; the closure's own errors stay its own.
    write(&mut writer).map_err(|e| match e {
        Error::Io { source, .. } if writer.failed => on_tmp(source),
        other => other,
    })?;
    let file = writer.inner.into_inner().map_err(|e| on_tmp(e.into_error()))?;
    file.sync_all().map_err(on_tmp)?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary file's writer: remembers whether writing to the file failed, so that such an error (and no
/// other error of the closure) is reported as the temporary file's.
struct TmpWriter<W: Write> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for TmpWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Makes the rename durable: fsync of the folder (Unix; elsewhere, and on failure, nothing is done).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

impl From<std::io::Error> for Error {
    /// An I/O error of a writer or reader that has no path (e.g. inside [`write_atomic`]'s closure).
    fn from(source: std::io::Error) -> Self {
        Error::Io { path: PathBuf::from("<stream>"), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_writer_tells_its_own_failures_from_the_closures() {
        let path = std::env::temp_dir().join(format!("kerust_tmp_writer_{}", std::process::id()));
        fs::write(&path, b"x").unwrap();
        // A read-only handle: every write to it fails, as a full disk would.
        let mut w = TmpWriter { inner: File::open(&path).unwrap(), failed: false };
        assert!(w.write_all(b"data").is_err());
        assert!(w.failed);
        fs::remove_file(&path).unwrap();

        // An error the closure makes itself is not blamed on the temporary file.
        let target = std::env::temp_dir().join(format!("kerust_tmp_writer_target_{}", std::process::id()));
        let e = write_atomic(&target, |w| {
            w.write_all(b"fine")?;
            Err(std::io::Error::other("the source went away").into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("the source went away") && !e.contains("temporary file"), "{e}");
        assert!(!target.exists());
    }
}
