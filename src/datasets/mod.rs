//! Datasets: MNIST and Fashion-MNIST (images), IMDB and Reuters (sequences of word indices), downloaded once,
//! cached, verified.
//!
//! ```no_run
//! let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::mnist::load_data()?;
//! # Ok::<(), kerust::Error>(())
//! ```
//!
//! # The cache
//! Files are kept as distributed (the four `.gz` files of each dataset) in
//! `$KERUST_HOME/datasets/<name>/`, e.g. `~/.kerust/datasets/mnist/`. Only missing files are downloaded.
//! A download is verified in memory first, then written with [`crate::saving::write_atomic`] (a temporary
//! file beside the target, synced, renamed), so an interrupted or bad download never leaves a file that looks
//! complete.
//!
//! Every file, cached or downloaded, is verified on every load by the SHA-256 of its uncompressed bytes
//! (computed while decompressing, in the same pass as parsing). A cached file that fails is an error that
//! names it: delete it, and the next load fetches it again.
//!
//! IMDB and Reuters are one `.npz` file each (and a JSON word index), as Keras distributes them, kept in
//! `$KERUST_HOME/datasets/imdb/` and `.../reuters/` and verified by the digest Keras publishes for the file's
//! bytes (SHA-256, or MD5 for the word indices). Keras' own copies (`~/.keras/datasets/imdb.npz`) can be put
//! there, or read where they are with `load_data_from_npz`.
//!
//! # Environment variables
//! - `KERUST_HOME` ([`HOME_ENV`]): kerust's home folder; default `~/.kerust`.
//! - `KERUST_DATASETS_MIRROR` ([`MIRROR_ENV`]): a base URL that replaces the built-in mirror list (several,
//!   separated by whitespace, are tried in order). For machines behind a firewall: serve the `.gz` files
//!   from any HTTP server and point this at it.
//!
//! Both are read only by the plain `load_data()` functions. To avoid the environment, pass a [`Cache`] to
//! `load_data_with`, or read a folder that already holds the files with `load_data_from`.
//!
//! [`idx`] reads and writes the IDX files themselves.
use ndarray::{Array1, Array3};

mod cache;
mod checksum;
mod download;
pub mod fashion_mnist;
pub mod idx;
mod image_dataset;
pub mod imdb;
pub mod mnist;
mod mt19937;
pub mod reuters;
mod sequence_dataset;

pub use cache::{Cache, HOME_ENV, MIRROR_ENV};
pub use sequence_dataset::{SequenceOptions, SequenceSplit};

/// One split of an image dataset, `(images, labels)`: images of shape `(count, rows, columns)` and one
/// label per image.
pub type Split = (Array3<u8>, Array1<u8>);
