//! The distributed tests over MPI, run by `.ci/run` under `mpirun -np 2` (the same checks as
//! `tests/distributed.rs`, which uses threads, but through the MPI library and separate processes).
//!
//! ```text
//! cargo build --features mpi --example distributed_check
//! mpirun -np 2 target/debug/examples/distributed_check                          # every check passes
//! mpirun -np 2 target/debug/examples/distributed_check --fail-before-training   # rank 1 has bad data
//! mpirun -np 2 target/debug/examples/distributed_check --fail-during-training   # rank 1 fails in epoch 2
//! ```
//!
//! Checks: 2 ranks with batch 32 end with the weights of 1 process with batch 32 (to float rounding), with
//! an uneven last batch, a sample count not divisible by 2, and a last batch of 1 sample; the weights are
//! bit-identical on every rank after every step (SHA-256 compared across ranks), and so is History;
//! BatchNormalization's moving statistics stay identical; synchronized BatchNormalization (SyncBatchNorm,
//! its sums over MPI inside the forward and backward passes) trains as one process does, a last batch of 1
//! sample included, and is refused with overlapped gradient sums; evaluate and predict split their work and
//! give what one process gives; the collectives themselves sum right, small and large (kerust's ring
//! collectives). With a `--fail-*` flag the program must fail, on every rank, with rank 1's message.
use std::process::ExitCode;
use std::sync::Arc;

use kerust::autodiff::Tensor;
use kerust::callbacks::{Callback, History, Logs};
use kerust::distributed::{Communicator, DistributedOptions, Mpi};
use kerust::layers::{BatchNormalization, Dense};
use kerust::models::{Model, Sequential};
use kerust::Error;
use ndarray::Array2;
use sha2::{Digest, Sha256};

type Check = Result<(), Box<dyn std::error::Error>>;

fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 5), |(i, j)| (((i * 7 + j * 3) % 11) as f32 - 5.0) / 5.0);
    let y = Array2::from_shape_fn((n, 3), |(i, j)| f32::from((i * 5 + i / 3) % 3 == j));
    (x, y)
}

/// A layer of 16, BatchNormalization if `batch_norm` says (`Some(synchronized)`), and a softmax of 3.
fn mlp(seed: u64, batch_norm: Option<bool>) -> kerust::Result<Sequential> {
    let mut m = Sequential::new();
    m.set_seed(seed);
    m.add(Dense::new(16).activation("relu").input_shape([5]))?;
    if let Some(synchronized) = batch_norm {
        m.add(BatchNormalization::new().synchronized(synchronized))?;
    }
    m.add(Dense::new(3).activation("softmax"))?;
    m.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    Ok(m)
}

fn digest(weights: &[Tensor]) -> Vec<u8> {
    let mut h = Sha256::new();
    weights.iter().flat_map(|w| w.iter()).for_each(|v| h.update(v.to_le_bytes()));
    h.finalize().to_vec()
}

fn history_bytes(history: &History) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, values) in &history.history {
        out.extend(key.as_bytes());
        values.iter().for_each(|v| out.extend(v.to_bits().to_le_bytes()));
    }
    out
}

/// The digest of the weights after every step; with `fail_at_epoch`, fails on rank 1 at that epoch's end.
#[derive(Default)]
struct Steps {
    digests: Vec<u8>,
    fail_at_epoch: Option<usize>,
}

impl Callback for Steps {
    fn on_train_batch_end(&mut self, model: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        self.digests.extend(digest(&model.get_weights()));
        Ok(())
    }
    fn on_epoch_end(&mut self, model: &mut Model, epoch: usize, _: &Logs) -> kerust::Result<()> {
        let rank = model.communicator().map_or(0, |c| c.rank());
        if self.fail_at_epoch == Some(epoch) && rank == 1 {
            return Err(Error::NotReady(format!(
                "deliberate failure on rank 1 at the end of epoch {}",
                epoch + 1
            )));
        }
        Ok(())
    }
}

/// Fails unless every rank has the same `bytes`.
fn same_on_every_rank(world: &dyn Communicator, what: &str, bytes: &[u8]) -> Check {
    let all = world.all_gather_bytes(bytes);
    match all.iter().position(|b| *b != all[0]) {
        None => Ok(()),
        Some(r) => Err(format!("{what} differ between rank 0 and rank {r}").into()),
    }
}

/// A rank's values for the collective checks: sums of them round differently in different orders.
fn values(rank: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| ((rank * 7919 + i * 104_729) % 1000) as f32 * 0.1 + 1e-3 / (rank + 1) as f32).collect()
}

/// The collectives themselves, small (the MPI library's own algorithms) and large (kerust's ring, for the
/// buffers of a training step): sums right to float rounding, the same bits on every rank.
fn collectives(world: &dyn Communicator) -> Check {
    let size = world.size();
    for len in [10, 100_003, 300_000] {
        let every: Vec<Vec<f32>> = (0..size).map(|r| values(r, len)).collect();
        let want: Vec<f32> = (0..len).map(|i| every.iter().map(|v| v[i]).sum()).collect();
        let mut sum = vec![0.0; len];
        world.all_reduce_sum(&values(world.rank(), len), &mut sum);
        let block = len.div_ceil(size);
        let mut send = values(world.rank(), block * size);
        send[len..].fill(0.0);
        let mut mine = vec![0.0; block];
        world.reduce_scatter_sum(&send, &mut mine);
        let at = world.rank() * block;
        for (what, got, want) in [
            ("allreduce", &sum[..], &want[..]),
            (
                "reduce-scatter",
                &mine[..len.saturating_sub(at).min(block)],
                &want[at.min(len)..(at + block).min(len)],
            ),
        ] {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                if (g - w).abs() > 1e-5 * w.abs() {
                    return Err(format!("{what} of {len} values: [{i}] is {g}, the sum is {w}").into());
                }
            }
        }
        let bytes: Vec<u8> = sum.iter().flat_map(|v| v.to_le_bytes()).collect();
        same_on_every_rank(world, &format!("the allreduce of {len} values"), &bytes)?;
    }
    Ok(())
}

fn close(a: &[Tensor], b: &[Tensor], tolerance: f32, what: &str) -> Check {
    for (a, b) in a.iter().zip(b) {
        for (x, y) in a.iter().zip(b) {
            if (x - y).abs() > tolerance * (1.0 + x.abs()) {
                return Err(format!("{what}: {x} distributed against {y} in one process").into());
            }
        }
    }
    Ok(())
}

fn equivalence(
    world: &Arc<Mpi>,
    n: usize,
    batch_size: usize,
    batch_norm: Option<bool>,
    options: &DistributedOptions,
) -> Check {
    let epochs = 3;
    let (x, y) = data(n);
    let mut single = mlp(3, batch_norm)?;
    let single_history = single.fit(&x, &y).batch_size(batch_size).epochs(epochs).verbose(0).run()?;

    let mut model = mlp(3, batch_norm)?;
    model.distribute_with(world.clone(), options.clone());
    let mut steps = Steps::default();
    let history =
        model.fit(&x, &y).batch_size(batch_size).epochs(epochs).verbose(0).callback_ref(&mut steps).run()?;
    let what = format!("n={n} batch_size={batch_size} batch_norm={batch_norm:?} {options:?}");
    if steps.digests.len() != n.div_ceil(batch_size) * epochs * 32 {
        return Err(format!("{what}: {} steps recorded", steps.digests.len() / 32).into());
    }
    same_on_every_rank(&**world, &format!("{what}: the weights after some step"), &steps.digests)?;
    same_on_every_rank(&**world, &format!("{what}: the histories"), &history_bytes(&history))?;
    if batch_norm != Some(false) {
        // With unsynchronized BatchNormalization each rank normalizes by its own share's statistics (as in
        // Keras and Horovod without synchronized batch normalization): not the same numbers as one process.
        close(&model.get_weights(), &single.get_weights(), 1e-4, &format!("{what}: weights"))?;
        for key in ["loss", "accuracy"] {
            for (d, s) in history[key].iter().zip(&single_history[key]) {
                if (d - s).abs() > 1e-4 {
                    return Err(format!("{what}: {key} {d} distributed, {s} in one process").into());
                }
            }
        }
    }
    if world.rank() == 0 {
        println!(
            "ok: {what}: identical on every rank after each of {} steps, History identical",
            steps.digests.len() / 32
        );
    }
    Ok(())
}

/// Overlapped gradient sums would issue collectives from a second thread beside the layer's own.
fn synchronized_with_overlap_is_refused(world: &Arc<Mpi>) -> Check {
    let (x, y) = data(20);
    let mut model = mlp(5, Some(true))?;
    model.distribute_with(world.clone(), DistributedOptions::new().overlap_gradients(true));
    match model.fit(&x, &y).batch_size(10).verbose(0).run() {
        Err(e) if e.to_string().contains("overlap_gradients") => {
            if world.rank() == 0 {
                println!("ok: synchronized BatchNormalization with overlap_gradients is refused: {e}");
            }
            Ok(())
        }
        Err(e) => Err(format!("synchronized with overlap_gradients: another error: {e}").into()),
        Ok(_) => Err("synchronized BatchNormalization with overlap_gradients trained".into()),
    }
}

fn evaluate_and_predict(world: &Arc<Mpi>) -> Check {
    let (x, y) = data(70);
    let mut single = mlp(4, None)?;
    let logs = single.evaluate_with_batch_size(&x, &y, 16)?;
    let pred = single.predict_with_batch_size(&x, 16)?;
    let mut model = mlp(4, None)?;
    model.distribute(world.clone());
    if model.evaluate_with_batch_size(&x, &y, 16)? != logs {
        return Err("evaluate differs from one process's".into());
    }
    if model.predict_with_batch_size(&x, 16)? != pred {
        return Err("predict differs from one process's".into());
    }
    if world.rank() == 0 {
        println!("ok: evaluate and predict split by batches equal one process's");
    }
    Ok(())
}

fn run(args: &[String], world: &Arc<Mpi>) -> Check {
    if world.size() < 2 {
        return Err("run under mpirun -np 2 (or more)".into());
    }
    if args.iter().any(|a| a == "--fail-before-training") {
        let (x, y) = data(40);
        // Rank 1 has 4 features per sample: every rank must end with an error naming rank 1's problem.
        let x = if world.rank() == 1 { x.slice(ndarray::s![.., ..4]).to_owned() } else { x };
        let mut model = mlp(1, None)?;
        model.distribute(world.clone());
        model.fit(&x, &y).batch_size(8).verbose(0).run()?;
        return Err("fit succeeded with bad data on rank 1".into());
    }
    if args.iter().any(|a| a == "--fail-during-training") {
        let (x, y) = data(4000);
        let mut model = mlp(1, None)?;
        model.distribute(world.clone());
        let mut steps = Steps { fail_at_epoch: Some(1), ..Steps::default() };
        // Every rank, not only rank 1, returns the error naming rank 1 and its message, and the job ends
        // cleanly (no MPI_Abort): the status word of the step's collectives carried the failure.
        return match model.fit(&x, &y).batch_size(8).epochs(1000).verbose(0).callback_ref(&mut steps).run() {
            Ok(_) => Err("fit succeeded although rank 1 failed".into()),
            Err(e @ Error::Distributed { .. }) if e.to_string().contains("rank 1 of 2 failed") => {
                eprintln!("rank {}: fit returned the failure of rank 1", world.rank());
                Err(e.into())
            }
            Err(e) => Err(format!("fit failed with another error than rank 1's: {e}").into()),
        };
    }
    collectives(&**world)?;
    // The whole update (the default), the sharded one (MPI's reduce-scatter and allgather), gradient buckets
    // summed by a second thread during the backward pass (buckets of 64 values: 3 per step), and both: the
    // buckets reduce-scattered by that thread, then one allgather per bucket.
    let options = [
        DistributedOptions::new(),
        DistributedOptions::new().shard_optimizer(true),
        DistributedOptions::new().overlap_gradients(true).bucket_size(256),
        DistributedOptions::new().shard_optimizer(true).overlap_gradients(true).bucket_size(256),
    ];
    for options in &options {
        for (n, batch_size) in [(64, 32), (77, 32), (33, 32)] {
            equivalence(world, n, batch_size, None, options)?;
        }
        equivalence(world, 50, 16, Some(false), options)?;
        if !options.overlaps_gradients() {
            // 33 = 32 + 1: rank 1 runs the last step on a placeholder, to join the layer's sums.
            for (n, batch_size) in [(50, 16), (33, 32)] {
                equivalence(world, n, batch_size, Some(true), options)?;
            }
        }
    }
    synchronized_with_overlap_is_refused(world)?;
    evaluate_and_predict(world)?;
    println!("rank {}: all distributed checks passed", world.rank());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let world = match Mpi::init() {
        Ok(world) => world,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&args, &world);
    if let Err(e) = &result {
        eprintln!("error: {e}");
    }
    // mpirun ends the whole job when the first rank exits with a failure: wait until every rank has printed
    // its outcome (one more collective, as every rank gets here), so the job's log has each rank's message.
    world.all_gather_bytes(&[]);
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
