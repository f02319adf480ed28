//! Structure-aware fuzzing of kerust model files, shared by the `fuzz_model_files` example (the long run, in a
//! memory-limited child process with a time limit per input) and the short seeded runs in `cargo test`
//! (`tests/hostile_files.rs`, `tests/graph_models`).
//!
//! The inputs: generated whole models (graph models with branches, merges and shared layers, and `Sequential`
//! stacks, of every layer kind, compiled with every optimizer and often trained a step, some with extreme
//! settings written into the config; see `generate.rs`); structured mutations of those and of a small corpus
//! (config, tensors, optimizer state, metadata, the checksum recomputed so the mutation reaches the loader);
//! and raw byte mutations. The oracles, for every file that loads: it saves; every number in its config saves
//! as the same setting (not rounded, not replaced by a later entry); save -> load -> save gives the same bytes,
//! the same layer order, the same weights and bit-equal predictions; a generated file as kerust saved it loads
//! and saves to its own bytes; `predict` and a training step do not panic, and a model trained a step saves a
//! file that loads.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kerust::layers::{Activation, Dense, Dropout, Flatten, Input};
use kerust::losses::{BinaryCrossentropy, Huber};
use kerust::models::{load_model_from_bytes, Model, Sequential};
use kerust::optimizers::{Adagrad, Adam, AdamW, RMSprop, SGD};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[path = "generate.rs"]
mod generate;
pub use generate::{generated, inputs_for, targets_for};

/// A safetensors file taken apart: metadata and tensors (name, dtype, shape, raw bytes), in file order.
#[derive(Clone, Debug)]
pub struct ModelFile {
    pub metadata: BTreeMap<String, String>,
    pub tensors: Vec<(String, String, Vec<usize>, Vec<u8>)>,
}

impl ModelFile {
    /// Parses a valid file (from `Sequential::to_bytes`).
    pub fn parse(bytes: &[u8]) -> ModelFile {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let data = &bytes[8 + n..];
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::new();
        for (name, v) in header {
            if name == "__metadata__" {
                for (k, s) in v.as_object().unwrap() {
                    metadata.insert(k.clone(), s.as_str().unwrap().to_string());
                }
                continue;
            }
            let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let (a, b) = (
                v["data_offsets"][0].as_u64().unwrap() as usize,
                v["data_offsets"][1].as_u64().unwrap() as usize,
            );
            tensors.push((name, v["dtype"].as_str().unwrap().to_string(), shape, data[a..b].to_vec()));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        ModelFile { metadata, tensors }
    }

    /// The `model_config` JSON.
    pub fn config(&self) -> Value {
        serde_json::from_str(&self.metadata["model_config"]).unwrap()
    }

    pub fn set_config(&mut self, config: &Value) {
        self.metadata.insert("model_config".into(), config.to_string());
    }

    /// The file's bytes with a valid checksum over the (possibly mutated) content.
    /// The file `bytes` with its config edited by `edit`, the checksum recomputed.
    pub fn with_config(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut file = ModelFile::parse(bytes);
        let mut config = file.config();
        edit(&mut config);
        file.set_config(&config);
        file.encode()
    }

    /// The error loading `bytes` gives.
    ///
    /// # Panics
    /// If the file loads.
    pub fn load_err(bytes: &[u8]) -> String {
        match load_model_from_bytes(bytes) {
            Ok(_) => panic!("the file loaded"),
            Err(e) => e.to_string(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut metadata = self.metadata.clone();
        let tensors =
            self.tensors.iter().map(|(n, _, shape, data)| (n.as_str(), shape.as_slice(), data.as_slice()));
        metadata.insert("checksum".into(), kerust::saving::checksum(&metadata, tensors));
        self.encode_raw(&metadata)
    }

    /// The bytes with `metadata` as given (no checksum recomputed).
    pub fn encode_raw(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!(metadata));
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in &self.tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.clone(),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }
}

/// The corpus: small valid model files covering every built-in layer, optimizer and loss, trained a step so
/// that they carry optimizer state. Every model is seeded, so input `i` of a run is the same bytes every time.
pub fn corpus() -> Vec<Vec<u8>> {
    let x4 = ArrayD::from_shape_fn(IxDyn(&[4, 2, 2]), |i| (i[0] + 2 * i[1] + i[2]) as f32 / 5.0);
    let y2 = Array2::from_shape_fn((4, 2), |(i, j)| f32::from(i % 2 == j)).into_dyn();
    let x3 = ArrayD::from_shape_fn(IxDyn(&[4, 3]), |i| (i[0] * 3 + i[1]) as f32 / 7.0 - 0.5);
    let y1 = ArrayD::from_shape_fn(IxDyn(&[4, 1]), |i| (i[0] % 2) as f32);
    let mut out = Vec::new();
    let fitted = |m: &mut Model, x: &ArrayD<f32>, y: &ArrayD<f32>| {
        m.fit(x, y).epochs(1).batch_size(2).verbose(0).run().unwrap();
    };

    let mut a = Sequential::new();
    a.set_seed(1);
    a.add(Flatten::new().input_shape([2, 2])).unwrap();
    a.add(Dense::new(3).activation("relu")).unwrap();
    a.add(Dropout::new(0.25)).unwrap();
    a.add(Dense::new(2).activation("softmax")).unwrap();
    a.compile("categorical_crossentropy", Adam::new().amsgrad(true), ["accuracy"]).unwrap();
    fitted(&mut a, &x4, &y2);
    out.push(a.to_bytes().unwrap());

    let mut b = Sequential::new();
    b.set_seed(2);
    b.add(Dense::new(1).input_shape([3]).kernel_initializer("he_normal")).unwrap();
    b.add(Activation::new("sigmoid")).unwrap();
    b.compile(
        BinaryCrossentropy::new().label_smoothing(0.1),
        SGD::new().momentum(0.9).nesterov(true),
        ["accuracy"],
    )
    .unwrap();
    fitted(&mut b, &x3, &y1);
    out.push(b.to_bytes().unwrap());

    let mut c = Sequential::new();
    c.set_seed(3);
    c.add(Input::new([3])).unwrap();
    c.add(Dense::new(2).activation(kerust::activations::Activation::LeakyRelu(0.2)).use_bias(false)).unwrap();
    out.push(c.to_bytes().unwrap());

    let mut d = Sequential::new();
    d.set_seed(4);
    d.add(Dense::new(4).activation("tanh")).unwrap();
    d.add(Dense::new(1)).unwrap();
    d.compile(Huber::new(), RMSprop::new().centered(true).momentum(0.5), ["mae"]).unwrap();
    out.push(d.to_bytes().unwrap());

    let mut e = Sequential::new();
    e.set_seed(5);
    e.add(Dense::new(2).input_shape([3]).bias_initializer("ones")).unwrap();
    e.add(Dense::new(1)).unwrap();
    e.compile("mse", AdamW::new().weight_decay(0.01), ["mae"]).unwrap();
    fitted(&mut e, &x3, &y1);
    out.push(e.to_bytes().unwrap());

    let mut f = Sequential::new();
    f.set_seed(6);
    f.add(Dense::new(2).input_shape([3]).activation("softmax")).unwrap();
    f.compile("sparse_categorical_crossentropy", Adagrad::new(), ["accuracy"]).unwrap();
    fitted(&mut f, &x3, &y1);
    out.push(f.to_bytes().unwrap());
    out
}

/// Values a hostile or corrupt config might hold.
fn interesting(rng: &mut StdRng) -> Value {
    const CHOICES: usize = 36;
    match rng.random_range(0..CHOICES) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(-1),
        3 => json!(2),
        4 => json!(1_000_000_000_000u64),
        5 => json!(50_000_000u64),
        6 => json!(u64::MAX),
        7 => json!(1u64 << 53),
        8 => json!(1u64 << 24 | 1),
        9 => json!(123_456_789u64),
        10 => json!(i64::MAX as u64),
        11 => json!(1.5),
        12 => json!(1e-50),
        13 => json!(0.9999999999),
        14 => json!(1e308),
        15 => json!(-0.0),
        16 => json!(true),
        17 => json!(false),
        18 => Value::Null,
        19 => json!(""),
        20 => json!("relu"),
        21 => json!([]),
        22 => json!({}),
        23 => json!([1]),
        24 => json!([0]),
        25 => json!([1u64 << 40, 1u64 << 40]),
        26 => json!("Dense"),
        27 => json!("Conv2D"),
        28 => json!(0.5),
        29 => json!(-1e-45),
        30 => json!(3.4028236e38),
        31 => json!([3]),
        32 => json!([2, 2]),
        33 => json!({"class_name": "leaky_relu", "config": {"negative_slope": 1e300}}),
        34 => json!(1e-40),
        _ => json!(rng.random_range(0..100_000u64)),
    }
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// One mutation of the config JSON.
fn mutate_config(config: &mut Value, rng: &mut StdRng) {
    let mut ps = Vec::new();
    pointers(config, String::new(), &mut ps);
    let p = ps[rng.random_range(0..ps.len())].clone();
    match rng.random_range(0..10) {
        // Replace a value.
        0..=4 => {
            if let Some(v) = config.pointer_mut(&p) {
                *v = interesting(rng);
            }
        }
        // Remove a key or an element.
        5 => {
            if let Some((parent, last)) = p.rsplit_once('/') {
                match config.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            if i < a.len() {
                                a.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // Add a key, or duplicate an element.
        6 => match config.pointer_mut(&p) {
            Some(Value::Object(m)) => {
                m.insert(
                    ["units", "rate", "input_shape", "extra", "name"][rng.random_range(0..5)].into(),
                    interesting(rng),
                );
            }
            Some(Value::Array(a)) if !a.is_empty() => {
                let i = rng.random_range(0..a.len());
                let e = a[i].clone();
                a.insert(i, e);
            }
            _ => {}
        },
        // Case 1 of issue 14: no top-level shape, the first layer declares its own, with hostile units.
        7 => {
            if let Some(top) = config.as_object_mut() {
                top.insert("input_shape".into(), Value::Null);
                top.insert("build_input_shape".into(), Value::Null);
            }
            let units = interesting(rng);
            let dim = rng.random_range(1..5u64);
            if let Some(first) = config.pointer_mut("/layers/0/config").and_then(Value::as_object_mut) {
                if first.contains_key("units") {
                    first.insert("input_shape".into(), json!([dim]));
                    first.insert("units".into(), units);
                }
            }
        }
        // Hostile optimizer state.
        8 => {
            if let Some(it) = config.pointer_mut("/compile/optimizer/iterations") {
                *it = interesting(rng);
            }
        }
        // Shuffle two layers.
        _ => {
            if let Some(Value::Array(a)) = config.pointer_mut("/layers") {
                if a.len() >= 2 {
                    let (i, j) = (rng.random_range(0..a.len()), rng.random_range(0..a.len()));
                    a.swap(i, j);
                }
            }
        }
    }
}

/// One mutation of the tensors.
fn mutate_tensors(file: &mut ModelFile, rng: &mut StdRng) {
    if file.tensors.is_empty() {
        file.tensors.push(("dense/kernel".into(), "F32".into(), vec![1], vec![0; 4]));
        return;
    }
    let i = rng.random_range(0..file.tensors.len());
    let t = &mut file.tensors[i];
    match rng.random_range(0..9) {
        0 => t.0 = format!("optimizer/{}", t.0),
        1 => t.0 = t.0.replace("kernel", "bias"),
        2 => t.0 = t.0.rsplit_once('/').map_or("x".into(), |(a, _)| a.to_string()),
        // Another shape with the same data.
        3 => {
            let n = t.3.len() / 4;
            t.2 = if rng.random_bool(0.5) { vec![n] } else { vec![1, n] };
        }
        // A bigger tensor (bounded).
        4 => {
            let n = rng.random_range(1..4096usize);
            t.2 = vec![n];
            t.3 = vec![0; 4 * n];
        }
        5 => {
            file.tensors.remove(i);
        }
        6 => {
            let mut copy = t.clone();
            copy.0.push_str("_1");
            file.tensors.push(copy);
        }
        // Extreme values: NaN, inf, denormals.
        7 => {
            let v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE / 2.0, f32::MAX]
                [rng.random_range(0..5)];
            for c in t.3.chunks_exact_mut(4) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => t.1 = ["F16", "F64", "I64", "U8", "BF16"][rng.random_range(0..5)].into(),
    }
}

/// One mutation of the metadata.
fn mutate_metadata(file: &mut ModelFile, rng: &mut StdRng) {
    match rng.random_range(0..5) {
        0 => {
            file.metadata.insert(
                "format_version".into(),
                ["0", "2", "-1", "x", "4294967296"][rng.random_range(0..5)].into(),
            );
        }
        1 => {
            file.metadata.insert(
                "format".into(),
                ["kerust.weights", "kerust.modelx", ""][rng.random_range(0..3)].into(),
            );
        }
        2 => {
            let keys: Vec<String> = file.metadata.keys().cloned().collect();
            file.metadata.remove(&keys[rng.random_range(0..keys.len())]);
        }
        3 => {
            file.metadata.insert("model_config".into(), "{".into());
        }
        _ => {
            file.metadata.insert("extra".into(), "1".into());
        }
    }
}

/// Raw byte mutations of `bytes`: flips, overwrites, truncation, insertions.
fn mutate_bytes(mut bytes: Vec<u8>, rng: &mut StdRng) -> Vec<u8> {
    for _ in 0..rng.random_range(1..8) {
        let len = bytes.len();
        match rng.random_range(0..4) {
            0 => {
                let i = rng.random_range(0..len);
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..len);
                bytes[i] = rng.random();
            }
            2 => bytes.truncate(rng.random_range(0..len)),
            _ => {
                let i = rng.random_range(0..=len);
                bytes.insert(i, rng.random());
            }
        }
        if bytes.is_empty() {
            break;
        }
    }
    bytes
}

/// One to three structured mutations of a valid file, the checksum recomputed.
fn mutate_structure(base: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut file = ModelFile::parse(base);
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..10) {
            0..=5 => {
                // (An earlier mutation may have removed or broken the config.)
                if let Some(mut config) =
                    file.metadata.get("model_config").and_then(|c| serde_json::from_str(c).ok())
                {
                    mutate_config(&mut config, rng);
                    file.set_config(&config);
                }
            }
            6..=8 => mutate_tensors(&mut file, rng),
            _ => mutate_metadata(&mut file, rng),
        }
    }
    file.encode()
}

/// The `index`-th input of the run seeded `seed`: always the same bytes. Two in five are generated models
/// as they are (some with extreme settings), one in four a generated model with structured mutations, three
/// in twenty one with byte mutations, and one in five a corpus file mutated (a quarter of those in bytes).
pub fn input(corpus: &[Vec<u8>], seed: u64, index: u64) -> Vec<u8> {
    input_case(corpus, seed, index, true).0
}

/// [`input`], and whether the bytes are a file as kerust saved it (a generated model, unchanged): loading and
/// saving it again must then give the same bytes. `heavy`: as for [`generated`].
pub fn input_case(corpus: &[Vec<u8>], seed: u64, index: u64, heavy: bool) -> (Vec<u8>, bool) {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let model_seed = seed.wrapping_add(index);
    match rng.random_range(0..20) {
        0..=7 => generated(&mut rng, model_seed, heavy),
        8..=12 => {
            let base = generated(&mut rng, model_seed, heavy).0;
            (mutate_structure(&base, &mut rng), false)
        }
        13..=15 => {
            let base = generated(&mut rng, model_seed, heavy).0;
            (mutate_bytes(base, &mut rng), false)
        }
        _ => {
            let base = &corpus[rng.random_range(0..corpus.len())];
            if rng.random_range(0..4) == 0 {
                (mutate_bytes(base.clone(), &mut rng), false)
            } else {
                (mutate_structure(base, &mut rng), false)
            }
        }
    }
}

/// What one input did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The loader refused the file.
    Rejected,
    /// The file loaded and passed every oracle.
    Loaded,
    /// The file loaded but an oracle failed (it does not save, or save -> load -> save changes it): a finding.
    Oracle(String),
}

/// The bits of every weight, so that NaNs compare too.
fn weight_bits(model: &Model) -> Vec<(Vec<usize>, Vec<u32>)> {
    model
        .get_weights()
        .iter()
        .map(|w| (w.shape().to_vec(), w.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn layer_names(model: &Model) -> Vec<String> {
    model.layers().iter().map(|l| l.name().unwrap_or("").to_string()).collect()
}

/// Predictions of every output, as bits; the error's text if `predict` refuses.
fn prediction_bits(model: &Model, x: &[ArrayD<f32>]) -> Result<Vec<(String, Vec<u32>)>, String> {
    let x: Vec<&ArrayD<f32>> = x.iter().collect();
    let out = model.predict_outputs(x).map_err(|e| e.to_string())?;
    Ok(out
        .names()
        .iter()
        .map(|n| (n.clone(), out.get(n).map_or(Vec::new(), |a| a.iter().map(|v| v.to_bits()).collect())))
        .collect())
}

/// The `model_config` of a file, if it has one that parses.
fn config_of(bytes: &[u8]) -> Option<Value> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    serde_json::from_str(header["__metadata__"]["model_config"].as_str()?).ok()
}

/// Every number in a model config, by where it is: a layer's settings by the layer's name (a reordering is
/// the layer-order oracle's), a graph model's per-output compile settings by the output's name (a file may list
/// them in any order; the model saves them in its outputs' order), the rest by JSON pointer.
fn numbers(config: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, at: String, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Number(_) => {
                out.insert(at, v.clone());
            }
            Value::Object(m) => m.iter().for_each(|(k, c)| walk(c, format!("{at}/{k}"), out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| walk(c, format!("{at}/{i}"), out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(top) = config {
        for (k, v) in top {
            if k == "layers" {
                for l in v.as_array().into_iter().flatten() {
                    let name = l["config"]["name"].as_str().unwrap_or("?");
                    walk(&l["config"], format!("layer {name}:"), &mut out);
                }
            } else if k == "compile" && v["outputs"].is_array() {
                for (c, w) in v.as_object().into_iter().flatten() {
                    if c != "outputs" {
                        walk(w, format!("/compile/{c}"), &mut out);
                    }
                }
                for o in v["outputs"].as_array().into_iter().flatten() {
                    let name = o["output"].as_str().unwrap_or("?");
                    walk(o, format!("/compile/outputs/{name}:"), &mut out);
                }
            } else {
                walk(v, format!("/{k}"), &mut out);
            }
        }
    }
    out
}

/// Whether `saved` is the setting `file` stands for: the same integer, the same number, or the `f32` whose
/// shortest decimal form `file` is (`0.001` saved as `0.0010000000474974513`).
fn same_number(file: &Value, saved: &Value) -> bool {
    if let (Some(a), Some(b)) = (file.as_u64(), saved.as_u64()) {
        return a == b;
    }
    if let (Some(a), Some(b)) = (file.as_i64(), saved.as_i64()) {
        return a == b;
    }
    let (Some(a), Some(b)) = (file.as_f64(), saved.as_f64()) else { return false };
    // An integer in the file is exact: the saved number must be it (not its nearest f64), or an `f32` setting
    // that is exactly it (2^53 saved as 9007199000000000.0) or whose shortest decimal form it is (1e12, as
    // for `0.001`).
    let x = b as f32;
    let f32_form = x.is_finite() && (f64::from(x) == b || x.to_string().parse::<f64>().is_ok_and(|d| d == b));
    let f32_is = |n: &dyn std::fmt::Display, exact: &dyn Fn(f64) -> bool| {
        f32_form && (exact(f64::from(x)) || x.to_string() == n.to_string())
    };
    if let Some(n) = file.as_u64() {
        let exact =
            |v: f64| v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) && v as u64 == n;
        return exact(b) || f32_is(&n, &exact);
    }
    if let Some(n) = file.as_i64() {
        let exact =
            |v: f64| v.fract() == 0.0 && (-9_223_372_036_854_775_808.0..0.0).contains(&v) && v as i64 == n;
        return exact(b) || f32_is(&n, &exact);
    }
    a == b || (b as f32 as f64 == b && (b as f32).to_string().parse::<f64>().is_ok_and(|d| d == a))
}

/// Runs one input through the loader and, if it loads, through the oracles (see the module's doc). `as_saved`:
/// the bytes are a file as kerust saved it, which must then load and save to the same bytes.
pub fn check(bytes: &[u8], as_saved: bool) -> Outcome {
    let mut model = match load_model_from_bytes(bytes) {
        Ok(m) => m,
        Err(e) if as_saved => return Outcome::Oracle(format!("a file kerust saved does not load: {e}")),
        Err(_) => return Outcome::Rejected,
    };
    let fail = |why: String| Outcome::Oracle(why);
    let saved = match model.to_bytes() {
        Ok(b) => b,
        Err(e) => return fail(format!("a loaded model does not save: {e}")),
    };
    // A setting the loader accepted must come out as the same number (not rounded or replaced).
    if let (Some(file), Some(out)) = (config_of(bytes), config_of(&saved)) {
        let out = numbers(&out);
        for (at, v) in numbers(&file) {
            if let Some(w) = out.get(&at) {
                if !same_number(&v, w) {
                    return fail(format!("the setting {at} = {v} loads and saves as {w}"));
                }
            }
        }
    }
    if as_saved && saved != bytes {
        let order = |b: &[u8]| -> Vec<String> {
            let config = ModelFile::parse(b).config();
            let layers = config["layers"].as_array().cloned().unwrap_or_default();
            layers.iter().map(|l| l["config"]["name"].as_str().unwrap_or("").to_string()).collect()
        };
        return fail(format!(
            "a saved file loads and saves to other bytes (layers {:?} became {:?})",
            order(bytes),
            order(&saved)
        ));
    }
    let again = match load_model_from_bytes(&saved) {
        Ok(m) => m,
        Err(e) => return fail(format!("a saved model does not load: {e}")),
    };
    match again.to_bytes() {
        Ok(b) if b == saved => {}
        Ok(_) => return fail("save, load, save gives other bytes".into()),
        Err(e) => return fail(format!("a reloaded model does not save: {e}")),
    }
    if layer_names(&model) != layer_names(&again) {
        return fail(format!(
            "the layer order changes on reload: {:?} became {:?}",
            layer_names(&model),
            layer_names(&again)
        ));
    }
    if weight_bits(&model) != weight_bits(&again) {
        return fail("get_weights differs after save and load".into());
    }
    // Predict and train on a tiny batch, if the shapes are small.
    let Some(x) = inputs_for(&model) else { return Outcome::Loaded };
    let predicted = prediction_bits(&model, &x);
    if predicted != prediction_bits(&again, &x) {
        return fail("the reloaded model predicts other values (or refuses where the model did not)".into());
    }
    if predicted.is_ok() && model.optimizer().is_some() {
        if let Some(y) = targets_for(&model) {
            let xs: Vec<&ArrayD<f32>> = x.iter().collect();
            let ys: Vec<&ArrayD<f32>> = y.iter().collect();
            if model.fit(xs, ys).epochs(1).batch_size(2).verbose(0).run().is_ok() {
                match model.to_bytes().map(|b| load_model_from_bytes(&b)) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        return fail(format!("a model trained a step saves a file that does not load: {e}"))
                    }
                    Err(e) => return fail(format!("a model trained a step does not save: {e}")),
                }
            }
        }
    }
    Outcome::Loaded
}

/// Counts of a run.
#[derive(Debug, Default)]
pub struct Stats {
    pub inputs: u64,
    pub rejected: u64,
    pub loaded: u64,
    pub oracle_failures: Vec<(u64, String)>,
    pub panics: Vec<(u64, String)>,
}

/// The message of a caught panic.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs inputs `start..end` of the run seeded `seed` (`heavy`: as for [`generated`]) in this process, catching panics (in making the input
/// too: a builder that panics is a finding). `progress` is called with each index before it runs, and `done`
/// with its outcome after (the worker process reports both, so that an abort or a hang names its input and no
/// count is lost with the worker).
pub fn run(
    corpus: &[Vec<u8>],
    seed: u64,
    heavy: bool,
    start: u64,
    end: u64,
    progress: impl FnMut(u64),
    done: impl FnMut(u64, &Result<Outcome, String>),
) -> Stats {
    run_cases(start..end, progress, done, |i| {
        let (bytes, as_saved) = input_case(corpus, seed, i, heavy);
        check(&bytes, as_saved)
    })
}

/// The loop of every fuzz mode: runs `case(i)` for each index, catching its panics, and counts the outcomes.
/// `progress` is called with each index before it runs, and `done` with its outcome after.
pub fn run_cases(
    indices: std::ops::Range<u64>,
    mut progress: impl FnMut(u64),
    mut done: impl FnMut(u64, &Result<Outcome, String>),
    case: impl Fn(u64) -> Outcome,
) -> Stats {
    let mut stats = Stats::default();
    for i in indices {
        progress(i);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(i))).map_err(panic_message);
        done(i, &outcome);
        stats.inputs += 1;
        match outcome {
            Ok(Outcome::Rejected) => stats.rejected += 1,
            Ok(Outcome::Loaded) => stats.loaded += 1,
            Ok(Outcome::Oracle(why)) => stats.oracle_failures.push((i, why)),
            Err(msg) => stats.panics.push((i, msg)),
        }
    }
    stats
}
