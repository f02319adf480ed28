//! Data made in the tests, shared by the integration test binaries.
use ndarray::Array2;
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
