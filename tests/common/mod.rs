//! Data made in the tests, shared by the integration test binaries.
#![allow(dead_code)] // each binary uses some of these

use std::sync::Arc;

use kerust::autodiff::Tensor;
use kerust::callbacks::{Callback, Logs};
use kerust::distributed::{Communicator, ThreadGroup};
use kerust::models::Model;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Two blobs in 2-D with one-hot labels: class 0 around `(-center, -center)`, class 1 around
/// `(center, center)`, each coordinate uniform within `spread` of its center. Separable when `spread < center`.
pub fn blobs(n: usize, seed: u64, center: f32, spread: f32) -> (Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 2));
    let mut y = Array2::zeros((n, 2));
    for i in 0..n {
        let class = i % 2;
        let c = if class == 0 { -center } else { center };
        x[[i, 0]] = c + rng.random_range(-spread..spread);
        x[[i, 1]] = c + rng.random_range(-spread..spread);
        y[[i, class]] = 1.0;
    }
    (x, y)
}

/// A tensor of a Keras fixture (`tests/fixtures/keras_*.py`): `{"shape": [..], "values": [..]}`.
pub fn fixture_tensor(v: &serde_json::Value) -> Tensor {
    let shape: Vec<usize> =
        v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let values: Vec<f32> =
        v["values"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap() as f32).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap()
}

/// Asserts `got` is `want` (a Keras fixture's value) to a relative tolerance: each element within
/// `tol * (1 + |want|)`, named by `what` and its index when it is not.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: kerust {g}, Keras {w}");
    }
}

/// Asserts that no element of `got` differs from `want` by more than `tol`.
pub fn assert_max_difference(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: differs by {worst} (tolerance {tol})");
}

/// Runs `f` on every rank of a group of `size` threads (`ThreadGroup`); results in rank order.
pub fn on_ranks<T: Send>(size: usize, f: impl Fn(Arc<dyn Communicator>) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> =
            ThreadGroup::new(size).into_iter().map(|rank| s.spawn(move || f(Arc::new(rank)))).collect();
        handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
    })
}

/// A callback that records the weights after every training step.
#[derive(Default)]
pub struct Steps(pub Vec<Vec<Tensor>>);

impl Callback for Steps {
    fn on_train_batch_end(&mut self, model: &mut Model, _: usize, _: &Logs) -> kerust::Result<()> {
        self.0.push(model.get_weights());
        Ok(())
    }
}
