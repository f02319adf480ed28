//! Losses, with Keras' names, formulas and defaults.
//!
//! Every loss is written as forward operations on [`Var`], so its gradient comes from the tape. The reduction is
//! Keras' default, `"sum_over_batch_size"`: the mean of the per-sample losses (each loss also exposes its
//! per-sample values through an inherent `per_sample` method).
//!
//! A softmax (or sigmoid) output followed by a cross-entropy on probabilities is computed the stable, fused way
//! from the logits recorded on the tape, as Keras does: `log` of a saturated softmax never happens.
//!
//! ```
//! use kerust::autodiff::{ParamStore, Tape};
//! use kerust::losses::{self, CategoricalCrossentropy, Loss};
//! use ndarray::array;
//!
//! let params = ParamStore::new();
//! let tape = Tape::new(&params);
//! let y_true = tape.constant(array![[0.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]].into_dyn().view());
//! let y_pred = tape.constant(array![[0.05f32, 0.95, 0.0], [0.1, 0.8, 0.1]].into_dyn().view());
//!
//! // Keras' docstring example: (0.0513 + 2.3026) / 2
//! let loss = CategoricalCrossentropy::new().call(y_true, y_pred);
//! assert!((loss.item() - 1.177).abs() < 1e-3);
//!
//! // The same loss by name, as `model.compile` resolves it.
//! let by_name = losses::get("categorical_crossentropy").unwrap();
//! assert_eq!(by_name.call(y_true, y_pred).item(), loss.item());
//! ```
use ndarray::ArrayViewD;

use crate::autodiff::Var;
use crate::{Error, Result};

/// Keras' fuzz factor: probabilities are clipped to `[EPSILON, 1 - EPSILON]` before their logarithm.
pub const EPSILON: f32 = 1e-7;

/// A loss: forward code on the tape, so its gradient comes from [`crate::autodiff`].
pub trait Loss: Send + Sync {
    /// The Keras name, e.g. `"categorical_crossentropy"`.
    fn name(&self) -> &str;

    /// Checks targets against the model's per-sample output shape (without the batch axis) before any training:
    /// shapes, and values where the loss needs them (e.g. class indices in range for sparse losses).
    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()>;

    /// The loss of each sample, before reduction: shape `(batch,)`, or `(batch, ...)` for losses that reduce
    /// only the last axis (as Keras' loss functions return them).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t>;

    /// The loss of one batch: a scalar, the mean over samples (Keras' `sum_over_batch_size`).
    fn call<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        self.per_sample(y_true, y_pred).mean()
    }

    /// The loss of one batch with a weight per sample (`sample_weight`, shape `(batch,)`): Keras'
    /// `sum_over_batch_size` of the weighted values, `sum(loss_i * w_i) / n`, so that weights of 1 give
    /// [`Loss::call`].
    fn weighted<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>, sample_weight: Var<'t>) -> Var<'t> {
        let values = self.per_sample(y_true, y_pred);
        let shape = values.shape();
        let mut weight_shape = vec![1; shape.len().max(1)];
        weight_shape[0] = sample_weight.shape().first().copied().unwrap_or(1);
        values.mul(sample_weight.reshape(&weight_shape)).mean()
    }

    /// The settings by Keras' argument names (`from_logits`, `label_smoothing`, `delta`); booleans as 0 or 1.
    /// Saved with a model and read back by [`from_config`].
    fn config(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// A built-in loss from its name and [`Loss::config`]: the inverse of `(loss.name(), loss.config())`.
///
/// # Errors
/// [`Error::UnknownName`] for an unknown loss or setting; [`Error::InvalidArgument`] for a missing setting, a
/// number that is not exactly an `f32`, a `label_smoothing` outside `[0, 1]`, or a boolean that is not 0 or 1.
pub fn from_config(name: &str, config: &[(String, f64)]) -> Result<Box<dyn Loss>> {
    let loss = get(name)?;
    let expected: Vec<String> = loss.config().into_iter().map(|(k, _)| k).collect();
    for (key, _) in config {
        if !expected.contains(key) {
            return Err(Error::UnknownName {
                kind: "loss setting",
                name: format!("{name}.{key}"),
                known: expected.join(", "),
            });
        }
    }
    let value = |key: &'static str| -> Result<f64> {
        config.iter().find(|(k, _)| k == key).map(|&(_, v)| v).ok_or_else(|| {
            Error::invalid_argument(
                "loss config",
                format!("{name} without `{key}`"),
                "every setting is needed",
            )
        })
    };
    use crate::formats::settings::{bool_setting, f32_setting};
    let flag = |key: &'static str| bool_setting("loss config", key, value(key)?);
    let number = |key: &'static str| f32_setting("loss config", key, value(key)?);
    let smoothing = || {
        let s = number("label_smoothing")?;
        check_label_smoothing(s).map(|()| s)
    };
    Ok(match loss.name() {
        "categorical_crossentropy" => Box::new(
            CategoricalCrossentropy::new().from_logits(flag("from_logits")?).label_smoothing(smoothing()?),
        ),
        "sparse_categorical_crossentropy" => {
            Box::new(SparseCategoricalCrossentropy::new().from_logits(flag("from_logits")?))
        }
        "binary_crossentropy" => Box::new(
            BinaryCrossentropy::new().from_logits(flag("from_logits")?).label_smoothing(smoothing()?),
        ),
        "huber_loss" => Box::new(Huber::new().delta(number("delta")?)),
        _ => loss,
    })
}

/// Keras' `squeeze_or_expand_to_same_rank` for targets: `(batch,)` targets against a `(batch, 1)` output (or
/// the reverse) are reshaped to the output's shape.
fn align_targets<'t>(y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
    let (ts, ps) = (y_true.shape(), y_pred.shape());
    if ts == ps {
        return y_true;
    }
    let trailing_one = |long: &[usize], short: &[usize]| {
        long.len() == short.len() + 1 && long.last() == Some(&1) && long[..short.len()] == *short
    };
    if trailing_one(&ps, &ts) || trailing_one(&ts, &ps) {
        y_true.reshape(&ps)
    } else {
        y_true
    }
}

/// The per-sample shape of a batch of targets, or an error if the targets have no batch axis.
fn per_sample_shape<'a>(loss: &str, y_true: &'a ArrayViewD<'_, f32>) -> Result<&'a [usize]> {
    match y_true.shape() {
        [] => Err(Error::shape(
            format!("{loss} targets"),
            "an array with a batch axis first",
            "a scalar (shape [])",
        )),
        [_, rest @ ..] => Ok(rest),
    }
}

/// Whether per-sample target shape `t` fits output shape `o`: equal, or equal up to one trailing axis of 1.
fn same_up_to_trailing_one(t: &[usize], o: &[usize]) -> bool {
    t == o
        || (t.len() + 1 == o.len() && o.last() == Some(&1) && o[..t.len()] == *t)
        || (o.len() + 1 == t.len() && t.last() == Some(&1) && t[..o.len()] == *o)
}

/// Shape check shared by the losses whose targets have the output's shape.
fn check_same_shape(loss: &str, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
    let per_sample = per_sample_shape(loss, &y_true)?;
    if same_up_to_trailing_one(per_sample, output_shape) {
        return Ok(());
    }
    Err(Error::shape(
        format!("{loss} targets"),
        format!("per-sample shape {output_shape:?} (the model's output shape)"),
        format!("{:?} (per-sample {per_sample:?})", y_true.shape()),
    ))
}

fn check_label_smoothing(label_smoothing: f32) -> Result<()> {
    if (0.0..=1.0).contains(&label_smoothing) {
        Ok(())
    } else {
        Err(Error::invalid_argument("label_smoothing", label_smoothing, "must be in [0, 1]"))
    }
}

/// Index of the last axis of `v` (the classes).
fn last_axis(v: Var<'_>) -> usize {
    v.shape().len().checked_sub(1).expect("a loss needs predictions with at least one axis")
}

/// Keras' probability form of categorical cross-entropy: renormalise, clip, `-sum(t * log p)` over the last axis.
fn categorical_from_probabilities<'t>(y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
    let last = last_axis(y_pred);
    let p = y_pred.div(y_pred.sum_axes(&[last], true)).clip(EPSILON, 1.0 - EPSILON);
    y_true.mul(p.log()).sum_axes(&[last], false).neg()
}

/// Cross-entropy between one-hot (or soft) targets and predicted class probabilities.
///
/// Keras: `keras.losses.CategoricalCrossentropy(from_logits=False, label_smoothing=0.0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CategoricalCrossentropy {
    from_logits: bool,
    label_smoothing: f32,
}

impl CategoricalCrossentropy {
    /// Probabilities in, no label smoothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the predictions are logits (no softmax applied) rather than probabilities.
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    /// Mixes the targets with the uniform distribution: `t * (1 - s) + s / classes`. Must be in `[0, 1]`.
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
}

impl Loss for CategoricalCrossentropy {
    fn name(&self) -> &str {
        "categorical_crossentropy"
    }

    fn config(&self) -> Vec<(String, f64)> {
        let flag = f64::from(u8::from(self.from_logits));
        vec![("from_logits".into(), flag), ("label_smoothing".into(), f64::from(self.label_smoothing))]
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        check_label_smoothing(self.label_smoothing)?;
        let per_sample = per_sample_shape(self.name(), &y_true)?;
        if same_up_to_trailing_one(per_sample, output_shape) {
            return Ok(());
        }
        let classes = output_shape.last().copied().unwrap_or(1);
        // The classic mistake: integer labels against a softmax over `classes` units.
        let looks_sparse = classes > 1
            && (per_sample == &output_shape[..output_shape.len() - 1]
                || (per_sample.last() == Some(&1)
                    && per_sample[..per_sample.len() - 1] == output_shape[..output_shape.len() - 1]));
        let expected = if looks_sparse {
            format!(
                "one-hot targets of per-sample shape {output_shape:?}; the targets look like integer class labels: \
                 use to_categorical(labels, {classes}) or the loss sparse_categorical_crossentropy"
            )
        } else {
            format!("per-sample shape {output_shape:?} (the model's output shape)")
        };
        Err(Error::shape(
            "categorical_crossentropy targets",
            expected,
            format!("{:?} (per-sample {per_sample:?})", y_true.shape()),
        ))
    }

    /// The loss of each sample (the batch shape: the output's shape without its last axis).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let mut y_true = align_targets(y_true, y_pred);
        if self.label_smoothing > 0.0 {
            let classes = y_pred.shape()[last_axis(y_pred)] as f32;
            let s = self.label_smoothing;
            y_true = y_true.mul_scalar(1.0 - s).add_scalar(s / classes);
        }
        if self.from_logits {
            y_pred.softmax_cross_entropy(y_true)
        } else if let Some(logits) = y_pred.softmax_logits() {
            logits.softmax_cross_entropy(y_true)
        } else {
            categorical_from_probabilities(y_true, y_pred)
        }
    }
}

/// Cross-entropy between integer class labels (stored as `f32`, shape `(batch,)` or `(batch, 1)`) and predicted
/// class probabilities.
///
/// Keras: `keras.losses.SparseCategoricalCrossentropy(from_logits=False)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseCategoricalCrossentropy {
    from_logits: bool,
}

impl SparseCategoricalCrossentropy {
    /// Probabilities in.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the predictions are logits (no softmax applied) rather than probabilities.
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }
}

impl Loss for SparseCategoricalCrossentropy {
    fn name(&self) -> &str {
        "sparse_categorical_crossentropy"
    }

    fn config(&self) -> Vec<(String, f64)> {
        vec![("from_logits".into(), f64::from(u8::from(self.from_logits)))]
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        let per_sample = per_sample_shape(self.name(), &y_true)?;
        let Some((&classes, rows)) = output_shape.split_last() else {
            return Err(Error::shape(
                "sparse_categorical_crossentropy output",
                "an output with a class axis last",
                "per-sample output shape []",
            ));
        };
        let fits = per_sample == rows
            || (per_sample.len() == rows.len() + 1
                && per_sample.last() == Some(&1)
                && per_sample[..rows.len()] == *rows);
        if !fits {
            let mut expected =
                format!("integer class labels of per-sample shape {rows:?} or {:?}", [rows, &[1]].concat());
            if per_sample == output_shape && classes > 1 {
                expected.push_str("; the targets look one-hot: use the loss categorical_crossentropy");
            }
            return Err(Error::shape(
                "sparse_categorical_crossentropy targets",
                expected,
                format!("{:?} (per-sample {per_sample:?})", y_true.shape()),
            ));
        }
        for (index, &label) in y_true.iter().enumerate() {
            if !label.is_finite() || label.fract() != 0.0 {
                return Err(Error::invalid_argument(
                    "y_true",
                    format!("{label} at index {index}"),
                    "sparse labels must be integer class indices",
                ));
            }
            if label < 0.0 || label >= classes as f32 {
                return Err(Error::LabelOutOfRange { label: label as i64, index, num_classes: classes });
            }
        }
        Ok(())
    }

    /// The loss of each sample (the output's shape without its last axis).
    ///
    /// # Panics
    /// If a label is not a class index; [`Loss::validate`] reports that as an error before training.
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let ps = y_pred.shape();
        let rows = &ps[..last_axis(y_pred)];
        let labels = if y_true.shape() == rows { y_true } else { y_true.reshape(rows) };
        if self.from_logits {
            y_pred.sparse_softmax_cross_entropy(labels)
        } else if let Some(logits) = y_pred.softmax_logits() {
            logits.sparse_softmax_cross_entropy(labels)
        } else {
            // TensorFlow's backend form: the log of the clipped, renormalised probabilities taken as logits.
            let last = last_axis(y_pred);
            let p = y_pred.div(y_pred.sum_axes(&[last], true)).clip(EPSILON, 1.0 - EPSILON);
            p.log().sparse_softmax_cross_entropy(labels)
        }
    }
}

/// Cross-entropy between binary targets in `[0, 1]` and predicted probabilities, averaged over the last axis.
///
/// Keras: `keras.losses.BinaryCrossentropy(from_logits=False, label_smoothing=0.0)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinaryCrossentropy {
    from_logits: bool,
    label_smoothing: f32,
}

impl BinaryCrossentropy {
    /// Probabilities in, no label smoothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the predictions are logits (no sigmoid applied) rather than probabilities.
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    /// Squeezes the targets towards 0.5: `t * (1 - s) + s / 2`. Must be in `[0, 1]`.
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
}

impl Loss for BinaryCrossentropy {
    fn name(&self) -> &str {
        "binary_crossentropy"
    }

    fn config(&self) -> Vec<(String, f64)> {
        let flag = f64::from(u8::from(self.from_logits));
        vec![("from_logits".into(), flag), ("label_smoothing".into(), f64::from(self.label_smoothing))]
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        check_label_smoothing(self.label_smoothing)?;
        check_same_shape(self.name(), y_true, output_shape)
    }

    /// The loss of each sample (the output's shape without its last axis).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let mut y_true = align_targets(y_true, y_pred);
        if self.label_smoothing > 0.0 {
            let s = self.label_smoothing;
            y_true = y_true.mul_scalar(1.0 - s).add_scalar(0.5 * s);
        }
        let elementwise = if self.from_logits {
            y_pred.sigmoid_cross_entropy(y_true)
        } else if let Some(logits) = y_pred.sigmoid_logits() {
            logits.sigmoid_cross_entropy(y_true)
        } else {
            let p = y_pred.clip(EPSILON, 1.0 - EPSILON);
            let one_minus = |v: Var<'t>| v.neg().add_scalar(1.0);
            y_true.mul(p.log()).add(one_minus(y_true).mul(one_minus(p).log())).neg()
        };
        elementwise.mean_axes(&[last_axis(y_pred)], false)
    }
}

/// `mean((y_pred - y_true)^2)` over the last axis, then over the batch.
///
/// Keras: `keras.losses.MeanSquaredError()`, alias `"mse"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeanSquaredError;

impl MeanSquaredError {
    /// The loss.
    pub fn new() -> Self {
        Self
    }
}

impl Loss for MeanSquaredError {
    fn name(&self) -> &str {
        "mean_squared_error"
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        check_same_shape(self.name(), y_true, output_shape)
    }

    /// The loss of each sample (the output's shape without its last axis).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let y_true = align_targets(y_true, y_pred);
        y_pred.sub(y_true).square().mean_axes(&[last_axis(y_pred)], false)
    }
}

/// A loss from a closure `|y_true, y_pred| -> per-sample loss`, as Keras accepts a function for `loss=`; made by
/// [`from_fn`].
pub struct LossFn<F> {
    name: String,
    f: F,
}

/// A loss from a closure that computes each sample's loss on the [tape](crate::autodiff), so that its gradient
/// comes for free: Keras' `model.compile(loss=my_loss)` with `def my_loss(y_true, y_pred)`. The closure returns
/// one value per sample, shape `(batch,)` (or `(batch, ...)`, averaged too); the batch loss is their mean, and
/// sample weights weigh them as for the built-in losses. `name` is what the loss logs and saves under: a saved
/// model loads with the same loss registered under that name
/// ([`LoadOptions::custom_loss`](crate::saving::LoadOptions::custom_loss)).
///
/// `fit` and `evaluate` try the closure on two samples before training: one that returns a single value for the
/// whole batch (a `mean()` too many) is an error then, not a scalar broadcast over the samples.
///
/// ```
/// use kerust::{layers::Dense, losses, models::Sequential};
/// use ndarray::array;
///
/// // Keras: def scaled_mse(y_true, y_pred): return 2 * ops.mean(ops.square(y_pred - y_true), axis=-1)
/// let scaled_mse = losses::from_fn("scaled_mse", |y_true, y_pred| {
///     y_pred.sub(y_true).square().mean_axes(&[1], false).mul_scalar(2.0)
/// });
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([2]))?;
/// model.compile(scaled_mse, "sgd", [])?;
/// let (x, y) = (array![[0.0f32, 1.0], [1.0, 0.0]], array![[1.0f32], [0.0]]);
/// let history = model.fit(&x, &y).epochs(2).verbose(0).run()?;
/// assert_eq!(history.history["loss"].len(), 2);
///
/// // A closure that averages over the batch itself is refused before any step.
/// let batch_mean = losses::from_fn("batch_mean", |y_true, y_pred| y_pred.sub(y_true).square().mean());
/// model.compile(batch_mean, "sgd", [])?;
/// let err = model.fit(&x, &y).verbose(0).run().unwrap_err();
/// assert!(err.to_string().contains("one value per sample"), "{err}");
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn from_fn<F>(name: impl Into<String>, f: F) -> LossFn<F>
where
    F: for<'t> Fn(Var<'t>, Var<'t>) -> Var<'t> + Send + Sync,
{
    LossFn { name: name.into(), f }
}

impl<F> Loss for LossFn<F>
where
    F: for<'t> Fn(Var<'t>, Var<'t>) -> Var<'t> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// Any targets with one row per sample: the closure decides what it reads.
    fn validate(&self, _: ArrayViewD<'_, f32>, _: &[usize]) -> Result<()> {
        Ok(())
    }

    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        (self.f)(y_true, y_pred)
    }
}

impl<F> std::fmt::Debug for LossFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossFn").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Checks that `loss` gives one value per sample: runs [`Loss::per_sample`] on the first two samples of `y_true`
/// (one if there is only one) and predictions of `output_shape`, before any training. A loss that reduces the
/// batch itself would otherwise be broadcast over the samples without a word (and weighted wrongly).
///
/// # Errors
/// [`Error::Shape`] naming the loss, when the result's first axis is not the batch.
pub(crate) fn check_per_sample(
    loss: &dyn Loss,
    y_true: ArrayViewD<'_, f32>,
    output_shape: &[usize],
) -> Result<()> {
    let n = y_true.shape().first().copied().unwrap_or(0).min(2);
    // A scalar per sample is all a loss over the last axis can reduce to: nothing to tell apart.
    if n == 0 || output_shape.is_empty() {
        return Ok(());
    }
    let params = crate::autodiff::ParamStore::new();
    let tape = crate::autodiff::Tape::inference(&params, Default::default());
    let y_true = tape.constant(y_true.slice_axis(ndarray::Axis(0), (0..n).into()));
    let pred_shape: Vec<usize> = std::iter::once(n).chain(output_shape.iter().copied()).collect();
    let y_pred = tape.constant(ndarray::ArrayD::from_elem(pred_shape, 0.5f32).view());
    let got = loss.per_sample(y_true, y_pred).shape();
    if got.first() == Some(&n) {
        return Ok(());
    }
    Err(Error::shape(
        format!("loss `{}`: it must return one value per sample (per_sample, or the closure of losses::from_fn), not reduce the batch", loss.name()),
        format!("({n}, ...) for a batch of {n}"),
        format!("{got:?}").replace('[', "(").replace(']', ")"),
    ))
}

/// `mean(|y_pred - y_true|)` over the last axis, then over the batch.
///
/// Keras: `keras.losses.MeanAbsoluteError()`, alias `"mae"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeanAbsoluteError;

impl MeanAbsoluteError {
    /// The loss.
    pub fn new() -> Self {
        Self
    }
}

impl Loss for MeanAbsoluteError {
    fn name(&self) -> &str {
        "mean_absolute_error"
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        check_same_shape(self.name(), y_true, output_shape)
    }

    /// The loss of each sample (the output's shape without its last axis).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let y_true = align_targets(y_true, y_pred);
        y_pred.sub(y_true).abs().mean_axes(&[last_axis(y_pred)], false)
    }
}

/// Quadratic for small errors, linear for large ones: `0.5 e^2` if `|e| <= delta`, else
/// `delta |e| - 0.5 delta^2`, averaged over the last axis.
///
/// Keras: `keras.losses.Huber(delta=1.0)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Huber {
    delta: f32,
}

impl Default for Huber {
    fn default() -> Self {
        Huber { delta: 1.0 }
    }
}

impl Huber {
    /// `delta = 1.0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the loss turns from quadratic to linear. Must be positive.
    pub fn delta(mut self, delta: f32) -> Self {
        self.delta = delta;
        self
    }
}

impl Loss for Huber {
    fn name(&self) -> &str {
        "huber_loss"
    }

    fn config(&self) -> Vec<(String, f64)> {
        vec![("delta".into(), f64::from(self.delta))]
    }

    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()> {
        if self.delta.is_nan() || self.delta <= 0.0 || self.delta.is_infinite() {
            return Err(Error::invalid_argument("delta", self.delta, "must be a positive finite number"));
        }
        check_same_shape(self.name(), y_true, output_shape)
    }

    /// The loss of each sample (the output's shape without its last axis).
    fn per_sample<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t> {
        let y_true = align_targets(y_true, y_pred);
        let abs_error = y_pred.sub(y_true).abs();
        // With q = min(|e|, delta): 0.5 q^2 + delta (|e| - q) is both branches of Keras' `where` in one
        // expression, so no select op is needed and the gradient is continuous at |e| = delta.
        let quadratic = abs_error.clip(0.0, self.delta);
        let linear = abs_error.sub(quadratic);
        quadratic
            .square()
            .mul_scalar(0.5)
            .add(linear.mul_scalar(self.delta))
            .mean_axes(&[last_axis(y_pred)], false)
    }
}

/// The names [`get`] accepts.
pub const KNOWN_NAMES: &[&str] = &[
    "categorical_crossentropy",
    "CategoricalCrossentropy",
    "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "BinaryCrossentropy",
    "bce",
    "BCE",
    "mean_squared_error",
    "MeanSquaredError",
    "mse",
    "MSE",
    "mean_absolute_error",
    "MeanAbsoluteError",
    "mae",
    "MAE",
    "huber",
    "huber_loss",
    "Huber",
];

/// A loss with Keras' defaults from its Keras name, alias or class name (`"mse"`, `"CategoricalCrossentropy"`).
///
/// # Errors
/// [`Error::UnknownName`] listing the accepted names.
pub fn get(name: &str) -> Result<Box<dyn Loss>> {
    Ok(match name {
        "categorical_crossentropy" | "CategoricalCrossentropy" => Box::new(CategoricalCrossentropy::new()),
        "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
            Box::new(SparseCategoricalCrossentropy::new())
        }
        "binary_crossentropy" | "BinaryCrossentropy" | "bce" | "BCE" => Box::new(BinaryCrossentropy::new()),
        "mean_squared_error" | "MeanSquaredError" | "mse" | "MSE" => Box::new(MeanSquaredError),
        "mean_absolute_error" | "MeanAbsoluteError" | "mae" | "MAE" => Box::new(MeanAbsoluteError),
        "huber" | "huber_loss" | "Huber" => Box::new(Huber::new()),
        _ => {
            return Err(Error::UnknownName {
                kind: "loss",
                name: name.to_string(),
                known: KNOWN_NAMES.join(", "),
            })
        }
    })
}

/// What `model.compile` takes as its loss: a name resolved by [`get`], or a configured loss.
///
/// ```
/// use kerust::losses::{CategoricalCrossentropy, LossSpec};
///
/// let by_name: LossSpec = "mse".into();
/// assert_eq!(by_name.resolve().unwrap().name(), "mean_squared_error");
/// let configured: LossSpec = CategoricalCrossentropy::new().from_logits(true).into();
/// assert_eq!(configured.resolve().unwrap().name(), "categorical_crossentropy");
/// ```
pub enum LossSpec {
    /// A Keras name or alias, resolved with Keras' defaults.
    Name(String),
    /// A loss object.
    Loss(Box<dyn Loss>),
}

impl LossSpec {
    /// The loss this spec names.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for an unknown name.
    pub fn resolve(self) -> Result<Box<dyn Loss>> {
        match self {
            LossSpec::Name(name) => get(&name),
            LossSpec::Loss(loss) => Ok(loss),
        }
    }
}

impl std::fmt::Debug for LossSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossSpec::Name(name) => f.debug_tuple("Name").field(name).finish(),
            LossSpec::Loss(loss) => f.debug_tuple("Loss").field(&loss.name()).finish(),
        }
    }
}

impl From<&str> for LossSpec {
    fn from(name: &str) -> Self {
        LossSpec::Name(name.to_string())
    }
}

impl From<String> for LossSpec {
    fn from(name: String) -> Self {
        LossSpec::Name(name)
    }
}

impl From<Box<dyn Loss>> for LossSpec {
    fn from(loss: Box<dyn Loss>) -> Self {
        LossSpec::Loss(loss)
    }
}

impl<T: Loss + 'static> From<T> for LossSpec {
    fn from(loss: T) -> Self {
        LossSpec::Loss(Box::new(loss))
    }
}
