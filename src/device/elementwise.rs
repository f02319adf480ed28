//! Element-wise kernels: a registered one-input function ([`Unary`]) and its backward, the numpy-broadcasting
//! binary arithmetic ([`Binary`]) and its backward, and the unbroadcast sum both share.
use super::{Storage, Unary};

/// Element-wise operations of two values with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    /// `x + y`.
    Add,
    /// `x - y`.
    Sub,
    /// `x * y`.
    Mul,
    /// `x / y`.
    Div,
    /// The larger, NaN if either is (numpy's `maximum`); ties send the gradient to the left operand.
    Maximum,
    /// The smaller, NaN if either is (numpy's `minimum`); ties send the gradient to the left operand.
    Minimum,
}

/// Element-wise kernels. Shapes are checked by the caller.
// `Unary` and `Binary` name the crate's own functions: backends are variants of `Storage`, all in this crate.
#[allow(private_interfaces)]
pub trait ElementwiseKernels {
    /// `out = f(self)`, element by element (`out` of `self`'s shape).
    fn unary(&self, f: Unary, out: &mut Self);

    /// The backward of [`ElementwiseKernels::unary`]: `dst = g * f'(x, y)`, or `dst += g * f'(x, y)` with
    /// `accumulate`, where `x` is `self` and `y = f(x)` the recorded output (all four of one shape).
    fn unary_grad(&self, f: Unary, y: &Self, g: &Self, dst: &mut Self, accumulate: bool);

    /// `out = op(self, b)` with numpy broadcasting (`out` of the broadcast shape).
    fn binary(&self, op: Binary, b: &Self, out: &mut Self);

    /// The backward of [`ElementwiseKernels::binary`] for one operand (`right`: `b`, else `self`): `g`
    /// (of the broadcast shape) times the partial derivative with respect to that operand, summed over the
    /// axes the operand was broadcast along, written into `dst` (of the operand's shape), or added to it with
    /// `accumulate`.
    fn binary_grad(&self, op: Binary, b: &Self, right: bool, g: &Self, dst: &mut Self, accumulate: bool);

    /// `dst += scale * self` summed over the axes `self` was broadcast along to reach its shape from `dst`'s
    /// (numpy's rule: leading axes, and axes where `dst` has length 1).
    fn add_unbroadcast(&self, scale: f32, dst: &mut Self);
}

impl Storage {
    /// [`ElementwiseKernels::unary`] on the device the buffers live on.
    pub(crate) fn unary(&self, f: Unary, out: &mut Storage) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.unary(f, out),
        }
    }

    /// [`ElementwiseKernels::unary_grad`] on the device the buffers live on.
    pub(crate) fn unary_grad(&self, f: Unary, y: &Storage, g: &Storage, dst: &mut Storage, accumulate: bool) {
        match (self, y, g, dst) {
            (Storage::Cpu(x), Storage::Cpu(y), Storage::Cpu(g), Storage::Cpu(dst)) => {
                x.unary_grad(f, y, g, dst, accumulate)
            }
        }
    }

    /// [`ElementwiseKernels::binary`] on the device the buffers live on.
    pub(crate) fn binary(&self, op: Binary, b: &Storage, out: &mut Storage) {
        match (self, b, out) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(out)) => a.binary(op, b, out),
        }
    }

    /// [`ElementwiseKernels::binary_grad`] on the device the buffers live on.
    pub(crate) fn binary_grad(
        &self,
        op: Binary,
        b: &Storage,
        right: bool,
        g: &Storage,
        dst: &mut Storage,
        accumulate: bool,
    ) {
        match (self, b, g, dst) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(g), Storage::Cpu(dst)) => {
                a.binary_grad(op, b, right, g, dst, accumulate)
            }
        }
    }

    /// [`ElementwiseKernels::add_unbroadcast`] on the device the buffers live on.
    pub(crate) fn add_unbroadcast(&self, scale: f32, dst: &mut Storage) {
        match (self, dst) {
            (Storage::Cpu(src), Storage::Cpu(dst)) => src.add_unbroadcast(scale, dst),
        }
    }
}
