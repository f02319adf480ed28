//! Element-wise arithmetic of two values with numpy broadcasting: `+ - * /`, maximum and minimum, and the
//! operators on [`Var`].
//!
//! Backward: each side receives `g * ∂f/∂side`, summed over the axes it was broadcast along. `a ± b` has the
//! partials ±1: a first contribution of the output's shape is then a plain (negated) copy of `g`.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{Binary, Storage};

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
            v.get(self.id).binary(kind, v.get(other.id), out)
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
        let [a, b] = self.inputs;
        let (av, bv) = (ctx.value(a), ctx.value(b));
        for (right, target, shape) in [(false, a, av.shape()), (true, b, bv.shape())] {
            let Some((d, fresh)) = ctx.grad(target, shape) else { continue };
            av.binary_grad(self.kind, bv, right, g, d, !fresh);
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
