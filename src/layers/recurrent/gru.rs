//! `GRU`: the gated recurrent unit layer.
use super::{recurrent_builders, recurrent_layer, Kind, RecurrentBase, RecurrentConfig};
use crate::activations::Activation;
use crate::spec::Spec;
use crate::Result;

/// A gated recurrent unit layer (Keras' `layers.GRU`) over sequences `(batch, time, features)`: gates `z, r, h`
/// (Keras' order); with `reset_after` (Keras 3's default) the reset gate multiplies the recurrent product and
/// the bias is `(2, 3·units)` (input bias, recurrent bias), without it the reset gate multiplies the state
/// before the product and the bias is `(3·units)`. Weights `gru/gru_cell/{kernel, recurrent_kernel, bias}`.
///
/// Keras' defaults: tanh, sigmoid gates, `reset_after`, a bias, `glorot_uniform` kernel, `orthogonal` recurrent
/// kernel, `zeros` bias.
///
/// ```
/// use kerust::layers::{Dense, GRU};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(GRU::new(2).input_shape([5, 4]))?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 48);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GRU {
    base: RecurrentBase,
}

impl GRU {
    /// A layer of `units` units.
    pub fn new(units: usize) -> Self {
        GRU { base: RecurrentBase::new(Kind::Gru, units) }
    }

    pub(crate) fn from_settings(settings: RecurrentConfig) -> Result<Self> {
        Ok(GRU { base: RecurrentBase::from_settings(Kind::Gru, settings)? })
    }

    /// The gates' activation (default sigmoid).
    pub fn recurrent_activation(mut self, activation: impl Into<Spec<Activation>>) -> Self {
        self.base.settings.recurrent_activation = Some(activation.into());
        self
    }

    /// Whether the reset gate applies after the recurrent product (default true, Keras 3's and cuDNN's form).
    pub fn reset_after(mut self, yes: bool) -> Self {
        self.base.settings.reset_after = Some(yes);
        self
    }

    recurrent_builders!();
}

recurrent_layer!(GRU);
