//! Softmax and log-softmax on the CPU: rows as slices when the axis is the last and the buffers contiguous,
//! split over kerust's threads when large (each row computed by one call, so the thread count changes
//! nothing), ndarray's lanes otherwise.
use ndarray::{ArrayView1, Axis, Zip};

use super::helpers::{logsumexp, nan_max};
use super::CpuStorage;
use crate::device::SoftmaxKernels;
use crate::threads::for_each_chunk;

/// Elements per task of a row-wise kernel (whole rows, at least one).
const TASK_ELEMENTS: usize = 1 << 14;

/// Calls `f(row, out_row)` for every row of `out` (rows of `width` values), a task of whole rows at a time.
fn for_each_row(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let rows = (TASK_ELEMENTS / width).max(1);
    for_each_chunk(out, rows * width, |c, chunk| {
        for (k, row) in chunk.chunks_exact_mut(width).enumerate() {
            f(c * rows + k, row);
        }
    });
}

/// A row-wise backward's output `y`, incoming gradient `g` and destination as slices, and the row width.
type BackwardRows<'a> = (&'a [f32], &'a [f32], &'a mut [f32], usize);

/// The three buffers of a row-wise backward along the last axis as slices, with the row width, if contiguous.
fn last_axis_rows<'a>(
    y: &'a CpuStorage,
    g: &'a CpuStorage,
    d: &'a mut CpuStorage,
    axis: usize,
) -> Option<BackwardRows<'a>> {
    let width = *y.array().shape().last()?;
    (axis + 1 == y.array().ndim() && width > 0).then_some(())?;
    Some((y.array().as_slice()?, g.array().as_slice()?, d.array_mut().as_slice_mut()?, width))
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

impl SoftmaxKernels for CpuStorage {
    fn softmax(&self, axis: usize, out: &mut Self) {
        let (x, out) = (self.array().view(), out.array_mut());
        if axis + 1 == x.ndim() {
            let width = x.shape()[axis];
            if let (Some(xs), Some(os), true) = (x.to_slice(), out.as_slice_mut(), width > 0) {
                for_each_row(os, width, |r, o| softmax_row(&xs[r * width..][..width], o));
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
        if let (true, Some(xs), Some(width)) = (axis + 1 == x.ndim(), x.as_slice(), x.shape().last().copied())
        {
            if let (Some(os), true) = (out.as_slice_mut(), width > 0) {
                for_each_row(os, width, |r, o| {
                    let x = &xs[r * width..][..width];
                    let lse = logsumexp(x.iter().copied());
                    o.iter_mut().zip(x).for_each(|(o, &x)| *o = x - lse);
                });
                return;
            }
        }
        Zip::from(out.lanes_mut(Axis(axis))).and(x.lanes(Axis(axis))).for_each(|mut o, x| {
            let lse = logsumexp(x.iter().copied());
            Zip::from(&mut o).and(&x).for_each(|o, &x| *o = x - lse);
        });
    }

    fn softmax_grad(&self, g: &Self, axis: usize, dst: &mut Self, accumulate: bool) {
        if let Some((ys, gs, ds, width)) = last_axis_rows(self, g, dst, axis) {
            for_each_row(ds, width, |r, d| {
                let (y, g) = (&ys[r * width..][..width], &gs[r * width..][..width]);
                if !accumulate {
                    d.fill(0.0);
                }
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                d.iter_mut().zip(y).zip(g).for_each(|((d, &y), &g)| *d += y * (g - dot));
            });
            return;
        }
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
        if let Some((ys, gs, ds, width)) = last_axis_rows(self, g, dst, axis) {
            for_each_row(ds, width, |r, d| {
                let (y, g) = (&ys[r * width..][..width], &gs[r * width..][..width]);
                if !accumulate {
                    d.fill(0.0);
                }
                // ndarray's sum of the lane, as the general path below takes it.
                let total = ArrayView1::from(g).sum();
                d.iter_mut().zip(y).zip(g).for_each(|((d, &y), &g)| *d += g - y.exp() * total);
            });
            return;
        }
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

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::threads::at_thread_counts;

    fn values(shape: &[usize], seed: u32) -> CpuStorage {
        let mut state = seed;
        CpuStorage::from(ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32 * 6.0 - 3.0
        }))
    }

    #[test]
    fn row_kernels_are_the_same_at_any_thread_count_and_agree_with_the_lanes() {
        // Large enough to be split; the transposed copies take the general (lane) path.
        let (x, g) = (values(&[800, 2, 170], 1), values(&[800, 2, 170], 2));
        assert!(x.0.len() >= crate::threads::PARALLEL_MIN_ELEMENTS);
        let lanes = |s: &CpuStorage| CpuStorage::from(s.0.view().permuted_axes(IxDyn(&[2, 1, 0])).to_owned());
        let run = |x: &CpuStorage, g: &CpuStorage, axis: usize| {
            let shape = x.0.shape().to_vec();
            let out = |f: &dyn Fn(&mut CpuStorage)| {
                let mut o = CpuStorage::from(ArrayD::from_elem(IxDyn(&shape), 0.5));
                f(&mut o);
                o.0
            };
            [
                out(&|o| x.softmax(axis, o)),
                out(&|o| x.log_softmax(axis, o)),
                out(&|o| x.softmax_grad(g, axis, o, false)),
                out(&|o| x.log_softmax_grad(g, axis, o, true)),
            ]
        };
        let results = at_thread_counts(|| run(&x, &g, 2));
        for (threads, got) in (1..).zip(&results) {
            for (k, (got, want)) in got.iter().zip(&results[0]).enumerate() {
                let same = got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "kernel {k}, {threads} threads");
            }
        }
        let general = run(&lanes(&x), &lanes(&g), 0);
        for (k, (rows, lanes)) in results[0].iter().zip(general).enumerate() {
            let lanes = lanes.permuted_axes(IxDyn(&[2, 1, 0]));
            let close = rows.iter().zip(lanes.iter()).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs()));
            assert!(close, "kernel {k}: rows and lanes disagree");
        }
    }
}
