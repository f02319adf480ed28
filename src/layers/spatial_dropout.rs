//! `SpatialDropout1D`: drops whole channels of a sequence during training.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::conv1d::sequence_shape;
use super::dropout::fill_mask;
use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// Keras' `layers.SpatialDropout1D(rate)`: during training, each channel of each sample is zeroed with
/// probability `rate` at every time step at once (one draw per (sample, channel), Keras' noise shape
/// `(batch, 1, channels)`), and the kept ones are scaled by `1 / (1 - rate)`; at inference it is the identity.
/// Neighbouring steps of a convolution's output are strongly correlated, so dropping single elements hardly
/// regularizes; dropping channels does.
///
/// ```
/// use kerust::autodiff::{ParamStore, Tape};
/// use kerust::layers::{CallContext, Layer, SpatialDropout1D};
/// use ndarray::{ArrayD, Axis, IxDyn};
/// use rand::SeedableRng;
///
/// let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
/// let mut drop = SpatialDropout1D::new(0.5);
/// assert_eq!(drop.build(&[4, 8], &mut params, &mut rng)?, vec![4, 8]);
/// let tape = Tape::new(&params);
/// let x = tape.constant(ArrayD::<f32>::ones(IxDyn(&[2, 4, 8])).view());
/// let y = drop.call(x, &mut CallContext::new(true, &mut rng)).value();
/// // Every channel is 0 or 2 at all four steps alike.
/// for lane in y.lanes(Axis(1)) {
///     assert!(lane.iter().all(|&v| v == lane[0]) && (lane[0] == 0.0 || lane[0] == 2.0));
/// }
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SpatialDropout1D {
    settings: SpatialDropout1DConfig,
}

/// The settings, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpatialDropout1DConfig {
    name: Option<String>,
    rate: f64,
    input_shape: Option<Vec<usize>>,
}

impl SpatialDropout1D {
    /// Drops each channel with probability `rate` (in `[0, 1)`).
    pub fn new(rate: f32) -> Self {
        // The rate as written (0.3, not 0.30000001192092896) in a saved config.
        let rate = rate.to_string().parse().unwrap_or(f64::from(rate));
        SpatialDropout1D { settings: SpatialDropout1DConfig { name: None, rate, input_shape: None } }
    }

    pub(crate) fn from_settings(settings: SpatialDropout1DConfig) -> Self {
        SpatialDropout1D { settings }
    }

    super::settings_builders!();

    fn rate(&self) -> f32 {
        self.settings.rate as f32
    }
}

impl Layer for SpatialDropout1D {
    fn class_name(&self) -> &'static str {
        "SpatialDropout1D"
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let rate = self.settings.rate;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid_argument("rate", rate, "SpatialDropout1D's rate must be in [0, 1)"));
        }
        sequence_shape("SpatialDropout1D", input_shape)?;
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        let rate = self.rate();
        if !ctx.training || rate == 0.0 {
            return x;
        }
        let shape = x.shape();
        let noise = [shape[0], 1, shape[2]];
        let rng = &mut *ctx.rng;
        let mask = x.tape().constant_with(&noise, |m| {
            fill_mask(m.as_slice_mut().expect("a new constant is contiguous"), rate, 1.0 / (1.0 - rate), rng)
        });
        x.mul(mask)
    }

    fn supports_masking(&self) -> bool {
        true
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}
