//! `Model::save` / [`load_model`] and `save_weights` / `load_weights`; the format is described in
//! [`crate::saving`]. A Sequential's `model_config` lists its layers; a graph model's lists each layer with the
//! tensors each of its calls took (`inbound_nodes`, Keras 2's compact form), and its inputs and outputs.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::functional::Graph;
use super::load_options::LoadOptions;
use super::{Compile, Kind, Model, Sequential};
use crate::autodiff::Tensor;
use crate::formats::atomic::write_atomic;
use crate::formats::safetensors::{decode, encode, Decoded};
use crate::layers::{layer_from_config, Input, Layer, LayerConfig};
use crate::metrics::MetricSpec;
use crate::{Error, Result};

const MODEL_FORMAT: &str = "kerust.model";
const WEIGHTS_FORMAT: &str = "kerust.weights";
const OPTIMIZER_PREFIX: &str = "optimizer/";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelConfig {
    pub(super) class_name: String,
    pub(super) name: String,
    pub(super) input_shape: Option<Vec<usize>>,
    pub(super) build_input_shape: Option<Vec<usize>>,
    pub(super) layers: Vec<LayerConfig>,
    pub(super) compile: Option<CompileConfig>,
    pub(super) training: TrainingState,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CompileConfig {
    loss: NamedConfig,
    optimizer: OptimizerConfig,
    metrics: Vec<String>,
}

/// A graph model's `model_config`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FunctionalConfig {
    pub(super) class_name: String,
    pub(super) name: String,
    pub(super) layers: Vec<NodeLayerConfig>,
    pub(super) input_layers: Vec<TensorRef>,
    pub(super) output_layers: Vec<TensorRef>,
    pub(super) compile: Option<FunctionalCompileConfig>,
    pub(super) training: TrainingState,
}

/// Keras' reference to a tensor: `[layer name, node index, tensor index]`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub(super) struct TensorRef(pub(super) String, pub(super) usize, pub(super) usize);

/// A layer of a graph model and the tensors of each of its calls.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeLayerConfig {
    pub(super) class_name: String,
    pub(super) config: serde_json::Value,
    pub(super) inbound_nodes: Vec<Vec<TensorRef>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FunctionalCompileConfig {
    optimizer: OptimizerConfig,
    outputs: Vec<OutputCompileConfig>,
}

/// One output's loss, loss weight and metrics.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputCompileConfig {
    output: String,
    loss: NamedConfig,
    /// Read strictly: a number that is no `f32` is an error, not the nearest `f32`.
    #[serde(deserialize_with = "strict_loss_weight")]
    loss_weight: f32,
    metrics: Vec<String>,
}

fn strict_loss_weight<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f32, D::Error> {
    let value = crate::formats::settings::exact_f64(d)?;
    crate::formats::settings::f32_setting("compile config", "loss_weight", value)
        .map_err(serde::de::Error::custom)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedConfig {
    name: String,
    #[serde(deserialize_with = "crate::formats::settings::exact_f64_map")]
    config: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerConfig {
    name: String,
    #[serde(deserialize_with = "crate::formats::settings::exact_f64_map")]
    config: BTreeMap<String, f64>,
    iterations: u64,
    /// Keras' `{"class_name": ..., "config": ...}` of a learning-rate schedule, given instead of a
    /// `learning_rate` in `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    learning_rate_schedule: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrainingState {
    pub(super) seed: u64,
    pub(super) epochs_run: u64,
    /// The layers set not trainable (Keras saves `"trainable": false` in each layer's config). Left out when
    /// there are none, so that such files are what they were before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) frozen_layers: Vec<String>,
}

fn format_error(source: &str, reason: impl Into<String>) -> Error {
    Error::Format { format: "kerust model", source_name: source.into(), reason: reason.into() }
}

/// An unknown loss or metric in a file's compile state: say how to register it, or how to load without it.
fn with_compile_hint(error: Error, what: &str, method: &str, example: &str) -> Error {
    match error {
        Error::UnknownName { kind, name, known } if kind == what => Error::UnknownName {
            kind,
            known: format!(
                "{known}. A custom {what} must be registered to load the model compiled: \
                 `LoadOptions::new().{method}(\"{name}\", {example})` with `models::load_model_with`; or load \
                 the architecture and weights only with `LoadOptions::new().compile(false)`"
            ),
            name,
        },
        other => other,
    }
}

/// The first bytes of a zip archive: a `.keras` file.
const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";
/// The first bytes of an HDF5 file: Keras' `.weights.h5` and Keras 2's `.h5`.
const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

/// Whether a path names a Keras 3 model file (`.keras`): [`Model::save`] writes Keras' format there.
fn is_keras_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("keras"))
}

/// Whether a path names Keras weights (`.weights.h5`, any `.h5`): [`Model::save_weights`] writes Keras' layout.
fn is_h5_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("h5"))
}

#[cfg(feature = "keras")]
fn load_keras(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Model> {
    super::keras::load(bytes, source, options)
}

#[cfg(feature = "keras")]
fn load_legacy_h5(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Model> {
    super::keras::load_legacy_h5(bytes, source, options)
}

#[cfg(not(feature = "keras"))]
fn load_legacy_h5(_: &[u8], source: &str, _: &LoadOptions) -> Result<Model> {
    Err(no_keras(source))
}

#[cfg(not(feature = "keras"))]
fn load_keras(_: &[u8], source: &str, _: &LoadOptions) -> Result<Model> {
    Err(no_keras(source))
}

#[cfg(not(feature = "keras"))]
fn no_keras(source: &str) -> Error {
    format_error(
        source,
        "Keras' files (.keras, .h5) need kerust's `keras` feature, which this build leaves out",
    )
}

#[cfg(not(feature = "keras"))]
impl Model {
    fn keras_bytes(&self) -> Result<Vec<u8>> {
        Err(no_keras("<writing>"))
    }

    fn keras_weights_bytes(&self) -> Result<Vec<u8>> {
        Err(no_keras("<writing>"))
    }

    fn load_keras_weights(&mut self, _: &[u8], source: &str) -> Result<()> {
        Err(no_keras(source))
    }
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

impl Model {
    /// Saves everything to one file (see [`crate::saving`] for the format): the architecture, the compile
    /// settings, the weights, the optimizer's state and the training RNG position, so that
    /// [`load_model`] then `fit(..).initial_epoch(k)` continues as if training had not stopped. The write is
    /// atomic: on any failure the previous file at `path` is untouched.
    ///
    /// A path ending in `.keras` gets Keras 3's format instead, as in Keras (`model.save("model.keras")`):
    /// Python's `keras.saving.load_model` reads it, with the compile state and the optimizer's variables (see
    /// [`Model::to_keras_bytes`]; feature `keras`, on by default).
    ///
    /// # Errors
    /// A layer that cannot describe itself (custom layers: use [`Model::save_weights`]), two weights of
    /// one name, or an I/O error.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = if is_keras_path(path.as_ref()) { self.keras_bytes()? } else { self.to_bytes()? };
        write_atomic(path, |w| Ok(w.write_all(&bytes)?))
    }

    /// Writes what [`Model::save`] writes to any writer (not atomic by itself: [`write_atomic`] is).
    ///
    /// # Errors
    /// As [`Model::to_bytes`], and the writer's errors.
    pub fn save_to_writer(&self, writer: &mut dyn Write) -> Result<()> {
        let bytes = self.to_bytes()?;
        writer.write_all(&bytes)?;
        Ok(())
    }

    /// The bytes of the model file that [`Model::save`] writes.
    ///
    /// # Errors
    /// As [`Model::save`], without the I/O.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let hosts: Vec<(String, std::borrow::Cow<'_, Tensor>)> =
            self.params.iter().map(|(_, p)| (p.name.clone(), p.value.host())).collect();
        let mut tensors: Vec<(String, &Tensor)> =
            hosts.iter().map(|(n, t)| (n.clone(), t.as_ref())).collect();
        if let Some((name, _)) = tensors.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX)) {
            return Err(Error::invalid_argument(
                "name",
                name,
                "a weight's name cannot start with `optimizer/` (reserved for the optimizer's state)",
            ));
        }
        let state = self.compiled.as_ref().map(|c| c.optimizer.state()).unwrap_or_default();
        let params: Vec<&crate::autodiff::Param> = self.params.iter().map(|(_, p)| p).collect();
        for (name, value) in &state {
            let param = name
                .rsplit_once('/')
                .and_then(|(slot, index)| Some((slot, index.parse::<usize>().ok()?)))
                .and_then(|(slot, index)| Some((slot, *params.get(index)?)));
            let Some((slot, param)) = param else {
                return Err(Error::invalid_argument(
                    "optimizer state",
                    name,
                    "does not name a slot of one of the model's weights",
                ));
            };
            tensors.push((format!("{OPTIMIZER_PREFIX}{}/{slot}", param.name), value));
        }
        let json = match &self.kind {
            Kind::Sequential { declared_input } => {
                serde_json::to_string(&self.sequential_config(declared_input)?)
            }
            Kind::Functional => serde_json::to_string(&self.functional_config()?),
        }
        .map_err(|e| format_error("<writing>", e.to_string()))?;
        encode(MODEL_FORMAT, &[("model_config", json)], &tensors)
    }

    fn optimizer_config(&self) -> Option<OptimizerConfig> {
        let c = self.compiled.as_ref()?;
        Some(OptimizerConfig {
            name: c.optimizer.name().into(),
            config: c.optimizer.config().into_iter().collect(),
            iterations: c.optimizer.iterations(),
            learning_rate_schedule: c.optimizer.learning_rate_schedule().map(|s| s.config()),
        })
    }

    fn sequential_config(&self, declared_input: &Option<Vec<usize>>) -> Result<ModelConfig> {
        let layers = self.net.layers.iter().map(|l| l.config()).collect::<Result<Vec<_>>>()?;
        let compile = match (&self.compiled, self.optimizer_config()) {
            (Some(c), Some(optimizer)) => {
                let head = &c.heads[0];
                Some(CompileConfig {
                    loss: NamedConfig {
                        name: head.loss.name().into(),
                        config: head.loss.config().into_iter().collect(),
                    },
                    optimizer,
                    metrics: head.metric_names(),
                })
            }
            _ => None,
        };
        Ok(ModelConfig {
            class_name: "Sequential".into(),
            name: self.name.clone(),
            input_shape: declared_input.clone(),
            build_input_shape: self.net.inputs.first().map(|&t| self.net.tensors[t].shape.clone()),
            layers,
            compile,
            training: TrainingState {
                seed: self.seed,
                epochs_run: self.epochs_run,
                frozen_layers: self.frozen_layers(),
            },
        })
    }

    fn functional_config(&self) -> Result<FunctionalConfig> {
        let net = &self.net;
        let tensor_ref = |t: usize| {
            let (name, node, index) = net.tensor_ref(t);
            TensorRef(name, node, index)
        };
        let mut layers = Vec::with_capacity(net.layers.len());
        for (i, layer) in net.layers.iter().enumerate() {
            let LayerConfig { class_name, config } = layer.config()?;
            let inbound_nodes =
                net.nodes_of(i).map(|node| node.inputs.iter().map(|&t| tensor_ref(t)).collect()).collect();
            layers.push(NodeLayerConfig { class_name, config, inbound_nodes });
        }
        let compile = match (&self.compiled, self.optimizer_config()) {
            (Some(c), Some(optimizer)) => Some(FunctionalCompileConfig {
                optimizer,
                outputs: c
                    .heads
                    .iter()
                    .zip(self.output_names())
                    .map(|(head, output)| OutputCompileConfig {
                        output: output.to_owned(),
                        loss: NamedConfig {
                            name: head.loss.name().into(),
                            config: head.loss.config().into_iter().collect(),
                        },
                        loss_weight: head.weight,
                        metrics: head.metric_names(),
                    })
                    .collect(),
            }),
            _ => None,
        };
        Ok(FunctionalConfig {
            class_name: "Functional".into(),
            name: self.name.clone(),
            layers,
            input_layers: net.inputs.iter().map(|&t| tensor_ref(t)).collect(),
            output_layers: net.outputs.iter().map(|&t| tensor_ref(t)).collect(),
            compile,
            training: TrainingState {
                seed: self.seed,
                epochs_run: self.epochs_run,
                frozen_layers: self.frozen_layers(),
            },
        })
    }

    /// Saves the weights alone (safetensors, `<layer>/<weight>` names), atomically. A path ending in `.h5`
    /// (Keras' `.weights.h5`) gets Keras 3's HDF5 layout, which Python's `model.load_weights` reads.
    ///
    /// # Errors
    /// Two weights of one name, or an I/O error.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = if is_h5_path(path.as_ref()) {
            self.keras_weights_bytes()?
        } else {
            let hosts: Vec<(String, std::borrow::Cow<'_, Tensor>)> =
                self.params.iter().map(|(_, p)| (p.name.clone(), p.value.host())).collect();
            let tensors: Vec<(String, &Tensor)> =
                hosts.iter().map(|(n, t)| (n.clone(), t.as_ref())).collect();
            encode(WEIGHTS_FORMAT, &[], &tensors)?
        };
        write_atomic(path, |w| Ok(w.write_all(&bytes)?))
    }

    /// Loads weights saved by [`Model::save_weights`] or [`Model::save`] (or any safetensors file of
    /// `F32` tensors with the model's weight names) into this built model; or Keras' HDF5 weights (told apart by
    /// their first bytes): Keras 3's `.weights.h5`, by layer in Keras' order, or Keras 2's `.h5` (the layout of
    /// `keras.applications` files), layer after layer as Keras matches them. Everything is checked first: on error
    /// the model is unchanged.
    ///
    /// # Errors
    /// An unbuilt model; an unreadable, truncated or corrupt file; a missing or extra tensor, or one of another
    /// shape (named, with both shapes).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        self.load_weights_from_bytes(&bytes, &path.display().to_string())
    }

    fn load_weights_from_bytes(&mut self, bytes: &[u8], source: &str) -> Result<()> {
        if !self.is_built() {
            return Err(Error::NotReady(
                "load_weights on a model that is not built: add an input shape or call build first".into(),
            ));
        }
        if bytes.starts_with(HDF5_SIGNATURE) {
            return self.load_keras_weights(bytes, source);
        }
        let file = decode(bytes, source)?;
        let weights = check_weights(self, &file, source)?;
        for ((_, p), w) in self.params.iter_mut().zip(weights) {
            p.value.assign_array(w.view());
        }
        Ok(())
    }
}

/// The file's tensor for each of the model's weights, in order, after checking names and shapes; optimizer
/// tensors are ignored.
fn check_weights<'f>(model: &Model, file: &'f Decoded, source: &str) -> Result<Vec<&'f Tensor>> {
    let mut out = Vec::with_capacity(model.params.len());
    for (_, p) in model.params.iter() {
        let Some(t) = file.get(&p.name) else {
            return Err(format_error(source, format!("tensor {} is missing", p.name)));
        };
        if t.shape() != p.value.shape() {
            return Err(Error::shape(
                format!("tensor {} in {source}", p.name),
                format!("{:?}", p.value.shape()),
                format!("{:?}", t.shape()),
            ));
        }
        out.push(t);
    }
    let names: std::collections::HashSet<&str> = model.params.iter().map(|(_, p)| p.name.as_str()).collect();
    if let Some((extra, _)) =
        file.tensors.iter().find(|(n, _)| !n.starts_with(OPTIMIZER_PREFIX) && !names.contains(n.as_str()))
    {
        return Err(format_error(
            source,
            format!("tensor {extra} does not belong to any weight of the model"),
        ));
    }
    Ok(out)
}

/// Loads a model saved by [`Model::save`]: architecture, compile settings, weights, optimizer state,
/// training RNG position. Predictions are bit-for-bit those of the saved model, and training resumes exactly.
///
/// Keras' own files load too (feature `keras`, on by default), told apart by their first bytes: a `.keras` file
/// saved by Python's Keras 3 (`model.save("model.keras")`), with its compile state and optimizer variables, so
/// that `fit` continues where Python stopped; and a legacy HDF5 model file (`model.save("model.h5")`),
/// architecture and weights only. A Keras layer, activation, initializer, loss or optimizer kerust does not
/// have is an error naming it and its place in the file (`config.layers[3]`); register a custom one with
/// [`LoadOptions`] and [`load_model_with`].
///
/// ```no_run
/// let mut model = kerust::models::load_model("model_from_python.keras")?;
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// ```no_run
/// let mut model = kerust::models::load_model("model.safetensors")?;
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Memory
/// Loading allocates no more than the file brings: while the layers are built, the model's
/// [`ParamStore::weight_limit`](crate::autodiff::ParamStore::weight_limit) is the number of weights the file
/// holds, and [`crate::layers::add_weight`] refuses (before allocating) any weight beyond it, whatever the layer
/// type and wherever the input shape is declared. A file that holds weights must also say what input shape
/// they were built for; a file without weights (a model saved before it was built) loads unbuilt, and builds
/// later from the caller's data like any new model, through the same fallible allocation.
///
/// # Errors
/// An unreadable, truncated or corrupt file (with the byte offset where it helps); a format version from a
/// newer kerust; an unknown layer type, loss, optimizer or metric; a missing, unknown or out-of-range setting; a
/// missing or extra tensor or one of another shape or dtype; [`Error::Allocation`] for a layer that would need
/// more weights than the file holds; weights without an input shape.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    load_model_with(path, &LoadOptions::new())
}

/// [`load_model`] from the bytes of a file (e.g. [`Model::to_bytes`]).
///
/// # Errors
/// As [`load_model`].
pub fn load_model_from_bytes(bytes: &[u8]) -> Result<Model> {
    load_model_from(bytes, "<bytes>", &LoadOptions::new())
}

/// [`load_model`] with custom layers, losses, metrics and activations, or without the compile state: Keras'
/// `load_model(path, custom_objects={...}, compile=False)`. See [`LoadOptions`].
///
/// ```no_run
/// use kerust::models::load_model_with;
/// use kerust::saving::LoadOptions;
///
/// // A model compiled with a custom loss, loaded for inference without it.
/// let mut model = load_model_with("model.safetensors", &LoadOptions::new().compile(false))?;
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// # Errors
/// As [`load_model`]; a layer class, loss, metric or activation that is neither built in nor registered is an
/// error naming it and the way to register it; a registered constructor's own error.
pub fn load_model_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_model_from(&bytes, &path.display().to_string(), options)
}

/// [`load_model_with`] from the bytes of a file.
///
/// # Errors
/// As [`load_model_with`].
pub fn load_model_from_bytes_with(bytes: &[u8], options: &LoadOptions) -> Result<Model> {
    load_model_from(bytes, "<bytes>", options)
}

fn load_model_from(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Model> {
    if bytes.starts_with(ZIP_SIGNATURE) {
        return load_keras(bytes, source, options);
    }
    if bytes.starts_with(HDF5_SIGNATURE) {
        return load_legacy_h5(bytes, source, options);
    }
    let file = decode(bytes, source)?;
    match file.metadata.get("format").map(String::as_str) {
        Some(MODEL_FORMAT) => {}
        Some(WEIGHTS_FORMAT) => {
            return Err(format_error(
                source,
                "this file holds weights only (save_weights): build the model and call load_weights",
            ))
        }
        other => {
            return Err(format_error(
                source,
                format!(
                    "metadata `format` is {other:?}; expected \"{MODEL_FORMAT}\" (a file from Model::save)"
                ),
            ))
        }
    }
    let Some(json) = file.metadata.get("model_config") else {
        return Err(format_error(source, "the metadata has no `model_config`"));
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format_error(source, format!("model_config: {e}")))?;
    let class = value.get("class_name").and_then(|c| c.as_str()).unwrap_or_default().to_owned();
    let parse_error = |e: serde_json::Error| format_error(source, format!("model_config: {e}"));
    // The weights the file holds bound what building may allocate: a corrupt or hostile config cannot ask for
    // more memory than the file brings. The bound sits on the parameter store, where `layers::add_weight`
    // checks it before allocating, so it holds for every layer type and wherever the input shape comes from.
    let budget: usize =
        file.tensors.iter().filter(|(n, _)| !n.starts_with(OPTIMIZER_PREFIX)).map(|(_, t)| t.len()).sum();
    let (mut model, compile, training) = match class.as_str() {
        "Sequential" => {
            let config: ModelConfig = serde_json::from_value(value).map_err(parse_error)?;
            let model = load_sequential(&config, budget, source, options)?;
            (model, config.compile.map(Compiled::Sequential), config.training)
        }
        "Functional" => {
            let config: FunctionalConfig = serde_json::from_value(value).map_err(parse_error)?;
            let model = load_functional(&config, budget, source, options)?;
            (model, config.compile.map(Compiled::Functional), config.training)
        }
        _ => {
            return Err(Error::UnknownName {
                kind: "model class",
                name: class,
                known: "Sequential, Functional".into(),
            })
        }
    };
    let weights = check_weights(&model, &file, source)?;
    let weights: Vec<Tensor> = weights.into_iter().cloned().collect();
    for ((_, p), w) in model.params.iter_mut().zip(weights) {
        p.value = w.into();
    }
    for name in &training.frozen_layers {
        let mut layer = model.get_layer_mut(name).map_err(|_| {
            format_error(
                source,
                format!("training.frozen_layers names `{name}`, a layer the model does not have"),
            )
        })?;
        layer.set_trainable(false);
    }

    if options.restores_compile() {
        match compile {
            None => {
                if let Some((n, _)) = file.tensors.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX)) {
                    return Err(format_error(
                        source,
                        format!("tensor {n}: optimizer state in an uncompiled model"),
                    ));
                }
            }
            Some(Compiled::Sequential(c)) => {
                let loss = restore_loss(&c.loss, options)?;
                let optimizer = restore_optimizer(&c.optimizer, &model, &file, source)?;
                let metrics = restore_metrics(c.metrics, options);
                // `compile` checks the metric names; an unknown one gets the registration hint.
                model
                    .compile(loss, optimizer, metrics)
                    .map_err(|e| with_compile_hint(e, "metric", "custom_metric", "MyMetric::new"))?;
            }
            Some(Compiled::Functional(c)) => {
                let mut compile = Compile::new(restore_optimizer(&c.optimizer, &model, &file, source)?);
                let mut seen = std::collections::HashSet::new();
                for output in c.outputs {
                    let key = output.output.as_str();
                    if !seen.insert(output.output.clone()) {
                        return Err(format_error(
                            source,
                            format!(
                                "compile: output `{key}` is listed twice; each output has one loss, loss weight \
                                 and metrics"
                            ),
                        ));
                    }
                    compile = compile
                        .output_loss(key, restore_loss(&output.loss, options)?)
                        .loss_weight(key, output.loss_weight)
                        .output_metrics(key, restore_metrics(output.metrics, options));
                }
                model
                    .compile_with(compile)
                    .map_err(|e| with_compile_hint(e, "metric", "custom_metric", "MyMetric::new"))?;
            }
        }
    }
    if training.epochs_run > i64::MAX as u64 {
        return Err(format_error(
            source,
            format!(
                "training.epochs_run is {}; at most {} epochs can have run",
                training.epochs_run,
                i64::MAX
            ),
        ));
    }
    model.epochs_run = training.epochs_run;
    Ok(model)
}

/// The compile state of a file, by model class.
enum Compiled {
    Sequential(CompileConfig),
    Functional(FunctionalCompileConfig),
}

fn restore_loss(c: &NamedConfig, options: &LoadOptions) -> Result<Box<dyn crate::losses::Loss>> {
    let loss_config: Vec<(String, f64)> = c.config.clone().into_iter().collect();
    match options.loss(&c.name, &loss_config) {
        Some(loss) => loss,
        None => crate::losses::from_config(&c.name, &loss_config)
            .map_err(|e| with_compile_hint(e, "loss", "custom_loss", "|settings| ...")),
    }
}

fn restore_metrics(names: Vec<String>, options: &LoadOptions) -> Vec<MetricSpec> {
    names
        .into_iter()
        .map(|name| options.metric(&name).map_or(MetricSpec::Name(name), MetricSpec::Metric))
        .collect()
}

/// The optimizer of the file, with its state (tensors `optimizer/<weight>/<slot>`) for `model`'s weights.
fn restore_optimizer(
    c: &OptimizerConfig,
    model: &Model,
    file: &Decoded,
    source: &str,
) -> Result<Box<dyn crate::optimizers::Optimizer>> {
    let positions: std::collections::HashMap<&str, usize> =
        model.params.iter().enumerate().map(|(i, (_, p))| (p.name.as_str(), i)).collect();
    let param_index = |name: &str| positions.get(name).copied();
    let params: Vec<&crate::autodiff::Param> = model.params.iter().map(|(_, p)| p).collect();
    let opt_config: Vec<(String, f64)> = c.config.clone().into_iter().collect();
    let mut optimizer = match &c.learning_rate_schedule {
        Some(schedule) => {
            let schedule = crate::optimizers::schedules::LearningRateSchedule::from_config(schedule)?;
            crate::optimizers::from_config_with_schedule(&c.name, &opt_config, schedule)?
        }
        None => crate::optimizers::from_config(&c.name, &opt_config)?,
    };
    let mut state = Vec::new();
    for (name, t) in &file.tensors {
        let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) else { continue };
        let found = rest.rsplit_once('/').and_then(|(param, slot)| Some((param_index(param)?, slot)));
        let Some((index, slot)) = found else {
            return Err(format_error(source, format!("tensor {name} is not the state of a weight")));
        };
        let expected = params.get(index).map(|p| p.value.shape().to_vec());
        if expected.as_deref() != Some(t.shape()) {
            return Err(Error::shape(
                format!("tensor {name} in {source}"),
                format!("{:?} (the weight's shape)", expected.unwrap_or_default()),
                format!("{:?}", t.shape()),
            ));
        }
        state.push((format!("{slot}/{index}"), t.clone()));
    }
    // `iterations` is an integer in the JSON and stays one: exact for every count up to
    // `optimizers::MAX_ITERATIONS`, and a larger one is an error.
    optimizer.load_state(c.iterations, &state)?;
    Ok(optimizer)
}

/// A layer of the file: registered custom layers first, then the built-in ones.
fn load_layer(config: &LayerConfig, i: usize, source: &str, options: &LoadOptions) -> Result<Box<dyn Layer>> {
    let class = &config.class_name;
    options.scope(|| options.layer(config).unwrap_or_else(|| layer_from_config(config))).map_err(|e| {
        let hint = match e {
            Error::UnknownName { kind: "layer type", .. } => format!(
                ". A custom layer must be registered to load: \
                 `LoadOptions::new().custom_layer(\"{class}\", |config| ...)` with \
                 `models::load_model_with` (Keras' custom_objects)"
            ),
            _ => String::new(),
        };
        format_error(source, format!("layer {i} ({class}): {e}{hint}"))
    })
}

pub(super) fn load_sequential(
    config: &ModelConfig,
    budget: usize,
    source: &str,
    options: &LoadOptions,
) -> Result<Model> {
    let mut model = Sequential::new().with_name(config.name.clone());
    model.set_seed(config.training.seed);
    model.params.set_weight_limit(Some(budget));
    if let Some(shape) = config.build_input_shape.as_ref().or(config.input_shape.as_ref()) {
        model.add(Input::new(shape))?;
    }
    for (i, layer_config) in config.layers.iter().enumerate() {
        model.add_boxed(load_layer(layer_config, i, source, options)?)?;
    }
    // A model without an input shape builds later, from the caller's data, beyond any bound the file could
    // set: so a file may leave the model unbuilt only if it brings no weights (a model saved before its first
    // build). Weights without a shape to build them for are a corrupt file.
    if !model.is_built() && budget > 0 {
        return Err(format_error(
            source,
            format!(
                "the file holds {budget} weights, but its model has no input shape to build them for \
                 (`build_input_shape`, `input_shape` and the first layer's `input_shape` are all null)"
            ),
        ));
    }
    model.params.set_weight_limit(None);
    model.kind = Kind::Sequential { declared_input: config.input_shape.clone() };
    Ok(model.into())
}

/// Replays the file's layer calls into a [`Graph`]: each layer is created in the file's order, and each of its
/// calls is made once the tensors it takes exist, so every weight is built once, within the file's weight
/// budget. One pass: a call waiting for a tensor is woken when that tensor is made, and each reference is
/// checked a bounded number of times, so loading is linear in the file's size whatever order it lists the
/// layers in ([`Model::new`]'s order then follows from the file's layer order).
pub(super) fn load_functional(
    config: &FunctionalConfig,
    budget: usize,
    source: &str,
    options: &LoadOptions,
) -> Result<Model> {
    let bad = |reason: String| format_error(source, reason);
    let n = config.layers.len();
    let mut g = Graph::with_seed(config.training.seed);
    g.set_weight_limit(Some(budget));
    let mut handles = Vec::with_capacity(n);
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(n);
    // The tensors each layer's calls made so far, per call (an input's one tensor).
    let mut made: Vec<Vec<Vec<super::SymbolicTensor>>> = vec![Vec::new(); n];
    for (i, layer) in config.layers.iter().enumerate() {
        let layer_config = LayerConfig { class_name: layer.class_name.clone(), config: layer.config.clone() };
        let loaded = load_layer(&layer_config, i, source, options)?;
        let Some(name) = loaded.name().map(str::to_owned) else {
            return Err(bad(format!("layer {i} ({}) has no name", layer.class_name)));
        };
        if loaded.is_input() {
            if !layer.inbound_nodes.is_empty() {
                return Err(bad(format!("input `{name}` has inbound nodes")));
            }
            made[i].push(vec![g.input_boxed(loaded)?]);
            handles.push(None);
        } else {
            handles.push(Some(g.layer_boxed(loaded)?));
        }
        // The graph refused a second layer of this name above.
        index.insert(name, i);
    }
    // Keras' `[layer, node, tensor]` reference to a tensor made so far.
    let lookup = |made: &[Vec<Vec<super::SymbolicTensor>>], r: &TensorRef| {
        let layer = *index.get(&r.0)?;
        made[layer].get(r.1)?.get(r.2).copied()
    };
    // Per layer: its next call, and the next reference of that call to check (those before it exist).
    let mut next_ref = vec![0usize; n];
    // The layers whose next call waits for tensor `(layer, node)`.
    let mut waiting: std::collections::HashMap<(usize, usize), Vec<usize>> = Default::default();
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| handles[i].is_some()).collect();
    while let Some(i) = ready.pop() {
        let nodes = &config.layers[i].inbound_nodes;
        let Some(node) = nodes.get(made[i].len()) else { continue };
        let missing = node[next_ref[i]..].iter().position(|r| lookup(&made, r).is_none());
        if let Some(k) = missing {
            next_ref[i] += k;
            // A reference to no layer, or to a tensor index a made call lacks, never comes: the layer stays
            // waiting and is reported below.
            let r = &node[next_ref[i]];
            if let Some(&layer) = index.get(&r.0).filter(|&&l| made[l].len() <= r.1) {
                waiting.entry((layer, r.1)).or_default().push(i);
            }
            continue;
        }
        let inputs = node.iter().map(|r| lookup(&made, r)).collect::<Option<Vec<_>>>();
        let (Some(handle), Some(inputs)) = (handles[i], inputs) else { continue };
        let out = g.apply_outputs(handle, inputs)?;
        made[i].push(out);
        next_ref[i] = 0;
        ready.extend(waiting.remove(&(i, made[i].len() - 1)).unwrap_or_default());
        ready.push(i);
    }
    if let Some(i) = (0..n).find(|&i| made[i].len() < config.layers[i].inbound_nodes.len()) {
        let waiting: Vec<String> = config.layers[i].inbound_nodes[made[i].len()]
            .iter()
            .filter(|r| lookup(&made, r).is_none())
            .map(|r| format!("{}[{}][{}]", r.0, r.1, r.2))
            .collect();
        return Err(bad(format!(
            "node {} of layer {i} ({}) takes tensors no layer produces: {} (a cycle, or a missing layer or node)",
            made[i].len(),
            config.layers[i].class_name,
            waiting.join(", ")
        )));
    }
    let find = |r: &TensorRef, what: &str| {
        lookup(&made, r)
            .ok_or_else(|| bad(format!("model {what} {}[{}][{}] is no tensor of the model", r.0, r.1, r.2)))
    };
    let inputs = config.input_layers.iter().map(|r| find(r, "input")).collect::<Result<Vec<_>>>()?;
    let outputs = config.output_layers.iter().map(|r| find(r, "output")).collect::<Result<Vec<_>>>()?;
    let order = super::functional::LayerOrder::AsAdded;
    let mut model = Model::from_graph(g, inputs, outputs, order)?.with_name(config.name.clone());
    model.params.set_weight_limit(None);
    Ok(model)
}
