//! [`ReduceLROnPlateau`]: lower the learning rate when a monitored quantity stops improving.
use super::monitor::{check_monitor, check_non_negative, Margin, Monitor};
use super::{Callback, Logs, Mode, TrainParams};
use crate::models::Model;
use crate::{Error, Result};

/// Multiplies the learning rate by `factor` when a monitored quantity has not improved for `patience` epochs
/// (Keras' `ReduceLROnPlateau`).
///
/// A value improves if it is lower (mode `Min`) or higher (`Max`) than the best so far by more than
/// `min_delta`. After a reduction, `cooldown` epochs pass before epochs without improvement are counted again.
/// The rate never goes below `min_lr`, and is not changed once it is there. If the logs have no value for the
/// monitored name, the callback warns once on standard error and does nothing.
///
/// Defaults are Keras': monitor `"val_loss"`, `factor` 0.1, `patience` 10, mode `Auto`, `min_delta` 1e-4,
/// `cooldown` 0, `min_lr` 0, `verbose` 0. `factor` must be in `[0, 1)` and `min_lr`, `min_delta` finite and
/// `>= 0`: other values are an [`Error::InvalidArgument`] when training begins (or from
/// [`ReduceLROnPlateau::validate`]).
///
/// ```
/// use kerust::callbacks::ReduceLROnPlateau;
/// use kerust::layers::Dense;
/// use kerust::models::Sequential;
/// use ndarray::array;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([1]))?;
/// model.compile("mse", "sgd", [])?;
/// let reduce = ReduceLROnPlateau::new().monitor("loss").factor(0.2).patience(5).min_lr(0.001);
/// let (x, y) = (array![[0.0f32], [1.0]], array![[0.0f32], [2.0]]);
/// model.fit(&x, &y).epochs(3).verbose(0).callback(reduce).run()?;
/// assert!(ReduceLROnPlateau::new().factor(1.5).validate().is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    /// `monitor`, `mode`, `min_delta`, and the best value and epochs waited of the current fit.
    watch: Monitor,
    factor: f32,
    patience: usize,
    verbose: u8,
    cooldown: usize,
    min_lr: f32,
    // State of the current fit.
    cooldown_counter: usize,
}

impl Default for ReduceLROnPlateau {
    fn default() -> Self {
        Self::new()
    }
}

impl ReduceLROnPlateau {
    /// Keras' defaults: monitor `"val_loss"`, `factor` 0.1, `patience` 10.
    pub fn new() -> Self {
        ReduceLROnPlateau {
            watch: Monitor::new(
                1e-4,
                Margin::OnReference,
                ("Learning rate reduction is conditioned on", "."),
            ),
            factor: 0.1,
            patience: 10,
            verbose: 0,
            cooldown: 0,
            min_lr: 0.0,
            cooldown_counter: 0,
        }
    }

    /// The log entry to watch (default `"val_loss"`).
    pub fn monitor(mut self, monitor: impl Into<String>) -> Self {
        self.watch.monitor = monitor.into();
        self
    }

    /// The factor applied to the rate: `new_lr = lr * factor` (default 0.1; must be in `[0, 1)`).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Epochs without improvement after which the rate is reduced (default 10).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// 0 silent (default), 1: a line on standard output at each reduction.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }

    /// Whether the quantity should decrease or increase (default [`Mode::Auto`]).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.watch.mode = mode;
        self
    }

    /// The smallest change that counts as an improvement (default 1e-4).
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.watch.min_delta = min_delta;
        self
    }

    /// Epochs to wait after a reduction before counting epochs without improvement again (default 0).
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The lowest rate a reduction can set (default 0).
    pub fn min_lr(mut self, min_lr: f32) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Checks the settings; `fit` calls it at the start of training.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty `monitor`, a `factor` outside `[0, 1)` (Keras: "does not
    /// support a factor >= 1.0"), or a `min_lr` or `min_delta` that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        check_monitor(&self.watch.monitor)?;
        if !(0.0..1.0).contains(&self.factor) {
            return Err(Error::invalid_argument(
                "factor",
                self.factor,
                "ReduceLROnPlateau needs a factor in [0, 1): the rate is multiplied by it",
            ));
        }
        check_non_negative("min_lr", self.min_lr)?;
        check_non_negative("min_delta", self.watch.min_delta)
    }

    /// The best monitored value of the current or last `fit` (`inf` in mode min, `-inf` in mode max before
    /// any).
    pub fn best(&self) -> f32 {
        self.watch.best
    }

    /// Epochs counted without improvement since the last reduction or improvement (Keras' `wait`).
    pub fn wait(&self) -> usize {
        self.watch.wait
    }

    /// Whether a reduction happened less than `cooldown` epochs ago.
    pub fn in_cooldown(&self) -> bool {
        self.cooldown_counter > 0
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _: &mut Model, _: &TrainParams) -> Result<()> {
        self.validate()?;
        self.watch.begin();
        self.cooldown_counter = 0;
        Ok(())
    }

    /// # Errors
    /// [`Error::NotReady`] if a reduction is due and the model has no optimizer (not compiled).
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        let Some(current) = self.watch.current(logs) else {
            return Ok(());
        };
        if self.in_cooldown() {
            self.cooldown_counter -= 1;
            self.watch.wait = 0;
        }
        if self.watch.is_improvement(current, self.watch.best) {
            self.watch.best = current;
            self.watch.wait = 0;
        } else if !self.in_cooldown() {
            self.watch.wait += 1;
            if self.watch.wait >= self.patience {
                let optimizer = model.optimizer_mut().ok_or_else(|| {
                    Error::NotReady(
                        "ReduceLROnPlateau needs a compiled model (it sets the optimizer's rate)".into(),
                    )
                })?;
                if let Some(schedule) = optimizer.learning_rate_schedule() {
                    return Err(super::schedule_not_settable("ReduceLROnPlateau", schedule.class_name()));
                }
                let old_lr = optimizer.learning_rate();
                if old_lr > self.min_lr {
                    let new_lr = (old_lr * self.factor).max(self.min_lr);
                    optimizer.set_learning_rate(new_lr);
                    if self.verbose > 0 {
                        println!(
                            "\nEpoch {}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                            epoch + 1
                        );
                    }
                    self.cooldown_counter = self.cooldown;
                    self.watch.wait = 0;
                }
            }
        }
        Ok(())
    }
}
