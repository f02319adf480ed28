//! Sums over axes: the kernel of `ops/reduce.rs` (sum and mean) and its backward broadcast.
use super::Storage;

/// Sums over axes.
pub trait ReduceKernels {
    /// `out = scale * sum of self over axes`, where `axes` lists the reduced axes in descending order (every
    /// axis: the sum of all elements). `out` holds the result in any shape of the right length (with or
    /// without the reduced axes kept as length 1).
    fn sum_axes(&self, axes: &[usize], scale: f32, out: &mut Self);

    /// The backward of [`ReduceKernels::sum_axes`]: `dst = scale * g` broadcast back over the reduced axes, or
    /// added to `dst` with `accumulate`. `self` is `g`, read in `kept` (the input's shape with the reduced axes
    /// set to 1); `dst` is of the input's shape.
    fn sum_axes_grad(&self, kept: &[usize], scale: f32, dst: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`ReduceKernels::sum_axes`] on the device the buffers live on.
    pub(crate) fn sum_axes(&self, axes: &[usize], scale: f32, out: &mut Storage) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.sum_axes(axes, scale, out),
        }
    }

    /// [`ReduceKernels::sum_axes_grad`] on the device the buffers live on.
    pub(crate) fn sum_axes_grad(&self, kept: &[usize], scale: f32, dst: &mut Storage, accumulate: bool) {
        match (self, dst) {
            (Storage::Cpu(g), Storage::Cpu(dst)) => g.sum_axes_grad(kept, scale, dst, accumulate),
        }
    }
}
