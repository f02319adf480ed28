//! Every operation of the engine, one file each (or one file per family): the `Var` method that records the
//! node and computes its value, the node's [`Kernel`](super::backward::Kernel) with its backward rule, and
//! the tests, side by side.
//!
//! - `elementwise/`: one-input functions (one file each, registered in `elementwise/mod.rs`) and broadcasting
//!   binary arithmetic;
//! - `matmul`, `reduce` (sum, mean), `shape` (reshape, permute), `softmax` (softmax, log-softmax);
//! - `cross_entropy`: the three losses fused with their softmax or sigmoid;
//! - `dense`, `conv2d`, `pool2d`, `batch_norm`: layers' hot paths, each one node (the window geometry the
//!   image kernels share is `device::window`);
//! - `concat`, and `custom`: a user's [`CustomOp`].
//!
//! Shapes are a programming matter here, as in ndarray: an operation on incompatible shapes panics with a message
//! naming both. Models validate shapes once, when they are built, so the training loop never hits these panics;
//! a custom layer that does the same needs no `?` on every operation.
mod batch_norm;
mod concat;
mod conv2d;
mod cross_entropy;
mod custom;
mod dense;
pub(crate) mod elementwise;
mod matmul;
mod pool2d;
mod reduce;
mod shape;
mod softmax;

pub use crate::device::Padding;
pub(crate) use crate::device::{window_output, WindowFault};
pub use batch_norm::BatchStatistics;
pub use conv2d::Conv2dOptions;
pub use custom::CustomOp;

use ndarray::{ArrayViewD, Axis, Zip};

use super::Tensor;

/// Adds `src`, summed over the axes it was broadcast along, into `dst` (numpy's rule: leading axes, and axes
/// where `dst` has length 1).
pub(crate) fn add_unbroadcast(dst: &mut Tensor, src: ArrayViewD<'_, f32>, scale: f32) {
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
}
