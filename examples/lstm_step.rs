//! What fusing a recurrent layer buys: the forward and backward pass of an LSTM over a whole sequence as one
//! node ([`Var::recurrent`]: the input projection one product, one product per step for all gates, BPTT in the
//! kernel), against the same cell recorded from the engine's other ops, one node per gate per step, timed
//! alternately in one process so that both see the same machine load.
//!
//! ```text
//! cargo run --release --example lstm_step
//! cargo run --release --example lstm_step -- --rounds 15 --batch-size 32 --time 200 --features 64 --units 64
//! ```
//!
//! Prints the median time of a forward+backward pass of each over the rounds, and their ratio.
mod common;

use std::process::ExitCode;
use std::time::Instant;

use kerust::autodiff::{set_num_threads, Gradients, ParamStore, RecurrentOptions, Tape, Var, Workspace};
use kerust::device::RecurrentCell;
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::Flags;

const USAGE: &str = "\
An LSTM's forward and backward pass, fused against composed from per-gate ops, timed alternately.

Usage: cargo run --release --example lstm_step -- [OPTIONS]

Options:
  --rounds N        rounds; each times one pass of either, in alternating order (default: 11)
  --batch-size N    sequences per batch (default: 32)
  --time N          steps per sequence (default: 200)
  --features N      features per step (default: 64)
  --units N         units (default: 64)
  --threads N       threads (default: 0, all cores)
  -h, --help        print this help";

struct Args {
    rounds: usize,
    batch: usize,
    time: usize,
    features: usize,
    units: usize,
    threads: usize,
}

fn parse_args(mut flags: Flags<impl Iterator<Item = String>>) -> Result<Option<Args>, String> {
    let mut a = Args { rounds: 11, batch: 32, time: 200, features: 64, units: 64, threads: 0 };
    while let Some(flag) = flags.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--rounds" => a.rounds = flags.number()?,
            "--batch-size" => a.batch = flags.number()?,
            "--time" => a.time = flags.number()?,
            "--features" => a.features = flags.number()?,
            "--units" => a.units = flags.number()?,
            "--threads" => a.threads = flags.number()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if [a.rounds, a.batch, a.time, a.features, a.units].contains(&0) {
        return Err("every size must be at least 1".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    common::main_with(USAGE, parse_args, run)
}

fn random(shape: &[usize], rng: &mut StdRng) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-0.2..0.2f32))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The LSTM from per-gate weights: one node per product, gate and step.
fn composed<'t>(
    tape: &'t Tape<'t>,
    steps: &[Var<'t>],
    w: &[Var<'t>],
    u: &[Var<'t>],
    b: &[Var<'t>],
) -> Var<'t> {
    let shape = [steps[0].shape()[0], u[0].shape()[0]];
    let mut h = tape.constant(ArrayD::zeros(IxDyn(&shape)).view());
    let mut c = h;
    for &x in steps {
        let z: Vec<Var<'t>> = (0..4).map(|g| x.matmul(w[g]).add(h.matmul(u[g])).add(b[g])).collect();
        let (i, f, cc, o) = (z[0].sigmoid(), z[1].sigmoid(), z[2].tanh(), z[3].sigmoid());
        c = f.mul(c).add(i.mul(cc));
        h = o.mul(c.tanh());
    }
    h
}

fn run(a: &Args) -> kerust::Result<ExitCode> {
    set_num_threads(a.threads);
    let mut rng = StdRng::seed_from_u64(0);
    let (f, n) = (a.features, a.units);
    let mut params = ParamStore::new();
    let fused_w = [
        params.add("kernel", random(&[f, 4 * n], &mut rng), true),
        params.add("recurrent_kernel", random(&[n, 4 * n], &mut rng), true),
        params.add("bias", random(&[4 * n], &mut rng), true),
    ];
    let gate_w: Vec<_> =
        (0..4).map(|g| params.add(format!("w{g}"), random(&[f, n], &mut rng), true)).collect();
    let gate_u: Vec<_> =
        (0..4).map(|g| params.add(format!("u{g}"), random(&[n, n], &mut rng), true)).collect();
    let gate_b: Vec<_> = (0..4).map(|g| params.add(format!("b{g}"), random(&[n], &mut rng), true)).collect();
    let x = random(&[a.batch, a.time, f], &mut rng);
    let steps: Vec<ArrayD<f32>> =
        (0..a.time).map(|t| x.index_axis(ndarray::Axis(1), t).to_owned().into_dyn()).collect();
    let mut grads = Gradients::new();
    let mut workspaces = [Workspace::new(), Workspace::new()];
    let pass = |which: usize, ws: Workspace, grads: &mut Gradients| -> kerust::Result<Workspace> {
        let tape = Tape::with_workspace(&params, ws);
        let h = if which == 0 {
            let [w, u, b] = fused_w.map(|id| tape.param(id));
            tape.constant(x.view()).recurrent(
                w,
                u,
                Some(b),
                &[],
                None,
                None,
                RecurrentOptions::new(RecurrentCell::Lstm),
            )
        } else {
            let steps: Vec<_> = steps.iter().map(|s| tape.constant(s.view())).collect();
            let p =
                |ids: &[kerust::autodiff::ParamId]| ids.iter().map(|&id| tape.param(id)).collect::<Vec<_>>();
            composed(&tape, &steps, &p(&gate_w), &p(&gate_u), &p(&gate_b))
        };
        tape.backward(h.sum(), grads)?;
        Ok(tape.into_workspace())
    };
    // Warm-up: buffers sized, caches filled.
    for (i, ws) in workspaces.iter_mut().enumerate() {
        *ws = pass(i, std::mem::take(ws), &mut grads)?;
    }
    let mut times = [vec![], vec![]];
    for round in 0..a.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let start = Instant::now();
            workspaces[i] = pass(i, std::mem::take(&mut workspaces[i]), &mut grads)?;
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let [fused, composed] = times.map(median);
    println!(
        "LSTM batch {}, time {}, {} -> {} units, {} threads, median of {} rounds: fused {fused:.1} ms, \
         composed from per-gate ops {composed:.1} ms, ratio {:.2}",
        a.batch,
        a.time,
        f,
        n,
        kerust::autodiff::num_threads(),
        a.rounds,
        composed / fused
    );
    Ok(ExitCode::SUCCESS)
}
