//! The fused Dense layer, `act(x · w + b)`: the kernels `ops/dense.rs` runs besides the matrix products.
use super::{Storage, Unary};

/// The parts of the fused Dense node that are not plain matrix products (those run on
/// [`MatmulKernels`](super::MatmulKernels)).
pub trait DenseKernels {
    /// `out = act(x · w + b)` with `self` the batch `x` `(m, k)`, `w` `(k, n)`, `bias` `(n)` (none: no bias),
    /// `out` `(m, n)`: the bias is written into every row of `out`, the product accumulates onto it, and the
    /// activation (none: the identity) runs in place. With `z` (of shape `(m, n)`), the pre-activation
    /// `x · w + b` is also written there, for an activation whose derivative needs it.
    ///
    /// The caller has checked the shapes.
    fn dense_forward(
        &self,
        w: &Self,
        bias: Option<&Self>,
        act: Option<Unary>,
        out: &mut Self,
        z: Option<&mut Self>,
    );

    /// `self *= act'(z)` element by element, in place, with `y = act(z)`: the gradient of the output becomes the
    /// gradient of the pre-activation. `z` is read only by activations whose derivative needs it; the others
    /// may be given `y` as `z`. All three have one shape.
    fn dense_activation_grad(&mut self, act: Unary, z: &Self, y: &Self);

    /// The column sums of the matrix `self` `(m, n)` (the bias gradient), into `out` `(n)`: written, or added
    /// to with `accumulate`. Rows are added in order.
    fn sum_rows(&self, out: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`DenseKernels::dense_forward`] on the device the buffers live on.
    pub(crate) fn dense_forward(
        &self,
        w: &Storage,
        bias: Option<&Storage>,
        act: Option<Unary>,
        out: &mut Storage,
        z: Option<&mut Storage>,
    ) {
        match (self, w, out) {
            (Storage::Cpu(x), Storage::Cpu(w), Storage::Cpu(out)) => {
                let bias = bias.map(|b| match b {
                    Storage::Cpu(b) => b,
                });
                let z = z.map(|z| match z {
                    Storage::Cpu(z) => z,
                });
                x.dense_forward(w, bias, act, out, z)
            }
        }
    }

    /// [`DenseKernels::dense_activation_grad`] on the device the buffers live on.
    pub(crate) fn dense_activation_grad(&mut self, act: Unary, z: &Storage, y: &Storage) {
        match (self, z, y) {
            (Storage::Cpu(g), Storage::Cpu(z), Storage::Cpu(y)) => g.dense_activation_grad(act, z, y),
        }
    }

    /// [`DenseKernels::sum_rows`] on the device the buffers live on.
    pub(crate) fn sum_rows(&self, out: &mut Storage, accumulate: bool) {
        match (self, out) {
            (Storage::Cpu(g), Storage::Cpu(out)) => g.sum_rows(out, accumulate),
        }
    }
}
