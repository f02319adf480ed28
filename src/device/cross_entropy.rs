//! The three fused cross-entropy losses, forward and backward: the kernels of `ops/cross_entropy.rs`.
//!
//! The two softmax forms write each row's log-sum-exp into a buffer the caller keeps (`lse`, one value per
//! row), which their backward reads instead of recomputing it. Rows are along the last axis.
use super::Storage;

/// Cross-entropy losses computed from logits.
pub trait CrossEntropyKernels {
    /// Per row of the logits `self`: `out = -sum(t * (x - lse))` against the distributions `targets` (of
    /// `self`'s shape), and `lse = logsumexp(x)`; `out` and `lse` have `self`'s shape without the last axis.
    fn softmax_cross_entropy(&self, targets: &Self, out: &mut Self, lse: &mut Self);

    /// The logits' gradient of [`CrossEntropyKernels::softmax_cross_entropy`]: `dst = g * (exp(x - lse) *
    /// sum(t) - t)` per row (`g` and `lse` one value per row), or added to `dst` with `accumulate`.
    fn softmax_cross_entropy_grad(
        &self,
        targets: &Self,
        g: &Self,
        lse: &Self,
        dst: &mut Self,
        accumulate: bool,
    );

    /// The targets' gradient of [`CrossEntropyKernels::softmax_cross_entropy`], from the logits `self`:
    /// `dst = -g * (x - lse)` per row, or added to `dst` with `accumulate`.
    fn softmax_cross_entropy_targets_grad(&self, g: &Self, lse: &Self, dst: &mut Self, accumulate: bool);

    /// Per row of the logits `self`: `out = lse - x[label]` against the integer class indices `labels` (one
    /// per row, stored as `f32`), and `lse = logsumexp(x)`.
    ///
    /// # Panics
    /// If a label is not an integer in `0..classes` (models check labels before training).
    fn sparse_softmax_cross_entropy(&self, labels: &Self, out: &mut Self, lse: &mut Self);

    /// The logits' gradient of [`CrossEntropyKernels::sparse_softmax_cross_entropy`]: `dst = g * (exp(x -
    /// lse) - onehot(label))` per row, or added to `dst` with `accumulate`.
    fn sparse_softmax_cross_entropy_grad(
        &self,
        labels: &Self,
        g: &Self,
        lse: &Self,
        dst: &mut Self,
        accumulate: bool,
    );

    /// Element-wise binary cross-entropy of `sigmoid(self)` against `targets` (same shape), from the logits:
    /// `out = max(x, 0) - x t + log(1 + e^-|x|)`.
    fn sigmoid_cross_entropy(&self, targets: &Self, out: &mut Self);

    /// The logits' gradient of [`CrossEntropyKernels::sigmoid_cross_entropy`]: `dst = g * (sigmoid(x) - t)`,
    /// or added to `dst` with `accumulate`.
    fn sigmoid_cross_entropy_grad(&self, targets: &Self, g: &Self, dst: &mut Self, accumulate: bool);

    /// The targets' gradient of [`CrossEntropyKernels::sigmoid_cross_entropy`], from the logits `self`:
    /// `dst = -g * x`, or added to `dst` with `accumulate`.
    fn sigmoid_cross_entropy_targets_grad(&self, g: &Self, dst: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`CrossEntropyKernels::softmax_cross_entropy`] on the device the buffers live on.
    pub(crate) fn softmax_cross_entropy(&self, targets: &Storage, out: &mut Storage, lse: &mut Storage) {
        match (self, targets, out, lse) {
            (Storage::Cpu(x), Storage::Cpu(t), Storage::Cpu(out), Storage::Cpu(lse)) => {
                x.softmax_cross_entropy(t, out, lse)
            }
        }
    }

    /// [`CrossEntropyKernels::softmax_cross_entropy_grad`] on the device the buffers live on.
    pub(crate) fn softmax_cross_entropy_grad(
        &self,
        targets: &Storage,
        g: &Storage,
        lse: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, targets, g, lse, dst) {
            (Storage::Cpu(x), Storage::Cpu(t), Storage::Cpu(g), Storage::Cpu(lse), Storage::Cpu(dst)) => {
                x.softmax_cross_entropy_grad(t, g, lse, dst, accumulate)
            }
        }
    }

    /// [`CrossEntropyKernels::softmax_cross_entropy_targets_grad`] on the device the buffers live on.
    pub(crate) fn softmax_cross_entropy_targets_grad(
        &self,
        g: &Storage,
        lse: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, g, lse, dst) {
            (Storage::Cpu(x), Storage::Cpu(g), Storage::Cpu(lse), Storage::Cpu(dst)) => {
                x.softmax_cross_entropy_targets_grad(g, lse, dst, accumulate)
            }
        }
    }

    /// [`CrossEntropyKernels::sparse_softmax_cross_entropy`] on the device the buffers live on.
    pub(crate) fn sparse_softmax_cross_entropy(
        &self,
        labels: &Storage,
        out: &mut Storage,
        lse: &mut Storage,
    ) {
        match (self, labels, out, lse) {
            (Storage::Cpu(x), Storage::Cpu(l), Storage::Cpu(out), Storage::Cpu(lse)) => {
                x.sparse_softmax_cross_entropy(l, out, lse)
            }
        }
    }

    /// [`CrossEntropyKernels::sparse_softmax_cross_entropy_grad`] on the device the buffers live on.
    pub(crate) fn sparse_softmax_cross_entropy_grad(
        &self,
        labels: &Storage,
        g: &Storage,
        lse: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, labels, g, lse, dst) {
            (Storage::Cpu(x), Storage::Cpu(l), Storage::Cpu(g), Storage::Cpu(lse), Storage::Cpu(dst)) => {
                x.sparse_softmax_cross_entropy_grad(l, g, lse, dst, accumulate)
            }
        }
    }

    /// [`CrossEntropyKernels::sigmoid_cross_entropy`] on the device the buffers live on.
    pub(crate) fn sigmoid_cross_entropy(&self, targets: &Storage, out: &mut Storage) {
        match (self, targets, out) {
            (Storage::Cpu(x), Storage::Cpu(t), Storage::Cpu(out)) => x.sigmoid_cross_entropy(t, out),
        }
    }

    /// [`CrossEntropyKernels::sigmoid_cross_entropy_grad`] on the device the buffers live on.
    pub(crate) fn sigmoid_cross_entropy_grad(
        &self,
        targets: &Storage,
        g: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, targets, g, dst) {
            (Storage::Cpu(x), Storage::Cpu(t), Storage::Cpu(g), Storage::Cpu(dst)) => {
                x.sigmoid_cross_entropy_grad(t, g, dst, accumulate)
            }
        }
    }

    /// [`CrossEntropyKernels::sigmoid_cross_entropy_targets_grad`] on the device the buffers live on.
    pub(crate) fn sigmoid_cross_entropy_targets_grad(
        &self,
        g: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, g, dst) {
            (Storage::Cpu(x), Storage::Cpu(g), Storage::Cpu(dst)) => {
                x.sigmoid_cross_entropy_targets_grad(g, dst, accumulate)
            }
        }
    }
}
