//! [`CallbackList`]: one place that fans each hook out to several callbacks (Keras' `CallbackList`).
use super::{Callback, Logs, TrainParams};
use crate::models::Model;
use crate::Result;

/// Callbacks called in order, each hook stopping at the first error; itself a [`Callback`]. `fit` runs its
/// progress bar, the user's callbacks and [`History`](super::History) through one.
///
/// ```
/// use kerust::callbacks::{CallbackList, History, TerminateOnNaN};
/// let (mut history, mut nan) = (History::new(), TerminateOnNaN::new());
/// let mut list = CallbackList::new();
/// list.push(&mut nan);
/// list.push(&mut history);
/// assert_eq!(list.len(), 2);
/// ```
#[derive(Default)]
pub struct CallbackList<'c> {
    callbacks: Vec<&'c mut dyn Callback>,
}

impl<'c> CallbackList<'c> {
    /// An empty list.
    pub fn new() -> Self {
        CallbackList { callbacks: Vec::new() }
    }

    /// Adds a callback after the others.
    pub fn push(&mut self, callback: &'c mut dyn Callback) {
        self.callbacks.push(callback);
    }

    /// The number of callbacks.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }
}

impl Callback for CallbackList<'_> {
    fn on_train_begin(&mut self, model: &mut Model, params: &TrainParams) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_train_begin(model, params))
    }

    fn on_epoch_begin(&mut self, model: &mut Model, epoch: usize) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_epoch_begin(model, epoch))
    }

    fn on_train_batch_begin(&mut self, model: &mut Model, batch: usize) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_train_batch_begin(model, batch))
    }

    fn on_train_batch_end(&mut self, model: &mut Model, batch: usize, logs: &Logs) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_train_batch_end(model, batch, logs))
    }

    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_epoch_end(model, epoch, logs))
    }

    fn on_train_end(&mut self, model: &mut Model, logs: &Logs) -> Result<()> {
        self.callbacks.iter_mut().try_for_each(|c| c.on_train_end(model, logs))
    }
}
