//! Scaled ELU with the constants of Klambauer et al. (2017), as Keras uses them.
use super::UnaryFn;

/// SELU's constants, as Keras uses them.
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

#[derive(Clone, Copy)]
pub(crate) struct Selu;

impl UnaryFn for Selu {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        if x > 0.0 {
            SELU_SCALE * x
        } else {
            SELU_SCALE * SELU_ALPHA * x.exp_m1()
        }
    }

    #[inline(always)]
    fn df(self, x: f32, y: f32) -> f32 {
        if x > 0.0 {
            SELU_SCALE
        } else {
            y + SELU_SCALE * SELU_ALPHA
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Selu, &POINTS);
    }
}
