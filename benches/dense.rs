//! Forward + backward of one Dense layer (x (batch, 784) · W (784, 128) + b, then an activation and a sum as the
//! loss) on the autodiff tape, reusing a `Workspace` and `Gradients` across iterations the way a training loop
//! does, beside the bare matrix products that step contains (forward `x·W`, and `dW = xᵀ·dY`, through the same
//! `autodiff::gemm`): the difference is the engine's overhead over the GEMM floor.
//!
//! Run with `cargo bench --bench dense`.
use std::hint::black_box;
use std::time::Duration;

mod common;
use common::general_mat_mul;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kerust::autodiff::{Gradients, ParamStore, Tape, Tensor, Workspace};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INPUTS: usize = 784;
const UNITS: usize = 128;
const BATCHES: [usize; 2] = [32, 128];

fn random(rng: &mut StdRng, shape: &[usize]) -> Tensor {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-0.5f32..0.5))
}

#[derive(Clone, Copy, Debug)]
enum Activation {
    Relu,
    Sigmoid,
}

fn dense_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_step");
    group.measurement_time(Duration::from_secs(3)).sample_size(30).warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(0);
    let mut params = ParamStore::new();
    let w = params.add("dense/kernel", random(&mut rng, &[INPUTS, UNITS]), true);
    let b = params.add("dense/bias", random(&mut rng, &[UNITS]), true);
    for batch in BATCHES {
        let x = random(&mut rng, &[batch, INPUTS]);
        for act in [Activation::Relu, Activation::Sigmoid] {
            let mut ws = Workspace::new();
            let mut grads = Gradients::new();
            group.bench_function(BenchmarkId::new(format!("{act:?}"), batch), |bench| {
                bench.iter(|| {
                    let tape = Tape::with_workspace(&params, std::mem::take(&mut ws));
                    let z = tape.constant(x.view()).matmul(tape.param(w)).add(tape.param(b));
                    let y = match act {
                        Activation::Relu => z.relu(),
                        Activation::Sigmoid => z.sigmoid(),
                    };
                    let loss = y.sum();
                    tape.backward(loss, &mut grads).expect("scalar loss");
                    black_box(grads.get(w));
                    ws = tape.into_workspace();
                })
            });
        }
    }
    group.finish();
}

/// The matrix products of one step, into preallocated outputs: the floor the engine is measured against.
fn bare_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("bare_matmul");
    group.measurement_time(Duration::from_secs(3)).sample_size(30).warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(0);
    let to2 = |t: Tensor| t.into_dimensionality::<ndarray::Ix2>().unwrap();
    let w = to2(random(&mut rng, &[INPUTS, UNITS]));
    for batch in BATCHES {
        let x = to2(random(&mut rng, &[batch, INPUTS]));
        let dy = to2(random(&mut rng, &[batch, UNITS]));
        let mut y = Array2::<f32>::zeros((batch, UNITS));
        let mut dw = Array2::<f32>::zeros((INPUTS, UNITS));
        group.bench_function(BenchmarkId::new("forward x.W", batch), |bench| {
            bench.iter(|| general_mat_mul(1.0, black_box(&x), black_box(&w), 0.0, &mut y))
        });
        group.bench_function(BenchmarkId::new("backward xT.dY", batch), |bench| {
            bench.iter(|| general_mat_mul(1.0, &black_box(&x).t(), black_box(&dy), 0.0, &mut dw))
        });
        group.bench_function(BenchmarkId::new("both", batch), |bench| {
            bench.iter(|| {
                general_mat_mul(1.0, black_box(&x), black_box(&w), 0.0, &mut y);
                general_mat_mul(1.0, &black_box(&x).t(), black_box(&dy), 0.0, &mut dw);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dense_step, bare_matmul);
criterion_main!(benches);
