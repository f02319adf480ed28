//! `relu(x) = max(x, 0)`, with NaN propagated.
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Relu;

impl UnaryFn for Relu {
    const DF_USES_OUTPUT_ONLY: bool = true;

    /// Not `x.max(0.0)`, which returns 0 for a NaN: NaN propagates, as in numpy and Keras.
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        if x < 0.0 {
            0.0
        } else {
            x
        }
    }

    #[inline(always)]
    fn df(self, _: f32, y: f32) -> f32 {
        if y > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences_and_nan_propagates() {
        assert_df_matches_differences(Unary::Relu, &POINTS);
        assert!(Unary::Relu.f(f32::NAN).is_nan());
    }
}
