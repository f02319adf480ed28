//! Metrics, computed on the arrays of each batch and averaged over the epoch the way Keras reports them.
//!
//! Every metric is a running mean of per-sample values: `result` is the mean over all samples seen since `reset`,
//! not the mean of batch means, so a short last batch weighs what its samples weigh. Updates read the arrays in
//! place and allocate nothing: metrics run on every training batch.
//!
//! ```
//! use kerust::metrics::{self, Metric};
//! use ndarray::array;
//!
//! // "accuracy" with integer labels against a 3-class output resolves to sparse categorical accuracy.
//! let mut acc = metrics::get("accuracy", "sparse_categorical_crossentropy", &[], &[3]).unwrap();
//! acc.update(
//!     array![2.0f32, 0.0].into_dyn().view(),
//!     array![[0.1f32, 0.2, 0.7], [0.3, 0.6, 0.1]].into_dyn().view(),
//!     None, // or Some(sample weights)
//! );
//! acc.update(array![1.0f32].into_dyn().view(), array![[0.0f32, 1.0, 0.0]].into_dyn().view(), None);
//! assert_eq!(acc.name(), "accuracy");
//! assert!((acc.result() - 2.0 / 3.0).abs() < 1e-6); // 2 of 3 samples, not the mean of 1/2 and 1
//! ```
use ndarray::{ArrayView1, ArrayViewD, Axis};

use crate::utils::argmax_lane as argmax;
use crate::{Error, Result};

/// A streaming metric: `update` with each batch, `result` is the value over everything seen since `reset`.
pub trait Metric: Send + Sync {
    /// The name it is logged under (e.g. `"accuracy"`, prefixed `val_` for validation).
    fn name(&self) -> &str;

    /// Accumulates one batch, each sample weighted by `sample_weight` (shape `(batch,)`) if given: Keras'
    /// `update_state(y_true, y_pred, sample_weight=None)`, a weighted mean `sum(v_i * w_i) / sum(w_i)`.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    );

    /// Checks that targets and predictions of these shapes (batch axis included) fit this metric; `fit` and
    /// `evaluate` call it before the first batch, so that a mismatch is an error rather than a panic in
    /// `update`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the metric and both shapes.
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        let _ = (y_true, y_pred);
        Ok(())
    }

    /// The value over all batches since the last reset.
    fn result(&self) -> f32;

    /// Forgets all batches.
    fn reset(&mut self);
}

/// A weighted sum and its total weight, in `f64` so that long epochs do not lose precision.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Running {
    total: f64,
    count: f64,
}

impl Running {
    fn add(&mut self, value: f64, weight: f64) {
        self.total += value;
        self.count += weight;
    }

    /// Keras' `divide_no_nan`: 0 before any update.
    fn mean(&self) -> f32 {
        if self.count == 0.0 {
            0.0
        } else {
            (self.total / self.count) as f32
        }
    }

    /// Adds a batch of `batch` samples given as per-row values, `rows` rows in sample order: each sample's value
    /// is the mean of its rows (Keras' `reduce_to_samplewise_values`), weighted by its `sample_weight`.
    fn add_rows(
        &mut self,
        per_row: impl Iterator<Item = f64>,
        rows: usize,
        batch: usize,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        if rows == 0 || batch == 0 {
            return;
        }
        let rows_per_sample = rows as f64 / batch as f64;
        match sample_weight {
            None => self.add(per_row.sum::<f64>() / rows_per_sample, batch as f64),
            Some(weights) => {
                let per = (rows / batch).max(1);
                let mut sample = 0.0;
                for (i, value) in per_row.enumerate() {
                    sample += value;
                    if (i + 1) % per == 0 {
                        let w = f64::from(weights[i / per]);
                        self.add(sample / rows_per_sample * w, w);
                        sample = 0.0;
                    }
                }
            }
        }
    }
}

/// 1 for a hit, 0 for a miss.
fn hit(hit: bool) -> f64 {
    f64::from(u8::from(hit))
}

/// The batch size of `y_pred` (1 for a scalar).
fn batch_size(y_pred: &ArrayViewD<'_, f32>) -> usize {
    y_pred.shape().first().copied().unwrap_or(1)
}

/// Whether class `target` is among the `k` largest of `lane` (ties at the boundary count as in, like
/// `keras.ops.in_top_k`).
fn in_top_k(lane: ArrayView1<'_, f32>, target: usize, k: usize) -> bool {
    let Some(&value) = lane.get(target) else { return false };
    lane.iter().filter(|&&x| x > value).count() < k
}

/// The class axis of `y_pred`: its last.
fn class_axis(y_pred: &ArrayViewD<'_, f32>, metric: &str) -> Axis {
    assert!(y_pred.ndim() > 0, "{metric}: predictions need a class axis, got a scalar");
    Axis(y_pred.ndim() - 1)
}

fn assert_sparse_labels(metric: &str, y_true: &ArrayViewD<'_, f32>, y_pred: &ArrayViewD<'_, f32>) {
    let classes = y_pred.shape().last().copied().unwrap_or(1);
    assert!(
        y_true.len() * classes == y_pred.len(),
        "{metric}: labels of shape {:?} do not fit predictions of shape {:?}",
        y_true.shape(),
        y_pred.shape()
    );
}

fn assert_same_len(metric: &str, y_true: &ArrayViewD<'_, f32>, y_pred: &ArrayViewD<'_, f32>) {
    assert!(
        y_true.len() == y_pred.len(),
        "{metric}: targets of shape {:?} do not fit predictions of shape {:?}",
        y_true.shape(),
        y_pred.shape()
    );
}

/// What the metrics' `update` asserts, as errors: `rule` is "same shape", "sparse" or "same length".
fn check_fit(metric: &str, rule: &str, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
    let (t, p): (usize, usize) = (y_true.iter().product(), y_pred.iter().product());
    let classes = y_pred.last().copied().unwrap_or(1);
    let (ok, expected) = match rule {
        "same shape" => (y_true == y_pred && !y_pred.is_empty(), format!("targets of shape {y_pred:?}")),
        "sparse" => (
            !y_pred.is_empty() && t.checked_mul(classes) == Some(p),
            format!("one integer label per sample for predictions of shape {y_pred:?}"),
        ),
        _ => (t == p, format!("targets with as many values as predictions of shape {y_pred:?}")),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::shape(format!("metric {metric}"), expected, format!("targets of shape {y_true:?}")))
    }
}

/// The part of a streaming metric that is the same for all of them: the struct (after its doc comment) with
/// the display name, the metric's own settings (`field: type = default`) and a `Running` mean; `Default` with
/// the Keras name and default settings; `new` (documented by `new_doc`); and the builder `named`. The
/// `impl Metric` takes `name`, `result` and `reset` from `metric_methods!` and has its own `check_shapes` and
/// `update`.
macro_rules! streaming_metric {
    (
        $(#[$attr:meta])*
        pub struct $ty:ident($keras_name:literal $(, $field:ident: $field_ty:ty = $default:expr)*);
        new_doc: $new_doc:literal;
    ) => {
        $(#[$attr])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $ty {
            name: String,
            $($field: $field_ty,)*
            acc: Running,
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty { name: $keras_name.into(), $($field: $default,)* acc: Running::default() }
            }
        }

        impl $ty {
            #[doc = $new_doc]
            pub fn new() -> Self {
                Self::default()
            }

            /// Logs the metric under `name` instead of its Keras name (`get("acc", ..)` logs as `acc`).
            pub fn named(mut self, name: impl Into<String>) -> Self {
                self.name = name.into();
                self
            }
        }
    };
}

/// The [`Metric`] methods of every metric made with `streaming_metric!`: the display name, the running mean,
/// and a reset to no samples.
macro_rules! metric_methods {
    () => {
        fn name(&self) -> &str {
            &self.name
        }

        fn result(&self) -> f32 {
            self.acc.mean()
        }

        fn reset(&mut self) {
            self.acc = Running::default();
        }
    };
}

streaming_metric! {
    /// The share of samples whose predicted class (argmax) is the target's argmax (one-hot targets).
    ///
    /// Keras: `keras.metrics.CategoricalAccuracy`, name `categorical_accuracy`.
    pub struct CategoricalAccuracy("categorical_accuracy");
    new_doc: " A metric with no samples yet.";
}

impl Metric for CategoricalAccuracy {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "same shape", y_true, y_pred)
    }

    /// # Panics
    /// If the shapes of `y_true` and `y_pred` differ.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert!(
            y_true.shape() == y_pred.shape(),
            "categorical_accuracy: targets {:?} and predictions {:?} differ in shape",
            y_true.shape(),
            y_pred.shape()
        );
        let axis = class_axis(&y_pred, "categorical_accuracy");
        let rows = y_pred.len() / y_pred.len_of(axis).max(1);
        let hits =
            y_true.lanes(axis).into_iter().zip(y_pred.lanes(axis)).map(|(t, p)| hit(argmax(t) == argmax(p)));
        self.acc.add_rows(hits, rows, batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// The share of samples whose predicted class (argmax) equals the integer label (labels as `f32`, shape
    /// `(batch,)` or `(batch, 1)`).
    ///
    /// Keras: `keras.metrics.SparseCategoricalAccuracy`, name `sparse_categorical_accuracy`.
    pub struct SparseCategoricalAccuracy("sparse_categorical_accuracy");
    new_doc: " A metric with no samples yet.";
}

impl Metric for SparseCategoricalAccuracy {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "sparse", y_true, y_pred)
    }

    /// # Panics
    /// If there is not one label per row of `y_pred`.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert_sparse_labels("sparse_categorical_accuracy", &y_true, &y_pred);
        let axis = class_axis(&y_pred, "sparse_categorical_accuracy");
        let rows = y_true.len();
        let hits = y_true.iter().zip(y_pred.lanes(axis)).map(|(&label, p)| hit(label == argmax(p) as f32));
        self.acc.add_rows(hits, rows, batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// The share of binary predictions (`y_pred > threshold`) that equal the targets, averaged per sample.
    ///
    /// Keras: `keras.metrics.BinaryAccuracy(threshold=0.5)`, name `binary_accuracy`.
    pub struct BinaryAccuracy("binary_accuracy", threshold: f32 = 0.5);
    new_doc: " Threshold 0.5, no samples yet.";
}

impl BinaryAccuracy {
    /// Predictions above `threshold` count as 1.
    pub fn threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }
}

impl Metric for BinaryAccuracy {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "same length", y_true, y_pred)
    }

    /// # Panics
    /// If `y_true` and `y_pred` have different numbers of elements.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert_same_len("binary_accuracy", &y_true, &y_pred);
        let threshold = self.threshold;
        let hits =
            y_true.iter().zip(y_pred.iter()).map(|(&t, &p)| hit(t == if p > threshold { 1.0 } else { 0.0 }));
        self.acc.add_rows(hits, y_pred.len(), batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// The share of samples whose target class (argmax of a one-hot target) is among the `k` highest predictions.
    ///
    /// Keras: `keras.metrics.TopKCategoricalAccuracy(k=5)`, name `top_k_categorical_accuracy`.
    pub struct TopKCategoricalAccuracy("top_k_categorical_accuracy", k: usize = 5);
    new_doc: " `k = 5`, no samples yet.";
}

impl TopKCategoricalAccuracy {
    /// How many of the highest predictions count as a hit.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
}

impl Metric for TopKCategoricalAccuracy {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "same shape", y_true, y_pred)
    }

    /// # Panics
    /// If the shapes of `y_true` and `y_pred` differ.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert!(
            y_true.shape() == y_pred.shape(),
            "top_k_categorical_accuracy: targets {:?} and predictions {:?} differ in shape",
            y_true.shape(),
            y_pred.shape()
        );
        let axis = class_axis(&y_pred, "top_k_categorical_accuracy");
        let rows = y_pred.len() / y_pred.len_of(axis).max(1);
        let k = self.k;
        let hits = y_true
            .lanes(axis)
            .into_iter()
            .zip(y_pred.lanes(axis))
            .map(|(t, p)| hit(in_top_k(p, argmax(t), k)));
        self.acc.add_rows(hits, rows, batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// The share of samples whose integer label is among the `k` highest predictions.
    ///
    /// Keras: `keras.metrics.SparseTopKCategoricalAccuracy(k=5)`, name `sparse_top_k_categorical_accuracy`.
    pub struct SparseTopKCategoricalAccuracy("sparse_top_k_categorical_accuracy", k: usize = 5);
    new_doc: " `k = 5`, no samples yet.";
}

impl SparseTopKCategoricalAccuracy {
    /// How many of the highest predictions count as a hit.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
}

impl Metric for SparseTopKCategoricalAccuracy {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "sparse", y_true, y_pred)
    }

    /// # Panics
    /// If there is not one label per row of `y_pred`.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert_sparse_labels("sparse_top_k_categorical_accuracy", &y_true, &y_pred);
        let axis = class_axis(&y_pred, "sparse_top_k_categorical_accuracy");
        let rows = y_true.len();
        let k = self.k;
        // A label that is not a class index is never a hit.
        let hits = y_true
            .iter()
            .zip(y_pred.lanes(axis))
            .map(|(&label, p)| hit(label >= 0.0 && label.fract() == 0.0 && in_top_k(p, label as usize, k)));
        self.acc.add_rows(hits, rows, batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// Mean squared error, per sample over the last axis, averaged over samples.
    ///
    /// Keras: `keras.metrics.MeanSquaredError`, name `mean_squared_error`.
    pub struct MeanSquaredError("mean_squared_error");
    new_doc: " A metric with no samples yet.";
}

impl Metric for MeanSquaredError {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "same length", y_true, y_pred)
    }

    /// # Panics
    /// If `y_true` and `y_pred` have different numbers of elements.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert_same_len("mean_squared_error", &y_true, &y_pred);
        let squares = y_true.iter().zip(y_pred.iter()).map(|(&t, &p)| f64::from(p - t).powi(2));
        self.acc.add_rows(squares, y_pred.len(), batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// Mean absolute error, per sample over the last axis, averaged over samples.
    ///
    /// Keras: `keras.metrics.MeanAbsoluteError`, name `mean_absolute_error`.
    pub struct MeanAbsoluteError("mean_absolute_error");
    new_doc: " A metric with no samples yet.";
}

impl Metric for MeanAbsoluteError {
    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        check_fit(self.name(), "same length", y_true, y_pred)
    }

    /// # Panics
    /// If `y_true` and `y_pred` have different numbers of elements.
    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        assert_same_len("mean_absolute_error", &y_true, &y_pred);
        let errors = y_true.iter().zip(y_pred.iter()).map(|(&t, &p)| f64::from((p - t).abs()));
        self.acc.add_rows(errors, y_pred.len(), batch_size(&y_pred), sample_weight);
    }

    metric_methods!();
}

streaming_metric! {
    /// A weighted running mean of values, e.g. the loss of each batch weighted by its size, so that the epoch's
    /// loss is the per-sample mean.
    ///
    /// Keras: `keras.metrics.Mean`, name `mean`.
    ///
    /// ```
    /// use kerust::metrics::{Mean, Metric};
    ///
    /// let mut loss = Mean::new().named("loss");
    /// loss.update_value(0.5, 32.0); // a batch of 32 with mean loss 0.5
    /// loss.update_value(2.0, 8.0); // a last batch of 8
    /// assert_eq!(loss.result(), (0.5 * 32.0 + 2.0 * 8.0) / 40.0);
    /// ```
    pub struct Mean("mean");
    new_doc: " A mean of nothing yet (its result is 0); name it with [`Mean::named`].";
}

impl Mean {
    /// Adds `value` with weight `weight`.
    pub fn update_value(&mut self, value: f32, weight: f32) {
        self.acc.add(f64::from(value) * f64::from(weight), f64::from(weight));
    }
}

impl Metric for Mean {
    /// Adds every element of `y_pred` (`y_true` is ignored), as Keras' `Mean.update_state(values, sample_weight)`:
    /// weight 1 each, or its sample's weight.
    fn update(
        &mut self,
        _y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        match sample_weight {
            None => {
                let sum: f64 = y_pred.iter().map(|&v| f64::from(v)).sum();
                self.acc.add(sum, y_pred.len() as f64);
            }
            Some(weights) => {
                let per = (y_pred.len() / weights.len().max(1)).max(1);
                for (i, &v) in y_pred.iter().enumerate() {
                    let w = f64::from(weights[i / per]);
                    self.acc.add(f64::from(v) * w, w);
                }
            }
        }
    }

    metric_methods!();
}

/// The names [`get`] accepts (besides any capitalisation of `accuracy` and `acc`).
pub const KNOWN_NAMES: &[&str] = &[
    "accuracy",
    "acc",
    "categorical_accuracy",
    "CategoricalAccuracy",
    "sparse_categorical_accuracy",
    "SparseCategoricalAccuracy",
    "binary_accuracy",
    "BinaryAccuracy",
    "top_k_categorical_accuracy",
    "TopKCategoricalAccuracy",
    "sparse_top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy",
    "mean_squared_error",
    "MeanSquaredError",
    "mse",
    "mean_absolute_error",
    "MeanAbsoluteError",
    "mae",
];

/// Checks that [`get`] knows `name`, before the shapes that decide what `"accuracy"` means are known (Keras'
/// `compile` rejects an unknown metric at once).
///
/// # Errors
/// [`Error::UnknownName`] listing the accepted names.
pub fn check_name(name: &str) -> Result<()> {
    let accuracy = name.eq_ignore_ascii_case("accuracy") || name.eq_ignore_ascii_case("acc");
    if accuracy || KNOWN_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(Error::UnknownName { kind: "metric", name: name.to_string(), known: KNOWN_NAMES.join(", ") })
    }
}

/// Which accuracy `"accuracy"` means, as Keras decides it (`compile_utils.get_metric`), from the loss and the
/// per-sample shapes of targets and predictions.
fn accuracy_for(
    name: &str,
    loss_name: &str,
    y_true_shape: &[usize],
    y_pred_shape: &[usize],
) -> Box<dyn Metric> {
    // Compare by canonical loss name, so that "bce" and "BinaryCrossentropy" count too.
    let loss = crate::losses::get(loss_name).map(|l| l.name().to_string()).unwrap_or_default();
    let pred_last = y_pred_shape.last().copied().unwrap_or(1);
    // A per-sample target shape of [] stands for (batch,): one fewer axis than the predictions.
    let true_last = y_true_shape.last().copied();
    let is_binary = loss == "binary_crossentropy" || pred_last == 1;
    let is_sparse = loss == "sparse_categorical_crossentropy"
        || y_true_shape.len() < y_pred_shape.len()
        || (true_last == Some(1) && pred_last > 1);
    if is_binary {
        Box::new(BinaryAccuracy::new().named(name))
    } else if is_sparse {
        Box::new(SparseCategoricalAccuracy::new().named(name))
    } else {
        Box::new(CategoricalAccuracy::new().named(name))
    }
}

/// A metric from its Keras name, logged under that name (`"acc"` logs as `acc`). `"accuracy"` and `"acc"`
/// (any case) become binary, sparse categorical or categorical accuracy as Keras chooses: binary if the loss is
/// `binary_crossentropy` or the output has one unit; sparse if the loss is `sparse_categorical_crossentropy` or
/// the targets have one axis fewer than the output (or a last axis of 1 against several units); else
/// categorical. Shapes are per sample, without the batch axis.
///
/// # Errors
/// [`Error::UnknownName`] listing the accepted names.
pub fn get(
    name: &str,
    loss_name: &str,
    y_true_shape: &[usize],
    y_pred_shape: &[usize],
) -> Result<Box<dyn Metric>> {
    if name.eq_ignore_ascii_case("accuracy") || name.eq_ignore_ascii_case("acc") {
        return Ok(accuracy_for(name, loss_name, y_true_shape, y_pred_shape));
    }
    Ok(match name {
        "categorical_accuracy" | "CategoricalAccuracy" => Box::new(CategoricalAccuracy::new().named(name)),
        "sparse_categorical_accuracy" | "SparseCategoricalAccuracy" => {
            Box::new(SparseCategoricalAccuracy::new().named(name))
        }
        "binary_accuracy" | "BinaryAccuracy" => Box::new(BinaryAccuracy::new().named(name)),
        "top_k_categorical_accuracy" | "TopKCategoricalAccuracy" => {
            Box::new(TopKCategoricalAccuracy::new().named(name))
        }
        "sparse_top_k_categorical_accuracy" | "SparseTopKCategoricalAccuracy" => {
            Box::new(SparseTopKCategoricalAccuracy::new().named(name))
        }
        "mean_squared_error" | "MeanSquaredError" | "mse" => Box::new(MeanSquaredError::new().named(name)),
        "mean_absolute_error" | "MeanAbsoluteError" | "mae" => Box::new(MeanAbsoluteError::new().named(name)),
        _ => {
            return Err(Error::UnknownName {
                kind: "metric",
                name: name.to_string(),
                known: KNOWN_NAMES.join(", "),
            })
        }
    })
}

/// What `model.compile` takes as a metric: a name resolved by [`get`], or a configured metric.
///
/// ```
/// use kerust::metrics::{MetricSpec, TopKCategoricalAccuracy};
///
/// let by_name: MetricSpec = "accuracy".into();
/// let m = by_name.resolve("categorical_crossentropy", &[10], &[10]).unwrap();
/// assert_eq!(m.name(), "accuracy");
/// let configured: MetricSpec = TopKCategoricalAccuracy::new().k(3).named("top3").into();
/// assert_eq!(configured.resolve("categorical_crossentropy", &[10], &[10]).unwrap().name(), "top3");
/// ```
pub enum MetricSpec {
    /// A Keras name, resolved by [`get`].
    Name(String),
    /// A metric object.
    Metric(Box<dyn Metric>),
}

impl MetricSpec {
    /// The metric this spec names; `loss_name` and the per-sample shapes decide what `"accuracy"` means.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for an unknown name.
    pub fn resolve(
        self,
        loss_name: &str,
        y_true_shape: &[usize],
        y_pred_shape: &[usize],
    ) -> Result<Box<dyn Metric>> {
        match self {
            MetricSpec::Name(name) => get(&name, loss_name, y_true_shape, y_pred_shape),
            MetricSpec::Metric(metric) => Ok(metric),
        }
    }
}

impl std::fmt::Debug for MetricSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricSpec::Name(name) => f.debug_tuple("Name").field(name).finish(),
            MetricSpec::Metric(metric) => f.debug_tuple("Metric").field(&metric.name()).finish(),
        }
    }
}

impl From<&str> for MetricSpec {
    fn from(name: &str) -> Self {
        MetricSpec::Name(name.to_string())
    }
}

impl From<String> for MetricSpec {
    fn from(name: String) -> Self {
        MetricSpec::Name(name)
    }
}

impl From<Box<dyn Metric>> for MetricSpec {
    fn from(metric: Box<dyn Metric>) -> Self {
        MetricSpec::Metric(metric)
    }
}

/// The `metrics` argument of [`Model::compile`](crate::models::Model::compile): Keras'
/// `metrics=["accuracy"]`, no metrics at all (`[]`, as short as Keras' leaving the argument out), or an array
/// (of up to 16) or a `Vec` that mixes names and metric objects.
///
/// ```
/// use kerust::metrics::{IntoMetrics, MetricSpec, TopKCategoricalAccuracy};
/// assert_eq!([].into_metric_specs().len(), 0);
/// assert_eq!(["accuracy", "mae"].into_metric_specs().len(), 2);
/// let mixed = [MetricSpec::from("accuracy"), TopKCategoricalAccuracy::new().k(3).into()];
/// assert_eq!(mixed.into_metric_specs().len(), 2);
/// let mixed = vec![MetricSpec::from("accuracy"), TopKCategoricalAccuracy::new().k(3).into()];
/// assert_eq!(mixed.into_metric_specs().len(), 2);
/// ```
pub trait IntoMetrics {
    /// The metrics, in order.
    fn into_metric_specs(self) -> Vec<MetricSpec>;
}

// One impl for arrays only, of names: then `[]` has a type to infer (`[&str; 0]`). Metric objects come in a Vec.
impl<const N: usize> IntoMetrics for [&str; N] {
    fn into_metric_specs(self) -> Vec<MetricSpec> {
        self.into_iter().map(MetricSpec::from).collect()
    }
}

impl IntoMetrics for &[&str] {
    fn into_metric_specs(self) -> Vec<MetricSpec> {
        self.iter().copied().map(MetricSpec::from).collect()
    }
}

// Arrays of specs of 1 to 16 metrics, one impl per length: a generic `[MetricSpec; N]` would also match `[]`,
// whose element type could then no longer be inferred.
macro_rules! spec_arrays {
    ($($n:literal)*) => {
        $(
            impl IntoMetrics for [MetricSpec; $n] {
                fn into_metric_specs(self) -> Vec<MetricSpec> {
                    self.into()
                }
            }
        )*
    };
}
spec_arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

impl<M: Into<MetricSpec>> IntoMetrics for Vec<M> {
    fn into_metric_specs(self) -> Vec<MetricSpec> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Metric + 'static> From<T> for MetricSpec {
    fn from(metric: T) -> Self {
        MetricSpec::Metric(Box::new(metric))
    }
}

/// A metric from a closure `|y_true, y_pred| -> one value per sample`, averaged over the samples (weighted by
/// their sample weights, if any): Keras' `metrics=[my_metric]` with `def my_metric(y_true, y_pred)`, which it
/// wraps in a `MeanMetricWrapper`. Made by [`from_fn`].
pub struct MetricFn<F> {
    name: String,
    f: F,
    running: Running,
}

/// A metric from a closure over a batch's targets and predictions (batch axis first) that returns each
/// sample's value (shape `(batch,)`, or `(batch, ...)`: a sample's value is then the mean of its row); the
/// metric is their mean over all batches since the last reset. `name` is what it logs
/// under. Before training, the closure is tried on two samples: one that returns another number of values than
/// samples (a `mean()` over the batch) is an error then.
///
/// ```
/// use kerust::{layers::Dense, metrics, metrics::MetricSpec, models::Sequential};
/// use ndarray::{array, Axis};
///
/// // Keras: def max_error(y_true, y_pred): return ops.max(ops.abs(y_pred - y_true), axis=-1)
/// let max_error = metrics::from_fn("max_error", |y_true, y_pred| {
///     (&y_pred - &y_true).abs().fold_axis(Axis(1), 0.0f32, |m, &v| m.max(v))
/// });
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([2]))?;
/// model.compile("mse", "sgd", [MetricSpec::from("mae"), max_error.into()])?;
/// let (x, y) = (array![[0.0f32, 1.0], [1.0, 0.0]], array![[1.0f32], [0.0]]);
/// let logs = model.evaluate(&x, &y)?;
/// assert!(logs.get("max_error").unwrap() >= logs.get("mae").unwrap());
/// # Ok::<(), kerust::Error>(())
/// ```
pub fn from_fn<F>(name: impl Into<String>, f: F) -> MetricFn<F>
where
    F: Fn(ArrayViewD<'_, f32>, ArrayViewD<'_, f32>) -> ndarray::ArrayD<f32> + Send + Sync,
{
    MetricFn { name: name.into(), f, running: Running::default() }
}

impl<F> Metric for MetricFn<F>
where
    F: Fn(ArrayViewD<'_, f32>, ArrayViewD<'_, f32>) -> ndarray::ArrayD<f32> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn update(
        &mut self,
        y_true: ArrayViewD<'_, f32>,
        y_pred: ArrayViewD<'_, f32>,
        sample_weight: Option<ArrayView1<'_, f32>>,
    ) {
        let values = (self.f)(y_true, y_pred);
        // `check_shapes` made sure the first axis is the batch; a sample's value is the mean of its row.
        let batch = values.shape().first().copied().unwrap_or(1);
        self.running.add_rows(values.iter().map(|&v| f64::from(v)), values.len(), batch, sample_weight);
    }

    fn check_shapes(&self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        let (Some((_, t)), Some((_, p))) = (y_true.split_first(), y_pred.split_first()) else {
            return Ok(());
        };
        let two = |rest: &[usize]| {
            ndarray::ArrayD::<f32>::zeros(std::iter::once(2).chain(rest.iter().copied()).collect::<Vec<_>>())
        };
        let got = (self.f)(two(t).view(), two(p).view()).len();
        if got == 2 {
            return Ok(());
        }
        Err(Error::shape(
            format!(
                "metric `{}`: its function must return one value per sample, not reduce the batch",
                self.name
            ),
            "2 values for a batch of 2",
            format!("{got} values"),
        ))
    }

    fn result(&self) -> f32 {
        self.running.mean()
    }

    fn reset(&mut self) {
        self.running = Running::default();
    }
}
