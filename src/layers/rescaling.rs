//! `Rescaling`: `x * scale + offset`, element-wise, without weights.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// Keras' `layers.Rescaling(scale, offset=0.0)`: each input becomes `x * scale + offset` (in `f32`, in that
/// order, as Keras computes it), so pixel values 0-255 go into a model as they are and the model scales them:
///
/// ```
/// use kerust::layers::{Dense, Flatten, Rescaling};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Rescaling::new(1.0 / 255.0).input_shape([28, 28]))?;
/// model.add(Flatten::new())?;
/// model.add(Dense::new(10).activation("softmax"))?;
/// assert!(model.summary_string().contains("rescaling (Rescaling)"));
///
/// // To [-1, 1]: Keras' `Rescaling(scale=1./127.5, offset=-1)`.
/// let centred = Rescaling::new(1.0 / 127.5).offset(-1.0);
/// # let _ = centred;
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Rescaling {
    settings: RescalingConfig,
}

/// The settings, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RescalingConfig {
    name: Option<String>,
    #[serde(deserialize_with = "super::config::strict_f32::scale")]
    scale: f32,
    #[serde(deserialize_with = "super::config::strict_f32::offset")]
    offset: f32,
    input_shape: Option<Vec<usize>>,
}

impl Rescaling {
    /// Multiplies every input by `scale` (offset 0).
    pub fn new(scale: f32) -> Self {
        Self::from_settings(RescalingConfig { name: None, scale, offset: 0.0, input_shape: None })
    }

    /// Adds `offset` after scaling (default 0).
    pub fn offset(mut self, offset: f32) -> Self {
        self.settings.offset = offset;
        self
    }

    pub(crate) fn from_settings(settings: RescalingConfig) -> Self {
        Rescaling { settings }
    }

    super::settings_builders!();
}

impl Layer for Rescaling {
    fn class_name(&self) -> &'static str {
        "Rescaling"
    }

    super::settings_accessors!();

    /// # Errors
    /// A scale or offset that is NaN or infinite (a typo such as `1.0 / 0.0` would turn every input into
    /// NaN or infinity).
    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let RescalingConfig { scale, offset, .. } = self.settings;
        for (name, value) in [("scale", scale), ("offset", offset)] {
            if !value.is_finite() {
                return Err(Error::invalid_argument(
                    name,
                    value,
                    "Rescaling's scale and offset must be finite",
                ));
            }
        }
        Ok(input_shape.to_vec())
    }

    /// True, as in Keras: the mask of the input is the mask of the output.
    fn supports_masking(&self) -> bool {
        true
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let RescalingConfig { scale, offset, .. } = self.settings;
        // The addition even for an offset of 0, as Keras does it: `-0.0 * s + 0.0` is +0.0.
        x.mul_scalar(scale).add_scalar(offset)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}
