//! [`write_atomic`]: replace a file all at once or not at all.
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a temporary file beside `path` (same folder, so the rename stays on
/// one file system); it is flushed and synced to disk, then renamed over `path`, and the folder is synced
/// (Unix). If `write` fails, or anything after it, the temporary file is removed and `path` is left as it was:
/// a reader sees the old file or the new one, never a mix, even after a crash or a full disk.
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
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
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
    let file = OpenOptions::new().write(true).create_new(true).open(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut writer = BufWriter::new(file);
    write(&mut writer)?;
    let file = writer.into_inner().map_err(|e| Error::io(tmp, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| Error::io(path, e))
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
