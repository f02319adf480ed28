//! `Activation`: an activation function as a layer of its own.
use rand::rngs::StdRng;

use super::{CallContext, Layer};
use crate::activations::Activation as Function;
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::spec::Spec;
use crate::Result;

/// Applies an activation function (Keras' `layers.Activation("relu")`).
#[derive(Clone, Debug)]
pub struct Activation {
    function: Spec<Function>,
    resolved: Option<Function>,
    name: Option<String>,
}

impl Activation {
    /// The layer for an activation given by name or typed.
    pub fn new(function: impl Into<Spec<Function>>) -> Self {
        Activation { function: function.into(), resolved: None, name: None }
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Activation {
    fn class_name(&self) -> &'static str {
        "Activation"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        self.resolved = Some(self.function.resolve()?);
        Ok(input_shape.to_vec())
    }

    /// True, as in Keras: the mask of the input is the mask of the output.
    fn supports_masking(&self) -> bool {
        true
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        self.resolved.expect("Activation::call before build").apply(x)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }

    fn config(&self) -> Result<super::LayerConfig> {
        let activation = super::config::activation_config(&self.function)?;
        super::LayerConfig::new(
            self.class_name(),
            &super::config::ActivationConfig { name: self.name.clone(), activation },
        )
    }
}
