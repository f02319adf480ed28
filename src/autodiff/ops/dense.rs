//! `act(x · w + b)` on 2-D `x`: Dense's hot path in one node.
//!
//! Forward: the bias is written into every row of the output, the product accumulates onto it (`beta = 1`),
//! and the activation runs in place; `z = x · w + b` is kept in the auxiliary buffer only when the
//! activation's derivative needs it. Backward: `g` becomes `dz = g * act'(z)` in place (the node's gradient is
//! needed by no one else); then `db` is its column sums, `dw = xᵀ · dz` and `dx = dz · wᵀ`, each only where a
//! gradient is wanted. The same math from `matmul`, `add` and an activation gives the same values, in more
//! passes.
use ndarray::{ArrayViewD, Ix2, Zip};

use super::elementwise::{specialise, Unary};
use super::matmul::{as2, gemm_into};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{fit_buffer, Tensor, Var};
use crate::device::gemm;
use crate::device::Storage;
use crate::threads::{for_each, worth_splitting};

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
            let (x, w) = (
                v.get(self.id).into_dimensionality::<Ix2>().unwrap(),
                v.get(w.id).into_dimensionality::<Ix2>().unwrap(),
            );
            let beta = match b.map(|b| v.get(b.id)) {
                Some(bias) => {
                    for mut row in out.rows_mut() {
                        row.assign(&bias);
                    }
                    1.0
                }
                None => 0.0,
            };
            gemm(1.0, &x, &w, beta, &mut out.view_mut().into_dimensionality::<Ix2>().unwrap());
            let Some(f) = act else { return };
            if !f.df_uses_output_only() {
                fit_buffer(aux, &[m, n]);
                aux.assign(out);
            }
            if worth_splitting(out.len()) {
                specialise!(f, |op| for_each(Zip::from(out), |v| *v = op.f(*v)));
            } else {
                // A plain loop, so that the hot activations' `f` is inlined into it.
                let out = out.as_slice_mut().expect("owned buffers are contiguous");
                specialise!(f, |op| out.iter_mut().for_each(|v| *v = op.f(*v)));
            }
        })
    }
}

/// `g *= act'(z)` in place, with `y = act(z)`. `z` is only read by activations whose derivative needs it.
fn scale_by_derivative(g: &mut Tensor, f: Unary, z: ArrayViewD<'_, f32>, y: ArrayViewD<'_, f32>) {
    if let (false, Some(zs), Some(ys)) = (worth_splitting(g.len()), z.as_slice(), y.as_slice()) {
        // A plain loop over slices, so that the hot activations' `df` is inlined into it.
        let gs = g.as_slice_mut().expect("gradient buffers are contiguous");
        specialise!(f, |op| for ((g, &z), &y) in gs.iter_mut().zip(zs).zip(ys) {
            *g *= op.df(z, y);
        });
        return;
    }
    specialise!(f, |op| for_each(Zip::from(g).and(&z).and(&y), |g, &z, &y| *g *= op.df(z, y)));
}

impl Kernel for Dense {
    fn inputs(&self) -> &[usize] {
        &self.inputs[..self.len]
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let [x, w, b] = self.inputs;
        let b = (self.len == 3).then_some(b);
        if let Some(f) = self.act {
            let y = ctx.output();
            // z is kept only for activations whose derivative needs it; the others read y.
            let z = if f.df_uses_output_only() { ctx.output() } else { ctx.aux.cpu().view() };
            scale_by_derivative(g, f, z, y);
        }
        let dz = as2(g.view());
        if let Some(b) = b {
            let n = dz.ncols();
            if let Some((d, fresh)) = ctx.grad(b, &[n]) {
                let d = d.as_slice_mut().expect("gradient buffers are contiguous");
                let mut rows = dz.rows().into_iter();
                if fresh {
                    match rows.next() {
                        Some(first) => d.iter_mut().zip(first).for_each(|(d, &g)| *d = g),
                        None => d.fill(0.0),
                    }
                }
                for row in rows {
                    d.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
                }
            }
        }
        let (xv, wv) = (ctx.value(x), ctx.value(w));
        if let Some((d, fresh)) = ctx.grad(w, wv.shape()) {
            gemm_into(&mut d.view_mut().into_dimensionality().expect("2-D"), &as2(xv.view()).t(), &dz, fresh);
        }
        if let Some((d, fresh)) = ctx.grad(x, xv.shape()) {
            gemm_into(&mut d.view_mut().into_dimensionality().expect("2-D"), &dz, &as2(wv).t(), fresh);
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
