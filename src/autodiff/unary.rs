//! Element-wise rules: each function with its derivative, side by side.
//!
//! `df` receives the input `x` *and* the output `y = f(x)`, so a rule can take its derivative from whichever is
//! cheaper (dfdx's `DF_USES_FX`): `exp`, `sigmoid`, `tanh`, `relu` read the output and need no recomputation.

/// An element-wise function with a known derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Square,
    Abs,
    Pow(f32),
    AddScalar(f32),
    MulScalar(f32),
    Clip(f32, f32),
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Selu,
    Sigmoid,
    Tanh,
    Softplus,
    Softsign,
    Gelu,
    Swish,
    /// A user's activation: its own `f` and `df` of `x`.
    Custom(super::CustomActivation),
}

/// SELU's constants (Klambauer et al. 2017), as Keras uses them.
pub(crate) const SELU_ALPHA: f32 = 1.673_263_2;
pub(crate) const SELU_SCALE: f32 = 1.050_701;

/// Numerically stable logistic function: never computes `exp` of a large positive number. Written with one
/// `exp` of `-|x|` and a select rather than two branches, so that a loop over mixed signs does not mispredict.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = (-x.abs()).exp();
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// Stable `ln(1 + e^x)`.
#[inline]
pub(crate) fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The error function, for the exact (non-approximate) GELU that Keras uses by default.
#[inline]
pub(crate) fn erf(x: f32) -> f32 {
    // Numerical Recipes' erfc Chebyshev fit: relative error < 1.2e-7 everywhere.
    let z = f64::from(x.abs());
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let r = (1.0 - erfc) as f32;
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

const INV_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi)
const INV_SQRT_2PI: f32 = 0.398_942_3;

impl Unary {
    /// `f(x)`. Always inlined: with `self` fixed by the caller's loop the match folds away (a plain `#[inline]`
    /// left it an out-of-line call per element in the hot activations).
    #[inline(always)]
    pub(crate) fn f(self, x: f32) -> f32 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Square => x * x,
            Unary::Abs => x.abs(),
            Unary::Pow(p) => x.powf(p),
            Unary::AddScalar(s) => x + s,
            Unary::MulScalar(s) => x * s,
            Unary::Clip(lo, hi) => x.clamp(lo, hi),
            // Not `x.max(0.0)`, which returns 0 for a NaN: NaN propagates, as in numpy and Keras.
            Unary::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Unary::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Unary::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Unary::Selu => {
                if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp_m1()
                }
            }
            Unary::Sigmoid => sigmoid(x),
            Unary::Tanh => x.tanh(),
            Unary::Softplus => softplus(x),
            Unary::Softsign => x / (1.0 + x.abs()),
            Unary::Gelu => 0.5 * x * (1.0 + erf(x * INV_SQRT_2)),
            Unary::Swish => x * sigmoid(x),
            Unary::Custom(c) => c.f(x),
        }
    }

    /// Whether `df` reads only the output `y`, so a fused op need not keep the input.
    pub(crate) fn df_uses_output_only(self) -> bool {
        matches!(
            self,
            Unary::Exp
                | Unary::Sqrt
                | Unary::Relu
                | Unary::Sigmoid
                | Unary::Tanh
                | Unary::AddScalar(_)
                | Unary::MulScalar(_)
                | Unary::Neg
        )
    }

    /// `f'(x)`, given `x` and `y = f(x)`. Always inlined, like [`Unary::f`].
    #[inline(always)]
    pub(crate) fn df(self, x: f32, y: f32) -> f32 {
        match self {
            Unary::Neg => -1.0,
            Unary::Exp => y,
            Unary::Log => 1.0 / x,
            Unary::Sqrt => 0.5 / y,
            Unary::Square => 2.0 * x,
            Unary::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Unary::Pow(p) => p * x.powf(p - 1.0),
            Unary::AddScalar(_) => 1.0,
            Unary::MulScalar(s) => s,
            Unary::Clip(lo, hi) => {
                if x >= lo && x <= hi {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Unary::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    y + a
                }
            }
            Unary::Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    y + SELU_SCALE * SELU_ALPHA
                }
            }
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Tanh => 1.0 - y * y,
            Unary::Softplus => sigmoid(x),
            Unary::Softsign => {
                let d = 1.0 + x.abs();
                1.0 / (d * d)
            }
            Unary::Gelu => 0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp(),
            Unary::Swish => {
                let s = sigmoid(x);
                s + x * s * (1.0 - s)
            }
            Unary::Custom(c) => c.df(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) from tables.
        for (x, want) in
            [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (2.0, 0.995_322_3), (-1.0, -0.842_700_8)]
        {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {} want {want}", erf(x));
        }
    }

    #[test]
    fn sigmoid_and_softplus_do_not_overflow() {
        assert!(sigmoid(-100.0) > 0.0 && sigmoid(-100.0) < 1e-40);
        assert_eq!(sigmoid(100.0), 1.0);
        assert!((softplus(100.0) - 100.0).abs() < 1e-5);
        assert!(softplus(-100.0) >= 0.0 && softplus(-100.0) < 1e-40);
    }
}
