//! A golden guard of today's `Sequential` numbers, so that a refactor (e.g. onto a general graph model) that
//! changes a single bit of the tutorial's results is caught.
//!
//! Each scenario trains a small model on deterministic synthetic data and fingerprints what a user sees:
//! `summary_string()`, every `History` value and every log of `evaluate`/`train_on_batch` as `f32` bit
//! patterns, SHA-256 of the predictions, of `get_weights()` and of the model file (`Sequential::to_bytes`). The
//! fingerprints live in `tests/fixtures/golden_sequential.json`; on a mismatch the test names the first field
//! that differs.
//!
//! Matrix products run different kernels on AVX-512 and AVX2 processors (gemm chooses at run time), so the
//! last bits differ between the two: each fixture section holds one variant per processor kind it was blessed
//! on (`"convnet": {"avx2": {..}, "avx512": {..}}`), and on a kind with no variant the bit-exact checks are
//! skipped with a note rather than failed. Blessing writes only this processor's variants.
//!
//! `tests/fixtures/sequential_v1.safetensors` is a model file written by the format-1 writer of this
//! version; `a_model_file_of_format_v1_loads_forever` checks that every later kerust still loads it.
//!
//! Regenerate (after an intended change of numbers, reviewing the diff): `KERUST_BLESS=1 cargo test --test
//! golden_sequential`. Blessing never rewrites the committed v1 model file, only writes it when it is missing.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use kerust::autodiff::Tensor;
use kerust::callbacks::{CSVLogger, EarlyStopping, History, Logs};
use kerust::layers::{BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use kerust::models::{load_model_from_bytes, Model, Sequential};
use kerust::optimizers::Adam;
use ndarray::{Array1, Array2, Array4, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden_sequential.json");
const V1_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sequential_v1.safetensors");
const BLESS_HINT: &str = "if the change of numbers is intended, regenerate with \
     `KERUST_BLESS=1 cargo test --test golden_sequential` and review the fixture's diff";

/// The tests of this binary run in parallel and bless their own sections of one JSON file.
static FIXTURE_LOCK: Mutex<()> = Mutex::new(());

fn blessing() -> bool {
    std::env::var("KERUST_BLESS").is_ok_and(|v| v == "1")
}

/// The kind of matrix-product kernel this processor runs: the same test of gemm's dispatch (avx512f, else
/// fma) and of kerust's own AVX2 window kernels.
fn cpu_tag() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "other"
}

// ---- Fingerprints ----------------------------------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A tensor's shape (u64 LE each) then its values (f32 LE), so that a reshape changes the hash too.
fn tensor_bytes(t: &Tensor, out: &mut Vec<u8>) {
    out.extend((t.ndim() as u64).to_le_bytes());
    out.extend(t.shape().iter().flat_map(|&d| (d as u64).to_le_bytes()));
    out.extend(t.iter().flat_map(|v| v.to_le_bytes()));
}

fn tensor_sha(t: &Tensor) -> String {
    let mut bytes = Vec::new();
    tensor_bytes(t, &mut bytes);
    sha256_hex(&bytes)
}

fn weights_sha(m: &Model) -> String {
    let weights = m.get_weights();
    let mut bytes = (weights.len() as u64).to_le_bytes().to_vec();
    weights.iter().for_each(|w| tensor_bytes(w, &mut bytes));
    sha256_hex(&bytes)
}

fn bits<'a>(values: impl IntoIterator<Item = &'a f32>) -> Value {
    values.into_iter().map(|v| v.to_bits()).collect()
}

/// Logs as `{name: bits}`, with the names in their order (the order is what a user sees printed).
fn logs_json(logs: &Logs) -> Value {
    let values: Map<String, Value> = logs.iter().map(|(k, v)| (k.to_owned(), json!(v.to_bits()))).collect();
    json!({ "keys": logs.iter().map(|(k, _)| k).collect::<Vec<_>>(), "values": values })
}

fn history_json(h: &History) -> Value {
    let values: Map<String, Value> = h.history.iter().map(|(k, v)| (k.clone(), bits(v))).collect();
    json!({ "keys": h.keys().collect::<Vec<_>>(), "epoch": h.epoch, "values": values })
}

/// Predictions: shape, SHA-256 and the first values in the clear (to see how far off a mismatch is).
fn predictions_json(p: &Tensor) -> Value {
    json!({ "shape": p.shape(), "sha256": tensor_sha(p), "head": bits(p.iter().take(8)) })
}

/// The fingerprints every scenario shares, taken at its end.
fn model_json(m: &Model) -> Value {
    let file = m.to_bytes().expect("to_bytes");
    json!({
        "summary": m.summary_string(),
        "count_params": m.count_params(),
        "epochs_run": m.epochs_run(),
        "weights_sha256": weights_sha(m),
        "model_file_len": file.len(),
        "model_file_sha256": sha256_hex(&file),
    })
}

// ---- The fixture: bless or compare -----------------------------------------------------------------------

fn read_fixture() -> Option<Value> {
    let text = std::fs::read_to_string(FIXTURE).ok()?;
    Some(serde_json::from_str(&text).expect("golden_sequential.json is valid JSON"))
}

/// Writes `section` into the fixture as this processor kind's variant (other sections and kinds kept).
fn bless(name: &str, mut section: Value) {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut root = read_fixture().unwrap_or_else(|| json!({}));
    root["_about"] = json!(
        "Golden fingerprints of Sequential (tests/golden_sequential.rs), one variant per processor kind. f32 \
         values are stored as their u32 bit patterns. Regenerate with KERUST_BLESS=1 cargo test --test \
         golden_sequential"
    );
    section["cpu"] = json!(cpu_tag());
    if !root[name].is_object() {
        root[name] = json!({});
    }
    root[name][cpu_tag()] = section;
    let text = serde_json::to_string_pretty(&root).unwrap() + "\n";
    std::fs::write(FIXTURE, text).expect("write golden_sequential.json");
    eprintln!("blessed section `{name}` of {FIXTURE} (cpu {})", cpu_tag());
}

/// The processor kinds section `name` has variants for.
fn kinds(section: &Value) -> Vec<&str> {
    section.as_object().map_or_else(Vec::new, |o| o.keys().map(String::as_str).collect())
}

/// This processor kind's variant of the fixture's section `name`, or `None` (with a note) when it has none.
fn expected(name: &str) -> Option<Value> {
    let root = read_fixture().unwrap_or_else(|| panic!("{FIXTURE} is missing; {BLESS_HINT}"));
    let section = root.get(name).unwrap_or_else(|| panic!("no section `{name}` in {FIXTURE}; {BLESS_HINT}"));
    if let Some(variant) = section.get(cpu_tag()) {
        return Some(variant.clone());
    }
    eprintln!(
        "note: golden `{name}` was made on {:?} processors and this one is `{}`: its matrix products run other \
         kernels, so the bit-exact comparison is skipped",
        kinds(section),
        cpu_tag()
    );
    None
}

/// Every leaf of a JSON value under its path (`history.values.loss[2]`), objects by key, arrays in order.
fn flatten(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, format!("{path}[{i}]"), out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

/// Fields in the order training produces them, so that the first difference reported is the earliest one
/// (a changed loss at epoch 0 explains the changed weights, not the other way round).
fn chronological_rank(path: &str) -> usize {
    const ORDER: &[&str] = &[
        "summary",
        "initial_weights_sha256",
        "seed",
        "epochs_run",
        "inputs",
        "history",
        "train_on_batch",
        "csv_log",
        "early_stopping",
        "evaluate",
        "evaluate_weighted",
        "predict",
        "continued_history",
        "model",
    ];
    let head = path.split(['.', '[']).next().unwrap_or(path);
    ORDER.iter().position(|p| head == *p || (head.starts_with(p) && *p == "summary")).unwrap_or(ORDER.len())
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        // Bit patterns are unreadable: show the float too (meaningless for the few plain integers).
        Some(Value::Number(n)) => match n.as_u64().and_then(|b| u32::try_from(b).ok()) {
            Some(b) => format!("{b} (as f32 bits: {:e})", f32::from_bits(b)),
            None => n.to_string(),
        },
        Some(Value::String(s)) if s.contains('\n') => format!("\n{s}"),
        Some(other) => other.to_string(),
    }
}

/// Panics naming the first differing field (and how many differ) if `got` is not the fixture's `want`.
fn compare(name: &str, want: &Value, got: &Value) {
    let (mut w, mut g) = (Vec::new(), Vec::new());
    flatten(want, String::new(), &mut w);
    flatten(got, String::new(), &mut g);
    w.retain(|(k, _)| k != "cpu");
    let (wm, gm): (BTreeMap<_, _>, BTreeMap<_, _>) =
        (w.iter().map(|(k, v)| (k, v)).collect(), g.iter().map(|(k, v)| (k, v)).collect());
    let mut differing: Vec<&String> = w.iter().map(|(k, _)| k).filter(|k| wm.get(k) != gm.get(k)).collect();
    differing.extend(g.iter().map(|(k, _)| k).filter(|k| !wm.contains_key(k)));
    differing.sort_by_key(|k| chronological_rank(k)); // stable: document order within a rank
    if let Some(first) = differing.first() {
        panic!(
            "golden `{name}` differs from today's numbers: first differing field `{first}`:\n  fixture: {}\n  now:     {}\n\
             {} field(s) differ: {:?}\n{BLESS_HINT}",
            show(wm.get(*first).copied()),
            show(gm.get(*first).copied()),
            differing.len(),
            differing.iter().take(20).collect::<Vec<_>>(),
        );
    }
}

/// Blesses the scenario, or compares it with the fixture.
fn check(name: &str, got: Value) {
    if blessing() {
        bless(name, got);
    } else if let Some(want) = expected(name) {
        compare(name, &want, &got);
    }
}

// ---- Data ------------------------------------------------------------------------------------------------

/// Ten classes of 784 features: noise in [0, 0.5), plus 0.5 on the class's own band of 78 features.
fn tutorial_data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array2::zeros((n, 784));
    let mut y = Array2::zeros((n, 10));
    for i in 0..n {
        let class = (i * 7 + 3) % 10;
        for j in 0..784 {
            x[[i, j]] = rng.random_range(0.0..0.5) + if j / 78 == class { 0.5 } else { 0.0 };
        }
        y[[i, class]] = 1.0;
    }
    (x, y)
}

/// 8x8 one-channel images of four classes: the brightest quadrant, with noise.
fn quadrant_images(n: usize, seed: u64) -> (Array4<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = Array4::zeros((n, 8, 8, 1));
    let mut y = Array2::zeros((n, 4));
    for i in 0..n {
        let q = (i * 3 + 1) % 4;
        for r in 0..8 {
            for c in 0..8 {
                let inside = (r / 4) * 2 + c / 4 == q;
                x[[i, r, c, 0]] = if inside { 0.6 } else { 0.1 } + rng.random_range(0.0..0.4);
            }
        }
        y[[i, q]] = 1.0;
    }
    (x, y)
}

/// Five features, the label (integer, sparse) the argmax of the first three.
fn sparse_data(n: usize, seed: u64) -> (Array2<f32>, Array1<u8>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, 5), |_| rng.random_range(-1.0f32..1.0));
    let y = x
        .axis_iter(Axis(0))
        .map(|row| (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u8)
        .collect();
    (x, y)
}

// ---- Scenarios -------------------------------------------------------------------------------------------

/// The tutorial's MLP (README, `examples/mnist.rs`) on MNIST-shaped synthetic data.
#[test]
fn golden_tutorial_mlp() {
    let (x, y) = tutorial_data(256, 11);
    let (x_test, y_test) = tutorial_data(64, 12);
    let mut m = Sequential::new();
    m.set_seed(1);
    m.add(Dense::new(25).activation("sigmoid").input_shape([784])).unwrap();
    m.add(Dense::new(10).activation("softmax")).unwrap();
    let summary_before = m.summary_string();
    let initial_weights = weights_sha(&m);
    m.compile("categorical_crossentropy", "sgd", ["accuracy"]).unwrap();
    let history = m.fit(&x, &y).batch_size(32).epochs(3).validation_split(0.2).verbose(0).run().unwrap();
    let evaluate = m.evaluate(&x_test, &y_test).unwrap();
    let predict = m.predict(&x_test).unwrap();
    check(
        "tutorial_mlp",
        json!({
            "summary_before_fit": summary_before,
            "initial_weights_sha256": initial_weights,
            "history": history_json(&history),
            "evaluate": logs_json(&evaluate),
            "predict": predictions_json(&predict),
            "model": model_json(&m),
        }),
    );
}

/// A small convnet through `Input`, Conv2D, BatchNormalization, MaxPooling2D, Dropout and Flatten, trained
/// with Adam, sample weights, a validation split and two callbacks (EarlyStopping, CSVLogger).
#[test]
fn golden_convnet_with_sample_weight_and_callbacks() {
    let (x, y) = quadrant_images(128, 21);
    let (x_test, y_test) = quadrant_images(32, 22);
    let weights = Array1::from_shape_fn(128, |i| 0.5 + (i % 3) as f32 * 0.5);
    let mut m = Sequential::new();
    m.set_seed(2);
    m.add(Input::new([8, 8, 1])).unwrap();
    m.add(Conv2D::new(4, 3).activation("relu")).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Dropout::new(0.25)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(4).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", Adam::new().learning_rate(0.01), ["accuracy"]).unwrap();

    let csv_path = std::env::temp_dir().join(format!("kerust-golden-{}.csv", std::process::id()));
    let mut stop = EarlyStopping::new().monitor("val_loss").patience(1);
    let history = m
        .fit(&x, &y)
        .batch_size(16)
        .epochs(2)
        .validation_split(0.25)
        .sample_weight(&weights)
        .callback_ref(&mut stop)
        .callback(CSVLogger::new(&csv_path))
        .verbose(0)
        .run()
        .unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    std::fs::remove_file(&csv_path).ok();

    let evaluate = m.evaluate(&x_test, &y_test).unwrap();
    let test_weights = Array1::from_shape_fn(32, |i| 1.0 + (i % 2) as f32);
    let evaluate_weighted = m.evaluate_weighted(&x_test, &y_test, &test_weights).unwrap();
    let predict = m.predict(&x_test).unwrap();
    check(
        "convnet",
        json!({
            "history": history_json(&history),
            "csv_log": csv,
            "early_stopping": {
                "best": stop.best().to_bits(),
                "best_epoch": stop.best_epoch(),
                "stopped_epoch": stop.stopped_epoch(),
                "wait": stop.wait(),
            },
            "evaluate": logs_json(&evaluate),
            "evaluate_weighted": logs_json(&evaluate_weighted),
            "predict": predictions_json(&predict),
            "model": model_json(&m),
        }),
    );
}

/// A model without an input shape, built from the first `train_on_batch`'s data, trained batch by batch with
/// RMSprop on sparse integer labels, then evaluated.
#[test]
fn golden_lazy_model_train_on_batch() {
    let (x, y) = sparse_data(60, 31);
    let (x_test, y_test) = sparse_data(30, 32);
    let mut m = Sequential::new().with_name("lazy");
    m.set_seed(3);
    m.add(Dense::new(16).activation("relu")).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    let summary_unbuilt = m.summary_string();
    m.compile("sparse_categorical_crossentropy", "rmsprop", ["accuracy"]).unwrap();
    // No Dropout here: `set_seed` does not reseed the generator `train_on_batch` draws from before a first
    // `fit` (it comes from the seed of `Sequential::new`), so dropout would not be reproducible.
    let steps: Vec<Value> = (0..5)
        .map(|b| {
            let rows = b * 12..(b + 1) * 12;
            logs_json(
                &m.train_on_batch(x.slice(ndarray::s![rows.clone(), ..]), y.slice(ndarray::s![rows]))
                    .unwrap(),
            )
        })
        .collect();
    let evaluate = m.evaluate(&x_test, &y_test).unwrap();
    let predict = m.predict(&x_test).unwrap();
    check(
        "lazy_train_on_batch",
        json!({
            "summary_unbuilt": summary_unbuilt,
            "train_on_batch": steps,
            "evaluate": logs_json(&evaluate),
            "predict": predictions_json(&predict),
            "model": model_json(&m),
        }),
    );
}

// ---- A model file of format version 1 --------------------------------------------------------------------

/// Data of the v1 model, from a formula (no generator, so nothing outside this file can change it).
fn v1_data(n: usize, offset: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 6), |(i, j)| (((i + offset) * 7 + j * 5) % 13) as f32 / 13.0 - 0.4);
    let y = Array2::from_shape_fn((n, 3), |(i, c)| f32::from((i + offset) % 3 == c));
    (x, y)
}

/// The model of the v1 file: small, compiled with Adam (so the file holds optimizer state), with Dropout
/// (so the training seed and epoch count matter), trained two epochs.
fn write_v1_file(path: &Path) {
    let (x, y) = v1_data(48, 0);
    let mut m = Sequential::new().with_name("v1_model");
    m.set_seed(42);
    m.add(Dense::new(8).activation("relu").input_shape([6])).unwrap();
    m.add(Dropout::new(0.2)).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", Adam::new().learning_rate(0.01), ["accuracy"]).unwrap();
    m.fit(&x, &y).batch_size(16).epochs(2).verbose(0).run().unwrap();
    m.save(path).unwrap();
    eprintln!("wrote {}", path.display());
}

/// What the v1 file gives today: predictions, summary, and one more epoch of training.
fn v1_observed(bytes: &[u8], inputs: &Array2<f32>) -> Value {
    let mut m = load_model_from_bytes(bytes).expect("the v1 model file loads");
    let predict = m.predict(inputs).unwrap();
    let summary = m.summary_string();
    let epochs_run = m.epochs_run();
    let (x, y) = v1_data(48, 5);
    let history = m.fit(&x, &y).batch_size(16).epochs(1).verbose(0).run().expect("training continues");
    json!({
        "file_sha256": sha256_hex(bytes),
        "summary": summary,
        "seed": m.seed(),
        "epochs_run": epochs_run,
        "inputs": { "shape": inputs.shape(), "bits": bits(inputs.iter()) },
        "predict": { "shape": predict.shape(), "bits": bits(predict.iter()) },
        "continued_history": history_json(&history),
    })
}

fn floats_from_bits(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|b| f32::from_bits(b.as_u64().unwrap() as u32)).collect()
}

#[test]
fn a_model_file_of_format_v1_loads_forever() {
    let path = Path::new(V1_FILE);
    if blessing() {
        // Only ever written when missing: once committed, this file is the format's record and must stay.
        if !path.exists() {
            write_v1_file(path);
        }
        let inputs = v1_data(4, 100).0;
        bless("v1_file", v1_observed(&std::fs::read(path).unwrap(), &inputs));
        return;
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{V1_FILE}: {e}; {BLESS_HINT}"));
    let root = read_fixture().unwrap_or_else(|| panic!("{FIXTURE} is missing; {BLESS_HINT}"));
    // This kind's variant, else any other (its predictions are then compared to rounding).
    let section = &root["v1_file"];
    let want = section
        .get(cpu_tag())
        .or_else(|| section.as_object().and_then(|o| o.values().next()))
        .unwrap_or_else(|| panic!("no variant of `v1_file` in {FIXTURE}; {BLESS_HINT}"));
    assert_eq!(sha256_hex(&bytes), want["file_sha256"], "{V1_FILE} changed: it must not be regenerated");
    let shape: Vec<usize> = serde_json::from_value(want["inputs"]["shape"].clone()).unwrap();
    let inputs =
        Array2::from_shape_vec((shape[0], shape[1]), floats_from_bits(&want["inputs"]["bits"])).unwrap();
    let got = v1_observed(&bytes, &inputs);

    // On any processor: it loads, describes itself the same, and trains on (finite losses).
    assert_eq!(got["summary"], want["summary"], "summary of the v1 model");
    assert_eq!(got["seed"], want["seed"]);
    assert_eq!(got["epochs_run"], want["epochs_run"]);
    assert_eq!(got["predict"]["shape"], want["predict"]["shape"]);
    let loss = floats_from_bits(&got["continued_history"]["values"]["loss"]);
    assert!(loss.len() == 1 && loss[0].is_finite(), "one more epoch trains: {loss:?}");

    if want["cpu"] == cpu_tag() {
        let mut want = want.clone();
        want.as_object_mut().unwrap().remove("cpu");
        compare("v1_file", &want, &got);
    } else {
        // Other matrix kernels: the same predictions to rounding.
        eprintln!(
            "note: the v1 fixture was made on a `{}` processor and this one is `{}`: predictions are compared \
             to 1e-6",
            want["cpu"].as_str().unwrap_or("?"),
            cpu_tag()
        );
        let (g, w) = (floats_from_bits(&got["predict"]["bits"]), floats_from_bits(&want["predict"]["bits"]));
        for (i, (g, w)) in g.iter().zip(&w).enumerate() {
            assert!((g - w).abs() <= 1e-6, "v1 prediction {i}: now {g}, fixture {w}");
        }
    }
}
