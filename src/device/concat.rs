//! Concatenation along one axis: the kernels of `ops/concat.rs`. For an axis `a`, the whole is `outer` rows
//! (the product of the axes before `a`) of `total · inner` values, and a part of length `len` along `a` starting
//! at `start` owns the block of `len · inner` values at `start · inner` in every row.
use super::Storage;

/// Copies between a part and its block of a concatenation.
pub trait ConcatKernels {
    /// Writes `self` (a part) into its block of `whole`, which starts at `start` along `axis`; every other axis
    /// of the two has the same length.
    fn concat_part(&self, axis: usize, start: usize, whole: &mut Self);

    /// The backward of [`ConcatKernels::concat_part`]: `dst` (of the part's shape) receives the block of the
    /// whole's gradient `self` that starts at `start` along `axis`: written, or added with `accumulate`.
    fn concat_part_grad(&self, axis: usize, start: usize, dst: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`ConcatKernels::concat_part`] on the device the buffers live on.
    pub(crate) fn concat_part(&self, axis: usize, start: usize, whole: &mut Storage) {
        match (self, whole) {
            (Storage::Cpu(part), Storage::Cpu(whole)) => part.concat_part(axis, start, whole),
        }
    }

    /// [`ConcatKernels::concat_part_grad`] on the device the buffers live on.
    pub(crate) fn concat_part_grad(&self, axis: usize, start: usize, dst: &mut Storage, accumulate: bool) {
        match (self, dst) {
            (Storage::Cpu(g), Storage::Cpu(dst)) => g.concat_part_grad(axis, start, dst, accumulate),
        }
    }
}
