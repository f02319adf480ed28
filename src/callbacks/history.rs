//! [`History`]: every epoch's logs, as `fit` returns them.
use std::collections::BTreeMap;

use super::{Callback, Logs, TrainParams};
use crate::models::Sequential;
use crate::Result;

/// The per-epoch values of a `fit`: `history["loss"][e]` is the loss of the `e`-th epoch run, and likewise for
/// every metric and `val_` value. `fit` records it and returns it (Keras' `History`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Name to per-epoch values (sorted by name, as Keras' keys are).
    pub history: BTreeMap<String, Vec<f32>>,
    /// The epoch indices run.
    pub epoch: Vec<usize>,
    /// The training parameters.
    pub params: Option<TrainParams>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The per-epoch values of `name` (e.g. `"val_accuracy"`), if recorded.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.history.get(name).map(Vec::as_slice)
    }

    /// The recorded names (Keras' `history.history.keys()`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.history.keys().map(String::as_str)
    }

    /// The value of `name` at the last epoch.
    pub fn last(&self, name: &str) -> Option<f32> {
        self.get(name).and_then(|v| v.last().copied())
    }
}

impl std::ops::Index<&str> for History {
    type Output = [f32];

    /// The per-epoch values of `name`.
    ///
    /// # Panics
    /// If `name` was not recorded; use [`History::get`] to ask.
    fn index(&self, name: &str) -> &[f32] {
        self.get(name)
            .unwrap_or_else(|| panic!("no `{name}` in the history; recorded: {:?}", self.history.keys()))
    }
}

impl Callback for History {
    fn on_train_begin(&mut self, _: &mut Sequential, params: &TrainParams) -> Result<()> {
        self.params = Some(params.clone());
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Sequential, epoch: usize, logs: &Logs) -> Result<()> {
        self.epoch.push(epoch);
        for (name, value) in logs {
            self.history.entry(name.to_owned()).or_default().push(value);
        }
        Ok(())
    }
}
