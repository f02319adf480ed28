//! Nothing to link: this package holds kerust's benchmarks (`dense.rs`, `training.rs`), run by `cargo bench`.
