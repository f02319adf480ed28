//! The exact GELU, `x * Phi(x)` with `Phi` the normal distribution's CDF (Keras' default,
//! `approximate=False`).
use super::UnaryFn;

/// The error function, for the exact (non-approximate) GELU that Keras uses by default.
#[inline]
fn erf(x: f32) -> f32 {
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

#[derive(Clone, Copy)]
pub(crate) struct Gelu;

impl UnaryFn for Gelu {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x * INV_SQRT_2))
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};
    use super::erf;

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Gelu, &POINTS);
    }

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) from tables.
        for (x, want) in
            [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (2.0, 0.995_322_3), (-1.0, -0.842_700_8)]
        {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {} want {want}", erf(x));
        }
    }
}
