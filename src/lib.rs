#![doc = include_str!("../README.md")]
pub mod error;
pub use error::{Error, Result};
pub mod activations;
pub mod autodiff;
pub mod callbacks;
pub mod datasets;
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
pub mod spec;
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
