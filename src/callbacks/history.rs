//! [`History`]: every epoch's logs, as `fit` returns them.
use std::collections::BTreeMap;

use super::{Callback, Logs, TrainParams};
use crate::models::Model;
use crate::Result;

/// The per-epoch values of a `fit`: `history["loss"][e]` is the loss of the `e`-th epoch run, and likewise for
/// every metric and `val_` value. `fit` records it and returns it (Keras' `History`).
///
/// `Display` prints the per-key lists as Keras' `print(history.history)` does (keys sorted), each value in its
/// shortest exact form, or with a fixed number of decimals if a precision is given:
///
/// ```
/// use kerust::callbacks::History;
///
/// let mut history = History::new();
/// history.history.insert("loss".into(), vec![0.5, 0.3125]);
/// history.history.insert("accuracy".into(), vec![0.6875, 0.875]);
/// assert_eq!(history.to_string(), "{'accuracy': [0.6875, 0.875], 'loss': [0.5, 0.3125]}");
/// assert_eq!(format!("{history:.1}"), "{'accuracy': [0.7, 0.9], 'loss': [0.5, 0.3]}");
/// ```
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

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.history.iter().map(|(k, v)| (k.as_str(), v));
        super::logs::write_dict(f, entries, |f, values| {
            f.write_str("[")?;
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                super::logs::write_value(f, v)?;
            }
            f.write_str("]")
        })
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
    fn on_train_begin(&mut self, _: &mut Model, params: &TrainParams) -> Result<()> {
        self.params = Some(params.clone());
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        self.epoch.push(epoch);
        for (name, value) in logs {
            self.history.entry(name.to_owned()).or_default().push(value);
        }
        Ok(())
    }
}
