//! Fashion-MNIST: 70,000 28x28 grayscale images of clothing in 10 classes, a drop-in replacement for MNIST
//! (same sizes, same IDX files).
//!
//! Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
//! 9 Ankle boot ([`CLASS_NAMES`]).
//!
//! Files are cached in `$KERUST_HOME/datasets/fashion_mnist/` (see [the module docs](super)) and verified by
//! the SHA-256 of their uncompressed content on every load. On Debian, `apt-get install
//! dataset-fashion-mnist` puts the files in `/usr/share/datasets/fashion-mnist/`, which
//! [`load_data_from`] reads directly.
use std::path::Path;

use super::image_dataset::{self, DatasetSpec, FileSpec};
use super::{Cache, Split};
use crate::Result;

/// The built-in mirrors, tried in order; `KERUST_DATASETS_MIRROR` or [`Cache::with_mirrors`] replace them.
pub const MIRRORS: &[&str] = &[
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
];

/// The class names, indexed by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

// Digests of the uncompressed files of Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1), which
// agree with the digests other projects derived from the upstream archives (whose published MD5s are of
// the .gz wrappers, which Debian recompressed).
const SPEC: DatasetSpec = DatasetSpec {
    name: "fashion_mnist",
    mirrors: MIRRORS,
    files: [
        FileSpec {
            name: "train-images-idx3-ubyte.gz",
            sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        },
        FileSpec {
            name: "train-labels-idx1-ubyte.gz",
            sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
        FileSpec {
            name: "t10k-images-idx3-ubyte.gz",
            sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        },
        FileSpec {
            name: "t10k-labels-idx1-ubyte.gz",
            sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ],
};

/// Loads Fashion-MNIST like Keras' `fashion_mnist.load_data()`: `((x_train, y_train), (x_test, y_test))`,
/// images of shape `(60000, 28, 28)` and `(10000, 28, 28)`, labels 0-9 of shape `(60000,)` and
/// `(10000,)`.
///
/// Uses the cache given by the environment ([`Cache::from_env`]), downloading the files that are missing.
///
/// # Errors
/// As [`mnist::load_data`](super::mnist::load_data).
///
/// ```no_run
/// let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::fashion_mnist::load_data()?;
/// assert_eq!(x_train.shape(), &[60000, 28, 28]);
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data() -> Result<(Split, Split)> {
    load_data_with(&Cache::from_env()?)
}

/// As [`load_data`], with an explicit cache instead of the environment's.
///
/// # Errors
/// As [`load_data`].
pub fn load_data_with(cache: &Cache) -> Result<(Split, Split)> {
    image_dataset::load_cached(&SPEC, cache)
}

/// Loads Fashion-MNIST from a folder that already holds the four files (same names as MNIST's, `.gz` or
/// uncompressed), without touching the cache or the network. The files are verified as in [`load_data`].
///
/// # Errors
/// As [`mnist::load_data_from`](super::mnist::load_data_from).
///
/// ```no_run
/// let ((x_train, y_train), _) =
///     kerust::datasets::fashion_mnist::load_data_from("/usr/share/datasets/fashion-mnist")?;
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn load_data_from(dir: impl AsRef<Path>) -> Result<(Split, Split)> {
    image_dataset::load_dir(&SPEC, dir.as_ref())
}
