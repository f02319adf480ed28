//! [`EarlyStopping`]: stop training when a monitored quantity has stopped improving.
use super::monitor::{check_monitor, Margin, Monitor};
use super::{Callback, Logs, Mode, TrainParams};
use crate::autodiff::Tensor;
use crate::models::Model;
use crate::{Error, Result};

/// Stops training when a monitored quantity has stopped improving (Keras' `EarlyStopping`).
///
/// At the end of every epoch from `start_from_epoch` on, the monitored value (default `val_loss`) is compared
/// with the best so far: it improves if it is lower (mode `Min`) or higher (`Max`) by more than `min_delta`.
/// After `patience` epochs in a row without improvement, the callback calls [`Model::stop_training`](crate::models::Model::stop_training). With
/// a `baseline`, an epoch that improves on the best but not on the baseline does not reset the count, so
/// training stops after `patience` epochs unless the baseline is beaten.
///
/// With `restore_best_weights`, the weights of the best epoch are put back when the callback stops training,
/// and (as in Keras 3) also at the end of training if it ended otherwise and the best epoch was not the last.
///
/// If the logs have no value for the monitored name, the callback warns once per `fit` on standard error
/// (Keras warns every epoch) that it cannot stop training, and does nothing: every epoch runs. Defaults are
/// Keras': monitor `"val_loss"`, `min_delta` 0, `patience` 0, mode `Auto`, no baseline, `restore_best_weights`
/// false, `start_from_epoch` 0, `verbose` 0.
///
/// ```
/// use kerust::callbacks::EarlyStopping;
/// use kerust::layers::Dense;
/// use kerust::models::Sequential;
/// use ndarray::array;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([1]))?;
/// model.compile("mse", "sgd", [])?;
/// let (x, y) = (array![[0.0f32], [1.0]], array![[0.0f32], [2.0]]);
/// let mut early = EarlyStopping::new().monitor("loss").patience(3).restore_best_weights(true);
/// let history = model.fit(&x, &y).epochs(100).verbose(0).callback_ref(&mut early).run()?;
/// assert!(history.epoch.len() <= 100);
/// if let Some(epoch) = early.stopped_epoch() {
///     assert_eq!(history.epoch.last(), Some(&epoch));
/// }
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// `monitor`, `mode`, `min_delta`, and the best value and epochs waited of the current fit.
    watch: Monitor,
    patience: usize,
    verbose: u8,
    baseline: Option<f32>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    // State of the current fit.
    best_epoch: Option<usize>,
    stopped_epoch: Option<usize>,
    best_weights: Option<Vec<Tensor>>,
    /// Whether the model holds `best_weights` since the callback restored them.
    restored: bool,
    /// The last epoch that ended.
    last_epoch: Option<usize>,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self::new()
    }
}

impl EarlyStopping {
    /// Keras' defaults: monitor `"val_loss"`, `patience` 0, no restoring.
    pub fn new() -> Self {
        EarlyStopping {
            watch: Monitor::new(
                0.0,
                Margin::OnValue,
                (
                    "Early stopping conditioned on",
                    ". EarlyStopping cannot stop training without it: every epoch will run. Monitor one of \
                     the available names, or give fit validation data for a `val_` name.",
                ),
            ),
            patience: 0,
            verbose: 0,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            best_epoch: None,
            stopped_epoch: None,
            best_weights: None,
            restored: false,
            last_epoch: None,
        }
    }

    /// The log entry to watch (default `"val_loss"`).
    pub fn monitor(mut self, monitor: impl Into<String>) -> Self {
        self.watch.monitor = monitor.into();
        self
    }

    /// The smallest change that counts as an improvement (default 0; its absolute value is used, as in Keras).
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.watch.min_delta = min_delta.abs();
        self
    }

    /// Epochs without improvement after which training stops (default 0: at the first one).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// 0 silent (default), 1: a line on standard output when stopping and when restoring weights.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// Whether the quantity should decrease or increase (default [`Mode::Auto`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.watch.mode = mode;
        self
    }

    /// A value the quantity must improve on, or training stops after `patience` epochs (default none).
    pub fn baseline(mut self, baseline: impl Into<Option<f32>>) -> Self {
        self.baseline = baseline.into();
        self
    }

    /// Whether to put back the weights of the best epoch (default false: the last weights stay).
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// Epochs to wait before watching (a warm-up during which training is never stopped; default 0).
    pub fn start_from_epoch(mut self, epoch: usize) -> Self {
        self.start_from_epoch = epoch;
        self
    }

    /// Checks the settings; `fit` calls it at the start of training.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty `monitor`, or a `min_delta` or `baseline` that is not finite.
    pub fn validate(&self) -> Result<()> {
        check_monitor(&self.watch.monitor)?;
        if !self.watch.min_delta.is_finite() {
            return Err(Error::invalid_argument(
                "min_delta",
                self.watch.min_delta,
                "must be a finite number",
            ));
        }
        if let Some(b) = self.baseline.filter(|b| !b.is_finite()) {
            return Err(Error::invalid_argument("baseline", b, "must be a finite number"));
        }
        Ok(())
    }

    /// The epoch (0-based) at which this callback stopped training in the last `fit`, if it did. (Keras' `0`
    /// for "did not stop" is `None` here.)
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The best monitored value of the last `fit` (`inf` in mode min, `-inf` in mode max before any).
    pub fn best(&self) -> f32 {
        self.watch.best
    }

    /// The epoch of [`EarlyStopping::best`], once a value was monitored.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// Epochs counted without improvement so far (Keras' `wait`).
    pub fn wait(&self) -> usize {
        self.watch.wait
    }

    fn restore(&mut self, model: &mut Model) -> Result<()> {
        if let Some(weights) = &self.best_weights {
            if self.verbose > 0 {
                println!(
                    "Restoring model weights from the end of the best epoch: {}.",
                    self.best_epoch.map_or(0, |e| e + 1)
                );
            }
            model.set_weights(weights)?;
            self.restored = true;
        }
        Ok(())
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _: &mut Model, _: &TrainParams) -> Result<()> {
        self.validate()?;
        self.watch.begin();
        self.best_epoch = None;
        self.stopped_epoch = None;
        self.best_weights = None;
        self.restored = false;
        self.last_epoch = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        // Any epoch run moves the weights away from a restored copy.
        self.restored = false;
        self.last_epoch = Some(epoch);
        let Some(current) = self.watch.current(logs) else {
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            // The first epoch watched is the best so far.
            self.best_weights = Some(model.get_weights());
            self.best_epoch = Some(epoch);
        }
        self.watch.wait += 1;
        if self.watch.is_improvement(current, self.watch.best) {
            self.watch.best = current;
            self.best_epoch = Some(epoch);
            if self.restore_best_weights {
                self.best_weights = Some(model.get_weights());
            }
            // Only restart the count when beating both the previous best and the baseline.
            if self.baseline.is_none_or(|b| self.watch.is_improvement(current, b)) {
                self.watch.wait = 0;
            }
            return Ok(());
        }
        if self.watch.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            model.stop_training();
            if self.restore_best_weights {
                self.restore(model)?;
            }
        }
        Ok(())
    }

    fn on_train_end(&mut self, model: &mut Model, _: &Logs) -> Result<()> {
        if let (Some(epoch), true) = (self.stopped_epoch, self.verbose > 0) {
            println!("Epoch {}: early stopping", epoch + 1);
        }
        // If the best epoch was the last one, the model holds its weights already.
        if self.restore_best_weights && !self.restored && self.best_epoch != self.last_epoch {
            self.restore(model)?;
        }
        Ok(())
    }
}
