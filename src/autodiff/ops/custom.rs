//! A user's operation: a forward computation and its backward rule given as a [`CustomOp`], recorded with
//! [`Tape::custom`].
//!
//! Backward: the user's rule returns one gradient per input, in the input's shape or broadcast-compatible with
//! it; each is summed over the axes it was broadcast along into the input's gradient (the device's
//! [`add_unbroadcast`](crate::device::ElementwiseKernels::add_unbroadcast)).
//!
//! A custom op is written over ndarray views, so it runs on the host whatever the device: on the CPU it reads
//! the buffers in place; on another device its inputs, output and gradient are copied to the host
//! ([`Storage::host`]) and its results copied back.
use ndarray::ArrayViewD;

use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{Tape, Tensor, Values, Var};
use crate::device::{Device, Storage};

/// A user-defined operation: a forward computation and its backward rule, for what the built-in operations
/// cannot express efficiently. [`crate::autodiff::check_gradients`] verifies a custom rule against finite
/// differences.
///
/// Both run on the host over ndarray views: on a device other than the CPU, the inputs (and in backward the
/// output and its gradient) are downloaded first, and the results uploaded.
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
            let hosts: Vec<_> = inputs.iter().map(|v| vals.get(v.id).host()).collect();
            let views: Vec<_> = hosts.iter().map(|h| h.view()).collect();
            op.forward(&views)
        };
        let node = Custom { inputs: inputs.iter().map(|v| v.id).collect(), op: Box::new(op) };
        let shape = result.shape().to_vec();
        self.push(node, &shape, move |_, out, _| *out = to_device(out.device(), result))
    }
}

impl Kernel for Custom {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let hosts: Vec<_> = self.inputs.iter().map(|&i| ctx.value(i).host()).collect();
        let views: Vec<_> = hosts.iter().map(|h| h.view()).collect();
        let contributions = self.op.backward(&views, ctx.output().host().view(), g.host().view());
        // A short list would silently drop gradients.
        assert_eq!(
            contributions.len(),
            self.inputs.len(),
            "CustomOp::backward returned {} gradients for {} inputs",
            contributions.len(),
            self.inputs.len()
        );
        for ((&input, view), contribution) in self.inputs.iter().zip(&views).zip(contributions) {
            if let Some((d, fresh)) = ctx.grad(input, view.shape()) {
                if fresh {
                    d.fill(0.0);
                }
                to_device(d.device(), contribution).add_unbroadcast(1.0, d);
            }
        }
    }
}

/// A host array the user's op returned, on `device`: moved on the CPU, uploaded elsewhere.
fn to_device(device: Device, array: Tensor) -> Storage {
    match device {
        Device::Cpu => Storage::from(array),
    }
}
