//! Sums over axes on the CPU: ndarray's `sum` and `sum_axis`, one axis at a time from the last.
use ndarray::{Axis, IxDyn, Zip};

use super::CpuStorage;
use crate::device::ReduceKernels;

impl ReduceKernels for CpuStorage {
    fn sum_axes(&self, axes: &[usize], scale: f32, out: &mut Self) {
        let (x, out) = (self.array(), out.array_mut());
        if axes.len() == x.ndim() {
            out.fill(x.sum() * scale);
            return;
        }
        let mut acc = x.to_owned();
        for &ax in axes {
            acc = acc.sum_axis(Axis(ax));
        }
        let acc = acc.into_shape_with_order(IxDyn(out.shape())).expect("reduced shape");
        Zip::from(out).and(&acc).for_each(|o, &s| *o = s * scale);
    }

    fn sum_axes_grad(&self, kept: &[usize], scale: f32, dst: &mut Self, accumulate: bool) {
        let gk = self.array().to_shape(kept).expect("gradient has the reduced shape");
        let d = dst.array_mut();
        if accumulate {
            Zip::from(d).and_broadcast(&gk).for_each(|d, &g| *d += scale * g);
        } else {
            Zip::from(d).and_broadcast(&gk).for_each(|d, &g| *d = scale * g);
        }
    }
}
