//! Training steps of the two MNIST MLP workloads and of Keras' MNIST convnet against the bare matrix products
//! they contain (the floor: the same products through `autodiff::gemm` on one thread), and `predict`
//! throughput. Synthetic data of MNIST's shapes: the arithmetic does not depend on the values.
//!
//! `cargo bench --bench training`; each report shows step and floor from the same run, so step / floor is the
//! framework's overhead.
use std::time::Duration;

mod common;
use common::general_mat_mul;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kerust::autodiff::set_num_threads;
use kerust::layers::{Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use kerust::models::Sequential;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` MNIST-shaped samples: pixels in [0, 1), one-hot labels.
fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(0);
    let x = Array2::from_shape_simple_fn((n, 784), || rng.random_range(0.0..1.0));
    let y = Array2::from_shape_fn((n, 10), |(i, j)| f32::from(i % 10 == j));
    (x, y)
}

/// W1, the tutorial: 784-25-10, sigmoid and softmax, SGD.
fn w1() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(0);
    model.add(Dense::new(25).activation("sigmoid").input_shape([784])).unwrap();
    model.add(Dense::new(10).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    model
}

/// W2, the bigger model: 784-512-256-10, relu and softmax, Adam.
fn w2() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(0);
    model.add(Dense::new(512).activation("relu").input_shape([784])).unwrap();
    model.add(Dense::new(256).activation("relu")).unwrap();
    model.add(Dense::new(10).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    model
}

/// The matrix products of one training step of an MLP with these layer widths at this batch size: forward
/// `h_i · W_i`, backward `h_iᵀ · dz_i` for every layer and `dz_i · W_iᵀ` for all but the first (the input needs no
/// gradient). Single-threaded ndarray (matrixmultiply), into preallocated outputs.
struct Floor {
    acts: Vec<Array2<f32>>,
    weights: Vec<Array2<f32>>,
    grads: Vec<Array2<f32>>,
    weight_grads: Vec<Array2<f32>>,
}

impl Floor {
    fn new(widths: &[usize], batch: usize) -> Self {
        let acts = widths.iter().map(|&w| Array2::from_elem((batch, w), 0.5)).collect();
        let weights = widths.windows(2).map(|p| Array2::from_elem((p[0], p[1]), 0.01)).collect();
        let grads = widths.iter().map(|&w| Array2::from_elem((batch, w), 0.1)).collect();
        let weight_grads = widths.windows(2).map(|p| Array2::zeros((p[0], p[1]))).collect();
        Floor { acts, weights, grads, weight_grads }
    }

    fn step(&mut self) {
        let layers = self.weights.len();
        for i in 0..layers {
            let (lower, upper) = self.acts.split_at_mut(i + 1);
            general_mat_mul(1.0, &lower[i], &self.weights[i], 0.0, &mut upper[0]);
        }
        for i in (0..layers).rev() {
            general_mat_mul(1.0, &self.acts[i].t(), &self.grads[i + 1], 0.0, &mut self.weight_grads[i]);
            if i > 0 {
                let (lower, upper) = self.grads.split_at_mut(i + 1);
                general_mat_mul(1.0, &upper[0], &self.weights[i].t(), 0.0, &mut lower[i]);
            }
        }
    }
}

fn training_steps(c: &mut Criterion) {
    for (name, make, widths, batch) in
        [("w1", w1 as fn() -> Sequential, &[784, 25, 10][..], 32), ("w2", w2, &[784, 512, 256, 10][..], 128)]
    {
        let (x, y) = data(batch);
        let mut group = c.benchmark_group(name);
        group.measurement_time(Duration::from_secs(4)).sample_size(30).warm_up_time(Duration::from_secs(1));
        for threads in [1, 2] {
            set_num_threads(threads);
            let mut model = make();
            group.bench_function(BenchmarkId::new("step", format!("{threads}_threads")), |b| {
                b.iter(|| model.train_on_batch(&x, &y).unwrap())
            });
        }
        set_num_threads(1);
        let mut floor = Floor::new(widths, batch);
        group.bench_function(BenchmarkId::new("floor", "1_threads"), |b| b.iter(|| floor.step()));
        group.finish();
    }
    set_num_threads(0);
}

/// Keras' "Simple MNIST convnet": Conv2D(32, 3, relu), MaxPooling2D(2), Conv2D(64, 3, relu), MaxPooling2D(2),
/// Flatten, Dropout(0.5), Dense(10, softmax); Adam.
fn convnet() -> Sequential {
    let mut model = Sequential::new();
    model.set_seed(0);
    model.add(Input::new([28, 28, 1])).unwrap();
    model.add(Conv2D::new(32, 3).activation("relu")).unwrap();
    model.add(MaxPooling2D::new(2)).unwrap();
    model.add(Conv2D::new(64, 3).activation("relu")).unwrap();
    model.add(MaxPooling2D::new(2)).unwrap();
    model.add(Flatten::new()).unwrap();
    model.add(Dropout::new(0.5)).unwrap();
    model.add(Dense::new(10).activation("softmax")).unwrap();
    model.compile("categorical_crossentropy", "adam", ["accuracy"]).unwrap();
    model
}

/// The matrix products of one training step of the convnet, as im2col convolutions compute them: for each
/// convolution `cols · W` (pixels x field by field x filters) and `colsᵀ · dz`, and `dz · Wᵀ` for the second
/// one only (the input needs no gradient); the Dense layer's three products. Single-threaded, into
/// preallocated outputs.
struct ConvFloor {
    products: Vec<Product>,
}

/// `out = op(a) · op(b)`, with the operands stored as the step stores them and read transposed where the flags
/// say: `(a, transpose a, b, transpose b, out)`.
type Product = (Array2<f32>, bool, Array2<f32>, bool, Array2<f32>);

impl ConvFloor {
    fn new(batch: usize) -> Self {
        let mut products = vec![];
        // (rows, inner, columns) of each layer's forward product: pixels x field x filters for convolutions.
        for (i, &(m, k, n)) in
            [(batch * 26 * 26, 9, 32), (batch * 11 * 11, 288, 64), (batch, 1600, 10)].iter().enumerate()
        {
            let (x, w, dz) = (
                Array2::from_elem((m, k), 0.5),
                Array2::from_elem((k, n), 0.01),
                Array2::from_elem((m, n), 0.1),
            );
            products.push((x.clone(), false, w.clone(), false, Array2::zeros((m, n))));
            products.push((x, true, dz.clone(), false, Array2::zeros((k, n))));
            if i > 0 {
                products.push((dz, false, w, true, Array2::zeros((m, k))));
            }
        }
        ConvFloor { products }
    }

    fn step(&mut self) {
        for (a, ta, b, tb, out) in &mut self.products {
            let a = if *ta { a.t() } else { a.view() };
            let b = if *tb { b.t() } else { b.view() };
            general_mat_mul(1.0, &a, &b, 0.0, out);
        }
    }
}

fn convnet_step(c: &mut Criterion) {
    let batch = 128;
    let mut rng = StdRng::seed_from_u64(0);
    let x = ndarray::Array4::from_shape_simple_fn((batch, 28, 28, 1), || rng.random_range(0.0..1.0f32));
    let y = Array2::from_shape_fn((batch, 10), |(i, j)| f32::from(i % 10 == j));
    let mut group = c.benchmark_group("convnet");
    group.measurement_time(Duration::from_secs(8)).sample_size(20).warm_up_time(Duration::from_secs(2));
    for threads in [1, 2] {
        set_num_threads(threads);
        let mut model = convnet();
        group.bench_function(BenchmarkId::new("step", format!("{threads}_threads")), |b| {
            b.iter(|| model.train_on_batch(&x, &y).unwrap())
        });
    }
    set_num_threads(1);
    let mut floor = ConvFloor::new(batch);
    group.bench_function(BenchmarkId::new("floor", "1_threads"), |b| b.iter(|| floor.step()));
    group.finish();
    set_num_threads(0);
}

fn predict(c: &mut Criterion) {
    let (x, y) = data(10_000);
    let mut model = w2();
    model.fit(x.slice(ndarray::s![..256, ..]), y.slice(ndarray::s![..256, ..])).verbose(0).run().unwrap();
    let mut group = c.benchmark_group("predict_w2_10000");
    group.measurement_time(Duration::from_secs(5)).sample_size(20);
    for threads in [1, 2] {
        set_num_threads(threads);
        group.bench_function(BenchmarkId::new("default_batch_256", format!("{threads}_threads")), |b| {
            b.iter(|| model.predict(&x).unwrap())
        });
        group.bench_function(BenchmarkId::new("batch_500", format!("{threads}_threads")), |b| {
            b.iter(|| model.predict_with_batch_size(&x, 500).unwrap())
        });
    }
    set_num_threads(0);
    group.finish();
}

criterion_group!(benches, training_steps, convnet_step, predict);
criterion_main!(benches);
