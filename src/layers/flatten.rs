//! `Flatten`: one axis per sample.
use rand::rngs::StdRng;

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::Result;

/// Flattens each sample to one axis: `(batch, 28, 28)` becomes `(batch, 784)`.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    input_shape: Option<Vec<usize>>,
    name: Option<String>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The per-sample input shape, for the first layer of a model (`Flatten::new().input_shape([28, 28])`).
    pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
        self.input_shape = Some(shape.as_ref().to_vec());
        self
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Flatten {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let size = input_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        match size {
            Some(size) if size <= isize::MAX as usize => Ok(vec![size]),
            _ => Err(crate::Error::shape(
                "Flatten input",
                "a per-sample size that fits in memory",
                format!("{input_shape:?}"),
            )),
        }
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let shape = x.shape();
        if shape.len() == 2 {
            return x;
        }
        x.reshape(&[shape[0], shape[1..].iter().product()])
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }

    fn config(&self) -> Result<super::LayerConfig> {
        let config =
            super::config::FlattenConfig { name: self.name.clone(), input_shape: self.input_shape.clone() };
        super::LayerConfig::new(self.class_name(), &config)
    }
}
