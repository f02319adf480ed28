//! Softmax and log-softmax over one axis, both stable for large inputs.
//!
//! Backward, per lane along the axis, from the output `y`: softmax `dx = y * (g - sum(y * g))`; log-softmax
//! `dx = g - exp(y) * sum(g)`.
use std::any::Any;

use ndarray::{Axis, Zip};

use super::{logsumexp, nan_max, rows_of, rows_of_mut};
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
        self.tape.push(Softmax { input: [self.id], axis }, &shape, |v, out, _| {
            let x = v.get(self.id);
            if axis + 1 == x.ndim() {
                if let (Some(xs), Some(os)) = (rows_of(&x), rows_of_mut(out)) {
                    xs.zip(os).for_each(|(x, o)| softmax_row(x, o));
                    return;
                }
            }
            Zip::from(out.lanes_mut(Axis(axis))).and(x.lanes(Axis(axis))).for_each(|mut o, x| {
                let max = x.fold(f32::NEG_INFINITY, |m, &x| nan_max(m, x));
                let mut total = 0.0;
                Zip::from(&mut o).and(&x).for_each(|o, &x| {
                    *o = (x - max).exp();
                    total += *o;
                });
                o.mapv_inplace(|e| e / total);
            });
        })
    }

    /// `log(softmax(x))` over `axis`, computed as `x - logsumexp(x)` so that it stays finite.
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "log_softmax: axis {axis} for a value of shape {shape:?}");
        self.tape.push(LogSoftmax { input: [self.id], axis }, &shape, |v, out, _| {
            Zip::from(out.lanes_mut(Axis(axis))).and(v.get(self.id).lanes(Axis(axis))).for_each(
                |mut o, x| {
                    let lse = logsumexp(x.iter().copied());
                    Zip::from(&mut o).and(&x).for_each(|o, &x| *o = x - lse);
                },
            );
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

/// Stable softmax of one row.
fn softmax_row(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, nan_max);
    let mut total = 0.0;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = (x - max).exp();
        total += *o;
    }
    let inv = 1.0 / total;
    out.iter_mut().for_each(|o| *o *= inv);
}

impl Kernel for Softmax {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let ([a], axis) = (self.input, Axis(self.axis));
        let y = ctx.output();
        if let Some(d) = ctx.zeroed(a, y.shape()) {
            Zip::from(d.lanes_mut(axis)).and(y.lanes(axis)).and(g.lanes(axis)).for_each(|mut d, y, g| {
                let dot: f32 = y.iter().zip(&g).map(|(y, g)| y * g).sum();
                Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += y * (g - dot));
            });
        }
    }
}

impl Kernel for LogSoftmax {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let ([a], axis) = (self.input, Axis(self.axis));
        let y = ctx.output();
        if let Some(d) = ctx.zeroed(a, y.shape()) {
            Zip::from(d.lanes_mut(axis)).and(y.lanes(axis)).and(g.lanes(axis)).for_each(|mut d, y, g| {
                let total: f32 = g.sum();
                Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += g - y.exp() * total);
            });
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
