//! The node of any registered [`Unary`] function: `y = f(x)` element by element, and backward
//! `dx += g * f'(x, y)`, both the device's element-wise kernels ([`crate::device::ElementwiseKernels`]).
use std::any::Any;

use super::Unary;
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// The recorded node: `f` of its input.
struct UnaryNode {
    input: [usize; 1],
    f: Unary,
}

impl<'t> Var<'t> {
    /// Records `f` applied to every element.
    pub(crate) fn unary(self, f: Unary) -> Var<'t> {
        let shape = self.shape();
        self.tape.push(UnaryNode { input: [self.id], f }, &shape, |v, out, _| v.get(self.id).unary(f, out))
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

impl Kernel for UnaryNode {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let (x, y) = (ctx.value(a), ctx.output());
        // Written, not zero-filled and added, on the first contribution: one pass fewer.
        if let Some((d, fresh)) = ctx.grad(a, x.shape()) {
            x.unary_grad(self.f, y, g, d, !fresh);
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
