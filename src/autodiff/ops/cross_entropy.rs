//! The three fused cross-entropy losses, computed from logits in one stable step: softmax against target
//! distributions, softmax against integer labels, and sigmoid against targets, element-wise.
//!
//! The two softmax forms keep each row's log-sum-exp in the node's auxiliary buffer, so that backward,
//! `dx = g * (softmax(x) * sum(t) - t)` (the label's one-hot for `t` in the sparse form), needs no second pass
//! over the row to recompute it. Sigmoid: `dx = g * (sigmoid(x) - t)`, `dt = -g * x`.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
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
            aux.fit(&rows);
            v.get(self.id).softmax_cross_entropy(v.get(targets.id), out, aux)
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
        let node = SparseSoftmaxCrossEntropy { inputs: [self.id, labels.id] };
        self.tape.push(node, &rows, |v, out, aux| {
            aux.fit(&rows);
            v.get(self.id).sparse_softmax_cross_entropy(v.get(labels.id), out, aux)
        })
    }

    /// Element-wise binary cross-entropy of `sigmoid(self)` against `targets`, from the logits:
    /// `max(x, 0) - x t + log(1 + e^-|x|)`.
    pub fn sigmoid_cross_entropy(self, targets: Var<'t>) -> Var<'t> {
        let (xs, ts) = (self.shape(), targets.shape());
        assert_eq!(xs, ts, "sigmoid_cross_entropy: logits {xs:?} and targets {ts:?} differ");
        let node = SigmoidCrossEntropy { inputs: [self.id, targets.id] };
        self.tape.push(node, &xs, |v, out, _| v.get(self.id).sigmoid_cross_entropy(v.get(targets.id), out))
    }
}

impl Kernel for SoftmaxCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [logits, targets] = self.inputs;
        let (x, t) = (ctx.value(logits), ctx.value(targets));
        // The row log-sum-exps, taken out while the gradient buffers are borrowed.
        let lse = std::mem::take(ctx.aux);
        if let Some((d, fresh)) = ctx.grad(logits, x.shape()) {
            x.softmax_cross_entropy_grad(t, g, &lse, d, !fresh);
        }
        if let Some((d, fresh)) = ctx.grad(targets, t.shape()) {
            x.softmax_cross_entropy_targets_grad(g, &lse, d, !fresh);
        }
        *ctx.aux = lse;
    }
}

impl Kernel for SparseSoftmaxCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [logits, labels] = self.inputs;
        let (x, l) = (ctx.value(logits), ctx.value(labels));
        let lse = std::mem::take(ctx.aux);
        if let Some((d, fresh)) = ctx.grad(logits, x.shape()) {
            x.sparse_softmax_cross_entropy_grad(l, g, &lse, d, !fresh);
        }
        *ctx.aux = lse;
    }
}

impl Kernel for SigmoidCrossEntropy {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [logits, targets] = self.inputs;
        let (x, t) = (ctx.value(logits), ctx.value(targets));
        if let Some((d, fresh)) = ctx.grad(logits, x.shape()) {
            x.sigmoid_cross_entropy_grad(t, g, d, !fresh);
        }
        if let Some((d, fresh)) = ctx.grad(targets, t.shape()) {
            x.sigmoid_cross_entropy_targets_grad(g, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check_gradients;
    use crate::autodiff::test_values as values;
    use ndarray::{ArrayD, IxDyn};

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
