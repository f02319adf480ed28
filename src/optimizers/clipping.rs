//! Gradient clipping, Keras' `clipnorm`, `clipvalue` and `global_clipnorm`, applied to the gradients before
//! the update (and before AdamW's weight decay), as Keras' `BaseOptimizer.apply` does.
use crate::autodiff::{Gradients, ParamStore};
use crate::{Error, Result};

/// The clipping settings of an optimizer, and the buffers of the clipped gradients (reused across steps).
#[derive(Clone, Debug, Default)]
pub(super) struct Clipping {
    pub(super) clipnorm: Option<f32>,
    pub(super) clipvalue: Option<f32>,
    pub(super) global_clipnorm: Option<f32>,
    clipped: Gradients,
}

impl Clipping {
    fn set(&self) -> impl Iterator<Item = (&'static str, f32)> {
        [
            ("clipnorm", self.clipnorm),
            ("clipvalue", self.clipvalue),
            ("global_clipnorm", self.global_clipnorm),
        ]
        .into_iter()
        .filter_map(|(name, v)| Some((name, v?)))
    }

    /// At most one setting, each positive and finite.
    pub(super) fn validate(&self) -> Result<()> {
        for (name, value) in self.set() {
            if !(value > 0.0 && value.is_finite()) {
                return Err(Error::invalid_argument(
                    name,
                    value,
                    "must be a positive finite number (leave it unset for no clipping)",
                ));
            }
        }
        if self.set().count() > 1 {
            let show = |v: Option<f32>| v.map_or("None".to_string(), |v| v.to_string());
            return Err(Error::invalid_argument(
                "clipnorm",
                format!(
                    "clipnorm={}, clipvalue={}, global_clipnorm={}",
                    show(self.clipnorm),
                    show(self.clipvalue),
                    show(self.global_clipnorm)
                ),
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set",
            ));
        }
        Ok(())
    }

    /// The settings that are set, for [`super::Optimizer::config`].
    pub(super) fn config(&self) -> impl Iterator<Item = (String, f64)> + '_ {
        self.set().map(|(name, v)| (name.to_string(), super::decimal(v)))
    }

    /// `grads` clipped (a copy in this struct's buffers), or `grads` itself without clipping. Only the
    /// gradients of trainable parameters count, as only they are in Keras' list.
    pub(super) fn apply<'a>(&'a mut self, params: &ParamStore, grads: &'a Gradients) -> &'a Gradients {
        if self.set().next().is_none() {
            return grads;
        }
        self.clipped.copy_from(grads);
        let trainable = |id| params.get(id).trainable;
        if let Some(clipnorm) = self.clipnorm {
            // Keras' `_clip_by_norm`: g * clipnorm / max(norm(g), clipnorm), per weight.
            for (id, g) in self.clipped.iter_mut() {
                if trainable(id) {
                    let norm = g.sum_of_squares().sqrt() as f32;
                    // `max` that keeps a NaN, as `ops.maximum`.
                    let denominator = if norm.is_nan() { norm } else { norm.max(clipnorm) };
                    g.scale_by_ratio(clipnorm, denominator);
                }
            }
        } else if let Some(clip) = self.global_clipnorm {
            // Keras' `clip_by_global_norm`: one scale for all, clip * min(1 / norm, 1 / clip) in f32, NaN when
            // the norm is not finite.
            let squares: f64 =
                self.clipped.iter().filter(|(id, _)| trainable(*id)).map(|(_, g)| g.sum_of_squares()).sum();
            let norm = squares.sqrt() as f32;
            let finite = if norm.is_finite() { 0.0 } else { f32::NAN };
            let scale = clip * (1.0 / norm).min(1.0 / clip) + finite;
            for (id, g) in self.clipped.iter_mut() {
                if trainable(id) {
                    g.scale(scale);
                }
            }
        } else if let Some(v) = self.clipvalue {
            for (id, g) in self.clipped.iter_mut() {
                if trainable(id) {
                    g.clamp(-v, v);
                }
            }
        }
        &self.clipped
    }
}
