//! The adding problem (Hochreiter & Schmidhuber, 1997), a test of long-range memory: sequences of 100 steps of
//! two features, a random value in [0, 1] and a marker that is 1 at exactly two steps; the target is the sum
//! of the two marked values. An LSTM must hold the first marked value across up to 100 steps. Always
//! predicting the mean gives an MSE of about 0.167; the example fails unless the LSTM does far better.
//!
//! ```text
//! cargo run --release --example adding_problem
//! cargo run --release --example adding_problem -- --length 30 --samples 4000 --epochs 5 --max-test-mse 0.05
//! ```
//! Run with `--help` for every flag.
mod common;
#[path = "common/sequences.rs"]
mod sequences;

use std::process::ExitCode;

use kerust::utils::set_random_seed;

use common::Flags;
use sequences::{adding_model, adding_problem, constant_mse, EpochTimer};

const USAGE: &str = "\
The adding problem with an LSTM.

Usage: cargo run --release --example adding_problem -- [OPTIONS]

Options:
  --length N           steps per sequence (default: 100)
  --samples N          training sequences (default: 10000); a fifth as many more are the test set
  --epochs N           epochs (default: 20)
  --units N            LSTM units (default: 64)
  --batch-size N       batch size (default: 32)
  --learning-rate X    Adam's learning rate (default: 0.002; the gradient norm is clipped to 1)
  --seed N             seed for the data, initialization and shuffling (default: 1)
  --max-test-mse X     exit with an error if the test MSE is above X (default: 0.01)
  -h, --help           print this help

Environment: KERUST_NUM_THREADS (kerust's threads, default: the cores this process may use).";

struct Args {
    length: usize,
    samples: usize,
    epochs: usize,
    units: usize,
    batch_size: usize,
    learning_rate: f32,
    seed: u64,
    max_test_mse: f32,
}

/// Parses the flags; `Ok(None)` for `--help`.
fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut a = Args {
        length: 100,
        samples: 10_000,
        epochs: 20,
        units: 64,
        batch_size: 32,
        learning_rate: 0.002,
        seed: 1,
        max_test_mse: 0.01,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--length" => a.length = flags.number()?,
            "--samples" => a.samples = flags.number()?,
            "--epochs" => a.epochs = flags.number()?,
            "--units" => a.units = flags.number()?,
            "--batch-size" => a.batch_size = flags.number()?,
            "--learning-rate" => a.learning_rate = flags.number()?,
            "--seed" => a.seed = flags.number()?,
            "--max-test-mse" => a.max_test_mse = flags.number()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.length < 2 {
        return Err(format!("--length must be at least 2 (two marked steps), got {}", a.length));
    }
    if a.samples < 5 || a.epochs == 0 || a.units == 0 || a.batch_size == 0 {
        return Err("--samples must be at least 5; --epochs, --units and --batch-size at least 1".into());
    }
    if !(a.learning_rate > 0.0 && a.learning_rate.is_finite()) {
        return Err(format!("--learning-rate must be a positive number, got {}", a.learning_rate));
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

fn run(a: &Args) -> kerust::Result<ExitCode> {
    set_random_seed(a.seed);
    let (x_train, y_train) = adding_problem(a.samples, a.length, a.seed);
    let (x_test, y_test) = adding_problem(a.samples / 5, a.length, a.seed.wrapping_add(1_000_003));
    println!("x_train shape: {:?}, x_test shape: {:?}", x_train.shape(), x_test.shape());

    let mut model = adding_model(a.length, a.units, a.learning_rate)?;
    model.summary();
    let mut timer = EpochTimer::printing();
    model
        .fit(&x_train, &y_train)
        .batch_size(a.batch_size)
        .epochs(a.epochs)
        .validation_data(&x_test, &y_test)
        .callback_ref(&mut timer)
        .run()?;

    let mse = model.evaluate(&x_test, &y_test)?.get("loss").unwrap_or(f32::NAN);
    let constant = constant_mse(&y_train, &y_test);
    println!("test MSE: LSTM {mse:.5}, constant predictor (the training mean) {constant:.5}");
    println!("seconds per epoch: median {:.1}", timer.median());
    if mse.is_nan() || mse > a.max_test_mse {
        eprintln!("error: the test MSE {mse:.5} is above --max-test-mse {}", a.max_test_mse);
        return Ok(ExitCode::FAILURE);
    }
    println!("test MSE {mse:.5} <= --max-test-mse {}: ok", a.max_test_mse);
    Ok(ExitCode::SUCCESS)
}
