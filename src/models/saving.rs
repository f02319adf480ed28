//! `Sequential::save` / [`load_model`] and `save_weights` / `load_weights`; the format is described in
//! [`crate::saving`].
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Metrics, Sequential};
use crate::autodiff::Tensor;
use crate::layers::{layer_from_config, Input, LayerConfig};
use crate::metrics::MetricSpec;
use crate::saving::tensors::{decode, encode, Decoded};
use crate::saving::{write_atomic, LoadOptions};
use crate::{Error, Result};

const MODEL_FORMAT: &str = "kerust.model";
const WEIGHTS_FORMAT: &str = "kerust.weights";
const OPTIMIZER_PREFIX: &str = "optimizer/";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfig {
    class_name: String,
    name: String,
    input_shape: Option<Vec<usize>>,
    build_input_shape: Option<Vec<usize>>,
    layers: Vec<LayerConfig>,
    compile: Option<CompileConfig>,
    training: TrainingState,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompileConfig {
    loss: NamedConfig,
    optimizer: OptimizerConfig,
    metrics: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedConfig {
    name: String,
    config: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerConfig {
    name: String,
    config: BTreeMap<String, f64>,
    iterations: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingState {
    seed: u64,
    epochs_run: u64,
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

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

impl Sequential {
    /// Saves everything to one file (see [`crate::saving`] for the format): the architecture, the compile
    /// settings, the weights, the optimizer's state and the training RNG position, so that
    /// [`load_model`] then `fit(..).initial_epoch(k)` continues as if training had not stopped. The write is
    /// atomic: on any failure the previous file at `path` is untouched.
    ///
    /// # Errors
    /// A layer that cannot describe itself (custom layers: use [`Sequential::save_weights`]), two weights of
    /// one name, or an I/O error.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path, |w| Ok(w.write_all(&bytes)?))
    }

    /// Writes what [`Sequential::save`] writes to any writer (not atomic by itself: [`write_atomic`] is).
    ///
    /// # Errors
    /// As [`Sequential::to_bytes`], and the writer's errors.
    pub fn save_to_writer(&self, writer: &mut dyn Write) -> Result<()> {
        let bytes = self.to_bytes()?;
        writer.write_all(&bytes)?;
        Ok(())
    }

    /// The bytes of the model file that [`Sequential::save`] writes.
    ///
    /// # Errors
    /// As [`Sequential::save`], without the I/O.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layers = self.layers.iter().map(|l| l.config()).collect::<Result<Vec<_>>>()?;
        let mut tensors: Vec<(String, &Tensor)> =
            self.params.iter().map(|(_, p)| (p.name.clone(), &p.value)).collect();
        if let Some((name, _)) = tensors.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX)) {
            return Err(Error::invalid_argument(
                "name",
                name,
                "a weight's name cannot start with `optimizer/` (reserved for the optimizer's state)",
            ));
        }
        let mut compile = None;
        let state;
        if let Some(c) = &self.compiled {
            state = c.optimizer.state();
            for (name, value) in &state {
                let param = name
                    .rsplit_once('/')
                    .and_then(|(slot, index)| Some((slot, index.parse::<usize>().ok()?)))
                    .and_then(|(slot, index)| Some((slot, self.params.iter().nth(index)?.1)));
                let Some((slot, param)) = param else {
                    return Err(Error::invalid_argument(
                        "optimizer state",
                        name,
                        "does not name a slot of one of the model's weights",
                    ));
                };
                tensors.push((format!("{OPTIMIZER_PREFIX}{}/{slot}", param.name), value));
            }
            let metrics = self.metric_names().unwrap_or_default();
            compile = Some(CompileConfig {
                loss: NamedConfig {
                    name: c.loss.name().into(),
                    config: c.loss.config().into_iter().collect(),
                },
                optimizer: OptimizerConfig {
                    name: c.optimizer.name().into(),
                    config: c.optimizer.config().into_iter().collect(),
                    iterations: c.optimizer.iterations(),
                },
                metrics,
            });
        }
        let config = ModelConfig {
            class_name: "Sequential".into(),
            name: self.name.clone(),
            input_shape: self.declared_input.clone(),
            build_input_shape: self.input_shape.clone(),
            layers,
            compile,
            training: TrainingState { seed: self.seed, epochs_run: self.epochs_run },
        };
        let json = serde_json::to_string(&config).map_err(|e| format_error("<writing>", e.to_string()))?;
        encode(MODEL_FORMAT, &[("model_config", json)], &tensors)
    }

    /// The names the compiled metrics log under (`None` before `compile`), in order; also while `fit` holds
    /// them.
    pub(crate) fn metric_names(&self) -> Option<Vec<String>> {
        Some(match &self.compiled.as_ref()?.metrics {
            Metrics::Pending(specs) => specs
                .iter()
                .map(|s| match s {
                    MetricSpec::Name(n) => n.clone(),
                    MetricSpec::Metric(m) => m.name().to_string(),
                })
                .collect(),
            Metrics::Resolved(ms) => ms.iter().map(|m| m.name().to_string()).collect(),
            Metrics::Lent(names) => names.clone(),
        })
    }

    /// Saves the weights alone (safetensors, `<layer>/<weight>` names), atomically.
    ///
    /// # Errors
    /// Two weights of one name, or an I/O error.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors: Vec<(String, &Tensor)> =
            self.params.iter().map(|(_, p)| (p.name.clone(), &p.value)).collect();
        let bytes = encode(WEIGHTS_FORMAT, &[], &tensors)?;
        write_atomic(path, |w| Ok(w.write_all(&bytes)?))
    }

    /// Loads weights saved by [`Sequential::save_weights`] or [`Sequential::save`] (or any safetensors file of
    /// `F32` tensors with the model's weight names) into this built model. Everything is checked first: on error
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
        let file = decode(bytes, source)?;
        let weights = check_weights(self, &file, source)?;
        for ((_, p), w) in self.params.iter_mut().zip(weights) {
            p.value.assign(w);
        }
        Ok(())
    }
}

/// The file's tensor for each of the model's weights, in order, after checking names and shapes; optimizer
/// tensors are ignored.
fn check_weights<'f>(model: &Sequential, file: &'f Decoded, source: &str) -> Result<Vec<&'f Tensor>> {
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
    if let Some((extra, _)) = file
        .tensors
        .iter()
        .find(|(n, _)| !n.starts_with(OPTIMIZER_PREFIX) && !model.params.iter().any(|(_, p)| p.name == *n))
    {
        return Err(format_error(
            source,
            format!("tensor {extra} does not belong to any weight of the model"),
        ));
    }
    Ok(out)
}

/// Loads a model saved by [`Sequential::save`]: architecture, compile settings, weights, optimizer state,
/// training RNG position. Predictions are bit-for-bit those of the saved model, and training resumes exactly.
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
pub fn load_model(path: impl AsRef<Path>) -> Result<Sequential> {
    load_model_with(path, &LoadOptions::new())
}

/// [`load_model`] from the bytes of a file (e.g. [`Sequential::to_bytes`]).
///
/// # Errors
/// As [`load_model`].
pub fn load_model_from_bytes(bytes: &[u8]) -> Result<Sequential> {
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
pub fn load_model_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Sequential> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_model_from(&bytes, &path.display().to_string(), options)
}

/// [`load_model_with`] from the bytes of a file.
///
/// # Errors
/// As [`load_model_with`].
pub fn load_model_from_bytes_with(bytes: &[u8], options: &LoadOptions) -> Result<Sequential> {
    load_model_from(bytes, "<bytes>", options)
}

fn load_model_from(bytes: &[u8], source: &str, options: &LoadOptions) -> Result<Sequential> {
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
                "metadata `format` is {other:?}; expected \"{MODEL_FORMAT}\" (a file from Sequential::save)"
            ),
            ))
        }
    }
    let Some(json) = file.metadata.get("model_config") else {
        return Err(format_error(source, "the metadata has no `model_config`"));
    };
    let config: ModelConfig =
        serde_json::from_str(json).map_err(|e| format_error(source, format!("model_config: {e}")))?;
    if config.class_name != "Sequential" {
        return Err(Error::UnknownName {
            kind: "model class",
            name: config.class_name,
            known: "Sequential".into(),
        });
    }

    let mut model = Sequential::new().with_name(config.name.clone());
    model.set_seed(config.training.seed);
    // The weights the file holds bound what building may allocate: a corrupt or hostile config cannot ask for
    // more memory than the file brings. The bound sits on the parameter store, where `layers::add_weight`
    // checks it before allocating, so it holds for every layer type and wherever the input shape comes from
    // (the model's config or a first layer's own `input_shape`, built inside `add_boxed`).
    let budget: usize =
        file.tensors.iter().filter(|(n, _)| !n.starts_with(OPTIMIZER_PREFIX)).map(|(_, t)| t.len()).sum();
    model.params.set_weight_limit(Some(budget));
    if let Some(shape) = config.build_input_shape.as_ref().or(config.input_shape.as_ref()) {
        model.add(Input::new(shape))?;
    }
    for (i, layer_config) in config.layers.iter().enumerate() {
        let class = &layer_config.class_name;
        let layer = options
            .scope(|| options.layer(layer_config).unwrap_or_else(|| layer_from_config(layer_config)))
            .map_err(|e| {
                let hint = match e {
                    Error::UnknownName { kind: "layer type", .. } => format!(
                        ". A custom layer must be registered to load: \
                         `LoadOptions::new().custom_layer(\"{class}\", |config| ...)` with \
                         `models::load_model_with` (Keras' custom_objects)"
                    ),
                    _ => String::new(),
                };
                format_error(source, format!("layer {i} ({class}): {e}{hint}"))
            })?;
        model.add_boxed(layer)?;
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
    model.declared_input = config.input_shape.clone();
    let weights = check_weights(&model, &file, source)?;
    let weights: Vec<Tensor> = weights.into_iter().cloned().collect();
    for ((_, p), w) in model.params.iter_mut().zip(weights) {
        p.value = w;
    }

    let param_index = |name: &str| model.params.iter().position(|(_, p)| p.name == name);
    if options.restores_compile() {
        match config.compile {
            None => {
                if let Some((n, _)) = file.tensors.iter().find(|(n, _)| n.starts_with(OPTIMIZER_PREFIX)) {
                    return Err(format_error(
                        source,
                        format!("tensor {n}: optimizer state in an uncompiled model"),
                    ));
                }
            }
            Some(c) => {
                let loss_config: Vec<(String, f64)> = c.loss.config.into_iter().collect();
                let loss = match options.loss(&c.loss.name, &loss_config) {
                    Some(loss) => loss?,
                    None => crate::losses::from_config(&c.loss.name, &loss_config)
                        .map_err(|e| with_compile_hint(e, "loss", "custom_loss", "|settings| ..."))?,
                };
                let opt_config: Vec<(String, f64)> = c.optimizer.config.into_iter().collect();
                let mut optimizer = crate::optimizers::from_config(&c.optimizer.name, &opt_config)?;
                let mut state = Vec::new();
                for (name, t) in &file.tensors {
                    let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) else { continue };
                    let found =
                        rest.rsplit_once('/').and_then(|(param, slot)| Some((param_index(param)?, slot)));
                    let Some((index, slot)) = found else {
                        return Err(format_error(
                            source,
                            format!("tensor {name} is not the state of a weight"),
                        ));
                    };
                    let expected = model.params.iter().nth(index).map(|(_, p)| p.value.shape().to_vec());
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
                optimizer.load_state(c.optimizer.iterations, &state)?;
                let metrics: Vec<MetricSpec> = c
                    .metrics
                    .into_iter()
                    .map(|name| options.metric(&name).map_or(MetricSpec::Name(name), MetricSpec::Metric))
                    .collect();
                // `compile` checks the metric names; an unknown one gets the registration hint.
                model
                    .compile(loss, optimizer, metrics)
                    .map_err(|e| with_compile_hint(e, "metric", "custom_metric", "MyMetric::new"))?;
            }
        }
    }
    if config.training.epochs_run > i64::MAX as u64 {
        return Err(format_error(
            source,
            format!(
                "training.epochs_run is {}; at most {} epochs can have run",
                config.training.epochs_run,
                i64::MAX
            ),
        ));
    }
    model.epochs_run = config.training.epochs_run;
    Ok(model)
}
