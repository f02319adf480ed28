//! Keras 3's own files: `.keras` models (a zip of `config.json`, `metadata.json` and `model.weights.h5`),
//! `.weights.h5` weights, and Keras 2's legacy `.h5` weights (the files of `keras.applications`).
//!
//! [`Model::save`] and [`load_model`](super::load_model) choose this format for a path ending in `.keras`, as
//! Keras does; `save_weights`/`load_weights` for a path ending in `.weights.h5` (and `load_weights` reads a legacy
//! `.h5`). The architecture is Keras' `get_config` tree, so a model trained in Python loads here, and one saved
//! here loads in Python with `keras.saving.load_model` (wrappers nest their layers' configs as Keras' do);
//! the weights are HDF5 groups per layer path (`layers/dense/vars/0`, a wrapped layer's under its wrapper's:
//! `layers/bidirectional/forward_layer/cell/vars/0`), and a compiled model's optimizer state
//! (`optimizer/vars/0`, the step count, then each weight's slots in Keras' order) comes along, so that
//! training continues where the other side stopped.
//!
//! Every part of the file is bounded: the archive's entries and sizes ([`crate::formats::zip::ZipLimits`]),
//! the HDF5 object graph ([`crate::formats::hdf5::Limits`]), the JSON's depth (serde_json's recursion limit) and
//! the weights a config may build (no more than the HDF5 file holds).
mod compile;
mod layers;
mod masks;
mod order;
mod weights;

use serde_json::{json, Value};

use super::saving::{
    load_functional, load_sequential, FunctionalConfig, ModelConfig, NodeLayerConfig, TensorRef,
    TrainingState,
};
use super::{Kind, Model};
use crate::formats::{hdf5, zip};
use crate::models::load_options::LoadOptions;
use crate::{Error, Result};

use layers::translated_classes;

/// The most bytes of `config.json` read: a model config is kilobytes; the bound keeps a hostile archive's
/// JSON from taking the memory its parse tree would.
const MAX_CONFIG_BYTES: usize = 64 << 20;

/// Builds errors that name the file and the path inside it (`config.layers[3].config.units`).
pub(crate) struct KerasError {
    source: String,
}

impl KerasError {
    fn new(source: &str) -> Self {
        KerasError { source: source.into() }
    }

    /// An error at `path` in the file.
    pub(crate) fn at(&self, path: &str, reason: impl Into<String>) -> Error {
        let reason = reason.into();
        Error::Format {
            format: "Keras model",
            source_name: self.source.clone(),
            reason: if path.is_empty() { reason } else { format!("{path}: {reason}") },
        }
    }
}

/// The entries of a `.keras` archive.
struct Archive {
    config: Value,
    weights: hdf5::Group,
}

fn read_archive(bytes: &[u8], e: &KerasError) -> Result<Archive> {
    let entries = zip::read(bytes, &zip::ZipLimits::default())?;
    let entry = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice());
    let names = || entries.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let config = entry("config.json")
        .ok_or_else(|| e.at("", format!("the archive has no config.json (it holds: {})", names())))?;
    if config.len() > MAX_CONFIG_BYTES {
        return Err(
            e.at("config.json", format!("{} bytes; at most {MAX_CONFIG_BYTES} are read", config.len()))
        );
    }
    let config: Value =
        serde_json::from_slice(config).map_err(|err| e.at("config.json", format!("not JSON: {err}")))?;
    let weights = entry("model.weights.h5")
        .ok_or_else(|| e.at("", format!("the archive has no model.weights.h5 (it holds: {})", names())))?;
    let weights = hdf5::read(weights, &hdf5::Limits::default())?;
    Ok(Archive { config, weights })
}

/// Loads a `.keras` file's bytes.
pub(crate) fn load(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Model> {
    let e = KerasError::new(source);
    let archive = read_archive(bytes, &e)?;
    let (mut model, keras_layers) = build_model(&archive.config, &archive.weights, &e, options)?;
    weights::load_layers(&mut model, &keras_layers, &archive.weights, "model.weights.h5", &e)?;
    if options.restores_compile() {
        // Keras writes null, or `{}` for some uncompiled models, when there is nothing to compile.
        let compiled = |c: &&Value| !c.is_null() && c.as_object().is_none_or(|o| !o.is_empty());
        if let Some(cc) = archive.config.get("compile_config").filter(compiled) {
            compile::restore(&mut model, cc, &keras_layers, &archive.weights, options, &e)?;
        }
    }
    Ok(model)
}

/// Loads a legacy HDF5 model file (`model.save("model.h5")` in Keras 2, or Keras 3's legacy format): the
/// architecture of its `model_config` attribute and the weights of its `model_weights` group. The compile state
/// (`training_config`) is not read: the model comes back uncompiled.
pub(crate) fn load_legacy_h5(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Model> {
    let e = KerasError::new(source);
    let root = hdf5::read(bytes, &hdf5::Limits::default())?;
    let config = match root.attr("model_config") {
        Some(hdf5::Attr::Str(s)) => s,
        _ => {
            return Err(e.at(
                "",
                "an HDF5 file without a `model_config` attribute holds weights only: build the model in kerust and \
                 call load_weights",
            ))
        }
    };
    if config.len() > MAX_CONFIG_BYTES {
        return Err(
            e.at("model_config", format!("{} bytes; at most {MAX_CONFIG_BYTES} are read", config.len()))
        );
    }
    let config: Value =
        serde_json::from_str(config).map_err(|err| e.at("model_config", format!("not JSON: {err}")))?;
    let weights = root.group("model_weights").ok_or_else(|| e.at("", "no `model_weights` group"))?;
    // The budget counts the `model_weights` datasets: wrap them as the `layers` group `build_model` counts.
    let counted = hdf5::Group {
        attrs: Vec::new(),
        members: vec![("layers".into(), hdf5::Node::Group(weights.clone()))],
    };
    let (mut model, _) = build_model(&config, &counted, &e, options)?;
    weights::load_h5_weights(&mut model, &root, &e)?;
    Ok(model)
}

/// A layer of the file in Keras' order, with the path of its weights (`layers/dense_1`).
pub(crate) struct FileLayer {
    pub(crate) name: String,
    pub(crate) path: String,
}

/// The model of a Keras config tree, built, with its layers in Keras' order (those that own weight groups).
fn build_model(
    config: &Value,
    weights: &hdf5::Group,
    e: &KerasError,
    options: &LoadOptions,
) -> Result<(Model, Vec<FileLayer>)> {
    let class = config.get("class_name").and_then(Value::as_str).unwrap_or_default();
    let Some(inner) = config.get("config").filter(|c| c.is_object()) else {
        return Err(e.at("config", "the model has no `config` object"));
    };
    let name = inner.get("name").and_then(Value::as_str).unwrap_or("model").to_owned();
    let list = inner
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| e.at("config.layers", "the model has no `layers` list"))?;
    // A functional model's Embedding(mask_zero) masks, which Keras records as NotEqual op nodes: kerust's graph
    // propagates them itself.
    let mask_ops = if matches!(class, "Functional" | "Model") {
        masks::MaskOps::read(list, e)?
    } else {
        Default::default()
    };
    let mut parsed = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        if mask_ops.skips(i) {
            continue;
        }
        let path = format!("config.layers[{i}]");
        let layer = layers::from_keras(entry, &path, e)?;
        if layer.builtin {
            options.scope(|| layers::check(&layer, &path, e))?;
        } else if !options.has_layer(&layer.class_name) {
            return Err(e.at(
                &path,
                format!(
                    "layer class {} (`{}`) is not supported by kerust (it has {}); a custom layer must be \
                     registered to load: `LoadOptions::new().custom_layer(\"{}\", |config| ...)` with \
                     `models::load_model_with` (its constructor gets Keras' config)",
                    layer.class_name,
                    layer.name,
                    translated_classes().join(", "),
                    layer.class_name
                ),
            ));
        }
        parsed.push((layer, entry));
    }
    // Building allocates no more weights than the file holds (as the safetensors loader bounds it).
    let budget = weights::element_count(weights.group("layers"));
    let training =
        || TrainingState { seed: crate::random::model_seed(), epochs_run: 0, frozen_layers: Vec::new() };
    let source = e.source.as_str();
    let mut model = match class {
        "Sequential" => {
            let mut input_shape = None;
            let mut stack = Vec::new();
            for (layer, _) in &parsed {
                if layer.class_name == "InputLayer" {
                    if input_shape.is_some() || !stack.is_empty() {
                        return Err(e.at("config.layers", "a Sequential model has one InputLayer, first"));
                    }
                    input_shape = serde_json::from_value(layer.config.config["shape"].clone()).ok();
                } else {
                    stack.push(layer.config.clone());
                }
            }
            if input_shape.is_none() {
                input_shape = shape_of(inner.get("build_input_shape"))
                    .or_else(|| shape_of(config.get("build_config").and_then(|b| b.get("input_shape"))));
            }
            let kerust = ModelConfig {
                class_name: "Sequential".into(),
                name,
                input_shape: input_shape.clone(),
                build_input_shape: input_shape,
                layers: stack,
                compile: None,
                training: training(),
            };
            load_sequential(&kerust, budget, source, options)?
        }
        "Functional" | "Model" => {
            let mut nodes = Vec::with_capacity(parsed.len());
            let mut mask_args = Vec::new();
            for (i, (layer, entry)) in parsed.iter().enumerate() {
                let at = list.iter().position(|l| std::ptr::eq(l, *entry)).unwrap_or(i);
                let path = format!("config.layers[{at}].inbound_nodes");
                let (calls, masks) = inbound_nodes(entry.get("inbound_nodes"), &path, e, &mask_ops)?;
                mask_args.extend(masks.into_iter().map(|(n, m)| (i, n, m)));
                nodes.push(NodeLayerConfig {
                    class_name: layer.class_name.clone(),
                    config: layer.config.config.clone(),
                    inbound_nodes: calls,
                });
            }
            let output_layers = tensor_list(inner.get("output_layers"), "config.output_layers", e)?;
            let graph: Vec<masks::GraphLayer<'_>> = parsed
                .iter()
                .zip(&nodes)
                .map(|((layer, entry), n)| {
                    (layer.name.as_str(), layer.class_name.as_str(), &entry["config"], n.inbound_nodes.as_slice())
                })
                .collect();
            mask_ops.check(&graph, &mask_args, &output_layers, e)?;
            let kerust = FunctionalConfig {
                class_name: "Functional".into(),
                name,
                layers: nodes,
                input_layers: tensor_list(inner.get("input_layers"), "config.input_layers", e)?,
                output_layers,
                compile: None,
                training: training(),
            };
            load_functional(&kerust, budget, source, options)?
        }
        other => {
            return Err(e.at(
                "class_name",
                format!("model class `{other}` is not supported by kerust (it loads Sequential and Functional models)"),
            ))
        }
    };
    let sequential = matches!(model.kind, Kind::Sequential { .. });
    let mut file_layers = Vec::new();
    let mut used = std::collections::HashMap::new();
    for (layer, _) in &parsed {
        if layer.class_name == "InputLayer" && sequential {
            continue;
        }
        let path =
            format!("layers/{}", unique_name(&crate::layers::snake_case(&layer.class_name), &mut used));
        file_layers.push(FileLayer { name: layer.name.clone(), path });
    }
    for (layer, _) in &parsed {
        if !layer.trainable {
            model.get_layer_mut(&layer.name)?.set_trainable(false);
        }
    }
    Ok((model, file_layers))
}

/// Keras' `_get_unique_name`: `dense`, `dense_1`, ... per class, in the order of the model's layers.
fn unique_name(base: &str, used: &mut std::collections::HashMap<String, usize>) -> String {
    match used.get_mut(base) {
        Some(n) => {
            *n += 1;
            format!("{base}_{n}")
        }
        None => {
            used.insert(base.to_owned(), 0);
            base.to_owned()
        }
    }
}

/// `[null, 28, 28]` as the per-sample shape `[28, 28]`.
fn shape_of(v: Option<&Value>) -> Option<Vec<usize>> {
    let dims = v?.as_array()?;
    dims.iter().skip(1).map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect()
}

/// A Keras tensor reference: Keras 3's `{"class_name": "__keras_tensor__", "config": {"keras_history": [layer,
/// node, index]}}`, or Keras 2's `[layer, node, index, kwargs]`.
fn tensor_ref(v: &Value) -> Option<TensorRef> {
    let history = match v {
        Value::Object(o) => o.get("config")?.get("keras_history")?.as_array()?,
        Value::Array(a) => a,
        _ => return None,
    };
    let layer = history.first()?.as_str()?.to_owned();
    let node = usize::try_from(history.get(1)?.as_u64()?).ok()?;
    let index = usize::try_from(history.get(2)?.as_u64()?).ok()?;
    Some(TensorRef(layer, node, index))
}

fn is_tensor(v: &Value) -> bool {
    v.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__")
}

/// A layer's calls: per call, the tensors it took; and the `mask` arguments of its calls (by call), each the
/// output of one of `mask_ops`. A `training` argument is read and dropped: Keras' functional model overrides it
/// with the model call's own (`fit` trains, `predict` does not), as kerust does.
fn inbound_nodes(
    v: Option<&Value>,
    path: &str,
    e: &KerasError,
    mask_ops: &masks::MaskOps,
) -> Result<(Vec<Vec<TensorRef>>, masks::CallMasks)> {
    let Some(nodes) = v.and_then(Value::as_array) else { return Ok((Vec::new(), Vec::new())) };
    let mut out = Vec::with_capacity(nodes.len());
    let mut mask_args = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let at = format!("{path}[{n}]");
        let bad = || e.at(&at, format!("expected a call's tensors, found {node}"));
        let refs: Vec<TensorRef> = match node {
            // Keras 3: {"args": [tensor] or [[tensor, ...]], "kwargs": {...}}.
            Value::Object(o) => {
                let args = o.get("args").and_then(Value::as_array).ok_or_else(bad)?;
                if let Some(kwargs) = o.get("kwargs").and_then(Value::as_object) {
                    for (k, v) in kwargs.iter().filter(|(_, v)| !v.is_null()) {
                        let kwarg_path = format!("{at}.kwargs.{k}");
                        match k.as_str() {
                            "mask" => mask_args
                                .extend(mask_ops.mask_args(v, &kwarg_path, e)?.into_iter().map(|m| (n, m))),
                            "training" if v.is_boolean() => {}
                            _ => {
                                return Err(e.at(
                                    &kwarg_path,
                                    format!("call argument {k}={v} is not supported by kerust"),
                                ))
                            }
                        }
                    }
                }
                let tensors: Vec<&Value> = match args.as_slice() {
                    [Value::Array(list)] => list.iter().collect(),
                    list => list.iter().collect(),
                };
                if let Some(other) = tensors.iter().find(|t| !is_tensor(t)) {
                    return Err(e.at(
                        &at,
                        format!("call argument {other} is not a tensor: kerust layers take tensors only"),
                    ));
                }
                tensors.iter().map(|t| tensor_ref(t)).collect::<Option<_>>().ok_or_else(bad)?
            }
            // Keras 2: [[layer, node, index, kwargs], ...].
            Value::Array(list) => list.iter().map(tensor_ref).collect::<Option<_>>().ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        out.push(refs);
    }
    Ok((out, mask_args))
}

/// `input_layers`/`output_layers`: one `[layer, node, index]`, or a list of them.
fn tensor_list(v: Option<&Value>, path: &str, e: &KerasError) -> Result<Vec<TensorRef>> {
    let bad = || {
        e.at(path, format!("expected [layer, node, index] references, found {}", v.unwrap_or(&Value::Null)))
    };
    let list = v.and_then(Value::as_array).ok_or_else(bad)?;
    if list.first().is_some_and(Value::is_string) {
        return Ok(vec![tensor_ref(&Value::Array(list.clone())).ok_or_else(bad)?]);
    }
    list.iter().map(|t| tensor_ref(t).ok_or_else(bad)).collect()
}

impl Model {
    /// [`Model::save`] for a `.keras` path.
    pub(super) fn keras_bytes(&self) -> Result<Vec<u8>> {
        self.to_keras_bytes()
    }

    /// [`Model::save_weights`] for a `.h5` path: Keras 3's `.weights.h5` layout (with the optimizer's variables
    /// of a compiled model, as Keras writes them).
    pub(super) fn keras_weights_bytes(&self) -> Result<Vec<u8>> {
        if !self.is_built() {
            return Err(Error::NotReady("save_weights of a model that is not built".into()));
        }
        let order = order::keras_layer_order(self);
        hdf5::write(&weights::tree(self, &order)?)
    }

    /// [`Model::load_weights`] of an HDF5 file: Keras 3's `.weights.h5` (or a `.keras` file's
    /// `model.weights.h5`), or Keras 2's `.h5` weights. The optimizer's variables are not read.
    pub(super) fn load_keras_weights(&mut self, bytes: &[u8], source: &str) -> Result<()> {
        let root = hdf5::read(bytes, &hdf5::Limits::default())?;
        weights::load_h5_weights(self, &root, &KerasError::new(source))
    }

    /// The bytes of the `.keras` file [`Model::save`] writes for a path ending in `.keras`: Keras 3's format,
    /// which Python's `keras.saving.load_model` reads.
    ///
    /// ```
    /// use kerust::layers::Dense;
    /// use kerust::models::{load_model_from_bytes, Sequential};
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(2).activation("softmax").input_shape([3]))?;
    /// model.compile("categorical_crossentropy", "adam", ["accuracy"])?;
    /// let bytes = model.to_keras_bytes()?;
    /// let again = load_model_from_bytes(&bytes)?; // a zip archive: read as a .keras file
    /// assert_eq!(again.get_weights(), model.get_weights());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// A model not built yet (no input shape); an activation or layer Keras cannot name (a `leaky_relu` of
    /// another slope than Keras' 0.2); an optimizer state that does not fit the weights.
    pub fn to_keras_bytes(&self) -> Result<Vec<u8>> {
        if !self.is_built() {
            return Err(Error::NotReady(
                "saving a .keras file of a model that is not built: give it an input shape or call build first"
                    .into(),
            ));
        }
        let order = order::keras_layer_order(self);
        let mut config = self.keras_config(&order)?;
        if let Some(cc) = compile::to_keras(self)? {
            config["compile_config"] = cc;
        }
        let config = serde_json::to_vec(&config)
            .map_err(|err| Error::invalid_argument("model config", err, "not JSON"))?;
        let weights = hdf5::write(&weights::tree(self, &order)?)?;
        let metadata = json!({
            "keras_version": KERAS_VERSION,
            "date_saved": date_saved(),
            "saved_by": concat!("kerust ", env!("CARGO_PKG_VERSION")),
        });
        let metadata = metadata.to_string();
        zip::write(&[
            ("metadata.json", metadata.as_bytes()),
            ("config.json", &config),
            ("model.weights.h5", &weights),
        ])
    }

    /// Keras' config tree of the model, its layers in `order` (Keras' `model.layers`).
    fn keras_config(&self, order: &[usize]) -> Result<Value> {
        let net = &self.net;
        let batch = |s: &[usize]| {
            let mut v = vec![Value::Null];
            v.extend(s.iter().map(|&d| json!(d)));
            Value::Array(v)
        };
        let trainable = |i: usize| self.net.layers[i].name().is_none_or(|n| !self.frozen.contains_key(n));
        match &self.kind {
            Kind::Sequential { .. } => {
                let input = net.tensors[net.inputs[0]].shape.clone();
                let input_layer = crate::layers::LayerConfig {
                    class_name: "InputLayer".into(),
                    config: json!({"name": "input_layer", "shape": input}),
                };
                let mut list = vec![layers::to_keras(&input_layer, true, &[])?];
                for (i, node) in net.nodes.iter().enumerate() {
                    let shapes: Vec<&[usize]> =
                        node.inputs.iter().map(|&t| net.tensors[t].shape.as_slice()).collect();
                    list.push(layers::to_keras(&net.layers[i].config()?, trainable(i), &shapes)?);
                }
                Ok(json!({
                    "module": "keras",
                    "class_name": "Sequential",
                    "config": {"name": self.name, "trainable": true, "dtype": "float32", "layers": list,
                               "build_input_shape": batch(&input)},
                    "registered_name": null,
                    "build_config": {"input_shape": batch(&input)},
                }))
            }
            Kind::Functional => {
                let tensor = |t: usize| {
                    let (name, node, index) = net.tensor_ref(t);
                    json!({"class_name": "__keras_tensor__", "config": {"shape": batch(&net.tensors[t].shape),
                           "dtype": "float32", "keras_history": [name, node, index]}})
                };
                let mut list = Vec::with_capacity(order.len());
                for &i in order {
                    let layer = &net.layers[i];
                    let first = net.nodes_of(i).next();
                    let shapes: Vec<&[usize]> = first
                        .map(|n| n.inputs.iter().map(|&t| net.tensors[t].shape.as_slice()).collect())
                        .unwrap_or_default();
                    let mut entry = layers::to_keras(&layer.config()?, trainable(i), &shapes)?;
                    let calls: Vec<Value> = net
                        .nodes_of(i)
                        .map(|n| {
                            let args: Vec<Value> = n.inputs.iter().map(|&t| tensor(t)).collect();
                            let args = if args.len() == 1 { args } else { vec![Value::Array(args)] };
                            json!({"args": args, "kwargs": {}})
                        })
                        .collect();
                    entry["name"] = json!(layer.name());
                    entry["inbound_nodes"] = Value::Array(calls);
                    list.push(entry);
                }
                let refs = |ts: &[usize]| -> Value {
                    let r: Vec<Value> = ts
                        .iter()
                        .map(|&t| {
                            let (name, node, index) = net.tensor_ref(t);
                            json!([name, node, index])
                        })
                        .collect();
                    Value::Array(r)
                };
                Ok(json!({
                    "module": "keras.src.models.functional",
                    "class_name": "Functional",
                    "config": {"name": self.name, "trainable": true, "layers": list,
                               "input_layers": refs(&net.inputs), "output_layers": refs(&net.outputs)},
                    "registered_name": "Functional",
                }))
            }
        }
    }
}

/// The Keras version whose `.keras` format kerust writes (Keras reads `metadata.json` for it).
const KERAS_VERSION: &str = "3.15.1";

/// `2026-12-04@18:30:18`, as Keras writes `date_saved` (UTC).
fn date_saved() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}@{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Add, BatchNormalization, Concatenate, Conv2D, Dense, Flatten, Input, MaxPooling2D};
    use crate::models::{Graph, Sequential};
    use ndarray::ArrayD;

    /// Through Keras' config tree and HDF5 tree in memory (no zip or HDF5 bytes): the same model, weights and
    /// optimizer state.
    fn round_trip(model: &Model) -> Model {
        let order = order::keras_layer_order(model);
        let mut config = model.keras_config(&order).unwrap();
        config["compile_config"] = compile::to_keras(model).unwrap().unwrap();
        let tree = weights::tree(model, &order).unwrap();
        let e = KerasError::new("<test>");
        let options = LoadOptions::new();
        let (mut again, file_layers) = build_model(&config, &tree, &e, &options).unwrap();
        weights::load_layers(&mut again, &file_layers, &tree, "w", &e).unwrap();
        compile::restore(&mut again, &config["compile_config"], &file_layers, &tree, &options, &e).unwrap();
        again
    }

    fn train_once(model: &mut Model, x: &ArrayD<f32>, y: &ArrayD<f32>) {
        model.train_on_batch(x, y).unwrap();
    }

    #[test]
    fn sequential_convnet_round_trips_with_optimizer_state() {
        let mut model = Sequential::new();
        model.add(Input::new([6, 6, 1])).unwrap();
        model.add(Conv2D::new(2, 3).activation("relu")).unwrap();
        model.add(BatchNormalization::new()).unwrap();
        model.add(MaxPooling2D::new(2)).unwrap();
        model.add(Flatten::new()).unwrap();
        model.add(Dense::new(3).activation("softmax")).unwrap();
        model
            .compile("categorical_crossentropy", crate::optimizers::Adam::new().amsgrad(true), ["accuracy"])
            .unwrap();
        let x = ArrayD::from_shape_fn(vec![4, 6, 6, 1], |i| (i[1] * 7 + i[2] * 3 + i[0]) as f32 % 5.0 / 5.0);
        let y = ArrayD::from_shape_fn(vec![4, 3], |i| f32::from(u8::from(i[0] % 3 == i[1])));
        train_once(&mut model, &x, &y);
        let mut again = round_trip(&model);
        assert_eq!(again.get_weights(), model.get_weights());
        let (a, b) = (model.optimizer().unwrap(), again.optimizer().unwrap());
        assert_eq!((a.iterations(), a.config(), a.state()), (b.iterations(), b.config(), b.state()));
        // The next step is the same.
        let mut model = model;
        train_once(&mut model, &x, &y);
        train_once(&mut again, &x, &y);
        assert_eq!(again.get_weights(), model.get_weights());
    }

    /// The wrappers' weights lie where Keras keeps them (under the inner layers' groups), split between the
    /// directions as built, and come back in place.
    #[test]
    fn wrapper_weights_round_trip_in_keras_layout() {
        use crate::layers::{Bidirectional, TimeDistributed, GRU, LSTM};
        let mut model = Sequential::new();
        model.add(Input::new([4, 3])).unwrap();
        model.add(TimeDistributed::new(Dense::new(2))).unwrap();
        model.add(Bidirectional::new(LSTM::new(3).return_sequences(true))).unwrap();
        model.add(Bidirectional::new(GRU::new(2).use_bias(false)).merge_mode("sum")).unwrap();
        model.compile("mean_squared_error", "adam", []).unwrap();
        let x =
            ArrayD::from_shape_fn(vec![2, 4, 3], |i| (i[0] + 2 * i[1] + 3 * i[2]) as f32 % 4.0 / 4.0 - 0.4);
        let y = ArrayD::from_shape_fn(vec![2, 2], |i| i[1] as f32);
        train_once(&mut model, &x, &y);
        let order = order::keras_layer_order(&model);
        let tree = weights::tree(&model, &order).unwrap();
        let count = |path: &str| tree.group(path).map(|g| g.members.len());
        assert_eq!(count("layers/time_distributed/layer/vars"), Some(2));
        assert_eq!(count("layers/time_distributed/vars"), Some(0));
        assert_eq!(count("layers/bidirectional/forward_layer/cell/vars"), Some(3));
        assert_eq!(count("layers/bidirectional/backward_layer/cell/vars"), Some(3));
        assert_eq!(count("layers/bidirectional/vars"), Some(0));
        // Without biases, two weights a direction.
        assert_eq!(count("layers/bidirectional_1/forward_layer/cell/vars"), Some(2));
        assert_eq!(count("layers/bidirectional_1/backward_layer/cell/vars"), Some(2));
        let again = round_trip(&model);
        assert_eq!(again.get_weights(), model.get_weights());
        let (a, b) = (model.optimizer().unwrap(), again.optimizer().unwrap());
        assert_eq!(a.state(), b.state());
        assert_eq!(again.predict(&x).unwrap(), model.predict(&x).unwrap());
    }

    #[test]
    fn functional_model_round_trips_in_keras_layer_order() {
        let mut g = Graph::new();
        let a = g.input(Input::new([4]).name("a")).unwrap();
        let b = g.input(Input::new([4]).name("b")).unwrap();
        let hb = g.apply(Dense::new(3).name("hb"), b).unwrap();
        let ha = g.apply(Dense::new(3).name("ha"), a).unwrap();
        let s = g.apply(Add::new(), [ha, hb]).unwrap();
        let c = g.apply(Concatenate::new(-1), [s, ha]).unwrap();
        let out = g.apply(Dense::new(2).activation("softmax").name("out"), c).unwrap();
        let mut model = Model::new(g, [a, b], out).unwrap();
        model.compile("categorical_crossentropy", "rmsprop", ["accuracy"]).unwrap();
        let again = round_trip(&model);
        // Each layer's weights (the layers come back in Keras' order, not kerust's creation order).
        for layer in model.layers() {
            let name = layer.name().unwrap();
            let values = |m: &Model| -> Vec<_> {
                m.get_layer(name).unwrap().weights().iter().map(|&id| m.params().value(id).clone()).collect()
            };
            assert_eq!(values(&again), values(&model), "{name}");
        }
        let names = |m: &Model| m.layers().iter().map(|l| l.name().unwrap().to_owned()).collect::<Vec<_>>();
        // Keras' order: by depth from the output, then as a walk from the output meets them.
        let order: Vec<String> =
            order::keras_layer_order(&model).iter().map(|&i| names(&model)[i].clone()).collect();
        assert_eq!(order, ["a", "b", "ha", "hb", "add", "concatenate", "out"]);
        assert_eq!(names(&again), order);
    }
}
