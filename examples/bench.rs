//! Epoch-level benchmark of the two reference workloads on MNIST (from the cache, see `KERUST_HOME`), or on
//! synthetic data of the same shapes when MNIST is not available (said in the output).
//!
//! `cargo run --release --example bench [-- --w1-epochs 10 --w2-epochs 5 --threads N --seed 1]`
//!
//! - W1, the tutorial: Dense(25, sigmoid) -> Dense(10, softmax), SGD 0.01, batch 32.
//! - W2, bigger: Dense(512, relu) -> Dense(256, relu) -> Dense(10, softmax), Adam 0.001, batch 128.
//!
//! Each epoch trains on 60,000 samples, shuffled, and evaluates the 10,000 test samples, as in the reference
//! figures. Then `predict` on the 10,000 test samples with W2 (median of 7).
use std::time::Instant;

use kerust::callbacks::{Callback, Logs};
use kerust::layers::Dense;
use kerust::models::{Model, Sequential};
use kerust::Result;
use ndarray::{Array2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Times each epoch (training and validation).
#[derive(Default)]
struct EpochTimer {
    start: Option<Instant>,
    seconds: Vec<f64>,
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _: &mut Model, _: usize) -> Result<()> {
        self.start = Some(Instant::now());
        Ok(())
    }
    fn on_epoch_end(&mut self, _: &mut Model, _: usize, _: &Logs) -> Result<()> {
        self.seconds.extend(self.start.map(|s| s.elapsed().as_secs_f64()));
        Ok(())
    }
}

type Data = (Array2<f32>, Array2<f32>, Array2<f32>, Array2<f32>);

fn mnist() -> Result<Data> {
    let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::mnist::load_data()?;
    let flat = |x: ndarray::Array3<u8>| {
        let n = x.len_of(Axis(0));
        x.into_shape_with_order((n, 784)).expect("28 x 28 images").mapv(|p| f32::from(p) / 255.0)
    };
    Ok((
        flat(x_train),
        kerust::utils::to_categorical(&y_train, 10)?,
        flat(x_test),
        kerust::utils::to_categorical(&y_test, 10)?,
    ))
}

/// Random pixels and labels of MNIST's shapes: times are right, accuracies meaningless.
fn synthetic() -> Data {
    let mut rng = StdRng::seed_from_u64(0);
    let mut make = |n: usize| {
        let x = Array2::from_shape_simple_fn((n, 784), || rng.random_range(0.0..1.0));
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let y = Array2::from_shape_fn((n, 10), |(i, j)| f32::from(labels[i] == j));
        (x, y)
    };
    let (a, b) = make(60_000);
    let (c, d) = make(10_000);
    (a, b, c, d)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(name: &str, mut model: Sequential, batch: usize, epochs: usize, data: &Data) -> Result<Sequential> {
    if epochs == 0 {
        return Ok(model);
    }
    let (x, y, xt, yt) = data;
    let mut timer = EpochTimer::default();
    let history = model
        .fit(x, y)
        .batch_size(batch)
        .epochs(epochs)
        .verbose(0)
        .validation_data(xt, yt)
        .callback_ref(&mut timer)
        .run()?;
    let steps = x.len_of(Axis(0)).div_ceil(batch);
    let per_epoch = median(timer.seconds.clone());
    println!(
        "{name}: {epochs} epochs, median {per_epoch:.3} s/epoch (train + validation), {:.0} steps/s, epochs: {}",
        steps as f64 / per_epoch,
        timer.seconds.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{name}: final loss {:.4} accuracy {:.4} val_loss {:.4} val_accuracy {:.4}",
        history.last("loss").unwrap_or(f32::NAN),
        history.last("accuracy").unwrap_or(f32::NAN),
        history.last("val_loss").unwrap_or(f32::NAN),
        history.last("val_accuracy").unwrap_or(f32::NAN)
    );
    Ok(model)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (w1_epochs, w2_epochs) = (flag("--w1-epochs", 10), flag("--w2-epochs", 5));
    if let Some(threads) = args.iter().position(|a| a == "--threads").map(|_| flag("--threads", 0)) {
        kerust::autodiff::set_num_threads(threads);
    }
    println!("threads for large products: {}", kerust::autodiff::num_threads());

    let data = match mnist() {
        Ok(d) => {
            println!("data: MNIST from the cache");
            d
        }
        Err(e) => {
            println!("data: SYNTHETIC (MNIST not available: {e}); accuracies are meaningless");
            synthetic()
        }
    };

    kerust::utils::set_random_seed(flag("--seed", 1) as u64);
    let mut w1 = Sequential::new();
    w1.add(Dense::new(25).activation("sigmoid").input_shape([784]))?;
    w1.add(Dense::new(10).activation("softmax"))?;
    w1.compile("categorical_crossentropy", "sgd", ["accuracy"])?;
    run("W1", w1, 32, w1_epochs, &data)?;

    let mut w2 = Sequential::new();
    w2.add(Dense::new(512).activation("relu").input_shape([784]))?;
    w2.add(Dense::new(256).activation("relu"))?;
    w2.add(Dense::new(10).activation("softmax"))?;
    w2.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    let w2 = run("W2", w2, 128, w2_epochs, &data)?;

    let x_test = &data.2;
    let times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            w2.predict(x_test).map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_>>()?;
    println!("W2 predict on 10,000: median {:.1} ms", median(times) * 1e3);
    Ok(())
}
