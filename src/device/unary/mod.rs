//! Element-wise functions: `f` and its derivative `df` side by side, one file each (`relu.rs`, `gelu.rs`, ...;
//! the plain arithmetic shares `arithmetic.rs`), registered on one line of the list below, which makes each a
//! variant of [`Unary`]. Every device runs them by that name: the CPU backend inlines `f` and `df` into its
//! loops (through [`specialise`]); the tape's element-wise node (`autodiff/ops/elementwise/`) and the fused
//! Dense and Conv2D nodes name the function they apply by its [`Unary`].
//!
//! `df` receives the input `x` *and* the output `y = f(x)`, so a rule can take its derivative from whichever
//! is cheaper (dfdx's `DF_USES_FX`): `exp`, `sigmoid`, `tanh`, `relu` read the output and need no
//! recomputation, and a fused node whose activation says so ([`UnaryFn::DF_USES_OUTPUT_ONLY`]) need not keep
//! its input.
mod arithmetic;
mod custom;
mod elu;
mod gelu;
mod leaky_relu;
mod relu;
mod selu;
mod sigmoid;
mod softplus;
mod softsign;
mod swish;
mod tanh;

pub use custom::CustomActivation;
pub(crate) use sigmoid::sigmoid;

/// An element-wise function with its derivative: what a new element-wise op implements (see the module docs
/// and `docs/architecture.md`, "Adding an op").
pub(crate) trait UnaryFn: Copy {
    /// Whether [`UnaryFn::df`] reads only the output `y`, so that a fused node need not keep the input.
    const DF_USES_OUTPUT_ONLY: bool = false;

    /// `f(x)`.
    fn f(self, x: f32) -> f32;

    /// `f'(x)`, given `x` and `y = f(x)`.
    fn df(self, x: f32, y: f32) -> f32;
}

/// Defines [`Unary`], one variant per registered function, and its dispatch to each function's [`UnaryFn`].
macro_rules! register {
    ($($(#[$doc:meta])* $variant:ident $(($($field:ident: $ty:ty),+))? => $value:expr,)*) => {
        /// An element-wise function with a known derivative: one variant per [`UnaryFn`] registered in
        /// `device/unary/mod.rs`, its parameters as the variant's fields.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum Unary {
            $($(#[$doc])* $variant $(($($ty),+))?,)*
        }

        impl Unary {
            /// `f(x)`. Always inlined: with `self` fixed by the caller's loop (see [`specialise`]) the match
            /// folds away (a plain `#[inline]` left it an out-of-line call per element in the hot activations).
            #[inline(always)]
            pub(crate) fn f(self, x: f32) -> f32 {
                match self {
                    $(Unary::$variant $(($($field),+))? => UnaryFn::f($value, x),)*
                }
            }

            /// `f'(x)`, given `x` and `y = f(x)`. Always inlined, like [`Unary::f`].
            #[inline(always)]
            pub(crate) fn df(self, x: f32, y: f32) -> f32 {
                match self {
                    $(Unary::$variant $(($($field),+))? => UnaryFn::df($value, x, y),)*
                }
            }

            /// Whether `df` reads only the output `y`, so a fused op need not keep the input.
            pub(crate) fn df_uses_output_only(self) -> bool {
                fn of<F: UnaryFn>(_: F) -> bool {
                    F::DF_USES_OUTPUT_ONLY
                }
                match self {
                    $(Unary::$variant $(($($field),+))? => of($value),)*
                }
            }
        }
    };
}

// The registry: one line per function, `Variant(parameters) => the UnaryFn value`.
register! {
    Neg => arithmetic::Neg,
    Exp => arithmetic::Exp,
    Log => arithmetic::Log,
    Sqrt => arithmetic::Sqrt,
    Square => arithmetic::Square,
    Abs => arithmetic::Abs,
    Pow(p: f32) => arithmetic::Pow { p },
    AddScalar(s: f32) => arithmetic::AddScalar { s },
    MulScalar(s: f32) => arithmetic::MulScalar { s },
    Clip(lo: f32, hi: f32) => arithmetic::Clip { lo, hi },
    Relu => relu::Relu,
    LeakyRelu(alpha: f32) => leaky_relu::LeakyRelu { alpha },
    Elu(alpha: f32) => elu::Elu { alpha },
    Selu => selu::Selu,
    Sigmoid => sigmoid::Sigmoid,
    Tanh => tanh::Tanh,
    Softplus => softplus::Softplus,
    Softsign => softsign::Softsign,
    Gelu => gelu::Gelu,
    Swish => swish::Swish,
    /// A user's activation: its own `f` and `df` of `x`.
    Custom(c: CustomActivation) => c,
}

/// Runs `$body` with `$op` bound to the [`Unary`] `$f` as a constant the compiler sees, for each of the hot
/// activations (relu, sigmoid, tanh), and as a runtime value for the rest: the loop in `$body` is compiled
/// once per hot activation, with `op.f` and `op.df` inlined to straight-line code. Every element-wise loop over
/// a [`Unary`] runs through it.
macro_rules! specialise {
    ($f:expr, |$op:ident| $body:expr) => {{
        use $crate::device::Unary;
        match $f {
            Unary::Relu => {
                let $op = Unary::Relu;
                $body
            }
            Unary::Sigmoid => {
                let $op = Unary::Sigmoid;
                $body
            }
            Unary::Tanh => {
                let $op = Unary::Tanh;
                $body
            }
            other => {
                let $op = other;
                $body
            }
        }
    }};
}
pub(crate) use specialise;

/// Asserts that `f`'s `df` matches central differences of its `f`, computed in f64, at each of `xs`: the test
/// every function's file runs.
#[cfg(test)]
pub(crate) fn assert_df_matches_differences(f: Unary, xs: &[f32]) {
    for &x in xs {
        let h = 1e-2f32;
        let numeric = (f64::from(f.f(x + h)) - f64::from(f.f(x - h))) / f64::from(2.0 * h);
        let analytic = f64::from(f.df(x, f.f(x)));
        assert!(
            (numeric - analytic).abs() <= 2e-3 * (1.0 + analytic.abs()),
            "{f:?} at {x}: df {analytic}, differences {numeric}"
        );
    }
}

/// Points on both sides of 0, away from the kinks of relu and its kind.
#[cfg(test)]
pub(crate) const POINTS: [f32; 5] = [-2.3, -0.7, 0.4, 1.2, 2.9];
