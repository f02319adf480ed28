//! HTTP downloads into memory: the caller verifies the bytes before any of them reaches the cache.
use std::io::{self, IsTerminal, Read};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Refuse bodies larger than this: no dataset file comes close, and a misbehaving server must not fill
/// the disk.
const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// What a failed download suggests when nothing more is known; a dataset replaces it with its own folder
/// and file names.
pub(crate) const HELP: &str =
    "If this machine cannot reach the mirror, set KERUST_DATASETS_MIRROR to a base URL that serves the files";

/// Downloads `url` into memory (dataset files are a few MB; nothing touches the disk until the bytes are
/// verified), showing progress on stderr if asked and stderr is a terminal.
///
/// # Errors
/// [`Error::Network`] for connection failures, non-2xx statuses and interrupted transfers.
pub(crate) fn fetch(url: &str, show_progress: bool) -> Result<Vec<u8>> {
    let net = |reason: String| Error::Network { url: url.to_string(), reason, help: HELP.to_string() };
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
    let mut out = Vec::with_capacity(total.unwrap_or(0).min(MAX_DOWNLOAD_BYTES) as usize);
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
        out.extend_from_slice(&buf[..n]);
        done += n as u64;
        progress.update(done);
    }
    progress.finish();
    // A server that announced a length and sent less is caught by ureq; this also covers one that sent
    // more, or a proxy that rewrote the length.
    if let Some(total) = total.filter(|&t| t != done) {
        return Err(net(format!("expected {total} bytes (Content-Length), received {done}")));
    }
    Ok(out)
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
