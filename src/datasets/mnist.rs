//! MNIST: 70,000 28x28 grayscale images of handwritten digits, 60,000 for training and 10,000 for testing,
//! with labels 0-9.
//!
//! Files are cached in `$KERUST_HOME/datasets/mnist/` (see [the module docs](super) for the cache and the
//! environment variables) and verified by the SHA-256 of their uncompressed content on every load.
use std::path::Path;

use super::image_dataset::{self, DatasetSpec, FileSpec};
use super::{Cache, Split};
use crate::Result;

/// The built-in mirrors, tried in order; `KERUST_DATASETS_MIRROR` or [`Cache::with_mirrors`] replace them.
pub const MIRRORS: &[&str] = &[
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
];

const SPEC: DatasetSpec = DatasetSpec {
    name: "mnist",
    mirrors: MIRRORS,
    files: [
        FileSpec {
            name: "train-images-idx3-ubyte.gz",
            sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        },
        FileSpec {
            name: "train-labels-idx1-ubyte.gz",
            sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        },
        FileSpec {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        },
        FileSpec {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ],
};

/// Loads MNIST like Keras' `mnist.load_data()`: `((x_train, y_train), (x_test, y_test))`, images of shape
/// `(60000, 28, 28)` and `(10000, 28, 28)` with pixel values 0-255, labels of shape `(60000,)` and
/// `(10000,)` with values 0-9.
///
/// Uses the cache given by the environment ([`Cache::from_env`]), downloading the files that are missing.
///
/// # Errors
/// [`Error::Network`](crate::Error::Network) if a missing file cannot be downloaded from any mirror,
/// [`Error::Checksum`](crate::Error::Checksum) or [`Error::Format`](crate::Error::Format) if a cached file
/// is corrupt (the message names it: delete it and it is fetched again), [`Error::Io`](crate::Error::Io)
/// if the cache folder cannot be read or written.
///
/// ```no_run
/// let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::mnist::load_data()?;
/// assert_eq!(x_train.shape(), &[60000, 28, 28]);
/// assert_eq!(y_test.len(), 10000);
/// let y_train = kerust::utils::to_categorical(&y_train, 10)?;
/// assert_eq!(y_train.shape(), &[60000, 10]);
/// # let _ = x_test;
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data() -> Result<(Split, Split)> {
    load_data_with(&Cache::from_env()?)
}

/// As [`load_data`], with an explicit cache instead of the environment's.
///
/// # Errors
/// As [`load_data`].
///
/// ```no_run
/// use kerust::datasets::{mnist, Cache};
///
/// let cache = Cache::new("/srv/kerust").with_mirrors(["http://intranet.example/mnist/"]);
/// let ((x_train, y_train), _) = mnist::load_data_with(&cache)?;
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data_with(cache: &Cache) -> Result<(Split, Split)> {
    image_dataset::load_cached(&SPEC, cache)
}

/// Loads MNIST from a folder that already holds the four files (`train-images-idx3-ubyte.gz`,
/// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`, or the same
/// names uncompressed, without `.gz`), without touching the cache or the network. The files are verified
/// as in [`load_data`].
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) naming a file that is missing or unreadable,
/// [`Error::Checksum`](crate::Error::Checksum) or [`Error::Format`](crate::Error::Format) naming a file that
/// is not the original.
///
/// ```no_run
/// let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::mnist::load_data_from("/data/mnist")?;
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data_from(dir: impl AsRef<Path>) -> Result<(Split, Split)> {
    image_dataset::load_dir(&SPEC, dir.as_ref())
}
