//! HTTP downloads into temporary files that only become cache entries once verified.
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Refuse bodies larger than this: no dataset file comes close, and a misbehaving server must not fill
/// the disk.
const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// A file in the cache folder that is deleted when dropped unless [`TempFile::persist`]ed, so an
/// interrupted or failed download leaves nothing behind, and nothing that looks complete.
pub(crate) struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates `dir/.<name>.<pid>-<n>.part`, a name no other download (in this or another process) uses.
    pub(crate) fn create(dir: &Path, name: &str) -> Result<(TempFile, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{name}.{}-{n}.part", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((TempFile { path, persisted: false }, file)),
                // Left over from a crashed process with the same pid: pick the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically renames the file to `dest` (same folder, so the rename cannot be half done).
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).map_err(|e| Error::io(dest, e))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Downloads `url` into `out` (the open temp file at `out_path`), showing progress on stderr if asked and
/// stderr is a terminal. Returns the number of bytes written.
///
/// # Errors
/// [`Error::Network`] for connection failures, non-2xx statuses and interrupted transfers;
/// [`Error::Io`] if writing to `out` fails.
pub(crate) fn fetch(url: &str, out: &mut File, out_path: &Path, show_progress: bool) -> Result<u64> {
    let net = |reason: String| Error::Network { url: url.to_string(), reason };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // The .gz files are the payload: ask servers not to wrap them in another encoding.
        .accept_encoding("identity")
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(3600)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| net(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(net(format!("the server answered HTTP {status}")));
    }
    let total = response.body().content_length();
    let mut body = response.into_body().into_with_config().limit(MAX_DOWNLOAD_BYTES).reader();

    let mut progress = Progress::new(url, total, show_progress && io::stderr().is_terminal());
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                progress.finish();
                return Err(net(format!("the transfer broke off after {done} bytes: {e}")));
            }
        };
        out.write_all(&buf[..n]).map_err(|e| Error::io(out_path, e))?;
        done += n as u64;
        progress.update(done);
    }
    progress.finish();
    // A server that announced a length and sent less is caught by ureq; this also covers one that sent
    // more, or a proxy that rewrote the length.
    if let Some(total) = total.filter(|&t| t != done) {
        return Err(net(format!("expected {total} bytes (Content-Length), received {done}")));
    }
    // Durable before the rename makes it look complete.
    out.sync_all().map_err(|e| Error::io(out_path, e))?;
    Ok(done)
}

/// A one-line `\r`-refreshed progress display on stderr.
struct Progress<'a> {
    url: &'a str,
    total: Option<u64>,
    enabled: bool,
    last: Option<Instant>,
    done: u64,
}

impl<'a> Progress<'a> {
    fn new(url: &'a str, total: Option<u64>, enabled: bool) -> Self {
        Progress { url, total, enabled, last: None, done: 0 }
    }

    fn update(&mut self, done: u64) {
        self.done = done;
        // Redrawing on every 64 KiB chunk would flood a slow terminal.
        if self.enabled && self.last.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            self.draw();
            self.last = Some(Instant::now());
        }
    }

    fn draw(&self) {
        let line = match self.total {
            Some(total) => format!("Downloading {}: {} of {} bytes", self.url, self.done, total),
            None => format!("Downloading {}: {} bytes", self.url, self.done),
        };
        eprint!("\r{line}");
    }

    fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            self.draw();
            eprintln!();
        }
        self.enabled = false;
    }
}
