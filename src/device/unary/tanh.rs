//! The hyperbolic tangent.
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Tanh;

impl UnaryFn for Tanh {
    const DF_USES_OUTPUT_ONLY: bool = true;

    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.tanh()
    }

    #[inline(always)]
    fn df(self, _: f32, y: f32) -> f32 {
        1.0 - y * y
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Tanh, &POINTS);
    }
}
