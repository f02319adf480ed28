//! Softmax and log-softmax over one axis: the kernels of `ops/softmax.rs` and their backward.
use super::Storage;

/// Softmax and log-softmax along one axis, each lane on its own.
pub trait SoftmaxKernels {
    /// `out = softmax(self)` along `axis`, stable for large inputs (`out` of `self`'s shape).
    fn softmax(&self, axis: usize, out: &mut Self);

    /// `out = self - logsumexp(self)` along `axis` (`out` of `self`'s shape).
    fn log_softmax(&self, axis: usize, out: &mut Self);

    /// The backward of [`SoftmaxKernels::softmax`], from its output `y` (`self`): `dst = y * (g - sum(y * g))`
    /// per lane, or added to `dst` with `accumulate`.
    fn softmax_grad(&self, g: &Self, axis: usize, dst: &mut Self, accumulate: bool);

    /// The backward of [`SoftmaxKernels::log_softmax`], from its output `y` (`self`): `dst = g - exp(y) *
    /// sum(g)` per lane, or added to `dst` with `accumulate`.
    fn log_softmax_grad(&self, g: &Self, axis: usize, dst: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`SoftmaxKernels::softmax`] on the device the buffers live on.
    pub(crate) fn softmax(&self, axis: usize, out: &mut Storage) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.softmax(axis, out),
        }
    }

    /// [`SoftmaxKernels::log_softmax`] on the device the buffers live on.
    pub(crate) fn log_softmax(&self, axis: usize, out: &mut Storage) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.log_softmax(axis, out),
        }
    }

    /// [`SoftmaxKernels::softmax_grad`] on the device the buffers live on.
    pub(crate) fn softmax_grad(&self, g: &Storage, axis: usize, dst: &mut Storage, accumulate: bool) {
        match (self, g, dst) {
            (Storage::Cpu(y), Storage::Cpu(g), Storage::Cpu(dst)) => y.softmax_grad(g, axis, dst, accumulate),
        }
    }

    /// [`SoftmaxKernels::log_softmax_grad`] on the device the buffers live on.
    pub(crate) fn log_softmax_grad(&self, g: &Storage, axis: usize, dst: &mut Storage, accumulate: bool) {
        match (self, g, dst) {
            (Storage::Cpu(y), Storage::Cpu(g), Storage::Cpu(dst)) => {
                y.log_softmax_grad(g, axis, dst, accumulate)
            }
        }
    }
}
