//! File formats below the models, each bounded against hostile files: atomic file writes, checksummed
//! safetensors tensors and exact JSON settings (kerust's own files), and the zip archives and HDF5 subset that
//! Keras' files are made of, read and written in pure Rust; numpy's `.npy`/`.npz` files of Keras' sequence datasets,
//! read only.
pub(crate) mod atomic;
pub mod hdf5;
pub mod npy;
mod pickle;
pub(crate) mod safetensors;
pub(crate) mod settings;
pub mod zip;
