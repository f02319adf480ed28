//! Matrix products on a device: the kernel `ops/matmul.rs` (and the fused layer ops) run.
use super::Storage;

/// Matrix products.
pub trait MatmulKernels {
    /// `out = op(a) · op(b)`, or `out += op(a) · op(b)` with `accumulate`, where `op` transposes the last two
    /// axes when its flag is set. Each operand is a matrix or a batch of matrices (a leading axis):
    /// - two batches multiply matrix by matrix into a batch;
    /// - a batch and one matrix share that matrix across the batch, into a batch;
    /// - two batches into one matrix sum their products over the batch (the gradient of a shared matrix).
    ///
    /// The caller has checked the shapes.
    fn matmul(&self, transpose_a: bool, b: &Self, transpose_b: bool, out: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`MatmulKernels::matmul`] on the device the buffers live on.
    pub(crate) fn matmul(
        &self,
        transpose_a: bool,
        b: &Storage,
        transpose_b: bool,
        out: &mut Storage,
        accumulate: bool,
    ) {
        match (self, b, out) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(out)) => {
                a.matmul(transpose_a, b, transpose_b, out, accumulate)
            }
        }
    }
}
