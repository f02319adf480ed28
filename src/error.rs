//! The crate's one error type.
//!
//! Every fallible public function returns [`Result`]. Messages echo what was expected and what came, the way
//! Keras' `ValueError`s do (`Received: units=0`), so a user can fix the call from the message alone.
use std::path::PathBuf;

/// Everything that can go wrong in kerust.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file or folder failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A download failed (connection, HTTP status, or an interrupted transfer).
    #[error("download of {url} failed: {reason}. {help}")]
    Network {
        /// The URL that was requested.
        url: String,
        /// What went wrong.
        reason: String,
        /// What to do without the network: for a dataset, the cache folder and the file names to put there,
        /// the mirror variable, and `load_data_from`.
        help: String,
    },

    /// A file's content does not match its known digest (the SHA-256 of an MNIST file's uncompressed bytes, or
    /// the SHA-256 or MD5 Keras publishes for its IMDB and Reuters files).
    #[error("checksum mismatch for {}: expected {digest} {expected}, found {found}. {fix}", path.display())]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// Which digest, of what, e.g. `"SHA-256 of the uncompressed bytes"` or `"MD5 of the file"`.
        digest: &'static str,
        /// The expected hex digest.
        expected: String,
        /// The digest found.
        found: String,
        /// How to fix it, for the path taken: a cached file is deleted and fetched again; a file in a folder
        /// the user gave is not the expected one, and nothing is fetched.
        fix: String,
    },

    /// A file is not in the format it should be (bad IDX header, not gzip, truncated data, ...).
    #[error("invalid {format} data in {source_name}: {reason}")]
    Format {
        /// The format expected, e.g. `"IDX"` or `"gzip"`.
        format: &'static str,
        /// Where the data came from (a path or a description).
        source_name: String,
        /// What is wrong, with the expected and found values.
        reason: String,
    },

    /// An array does not have the shape an operation needs.
    #[error("shape mismatch in {context}: expected {expected}, received {received}")]
    Shape {
        /// What was being done.
        context: String,
        /// The shape (or rule) expected.
        expected: String,
        /// The shape received.
        received: String,
    },

    /// An argument is out of its valid range.
    #[error("invalid argument `{name}`: {reason}. Received: {name}={value}")]
    InvalidArgument {
        /// The argument's name, e.g. `"units"`.
        name: &'static str,
        /// The value received, formatted.
        value: String,
        /// What a valid value is.
        reason: String,
    },

    /// A label is outside `0..num_classes`.
    #[error("label {label} at index {index} is out of range for num_classes={num_classes} (labels must be in 0..{num_classes})")]
    LabelOutOfRange {
        /// The offending label.
        label: i64,
        /// Its position in the input.
        index: usize,
        /// The number of classes.
        num_classes: usize,
    },

    /// A name (loss, optimizer, metric, activation, initializer, layer type) is not known.
    #[error("unknown {kind} `{name}`; known: {known}")]
    UnknownName {
        /// What kind of thing was named, e.g. `"loss"`.
        kind: &'static str,
        /// The name received.
        name: String,
        /// The names that are accepted.
        known: String,
    },

    /// A model was used before it was ready (e.g. `fit` before `compile`, `summary` of an empty model).
    #[error("{0}")]
    NotReady(String),

    /// An analytic gradient disagrees with central finite differences.
    #[error(
        "gradient check failed for input {input} at flat index {index}: backward gave {analytic}, finite \
         differences {numeric} (tolerance {tolerance})"
    )]
    GradientCheck {
        /// Which input (position in the list given to the checker).
        input: usize,
        /// The element's position in the input, row-major.
        index: usize,
        /// The gradient from [`crate::autodiff::Tape::backward`].
        analytic: f64,
        /// The central-difference estimate.
        numeric: f64,
        /// The allowed difference at this magnitude.
        tolerance: f64,
    },

    /// An array could not be allocated: its size (from a file or an argument) is more than this machine can
    /// hold, or more than a bound such as the weights a model file brings.
    #[error("cannot allocate {what} of shape {shape}: {reason}")]
    Allocation {
        /// What was being allocated, e.g. "weight `dense/kernel`".
        what: String,
        /// The shape asked for.
        shape: String,
        /// Why it was refused, with the sizes.
        reason: String,
    },

    /// Training produced a NaN or infinite loss.
    #[error("non-finite loss {value} at epoch {epoch}, batch {batch}")]
    NonFiniteLoss {
        /// The loss value.
        value: f32,
        /// The epoch (0-based).
        epoch: usize,
        /// The batch within the epoch (0-based).
        batch: usize,
    },

    /// Data-parallel training failed: the ranks disagree (model, data shapes, settings), or another rank failed.
    #[error("distributed training, rank {rank} of {size}: {reason}")]
    Distributed {
        /// This process' rank.
        rank: usize,
        /// The number of ranks.
        size: usize,
        /// What went wrong, and on which rank.
        reason: String,
    },

    /// A layer of a graph model refused the tensors it was called on (their number or shapes).
    #[error("layer `{layer}` ({class}) called on {inputs}: {source}")]
    LayerCall {
        /// The layer's name.
        layer: String,
        /// The layer's class.
        class: &'static str,
        /// The shapes of the tensors it was called on, e.g. `(None, 64), (None, 32)`.
        inputs: String,
        /// The layer's own error.
        #[source]
        source: Box<Error>,
    },

    /// A file in a container format (HDF5, zip) is malformed, or outside the bounds set for reading it: the
    /// message names the format, the place in the file (an object's path, an entry's name, a byte offset) and
    /// what was expected and what came, e.g. `hdf5: object at /model/dense/vars/0: dataspace rank 40 (at most 32)`.
    #[error("{format}: {place}: {reason}")]
    FileFormat {
        /// The format, e.g. `"hdf5"` or `"zip"`.
        format: &'static str,
        /// Where in the file, e.g. `object at /model/dense/vars/0` or `entry config.json`.
        place: String,
        /// What is wrong, with the expected and found values.
        reason: String,
    },

    /// A graph model's inputs and outputs do not make a valid graph (Keras' "Graph disconnected", tensors of
    /// another graph, an input no output uses, ...).
    #[error("invalid model graph: {0}")]
    Graph(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid_argument(
        name: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument { name, value: value.to_string(), reason: reason.into() }
    }

    /// An [`Error::Shape`].
    pub fn shape(
        context: impl Into<String>,
        expected: impl Into<String>,
        received: impl Into<String>,
    ) -> Self {
        Error::Shape { context: context.into(), expected: expected.into(), received: received.into() }
    }
}

/// `Result` with kerust's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An ndarray shape error (e.g. `into_dimensionality::<Ix2>()` on a 3-D prediction), so that `?` works on
/// ndarray's conversions in a function returning [`Result`].
impl From<ndarray::ShapeError> for Error {
    fn from(e: ndarray::ShapeError) -> Self {
        Error::shape("an ndarray conversion", "a compatible shape", e.to_string())
    }
}
