//! Reverse-mode automatic differentiation over ndarray `f32` arrays.
//!
//! The design in four sentences:
//! - Weights live in a [`ParamStore`], outside any tape, and survive across training steps.
//! - A [`Tape`] records one forward pass: each operation on a [`Var`] appends a node holding its value, and
//!   [`Tape::backward`] walks the nodes in reverse and writes the gradient of every trainable parameter into a
//!   [`Gradients`] store (summed where a value is used more than once).
//! - The tape's buffers live in a [`Workspace`] that a training loop hands from one step to the next, so that a
//!   step of the same shape as the last one allocates nothing: node `i` reuses node `i`'s buffers.
//! - [`Tape::inference`] records values only: no gradient bookkeeping, and `backward` is refused.
//!
//! Every op has one home: a file under `ops/` with its `Var` method (which records the node and computes the
//! value), its backward rule (a `Kernel`) and its tests. The walk that calls the rules is `backward`; it knows
//! no op by name. Element-wise functions keep `f` and `f'` side by side, one file each under
//! `ops/elementwise/`.
//!
//! A short path through the engine, in reading order:
//! 1. this file: [`ParamStore`], [`Tape`], [`Var`], [`Workspace`], and `Tape::push`, where every op records
//!    its node;
//! 2. `backward.rs`: the `Kernel` trait a rule implements, what it may read and write (`BackwardCtx`), and
//!    the reverse walk;
//! 3. `ops/matmul.rs`, then `ops/elementwise/` (`relu.rs`, `unary.rs`, `binary.rs`): small complete ops;
//! 4. `ops/dense.rs` and `ops/conv2d.rs`: fused layer nodes, and how they split work over threads;
//! 5. `gradcheck.rs` (how every rule is tested), then [`crate::device`]: where buffers live and the kernels
//!    run (the CPU's GEMM is `device/cpu/gemm.rs`).
//!
//! To add an op, see `docs/architecture.md`, "Adding an op".
//!
//! ```
//! use kerust::autodiff::{Gradients, ParamStore, Tape};
//! use ndarray::array;
//!
//! let mut params = ParamStore::new();
//! let w = params.add("w", array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn(), true);
//!
//! let tape = Tape::new(&params);
//! let x = tape.constant(array![[1.0f32, 1.0]].into_dyn().view());
//! let loss = x.matmul(tape.param(w)).square().sum(); // (1+3)^2 + (2+4)^2
//! assert_eq!(loss.item(), 52.0);
//!
//! let mut grads = Gradients::new();
//! tape.backward(loss, &mut grads).unwrap();
//! // d/dw of sum((x w)^2) = x^T 2 (x w)
//! assert_eq!(grads.get(w).unwrap(), &array![[8.0f32, 12.0], [8.0, 12.0]].into_dyn());
//! ```
mod backward;
mod gradcheck;
mod ops;

/// The engine's matrix product, the CPU backend's GEMM (here for code written before [`crate::device`]).
pub use crate::device::gemm;
/// A user's element-wise function, defined where every device can run it ([`crate::device`]).
pub use crate::device::CustomActivation;
pub(crate) use crate::device::Unary;
/// The thread count of kerust's pool, here too for code written before [`crate::threads`].
pub use crate::threads::{num_threads, set_num_threads};
#[cfg(test)]
pub(crate) use gradcheck::test_values;
pub use gradcheck::{check_gradients, GradCheck, GradCheckReport};
pub(crate) use ops::{window_output, WindowFault};
pub use ops::{
    BatchStatistics, Conv1dOptions, Conv2dOptions, CustomOp, Padding, Padding1d, RecurrentOptions,
};

use std::cell::RefCell;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};

use crate::device::{Device, Storage};
use crate::{Error, Result};
use backward::Kernel;

/// The host array type of kerust: a dynamically shaped `f32` ndarray, what user data, predictions and
/// weights are at the edges. Inside the engine, buffers are [`Storage`] on a [`Device`].
pub type Tensor = ArrayD<f32>;

/// Handle of one parameter in a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(usize);

impl ParamId {
    /// The parameter's position in its store.
    pub fn index(self) -> usize {
        self.0
    }

    /// The handle of the parameter at `index` (for renumbering a store's handles).
    pub(crate) fn from_index(index: usize) -> Self {
        ParamId(index)
    }
}

/// One weight array and what a model needs to know of it.
#[derive(Clone, Debug)]
pub struct Param {
    /// A human-readable name, e.g. `dense/kernel`.
    pub name: String,
    /// The current value, on the store's device ([`Storage::to_array`] copies it out).
    pub value: Storage,
    /// Whether optimizers update it (and [`Tape::backward`] computes its gradient).
    pub trainable: bool,
}

/// The weights of a model: parameters live here, outside the tape, and survive across steps.
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    /// Where the parameters live.
    device: Device,
    /// The most scalars the store may hold through [`crate::layers::add_weight`], if bounded.
    weight_limit: Option<usize>,
    /// The scalars of the parameters as they were added (kept by `add` and `truncate`), so that checking the
    /// bound is not a sum over every parameter for each new one.
    added_len: usize,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bounds the total number of scalars this store may hold: [`crate::layers::add_weight`] refuses, before
    /// allocating, a weight that would take the store past `limit` (`None`, the default: no bound besides the
    /// machine's memory). Loading a model file sets it to the number of weights the file brings, so that a
    /// corrupt or hostile config cannot make any layer, of any type, allocate more.
    pub fn set_weight_limit(&mut self, limit: Option<usize>) {
        self.weight_limit = limit;
    }

    /// The bound set by [`ParamStore::set_weight_limit`].
    pub fn weight_limit(&self) -> Option<usize> {
        self.weight_limit
    }

    /// The number of scalars held, over all parameters.
    pub fn total_len(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// The scalars of the parameters, counted as they were added: [`ParamStore::total_len`] unless a value was
    /// since replaced by one of another size through `get_mut`, `value_mut` or `iter_mut` (which loading does
    /// not do while the bound holds).
    pub(crate) fn added_len(&self) -> usize {
        self.added_len
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Adds a parameter, on the store's device, and returns its handle.
    pub fn add(&mut self, name: impl Into<String>, value: Tensor, trainable: bool) -> ParamId {
        self.added_len = self.added_len.saturating_add(value.len());
        let value = match self.device {
            Device::Cpu => Storage::from(value),
        };
        self.params.push(Param { name: name.into(), value, trainable });
        ParamId(self.params.len() - 1)
    }

    /// The parameter behind `id`.
    ///
    /// # Panics
    /// If `id` comes from another store with more parameters.
    pub fn get(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    /// The parameter behind `id`, mutably.
    pub fn get_mut(&mut self, id: ParamId) -> &mut Param {
        &mut self.params[id.0]
    }

    /// The value of the parameter behind `id`, where it lives ([`Storage::to_array`] copies it to the host).
    pub fn value(&self, id: ParamId) -> &Storage {
        &self.params[id.0].value
    }

    /// The value of the parameter behind `id`, mutably.
    pub fn value_mut(&mut self, id: ParamId) -> &mut Storage {
        &mut self.params[id.0].value
    }

    /// Overwrites the value of the parameter behind `id` with host data of the same shape.
    ///
    /// # Errors
    /// [`Error::Shape`] if `value`'s shape is not the parameter's.
    pub fn set_value(&mut self, id: ParamId, value: ArrayViewD<'_, f32>) -> Result<()> {
        let param = &mut self.params[id.0];
        if param.value.shape() != value.shape() {
            return Err(Error::shape(
                format!("weight `{}`", param.name),
                format!("{:?}", param.value.shape()),
                format!("{:?}", value.shape()),
            ));
        }
        param.value = Storage::from_array(self.device, value);
        Ok(())
    }

    /// The number of parameters (arrays, not scalars).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the store holds no parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// All parameters with their handles, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param)> {
        self.params.iter().enumerate().map(|(i, p)| (ParamId(i), p))
    }

    /// All parameters, mutably, in the order they were added.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Param)> {
        self.params.iter_mut().enumerate().map(|(i, p)| (ParamId(i), p))
    }

    /// Drops every parameter from position `len` on (used when a layer is removed from a model).
    pub fn truncate(&mut self, len: usize) {
        self.params.truncate(len);
        self.added_len = self.total_len();
    }

    /// Puts the parameters in the order `order` gives: the parameter at position `i` is then the one `order[i]`
    /// named (a permutation of the store's handles; the caller renumbers the handles it holds).
    pub(crate) fn permute(&mut self, order: &[ParamId]) {
        debug_assert_eq!(order.len(), self.params.len());
        let mut old: Vec<Option<Param>> = std::mem::take(&mut self.params).into_iter().map(Some).collect();
        self.params = order.iter().filter_map(|id| old.get_mut(id.0).and_then(Option::take)).collect();
    }
}

/// The gradients of one backward pass, by [`ParamId`]. Its buffers are reused from one pass to the next.
#[derive(Clone, Debug, Default)]
pub struct Gradients {
    grads: Vec<Storage>,
    present: Vec<bool>,
}

impl Gradients {
    /// An empty store; [`Tape::backward`] sizes it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The gradient of the parameter behind `id`, if the last backward pass reached it.
    pub fn get(&self, id: ParamId) -> Option<&Storage> {
        self.present.get(id.0).copied().unwrap_or(false).then(|| &self.grads[id.0])
    }

    /// Every gradient the last backward pass computed.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Storage)> {
        self.grads
            .iter()
            .zip(&self.present)
            .enumerate()
            .filter(|(_, (_, &p))| p)
            .map(|(i, (g, _))| (ParamId(i), g))
    }

    /// Sets the gradient of parameter `id` of a store of `n` parameters to `values` in `shape` (`None`: no
    /// gradient), reusing its buffer: data-parallel training writes the summed gradients back here.
    pub(crate) fn assign(&mut self, n: usize, id: ParamId, shape: &[usize], values: Option<&[f32]>) {
        if self.grads.len() != n {
            self.reset(n);
        }
        self.present[id.0] = values.is_some();
        if let Some(values) = values {
            let g = &mut self.grads[id.0];
            g.fit(shape);
            g.copy_from_host(values);
        }
    }

    /// Makes `self` a copy of `source`, reusing `self`'s buffers where the shapes agree: an optimizer that
    /// changes the gradients (clipping) works on a copy and leaves the caller's unchanged.
    pub(crate) fn copy_from(&mut self, source: &Gradients) {
        self.grads.truncate(source.grads.len());
        for (i, g) in source.grads.iter().enumerate() {
            match self.grads.get_mut(i) {
                Some(mine) => mine.clone_from(g),
                None => self.grads.push(g.clone()),
            }
        }
        self.present.clone_from(&source.present);
    }

    /// Every gradient the last backward pass computed, to change in place.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Storage)> {
        self.grads
            .iter_mut()
            .zip(&self.present)
            .enumerate()
            .filter(|(_, (_, &p))| p)
            .map(|(i, (g, _))| (ParamId(i), g))
    }

    fn reset(&mut self, n: usize) {
        self.grads.resize_with(n, Storage::default);
        self.present.clear();
        self.present.resize(n, false);
    }
}

/// What produced a node.
enum NodeKind {
    /// A constant: no gradient.
    Input,
    /// A parameter from the store (its value is read there, not copied).
    Param(ParamId),
    /// An op: its inputs and backward rule.
    Op(Box<dyn Kernel>),
}

/// One recorded node.
struct Node {
    kind: NodeKind,
    requires_grad: bool,
}

/// The reusable buffers of a [`Tape`]: node values, auxiliary buffers and gradients, by node position.
///
/// A training loop keeps one and passes it to [`Tape::with_workspace`] each step; the same graph then runs
/// without allocating.
#[derive(Default)]
pub struct Workspace {
    nodes: Vec<Node>,
    values: Vec<Storage>,
    aux: Vec<Storage>,
    grads: Vec<Storage>,
    grad_set: Vec<bool>,
    /// For [`Tape::backward_with`]: each parameter with the node after which its gradient is final.
    ready: Vec<(usize, ParamId)>,
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A record of one forward pass over the parameters of a [`ParamStore`].
pub struct Tape<'a> {
    params: &'a ParamStore,
    recording: bool,
    ws: RefCell<Workspace>,
}

/// A value on a [`Tape`]: a cheap, copyable handle. Operations on it record new nodes on the same tape.
#[derive(Clone, Copy)]
pub struct Var<'t> {
    tape: &'t Tape<'t>,
    id: usize,
}

impl std::fmt::Debug for Var<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var(#{} {:?})", self.id, self.shape())
    }
}

impl<'a> Tape<'a> {
    /// A recording tape over `params`, with fresh buffers.
    pub fn new(params: &'a ParamStore) -> Self {
        Self::with_workspace(params, Workspace::new())
    }

    /// A recording tape that reuses the buffers of an earlier tape (see [`Tape::into_workspace`]).
    pub fn with_workspace(params: &'a ParamStore, mut ws: Workspace) -> Self {
        ws.nodes.clear();
        Tape { params, recording: true, ws: RefCell::new(ws) }
    }

    /// A tape for inference: values only, no gradient bookkeeping; [`Tape::backward`] is refused.
    pub fn inference(params: &'a ParamStore, mut ws: Workspace) -> Self {
        ws.nodes.clear();
        Tape { params, recording: false, ws: RefCell::new(ws) }
    }

    /// Ends the tape and returns its buffers for the next one.
    pub fn into_workspace(self) -> Workspace {
        self.ws.into_inner()
    }

    /// Whether this tape records gradients.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// The parameters this tape reads.
    pub fn params(&self) -> &'a ParamStore {
        self.params
    }

    /// The number of nodes recorded so far.
    pub fn len(&self) -> usize {
        self.ws.borrow().nodes.len()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A parameter as a value on the tape. Its gradient is computed if the parameter is trainable and the tape
    /// records.
    pub fn param(&self, id: ParamId) -> Var<'_> {
        let trainable = self.params.get(id).trainable;
        let mut ws = self.ws.borrow_mut();
        let idx = ws.nodes.len();
        if ws.values.len() <= idx {
            ws.values.push(Storage::default());
        }
        ws.nodes.push(Node { kind: NodeKind::Param(id), requires_grad: self.recording && trainable });
        Var { tape: self, id: idx }
    }

    /// A constant (no gradient), copied into the tape's buffer.
    pub fn constant(&self, value: ArrayViewD<'_, f32>) -> Var<'_> {
        self.constant_with(value.shape(), |buf| buf.assign(&value))
    }

    /// A constant of `shape` written in place by `fill` (e.g. a batch gathered straight into the tape's buffer).
    /// `fill` must write every element: the buffer may hold a previous step's values.
    pub fn constant_with(&self, shape: &[usize], fill: impl FnOnce(&mut ArrayViewMutD<'_, f32>)) -> Var<'_> {
        self.record(NodeKind::Input, shape, |_, out, _| out.write_from_host(fill))
    }

    /// Records the op `kernel`: `compute` writes its value into a buffer of `shape` (and may use the node's
    /// auxiliary buffer), reading earlier values through the reader. Every op's `Var` method ends here.
    pub(crate) fn push(
        &self,
        kernel: impl Kernel,
        shape: &[usize],
        compute: impl FnOnce(&Values<'_>, &mut Storage, &mut Storage),
    ) -> Var<'_> {
        self.record(NodeKind::Op(Box::new(kernel)), shape, compute)
    }

    /// Calls `f` with the kernel of node `id`, if it is an op (for the ops that recognise their input, such as
    /// [`Var::softmax_logits`]).
    pub(crate) fn kernel_of<R>(&self, id: usize, f: impl FnOnce(&dyn Kernel) -> Option<R>) -> Option<R> {
        match &self.ws.borrow().nodes[id].kind {
            NodeKind::Op(k) => f(k.as_ref()),
            _ => None,
        }
    }

    fn record(
        &self,
        kind: NodeKind,
        shape: &[usize],
        compute: impl FnOnce(&Values<'_>, &mut Storage, &mut Storage),
    ) -> Var<'_> {
        let mut ws = self.ws.borrow_mut();
        let ws = &mut *ws;
        let id = ws.nodes.len();
        if ws.values.len() <= id {
            ws.values.resize_with(id + 1, Storage::default);
        }
        if ws.aux.len() <= id {
            ws.aux.resize_with(id + 1, Storage::default);
        }
        let mut out = std::mem::take(&mut ws.values[id]);
        let mut aux = std::mem::take(&mut ws.aux[id]);
        out.fit(shape);
        compute(&Values { params: self.params, nodes: &ws.nodes, values: &ws.values }, &mut out, &mut aux);
        ws.values[id] = out;
        ws.aux[id] = aux;
        let requires_grad = self.recording
            && match &kind {
                NodeKind::Op(k) => k.inputs().iter().any(|&i| ws.nodes[i].requires_grad),
                _ => false,
            };
        ws.nodes.push(Node { kind, requires_grad });
        Var { tape: self, id }
    }

    /// Computes the gradient of the scalar `loss` with respect to every trainable parameter that it depends on,
    /// and writes them into `grads` (which is cleared first).
    ///
    /// # Errors
    /// If the tape does not record ([`Tape::inference`]), if `loss` has more than one element, or if it belongs
    /// to another tape.
    pub fn backward(&self, loss: Var<'_>, grads: &mut Gradients) -> Result<()> {
        self.check_loss(loss)?;
        grads.reset(self.params.len());
        let mut ws = self.ws.borrow_mut();
        backward::run(&mut ws, self.params, loss.id, grads, None);
        Ok(())
    }

    /// [`Tape::backward`] that calls `on_ready` with each parameter's gradient as soon as it is final, while the
    /// pass goes on: right after the last op that reads the parameter (the first one recorded) has run. Data-
    /// parallel training sends gradients to the other processes from here, so that communication overlaps the
    /// rest of the backward pass.
    ///
    /// `on_ready` is called once for each parameter that gets a gradient (the ones [`Gradients::iter`] lists
    /// afterwards), with the gradient it will hold when `backward_with` returns; never for a parameter that
    /// gets none (not trainable, or not a reason for the loss). Gradients become final roughly in the reverse
    /// order of the forward pass: the last layer's first.
    ///
    /// ```
    /// use kerust::autodiff::{Gradients, ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let mut params = ParamStore::new();
    /// let w1 = params.add("w1", array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn(), true);
    /// let w2 = params.add("w2", array![[1.0f32], [-1.0]].into_dyn(), true);
    /// let frozen = params.add("frozen", array![[2.0f32]].into_dyn(), false);
    ///
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 1.0]].into_dyn().view());
    /// let y = x.matmul(tape.param(w1)).matmul(tape.param(w2)).matmul(tape.param(frozen));
    /// let loss = y.square().sum();
    ///
    /// let mut grads = Gradients::new();
    /// let mut ready = Vec::new();
    /// tape.backward_with(loss, &mut grads, |id, grad| ready.push((id, grad.to_array())))?;
    /// // The last layer's gradient is final first; the frozen weight gets none.
    /// assert_eq!(ready.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [w2, w1]);
    /// for (id, grad) in &ready {
    ///     assert_eq!(grads.get(*id).unwrap().to_array(), *grad);
    /// }
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Tape::backward`]; `on_ready` is not called then.
    pub fn backward_with(
        &self,
        loss: Var<'_>,
        grads: &mut Gradients,
        mut on_ready: impl FnMut(ParamId, &Storage),
    ) -> Result<()> {
        self.check_loss(loss)?;
        grads.reset(self.params.len());
        let mut ws = self.ws.borrow_mut();
        backward::run(&mut ws, self.params, loss.id, grads, Some(&mut on_ready));
        Ok(())
    }

    /// Refuses a backward pass from `loss` on this tape: not recording, another tape's value, not a scalar.
    fn check_loss(&self, loss: Var<'_>) -> Result<()> {
        if !self.recording {
            return Err(Error::NotReady("backward on an inference tape: create it with Tape::new".into()));
        }
        if !std::ptr::eq(loss.tape as *const Tape<'_> as *const u8, self as *const Tape<'_> as *const u8) {
            return Err(Error::NotReady("backward of a value from another tape".into()));
        }
        let size = loss.with_value(|v| v.len());
        if size != 1 {
            return Err(Error::shape(
                "backward",
                "a scalar loss (one element)",
                format!("{:?}", loss.shape()),
            ));
        }
        Ok(())
    }
}

/// Read access to the values recorded so far.
pub(crate) struct Values<'w> {
    params: &'w ParamStore,
    nodes: &'w [Node],
    values: &'w [Storage],
}

impl<'w> Values<'w> {
    /// The value of node `id`, where it lives.
    pub(crate) fn get(&self, id: usize) -> &'w Storage {
        match self.nodes[id].kind {
            NodeKind::Param(p) => self.params.value(p),
            _ => &self.values[id],
        }
    }
}

impl<'t> Var<'t> {
    /// The tape this value is on.
    pub fn tape(&self) -> &'t Tape<'t> {
        self.tape
    }

    /// The node's position on its tape.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Calls `f` with a view of the value.
    pub fn with_value<R>(&self, f: impl FnOnce(ArrayViewD<'_, f32>) -> R) -> R {
        let ws = self.tape.ws.borrow();
        // The edge to the host: borrowed on the CPU, a copy from another device.
        let host =
            Values { params: self.tape.params, nodes: &ws.nodes, values: &ws.values }.get(self.id).host();
        f(host.view())
    }

    /// Calls `f` with views of several values of one tape at once (a model's outputs and targets).
    ///
    /// # Panics
    /// If the values are on different tapes.
    pub fn with_values<R>(vars: &[Var<'t>], f: impl FnOnce(&[ArrayViewD<'_, f32>]) -> R) -> R {
        let Some(first) = vars.first() else { return f(&[]) };
        assert!(vars.iter().all(|v| std::ptr::eq(v.tape, first.tape)), "values of different tapes");
        let ws = first.tape.ws.borrow();
        let values = Values { params: first.tape.params, nodes: &ws.nodes, values: &ws.values };
        let hosts: Vec<_> = vars.iter().map(|v| values.get(v.id).host()).collect();
        let views: Vec<ArrayViewD<'_, f32>> = hosts.iter().map(|h| h.view()).collect();
        f(&views)
    }

    /// A copy of the value.
    pub fn value(&self) -> Tensor {
        self.with_value(|v| v.to_owned())
    }

    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.with_value(|v| v.shape().to_vec())
    }

    /// The single element of a one-element value (e.g. a loss).
    ///
    /// # Panics
    /// If the value does not have exactly one element.
    pub fn item(&self) -> f32 {
        self.with_value(|v| {
            assert_eq!(v.len(), 1, "item() of a value of shape {:?}", v.shape());
            v.iter().copied().next().unwrap_or(f32::NAN)
        })
    }

    /// Whether a gradient flows back through this value.
    pub fn requires_grad(&self) -> bool {
        self.tape.ws.borrow().nodes[self.id].requires_grad
    }
}
