//! The three fused cross-entropy losses, computed from logits in one stable step: softmax against target
//! distributions, softmax against integer labels, and sigmoid against targets, element-wise.
//!
//! The two softmax forms keep each row's log-sum-exp in the node's auxiliary buffer, so that backward,
//! `dx = g * (softmax(x) * sum(t) - t)` (the label's one-hot for `t` in the sparse form), needs no second pass
//! over the row to recompute it. Sigmoid: `dx = g * (sigmoid(x) - t)`, `dt = -g * x`.
use ndarray::{Axis, Zip};

use super::{logsumexp, rows_of, rows_of_mut};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{fit_buffer, Var};
use crate::device::sigmoid;
use crate::device::Storage;

/// The recorded softmax cross-entropy: inputs `[logits, targets]`.
struct SoftmaxCrossEntropy {
    inputs: [usize; 2],
}

/// The recorded sparse softmax cross-entropy: inputs `[logits, labels]`.
struct SparseSoftmaxCrossEntropy {
    inputs: [usize; 2],
}

/// The recorded sigmoid cross-entropy: inputs `[logits, targets]`.
struct SigmoidCrossEntropy {
    inputs: [usize; 2],
}

fn last_axis_rows(shape: &[usize], what: &str) -> Vec<usize> {
    assert!(!shape.is_empty(), "{what} needs at least one axis (the classes), got a scalar");
    shape[..shape.len() - 1].to_vec()
}

impl<'t> Var<'t> {
    /// Cross-entropy of `softmax(self)` against the distributions `targets`, over the last axis, computed from
    /// the logits in one stable step: `-sum(t * log_softmax(x))` per row. The result drops the last axis.
    pub fn softmax_cross_entropy(self, targets: Var<'t>) -> Var<'t> {
        let (xs, ts) = (self.shape(), targets.shape());
        assert_eq!(xs, ts, "softmax_cross_entropy: logits {xs:?} and targets {ts:?} differ");
        let rows = last_axis_rows(&xs, "softmax_cross_entropy");
        let node = SoftmaxCrossEntropy { inputs: [self.id, targets.id] };
        self.tape.push(node, &rows, |v, out, aux| {
            fit_buffer(aux, &rows);
            let (x, t) = (v.get(self.id), v.get(targets.id));
            if let (Some(xs), Some(ts)) = (rows_of(&x), rows_of(&t)) {
                for (((o, lse_out), x), t) in out.iter_mut().zip(aux.iter_mut()).zip(xs).zip(ts) {
                    let lse = logsumexp(x.iter().copied());
                    *lse_out = lse;
                    *o = -x.iter().zip(t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
                }
                return;
            }
            let last = Axis(x.ndim() - 1);
            for (((o, lse_out), x), t) in
                out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(t.lanes(last))
            {
                let lse = logsumexp(x.iter().copied());
                *lse_out = lse;
                *o = -x.iter().zip(&t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
            }
        })
    }

    /// Cross-entropy of `softmax(self)` against integer class indices `labels` (stored as `f32`, shape = the
    /// logits' shape without the last axis).
    ///
    /// # Panics
    /// If a label is not an integer in `0..classes`; models check labels before training.
    pub fn sparse_softmax_cross_entropy(self, labels: Var<'t>) -> Var<'t> {
        let (xs, ls) = (self.shape(), labels.shape());
        let rows = last_axis_rows(&xs, "sparse_softmax_cross_entropy");
        assert_eq!(
            rows, ls,
            "sparse_softmax_cross_entropy: logits {xs:?} need labels of shape {rows:?}, got {ls:?}"
        );
        let classes = xs[xs.len() - 1];
        let node = SparseSoftmaxCrossEntropy { inputs: [self.id, labels.id] };
        self.tape.push(node, &rows, |v, out, aux| {
            fit_buffer(aux, &rows);
            let (x, l) = (v.get(self.id), v.get(labels.id));
            let last = Axis(x.ndim() - 1);
            for (((o, lse_out), x), &label) in
                out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(l.iter())
            {
                assert!(
                    label >= 0.0 && (label as usize) < classes && label.fract() == 0.0,
                    "sparse_softmax_cross_entropy: label {label} is not a class index in 0..{classes}"
                );
                let lse = logsumexp(x.iter().copied());
                *lse_out = lse;
                *o = lse - x[label as usize];
            }
        })
    }

    /// Element-wise binary cross-entropy of `sigmoid(self)` against `targets`, from the logits:
    /// `max(x, 0) - x t + log(1 + e^-|x|)`.
    pub fn sigmoid_cross_entropy(self, targets: Var<'t>) -> Var<'t> {
        let (xs, ts) = (self.shape(), targets.shape());
        assert_eq!(xs, ts, "sigmoid_cross_entropy: logits {xs:?} and targets {ts:?} differ");
        let node = SigmoidCrossEntropy { inputs: [self.id, targets.id] };
        self.tape.push(node, &xs, |v, out, _| {
            Zip::from(out).and(&v.get(self.id)).and(&v.get(targets.id)).for_each(|o, &x, &t| {
                *o = x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
            });
        })
    }
}

impl Kernel for SoftmaxCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let [logits, targets] = self.inputs;
        let (x, t) = (ctx.value(logits), ctx.value(targets));
        let last = Axis(x.ndim() - 1);
        let aux = std::mem::replace(ctx.aux.cpu_mut(), crate::autodiff::empty());
        let (g_rows, lse) = (g.iter(), aux.iter());
        // The hot path (the tutorial's loss): constant targets, contiguous rows, written on first contribution.
        let mut done = false;
        if !ctx.wants(targets) {
            if let (Some(xs), Some(ts), Some((d, fresh))) =
                (rows_of(&x), rows_of(&t), ctx.grad(logits, x.shape()))
            {
                if let Some(ds) = rows_of_mut(d) {
                    for (((d, x), t), (&g, &lse)) in ds.zip(xs).zip(ts).zip(g_rows.clone().zip(lse.clone())) {
                        let mass: f32 = t.iter().sum();
                        for ((d, &x), &t) in d.iter_mut().zip(x).zip(t) {
                            let v = g * ((x - lse).exp() * mass - t);
                            *d = if fresh { v } else { *d + v };
                        }
                    }
                    done = true;
                }
            }
        }
        if !done {
            if let Some(d) = ctx.zeroed(logits, x.shape()) {
                for (((mut d, x), t), (&g, &lse)) in d
                    .lanes_mut(last)
                    .into_iter()
                    .zip(x.lanes(last))
                    .zip(t.lanes(last))
                    .zip(g_rows.clone().zip(lse.clone()))
                {
                    let mass: f32 = t.sum();
                    Zip::from(&mut d)
                        .and(&x)
                        .and(&t)
                        .for_each(|d, &x, &t| *d += g * ((x - lse).exp() * mass - t));
                }
            }
            if let Some(d) = ctx.zeroed(targets, t.shape()) {
                for ((mut d, x), (&g, &lse)) in
                    d.lanes_mut(last).into_iter().zip(x.lanes(last)).zip(g_rows.zip(lse))
                {
                    Zip::from(&mut d).and(&x).for_each(|d, &x| *d -= g * (x - lse));
                }
            }
        }
        *ctx.aux.cpu_mut() = aux;
    }
}

impl Kernel for SparseSoftmaxCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let [logits, labels] = self.inputs;
        let (x, l) = (ctx.value(logits), ctx.value(labels));
        let last = Axis(x.ndim() - 1);
        let aux = std::mem::replace(ctx.aux.cpu_mut(), crate::autodiff::empty());
        if let Some(d) = ctx.zeroed(logits, x.shape()) {
            for ((mut d, x), ((&g, &lse), &label)) in
                d.lanes_mut(last).into_iter().zip(x.lanes(last)).zip(g.iter().zip(aux.iter()).zip(l.iter()))
            {
                Zip::from(&mut d).and(&x).for_each(|d, &x| *d += g * (x - lse).exp());
                d[label as usize] -= g;
            }
        }
        *ctx.aux.cpu_mut() = aux;
    }
}

impl Kernel for SigmoidCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let [logits, targets] = self.inputs;
        let (x, t) = (ctx.value(logits), ctx.value(targets));
        if let Some(d) = ctx.zeroed(logits, x.shape()) {
            Zip::from(d).and(&x).and(&t).and(&*g).for_each(|d, &x, &t, &g| *d += g * (sigmoid(x) - t));
        }
        if let Some(d) = ctx.zeroed(targets, t.shape()) {
            Zip::from(d).and(&x).and(&*g).for_each(|d, &x, &g| *d -= g * x);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::{check_gradients, Tensor};
    use ndarray::{ArrayD, IxDyn};

    fn values(shape: &[usize], seed: usize) -> Tensor {
        let mut i = seed * 1000;
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            i += 1;
            ((i * 37) % 101) as f32 / 50.0 - 1.0
        })
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (x, t) = (values(&[4, 5], 1), values(&[4, 5], 2).mapv(f32::abs));
        // Targets as inputs too: the general path, with the targets' gradient.
        check_gradients(&[x.clone(), t.clone()], |v| v[0].softmax_cross_entropy(v[1])).unwrap();
        check_gradients(&[x.clone(), t.clone()], |v| v[0].sigmoid_cross_entropy(v[1])).unwrap();
        let labels = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0, 4.0, 2.0, 2.0]).unwrap();
        check_gradients(&[x], |v| {
            let l = v[0].tape().constant(labels.view());
            v[0].sparse_softmax_cross_entropy(l)
        })
        .unwrap();
    }
}
