//! Batch normalization in one node: `(x - mean) / sqrt(variance + epsilon) * gamma + beta` per channel, with the
//! batch's statistics (training) or given ones (inference), forward and backward.
//!
//! The value is viewed as `(outer, channels, inner)`: `inner` is 1 for the last axis (Dense outputs, NHWC
//! images), the common case, where each of the `outer` rows holds one value per channel.
//!
//! The forward pass computes the same bits as the composition it replaces (`mean_axes`, `sub`, `square`,
//! `mean_axes`, `add_scalar`, `sqrt`, `div`, `mul`, `add`): the statistics are summed in the order
//! `mean_axes` sums (ndarray's `sum_axis` over each axis in turn, the last first), and each element takes the
//! same operations in the same order. Predictions, statistics and moving statistics of existing models are
//! unchanged. The backward pass is the closed form: with `xh = (x - mean) / std` and `M` values per channel,
//! `dx = gamma / std * (g - sum(g) / M - xh * sum(g * xh) / M)` in training, `dx = g * gamma / std` at
//! inference; `dgamma = sum(g * xh)`, `dbeta = sum(g)`.
use ndarray::{ArrayViewD, Axis, IxDyn};

use super::window::{for_each_task, wide_fn};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{Tensor, Var};
use crate::device::Storage;

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

/// The recorded node.
struct BatchNorm {
    /// `[x, (mean, variance at inference), (gamma), (beta)]`.
    inputs: Vec<usize>,
    x: usize,
    /// The given statistics (inference); `None` in training, where the batch's are used.
    stats: Option<(usize, usize)>,
    gamma: Option<usize>,
    beta: Option<usize>,
    layout: Layout,
}

/// Batch statistics of one training-mode [`Var::batch_norm`]: per channel, the mean and the biased variance.
#[derive(Clone, Debug)]
pub struct BatchStatistics {
    /// The mean of each channel, shape `[channels]`.
    pub mean: Tensor,
    /// The biased (divided by the count) variance of each channel, shape `[channels]`.
    pub variance: Tensor,
}

impl<'t> Var<'t> {
    /// Batch normalization with the batch's statistics (training mode): over every axis but `axis`,
    /// `(x - mean) / sqrt(variance + epsilon)`, times `gamma` and plus `beta` (each of shape `[channels]`) when
    /// given. Returns the output and the statistics, for moving averages.
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 10.0], [3.0, 30.0]].into_dyn().view());
    /// let (y, stats) = x.batch_norm(1, None, None, 1e-3);
    /// assert_eq!(stats.mean.iter().copied().collect::<Vec<_>>(), [2.0, 20.0]);
    /// assert_eq!(stats.variance.iter().copied().collect::<Vec<_>>(), [1.0, 100.0]);
    /// assert!((y.value()[[0, 0]] + 1.0).abs() < 1e-3);
    /// ```
    ///
    /// # Panics
    /// If `axis` is not an axis of `self` or `gamma`/`beta` are not `[channels]`; layers check this when built.
    pub fn batch_norm(
        self,
        axis: usize,
        gamma: Option<Var<'t>>,
        beta: Option<Var<'t>>,
        epsilon: f32,
    ) -> (Var<'t>, BatchStatistics) {
        let mut stats = None;
        let y = self.batch_norm_node(axis, None, gamma, beta, epsilon, Some(&mut stats));
        (y, stats.expect("the forward pass computes the statistics"))
    }

    /// Batch normalization with given statistics (inference mode): `(x - mean) / sqrt(variance + epsilon)`,
    /// times `gamma` and plus `beta` when given, per channel of `axis`; `mean`, `variance`, `gamma` and `beta`
    /// have shape `[channels]`. Gradients flow to all of them.
    ///
    /// # Panics
    /// As [`Var::batch_norm`].
    pub fn batch_norm_with(
        self,
        axis: usize,
        mean: Var<'t>,
        variance: Var<'t>,
        gamma: Option<Var<'t>>,
        beta: Option<Var<'t>>,
        epsilon: f32,
    ) -> Var<'t> {
        self.batch_norm_node(axis, Some((mean, variance)), gamma, beta, epsilon, None)
    }

    fn batch_norm_node(
        self,
        axis: usize,
        given: Option<(Var<'t>, Var<'t>)>,
        gamma: Option<Var<'t>>,
        beta: Option<Var<'t>>,
        epsilon: f32,
        stats_out: Option<&mut Option<BatchStatistics>>,
    ) -> Var<'t> {
        let shape = self.shape();
        assert!(axis < shape.len(), "batch_norm: axis {axis} of a value of shape {shape:?}");
        let layout = Layout::new(&shape, axis);
        let c = layout.channels;
        let named = [
            ("mean", given.map(|g| g.0)),
            ("variance", given.map(|g| g.1)),
            ("gamma", gamma),
            ("beta", beta),
        ];
        for (what, v) in named {
            if let Some(v) = v {
                assert_eq!(
                    v.shape(),
                    [c],
                    "batch_norm: {what} needs shape [{c}] for {shape:?} on axis {axis}"
                );
            }
        }
        let mut inputs = vec![self.id];
        let stats = given.map(|(m, v)| {
            inputs.extend([m.id, v.id]);
            (m.id, v.id)
        });
        let gamma_id = gamma.map(|g| {
            inputs.push(g.id);
            g.id
        });
        let beta_id = beta.map(|b| {
            inputs.push(b.id);
            b.id
        });
        let node = BatchNorm { inputs, x: self.id, stats, gamma: gamma_id, beta: beta_id, layout };
        let x_id = self.id;
        self.tape.push(node, &shape, |v, out, aux| {
            let x = v.get(x_id);
            let (mean, variance) = match stats {
                Some((m, s)) => (v.get(m).iter().copied().collect(), v.get(s).iter().copied().collect()),
                None => batch_statistics(&x, axis, &layout),
            };
            // `sqrt(variance + epsilon)` and the element-wise rule exactly as the composition computes them.
            let std: Vec<f32> = variance.iter().map(|&s| (s + epsilon).sqrt()).collect();
            // Multiplying by 1 and adding -0 change no value (not even a zero's sign), so absent weights need
            // no separate loop.
            let gamma = gamma.map_or_else(|| vec![1.0; c], |g| v.get(g.id).iter().copied().collect());
            let beta = beta.map_or_else(|| vec![-0.0; c], |b| v.get(b.id).iter().copied().collect());
            let xs = x.as_slice().expect("tape values and parameters are contiguous");
            let ys = out.as_slice_mut().expect("owned buffers are contiguous");
            let per = layout.rows_per_task() * layout.row();
            let work: Vec<_> = ys.chunks_mut(per).zip(xs.chunks(per)).collect();
            for_each_task(work, |(y, x)| normalize(x, y, layout.inner, &mean, &std, &gamma, &beta));
            // The statistics the backward pass needs: mean and std per channel.
            crate::autodiff::fit_buffer(aux, &[2, c]);
            let a = aux.as_slice_mut().expect("owned buffers are contiguous");
            a[..c].copy_from_slice(&mean);
            a[c..].copy_from_slice(&std);
            if let Some(out) = stats_out {
                *out = Some(BatchStatistics {
                    mean: Tensor::from_shape_vec(IxDyn(&[c]), mean).expect("one per channel"),
                    variance: Tensor::from_shape_vec(IxDyn(&[c]), variance).expect("one per channel"),
                });
            }
        })
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

impl Kernel for BatchNorm {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let l = self.layout;
        let c = l.channels;
        let xv = ctx.value(self.x);
        let xs = xv.as_slice().expect("tape values are contiguous");
        let (mean, std) = ctx.aux.cpu().as_slice().expect("owned buffers are contiguous").split_at(c);
        let (mean, std) = (mean.to_vec(), std.to_vec());
        let gamma: Vec<f32> = match self.gamma {
            Some(id) => ctx.value(id).iter().copied().collect(),
            None => vec![1.0; c],
        };
        let gs = g.as_slice_mut().expect("gradient buffers are contiguous");
        // Per channel, sum(g) and sum(g * xh), task by task, then added in task order.
        let per = l.rows_per_task() * l.row();
        let tasks = gs.len().div_ceil(per.max(1));
        let mut partials = vec![0.0f32; tasks * 2 * c];
        let work: Vec<_> = gs.chunks(per).zip(xs.chunks(per)).zip(partials.chunks_mut(2 * c)).collect();
        for_each_task(work, |((g, x), part)| channel_sums(g, x, l.inner, &mean, &std, part));
        let (mut sum_g, mut sum_gx) = (vec![0.0f32; c], vec![0.0f32; c]);
        for part in partials.chunks_exact(2 * c) {
            sum_g.iter_mut().zip(&part[..c]).for_each(|(s, &p)| *s += p);
            sum_gx.iter_mut().zip(&part[c..]).for_each(|(s, &p)| *s += p);
        }
        let put = |ctx: &mut BackwardCtx<'_, '_>, id: Option<usize>, values: &dyn Fn(usize) -> f32| {
            if let Some((d, fresh)) = id.and_then(|id| ctx.grad(id, &[c])) {
                let d = d.as_slice_mut().expect("gradient buffers are contiguous");
                d.iter_mut()
                    .enumerate()
                    .for_each(|(i, d)| *d = if fresh { values(i) } else { *d + values(i) });
            }
        };
        put(ctx, self.gamma, &|i| sum_gx[i]);
        put(ctx, self.beta, &|i| sum_g[i]);
        // dx = k * (g - a - xh * b) per channel: k = gamma / std, and the batch's terms a, b in training.
        let k: Vec<f32> = gamma.iter().zip(&std).map(|(&g, &s)| g / s).collect();
        let m = l.count().max(1) as f32;
        let (a, b): (Vec<f32>, Vec<f32>) = match self.stats {
            Some((mean_id, var_id)) => {
                // Inference: the given statistics are inputs too. d/dmean = -sum(g) * k; with std = sqrt(v + e),
                // d/dv = sum(g * (x - mean)) * gamma * -1/2 std^-3 = -sum(g * xh) * k / (2 std).
                put(ctx, Some(mean_id), &|i| -sum_g[i] * k[i]);
                put(ctx, Some(var_id), &|i| -0.5 * sum_gx[i] * k[i] / std[i]);
                (vec![0.0; c], vec![0.0; c])
            }
            None => (sum_g.iter().map(|s| s / m).collect(), sum_gx.iter().map(|s| s / m).collect()),
        };
        let Some((dx, fresh)) = ctx.grad(self.x, xv.shape()) else { return };
        let dx = dx.as_slice_mut().expect("gradient buffers are contiguous");
        let work: Vec<_> = dx.chunks_mut(per).zip(gs.chunks(per)).zip(xs.chunks(per)).collect();
        let coef = Coefficients { mean: &mean, std: &std, k: &k, a: &a, b: &b };
        for_each_task(work, |((dx, g), x)| input_gradient(dx, g, x, l.inner, &coef, fresh));
    }
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
    use crate::autodiff::{check_gradients, GradCheck, ParamStore, Tape};
    use ndarray::ArrayD;
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64, low: f32, high: f32) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(low..high))
    }

    /// Shapes and axes: channels last (2-D and 4-D), channels in the middle, a single channel, length-1 axes.
    fn cases() -> Vec<(Vec<usize>, usize)> {
        vec![
            (vec![5, 3], 1),
            (vec![2, 3, 4, 5], 3),
            (vec![3, 2, 3, 2], 1),
            (vec![2, 4, 3], 1),
            (vec![4, 3, 1], 2),
            (vec![1, 3, 1, 4], 3),
            (vec![3, 2, 2], 0),
        ]
    }

    /// The composition the layer used before: mean_axes, sub, square, mean_axes, add_scalar, sqrt, div, mul, add.
    fn composite<'t>(x: Var<'t>, axis: usize, gamma: Var<'t>, beta: Var<'t>, eps: f32) -> Var<'t> {
        let shape = x.shape();
        let stats: Vec<usize> =
            shape.iter().enumerate().map(|(i, &n)| if i == axis { n } else { 1 }).collect();
        let reduced: Vec<usize> = (0..shape.len()).filter(|&i| i != axis).collect();
        let mean = x.mean_axes(&reduced, true);
        let centered = x.sub(mean);
        let variance = centered.square().mean_axes(&reduced, true);
        let y = centered.div(variance.add_scalar(eps).sqrt());
        y.mul(gamma.reshape(&stats)).add(beta.reshape(&stats))
    }

    #[test]
    fn forward_is_bit_identical_to_the_composition() {
        for (i, (shape, axis)) in cases().into_iter().enumerate() {
            let c = shape[axis];
            let x = random(&shape, i as u64, -2.0, 3.0);
            let (g, b) = (random(&[c], 50 + i as u64, 0.5, 1.5), random(&[c], 90 + i as u64, -1.0, 1.0));
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let [xv, gv, bv] = [&x, &g, &b].map(|t| tape.constant(t.view()));
            let want = composite(xv, axis, gv, bv, 1e-3).value();
            let (y, stats) = xv.batch_norm(axis, Some(gv), Some(bv), 1e-3);
            let got = y.value();
            assert_eq!(got.shape(), want.shape());
            let bits = |t: &Tensor| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "case {i}: {shape:?} axis {axis}");
            // Inference with the batch's statistics gives the same bits too.
            let (m, v) = (tape.constant(stats.mean.view()), tape.constant(stats.variance.view()));
            let inferred = xv.batch_norm_with(axis, m, v, Some(gv), Some(bv), 1e-3).value();
            assert_eq!(bits(&inferred), bits(&want), "case {i}: inference");
        }
    }

    #[test]
    fn training_gradients_match_finite_differences() {
        // A larger step than the default: normalized outputs depend on x through its statistics, and the
        // check's f32 differences need the signal.
        let check = GradCheck { epsilon: 1e-2, rtol: 2e-2, atol: 2e-3, ..Default::default() };
        for (i, (shape, axis)) in cases().into_iter().enumerate() {
            let c = shape[axis];
            let inputs = [
                random(&shape, i as u64, -2.0, 2.0),
                random(&[c], 50 + i as u64, 0.5, 1.5),
                random(&[c], 90 + i as u64, -1.0, 1.0),
            ];
            check
                .check(&inputs, |v| v[0].batch_norm(axis, Some(v[1]), Some(v[2]), 1e-3).0)
                .unwrap_or_else(|e| panic!("case {i} {shape:?} axis {axis}: {e}"));
            check
                .check(&inputs[..1], |v| v[0].batch_norm(axis, None, None, 1e-2).0)
                .unwrap_or_else(|e| panic!("case {i} without weights: {e}"));
        }
    }

    #[test]
    fn inference_gradients_match_finite_differences() {
        for (i, (shape, axis)) in cases().into_iter().enumerate() {
            let c = shape[axis];
            let inputs = [
                random(&shape, i as u64, -2.0, 2.0),
                random(&[c], 10 + i as u64, -0.5, 0.5),
                random(&[c], 20 + i as u64, 0.5, 1.5),
                random(&[c], 50 + i as u64, 0.5, 1.5),
                random(&[c], 90 + i as u64, -1.0, 1.0),
            ];
            check_gradients(&inputs, |v| {
                v[0].batch_norm_with(axis, v[1], v[2], Some(v[3]), Some(v[4]), 1e-3)
            })
            .unwrap_or_else(|e| panic!("case {i} {shape:?} axis {axis}: {e}"));
        }
    }

    #[test]
    fn gradients_match_the_composition() {
        // The closed form against the chain rule through the composition, on a batch of NHWC images.
        let (shape, axis) = (vec![6, 5, 4, 3], 3);
        let x = random(&shape, 1, -2.0, 2.0);
        let (g, b) = (random(&[3], 2, 0.5, 1.5), random(&[3], 3, -1.0, 1.0));
        let r = random(&shape, 4, -1.0, 1.0);
        let grads = |fused: bool| {
            let mut store = ParamStore::new();
            let ids = [&x, &g, &b].map(|t| store.add("t", t.clone(), true));
            let tape = Tape::new(&store);
            let [xv, gv, bv] = ids.map(|id| tape.param(id));
            let y = if fused {
                xv.batch_norm(axis, Some(gv), Some(bv), 1e-3).0
            } else {
                composite(xv, axis, gv, bv, 1e-3)
            };
            let loss = y.mul(tape.constant(r.view())).sum();
            let mut out = crate::autodiff::Gradients::new();
            tape.backward(loss, &mut out).unwrap();
            ids.map(|id| out.get(id).unwrap().to_array())
        };
        let (fused, chain) = (grads(true), grads(false));
        for (f, c) in fused.iter().zip(&chain) {
            assert!(f.iter().zip(c).all(|(a, b)| (a - b).abs() < 1e-5 * (1.0 + b.abs())), "{f} vs {c}");
        }
    }

    #[test]
    fn a_reused_input_gets_both_gradients() {
        let inputs = [random(&[4, 3], 1, -2.0, 2.0), random(&[3], 2, 0.5, 1.5)];
        let check = GradCheck { epsilon: 1e-2, rtol: 2e-2, atol: 2e-3, ..Default::default() };
        check
            .check(&inputs, |v| v[0].batch_norm(1, Some(v[1]), None, 1e-3).0.add(v[0].mul(v[0])))
            .expect("accumulated");
    }

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
