//! `LSTM`: the long short-term memory layer.
use super::{recurrent_builders, recurrent_layer, Kind, RecurrentBase, RecurrentConfig};
use crate::activations::Activation;
use crate::spec::Spec;
use crate::Result;

/// A long short-term memory layer (Keras' `layers.LSTM`) over sequences `(batch, time, features)`: gates `i, f,
/// c, o` (Keras' order in the kernels' columns), states `h` and `c`; the output is the last `h`, or every
/// step's with `return_sequences`. Weights `lstm/lstm_cell/{kernel, recurrent_kernel, bias}`, as Keras names
/// and shapes them.
///
/// Keras' defaults: tanh, sigmoid gates, a bias with the forget gate's part 1 (`unit_forget_bias`),
/// `glorot_uniform` kernel, `orthogonal` recurrent kernel, `zeros` bias.
///
/// ```
/// use kerust::layers::{Dense, LSTM};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(LSTM::new(4).return_sequences(true).input_shape([5, 3]))?;
/// model.add(LSTM::new(2))?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 128);
/// assert_eq!(model.output_shape(), Some(&[1][..]));
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LSTM {
    base: RecurrentBase,
}

impl LSTM {
    /// A layer of `units` units.
    pub fn new(units: usize) -> Self {
        LSTM { base: RecurrentBase::new(Kind::Lstm, units) }
    }

    pub(crate) fn from_settings(settings: RecurrentConfig) -> Result<Self> {
        Ok(LSTM { base: RecurrentBase::from_settings(Kind::Lstm, settings)? })
    }

    /// The gates' activation (default sigmoid).
    pub fn recurrent_activation(mut self, activation: impl Into<Spec<Activation>>) -> Self {
        self.base.settings.recurrent_activation = Some(activation.into());
        self
    }

    /// Whether the forget gate's bias starts at 1 (default true), as Keras does.
    pub fn unit_forget_bias(mut self, yes: bool) -> Self {
        self.base.settings.unit_forget_bias = Some(yes);
        self
    }

    recurrent_builders!();
}

recurrent_layer!(LSTM);
