//! `softplus(x) = ln(1 + e^x)`, computed without overflow.
use super::sigmoid::sigmoid;
use super::UnaryFn;

/// Stable `ln(1 + e^x)`.
#[inline]
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[derive(Clone, Copy)]
pub(crate) struct Softplus;

impl UnaryFn for Softplus {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        softplus(x)
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        sigmoid(x)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};
    use super::softplus;

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Softplus, &POINTS);
    }

    #[test]
    fn does_not_overflow() {
        assert!((softplus(100.0) - 100.0).abs() < 1e-5);
        assert!(softplus(-100.0) >= 0.0 && softplus(-100.0) < 1e-40);
    }
}
