//! `elu(x) = x` for `x > 0`, else `alpha * (e^x - 1)`.
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Elu {
    pub(crate) alpha: f32,
}

impl UnaryFn for Elu {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x.exp_m1()
        }
    }

    /// For `x <= 0`, `alpha * e^x = y + alpha`.
    #[inline(always)]
    fn df(self, x: f32, y: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            y + self.alpha
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Elu(0.7), &POINTS);
    }
}
