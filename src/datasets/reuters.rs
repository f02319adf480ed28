//! Reuters newswires: 11,228 sequences of word indices, each labelled with one of 46 topics
//! ([`get_label_names`]); Keras' `keras.datasets.reuters`.
//!
//! The file is Keras' own `reuters.npz`, downloaded from Keras' address, cached in
//! `$KERUST_HOME/datasets/reuters/` (see [the module docs](super)) and verified against the SHA-256 Keras
//! publishes, on every load. [`load_data`] returns exactly Keras' sequences, labels and order.
//!
//! ```no_run
//! use kerust::datasets::{reuters, SequenceOptions};
//!
//! let options = SequenceOptions { num_words: Some(10_000), ..Default::default() };
//! let ((x_train, y_train), (x_test, y_test)) = reuters::load_data(&options, 0.2)?;
//! assert_eq!(x_train.len(), 8982);
//! println!("first topic: {}", reuters::get_label_names()[y_train[0] as usize]);
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
    dataset: "reuters",
    name: "reuters.npz",
    digest: Digest::Sha256("d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
    local_loader: "reuters::load_data_from_npz",
};

const WORD_INDEX: RemoteFile = RemoteFile {
    dataset: "reuters",
    name: "reuters_word_index.json",
    digest: Digest::Md5("4d44cc38712099c9e383dc6e5f11a921"),
    local_loader: "reuters::get_word_index_with",
};

/// Loads Reuters as Keras' `reuters.load_data(num_words=..., test_split=..., ...)` does:
/// `((x_train, y_train), (x_test, y_test))`, the same sequences in the same order; the first
/// `floor(count * (1 - test_split))` shuffled newswires are for training.
///
/// Uses the cache given by the environment ([`Cache::from_env`]), downloading the file if it is missing.
///
/// # Errors
/// [`Error::InvalidArgument`] for a `test_split` outside `0.0..=1.0`; otherwise as
/// [`imdb::load_data`](super::imdb::load_data).
pub fn load_data(options: &SequenceOptions, test_split: f64) -> Result<(SequenceSplit, SequenceSplit)> {
    load_data_with(&Cache::from_env()?, options, test_split)
}

/// As [`load_data`], with an explicit cache instead of the environment's.
///
/// # Errors
/// As [`load_data`].
pub fn load_data_with(
    cache: &Cache,
    options: &SequenceOptions,
    test_split: f64,
) -> Result<(SequenceSplit, SequenceSplit)> {
    check_split(test_split)?;
    let bytes = seq::cached_bytes(&FILE, cache)?;
    let path = cache.dataset_dir(FILE.dataset).join(FILE.name);
    from_bytes(&bytes, &path.display().to_string(), options, test_split)
}

/// Loads an `.npz` file in the layout of Keras' `reuters.npz` (an object array `x` of lists of word indices,
/// an integer array `y`) from any path, without the network and without checking it against Keras'
/// checksum, as [`imdb::load_data_from_npz`](super::imdb::load_data_from_npz) does.
///
/// # Errors
/// As [`imdb::load_data_from_npz`](super::imdb::load_data_from_npz), and for `test_split` as [`load_data`].
pub fn load_data_from_npz(
    path: impl AsRef<Path>,
    options: &SequenceOptions,
    test_split: f64,
) -> Result<(SequenceSplit, SequenceSplit)> {
    check_split(test_split)?;
    let path = path.as_ref();
    from_bytes(&seq::read_file(path)?, &path.display().to_string(), options, test_split)
}

fn check_split(test_split: f64) -> Result<()> {
    if (0.0..=1.0).contains(&test_split) {
        Ok(())
    } else {
        Err(Error::invalid_argument("test_split", test_split, "the fraction of test data, in 0.0..=1.0"))
    }
}

fn from_bytes(
    bytes: &[u8],
    source: &str,
    options: &SequenceOptions,
    test_split: f64,
) -> Result<(SequenceSplit, SequenceSplit)> {
    let [x, y] = seq::members(bytes, source, ["x", "y"])?;
    let (xs, ys) = seq::split(x, y, ("x", "y"), source)?;
    let (mut xs, ys) = seq::shuffle(&mut RandomState::new(options.seed), xs, ys);
    seq::add_markers(&mut xs, options)?;
    let (mut xs, mut ys) = seq::remove_long(options.maxlen, xs, ys);
    seq::clip_vocabulary(&mut xs, options)?;
    // Keras: `int(len(xs) * (1 - test_split))`, in floating point.
    let n_train = ((xs.len() as f64 * (1.0 - test_split)) as usize).min(xs.len());
    let x_test = xs.split_off(n_train);
    let y_test = ys.split_off(n_train);
    Ok(((xs, Array1::from(ys)), (x_test, Array1::from(y_test))))
}

/// The word index of Reuters, as Keras' `reuters.get_word_index()`: each word to its rank by frequency. In
/// the sequences of [`load_data`], word `w` is `word_index[w] + index_from`.
///
/// # Errors
/// As [`imdb::get_word_index`](super::imdb::get_word_index).
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

/// The 46 topics, as Keras' `reuters.get_label_names()`: label `i` of [`load_data`] is topic
/// `get_label_names()[i]`.
///
/// ```
/// let names = kerust::datasets::reuters::get_label_names();
/// assert_eq!((names.len(), names[3]), (46, "earn"));
/// ```
pub fn get_label_names() -> &'static [&'static str; 46] {
    &LABEL_NAMES
}

#[rustfmt::skip]
const LABEL_NAMES: [&str; 46] = [
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply", "coffee", "sugar",
    "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp",
    "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi", "iron-steel",
    "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog",
    "lead",
];
