//! Matrix products: `(m, k) x (k, n)`, a batch `(b, m, k) x (b, k, n)`, or a batch times one shared matrix
//! `(b, m, k) x (k, n)`, on the crate's GEMM ([`crate::autodiff::gemm`]).
//!
//! Backward: `da = g · bᵀ` and `db = aᵀ · g` per matrix of the batch; a shared matrix sums its share over the
//! batch. Each product writes its target on a first contribution (`beta = 0`) and adds to it otherwise.
use ndarray::{ArrayView2, ArrayView3, ArrayViewD, ArrayViewMut2, Axis, Ix2, Ix3};

use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::gemm::gemm;
use crate::autodiff::{Tensor, Var};

/// The recorded node: inputs `[a, b]`.
struct MatMul {
    inputs: [usize; 2],
}

impl<'t> Var<'t> {
    /// Matrix product: `(m, k) x (k, n)`, a batch `(b, m, k) x (b, k, n)`, or a batch times one shared matrix
    /// `(b, m, k) x (k, n)`. Runs on ndarray's optimised GEMM.
    ///
    /// # Panics
    /// If the shapes do not fit one of these forms.
    pub fn matmul(self, other: Var<'t>) -> Var<'t> {
        let (a, b) = (self.shape(), other.shape());
        let shape = match (a.as_slice(), b.as_slice()) {
            (&[m, k], &[k2, n]) if k == k2 => vec![m, n],
            (&[bs, m, k], &[bs2, k2, n]) if k == k2 && bs == bs2 => vec![bs, m, n],
            (&[bs, m, k], &[k2, n]) if k == k2 => vec![bs, m, n],
            _ => panic!("matmul: shapes {a:?} and {b:?} do not fit (m, k) x (k, n) or a batch of it"),
        };
        self.tape.push(MatMul { inputs: [self.id, other.id] }, &shape, |v, out, _| {
            forward(v.get(self.id), v.get(other.id), out)
        })
    }
}

/// `out = a · b` in one of the three forms.
fn forward(a: ArrayViewD<'_, f32>, b: ArrayViewD<'_, f32>, out: &mut Tensor) {
    match (a.ndim(), b.ndim()) {
        (2, 2) => gemm(1.0, &as2(a), &as2(b), 0.0, &mut out.view_mut().into_dimensionality::<Ix2>().unwrap()),
        _ => {
            let a = as3(a);
            let mut o = out.view_mut().into_dimensionality::<Ix3>().unwrap();
            for i in 0..a.len_of(Axis(0)) {
                let bi =
                    if b.ndim() == 3 { as3(b.view()).index_axis_move(Axis(0), i) } else { as2(b.view()) };
                gemm(1.0, &a.index_axis(Axis(0), i), &bi, 0.0, &mut o.index_axis_mut(Axis(0), i));
            }
        }
    }
}

/// `dst = a · b` (`fresh`) or `dst += a · b`, on 2-D views.
pub(super) fn gemm_into(
    dst: &mut ArrayViewMut2<'_, f32>,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    fresh: bool,
) {
    gemm(1.0, a, b, if fresh { 0.0 } else { 1.0 }, dst);
}

/// A recorded 2-D value as a matrix.
pub(super) fn as2(v: ArrayViewD<'_, f32>) -> ArrayView2<'_, f32> {
    v.into_dimensionality::<Ix2>().expect("recorded as 2-D")
}

fn as3(v: ArrayViewD<'_, f32>) -> ArrayView3<'_, f32> {
    v.into_dimensionality::<Ix3>().expect("recorded as 3-D")
}

impl Kernel for MatMul {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Tensor, ctx: &mut BackwardCtx<'_, '_>) {
        let [a, b] = self.inputs;
        let (av, bv, g) = (ctx.value(a), ctx.value(b), g.view());
        if let Some((d, fresh)) = ctx.grad(a, av.shape()) {
            match (av.ndim(), bv.ndim()) {
                (2, 2) => gemm_into(
                    &mut d.view_mut().into_dimensionality().expect("2-D"),
                    &as2(g.view()),
                    &as2(bv.view()).t(),
                    fresh,
                ),
                (3, _) => {
                    let g3 = as3(g.view());
                    let mut d3 = d.view_mut().into_dimensionality::<Ix3>().expect("3-D");
                    for i in 0..g3.len_of(Axis(0)) {
                        let bi = if bv.ndim() == 3 {
                            as3(bv.view()).index_axis_move(Axis(0), i)
                        } else {
                            as2(bv.view())
                        };
                        gemm_into(
                            &mut d3.index_axis_mut(Axis(0), i),
                            &g3.index_axis(Axis(0), i),
                            &bi.t(),
                            fresh,
                        );
                    }
                }
                _ => unreachable!("matmul shapes are checked when recorded"),
            }
        }
        if let Some((d, fresh)) = ctx.grad(b, bv.shape()) {
            match (av.ndim(), bv.ndim()) {
                (2, 2) => gemm_into(
                    &mut d.view_mut().into_dimensionality().expect("2-D"),
                    &as2(av.view()).t(),
                    &as2(g.view()),
                    fresh,
                ),
                (3, 3) => {
                    let (a3, g3) = (as3(av.view()), as3(g.view()));
                    let mut d3 = d.view_mut().into_dimensionality::<Ix3>().expect("3-D");
                    for i in 0..g3.len_of(Axis(0)) {
                        gemm_into(
                            &mut d3.index_axis_mut(Axis(0), i),
                            &a3.index_axis(Axis(0), i).t(),
                            &g3.index_axis(Axis(0), i),
                            fresh,
                        );
                    }
                }
                (3, 2) => {
                    // A shared matrix: its gradient sums over the batch.
                    let (a3, g3) = (as3(av.view()), as3(g.view()));
                    let mut d2 = d.view_mut().into_dimensionality::<Ix2>().expect("2-D");
                    for i in 0..g3.len_of(Axis(0)) {
                        gemm_into(
                            &mut d2,
                            &a3.index_axis(Axis(0), i).t(),
                            &g3.index_axis(Axis(0), i),
                            fresh && i == 0,
                        );
                    }
                }
                _ => unreachable!("matmul shapes are checked when recorded"),
            }
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
    fn gradients_of_the_three_forms_match_finite_differences() {
        for (a, b) in [(vec![3, 4], vec![4, 2]), (vec![2, 3, 4], vec![2, 4, 5]), (vec![2, 3, 4], vec![4, 5])]
        {
            check_gradients(&[values(&a, 1), values(&b, 2)], |v| v[0].matmul(v[1]))
                .unwrap_or_else(|e| panic!("{a:?} x {b:?}: {e}"));
            // A second use of each input: the products add onto a gradient already written.
            check_gradients(&[values(&a, 1), values(&b, 2)], |v| {
                v[0].matmul(v[1]).sum().add(v[0].square().sum()).add(v[1].square().sum())
            })
            .unwrap_or_else(|e| panic!("{a:?} x {b:?}, used twice: {e}"));
        }
    }
}
