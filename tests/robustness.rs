//! No input, however broken, panics: fuzzing of the file parsers (bounded, seeded, a few seconds) and bad
//! arguments to the public API.
use kerust::datasets::idx::{self, Compression};
use kerust::layers::{Dense, Dropout, Flatten, Input};
use kerust::models::{load_model_from_bytes, Sequential};
use kerust::optimizers::{Adam, SGD};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `cases` inputs drawn by `draw` from a fixed seed, each given to `check`: the same inputs on every run,
/// bounded time in CI. A failing case is reported with its number and its input.
fn fuzz<T: std::fmt::Debug>(cases: u32, draw: impl Fn(&mut StdRng) -> T, mut check: impl FnMut(&T) -> bool) {
    let mut rng = StdRng::seed_from_u64(42);
    for case in 0..cases {
        let input = draw(&mut rng);
        assert!(check(&input), "case {case} of {cases} failed on {input:?}");
    }
}

/// Random bytes, a length in `lengths`.
fn random_bytes(rng: &mut StdRng, lengths: std::ops::Range<usize>) -> Vec<u8> {
    let len = rng.random_range(lengths);
    (0..len).map(|_| rng.random()).collect()
}

fn valid_model_bytes() -> Vec<u8> {
    let mut m = Sequential::new();
    m.set_seed(1);
    m.add(Flatten::new().input_shape([2, 2])).unwrap();
    m.add(Dense::new(3).activation("relu")).unwrap();
    m.add(Dropout::new(0.2)).unwrap();
    m.add(Dense::new(2).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", Adam::new(), ["accuracy"]).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[6, 2, 2]), |i| (i[0] + i[1] * 2 + i[2]) as f32 / 7.0);
    let y = Array2::from_shape_fn((6, 2), |(i, j)| f32::from(i % 2 == j));
    m.fit(&x, &y).epochs(1).verbose(0).run().unwrap();
    m.to_bytes().unwrap()
}

fn valid_idx_bytes(gzip: bool) -> Vec<u8> {
    let images = ndarray::Array3::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 20 + j * 5 + k) as u8);
    let mut plain = Vec::new();
    idx::write_to(&mut plain, &images).unwrap();
    if !gzip {
        return plain;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &plain).unwrap();
    enc.finish().unwrap()
}

/// 1 to 7 edits of a valid input: flip, set, insert or remove a byte, or truncate.
fn mutations(rng: &mut StdRng) -> Vec<(u8, usize, u8)> {
    let edits = rng.random_range(1..8);
    (0..edits).map(|_| (rng.random_range(0..5), rng.random::<u64>() as usize, rng.random())).collect()
}

fn mutate(mut bytes: Vec<u8>, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, b) in edits {
        if bytes.is_empty() {
            bytes.push(b);
            continue;
        }
        let i = at % bytes.len();
        match kind {
            0 => bytes[i] ^= b.max(1),
            1 => bytes[i] = b,
            2 => bytes.insert(i, b),
            3 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

#[test]
fn fuzz_load_model_random_bytes_and_mutations() {
    let valid = valid_model_bytes();
    assert!(load_model_from_bytes(&valid).is_ok());
    let loaded = std::cell::Cell::new(0usize);
    fuzz(1500, |rng| random_bytes(rng, 0..300), |bytes| load_model_from_bytes(bytes).is_err());
    // Random bytes behind a plausible header length, so the parser gets past the first check.
    fuzz(
        1000,
        |rng| random_bytes(rng, 0..400),
        |tail| {
            let mut bytes = (tail.len() as u64 / 2).to_le_bytes().to_vec();
            bytes.extend_from_slice(tail);
            load_model_from_bytes(&bytes).is_err()
        },
    );
    let original = load_model_from_bytes(&valid).unwrap();
    let x = ArrayD::<f32>::ones(IxDyn(&[1, 2, 2]));
    fuzz(2500, mutations, |edits| {
        let bytes = mutate(valid.clone(), edits);
        // No panic; a mutated file loads only if the change was invisible (JSON whitespace).
        match load_model_from_bytes(&bytes) {
            Ok(m) => {
                loaded.set(loaded.get() + 1);
                m.predict(&x).unwrap() == original.predict(&x).unwrap()
            }
            Err(_) => true,
        }
    });
    eprintln!("fuzz load_model: 5000 inputs; {} mutated files loaded, all identical", loaded.get());
}

#[test]
fn fuzz_idx_random_bytes_and_mutations() {
    for gzip in [false, true] {
        let valid = valid_idx_bytes(gzip);
        assert_eq!(idx::read_from(&valid[..], Compression::Auto).unwrap().shape(), &[3, 4, 5]);
        fuzz(1500, mutations, |edits| {
            let bytes = mutate(valid.clone(), edits);
            let _ = idx::read_from(&bytes[..], Compression::Auto);
            let _ = idx::read_from(&bytes[..], Compression::None);
            true
        });
    }
    fuzz(
        2000,
        |rng| random_bytes(rng, 0..200),
        |bytes| {
            let _ = idx::read_from(&bytes[..], Compression::Auto);
            let _ = idx::read_from(&bytes[..], Compression::Gzip);
            true
        },
    );
    // Headers that declare huge sizes must be refused before any allocation.
    for dims in [[0xffu8, 0xff, 0xff, 0xff], [0x7f, 0xff, 0xff, 0xff]] {
        let mut bytes = vec![0, 0, 8, 3];
        for _ in 0..3 {
            bytes.extend_from_slice(&dims);
        }
        assert!(idx::read_from(&bytes[..], Compression::None).is_err());
    }
}

fn xy() -> (Array2<f32>, Array2<f32>) {
    (
        Array2::from_shape_fn((10, 4), |(i, j)| (i + j) as f32 / 10.0),
        Array2::from_shape_fn((10, 3), |(i, j)| f32::from(i % 3 == j)),
    )
}

fn compiled(loss: &str, metrics: &[&str]) -> Sequential {
    let mut m = Sequential::new();
    m.add(Dense::new(3).activation("softmax").input_shape([4])).unwrap();
    m.compile(loss, "sgd", metrics).unwrap();
    m
}

#[test]
fn bad_settings_are_errors() {
    let mut m = Sequential::new();
    assert!(m.add(Dense::new(0).input_shape([4])).is_err());
    assert!(m.add(Dense::new(usize::MAX).input_shape([4])).is_err());
    assert!(m.add(Dense::new(usize::MAX / 2).input_shape([3])).is_err());
    assert!(m.add(Dense::new(3).activation("relux").input_shape([4])).is_err());
    assert!(m.add(Dense::new(3).kernel_initializer("nope").input_shape([4])).is_err());
    let mut m = Sequential::new();
    m.add(Input::new([4])).unwrap();
    for rate in [-0.1f32, 1.0, 2.0, f32::NAN, f32::INFINITY] {
        assert!(m.add(Dropout::new(rate)).is_err(), "rate {rate}");
    }
    assert!(Sequential::new().add(Input::new([0, 3])).is_err());
    assert!(Sequential::new().add(Input::new(Vec::<usize>::new())).is_err());
    let mut m = Sequential::new();
    assert!(m.add(Flatten::new().input_shape([usize::MAX, 2])).is_err());
    let mut m = Sequential::new();
    m.add(Dense::new(2).input_shape([3])).unwrap();
    for lr in [-1.0f32, f32::NAN, f32::INFINITY] {
        assert!(m.compile("mse", SGD::new().learning_rate(lr), []).is_err());
    }
    assert!(m.compile("mse", SGD::new().momentum(1.5), []).is_err());
    assert!(m.compile("msee", "sgd", []).is_err());
    assert!(m.compile("mse", "sgd", ["f1_score"]).is_err());
}

#[test]
fn bad_data_is_an_error_not_a_panic() {
    let (x, y) = xy();
    let mut m = compiled("categorical_crossentropy", &["accuracy"]);
    // Wrong shapes, empty data, scalars.
    assert!(m.fit(&Array2::<f32>::zeros((10, 5)), &y).verbose(0).run().is_err());
    assert!(m.fit(&x, &Array2::<f32>::zeros((9, 3))).verbose(0).run().is_err());
    assert!(m.fit(&x, &Array2::<f32>::zeros((10, 4))).verbose(0).run().is_err());
    assert!(m.fit(&Array2::<f32>::zeros((0, 4)), &Array2::<f32>::zeros((0, 3))).verbose(0).run().is_err());
    assert!(m.fit(&ndarray::arr0(1.0f32), &ndarray::arr0(1.0f32)).verbose(0).run().is_err());
    assert!(m.fit(&x, &y).batch_size(0).verbose(0).run().is_err());
    for split in [-0.5f32, 1.0, f32::NAN] {
        assert!(m.fit(&x, &y).validation_split(split).verbose(0).run().is_err(), "split {split}");
    }
    assert!(m.fit(&x, &y).validation_data(&x, &Array2::<f32>::zeros((10, 2))).verbose(0).run().is_err());
    assert!(m.predict(&ndarray::arr0(1.0f32)).is_err());
    assert!(m.predict(&Array1::<f32>::zeros(4)).is_err());
    assert!(m.predict(&Array2::<f32>::zeros((2, 7))).is_err());
    assert!(m.predict_with_batch_size(&x, 0).is_err());
    assert!(m.evaluate(&x, &Array1::<f32>::zeros(10)).is_err());
    assert!(m.set_weights(&[]).is_err());
    // Sparse labels out of range, negative, fractional, NaN.
    let mut s = compiled("sparse_categorical_crossentropy", &["accuracy"]);
    for bad in [3.0f32, -1.0, 0.5, f32::NAN, f32::INFINITY] {
        let mut labels = Array1::<f32>::zeros(10);
        labels[4] = bad;
        assert!(s.fit(&x, &labels).verbose(0).run().is_err(), "label {bad}");
    }
    // A metric that does not fit the targets (categorical accuracy on sparse labels, and the reverse).
    let labels = Array1::from_shape_fn(10, |i| (i % 3) as f32);
    for metric in ["categorical_accuracy", "top_k_categorical_accuracy"] {
        let mut m = compiled("sparse_categorical_crossentropy", &[metric]);
        let err = m.fit(&x, &labels).verbose(0).run().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(metric), "{metric}: {err}");
        assert!(m.evaluate(&x, &labels).is_err());
    }
    for metric in ["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"] {
        let mut m = compiled("categorical_crossentropy", &[metric]);
        assert!(m.fit(&x, &y).verbose(0).run().is_err(), "{metric}");
    }
    let mut m = compiled("mse", &["mae"]);
    assert!(m.fit(&x, &y).verbose(0).run().is_ok());
}

#[test]
fn load_weights_on_an_unbuilt_model_is_an_error() {
    let dir = std::env::temp_dir().join(format!("kerust-robust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    let mut m = compiled("mse", &[]);
    m.save_weights(&path).unwrap();
    let mut unbuilt = Sequential::new();
    unbuilt.add(Dense::new(3)).unwrap();
    assert!(unbuilt.load_weights(&path).is_err());
    assert!(unbuilt.load_weights(dir.join("missing.safetensors")).is_err());
    std::fs::write(&path, b"").unwrap();
    assert!(m.load_weights(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
