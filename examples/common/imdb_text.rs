//! What the IMDB examples (`imdb_conv1d`, `imdb_lstm`) share: their command line, loading IMDB (or the
//! synthetic stand-in), training with per-epoch times, and the test-accuracy floor. Each example gives its
//! model and Keras' settings as a [`TextExample`].
use std::process::ExitCode;

use kerust::datasets::{imdb, SequenceOptions};
use kerust::models::Sequential;
use kerust::utils::{set_random_seed, PadSequences};
use ndarray::{Array2, Axis};

use super::common::{self, Flags};
use super::sequences::{synthetic_imdb, EpochTimer};

/// One IMDB example: Keras' settings and its model.
pub struct TextExample {
    /// The example's name, for its usage line (`cargo run --release --example NAME`).
    pub name: &'static str,
    /// What it is, the usage's first line.
    pub title: &'static str,
    /// Keras' `max_features`: the vocabulary kept by the loader.
    pub max_features: usize,
    /// Keras' `maxlen`: reviews are padded or cut to it.
    pub maxlen: usize,
    /// Keras' `epochs`.
    pub epochs: usize,
    /// The compiled model for sequences of the given length.
    pub build: fn(maxlen: usize) -> kerust::Result<Sequential>,
}

struct Args {
    synthetic: bool,
    npz: Option<std::path::PathBuf>,
    samples: usize,
    test_samples: Option<usize>,
    maxlen: usize,
    epochs: usize,
    seed: u64,
    min_test_accuracy: Option<f32>,
}

fn usage(ex: &TextExample) -> String {
    format!(
        "\
{title}

Usage: cargo run --release --example {name} -- [OPTIONS]

Options:
  --synthetic               train on a generated task of IMDB's shapes instead of IMDB (no network needed)
  --npz FILE                read IMDB from FILE (Keras' imdb.npz layout, e.g. ~/.keras/datasets/imdb.npz)
                            instead of the cache, without the network
  --samples N               training sequences: the first N of IMDB's 25,000, or N generated (default 25,000)
  --test-samples N          test sequences, likewise (default: as many as --samples)
  --maxlen N                with --synthetic, the sequence length (default: {maxlen}, as for IMDB)
  --epochs N                epochs (default: {epochs}, as in Keras' example)
  --seed N                  seed for the data, initialization, dropout and shuffling (default: 1)
  --min-test-accuracy X     exit with an error if the test accuracy is below X
  -h, --help                print this help

Environment: KERUST_HOME (dataset cache, default ~/.kerust), KERUST_DATASETS_MIRROR (download mirror),
KERUST_NUM_THREADS (kerust's threads, default: the cores this process may use).",
        title = ex.title,
        name = ex.name,
        maxlen = ex.maxlen,
        epochs = ex.epochs,
    )
}

/// Parses the flags; `Ok(None)` for `--help`.
fn parse_args(
    ex: &TextExample,
    mut flags: Flags<impl Iterator<Item = String>>,
) -> Result<Option<Args>, String> {
    let mut a = Args {
        synthetic: false,
        npz: None,
        samples: 25_000,
        test_samples: None,
        maxlen: ex.maxlen,
        epochs: ex.epochs,
        seed: 1,
        min_test_accuracy: None,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--synthetic" => a.synthetic = true,
            "--npz" => a.npz = Some(flags.value()?.into()),
            "--samples" => a.samples = flags.number()?,
            "--test-samples" => a.test_samples = Some(flags.number()?),
            "--maxlen" => a.maxlen = flags.number()?,
            "--epochs" => a.epochs = flags.number()?,
            "--seed" => a.seed = flags.number()?,
            "--min-test-accuracy" => a.min_test_accuracy = Some(flags.number()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.samples == 0 || a.test_samples == Some(0) || a.epochs == 0 {
        return Err("--samples, --test-samples and --epochs must be at least 1".into());
    }
    // A convolution needs at least its kernel's width; the generator at least 8 steps.
    if a.maxlen < 8 {
        return Err(format!("--maxlen must be at least 8, got {}", a.maxlen));
    }
    if a.synthetic && a.npz.is_some() {
        return Err("--npz and --synthetic exclude each other".into());
    }
    if !a.synthetic && a.maxlen != ex.maxlen {
        return Err(format!(
            "--maxlen applies to --synthetic only (IMDB is padded to {}, as in Keras' example)",
            ex.maxlen
        ));
    }
    Ok(Some(a))
}

/// Runs the example: parses the command line, trains, prints the test accuracy and the seconds per epoch.
pub fn main(ex: &TextExample) -> ExitCode {
    common::main_with(&usage(ex), |flags| parse_args(ex, flags), |a| run(ex, a))
}

type Split = (Array2<i32>, Array2<f32>);

/// IMDB as Keras' examples load it, the first `samples` and `test_samples` reviews of each split.
fn load_imdb(ex: &TextExample, a: &Args, test_samples: usize) -> kerust::Result<(Split, Split)> {
    let options = SequenceOptions { num_words: Some(ex.max_features), ..Default::default() };
    let ((x_train, y_train), (x_test, y_test)) = match &a.npz {
        Some(path) => imdb::load_data_from_npz(path, &options)?,
        None => imdb::load_data(&options)?,
    };
    println!("{} train sequences", x_train.len());
    println!("{} test sequences", x_test.len());
    let pad = PadSequences::new().maxlen(ex.maxlen);
    let (n, m) = (a.samples.min(x_train.len()), test_samples.min(x_test.len()));
    let labels = |y: &ndarray::Array1<i64>, n: usize| {
        y.slice(ndarray::s![..n]).mapv(|v| v as f32).insert_axis(Axis(1))
    };
    Ok(((pad.pad(&x_train[..n])?, labels(&y_train, n)), (pad.pad(&x_test[..m])?, labels(&y_test, m))))
}

fn run(ex: &TextExample, a: &Args) -> kerust::Result<ExitCode> {
    set_random_seed(a.seed);
    let test_samples = a.test_samples.unwrap_or(a.samples);

    println!("Loading data...");
    let ((x_train, y_train), (x_test, y_test)) = if a.synthetic {
        println!("synthetic: the label is the presence of marker words among random ones (--synthetic)");
        (
            synthetic_imdb(a.samples, a.maxlen, ex.max_features, a.seed),
            synthetic_imdb(test_samples, a.maxlen, ex.max_features, a.seed.wrapping_add(1_000_003)),
        )
    } else {
        match load_imdb(ex, a, test_samples) {
            Ok(data) => data,
            Err(error) => {
                eprintln!("error: cannot reach the IMDB data: {error}");
                eprintln!(
                    "Run with --synthetic to train on a generated task of the same shapes instead, which needs \
                     no data:\n  cargo run --release --example {} -- --synthetic",
                    ex.name
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    println!("x_train shape: {:?}", x_train.shape());
    println!("x_test shape: {:?}", x_test.shape());

    println!("Build model...");
    let mut model = (ex.build)(a.maxlen)?;
    model.summary();

    let mut timer = EpochTimer::printing();
    model
        .fit(&x_train, &y_train)
        .batch_size(32)
        .epochs(a.epochs)
        .validation_data(&x_test, &y_test)
        .callback_ref(&mut timer)
        .run()?;

    let score = model.evaluate(&x_test, &y_test)?;
    let (loss, accuracy) = (score.get("loss").unwrap_or(f32::NAN), score.get("accuracy").unwrap_or(f32::NAN));
    println!("Test loss: {loss}");
    println!("Test accuracy: {accuracy}");
    println!("seconds per epoch (training and validation): median {:.1}", timer.median());
    if let Some(min) = a.min_test_accuracy {
        if accuracy.is_nan() || accuracy < min {
            eprintln!("error: the test accuracy {accuracy:.4} is below --min-test-accuracy {min}");
            return Ok(ExitCode::FAILURE);
        }
        println!("test accuracy {accuracy:.4} >= --min-test-accuracy {min}: ok");
    }
    Ok(ExitCode::SUCCESS)
}
