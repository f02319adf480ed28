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
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{BatchNormInput, Storage};

/// The recorded node.
struct BatchNorm {
    /// `[x, (mean, variance at inference), (gamma), (beta)]`.
    inputs: Vec<usize>,
    x: usize,
    /// The given statistics (inference); `None` in training, where the batch's are used.
    stats: Option<(usize, usize)>,
    gamma: Option<usize>,
    beta: Option<usize>,
    axis: usize,
    channels: usize,
}

/// Batch statistics of one training-mode [`Var::batch_norm`]: per channel, the mean and the biased variance.
#[derive(Clone, Debug)]
pub struct BatchStatistics {
    /// The mean of each channel, shape `[channels]`, on the input's device.
    pub mean: Storage,
    /// The biased (divided by the count) variance of each channel, shape `[channels]`, on the input's device.
    pub variance: Storage,
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
    /// assert_eq!(stats.mean, array![2.0f32, 20.0].into_dyn());
    /// assert_eq!(stats.variance, array![1.0f32, 100.0].into_dyn());
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
        let c = shape[axis];
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
        let node = BatchNorm { inputs, x: self.id, stats, gamma: gamma_id, beta: beta_id, axis, channels: c };
        let x_id = self.id;
        self.tape.push(node, &shape, |v, out, aux| {
            let x = v.get(x_id);
            let (gamma, beta) = (gamma.map(|g| v.get(g.id)), beta.map(|b| v.get(b.id)));
            // The statistics the backward pass needs, mean and std per channel, are kept in the aux buffer.
            aux.fit(&[2, c]);
            match stats {
                Some((m, s)) => x.batch_norm(axis, v.get(m), v.get(s), gamma, beta, epsilon, out, aux),
                None => {
                    let (mut mean, mut variance) = (x.device().zeros(&[c]), x.device().zeros(&[c]));
                    x.batch_statistics(axis, &mut mean, &mut variance);
                    x.batch_norm(axis, &mean, &variance, gamma, beta, epsilon, out, aux);
                    if let Some(out) = stats_out {
                        *out = Some(BatchStatistics { mean, variance });
                    }
                }
            }
        })
    }
}

impl Kernel for BatchNorm {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let (axis, c) = (self.axis, self.channels);
        let x = ctx.value(self.x);
        let gamma = self.gamma.map(|id| ctx.value(id));
        // The mean and std the forward pass used.
        let saved = std::mem::take(ctx.aux);
        // Per channel, sum(g) and sum(g * xh).
        let mut sums = g.device().zeros(&[2, c]);
        g.batch_norm_sums(x, axis, &saved, &mut sums);
        let mut put = |id: Option<usize>, which: BatchNormInput| {
            if let Some((d, fresh)) = id.and_then(|id| ctx.grad(id, &[c])) {
                sums.batch_norm_channel_grad(which, &saved, gamma, d, !fresh);
            }
        };
        put(self.gamma, BatchNormInput::Gamma);
        put(self.beta, BatchNormInput::Beta);
        if let Some((mean, variance)) = self.stats {
            // Inference: the given statistics are inputs too.
            put(Some(mean), BatchNormInput::Mean);
            put(Some(variance), BatchNormInput::Variance);
        }
        if let Some((dx, fresh)) = ctx.grad(self.x, x.shape()) {
            let training = self.stats.is_none();
            g.batch_norm_input_grad(x, axis, &saved, &sums, gamma, training, dx, !fresh);
        }
        *ctx.aux = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{check_gradients, GradCheck, ParamStore, Tape, Tensor};
    use ndarray::{ArrayD, IxDyn};
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
            let (m, v) =
                (tape.constant(stats.mean.host().view()), tape.constant(stats.variance.host().view()));
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
}
