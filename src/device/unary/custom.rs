//! A user's element-wise activation ([`crate::activations::Activation::custom`]): its own `f` and `df` of `x`.
use std::fmt;

use super::UnaryFn;

/// An element-wise activation given by the user as a function `f` and its derivative `df` (both of `x`):
/// made by [`Activation::custom`](crate::activations::Activation::custom). Plain function pointers, so that
/// an [`Activation`](crate::activations::Activation) stays `Copy`; closures that capture nothing convert to
/// them.
#[derive(Clone, Copy)]
pub struct CustomActivation {
    name: &'static str,
    f: fn(f32) -> f32,
    df: fn(f32) -> f32,
}

impl CustomActivation {
    /// `f` with its derivative `df`, saved under `name`.
    pub(crate) fn new(name: &'static str, f: fn(f32) -> f32, df: fn(f32) -> f32) -> Self {
        CustomActivation { name, f, df }
    }

    /// The name it is saved under.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `f(x)`.
    pub fn f(&self, x: f32) -> f32 {
        (self.f)(x)
    }

    /// `f'(x)`.
    pub fn df(&self, x: f32) -> f32 {
        (self.df)(x)
    }
}

impl PartialEq for CustomActivation {
    /// The same name and the same two functions.
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && std::ptr::fn_addr_eq(self.f, other.f)
            && std::ptr::fn_addr_eq(self.df, other.df)
    }
}

impl fmt::Debug for CustomActivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomActivation").field("name", &self.name).finish_non_exhaustive()
    }
}

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
