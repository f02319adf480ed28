//! [`LearningRateScheduler`]: set the learning rate from a function of the epoch.
use super::Callback;
use crate::models::Model;
use crate::{Error, Result};

/// Sets the optimizer's learning rate at the start of every epoch to `schedule(epoch, current_lr)` (Keras'
/// `LearningRateScheduler`); `epoch` is 0-based.
///
/// With `verbose(1)` it prints `Epoch N: LearningRateScheduler setting learning rate to X.` on standard output.
///
/// (Keras also adds `learning_rate` to the epoch logs; callbacks here see the logs read-only, so read the rate
/// from `model.optimizer()` instead.)
///
/// ```
/// use kerust::callbacks::LearningRateScheduler;
/// use kerust::layers::Dense;
/// use kerust::models::Sequential;
/// use ndarray::array;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([1]))?;
/// model.compile("mse", "sgd", [])?; // learning rate 0.01
/// // Keep the rate for 2 epochs, then halve it every epoch.
/// let schedule = LearningRateScheduler::new(|epoch, lr| if epoch < 2 { lr } else { lr * 0.5 });
/// let (x, y) = (array![[0.0f32], [1.0]], array![[0.0f32], [2.0]]);
/// model.fit(&x, &y).epochs(4).verbose(0).callback(schedule).run()?;
/// assert!((model.optimizer().unwrap().learning_rate() - 0.0025).abs() < 1e-9);
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct LearningRateScheduler<F> {
    schedule: F,
    verbose: u8,
}

impl<F: FnMut(usize, f32) -> f32> LearningRateScheduler<F> {
    /// A scheduler calling `schedule(epoch, current_learning_rate)` for the new rate.
    pub fn new(schedule: F) -> Self {
        LearningRateScheduler { schedule, verbose: 0 }
    }

    /// 0 silent (default), 1: a line per epoch with the rate set.
    pub fn verbose(mut self, verbose: u8) -> Self {
        self.verbose = verbose;
        self
    }
}

impl<F> std::fmt::Debug for LearningRateScheduler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearningRateScheduler").field("verbose", &self.verbose).finish_non_exhaustive()
    }
}

impl<F: FnMut(usize, f32) -> f32> Callback for LearningRateScheduler<F> {
    /// # Errors
    /// [`Error::NotReady`] if the model has no optimizer (not compiled); [`Error::InvalidArgument`] if the
    /// schedule returns a negative, NaN or infinite rate (the optimizer keeps its rate then).
    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        let optimizer = model.optimizer_mut().ok_or_else(|| {
            Error::NotReady(
                "LearningRateScheduler needs a compiled model (it sets the optimizer's rate)".into(),
            )
        })?;
        if let Some(schedule) = optimizer.learning_rate_schedule() {
            return Err(super::schedule_not_settable("LearningRateScheduler", schedule.class_name()));
        }
        let learning_rate = (self.schedule)(epoch, optimizer.learning_rate());
        if !(learning_rate.is_finite() && learning_rate >= 0.0) {
            return Err(Error::invalid_argument(
                "learning_rate",
                learning_rate,
                format!("the schedule must return a finite number >= 0 (at epoch {epoch})"),
            ));
        }
        optimizer.set_learning_rate(learning_rate);
        if self.verbose > 0 {
            println!(
                "\nEpoch {}: LearningRateScheduler setting learning rate to {learning_rate}.",
                epoch + 1
            );
        }
        Ok(())
    }
}
