//! Keras' "Simple MNIST convnet" (keras-io `examples/vision/mnist_convnet.py`) in Rust, line for line: two
//! convolutions and poolings, dropout and a softmax, 34,826 parameters, Adam, batch 128, 15 epochs with the
//! last 10% of the training images for validation; Keras reports a test accuracy of 0.9922.
//!
//! ```text
//! cargo run --release --example mnist_convnet
//! cargo run --release --example mnist_convnet -- --epochs 1 --limit 12000 --min-test-accuracy 0.95
//! ```
//!
//! MNIST is read from `$KERUST_HOME/datasets/mnist/` (default `~/.kerust`) and downloaded there if missing.
//! Learning curves are written to `--out` (default: `target/kerust-out/` of the repository, which git
//! ignores).
//! Run with `--help` for every flag.
mod common;

use std::process::ExitCode;
use std::time::Instant;

use kerust::callbacks::{Callback, Logs};
use kerust::datasets::mnist;
use kerust::layers::{Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use kerust::models::{Model, Sequential};
use kerust::utils::{set_random_seed, to_categorical};
use ndarray::{s, Axis};

use common::Flags;

const USAGE: &str = "\
Keras' simple MNIST convnet in Rust.

Usage: cargo run --release --example mnist_convnet -- [OPTIONS]

Options:
  --epochs N                epochs (default: 15, as in Keras' example)
  --limit N                 train on the first N training images only (default: all 60,000)
  --seed N                  seed for initialization, dropout and shuffling (default: 1)
  --out DIR                 where to write the learning curves (default: target/kerust-out/ of the repository)
  --min-test-accuracy X     exit with an error if the test accuracy is below X
  -h, --help                print this help

Environment: KERUST_HOME (dataset cache, default ~/.kerust), KERUST_DATASETS_MIRROR (download mirror),
KERUST_NUM_THREADS (kerust's threads, default: the cores this process may use).";

struct Args {
    epochs: usize,
    limit: Option<usize>,
    seed: u64,
    out: std::path::PathBuf,
    min_test_accuracy: Option<f32>,
}

/// Parses the flags; `Ok(None)` for `--help`.
fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut parsed =
        Args { epochs: 15, limit: None, seed: 1, out: common::default_out(), min_test_accuracy: None };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--epochs" => parsed.epochs = flags.number()?,
            "--limit" => parsed.limit = Some(flags.number()?),
            "--seed" => parsed.seed = flags.number()?,
            "--out" => parsed.out = flags.value()?.into(),
            "--min-test-accuracy" => parsed.min_test_accuracy = Some(flags.number()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.epochs == 0 || parsed.limit == Some(0) {
        return Err("--epochs and --limit must be at least 1".into());
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

fn run(args: &Args) -> kerust::Result<ExitCode> {
    set_random_seed(args.seed);
    std::fs::create_dir_all(&args.out).map_err(|e| kerust::Error::io(&args.out, e))?;

    // Prepare the data: scale images to [0, 1], add the channel axis (np.expand_dims(x, -1)), one-hot labels.
    let num_classes = 10;
    let ((x_train, y_train), (x_test, y_test)) = mnist::load_data()?;
    let limit = args.limit.unwrap_or(x_train.len_of(Axis(0))).min(x_train.len_of(Axis(0)));
    let x_train = x_train.slice(s![..limit, .., ..]).mapv(|v| f32::from(v) / 255.0).insert_axis(Axis(3));
    let x_test = x_test.mapv(|v| f32::from(v) / 255.0).insert_axis(Axis(3));
    println!("x_train shape: {:?}", x_train.shape());
    println!("{} train samples", x_train.shape()[0]);
    println!("{} test samples", x_test.shape()[0]);
    let y_train = to_categorical(&y_train.slice(s![..limit]).to_owned(), num_classes)?;
    let y_test = to_categorical(&y_test, num_classes)?;

    // Build the model.
    let mut model = Sequential::new();
    model.add(Input::new([28, 28, 1]))?;
    model.add(Conv2D::new(32, (3, 3)).activation("relu"))?;
    model.add(MaxPooling2D::new((2, 2)))?;
    model.add(Conv2D::new(64, (3, 3)).activation("relu"))?;
    model.add(MaxPooling2D::new((2, 2)))?;
    model.add(Flatten::new())?;
    model.add(Dropout::new(0.5))?;
    model.add(Dense::new(num_classes).activation("softmax"))?;
    model.summary();

    // Train the model.
    let (batch_size, epochs) = (128, args.epochs);
    model.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    let mut timer = EpochTimer::default();
    let history = model
        .fit(&x_train, &y_train)
        .batch_size(batch_size)
        .epochs(epochs)
        .validation_split(0.1)
        .callback_ref(&mut timer)
        .run()?;
    println!("history.history.keys(): {:?}", history.keys().collect::<Vec<_>>());
    for metric in ["accuracy", "loss"] {
        for ext in ["png", "svg"] {
            let path = args.out.join(format!("convnet_{metric}.{ext}"));
            history.plot(&path, &[metric, &format!("val_{metric}")])?;
            println!("saved {}", path.display());
        }
    }

    // Evaluate the trained model.
    let score = model.evaluate(&x_test, &y_test)?;
    let (loss, accuracy) = (score.get("loss").unwrap_or(f32::NAN), score.get("accuracy").unwrap_or(f32::NAN));
    println!("Test loss: {loss}");
    println!("Test accuracy: {accuracy}");
    println!(
        "seconds per epoch (training and validation): median {:.2}, all {:?}",
        timer.median(),
        timer.seconds.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    if let Some(min) = args.min_test_accuracy {
        if accuracy.is_nan() || accuracy < min {
            eprintln!("error: the test accuracy {accuracy:.4} is below --min-test-accuracy {min}");
            return Ok(ExitCode::FAILURE);
        }
        println!("test accuracy {accuracy:.4} >= --min-test-accuracy {min}: ok");
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds per epoch (training plus validation), measured between `fit`'s epoch hooks.
#[derive(Default)]
struct EpochTimer {
    started: Option<Instant>,
    seconds: Vec<f64>,
}

impl EpochTimer {
    fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _: &mut Model, _: usize) -> kerust::Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        if let Some(start) = self.started.take() {
            self.seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
