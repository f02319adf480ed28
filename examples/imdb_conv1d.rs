//! Keras 2's `imdb_cnn.py` in Rust: IMDB sentiment with a 1-D convolution. The 5,000 most frequent words,
//! reviews padded to 400, a 50-wide embedding, 250 filters of width 3, global max pooling, a hidden layer of
//! 250, 350,751 parameters; binary cross-entropy, Adam, batch 32, 2 epochs (Keras reports about 0.89 test
//! accuracy).
//!
//! ```text
//! cargo run --release --example imdb_conv1d
//! cargo run --release --example imdb_conv1d -- --synthetic --samples 2000 --epochs 2 --min-test-accuracy 0.9
//! ```
//! IMDB is read from `$KERUST_HOME/datasets/imdb/` (default `~/.kerust`) and downloaded there if missing, or
//! from any file in Keras' `imdb.npz` layout with `--npz FILE`.
//! `--synthetic` trains on a generated task of the same shapes instead (no network), whose label is the
//! presence of a few marker words among random ones. Run with `--help` for every flag.
mod common;
#[path = "common/imdb_text.rs"]
mod imdb_text;
#[path = "common/sequences.rs"]
mod sequences;

use std::process::ExitCode;

use imdb_text::TextExample;
use sequences::{imdb_cnn, CnnSettings};

const EXAMPLE: TextExample = TextExample {
    name: "imdb_conv1d",
    title: "Keras 2's imdb_cnn.py (a 1-D convnet for IMDB sentiment) in Rust.",
    max_features: 5000,
    maxlen: 400,
    epochs: 2,
    build: |maxlen| imdb_cnn(&CnnSettings { maxlen, ..Default::default() }),
};

fn main() -> ExitCode {
    imdb_text::main(&EXAMPLE)
}
