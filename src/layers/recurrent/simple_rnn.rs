//! `SimpleRNN`: `h = activation(x · kernel + h · recurrent_kernel + bias)`.
use super::{recurrent_builders, recurrent_layer, Kind, RecurrentBase, RecurrentConfig};
use crate::Result;

/// A fully connected recurrent layer (Keras' `layers.SimpleRNN`): `h_t = activation(x_t · kernel + h_{t-1} ·
/// recurrent_kernel + bias)` over sequences `(batch, time, features)`; the output is the last `h`, or every
/// step's with `return_sequences`. Weights `simple_rnn/simple_rnn_cell/{kernel, recurrent_kernel, bias}`, as
/// Keras names and shapes them.
///
/// Keras' defaults: tanh, a bias, `glorot_uniform` kernel, `orthogonal` recurrent kernel, `zeros` bias.
///
/// ```
/// use kerust::layers::{Dense, SimpleRNN};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(SimpleRNN::new(8).input_shape([20, 3]))?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 3 * 8 + 8 * 8 + 8);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SimpleRNN {
    base: RecurrentBase,
}

impl SimpleRNN {
    /// A layer of `units` units.
    pub fn new(units: usize) -> Self {
        SimpleRNN { base: RecurrentBase::new(Kind::Simple, units) }
    }

    pub(crate) fn from_settings(settings: RecurrentConfig) -> Result<Self> {
        Ok(SimpleRNN { base: RecurrentBase::from_settings(Kind::Simple, settings)? })
    }

    recurrent_builders!();
}

recurrent_layer!(SimpleRNN);
