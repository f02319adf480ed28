//! `BatchNormalization`: normalizes each feature with batch statistics in training and moving statistics at
//! inference, the layer that shows how a layer keeps state across steps ([`CallContext::assign`]).
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{initializer_fn, strict_f32};
use super::{add_weight, CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::distributed::Replicas;
use crate::initializers::Initializer;
use crate::spec::Spec;
use crate::{Error, Result};

/// Keras' `layers.BatchNormalization`: `gamma * (x - mean) / sqrt(var + epsilon) + beta` per feature of `axis`.
///
/// In training, `mean` and `var` are the batch's (the biased variance, as Keras), and each training step
/// moves the non-trainable `moving_mean` and `moving_variance` toward them:
/// `moving = moving * momentum + batch * (1 - momentum)`. At inference (`evaluate`, `predict`) the moving
/// statistics are used. The weights, in Keras' order: `gamma`, `beta` (trainable), `moving_mean`,
/// `moving_variance` (non-trainable, counted as such in the summary, saved and loaded with the model).
///
/// Given a mask (from `Embedding(mask_zero)` upstream, one dimension less than the inputs), training takes the
/// moments of the unmasked steps only, as Keras does, and the mask passes on to the next layer.
///
/// Under a distributed model, [`BatchNormalization::synchronized`] takes the moments of the global batch
/// across the ranks (SyncBatchNorm) instead of each rank's share's.
///
/// Keras' defaults: `axis=-1`, `momentum=0.99`, `epsilon=1e-3`, `center` and `scale` on, `gamma` ones, `beta`
/// zeros, moving mean zeros, moving variance ones.
///
/// ```
/// use kerust::layers::{BatchNormalization, Dense};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(8).input_shape([4]))?;
/// model.add(BatchNormalization::new())?;
/// assert!(model.summary_string().contains("Non-trainable params: 16"));
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BatchNormalization {
    settings: BatchNormalizationConfig,
    built: Option<Built>,
}

/// The settings, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchNormalizationConfig {
    name: Option<String>,
    axis: i64,
    #[serde(deserialize_with = "strict_f32::momentum")]
    momentum: f32,
    #[serde(deserialize_with = "strict_f32::epsilon")]
    epsilon: f32,
    center: bool,
    scale: bool,
    #[serde(with = "initializer_fn")]
    beta_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    gamma_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    moving_mean_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    moving_variance_initializer: Spec<Initializer>,
    /// Keras' `synchronized`; absent from configs written before it existed.
    #[serde(default)]
    synchronized: bool,
    input_shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug)]
struct Built {
    /// The normalized axis, counting the batch axis as 0.
    axis: usize,
    gamma: Option<ParamId>,
    beta: Option<ParamId>,
    moving_mean: ParamId,
    moving_variance: ParamId,
    weights: Vec<ParamId>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    /// Batch normalization with Keras' defaults.
    pub fn new() -> Self {
        BatchNormalization {
            settings: BatchNormalizationConfig {
                name: None,
                axis: -1,
                momentum: 0.99,
                epsilon: 1e-3,
                center: true,
                scale: true,
                beta_initializer: Spec::Value(Initializer::Zeros),
                gamma_initializer: Spec::Value(Initializer::Ones),
                moving_mean_initializer: Spec::Value(Initializer::Zeros),
                moving_variance_initializer: Spec::Value(Initializer::Ones),
                synchronized: false,
                input_shape: None,
            },
            built: None,
        }
    }

    pub(crate) fn from_settings(settings: BatchNormalizationConfig) -> Self {
        BatchNormalization { settings, built: None }
    }

    /// The feature axis (default -1, the last; positive values count the batch axis as 0, as in Keras).
    pub fn axis(mut self, axis: i64) -> Self {
        self.settings.axis = axis;
        self
    }

    /// The moving statistics' momentum, in `[0, 1]` (default 0.99).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.settings.momentum = momentum;
        self
    }

    /// Added to the variance before its square root, `> 0` (default 1e-3).
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.settings.epsilon = epsilon;
        self
    }

    /// Whether to add the learned offset `beta` (default true).
    pub fn center(mut self, center: bool) -> Self {
        self.settings.center = center;
        self
    }

    /// Whether to multiply by the learned scale `gamma` (default true).
    pub fn scale(mut self, scale: bool) -> Self {
        self.settings.scale = scale;
        self
    }

    /// `beta`'s initializer (default `zeros`).
    pub fn beta_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.beta_initializer = init.into();
        self
    }

    /// `gamma`'s initializer (default `ones`).
    pub fn gamma_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.gamma_initializer = init.into();
        self
    }

    /// The moving mean's initializer (default `zeros`).
    pub fn moving_mean_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.moving_mean_initializer = init.into();
        self
    }

    /// The moving variance's initializer (default `ones`).
    pub fn moving_variance_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.moving_variance_initializer = init.into();
        self
    }

    /// Whether training normalizes by the statistics of the global batch across the ranks of a distributed
    /// model (Keras' `synchronized`, SyncBatchNorm; default false). Under
    /// [`Model::distribute`](crate::models::Model::distribute) with more than one rank, each rank computes the
    /// per-channel count, sum and sum of squared deviations of its share of the batch (of its unmasked steps
    /// given a mask), the ranks sum them (two allreduces: the counts and sums, then the squared deviations
    /// from the global mean), and every rank normalizes by the mean and variance of the whole batch; the
    /// backward pass sums the gradients of those sums across the ranks the same way. Training then gives the
    /// History, weights and moving statistics of one process (to float rounding), whatever the rank count or
    /// the cut of the batches. Without it, each rank normalizes its share by the share's own statistics. In
    /// one process, at inference, and for a frozen layer it changes nothing.
    ///
    /// Keras accepts it with the TensorFlow backend only (and there ignores it given a mask); a `.keras` file
    /// with `"synchronized": true` loads here, and kerust's own file keeps it. Every rank must run the step's
    /// collectives: a rank that fails in the middle of the forward or backward pass leaves the others waiting
    /// until [`DistributedOptions::collective_timeout`](crate::distributed::DistributedOptions::collective_timeout)
    /// ends the job, and `fit` refuses it together with
    /// [`DistributedOptions::overlap_gradients`](crate::distributed::DistributedOptions::overlap_gradients),
    /// whose communication thread would run collectives beside the backward pass's.
    ///
    /// ```
    /// use kerust::distributed::ThreadGroup;
    /// use kerust::layers::{BatchNormalization, Dense};
    /// use kerust::models::Sequential;
    /// use std::sync::Arc;
    ///
    /// let x = ndarray::Array2::<f32>::from_shape_fn((10, 3), |(i, j)| ((i * 3 + j) % 7) as f32);
    /// let y = ndarray::Array2::<f32>::from_shape_fn((10, 1), |(i, _)| i as f32 / 10.0);
    /// let train = |comm: Option<ThreadGroup>| -> kerust::Result<Vec<_>> {
    ///     let mut model = Sequential::new();
    ///     model.set_seed(1);
    ///     model.add(Dense::new(4).input_shape([3]))?;
    ///     model.add(BatchNormalization::new().synchronized(true))?;
    ///     model.add(Dense::new(1))?;
    ///     model.compile("mse", "sgd", [] as [&str; 0])?;
    ///     if let Some(comm) = comm {
    ///         model.distribute(Arc::new(comm));
    ///     }
    ///     model.fit(&x, &y).batch_size(5).epochs(2).shuffle(false).verbose(0).run()?;
    ///     Ok(model.get_weights())
    /// };
    /// let one = train(None)?;
    /// let ranks: Vec<_> = std::thread::scope(|s| {
    ///     let handles: Vec<_> =
    ///         ThreadGroup::new(2).into_iter().map(|comm| s.spawn(move || train(Some(comm)))).collect();
    ///     handles.into_iter().map(|h| h.join().unwrap()).collect::<kerust::Result<_>>()
    /// })?;
    /// // The moving mean (weight 4): the global batch's, as in one process (to float rounding).
    /// for (a, b) in ranks[0][4].iter().zip(&one[4]) {
    ///     assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    /// }
    /// assert_eq!(ranks[0], ranks[1]);
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn synchronized(mut self, synchronized: bool) -> Self {
        self.settings.synchronized = synchronized;
        self
    }

    super::settings_builders!();

    /// The forward pass; `mask` (of the input's shape without its last axis, 1.0 for a real step) restricts the
    /// training moments to the unmasked steps.
    fn normalize<'t>(&self, x: Var<'t>, mask: Option<Var<'t>>, ctx: &mut CallContext<'_>) -> Var<'t> {
        let b =
            self.built.as_ref().expect("BatchNormalization::call before build: models build layers first");
        let tape = x.tape();
        let (eps, momentum) = (self.settings.epsilon, self.settings.momentum);
        let gamma = b.gamma.map(|id| tape.param(id));
        let beta = b.beta.map(|id| tape.param(id));
        // Keras runs a frozen BatchNormalization (`trainable = False`) in inference mode, in training too, so
        // that fine-tuning above it neither renormalizes by the batch nor moves its statistics. Freezing turns
        // off its gamma and beta; one without either stays a training layer, as in Keras.
        let params = tape.params();
        let mut scale_and_offset = b.gamma.iter().chain(&b.beta).peekable();
        let frozen =
            scale_and_offset.peek().is_some() && scale_and_offset.all(|&id| !params.get(id).trainable);
        if !ctx.training || frozen {
            let (mean, variance) = (tape.param(b.moving_mean), tape.param(b.moving_variance));
            return x.batch_norm_with(b.axis, mean, variance, gamma, beta, eps);
        }
        // The moments of the global batch across the ranks (synchronized), of the unmasked steps, or the fused
        // node's own.
        let moments = match (ctx.replicas().filter(|_| self.settings.synchronized), mask) {
            (Some(replicas), mask) => Some(moments(x, mask, b.axis, Some(replicas))),
            (None, Some(mask)) => Some(masked_moments(x, mask, b.axis)),
            (None, None) => None,
        };
        let (y, batch) = match moments {
            None => {
                let (y, batch) = x.batch_norm(b.axis, gamma, beta, eps);
                (y, [batch.mean, batch.variance])
            }
            Some((mean, variance)) => {
                let y = x.batch_norm_with(b.axis, mean, variance, gamma, beta, eps);
                let device = tape.params().device();
                let on_device = |v: Var<'_>| v.with_value(|v| crate::device::Storage::from_array(device, v));
                (y, [on_device(mean), on_device(variance)])
            }
        };
        // Moving statistics, assigned after the step: moving * momentum + batch * (1 - momentum), with
        // Keras' `1 - momentum` (double precision, then cast), computed on the weights' device.
        let one_minus_momentum = crate::numeric::one_minus_as_keras(momentum);
        for (id, batch) in [b.moving_mean, b.moving_variance].into_iter().zip(batch) {
            let mut moving = tape.params().value(id).clone();
            moving.moving_average(&batch, momentum, one_minus_momentum);
            ctx.assign(id, moving);
        }
        y
    }
}

/// Keras' `_moments(inputs, mask)`: per feature of `axis`, the mean and biased variance of the steps whose mask
/// is 1, each sum divided by the count of such values plus Keras' fuzz factor (1e-7, so that a fully masked
/// batch gives 0, not 0 / 0). Gradients flow through both, as through the unmasked batch statistics.
fn masked_moments<'t>(x: Var<'t>, mask: Var<'t>, axis: usize) -> (Var<'t>, Var<'t>) {
    moments(x, Some(mask), axis, None)
}

/// The moments per feature of `axis` of the (unmasked) values, of this rank's batch, or of the global batch
/// across `replicas` (SyncBatchNorm): each rank's count and sum of its values are summed over the ranks in one
/// allreduce, giving the global mean; each rank's sum of squared deviations from that mean, in a second,
/// gives the biased variance. Two passes, as one process computes them (rather than `E[x^2] - E[x]^2`, which
/// loses digits when the mean is large). With a mask, Keras' fuzz factor is added to the count (see
/// [`masked_moments`]). Gradients flow through both sums to every rank.
fn moments<'t>(
    x: Var<'t>,
    mask: Option<Var<'t>>,
    axis: usize,
    replicas: Option<&Replicas>,
) -> (Var<'t>, Var<'t>) {
    let tape = x.tape();
    let shape = x.shape();
    let (ndim, last, channels) = (shape.len(), shape.len() - 1, shape[axis]);
    let reduced: Vec<usize> = (0..ndim).filter(|&a| a != axis).collect();
    let mut along = vec![1; ndim];
    along[axis] = channels;
    let ones = ndarray::ArrayD::ones(ndarray::IxDyn(&[channels]));
    // This rank's count of values per feature (no gradient: the mask is a constant), and the values that count.
    let (weights, count) = match mask {
        Some(mask) => {
            let mut spread = shape.clone();
            spread[last] = 1;
            let count = if axis == last {
                tape.constant(ones.view()).mul(mask.sum().reshape(&[1]))
            } else {
                let others: Vec<usize> = (0..last).filter(|&a| a != axis).collect();
                mask.sum_axes(&others, false).mul_scalar(shape[last] as f32)
            };
            (Some(mask.reshape(&spread)), count)
        }
        None => {
            let per_channel = shape.iter().product::<usize>() / channels.max(1);
            (None, tape.constant(ones.mapv(|o| o * per_channel as f32).view()))
        }
    };
    let masked = |v: Var<'t>| weights.map_or(v, |w| v.mul(w));
    let sum = masked(x).sum_axes(&reduced, false);
    // Across the ranks, the sums and counts travel in one buffer.
    let (sum, count) = match replicas {
        Some(replicas) => {
            let global = replicas.sum(tape.concat(&[sum, count], 0));
            let part = |range| global.slice_axis(0, range).expect("the two halves of the summed buffer");
            (part(0..channels), part(channels..2 * channels))
        }
        None => (sum, count),
    };
    // Keras' fuzz factor where the masked moments have it: a batch whose every step is masked gives 0.
    let count = if weights.is_some() { count.add_scalar(KERAS_EPSILON) } else { count };
    let mean = sum.div(count);
    let deviation = masked(x.sub(mean.reshape(&along)));
    let squares = deviation.square().sum_axes(&reduced, false);
    let squares = replicas.map_or(squares, |r| r.sum(squares));
    (mean, squares.div(count))
}

/// Keras' `backend.epsilon()`, the fuzz factor of its masked moments.
const KERAS_EPSILON: f32 = 1e-7;

impl Layer for BatchNormalization {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }

    super::settings_accessors!();

    fn uses_replicas(&self) -> bool {
        self.settings.synchronized
    }

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let s = &self.settings;
        if !(0.0..=1.0).contains(&s.momentum) {
            return Err(Error::invalid_argument("momentum", s.momentum, "must be in [0, 1]"));
        }
        if !(s.epsilon > 0.0 && s.epsilon.is_finite()) {
            return Err(Error::invalid_argument("epsilon", s.epsilon, "must be a finite number > 0"));
        }
        // Axes counting the batch as 0: -1 is the last; 0 (the batch) cannot be normalized over itself.
        let ndim = input_shape.len() as i64 + 1;
        let axis = if s.axis < 0 { s.axis + ndim } else { s.axis };
        if !(1..ndim).contains(&axis) {
            return Err(Error::invalid_argument(
                "axis",
                s.axis,
                format!(
                    "must name a feature axis of inputs {}: 1 to {} or -1 to -{}",
                    crate::shapes::shape_str(input_shape),
                    ndim - 1,
                    ndim - 1
                ),
            ));
        }
        let axis = axis as usize;
        let features = input_shape[axis - 1];
        let name = s.name.clone().unwrap_or_else(|| "batch_normalization".into());
        let mut weight = |what: &str, init: &Spec<Initializer>, trainable: bool| -> Result<ParamId> {
            let init = init.resolve()?;
            init.validate()?;
            add_weight(params, format!("{name}/{what}"), &[features], init, rng, trainable)
        };
        let gamma = s.scale.then(|| weight("gamma", &s.gamma_initializer, true)).transpose()?;
        let beta = s.center.then(|| weight("beta", &s.beta_initializer, true)).transpose()?;
        let moving_mean = weight("moving_mean", &s.moving_mean_initializer, false)?;
        let moving_variance = weight("moving_variance", &s.moving_variance_initializer, false)?;
        let weights = gamma.into_iter().chain(beta).chain([moving_mean, moving_variance]).collect();
        self.built = Some(Built { axis, gamma, beta, moving_mean, moving_variance, weights });
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        self.normalize(x, None, ctx)
    }

    /// Keras' BatchNormalization supports masking: the mask passes on, and in training the batch's moments
    /// are those of the unmasked steps only.
    fn supports_masking(&self) -> bool {
        true
    }

    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        let (x, mask) = (inputs[0], masks.first().copied().flatten());
        let shape = x.shape();
        match mask {
            Some(m) if m.shape() != shape[..shape.len() - 1] => {
                // Keras' ValueError; `call` returns no `Result`, so the model reports it after this layer.
                ctx.fail(Error::shape(
                    "BatchNormalization's mask",
                    format!("one dimension less than the inputs, {:?}", &shape[..shape.len() - 1]),
                    format!("mask.shape={:?}, inputs.shape={shape:?}", m.shape()),
                ));
                x
            }
            _ => self.normalize(x, mask, ctx),
        }
    }
    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        if let Some(b) = self.built.as_mut() {
            for id in
                b.gamma.iter_mut().chain(&mut b.beta).chain([&mut b.moving_mean, &mut b.moving_variance])
            {
                *id = new_id(*id);
            }
            b.weights.iter_mut().for_each(|id| *id = new_id(*id));
        }
        Ok(())
    }

    fn weights(&self) -> &[ParamId] {
        self.built.as_ref().map_or(&[], |b| &b.weights)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{array, ArrayD, IxDyn};

    use super::masked_moments;
    use crate::autodiff::{check_gradients, ParamStore, Tape};

    fn x() -> ArrayD<f32> {
        ArrayD::from_shape_fn(IxDyn(&[3, 4, 2]), |i| ((i[0] * 8 + i[1] * 2 + i[2]) as f32 * 0.37).sin())
    }

    fn mask() -> ArrayD<f32> {
        array![[0.0f32, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]].into_dyn()
    }

    #[test]
    fn masked_moments_are_those_of_the_unmasked_steps() {
        let (x, mask) = (x(), mask());
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        for axis in [2, 1] {
            let (mean, variance) = masked_moments(tape.constant(x.view()), tape.constant(mask.view()), axis);
            let (mean, variance) = (mean.value(), variance.value());
            for c in 0..x.shape()[axis] {
                let kept: Vec<f64> = x
                    .indexed_iter()
                    .filter(|(i, _)| i[axis] == c && mask[[i[0], i[1]]] == 1.0)
                    .map(|(_, &v)| f64::from(v))
                    .collect();
                let m = kept.iter().sum::<f64>() / kept.len() as f64;
                let v = kept.iter().map(|k| (k - m).powi(2)).sum::<f64>() / kept.len() as f64;
                assert!((f64::from(mean[c]) - m).abs() < 1e-6, "axis {axis}, feature {c}: mean");
                assert!((f64::from(variance[c]) - v).abs() < 1e-6, "axis {axis}, feature {c}: variance");
            }
        }
        // Every step masked: zeros, not 0 / 0 (Keras' fuzz factor).
        let none = ArrayD::zeros(IxDyn(&[3, 4]));
        let (mean, variance) = masked_moments(tape.constant(x.view()), tape.constant(none.view()), 2);
        assert_eq!(
            (mean.value(), variance.value()),
            (ArrayD::zeros(IxDyn(&[2])), ArrayD::zeros(IxDyn(&[2])))
        );
    }

    #[test]
    fn normalizing_by_masked_moments_has_the_gradients_of_finite_differences() {
        for axis in [2, 1] {
            check_gradients(&[x()], |v| {
                let m = v[0].tape().constant(mask().view());
                let (mean, variance) = masked_moments(v[0], m, axis);
                v[0].batch_norm_with(axis, mean, variance, None, None, 1e-3)
            })
            .unwrap_or_else(|e| panic!("axis {axis}: {e}"));
        }
    }
}
