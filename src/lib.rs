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
