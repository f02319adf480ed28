//! The logistic function `1 / (1 + e^-x)`, computed without overflow.
use super::UnaryFn;

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

#[derive(Clone, Copy)]
pub(crate) struct Sigmoid;

impl UnaryFn for Sigmoid {
    const DF_USES_OUTPUT_ONLY: bool = true;

    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        sigmoid(x)
    }

    #[inline(always)]
    fn df(self, _: f32, y: f32) -> f32 {
        y * (1.0 - y)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};
    use super::sigmoid;

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Sigmoid, &POINTS);
    }

    #[test]
    fn does_not_overflow() {
        assert!(sigmoid(-100.0) > 0.0 && sigmoid(-100.0) < 1e-40);
        assert_eq!(sigmoid(100.0), 1.0);
    }
}
