//! What IMDB and Reuters share: one file fetched, cached and verified as Keras publishes it (the SHA-256 or
//! MD5 of the file's bytes), the `.npz` members read, and Keras' preprocessing of the word sequences
//! (shuffle, `start_char`/`index_from`, `maxlen`, `num_words`/`skip_top`/`oov_char`), step for step as in
//! `keras/src/datasets/imdb.py` and `reuters.py`.
use std::path::Path;

use ndarray::Array1;

use super::checksum::{md5_hex, sha256_hex};
use super::mt19937::RandomState;
use super::{download, image_dataset, Cache};
use crate::formats::npy::{self, NpyArray};
use crate::{Error, Result};

/// Where Keras downloads its datasets from.
pub(crate) const KERAS_MIRRORS: &[&str] = &["https://storage.googleapis.com/tensorflow/tf-keras-datasets/"];

/// One split of a sequence dataset, `(sequences, labels)`: each sequence a list of word indices (of any
/// length), one label per sequence.
pub type SequenceSplit = (Vec<Vec<i64>>, Array1<i64>);

/// The arguments of Keras' `imdb.load_data` and `reuters.load_data` (all but Reuters' `test_split`), with
/// Keras' defaults.
///
/// Words are ranked by frequency in the files: word `r` (1 is the most frequent) becomes `r + index_from`.
///
/// ```
/// use kerust::datasets::SequenceOptions;
///
/// let options = SequenceOptions { num_words: Some(10_000), maxlen: Some(200), ..Default::default() };
/// assert_eq!((options.seed, options.start_char, options.oov_char, options.index_from), (113, Some(1), Some(2), 3));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceOptions {
    /// Keep the `num_words - 1` lowest indices (`index < num_words`); others become `oov_char`, or are
    /// dropped when `oov_char` is `None`. `None` (or `Some(0)`, as in Keras) keeps all but, as Keras does, the
    /// single largest index present, which counts as out of vocabulary. Default `None`.
    pub num_words: Option<usize>,
    /// Indices below `skip_top` are treated as out of vocabulary, as `num_words` treats large ones (with the
    /// default `index_from` of 3, `skip_top` 3 leaves the start and out-of-vocabulary markers alone and 4
    /// and more also drop the most frequent words). Default 0.
    pub skip_top: usize,
    /// Drop every sequence of `maxlen` or more indices (after `start_char` is added), before `num_words`
    /// applies. `None` (or `Some(0)`, as in Keras) keeps all. Default `None`.
    pub maxlen: Option<usize>,
    /// The seed of the shuffle (numpy's `RandomState`, so the order is Keras'). Default 113.
    pub seed: u32,
    /// Put before every sequence; `None` for none. Default `Some(1)`.
    pub start_char: Option<i64>,
    /// What out-of-vocabulary words become; `None` drops them. Default `Some(2)`.
    pub oov_char: Option<i64>,
    /// Added to every word's rank. Default 3.
    pub index_from: i64,
}

impl Default for SequenceOptions {
    fn default() -> Self {
        SequenceOptions {
            num_words: None,
            skip_top: 0,
            maxlen: None,
            seed: 113,
            start_char: Some(1),
            oov_char: Some(2),
            index_from: 3,
        }
    }
}

/// How Keras verifies a file: `get_file`'s `file_hash`, the SHA-256 (64 hex digits) or MD5 (32) of the bytes.
#[derive(Clone, Copy)]
pub(crate) enum Digest {
    Sha256(&'static str),
    Md5(&'static str),
}

/// A file of a dataset as Keras downloads it.
pub(crate) struct RemoteFile {
    /// The cache folder, e.g. `imdb`.
    pub(crate) dataset: &'static str,
    /// The file name, e.g. `imdb.npz`.
    pub(crate) name: &'static str,
    pub(crate) digest: Digest,
    /// The `load_*_from_*` function that reads such a file from anywhere, named in the offline help.
    pub(crate) local_loader: &'static str,
}

impl Digest {
    fn check(self, bytes: &[u8]) -> std::result::Result<(), (String, String, &'static str)> {
        let (expected, found, kind) = match self {
            Digest::Sha256(e) => (e, sha256_hex(bytes), "SHA-256 of the file"),
            Digest::Md5(e) => (e, md5_hex(bytes), "MD5 of the file"),
        };
        if found == expected {
            Ok(())
        } else {
            Err((expected.to_string(), found, kind))
        }
    }
}

/// The file's bytes, from the cache (verified) or downloaded (verified before it enters the cache).
pub(crate) fn cached_bytes(file: &RemoteFile, cache: &Cache) -> Result<Vec<u8>> {
    let dir = cache.dataset_dir(file.dataset);
    let path = dir.join(file.name);
    if path.try_exists().map_err(|e| Error::io(&path, e))? {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if let Err((expected, found, kind)) = file.digest.check(&bytes) {
            return Err(Error::Checksum {
                path,
                digest: kind,
                expected,
                found,
                fix: "Delete the file and it will be fetched again".into(),
            });
        }
        return Ok(bytes);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mirrors = cache.mirrors_or(KERAS_MIRRORS);
    if mirrors.is_empty() {
        return Err(Error::invalid_argument("mirrors", "[]", "at least one mirror base URL is needed"));
    }
    let mut failures = Vec::new();
    for base in &mirrors {
        let url = format!("{}/{}", base.trim_end_matches('/'), file.name);
        let bytes = match download::fetch(&url, cache.progress()) {
            Ok(bytes) => bytes,
            Err(e) => {
                failures.push((url, e));
                continue;
            }
        };
        match file.digest.check(&bytes) {
            Ok(()) => {
                crate::formats::atomic::write_atomic(&path, |w| Ok(w.write_all(&bytes)?))?;
                return Ok(bytes);
            }
            Err((expected, found, kind)) => failures.push((
                url.clone(),
                Error::Network {
                    url,
                    reason: format!(
                        "the file served does not match: expected {kind} {expected}, found {found}"
                    ),
                    help: download::HELP.to_string(),
                },
            )),
        }
    }
    Err(match image_dataset::combine(failures) {
        Error::Network { url, reason, .. } => {
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            let help = format!(
                "Without the network, either put {} in {} (the cache folder, $KERUST_HOME/datasets/{}/: Keras' \
                 copy in ~/.keras/datasets/ will do) and load again; or set KERUST_DATASETS_MIRROR to a base URL \
                 that serves it; or read it from any path with {}",
                file.name,
                dir.display(),
                file.dataset,
                file.local_loader
            );
            Error::Network { url, reason, help }
        }
        other => other,
    })
}

/// Reads a file from a path the user gave.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// The named members of an `.npz` archive, in the order asked; `source` names the file in errors.
pub(crate) fn members<const K: usize>(bytes: &[u8], source: &str, names: [&str; K]) -> Result<[NpyArray; K]> {
    let mut all = npy::read_npz(bytes).map_err(|e| in_file(e, source))?;
    let mut out = Vec::with_capacity(K);
    for name in names {
        let Some(i) = all.iter().position(|(n, _)| n == name) else {
            let found: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::FileFormat {
                format: "npz",
                place: source.to_string(),
                reason: format!("a member {name}.npy, found members {found:?}"),
            });
        };
        out.push(all.swap_remove(i).1);
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("one array per name")))
}

fn in_file(error: Error, source: &str) -> Error {
    match error {
        Error::FileFormat { format, place, reason } => {
            Error::FileFormat { format, place: format!("{source}: {place}"), reason }
        }
        other => other,
    }
}

/// A split's sequences and labels from their members, of equal length.
pub(crate) fn split(
    x: NpyArray,
    y: NpyArray,
    names: (&str, &str),
    source: &str,
) -> Result<(Vec<Vec<i64>>, Vec<i64>)> {
    let bad = |name: &str, reason: String| Error::FileFormat {
        format: "npz",
        place: format!("{source}: member {name}.npy"),
        reason,
    };
    let NpyArray::IntLists(xs) = x else {
        return Err(bad(names.0, "an object array of lists of word indices, found an integer array".into()));
    };
    let ys = match y {
        NpyArray::Ints { shape, data } if shape.len() == 1 => data,
        NpyArray::Ints { shape, .. } => {
            return Err(bad(names.1, format!("a one-dimensional array of labels, found shape {shape:?}")))
        }
        NpyArray::IntLists(_) => {
            return Err(bad(names.1, "an integer array of labels, found an object array".into()))
        }
    };
    if xs.len() != ys.len() {
        return Err(bad(
            names.1,
            format!("{} labels, one for each sequence of {}, found {}", xs.len(), names.0, ys.len()),
        ));
    }
    Ok((xs, ys))
}

/// Shuffles sequences and labels together, in the order of numpy's `RandomState.shuffle` with `rng`.
pub(crate) fn shuffle(rng: &mut RandomState, xs: Vec<Vec<i64>>, ys: Vec<i64>) -> (Vec<Vec<i64>>, Vec<i64>) {
    let mut pairs: Vec<(Vec<i64>, i64)> = xs.into_iter().zip(ys).collect();
    rng.shuffle(&mut pairs);
    pairs.into_iter().unzip()
}

/// `start_char` then every word shifted by `index_from`.
pub(crate) fn add_markers(xs: &mut [Vec<i64>], options: &SequenceOptions) -> Result<()> {
    for x in xs.iter_mut() {
        for w in x.iter_mut() {
            *w = w.checked_add(options.index_from).ok_or_else(|| {
                Error::invalid_argument(
                    "index_from",
                    options.index_from,
                    format!("word index {w} + index_from overflows i64"),
                )
            })?;
        }
        if let Some(start) = options.start_char {
            x.insert(0, start);
        }
    }
    Ok(())
}

/// Keras' `remove_long_seq`: keeps the sequences shorter than `maxlen` (`None` or 0 keeps all).
pub(crate) fn remove_long(
    maxlen: Option<usize>,
    xs: Vec<Vec<i64>>,
    ys: Vec<i64>,
) -> (Vec<Vec<i64>>, Vec<i64>) {
    match maxlen.filter(|&m| m > 0) {
        Some(maxlen) => xs.into_iter().zip(ys).filter(|(x, _)| x.len() < maxlen).unzip(),
        None => (xs, ys),
    }
}

/// `num_words`, `skip_top` and `oov_char` over all sequences (train and test together, as in Keras).
pub(crate) fn clip_vocabulary(xs: &mut [Vec<i64>], options: &SequenceOptions) -> Result<()> {
    let num_words = match options.num_words.filter(|&n| n > 0) {
        Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
        // Keras: `max(max(x) for x in xs)`, an error for no sequences or an empty one.
        None => largest(xs).ok_or_else(|| {
            Error::invalid_argument(
                "num_words",
                "None",
                "the largest word index cannot be taken when there are no sequences or one is empty \
                 (Keras: max() arg is an empty sequence); give num_words, a start_char, or a larger maxlen",
            )
        })?,
    };
    let skip_top = i64::try_from(options.skip_top).unwrap_or(i64::MAX);
    let keep = |w: i64| skip_top <= w && w < num_words;
    for x in xs.iter_mut() {
        match options.oov_char {
            Some(oov) => x.iter_mut().filter(|w| !keep(**w)).for_each(|w| *w = oov),
            None => x.retain(|&w| keep(w)),
        }
    }
    Ok(())
}

/// The largest index of all sequences; `None` if there are none or one is empty.
fn largest(xs: &[Vec<i64>]) -> Option<i64> {
    let mut largest = None;
    for x in xs {
        let m = *x.iter().max()?;
        largest = Some(largest.map_or(m, |l: i64| l.max(m)));
    }
    largest
}

/// Parses a word index (`{"word": rank, ...}`).
pub(crate) fn word_index(bytes: &[u8], source: &str) -> Result<std::collections::HashMap<String, i64>> {
    serde_json::from_slice(bytes).map_err(|e| Error::FileFormat {
        format: "json",
        place: source.to_string(),
        reason: format!("a word index, an object of words to integer ranks: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serves `body` to one HTTP request on 127.0.0.1, then stops; returns the base URL.
    fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                .unwrap();
            stream.write_all(&body).unwrap();
        });
        (url, handle)
    }

    fn temp_home(tag: &str) -> std::path::PathBuf {
        let home = std::env::temp_dir().join(format!("kerust-seqcache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        home
    }

    #[test]
    fn downloads_verifies_caches_then_reads_the_cache() {
        let body = b"{\"the\": 1, \"and\": 2}".to_vec();
        let file = RemoteFile {
            dataset: "toy",
            name: "toy_word_index.json",
            digest: Digest::Md5(Box::leak(md5_hex(&body).into_boxed_str())),
            local_loader: "toy::load",
        };
        let (url, server) = serve_once(body.clone());
        let home = temp_home("ok");
        let cache = Cache::new(&home).with_mirrors([url]).with_progress(false);
        assert_eq!(cached_bytes(&file, &cache).unwrap(), body);
        server.join().unwrap();
        assert_eq!(std::fs::read(cache.dataset_dir("toy").join("toy_word_index.json")).unwrap(), body);
        // The server is gone: a second load can only come from the cache.
        let index = word_index(&cached_bytes(&file, &cache).unwrap(), "toy").unwrap();
        assert_eq!(index["and"], 2);
        let _ = std::fs::remove_dir_all(home);
    }

    #[test]
    fn a_download_that_does_not_match_is_not_cached() {
        let file = RemoteFile {
            dataset: "toy",
            name: "toy.npz",
            digest: Digest::Sha256("69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
            local_loader: "toy::load_data_from_npz",
        };
        let (url, server) = serve_once(b"not the file".to_vec());
        let home = temp_home("bad");
        let cache = Cache::new(&home).with_mirrors([url]).with_progress(false);
        let e = cached_bytes(&file, &cache).unwrap_err().to_string();
        server.join().unwrap();
        assert!(e.contains("does not match: expected SHA-256 of the file 6966"), "{e}");
        assert!(e.contains("toy::load_data_from_npz"), "{e}");
        assert!(!cache.dataset_dir("toy").join("toy.npz").exists());
        let _ = std::fs::remove_dir_all(home);
    }

    #[test]
    fn keras_quirks_of_the_vocabulary() {
        // num_words None: the largest index present counts as out of vocabulary, as in Keras.
        let mut xs = vec![vec![1, 5, 9], vec![2, 9]];
        clip_vocabulary(&mut xs, &SequenceOptions::default()).unwrap();
        assert_eq!(xs, vec![vec![1, 5, 2], vec![2, 2]]);
        // An empty sequence leaves no largest index: an error, where Keras raises.
        let options = SequenceOptions { start_char: None, ..Default::default() };
        assert!(clip_vocabulary(&mut [vec![], vec![4]], &options).is_err());
        // index_from that overflows is an error, not a wrap.
        let options = SequenceOptions { index_from: i64::MAX, ..Default::default() };
        assert!(add_markers(&mut [vec![1]], &options).is_err());
    }
}
