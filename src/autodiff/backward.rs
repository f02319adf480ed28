//! Every derivative rule of the engine, in one `match`.
//!
//! A rule receives the gradient `g` of a node's output and adds its contribution to each input's gradient
//! buffer. Buffers are written, not allocated: the first contribution to a buffer in a pass either overwrites it
//! (matmul, with `beta = 0`) or zero-fills it first ([`Sink::zeroed`]); later ones add.
use ndarray::{ArrayViewD, ArrayViewMut2, Axis, Ix2, Ix3, Zip};

use super::ops::{rows_of, rows_of_mut, AxisSet, Binary, CustomOp, Perm};
use super::unary::{sigmoid, Unary};
use super::{empty, fit_buffer, Gradients, Node, ParamId, ParamStore, Tensor, Values, Workspace};

/// What produced a node, with the ids of its inputs.
pub(crate) enum Op {
    /// A constant: no gradient.
    Input,
    /// A parameter from the store.
    Param(ParamId),
    Unary(usize, Unary),
    /// Element-wise with numpy broadcasting.
    Binary(usize, usize, Binary),
    /// 2-D, batched 3-D, or batched 3-D times a shared 2-D matrix.
    MatMul(usize, usize),
    Sum(usize, AxisSet),
    Mean(usize, AxisSet),
    Reshape(usize),
    Permute(usize, Perm),
    Softmax(usize, usize),
    LogSoftmax(usize, usize),
    /// Per-row cross-entropy of softmax(logits) against target distributions over the last axis. The auxiliary
    /// buffer holds each row's log-sum-exp.
    SoftmaxCrossEntropy {
        logits: usize,
        targets: usize,
    },
    /// Same with integer class indices (stored as `f32`) instead of distributions.
    SparseSoftmaxCrossEntropy {
        logits: usize,
        labels: usize,
    },
    /// Element-wise binary cross-entropy of sigmoid(logits) against targets.
    SigmoidCrossEntropy {
        logits: usize,
        targets: usize,
    },
    Custom(Vec<usize>, Box<dyn CustomOp>),
    /// An operation that keeps its forward, backward and tests in one file of `ops/` (see [`Kernel`]).
    Kernel(Box<dyn Kernel>),
    /// `act(x · w + b)` on 2-D `x`: Dense's hot path in one node. The auxiliary buffer holds `x · w + b` when
    /// the activation's derivative needs its input.
    Dense {
        x: usize,
        w: usize,
        b: Option<usize>,
        act: Option<Unary>,
    },
}

impl Op {
    /// Whether any input satisfies `pred`.
    pub(crate) fn any_input(&self, mut pred: impl FnMut(usize) -> bool) -> bool {
        match *self {
            Op::Input | Op::Param(_) => false,
            Op::Unary(a, _)
            | Op::Sum(a, _)
            | Op::Mean(a, _)
            | Op::Reshape(a)
            | Op::Permute(a, _)
            | Op::Softmax(a, _)
            | Op::LogSoftmax(a, _) => pred(a),
            Op::Binary(a, b, _)
            | Op::MatMul(a, b)
            | Op::SoftmaxCrossEntropy { logits: a, targets: b }
            | Op::SparseSoftmaxCrossEntropy { logits: a, labels: b }
            | Op::SigmoidCrossEntropy { logits: a, targets: b } => pred(a) || pred(b),
            Op::Custom(ref inputs, _) => inputs.iter().any(|&i| pred(i)),
            Op::Kernel(ref k) => k.inputs().iter().any(|&i| pred(i)),
            Op::Dense { x, w, b, .. } => pred(x) || pred(w) || b.is_some_and(&mut pred),
        }
    }
}

/// Where gradients go: node buffers, or the [`Gradients`] store for parameter nodes (written straight there, so
/// a parameter's gradient is never copied).
struct Sink<'w> {
    nodes: &'w [Node],
    node_grads: &'w mut [Tensor],
    grad_set: &'w mut [bool],
    param_grads: &'w mut Gradients,
}

impl Sink<'_> {
    /// The gradient buffer of node `id` (of `shape`) and whether this is its first contribution (content stale);
    /// `None` if no gradient flows to it.
    fn target(&mut self, id: usize, shape: &[usize]) -> Option<(&mut Tensor, bool)> {
        let node = &self.nodes[id];
        if !node.requires_grad {
            return None;
        }
        let (buf, set) = match node.op {
            Op::Param(p) => {
                (&mut self.param_grads.grads[p.index()], &mut self.param_grads.present[p.index()])
            }
            _ => (&mut self.node_grads[id], &mut self.grad_set[id]),
        };
        let fresh = !*set;
        *set = true;
        if fresh {
            fit_buffer(buf, shape);
        }
        Some((buf, fresh))
    }

    /// Like [`Sink::target`], zero-filled on first use, for rules that accumulate with `+=`.
    fn zeroed(&mut self, id: usize, shape: &[usize]) -> Option<&mut Tensor> {
        let (buf, fresh) = self.target(id, shape)?;
        if fresh {
            buf.fill(0.0);
        }
        Some(buf)
    }
}

/// An operation written in one place: its `Var` method records the node and computes the value, and this
/// trait gives its derivative. `ops/conv2d.rs` is the model to copy when adding one.
pub(crate) trait Kernel: Send + Sync {
    /// The nodes the operation reads, in the order its rule knows them.
    fn inputs(&self) -> &[usize];

    /// Adds the gradient of every input that wants one, given `g`, the gradient of the output. `g` is the
    /// node's own buffer, needed by no one else: a rule may overwrite it (e.g. with `g * act'(y)`).
    fn backward(&self, g: &mut Tensor, ctx: &mut BackwardCtx<'_, '_>);
}

/// What a [`Kernel`]'s backward rule reads and writes: recorded values, the node's auxiliary buffer (its own
/// to reuse as scratch), and the gradient buffers of its inputs.
pub(crate) struct BackwardCtx<'a, 'w> {
    vals: &'a Values<'w>,
    id: usize,
    /// The auxiliary buffer the forward pass filled; free for reuse once the rule has read it.
    pub(crate) aux: &'a mut Tensor,
    sink: &'a mut Sink<'w>,
}

impl<'w> BackwardCtx<'_, 'w> {
    /// The recorded value of node `id`.
    pub(crate) fn value(&self, id: usize) -> ArrayViewD<'w, f32> {
        self.vals.get(id)
    }

    /// The node's own output.
    pub(crate) fn output(&self) -> ArrayViewD<'w, f32> {
        self.vals.get(self.id)
    }

    /// Whether a gradient flows to input `id` (without claiming its buffer, as [`BackwardCtx::grad`] does).
    pub(crate) fn wants(&self, id: usize) -> bool {
        self.sink.nodes[id].requires_grad
    }

    /// The gradient buffer of input `id` (of `shape`) and whether this is its first contribution (then its
    /// content is stale and must be overwritten, not added to); `None` if no gradient flows there.
    pub(crate) fn grad(&mut self, id: usize, shape: &[usize]) -> Option<(&mut Tensor, bool)> {
        self.sink.target(id, shape)
    }
}

/// `g *= act'(z)` in place, with `y = act(z)`: the fused Dense rule turns the output gradient into the
/// pre-activation gradient with it. `z` is only read by activations whose derivative needs it.
fn scale_by_derivative(g: &mut Tensor, f: Unary, z: ArrayViewD<'_, f32>, y: ArrayViewD<'_, f32>) {
    fn scale(g: &mut Tensor, z: ArrayViewD<'_, f32>, y: ArrayViewD<'_, f32>, df: impl Fn(f32, f32) -> f32) {
        Zip::from(g).and(&z).and(&y).for_each(|g, &z, &y| *g *= df(z, y));
    }
    match f {
        Unary::Relu => scale(g, z, y, |z, y| Unary::Relu.df(z, y)),
        Unary::Sigmoid => scale(g, z, y, |z, y| Unary::Sigmoid.df(z, y)),
        Unary::Tanh => scale(g, z, y, |z, y| Unary::Tanh.df(z, y)),
        other => scale(g, z, y, move |z, y| other.df(z, y)),
    }
}

/// Runs the backward pass from the scalar node `loss`.
pub(super) fn run(ws: &mut Workspace, params: &ParamStore, loss: usize, grads: &mut Gradients) {
    let Workspace { nodes, values, aux, grads: node_grads, grad_set } = ws;
    let n = nodes.len();
    if node_grads.len() < n {
        node_grads.resize_with(n, empty);
    }
    grad_set.clear();
    grad_set.resize(n, false);
    let vals = Values { params, nodes, values };
    let mut sink = Sink { nodes, node_grads, grad_set, param_grads: grads };
    if let Some(seed) = sink.zeroed(loss, vals.get(loss).shape()) {
        seed.fill(1.0);
    }
    for id in (0..=loss).rev() {
        if !sink.grad_set[id] || matches!(nodes[id].op, Op::Param(_) | Op::Input) {
            continue;
        }
        let mut g = std::mem::replace(&mut sink.node_grads[id], empty());
        match nodes[id].op {
            // The node's gradient is needed by no one else, so the fused rule reuses it in place.
            Op::Dense { x, w, b, act } => dense(x, w, b, act, id, &mut g, &vals, &aux[id], &mut sink),
            Op::Kernel(ref k) => {
                k.backward(&mut g, &mut BackwardCtx { vals: &vals, id, aux: &mut aux[id], sink: &mut sink })
            }
            ref op => apply(op, id, g.view(), &vals, &aux[id], &mut sink),
        }
        sink.node_grads[id] = g;
    }
}

/// Adds `src`, summed over the axes it was broadcast along, into `dst` (numpy's rule: leading axes, and axes
/// where `dst` has length 1).
fn add_unbroadcast(dst: &mut Tensor, src: ArrayViewD<'_, f32>, scale: f32) {
    if dst.shape() == src.shape() {
        Zip::from(dst).and(&src).for_each(|d, &s| *d += scale * s);
        return;
    }
    let lead = src.ndim() - dst.ndim();
    // The bias pattern, (batch, n) into (n): add the rows, no temporary.
    if lead == 1 && src.ndim() == 2 {
        for row in src.rows() {
            Zip::from(&mut *dst).and(&row.into_dyn()).for_each(|d, &s| *d += scale * s);
        }
        return;
    }
    let mut reduced = src.to_owned();
    for _ in 0..lead {
        reduced = reduced.sum_axis(Axis(0));
    }
    for (ax, &len) in dst.shape().iter().enumerate() {
        if len == 1 && reduced.shape()[ax] != 1 {
            reduced = reduced.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    Zip::from(dst).and(&reduced).for_each(|d, &s| *d += scale * s);
}

/// `dst = a · b` (`fresh`) or `dst += a · b`, on 2-D views.
fn gemm_into(
    dst: &mut ArrayViewMut2<'_, f32>,
    a: &ndarray::ArrayView2<'_, f32>,
    b: &ndarray::ArrayView2<'_, f32>,
    fresh: bool,
) {
    super::gemm::gemm(1.0, a, b, if fresh { 0.0 } else { 1.0 }, dst);
}

fn as2(v: ArrayViewD<'_, f32>) -> ndarray::ArrayView2<'_, f32> {
    v.into_dimensionality::<Ix2>().expect("recorded as 2-D")
}

fn as3(v: ArrayViewD<'_, f32>) -> ndarray::ArrayView3<'_, f32> {
    v.into_dimensionality::<Ix3>().expect("recorded as 3-D")
}

/// Writes (`fresh`: the buffer's content is stale) or adds `g * df(x, y)` into `dst`, with the rule specialised
/// for the hot activations.
fn unary_grad(
    f: Unary,
    dst: &mut Tensor,
    fresh: bool,
    x: ArrayViewD<'_, f32>,
    y: ArrayViewD<'_, f32>,
    g: ArrayViewD<'_, f32>,
) {
    fn run(
        dst: &mut Tensor,
        fresh: bool,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        g: ArrayViewD<'_, f32>,
        df: impl Fn(f32, f32) -> f32,
    ) {
        let zip = Zip::from(dst).and(&x).and(&y).and(&g);
        if fresh {
            zip.for_each(|d, &x, &y, &g| *d = g * df(x, y));
        } else {
            zip.for_each(|d, &x, &y, &g| *d += g * df(x, y));
        }
    }
    match f {
        Unary::Relu => run(dst, fresh, x, y, g, |x, y| Unary::Relu.df(x, y)),
        Unary::Sigmoid => run(dst, fresh, x, y, g, |x, y| Unary::Sigmoid.df(x, y)),
        Unary::Tanh => run(dst, fresh, x, y, g, |x, y| Unary::Tanh.df(x, y)),
        other => run(dst, fresh, x, y, g, move |x, y| other.df(x, y)),
    }
}

/// The fused Dense rule: `g` becomes `dz = g * act'(z)` in place; then `db` is its column sums, `dw = xᵀ · dz`
/// and `dx = dz · wᵀ`, each only where a gradient is wanted.
#[allow(clippy::too_many_arguments)]
fn dense(
    x: usize,
    w: usize,
    b: Option<usize>,
    act: Option<Unary>,
    id: usize,
    g: &mut Tensor,
    vals: &Values<'_>,
    aux: &Tensor,
    sink: &mut Sink<'_>,
) {
    if let Some(f) = act {
        let y = vals.get(id);
        // z is kept only for activations whose derivative needs it; the others read y.
        let z = if f.df_uses_output_only() { vals.get(id) } else { aux.view() };
        scale_by_derivative(g, f, z, y);
    }
    let dz = as2(g.view());
    if let Some(b) = b {
        let n = dz.ncols();
        if let Some((d, fresh)) = sink.target(b, &[n]) {
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
    let (xv, wv) = (vals.get(x), vals.get(w));
    if let Some((d, fresh)) = sink.target(w, wv.shape()) {
        gemm_into(&mut d.view_mut().into_dimensionality().expect("2-D"), &as2(xv.view()).t(), &dz, fresh);
    }
    if let Some((d, fresh)) = sink.target(x, xv.shape()) {
        gemm_into(&mut d.view_mut().into_dimensionality().expect("2-D"), &dz, &as2(wv).t(), fresh);
    }
}

fn apply(op: &Op, id: usize, g: ArrayViewD<'_, f32>, vals: &Values<'_>, aux: &Tensor, sink: &mut Sink<'_>) {
    match *op {
        Op::Input | Op::Param(_) => {}
        Op::Dense { .. } | Op::Kernel(_) => unreachable!("in-place rules run from run()"),
        Op::Unary(a, f) => {
            let x = vals.get(a);
            // Written, not zero-filled and added, on the first contribution: one pass fewer.
            if let Some((d, fresh)) = sink.target(a, x.shape()) {
                unary_grad(f, d, fresh, x, vals.get(id), g);
            }
        }
        Op::Binary(a, b, kind) => {
            let (av, bv) = (vals.get(a), vals.get(b));
            for (side, target, shape) in [(0, a, av.shape()), (1, b, bv.shape())] {
                let Some((d, fresh)) = sink.target(target, shape) else { continue };
                let sign = if kind == Binary::Sub && side == 1 { -1.0 } else { 1.0 };
                match kind {
                    // d(a±b) is ±g: on a first contribution of g's shape, a copy (no zero-fill pass).
                    Binary::Add | Binary::Sub if fresh && d.shape() == g.shape() => {
                        Zip::from(d).and(&g).for_each(|d, &g| *d = sign * g);
                    }
                    // Otherwise summed straight into the target.
                    Binary::Add | Binary::Sub => {
                        if fresh {
                            d.fill(0.0);
                        }
                        add_unbroadcast(d, g.view(), sign);
                    }
                    _ => {
                        if fresh {
                            d.fill(0.0);
                        }
                        let partial = |x: f32, y: f32| kind.partial(side, x, y);
                        if d.shape() == g.shape() {
                            Zip::from(&mut *d)
                                .and(&g)
                                .and_broadcast(&av)
                                .and_broadcast(&bv)
                                .for_each(|d, &g, &x, &y| *d += g * partial(x, y));
                        } else {
                            let mut full = g.to_owned();
                            Zip::from(&mut full)
                                .and_broadcast(&av)
                                .and_broadcast(&bv)
                                .for_each(|g, &x, &y| *g *= partial(x, y));
                            add_unbroadcast(d, full.view(), 1.0);
                        }
                    }
                }
            }
        }
        Op::MatMul(a, b) => {
            let (av, bv) = (vals.get(a), vals.get(b));
            if let Some((d, fresh)) = sink.target(a, av.shape()) {
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
            if let Some((d, fresh)) = sink.target(b, bv.shape()) {
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
        Op::Sum(a, ref axes) | Op::Mean(a, ref axes) => {
            let x = vals.get(a);
            let kept = axes.kept_shape(x.shape());
            let scale = match *op {
                Op::Mean(..) => 1.0 / axes.count(x.shape()) as f32,
                _ => 1.0,
            };
            if let Some((d, fresh)) = sink.target(a, x.shape()) {
                let gk = g.to_shape(kept).expect("gradient has the reduced shape");
                if fresh {
                    Zip::from(d).and_broadcast(&gk).for_each(|d, &g| *d = scale * g);
                } else {
                    Zip::from(d).and_broadcast(&gk).for_each(|d, &g| *d += scale * g);
                }
            }
        }
        Op::Reshape(a) => {
            let x = vals.get(a);
            if let Some(d) = sink.zeroed(a, x.shape()) {
                let gr = g.to_shape(x.shape()).expect("same number of elements");
                Zip::from(d).and(&gr).for_each(|d, &g| *d += g);
            }
        }
        Op::Permute(a, perm) => {
            let x = vals.get(a);
            if let Some(d) = sink.zeroed(a, x.shape()) {
                let gp = g.view().permuted_axes(perm.inverse().as_slice());
                Zip::from(d).and(&gp).for_each(|d, &g| *d += g);
            }
        }
        Op::Softmax(a, axis) => {
            let y = vals.get(id);
            if let Some(d) = sink.zeroed(a, y.shape()) {
                Zip::from(d.lanes_mut(Axis(axis)))
                    .and(y.lanes(Axis(axis)))
                    .and(g.lanes(Axis(axis)))
                    .for_each(|mut d, y, g| {
                        let dot: f32 = y.iter().zip(&g).map(|(y, g)| y * g).sum();
                        Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += y * (g - dot));
                    });
            }
        }
        Op::LogSoftmax(a, axis) => {
            let y = vals.get(id);
            if let Some(d) = sink.zeroed(a, y.shape()) {
                Zip::from(d.lanes_mut(Axis(axis)))
                    .and(y.lanes(Axis(axis)))
                    .and(g.lanes(Axis(axis)))
                    .for_each(|mut d, y, g| {
                        let total: f32 = g.sum();
                        Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += g - y.exp() * total);
                    });
            }
        }
        Op::SoftmaxCrossEntropy { logits, targets } => {
            let (x, t) = (vals.get(logits), vals.get(targets));
            let last = Axis(x.ndim() - 1);
            let g_rows = g.iter();
            let lse = aux.iter();
            // The hot path (the tutorial's loss): contiguous rows, written on first contribution.
            if !sink.nodes[targets].requires_grad {
                if let (Some(xs), Some(ts), Some((d, fresh))) =
                    (rows_of(&x), rows_of(&t), sink.target(logits, x.shape()))
                {
                    if let Some(ds) = rows_of_mut(d) {
                        for (((d, x), t), (&g, &lse)) in ds.zip(xs).zip(ts).zip(g_rows.zip(lse)) {
                            let mass: f32 = t.iter().sum();
                            for ((d, &x), &t) in d.iter_mut().zip(x).zip(t) {
                                let v = g * ((x - lse).exp() * mass - t);
                                *d = if fresh { v } else { *d + v };
                            }
                        }
                        return;
                    }
                }
            }
            if let Some(d) = sink.zeroed(logits, x.shape()) {
                for (((mut d, x), t), (&g, &lse)) in d
                    .lanes_mut(last)
                    .into_iter()
                    .zip(x.lanes(last))
                    .zip(t.lanes(last))
                    .zip(g_rows.clone().zip(lse.clone()))
                {
                    let mass: f32 = t.sum();
                    Zip::from(&mut d)
                        .and(&x)
                        .and(&t)
                        .for_each(|d, &x, &t| *d += g * ((x - lse).exp() * mass - t));
                }
            }
            if let Some(d) = sink.zeroed(targets, t.shape()) {
                for ((mut d, x), (&g, &lse)) in
                    d.lanes_mut(last).into_iter().zip(x.lanes(last)).zip(g_rows.zip(lse))
                {
                    Zip::from(&mut d).and(&x).for_each(|d, &x| *d -= g * (x - lse));
                }
            }
        }
        Op::SparseSoftmaxCrossEntropy { logits, labels } => {
            let (x, l) = (vals.get(logits), vals.get(labels));
            let last = Axis(x.ndim() - 1);
            if let Some(d) = sink.zeroed(logits, x.shape()) {
                for ((mut d, x), ((&g, &lse), &label)) in d
                    .lanes_mut(last)
                    .into_iter()
                    .zip(x.lanes(last))
                    .zip(g.iter().zip(aux.iter()).zip(l.iter()))
                {
                    Zip::from(&mut d).and(&x).for_each(|d, &x| *d += g * (x - lse).exp());
                    d[label as usize] -= g;
                }
            }
        }
        Op::SigmoidCrossEntropy { logits, targets } => {
            let (x, t) = (vals.get(logits), vals.get(targets));
            if let Some(d) = sink.zeroed(logits, x.shape()) {
                Zip::from(d).and(&x).and(&t).and(&g).for_each(|d, &x, &t, &g| *d += g * (sigmoid(x) - t));
            }
            if let Some(d) = sink.zeroed(targets, t.shape()) {
                Zip::from(d).and(&x).and(&g).for_each(|d, &x, &g| *d -= g * x);
            }
        }
        Op::Custom(ref inputs, ref custom) => {
            let views: Vec<_> = inputs.iter().map(|&i| vals.get(i)).collect();
            let contributions = custom.backward(&views, vals.get(id), g.view());
            // A short list would silently drop gradients.
            assert_eq!(
                contributions.len(),
                inputs.len(),
                "CustomOp::backward returned {} gradients for {} inputs",
                contributions.len(),
                inputs.len()
            );
            for ((&input, view), contribution) in inputs.iter().zip(&views).zip(contributions) {
                if let Some(d) = sink.zeroed(input, view.shape()) {
                    add_unbroadcast(d, contribution.view(), 1.0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, ArrayD, IxDyn};

    #[test]
    fn add_unbroadcast_sums_over_broadcast_axes() {
        let src = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32);
        // Same shape: scaled copy added.
        let mut d = ArrayD::from_elem(IxDyn(&[2, 3, 4]), 1.0f32);
        add_unbroadcast(&mut d, src.view(), -1.0);
        assert_eq!(d, src.mapv(|s| 1.0 - s));
        // Leading axes and kept length-1 axes.
        for (shape, want) in [
            (vec![4], src.sum_axis(Axis(0)).sum_axis(Axis(0))),
            (vec![3, 1], src.sum_axis(Axis(0)).sum_axis(Axis(1)).insert_axis(Axis(1))),
            (vec![2, 1, 4], src.sum_axis(Axis(1)).insert_axis(Axis(1))),
            (vec![], ArrayD::from_elem(IxDyn(&[]), src.sum())),
        ] {
            let mut d = ArrayD::zeros(IxDyn(&shape));
            add_unbroadcast(&mut d, src.view(), 2.0);
            assert_eq!(d, want.mapv(|w| 2.0 * w), "into {shape:?}");
        }
        // The bias path, (batch, n) into (n), accumulates onto what is there.
        let g = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn();
        let mut d = array![10.0f32, 20.0].into_dyn();
        add_unbroadcast(&mut d, g.view(), 0.5);
        assert_eq!(d, array![14.5f32, 26.0].into_dyn());
    }

    #[test]
    fn unary_derivatives_match_f64_differences_of_f() {
        use crate::autodiff::unary::Unary::*;
        let fs = [
            Neg,
            Exp,
            Log,
            Sqrt,
            Square,
            Abs,
            Pow(2.5),
            AddScalar(0.5),
            MulScalar(-3.0),
            Clip(-1.0, 1.5),
            Relu,
            LeakyRelu(0.3),
            Elu(0.7),
            Selu,
            Sigmoid,
            Tanh,
            Softplus,
            Softsign,
            Gelu,
            Swish,
        ];
        for f in fs {
            for x in [-2.3f32, -0.7, 0.4, 1.2, 2.9] {
                if matches!(f, Log | Sqrt | Pow(_)) && x <= 0.0 {
                    continue;
                }
                let h = 1e-2f32;
                let numeric = (f64::from(f.f(x + h)) - f64::from(f.f(x - h))) / f64::from(2.0 * h);
                let analytic = f64::from(f.df(x, f.f(x)));
                assert!(
                    (numeric - analytic).abs() <= 2e-3 * (1.0 + analytic.abs()),
                    "{f:?} at {x}: df {analytic}, differences {numeric}"
                );
            }
        }
    }
}
