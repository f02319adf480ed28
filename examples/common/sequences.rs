//! What the sequence examples (`imdb_conv1d`, `imdb_lstm`, `adding_problem`) and their CI test
//! (`tests/sequence_examples.rs`) share: the models, and the synthetic tasks that a broken layer cannot pass.
//! Kept out of `common/mod.rs` so that the test can include this file alone (`#[path]`).
#![allow(dead_code)] // each includer uses part of it

use std::time::Instant;

use kerust::callbacks::{Callback, Logs};
use kerust::layers::{
    Activation, Bidirectional, Conv1D, Dense, Dropout, Embedding, GlobalMaxPooling1D, LSTM,
};
use kerust::models::{Model, Sequential};
use kerust::optimizers::Adam;
use ndarray::{Array2, Array3};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The settings of Keras 2's `imdb_cnn.py`.
#[derive(Clone, Copy, Debug)]
pub struct CnnSettings {
    pub max_features: usize,
    pub maxlen: usize,
    pub embedding_dims: usize,
    pub filters: usize,
    pub kernel_size: usize,
    pub hidden_dims: usize,
}

impl Default for CnnSettings {
    fn default() -> Self {
        CnnSettings {
            max_features: 5000,
            maxlen: 400,
            embedding_dims: 50,
            filters: 250,
            kernel_size: 3,
            hidden_dims: 250,
        }
    }
}

/// Keras 2's `imdb_cnn.py` model: Embedding, Dropout 0.2, Conv1D (valid, relu, strides 1), GlobalMaxPooling1D,
/// Dense, Dropout 0.2, relu, Dense(1), sigmoid; compiled with binary cross-entropy and Adam. 350,751
/// parameters with the default settings.
pub fn imdb_cnn(s: &CnnSettings) -> kerust::Result<Sequential> {
    let mut model = Sequential::new();
    model.add(Embedding::new(s.max_features, s.embedding_dims).input_shape([s.maxlen]))?;
    model.add(Dropout::new(0.2))?;
    model.add(Conv1D::new(s.filters, s.kernel_size).padding("valid").activation("relu").strides(1))?;
    model.add(GlobalMaxPooling1D::new())?;
    model.add(Dense::new(s.hidden_dims))?;
    model.add(Dropout::new(0.2))?;
    model.add(Activation::new("relu"))?;
    model.add(Dense::new(1))?;
    model.add(Activation::new("sigmoid"))?;
    model.compile("binary_crossentropy", "adam", ["accuracy"])?;
    Ok(model)
}

/// keras-io's "Bidirectional LSTM on IMDB": Embedding(max_features, 128), Bidirectional(LSTM(64,
/// return_sequences)), Bidirectional(LSTM(64)), Dense(1, sigmoid); binary cross-entropy and Adam. 2,757,761
/// parameters for a vocabulary of 20,000.
pub fn imdb_bilstm(max_features: usize, maxlen: usize) -> kerust::Result<Sequential> {
    let mut model = Sequential::new();
    model.add(Embedding::new(max_features, 128).input_shape([maxlen]))?;
    model.add(Bidirectional::new(LSTM::new(64).return_sequences(true)))?;
    model.add(Bidirectional::new(LSTM::new(64)))?;
    model.add(Dense::new(1).activation("sigmoid"))?;
    model.compile("binary_crossentropy", "adam", ["accuracy"])?;
    Ok(model)
}

/// Token ids that mark a positive sample (1..=8) and a negative one (9..=16); random filler never uses them.
pub const POSITIVE: std::ops::RangeInclusive<i32> = 1..=8;
pub const NEGATIVE: std::ops::RangeInclusive<i32> = 9..=16;

/// A synthetic stand-in for padded IMDB: `samples` sequences of `maxlen` token ids below `vocabulary`, each of
/// a random length between `maxlen / 8` and `maxlen`, left-padded with 0 as `pad_sequences` does. The label
/// is 1 when the sequence holds one to three "positive" ids ([`POSITIVE`]) and 0 when it holds one to three
/// "negative" ones ([`NEGATIVE`]), at random places among random filler of the other ids.
///
/// Only a few positions in up to 400 carry the label and the filler is the same for both classes, so a
/// model must find a token wherever it is: a convolution whose kernel does not learn, or a pooling that
/// averages the sparse markers away or looks at one position, stays near chance (0.5).
pub fn synthetic_imdb(
    samples: usize,
    maxlen: usize,
    vocabulary: usize,
    seed: u64,
) -> (Array2<i32>, Array2<f32>) {
    assert!(vocabulary > 100 && maxlen >= 8, "a vocabulary above 100 and a length of at least 8");
    let mut rng = StdRng::seed_from_u64(seed);
    let filler_low = *NEGATIVE.end() + 1;
    let mut x = Array2::<i32>::zeros((samples, maxlen));
    let mut y = Array2::<f32>::zeros((samples, 1));
    for i in 0..samples {
        let positive = rng.random_bool(0.5);
        let len = rng.random_range(maxlen / 8..=maxlen);
        let start = maxlen - len;
        for t in start..maxlen {
            x[[i, t]] = rng.random_range(filler_low..vocabulary as i32);
        }
        let markers = if positive { POSITIVE } else { NEGATIVE };
        for _ in 0..rng.random_range(1..=3) {
            let t = rng.random_range(start..maxlen);
            x[[i, t]] = rng.random_range(markers.clone());
        }
        y[[i, 0]] = if positive { 1.0 } else { 0.0 };
    }
    (x, y)
}

/// The adding problem (Hochreiter & Schmidhuber, 1997): `samples` sequences of `length` steps with two
/// features, a value uniform on [0, 1] and a marker that is 1 at exactly two steps (one in each half) and 0
/// elsewhere; the target is the sum of the two marked values. Predicting the mean, 1, gives an MSE of 1/6.
pub fn adding_problem(samples: usize, length: usize, seed: u64) -> (Array3<f32>, Array2<f32>) {
    assert!(length >= 2, "a length of at least 2");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array3::<f32>::zeros((samples, length, 2));
    let mut y = Array2::<f32>::zeros((samples, 1));
    let half = length / 2;
    for i in 0..samples {
        for t in 0..length {
            x[[i, t, 0]] = rng.random::<f32>();
        }
        let (a, b) = (rng.random_range(0..half), rng.random_range(half..length));
        x[[i, a, 1]] = 1.0;
        x[[i, b, 1]] = 1.0;
        y[[i, 0]] = x[[i, a, 0]] + x[[i, b, 0]];
    }
    (x, y)
}

/// The model for the adding problem: `LSTM(units)` and `Dense(1)`, mean squared error, Adam with the given
/// learning rate and a gradient norm clipped to 1.
pub fn adding_model(length: usize, units: usize, learning_rate: f32) -> kerust::Result<Sequential> {
    let mut model = Sequential::new();
    model.add(LSTM::new(units).input_shape([length, 2]))?;
    model.add(Dense::new(1))?;
    model.compile("mse", Adam::new().learning_rate(learning_rate).clipnorm(1.0), [])?;
    Ok(model)
}

/// The mean squared error of always predicting the mean of `y_train`: what a model that ignores its input
/// reaches.
pub fn constant_mse(y_train: &Array2<f32>, y_test: &Array2<f32>) -> f32 {
    let mean = y_train.mean().unwrap_or(0.0);
    y_test.mapv(|v| (v - mean) * (v - mean)).mean().unwrap_or(f32::NAN)
}

/// Seconds per epoch (training plus validation), measured between `fit`'s epoch hooks, and printed as each
/// epoch ends.
#[derive(Default)]
pub struct EpochTimer {
    started: Option<Instant>,
    pub seconds: Vec<f64>,
    pub print: bool,
}

impl EpochTimer {
    /// A timer that prints each epoch's time.
    pub fn printing() -> Self {
        EpochTimer { print: true, ..Default::default() }
    }

    /// The median epoch time in seconds (NaN before any epoch).
    pub fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

impl Callback for EpochTimer {
    fn on_epoch_begin(&mut self, _: &mut Model, _: usize) -> kerust::Result<()> {
        self.started = Some(Instant::now());
        Ok(())
    }

    fn on_epoch_end(&mut self, _: &mut Model, epoch: usize, _: &Logs) -> kerust::Result<()> {
        if let Some(start) = self.started.take() {
            let s = start.elapsed().as_secs_f64();
            if self.print {
                println!("epoch {} took {s:.1} s", epoch + 1);
            }
            self.seconds.push(s);
        }
        Ok(())
    }
}
