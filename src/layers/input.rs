//! `Input`: declares the per-sample shape of a model's input.
use rand::rngs::StdRng;

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// Declares the input shape: Keras' `keras.Input(shape=(784,))`, as the first entry of a `Sequential` (where it is
/// not listed in the summary, as in Keras) or as a graph model's input ([`crate::models::Graph::input`]).
#[derive(Clone, Debug)]
pub struct Input {
    shape: Vec<usize>,
    name: Option<String>,
}

impl Input {
    /// An input of this per-sample shape.
    pub fn new(shape: impl AsRef<[usize]>) -> Self {
        Input { shape: shape.as_ref().to_vec(), name: None }
    }

    /// A name for the input (Keras' `keras.Input(shape, name=..)`): a graph model takes its arrays by this
    /// name, and a Sequential ignores it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// The rule for a model's per-sample input shape, wherever it is declared (an [`Input`], a first layer's
/// `input_shape`, `Model::build`, a model file): at least one axis, and every axis positive.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the shape.
pub(crate) fn check_input_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::invalid_argument(
            "input_shape",
            format!("{shape:?}"),
            "an input shape needs at least one axis, and positive dimensions",
        ));
    }
    Ok(())
}

impl Layer for Input {
    fn class_name(&self) -> &'static str {
        "InputLayer"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        Some(&self.shape)
    }

    fn is_input(&self) -> bool {
        true
    }

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        check_input_shape(&self.shape)?;
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        x
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }

    fn config(&self) -> Result<super::LayerConfig> {
        let config = super::config::InputConfig { name: self.name.clone(), shape: self.shape.clone() };
        super::LayerConfig::new(self.class_name(), &config)
    }
}
