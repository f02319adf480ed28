//! The Keras MNIST tutorial, step by step, in Rust: load the data, look at a digit, prepare it, build the
//! 19,885-parameter model, train it with the progress bar, plot its learning curves, then build, train and
//! compare a bigger model.
//!
//! ```text
//! cargo run --release --example mnist
//! cargo run --release --example mnist -- --out plots --epochs 10 --seed 1 --min-val-accuracy 0.91
//! ```
//!
//! MNIST is read from `$KERUST_HOME/datasets/mnist/` (default `~/.kerust`) and downloaded there if missing.
//! Pictures are written to `--out` (default: `target/kerust-out/` of the repository, which git ignores).
//! Run with `--help` for every flag.
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kerust::callbacks::{Callback, History};
use kerust::datasets::{mnist, Cache};
use kerust::layers::{Dense, Dropout};
use kerust::models::{Model, Sequential};
use kerust::optimizers::{Adam, SGD};
use kerust::utils::{set_random_seed, to_categorical};
use ndarray::{Array2, ArrayView2};

use common::Flags;

const USAGE: &str = "\
The Keras MNIST tutorial in Rust.

Usage: cargo run --release --example mnist -- [OPTIONS]

Options:
  --out DIR                 where to write the pictures (default: target/kerust-out/ of the repository)
  --epochs N                epochs of the tutorial model (default: 10)
  --bigger-epochs N         epochs of the bigger model (default: 5)
  --seed N                  seed for initialization, dropout and shuffling (default: 1)
  --min-val-accuracy X      exit with an error if the tutorial model's final val_accuracy is below X
  --skip-bigger             stop after the tutorial model
  -h, --help                print this help

Environment: KERUST_HOME (dataset cache, default ~/.kerust), KERUST_DATASETS_MIRROR (download mirror).";

/// The command line.
struct Args {
    out: PathBuf,
    epochs: usize,
    bigger_epochs: usize,
    seed: u64,
    min_val_accuracy: Option<f32>,
    skip_bigger: bool,
}

/// Parses the flags; `Ok(None)` for `--help`.
fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        out: common::default_out(),
        epochs: 10,
        bigger_epochs: 5,
        seed: 1,
        min_val_accuracy: None,
        skip_bigger: false,
    };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--out" => parsed.out = PathBuf::from(flags.value()?),
            "--epochs" => parsed.epochs = flags.number()?,
            "--bigger-epochs" => parsed.bigger_epochs = flags.number()?,
            "--seed" => parsed.seed = flags.number()?,
            "--min-val-accuracy" => parsed.min_val_accuracy = Some(flags.number()?),
            "--skip-bigger" => parsed.skip_bigger = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.epochs == 0 || parsed.bigger_epochs == 0 {
        return Err("--epochs and --bigger-epochs must be at least 1".into());
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn run(args: &Args) -> kerust::Result<ExitCode> {
    set_random_seed(args.seed);
    std::fs::create_dir_all(&args.out).map_err(|e| kerust::Error::io(&args.out, e))?;

    section("1. Load MNIST");
    let cache_dir = Cache::from_env().map(|c| c.dataset_dir("mnist"));
    let start = Instant::now();
    let ((x_train, y_train), (x_test, y_test)) = mnist::load_data()?;
    if let Ok(dir) = cache_dir {
        println!("mnist::load_data() from {} in {:.2} s", dir.display(), start.elapsed().as_secs_f64());
    }
    println!("x_train: {:?} u8, y_train: {:?}", x_train.shape(), y_train.shape());
    println!("x_test:  {:?} u8, y_test:  {:?}", x_test.shape(), y_test.shape());

    section("2. The first training image");
    println!("Label: {}", y_train[0]);
    let first = x_train.index_axis(ndarray::Axis(0), 0);
    print!("{}", ascii_digit(first));
    let digit_png = args.out.join("digit.png");
    save_digit_png(first, &digit_png)?;
    println!("saved {}", digit_png.display());

    section("3. Prepare the data");
    let (train_count, test_count) = (x_train.shape()[0], x_test.shape()[0]);
    let x_train = flatten_scaled(x_train.into_shape_with_order((train_count, 784)))?;
    let x_test = flatten_scaled(x_test.into_shape_with_order((test_count, 784)))?;
    let y_train_labels = y_train.clone();
    let y_train = to_categorical(&y_train, 10)?;
    let y_test = to_categorical(&y_test, 10)?;
    println!("x_train: {:?} f32 in [0, 1], x_test: {:?}", x_train.shape(), x_test.shape());
    println!("y_train: {:?} one-hot, y_test: {:?}", y_train.shape(), y_test.shape());
    println!("label {} -> {}", y_train_labels[0], y_train.row(0));

    section("4. The model");
    let mut model = Sequential::new();
    model.add(Dense::new(25).activation("sigmoid").input_shape([784]))?;
    model.add(Dense::new(10).activation("softmax"))?;
    model.summary();

    section("5. Compile and train");
    model.compile("categorical_crossentropy", SGD::new(), ["accuracy"])?;
    println!(
        "compile(loss=categorical_crossentropy, optimizer=SGD(learning_rate=0.01), metrics=[accuracy])\n\
         fit(batch_size=32, epochs={}, verbose=1, validation_data=(x_test, y_test))",
        args.epochs
    );
    let mut timer = EpochTimer::default();
    let history = model
        .fit(&x_train, &y_train)
        .batch_size(32)
        .epochs(args.epochs)
        .verbose(1)
        .validation_data(&x_test, &y_test)
        .callback_ref(&mut timer)
        .run()?;
    let keys: Vec<&str> = history.keys().collect();
    println!("history.history.keys(): {keys:?}");
    println!("mean epoch time: {:.2} s (training and validation)", timer.mean());

    section("6. Learning curves");
    plot_curves(&history, &args.out, "tutorial")?;

    section("7. Over- or underfitting?");
    println!("{}", diagnose(&history));

    let tutorial = Outcome::new("tutorial: Dense(25, sigmoid), SGD", &model, &history, &timer);
    if let Some(min) = args.min_val_accuracy {
        if tutorial.val_accuracy.is_nan() || tutorial.val_accuracy < min {
            eprintln!(
                "error: the tutorial model's final val_accuracy {:.4} is below --min-val-accuracy {min}",
                tutorial.val_accuracy
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("final val_accuracy {:.4} >= --min-val-accuracy {min}: ok", tutorial.val_accuracy);
    }
    if args.skip_bigger {
        return Ok(ExitCode::SUCCESS);
    }

    section("8. A bigger model");
    let mut bigger = Sequential::new().with_name("bigger");
    bigger.add(Dense::new(512).activation("relu").input_shape([784]))?;
    bigger.add(Dense::new(256).activation("relu"))?;
    bigger.add(Dropout::new(0.2))?;
    bigger.add(Dense::new(10).activation("softmax"))?;
    bigger.summary();
    bigger.compile("categorical_crossentropy", Adam::new(), ["accuracy"])?;
    println!(
        "compile(loss=categorical_crossentropy, optimizer=Adam(learning_rate=0.001), metrics=[accuracy])\n\
         fit(batch_size=128, epochs={}, verbose=1, validation_data=(x_test, y_test))",
        args.bigger_epochs
    );
    let mut bigger_timer = EpochTimer::default();
    let bigger_history = bigger
        .fit(&x_train, &y_train)
        .batch_size(128)
        .epochs(args.bigger_epochs)
        .verbose(1)
        .validation_data(&x_test, &y_test)
        .callback_ref(&mut bigger_timer)
        .run()?;
    plot_curves(&bigger_history, &args.out, "bigger")?;
    println!("{}", diagnose(&bigger_history));

    section("9. Compare");
    let bigger = Outcome::new("bigger: 512-256 relu, dropout, Adam", &bigger, &bigger_history, &bigger_timer);
    println!(
        "{:<36} {:>8} {:>7} {:>8} {:>9} {:>13}",
        "model", "params", "epochs", "s/epoch", "accuracy", "val_accuracy"
    );
    for o in [&tutorial, &bigger] {
        println!(
            "{:<36} {:>8} {:>7} {:>8.2} {:>9.4} {:>13.4}",
            o.name,
            thousands(o.params),
            o.epochs,
            o.seconds_per_epoch,
            o.accuracy,
            o.val_accuracy
        );
    }
    let gain = bigger.val_accuracy - tutorial.val_accuracy;
    println!(
        "The bigger model's final val_accuracy is {:.2} percentage points {} the tutorial model's.",
        gain.abs() * 100.0,
        if gain >= 0.0 { "above" } else { "below" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `19885` as `19,885`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x.reshape(n, 784).astype("float32") / 255`.
fn flatten_scaled(flat: Result<Array2<u8>, ndarray::ShapeError>) -> kerust::Result<Array2<f32>> {
    let flat =
        flat.map_err(|e| kerust::Error::shape("reshape to (n, 784)", "28x28 images", e.to_string()))?;
    Ok(flat.mapv(|v| f32::from(v) / 255.0))
}

/// The image in the terminal: one shade character per pixel by intensity, doubled across so it keeps its
/// proportions.
fn ascii_digit(image: ArrayView2<u8>) -> String {
    const SHADES: &[u8] = b" .:-=+*#%@";
    let border = format!("+{}+\n", "-".repeat(image.ncols() * 2));
    let mut out = border.clone();
    for row in image.rows() {
        out.push('|');
        for &v in row {
            let c = SHADES[usize::from(v) * SHADES.len() / 256] as char;
            out.push(c);
            out.push(c);
        }
        out.push_str("|\n");
    }
    out + &border
}

/// The image as a grayscale PNG, 10 screen pixels per image pixel (white digit on black, as
/// `plt.imshow(x_train[0], cmap="gray")` shows it).
fn save_digit_png(image: ArrayView2<u8>, path: &Path) -> kerust::Result<()> {
    const SCALE: usize = 10;
    let (rows, cols) = image.dim();
    let big =
        ndarray::Array2::from_shape_fn((rows * SCALE, cols * SCALE), |(r, c)| image[[r / SCALE, c / SCALE]]);
    kerust::utils::save_img(path, &big)
}

/// Accuracy and loss curves, each as PNG and SVG.
fn plot_curves(history: &History, out: &Path, prefix: &str) -> kerust::Result<()> {
    for metric in ["accuracy", "loss"] {
        let val = format!("val_{metric}");
        for ext in ["png", "svg"] {
            let path = out.join(format!("{prefix}_{metric}.{ext}"));
            history.plot(&path, &[metric, &val])?;
            println!("saved {}", path.display());
        }
    }
    Ok(())
}

/// Reads the curves the way the tutorial does: a training accuracy well above the validation accuracy
/// means overfitting; close curves at a modest accuracy that still rises mean underfitting.
fn diagnose(history: &History) -> String {
    let (acc, val) = (&history["accuracy"], &history["val_accuracy"]);
    let n = acc.len();
    let gap = acc[n - 1] - val[n - 1];
    let best = val.iter().enumerate().fold(0, |b, (i, &v)| if v > val[b] { i } else { b });
    let rising = n >= 2 && acc[n - 1] - acc[n - 2] > 0.001;
    let numbers = format!(
        "final accuracy {:.4}, val_accuracy {:.4}: train - val gap {:+.2} points; best val_accuracy at epoch {}/{n}",
        acc[n - 1],
        val[n - 1],
        gap * 100.0,
        best + 1
    );
    let fell = val[best] - val[n - 1] > 0.002;
    let verdict = if gap > 0.02 || (gap > 0.005 && fell) {
        "Overfitting: the model fits the training data better than data it has not seen. More data, dropout or \
         fewer epochs would help."
    } else if acc[n - 1] < 0.97 {
        if rising {
            "Underfitting: training and validation curves stay close and the training accuracy is modest and \
             still rising. The model is too small (or trained too briefly) to fit the data: more capacity or \
             more epochs should help."
        } else {
            "Underfitting: training and validation curves stay close at a modest accuracy that has levelled \
             off: the model lacks capacity."
        }
    } else {
        "A good fit: high accuracy with training and validation curves close together."
    };
    let mut out = format!("{numbers}\n{verdict}");
    if let Some(val_loss) = history.get("val_loss") {
        let lowest = val_loss.iter().enumerate().fold(0, |b, (i, &v)| if v < val_loss[b] { i } else { b });
        if lowest + 1 < val_loss.len() {
            out += &format!(
                "\nval_loss was lowest at epoch {}/{} and has risen since: the first sign of overfitting, a point \
                 to stop training (see callbacks::EarlyStopping).",
                lowest + 1,
                val_loss.len()
            );
        }
    }
    out
}

/// Seconds per epoch (training plus validation), measured between `fit`'s epoch hooks.
#[derive(Default)]
struct EpochTimer {
    started: Option<Instant>,
    seconds: Vec<f64>,
}

impl EpochTimer {
    fn mean(&self) -> f64 {
        self.seconds.iter().sum::<f64>() / self.seconds.len().max(1) as f64
    }
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _: &mut Model, _: usize) -> kerust::Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Model, _: usize, _: &kerust::callbacks::Logs) -> kerust::Result<()> {
        if let Some(start) = self.started.take() {
            self.seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// One row of the comparison.
struct Outcome {
    name: &'static str,
    params: usize,
    epochs: usize,
    seconds_per_epoch: f64,
    accuracy: f32,
    val_accuracy: f32,
}

impl Outcome {
    fn new(name: &'static str, model: &Model, history: &History, timer: &EpochTimer) -> Self {
        Outcome {
            name,
            params: model.count_params(),
            epochs: history.epoch.len(),
            seconds_per_epoch: timer.mean(),
            accuracy: history.last("accuracy").unwrap_or(f32::NAN),
            val_accuracy: history.last("val_accuracy").unwrap_or(f32::NAN),
        }
    }
}
