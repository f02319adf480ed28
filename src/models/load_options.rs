//! [`LoadOptions`]: Keras' `load_model(path, custom_objects=..., compile=...)`.
use std::collections::BTreeMap;

use crate::activations::Activation;
use crate::layers::{Layer, LayerConfig};
use crate::losses::Loss;
use crate::metrics::Metric;
use crate::Result;

type LayerFn = Box<dyn Fn(&LayerConfig) -> Result<Box<dyn Layer>> + Send + Sync>;
type LossFn = Box<dyn Fn(&[(String, f64)]) -> Result<Box<dyn Loss>> + Send + Sync>;
type MetricFn = Box<dyn Fn() -> Box<dyn Metric> + Send + Sync>;

/// How [`load_model_with`](crate::models::load_model_with) reads a model file: the custom objects it may
/// meet (Keras' `custom_objects=`), and whether to restore the compile state (Keras' `compile=`).
///
/// A model file stores each layer by class name and settings, the loss by name and settings, the metrics and
/// activations by name. Built-in ones are found by those names; a custom one must be registered here under
/// the name it saved itself with, or loading fails with an error that names it and says how to register it.
/// A registered name takes precedence over a built-in one, as in Keras.
///
/// ```
/// use kerust::layers::Dense;
/// use kerust::models::{load_model_from_bytes_with, Sequential};
/// use kerust::saving::LoadOptions;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(2).input_shape([3]))?;
/// model.compile("mse", "sgd", ["mae"])?;
/// let bytes = model.to_bytes()?;
///
/// // Only the architecture and the weights: the model comes back uncompiled.
/// let bare = load_model_from_bytes_with(&bytes, &LoadOptions::new().compile(false))?;
/// assert!(bare.loss().is_none());
/// assert_eq!(bare.get_weights(), model.get_weights());
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// A custom layer and a custom activation, saved and loaded back (a custom loss or metric is registered the
/// same way, with [`LoadOptions::custom_loss`] and [`LoadOptions::custom_metric`]; see `tests/custom_objects.rs`):
///
/// ```
/// use kerust::activations::Activation;
/// use kerust::autodiff::{ParamId, ParamStore, Var};
/// use kerust::layers::{CallContext, Dense, Layer, LayerConfig};
/// use kerust::models::{load_model_from_bytes, load_model_from_bytes_with};
/// use kerust::saving::LoadOptions;
///
/// /// `x * factor`: a custom layer whose settings are one serde struct.
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Times { name: Option<String>, factor: f32 }
///
/// impl Layer for Times {
///     fn class_name(&self) -> &'static str { "Times" }
///     fn name(&self) -> Option<&str> { self.name.as_deref() }
///     fn set_name(&mut self, name: String) { self.name = Some(name) }
///     fn build(&mut self, shape: &[usize], _: &mut ParamStore, _: &mut rand::rngs::StdRng)
///         -> kerust::Result<Vec<usize>> { Ok(shape.to_vec()) }
///     fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> { x.mul_scalar(self.factor) }
///     fn weights(&self) -> &[ParamId] { &[] }
///     fn config(&self) -> kerust::Result<LayerConfig> { LayerConfig::new("Times", self) }
/// }
///
/// let cube = Activation::custom("cube", |x| x * x * x, |x| 3.0 * x * x);
/// let model = kerust::sequential![
///     Dense::new(4).activation(cube).input_shape([3]),
///     Times { name: None, factor: 0.5 },
/// ]?;
/// let bytes = model.to_bytes()?;
///
/// // Without registration: an error naming what is missing and how to register it.
/// let err = load_model_from_bytes(&bytes).err().unwrap().to_string();
/// assert!(err.contains("unknown activation `cube`") && err.contains("custom_activation"));
///
/// let options = LoadOptions::new()
///     .custom_activation(cube)
///     .custom_layer("Times", |config| config.parse::<Times>());
/// let again = load_model_from_bytes_with(&bytes, &options)?;
/// assert_eq!(again.get_weights(), model.get_weights());
/// assert_eq!(again.to_bytes()?, bytes);
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct LoadOptions {
    compile: bool,
    layers: BTreeMap<String, LayerFn>,
    losses: BTreeMap<String, LossFn>,
    metrics: BTreeMap<String, MetricFn>,
    activations: Vec<Activation>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("compile", &self.compile)
            .field("layers", &self.layers.keys().collect::<Vec<_>>())
            .field("losses", &self.losses.keys().collect::<Vec<_>>())
            .field("metrics", &self.metrics.keys().collect::<Vec<_>>())
            .field("activations", &self.activations.iter().map(|a| a.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl LoadOptions {
    /// Built-in objects only, with the compile state restored: what [`load_model`](crate::models::load_model)
    /// does.
    pub fn new() -> Self {
        LoadOptions {
            compile: true,
            layers: BTreeMap::new(),
            losses: BTreeMap::new(),
            metrics: BTreeMap::new(),
            activations: Vec::new(),
        }
    }

    /// Whether to restore the compile state: loss, optimizer (with its state) and metrics (default true).
    /// With `false` the model comes back with its architecture and weights only, uncompiled, and the file's
    /// loss, optimizer and metrics are not read at all: so a model compiled with a custom loss loads for
    /// inference without it. Compile it again to train.
    pub fn compile(mut self, compile: bool) -> Self {
        self.compile = compile;
        self
    }

    /// Registers the constructor of a custom layer saved under `class_name` (what its
    /// [`Layer::config`](crate::layers::Layer::config) returned as the class name): it gets the saved
    /// [`LayerConfig`] (read the settings back with [`LayerConfig::parse`]) and returns the unbuilt layer;
    /// the model builds it and sets the saved weights, as for a built-in layer.
    pub fn custom_layer<L, F>(mut self, class_name: impl Into<String>, from_config: F) -> Self
    where
        L: Layer + 'static,
        F: Fn(&LayerConfig) -> Result<L> + Send + Sync + 'static,
    {
        let make: LayerFn = Box::new(move |c| Ok(Box::new(from_config(c)?) as Box<dyn Layer>));
        self.layers.insert(class_name.into(), make);
        self
    }

    /// Registers the constructor of a custom loss saved under `name` (its [`Loss::name`]): it gets the
    /// settings the loss saved ([`Loss::config`]) and returns the loss.
    pub fn custom_loss<L, F>(mut self, name: impl Into<String>, from_config: F) -> Self
    where
        L: Loss + 'static,
        F: Fn(&[(String, f64)]) -> Result<L> + Send + Sync + 'static,
    {
        let make: LossFn = Box::new(move |c| Ok(Box::new(from_config(c)?) as Box<dyn Loss>));
        self.losses.insert(name.into(), make);
        self
    }

    /// Registers the constructor of a custom metric saved under `name` (its [`Metric::name`]; metrics are
    /// saved by name only).
    pub fn custom_metric<M, F>(mut self, name: impl Into<String>, new: F) -> Self
    where
        M: Metric + 'static,
        F: Fn() -> M + Send + Sync + 'static,
    {
        let make: MetricFn = Box::new(move || Box::new(new()) as Box<dyn Metric>);
        self.metrics.insert(name.into(), make);
        self
    }

    /// Registers a custom activation ([`Activation::custom`]), found by its name in the layers' settings. A
    /// built-in activation needs no registration and is ignored.
    pub fn custom_activation(mut self, activation: Activation) -> Self {
        if let Activation::Custom(c) = activation {
            self.activations.retain(|a| a.name() != c.name());
            self.activations.push(activation);
        }
        self
    }

    /// Whether the compile state is restored.
    pub(crate) fn restores_compile(&self) -> bool {
        self.compile
    }

    /// Whether a layer class is registered.
    pub(crate) fn has_layer(&self, class_name: &str) -> bool {
        self.layers.contains_key(class_name)
    }

    /// The registered layer of this class, if any.
    pub(crate) fn layer(&self, config: &LayerConfig) -> Option<Result<Box<dyn Layer>>> {
        self.layers.get(&config.class_name).map(|make| make(config))
    }

    /// The registered loss of this name, if any.
    pub(crate) fn loss(&self, name: &str, config: &[(String, f64)]) -> Option<Result<Box<dyn Loss>>> {
        self.losses.get(name).map(|make| make(config))
    }

    /// The registered metric of this name, if any.
    pub(crate) fn metric(&self, name: &str) -> Option<Box<dyn Metric>> {
        self.metrics.get(name).map(|make| make())
    }

    /// Runs `f` with the registered activations visible to the layers' settings as they are read
    /// ([`crate::activations::with_registered`]).
    pub(crate) fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        crate::activations::with_registered(&self.activations, f)
    }
}
