//! Weight initializers with Keras' names and formulas.
//!
//! The variance-scaling family draws from `U(-limit, limit)` with `limit = sqrt(3 * scale / n)`, or from a normal
//! truncated at two standard deviations whose standard deviation is `sqrt(scale / n) / 0.8796...` (the correction
//! Keras applies so that the *truncated* distribution has variance `scale / n`):
//!
//! | name | scale | n |
//! |---|---|---|
//! | `glorot_uniform`, `glorot_normal` | 1 | `(fan_in + fan_out) / 2` |
//! | `he_uniform`, `he_normal` | 2 | `fan_in` |
//! | `lecun_uniform`, `lecun_normal` | 1 | `fan_in` |
use std::cmp::Ordering;
use std::str::FromStr;

use ndarray::{ArrayD, IxDyn};
use ndarray_rand::rand_distr::{Normal, Uniform};
use rand::rngs::StdRng;
use rand::Rng;

use crate::autodiff::Tensor;
use crate::Error;

/// Keras' correction: the standard deviation of a unit normal truncated to [-2, 2].
const TRUNCATED_STDDEV: f32 = 0.879_625_6;

/// A weight initializer.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Initializer {
    /// Keras' default kernel initializer.
    GlorotUniform,
    /// Truncated normal, Glorot scaling.
    GlorotNormal,
    /// Uniform, He scaling (for relu).
    HeUniform,
    /// Truncated normal, He scaling (for relu).
    HeNormal,
    /// Uniform, LeCun scaling.
    LecunUniform,
    /// Truncated normal, LeCun scaling (for selu).
    LecunNormal,
    /// All zeros (Keras' default bias initializer).
    Zeros,
    /// All ones.
    Ones,
    /// A constant.
    Constant(f32),
    /// Normal with this mean and standard deviation (Keras' defaults: 0, 0.05).
    RandomNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
    },
    /// Uniform on `[minval, maxval)` (Keras' defaults: -0.05, 0.05).
    RandomUniform {
        /// Lower bound.
        minval: f32,
        /// Upper bound.
        maxval: f32,
    },
    /// Normal truncated at two standard deviations (Keras' defaults: 0, 0.05).
    TruncatedNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation before truncation.
        stddev: f32,
    },
    /// A (semi-)orthogonal matrix times `gain`: Keras' recurrent kernel default. As Keras draws it: the weight
    /// is seen as a matrix `(product of the leading axes, last axis)`, a normal matrix of the taller of that
    /// shape and its transpose is factored `Q R`, `Q`'s columns are multiplied by the signs of `R`'s diagonal
    /// (so the factorisation is unique), and `Q` is transposed back to the weight's shape if it was wide.
    Orthogonal {
        /// The factor the matrix is multiplied by (Keras' default 1).
        gain: f32,
    },
}

const NAMES: &str =
    "glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal, zeros, ones, \
                     random_normal, random_uniform, truncated_normal, orthogonal";

/// `(fan_in, fan_out)` of a weight shape as Keras computes them: a kernel `(.., in, out)` whose leading axes are
/// a receptive field.
pub fn compute_fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [.., fan_in, fan_out] => {
            let receptive: usize = shape[..shape.len() - 2].iter().product();
            (fan_in * receptive, fan_out * receptive)
        }
    }
}

impl Initializer {
    /// A tensor of `shape` drawn from this initializer.
    pub fn init(self, shape: &[usize], rng: &mut StdRng) -> Tensor {
        self.init_in(shape, Vec::new(), rng)
    }

    /// [`Initializer::init`] written into `buf` (cleared first): with room reserved for every element, nothing
    /// more is allocated, so a caller that reserved it fallibly cannot abort here. Draws the same values, in the
    /// same order, as `init`.
    pub(crate) fn init_in(self, shape: &[usize], mut buf: Vec<f32>, rng: &mut StdRng) -> Tensor {
        let (fan_in, fan_out) = compute_fans(shape);
        let n: usize = shape.iter().product();
        let glorot = (fan_in + fan_out) as f32 / 2.0;
        buf.clear();
        match self {
            Initializer::GlorotUniform => uniform_scaled(&mut buf, n, 1.0, glorot, rng),
            Initializer::GlorotNormal => {
                truncated(&mut buf, n, 0.0, (1.0 / glorot).sqrt() / TRUNCATED_STDDEV, rng)
            }
            Initializer::HeUniform => uniform_scaled(&mut buf, n, 2.0, fan_in as f32, rng),
            Initializer::HeNormal => {
                truncated(&mut buf, n, 0.0, (2.0 / fan_in as f32).sqrt() / TRUNCATED_STDDEV, rng)
            }
            Initializer::LecunUniform => uniform_scaled(&mut buf, n, 1.0, fan_in as f32, rng),
            Initializer::LecunNormal => {
                truncated(&mut buf, n, 0.0, (1.0 / fan_in as f32).sqrt() / TRUNCATED_STDDEV, rng)
            }
            Initializer::Zeros => buf.resize(n, 0.0),
            Initializer::Ones => buf.resize(n, 1.0),
            Initializer::Constant(c) => buf.resize(n, c),
            Initializer::RandomNormal { mean, stddev } => match Normal::new(mean, stddev) {
                Ok(d) => buf.extend((0..n).map(|_| rng.sample(d))),
                Err(_) => buf.resize(n, f32::NAN),
            },
            Initializer::RandomUniform { minval, maxval } => match Uniform::new(minval, maxval) {
                Ok(d) => buf.extend((0..n).map(|_| rng.sample(d))),
                Err(_) => buf.resize(n, minval),
            },
            Initializer::TruncatedNormal { mean, stddev } => truncated(&mut buf, n, mean, stddev, rng),
            Initializer::Orthogonal { gain } => orthogonal(&mut buf, shape, gain, rng),
        }
        match ArrayD::from_shape_vec(IxDyn(shape), buf) {
            Ok(t) => t,
            Err(_) => unreachable!("the buffer holds the product of the shape's dimensions"),
        }
    }

    /// Checks the settings (a negative standard deviation, an empty range).
    pub fn validate(self) -> Result<(), Error> {
        match self {
            Initializer::RandomNormal { stddev, .. } | Initializer::TruncatedNormal { stddev, .. }
                if stddev.is_nan() || stddev < 0.0 || stddev.is_infinite() =>
            {
                Err(Error::invalid_argument("stddev", stddev, "must be a finite number >= 0"))
            }
            Initializer::RandomUniform { minval, maxval }
                if minval.partial_cmp(&maxval) != Some(Ordering::Less) =>
            {
                Err(Error::invalid_argument(
                    "maxval",
                    maxval,
                    format!("must be greater than minval={minval}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant(_) => "constant",
            Initializer::RandomNormal { .. } => "random_normal",
            Initializer::RandomUniform { .. } => "random_uniform",
            Initializer::TruncatedNormal { .. } => "truncated_normal",
            Initializer::Orthogonal { .. } => "orthogonal",
        }
    }
}

/// [`Initializer::Orthogonal`]: a normal matrix `(max(rows, cols), min(rows, cols))` orthonormalised by
/// modified Gram-Schmidt in f64 (which gives `Q` with `R`'s diagonal positive: Keras' sign correction), then
/// transposed if the weight is wide.
fn orthogonal(buf: &mut Vec<f32>, shape: &[usize], gain: f32, rng: &mut StdRng) {
    let n: usize = shape.iter().product();
    let cols = shape.last().copied().unwrap_or(1);
    let rows = n.checked_div(cols).unwrap_or(0);
    let (tall, short) = (rows.max(cols), rows.min(cols));
    let Ok(normal) = Normal::new(0.0f64, 1.0) else { unreachable!("unit normal") };
    // Row-major (tall, short), as Keras draws it.
    let mut a: Vec<f64> = (0..tall * short).map(|_| rng.sample(normal)).collect();
    for j in 0..short {
        for k in 0..j {
            let dot: f64 = (0..tall).map(|i| a[i * short + j] * a[i * short + k]).sum();
            (0..tall).for_each(|i| a[i * short + j] -= dot * a[i * short + k]);
        }
        let norm = (0..tall).map(|i| a[i * short + j].powi(2)).sum::<f64>().sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        (0..tall).for_each(|i| a[i * short + j] /= norm);
    }
    let g = f64::from(gain);
    if rows >= cols {
        buf.extend(a.iter().map(|&v| (v * g) as f32));
    } else {
        buf.extend(
            (0..rows)
                .flat_map(|r| (0..cols).map(move |c| (r, c)))
                .map(|(r, c)| (a[c * short + r] * g) as f32),
        );
    }
}

/// `U(-limit, limit)` with `limit = sqrt(3 * scale / n)`.
fn uniform_scaled(buf: &mut Vec<f32>, len: usize, scale: f32, n: f32, rng: &mut StdRng) {
    let limit = (3.0 * scale / n.max(1.0)).sqrt();
    buf.extend((0..len).map(|_| rng.random_range(-limit..=limit)));
}

/// A normal truncated to `mean ± 2 stddev`, by rejection.
fn truncated(buf: &mut Vec<f32>, len: usize, mean: f32, stddev: f32, rng: &mut StdRng) {
    let Ok(normal) = Normal::new(0.0f32, 1.0) else { unreachable!("unit normal") };
    buf.extend((0..len).map(|_| loop {
        let z: f32 = rng.sample(normal);
        if z.abs() <= 2.0 {
            break mean + stddev * z;
        }
    }));
}

impl FromStr for Initializer {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "glorot_uniform" | "glorotuniform" => Initializer::GlorotUniform,
            "glorot_normal" | "glorotnormal" => Initializer::GlorotNormal,
            "he_uniform" | "heuniform" => Initializer::HeUniform,
            "he_normal" | "henormal" => Initializer::HeNormal,
            "lecun_uniform" | "lecununiform" => Initializer::LecunUniform,
            "lecun_normal" | "lecunnormal" => Initializer::LecunNormal,
            "zeros" | "zero" => Initializer::Zeros,
            "ones" | "one" => Initializer::Ones,
            "random_normal" | "randomnormal" => Initializer::RandomNormal { mean: 0.0, stddev: 0.05 },
            "random_uniform" | "randomuniform" => Initializer::RandomUniform { minval: -0.05, maxval: 0.05 },
            "truncated_normal" | "truncatednormal" => {
                Initializer::TruncatedNormal { mean: 0.0, stddev: 0.05 }
            }
            "orthogonal" => Initializer::Orthogonal { gain: 1.0 },
            _ => {
                return Err(Error::UnknownName {
                    kind: "initializer",
                    name: name.into(),
                    known: NAMES.into(),
                })
            }
        })
    }
}

crate::spec::impl_spec!(Initializer);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn stats(t: &Tensor) -> (f64, f64, f32) {
        let n = t.len() as f64;
        let mean = t.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = t.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        let max = t.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        (mean, var, max)
    }

    #[test]
    fn variance_scaling_matches_keras_formulas() {
        let mut rng = StdRng::seed_from_u64(7);
        let (fan_in, fan_out) = (400usize, 200usize);
        let shape = [fan_in, fan_out];
        let glorot_var = 2.0 / (fan_in + fan_out) as f64;
        let he_var = 2.0 / fan_in as f64;
        let lecun_var = 1.0 / fan_in as f64;
        for (init, want_var) in [
            (Initializer::GlorotUniform, glorot_var),
            (Initializer::GlorotNormal, glorot_var),
            (Initializer::HeUniform, he_var),
            (Initializer::HeNormal, he_var),
            (Initializer::LecunUniform, lecun_var),
            (Initializer::LecunNormal, lecun_var),
        ] {
            let t = init.init(&shape, &mut rng);
            let (mean, var, _) = stats(&t);
            assert!(mean.abs() < 0.01 * want_var.sqrt() * 10.0, "{init:?}: mean {mean}");
            assert!((var / want_var - 1.0).abs() < 0.03, "{init:?}: variance {var}, want {want_var}");
        }
        // Uniform bounds: sqrt(6 / (fan_in + fan_out)).
        let (_, _, max) = stats(&Initializer::GlorotUniform.init(&shape, &mut rng));
        let limit = (6.0f32 / 600.0).sqrt();
        assert!(max <= limit && max > 0.99 * limit);
        // Truncation at two (corrected) standard deviations.
        let (_, _, max) = stats(&Initializer::HeNormal.init(&shape, &mut rng));
        assert!(max <= 2.0 * (2.0f32 / 400.0).sqrt() / TRUNCATED_STDDEV + 1e-6);
    }

    #[test]
    fn constants_and_simple_distributions() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(Initializer::Zeros.init(&[3, 2], &mut rng).iter().all(|&x| x == 0.0));
        assert!(Initializer::Ones.init(&[3], &mut rng).iter().all(|&x| x == 1.0));
        let t = "random_uniform".parse::<Initializer>().unwrap().init(&[10000], &mut rng);
        assert!(t.iter().all(|&x| (-0.05..0.05).contains(&x)));
        let (mean, var, _) = stats(&"random_normal".parse::<Initializer>().unwrap().init(&[20000], &mut rng));
        assert!(mean.abs() < 0.002 && (var.sqrt() - 0.05).abs() < 0.002, "{mean} {var}");
    }

    #[test]
    fn fans_and_errors() {
        assert_eq!(compute_fans(&[784, 25]), (784, 25));
        assert_eq!(compute_fans(&[3, 3, 16, 32]), (144, 288));
        assert!("glorot".parse::<Initializer>().unwrap_err().to_string().contains("glorot_uniform"));
        assert!(Initializer::RandomNormal { mean: 0.0, stddev: -1.0 }.validate().is_err());
        assert!(Initializer::RandomUniform { minval: 1.0, maxval: 0.0 }.validate().is_err());
    }

    #[test]
    fn orthogonal_is_orthogonal_in_the_weight_shape() {
        let mut rng = StdRng::seed_from_u64(5);
        for (shape, gain) in
            [(vec![6, 6], 1.0f32), (vec![8, 3], 2.0), (vec![3, 8], 1.0), (vec![2, 2, 5], 1.0)]
        {
            let w = "orthogonal".parse::<Initializer>().unwrap();
            let w = if gain == 1.0 { w } else { Initializer::Orthogonal { gain } };
            let t = w.init(&shape, &mut rng);
            assert_eq!(t.shape(), &shape[..]);
            let cols = *shape.last().unwrap();
            let m = t.into_shape_with_order((shape.iter().product::<usize>() / cols, cols)).unwrap();
            // The shorter side's Gram matrix is gain² times the identity.
            let gram = if m.nrows() >= m.ncols() { m.t().dot(&m) } else { m.dot(&m.t()) };
            for ((i, j), &v) in gram.indexed_iter() {
                let want = if i == j { gain * gain } else { 0.0 };
                assert!((v - want).abs() < 1e-5, "{shape:?}: gram[{i}, {j}] = {v}");
            }
        }
    }

    #[test]
    fn same_seed_same_weights() {
        let a = Initializer::GlorotUniform.init(&[5, 4], &mut StdRng::seed_from_u64(3));
        let b = Initializer::GlorotUniform.init(&[5, 4], &mut StdRng::seed_from_u64(3));
        assert_eq!(a, b);
    }
}
