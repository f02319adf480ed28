//! A user's element-wise activation ([`crate::activations::Activation::custom`]): its own `f` and `df` of `x`.
use super::{Unary, UnaryFn};
use crate::autodiff::CustomActivation;
use crate::autodiff::Var;

impl UnaryFn for CustomActivation {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        CustomActivation::f(&self, x)
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        CustomActivation::df(&self, x)
    }
}

impl<'t> Var<'t> {
    /// A user's element-wise activation ([`crate::activations::Activation::custom`]).
    pub(crate) fn custom_elementwise(self, c: CustomActivation) -> Var<'t> {
        self.unary(Unary::Custom(c))
    }
}
