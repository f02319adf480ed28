//! Moving elements without computing: the kernels of `ops/shape.rs` (reshape, permute) and their backward.
use super::Storage;

/// Element moves.
pub trait ShapeKernels {
    /// `out = self` in `out`'s shape (same length), row-major order; added to `out` with `accumulate`.
    fn reshape(&self, out: &mut Self, accumulate: bool);

    /// `out = self` with its axes reordered: output axis `i` is axis `axes[i]` of `self`; added to `out` with
    /// `accumulate`.
    fn permute(&self, axes: &[usize], out: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`ShapeKernels::reshape`] on the device the buffers live on.
    pub(crate) fn reshape(&self, out: &mut Storage, accumulate: bool) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.reshape(out, accumulate),
        }
    }

    /// [`ShapeKernels::permute`] on the device the buffers live on.
    pub(crate) fn permute(&self, axes: &[usize], out: &mut Storage, accumulate: bool) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.permute(axes, out, accumulate),
        }
    }
}
