//! Saving and loading models: one self-contained, checksummed [safetensors] file, written atomically.
//!
//! - [`Model::save`](crate::models::Model::save) / [`load_model`]: architecture, compile settings,
//!   weights, optimizer state and the training RNG position, so that `fit` resumes exactly where it stopped.
//! - [`load_model_with`] and [`LoadOptions`]: Keras' `custom_objects=` (custom layers, losses, metrics and
//!   activations, registered by the name they saved) and `compile=False` (architecture and weights only).
//! - [`Model::save_weights`](crate::models::Model::save_weights) /
//!   [`Model::load_weights`](crate::models::Model::load_weights): the weights alone.
//!
//! # The file format (`format_version` 1)
//!
//! A standard safetensors file (an 8-byte little-endian header length, a JSON header, then the raw tensor
//! bytes), readable by PyTorch and Hugging Face tools (`safetensors.torch.load_file`). Loading it runs no code.
//!
//! Tensors, all `F32`, little-endian, row-major, named as [`crate::autodiff::Param`]s are:
//! - `<layer>/<weight>`: `dense/kernel`, `dense/bias`, `dense_1/kernel`, ...
//! - `optimizer/<layer>/<weight>/<slot>`: the optimizer's state for that weight, e.g.
//!   `optimizer/dense/kernel/m` and `optimizer/dense/kernel/v` for Adam (model files only).
//!
//! The header's `__metadata__` (string to string) holds:
//! - `format`: `kerust.model` or `kerust.weights`;
//! - `format_version`: `1`; a file from a newer version is refused with a clear error;
//! - `checksum`: `sha256:<hex>` of every other metadata entry and every tensor (name, shape, bytes), so a
//!   flipped bit anywhere (data or header) is an error rather than a silently different model;
//! - `model_config` (model files): JSON, `{"class_name": "Sequential", "name", "input_shape",
//!   "build_input_shape", "layers": [{"class_name": "Dense", "config": {...}}, ...], "compile": {"loss":
//!   {"name", "config"}, "optimizer": {"name", "config", "iterations"}, "metrics": [...]} or null,
//!   "training": {"seed", "epochs_run"}}` for a Sequential; for a graph model (`Model::new`),
//!   `{"class_name": "Functional", "name", "layers": [{"class_name", "config", "inbound_nodes": [[["dense", 0,
//!   0], ...], ...]}, ...], "input_layers": [["image", 0, 0], ...], "output_layers": [["digit", 0, 0], ...],
//!   "compile": {"optimizer": {...}, "outputs": [{"output", "loss": {"name", "config"}, "loss_weight",
//!   "metrics"}, ...]} or null, "training": {...}}`: each layer with the tensors each of its calls took
//!   (`[layer, call, 0]`, Keras 2's form), in the order of the layers' first calls.
//!
//! Booleans among the loss and optimizer settings are stored as the numbers `0` and `1`, and every setting is
//! read strictly: a number an `f32` setting cannot hold exactly, or a boolean other than `0`/`1`, is an error
//! naming the setting. `iterations` (the optimizer's step count) and `epochs_run` are JSON integers and are
//! read exactly, up to `i64::MAX`; larger values are an error. The same model always saves to the same bytes
//! (the header lists metadata by key and tensors by name).
//!
//! One file rather than JSON beside weights: the architecture cannot get separated from its weights, and one
//! atomic rename replaces both at once.
//!
//! # Safety of writes and reads
//!
//! Every save goes through [`write_atomic`]: a temporary file beside the target, flushed and `sync_all`ed, then
//! renamed over it (and the folder synced, on Unix). A crash or a full disk mid-save leaves the previous file
//! as it was; a temporary file left by a writer that was killed is removed by the next save of the same file.
//! Loading allocates no more than the file brings (see [`load_model`]) and checks everything (header,
//! checksum, version, layer types and settings, tensor names, dtypes and shapes, optimizer state) before a
//! model is touched; each problem is an [`Error`](crate::Error) naming the tensor, the expected and the found
//! shape, or the byte offset.
//!
//! ```
//! use kerust::layers::Dense;
//! use kerust::models::{load_model_from_bytes, Sequential};
//!
//! let mut model = Sequential::new();
//! model.add(Dense::new(2).activation("softmax").input_shape([3]))?;
//! model.compile("categorical_crossentropy", "adam", ["accuracy"])?;
//! let bytes = model.to_bytes()?;
//! let mut again = load_model_from_bytes(&bytes)?;
//! assert_eq!(again.get_weights(), model.get_weights());
//! assert!(load_model_from_bytes(&bytes[..bytes.len() - 1]).is_err());
//! # Ok::<(), kerust::Error>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors
//!
//! This module is the public face of the feature and holds no code: the model side lives in `models`
//! (`models/saving.rs`, `models/load_options.rs`), the file utilities in the crate's low `formats` module.

pub use crate::formats::atomic::write_atomic;
pub use crate::formats::safetensors::{checksum, FORMAT_VERSION};
pub use crate::models::load_options::LoadOptions;
pub use crate::models::{load_model, load_model_from_bytes, load_model_from_bytes_with, load_model_with};
