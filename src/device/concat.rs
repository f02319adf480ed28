//! Copies between a part and its block along one axis of a whole: the kernels of concatenation and stacking
//! (`ops/concat.rs`, `ops/stack.rs`, parts written into the whole) and of slicing (`ops/slice.rs`, a block read
//! out), each one's backward being the other copy.
//!
//! For an axis `a`, the whole is `outer` rows (the product of its axes before `a`) of `total · inner` values (its
//! length along `a`, times the product of the axes after `a`), and a part of length `len` along `a` starting at
//! `start` owns the block of `len · inner` values at `start · inner` in every row. The part holds
//! `outer · len · inner` values in row-major order, whatever its shape: a concatenated or sliced part has the
//! whole's rank, a stacked or unstacked one lacks the axis (its `len` is 1).
use super::Storage;

/// Copies between a part and its block of a whole along an axis.
pub trait ConcatKernels {
    /// Writes `self` (a part) into its block of `whole`, which starts at `start` along `axis`: overwrites the
    /// block, or adds to it with `accumulate`. Values outside the block are left as they are.
    fn write_block(&self, axis: usize, start: usize, whole: &mut Self, accumulate: bool);

    /// Reads the block of `self` (a whole) that starts at `start` along `axis` into `part`: written, or added
    /// with `accumulate`. The part's element count fixes the block's length.
    fn read_block(&self, axis: usize, start: usize, part: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`ConcatKernels::write_block`] on the device the buffers live on.
    pub(crate) fn write_block(&self, axis: usize, start: usize, whole: &mut Storage, accumulate: bool) {
        match (self, whole) {
            (Storage::Cpu(part), Storage::Cpu(whole)) => part.write_block(axis, start, whole, accumulate),
        }
    }

    /// [`ConcatKernels::read_block`] on the device the buffers live on.
    pub(crate) fn read_block(&self, axis: usize, start: usize, part: &mut Storage, accumulate: bool) {
        match (self, part) {
            (Storage::Cpu(whole), Storage::Cpu(part)) => whole.read_block(axis, start, part, accumulate),
        }
    }
}
