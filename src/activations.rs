//! Activation functions by Keras' names, as typed values.
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

pub use crate::autodiff::CustomActivation;
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
    /// A user's element-wise function with its derivative: see [`Activation::custom`].
    Custom(CustomActivation),
}

const NAMES: &str =
    "linear, relu, sigmoid, softmax, log_softmax, tanh, elu, selu, softplus, softsign, gelu, \
                     swish, silu, leaky_relu, exponential";

impl Activation {
    /// An element-wise activation of your own, without writing a layer: `f` and its derivative `df`, both
    /// functions of `x` (or closures that capture nothing). Usable wherever an activation is accepted
    /// (`Dense::new(10).activation(...)`, `Conv2D`, the `Activation` layer); the gradient is `df`, so check it
    /// with [`check_gradients`](crate::autodiff::check_gradients) as below.
    ///
    /// A model using one saves it by `name`; [`load_model_with`](crate::models::load_model_with) reads it back
    /// when the same activation is registered with
    /// [`LoadOptions::custom_activation`](crate::saving::LoadOptions::custom_activation). The name must not be
    /// a built-in one (saving says so).
    ///
    /// ```
    /// use kerust::activations::Activation;
    /// use kerust::autodiff::check_gradients;
    /// use kerust::layers::Dense;
    ///
    /// // Keras: `def cube(x): return x ** 3`, `Dense(10, activation=cube)`.
    /// let cube = Activation::custom("cube", |x| x * x * x, |x| 3.0 * x * x);
    /// let layer = Dense::new(10).activation(cube);
    /// # let _ = layer;
    ///
    /// let x = ndarray::array![[0.5f32, -1.2], [2.0, 0.3]].into_dyn();
    /// check_gradients(&[x], |v| cube.apply(v[0]))?;
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn custom(name: &'static str, f: fn(f32) -> f32, df: fn(f32) -> f32) -> Activation {
        Activation::Custom(CustomActivation::new(name, f, df))
    }

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
            Activation::Custom(c) => x.custom_elementwise(c),
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
            Activation::Custom(c) => Unary::Custom(c),
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
            Activation::Custom(c) => c.name(),
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

thread_local! {
    /// The custom activations registered for the load running on this thread ([`with_registered`]).
    static REGISTERED: RefCell<Vec<Activation>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `activations` visible to [`registered`]: a model file's layers name their activations deep
/// in their serde settings, where the load's options cannot be passed (Keras' `custom_object_scope`).
pub(crate) fn with_registered<R>(activations: &[Activation], f: impl FnOnce() -> R) -> R {
    struct Restore(Vec<Activation>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = std::mem::take(&mut self.0);
            REGISTERED.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = REGISTERED.with(|s| std::mem::replace(&mut *s.borrow_mut(), activations.to_vec()));
    let _restore = Restore(previous);
    f()
}

/// The custom activation of this name registered for the load running on this thread, if any.
pub(crate) fn registered(name: &str) -> Option<Activation> {
    REGISTERED.with(|s| s.borrow().iter().find(|a| a.name() == name).copied())
}

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

    fn lecun_tanh() -> Activation {
        Activation::custom(
            "lecun_tanh",
            |x| 1.7159 * (2.0 / 3.0 * x).tanh(),
            |x| {
                let t = (2.0 / 3.0 * x).tanh();
                1.7159 * 2.0 / 3.0 * (1.0 - t * t)
            },
        )
    }

    #[test]
    fn a_custom_activation_applies_f_and_passes_the_gradient_check() {
        use crate::autodiff::{check_gradients, ParamStore, Tape};
        let act = lecun_tanh();
        assert_eq!(act.name(), "lecun_tanh");
        assert_eq!(act, lecun_tanh());
        assert_ne!(act, Activation::custom("lecun_tanh", |x| x, |_| 1.0));
        let x = ndarray::array![[0.5f32, -1.2, 3.0], [2.0, 0.3, -0.01]].into_dyn();
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let y = act.apply(tape.constant(x.view())).value();
        for (&x, &y) in x.iter().zip(y.iter()) {
            assert_eq!(y, 1.7159 * (2.0 / 3.0 * x).tanh());
        }
        // Alone, and fused into Dense's node (where `df` reads the pre-activation kept for it).
        check_gradients(std::slice::from_ref(&x), |v| act.apply(v[0])).unwrap();
        let w = ndarray::array![[0.3f32, -0.5], [0.8, 0.1], [-0.2, 0.4]].into_dyn();
        let b = ndarray::array![0.1f32, -0.3].into_dyn();
        let fused = act.elementwise().unwrap();
        assert!(fused.is_some());
        check_gradients(&[x, w, b], |v| v[0].dense(v[1], Some(v[2]), fused)).unwrap();
        // A wrong derivative is caught by the same check.
        let wrong = Activation::custom("wrong", |x| x * x, |x| x);
        let z = ndarray::array![0.5f32, 1.5].into_dyn();
        assert!(check_gradients(&[z], |v| wrong.apply(v[0])).is_err());
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = "relux".parse::<Activation>().unwrap_err().to_string();
        assert!(err.contains("relux") && err.contains("sigmoid"), "{err}");
        assert!(crate::spec::Spec::<Activation>::from("nope").resolve().is_err());
    }
}
