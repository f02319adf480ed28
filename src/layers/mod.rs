//! Layers: settings in the constructor, weights in [`Layer::build`], math in [`Layer::call`] (Keras' split).
//!
//! A layer is a small trait implementation written only as forward operations on the
//! [autodiff tape](crate::autodiff): its gradients come for free. The training loop knows nothing about any
//! particular layer.
//!
//! ```
//! use kerust::autodiff::{ParamStore, Tape};
//! use kerust::layers::{CallContext, Dense, Layer};
//! use ndarray::Array2;
//! use rand::SeedableRng;
//!
//! let mut dense = Dense::new(3).activation("relu");
//! let mut params = ParamStore::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! assert_eq!(dense.build(&[4], &mut params, &mut rng).unwrap(), vec![3]);
//! assert_eq!(dense.count_params(&params), 4 * 3 + 3);
//!
//! let tape = Tape::inference(&params, Default::default());
//! let x = tape.constant(Array2::<f32>::ones((2, 4)).into_dyn().view());
//! let y = dense.call(x, &mut CallContext::new(false, &mut rng));
//! assert_eq!(y.shape(), vec![2, 3]);
//! ```
//!
//! The merge layers ([`Add`], [`Subtract`], [`Multiply`], [`Average`], [`Maximum`], [`Minimum`],
//! [`Concatenate`]) take several inputs: a merge layer is built for the list of its inputs' shapes with
//! [`Layer::build_many`] and called on the list of their values with [`Layer::call_many`]; it has no weights.
//! Element-wise merges take inputs of one rank whose dimensions are equal or 1 on each axis (a dimension of 1 is
//! broadcast, as in Keras); `Concatenate` takes inputs whose shapes differ only on the axis it joins. Shapes are
//! checked when the layer is built.
//!
//! ```
//! use kerust::autodiff::{ParamStore, Tape};
//! use kerust::layers::{Add, CallContext, Concatenate, Layer};
//! use ndarray::array;
//! use rand::SeedableRng;
//!
//! let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
//! let mut add = Add::new();
//! assert_eq!(add.build_many(&[&[2], &[2]], &mut params, &mut rng)?, vec![2]);
//! let mut concat = Concatenate::new(-1);
//! assert_eq!(concat.build_many(&[&[2], &[3]], &mut params, &mut rng)?, vec![5]);
//! // A single input is Keras' error.
//! let err = Add::new().build_many(&[&[2]], &mut params, &mut rng).unwrap_err();
//! assert!(err.to_string().contains("A merge layer should be called on a list of at least 2 inputs"));
//!
//! let tape = Tape::inference(&params, Default::default());
//! let a = tape.constant(array![[1.0f32, 2.0]].into_dyn().view());
//! let b = tape.constant(array![[10.0f32, 20.0]].into_dyn().view());
//! let c = tape.constant(array![[7.0f32, 8.0, 9.0]].into_dyn().view());
//! let mut ctx = CallContext::new(false, &mut rng);
//! assert_eq!(add.call_many(&[a, b], &mut ctx).value(), array![[11.0f32, 22.0]].into_dyn());
//! let joined = concat.call_many(&[a, c], &mut ctx).value();
//! assert_eq!(joined, array![[1.0f32, 2.0, 7.0, 8.0, 9.0]].into_dyn());
//! # Ok::<(), kerust::Error>(())
//! ```
mod activation;
mod batch_normalization;
mod bidirectional;
mod config;
mod conv1d;
mod conv2d;
mod dense;
mod dropout;
mod embedding;
mod flatten;
mod input;
mod layer_normalization;
mod merging;
pub mod pooling;
pub mod pooling1d;
mod recurrent;
mod rescaling;
mod reshape;
mod spatial_dropout;
mod time_distributed;
mod wrapper;

pub use activation::Activation;
pub use batch_normalization::BatchNormalization;
pub use bidirectional::Bidirectional;
pub use config::{layer_from_config, LayerConfig, KNOWN_LAYERS};
pub use conv1d::Conv1D;
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use flatten::Flatten;
pub(crate) use input::check_input_shape;
pub use input::Input;
pub use layer_normalization::LayerNormalization;
pub use merging::{Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract};
// The pooling kinds (`pooling::{Average, Max, PoolKind}`) stay in their module: `layers::Average` is Keras'
// merge layer.
pub use pooling::{
    AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, GlobalPooling2D, MaxPooling2D, Pooling2D,
};
pub use pooling1d::{
    AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, GlobalPooling1D, MaxPooling1D, Pooling1D,
};
pub use recurrent::{SimpleRNN, GRU, LSTM};
pub use rescaling::Rescaling;
pub use reshape::Reshape;
pub use spatial_dropout::SpatialDropout1D;
pub use time_distributed::TimeDistributed;

use rand::rngs::StdRng;

use crate::autodiff::{ParamId, ParamStore, Var};
use crate::device::Storage;
use crate::distributed::Replicas;
use crate::initializers::Initializer;
use crate::Result;

/// What a layer's forward pass may need besides its input, and where it records state to update.
pub struct CallContext<'r> {
    /// Training (dropout active, batch statistics) or inference.
    pub training: bool,
    /// The model's random generator (dropout masks).
    pub rng: &'r mut StdRng,
    updates: Vec<(ParamId, Storage)>,
    /// The first error a layer reported with [`CallContext::fail`].
    error: Option<crate::Error>,
    /// The ranks of a distributed training step, for layers that synchronize across them.
    replicas: Option<Replicas>,
}

impl<'r> CallContext<'r> {
    /// A context for one forward pass.
    pub fn new(training: bool, rng: &'r mut StdRng) -> Self {
        CallContext { training, rng, updates: Vec::new(), error: None, replicas: None }
    }

    /// The context of a training step of a distributed model: `replicas` (set by the trainer when the model
    /// is distributed over more than one rank) lets a layer compute over the global batch, as
    /// [`BatchNormalization::synchronized`] does.
    pub fn with_replicas(mut self, replicas: Option<Replicas>) -> Self {
        self.replicas = replicas;
        self
    }

    /// The ranks of this distributed training step, if the model is distributed over more than one rank
    /// ([`CallContext::with_replicas`]); `None` in one process and at inference. A layer that uses them says
    /// so with [`Layer::uses_replicas`].
    pub fn replicas(&self) -> Option<&Replicas> {
        self.replicas.as_ref()
    }

    /// Records a new value for a (non-trainable) weight, Keras' `variable.assign` in `call`: a layer's state
    /// across steps, such as BatchNormalization's moving statistics. The layer cannot write it now (the tape
    /// reads the weights during the step); the training step assigns it after the optimizer's update.
    ///
    /// `value` has the weight's shape: a host array (`Tensor`), or a [`Storage`] computed on the weight's
    /// device.
    pub fn assign(&mut self, weight: ParamId, value: impl Into<Storage>) {
        self.updates.push((weight, value.into()));
    }

    /// Reports an error found while computing a layer's output (an embedding index out of range): `call`
    /// returns no `Result`, so a layer records it here and returns any value of its output's shape; the model
    /// checks after each layer and returns the error, naming the layer. The first error is kept.
    pub fn fail(&mut self, error: crate::Error) {
        self.error.get_or_insert(error);
    }

    /// The error reported with [`CallContext::fail`], if any, taken out of the context.
    pub fn take_error(&mut self) -> Option<crate::Error> {
        self.error.take()
    }

    /// The values recorded by [`CallContext::assign`], in order, for whoever runs the step to write into the
    /// [`ParamStore`] after the backward pass.
    pub fn into_updates(self) -> Vec<(ParamId, Storage)> {
        self.updates
    }
}

/// A layer of a model: settings in its constructor, weights created in
/// [`Layer::build`] through [`add_weight`], the forward pass in [`Layer::call`].
pub trait Layer: Send + Sync {
    /// Keras' class name, e.g. `"Dense"` (shown in the summary).
    fn class_name(&self) -> &'static str;

    /// The layer's name, once given by the user or assigned by the model (`dense`, `dense_1`, ...).
    fn name(&self) -> Option<&str>;

    /// Sets the name (the model does this for layers added without one).
    fn set_name(&mut self, name: String);

    /// The per-sample input shape this layer declares (`input_shape` of a first layer), if any.
    fn declared_input_shape(&self) -> Option<&[usize]> {
        None
    }

    /// Checks the settings and creates the weights for inputs of `input_shape` (per sample, no batch axis),
    /// registering them in `params`. Returns the per-sample output shape.
    ///
    /// # Errors
    /// Bad settings (zero units, a dropout rate outside [0, 1), an unknown activation name) or an input shape the
    /// layer cannot take.
    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>>;

    /// The forward pass on a batch, `x` of shape `(batch, input_shape...)`. Shapes were checked by `build`.
    /// A layer with state across steps (BatchNormalization's moving statistics) records the new values with
    /// [`CallContext::assign`] when `ctx.training`; it never writes its weights itself.
    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t>;

    /// Builds the layer for one per-sample shape per input; models build every layer through here. The default
    /// takes exactly one input and calls [`Layer::build`]; a layer of several inputs (the merge layers)
    /// overrides it and [`Layer::call_many`].
    ///
    /// # Errors
    /// Another number of inputs than the layer takes, or what [`Layer::build`] reports.
    fn build_many(
        &mut self,
        input_shapes: &[&[usize]],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        match input_shapes {
            [shape] => self.build(shape, params, rng),
            _ => Err(crate::Error::invalid_argument(
                "inputs",
                input_shapes.len(),
                format!("a {} layer takes exactly one input", self.class_name()),
            )),
        }
    }

    /// The forward pass on one batch per input, in [`Layer::build_many`]'s order; models call every layer
    /// through here. The default passes the single input to [`Layer::call`].
    fn call_many<'t>(&self, inputs: &[Var<'t>], ctx: &mut CallContext<'_>) -> Var<'t> {
        self.call(inputs[0], ctx)
    }

    /// Whether a mask on this layer's input passes through it (Keras' `supports_masking`); a layer that
    /// neither supports nor computes masks drops the mask, as Keras does.
    fn supports_masking(&self) -> bool {
        false
    }

    /// The mask of this layer's output, given its inputs and their masks (Keras' `compute_mask`). A mask is a
    /// constant `(batch, time)` tensor of 1.0 (a real step) and 0.0 (padding). The default passes the first
    /// input's mask through when [`Layer::supports_masking`], and gives none otherwise.
    fn compute_mask<'t>(&self, inputs: &[Var<'t>], masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        let _ = inputs;
        if self.supports_masking() {
            masks.first().copied().flatten()
        } else {
            None
        }
    }

    /// The forward pass given the inputs' masks (`None` where an input has none): Keras' `call(inputs,
    /// mask=...)`. Models call every layer through here. The default ignores the masks and calls
    /// [`Layer::call_many`].
    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        let _ = masks;
        self.call_many(inputs, ctx)
    }

    /// The per-sample shapes of the outputs after the first, once built: a layer of several outputs (an RNN's
    /// final states with `return_state`, as Keras' `out, h, c = LSTM(8, return_state=True)(x)`). None by
    /// default: one output, of the shape [`Layer::build`] returned.
    ///
    /// ```
    /// use kerust::autodiff::ParamStore;
    /// use kerust::layers::{Layer, LSTM};
    /// use rand::SeedableRng;
    ///
    /// let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
    /// let mut lstm = LSTM::new(8).return_state(true);
    /// assert_eq!(lstm.build(&[5, 3], &mut params, &mut rng)?, vec![8]);
    /// assert_eq!(lstm.extra_output_shapes(), vec![vec![8], vec![8]]); // h and c
    /// # Ok::<(), kerust::Error>(())
    /// ```
    fn extra_output_shapes(&self) -> Vec<Vec<usize>> {
        Vec::new()
    }

    /// The forward pass of every output, the first then those of [`Layer::extra_output_shapes`]; models call
    /// layers through here. The default is the one output of [`Layer::call_masked`]. Each output's mask is
    /// [`Layer::compute_output_mask`]'s.
    fn call_outputs<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Vec<Var<'t>> {
        vec![self.call_masked(inputs, masks, ctx)]
    }

    /// The mask of output `k` (0 is the first, then those of [`Layer::extra_output_shapes`]), given the
    /// inputs and their masks: Keras' `compute_mask` for a layer of several outputs. The default is
    /// [`Layer::compute_mask`] for the first output and none for the others (an RNN's states have no time
    /// axis); a layer of several sequence outputs ([`Bidirectional`] with `merge_mode` None) masks each.
    fn compute_output_mask<'t>(
        &self,
        k: usize,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
    ) -> Option<Var<'t>> {
        if k == 0 {
            self.compute_mask(inputs, masks)
        } else {
            None
        }
    }

    /// Checks data this layer reads straight from a model input (all samples, `(samples, input_shape...)`),
    /// before `fit`, `evaluate` or `predict` runs a step: a value the layer cannot take (an [`Embedding`]'s
    /// index out of range) is then an error of the call that leaves the model unchanged, rather than one found
    /// batches into training. The default accepts everything.
    ///
    /// # Errors
    /// The first value the layer cannot take, named with its position in the data.
    fn check_input(&self, x: ndarray::ArrayViewD<'_, f32>) -> Result<()> {
        let _ = x;
        Ok(())
    }

    /// Whether the layer's training forward pass may use [`CallContext::replicas`] (a collective that every
    /// rank must join, as [`BatchNormalization::synchronized`]'s sums): a distributed trainer then runs the
    /// step on a rank whose share of the batch is empty too (on a placeholder sample that adds nothing), so
    /// that the others find it in every collective. False by default; a wrapper answers for its layer.
    fn uses_replicas(&self) -> bool {
        false
    }

    /// Whether this is a model's input declaration ([`Input`]), which a model keeps apart from its layers.
    fn is_input(&self) -> bool {
        false
    }

    /// The layer's weights, in Keras' order (kernel, then bias). Empty before `build`.
    fn weights(&self) -> &[ParamId];

    /// The weights that have a regularizer (Keras' `kernel_regularizer`, `bias_regularizer`), with it: training
    /// adds each one's penalty to the loss while the weight is trainable. Empty by default and before `build`.
    fn regularizers(&self) -> Vec<(ParamId, crate::regularizers::Regularizer)> {
        Vec::new()
    }

    /// Replaces each of the layer's weight handles `id` with `new_id(id)`: a graph model keeps its weights in
    /// the order of its layers, so [`crate::models::Model::new`] renumbers them when a layer was built before
    /// one that comes earlier in the model (its first call was left out of the model). A layer with weights
    /// implements it to be used in such a model; the default refuses, naming the layer.
    ///
    /// # Errors
    /// The default: a layer with weights.
    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        let _ = new_id;
        if self.weights().is_empty() {
            return Ok(());
        }
        Err(crate::Error::Graph(format!(
            "layer `{}` ({}) was first called on a tensor no output depends on, so its weights come before \
             those of a layer the model lists first; it does not implement Layer::renumber_weights to be \
             renumbered: call it first where the model uses it",
            self.name().unwrap_or("?"),
            self.class_name()
        )))
    }

    /// The number of scalars in the layer's weights.
    fn count_params(&self, params: &ParamStore) -> usize {
        self.weights().iter().map(|&id| params.value(id).len()).sum()
    }

    /// The layer's class and settings, for saving a model ([`layer_from_config`] reads it back for built-in
    /// layers). A custom layer implements it with [`LayerConfig::new`] on a serde settings struct, and is
    /// loaded by the constructor registered with
    /// [`LoadOptions::custom_layer`](crate::saving::LoadOptions::custom_layer).
    ///
    /// # Errors
    /// The default: the layer cannot describe itself (a custom layer); `save_weights` still works for it.
    fn config(&self) -> Result<LayerConfig> {
        Err(crate::Error::NotReady(format!(
            "layer `{}` ({}) cannot be saved with its architecture: implement Layer::config (return \
             LayerConfig::new(\"{}\", &settings) for a serde settings struct) and load with \
             LoadOptions::custom_layer, or use save_weights",
            self.name().unwrap_or("?"),
            self.class_name(),
            self.class_name()
        )))
    }
}

/// A size along the two spatial axes, (rows, columns): Keras' `kernel_size=3` or `kernel_size=(3, 5)`.
///
/// ```
/// use kerust::layers::Size2;
/// assert_eq!(Size2::from(3), Size2(3, 3));
/// assert_eq!(Size2::from((2, 4)), Size2(2, 4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "[usize; 2]", into = "[usize; 2]")]
pub struct Size2(pub usize, pub usize);

impl From<usize> for Size2 {
    fn from(n: usize) -> Self {
        Size2(n, n)
    }
}

impl From<(usize, usize)> for Size2 {
    fn from((a, b): (usize, usize)) -> Self {
        Size2(a, b)
    }
}

impl From<[usize; 2]> for Size2 {
    fn from([a, b]: [usize; 2]) -> Self {
        Size2(a, b)
    }
}

impl From<Size2> for [usize; 2] {
    fn from(s: Size2) -> Self {
        [s.0, s.1]
    }
}

impl From<Size2> for (usize, usize) {
    fn from(s: Size2) -> Self {
        (s.0, s.1)
    }
}

impl std::fmt::Display for Size2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}, {})", self.0, self.1)
    }
}

/// Creates a weight of `shape` drawn from `initializer` and registers it in `params` (Keras' `add_weight`).
/// Every layer creates its weights through here, so the checks apply to all of them alike, built-in or not:
///
/// - the element count must not overflow, and its bytes must fit in what this machine can allocate (RAM plus
///   swap on Linux);
/// - the store's [`ParamStore::weight_limit`] (set while a model file is loaded, to the weights the file
///   brings) must not be exceeded;
/// - the memory is reserved fallibly ([`Vec::try_reserve_exact`]) before anything is drawn.
///
/// So a mistyped size (`Dense::new(1 << 40)`) or a hostile model file is an error, never a process abort.
///
/// ```
/// use kerust::autodiff::ParamStore;
/// use kerust::initializers::Initializer;
/// use rand::SeedableRng;
///
/// let mut params = ParamStore::new();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let huge = [1 << 20, 1 << 40];
/// let err = kerust::layers::add_weight(&mut params, "big/kernel".into(), &huge, Initializer::Zeros, &mut rng, true);
/// assert!(err.unwrap_err().to_string().contains("big/kernel"));
/// params.set_weight_limit(Some(10));
/// assert!(kerust::layers::add_weight(&mut params, "w".into(), &[3, 4], Initializer::Zeros, &mut rng, true).is_err());
/// ```
///
/// # Errors
/// [`Error::Allocation`](crate::Error::Allocation) naming the weight and its shape: too many elements for this
/// machine, more than the store's weight limit, or an allocation the allocator refused.
pub fn add_weight(
    params: &mut ParamStore,
    name: String,
    shape: &[usize],
    initializer: Initializer,
    rng: &mut StdRng,
    trainable: bool,
) -> Result<ParamId> {
    let what = || format!("weight `{name}`");
    let len = crate::memory::element_count(shape, what)?;
    if let Some(limit) = params.weight_limit() {
        let held = params.added_len();
        if held.checked_add(len).is_none_or(|total| total > limit) {
            return Err(crate::Error::Allocation {
                what: what(),
                shape: format!("{shape:?}"),
                reason: format!(
                    "{len} elements would bring the weights to more than the limit of {limit} ({held} held); \
                     when loading a model file, the limit is the number of weights the file holds"
                ),
            });
        }
    }
    let buf = crate::memory::try_vec::<f32>(len, what, shape)?;
    Ok(params.add(name, initializer.init_in(shape, buf, rng), trainable))
}

/// A layer's regularizer setting resolved and checked, for `build`.
fn resolve_regularizer(
    spec: &Option<crate::spec::Spec<crate::regularizers::Regularizer>>,
) -> Result<Option<crate::regularizers::Regularizer>> {
    spec.as_ref()
        .map(|s| {
            let r = s.resolve()?;
            r.validate()?;
            Ok(r)
        })
        .transpose()
}

/// The weights (kernel, then bias if any) paired with their regularizers, for those that have one.
fn weight_regularizers<const N: usize>(
    weights: &[ParamId],
    regularizers: [Option<crate::regularizers::Regularizer>; N],
) -> Vec<(ParamId, crate::regularizers::Regularizer)> {
    weights.iter().zip(regularizers).filter_map(|(&w, r)| Some((w, r?))).collect()
}

/// The builder methods `input_shape` and `name` of a layer whose settings struct (its saved config, in
/// `self.settings`) has the fields `input_shape: Option<Vec<usize>>` and `name: Option<String>`.
macro_rules! settings_builders {
    () => {
        /// The per-sample input shape, for the first layer of a model (Keras' `input_shape=`).
        pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
            self.settings.input_shape = Some(shape.as_ref().to_vec());
            self
        }

        /// A name instead of the one the model would assign.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.settings.name = Some(name.into());
            self
        }
    };
}
use settings_builders;

/// The builder methods of a layer with a kernel and a bias (Dense, Conv1D, Conv2D): `activation`, `use_bias`,
/// their initializers and regularizers, on fields of those names in `self` or in `self.$settings`.
macro_rules! kernel_builders {
    ($($settings:ident)?) => {
        /// The activation, by Keras' name (`"relu"`) or typed.
        pub fn activation(mut self, activation: impl Into<Spec<Activation>>) -> Self {
            self$(.$settings)?.activation = activation.into();
            self
        }

        /// Whether to add a bias (default true).
        pub fn use_bias(mut self, use_bias: bool) -> Self {
            self$(.$settings)?.use_bias = use_bias;
            self
        }

        /// The kernel's initializer (default `glorot_uniform`).
        pub fn kernel_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
            self$(.$settings)?.kernel_initializer = init.into();
            self
        }

        /// The bias' initializer (default `zeros`).
        pub fn bias_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
            self$(.$settings)?.bias_initializer = init.into();
            self
        }

        /// A penalty on the kernel added to the loss in training (Keras' `kernel_regularizer=`), by name
        /// (`"l2"`) or typed ([`Regularizer::l2(1e-4)`](Regularizer::l2)).
        pub fn kernel_regularizer(mut self, regularizer: impl Into<Spec<Regularizer>>) -> Self {
            self$(.$settings)?.kernel_regularizer = Some(regularizer.into());
            self
        }

        /// A penalty on the bias added to the loss in training (Keras' `bias_regularizer=`).
        pub fn bias_regularizer(mut self, regularizer: impl Into<Spec<Regularizer>>) -> Self {
            self$(.$settings)?.bias_regularizer = Some(regularizer.into());
            self
        }
    };
}
use kernel_builders;

/// The [`Layer`] methods that read and write `self.settings.name` and `self.settings.input_shape`, and `config`,
/// which is the settings struct itself, for a layer whose settings struct derives serde.
macro_rules! settings_accessors {
    () => {
        fn name(&self) -> Option<&str> {
            self.settings.name.as_deref()
        }

        fn set_name(&mut self, name: String) {
            self.settings.name = Some(name);
        }

        fn declared_input_shape(&self) -> Option<&[usize]> {
            self.settings.input_shape.as_deref()
        }

        fn config(&self) -> $crate::Result<$crate::layers::LayerConfig> {
            $crate::layers::LayerConfig::new(self.class_name(), &self.settings)
        }
    };
}
use settings_accessors;

/// Keras' `to_snake_case` of a class name: `Dense` -> `dense`, `InputLayer` -> `input_layer`, `Conv2D` ->
/// `conv2d`, `MaxPooling2D` -> `max_pooling2d`. An underscore goes before a capital that starts a lower-case
/// run (`xPo` -> `x_Po`) and between a lower-case letter and a capital (`tL` -> `t_L`).
pub(crate) fn snake_case(class_name: &str) -> String {
    let c: Vec<char> = class_name.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        let starts_word =
            i > 0 && ch.is_ascii_uppercase() && c.get(i + 1).is_some_and(char::is_ascii_lowercase);
        let after_lower = i > 0 && ch.is_ascii_uppercase() && c[i - 1].is_ascii_lowercase();
        if starts_word || after_lower {
            out.push('_');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn snake_case_names() {
        assert_eq!(super::snake_case("Dense"), "dense");
        assert_eq!(super::snake_case("InputLayer"), "input_layer");
        assert_eq!(super::snake_case("Conv2D"), "conv2d");
        assert_eq!(super::snake_case("MaxPooling2D"), "max_pooling2d");
        assert_eq!(super::snake_case("GlobalAveragePooling2D"), "global_average_pooling2d");
        assert_eq!(super::snake_case("BatchNormalization"), "batch_normalization");
    }
}
