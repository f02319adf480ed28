//! A model trained in Python's Keras, evaluated, trained on and saved back in kerust: the MNIST convnet with
//! BatchNormalization that `tests/fixtures/keras_files.py` trained one epoch (on 2,048 images) and saved as
//! `tests/fixtures/keras_files/mnist_convnet.keras`.
//!
//! ```text
//! cargo run --release --example keras_files [-- --limit 60000 --out target/kerust-out]
//! ```
//!
//! In Python the same steps are `keras.saving.load_model("mnist_convnet.keras")`, `model.evaluate(x_test,
//! y_test)`, `model.fit(x_train, y_train, epochs=1)`, `model.save("mnist_convnet.keras")`; the file this writes
//! loads back in Python with `keras.saving.load_model`.
//!
//! MNIST is read from `../shared/data/mnist` beside the repository when it is there, else from
//! `$KERUST_HOME/datasets/mnist/` (downloaded if missing), as the other MNIST examples do.
mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use kerust::datasets::mnist;
use kerust::models::load_model;
use kerust::ndarray::{s, Axis};
use kerust::utils::to_categorical;

const USAGE: &str = "Usage: keras_files [--limit N] [--out DIR]
  --limit N   train the extra epoch on the first N training images (default 60000)
  --out DIR   where to write mnist_convnet.keras (default target/kerust-out)";

struct Args {
    limit: usize,
    out: PathBuf,
}

fn main() -> ExitCode {
    common::main_with(
        USAGE,
        |mut flags| {
            let mut args = Args { limit: 60_000, out: common::default_out() };
            while let Some(flag) = flags.next_flag() {
                match flag.as_str() {
                    "--limit" => args.limit = flags.number()?,
                    "--out" => args.out = PathBuf::from(flags.value()?),
                    "-h" | "--help" => return Ok(None),
                    other => return Err(format!("unknown flag {other}")),
                }
            }
            Ok(Some(args))
        },
        run,
    )
}

fn run(args: &Args) -> kerust::Result<ExitCode> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let keras_file = root.join("tests/fixtures/keras_files/mnist_convnet.keras");
    let mut model = load_model(&keras_file)?;
    model.summary();
    let optimizer = model.optimizer().map(|o| format!("{} at step {}", o.name(), o.iterations()));
    println!("loaded {} (optimizer {})", keras_file.display(), optimizer.unwrap_or_else(|| "none".into()));

    let shared = root.join("../shared/data/mnist");
    let ((x_train, y_train), (x_test, y_test)) =
        if shared.is_dir() { mnist::load_data_from(&shared)? } else { mnist::load_data()? };
    let limit = args.limit.min(x_train.len_of(Axis(0)));
    let x_train = x_train.slice(s![..limit, .., ..]).mapv(|v| f32::from(v) / 255.0).insert_axis(Axis(3));
    let y_train = to_categorical(&y_train.slice(s![..limit]).to_owned(), 10)?;
    let x_test = x_test.mapv(|v| f32::from(v) / 255.0).insert_axis(Axis(3));
    let y_test = to_categorical(&y_test, 10)?;

    let score = model.evaluate(&x_test, &y_test)?;
    println!(
        "Keras-trained: test loss {:.4}, test accuracy {:.4}",
        score.get("loss").unwrap_or(f32::NAN),
        score.get("accuracy").unwrap_or(f32::NAN)
    );
    model.fit(&x_train, &y_train).batch_size(64).epochs(1).run()?;
    let score = model.evaluate(&x_test, &y_test)?;
    println!(
        "after one more epoch in kerust: test loss {:.4}, test accuracy {:.4}",
        score.get("loss").unwrap_or(f32::NAN),
        score.get("accuracy").unwrap_or(f32::NAN)
    );

    std::fs::create_dir_all(&args.out).map_err(|e| kerust::Error::io(&args.out, e))?;
    let saved = args.out.join("mnist_convnet.keras");
    model.save(&saved)?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "saved {} ({} bytes; the file Keras wrote: {} bytes)",
        saved.display(),
        size(&saved),
        size(&keras_file)
    );
    Ok(ExitCode::SUCCESS)
}
