//! Models: [`Sequential`], a stack of layers, and [`Model`], a graph of layers built with Keras' functional API
//! ([`Graph`]); both train with [`Model::fit`].
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
//!
//! The same model as a graph (Keras' `keras.Input`, layers called on tensors, `keras.Model(inputs, outputs)`):
//!
//! ```
//! use kerust::layers::{Dense, Input};
//! use kerust::models::{Graph, Model};
//!
//! let mut g = Graph::new();
//! let x = g.input(Input::new([784]))?;
//! let h = g.apply(Dense::new(25).activation("sigmoid"), x)?;
//! let y = g.apply(Dense::new(10).activation("softmax"), h)?;
//! let mut model = Model::new(g, x, y)?;
//! assert_eq!(model.count_params(), 19_885);
//! model.compile("categorical_crossentropy", "sgd", ["accuracy"])?;
//! # Ok::<(), kerust::Error>(())
//! ```
mod compile;
mod from_layers;
mod functional;
mod graph;
#[cfg(feature = "keras")]
mod keras;
pub(crate) mod load_options;
mod saving;
mod sequential;
mod summary;
mod training;

pub use compile::{Compile, OutputKey};
pub use functional::{Graph, IntoLayer, IntoTensors, LayerRef, SymbolicTensor};
pub use saving::{load_model, load_model_from_bytes, load_model_from_bytes_with, load_model_with};
pub use sequential::Sequential;
pub use training::{Arrays, Fit, IntoArray, IntoArrays, Outputs, PREDICT_BATCH_SIZE};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::autodiff::{Gradients, ParamStore, Tensor, Workspace};
use crate::layers::Layer;
use crate::losses::{Loss, LossSpec};
use crate::metrics::{IntoMetrics, Metric, MetricSpec};
use crate::optimizers::{Optimizer, OptimizerSpec};
use crate::shapes::shape_str;
use crate::{Error, Result};
use graph::Net;

/// A model: layers connected as a graph, trained with [`Model::fit`]; Keras' `Model`.
///
/// Build one with the functional API ([`Graph`], then [`Model::new`]), or as a [`Sequential`], which is a
/// `Model` whose graph is a stack (it dereferences to `Model`). Then [`compile`](Model::compile) (or
/// [`compile_with`](Model::compile_with) for a loss per output), [`fit`](Model::fit),
/// [`evaluate`](Model::evaluate), [`predict`](Model::predict).
pub struct Model {
    name: String,
    net: Net,
    kind: Kind,
    params: ParamStore,
    compiled: Option<Compiled>,
    /// Weight initialization of layers built from now on.
    rng: StdRng,
    /// The seed of everything random in training (see [`Model::seed`]).
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
    /// How `comm` is used (set with it by `distribute_with`).
    dist_options: crate::distributed::DistributedOptions,
    /// The layers set not trainable (Keras' `layer.trainable = False`), by name, each with the weights this
    /// turned off: the ones that were trainable, to turn back on (a moving mean stays non-trainable).
    frozen: std::collections::BTreeMap<String, Vec<crate::autodiff::ParamId>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("inputs", &self.input_names().iter().zip(self.input_shapes()).collect::<Vec<_>>())
            .field("outputs", &self.output_names().iter().zip(self.output_shapes()).collect::<Vec<_>>())
            .field("layers", &self.net.layers.len())
            .field("params", &self.count_params())
            .field("compiled", &self.compiled.is_some())
            .finish()
    }
}

/// How the graph came about, which decides how it grows and how it is saved.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A stack built by `Sequential::add`: `net.layers[i]` is node `i`; tensor 0 is the input once the input
    /// shape is known (from `declared_input` or from data).
    Sequential {
        /// The declared per-sample input shape (an `Input` or a first layer's `input_shape`).
        declared_input: Option<Vec<usize>>,
    },
    /// A graph from [`Model::new`]: built, inputs and outputs fixed.
    Functional,
}

/// What `compile` set: the optimizer, and per model output its loss, loss weight and metrics.
struct Compiled {
    optimizer: Box<dyn Optimizer>,
    heads: Vec<Head>,
}

/// One output's share of the training objective.
struct Head {
    /// Shared when one loss serves several outputs (losses hold no state).
    loss: std::sync::Arc<dyn Loss>,
    /// Keras' `loss_weights`: the total loss is the sum of `weight * loss` over the outputs.
    weight: f32,
    metrics: Metrics,
}

impl Head {
    /// The names the output's metrics log under (unprefixed), in order; also while `fit` holds them.
    fn metric_names(&self) -> Vec<String> {
        match &self.metrics {
            Metrics::Pending(specs) => specs
                .iter()
                .map(|s| match s {
                    MetricSpec::Name(n) => n.clone(),
                    MetricSpec::Metric(m) => m.name().to_string(),
                })
                .collect(),
            Metrics::Resolved(ms) => ms.iter().map(|m| m.name().to_string()).collect(),
            Metrics::Lent(names) => names.clone(),
        }
    }
}

/// Metrics are resolved (`"accuracy"` to its variant) once the shapes are known, at the first fit or evaluate.
enum Metrics {
    Pending(Vec<MetricSpec>),
    Resolved(Vec<Box<dyn Metric>>),
    /// Out with a running `fit`, which updates them; their names stay, so that a model saved during `fit` (a
    /// checkpoint) keeps its metrics.
    Lent(Vec<String>),
}

impl Model {
    /// A model over `net`, seeded from [`crate::utils::set_random_seed`] if it was called.
    fn with_net(name: &str, net: Net, kind: Kind) -> Self {
        let seed = crate::random::model_seed();
        Model {
            name: name.into(),
            net,
            kind,
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
            dist_options: Default::default(),
            frozen: Default::default(),
        }
    }

    /// Sets the model's name (shown by `summary`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Seeds this model's random choices (initialization of layers built from now on, dropout, shuffling), and
    /// restarts the count of training epochs (see [`Model::seed`]).
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
        self.seed = seed;
        self.epochs_run = 0;
        // `train_on_batch` before any `fit` draws its dropout masks from here: reproducible too.
        self.train_rng = crate::random::epoch_rng(seed, 0);
    }

    /// The seed of the model's training randomness.
    ///
    /// Training is resumable by design: epoch number `k` of the model's life (counted over all `fit` calls,
    /// [`Model::epochs_run`]) shuffles the samples (from their original order) and draws dropout masks from
    /// a generator seeded with `(seed, k)` only. A saved model stores the seed and the count, so
    /// `fit(epochs=4)` gives the same History as `fit(epochs=2)`, save, load, `fit(epochs=4, initial_epoch=2)`;
    /// and two `fit` calls in a row do not repeat each other's shuffles.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of training epochs this model has run (all `fit` calls; restarted by `set_seed`); it stops at
    /// `i64::MAX`, the most a model file holds.
    pub fn epochs_run(&self) -> u64 {
        self.epochs_run
    }

    /// Starts a training epoch: its own generator, from `(seed, epochs_run)`.
    fn begin_epoch_rng(&mut self) {
        self.train_rng = crate::random::epoch_rng(self.seed, self.epochs_run);
        // The count stops at the largest one a file holds (an int64, as Keras counts), so that a model that
        // loads with it still saves a file that loads.
        self.epochs_run = self.epochs_run.saturating_add(1).min(i64::MAX as u64);
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layers: a Sequential's stack bottom to top (its `Input` is not listed, as in Keras), or a graph
    /// model's layers in the order they were created, its `Input`s included (Keras lists them too).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.net.layers
    }

    /// The layer of this name (Keras' `get_layer`).
    ///
    /// # Errors
    /// No layer of this name: Keras' message, with the names there are.
    pub fn get_layer(&self, name: &str) -> Result<&dyn Layer> {
        Ok(&*self.net.layers[self.layer_index(name)?])
    }

    /// The layer of this name, to change its `trainable` property: Keras'
    /// `model.get_layer("x").trainable = False` is `model.get_layer_mut("x")?.set_trainable(false)`.
    ///
    /// # Errors
    /// As [`Model::get_layer`].
    pub fn get_layer_mut(&mut self, name: &str) -> Result<LayerMut<'_>> {
        let index = self.layer_index(name)?;
        Ok(LayerMut { model: self, index })
    }

    fn layer_index(&self, name: &str) -> Result<usize> {
        self.net.layers.iter().position(|l| l.name() == Some(name)).ok_or_else(|| {
            let names: Vec<&str> = self.net.layers.iter().filter_map(|l| l.name()).collect();
            Error::invalid_argument(
                "name",
                name,
                format!("No such layer: {name}. Existing layers are: [{}]", names.join(", ")),
            )
        })
    }

    /// Sets every layer trainable or not (Keras' `model.trainable = False`); see [`LayerMut::set_trainable`].
    pub fn set_trainable(&mut self, trainable: bool) {
        for index in 0..self.net.layers.len() {
            self.set_layer_trainable(index, trainable);
        }
    }

    /// The names of the layers set not trainable, in name order (what a saved model records).
    pub(crate) fn frozen_layers(&self) -> Vec<String> {
        self.frozen.keys().cloned().collect()
    }

    fn set_layer_trainable(&mut self, index: usize, trainable: bool) {
        let layer = &self.net.layers[index];
        let Some(name) = layer.name().map(str::to_owned) else { return };
        if trainable {
            for id in self.frozen.remove(&name).unwrap_or_default() {
                self.params.get_mut(id).trainable = true;
            }
        } else {
            self.frozen.entry(name).or_default();
            self.freeze_built_weights();
        }
    }

    /// Turns off the trainable weights of the frozen layers, those built since they were frozen too (a
    /// Sequential builds its layers when it first sees data).
    fn freeze_built_weights(&mut self) {
        let Model { net, params, frozen, .. } = self;
        for layer in &net.layers {
            let Some(turned_off) = layer.name().and_then(|n| frozen.get_mut(n)) else { continue };
            for &id in layer.weights() {
                if id.index() < params.len() && params.get(id).trainable {
                    params.get_mut(id).trainable = false;
                    turned_off.push(id);
                }
            }
        }
    }

    /// Builds every layer not built yet for inputs of `input_shape` (per sample, without the batch axis), like
    /// Keras' `model.build((None, ...))`. Called by `add`, `fit`, `evaluate` and `train_on_batch` when needed.
    /// A graph model is built when it is made; for it this only checks the shape.
    ///
    /// # Errors
    /// If the model is already built for another shape, has several inputs, or a layer rejects its input. On
    /// error the model is unchanged: the layers this call built are unbuilt again, and the generator that
    /// initializes weights is where it was.
    pub fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        if self.net.inputs.len() > 1 {
            return Err(Error::invalid_argument(
                "build",
                shape_str(input_shape),
                format!("the model has {} inputs, built when it was made", self.net.inputs.len()),
            ));
        }
        if let Some(built) = self.net.inputs.first().map(|&t| &self.net.tensors[t].shape) {
            if built != input_shape {
                return Err(Error::shape(
                    "build",
                    format!("the shape the model is built for, {}", shape_str(built)),
                    shape_str(input_shape),
                ));
            }
        }
        if self.kind == Kind::Functional {
            return Ok(());
        }
        let (params_before, nodes_before) = (self.params.len(), self.net.nodes.len());
        let rng_before = self.rng.clone();
        let was_built = !self.net.inputs.is_empty();
        if !was_built {
            // The rule an `Input` applies, for a shape from a first layer's `input_shape`, a file or data.
            crate::layers::check_input_shape(input_shape)?;
        }
        if !was_built {
            self.net.add_input(input_shape.to_vec(), None);
            self.net.inputs = vec![0];
        }
        for i in nodes_before..self.net.layers.len() {
            let last = self.net.tensors.len() - 1;
            let applied = self.net.apply(i, &[last], &mut self.params, &mut self.rng).and_then(|outputs| {
                if outputs.len() == 1 {
                    return Ok(());
                }
                // Keras: a Sequential's layers have a single output tensor each.
                let layer = &self.net.layers[i];
                Err(Error::invalid_argument(
                    "layer",
                    format!("`{}` ({})", layer.name().unwrap_or("?"), layer.class_name()),
                    format!(
                        "a layer of one output: all layers added to a Sequential model should have a single \
                         output tensor, this one has {} (an RNN's return_state, or Bidirectional's merge_mode \
                         None); use the functional API (Graph) for layers of several outputs",
                        outputs.len()
                    ),
                ))
            });
            if let Err(e) = applied {
                self.params.truncate(params_before);
                while self.net.nodes.len() > nodes_before {
                    self.net.pop_node();
                }
                if !was_built {
                    self.net.tensors.clear();
                    self.net.inputs.clear();
                }
                self.rng = rng_before;
                return Err(e);
            }
        }
        self.net.outputs = vec![self.net.tensors.len() - 1];
        self.freeze_built_weights();
        Ok(())
    }

    /// Whether the model's weights exist.
    pub fn is_built(&self) -> bool {
        match self.kind {
            // A stack is built once its input is known and each layer has its node.
            Kind::Sequential { .. } => {
                !self.net.inputs.is_empty() && self.net.nodes.len() == self.net.layers.len()
            }
            Kind::Functional => true,
        }
    }

    /// The per-sample input shape, once known; `None` for a model of several inputs ([`Model::input_shapes`]).
    pub fn input_shape(&self) -> Option<&[usize]> {
        match (&self.net.inputs[..], &self.kind) {
            ([t], _) => Some(&self.net.tensors[*t].shape),
            ([], Kind::Sequential { declared_input }) => declared_input.as_deref(),
            _ => None,
        }
    }

    /// The per-sample output shape, once built; `None` for a model of several outputs
    /// ([`Model::output_shapes`]).
    pub fn output_shape(&self) -> Option<&[usize]> {
        match &self.net.outputs[..] {
            [t] if self.is_built() => Some(&self.net.tensors[*t].shape),
            _ => None,
        }
    }

    /// The per-sample shape of every input, in order (empty before a Sequential is built).
    pub fn input_shapes(&self) -> Vec<&[usize]> {
        self.net.inputs.iter().map(|&t| self.net.tensors[t].shape.as_slice()).collect()
    }

    /// The per-sample shape of every output, in order (empty before a Sequential is built).
    pub fn output_shapes(&self) -> Vec<&[usize]> {
        self.net.outputs.iter().map(|&t| self.net.tensors[t].shape.as_slice()).collect()
    }

    /// The inputs' names (their `Input` layers' names; a Sequential's input is `input`), as `fit` and
    /// `predict` take arrays by name.
    pub fn input_names(&self) -> Vec<&str> {
        match &self.kind {
            Kind::Sequential { .. } => vec!["input"],
            Kind::Functional => self.net.inputs.iter().map(|&t| self.net.tensor_name(t)).collect(),
        }
    }

    /// The outputs' names (the names of the layers producing them, Keras' `output_names`): the keys of
    /// per-output losses, metrics and targets, and the prefixes of their logs (`digit_loss`).
    pub fn output_names(&self) -> Vec<&str> {
        match (&self.kind, self.net.layers.last()) {
            (Kind::Sequential { .. }, Some(last)) => vec![last.name().unwrap_or("output")],
            (Kind::Sequential { .. }, None) => vec!["output"],
            (Kind::Functional, _) => self.net.outputs.iter().map(|&t| self.net.tensor_name(t)).collect(),
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

    /// Copies of every weight array, layer by layer in [`Model::layers`]' order, kernel before bias (Keras'
    /// `get_weights`). The order is the same in a model reloaded from its file.
    pub fn get_weights(&self) -> Vec<Tensor> {
        self.weight_ids().map(|id| self.params.value(id).to_array()).collect()
    }

    /// The weights' ids in [`Model::get_weights`]' order. It can differ from the order the weights were created
    /// in (the `ParamStore`'s) in a graph model whose shared layer was first called on a branch no output uses.
    fn weight_ids(&self) -> impl Iterator<Item = crate::autodiff::ParamId> + '_ {
        self.net.layers.iter().flat_map(|l| l.weights().iter().copied())
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
        for (id, w) in self.weight_ids().zip(weights) {
            let p = self.params.get(id);
            if p.value.shape() != w.shape() {
                return Err(Error::shape(
                    format!("set_weights for {}", p.name),
                    shape_of_dims(p.value.shape()),
                    shape_of(w),
                ));
            }
        }
        let ids: Vec<_> = self.weight_ids().collect();
        for (id, w) in ids.into_iter().zip(weights) {
            self.params.value_mut(id).assign_array(w.view());
        }
        Ok(())
    }

    /// Total number of scalars in the weights.
    pub fn count_params(&self) -> usize {
        self.params.iter().map(|(_, p)| p.value.len()).sum()
    }

    /// Configures training: the loss, the optimizer and the metrics, each by Keras' name or as a typed value.
    /// `metrics` is `["accuracy", ...]`, `[]` for none, or a `Vec` mixing names and metric objects (see
    /// [`IntoMetrics`]). A model of several outputs uses the loss and the metrics for every output; give each
    /// its own, and loss weights, with [`Model::compile_with`].
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
        self.compile_with(Compile::new(optimizer).loss(loss).metrics(metrics))
    }

    /// Configures training with a loss, a loss weight and metrics per output (Keras' `compile(loss={..},
    /// loss_weights={..}, metrics={..})`); see [`Compile`].
    ///
    /// # Errors
    /// As [`Model::compile`]; an output named or numbered that the model does not have; an output without a
    /// loss; a loss weight that is negative or not finite. The model keeps its previous compile settings then.
    pub fn compile_with(&mut self, compile: Compile) -> Result<()> {
        let names: Vec<String> = self.output_names().into_iter().map(str::to_owned).collect();
        let (optimizer, heads) = compile.resolve(&names)?;
        self.compiled = Some(Compiled { optimizer, heads });
        Ok(())
    }

    /// The keys `fit` logs each epoch, without the `val_` ones (`None` before `compile`): `loss`, then for a
    /// model of several outputs each output's loss (`digit_loss`), then the metrics (`accuracy`, or
    /// `digit_accuracy` for several outputs), as Keras names them. A name of an unresolved metric is the one
    /// given to `compile` (`"acc"` logs as `acc`).
    pub fn log_names(&self) -> Option<Vec<String>> {
        let compiled = self.compiled.as_ref()?;
        let mut names = vec!["loss".to_owned()];
        let outputs = self.output_names();
        let several = compiled.heads.len() > 1;
        if several {
            names.extend(outputs.iter().map(|o| format!("{o}_loss")));
        }
        for (head, output) in compiled.heads.iter().zip(&outputs) {
            for m in head.metric_names() {
                names.push(if several { format!("{output}_{m}") } else { m });
            }
        }
        Some(names)
    }

    /// The optimizer set by `compile`.
    pub fn optimizer(&self) -> Option<&dyn Optimizer> {
        self.compiled.as_ref().map(|c| c.optimizer.as_ref())
    }

    /// The optimizer set by `compile`, mutably (to change the learning rate from a callback).
    pub fn optimizer_mut(&mut self) -> Option<&mut (dyn Optimizer + 'static)> {
        self.compiled.as_mut().map(|c| c.optimizer.as_mut())
    }

    /// The loss set by `compile` (the first output's, for a model of several outputs).
    pub fn loss(&self) -> Option<&dyn Loss> {
        self.compiled.as_ref().and_then(|c| c.heads.first()).map(|h| h.loss.as_ref())
    }

    /// Each output's loss and loss weight, in the order of the outputs (empty before `compile`).
    pub fn losses(&self) -> Vec<(&dyn Loss, f32)> {
        self.compiled.iter().flat_map(|c| &c.heads).map(|h| (h.loss.as_ref(), h.weight)).collect()
    }

    /// Asks `fit` to stop after the current batch (Keras' `model.stop_training = True`).
    pub fn stop_training(&mut self) {
        self.stop_training = true;
    }

    /// Whether a stop was requested during the current `fit`.
    pub fn is_stopping(&self) -> bool {
        self.stop_training
    }
}

/// A model's layer, lent by [`Model::get_layer_mut`] to change its `trainable` property.
pub struct LayerMut<'m> {
    model: &'m mut Model,
    index: usize,
}

impl LayerMut<'_> {
    /// The layer.
    pub fn layer(&self) -> &dyn Layer {
        &*self.model.net.layers[self.index]
    }

    /// Whether the layer trains (Keras' `layer.trainable`; true unless set otherwise).
    pub fn trainable(&self) -> bool {
        self.layer().name().is_none_or(|n| !self.model.frozen.contains_key(n))
    }

    /// Keras' `layer.trainable = False` (or `True` again): a layer that is not trainable keeps its weights
    /// through training; the optimizer skips them and the tape computes no gradient for them. Its weights count
    /// as non-trainable in [`Model::summary`](crate::models::Model::summary); a saved model keeps the setting.
    /// Weights that are never trainable (BatchNormalization's moving statistics) stay so when the layer is set
    /// trainable again.
    ///
    /// Keras reads the flags at `compile` and needs a new `compile` after a change; kerust reads them at every
    /// step, so the change applies from the next step, with or without a new `compile`. An optimizer's state for
    /// a weight (Adam's moments) is kept while the weight is frozen and used again when it trains again.
    ///
    /// ```
    /// use kerust::{layers::Dense, models::Sequential};
    /// use ndarray::array;
    ///
    /// let mut model = Sequential::new();
    /// model.add(Dense::new(2).input_shape([2]).name("base"))?;
    /// model.add(Dense::new(1).name("head"))?;
    /// model.get_layer_mut("base")?.set_trainable(false);
    /// assert!(model.summary_string().contains("Non-trainable params: 6 (24.00 B)"));
    /// model.compile("mse", "sgd", [])?;
    /// let base = model.get_layer("base")?.weights().to_vec();
    /// let before: Vec<_> = base.iter().map(|&id| model.params().value(id).clone()).collect();
    /// model.fit(&array![[1.0f32, 2.0]], &array![[3.0f32]]).verbose(0).run()?;
    /// let after: Vec<_> = base.iter().map(|&id| model.params().value(id).clone()).collect();
    /// assert_eq!(before, after);
    /// # Ok::<(), kerust::Error>(())
    /// ```
    pub fn set_trainable(&mut self, trainable: bool) {
        self.model.set_layer_trainable(self.index, trainable);
    }
}

/// `(60000, 28, 28)`: a full shape.
pub(crate) fn shape_of(t: &Tensor) -> String {
    shape_of_dims(t.shape())
}

pub(crate) use crate::shapes::shape_of_dims;
