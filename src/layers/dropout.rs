//! `Dropout`: zeroes a fraction of the inputs during training.
use rand::rngs::StdRng;
use rand::Rng;

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// Sets each input to 0 with probability `rate` during training and scales the rest by `1 / (1 - rate)`, so the
/// expected sum is unchanged; the identity at inference.
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f32,
    name: Option<String>,
}

impl Dropout {
    /// Dropout with this rate, in `[0, 1)`.
    pub fn new(rate: f32) -> Self {
        Dropout { rate, name: None }
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::invalid_argument("rate", self.rate, "Dropout's rate must be in [0, 1)"));
        }
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        if !ctx.training || self.rate == 0.0 {
            return x;
        }
        let (rate, scale) = (self.rate, 1.0 / (1.0 - self.rate));
        let rng = &mut *ctx.rng;
        let mask = x.tape().constant_with(&x.shape(), |m| {
            let draw = |v: &mut f32| *v = if rng.random::<f32>() < rate { 0.0 } else { scale };
            // Tape buffers are contiguous: a plain slice loop, in the same order as the general one.
            match m.as_slice_mut() {
                Some(s) => s.iter_mut().for_each(draw),
                None => m.iter_mut().for_each(draw),
            }
        });
        x.mul(mask)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }

    fn config(&self) -> Result<super::LayerConfig> {
        let rate = self.rate.to_string().parse().unwrap_or(f64::from(self.rate));
        let config = super::config::DropoutConfig { name: self.name.clone(), rate };
        super::config::to_config(self.class_name(), &config)
    }
}
