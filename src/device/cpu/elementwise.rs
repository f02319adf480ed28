//! Element-wise kernels on the CPU: slice loops where the buffers are contiguous and the work too small to
//! split, [`for_each`] over ndarray's `Zip` otherwise, both through [`specialise`] so that the hot activations'
//! `f` and `df` are inlined.
use ndarray::{ArrayD, ArrayViewD, Zip};

use super::helpers::{add_unbroadcast, nan_max, nan_min};
use super::CpuStorage;
use crate::device::{specialise, Binary, ElementwiseKernels, Unary};
use crate::threads::{for_each, worth_splitting};

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

/// Writes (`fresh`: the buffer's content is stale) or adds `g * df(x, y)` into `dst`.
fn unary_grad(
    f: Unary,
    dst: &mut ArrayD<f32>,
    fresh: bool,
    x: ArrayViewD<'_, f32>,
    y: ArrayViewD<'_, f32>,
    g: ArrayViewD<'_, f32>,
) {
    if let (false, Some(xs), Some(ys), Some(gs)) =
        (worth_splitting(dst.len()), x.as_slice(), y.as_slice(), g.as_slice())
    {
        // A plain loop over slices, so that the hot activations' `df` is inlined into it.
        let ds = dst.as_slice_mut().expect("gradient buffers are contiguous");
        let each = ds.iter_mut().zip(xs).zip(ys).zip(gs);
        specialise!(f, |op| if fresh {
            each.for_each(|(((d, &x), &y), &g)| *d = g * op.df(x, y));
        } else {
            each.for_each(|(((d, &x), &y), &g)| *d += g * op.df(x, y));
        });
        return;
    }
    specialise!(f, |op| {
        let zip = Zip::from(dst).and(&x).and(&y).and(&g);
        if fresh {
            for_each(zip, |d, &x, &y, &g| *d = g * op.df(x, y));
        } else {
            for_each(zip, |d, &x, &y, &g| *d += g * op.df(x, y));
        }
    })
}

#[allow(private_interfaces)] // see the trait
impl ElementwiseKernels for CpuStorage {
    fn unary(&self, f: Unary, out: &mut Self) {
        let (x, out) = (self.array().view(), out.array_mut());
        if let (false, Some(xs)) = (worth_splitting(out.len()), x.as_slice()) {
            // A plain loop over slices, so that the hot activations' `f` is inlined into it.
            let out = out.as_slice_mut().expect("owned buffers are contiguous");
            specialise!(f, |op| out.iter_mut().zip(xs).for_each(|(o, &x)| *o = op.f(x)));
            return;
        }
        specialise!(f, |op| for_each(Zip::from(out).and(&x), |o, &x| *o = op.f(x)));
    }

    fn unary_grad(&self, f: Unary, y: &Self, g: &Self, dst: &mut Self, accumulate: bool) {
        unary_grad(f, dst.array_mut(), !accumulate, self.array().view(), y.array().view(), g.array().view());
    }

    fn binary(&self, op: Binary, b: &Self, out: &mut Self) {
        let (a, b, out) = (self.array(), b.array(), out.array_mut());
        // The hot pair gets loops of their own; the rest share one.
        match op {
            Binary::Add => for_each(Zip::from(out).and_broadcast(a).and_broadcast(b), |o, &x, &y| *o = x + y),
            Binary::Mul => for_each(Zip::from(out).and_broadcast(a).and_broadcast(b), |o, &x, &y| *o = x * y),
            other => {
                for_each(Zip::from(out).and_broadcast(a).and_broadcast(b), |o, &x, &y| *o = other.f(x, y))
            }
        }
    }

    fn binary_grad(&self, kind: Binary, b: &Self, right: bool, g: &Self, dst: &mut Self, accumulate: bool) {
        let (av, bv, g, d) = (self.array(), b.array(), g.array().view(), dst.array_mut());
        let (side, fresh) = (usize::from(right), !accumulate);
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
                    let zip = Zip::from(&mut *d).and(&g).and_broadcast(av).and_broadcast(bv);
                    for_each(zip, |d, &g, &x, &y| *d += g * partial(x, y));
                } else {
                    let mut full = g.to_owned();
                    let zip = Zip::from(&mut full).and_broadcast(av).and_broadcast(bv);
                    for_each(zip, |g, &x, &y| *g *= partial(x, y));
                    add_unbroadcast(d, full.view(), 1.0);
                }
            }
        }
    }

    fn add_unbroadcast(&self, scale: f32, dst: &mut Self) {
        add_unbroadcast(dst.array_mut(), self.array().view(), scale);
    }
}
