//! kerust: Keras-style deep learning in Rust.
pub mod error;
pub use error::{Error, Result};
pub mod autodiff;
pub mod datasets;
pub mod utils;
pub mod losses;
pub mod metrics;
pub mod optimizers;
