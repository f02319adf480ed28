//! Models: [`Sequential`], a stack of layers trained with [`Sequential::fit`].
//!
//! The tutorial's model, summarised (it trains on MNIST in `examples/mnist.rs`):
//!
//! ```
//! use kerust::layers::Dense;
//! use kerust::models::Sequential;
//!
//! let mut model = Sequential::new();
//! model.add(Dense::new(25).activation("sigmoid").input_shape([784]))?;
//! model.add(Dense::new(10).activation("softmax"))?;
//! assert!(model.summary_string().contains("Total params: 19,885"));
//! model.compile("categorical_crossentropy", "sgd", ["accuracy"])?;
//! # Ok::<(), kerust::Error>(())
//! ```
mod from_layers;
mod saving;
mod summary;
mod training;

pub use saving::{load_model, load_model_from_bytes, load_model_from_bytes_with, load_model_with};
pub use training::{Fit, PREDICT_BATCH_SIZE};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::autodiff::{Gradients, ParamStore, Tensor, Var, Workspace};
use crate::layers::{snake_case, CallContext, Layer};
use crate::losses::{Loss, LossSpec};
use crate::metrics::{IntoMetrics, Metric, MetricSpec};
use crate::optimizers::{Optimizer, OptimizerSpec};
use crate::{Error, Result};

/// A linear stack of layers: Keras' `Sequential`.
///
/// Add layers (the first one knows its input shape, or the model builds itself from the first data `fit`,
/// `evaluate` or `train_on_batch` sees; `predict` takes `&self` and needs a built model),
/// then [`compile`](Sequential::compile), [`fit`](Sequential::fit), [`evaluate`](Sequential::evaluate),
/// [`predict`](Sequential::predict).
pub struct Sequential {
    name: String,
    layers: Vec<Box<dyn Layer>>,
    /// The declared per-sample input shape (an `Input` or a first layer's `input_shape`).
    declared_input: Option<Vec<usize>>,
    /// The per-sample input shape the model is built for; `None` until built.
    input_shape: Option<Vec<usize>>,
    /// Per-sample output shape of each built layer; built layers are a prefix of `layers`.
    output_shapes: Vec<Vec<usize>>,
    params: ParamStore,
    compiled: Option<Compiled>,
    /// Weight initialization of layers built from now on.
    rng: StdRng,
    /// The seed of everything random in training (see [`Sequential::seed`]).
    seed: u64,
    /// Training epochs run over the model's life: epoch `k` shuffles and drops out with `epoch_rng(seed, k)`.
    epochs_run: u64,
    /// The current epoch's generator (shuffling, dropout masks).
    train_rng: StdRng,
    stop_training: bool,
    workspace: Workspace,
    grads: Gradients,
    /// Set by `distribute`: data-parallel training over these ranks.
    comm: Option<std::sync::Arc<dyn crate::distributed::Communicator>>,
}

/// What `compile` set.
struct Compiled {
    loss: Box<dyn Loss>,
    optimizer: Box<dyn Optimizer>,
    metrics: Metrics,
}

/// Metrics are resolved (`"accuracy"` to its variant) once the shapes are known, at the first fit or evaluate.
enum Metrics {
    Pending(Vec<MetricSpec>),
    Resolved(Vec<Box<dyn Metric>>),
    /// Out with a running `fit`, which updates them; their names stay, so that a model saved during `fit` (a
    /// checkpoint) keeps its metrics.
    Lent(Vec<String>),
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl Sequential {
    /// An empty model named `sequential`, seeded from [`crate::utils::set_random_seed`] if it was called.
    pub fn new() -> Self {
        let seed = crate::random::model_seed();
        Sequential {
            name: "sequential".into(),
            layers: Vec::new(),
            declared_input: None,
            input_shape: None,
            output_shapes: Vec::new(),
            params: ParamStore::new(),
            compiled: None,
            rng: StdRng::seed_from_u64(seed),
            seed,
            epochs_run: 0,
            train_rng: crate::random::epoch_rng(seed, 0),
            stop_training: false,
            workspace: Workspace::new(),
            grads: Gradients::new(),
            comm: None,
        }
    }

    /// Sets the model's name (shown by `summary`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Seeds this model's random choices (initialization of layers built from now on, dropout, shuffling), and
    /// restarts the count of training epochs (see [`Sequential::seed`]).
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
        self.seed = seed;
        self.epochs_run = 0;
    }

    /// The seed of the model's training randomness.
    ///
    /// Training is resumable by design: epoch number `k` of the model's life (counted over all `fit` calls,
    /// [`Sequential::epochs_run`]) shuffles the samples (from their original order) and draws dropout masks from
    /// a generator seeded with `(seed, k)` only. A saved model stores the seed and the count, so
    /// `fit(epochs=4)` gives the same History as `fit(epochs=2)`, save, load, `fit(epochs=4, initial_epoch=2)`;
    /// and two `fit` calls in a row do not repeat each other's shuffles.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of training epochs this model has run (all `fit` calls; restarted by `set_seed`).
    pub fn epochs_run(&self) -> u64 {
        self.epochs_run
    }

    /// Starts a training epoch: its own generator, from `(seed, epochs_run)`.
    fn begin_epoch_rng(&mut self) {
        self.train_rng = crate::random::epoch_rng(self.seed, self.epochs_run);
        self.epochs_run = self.epochs_run.saturating_add(1);
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a layer on top. A layer without a name gets Keras' (`dense`, `dense_1`, ...). If the model's input
    /// shape is known, the layer is built (its weights created) now.
    ///
    /// # Errors
    /// A duplicate name, an `Input` that is not first, or the layer's own checks (zero units, unknown activation,
    /// ...). On error the model is unchanged.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<()> {
        self.add_boxed(Box::new(layer))
    }

    /// [`Sequential::add`] for a boxed layer.
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
        if layer.is_input() {
            if !self.layers.is_empty() || self.declared_input.is_some() {
                return Err(Error::NotReady(
                    "an Input can only be the first entry of a Sequential model".into(),
                ));
            }
            let shape = layer.declared_input_shape().unwrap_or_default().to_vec();
            layer.build_many(&[&shape], &mut self.params, &mut self.rng)?;
            self.declared_input = Some(shape.clone());
            return self.build(&shape);
        }
        match layer.name() {
            Some(name) if self.layers.iter().any(|l| l.name() == Some(name)) => {
                return Err(Error::invalid_argument(
                    "name",
                    name,
                    "all layers of a Sequential model need unique names",
                ));
            }
            Some(_) => {}
            None => layer.set_name(self.unique_name(&snake_case(layer.class_name()))),
        }
        if self.layers.is_empty() && self.declared_input.is_none() {
            self.declared_input = layer.declared_input_shape().map(<[usize]>::to_vec);
        }
        self.layers.push(layer);
        let result = match (&self.input_shape, &self.declared_input) {
            (Some(shape), _) | (None, Some(shape)) => self.build(&shape.clone()),
            (None, None) => Ok(()),
        };
        if result.is_err() {
            self.layers.pop();
            if self.layers.is_empty() {
                self.declared_input = None;
            }
        }
        result
    }

    fn unique_name(&self, base: &str) -> String {
        let taken = |n: &str| self.layers.iter().any(|l| l.name() == Some(n));
        if !taken(base) {
            return base.to_owned();
        }
        (1..).map(|i| format!("{base}_{i}")).find(|n| !taken(n)).unwrap_or_default()
    }

    /// Removes the top layer and its weights, and returns it.
    pub fn pop(&mut self) -> Option<Box<dyn Layer>> {
        let layer = self.layers.pop()?;
        if self.output_shapes.len() > self.layers.len() {
            self.output_shapes.pop();
            let first = layer.weights().iter().map(|id| id.index()).min();
            if let Some(first) = first {
                self.params.truncate(first);
            }
        }
        if self.layers.is_empty() && self.output_shapes.is_empty() {
            self.input_shape = self.declared_input.clone();
        }
        Some(layer)
    }

    /// The layers, bottom to top (an `Input` is not listed, as in Keras).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Builds every layer not built yet for inputs of `input_shape` (per sample, without the batch axis), like
    /// Keras' `model.build((None, ...))`. Called by `add`, `fit` and `predict` when needed.
    ///
    /// # Errors
    /// If the model is already built for another shape, or a layer rejects its input. On error, the layers
    /// this call built are unbuilt again.
    pub fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        if let Some(built) = &self.input_shape {
            if built != input_shape {
                return Err(Error::shape(
                    "build",
                    format!("the shape the model is built for, {}", shape_str(built)),
                    shape_str(input_shape),
                ));
            }
        }
        let (params_before, built_before) = (self.params.len(), self.output_shapes.len());
        let was_built = self.input_shape.is_some();
        for i in built_before..self.layers.len() {
            let shape_in = if i == 0 { input_shape.to_vec() } else { self.output_shapes[i - 1].clone() };
            match self.layers[i].build_many(&[&shape_in], &mut self.params, &mut self.rng) {
                Ok(out) => self.output_shapes.push(out),
                Err(e) => {
                    self.params.truncate(params_before);
                    self.output_shapes.truncate(built_before);
                    if !was_built {
                        self.input_shape = None;
                    }
                    return Err(e);
                }
            }
        }
        self.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    /// Whether the model's weights exist.
    pub fn is_built(&self) -> bool {
        self.input_shape.is_some() && self.output_shapes.len() == self.layers.len()
    }

    /// The per-sample input shape, once known.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref().or(self.declared_input.as_deref())
    }

    /// The per-sample output shape, once built.
    pub fn output_shape(&self) -> Option<&[usize]> {
        if self.is_built() {
            self.output_shapes.last().map(Vec::as_slice).or(self.input_shape.as_deref())
        } else {
            None
        }
    }

    /// The weights of every layer (Keras' `model.weights`), with their names and values.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The weights, mutably: for callbacks and tools that edit weights in place (shapes must not change).
    pub fn params_mut(&mut self) -> &mut ParamStore {
        &mut self.params
    }

    /// Copies of every weight array, layer by layer, kernel before bias (Keras' `get_weights`).
    pub fn get_weights(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p)| p.value.clone()).collect()
    }

    /// Replaces every weight array (Keras' `set_weights`).
    ///
    /// # Errors
    /// If the count or a shape differs; the model is unchanged then.
    pub fn set_weights(&mut self, weights: &[Tensor]) -> Result<()> {
        if weights.len() != self.params.len() {
            return Err(Error::shape(
                "set_weights",
                format!("{} arrays", self.params.len()),
                format!("{} arrays", weights.len()),
            ));
        }
        for ((_, p), w) in self.params.iter().zip(weights) {
            if p.value.shape() != w.shape() {
                return Err(Error::shape(
                    format!("set_weights for {}", p.name),
                    shape_of(&p.value),
                    shape_of(w),
                ));
            }
        }
        for ((_, p), w) in self.params.iter_mut().zip(weights) {
            p.value.assign(w);
        }
        Ok(())
    }

    /// Total number of scalars in the weights.
    pub fn count_params(&self) -> usize {
        self.params.iter().map(|(_, p)| p.value.len()).sum()
    }

    /// Configures training: the loss, the optimizer and the metrics, each by Keras' name or as a typed value.
    /// `metrics` is `["accuracy", ...]`, `[]` for none, or a `Vec` mixing names and metric objects (see
    /// [`IntoMetrics`]).
    ///
    /// ```
    /// use kerust::models::Sequential;
    /// use kerust::optimizers::SGD;
    /// let mut model = Sequential::new();
    /// model.compile("mse", "adam", [])?; // Keras: compile(loss="mse", optimizer="adam")
    /// model.compile("categorical_crossentropy", SGD::new().learning_rate(0.1), ["accuracy"])?;
    /// assert!(model.compile("categorical_crossentropy", "sgdx", ["accuracy"]).is_err());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// An unknown name or invalid optimizer settings; the model keeps its previous compile settings then.
    pub fn compile(
        &mut self,
        loss: impl Into<LossSpec>,
        optimizer: impl Into<OptimizerSpec>,
        metrics: impl IntoMetrics,
    ) -> Result<()> {
        let loss = loss.into().resolve()?;
        let optimizer = optimizer.into().resolve()?;
        optimizer.validate()?;
        let metrics = metrics.into_metric_specs();
        // Check metric names now, so a typo fails at compile as in Keras (the variant is chosen at fit).
        for spec in &metrics {
            if let MetricSpec::Name(name) = spec {
                crate::metrics::check_name(name)?;
            }
        }
        self.compiled = Some(Compiled { loss, optimizer, metrics: Metrics::Pending(metrics) });
        Ok(())
    }

    /// The optimizer set by `compile`.
    pub fn optimizer(&self) -> Option<&dyn Optimizer> {
        self.compiled.as_ref().map(|c| c.optimizer.as_ref())
    }

    /// The optimizer set by `compile`, mutably (to change the learning rate from a callback).
    pub fn optimizer_mut(&mut self) -> Option<&mut (dyn Optimizer + 'static)> {
        self.compiled.as_mut().map(|c| c.optimizer.as_mut())
    }

    /// The loss set by `compile`.
    pub fn loss(&self) -> Option<&dyn Loss> {
        self.compiled.as_ref().map(|c| c.loss.as_ref())
    }

    /// Asks `fit` to stop after the current batch (Keras' `model.stop_training = True`).
    pub fn stop_training(&mut self) {
        self.stop_training = true;
    }

    /// Whether a stop was requested during the current `fit`.
    pub fn is_stopping(&self) -> bool {
        self.stop_training
    }

    /// The forward pass of every layer.
    fn forward<'t>(layers: &[Box<dyn Layer>], x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        layers.iter().fold(x, |h, layer| layer.call_many(&[h], ctx))
    }
}

/// `(None, 28, 28)`: a per-sample shape with Keras' batch placeholder.
pub(crate) fn shape_str(per_sample: &[usize]) -> String {
    let mut s = String::from("(None");
    for d in per_sample {
        s.push_str(&format!(", {d}"));
    }
    s.push(')');
    s
}

/// `(60000, 28, 28)`: a full shape.
pub(crate) fn shape_of(t: &Tensor) -> String {
    format!("{:?}", t.shape()).replace('[', "(").replace(']', ")")
}
