//! keras-io's "Bidirectional LSTM on IMDB" in Rust: the 20,000 most frequent words, reviews padded to 200, a
//! 128-wide embedding, two bidirectional LSTMs of 64 units, 2,757,761 parameters; binary cross-entropy, Adam,
//! batch 32, 2 epochs (keras-io shows a validation accuracy of about 0.84).
//!
//! ```text
//! cargo run --release --example imdb_lstm
//! cargo run --release --example imdb_lstm -- --synthetic --samples 2000 --maxlen 100 --epochs 2
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
use sequences::imdb_bilstm;

const EXAMPLE: TextExample = TextExample {
    name: "imdb_lstm",
    title: "keras-io's Bidirectional LSTM on IMDB in Rust.",
    max_features: 20_000,
    maxlen: 200,
    epochs: 2,
    build: |maxlen| imdb_bilstm(20_000, maxlen),
};

fn main() -> ExitCode {
    imdb_text::main(&EXAMPLE)
}
