//! Optimizers with Keras' update rules and defaults.
use crate::autodiff::{Gradients, ParamStore};

/// An optimizer: updates every trainable parameter that has a gradient, in place.
pub trait Optimizer: Send {
    /// The Keras name, e.g. `"sgd"`.
    fn name(&self) -> &str;

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Sets the learning rate (used by schedules and `ReduceLROnPlateau`).
    fn set_learning_rate(&mut self, learning_rate: f32);

    /// The number of updates applied so far.
    fn iterations(&self) -> u64;

    /// Applies one update from `grads` to the trainable parameters of `params`.
    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients);
}
