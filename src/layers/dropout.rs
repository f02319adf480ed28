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

/// Writes 0 with probability `rate`, else `scale`, into every element, drawing exactly what one
/// `rng.random::<f32>()` per element would (the same stream, in the same order: a saved model's dropout masks do
/// not change), but with the generator filling blocks of random words at a time.
pub(crate) fn fill_mask(mask: &mut [f32], rate: f32, scale: f32, rng: &mut StdRng) {
    // rand's `f32` from a word: its top 24 bits times 2^-24.
    let unit = |bits: u32| (bits >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
    let mut words = [0u32; 256];
    for chunk in mask.chunks_mut(words.len()) {
        let words = &mut words[..chunk.len()];
        rng.fill(words);
        chunk.iter_mut().zip(words.iter()).for_each(|(v, &w)| *v = if unit(w) < rate { 0.0 } else { scale });
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

    /// True, as in Keras: the mask of the input is the mask of the output.
    fn supports_masking(&self) -> bool {
        true
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        if !ctx.training || self.rate == 0.0 {
            return x;
        }
        let (rate, scale) = (self.rate, 1.0 / (1.0 - self.rate));
        let rng = &mut *ctx.rng;
        let mask = x.tape().constant_with(&x.shape(), |m| match m.as_slice_mut() {
            Some(s) => fill_mask(s, rate, scale, rng),
            None => m.iter_mut().for_each(|v| *v = if rng.random::<f32>() < rate { 0.0 } else { scale }),
        });
        x.mul(mask)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }

    fn config(&self) -> Result<super::LayerConfig> {
        let rate = self.rate.to_string().parse().unwrap_or(f64::from(self.rate));
        let config = super::config::DropoutConfig { name: self.name.clone(), rate };
        super::LayerConfig::new(self.class_name(), &config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn block_masks_equal_one_draw_per_element() {
        for len in [0, 1, 255, 256, 257, 1000] {
            let (mut a, mut b) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(7));
            // A draw first, so that the blocks start mid-way through the generator's buffer.
            let _: f32 = a.random();
            let _: f32 = b.random();
            let mut fast = vec![f32::NAN; len];
            fill_mask(&mut fast, 0.3, 2.0, &mut a);
            let slow: Vec<f32> = (0..len).map(|_| if b.random::<f32>() < 0.3 { 0.0 } else { 2.0 }).collect();
            assert_eq!(fast, slow, "{len} elements");
            assert_eq!(a.random::<u64>(), b.random::<u64>(), "the generators stay in step");
        }
    }
}
