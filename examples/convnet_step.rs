//! What BatchNormalization costs: training steps of Keras' MNIST convnet (the model of `mnist_convnet.rs`)
//! without and with a BatchNormalization after each convolution, timed alternately in one process so that both
//! see the same machine load, on synthetic MNIST-shaped batches (the arithmetic does not depend on the values).
//!
//! ```text
//! cargo run --release --example convnet_step
//! cargo run --release --example convnet_step -- --rounds 15 --steps 4 --batch-size 128 --threads 2
//! ```
//!
//! Prints the median step time of each model over the rounds and their ratio.
mod common;

use std::process::ExitCode;
use std::time::Instant;

use kerust::autodiff::set_num_threads;
use kerust::layers::{BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use kerust::models::Sequential;
use ndarray::{Array2, Array4};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::Flags;

const USAGE: &str = "\
Training steps of the MNIST convnet without and with BatchNormalization, timed alternately.

Usage: cargo run --release --example convnet_step -- [OPTIONS]

Options:
  --rounds N        rounds; each times --steps steps of either model, in alternating order (default: 11)
  --steps N         steps per model and round (default: 4)
  --batch-size N    images per step (default: 128, as in Keras' example)
  --threads N       threads (default: 0, all cores)
  -h, --help        print this help";

struct Args {
    rounds: usize,
    steps: usize,
    batch_size: usize,
    threads: usize,
}

fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut parsed = Args { rounds: 11, steps: 4, batch_size: 128, threads: 0 };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--rounds" => parsed.rounds = flags.number()?,
            "--steps" => parsed.steps = flags.number()?,
            "--batch-size" => parsed.batch_size = flags.number()?,
            "--threads" => parsed.threads = flags.number()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.rounds == 0 || parsed.steps == 0 || parsed.batch_size == 0 {
        return Err("--rounds, --steps and --batch-size must be at least 1".into());
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

/// `mnist_convnet.rs`' model; with `batch_norm`, a BatchNormalization after each convolution.
fn convnet(batch_norm: bool) -> kerust::Result<Sequential> {
    let mut model = Sequential::new();
    model.set_seed(0);
    model.add(Input::new([28, 28, 1]))?;
    for filters in [32, 64] {
        model.add(Conv2D::new(filters, 3).activation("relu"))?;
        if batch_norm {
            model.add(BatchNormalization::new())?;
        }
        model.add(MaxPooling2D::new(2))?;
    }
    model.add(Flatten::new())?;
    model.add(Dropout::new(0.5))?;
    model.add(Dense::new(10).activation("softmax"))?;
    model.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    Ok(model)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(args: &Args) -> kerust::Result<ExitCode> {
    set_num_threads(args.threads);
    let mut rng = StdRng::seed_from_u64(0);
    let x = Array4::from_shape_simple_fn((args.batch_size, 28, 28, 1), || rng.random_range(0.0..1.0f32));
    let y = Array2::from_shape_fn((args.batch_size, 10), |(i, j)| f32::from(i % 10 == j));
    let mut models = [convnet(false)?, convnet(true)?];
    // Warm-up: buffers sized, caches filled.
    for model in &mut models {
        model.train_on_batch(&x, &y)?;
    }
    let mut times = [vec![], vec![]];
    for round in 0..args.rounds {
        // Alternate which model goes first, so that neither always follows the other.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let start = Instant::now();
            for _ in 0..args.steps {
                models[i].train_on_batch(&x, &y)?;
            }
            times[i].push(start.elapsed().as_secs_f64() * 1e3 / args.steps as f64);
        }
    }
    let [plain, bn] = times.map(median);
    println!(
        "batch {}, {} threads, median of {} rounds of {} steps: without BatchNormalization {plain:.1} ms/step, \
         with {bn:.1} ms/step, ratio {:.2}",
        args.batch_size,
        kerust::autodiff::num_threads(),
        args.rounds,
        args.steps,
        bn / plain
    );
    Ok(ExitCode::SUCCESS)
}
