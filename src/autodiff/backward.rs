//! The backward walk, and the contract every op's rule is written against ([`Kernel`], [`BackwardCtx`]).
//!
//! [`run`] seeds the loss's gradient with 1 and visits the nodes from the last to the first; each node that
//! received a gradient hands it to its kernel's rule, which adds its contribution to each input's gradient
//! buffer. The rules themselves live with their ops, one file each, in `ops/`. Buffers are written, not
//! allocated: the first contribution to a buffer in a pass either overwrites it (the rule is told it is
//! `fresh`) or zero-fills it first ([`BackwardCtx::zeroed`]); later ones add.
use super::{Gradients, Node, NodeKind, ParamId, ParamStore, Values, Workspace};
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

/// What [`super::Tape::backward_with`] calls with each parameter's final gradient.
pub(super) type OnReady<'h> = dyn FnMut(ParamId, &Storage) + 'h;

/// Runs the backward pass from the scalar node `loss`. With `on_ready`, each parameter's gradient is handed to
/// it as soon as it is final: right after the last node (in reverse order) that reads the parameter has run.
pub(super) fn run(
    ws: &mut Workspace,
    params: &ParamStore,
    loss: usize,
    grads: &mut Gradients,
    mut on_ready: Option<&mut OnReady<'_>>,
) {
    let Workspace { nodes, values, aux, grads: node_grads, grad_set, ready } = ws;
    let n = nodes.len();
    if node_grads.len() < n {
        node_grads.resize_with(n, Storage::default);
    }
    grad_set.clear();
    grad_set.resize(n, false);
    if on_ready.is_some() {
        last_readers(nodes, loss, ready);
    }
    // `ready` is sorted by increasing node: the parameters whose last reader is the node just visited are at
    // its end.
    let mut report = |id: usize, grads: &Gradients, ready: &mut Vec<(usize, ParamId)>| {
        let Some(hook) = on_ready.as_mut() else { return };
        while let Some(&(_, p)) = ready.last().filter(|(at, _)| *at >= id) {
            ready.pop();
            if grads.present[p.index()] {
                hook(p, &grads.grads[p.index()]);
            }
        }
    };
    let vals = Values { params, nodes, values };
    let mut sink = Sink { nodes, node_grads, grad_set, param_grads: grads };
    if let Some((seed, _)) = sink.target(loss, vals.get(loss).shape()) {
        seed.fill(1.0);
    }
    for id in (0..=loss).rev() {
        if let NodeKind::Op(ref kernel) = nodes[id].kind {
            if sink.grad_set[id] {
                // The node's gradient is needed by no one else, so its rule may reuse it in place.
                let mut g = std::mem::take(&mut sink.node_grads[id]);
                kernel.backward(
                    &mut g,
                    &mut BackwardCtx { vals: &vals, id, aux: &mut aux[id], sink: &mut sink },
                );
                sink.node_grads[id] = g;
            }
        }
        report(id, sink.param_grads, ready);
    }
}

/// Fills `ready` with `(node, parameter)` for every parameter that needs a gradient, `node` being the first op
/// at or before `loss` that reads it (the last one the backward walk visits), or the loss itself when no op
/// does (the loss is the parameter); sorted by increasing node, so the walk, which goes down, takes them from
/// the end (a node's parameters in decreasing order).
fn last_readers(nodes: &[Node], loss: usize, ready: &mut Vec<(usize, ParamId)>) {
    // Every (reader, parameter) edge, then the first reader of each parameter (no allocation once `ready` has
    // grown to the tape's size).
    ready.clear();
    for (id, node) in nodes.iter().enumerate().take(loss + 1) {
        match &node.kind {
            NodeKind::Op(kernel) => {
                for &input in kernel.inputs() {
                    if let NodeKind::Param(p) = nodes[input].kind {
                        if nodes[input].requires_grad {
                            ready.push((id, p));
                        }
                    }
                }
            }
            NodeKind::Param(p) if id == loss && node.requires_grad => ready.push((id, *p)),
            _ => {}
        }
    }
    ready.sort_unstable_by_key(|&(id, p)| (p, id));
    ready.dedup_by_key(|(_, p)| *p);
    ready.sort_unstable();
}
