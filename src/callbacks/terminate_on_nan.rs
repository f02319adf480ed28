//! [`TerminateOnNaN`]: stop training at the first NaN or infinite loss.
use super::{Callback, Logs};
use crate::models::Model;
use crate::{Error, Result};

/// Stops training when a batch's loss is NaN or infinite (Keras' `TerminateOnNaN`).
///
/// After each training batch it reads `loss` from the batch logs; on a NaN or an infinity it prints
/// `Batch N: Invalid loss, terminating training` on standard error and calls [`Model::stop_training`](crate::models::Model::stop_training), so
/// `fit` ends after that batch and the usual end-of-epoch and end-of-training hooks still run. With
/// [`raise_error(true)`](TerminateOnNaN::raise_error), it returns [`Error::NonFiniteLoss`] instead, which ends
/// `fit` at once with that error (no `on_train_end`).
///
/// ```
/// use kerust::callbacks::TerminateOnNaN;
/// use kerust::layers::Dense;
/// use kerust::models::Sequential;
/// use kerust::optimizers::SGD;
/// use ndarray::array;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(1).input_shape([1]))?;
/// // A learning rate this large makes the weights, then the loss, blow up.
/// model.compile("mse", SGD::new().learning_rate(1e6), [])?;
/// let (x, y) = (array![[1.0f32], [2.0], [3.0]], array![[1.0f32], [2.0], [3.0]]);
/// let history = model.fit(&x, &y).batch_size(1).epochs(50).verbose(0).callback(TerminateOnNaN::new()).run()?;
/// assert!(history.epoch.len() < 50);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    raise_error: bool,
    epoch: usize,
}

impl TerminateOnNaN {
    /// Stops training gracefully (Keras' default, `raise_error=False`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to end `fit` with [`Error::NonFiniteLoss`] rather than stopping it (default false).
    pub fn raise_error(mut self, raise_error: bool) -> Self {
        self.raise_error = raise_error;
        self
    }
}

impl Callback for TerminateOnNaN {
    fn on_epoch_begin(&mut self, _: &mut Model, epoch: usize) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        match logs.get("loss") {
            Some(loss) if !loss.is_finite() => {
                if self.raise_error {
                    return Err(Error::NonFiniteLoss { value: loss, epoch: self.epoch, batch });
                }
                eprintln!("Batch {batch}: Invalid loss, terminating training");
                model.stop_training();
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
