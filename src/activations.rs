//! Activation functions by Keras' names, as typed values.
use std::fmt;
use std::str::FromStr;

use crate::autodiff::{Unary, Var};
use crate::Error;

/// An activation function. Parse Keras' names with [`str::parse`] (`"relu".parse()`), or use the variants.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// The identity (Keras' `None` / `"linear"`).
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Softmax over the last axis.
    Softmax,
    /// Log-softmax over the last axis.
    LogSoftmax,
    /// Hyperbolic tangent.
    Tanh,
    /// ELU with `alpha = 1`.
    Elu,
    /// Scaled ELU.
    Selu,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// Exact GELU.
    Gelu,
    /// `x * sigmoid(x)` (also `"silu"`).
    Swish,
    /// Leaky ReLU with the given negative slope (Keras' function default 0.2).
    LeakyRelu(f32),
    /// `e^x`.
    Exponential,
}

const NAMES: &str =
    "linear, relu, sigmoid, softmax, log_softmax, tanh, elu, selu, softplus, softsign, gelu, \
                     swish, silu, leaky_relu, exponential";

impl Activation {
    /// Applies the activation on the tape.
    pub fn apply<'t>(self, x: Var<'t>) -> Var<'t> {
        let last = || x.shape().len().saturating_sub(1);
        match self {
            Activation::Linear => x,
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softmax => x.softmax(last()),
            Activation::LogSoftmax => x.log_softmax(last()),
            Activation::Tanh => x.tanh(),
            Activation::Elu => x.elu(1.0),
            Activation::Selu => x.selu(),
            Activation::Softplus => x.softplus(),
            Activation::Softsign => x.softsign(),
            Activation::Gelu => x.gelu(),
            Activation::Swish => x.swish(),
            Activation::LeakyRelu(alpha) => x.leaky_relu(alpha),
            Activation::Exponential => x.exp(),
        }
    }

    /// The activation as an element-wise function for fused kernels: `Some(None)` for the identity, `None` for
    /// activations that are not element-wise (softmax).
    pub(crate) fn elementwise(self) -> Option<Option<Unary>> {
        Some(Some(match self {
            Activation::Linear => return Some(None),
            Activation::Softmax | Activation::LogSoftmax => return None,
            Activation::Relu => Unary::Relu,
            Activation::Sigmoid => Unary::Sigmoid,
            Activation::Tanh => Unary::Tanh,
            Activation::Elu => Unary::Elu(1.0),
            Activation::Selu => Unary::Selu,
            Activation::Softplus => Unary::Softplus,
            Activation::Softsign => Unary::Softsign,
            Activation::Gelu => Unary::Gelu,
            Activation::Swish => Unary::Swish,
            Activation::LeakyRelu(alpha) => Unary::LeakyRelu(alpha),
            Activation::Exponential => Unary::Exp,
        }))
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::LogSoftmax => "log_softmax",
            Activation::Tanh => "tanh",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Softplus => "softplus",
            Activation::Softsign => "softsign",
            Activation::Gelu => "gelu",
            Activation::Swish => "swish",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Exponential => "exponential",
        }
    }
}

impl FromStr for Activation {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "linear" | "none" | "" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "softmax" => Activation::Softmax,
            "log_softmax" => Activation::LogSoftmax,
            "tanh" => Activation::Tanh,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            "gelu" => Activation::Gelu,
            "swish" | "silu" => Activation::Swish,
            "leaky_relu" => Activation::LeakyRelu(0.2),
            "exponential" => Activation::Exponential,
            _ => {
                return Err(Error::UnknownName { kind: "activation", name: name.into(), known: NAMES.into() })
            }
        })
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

crate::spec::impl_spec!(Activation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in NAMES.split(", ") {
            let a: Activation = name.parse().unwrap();
            if name != "silu" {
                assert_eq!(a.name(), name);
            }
        }
        assert_eq!("ReLU".parse::<Activation>().unwrap(), Activation::Relu);
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = "relux".parse::<Activation>().unwrap_err().to_string();
        assert!(err.contains("relux") && err.contains("sigmoid"), "{err}");
        assert!(crate::spec::Spec::<Activation>::from("nope").resolve().is_err());
    }
}
