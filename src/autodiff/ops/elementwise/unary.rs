//! The node of any registered [`Unary`] function: `y = f(x)` element by element, and backward
//! `dx += g * f'(x, y)`, both through [`specialise`] so that the hot activations get loops of their own.
use std::any::Any;

use ndarray::{ArrayViewD, Zip};

use super::{specialise, Unary};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{Tensor, Var};
use crate::device::Storage;
use crate::threads::{for_each, worth_splitting};

/// The recorded node: `f` of its input.
struct UnaryNode {
    input: [usize; 1],
    f: Unary,
}

impl<'t> Var<'t> {
    /// Records `f` applied to every element.
    pub(crate) fn unary(self, f: Unary) -> Var<'t> {
        let shape = self.shape();
        self.tape.push(UnaryNode { input: [self.id], f }, &shape, |v, out, _| {
            let x = v.get(self.id);
            if let (false, Some(xs)) = (worth_splitting(out.len()), x.as_slice()) {
                // A plain loop over slices, so that the hot activations' `f` is inlined into it.
                let out = out.as_slice_mut().expect("owned buffers are contiguous");
                specialise!(f, |op| out.iter_mut().zip(xs).for_each(|(o, &x)| *o = op.f(x)));
                return;
            }
            specialise!(f, |op| for_each(Zip::from(out).and(&x), |o, &x| *o = op.f(x)));
        })
    }

    /// If this value is `f(z)`, `z`.
    pub(super) fn unary_input(self, f: Unary) -> Option<Var<'t>> {
        let input = self.tape.kernel_of(self.id, |k| {
            let node = (k as &dyn Any).downcast_ref::<UnaryNode>()?;
            (node.f == f).then_some(node.input[0])
        })?;
        Some(Var { tape: self.tape, id: input })
    }
}

/// Writes (`fresh`: the buffer's content is stale) or adds `g * df(x, y)` into `dst`.
fn unary_grad(
    f: Unary,
    dst: &mut Tensor,
    fresh: bool,
    x: ArrayViewD<'_, f32>,
    y: ArrayViewD<'_, f32>,
    g: ArrayViewD<'_, f32>,
) {
    if let (false, Some(xs), Some(ys), Some(gs)) =
        (worth_splitting(dst.len()), x.as_slice(), y.as_slice(), g.as_slice())
    {
        // A plain loop over slices, so that the hot activations' `df` is inlined into it.
        let ds = dst.as_slice_mut().expect("gradient buffers are contiguous");
        let each = ds.iter_mut().zip(xs).zip(ys).zip(gs);
        specialise!(f, |op| if fresh {
            each.for_each(|(((d, &x), &y), &g)| *d = g * op.df(x, y));
        } else {
            each.for_each(|(((d, &x), &y), &g)| *d += g * op.df(x, y));
        });
        return;
    }
    specialise!(f, |op| {
        let zip = Zip::from(dst).and(&x).and(&y).and(&g);
        if fresh {
            for_each(zip, |d, &x, &y, &g| *d = g * op.df(x, y));
        } else {
            for_each(zip, |d, &x, &y, &g| *d += g * op.df(x, y));
        }
    })
}

impl Kernel for UnaryNode {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let [a] = self.input;
        let (x, y) = (ctx.value(a), ctx.output());
        // Written, not zero-filled and added, on the first contribution: one pass fewer.
        if let Some((d, fresh)) = ctx.grad(a, x.shape()) {
            unary_grad(self.f, d, fresh, x, y, g.view());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::{check_gradients, ParamStore, Tape};
    use ndarray::{array, ArrayD, IxDyn};

    #[test]
    fn gradients_through_the_tape_match_finite_differences() {
        let x = array![[-1.3f32, 0.4, 2.1], [0.7, -0.2, 1.6]].into_dyn();
        // A hot activation, one of the rest, and a second use that adds onto the first's gradient.
        check_gradients(std::slice::from_ref(&x), |v| v[0].tanh()).unwrap();
        check_gradients(std::slice::from_ref(&x), |v| v[0].gelu()).unwrap();
        check_gradients(&[x], |v| v[0].sigmoid().add(v[0].softsign())).unwrap();
    }

    #[test]
    fn sigmoid_logits_finds_the_sigmoids_input() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let z = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])).view());
        assert_eq!(z.sigmoid().sigmoid_logits().map(|v| v.id()), Some(z.id()));
        assert!(z.tanh().sigmoid_logits().is_none());
        assert!(z.sigmoid_logits().is_none());
    }
}
