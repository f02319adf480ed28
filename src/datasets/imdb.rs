//! IMDB movie reviews: 25,000 for training and 25,000 for testing, each a sequence of word indices, labelled
//! 0 (negative) or 1 (positive); Keras' `keras.datasets.imdb`.
//!
//! The file is Keras' own `imdb.npz`, downloaded from Keras' address, cached in `$KERUST_HOME/datasets/imdb/`
//! (see [the module docs](super) for the cache and the environment variables) and verified against the
//! SHA-256 Keras publishes, on every load. [`load_data`] returns exactly Keras' sequences, labels and order
//! for the same [`SequenceOptions`].
//!
//! ```no_run
//! use kerust::datasets::{imdb, SequenceOptions};
//! use kerust::utils::PadSequences;
//!
//! let options = SequenceOptions { num_words: Some(20_000), ..Default::default() };
//! let ((x_train, y_train), (x_test, y_test)) = imdb::load_data(&options)?;
//! let x_train = PadSequences::new().maxlen(200).pad(&x_train)?; // an Array2<i32> of shape (25000, 200)
//! # Ok::<(), kerust::Error>(())
//! ```
use std::collections::HashMap;
use std::path::Path;

use ndarray::Array1;

use super::mt19937::RandomState;
use super::sequence_dataset::{self as seq, Digest, RemoteFile, SequenceOptions, SequenceSplit};
use super::Cache;
use crate::{Error, Result};

const FILE: RemoteFile = RemoteFile {
    dataset: "imdb",
    name: "imdb.npz",
    digest: Digest::Sha256("69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
    local_loader: "imdb::load_data_from_npz",
};

const WORD_INDEX: RemoteFile = RemoteFile {
    dataset: "imdb",
    name: "imdb_word_index.json",
    digest: Digest::Md5("bfafd718b763782e994055a2d397834f"),
    local_loader: "imdb::get_word_index_with",
};

/// Loads IMDB as Keras' `imdb.load_data(num_words=..., ...)` does: `((x_train, y_train), (x_test, y_test))`,
/// the same sequences in the same order. Pad them to one length with
/// [`PadSequences`](crate::utils::PadSequences).
///
/// Uses the cache given by the environment ([`Cache::from_env`]), downloading the file if it is missing.
///
/// # Errors
/// [`Error::Network`] if the file is missing and cannot be downloaded, [`Error::Checksum`] if the cached
/// file is not Keras' (delete it and it is fetched again), [`Error::Io`] for the cache folder,
/// [`Error::InvalidArgument`] if `maxlen` leaves no sequence in a split (as Keras raises).
pub fn load_data(options: &SequenceOptions) -> Result<(SequenceSplit, SequenceSplit)> {
    load_data_with(&Cache::from_env()?, options)
}

/// As [`load_data`], with an explicit cache instead of the environment's.
///
/// # Errors
/// As [`load_data`].
pub fn load_data_with(cache: &Cache, options: &SequenceOptions) -> Result<(SequenceSplit, SequenceSplit)> {
    let bytes = seq::cached_bytes(&FILE, cache)?;
    let path = cache.dataset_dir(FILE.dataset).join(FILE.name);
    from_bytes(&bytes, &path.display().to_string(), options)
}

/// Loads an `.npz` file in the layout of Keras' `imdb.npz` (object arrays `x_train` and `x_test` of lists of
/// word indices, integer arrays `y_train` and `y_test`) from any path, without the network and without
/// checking it against Keras' checksum: Keras' own cached copy (`~/.keras/datasets/imdb.npz`), or a file of
/// your own written with numpy's `savez`. The options apply as in [`load_data`].
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::FileFormat`] naming the member and what was expected
/// and what came if it is not such a file; [`Error::InvalidArgument`] as for [`load_data`].
///
/// ```no_run
/// use kerust::datasets::{imdb, SequenceOptions};
///
/// let home = std::env::var("HOME").unwrap_or_default();
/// let path = std::path::Path::new(&home).join(".keras/datasets/imdb.npz");
/// let ((x_train, y_train), _) = imdb::load_data_from_npz(&path, &SequenceOptions::default())?;
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data_from_npz(
    path: impl AsRef<Path>,
    options: &SequenceOptions,
) -> Result<(SequenceSplit, SequenceSplit)> {
    let path = path.as_ref();
    from_bytes(&seq::read_file(path)?, &path.display().to_string(), options)
}

fn from_bytes(
    bytes: &[u8],
    source: &str,
    options: &SequenceOptions,
) -> Result<(SequenceSplit, SequenceSplit)> {
    let [x_train, y_train, x_test, y_test] =
        seq::members(bytes, source, ["x_train", "y_train", "x_test", "y_test"])?;
    let (x_train, y_train) = seq::split(x_train, y_train, ("x_train", "y_train"), source)?;
    let (x_test, y_test) = seq::split(x_test, y_test, ("x_test", "y_test"), source)?;

    // One generator for both shuffles, train first, as in Keras.
    let mut rng = RandomState::new(options.seed);
    let (mut x_train, y_train) = seq::shuffle(&mut rng, x_train, y_train);
    let (mut x_test, y_test) = seq::shuffle(&mut rng, x_test, y_test);
    seq::add_markers(&mut x_train, options)?;
    seq::add_markers(&mut x_test, options)?;
    let (x_train, y_train) = seq::remove_long(options.maxlen, x_train, y_train);
    let (x_test, y_test) = seq::remove_long(options.maxlen, x_test, y_test);
    if let Some(maxlen) = options.maxlen.filter(|_| x_train.is_empty() || x_test.is_empty()) {
        return Err(Error::invalid_argument(
            "maxlen",
            maxlen,
            "after dropping the sequences of maxlen or more indices, a split has none left; increase maxlen",
        ));
    }
    let n_train = x_train.len();
    let mut xs = x_train;
    xs.extend(x_test);
    seq::clip_vocabulary(&mut xs, options)?;
    let x_test = xs.split_off(n_train);
    Ok(((xs, Array1::from(y_train)), (x_test, Array1::from(y_test))))
}

/// The word index of IMDB, as Keras' `imdb.get_word_index()`: each word to its rank by frequency (1 is the
/// most frequent). In the sequences of [`load_data`], word `w` is `word_index[w] + index_from`.
///
/// The file (`imdb_word_index.json`) is cached beside `imdb.npz`, downloaded if missing, and verified
/// against the MD5 Keras publishes for it (the only digest Keras gives).
///
/// # Errors
/// As [`load_data`]; [`Error::FileFormat`] if the file is not a JSON object of words to integers.
///
/// ```no_run
/// let word_index = kerust::datasets::imdb::get_word_index()?;
/// assert_eq!(word_index["the"], 1);
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn get_word_index() -> Result<HashMap<String, i64>> {
    get_word_index_with(&Cache::from_env()?)
}

/// As [`get_word_index`], with an explicit cache instead of the environment's.
///
/// # Errors
/// As [`get_word_index`].
pub fn get_word_index_with(cache: &Cache) -> Result<HashMap<String, i64>> {
    let bytes = seq::cached_bytes(&WORD_INDEX, cache)?;
    seq::word_index(&bytes, WORD_INDEX.name)
}
