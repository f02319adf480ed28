//! `softsign(x) = x / (1 + |x|)`.
//!
//! The smallest complete element-wise op: copy this file to add one (see `docs/architecture.md`, "Adding an
//! op").
use super::UnaryFn;

#[derive(Clone, Copy)]
pub(crate) struct Softsign;

impl UnaryFn for Softsign {
    #[inline(always)]
    fn f(self, x: f32) -> f32 {
        x / (1.0 + x.abs())
    }

    #[inline(always)]
    fn df(self, x: f32, _: f32) -> f32 {
        let d = 1.0 + x.abs();
        1.0 / (d * d)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{assert_df_matches_differences, Unary, POINTS};

    #[test]
    fn derivative_matches_differences() {
        assert_df_matches_differences(Unary::Softsign, &POINTS);
    }

    #[test]
    fn docs_architecture_shows_this_file() {
        let guide = include_str!("../../../docs/architecture.md");
        let block = guide
            .split("## Adding an op")
            .nth(1)
            .and_then(|section| section.split("```rust,ignore\n").nth(1))
            .and_then(|code| code.split("```").next())
            .expect("docs/architecture.md has a code block under \"Adding an op\"");
        assert!(
            include_str!("softsign.rs").contains(block),
            "docs/architecture.md shows a softsign.rs that differs"
        );
    }
}
