//! A user's operation: a forward computation and its backward rule given as a [`CustomOp`], recorded with
//! [`Tape::custom`].
//!
//! Backward: the user's rule returns one gradient per input, in the input's shape or broadcast-compatible with
//! it; each is summed over the axes it was broadcast along into the input's gradient.
use ndarray::ArrayViewD;

use super::add_unbroadcast;
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{Tape, Tensor, Values, Var};
use crate::device::Storage;

/// A user-defined operation: a forward computation and its backward rule, for what the built-in operations
/// cannot express efficiently. [`crate::autodiff::check_gradients`] verifies a custom rule against finite
/// differences.
pub trait CustomOp: Send + Sync {
    /// The output for these inputs.
    fn forward(&self, inputs: &[ArrayViewD<'_, f32>]) -> Tensor;

    /// The gradient with respect to each input (in the input's shape, or broadcast-compatible with it), given
    /// the inputs, the output and the gradient of the output.
    fn backward(
        &self,
        inputs: &[ArrayViewD<'_, f32>],
        output: ArrayViewD<'_, f32>,
        grad_output: ArrayViewD<'_, f32>,
    ) -> Vec<Tensor>;
}

/// The recorded node: the inputs and the user's op.
struct Custom {
    inputs: Vec<usize>,
    op: Box<dyn CustomOp>,
}

impl<'t> Tape<'t> {
    /// Records a [`CustomOp`] applied to `inputs`.
    pub fn custom(&'t self, inputs: &[Var<'t>], op: impl CustomOp + 'static) -> Var<'t> {
        let result = {
            let ws = self.ws.borrow();
            let vals = Values { params: self.params, nodes: &ws.nodes, values: &ws.values };
            let views: Vec<_> = inputs.iter().map(|v| vals.get(v.id)).collect();
            op.forward(&views)
        };
        let node = Custom { inputs: inputs.iter().map(|v| v.id).collect(), op: Box::new(op) };
        let shape = result.shape().to_vec();
        self.push(node, &shape, move |_, out, _| *out = result)
    }
}

impl Kernel for Custom {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let views: Vec<_> = self.inputs.iter().map(|&i| ctx.value(i)).collect();
        let contributions = self.op.backward(&views, ctx.output(), g.view());
        // A short list would silently drop gradients.
        assert_eq!(
            contributions.len(),
            self.inputs.len(),
            "CustomOp::backward returned {} gradients for {} inputs",
            contributions.len(),
            self.inputs.len()
        );
        for ((&input, view), contribution) in self.inputs.iter().zip(&views).zip(contributions) {
            if let Some(d) = ctx.zeroed(input, view.shape()) {
                add_unbroadcast(d, contribution.view(), 1.0);
            }
        }
    }
}
