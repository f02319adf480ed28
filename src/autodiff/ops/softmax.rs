//! Softmax and log-softmax over one axis, both stable for large inputs.
//!
//! Backward, per lane along the axis, from the output `y`: softmax `dx = y * (g - sum(y * g))`; log-softmax
//! `dx = g - exp(y) * sum(g)`.
use std::any::Any;

use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// The recorded softmax over `axis`.
struct Softmax {
    input: [usize; 1],
    axis: usize,
}

/// The recorded log-softmax over `axis`.
struct LogSoftmax {
    input: [usize; 1],
    axis: usize,
}

impl<'t> Var<'t> {
    /// Softmax over `axis`, stable for large inputs.
    pub fn softmax(self, axis: usize) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "softmax: axis {axis} for a value of shape {shape:?}");
        self.tape
            .push(Softmax { input: [self.id], axis }, &shape, |v, out, _| v.get(self.id).softmax(axis, out))
    }

    /// `log(softmax(x))` over `axis`, computed as `x - logsumexp(x)` so that it stays finite.
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "log_softmax: axis {axis} for a value of shape {shape:?}");
        self.tape.push(LogSoftmax { input: [self.id], axis }, &shape, |v, out, _| {
            v.get(self.id).log_softmax(axis, out)
        })
    }

    /// If this value is `softmax(z)` over its last axis, `z`: lets a cross-entropy loss use the fused, stable
    /// form on the logits instead of the probabilities (Keras does the same).
    pub fn softmax_logits(self) -> Option<Var<'t>> {
        let ndim = self.shape().len();
        let input = self.tape.kernel_of(self.id, |k| {
            let s = (k as &dyn Any).downcast_ref::<Softmax>()?;
            (s.axis + 1 == ndim).then_some(s.input[0])
        })?;
        Some(Var { tape: self.tape, id: input })
    }
}

impl Kernel for Softmax {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let y = ctx.output();
        if let Some((d, fresh)) = ctx.grad(a, y.shape()) {
            y.softmax_grad(g, self.axis, d, !fresh);
        }
    }
}

impl Kernel for LogSoftmax {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let y = ctx.output();
        if let Some((d, fresh)) = ctx.grad(a, y.shape()) {
            y.log_softmax_grad(g, self.axis, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::{check_gradients, ParamStore, Tape};
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn gradients_match_finite_differences_on_every_axis() {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
            ((i[0] * 12 + i[1] * 4 + i[2]) * 7 % 11) as f32 / 4.0
        });
        for axis in 0..3 {
            check_gradients(std::slice::from_ref(&x), |v| v[0].softmax(axis))
                .unwrap_or_else(|e| panic!("softmax {axis}: {e}"));
            check_gradients(std::slice::from_ref(&x), |v| v[0].log_softmax(axis))
                .unwrap_or_else(|e| panic!("log_softmax {axis}: {e}"));
        }
    }

    #[test]
    fn softmax_logits_finds_the_last_axis_softmax_only() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let z = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])).view());
        assert_eq!(z.softmax(1).softmax_logits().map(|v| v.id()), Some(z.id()));
        assert!(z.softmax(0).softmax_logits().is_none());
        assert!(z.log_softmax(1).softmax_logits().is_none());
        assert!(z.softmax_logits().is_none());
    }
}
