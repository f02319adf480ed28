//! Generated model files: whole graph models (branches, merges, shared layers) and `Sequential` stacks built
//! from every layer kind kerust has, compiled with every optimizer, often trained a step so that the file
//! carries optimizer state of exactly the shapes the weights have; then, now and then, extreme settings
//! written into the config (huge windows and dilations, `iterations` near `i64::MAX`, ...) with the checksum
//! recomputed. The builders refuse some extremes, so they are written into the file, where the loader must.
use kerust::layers::pooling::{Average as AvgPool, Max as MaxPool};
use kerust::layers::{
    Activation, Add, Average, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten,
    GlobalPooling2D, Input, Layer, Maximum, Minimum, Multiply, Pooling2D, Rescaling, Reshape, Subtract,
};
use kerust::losses::{BinaryCrossentropy, Huber};
use kerust::models::{Compile, Graph, LayerRef, Model, Sequential, SymbolicTensor};
use kerust::optimizers::{Adagrad, Adam, AdamW, RMSprop, SGD};
use ndarray::{ArrayD, Dimension, IxDyn};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::ModelFile;

const ACTIVATIONS: [&str; 6] = ["relu", "sigmoid", "tanh", "softmax", "linear", "elu"];

fn activation(rng: &mut StdRng) -> &'static str {
    ACTIVATIONS[rng.random_range(0..ACTIVATIONS.len())]
}

/// A single-input layer that fits a tensor of `shape` (no batch axis).
fn layer_for(shape: &[usize], rng: &mut StdRng) -> Box<dyn Layer> {
    let common = |rng: &mut StdRng| -> Box<dyn Layer> {
        match rng.random_range(0..4) {
            0 => Box::new(Dropout::new([0.0, 0.25, 0.5, 0.9][rng.random_range(0..4)])),
            1 => Box::new(Activation::new(activation(rng))),
            2 => Box::new(Rescaling::new([0.5, 2.0, -1.0, 1.0 / 255.0][rng.random_range(0..4)]).offset(0.1)),
            _ => Box::new(
                BatchNormalization::new()
                    .axis([-1, -1, 1, 2, 3][rng.random_range(0..5)])
                    .momentum([0.99, 0.5, 0.0][rng.random_range(0..3)])
                    .epsilon([1e-3, 1e-7][rng.random_range(0..2)])
                    .center(rng.random_bool(0.8))
                    .scale(rng.random_bool(0.8)),
            ),
        }
    };
    let size = |rng: &mut StdRng| (rng.random_range(1..4usize), rng.random_range(1..4usize));
    let padding = |rng: &mut StdRng| if rng.random_bool(0.5) { "same" } else { "valid" };
    match shape.len() {
        3 => match rng.random_range(0..10) {
            0..=2 => Box::new(
                Conv2D::new(rng.random_range(1..5), size(rng))
                    .strides(size(rng))
                    .padding(padding(rng))
                    .dilation_rate(if rng.random_bool(0.2) { (2, 1) } else { (1, 1) })
                    .activation(activation(rng))
                    .use_bias(rng.random_bool(0.8)),
            ),
            3 => Box::new(Pooling2D::<MaxPool>::new(size(rng)).strides(size(rng)).padding(padding(rng))),
            4 => Box::new(Pooling2D::<AvgPool>::new(size(rng)).padding(padding(rng))),
            5 if rng.random_bool(0.5) => {
                Box::new(GlobalPooling2D::<MaxPool>::new().keepdims(rng.random_bool(0.3)))
            }
            5 => Box::new(GlobalPooling2D::<AvgPool>::new().keepdims(rng.random_bool(0.3))),
            6 => Box::new(Flatten::new()),
            7 => Box::new(Reshape::from_slice(&[(shape[0] * shape[1]) as i64, -1])),
            _ => common(rng),
        },
        1 => match rng.random_range(0..6) {
            0..=2 => Box::new(
                Dense::new(rng.random_range(1..7))
                    .activation(activation(rng))
                    .use_bias(rng.random_bool(0.8))
                    .kernel_initializer(["glorot_uniform", "he_normal", "zeros"][rng.random_range(0..3)]),
            ),
            3 => Box::new(Reshape::from_slice(&[1, -1, 1])),
            _ => common(rng),
        },
        _ => match rng.random_range(0..4) {
            0 => Box::new(Flatten::new()),
            1 => Box::new(Dense::new(rng.random_range(1..5)).activation(activation(rng))),
            2 => Box::new(Reshape::from_slice(&[-1])),
            _ => common(rng),
        },
    }
}

/// A merge layer, by number.
fn merge(kind: usize) -> Box<dyn Layer> {
    match kind {
        0 => Box::new(Add::new()),
        1 => Box::new(Subtract::new()),
        2 => Box::new(Multiply::new()),
        3 => Box::new(Average::new()),
        4 => Box::new(Maximum::new()),
        5 => Box::new(Minimum::new()),
        _ => Box::new(Concatenate::new(-1)),
    }
}

/// The number of elements of `shape`, saturating (a loaded file's shape may overflow).
pub fn elements(shape: &[usize]) -> usize {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX)
}

fn input_shape(rng: &mut StdRng) -> Vec<usize> {
    if rng.random_bool(0.5) {
        vec![rng.random_range(1..7), rng.random_range(1..7), rng.random_range(1..4)]
    } else {
        vec![rng.random_range(1..7)]
    }
}

/// A graph model: one or two inputs, a few layers on random earlier tensors, merges of tensors that fit,
/// shared layers called again; its outputs are the tensors nothing consumes. `None` if the draw makes no
/// model (the caller draws again).
fn graph_model(rng: &mut StdRng, seed: u64) -> Option<Model> {
    let mut g = Graph::with_seed(seed);
    let mut tensors: Vec<(SymbolicTensor, Vec<usize>, bool)> = Vec::new(); // (tensor, shape, consumed)
    let mut inputs = Vec::new();
    let shape = input_shape(rng);
    let t = g.input(Input::new(&shape)).ok()?;
    inputs.push(t);
    tensors.push((t, shape, false));
    // A second input, sometimes made after layers of the first: it then stands after them in the layer list.
    let steps = rng.random_range(1..9);
    let second_at = if rng.random_bool(0.25) { Some(rng.random_range(0..steps)) } else { None };
    let mut shared: Vec<(LayerRef, Vec<usize>)> = Vec::new();
    // Layers made before the layers called first, and called later: the order of the model's layers is then
    // not the order of the calls, which a file must keep too.
    let mut early: Vec<LayerRef> = Vec::new();
    for _ in 0..rng.random_range(0..3) {
        let layer: Box<dyn Layer> = match rng.random_range(0..3) {
            0 => Box::new(Activation::new(activation(rng))),
            1 => Box::new(Dropout::new(0.5)),
            _ => Box::new(Rescaling::new(0.5)),
        };
        early.push(g.layer_boxed(layer).ok()?);
    }
    for step in 0..steps {
        if second_at == Some(step) {
            let shape =
                if rng.random_bool(0.5) { tensors[tensors.len() - 1].1.clone() } else { input_shape(rng) };
            let t = g.input(Input::new(&shape)).ok()?;
            inputs.push(t);
            tensors.push((t, shape, false));
        }
        // Mostly the newest tensor, sometimes an older one: branches.
        let i = if rng.random_bool(0.6) { tensors.len() - 1 } else { rng.random_range(0..tensors.len()) };
        let (t, shape) = (tensors[i].0, tensors[i].1.clone());
        let op = rng.random_range(0..10);
        let result = if op < 2 {
            // A merge with another tensor of a fitting shape.
            let kind = rng.random_range(0..7);
            let partner = (0..tensors.len()).filter(|&j| j != i).find(|&j| {
                let s = &tensors[j].1;
                if kind == 6 {
                    s.len() == shape.len() && s[..s.len() - 1] == shape[..shape.len() - 1]
                } else {
                    *s == shape
                }
            });
            match partner {
                Some(j) => {
                    let r = g.apply(merge(kind), [t, tensors[j].0]);
                    if r.is_ok() {
                        tensors[j].2 = true;
                    }
                    r
                }
                None => continue,
            }
        } else if op == 3 && !early.is_empty() {
            let layer = early.remove(rng.random_range(0..early.len()));
            g.apply(layer, t)
        } else if op == 2 {
            // A shared layer, called again on a tensor of its first call's shape.
            match shared.iter().find(|(_, s)| *s == shape) {
                Some((layer, _)) => g.apply(*layer, t),
                None => continue,
            }
        } else {
            let layer = layer_for(&shape, rng);
            let Ok(layer) = g.layer_boxed(layer) else { continue };
            let r = g.apply(layer, t);
            if r.is_ok() && rng.random_bool(0.3) {
                shared.push((layer, shape.clone()));
            }
            r
        };
        let Ok(out) = result else { continue };
        let out_shape = g.shape(out).ok()?.to_vec();
        if elements(&out_shape) > 4096 {
            return None;
        }
        tensors[i].2 = true;
        tensors.push((out, out_shape, false));
    }
    let outputs: Vec<SymbolicTensor> =
        tensors.iter().filter(|(t, _, used)| !used && !inputs.contains(t)).map(|(t, _, _)| *t).collect();
    if outputs.is_empty() || outputs.len() > 3 {
        return None;
    }
    Model::new(g, inputs, outputs).ok()
}

/// A `Sequential` stack of layers that fit the shape before them.
fn sequential_model(rng: &mut StdRng, seed: u64) -> Option<Model> {
    let mut m = Sequential::new();
    m.set_seed(seed);
    let mut shape = input_shape(rng);
    m.add(Input::new(&shape)).ok()?;
    for _ in 0..rng.random_range(1..7) {
        if m.add_boxed(layer_for(&shape, rng)).is_ok() {
            shape = m.output_shape()?.to_vec();
        }
    }
    if m.layers().is_empty() || elements(&shape) > 4096 {
        return None;
    }
    Some(m.into())
}

/// A compile setting with every optimizer and a loss for every output.
fn compile(model: &mut Model, rng: &mut StdRng) -> bool {
    let lr = [0.01f32, 0.1, 1e-4][rng.random_range(0..3)];
    let mut c = match rng.random_range(0..6) {
        0 => Compile::new(
            SGD::new().learning_rate(lr).momentum([0.0, 0.9][rng.random_range(0..2)]).nesterov(rng.random()),
        ),
        1 => Compile::new(Adam::new().learning_rate(lr).amsgrad(rng.random())),
        2 => Compile::new(AdamW::new().learning_rate(lr).weight_decay(0.01).amsgrad(rng.random())),
        3 => Compile::new(
            RMSprop::new()
                .learning_rate(lr)
                .centered(rng.random())
                .momentum([0.0, 0.5][rng.random_range(0..2)]),
        ),
        4 => Compile::new(Adagrad::new().learning_rate(lr).initial_accumulator_value(0.1)),
        _ => Compile::new("adam"),
    };
    let outputs: Vec<String> = model.output_names().iter().map(|s| s.to_string()).collect();
    c = match rng.random_range(0..5) {
        0 => c.loss("mse"),
        1 => c.loss("mae"),
        2 => c.loss(Huber::new()),
        3 => c.loss(BinaryCrossentropy::new().label_smoothing(0.1)),
        _ => c.loss("categorical_crossentropy"),
    };
    if outputs.len() > 1 && rng.random_bool(0.5) {
        c = c.loss_weight(outputs[0].as_str(), 0.5).output_loss(outputs[outputs.len() - 1].as_str(), "mse");
    }
    if rng.random_bool(0.3) {
        c = c.metrics(["mae"]);
    }
    model.compile_with(c).is_ok()
}

/// One batch of two samples for each of the model's inputs, deterministic.
pub fn inputs_for(model: &Model) -> Option<Vec<ArrayD<f32>>> {
    model
        .input_shapes()
        .iter()
        .map(|shape| {
            // Big enough for the scratch of a convolution on a big image to be found.
            let n = elements(shape);
            if n == 0 || n > 1 << 24 {
                return None;
            }
            let mut full = vec![2];
            full.extend_from_slice(shape);
            Some(ArrayD::from_shape_fn(IxDyn(&full), |i| {
                (i.slice().iter().sum::<usize>() % 7) as f32 / 7.0 - 0.3
            }))
        })
        .collect()
}

/// Targets for two samples: a one-hot-like pattern for each output.
pub fn targets_for(model: &Model) -> Option<Vec<ArrayD<f32>>> {
    model
        .output_shapes()
        .iter()
        .map(|shape| {
            let n = elements(shape);
            if n == 0 || n > 1 << 24 {
                return None;
            }
            let mut full = vec![2];
            full.extend_from_slice(shape);
            Some(ArrayD::from_shape_fn(IxDyn(&full), |i| f32::from(i[i.ndim() - 1] == i[0])))
        })
        .collect()
}

/// A valid generated model's file: a graph model (three in four) or a `Sequential` stack, compiled or not,
/// trained a step or not.
fn valid_file(rng: &mut StdRng, seed: u64) -> Vec<u8> {
    for _ in 0..50 {
        let model = if rng.random_bool(0.75) { graph_model(rng, seed) } else { sequential_model(rng, seed) };
        let Some(mut model) = model else { continue };
        if rng.random_bool(0.85) && compile(&mut model, rng) && rng.random_bool(0.7) {
            if let (Some(x), Some(y)) = (inputs_for(&model), targets_for(&model)) {
                let x: Vec<&ArrayD<f32>> = x.iter().collect();
                let y: Vec<&ArrayD<f32>> = y.iter().collect();
                let _ = model.fit(x, y).epochs(1).batch_size(2).verbose(0).run();
            }
        }
        if let Ok(bytes) = model.to_bytes() {
            return bytes;
        }
    }
    panic!("no generated model in 50 draws")
}

/// Calls `f` on every layer config (`{"class_name": .., "config": {..}}`) in `v`.
fn each_layer(v: &mut Value, f: &mut impl FnMut(&str, &mut serde_json::Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(class)), true) =
                (m.get("class_name").cloned(), m.contains_key("config"))
            {
                if let Some(Value::Object(c)) = m.get_mut("config") {
                    f(&class, c);
                }
            }
            m.values_mut().for_each(|c| each_layer(c, f));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| each_layer(c, f)),
        _ => {}
    }
}

/// A huge integer setting.
fn huge(rng: &mut StdRng) -> Value {
    [
        json!(1u64 << 20),
        json!(1u64 << 31),
        json!(1u64 << 32),
        json!((1u64 << 53) + 1),
        json!(i64::MAX as u64),
        json!(u64::MAX / 2 + 1),
        json!(u64::MAX),
    ][rng.random_range(0..7)]
    .clone()
}

/// Writes one extreme setting into the config (only where a layer or setting of that kind is).
fn extreme(config: &mut Value, rng: &mut StdRng, heavy: bool) {
    let kind = rng.random_range(0..13);
    let pick = rng.random_range(0..4usize);
    let mut seen = 0usize;
    let mut patch = |class: &str, c: &mut serde_json::Map<String, Value>, rng: &mut StdRng| {
        seen += 1;
        if seen % 4 != pick % 4 && seen > 1 {
            return;
        }
        match (kind, class) {
            (0, "MaxPooling2D" | "AveragePooling2D") => {
                let n = huge(rng);
                c.insert("pool_size".into(), json!([n, if rng.random() { n.clone() } else { json!(2) }]));
                c.insert("padding".into(), json!("same"));
            }
            (1, "MaxPooling2D" | "AveragePooling2D" | "Conv2D") => {
                c.insert("strides".into(), json!([huge(rng), 1]));
            }
            (2, "Conv2D") => {
                c.insert("dilation_rate".into(), json!([huge(rng), huge(rng)]));
                c.insert("padding".into(), json!("same"));
            }
            (3, "Dropout") => {
                c.insert(
                    "rate".into(),
                    [json!(1.0), json!(0.9999999), json!(1e-45)][rng.random_range(0..3)].clone(),
                );
            }
            (4, "Rescaling") => {
                c.insert("scale".into(), json!(3.4e38));
                c.insert("offset".into(), json!(-3.4e38));
            }
            (5, "BatchNormalization") => {
                c.insert("epsilon".into(), json!(1e-45));
                c.insert("momentum".into(), json!(1.0));
            }
            (12, "Dense" | "Conv2D") => {
                // An integer setting past 2^53, where an f64 is no longer exact.
                let stddev =
                    [json!((1u64 << 53) + 1), json!(u64::MAX), json!(1e-45)][rng.random_range(0..3)].clone();
                c.insert(
                    "kernel_initializer".into(),
                    json!({"class_name": "random_normal", "config": {"mean": 0.0, "stddev": stddev}}),
                );
            }
            (6, "InputLayer") => {
                if let Some(Value::Array(s)) = c.get_mut("shape") {
                    if heavy && s.len() == 3 && rng.random_bool(0.7) {
                        // A big image: the weights of a convolution do not depend on it, its scratch does.
                        let n = [256, 1024][rng.random_range(0..2)];
                        s[0] = json!(n);
                        s[1] = json!(n);
                    } else if let Some(last) = s.last_mut() {
                        *last = huge(rng);
                    }
                }
            }
            _ => {}
        }
    };
    each_layer(config, &mut |class, c| patch(class, c, rng));
    match kind {
        7 => {
            if let Some(Value::Object(opt)) = config.pointer_mut("/compile/optimizer") {
                let v = [json!(i64::MAX), json!(i64::MAX - 1), json!(1u64 << 53), json!(u64::MAX)]
                    [rng.random_range(0..4)]
                .clone();
                // Where the iteration count sits depends on the file version: set it wherever it is.
                if opt.contains_key("iterations") {
                    opt.insert("iterations".into(), v);
                } else if let Some(Value::Object(c)) = opt.get_mut("config") {
                    c.insert("iterations".into(), v);
                }
            }
        }
        8 => {
            if let Some(Value::Object(opt)) = config.pointer_mut("/compile/optimizer") {
                let lr = [json!(3.4e38), json!(1e-45), json!(0.0)][rng.random_range(0..3)].clone();
                if opt.contains_key("learning_rate") {
                    opt.insert("learning_rate".into(), lr);
                } else if let Some(Value::Object(c)) = opt.get_mut("config") {
                    c.insert("learning_rate".into(), lr);
                }
            }
        }
        // A loss weight too small for an `f32`, or a second compile entry for an output.
        10 | 11 => {
            if let Some(Value::Array(outputs)) = config.pointer_mut("/compile/outputs") {
                if let Some(first) = outputs.first().cloned() {
                    if kind == 10 {
                        outputs[0]["loss_weight"] =
                            [json!(1e-50), json!(1e-46), json!(3.5e38)][rng.random_range(0..3)].clone();
                    } else {
                        let mut second = first;
                        second["loss_weight"] = json!(0.25);
                        outputs.push(second);
                    }
                }
            }
        }
        // A `Sequential` whose first layer declares an input shape with no axis or an axis of 0.
        9 if config["class_name"] == "Sequential" => {
            config["input_shape"] = Value::Null;
            config["build_input_shape"] = Value::Null;
            let shape =
                [json!([]), json!([0]), json!([0, 3]), json!([2, 0, 1])][rng.random_range(0..4)].clone();
            if let Some(Value::Object(first)) = config.pointer_mut("/layers/0/config") {
                first.insert("input_shape".into(), shape);
            }
        }
        _ => {}
    }
}

/// Puts a chain of `n` linear `Activation` layers after a graph model's first output: a long file whose
/// loading must stay linear in its size.
fn long_chain(config: &mut Value, n: usize) {
    let Some(old) = config.pointer("/output_layers/0/0").and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let Some(Value::Array(layers)) = config.get_mut("layers") else { return };
    let mut previous = old.clone();
    for i in 0..n {
        let name = format!("chain_{i}");
        layers.push(json!({
            "class_name": "Activation",
            "config": {"name": name, "activation": {"class_name": "linear", "config": {}}},
            "inbound_nodes": [[[previous, 0, 0]]],
        }));
        previous = name;
    }
    config["output_layers"][0] = json!([previous, 0, 0]);
    if let Some(Value::Array(outputs)) = config.pointer_mut("/compile/outputs") {
        for o in outputs.iter_mut().filter(|o| o["output"] == old.as_str()) {
            o["output"] = json!(previous);
        }
    }
}

/// A generated model's file; one time in four with one or two extreme settings written into its config. The
/// flag says whether the file is as kerust saved it (no extreme setting written in). `heavy`: inputs that take
/// long in a debug build too (a chain of thousands of layers, a big image); the short run in `cargo test`
/// leaves them out.
pub fn generated(rng: &mut StdRng, seed: u64, heavy: bool) -> (Vec<u8>, bool) {
    let bytes = valid_file(rng, seed);
    if rng.random_bool(0.75) {
        return (bytes, true);
    }
    let mut file = ModelFile::parse(&bytes);
    let mut config = file.config();
    if heavy && rng.random_range(0..250) == 0 {
        // (One input in a thousand.)
        long_chain(&mut config, if rng.random_bool(0.2) { 20_000 } else { 2_000 });
    } else {
        for _ in 0..rng.random_range(1..3) {
            extreme(&mut config, rng, heavy);
        }
    }
    file.set_config(&config);
    (file.encode(), false)
}
