//! The operations on [`Var`]: each records a node and computes its value. Their derivatives are in `backward`.
//!
//! Shapes are a programming matter here, as in ndarray: an operation on incompatible shapes panics with a message
//! naming both. Models validate shapes once, when they are built, so the training loop never hits these panics;
//! a custom layer that does the same needs no `?` on every operation.
mod batch_norm;
mod concat;
mod conv2d;
mod pool2d;
mod window;

pub use batch_norm::BatchStatistics;
pub use conv2d::Conv2dOptions;
pub use window::Padding;
pub(crate) use window::{window_output, WindowFault};

use super::gemm::gemm;
use ndarray::{ArrayViewD, Axis, Ix2, Ix3, IxDyn, Zip};

use super::backward::Op;
use super::unary::Unary;
use super::{Tape, Tensor, Var};

/// Element-wise binary operations with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl Binary {
    #[inline]
    fn f(self, x: f32, y: f32) -> f32 {
        match self {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
            Binary::Maximum => nan_max(x, y),
            Binary::Minimum => nan_min(x, y),
        }
    }

    /// The partial derivative with respect to the left (`side == 0`) or right operand. Ties of maximum and
    /// minimum send the gradient to the left operand.
    #[inline]
    pub(crate) fn partial(self, side: usize, x: f32, y: f32) -> f32 {
        let left = side == 0;
        match self {
            Binary::Add => 1.0,
            Binary::Sub => {
                if left {
                    1.0
                } else {
                    -1.0
                }
            }
            Binary::Mul => {
                if left {
                    y
                } else {
                    x
                }
            }
            Binary::Div => {
                if left {
                    1.0 / y
                } else {
                    -x / (y * y)
                }
            }
            Binary::Maximum => f32::from(if left { x >= y } else { y > x }),
            Binary::Minimum => f32::from(if left { x <= y } else { y < x }),
        }
    }
}

/// A set of axes to reduce over: a bit mask for values of up to 64 dimensions (every model's, in practice:
/// no allocation), one flag per axis beyond that, so that any rank ndarray holds reduces correctly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AxisSet {
    /// Axis `i` is reduced if bit `i` is set; for `ndim <= 64`.
    Bits(u64),
    /// Axis `i` is reduced if flag `i` is set; for `ndim > 64`.
    Flags(Box<[bool]>),
}

impl AxisSet {
    fn new(axes: &[usize], ndim: usize) -> Self {
        for &ax in axes {
            assert!(ax < ndim, "axis {ax} is out of range for a value with {ndim} dimensions");
        }
        if ndim <= 64 {
            AxisSet::Bits(axes.iter().fold(0, |mask, &ax| mask | 1 << ax))
        } else {
            let mut flags = vec![false; ndim];
            axes.iter().for_each(|&ax| flags[ax] = true);
            AxisSet::Flags(flags.into())
        }
    }

    fn all(ndim: usize) -> Self {
        match ndim {
            64 => AxisSet::Bits(u64::MAX),
            0..64 => AxisSet::Bits((1 << ndim) - 1),
            _ => AxisSet::Flags(vec![true; ndim].into()),
        }
    }

    fn contains(&self, ax: usize) -> bool {
        match self {
            AxisSet::Bits(mask) => ax < 64 && mask & (1 << ax) != 0,
            AxisSet::Flags(flags) => flags.get(ax).copied().unwrap_or(false),
        }
    }

    /// The input shape with reduced axes set to 1.
    pub(crate) fn kept_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().enumerate().map(|(ax, &n)| if self.contains(ax) { 1 } else { n }).collect()
    }

    /// How many elements each output element sums.
    pub(crate) fn count(&self, shape: &[usize]) -> usize {
        shape.iter().enumerate().filter(|&(ax, _)| self.contains(ax)).map(|(_, &n)| n).product()
    }

    fn output_shape(&self, shape: &[usize], keepdims: bool) -> Vec<usize> {
        if keepdims {
            self.kept_shape(shape)
        } else {
            shape.iter().enumerate().filter(|&(ax, _)| !self.contains(ax)).map(|(_, &n)| n).collect()
        }
    }
}

/// An axis permutation of at most 8 dimensions, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Perm {
    axes: [usize; 8],
    len: usize,
}

impl Perm {
    fn new(axes: &[usize]) -> Self {
        assert!(axes.len() <= 8, "permute supports at most 8 dimensions, got {}", axes.len());
        let mut seen = [false; 8];
        for &a in axes {
            assert!(a < axes.len() && !seen[a], "{axes:?} is not a permutation of 0..{}", axes.len());
            seen[a] = true;
        }
        let mut p = Perm { axes: [0; 8], len: axes.len() };
        p.axes[..axes.len()].copy_from_slice(axes);
        p
    }

    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.axes[..self.len]
    }

    pub(crate) fn inverse(self) -> Self {
        let mut inv = Perm { axes: [0; 8], len: self.len };
        for (i, &a) in self.as_slice().iter().enumerate() {
            inv.axes[a] = i;
        }
        inv
    }
}

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

/// numpy's broadcast of two shapes. `what` names the operation in the panic message (formatted only then).
fn broadcast_shape(a: &[usize], b: &[usize], what: impl std::fmt::Debug) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => panic!("{what:?}: shapes {a:?} and {b:?} cannot be broadcast together"),
            }
        })
        .collect()
}

fn last_axis_rows(shape: &[usize], what: &str) -> Vec<usize> {
    assert!(!shape.is_empty(), "{what} needs at least one axis (the classes), got a scalar");
    shape[..shape.len() - 1].to_vec()
}

impl<'t> Tape<'t> {
    /// Records a [`CustomOp`] applied to `inputs`.
    pub fn custom(&'t self, inputs: &[Var<'t>], op: impl CustomOp + 'static) -> Var<'t> {
        let result = {
            let ws = self.ws.borrow();
            let vals = super::Values { params: self.params, nodes: &ws.nodes, values: &ws.values };
            let views: Vec<_> = inputs.iter().map(|v| vals.get(v.id)).collect();
            op.forward(&views)
        };
        let ids = inputs.iter().map(|v| v.id).collect();
        let shape = result.shape().to_vec();
        self.push(Op::Custom(ids, Box::new(op)), &shape, move |_, out, _| *out = result)
    }
}

impl<'t> Var<'t> {
    /// A user's element-wise activation ([`crate::activations::Activation::custom`]).
    pub(crate) fn custom_elementwise(self, c: crate::activations::CustomActivation) -> Var<'t> {
        self.unary(Unary::Custom(c))
    }

    fn unary(self, f: Unary) -> Var<'t> {
        let shape = self.shape();
        self.tape.push(Op::Unary(self.id, f), &shape, |v, out, _| {
            let x = v.get(self.id);
            fn run(out: &mut Tensor, x: ArrayViewD<'_, f32>, f: impl Fn(f32) -> f32) {
                Zip::from(out).and(&x).for_each(|o, &x| *o = f(x));
            }
            // Specialised loops for the hot activations; the rest share one.
            match f {
                Unary::Relu => run(out, x, |x| Unary::Relu.f(x)),
                Unary::Sigmoid => run(out, x, |x| Unary::Sigmoid.f(x)),
                Unary::Tanh => run(out, x, |x| Unary::Tanh.f(x)),
                other => run(out, x, move |x| other.f(x)),
            }
        })
    }

    fn binary(self, other: Var<'t>, kind: Binary) -> Var<'t> {
        let shape = broadcast_shape(&self.shape(), &other.shape(), kind);
        self.tape.push(Op::Binary(self.id, other.id, kind), &shape, |v, out, _| {
            let (a, b) = (v.get(self.id), v.get(other.id));
            fn run(
                out: &mut Tensor,
                a: &ArrayViewD<'_, f32>,
                b: &ArrayViewD<'_, f32>,
                f: impl Fn(f32, f32) -> f32,
            ) {
                Zip::from(out).and_broadcast(a).and_broadcast(b).for_each(|o, &x, &y| *o = f(x, y));
            }
            match kind {
                Binary::Add => run(out, &a, &b, |x, y| x + y),
                Binary::Mul => run(out, &a, &b, |x, y| x * y),
                other => run(out, &a, &b, move |x, y| other.f(x, y)),
            }
        })
    }

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
        self.tape.push(Op::MatMul(self.id, other.id), &shape, |v, out, _| {
            let (a, b) = (v.get(self.id), v.get(other.id));
            match (a.ndim(), b.ndim()) {
                (2, 2) => {
                    let (a, b) =
                        (a.into_dimensionality::<Ix2>().unwrap(), b.into_dimensionality::<Ix2>().unwrap());
                    gemm(1.0, &a, &b, 0.0, &mut out.view_mut().into_dimensionality::<Ix2>().unwrap());
                }
                _ => {
                    let a = a.into_dimensionality::<Ix3>().unwrap();
                    let mut o = out.view_mut().into_dimensionality::<Ix3>().unwrap();
                    for i in 0..a.len_of(Axis(0)) {
                        let bi = if b.ndim() == 3 {
                            b.view().into_dimensionality::<Ix3>().unwrap().index_axis_move(Axis(0), i)
                        } else {
                            b.view().into_dimensionality::<Ix2>().unwrap()
                        };
                        gemm(1.0, &a.index_axis(Axis(0), i), &bi, 0.0, &mut o.index_axis_mut(Axis(0), i));
                    }
                }
            }
        })
    }

    /// `self + other`, broadcasting.
    #[allow(clippy::should_implement_trait)] // the operator is implemented too; the method reads better in chains
    pub fn add(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Add)
    }
    /// `self - other`, broadcasting.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Sub)
    }
    /// `self * other` element-wise, broadcasting.
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Mul)
    }
    /// `self / other` element-wise, broadcasting.
    #[allow(clippy::should_implement_trait)]
    pub fn div(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Div)
    }
    /// Element-wise maximum, broadcasting (ties send the gradient to `self`).
    pub fn maximum(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Maximum)
    }
    /// Element-wise minimum, broadcasting (ties send the gradient to `self`).
    pub fn minimum(self, other: Var<'t>) -> Var<'t> {
        self.binary(other, Binary::Minimum)
    }

    /// `self + s`.
    pub fn add_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::AddScalar(s))
    }
    /// `self - s`.
    pub fn sub_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::AddScalar(-s))
    }
    /// `self * s`.
    pub fn mul_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::MulScalar(s))
    }
    /// `self / s`.
    pub fn div_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::MulScalar(1.0 / s))
    }
    /// `-self`.
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Var<'t> {
        self.unary(Unary::Neg)
    }
    /// `e^self`.
    pub fn exp(self) -> Var<'t> {
        self.unary(Unary::Exp)
    }
    /// Natural logarithm.
    pub fn log(self) -> Var<'t> {
        self.unary(Unary::Log)
    }
    /// Square root.
    pub fn sqrt(self) -> Var<'t> {
        self.unary(Unary::Sqrt)
    }
    /// `self^2`.
    pub fn square(self) -> Var<'t> {
        self.unary(Unary::Square)
    }
    /// `self^p`.
    pub fn pow(self, p: f32) -> Var<'t> {
        self.unary(Unary::Pow(p))
    }
    /// `|self|` (gradient 0 at 0).
    pub fn abs(self) -> Var<'t> {
        self.unary(Unary::Abs)
    }
    /// Clamps to `[lo, hi]`; the gradient is 1 inside and 0 outside.
    pub fn clip(self, lo: f32, hi: f32) -> Var<'t> {
        self.unary(Unary::Clip(lo, hi))
    }

    /// `max(x, 0)`.
    pub fn relu(self) -> Var<'t> {
        self.unary(Unary::Relu)
    }
    /// `x` for `x > 0`, else `alpha * x` (Keras' default `alpha` is 0.3 for the layer, 0.2 for the function).
    pub fn leaky_relu(self, alpha: f32) -> Var<'t> {
        self.unary(Unary::LeakyRelu(alpha))
    }
    /// `x` for `x > 0`, else `alpha * (e^x - 1)`.
    pub fn elu(self, alpha: f32) -> Var<'t> {
        self.unary(Unary::Elu(alpha))
    }
    /// Scaled ELU with Keras' constants.
    pub fn selu(self) -> Var<'t> {
        self.unary(Unary::Selu)
    }
    /// `1 / (1 + e^-x)`, computed without overflow.
    pub fn sigmoid(self) -> Var<'t> {
        self.unary(Unary::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(self) -> Var<'t> {
        self.unary(Unary::Tanh)
    }
    /// `ln(1 + e^x)`, computed without overflow.
    pub fn softplus(self) -> Var<'t> {
        self.unary(Unary::Softplus)
    }
    /// `x / (1 + |x|)`.
    pub fn softsign(self) -> Var<'t> {
        self.unary(Unary::Softsign)
    }
    /// Exact GELU, `x * Phi(x)` (Keras' default, `approximate=False`).
    pub fn gelu(self) -> Var<'t> {
        self.unary(Unary::Gelu)
    }
    /// `x * sigmoid(x)` (also called SiLU).
    pub fn swish(self) -> Var<'t> {
        self.unary(Unary::Swish)
    }

    fn reduce(self, axes: AxisSet, keepdims: bool, mean: bool) -> Var<'t> {
        let in_shape = self.shape();
        let shape = axes.output_shape(&in_shape, keepdims);
        let scale = if mean { 1.0 / axes.count(&in_shape).max(1) as f32 } else { 1.0 };
        let every = axes == AxisSet::all(in_shape.len());
        let reduced: Vec<usize> = (0..in_shape.len()).rev().filter(|&ax| axes.contains(ax)).collect();
        let op = if mean { Op::Mean(self.id, axes) } else { Op::Sum(self.id, axes) };
        self.tape.push(op, &shape, |v, out, _| {
            let x = v.get(self.id);
            if every {
                out.fill(x.sum() * scale);
                return;
            }
            let mut acc = x.to_owned();
            for &ax in &reduced {
                acc = acc.sum_axis(Axis(ax));
            }
            let acc = acc.into_shape_with_order(IxDyn(&shape)).expect("reduced shape");
            Zip::from(out).and(&acc).for_each(|o, &s| *o = s * scale);
        })
    }

    /// Sum of all elements (a scalar of shape `[]`).
    pub fn sum(self) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::all(n), false, false)
    }
    /// Sum over `axes`, keeping them as length-1 axes if `keepdims`.
    pub fn sum_axes(self, axes: &[usize], keepdims: bool) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::new(axes, n), keepdims, false)
    }
    /// Mean of all elements (a scalar of shape `[]`).
    pub fn mean(self) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::all(n), false, true)
    }
    /// Mean over `axes`, keeping them as length-1 axes if `keepdims`.
    pub fn mean_axes(self, axes: &[usize], keepdims: bool) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::new(axes, n), keepdims, true)
    }

    /// The same elements in a new shape (row-major order).
    ///
    /// # Panics
    /// If the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Var<'t> {
        let from = self.shape();
        assert_eq!(
            from.iter().product::<usize>(),
            shape.iter().product::<usize>(),
            "reshape: cannot reshape {from:?} into {shape:?}"
        );
        self.tape.push(Op::Reshape(self.id), shape, |v, out, _| {
            let x = v.get(self.id);
            let flat = x.as_standard_layout();
            out.as_slice_mut()
                .expect("owned buffers are contiguous")
                .copy_from_slice(flat.as_slice().expect("standard layout"));
        })
    }

    /// Reorders the axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(self, axes: &[usize]) -> Var<'t> {
        let from = self.shape();
        assert_eq!(axes.len(), from.len(), "permute: {axes:?} for a value of shape {from:?}");
        let perm = Perm::new(axes);
        let shape: Vec<usize> = axes.iter().map(|&a| from[a]).collect();
        self.tape.push(Op::Permute(self.id, perm), &shape, |v, out, _| {
            out.assign(&v.get(self.id).permuted_axes(perm.as_slice()));
        })
    }

    /// Reverses the axes (the matrix transpose for 2-D values).
    pub fn transpose(self) -> Var<'t> {
        let n = self.shape().len();
        let axes: Vec<usize> = (0..n).rev().collect();
        self.permute(&axes)
    }

    /// Softmax over `axis`, stable for large inputs.
    pub fn softmax(self, axis: usize) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "softmax: axis {axis} for a value of shape {shape:?}");
        self.tape.push(Op::Softmax(self.id, axis), &shape, |v, out, _| {
            let x = v.get(self.id);
            if axis + 1 == x.ndim() {
                if let (Some(xs), Some(os)) = (rows_of(&x), rows_of_mut(out)) {
                    xs.zip(os).for_each(|(x, o)| softmax_row(x, o));
                    return;
                }
            }
            Zip::from(out.lanes_mut(Axis(axis))).and(x.lanes(Axis(axis))).for_each(|mut o, x| {
                let max = x.fold(f32::NEG_INFINITY, |m, &x| nan_max(m, x));
                let mut total = 0.0;
                Zip::from(&mut o).and(&x).for_each(|o, &x| {
                    *o = (x - max).exp();
                    total += *o;
                });
                o.mapv_inplace(|e| e / total);
            });
        })
    }

    /// `log(softmax(x))` over `axis`, computed as `x - logsumexp(x)` so that it stays finite.
    pub fn log_softmax(self, axis: usize) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "log_softmax: axis {axis} for a value of shape {shape:?}");
        self.tape.push(Op::LogSoftmax(self.id, axis), &shape, |v, out, _| {
            Zip::from(out.lanes_mut(Axis(axis))).and(v.get(self.id).lanes(Axis(axis))).for_each(
                |mut o, x| {
                    let lse = logsumexp(x.iter().copied());
                    Zip::from(&mut o).and(&x).for_each(|o, &x| *o = x - lse);
                },
            );
        })
    }

    /// Cross-entropy of `softmax(self)` against the distributions `targets`, over the last axis, computed from
    /// the logits in one stable step: `-sum(t * log_softmax(x))` per row. The result drops the last axis.
    pub fn softmax_cross_entropy(self, targets: Var<'t>) -> Var<'t> {
        let (xs, ts) = (self.shape(), targets.shape());
        assert_eq!(xs, ts, "softmax_cross_entropy: logits {xs:?} and targets {ts:?} differ");
        let rows = last_axis_rows(&xs, "softmax_cross_entropy");
        self.tape.push(
            Op::SoftmaxCrossEntropy { logits: self.id, targets: targets.id },
            &rows,
            |v, out, aux| {
                super::fit_buffer(aux, &rows);
                let (x, t) = (v.get(self.id), v.get(targets.id));
                if let (Some(xs), Some(ts)) = (rows_of(&x), rows_of(&t)) {
                    for (((o, lse_out), x), t) in out.iter_mut().zip(aux.iter_mut()).zip(xs).zip(ts) {
                        let lse = logsumexp(x.iter().copied());
                        *lse_out = lse;
                        *o = -x.iter().zip(t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
                    }
                    return;
                }
                let last = Axis(x.ndim() - 1);
                for (((o, lse_out), x), t) in
                    out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(t.lanes(last))
                {
                    let lse = logsumexp(x.iter().copied());
                    *lse_out = lse;
                    *o = -x.iter().zip(&t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
                }
            },
        )
    }

    /// Cross-entropy of `softmax(self)` against integer class indices `labels` (stored as `f32`, shape = the
    /// logits' shape without the last axis).
    ///
    /// # Panics
    /// If a label is not an integer in `0..classes`; models check labels before training.
    pub fn sparse_softmax_cross_entropy(self, labels: Var<'t>) -> Var<'t> {
        let (xs, ls) = (self.shape(), labels.shape());
        let rows = last_axis_rows(&xs, "sparse_softmax_cross_entropy");
        assert_eq!(
            rows, ls,
            "sparse_softmax_cross_entropy: logits {xs:?} need labels of shape {rows:?}, got {ls:?}"
        );
        let classes = xs[xs.len() - 1];
        self.tape.push(
            Op::SparseSoftmaxCrossEntropy { logits: self.id, labels: labels.id },
            &rows,
            |v, out, aux| {
                super::fit_buffer(aux, &rows);
                let (x, l) = (v.get(self.id), v.get(labels.id));
                let last = Axis(x.ndim() - 1);
                for (((o, lse_out), x), &label) in
                    out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(l.iter())
                {
                    assert!(
                        label >= 0.0 && (label as usize) < classes && label.fract() == 0.0,
                        "sparse_softmax_cross_entropy: label {label} is not a class index in 0..{classes}"
                    );
                    let lse = logsumexp(x.iter().copied());
                    *lse_out = lse;
                    *o = lse - x[label as usize];
                }
            },
        )
    }

    /// Element-wise binary cross-entropy of `sigmoid(self)` against `targets`, from the logits:
    /// `max(x, 0) - x t + log(1 + e^-|x|)`.
    pub fn sigmoid_cross_entropy(self, targets: Var<'t>) -> Var<'t> {
        let (xs, ts) = (self.shape(), targets.shape());
        assert_eq!(xs, ts, "sigmoid_cross_entropy: logits {xs:?} and targets {ts:?} differ");
        self.tape.push(Op::SigmoidCrossEntropy { logits: self.id, targets: targets.id }, &xs, |v, out, _| {
            Zip::from(out).and(&v.get(self.id)).and(&v.get(targets.id)).for_each(|o, &x, &t| {
                *o = x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
            });
        })
    }

    /// If this value is `softmax(z)` over its last axis, `z`: lets a cross-entropy loss use the fused, stable
    /// form on the logits instead of the probabilities (Keras does the same).
    pub fn softmax_logits(self) -> Option<Var<'t>> {
        let ws = self.tape.ws.borrow();
        match ws.nodes[self.id].op {
            Op::Softmax(z, axis) if axis + 1 == ws.values[self.id].ndim() => {
                Some(Var { tape: self.tape, id: z })
            }
            _ => None,
        }
    }

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
        let op = Op::Dense { x: self.id, w: w.id, b: b.map(|b| b.id), act };
        self.tape.push(op, &[m, n], |v, out, aux| {
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
                super::fit_buffer(aux, &[m, n]);
                aux.assign(out);
            }
            let out = out.as_slice_mut().expect("owned buffers are contiguous");
            match f {
                Unary::Relu => out.iter_mut().for_each(|v| *v = Unary::Relu.f(*v)),
                Unary::Sigmoid => out.iter_mut().for_each(|v| *v = Unary::Sigmoid.f(*v)),
                Unary::Tanh => out.iter_mut().for_each(|v| *v = Unary::Tanh.f(*v)),
                other => out.iter_mut().for_each(|v| *v = other.f(*v)),
            }
        })
    }

    /// If this value is `sigmoid(z)`, `z` (see [`Var::softmax_logits`]).
    pub fn sigmoid_logits(self) -> Option<Var<'t>> {
        match self.tape.ws.borrow().nodes[self.id].op {
            Op::Unary(z, Unary::Sigmoid) => Some(Var { tape: self.tape, id: z }),
            _ => None,
        }
    }
}

/// The rows along the last axis as slices, when the value is contiguous (tape buffers and parameters always
/// are): the fast path of the row-wise ops, free of n-d iteration.
pub(crate) fn rows_of<'a>(v: &ArrayViewD<'a, f32>) -> Option<std::slice::ChunksExact<'a, f32>> {
    let width = *v.shape().last()?;
    (width > 0).then_some(())?;
    v.to_slice().map(|s| s.chunks_exact(width))
}

/// [`rows_of`] for a buffer being written.
pub(crate) fn rows_of_mut(t: &mut Tensor) -> Option<std::slice::ChunksExactMut<'_, f32>> {
    let width = *t.shape().last()?;
    (width > 0).then_some(())?;
    t.as_slice_mut().map(|s| s.chunks_exact_mut(width))
}

/// Stable softmax of one row.
fn softmax_row(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, nan_max);
    let mut total = 0.0;
    for (o, &x) in out.iter_mut().zip(x) {
        *o = (x - max).exp();
        total += *o;
    }
    let inv = 1.0 / total;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// The larger of `a` and `b`, NaN if either is (numpy's `maximum`; `f32::max` returns the other operand).
#[inline]
pub(crate) fn nan_max(a: f32, b: f32) -> f32 {
    if a >= b || a.is_nan() {
        a
    } else {
        b
    }
}

/// The smaller of `a` and `b`, NaN if either is (numpy's `minimum`).
#[inline]
pub(crate) fn nan_min(a: f32, b: f32) -> f32 {
    if a <= b || a.is_nan() {
        a
    } else {
        b
    }
}

/// `log(sum(exp(x)))` without overflow; NaN if any element is.
fn logsumexp(x: impl Iterator<Item = f32> + Clone) -> f32 {
    let max = x.clone().fold(f32::NEG_INFINITY, nan_max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + x.map(|x| (x - max).exp()).sum::<f32>().ln()
}

macro_rules! var_operators {
    ($($trait:ident $method:ident $scalar:ident),*) => {$(
        impl<'t> std::ops::$trait for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: Var<'t>) -> Var<'t> {
                Var::$method(self, rhs)
            }
        }
        impl<'t> std::ops::$trait<f32> for Var<'t> {
            type Output = Var<'t>;
            fn $method(self, rhs: f32) -> Var<'t> {
                self.$scalar(rhs)
            }
        }
    )*};
}
var_operators!(Add add add_scalar, Sub sub sub_scalar, Mul mul mul_scalar, Div div div_scalar);

impl<'t> std::ops::Neg for Var<'t> {
    type Output = Var<'t>;
    fn neg(self) -> Var<'t> {
        Var::neg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert_eq!(broadcast_shape(&[3, 4], &[4], "t"), vec![3, 4]);
        assert_eq!(broadcast_shape(&[3, 1], &[1, 4], "t"), vec![3, 4]);
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1], "t"), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[], &[2, 3], "t"), vec![2, 3]);
        assert!(std::panic::catch_unwind(|| broadcast_shape(&[3, 4], &[3], "t")).is_err());
    }

    #[test]
    fn axis_sets_and_permutations() {
        let ax = AxisSet::new(&[0, 2], 3);
        assert_eq!(ax.kept_shape(&[2, 3, 4]), vec![1, 3, 1]);
        assert_eq!(ax.output_shape(&[2, 3, 4], false), vec![3]);
        assert_eq!(ax.count(&[2, 3, 4]), 8);
        assert_eq!(AxisSet::all(3), AxisSet::new(&[2, 1, 0], 3));
        assert_eq!(AxisSet::all(0).output_shape(&[], false), Vec::<usize>::new());
        // Any rank: axes 32 and 64 and beyond are their own, not aliases of axis 0.
        for ndim in [33, 64, 65, 70] {
            let last = AxisSet::new(&[ndim - 1], ndim);
            assert!(last.contains(ndim - 1) && !last.contains(0) && !last.contains(ndim - 1 - 32));
            assert_eq!(last.count(&vec![2; ndim]), 2);
            let all = AxisSet::all(ndim);
            assert!((0..ndim).all(|ax| all.contains(ax)) && !all.contains(ndim));
            assert_eq!(all, AxisSet::new(&(0..ndim).collect::<Vec<_>>(), ndim));
        }
        let p = Perm::new(&[2, 0, 1]);
        assert_eq!(p.inverse().as_slice(), &[1, 2, 0]);
        assert_eq!(p.inverse().inverse(), p);
        assert!(std::panic::catch_unwind(|| Perm::new(&[0, 0, 1])).is_err());
    }
}

#[cfg(test)]
mod dense_tests {
    use super::super::{check_gradients, ParamStore, Tape, Unary};
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
    fn cross_entropy_against_constant_targets_matches_finite_differences() {
        // Constant targets take the contiguous fast path of the backward rule (the training loop's case);
        // run it twice on one tape so the second contribution accumulates.
        let t = rnd(&[4, 5], 7).mapv(f32::abs);
        check_gradients(&[rnd(&[4, 5], 8)], |v| {
            let targets = v[0].tape().constant(t.view());
            let ce = v[0].softmax_cross_entropy(targets);
            ce.add(v[0].mul_scalar(2.0).softmax_cross_entropy(targets))
        })
        .unwrap();
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
