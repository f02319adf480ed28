//! The training loop: `fit`, `evaluate`, `predict`. It knows layers, losses, metrics and optimizers only through
//! their traits.
use ndarray::{
    Array1, ArrayD, ArrayView1, ArrayViewD, ArrayViewMutD, AsArray, Axis, CowArray, Dimension, Ix1, IxDyn,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::ops::Not;

use super::{shape_str, Metrics, Sequential};
use crate::autodiff::{Tape, Tensor, Workspace};
use crate::callbacks::{Callback, History, Logs, ProgbarLogger, TrainParams};
use crate::layers::CallContext;
use crate::metrics::{Mean, Metric};
use crate::{Error, Numeric, Result};

mod distributed;
use distributed::DataParallel;

/// Samples per batch in [`Sequential::predict`]. Keras uses 32; kerust uses 256 because outputs do not depend on
/// it (each row is computed the same way) while matrix products on 256 rows run about 1.5x faster than on 32,
/// for little memory (the bigger MNIST model's activations for 256 rows take 0.8 MB).
pub const PREDICT_BATCH_SIZE: usize = 256;

/// A `fit` being set up: chain its settings, then [`Fit::run`]. Defaults are Keras': `batch_size` 32, `epochs`
/// 1, `verbose` 1, `shuffle` true, no validation, no sample or class weights.
///
/// ```no_run
/// # fn main() -> kerust::Result<()> {
/// # let mut model = kerust::models::Sequential::new();
/// # let (x_train, y_train, x_test, y_test) = (ndarray::Array2::<f32>::zeros((1, 1)), ndarray::Array2::<f32>::zeros((1, 1)), ndarray::Array2::<f32>::zeros((1, 1)), ndarray::Array2::<f32>::zeros((1, 1)));
/// let history = model
///     .fit(&x_train, &y_train)
///     .batch_size(32)
///     .epochs(10)
///     .verbose(1)
///     .validation_data(&x_test, &y_test)
///     .run()?;
/// println!("{:?}", history.keys().collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
#[must_use = "a Fit does nothing until .run()"]
pub struct Fit<'m, 'a> {
    model: &'m mut Sequential,
    x: Data<'a>,
    y: Data<'a>,
    sample_weight: Option<CowArray<'a, f32, Ix1>>,
    class_weight: Option<Vec<(usize, f32)>>,
    batch_size: usize,
    epochs: usize,
    verbose: u8,
    validation_data: Option<(Data<'a>, Data<'a>)>,
    validation_split: f32,
    shuffle: bool,
    initial_epoch: usize,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    borrowed_callbacks: Vec<&'a mut dyn Callback>,
}

/// Inputs or targets as the model computes with them: `f32`, borrowed when the caller's data is `f32`, else
/// converted once (Keras casts to `float32` too).
type Data<'a> = CowArray<'a, f32, IxDyn>;

fn data<'a, A: Numeric, D: Dimension>(array: impl AsArray<'a, A, D>) -> Data<'a> {
    A::to_f32_array(array.into().into_dyn())
}

impl Sequential {
    /// Starts a `fit` on inputs `x` (samples on the first axis, then the model's input shape) and targets `y`;
    /// both by reference or as views. Any [`Numeric`] element type is accepted (`u8` images, `i64` labels, `f64`
    /// arrays): `f32` data is never copied as a whole, other types are converted to `f32` once.
    pub fn fit<'m, 'a, A: Numeric, B: Numeric, D1: Dimension, D2: Dimension>(
        &'m mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
    ) -> Fit<'m, 'a> {
        Fit {
            model: self,
            x: data(x),
            y: data(y),
            sample_weight: None,
            class_weight: None,
            batch_size: 32,
            epochs: 1,
            verbose: 1,
            validation_data: None,
            validation_split: 0.0,
            shuffle: true,
            initial_epoch: 0,
            callbacks: Vec::new(),
            borrowed_callbacks: Vec::new(),
        }
    }
}

impl<'m, 'a> Fit<'m, 'a> {
    /// Samples per gradient update (default 32).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The epoch index to stop at (default 1): training runs epochs `initial_epoch..epochs`.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// 0 silent, 1 progress bar (default), 2 one line per epoch.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// Data to evaluate at the end of each epoch, logged with a `val_` prefix. Overrides `validation_split`.
    pub fn validation_data<A: Numeric, B: Numeric, D1: Dimension, D2: Dimension>(
        mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
    ) -> Self {
        self.validation_data = Some((data(x), data(y)));
        self
    }

    /// A weight per training sample (Keras' `sample_weight`, shape `(samples,)`): each sample's loss counts this
    /// many times, as Keras computes it (the batch loss is `sum(loss_i * w_i) / batch`). The compiled metrics stay
    /// unweighted, as Keras' `metrics` do.
    /// With `validation_split`, the last fraction of the weights weighs the validation samples.
    ///
    /// ```
    /// # use kerust::{layers::Dense, models::Sequential};
    /// # use ndarray::array;
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(1).input_shape([2]))?;
    /// model.compile("mse", "sgd", [])?;
    /// let (x, y) = (array![[0.0f32, 1.0], [1.0, 0.0]], array![[1.0f32], [0.0]]);
    /// // The second sample does not count at all.
    /// model.fit(&x, &y).sample_weight(&array![1.0f32, 0.0]).verbose(0).run()?;
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn sample_weight<A: Numeric>(mut self, weights: impl AsArray<'a, A, Ix1>) -> Self {
        self.sample_weight = Some(A::to_f32_array(weights.into()));
        self
    }

    /// Weights by class (Keras' `class_weight={0: 1.0, 1: 5.0}`): every training sample weighs what its class
    /// does, 1 for a class not listed. The class is the target's argmax for one-hot targets, the rounded label
    /// otherwise. Cannot be combined with [`Fit::sample_weight`], as in Keras.
    ///
    /// ```
    /// # use kerust::{layers::Dense, models::Sequential};
    /// # use ndarray::array;
    /// # let mut model = Sequential::new();
    /// # model.add(Dense::new(1).activation("sigmoid").input_shape([2]))?;
    /// # model.compile("binary_crossentropy", "sgd", ["accuracy"])?;
    /// # let (x, y) = (array![[0.0f32, 1.0], [1.0, 0.0]], array![1u8, 0]);
    /// model.fit(&x, &y).class_weight([(0, 1.0), (1, 5.0)]).verbose(0).run()?;
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn class_weight(mut self, weights: impl IntoIterator<Item = (usize, f32)>) -> Self {
        self.class_weight = Some(weights.into_iter().collect());
        self
    }

    /// The fraction of the data, taken from the end before any shuffling, kept for validation (in [0, 1)).
    pub fn validation_split(mut self, fraction: f32) -> Self {
        self.validation_split = fraction;
        self
    }

    /// Whether to shuffle the training samples before each epoch (default true).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// The epoch to start from, for resuming (default 0).
    pub fn initial_epoch(mut self, epoch: usize) -> Self {
        self.initial_epoch = epoch;
        self
    }

    /// Adds a callback, owned by the fit.
    pub fn callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Adds a callback that stays yours, to inspect after training.
    pub fn callback_ref(mut self, callback: &'a mut dyn Callback) -> Self {
        self.borrowed_callbacks.push(callback);
        self
    }

    /// Trains, and returns the per-epoch [`History`].
    ///
    /// # Errors
    /// `fit` before `compile`; a batch size of 0; a validation split outside [0, 1); no samples; inputs whose
    /// shape does not match the model's input (e.g. (60000, 28, 28) into an input of 784); targets that do not
    /// match the inputs' sample count or the output layer; any of these for the validation data; sample weights
    /// not one per sample, or given with class weights; class weights for targets of more than two axes. The
    /// model is unchanged when one of these is reported. Later, an error from a callback ends training.
    ///
    /// A distributed model ([`Sequential::distribute`]) also reports a rank that failed these checks, or that
    /// would train another model, data shape or setting; a rank that fails later ends the whole job.
    pub fn run(self) -> Result<History> {
        let mut dp = DataParallel::new(self.model);
        let result = self.run_with(&mut dp);
        dp.finish(result)
    }

    fn run_with(self, dp: &mut DataParallel) -> Result<History> {
        let Fit {
            model,
            x,
            y,
            sample_weight,
            class_weight,
            batch_size,
            epochs,
            verbose,
            validation_data,
            validation_split,
            shuffle,
            initial_epoch,
            mut callbacks,
            mut borrowed_callbacks,
        } = self;
        if model.compiled.is_none() {
            return Err(Error::NotReady(
                "fit before compile: call model.compile(loss, optimizer, metrics) first".into(),
            ));
        }
        if batch_size == 0 {
            return Err(Error::invalid_argument("batch_size", 0, "must be at least 1"));
        }
        if !(0.0..1.0).contains(&validation_split) {
            return Err(Error::invalid_argument("validation_split", validation_split, "must be in [0, 1)"));
        }
        let (x, y) = (x.view(), y.view());
        check_has_samples(&x, "fit")?;
        let n = x.len_of(Axis(0));
        // Weights before `prepare`: an error here leaves an unbuilt model unbuilt.
        let class_weighted = class_weight.is_some();
        let weights = match (sample_weight, class_weight) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(
                    "class_weight",
                    "given with sample_weight",
                    "use one or the other (as in Keras)",
                ))
            }
            (Some(w), None) => Some(check_sample_weight(w, n, "fit")?),
            (None, Some(classes)) => Some(CowArray::from(class_weights_to_sample_weights(&y, &classes)?)),
            (None, None) => None,
        };
        model.prepare(&x, Some(&y), "fit")?;
        let weights = weights.as_ref().map(|w| w.view());
        let validation_data = validation_data.as_ref().map(|(vx, vy)| (vx.view(), vy.view()));
        let (train_x, train_y, train_w, val, val_w) = match validation_data {
            Some((vx, vy)) => {
                model.check_data(&vx, Some(&vy), "validation_data")?;
                (x, y, weights, Some((vx, vy)), None)
            }
            None if validation_split > 0.0 => {
                // Keras: the last fraction, before shuffling.
                let split_at = (n as f64 * (1.0 - f64::from(validation_split))) as usize;
                if split_at == 0 || split_at == n {
                    return Err(Error::invalid_argument(
                        "validation_split",
                        validation_split,
                        format!("leaves no training or no validation sample of {n}"),
                    ));
                }
                let (tx, vx) = x.split_at(Axis(0), split_at);
                let (ty, vy) = y.split_at(Axis(0), split_at);
                let (tw, vw) = match weights {
                    Some(w) => {
                        let (tw, vw) = w.split_at(Axis(0), split_at);
                        // Keras weighs validation samples by their sample_weight, never by class_weight.
                        (Some(tw), class_weighted.not().then_some(vw))
                    }
                    None => (None, None),
                };
                (tx, ty, tw, Some((vx, vy)), vw)
            }
            None => (x, y, weights, None, None),
        };

        // The last check, before anything runs: metrics against the targets.
        let mut metrics = model.take_metrics(&train_y, val.as_ref().map(|(_, vy)| vy))?;
        let n_train = train_x.len_of(Axis(0));
        let shapes = [("x", train_x.shape()), ("y", train_y.shape())];
        let val_shapes =
            val.as_ref().map(|(vx, vy)| [("validation x", vx.shape()), ("validation y", vy.shape())]);
        let settings = format!(
            "fit: batch_size={batch_size} epochs={epochs} initial_epoch={initial_epoch} shuffle={shuffle}"
        );
        let data: Vec<_> = shapes
            .into_iter()
            .chain(val_shapes.into_iter().flatten())
            .chain(train_w.as_ref().map(|w| ("sample_weight", w.shape())))
            .collect();
        if let Err(e) = dp.begin(model, &train_y, &data, &settings) {
            model.put_metrics(metrics);
            return Err(e);
        }
        let params = TrainParams {
            epochs,
            initial_epoch,
            steps: n_train.div_ceil(batch_size),
            batch_size,
            samples: n_train,
            verbose,
        };
        let mut progbar = ProgbarLogger::new(verbose);
        let mut history = History::new();
        let mut all: Vec<&mut dyn Callback> = Vec::new();
        if verbose > 0 && model.is_chief() {
            all.push(&mut progbar);
        }
        all.extend(callbacks.iter_mut().map(|c| &mut **c as &mut dyn Callback));
        all.extend(borrowed_callbacks.iter_mut().map(|c| &mut **c));
        all.push(&mut history);

        model.stop_training = false;
        let mut order: Vec<usize> = (0..n_train).collect();
        let mut loss_tracker = Mean::new();
        let mut logs = Logs::new();
        let result = (|| -> Result<()> {
            for cb in all.iter_mut() {
                cb.on_train_begin(model, &params)?;
            }
            for epoch in initial_epoch..epochs {
                for cb in all.iter_mut() {
                    cb.on_epoch_begin(model, epoch)?;
                }
                // A fresh shuffle of the original order from this epoch's own generator: resumable (see
                // `Sequential::seed`).
                model.begin_epoch_rng();
                if shuffle {
                    order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
                    order.shuffle(&mut model.train_rng);
                }
                loss_tracker.reset();
                metrics.iter_mut().for_each(|m| m.reset());
                logs.clear();
                for (batch, rows) in order.chunks(batch_size).enumerate() {
                    for cb in all.iter_mut() {
                        cb.on_train_batch_begin(model, batch)?;
                    }
                    let loss =
                        model.train_step(&train_x, &train_y, train_w.as_ref(), rows, &mut metrics, dp)?;
                    loss_tracker.update_value(loss, rows.len() as f32);
                    logs.set("loss", loss_tracker.result());
                    for m in &metrics {
                        logs.set(m.name(), m.result());
                    }
                    for cb in all.iter_mut() {
                        cb.on_train_batch_end(model, batch, &logs)?;
                    }
                    if dp.stopping(model) {
                        break;
                    }
                }
                if let Some((vx, vy)) = &val {
                    let val_logs = model.evaluate_views(vx, vy, val_w.as_ref(), batch_size, &mut metrics);
                    for (name, value) in &val_logs {
                        logs.set(&format!("val_{name}"), value);
                    }
                }
                for cb in all.iter_mut() {
                    cb.on_epoch_end(model, epoch, &logs)?;
                }
                if dp.stopping(model) {
                    break;
                }
            }
            for cb in all.iter_mut() {
                cb.on_train_end(model, &logs)?;
            }
            Ok(())
        })();
        model.put_metrics(metrics);
        drop(all);
        result.map(|()| history)
    }
}

/// Copies the samples `rows` of `src` into `dst` (a batch buffer of shape `(rows.len(), ...)`).
fn gather(src: &ArrayViewD<'_, f32>, rows: &[usize], dst: &mut ArrayViewMutD<'_, f32>) {
    let row_len: usize = src.shape()[1..].iter().product();
    match (src.as_slice(), dst.as_slice_mut()) {
        (Some(s), Some(d)) => {
            for (i, &r) in rows.iter().enumerate() {
                d[i * row_len..(i + 1) * row_len].copy_from_slice(&s[r * row_len..(r + 1) * row_len]);
            }
        }
        _ => {
            for (i, &r) in rows.iter().enumerate() {
                dst.index_axis_mut(Axis(0), i).assign(&src.index_axis(Axis(0), r));
            }
        }
    }
}

/// Checks that `weights` has one value per sample.
fn check_sample_weight<'a>(
    weights: CowArray<'a, f32, Ix1>,
    samples: usize,
    context: &str,
) -> Result<CowArray<'a, f32, Ix1>> {
    if weights.len() != samples {
        return Err(Error::shape(
            format!("{context}: sample_weight needs one weight per sample"),
            format!("({samples},)"),
            format!("({},)", weights.len()),
        ));
    }
    Ok(weights)
}

/// Keras' `class_weight_to_sample_weights`: each sample weighs what its class does (1 for a class not
/// listed); the class is the argmax of a target row, or the rounded label when there is one value per sample.
fn class_weights_to_sample_weights(y: &ArrayViewD<'_, f32>, classes: &[(usize, f32)]) -> Result<Array1<f32>> {
    let weight_of = |class: f32| {
        let class = class.round();
        classes.iter().find(|&&(c, _)| c as f32 == class).map_or(1.0, |&(_, w)| w)
    };
    match y.shape() {
        [_] | [_, 1] => Ok(y.iter().map(|&label| weight_of(label)).collect()),
        [_, _] => {
            Ok(y.rows().into_iter().map(|row| weight_of(crate::utils::argmax_lane(row) as f32)).collect())
        }
        shape => Err(Error::shape(
            "fit: class_weight",
            "targets of shape (samples,) or (samples, classes)",
            format!("{shape:?}; use sample_weight for targets of more axes"),
        )),
    }
}

fn batch_shape(data: &ArrayViewD<'_, f32>, rows: usize) -> Vec<usize> {
    let mut shape = data.shape().to_vec();
    shape[0] = rows;
    shape
}

impl Sequential {
    /// Builds the model from `x` if needed and checks `x` (and `y`, if given) against it; on error, a build done here is
    /// undone.
    fn prepare(
        &mut self,
        x: &ArrayViewD<'_, f32>,
        y: Option<&ArrayViewD<'_, f32>>,
        context: &str,
    ) -> Result<()> {
        check_has_samples(x, context)?;
        let built_before = self.is_built();
        let snapshot =
            (!built_before).then(|| (self.params.len(), self.output_shapes.len(), self.input_shape.clone()));
        if !built_before {
            let shape = self.declared_input.clone().unwrap_or_else(|| x.shape()[1..].to_vec());
            self.build(&shape)?;
        }
        let result = self.check_data(x, y, context);
        if let (Err(_), Some((params, shapes, input))) = (&result, snapshot) {
            self.params.truncate(params);
            self.output_shapes.truncate(shapes);
            self.input_shape = input;
        }
        result
    }

    /// Checks inputs and targets against the built model and the compiled loss.
    fn check_data(
        &self,
        x: &ArrayViewD<'_, f32>,
        y: Option<&ArrayViewD<'_, f32>>,
        context: &str,
    ) -> Result<()> {
        let input = self.input_shape.as_deref().unwrap_or_default();
        if x.ndim() < 1 || &x.shape()[1..] != input {
            // The most common case with images: grayscale data without the channel axis a Conv2D expects.
            let hint = match input.split_last() {
                Some((1, rest)) if x.ndim() >= 1 && &x.shape()[1..] == rest => format!(
                    "; the channel axis is missing: (None, {}) data for a model of {}: add it with                      `x.insert_axis(Axis({}))` (numpy's `expand_dims(x, -1)`)",
                    x.shape()[1..].iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    shape_str(input),
                    x.ndim()
                ),
                _ => String::new(),
            };
            return Err(Error::shape(
                format!("{context}: the inputs do not match the model's input"),
                format!("{} (samples first)", shape_str(input)),
                format!("{:?}{hint}", x.shape()),
            ));
        }
        let Some(y) = y else { return Ok(()) };
        let n = x.len_of(Axis(0));
        if y.ndim() == 0 || y.len_of(Axis(0)) != n {
            return Err(Error::shape(
                format!("{context}: inputs and targets need the same number of samples"),
                format!("{n} samples"),
                format!("targets of shape {:?}", y.shape()),
            ));
        }
        if let (Some(compiled), Some(out)) = (&self.compiled, self.output_shape()) {
            compiled.loss.validate(y.view(), out)?;
        }
        Ok(())
    }

    /// The compiled metrics, taken out of the model so the loop can borrow both (`put_metrics` returns them).
    /// The first time, names are resolved for these targets: `"accuracy"` becomes the variant the loss and the
    /// targets' per-sample shape call for, as in Keras. Every metric is then checked against the shapes of `y`
    /// (and `val_y`) and the model's output; on error the model keeps its metrics.
    fn take_metrics(
        &mut self,
        y: &ArrayViewD<'_, f32>,
        val_y: Option<&ArrayViewD<'_, f32>>,
    ) -> Result<Vec<Box<dyn Metric>>> {
        let out = self.output_shape().unwrap_or_default().to_vec();
        let Some(compiled) = self.compiled.as_mut() else { return Ok(Vec::new()) };
        if let Metrics::Pending(specs) = &mut compiled.metrics {
            let loss = compiled.loss.name();
            // Names were checked by `compile`, so only a shape can make this fail.
            let resolved = std::mem::take(specs)
                .into_iter()
                .map(|spec| spec.resolve(loss, &y.shape()[1..], &out))
                .collect::<Result<Vec<_>>>()?;
            compiled.metrics = Metrics::Resolved(resolved);
        }
        let metrics = match &mut compiled.metrics {
            Metrics::Resolved(metrics) => metrics,
            // Called from a callback during fit (e.g. evaluate): the loss only, as the metrics are in use.
            Metrics::Lent(_) => return Ok(Vec::new()),
            Metrics::Pending(_) => unreachable!("resolved above"),
        };
        for y in std::iter::once(y).chain(val_y) {
            let pred: Vec<usize> = y.shape().iter().take(1).chain(&out).copied().collect();
            for m in metrics.iter() {
                m.check_shapes(y.shape(), &pred)?;
            }
        }
        let names = metrics.iter().map(|m| m.name().to_string()).collect();
        let Metrics::Resolved(metrics) = std::mem::replace(&mut compiled.metrics, Metrics::Lent(names))
        else {
            unreachable!("resolved above")
        };
        Ok(metrics)
    }

    fn put_metrics(&mut self, metrics: Vec<Box<dyn Metric>>) {
        if let Some(compiled) = self.compiled.as_mut() {
            // A call nested in a running fit got no metrics and gives none back.
            if metrics.is_empty() && matches!(&compiled.metrics, Metrics::Lent(names) if !names.is_empty()) {
                return;
            }
            compiled.metrics = Metrics::Resolved(metrics);
        }
    }

    /// One gradient step on the samples `rows`, weighted by `weights` if given; returns the batch loss.
    fn train_step(
        &mut self,
        x: &ArrayViewD<'_, f32>,
        y: &ArrayViewD<'_, f32>,
        weights: Option<&ArrayView1<'_, f32>>,
        rows: &[usize],
        metrics: &mut [Box<dyn Metric>],
        dp: &mut DataParallel,
    ) -> Result<f32> {
        let Sequential { layers, params, compiled, train_rng: rng, workspace, grads, .. } = self;
        let compiled =
            compiled.as_mut().ok_or_else(|| Error::NotReady("train_step before compile".into()))?;
        // Distributed: this rank's share of the batch; the others' gradients arrive in `dp.reduce`. A rank
        // whose share is empty (a last batch smaller than the rank count) adds nothing, and applies the same
        // update as the others.
        let rows = dp.share(rows, rng);
        let (value, mut updates) = if rows.is_empty() {
            (0.0, Vec::new())
        } else {
            let tape = Tape::with_workspace(params, std::mem::take(workspace));
            let xb = tape.constant_with(&batch_shape(x, rows.len()), |buf| gather(x, rows, buf));
            let yb = tape.constant_with(&batch_shape(y, rows.len()), |buf| gather(y, rows, buf));
            let mut ctx = CallContext::new(true, rng);
            let out = Sequential::forward(layers, xb, &mut ctx);
            let loss = match weights {
                Some(w) => {
                    let wb = tape.constant_with(&[rows.len()], |buf| {
                        buf.iter_mut().zip(rows).for_each(|(b, &r)| *b = w[r]);
                    });
                    compiled.loss.weighted(yb, out, wb)
                }
                None => compiled.loss.call(yb, out),
            };
            let value = loss.item();
            tape.backward(loss, grads)?;
            // Compiled metrics are unweighted, as Keras' `metrics` (its `weighted_metrics` are another list).
            if !metrics.is_empty() {
                out.with_value(|pred| {
                    yb.with_value(|truth| {
                        if dp.is_active() {
                            dp.stage_outputs(pred, truth);
                        } else {
                            metrics.iter_mut().for_each(|m| m.update(truth.view(), pred.view(), None));
                        }
                    })
                });
            }
            *workspace = tape.into_workspace();
            (value, ctx.into_updates())
        };
        let value = dp.reduce(params, grads, &mut updates, value, metrics)?;
        compiled.optimizer.apply(params, grads);
        // State the layers recorded during the forward pass (moving statistics), now that the tape is gone.
        for (id, value) in updates {
            params.value_mut(id).assign(&value);
        }
        Ok(value)
    }

    /// Runs the model on `x` in batches without recording gradients, with `workspace`'s buffers; `each` gets
    /// every batch's rows, output, and with `y` its targets and (weighted) loss.
    fn for_each_batch(
        &self,
        workspace: &mut Workspace,
        x: &ArrayViewD<'_, f32>,
        y: Option<(&ArrayViewD<'_, f32>, Option<&ArrayView1<'_, f32>>)>,
        batch_size: usize,
        mut each: impl FnMut(std::ops::Range<usize>, ArrayViewD<'_, f32>, Option<(ArrayViewD<'_, f32>, f32)>),
    ) {
        let n = x.len_of(Axis(0));
        let Sequential { layers, params, compiled, .. } = self;
        let loss_fn = compiled.as_ref().map(|c| &c.loss);
        // Inference draws nothing at random (dropout is off); the context wants a generator all the same.
        let mut rng = StdRng::seed_from_u64(0);
        let mut start = 0;
        let mut rows = Vec::with_capacity(batch_size.min(n));
        while start < n {
            let end = (start + batch_size).min(n);
            rows.clear();
            rows.extend(start..end);
            let tape = Tape::inference(params, std::mem::take(workspace));
            let xb = tape.constant_with(&batch_shape(x, rows.len()), |buf| gather(x, &rows, buf));
            let out = Sequential::forward(layers, xb, &mut CallContext::new(false, &mut rng));
            match (y, loss_fn) {
                (Some((y, weights)), Some(loss_fn)) => {
                    let yb = tape.constant_with(&batch_shape(y, rows.len()), |buf| gather(y, &rows, buf));
                    let loss = match weights {
                        Some(w) => {
                            let wb = w.slice(ndarray::s![start..end]).into_dyn();
                            loss_fn.weighted(yb, out, tape.constant(wb)).item()
                        }
                        None => loss_fn.call(yb, out).item(),
                    };
                    out.with_value(|o| yb.with_value(|t| each(start..end, o, Some((t, loss)))));
                }
                _ => out.with_value(|o| each(start..end, o, None)),
            }
            *workspace = tape.into_workspace();
            start = end;
        }
    }

    /// Loss and metrics over `(x, y)` (weighted by `weights` if given), already checked.
    fn evaluate_views(
        &mut self,
        x: &ArrayViewD<'_, f32>,
        y: &ArrayViewD<'_, f32>,
        weights: Option<&ArrayView1<'_, f32>>,
        batch_size: usize,
        metrics: &mut [Box<dyn Metric>],
    ) -> Logs {
        if let Some(logs) = DataParallel::new(self).evaluate(self, x, y, weights, batch_size, metrics) {
            return logs;
        }
        let mut loss_tracker = Mean::new();
        metrics.iter_mut().for_each(|m| m.reset());
        let mut workspace = std::mem::take(&mut self.workspace);
        self.for_each_batch(&mut workspace, x, Some((y, weights)), batch_size, |rows, out, truth| {
            if let Some((truth, loss)) = truth {
                loss_tracker.update_value(loss, rows.len() as f32);
                metrics.iter_mut().for_each(|m| m.update(truth.view(), out.view(), None));
            }
        });
        self.workspace = workspace;
        loss_and_metrics(loss_tracker.result(), metrics)
    }

    /// The loss and metrics on `(x, y)` (Keras' `evaluate(..., return_dict=True)`), in batches of 32. Any
    /// [`Numeric`] element type is accepted, as in [`Sequential::fit`].
    ///
    /// It takes `&mut self` because the compiled metrics accumulate their state in the model, as Keras' do;
    /// [`Sequential::predict`] needs only `&self`.
    ///
    /// # Errors
    /// Before `compile`, or on data that does not fit the model (as for [`Sequential::fit`]).
    pub fn evaluate<'a, A: Numeric, B: Numeric, D1: Dimension, D2: Dimension>(
        &mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
    ) -> Result<Logs> {
        self.evaluate_data(data(x), data(y), None, 32)
    }

    /// [`Sequential::evaluate`] with another batch size.
    pub fn evaluate_with_batch_size<'a, A: Numeric, B: Numeric, D1: Dimension, D2: Dimension>(
        &mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
        batch_size: usize,
    ) -> Result<Logs> {
        self.evaluate_data(data(x), data(y), None, batch_size)
    }

    /// [`Sequential::evaluate`] with a weight per sample (Keras' `evaluate(x, y, sample_weight=w)`): the loss is
    /// `sum(loss_i * w_i) / n` per batch, as in Keras; the compiled metrics stay unweighted, as Keras' `metrics`.
    ///
    /// # Errors
    /// As [`Sequential::evaluate`], and weights that are not one per sample.
    pub fn evaluate_weighted<'a, A: Numeric, B: Numeric, W: Numeric, D1: Dimension, D2: Dimension>(
        &mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
        sample_weight: impl AsArray<'a, W, Ix1>,
    ) -> Result<Logs> {
        self.evaluate_data(data(x), data(y), Some(W::to_f32_array(sample_weight.into())), 32)
    }

    fn evaluate_data(
        &mut self,
        x: Data<'_>,
        y: Data<'_>,
        weights: Option<CowArray<'_, f32, Ix1>>,
        batch_size: usize,
    ) -> Result<Logs> {
        let (x, y) = (x.view(), y.view());
        let mut dp = DataParallel::new(self);
        let result = self.evaluate_checked(&x, &y, weights, batch_size, &mut dp);
        dp.finish(result)
    }

    fn evaluate_checked(
        &mut self,
        x: &ArrayViewD<'_, f32>,
        y: &ArrayViewD<'_, f32>,
        weights: Option<CowArray<'_, f32, Ix1>>,
        batch_size: usize,
        dp: &mut DataParallel,
    ) -> Result<Logs> {
        if self.compiled.is_none() {
            return Err(Error::NotReady("evaluate before compile: call model.compile(...) first".into()));
        }
        if batch_size == 0 {
            return Err(Error::invalid_argument("batch_size", 0, "must be at least 1"));
        }
        check_has_samples(x, "evaluate")?;
        // Weights before `prepare`: an error here leaves an unbuilt model unbuilt.
        let weights = weights.map(|w| check_sample_weight(w, x.len_of(Axis(0)), "evaluate")).transpose()?;
        self.prepare(x, Some(y), "evaluate")?;
        let mut metrics = self.take_metrics(y, None)?;
        let mut data = vec![("x", x.shape()), ("y", y.shape())];
        data.extend(weights.as_ref().map(|w| ("sample_weight", w.shape())));
        if let Err(e) = dp.agree(self, y, &data, "evaluate") {
            self.put_metrics(metrics);
            return Err(e);
        }
        let logs =
            self.evaluate_views(x, y, weights.as_ref().map(|w| w.view()).as_ref(), batch_size, &mut metrics);
        self.put_metrics(metrics);
        Ok(logs)
    }

    /// The model's outputs for `x`, computed without recording gradients, [`PREDICT_BATCH_SIZE`] samples at a
    /// time. Any [`Numeric`] element type is accepted.
    ///
    /// It takes `&self`: a model can serve predictions from several threads at once (share it in an `Arc`, or
    /// by reference in scoped threads). The result is an `ArrayD`, as outputs may have any rank; for the usual
    /// `(samples, classes)`, [`Sequential::predict_classes`] gives the class of each sample, and
    /// `into_dimensionality::<Ix2>()` a 2-D array.
    ///
    /// ```
    /// use kerust::{layers::Dense, models::Sequential};
    /// use ndarray::{array, Ix2};
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(3).activation("softmax").input_shape([2]))?;
    /// let probabilities = model.predict(&array![[0.5f32, -1.0], [2.0, 0.0]])?.into_dimensionality::<Ix2>()?;
    /// assert_eq!(probabilities.row(0).len(), 3);
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// A model that is not built yet (its first layer has no `input_shape` and it has seen no data: call
    /// [`Sequential::build`]); `x` that does not match the model's input shape.
    pub fn predict<'a, A: Numeric, D: Dimension>(&self, x: impl AsArray<'a, A, D>) -> Result<Tensor> {
        self.predict_with_batch_size(x, PREDICT_BATCH_SIZE)
    }

    /// [`Sequential::predict`] with another batch size.
    pub fn predict_with_batch_size<'a, A: Numeric, D: Dimension>(
        &self,
        x: impl AsArray<'a, A, D>,
        batch_size: usize,
    ) -> Result<Tensor> {
        let x = data(x);
        let x = x.view();
        let mut dp = DataParallel::new(self);
        let result = self.predict_checked(&x, batch_size, &mut dp);
        dp.finish(result)
    }

    fn predict_checked(
        &self,
        x: &ArrayViewD<'_, f32>,
        batch_size: usize,
        dp: &mut DataParallel,
    ) -> Result<Tensor> {
        if batch_size == 0 {
            return Err(Error::invalid_argument("batch_size", 0, "must be at least 1"));
        }
        if !self.is_built() {
            return Err(Error::NotReady(
                "predict on a model that is not built: give the first layer an input_shape (or add an Input), \
                 or call model.build(input_shape), before predicting"
                    .into(),
            ));
        }
        check_has_samples(x, "predict")?;
        self.check_data(x, None, "predict")?;
        dp.agree(self, x, &[("x", x.shape())], "predict")?;
        if let Some(result) = dp.predict(self, x, batch_size) {
            return Ok(result);
        }
        let out_shape: Vec<usize> = std::iter::once(x.len_of(Axis(0)))
            .chain(self.output_shape().unwrap_or_default().iter().copied())
            .collect();
        let mut result = ArrayD::<f32>::zeros(IxDyn(&out_shape));
        self.for_each_batch(&mut Workspace::new(), x, None, batch_size, |rows, out, _| {
            result.slice_axis_mut(Axis(0), (rows.start..rows.end).into()).assign(&out);
        });
        Ok(result)
    }

    /// The class of each sample (Keras 2's `predict_classes`): the index of the largest output for an output of
    /// several units (softmax), or 1 where the single output is above 0.5 (sigmoid), else 0. NaN outputs give
    /// the class of the first NaN, as numpy's `argmax` does.
    ///
    /// ```
    /// use kerust::{layers::Dense, models::Sequential};
    /// use ndarray::array;
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(3).activation("softmax").input_shape([2]))?;
    /// let classes = model.predict_classes(&array![[0.5f32, -1.0], [2.0, 0.0]])?; // Array1<usize>
    /// assert_eq!(classes.len(), 2);
    /// assert!(classes.iter().all(|&c| c < 3));
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sequential::predict`], and a model whose output per sample is not a vector (e.g. an image).
    pub fn predict_classes<'a, A: Numeric, D: Dimension>(
        &self,
        x: impl AsArray<'a, A, D>,
    ) -> Result<Array1<usize>> {
        let out = self.output_shape().unwrap_or_default().to_vec();
        if self.is_built() && out.len() != 1 {
            return Err(Error::shape(
                "predict_classes: the model's output",
                "(None, classes): one vector per sample",
                super::shape_str(&out),
            ));
        }
        let pred = self.predict(x)?;
        let pred = pred.view().into_dimensionality::<ndarray::Ix2>()?;
        Ok(if pred.ncols() == 1 {
            pred.column(0).mapv(|p| usize::from(p > 0.5))
        } else {
            crate::utils::argmax(pred, Axis(1))?
        })
    }
}

/// The logs of an evaluation or a step: the loss, then each metric's result.
pub(super) fn loss_and_metrics(loss: f32, metrics: &[Box<dyn Metric>]) -> Logs {
    let mut logs = Logs::new();
    logs.set("loss", loss);
    for m in metrics {
        logs.set(m.name(), m.result());
    }
    logs
}

/// An error unless `x` has a sample axis with at least one sample.
fn check_has_samples(x: &ArrayViewD<'_, f32>, context: &str) -> Result<()> {
    if x.ndim() < 2 || x.len_of(Axis(0)) == 0 {
        return Err(Error::shape(
            format!("{context} inputs"),
            "at least one sample: (samples, ...input shape)",
            format!("{:?}", x.shape()),
        ));
    }
    Ok(())
}

impl Sequential {
    /// One gradient update on exactly this batch (Keras' `train_on_batch`); returns the batch's loss and
    /// metrics. The model is built from `x` if needed. Any [`Numeric`] element type is accepted.
    ///
    /// # Errors
    /// As for [`Sequential::fit`]: before `compile`, or on data that does not fit the model.
    pub fn train_on_batch<'a, A: Numeric, B: Numeric, D1: Dimension, D2: Dimension>(
        &mut self,
        x: impl AsArray<'a, A, D1>,
        y: impl AsArray<'a, B, D2>,
    ) -> Result<Logs> {
        let (x, y) = (data(x), data(y));
        let (x, y) = (x.view(), y.view());
        let mut dp = DataParallel::new(self);
        let result = self.train_on_batch_checked(&x, &y, &mut dp);
        dp.finish(result)
    }

    fn train_on_batch_checked(
        &mut self,
        x: &ArrayViewD<'_, f32>,
        y: &ArrayViewD<'_, f32>,
        dp: &mut DataParallel,
    ) -> Result<Logs> {
        if self.compiled.is_none() {
            return Err(Error::NotReady(
                "train_on_batch before compile: call model.compile(...) first".into(),
            ));
        }
        self.prepare(x, Some(y), "train_on_batch")?;
        let rows: Vec<usize> = (0..x.len_of(Axis(0))).collect();
        let mut metrics = self.take_metrics(y, None)?;
        if let Err(e) = dp.begin(self, y, &[("x", x.shape()), ("y", y.shape())], "train_on_batch") {
            self.put_metrics(metrics);
            return Err(e);
        }
        metrics.iter_mut().for_each(|m| m.reset());
        let logs =
            self.train_step(x, y, None, &rows, &mut metrics, dp).map(|loss| loss_and_metrics(loss, &metrics));
        self.put_metrics(metrics);
        logs
    }
}
