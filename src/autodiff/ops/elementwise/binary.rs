//! Element-wise arithmetic of two values with numpy broadcasting: `+ - * /`, maximum and minimum, and the
//! operators on [`Var`].
//!
//! Backward: each side receives `g * ∂f/∂side`, summed over the axes it was broadcast along. `a ± b` has the
//! partials ±1: a first contribution of the output's shape is then a plain (negated) copy of `g`.
use ndarray::Zip;

use super::super::{add_unbroadcast, nan_max, nan_min};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;
use crate::threads::for_each;

/// Element-wise binary operations with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binary {
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
    fn partial(self, side: usize, x: f32, y: f32) -> f32 {
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

/// The recorded node: `kind` of inputs `[a, b]`.
struct BinaryNode {
    inputs: [usize; 2],
    kind: Binary,
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

impl<'t> Var<'t> {
    fn binary(self, other: Var<'t>, kind: Binary) -> Var<'t> {
        let shape = broadcast_shape(&self.shape(), &other.shape(), kind);
        self.tape.push(BinaryNode { inputs: [self.id, other.id], kind }, &shape, |v, out, _| {
            let (a, b) = (v.get(self.id), v.get(other.id));
            // The hot pair gets loops of its own; the rest share one.
            match kind {
                Binary::Add => {
                    for_each(Zip::from(out).and_broadcast(&a).and_broadcast(&b), |o, &x, &y| *o = x + y)
                }
                Binary::Mul => {
                    for_each(Zip::from(out).and_broadcast(&a).and_broadcast(&b), |o, &x, &y| *o = x * y)
                }
                other => for_each(Zip::from(out).and_broadcast(&a).and_broadcast(&b), |o, &x, &y| {
                    *o = other.f(x, y)
                }),
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
}

impl Kernel for BinaryNode {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let ([a, b], kind, g) = (self.inputs, self.kind, g.view());
        let (av, bv) = (ctx.value(a), ctx.value(b));
        for (side, target, shape) in [(0, a, av.shape()), (1, b, bv.shape())] {
            let Some((d, fresh)) = ctx.grad(target, shape) else { continue };
            let sign = if kind == Binary::Sub && side == 1 { -1.0 } else { 1.0 };
            match kind {
                // d(a±b) is ±g: on a first contribution of g's shape, a copy (no zero-fill pass).
                Binary::Add | Binary::Sub if fresh && d.shape() == g.shape() => {
                    for_each(Zip::from(d).and(&g), |d, &g| *d = sign * g);
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
                        let zip = Zip::from(&mut *d).and(&g).and_broadcast(&av).and_broadcast(&bv);
                        for_each(zip, |d, &g, &x, &y| *d += g * partial(x, y));
                    } else {
                        let mut full = g.to_owned();
                        let zip = Zip::from(&mut full).and_broadcast(&av).and_broadcast(&bv);
                        for_each(zip, |g, &x, &y| *g *= partial(x, y));
                        add_unbroadcast(d, full.view(), 1.0);
                    }
                }
            }
        }
    }
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
    use crate::autodiff::check_gradients;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn broadcast_shapes_follow_numpy() {
        assert_eq!(broadcast_shape(&[3, 4], &[4], "t"), vec![3, 4]);
        assert_eq!(broadcast_shape(&[3, 1], &[1, 4], "t"), vec![3, 4]);
        assert_eq!(broadcast_shape(&[2, 1, 4], &[3, 1], "t"), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[], &[2, 3], "t"), vec![2, 3]);
        assert!(std::panic::catch_unwind(|| broadcast_shape(&[3, 4], &[3], "t")).is_err());
    }

    #[test]
    fn gradients_match_finite_differences_with_broadcasting() {
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] * 3 + i[1]) as f32 / 3.0 - 0.9);
        let b = ArrayD::from_shape_fn(IxDyn(&[3]), |i| i[0] as f32 / 2.0 + 0.6);
        for kind in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Maximum, Binary::Minimum] {
            check_gradients(&[a.clone(), b.clone()], |v| v[0].binary(v[1], kind))
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            check_gradients(&[b.clone(), a.clone()], |v| v[0].binary(v[1], kind))
                .unwrap_or_else(|e| panic!("{kind:?}, broadcast left: {e}"));
        }
    }
}
