//! Metrics, computed on the arrays of each batch and averaged over the epoch the way Keras reports them.
use ndarray::ArrayViewD;

/// A streaming metric: `update` with each batch, `result` is the value over everything seen since `reset`.
pub trait Metric: Send {
    /// The name it is logged under (e.g. `"accuracy"`, prefixed `val_` for validation).
    fn name(&self) -> &str;

    /// Accumulates one batch.
    fn update(&mut self, y_true: ArrayViewD<'_, f32>, y_pred: ArrayViewD<'_, f32>);

    /// The value over all batches since the last reset.
    fn result(&self) -> f32;

    /// Forgets all batches.
    fn reset(&mut self);
}
