//! The plain arithmetic functions, one [`UnaryFn`] each: `-x`, `e^x`, `ln x`, `sqrt x`, `x^2`, `|x|`, `x^p`,
//! `x + s`, `x * s`, and clipping.
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Neg;
impl UnaryFn for Neg {
    const DF_USES_OUTPUT_ONLY: bool = true;
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        -x
    }
    #[inline(always)]
    fn df(self, _: f32, _: f32) -> f32 {
        -1.0
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Exp;
impl UnaryFn for Exp {
    const DF_USES_OUTPUT_ONLY: bool = true;
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.exp()
    }
    #[inline(always)]
    fn df(self, _: f32, y: f32) -> f32 {
        y
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Log;
impl UnaryFn for Log {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.ln()
    }
    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        1.0 / x
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Sqrt;
impl UnaryFn for Sqrt {
    const DF_USES_OUTPUT_ONLY: bool = true;
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.sqrt()
    }
    #[inline(always)]
    fn df(self, _: f32, y: f32) -> f32 {
        0.5 / y
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Square;
impl UnaryFn for Square {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x * x
    }
    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        2.0 * x
    }
}

/// Gradient 0 at 0.
#[derive(Clone, Copy)]
pub(crate) struct Abs;
impl UnaryFn for Abs {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.abs()
    }
    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Pow {
    pub(crate) p: f32,
}
impl UnaryFn for Pow {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.powf(self.p)
    }
    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        self.p * x.powf(self.p - 1.0)
    }
}

#[derive(Clone, Copy)]
pub(crate) struct AddScalar {
    pub(crate) s: f32,
}
impl UnaryFn for AddScalar {
    const DF_USES_OUTPUT_ONLY: bool = true;
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x + self.s
    }
    #[inline(always)]
    fn df(self, _: f32, _: f32) -> f32 {
        1.0
    }
}

#[derive(Clone, Copy)]
pub(crate) struct MulScalar {
    pub(crate) s: f32,
}
impl UnaryFn for MulScalar {
    const DF_USES_OUTPUT_ONLY: bool = true;
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x * self.s
    }
    #[inline(always)]
    fn df(self, _: f32, _: f32) -> f32 {
        self.s
    }
}

/// The gradient is 1 inside `[lo, hi]` and 0 outside.
#[derive(Clone, Copy)]
pub(crate) struct Clip {
    pub(crate) lo: f32,
    pub(crate) hi: f32,
}
impl UnaryFn for Clip {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x.clamp(self.lo, self.hi)
    }
    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        if x >= self.lo && x <= self.hi {
            1.0
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Unary::*;
    use super::super::{assert_df_matches_differences, POINTS};

    #[test]
    fn derivatives_match_differences() {
        for f in [Neg, Exp, Square, Abs, AddScalar(0.5), MulScalar(-3.0), Clip(-1.0, 1.5)] {
            assert_df_matches_differences(f, &POINTS);
        }
        // Defined for x > 0 only.
        for f in [Log, Sqrt, Pow(2.5)] {
            assert_df_matches_differences(f, &[0.4, 1.2, 2.9]);
        }
    }
}
