//! Sums over axes on the CPU, split over kerust's threads when large.
//!
//! Each output element is summed by one call in a fixed order, so the rounding does not depend on the thread
//! count: a sum along the last axis is ndarray's (unrolled) `sum` of the contiguous lane, a sum along another
//! axis adds the slices along it one after the other (as ndarray's `sum_axis` does), and the sum of a whole
//! large tensor adds the sums of fixed blocks in order.
use ndarray::{ArrayView1, Axis, IxDyn, Zip};

use super::CpuStorage;
use crate::device::ReduceKernels;
use crate::threads::{for_each, for_each_chunk_of_work, map_blocks};

/// Elements per block of a whole-tensor sum; a tensor up to this size is summed in one piece.
const SUM_BLOCK: usize = 1 << 16;

/// Input elements an axis sum reads per task (whole outputs, at least one).
const TASK_READS: usize = 1 << 14;

/// The sum of a contiguous slice: ndarray's unrolled sum, block by block when large.
fn sum_slice(x: &[f32]) -> f32 {
    if x.len() <= SUM_BLOCK {
        return ArrayView1::from(x).sum();
    }
    map_blocks(x.len(), SUM_BLOCK, |r| ArrayView1::from(&x[r]).sum()).into_iter().fold(0.0, |a, b| a + b)
}

/// `out[o, i] = sum over k of x[o, k, i]` for `x` of shape `(outer, len, inner)` in standard layout.
///
/// Each output is summed by one call whatever the split, which the reads decide (an axis sum writes far less
/// than it reads), so results do not depend on the thread count.
fn sum_axis(x: &[f32], len: usize, inner: usize, out: &mut [f32]) {
    let chunk = (TASK_READS / len.max(1)).max(1);
    let reads = out.len() * len;
    if inner == 1 {
        for_each_chunk_of_work(out, chunk, reads, |c, out| {
            let first = c * chunk;
            for (o, out) in (first..).zip(out) {
                *out = ArrayView1::from(&x[o * len..][..len]).sum();
            }
        });
        return;
    }
    for_each_chunk_of_work(out, chunk, reads, |c, part| {
        // Cut where an outer index ends, so that each piece reads rows of one `(len, inner)` block.
        let mut e = c * chunk;
        let mut rest = part;
        while !rest.is_empty() {
            let (o, i) = (e / inner, e % inner);
            let n = (inner - i).min(rest.len());
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
            piece.fill(0.0);
            for k in 0..len {
                let row = &x[(o * len + k) * inner + i..][..piece.len()];
                piece.iter_mut().zip(row).for_each(|(p, &v)| *p += v);
            }
            e += piece.len();
            rest = tail;
        }
    });
}

impl ReduceKernels for CpuStorage {
    fn sum_axes(&self, axes: &[usize], scale: f32, out: &mut Self) {
        let (x, out) = (self.array(), out.array_mut());
        let Some(xs) = x.as_slice() else {
            // Not in standard layout (never made by kerust's kernels): ndarray's sums, one thread.
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
            return;
        };
        if axes.len() == x.ndim() {
            out.fill(sum_slice(xs) * scale);
            return;
        }
        let out = out.as_slice_mut().expect("outputs are contiguous");
        if axes.is_empty() {
            for_each(Zip::from(out).and(xs), |o, &x| *o = x * scale);
            return;
        }
        // One axis at a time, from the last, through a buffer for all but the final one.
        let mut shape = x.shape().to_vec();
        let mut acc: Option<Vec<f32>> = None;
        for (n, &ax) in axes.iter().enumerate() {
            let (len, inner) = (shape[ax], shape[ax + 1..].iter().product::<usize>());
            let src = acc.as_deref().unwrap_or(xs);
            if n + 1 == axes.len() {
                sum_axis(src, len, inner, out);
            } else {
                let mut next = vec![0.0; src.len() / len];
                sum_axis(src, len, inner, &mut next);
                acc = Some(next);
            }
            shape.remove(ax);
        }
        if scale != 1.0 {
            for_each(Zip::from(out), |o| *o *= scale);
        }
    }

    fn sum_axes_grad(&self, kept: &[usize], scale: f32, dst: &mut Self, accumulate: bool) {
        let gk = self.array().to_shape(kept).expect("gradient has the reduced shape");
        let d = dst.array_mut();
        if accumulate {
            for_each(Zip::from(d).and_broadcast(&gk), |d, &g| *d += scale * g);
        } else {
            for_each(Zip::from(d).and_broadcast(&gk), |d, &g| *d = scale * g);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::threads::at_thread_counts;

    /// Values whose sums round differently in another order.
    fn values(shape: &[usize]) -> ArrayD<f32> {
        let mut state = 1u32;
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1 << 24) as f32 * 2.0 - 0.7
        })
    }

    fn sum(x: &ArrayD<f32>, axes: &[usize], scale: f32) -> ArrayD<f32> {
        let mut shape = x.shape().to_vec();
        axes.iter().for_each(|&a| shape[a] = 1);
        let mut out = CpuStorage::from(ArrayD::zeros(IxDyn(&shape)));
        CpuStorage::from(x.clone()).sum_axes(axes, scale, &mut out);
        out.0
    }

    #[test]
    fn axis_sums_are_ndarrays_bit_for_bit_at_any_thread_count() {
        // Large enough to be split; axes last, middle, first, several, and one of length 1.
        let x = values(&[80, 50, 70]);
        assert!(x.len() >= crate::threads::PARALLEL_MIN_ELEMENTS);
        for (axes, scale) in [(&[2][..], 1.0), (&[1], 0.5), (&[0], 1.0), (&[2, 0], 0.25), (&[1, 0], 1.0)] {
            let mut want = x.clone();
            for &ax in axes {
                want = want.sum_axis(Axis(ax));
            }
            let want = want.mapv(|s| s * scale);
            for (threads, got) in (1..).zip(at_thread_counts(|| sum(&x, axes, scale))) {
                assert_eq!(
                    got.as_slice().unwrap(),
                    want.as_slice().unwrap(),
                    "axes {axes:?}, {threads} threads"
                );
            }
        }
        let column = values(&[3, 1, 4]);
        assert_eq!(sum(&column, &[1], 1.0).as_slice(), column.as_slice());
        // No axis: the values, scaled.
        assert_eq!(sum(&column, &[], 2.0), column.mapv(|v| v * 2.0));
    }

    #[test]
    fn a_large_total_is_the_same_at_any_thread_count() {
        let x = values(&[9, SUM_BLOCK / 2 + 3]);
        assert!(x.len() >= crate::threads::PARALLEL_MIN_ELEMENTS);
        let totals = at_thread_counts(|| sum(&x, &[1, 0], 1.0).as_slice().unwrap()[0].to_bits());
        assert!(totals.iter().all(|&t| t == totals[0]), "{totals:?}");
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        assert!((f64::from(f32::from_bits(totals[0])) - exact).abs() < 1e-2 * exact.abs().max(1.0));
        // A small one is ndarray's sum.
        let small = values(&[7, 9]);
        assert_eq!(sum(&small, &[1, 0], 1.0).as_slice().unwrap()[0], small.sum());
    }
}
