#![doc = include_str!("../README.md")]
//!
//! ## Build kerust optimized in your own crate
//!
//! A crate that depends on kerust compiles it with *its* profile: kerust's own `[profile.dev]` does not apply
//! there, and a plain `cargo run` (or `cargo test`) builds kerust, ndarray and the matrix kernels without
//! optimizations, which trains some 40-150 times slower. Add this to your `Cargo.toml` (the workspace root's, in
//! a workspace): it optimizes kerust and every other dependency, but not your own code, so your builds stay
//! quick:
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 3
//! ```
//!
//! or build with `cargo run --release`. The first `fit` of a process built otherwise prints this advice once,
//! on stderr.
pub mod error;
pub mod formats;
pub use error::{Error, Result};
/// The ndarray kerust is built on: arrays made with `kerust::ndarray` are of the version kerust's functions take,
/// whatever version the crate that uses kerust depends on.
pub use ndarray;
pub mod activations;
pub mod autodiff;
pub mod callbacks;
pub mod datasets;
pub mod device;
pub mod distributed;
pub mod initializers;
pub mod layers;
pub mod losses;
mod memory;
mod numeric;
#[cfg(feature = "plot")]
mod png_file;
pub use numeric::Numeric;
pub mod metrics;
pub mod models;
pub mod optimizers;
mod random;
pub mod regularizers;
pub mod saving;
mod shapes;
pub mod spec;
mod speed_notice;
pub mod threads;
pub mod utils;

/// The guides under `docs/`: `cargo test --doc` compiles their code blocks, and runs those not marked
/// `no_run`, so that the guides stay true.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/guides/sequential_model.md")]
    struct SequentialModel;
    #[doc = include_str!("../docs/guides/functional_api.md")]
    struct FunctionalApi;
    #[doc = include_str!("../docs/guides/training_and_evaluation.md")]
    struct TrainingAndEvaluation;
    #[doc = include_str!("../docs/guides/saving.md")]
    struct Saving;
    #[doc = include_str!("../docs/guides/convnets.md")]
    struct Convnets;
    #[doc = include_str!("../docs/guides/distributed_training.md")]
    struct DistributedTraining;
    #[doc = include_str!("../docs/contributing.md")]
    struct Contributing;
}
