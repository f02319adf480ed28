//! Softmax and log-softmax on the CPU: rows as slices when the axis is the last and the buffers contiguous,
//! ndarray's lanes otherwise.
use ndarray::{Axis, Zip};

use super::helpers::{logsumexp, nan_max, rows_of, rows_of_mut};
use super::CpuStorage;
use crate::device::SoftmaxKernels;

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

impl SoftmaxKernels for CpuStorage {
    fn softmax(&self, axis: usize, out: &mut Self) {
        let (x, out) = (self.array().view(), out.array_mut());
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
    }

    fn log_softmax(&self, axis: usize, out: &mut Self) {
        let (x, out) = (self.array(), out.array_mut());
        Zip::from(out.lanes_mut(Axis(axis))).and(x.lanes(Axis(axis))).for_each(|mut o, x| {
            let lse = logsumexp(x.iter().copied());
            Zip::from(&mut o).and(&x).for_each(|o, &x| *o = x - lse);
        });
    }

    fn softmax_grad(&self, g: &Self, axis: usize, dst: &mut Self, accumulate: bool) {
        let (y, g, d, axis) = (self.array(), g.array(), dst.array_mut(), Axis(axis));
        if !accumulate {
            d.fill(0.0);
        }
        Zip::from(d.lanes_mut(axis)).and(y.lanes(axis)).and(g.lanes(axis)).for_each(|mut d, y, g| {
            let dot: f32 = y.iter().zip(&g).map(|(y, g)| y * g).sum();
            Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += y * (g - dot));
        });
    }

    fn log_softmax_grad(&self, g: &Self, axis: usize, dst: &mut Self, accumulate: bool) {
        let (y, g, d, axis) = (self.array(), g.array(), dst.array_mut(), Axis(axis));
        if !accumulate {
            d.fill(0.0);
        }
        Zip::from(d.lanes_mut(axis)).and(y.lanes(axis)).and(g.lanes(axis)).for_each(|mut d, y, g| {
            let total: f32 = g.sum();
            Zip::from(&mut d).and(&y).and(&g).for_each(|d, &y, &g| *d += g - y.exp() * total);
        });
    }
}
