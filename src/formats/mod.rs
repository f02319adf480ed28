//! Container formats read and written in pure Rust, bounded against hostile files: zip archives and the HDF5 subset Keras uses.
pub mod hdf5;
pub mod zip;
