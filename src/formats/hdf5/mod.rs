//! HDF5, the subset Keras uses, in pure Rust: read any file h5py writes by default into a [`Group`] tree, with
//! every size bounded by [`Limits`]; write a tree as a file h5py reads.
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
pub fn read(bytes: &[u8], limits: &Limits) -> Result<Group> {
    read::read(bytes, limits)
}

/// Writes `root` as an HDF5 file (superblock 0, version-1 object headers, symbol-table groups, contiguous
/// datasets), which h5py reads.
pub fn write(root: &Group) -> Result<Vec<u8>> {
    write::write(root)
}
