//! Callbacks: code that runs at points of training, with Keras' hook names. [`History`] and the progress bar
//! ([`ProgbarLogger`]) are plain callbacks that `fit` adds itself.
mod callback_list;
mod csv_logger;
mod early_stopping;
mod history;
mod learning_rate_scheduler;
mod logs;
mod model_checkpoint;
mod monitor;
#[cfg(feature = "plot")]
mod plot;
mod progbar;
mod reduce_lr_on_plateau;
mod terminate_on_nan;

pub use callback_list::CallbackList;
pub use csv_logger::CSVLogger;
pub use early_stopping::EarlyStopping;
pub use history::History;
pub use learning_rate_scheduler::LearningRateScheduler;
pub use logs::Logs;
pub use model_checkpoint::ModelCheckpoint;
pub use monitor::Mode;
pub use progbar::ProgbarLogger;
pub use reduce_lr_on_plateau::ReduceLROnPlateau;
pub use terminate_on_nan::TerminateOnNaN;

use crate::models::Model;
use crate::Result;

/// What `fit` tells callbacks when training begins (Keras' `callback.params`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainParams {
    /// The final epoch index (training runs epochs `initial_epoch..epochs`).
    pub epochs: usize,
    /// The first epoch index.
    pub initial_epoch: usize,
    /// Batches per epoch.
    pub steps: usize,
    /// Samples per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Training samples.
    pub samples: usize,
    /// 0 silent, 1 progress bar, 2 one line per epoch.
    pub verbose: u8,
}

/// Hooks into training. Every method has an empty default; implement the ones you need.
///
/// Hooks get the model, so a callback can stop training ([`Model::stop_training`]), read or restore
/// weights, or change the learning rate. An `Err` from a hook ends `fit` with that error.
///
/// ```
/// use kerust::callbacks::{Callback, Logs};
/// use kerust::models::Model;
///
/// /// Stops as soon as the training accuracy reaches a target.
/// struct StopAt(f32);
///
/// impl Callback for StopAt {
///     fn on_epoch_end(&mut self, model: &mut Model, _epoch: usize, logs: &Logs) -> kerust::Result<()> {
///         if logs.get("accuracy").is_some_and(|a| a >= self.0) {
///             model.stop_training();
///         }
///         Ok(())
///     }
/// }
/// ```
#[allow(unused_variables)]
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, model: &mut Model, params: &TrainParams) -> Result<()> {
        Ok(())
    }

    /// At the start of an epoch (0-based index).
    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        Ok(())
    }

    /// Before each training batch (0-based index within the epoch).
    fn on_train_batch_begin(&mut self, model: &mut Model, batch: usize) -> Result<()> {
        Ok(())
    }

    /// After each training batch, with the running means of the epoch so far (`loss`, metrics).
    fn on_train_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        Ok(())
    }

    /// At the end of an epoch, with the epoch's logs (`loss`, metrics, and `val_` ones after validation).
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        Ok(())
    }

    /// After the last epoch (or when training stops early), with the last epoch's logs.
    fn on_train_end(&mut self, model: &mut Model, logs: &Logs) -> Result<()> {
        Ok(())
    }
}

/// The error of a callback that sets the learning rate of an optimizer that follows a schedule (Keras raises
/// the same `TypeError`).
fn schedule_not_settable(callback: &str, schedule: &str) -> crate::Error {
    crate::Error::invalid_argument(
        "learning_rate",
        schedule,
        format!(
            "{callback} sets the learning rate, but this optimizer was created with a learning-rate schedule \
             object as its `learning_rate`, hence its learning rate is not settable; give the optimizer a number \
             as its learning rate, or leave the schedule to do the job"
        ),
    )
}
