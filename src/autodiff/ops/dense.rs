//! `act(x · w + b)` on 2-D `x`: Dense's hot path in one node.
//!
//! Forward: the bias is written into every row of the output, the product accumulates onto it (`beta = 1`),
//! and the activation runs in place; `z = x · w + b` is kept in the auxiliary buffer only when the
//! activation's derivative needs it. Backward: `g` becomes `dz = g * act'(z)` in place (the node's gradient is
//! needed by no one else); then `db` is its column sums, `dw = xᵀ · dz` and `dx = dz · wᵀ`, each only where a
//! gradient is wanted. The same math from `matmul`, `add` and an activation gives the same values, in more
//! passes.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{Storage, Unary};

/// The recorded node: inputs `[x, w, b]` (the first `len`: no bias when 2), and the activation.
struct Dense {
    inputs: [usize; 3],
    len: usize,
    act: Option<Unary>,
}

impl<'t> Var<'t> {
    /// `act(self · w + b)` for a 2-D `self` (batch, in), `w` (in, out) and `b` (out), recorded as one node:
    /// the bias is written into the output before the product accumulates onto it, the activation is applied
    /// in place, and backward is one pass plus the two products. Dense layers use it; the same math from
    /// `matmul`, `add` and an activation gives the same values, in more passes.
    pub(crate) fn dense(self, w: Var<'t>, b: Option<Var<'t>>, act: Option<Unary>) -> Var<'t> {
        let (xs, ws) = (self.shape(), w.shape());
        let (&[m, k], &[k2, n]) = (xs.as_slice(), ws.as_slice()) else {
            panic!("dense: needs (batch, in) x (in, out), got {xs:?} and {ws:?}")
        };
        assert_eq!(k, k2, "dense: input {xs:?} does not fit the kernel {ws:?}");
        if let Some(b) = b {
            assert_eq!(b.shape(), [n], "dense: the bias needs shape [{n}]");
        }
        let node =
            Dense { inputs: [self.id, w.id, b.map_or(0, |b| b.id)], len: 2 + usize::from(b.is_some()), act };
        self.tape.push(node, &[m, n], |v, out, aux| {
            // z is kept only for activations whose derivative needs it; the others read the output.
            let z = act.is_some_and(|f| !f.df_uses_output_only()).then(|| {
                aux.fit(&[m, n]);
                aux
            });
            v.get(self.id).dense_forward(v.get(w.id), b.map(|b| v.get(b.id)), act, out, z)
        })
    }
}

impl Kernel for Dense {
    fn inputs(&self) -> &[usize] {
        &self.inputs[..self.len]
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [x, w, b] = self.inputs;
        let b = (self.len == 3).then_some(b);
        if let Some(f) = self.act {
            let y = ctx.output();
            // z is kept only for activations whose derivative needs it; the others read y.
            let z = if f.df_uses_output_only() { y } else { &*ctx.aux };
            g.dense_activation_grad(f, z, y);
        }
        // g is now dz.
        if let Some(b) = b {
            let n = g.shape()[1];
            if let Some((d, fresh)) = ctx.grad(b, &[n]) {
                g.sum_rows(d, !fresh);
            }
        }
        let (xv, wv) = (ctx.value(x), ctx.value(w));
        // dw = xᵀ · dz, dx = dz · wᵀ.
        if let Some((d, fresh)) = ctx.grad(w, wv.shape()) {
            xv.matmul(true, g, false, d, !fresh);
        }
        if let Some((d, fresh)) = ctx.grad(x, xv.shape()) {
            g.matmul(false, wv, true, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::{check_gradients, ParamStore, Tape, Unary};
    use ndarray::{ArrayD, IxDyn};

    fn rnd(shape: &[usize], seed: u32) -> ArrayD<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
    }

    #[test]
    fn fused_dense_gradients_match_finite_differences() {
        let (x, w, b) = (rnd(&[5, 4], 1), rnd(&[4, 3], 2), rnd(&[3], 3));
        // Output-derived rules (relu, sigmoid, tanh), rules that keep z (elu, gelu, softplus), none.
        for act in [
            None,
            Some(Unary::Sigmoid),
            Some(Unary::Tanh),
            Some(Unary::Relu),
            Some(Unary::Elu(1.0)),
            Some(Unary::Gelu),
            Some(Unary::Softplus),
        ] {
            check_gradients(&[x.clone(), w.clone(), b.clone()], |v| v[0].dense(v[1], Some(v[2]), act))
                .unwrap_or_else(|e| panic!("{act:?}: {e}"));
            check_gradients(&[x.clone(), w.clone()], |v| v[0].dense(v[1], None, act))
                .unwrap_or_else(|e| panic!("{act:?} without bias: {e}"));
        }
    }

    #[test]
    fn fused_dense_equals_the_unfused_composition() {
        let mut params = ParamStore::new();
        let (w, b) = (params.add("w", rnd(&[6, 4], 4), true), params.add("b", rnd(&[4], 5), true));
        let tape = Tape::new(&params);
        let x = tape.constant(rnd(&[3, 6], 6).view());
        let fused = x.dense(tape.param(w), Some(tape.param(b)), Some(Unary::Gelu)).value();
        let plain = x.matmul(tape.param(w)).add(tape.param(b)).gelu().value();
        assert!(fused.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-6), "{fused} vs {plain}");
    }
}
