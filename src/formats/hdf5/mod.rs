//! HDF5, the subset Keras uses, in pure Rust: read any file h5py writes by default (and with `libver` up to
//! "v110", or `track_order`) into a [`Group`] tree, with every size bounded by [`Limits`]; write a tree as a
//! file h5py reads.
//!
//! What is read: superblocks 0 to 3; object headers 1 and 2; groups as symbol tables, as link messages, and in
//! dense storage (fractal heap and name index); datasets contiguous, compact, or chunked (version-1 B-tree,
//! single chunk, implicit and fixed-array indexes) with deflate, shuffle and fletcher32 filters; integers of
//! 1 to 8 bytes, IEEE floats of 4 and 8 bytes, either byte order; fixed and variable-length strings in
//! attributes. Anything else (compound or enum types, soft links, resizable datasets' indexes, other filters)
//! is an error that names it.
//!
//! What is written: superblock 0, version-1 object headers, symbol-table groups (members sorted by name, as
//! HDF5 keeps them), contiguous little-endian datasets, and strings as fixed-length attributes, as Keras 2's
//! legacy `.h5` files hold them.
//!
//! ```
//! use kerust::formats::hdf5::{self, Attr, Data, Dataset, Group, Limits, Node};
//! let kernel = Dataset { shape: vec![2, 3], data: Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), attrs: vec![] };
//! let mut vars = Group::default();
//! vars.members.push(("0".into(), Node::Dataset(kernel)));
//! let root = Group {
//!     attrs: vec![("keras_version".into(), Attr::Str("3.15.0".into()))],
//!     members: vec![("dense".into(), Node::Group(Group { attrs: vec![], members: vec![("vars".into(), Node::Group(vars))] }))],
//! };
//! let bytes = hdf5::write(&root)?;
//! let back = hdf5::read(&bytes, &Limits::default())?;
//! assert_eq!(back, root);
//! assert_eq!(back.dataset("dense/vars/0").unwrap().shape, [2, 3]);
//! assert_eq!(back.attr("keras_version"), Some(&Attr::Str("3.15.0".into())));
//! # Ok::<(), kerust::Error>(())
//! ```
mod chunks;
mod dense;
mod read;
mod tree;
mod write;
pub use tree::{Attr, Data, Dataset, Group, Node};

use crate::Result;

/// Bounds on what [`read`] accepts from a file: a file beyond them is an error, before anything is allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes read from the file's objects and decompressed from its chunks, all together.
    pub max_bytes_read: u64,
    /// The most objects (groups, datasets, attributes, heap blocks, B-tree nodes) visited.
    pub max_objects: usize,
    /// The deepest group nesting.
    pub max_depth: usize,
    /// The most elements in one dataset or attribute.
    pub max_elements: u64,
}

impl Default for Limits {
    /// 4 GiB read, 1,000,000 objects, depth 64, 2^30 elements in one dataset.
    fn default() -> Self {
        Limits { max_bytes_read: 4 << 30, max_objects: 1_000_000, max_depth: 64, max_elements: 1 << 30 }
    }
}

/// Reads an HDF5 file's bytes into its root group.
///
/// Every offset and length is checked against `bytes`; element counts, bytes, objects and nesting are
/// bounded by `limits` before anything is allocated for them; an object that contains itself is an error. A
/// malformed or unsupported file is an [`crate::Error::FileFormat`] naming the object's path, what was
/// expected and what came.
pub fn read(bytes: &[u8], limits: &Limits) -> Result<Group> {
    read::read(bytes, limits)
}

/// Writes `root` as an HDF5 file (superblock 0, version-1 object headers, symbol-table groups, contiguous
/// datasets), which h5py reads.
pub fn write(root: &Group) -> Result<Vec<u8>> {
    write::write(root)
}
