//! The download path for real, against a tiny HTTP/1.1 server on 127.0.0.1 serving the shared MNIST files
//! (and broken variants of them). Loopback only: the server binds 127.0.0.1 and every mirror URL points
//! there.
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use kerust::datasets::idx::{self, Compression};
use kerust::datasets::{mnist, Cache};
use kerust::Error;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// Held for reading by every test, for writing by the one that sets environment variables: setting them
/// while another thread reads the environment (ureq does, for proxies) is not safe.
static ENV_LOCK: RwLock<()> = RwLock::new(());

// ---------------------------------------------------------------------------------------------------
// Test server

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    Ok(Arc<Vec<u8>>),
    NotFound,
    /// Announce the full length, send `cut` bytes, then close the connection.
    Truncated(Arc<Vec<u8>>, usize),
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `routes` (path -> reply; anything else is a 404) on 127.0.0.1, one connection at a time.
    fn start(routes: HashMap<String, Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &routes, &log);
                }
            }
        });
        Server { addr, requests, stop, thread: Some(thread) }
    }

    /// The base URL for a path prefix, e.g. `http://127.0.0.1:1234/good/`.
    fn base(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}/", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &HashMap<String, Reply>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    log.lock().unwrap().push(path.clone());
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n")
    };
    match routes.get(&path).cloned().unwrap_or(Reply::NotFound) {
        Reply::Ok(body) => {
            stream.write_all(head("200 OK", body.len()).as_bytes())?;
            stream.write_all(&body)?;
        }
        Reply::NotFound => {
            let body = b"not found";
            stream.write_all(head("404 Not Found", body.len()).as_bytes())?;
            stream.write_all(body)?;
        }
        Reply::Truncated(body, cut) => {
            stream.write_all(head("200 OK", body.len()).as_bytes())?;
            stream.write_all(&body[..cut])?;
        }
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

// ---------------------------------------------------------------------------------------------------
// Helpers

fn mnist_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    if FILES.iter().all(|f| dir.join(f).exists()) {
        Some(dir)
    } else {
        eprintln!("SKIPPED: MNIST files not found in {}", dir.display());
        None
    }
}

/// The real files, served under `/<prefix>/<name>`.
fn real_routes(dir: &Path, prefix: &str) -> HashMap<String, Reply> {
    FILES
        .iter()
        .map(|f| (format!("/{prefix}/{f}"), Reply::Ok(Arc::new(fs::read(dir.join(f)).unwrap()))))
        .collect()
}

/// A unique, empty `KERUST_HOME`, removed on drop.
struct TempHome(PathBuf);

impl TempHome {
    fn new(tag: &str) -> TempHome {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("kerust-dl-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempHome(path)
    }

    fn cache(&self, mirrors: &[String]) -> Cache {
        Cache::new(&self.0).with_mirrors(mirrors.iter().cloned()).with_progress(false)
    }

    fn mnist_dir(&self) -> PathBuf {
        self.0.join("datasets").join("mnist")
    }

    /// Pre-fills the cache with the real files except `except`.
    fn seed(&self, src: &Path, except: &str) {
        fs::create_dir_all(self.mnist_dir()).unwrap();
        for f in FILES.iter().filter(|&&f| f != except) {
            fs::copy(src.join(f), self.mnist_dir().join(f)).unwrap();
        }
    }

    /// Every entry of the cache folder, hidden temp files included.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.mnist_dir())
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The real file with one label changed: valid gzip and IDX, wrong content.
fn tampered_labels(dir: &Path) -> Vec<u8> {
    let mut labels = idx::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    labels[[0]] = 3;
    let tmp = TempHome::new("tamper-src");
    let path = tmp.0.join("labels.gz");
    idx::write(&path, &labels, Compression::Gzip).unwrap();
    fs::read(path).unwrap()
}

fn expect_network_error<T: std::fmt::Debug>(result: kerust::Result<T>, needles: &[&str]) -> String {
    match result {
        Err(e @ Error::Network { .. }) => {
            let msg = e.to_string();
            eprintln!("error as reported: {msg}");
            for needle in needles {
                assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
            }
            msg
        }
        other => panic!("expected a Network error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[test]
fn downloads_into_an_empty_cache_then_only_what_is_missing() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let server = Server::start(real_routes(&src, "mnist"));
    let home = TempHome::new("fresh");
    let cache = home.cache(&[server.base("mnist")]);

    let ((x_train, y_train), (x_test, y_test)) = mnist::load_data_with(&cache).unwrap();
    assert_eq!(x_train.shape(), &[60000, 28, 28]);
    assert_eq!(x_test.shape(), &[10000, 28, 28]);
    assert_eq!(y_train.slice(ndarray::s![..5]).to_vec(), [5, 0, 4, 1, 9]);
    assert_eq!(y_test.slice(ndarray::s![..5]).to_vec(), [7, 2, 1, 0, 4]);
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
    // The cache holds exactly the four files, byte for byte as served, and no temp files.
    assert_eq!(home.entries(), sorted(&FILES));
    for f in FILES {
        assert_eq!(fs::read(home.mnist_dir().join(f)).unwrap(), fs::read(src.join(f)).unwrap(), "{f}");
    }

    // Everything cached: no request.
    mnist::load_data_with(&cache).unwrap();
    assert_eq!(server.requests().len(), 4);

    // One file missing: one request, for that file.
    fs::remove_file(home.mnist_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    mnist::load_data_with(&cache).unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 5, "{requests:?}");
    assert_eq!(requests[4], "/mnist/t10k-labels-idx1-ubyte.gz");
    assert_eq!(home.entries(), sorted(&FILES));
}

fn sorted(files: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_corrupted_download_is_rejected_and_not_cached() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let name = "t10k-labels-idx1-ubyte.gz";
    let mut routes = HashMap::new();
    routes.insert(format!("/bad/{name}"), Reply::Ok(Arc::new(tampered_labels(&src))));
    let server = Server::start(routes);
    let home = TempHome::new("corrupt-dl");
    home.seed(&src, name);

    let url = format!("{}{name}", server.base("bad"));
    expect_network_error(mnist::load_data_with(&home.cache(&[server.base("bad")])), &[&url, "SHA-256"]);
    assert_eq!(server.requests(), [format!("/bad/{name}")]);
    assert!(!home.entries().contains(&name.to_string()), "{:?}", home.entries());
    assert_eq!(home.entries().len(), 3, "temp file left behind: {:?}", home.entries());
}

#[test]
fn a_download_that_is_not_gzip_is_rejected() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let name = "train-labels-idx1-ubyte.gz";
    let mut routes = HashMap::new();
    routes.insert(format!("/html/{name}"), Reply::Ok(Arc::new(b"<html>captive portal</html>".to_vec())));
    let server = Server::start(routes);
    let home = TempHome::new("html");
    home.seed(&src, name);

    expect_network_error(mnist::load_data_with(&home.cache(&[server.base("html")])), &[name, "not valid"]);
    assert_eq!(home.entries().len(), 3, "{:?}", home.entries());
}

#[test]
fn a_dropped_connection_leaves_nothing_that_looks_complete() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let name = "train-images-idx3-ubyte.gz";
    let body = Arc::new(fs::read(src.join(name)).unwrap());
    let cut = body.len() / 2;
    let mut routes = HashMap::new();
    routes.insert(format!("/cut/{name}"), Reply::Truncated(body, cut));
    let server = Server::start(routes);
    let home = TempHome::new("cut");
    home.seed(&src, name);

    expect_network_error(mnist::load_data_with(&home.cache(&[server.base("cut")])), &[name]);
    assert_eq!(server.requests().len(), 1);
    // Neither the file nor a temp file remains.
    assert_eq!(home.entries(), sorted(&FILES[1..]));
}

#[test]
fn a_404_names_the_url_and_the_mirror_override() {
    let _env = ENV_LOCK.read().unwrap();
    let server = Server::start(HashMap::new());
    let home = TempHome::new("404");
    let url = format!("{}train-images-idx3-ubyte.gz", server.base("nothing"));
    expect_network_error(
        mnist::load_data_with(&home.cache(&[server.base("nothing")])),
        &[&url, "404", "KERUST_DATASETS_MIRROR"],
    );
    assert_eq!(home.entries(), Vec::<String>::new());
}

#[test]
fn a_failed_download_names_the_cache_folder_and_the_files_to_put_there() {
    let _env = ENV_LOCK.read().unwrap();
    let server = Server::start(HashMap::new());
    let home = TempHome::new("offline");
    let msg = expect_network_error(mnist::load_data_with(&home.cache(&[server.base("nothing")])), &FILES);
    // The real folder the cache reads (resolved, not `$KERUST_HOME`), and the other two ways out.
    let folder = fs::canonicalize(home.mnist_dir()).unwrap();
    for needle in [&folder.display().to_string()[..], "$KERUST_HOME/datasets/mnist/", "mnist::load_data_from"]
    {
        assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
    }
    // Putting the files there, as the message says, is enough: nothing more is requested.
    let Some(src) = mnist_dir() else { return };
    home.seed(&src, "");
    let before = server.requests().len();
    mnist::load_data_with(&home.cache(&[server.base("nothing")])).unwrap();
    assert_eq!(server.requests().len(), before);
}

#[test]
fn an_unreachable_mirror_is_a_network_error() {
    let _env = ENV_LOCK.read().unwrap();
    // A loopback port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let home = TempHome::new("refused");
    let base = format!("http://127.0.0.1:{port}/mnist/");
    expect_network_error(mnist::load_data_with(&home.cache(std::slice::from_ref(&base))), &[&base]);
}

#[test]
fn a_bad_mirror_falls_through_to_the_next() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let name = "t10k-labels-idx1-ubyte.gz";
    let mut routes = real_routes(&src, "good");
    routes.insert(format!("/bad/{name}"), Reply::Ok(Arc::new(tampered_labels(&src))));
    let server = Server::start(routes);
    let home = TempHome::new("fallback");
    home.seed(&src, name);

    let cache = home.cache(&[server.base("missing"), server.base("bad"), server.base("good")]);
    let (_, (_, y_test)) = mnist::load_data_with(&cache).unwrap();
    assert_eq!(y_test[0], 7);
    assert_eq!(
        server.requests(),
        [format!("/missing/{name}"), format!("/bad/{name}"), format!("/good/{name}")]
    );
    assert_eq!(home.entries(), sorted(&FILES));
}

#[test]
fn when_every_mirror_fails_each_is_reported() {
    let _env = ENV_LOCK.read().unwrap();
    let server = Server::start(HashMap::new());
    let home = TempHome::new("allfail");
    let msg = expect_network_error(
        mnist::load_data_with(&home.cache(&[server.base("a"), server.base("b")])),
        &["every mirror failed", "/a/train-images-idx3-ubyte.gz", "/b/train-images-idx3-ubyte.gz"],
    );
    assert!(msg.contains("404"), "{msg}");
}

#[test]
fn a_corrupted_cached_file_is_detected_without_downloading() {
    let _env = ENV_LOCK.read().unwrap();
    let Some(src) = mnist_dir() else { return };
    let server = Server::start(real_routes(&src, "mnist"));
    let home = TempHome::new("cached-bad");
    let cache = home.cache(&[server.base("mnist")]);

    // Valid gzip and IDX, wrong content: the checksum names the file and the fix.
    let name = "t10k-labels-idx1-ubyte.gz";
    home.seed(&src, name);
    let target = home.mnist_dir().join(name);
    fs::write(&target, tampered_labels(&src)).unwrap();
    match mnist::load_data_with(&cache) {
        Err(e @ Error::Checksum { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&target.display().to_string()) && msg.contains("Delete"), "{msg}");
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }

    // A truncated cached file: a format error, also naming the file and the fix.
    let bytes = fs::read(src.join(name)).unwrap();
    fs::write(&target, &bytes[..bytes.len() / 2]).unwrap();
    match mnist::load_data_with(&cache) {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&target.display().to_string()) && msg.contains("Delete"), "{msg}");
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    assert_eq!(server.requests(), Vec::<String>::new());

    // Deleting it, as the message says, fixes it.
    fs::remove_file(&target).unwrap();
    mnist::load_data_with(&cache).unwrap();
    assert_eq!(server.requests(), [format!("/mnist/{name}")]);
}

/// `load_data()` reads `KERUST_HOME` and `KERUST_DATASETS_MIRROR`.
#[test]
fn load_data_follows_the_environment() {
    let _env = ENV_LOCK.write().unwrap();
    let Some(src) = mnist_dir() else { return };
    let name = "train-labels-idx1-ubyte.gz";
    let server = Server::start(real_routes(&src, "env"));
    let home = TempHome::new("env");
    home.seed(&src, name);

    let saved: Vec<_> = ["KERUST_HOME", "KERUST_DATASETS_MIRROR"].map(|k| (k, std::env::var_os(k))).into();
    std::env::set_var("KERUST_HOME", &home.0);
    std::env::set_var("KERUST_DATASETS_MIRROR", server.base("env"));
    let result = mnist::load_data();
    for (key, value) in saved {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
    let ((_, y_train), _) = result.unwrap();
    assert_eq!(y_train.len(), 60000);
    assert_eq!(server.requests(), [format!("/env/{name}")]);
    assert_eq!(home.entries(), sorted(&FILES));
}
