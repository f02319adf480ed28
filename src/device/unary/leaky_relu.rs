//! `leaky_relu(x) = x` for `x > 0`, else `alpha * x`.
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct LeakyRelu {
    pub(crate) alpha: f32,
}

impl UnaryFn for LeakyRelu {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            self.alpha * x
        }
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else {
            self.alpha
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::LeakyRelu(0.3), &POINTS);
    }
}
