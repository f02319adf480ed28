//! Graph models (Keras' functional API) and the merge layers, in one test binary: each test binary links the
//! whole crate, so related tests share one to keep `cargo test` quick.
#[path = "../../examples/fuzz_model_files/harness.rs"]
mod harness;

mod functional;
mod hostile_files;
mod keras_parity;
mod merging;
mod summary;
