//! `swish(x) = x * sigmoid(x)` (also called SiLU).
use super::sigmoid::sigmoid;
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Swish;

impl UnaryFn for Swish {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x * sigmoid(x)
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        let s = sigmoid(x);
        s + x * s * (1.0 - s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Swish, &POINTS);
    }
}
