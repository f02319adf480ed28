//! The backward walk, and the contract every op's rule is written against ([`Kernel`], [`BackwardCtx`]).
//!
//! [`run`] seeds the loss's gradient with 1 and visits the nodes from the last to the first; each node that
//! received a gradient hands it to its kernel's rule, which adds its contribution to each input's gradient
//! buffer. The rules themselves live with their ops, one file each, in `ops/`. Buffers are written, not
//! allocated: the first contribution to a buffer in a pass either overwrites it (the rule is told it is
//! `fresh`) or zero-fills it first ([`BackwardCtx::zeroed`]); later ones add.
use super::{Gradients, Node, NodeKind, ParamStore, Values, Workspace};
use crate::device::Storage;

/// One op on the tape: which nodes it reads and how its gradient flows back to them. Its `Var` method (in the
/// same file under `ops/`) records it with [`super::Tape::push`] and computes the value.
pub(crate) trait Kernel: std::any::Any + Send + Sync {
    /// The nodes the operation reads, in the order its rule knows them.
    fn inputs(&self) -> &[usize];

    /// Adds the gradient of every input that wants one, given `g`, the gradient of the output. `g` is the
    /// node's own buffer, needed by no one else: a rule may overwrite it (e.g. with `g * act'(y)`).
    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>);
}

/// Where gradients go: node buffers, or the [`Gradients`] store for parameter nodes (written straight there, so
/// a parameter's gradient is never copied).
struct Sink<'w> {
    nodes: &'w [Node],
    node_grads: &'w mut [Storage],
    grad_set: &'w mut [bool],
    param_grads: &'w mut Gradients,
}

impl Sink<'_> {
    /// The gradient buffer of node `id` (of `shape`) and whether this is its first contribution (content stale);
    /// `None` if no gradient flows to it.
    fn target(&mut self, id: usize, shape: &[usize]) -> Option<(&mut Storage, bool)> {
        let node = &self.nodes[id];
        if !node.requires_grad {
            return None;
        }
        let (buf, set) = match node.kind {
            NodeKind::Param(p) => {
                (&mut self.param_grads.grads[p.index()], &mut self.param_grads.present[p.index()])
            }
            _ => (&mut self.node_grads[id], &mut self.grad_set[id]),
        };
        let fresh = !*set;
        *set = true;
        if fresh {
            buf.fit(shape);
        }
        Some((buf, fresh))
    }
}

/// What a [`Kernel`]'s backward rule reads and writes: recorded values, the node's auxiliary buffer (its own
/// to reuse as scratch), and the gradient buffers of its inputs.
pub(crate) struct BackwardCtx<'a, 'w> {
    vals: &'a Values<'w>,
    id: usize,
    /// The auxiliary buffer the forward pass filled; free for reuse once the rule has read it.
    pub(crate) aux: &'a mut Storage,
    sink: &'a mut Sink<'w>,
}

impl<'w> BackwardCtx<'_, 'w> {
    /// The recorded value of node `id`, where it lives.
    pub(crate) fn value(&self, id: usize) -> &'w Storage {
        self.vals.get(id)
    }

    /// The node's own output, where it lives.
    pub(crate) fn output(&self) -> &'w Storage {
        self.vals.get(self.id)
    }

    /// Whether a gradient flows to input `id` (without claiming its buffer, as [`BackwardCtx::grad`] does).
    pub(crate) fn wants(&self, id: usize) -> bool {
        self.sink.nodes[id].requires_grad
    }

    /// The gradient buffer of input `id` (of `shape`) and whether this is its first contribution (then its
    /// content is stale and must be overwritten, not added to); `None` if no gradient flows there.
    pub(crate) fn grad(&mut self, id: usize, shape: &[usize]) -> Option<(&mut Storage, bool)> {
        self.sink.target(id, shape)
    }
}

/// Runs the backward pass from the scalar node `loss`.
pub(super) fn run(ws: &mut Workspace, params: &ParamStore, loss: usize, grads: &mut Gradients) {
    let Workspace { nodes, values, aux, grads: node_grads, grad_set } = ws;
    let n = nodes.len();
    if node_grads.len() < n {
        node_grads.resize_with(n, Storage::default);
    }
    grad_set.clear();
    grad_set.resize(n, false);
    let vals = Values { params, nodes, values };
    let mut sink = Sink { nodes, node_grads, grad_set, param_grads: grads };
    if let Some((seed, _)) = sink.target(loss, vals.get(loss).shape()) {
        seed.fill(1.0);
    }
    for id in (0..=loss).rev() {
        let NodeKind::Op(ref kernel) = nodes[id].kind else { continue };
        if !sink.grad_set[id] {
            continue;
        }
        // The node's gradient is needed by no one else, so its rule may reuse it in place.
        let mut g = std::mem::take(&mut sink.node_grads[id]);
        kernel.backward(&mut g, &mut BackwardCtx { vals: &vals, id, aux: &mut aux[id], sink: &mut sink });
        sink.node_grads[id] = g;
    }
}
