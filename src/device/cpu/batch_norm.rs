//! Batch normalization on the CPU: outer rows split into shape-sized tasks (so that sums do not depend on the
//! thread count), the statistics summed as ndarray's `sum_axis` sums, the per-element loops in AVX2 copies.
use ndarray::{ArrayViewD, Axis};

use super::schedule::{for_each_task, wide_fn};
use super::CpuStorage;
use crate::device::{BatchNormInput, BatchNormKernels};

type Tensor = ndarray::ArrayD<f32>;

/// The value as `(outer, channels, inner)`.
#[derive(Clone, Copy, Debug)]
struct Layout {
    outer: usize,
    channels: usize,
    inner: usize,
}

impl Layout {
    fn new(shape: &[usize], axis: usize) -> Self {
        Layout {
            outer: shape[..axis].iter().product(),
            channels: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }
    /// Elements of one outer row.
    fn row(&self) -> usize {
        self.channels * self.inner
    }
    /// Values per channel.
    fn count(&self) -> usize {
        self.outer * self.inner
    }
    /// Outer rows per task: a shape-only choice, so that sums do not depend on the thread count.
    fn rows_per_task(&self) -> usize {
        const TASK_ELEMENTS: usize = 64 * 1024;
        (TASK_ELEMENTS / self.row().max(1)).max(1)
    }
}

fn slice(s: &CpuStorage) -> &[f32] {
    s.array().as_slice().expect("buffers are contiguous")
}

fn slice_mut(s: &mut CpuStorage) -> &mut [f32] {
    s.array_mut().as_slice_mut().expect("buffers are contiguous")
}

/// A per-channel buffer, or `absent` for each of `c` channels.
fn per_channel(s: Option<&CpuStorage>, c: usize, absent: f32) -> Vec<f32> {
    s.map_or_else(|| vec![absent; c], |s| s.array().iter().copied().collect())
}

impl BatchNormKernels for CpuStorage {
    fn batch_statistics(&self, axis: usize, mean: &mut Self, variance: &mut Self) {
        let x = self.array().view();
        let (m, v) = batch_statistics(&x, axis, &Layout::new(x.shape(), axis));
        slice_mut(mean).copy_from_slice(&m);
        slice_mut(variance).copy_from_slice(&v);
    }

    fn batch_norm(
        &self,
        axis: usize,
        mean: &Self,
        variance: &Self,
        gamma: Option<&Self>,
        beta: Option<&Self>,
        epsilon: f32,
        out: &mut Self,
        saved: &mut Self,
    ) {
        let layout = Layout::new(self.array().shape(), axis);
        let c = layout.channels;
        let (mean, variance) = (slice(mean), slice(variance));
        // `sqrt(variance + epsilon)` and the element-wise rule exactly as the composition computes them.
        let std: Vec<f32> = variance.iter().map(|&s| (s + epsilon).sqrt()).collect();
        // Multiplying by 1 and adding -0 change no value (not even a zero's sign), so absent weights need
        // no separate loop.
        let gamma = per_channel(gamma, c, 1.0);
        let beta = per_channel(beta, c, -0.0);
        let xs = slice(self);
        let ys = slice_mut(out);
        let per = layout.rows_per_task() * layout.row();
        let work: Vec<_> = ys.chunks_mut(per).zip(xs.chunks(per)).collect();
        for_each_task(work, |(y, x)| normalize(x, y, layout.inner, mean, &std, &gamma, &beta));
        let a = slice_mut(saved);
        a[..c].copy_from_slice(mean);
        a[c..].copy_from_slice(&std);
    }

    fn batch_norm_sums(&self, x: &Self, axis: usize, saved: &Self, sums: &mut Self) {
        let l = Layout::new(x.array().shape(), axis);
        let c = l.channels;
        let (mean, std) = slice(saved).split_at(c);
        let (gs, xs) = (slice(self), slice(x));
        // Per channel, sum(g) and sum(g * xh), task by task, then added in task order.
        let per = l.rows_per_task() * l.row();
        let tasks = gs.len().div_ceil(per.max(1));
        let mut partials = vec![0.0f32; tasks * 2 * c];
        let work: Vec<_> = gs.chunks(per).zip(xs.chunks(per)).zip(partials.chunks_mut(2 * c)).collect();
        for_each_task(work, |((g, x), part)| channel_sums(g, x, l.inner, mean, std, part));
        let (sum_g, sum_gx) = slice_mut(sums).split_at_mut(c);
        sum_g.fill(0.0);
        sum_gx.fill(0.0);
        for part in partials.chunks_exact(2 * c) {
            sum_g.iter_mut().zip(&part[..c]).for_each(|(s, &p)| *s += p);
            sum_gx.iter_mut().zip(&part[c..]).for_each(|(s, &p)| *s += p);
        }
    }

    fn batch_norm_channel_grad(
        &self,
        which: BatchNormInput,
        saved: &Self,
        gamma: Option<&Self>,
        out: &mut Self,
        accumulate: bool,
    ) {
        let c = out.array().len();
        let (sum_g, sum_gx) = slice(self).split_at(c);
        let std = &slice(saved)[c..];
        let gamma = per_channel(gamma, c, 1.0);
        let k = |i: usize| gamma[i] / std[i];
        let values = |i: usize| match which {
            BatchNormInput::Gamma => sum_gx[i],
            BatchNormInput::Beta => sum_g[i],
            // The given statistics are inputs too. d/dmean = -sum(g) * k; with std = sqrt(v + e),
            // d/dv = sum(g * (x - mean)) * gamma * -1/2 std^-3 = -sum(g * xh) * k / (2 std).
            BatchNormInput::Mean => -sum_g[i] * k(i),
            BatchNormInput::Variance => -0.5 * sum_gx[i] * k(i) / std[i],
        };
        slice_mut(out)
            .iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = if accumulate { *d + values(i) } else { values(i) });
    }

    fn batch_norm_input_grad(
        &self,
        x: &Self,
        axis: usize,
        saved: &Self,
        sums: &Self,
        gamma: Option<&Self>,
        training: bool,
        dx: &mut Self,
        accumulate: bool,
    ) {
        let l = Layout::new(x.array().shape(), axis);
        let c = l.channels;
        let (mean, std) = slice(saved).split_at(c);
        let (sum_g, sum_gx) = slice(sums).split_at(c);
        let gamma = per_channel(gamma, c, 1.0);
        // dx = k * (g - a - xh * b) per channel: k = gamma / std, and the batch's terms a, b in training.
        let k: Vec<f32> = gamma.iter().zip(std).map(|(&g, &s)| g / s).collect();
        let m = l.count().max(1) as f32;
        let (a, b): (Vec<f32>, Vec<f32>) = if training {
            (sum_g.iter().map(|s| s / m).collect(), sum_gx.iter().map(|s| s / m).collect())
        } else {
            (vec![0.0; c], vec![0.0; c])
        };
        let per = l.rows_per_task() * l.row();
        let work: Vec<_> =
            slice_mut(dx).chunks_mut(per).zip(slice(self).chunks(per)).zip(slice(x).chunks(per)).collect();
        let coef = Coefficients { mean, std, k: &k, a: &a, b: &b };
        let fresh = !accumulate;
        for_each_task(work, |((dx, g), x)| input_gradient(dx, g, x, l.inner, &coef, fresh));
    }
}

wide_fn! {
    /// `y = (x - mean) / std * gamma + beta` on consecutive outer rows.
    fn normalize(x: &[f32], y: &mut [f32], inner: usize, mean: &[f32], std: &[f32], gamma: &[f32], beta: &[f32]) {
        let f = |x: f32, c: usize| (x - mean[c]) / std[c] * gamma[c] + beta[c];
        for_each_channel(x, y, inner, mean.len(), |x, y, c| *y = f(x, c));
    }
}

/// Calls `f(x, y, channel)` for every element of consecutive outer rows.
#[inline(always)]
fn for_each_channel(
    x: &[f32],
    y: &mut [f32],
    inner: usize,
    channels: usize,
    mut f: impl FnMut(f32, &mut f32, usize),
) {
    if inner == 1 {
        for (x, y) in x.chunks_exact(channels).zip(y.chunks_exact_mut(channels)) {
            for (c, (&x, y)) in x.iter().zip(y).enumerate() {
                f(x, y, c);
            }
        }
    } else {
        for (c, (x, y)) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)).enumerate() {
            let c = c % channels;
            x.iter().zip(y).for_each(|(&x, y)| f(x, y, c));
        }
    }
}

/// The mean and biased variance per channel, summed as `mean_axes` sums: see the module's documentation.
fn batch_statistics(x: &ArrayViewD<'_, f32>, axis: usize, layout: &Layout) -> (Vec<f32>, Vec<f32>) {
    let scale = 1.0 / layout.count().max(1) as f32;
    let xs = x.as_slice().expect("tape values are contiguous");
    let c = layout.channels;
    if layout.inner == 1 && c > 1 {
        // The channel axis has the smallest stride, so `sum_axis` adds whole sub-arrays in index order along each
        // reduced axis: nested running sums, one level per axis, which `nested_sums` reproduces in one pass.
        let dims = &x.shape()[..axis];
        let mean: Vec<f32> = nested_sums(xs, c, dims, |x, _| x).into_iter().map(|s| s * scale).collect();
        let variance = nested_sums(xs, c, dims, |x, c| {
            let d = x - mean[c];
            d * d
        });
        (mean, variance.into_iter().map(|s| s * scale).collect())
    } else {
        // Other layouts are rare (channels-first images): the composition's own code.
        let reduce = |t: Tensor| {
            let mut acc = t;
            for ax in (0..x.ndim()).rev().filter(|&ax| ax != axis) {
                acc = acc.sum_axis(Axis(ax));
            }
            acc.iter().map(|&s| s * scale).collect::<Vec<f32>>()
        };
        let mean = reduce(x.to_owned());
        let mut squares = x.to_owned();
        let inner = layout.inner;
        for (i, v) in squares
            .as_slice_mut()
            .expect("owned copies of contiguous values are contiguous")
            .iter_mut()
            .enumerate()
        {
            // The composition's `sub` then `square`.
            let d = *v - mean[(i / inner) % c];
            *v = d * d;
        }
        let variance = reduce(squares);
        (mean, variance)
    }
}

/// Per channel, the sum of `f(value, channel)` over rows `(dims..., channels)`, as ndarray's `sum_axis` adds
/// them over each of `dims` in turn from the last: level `l` holds the running sum along `dims[l]`, which is
/// added into level `l - 1` (and restarted) each time it completes.
fn nested_sums(x: &[f32], c: usize, dims: &[usize], f: impl Fn(f32, usize) -> f32) -> Vec<f32> {
    let levels = dims.len();
    let mut acc = vec![vec![0.0f32; c]; levels];
    let mut index = vec![0usize; levels];
    for row in x.chunks_exact(c) {
        let inner = &mut acc[levels - 1];
        inner.iter_mut().zip(row).enumerate().for_each(|(ch, (a, &v))| *a += f(v, ch));
        // Carry completed levels upward.
        let mut l = levels - 1;
        loop {
            index[l] += 1;
            if index[l] < dims[l] || l == 0 {
                break;
            }
            index[l] = 0;
            let (upper, lower) = acc.split_at_mut(l);
            upper[l - 1].iter_mut().zip(lower[0].iter_mut()).for_each(|(u, s)| {
                *u += *s;
                *s = 0.0;
            });
            l -= 1;
        }
    }
    acc.swap_remove(0)
}

/// Per-channel constants of the input gradient.
struct Coefficients<'a> {
    mean: &'a [f32],
    std: &'a [f32],
    k: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
}

wide_fn! {
    /// `sum(g)` into `part[..c]` and `sum(g * xh)` into `part[c..]`, over consecutive outer rows.
    fn channel_sums(g: &[f32], x: &[f32], inner: usize, mean: &[f32], std: &[f32], part: &mut [f32]) {
        let c = mean.len();
        let (sg, sgx) = part.split_at_mut(c);
        if inner == 1 {
            for (g, x) in g.chunks_exact(c).zip(x.chunks_exact(c)) {
                for ch in 0..c {
                    sg[ch] += g[ch];
                    sgx[ch] += g[ch] * ((x[ch] - mean[ch]) / std[ch]);
                }
            }
        } else {
            for (i, (g, x)) in g.chunks_exact(inner).zip(x.chunks_exact(inner)).enumerate() {
                let ch = i % c;
                let (m, s) = (mean[ch], std[ch]);
                sg[ch] += g.iter().sum::<f32>();
                sgx[ch] += g.iter().zip(x).map(|(&g, &x)| g * ((x - m) / s)).sum::<f32>();
            }
        }
    }
}

wide_fn! {
    /// `dx = k * (g - a - xh * b)` (written if `fresh`, else added), over consecutive outer rows.
    fn input_gradient(dx: &mut [f32], g: &[f32], x: &[f32], inner: usize, k: &Coefficients<'_>, fresh: bool) {
        let c = k.mean.len();
        let f = |g: f32, x: f32, ch: usize| k.k[ch] * (g - k.a[ch] - (x - k.mean[ch]) / k.std[ch] * k.b[ch]);
        let put = |d: &mut f32, v: f32| *d = if fresh { v } else { *d + v };
        if inner == 1 {
            for ((dx, g), x) in dx.chunks_exact_mut(c).zip(g.chunks_exact(c)).zip(x.chunks_exact(c)) {
                for ch in 0..c {
                    put(&mut dx[ch], f(g[ch], x[ch], ch));
                }
            }
        } else {
            let blocks = dx.chunks_exact_mut(inner).zip(g.chunks_exact(inner)).zip(x.chunks_exact(inner));
            for (i, ((dx, g), x)) in blocks.enumerate() {
                let ch = i % c;
                dx.iter_mut().zip(g).zip(x).for_each(|((d, &g), &x)| put(d, f(g, x, ch)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use rand::{Rng, SeedableRng};

    #[test]
    fn nested_sums_follow_sum_axis() {
        // A sum whose rounding depends on the grouping: large and small values mixed.
        let shape = [3, 5, 7, 2];
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let x = ArrayD::from_shape_fn(IxDyn(&shape), |_| {
            rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-4..5))
        });
        let mut acc = x.clone();
        for ax in [2, 1, 0] {
            acc = acc.sum_axis(Axis(ax));
        }
        let got = nested_sums(x.as_slice().unwrap(), 2, &shape[..3], |v, _| v);
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            acc.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
