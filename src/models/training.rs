//! The training loop: `fit`, `evaluate`, `predict`. It knows layers, losses, metrics and optimizers only through
//! their traits.
use ndarray::{Array1, ArrayD, ArrayView1, ArrayViewD, AsArray, Axis, CowArray, Ix1, IxDyn};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::ops::Not;

use super::{shape_str, Metrics, Model};
use crate::autodiff::{Tape, Tensor, Var, Workspace};
use crate::callbacks::{Callback, CallbackList, History, Logs, ProgbarLogger, TrainParams};
use crate::device::Storage;
use crate::layers::CallContext;
use crate::metrics::{Mean, Metric};
use crate::{Error, Numeric, Result};

mod buckets;
mod data;
mod distributed;
mod sharded;
use data::{gather, Data};
pub use data::{Arrays, IntoArray, IntoArrays, Outputs};
use distributed::DataParallel;

/// The compiled metrics of every output, taken out of the model while a call updates them.
type HeadMetrics = Vec<Vec<Box<dyn Metric>>>;

/// Samples per batch in [`Model::predict`]. Keras uses 32; kerust uses 256 because outputs do not depend on
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
    model: &'m mut Model,
    x: Arrays<'a>,
    y: Arrays<'a>,
    sample_weight: Option<CowArray<'a, f32, Ix1>>,
    class_weight: Option<Vec<(usize, f32)>>,
    batch_size: usize,
    epochs: usize,
    verbose: u8,
    validation_data: Option<(Arrays<'a>, Arrays<'a>)>,
    validation_split: f32,
    shuffle: bool,
    initial_epoch: usize,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    borrowed_callbacks: Vec<&'a mut dyn Callback>,
}

impl Model {
    /// Starts a `fit` on inputs `x` (samples on the first axis, then the model's input shape) and targets `y`;
    /// both by reference or as views. Any [`Numeric`] element type is accepted (`u8` images, `i64` labels, `f64`
    /// arrays): `f32` data is never copied as a whole, other types are converted to `f32` once.
    ///
    /// A model of several inputs or outputs takes one array per input and per output ([`IntoArrays`]): a
    /// tuple such as `(&images, &features)` in the model's order, or by name with
    /// [`arrays!`](crate::arrays)`["image" => &images, "features" => &features]`.
    pub fn fit<'m, 'a>(&'m mut self, x: impl IntoArrays<'a>, y: impl IntoArrays<'a>) -> Fit<'m, 'a> {
        Fit {
            model: self,
            x: x.into_arrays(),
            y: y.into_arrays(),
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
    pub fn validation_data(mut self, x: impl IntoArrays<'a>, y: impl IntoArrays<'a>) -> Self {
        self.validation_data = Some((x.into_arrays(), y.into_arrays()));
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
    /// `fit` before `compile`; a batch size of 0; a validation split outside [0, 1); no samples; another
    /// number of arrays than the model has inputs or outputs, or names it does not have; inputs whose shape does
    /// not match the model's input (e.g. (60000, 28, 28) into an input of 784); targets that do not match the
    /// inputs' sample count or the output layer; any of these for the validation data; sample weights not one
    /// per sample, or given with class weights; class weights for a model of several outputs or targets of more
    /// than two axes. The model is unchanged when one of these is reported. Later, an error from a callback ends
    /// training.
    ///
    /// A distributed model ([`Model::distribute`]) also reports a rank that failed these checks, or that
    /// would train another model, data shape or setting. A rank that fails during training (an error in its
    /// step or in a callback) makes `fit` return, on every rank, an [`Error::Distributed`] naming that rank
    /// and its message; only a rank that dies or hangs ends the whole job (see
    /// [`DistributedOptions::collective_timeout`](crate::distributed::DistributedOptions::collective_timeout)).
    pub fn run(self) -> Result<History> {
        let mut dp = DataParallel::new(self.model);
        let result = self.run_with(&mut dp);
        dp.finish(result)
    }

    fn run_with(self, dp: &mut DataParallel) -> Result<History> {
        crate::speed_notice::notice_once();
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
        let (x, y) = model.match_data(x, y, "fit")?;
        let (x, y) = (views(&x), views(&y));
        let n = check_samples(&x, Some(&y), "fit", model.shards_data())?;
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
            (None, Some(classes)) => {
                if y.len() != 1 {
                    return Err(Error::invalid_argument(
                        "class_weight",
                        format!("{} outputs", y.len()),
                        "`class_weight` is only supported for Models with a single output (as in Keras)",
                    ));
                }
                Some(CowArray::from(class_weights_to_sample_weights(&y[0], &classes)?))
            }
            (None, None) => None,
        };
        model.prepare(&x, Some(&y), batch_size, "fit")?;
        let weights = weights.as_ref().map(|w| w.view());
        let validation_data = match validation_data {
            Some((vx, vy)) => Some(model.match_data(vx, vy, "validation_data")?),
            None => None,
        };
        let validation_data = validation_data.as_ref().map(|(vx, vy)| (views(vx), views(vy)));
        let (train_x, train_y, train_w, val, val_w) = match validation_data {
            Some((vx, vy)) => {
                check_samples(&vx, Some(&vy), "validation_data", model.shards_data())?;
                model.check_data(&vx, Some(&vy), "validation_data")?;
                (x, y, weights, Some((vx, vy)), None)
            }
            None if validation_split > 0.0 && model.shards_data() => {
                return Err(Error::invalid_argument(
                    "validation_split",
                    validation_split,
                    "is not supported with sharded data (its last fraction would lie on the last ranks only): \
                     pass each rank's part of the validation data as validation_data",
                ));
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
                let (tx, vx) = split(&x, split_at);
                let (ty, vy) = split(&y, split_at);
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
        let mut metrics = model.take_metrics(&train_y, val.as_ref().map(|(_, vy)| vy.as_slice()))?;
        let settings = format!(
            "fit: batch_size={batch_size} epochs={epochs} initial_epoch={initial_epoch} shuffle={shuffle}"
        );
        let mut data = data_shapes("", &train_x, &train_y);
        if let Some((vx, vy)) = &val {
            data.extend(data_shapes("validation ", vx, vy));
        }
        data.extend(train_w.as_ref().map(|w| ("sample_weight".to_owned(), w.shape())));
        let data: Vec<(&str, &[usize])> = data.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        if let Err(e) = dp.begin(model, &train_y, &data, &settings).and_then(|()| dp.shard_optimizer(model)) {
            model.put_metrics(metrics);
            return Err(e);
        }
        // Sharded, the global data set: every rank's part.
        let n_train = dp.samples(train_x[0].len_of(Axis(0)));
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
        // Keras' order: the progress bar (printed by the chief only), the user's callbacks, History last.
        let mut list = CallbackList::new();
        if verbose > 0 && model.is_chief() {
            list.push(&mut progbar);
        }
        for cb in callbacks.iter_mut() {
            list.push(&mut **cb);
        }
        for cb in borrowed_callbacks.iter_mut() {
            list.push(&mut **cb);
        }
        list.push(&mut history);

        let data = TrainData { x: &train_x, y: &train_y, weights: train_w.as_ref() };
        let val = val.as_ref().map(|(vx, vy)| TrainData { x: vx, y: vy, weights: val_w.as_ref() });
        let mut result =
            model.train_epochs(&data, val.as_ref(), &params, shuffle, &mut metrics, &mut list, dp);
        if result.is_err() && dp.is_agreed() {
            // Every rank stopped at the same point with the same error: the optimizer's state, spread over the
            // ranks by a sharded update, is made whole again for the caller (its own failure is secondary).
            if let Err(e) = dp.gather_optimizer_state(model) {
                result = result.map_err(|first| Error::Distributed {
                    rank: model.communicator().map_or(0, |c| c.rank()),
                    size: model.communicator().map_or(1, |c| c.size()),
                    reason: format!("{first}; then gathering the optimizer's state failed: {e}"),
                });
            }
        }
        model.put_metrics(metrics);
        drop(list);
        result.map(|()| history)
    }
}

/// Inputs, targets and sample weights, in the model's order of inputs and outputs.
struct TrainData<'d, 'a> {
    x: &'d [ArrayViewD<'a, f32>],
    y: &'d [ArrayViewD<'a, f32>],
    weights: Option<&'d ArrayView1<'a, f32>>,
}

impl Model {
    /// The epochs of `fit`, once everything is checked: hooks, shuffles, steps, validation.
    #[allow(clippy::too_many_arguments)]
    fn train_epochs(
        &mut self,
        data: &TrainData<'_, '_>,
        val: Option<&TrainData<'_, '_>>,
        params: &TrainParams,
        shuffle: bool,
        metrics: &mut HeadMetrics,
        callbacks: &mut CallbackList<'_>,
        dp: &mut DataParallel,
    ) -> Result<()> {
        // Sharded, the shuffle and the batches are of the global indices; `train_step` keeps this rank's.
        let n_train = dp.samples(data.x[0].len_of(Axis(0)));
        self.stop_training = false;
        let mut order: Vec<usize> = (0..n_train).collect();
        let mut loss_tracker = Mean::new();
        let mut head_trackers: Vec<Mean> = metrics.iter().map(|_| Mean::new()).collect();
        let (mut head_losses, mut head_means) = (Vec::new(), Vec::new());
        let prefixes = self.log_prefixes();
        let mut logs = Logs::new();
        // Distributed, each callback's outcome is agreed by the ranks (`dp.status`, or inside the step's and the
        // stop's collectives), so an error on one rank is returned on every rank.
        dp.status(callbacks.on_train_begin(self, params))?;
        for epoch in params.initial_epoch..params.epochs {
            dp.status(callbacks.on_epoch_begin(self, epoch))?;
            // A fresh shuffle of the original order from this epoch's own generator: resumable (see
            // `Model::seed`).
            self.begin_epoch_rng();
            if shuffle {
                order.iter_mut().enumerate().for_each(|(i, o)| *o = i);
                order.shuffle(&mut self.train_rng);
            }
            loss_tracker.reset();
            head_trackers.iter_mut().for_each(Metric::reset);
            metrics.iter_mut().flatten().for_each(|m| m.reset());
            logs.clear();
            for (batch, rows) in order.chunks(params.batch_size).enumerate() {
                let begun = callbacks.on_train_batch_begin(self, batch);
                let loss = self.train_step(data, rows, metrics, &mut head_losses, dp, begun)?;
                loss_tracker.update_value(loss, rows.len() as f32);
                for (t, &l) in head_trackers.iter_mut().zip(&head_losses) {
                    t.update_value(l, rows.len() as f32);
                }
                head_means.clear();
                head_means.extend(head_trackers.iter().map(Metric::result));
                write_logs(&mut logs, loss_tracker.result(), &head_means, metrics, &prefixes);
                let ended = callbacks.on_train_batch_end(self, batch, &logs);
                if dp.stopping(self, ended)? {
                    break;
                }
            }
            if let Some(val) = val {
                let val_logs = self.evaluate_views(val, params.batch_size, metrics, dp)?;
                for (name, value) in &val_logs {
                    logs.set(&format!("val_{name}"), value);
                }
            }
            dp.gather_optimizer_state(self)?;
            let ended = callbacks.on_epoch_end(self, epoch, &logs);
            if dp.stopping(self, ended)? {
                break;
            }
        }
        dp.gather_optimizer_state(self)?;
        dp.status(callbacks.on_train_end(self, &logs))
    }
}

/// Views of the arrays.
fn views<'b>(data: &'b [Data<'_>]) -> Vec<ArrayViewD<'b, f32>> {
    data.iter().map(|d| d.view()).collect()
}

/// Every array cut at sample `at`.
fn split<'a>(
    arrays: &[ArrayViewD<'a, f32>],
    at: usize,
) -> (Vec<ArrayViewD<'a, f32>>, Vec<ArrayViewD<'a, f32>>) {
    arrays.iter().map(|a| a.clone().split_at(Axis(0), at)).unzip()
}

/// The names and shapes of a call's arrays (`x`, `y`; `x0`, `x1`, ... for several), which distributed ranks
/// compare.
fn data_shapes<'d>(
    prefix: &str,
    x: &'d [ArrayViewD<'_, f32>],
    y: &'d [ArrayViewD<'_, f32>],
) -> Vec<(String, &'d [usize])> {
    let name = |what: &str, i: usize, n: usize| {
        if n == 1 {
            format!("{prefix}{what}")
        } else {
            format!("{prefix}{what}{i}")
        }
    };
    let xs = x.iter().enumerate().map(|(i, a)| (name("x", i, x.len()), a.shape()));
    let ys = y.iter().enumerate().map(|(i, a)| (name("y", i, y.len()), a.shape()));
    xs.chain(ys).collect()
}

/// The batch of samples `rows` of each array, as constants on `tape`.
fn batch_of<'t>(tape: &'t Tape<'_>, arrays: &[ArrayViewD<'_, f32>], rows: &[usize]) -> Vec<Var<'t>> {
    arrays
        .iter()
        .map(|a| tape.constant_with(&batch_shape(a, rows.len()), |buf| gather(a, rows, buf)))
        .collect()
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

/// One sample of zeros per array: the placeholder batch of a rank that runs a step without samples.
fn zeros_of<'t>(tape: &'t Tape<'_>, arrays: &[ArrayViewD<'_, f32>]) -> Vec<Var<'t>> {
    arrays.iter().map(|a| tape.constant_with(&batch_shape(a, 1), |buf| buf.fill(0.0))).collect()
}

fn batch_shape(data: &ArrayViewD<'_, f32>, rows: usize) -> Vec<usize> {
    let mut shape = data.shape().to_vec();
    shape[0] = rows;
    shape
}

impl Model {
    /// The arrays of a call in the order of the model's inputs and outputs.
    fn match_data<'a>(
        &self,
        x: Arrays<'a>,
        y: Arrays<'a>,
        context: &str,
    ) -> Result<(Vec<Data<'a>>, Vec<Data<'a>>)> {
        let x = x.matched(&self.input_names(), "input", context)?;
        let y = y.matched(&self.output_names(), "output", context)?;
        Ok((x, y))
    }

    /// Builds the model from `x` if needed and checks `x` (and `y`, if given) against it; on error, a build
    /// done here is undone.
    fn prepare(
        &mut self,
        x: &[ArrayViewD<'_, f32>],
        y: Option<&[ArrayViewD<'_, f32>]>,
        batch_size: usize,
        context: &str,
    ) -> Result<()> {
        let n = check_samples(x, y, context, y.is_some() && self.shards_data())?;
        let built_before = self.is_built();
        let rng_before = self.rng.clone();
        if !built_before {
            let declared = self.input_shape().map(<[usize]>::to_vec);
            let shape = declared.unwrap_or_else(|| x[0].shape()[1..].to_vec());
            self.build(&shape)?;
        }
        let result = self
            .check_data(x, y, context)
            .and_then(|()| self.net.check_batch_memory(batch_size.min(n), y.is_some(), context));
        if result.is_err() && !built_before {
            self.unbuild();
            self.rng = rng_before;
        }
        result
    }

    /// Undoes the build of a Sequential built from data (its weights, nodes and input). A model with a declared
    /// input shape is built when its layers are added, so it never gets here.
    fn unbuild(&mut self) {
        self.params.truncate(0);
        let keep = std::mem::take(&mut self.net.layers);
        self.net = super::graph::Net::unbuilt(keep);
    }

    /// Checks inputs and targets against the built model and the compiled losses.
    fn check_data(
        &self,
        x: &[ArrayViewD<'_, f32>],
        y: Option<&[ArrayViewD<'_, f32>]>,
        context: &str,
    ) -> Result<()> {
        let names = self.input_names();
        for ((x, input), name) in x.iter().zip(self.input_shapes()).zip(names) {
            if x.ndim() < 1 || &x.shape()[1..] != input {
                // The most common case with images: grayscale data without the channel axis a Conv2D expects.
                let hint = match input.split_last() {
                    Some((1, rest)) if x.ndim() >= 1 && &x.shape()[1..] == rest => format!(
                        "; the channel axis is missing: (None, {}) data for a model of {}: add it with \
                         `x.insert_axis(Axis({}))` (numpy's `expand_dims(x, -1)`)",
                        x.shape()[1..].iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                        shape_str(input),
                        x.ndim()
                    ),
                    _ => String::new(),
                };
                let what = if self.net.inputs.len() == 1 {
                    "the inputs do not match the model's input".to_owned()
                } else {
                    format!("the inputs do not match the model's input `{name}`")
                };
                return Err(Error::shape(
                    format!("{context}: {what}"),
                    format!("{} (samples first)", shape_str(input)),
                    format!("{:?}{hint}", x.shape()),
                ));
            }
        }
        // Values a layer cannot take (an Embedding's index out of range), found before any step runs.
        self.net.check_inputs(x)?;
        let (Some(y), Some(compiled)) = (y, &self.compiled) else { return Ok(()) };
        let several = compiled.heads.len() > 1;
        for (((y, head), out), name) in
            y.iter().zip(&compiled.heads).zip(self.output_shapes()).zip(self.output_names())
        {
            head.loss.validate(y.view(), out).map_err(|e| match e {
                Error::Shape { context, expected, received } if several => {
                    Error::Shape { context: format!("{context} of output `{name}`"), expected, received }
                }
                other => other,
            })?;
            crate::losses::check_per_sample(&*head.loss, y.view(), out)?;
        }
        Ok(())
    }

    /// The prefix of each output's logs: none for a single output (`loss`, `accuracy`), the output's name for
    /// several (`digit_loss`, `digit_accuracy`), as Keras writes them.
    fn log_prefixes(&self) -> Vec<Option<String>> {
        let names = self.output_names();
        if names.len() == 1 {
            return vec![None];
        }
        names.into_iter().map(|n| Some(n.to_owned())).collect()
    }

    /// The compiled metrics, taken out of the model so the loop can borrow both (`put_metrics` returns them).
    /// The first time, names are resolved for these targets: `"accuracy"` becomes the variant the loss and the
    /// targets' per-sample shape call for, as in Keras. Every metric is then checked against the shapes of `y`
    /// (and `val_y`) and the model's outputs; on error the model keeps its metrics.
    fn take_metrics(
        &mut self,
        y: &[ArrayViewD<'_, f32>],
        val_y: Option<&[ArrayViewD<'_, f32>]>,
    ) -> Result<HeadMetrics> {
        let outs: Vec<Vec<usize>> = self.output_shapes().into_iter().map(<[usize]>::to_vec).collect();
        let Some(compiled) = self.compiled.as_mut() else { return Ok(Vec::new()) };
        for ((h, head), out) in compiled.heads.iter_mut().enumerate().zip(&outs) {
            let super::Head { loss, metrics, .. } = head;
            if let Metrics::Pending(specs) = metrics {
                // Names were checked by `compile`, and objects resolve to themselves: this cannot fail.
                let resolved = std::mem::take(specs)
                    .into_iter()
                    .map(|spec| spec.resolve(loss.name(), &y[h].shape()[1..], out))
                    .collect::<Result<Vec<_>>>()?;
                *metrics = Metrics::Resolved(resolved);
            }
        }
        // Called from a callback during fit (e.g. evaluate): the losses only, as the metrics are in use.
        if compiled.heads.iter().any(|h| matches!(h.metrics, Metrics::Lent(_))) {
            return Ok(compiled.heads.iter().map(|_| Vec::new()).collect());
        }
        for ((h, head), out) in compiled.heads.iter().enumerate().zip(&outs) {
            let Metrics::Resolved(metrics) = &head.metrics else { unreachable!("resolved above") };
            for y in std::iter::once(&y[h]).chain(val_y.map(|v| &v[h])) {
                let pred: Vec<usize> = y.shape().iter().take(1).chain(out).copied().collect();
                for m in metrics.iter() {
                    m.check_shapes(y.shape(), &pred)?;
                }
            }
        }
        Ok(compiled
            .heads
            .iter_mut()
            .map(|head| {
                let names = head.metric_names();
                match std::mem::replace(&mut head.metrics, Metrics::Lent(names)) {
                    Metrics::Resolved(metrics) => metrics,
                    _ => unreachable!("resolved above"),
                }
            })
            .collect())
    }

    /// Gives back what `take_metrics` lent, to the heads that still wait for them: a call nested in a running
    /// fit got none and gives none back, and a `compile` during the fit (from a callback) replaced the heads.
    fn put_metrics(&mut self, metrics: HeadMetrics) {
        let Some(compiled) = self.compiled.as_mut() else { return };
        for (head, m) in compiled.heads.iter_mut().zip(metrics) {
            let nested = matches!(&head.metrics, Metrics::Lent(names) if !names.is_empty()) && m.is_empty();
            if matches!(head.metrics, Metrics::Lent(_)) && !nested {
                head.metrics = Metrics::Resolved(m);
            }
        }
    }

    /// One gradient step on the samples `rows`, weighted by `data.weights` if given; returns the batch loss
    /// (the weighted sum over the outputs), and each output's own loss in `head_losses`.
    fn train_step(
        &mut self,
        data: &TrainData<'_, '_>,
        rows: &[usize],
        metrics: &mut HeadMetrics,
        head_losses: &mut Vec<f32>,
        dp: &mut DataParallel,
        before: Result<()>,
    ) -> Result<f32> {
        let Model { net, params, compiled, train_rng: rng, workspace, grads, .. } = self;
        let compiled =
            compiled.as_mut().ok_or_else(|| Error::NotReady("train_step before compile".into()))?;
        head_losses.clear();
        // Distributed: this rank's share of the batch; the others' gradients arrive in `dp.reduce`. A rank
        // whose share is empty (a last batch smaller than the rank count) adds nothing, and applies the same
        // update as the others.
        let rows = dp.share(rows, rng);
        let rows = &*rows;
        let heads = compiled.heads.len();
        // A model whose layers synchronize across the ranks (SyncBatchNorm) runs collectives inside its forward
        // and backward passes: a rank with nothing to add (an empty share, or a failure before the step) still
        // runs the step, on a placeholder sample of zeros and with weight 0, so that the others find it in each.
        let synchronized = dp.is_active() && net.synchronizing_layer().is_some();
        let placeholder = synchronized && (rows.is_empty() || before.is_err());
        let replicas = dp.replicas(placeholder);
        let step = || {
            if rows.is_empty() && !placeholder {
                head_losses.resize(heads, 0.0);
                return Ok((0.0, Vec::new()));
            }
            let tape = Tape::with_workspace(params, std::mem::take(workspace));
            let (xb, yb) = if placeholder {
                (zeros_of(&tape, data.x), zeros_of(&tape, data.y))
            } else {
                (batch_of(&tape, data.x, rows), batch_of(&tape, data.y, rows))
            };
            let mut ctx = CallContext::new(true, rng).with_replicas(replicas);
            let out = net.forward(&xb, &mut ctx)?;
            let wb = data.weights.filter(|_| !placeholder).map(|w| {
                tape.constant_with(&[rows.len()], |buf| {
                    buf.iter_mut().zip(rows).for_each(|(b, &r)| *b = w[r]);
                })
            });
            let loss = total_loss(&compiled.heads, &yb, &out, wb, head_losses);
            let loss = with_penalties(loss, &net.layers, &tape);
            let value = loss.item();
            dp.backward(&tape, loss, grads)?;
            // Compiled metrics are unweighted, as Keras' `metrics` (its `weighted_metrics` are another list).
            if metrics.iter().any(|m| !m.is_empty()) && !placeholder {
                Var::with_values(&out, |pred| {
                    Var::with_values(&yb, |truth| {
                        if dp.is_active() {
                            dp.stage_outputs(pred, truth);
                        } else {
                            for ((m, p), t) in metrics.iter_mut().zip(pred).zip(truth) {
                                m.iter_mut().for_each(|m| m.update(t.view(), p.view(), None));
                            }
                        }
                    })
                });
            }
            *workspace = tape.into_workspace();
            Ok((value, ctx.into_updates()))
        };
        let computed = match before {
            Ok(()) => step(),
            Err(e) => {
                if placeholder {
                    // Only to join the collectives: its outcome is this rank's earlier failure.
                    let _ = step();
                }
                Err(e)
            }
        };
        // Distributed, a failure on this rank (here or in the callback before the step) goes into the step's
        // collective, so that every rank returns it rather than waiting for this one.
        let (value, mut updates, failure) = match computed {
            Ok((value, updates)) => (value, updates, None),
            Err(e) if !dp.is_active() => return Err(e),
            Err(e) => {
                head_losses.resize(heads, 0.0);
                (0.0, Vec::new(), Some(e))
            }
        };
        let value = dp.reduce(params, grads, &mut updates, value, head_losses, metrics, failure)?;
        dp.apply(compiled.optimizer.as_mut(), params, grads)?;
        // State the layers recorded during the forward pass (moving statistics), now that the tape is gone.
        for (id, value) in updates {
            let weight = params.value_mut(id);
            assert_eq!(weight.shape(), value.shape(), "a state update of another shape than its weight");
            *weight = if value.device() == weight.device() {
                value
            } else {
                Storage::from_array(weight.device(), value.host().view())
            };
        }
        Ok(value)
    }
}

/// The loss of a batch: each output's loss (weighted by the samples' `weights` if given) goes into
/// `head_losses`, as Keras logs them (without the output's loss weight); the total is the sum of
/// `loss_weight * loss`. One output of weight 1 is exactly its loss, with no extra node on the tape.
fn total_loss<'t>(
    heads: &[super::Head],
    y: &[Var<'t>],
    out: &[Var<'t>],
    weights: Option<Var<'t>>,
    head_losses: &mut Vec<f32>,
) -> Var<'t> {
    let mut total: Option<Var<'t>> = None;
    for ((head, &y), &out) in heads.iter().zip(y).zip(out) {
        let loss = match weights {
            Some(w) => head.loss.weighted(y, out, w),
            None => head.loss.call(y, out),
        };
        head_losses.push(loss.item());
        let loss = if head.weight == 1.0 { loss } else { loss.mul_scalar(head.weight) };
        total = Some(total.map_or(loss, |t| t.add(loss)));
    }
    total.expect("a compiled model has at least one output")
}

/// `loss` plus the regularizers' penalties of the layers' trainable weights, as Keras adds `model.losses` to
/// the compiled loss (in training and evaluation alike).
fn with_penalties<'t>(
    loss: Var<'t>,
    layers: &[Box<dyn crate::layers::Layer>],
    tape: &'t Tape<'t>,
) -> Var<'t> {
    let params = tape.params();
    layers
        .iter()
        .flat_map(|layer| layer.regularizers())
        .filter(|(id, _)| params.get(*id).trainable)
        .fold(loss, |total, (id, regularizer)| total.add(regularizer.penalty(tape.param(id))))
}

impl Model {
    /// Runs the model on `x` in batches without recording gradients, with `workspace`'s buffers; `each` gets
    /// every batch's rows and outputs, and with `y` its targets, each output's (weighted) loss and the total.
    #[allow(clippy::type_complexity)]
    fn for_each_batch(
        &self,
        workspace: &mut Workspace,
        x: &[ArrayViewD<'_, f32>],
        y: Option<(&[ArrayViewD<'_, f32>], Option<&ArrayView1<'_, f32>>)>,
        batch_size: usize,
        mut each: impl FnMut(
            std::ops::Range<usize>,
            &[ArrayViewD<'_, f32>],
            Option<(&[ArrayViewD<'_, f32>], &[f32], f32)>,
        ),
    ) -> Result<()> {
        let n = x[0].len_of(Axis(0));
        let Model { net, params, compiled, .. } = self;
        // Inference draws nothing at random (dropout is off); the context wants a generator all the same.
        let mut rng = StdRng::seed_from_u64(0);
        let mut start = 0;
        let mut rows = Vec::with_capacity(batch_size.min(n));
        let mut head_losses = Vec::new();
        while start < n {
            let end = (start + batch_size).min(n);
            rows.clear();
            rows.extend(start..end);
            let tape = Tape::inference(params, std::mem::take(workspace));
            let xb = batch_of(&tape, x, &rows);
            let out = net.forward(&xb, &mut CallContext::new(false, &mut rng))?;
            match (y, compiled) {
                (Some((y, weights)), Some(compiled)) => {
                    let yb = batch_of(&tape, y, &rows);
                    let wb = weights.map(|w| tape.constant(w.slice(ndarray::s![start..end]).into_dyn()));
                    head_losses.clear();
                    let total = total_loss(&compiled.heads, &yb, &out, wb, &mut head_losses);
                    let total = with_penalties(total, &net.layers, &tape).item();
                    Var::with_values(&out, |o| {
                        Var::with_values(&yb, |t| each(start..end, o, Some((t, &head_losses, total))))
                    });
                }
                _ => Var::with_values(&out, |o| each(start..end, o, None)),
            }
            *workspace = tape.into_workspace();
            start = end;
        }
        Ok(())
    }

    /// Loss and metrics over `data` (weighted by its weights if given), already checked; split over the ranks
    /// of `dp` when it is active.
    fn evaluate_views(
        &mut self,
        data: &TrainData<'_, '_>,
        batch_size: usize,
        metrics: &mut HeadMetrics,
        dp: &mut DataParallel,
    ) -> Result<Logs> {
        if let Some(logs) = dp.evaluate(self, data, batch_size, metrics) {
            return logs;
        }
        let mut loss_tracker = Mean::new();
        let mut head_trackers: Vec<Mean> = metrics.iter().map(|_| Mean::new()).collect();
        metrics.iter_mut().flatten().for_each(|m| m.reset());
        let mut workspace = std::mem::take(&mut self.workspace);
        let result = self.for_each_batch(
            &mut workspace,
            data.x,
            Some((data.y, data.weights)),
            batch_size,
            |rows, out, truth| {
                if let Some((truth, losses, total)) = truth {
                    let n = rows.len() as f32;
                    loss_tracker.update_value(total, n);
                    for (t, &l) in head_trackers.iter_mut().zip(losses) {
                        t.update_value(l, n);
                    }
                    for ((m, p), t) in metrics.iter_mut().zip(out).zip(truth) {
                        m.iter_mut().for_each(|m| m.update(t.view(), p.view(), None));
                    }
                }
            },
        );
        self.workspace = workspace;
        result?;
        let head_means: Vec<f32> = head_trackers.iter().map(Metric::result).collect();
        Ok(loss_and_metrics(loss_tracker.result(), &head_means, metrics, &self.log_prefixes()))
    }

    /// The loss and metrics on `(x, y)` (Keras' `evaluate(..., return_dict=True)`), in batches of 32. Any
    /// [`Numeric`] element type is accepted, and one array per input and output for a model of several, as in
    /// [`Model::fit`].
    ///
    /// It takes `&mut self` because the compiled metrics accumulate their state in the model, as Keras' do;
    /// [`Model::predict`] needs only `&self`.
    ///
    /// # Errors
    /// Before `compile`, or on data that does not fit the model (as for [`Model::fit`]).
    pub fn evaluate<'a>(&mut self, x: impl IntoArrays<'a>, y: impl IntoArrays<'a>) -> Result<Logs> {
        self.evaluate_data(x.into_arrays(), y.into_arrays(), None, 32)
    }

    /// [`Model::evaluate`] with another batch size.
    pub fn evaluate_with_batch_size<'a>(
        &mut self,
        x: impl IntoArrays<'a>,
        y: impl IntoArrays<'a>,
        batch_size: usize,
    ) -> Result<Logs> {
        self.evaluate_data(x.into_arrays(), y.into_arrays(), None, batch_size)
    }

    /// [`Model::evaluate`] with a weight per sample (Keras' `evaluate(x, y, sample_weight=w)`): the loss is
    /// `sum(loss_i * w_i) / n` per batch, as in Keras; the compiled metrics stay unweighted, as Keras' `metrics`.
    ///
    /// # Errors
    /// As [`Model::evaluate`], and weights that are not one per sample.
    pub fn evaluate_weighted<'a, W: Numeric>(
        &mut self,
        x: impl IntoArrays<'a>,
        y: impl IntoArrays<'a>,
        sample_weight: impl AsArray<'a, W, Ix1>,
    ) -> Result<Logs> {
        let weights = W::to_f32_array(sample_weight.into());
        self.evaluate_data(x.into_arrays(), y.into_arrays(), Some(weights), 32)
    }

    fn evaluate_data<'a>(
        &mut self,
        x: Arrays<'a>,
        y: Arrays<'a>,
        weights: Option<CowArray<'_, f32, Ix1>>,
        batch_size: usize,
    ) -> Result<Logs> {
        let mut dp = DataParallel::new(self);
        let result = self.evaluate_checked(x, y, weights, batch_size, &mut dp);
        dp.finish(result)
    }

    fn evaluate_checked<'a>(
        &mut self,
        x: Arrays<'a>,
        y: Arrays<'a>,
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
        let (x, y) = self.match_data(x, y, "evaluate")?;
        let (x, y) = (views(&x), views(&y));
        let n = check_samples(&x, Some(&y), "evaluate", self.shards_data())?;
        // Weights before `prepare`: an error here leaves an unbuilt model unbuilt.
        let weights = weights.map(|w| check_sample_weight(w, n, "evaluate")).transpose()?;
        self.prepare(&x, Some(&y), batch_size, "evaluate")?;
        let mut metrics = self.take_metrics(&y, None)?;
        let mut data = data_shapes("", &x, &y);
        data.extend(weights.as_ref().map(|w| ("sample_weight".to_owned(), w.shape())));
        let data: Vec<(&str, &[usize])> = data.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        if let Err(e) = dp.agree(self, &y, &data, "evaluate") {
            self.put_metrics(metrics);
            return Err(e);
        }
        let weights = weights.as_ref().map(|w| w.view());
        let data = TrainData { x: &x, y: &y, weights: weights.as_ref() };
        let logs = self.evaluate_views(&data, batch_size, &mut metrics, dp);
        self.put_metrics(metrics);
        logs
    }

    /// The model's output for `x`, computed without recording gradients, [`PREDICT_BATCH_SIZE`] samples at a
    /// time. Any [`Numeric`] element type is accepted; a model of several inputs takes one array per input, as
    /// [`Model::fit`] does. A model of several outputs gives them with [`Model::predict_outputs`].
    ///
    /// It takes `&self`: a model can serve predictions from several threads at once (share it in an `Arc`, or
    /// by reference in scoped threads). The result is an `ArrayD`, as outputs may have any rank; for the usual
    /// `(samples, classes)`, [`Model::predict_classes`] gives the class of each sample, and
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
    /// [`Model::build`]); `x` that does not match the model's input shape; a model of several outputs.
    pub fn predict<'a>(&self, x: impl IntoArrays<'a>) -> Result<Tensor> {
        self.predict_with_batch_size(x, PREDICT_BATCH_SIZE)
    }

    /// [`Model::predict`] with another batch size.
    pub fn predict_with_batch_size<'a>(&self, x: impl IntoArrays<'a>, batch_size: usize) -> Result<Tensor> {
        let outputs = self.output_names();
        if outputs.len() != 1 {
            return Err(Error::invalid_argument(
                "predict",
                format!("a model of {} outputs ({})", outputs.len(), outputs.join(", ")),
                "use predict_outputs, which returns every output",
            ));
        }
        Ok(self.predict_outputs_with_batch_size(x, batch_size)?.arrays.remove(0))
    }

    /// Every output of the model for `x`, in order and by name (Keras' `predict` of a model of several
    /// outputs).
    ///
    /// # Errors
    /// As [`Model::predict`], for any number of outputs.
    pub fn predict_outputs<'a>(&self, x: impl IntoArrays<'a>) -> Result<Outputs> {
        self.predict_outputs_with_batch_size(x, PREDICT_BATCH_SIZE)
    }

    /// [`Model::predict_outputs`] with another batch size.
    pub fn predict_outputs_with_batch_size<'a>(
        &self,
        x: impl IntoArrays<'a>,
        batch_size: usize,
    ) -> Result<Outputs> {
        let x = x.into_arrays().matched(&self.input_names(), "input", "predict")?;
        let x = views(&x);
        let mut dp = DataParallel::new(self);
        let result = self.predict_checked(&x, batch_size, &mut dp);
        let arrays = dp.finish(result)?;
        Ok(Outputs { names: self.output_names().into_iter().map(str::to_owned).collect(), arrays })
    }

    fn predict_checked(
        &self,
        x: &[ArrayViewD<'_, f32>],
        batch_size: usize,
        dp: &mut DataParallel,
    ) -> Result<Vec<Tensor>> {
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
        let n = check_samples(x, None, "predict", false)?;
        self.check_data(x, None, "predict")?;
        self.net.check_batch_memory(batch_size.min(n), false, "predict")?;
        let shapes = data_shapes("", x, &[]);
        let shapes: Vec<(&str, &[usize])> = shapes.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        dp.agree(self, &[], &shapes, "predict")?;
        if let Some(results) = dp.predict(self, x, batch_size) {
            return results;
        }
        let mut results: Vec<Tensor> = self
            .output_shapes()
            .iter()
            .map(|out| {
                let shape: Vec<usize> = std::iter::once(n).chain(out.iter().copied()).collect();
                ArrayD::<f32>::zeros(IxDyn(&shape))
            })
            .collect();
        self.for_each_batch(&mut Workspace::new(), x, None, batch_size, |rows, outs, _| {
            for (result, out) in results.iter_mut().zip(outs) {
                result.slice_axis_mut(Axis(0), (rows.start..rows.end).into()).assign(out);
            }
        })?;
        Ok(results)
    }

    /// The class of each sample (Keras 2's `predict_classes`): the index of the largest output for an output of
    /// several units (softmax), or 1 where the single output is above 0.5 (sigmoid), else 0. NaN outputs give
    /// the class of the first NaN, as numpy's `argmax` does. An array of shape `(samples,)` of the same type
    /// as [`crate::utils::argmax`] of [`Model::predict`]'s output, so the two compare directly.
    ///
    /// ```
    /// use kerust::{layers::Dense, models::Sequential, utils::argmax};
    /// use ndarray::{array, Axis};
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(3).activation("softmax").input_shape([2]))?;
    /// let x = array![[0.5f32, -1.0], [2.0, 0.0]];
    /// let classes = model.predict_classes(&x)?; // ArrayD<usize> of shape (2,)
    /// assert_eq!(classes, argmax(&model.predict(&x)?, Axis(1))?); // Keras: np.argmax(model.predict(x), axis=1)
    /// assert!(classes.iter().all(|&c| c < 3));
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Model::predict`], and a model whose output per sample is not a vector (e.g. an image).
    pub fn predict_classes<'a>(&self, x: impl IntoArrays<'a>) -> Result<ArrayD<usize>> {
        let out = self.output_shape().unwrap_or_default().to_vec();
        // A model of several outputs gets predict's error, which names predict_outputs.
        if self.output_names().len() == 1 && self.is_built() && out.len() != 1 {
            return Err(Error::shape(
                "predict_classes: the model's output",
                "(None, classes): one vector per sample",
                super::shape_str(&out),
            ));
        }
        let pred = self.predict(x)?;
        let pred = pred.view().into_dimensionality::<ndarray::Ix2>()?;
        Ok(if pred.ncols() == 1 {
            pred.column(0).mapv(|p| usize::from(p > 0.5)).into_dyn()
        } else {
            crate::utils::argmax(pred, Axis(1))?.into_dyn()
        })
    }
}

/// The logs of an evaluation or a step, in Keras' order: the loss; each output's loss, for several outputs;
/// then each metric's result, prefixed by its output's name for several outputs.
pub(super) fn loss_and_metrics(
    loss: f32,
    head_losses: &[f32],
    metrics: &[Vec<Box<dyn Metric>>],
    prefixes: &[Option<String>],
) -> Logs {
    let mut logs = Logs::new();
    write_logs(&mut logs, loss, head_losses, metrics, prefixes);
    logs
}

/// [`loss_and_metrics`] into `logs`, in place: a training loop's logs take no new allocation per step for a
/// model of one output.
fn write_logs(
    logs: &mut Logs,
    loss: f32,
    head_losses: &[f32],
    metrics: &[Vec<Box<dyn Metric>>],
    prefixes: &[Option<String>],
) {
    logs.set("loss", loss);
    for (prefix, l) in prefixes.iter().zip(head_losses) {
        if let Some(p) = prefix {
            logs.set(&format!("{p}_loss"), *l);
        }
    }
    for (prefix, ms) in prefixes.iter().zip(metrics) {
        for m in ms {
            match prefix {
                Some(p) => logs.set(&format!("{p}_{}", m.name()), m.result()),
                None => logs.set(m.name(), m.result()),
            }
        }
    }
}

/// The number of samples, after checking every input has a sample axis with at least one sample, and every
/// input and target the same number of samples.
fn check_samples(
    x: &[ArrayViewD<'_, f32>],
    y: Option<&[ArrayViewD<'_, f32>]>,
    context: &str,
    allow_empty: bool,
) -> Result<usize> {
    for x in x {
        if x.ndim() < 2 || (x.len_of(Axis(0)) == 0 && !allow_empty) {
            return Err(Error::shape(
                format!("{context} inputs"),
                "at least one sample: (samples, ...input shape)",
                format!("{:?}", x.shape()),
            ));
        }
    }
    let n = x[0].len_of(Axis(0));
    if let Some(x) = x.iter().find(|x| x.len_of(Axis(0)) != n) {
        return Err(Error::shape(
            format!("{context}: every input needs the same number of samples"),
            format!("{n} samples"),
            format!("inputs of shape {:?}", x.shape()),
        ));
    }
    for y in y.unwrap_or_default() {
        if y.ndim() == 0 || y.len_of(Axis(0)) != n {
            return Err(Error::shape(
                format!("{context}: inputs and targets need the same number of samples"),
                format!("{n} samples"),
                format!("targets of shape {:?}", y.shape()),
            ));
        }
    }
    Ok(n)
}

impl Model {
    /// One gradient update on exactly this batch (Keras' `train_on_batch`); returns the batch's loss and
    /// metrics. The model is built from `x` if needed. Any [`Numeric`] element type is accepted, and one array
    /// per input and output for a model of several, as in [`Model::fit`].
    ///
    /// # Errors
    /// As for [`Model::fit`]: before `compile`, or on data that does not fit the model.
    pub fn train_on_batch<'a>(&mut self, x: impl IntoArrays<'a>, y: impl IntoArrays<'a>) -> Result<Logs> {
        let mut dp = DataParallel::new(self);
        let result = self.train_on_batch_checked(x.into_arrays(), y.into_arrays(), &mut dp);
        dp.finish(result)
    }

    fn train_on_batch_checked<'a>(
        &mut self,
        x: Arrays<'a>,
        y: Arrays<'a>,
        dp: &mut DataParallel,
    ) -> Result<Logs> {
        if self.compiled.is_none() {
            return Err(Error::NotReady(
                "train_on_batch before compile: call model.compile(...) first".into(),
            ));
        }
        let (x, y) = self.match_data(x, y, "train_on_batch")?;
        let (x, y) = (views(&x), views(&y));
        self.prepare(&x, Some(&y), usize::MAX, "train_on_batch")?;
        let mut metrics = self.take_metrics(&y, None)?;
        let data = data_shapes("", &x, &y);
        let data: Vec<(&str, &[usize])> = data.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        if let Err(e) = dp.begin(self, &y, &data, "train_on_batch") {
            self.put_metrics(metrics);
            return Err(e);
        }
        // Sharded, the batch is the ranks' parts end to end.
        let rows: Vec<usize> = (0..dp.samples(x[0].len_of(Axis(0)))).collect();
        metrics.iter_mut().flatten().for_each(|m| m.reset());
        let mut head_losses = Vec::new();
        let train = TrainData { x: &x, y: &y, weights: None };
        let logs = self
            .train_step(&train, &rows, &mut metrics, &mut head_losses, dp, Ok(()))
            .map(|loss| loss_and_metrics(loss, &head_losses, &metrics, &self.log_prefixes()));
        self.put_metrics(metrics);
        logs
    }
}
