//! Data-parallel training of the W2 MLP (Dense 512 relu, 256 relu, 10 softmax; Adam; batch 128), or with
//! `--model convnet` of Keras' MNIST convnet (34,826 parameters), on MNIST over MPI: the same program runs as one process or as N ranks under `mpirun`, each rank computing the gradients
//! of its share of every batch. One line switches it on: `model.distribute(world)`.
//!
//! ```text
//! cargo build --release --features mpi --example mnist_distributed
//! target/release/examples/mnist_distributed --epochs 2 --threads 1            # one process
//! mpirun -np 2 target/release/examples/mnist_distributed --epochs 2 --threads 1   # two ranks
//! ```
//!
//! As root, Open MPI also wants `--allow-run-as-root` (or `OMPI_ALLOW_RUN_AS_ROOT=1
//! OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`), and `--oversubscribe` when there are more ranks than cores.
//!
//! Rank 0 prints; every rank reports its time per step in the allreduce, the bytes per step and the share of
//! the epoch time spent in collectives on standard error with `--stats`. MNIST is read from `$KERUST_HOME/datasets/mnist/` (downloaded there if missing).
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use kerust::callbacks::{Callback, Logs};
use kerust::distributed::{reset_step_stats, shard_rows, step_stats, Communicator, DistributedOptions, Mpi};
use kerust::layers::{Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use kerust::models::{Model, Sequential};
use ndarray::{s, Axis};

const USAGE: &str = "\
W2 on MNIST, data-parallel over MPI (run under mpirun -np N, or alone).

Usage: [mpirun -np N] mnist_distributed [OPTIONS]

Options:
  --model NAME         w2 (default) or convnet (Keras' simple MNIST convnet)
  --epochs N           epochs (default: 2)
  --batch-size N       global batch size, split across ranks (default: 128)
  --threads N          threads for large products per rank (default: all cores)
  --limit N            train on the first N training images only (default: all 60,000)
  --seed N             seed (default: 1)
  --no-validation      skip evaluating the test set after each epoch
  --shard-data         each rank keeps only its block of the training and test images (sharded data)
  --shard-optimizer    each rank updates its shard of the weights, then the ranks gather them (ZeRO-1)
  --overlap            sum gradient buckets while the backward pass goes on (with --shard-optimizer:
                       reduce-scatter them)
  --bucket-size BYTES  the buckets' size for --overlap (default: 4 MiB)
  --stats              print each rank's allreduce time and bytes per step (after the first epoch, or in it
                       when there is one) and its share of the epoch time
  --min-test-accuracy X  exit with an error if the final test accuracy is below X
  -h, --help           print this help";

/// Times each epoch.
#[derive(Default)]
struct EpochTimer {
    start: Option<Instant>,
    seconds: Vec<f64>,
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _: &mut Model, epoch: usize) -> kerust::Result<()> {
        // The first epoch warms up (buffers, page faults): the collectives' counts start after it.
        if epoch == 1 {
            reset_step_stats();
        }
        self.start = Some(Instant::now());
        Ok(())
    }
    fn on_epoch_end(&mut self, _: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        self.seconds.extend(self.start.map(|s| s.elapsed().as_secs_f64()));
        Ok(())
    }
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}")),
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = flag(args, "--epochs")?.unwrap_or(2usize);
    let batch_size = flag(args, "--batch-size")?.unwrap_or(128usize);
    let limit: Option<usize> = flag(args, "--limit")?;
    let seed = flag(args, "--seed")?.unwrap_or(1u64);
    let min_accuracy: Option<f32> = flag(args, "--min-test-accuracy")?;
    if let Some(threads) = flag(args, "--threads")? {
        kerust::autodiff::set_num_threads(threads);
    }

    let convnet = match flag::<String>(args, "--model")?.as_deref() {
        None | Some("w2") => false,
        Some("convnet") => true,
        Some(other) => return Err(format!("unknown --model {other}: w2 or convnet\n\n{USAGE}").into()),
    };
    let world = Mpi::init()?;
    let chief = world.rank() == 0;

    let ((x_train, y_train), (x_test, y_test)) = kerust::datasets::mnist::load_data()?;
    // (n, 784) for the MLP, (n, 28, 28, 1) for the convnet.
    let flat = |x: ndarray::Array3<u8>| {
        let n = x.len_of(Axis(0));
        let shape: &[usize] = if convnet { &[n, 28, 28, 1] } else { &[n, 784] };
        x.into_shape_with_order(shape).expect("28 x 28 images").mapv(|p| f32::from(p) / 255.0)
    };
    let (mut x_train, mut y_train) = (flat(x_train), kerust::utils::to_categorical(&y_train, 10)?);
    if let Some(n) = limit {
        let n = n.min(y_train.nrows());
        x_train = x_train.slice_axis(Axis(0), (..n).into()).to_owned();
        y_train = y_train.slice(s![..n, ..]).to_owned();
    }
    let (mut x_test, mut y_test) = (flat(x_test), kerust::utils::to_categorical(&y_test, 10)?);
    let n_train = y_train.nrows();
    let shard_data = args.iter().any(|a| a == "--shard-data");
    if shard_data {
        // As a rank that reads only its part of a data set too big for one machine.
        x_train = shard_rows(x_train.view(), &*world)?.to_owned();
        y_train = shard_rows(y_train.view(), &*world)?.to_owned();
        x_test = shard_rows(x_test.view(), &*world)?.to_owned();
        y_test = shard_rows(y_test.view(), &*world)?.to_owned();
    }

    let mut model = Sequential::new();
    model.set_seed(seed);
    if convnet {
        model.add(Input::new([28, 28, 1]))?;
        model.add(Conv2D::new(32, (3, 3)).activation("relu"))?;
        model.add(MaxPooling2D::new((2, 2)))?;
        model.add(Conv2D::new(64, (3, 3)).activation("relu"))?;
        model.add(MaxPooling2D::new((2, 2)))?;
        model.add(Flatten::new())?;
        model.add(Dropout::new(0.5))?;
    } else {
        model.add(Dense::new(512).activation("relu").input_shape([784]))?;
        model.add(Dense::new(256).activation("relu"))?;
    }
    model.add(Dense::new(10).activation("softmax"))?;
    model.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    // The one line: from here on fit, evaluate and predict split their work across the ranks.
    let has = |name: &str| args.iter().any(|a| a == name);
    let mut options = DistributedOptions::new()
        .shard_data(shard_data)
        .shard_optimizer(has("--shard-optimizer"))
        .overlap_gradients(has("--overlap"));
    if let Some(bytes) = flag(args, "--bucket-size")? {
        options = options.bucket_size(bytes);
    }
    model.distribute_with(world.clone(), options);
    if chief {
        println!(
            "ranks: {}, threads per rank: {}, global batch {batch_size} ({} samples per rank), {} training images",
            world.size(),
            kerust::autodiff::num_threads(),
            batch_size.div_ceil(world.size()),
            n_train
        );
    }

    let mut timer = EpochTimer::default();
    let mut fit = model.fit(&x_train, &y_train).batch_size(batch_size).epochs(epochs).verbose(2);
    if !args.iter().any(|a| a == "--no-validation") {
        fit = fit.validation_data(&x_test, &y_test);
    }
    let history = fit.callback_ref(&mut timer).run()?;
    let stats = step_stats();
    let logs = model.evaluate_with_batch_size(&x_test, &y_test, 256)?;
    let accuracy = logs.get("accuracy").unwrap_or(f32::NAN);

    let steps = n_train.div_ceil(batch_size);
    let mut sorted = timer.seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    if chief {
        println!(
            "epochs (s): {}; median {median:.3} s/epoch, {:.2} ms/step",
            timer.seconds.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(" "),
            median / steps as f64 * 1e3
        );
        println!(
            "final loss {:.4} accuracy {:.4}; test loss {:.4} test accuracy {accuracy:.4}",
            history.last("loss").unwrap_or(f32::NAN),
            history.last("accuracy").unwrap_or(f32::NAN),
            logs.get("loss").unwrap_or(f32::NAN),
        );
    }
    if args.iter().any(|a| a == "--stats") && stats.calls > 0 {
        // The counts start after epoch 1 when there are more (EpochTimer resets them), so the share is of the
        // epochs they cover; with one epoch it covers that epoch, warm-up included.
        let (counted, timed) = match timer.seconds.split_first() {
            Some((_, rest)) if !rest.is_empty() => ("after epoch 1", rest.iter().sum::<f64>()),
            _ => ("in epoch 1", timer.seconds.iter().sum::<f64>()),
        };
        let line = format!(
            "rank {}: {} collectives {counted}, {:.3} ms and {:.0} bytes each (mean); {:.1}% of the epoch time in collectives; {:.1}% of their time hidden behind the backward pass\n",
            world.rank(),
            stats.calls,
            stats.seconds / stats.calls as f64 * 1e3,
            stats.bytes as f64 / stats.calls as f64,
            100.0 * stats.seconds / timed,
            100.0 * (1.0 - stats.waited / stats.seconds.max(f64::MIN_POSITIVE)).max(0.0)
        );
        // One write: eprintln! writes a line in pieces, which mpirun interleaves with the other ranks' lines.
        std::io::stderr().write_all(line.as_bytes())?;
    }
    if let Some(min) = min_accuracy {
        if accuracy.is_nan() || accuracy < min {
            return Err(format!("test accuracy {accuracy:.4} is below --min-test-accuracy {min}").into());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
