//! Losses, with Keras' names, formulas and defaults.
use ndarray::ArrayViewD;

use crate::autodiff::Var;
use crate::Result;

/// A loss: forward code on the tape, so its gradient comes from [`crate::autodiff`].
pub trait Loss: Send {
    /// The Keras name, e.g. `"categorical_crossentropy"`.
    fn name(&self) -> &str;

    /// Checks targets against the model's per-sample output shape (without the batch axis) before any training:
    /// shapes, and values where the loss needs them (e.g. class indices in range for sparse losses).
    fn validate(&self, y_true: ArrayViewD<'_, f32>, output_shape: &[usize]) -> Result<()>;

    /// The loss of one batch: a scalar, the mean over samples (Keras' `sum_over_batch_size`).
    fn call<'t>(&self, y_true: Var<'t>, y_pred: Var<'t>) -> Var<'t>;
}
