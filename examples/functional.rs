//! A graph model (Keras' functional API) on MNIST: two inputs, two outputs, a residual block.
//!
//! In: the image, and four handcrafted features of it (ink mean, ink fraction, top-minus-bottom and
//! left-minus-right ink). Out: the digit (softmax, categorical_crossentropy) and whether it is even (sigmoid,
//! binary_crossentropy, loss weight 0.5).
mod common;

use std::process::ExitCode;

use kerust::arrays;
use kerust::datasets::mnist;
use kerust::layers::{Add, Concatenate, Dense, Flatten, Input, Rescaling};
use kerust::models::{Compile, Graph, Model};
use kerust::utils::{set_random_seed, to_categorical};
use ndarray::{s, Array2, ArrayView3, Axis};

use common::Flags;

const USAGE: &str = "\
A two-input, two-output graph model on MNIST (Keras' functional API).

Usage: cargo run --release --example functional -- [OPTIONS]

Options:
  --epochs N                 epochs (default: 5)
  --train-samples N          train on the first N training images (default: all 60,000)
  --seed N                   seed for initialization and shuffling (default: 1)
  --min-digit-accuracy X     exit with an error if the test digit accuracy is below X
  -h, --help                 print this help

Environment: KERUST_HOME (dataset cache, default ~/.kerust), KERUST_DATASETS_MIRROR (download mirror).";

struct Args {
    epochs: usize,
    train_samples: Option<usize>,
    seed: u64,
    min_digit_accuracy: Option<f32>,
}

/// Parses the flags; `Ok(None)` for `--help`.
fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut parsed = Args { epochs: 5, train_samples: None, seed: 1, min_digit_accuracy: None };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--epochs" => parsed.epochs = flags.number()?,
            "--train-samples" => parsed.train_samples = Some(flags.number()?),
            "--seed" => parsed.seed = flags.number()?,
            "--min-digit-accuracy" => parsed.min_digit_accuracy = Some(flags.number()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.epochs == 0 || parsed.train_samples == Some(0) {
        return Err("--epochs and --train-samples must be at least 1".into());
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

/// Four features per image, from its ink (pixels / 255): the mean, the fraction of pixels above one half, the
/// top half's ink minus the bottom half's, and the left half's minus the right half's.
fn ink_features(images: ArrayView3<'_, u8>) -> Array2<f32> {
    let mut features = Array2::zeros((images.len_of(Axis(0)), 4));
    for (image, mut f) in images.outer_iter().zip(features.outer_iter_mut()) {
        let ink = image.mapv(|p| f32::from(p) / 255.0);
        let n = ink.len() as f32;
        let half = |a: ndarray::ArrayView2<'_, f32>| a.sum() / n;
        f[0] = ink.sum() / n;
        f[1] = ink.iter().filter(|&&p| p > 0.5).count() as f32 / n;
        f[2] = half(ink.slice(s![..14, ..])) - half(ink.slice(s![14.., ..]));
        f[3] = half(ink.slice(s![.., ..14])) - half(ink.slice(s![.., 14..]));
    }
    features
}

/// 1 for an even digit, 0 for an odd one: `(samples, 1)`.
fn is_even(labels: &ndarray::Array1<u8>) -> Array2<f32> {
    labels.mapv(|d| f32::from(u8::from(d % 2 == 0))).insert_axis(Axis(1))
}

fn run(args: &Args) -> kerust::Result<ExitCode> {
    set_random_seed(args.seed);
    let ((x_train, y_train), (x_test, y_test)) = mnist::load_data()?;
    let n = args.train_samples.unwrap_or(x_train.len_of(Axis(0))).min(x_train.len_of(Axis(0)));
    let (x_train, y_train) = (x_train.slice(s![..n, .., ..]), y_train.slice(s![..n]).to_owned());
    let (f_train, f_test) = (ink_features(x_train.view()), ink_features(x_test.view()));
    let (digit_train, even_train) = (to_categorical(&y_train, 10)?, is_even(&y_train));
    let (digit_test, even_test) = (to_categorical(&y_test, 10)?, is_even(&y_test));

    // Keras:
    //   image = keras.Input(shape=(28, 28), name="image"); features = keras.Input(shape=(4,), name="features")
    //   x = layers.Flatten()(layers.Rescaling(1 / 255)(image))
    //   h = layers.Dense(64, activation="relu")(x); r = layers.Dense(64, activation="relu")(h)
    //   h = layers.Add()([h, r])
    //   f = layers.Dense(8, activation="relu")(features)
    //   z = layers.Concatenate()([h, f])
    //   digit = layers.Dense(10, activation="softmax", name="digit")(z)
    //   even = layers.Dense(1, activation="sigmoid", name="even")(z)
    //   model = keras.Model([image, features], [digit, even])
    let mut g = Graph::new();
    let image = g.input(Input::new([28, 28]).name("image"))?;
    let features = g.input(Input::new([4]).name("features"))?;
    let x = g.apply(Rescaling::new(1.0 / 255.0), image)?;
    let x = g.apply(Flatten::new(), x)?;
    let h = g.apply(Dense::new(64).activation("relu"), x)?;
    let r = g.apply(Dense::new(64).activation("relu"), h)?;
    let h = g.apply(Add::new(), [h, r])?; // the residual block
    let f = g.apply(Dense::new(8).activation("relu"), features)?;
    let z = g.apply(Concatenate::new(-1), [h, f])?;
    let digit = g.apply(Dense::new(10).activation("softmax").name("digit"), z)?;
    let even = g.apply(Dense::new(1).activation("sigmoid").name("even"), z)?;
    let mut model = Model::new(g, [image, features], [digit, even])?;
    model.summary();

    model.compile_with(
        Compile::new("adam")
            .output_loss("digit", "categorical_crossentropy")
            .output_loss("even", "binary_crossentropy")
            .loss_weight("even", 0.5)
            .metrics(["accuracy"]),
    )?;
    let started = std::time::Instant::now();
    let history = model
        .fit(
            arrays!["image" => &x_train, "features" => &f_train],
            arrays!["digit" => &digit_train, "even" => &even_train],
        )
        .batch_size(64)
        .epochs(args.epochs)
        .validation_split(0.1)
        .run()?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{history}");
    println!(
        "fit: {seconds:.2} s, {:.2} s per epoch (training and validation)",
        seconds / args.epochs as f64
    );
    let logs = model.evaluate((&x_test, &f_test), (&digit_test, &even_test))?;
    println!("test: {logs}");
    let (digit_accuracy, even_accuracy) = (logs.get("digit_accuracy"), logs.get("even_accuracy"));
    let (Some(digit_accuracy), Some(even_accuracy)) = (digit_accuracy, even_accuracy) else {
        return Err(kerust::Error::NotReady("the logs have no digit_accuracy or even_accuracy".into()));
    };
    println!("digit accuracy {digit_accuracy:.4}, even accuracy {even_accuracy:.4}");
    if let Some(min) = args.min_digit_accuracy {
        if digit_accuracy < min {
            eprintln!("error: the digit accuracy {digit_accuracy:.4} is below {min}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
