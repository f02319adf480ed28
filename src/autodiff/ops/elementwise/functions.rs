//! The `Var` methods of the element-wise functions registered in [`crate::device::Unary`]: each records the
//! tape's element-wise node (`unary.rs`) for its function.
use crate::autodiff::Var;
use crate::device::{CustomActivation, Unary};

impl<'t> Var<'t> {
    /// `self + s`.
    pub fn add_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::AddScalar(s))
    }
    /// `self - s`.
    pub fn sub_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::AddScalar(-s))
    }
    /// `self * s`.
    pub fn mul_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::MulScalar(s))
    }
    /// `self / s`.
    pub fn div_scalar(self, s: f32) -> Var<'t> {
        self.unary(Unary::MulScalar(1.0 / s))
    }
    /// `-self`.
    #[allow(clippy::should_implement_trait)]
    pub fn neg(self) -> Var<'t> {
        self.unary(Unary::Neg)
    }
    /// `e^self`.
    pub fn exp(self) -> Var<'t> {
        self.unary(Unary::Exp)
    }
    /// Natural logarithm.
    pub fn log(self) -> Var<'t> {
        self.unary(Unary::Log)
    }
    /// Square root.
    pub fn sqrt(self) -> Var<'t> {
        self.unary(Unary::Sqrt)
    }
    /// `self^2`.
    pub fn square(self) -> Var<'t> {
        self.unary(Unary::Square)
    }
    /// `self^p`.
    pub fn pow(self, p: f32) -> Var<'t> {
        self.unary(Unary::Pow(p))
    }
    /// `|self|` (gradient 0 at 0).
    pub fn abs(self) -> Var<'t> {
        self.unary(Unary::Abs)
    }
    /// Clamps to `[lo, hi]`; the gradient is 1 inside and 0 outside.
    pub fn clip(self, lo: f32, hi: f32) -> Var<'t> {
        self.unary(Unary::Clip(lo, hi))
    }
}

impl<'t> Var<'t> {
    /// A user's element-wise activation ([`crate::activations::Activation::custom`]).
    pub(crate) fn custom_elementwise(self, c: CustomActivation) -> Var<'t> {
        self.unary(Unary::Custom(c))
    }
}

impl<'t> Var<'t> {
    /// `x` for `x > 0`, else `alpha * (e^x - 1)`.
    pub fn elu(self, alpha: f32) -> Var<'t> {
        self.unary(Unary::Elu(alpha))
    }
}

impl<'t> Var<'t> {
    /// Exact GELU, `x * Phi(x)` (Keras' default, `approximate=False`).
    pub fn gelu(self) -> Var<'t> {
        self.unary(Unary::Gelu)
    }
}

impl<'t> Var<'t> {
    /// `x` for `x > 0`, else `alpha * x` (Keras' default `alpha` is 0.3 for the layer, 0.2 for the function).
    pub fn leaky_relu(self, alpha: f32) -> Var<'t> {
        self.unary(Unary::LeakyRelu(alpha))
    }
}

impl<'t> Var<'t> {
    /// `max(x, 0)`.
    pub fn relu(self) -> Var<'t> {
        self.unary(Unary::Relu)
    }
}

impl<'t> Var<'t> {
    /// Scaled ELU with Keras' constants.
    pub fn selu(self) -> Var<'t> {
        self.unary(Unary::Selu)
    }
}

impl<'t> Var<'t> {
    /// `1 / (1 + e^-x)`, computed without overflow.
    pub fn sigmoid(self) -> Var<'t> {
        self.unary(Unary::Sigmoid)
    }

    /// If this value is `sigmoid(z)`, `z` (see [`Var::softmax_logits`]).
    pub fn sigmoid_logits(self) -> Option<Var<'t>> {
        self.unary_input(Unary::Sigmoid)
    }
}

impl<'t> Var<'t> {
    /// `ln(1 + e^x)`, computed without overflow.
    pub fn softplus(self) -> Var<'t> {
        self.unary(Unary::Softplus)
    }
}

impl<'t> Var<'t> {
    /// `x / (1 + |x|)`.
    pub fn softsign(self) -> Var<'t> {
        self.unary(Unary::Softsign)
    }
}

impl<'t> Var<'t> {
    /// `x * sigmoid(x)` (also called SiLU).
    pub fn swish(self) -> Var<'t> {
        self.unary(Unary::Swish)
    }
}

impl<'t> Var<'t> {
    /// Hyperbolic tangent.
    pub fn tanh(self) -> Var<'t> {
        self.unary(Unary::Tanh)
    }
}
