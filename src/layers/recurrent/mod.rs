//! The recurrent layers `SimpleRNN`, `LSTM` and `GRU`: their shared settings (Keras' names and defaults),
//! building (weights named and shaped as Keras', `lstm/lstm_cell/kernel`, ...), and the call, one fused node
//! over the whole sequence ([`Var::recurrent`]).
mod gru;
mod lstm;
mod simple_rnn;

pub use gru::GRU;
pub use lstm::LSTM;
pub use simple_rnn::SimpleRNN;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{activation_fn, initializer_fn};
use super::{add_weight, CallContext};
use crate::activations::Activation;
use crate::autodiff::{ParamId, ParamStore, RecurrentOptions, Tape, Var};
use crate::device::{RecurrentCell, Unary};
use crate::initializers::Initializer;
use crate::spec::Spec;
use crate::{Error, Result};

/// Which of the three layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Simple,
    Lstm,
    Gru,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Simple => "SimpleRNN",
            Kind::Lstm => "LSTM",
            Kind::Gru => "GRU",
        }
    }

    /// Keras' default layer name (`simple_rnn`, `lstm`, `gru`); the cell is `<that>_cell`.
    fn default_name(self) -> &'static str {
        match self {
            Kind::Simple => "simple_rnn",
            Kind::Lstm => "lstm",
            Kind::Gru => "gru",
        }
    }
}

/// The settings, as they are saved (Keras' argument names). The fields of one layer only are absent from the
/// others' configs: `recurrent_activation` (LSTM, GRU), `unit_forget_bias` (LSTM), `reset_after` (GRU).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecurrentConfig {
    name: Option<String>,
    return_sequences: bool,
    return_state: bool,
    go_backwards: bool,
    units: usize,
    #[serde(with = "activation_fn")]
    activation: Spec<Activation>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_activation")]
    recurrent_activation: Option<Spec<Activation>>,
    use_bias: bool,
    #[serde(with = "initializer_fn")]
    kernel_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    recurrent_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    bias_initializer: Spec<Initializer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_forget_bias: Option<bool>,
    dropout: f32,
    recurrent_dropout: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset_after: Option<bool>,
    input_shape: Option<Vec<usize>>,
}

/// Serde for an optional activation setting.
mod optional_activation {
    use serde::{Deserializer, Serializer};

    use crate::activations::Activation;
    use crate::spec::Spec;

    pub(crate) fn serialize<S: Serializer>(spec: &Option<Spec<Activation>>, s: S) -> Result<S::Ok, S::Error> {
        match spec {
            Some(a) => super::activation_fn::serialize(a, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spec<Activation>>, D::Error> {
        super::activation_fn::deserialize(d).map(Some)
    }
}

#[derive(Clone, Debug)]
struct Built {
    options: RecurrentOptions,
    /// Kernel, recurrent kernel, then the bias if any.
    weights: Vec<ParamId>,
    features: usize,
}

/// What the three layers share: settings, weights, and the call.
#[derive(Clone, Debug)]
pub(crate) struct RecurrentBase {
    kind: Kind,
    settings: RecurrentConfig,
    built: Option<Built>,
}

impl RecurrentBase {
    fn new(kind: Kind, units: usize) -> Self {
        let gates = kind != Kind::Simple;
        RecurrentBase {
            kind,
            settings: RecurrentConfig {
                name: None,
                return_sequences: false,
                return_state: false,
                go_backwards: false,
                units,
                activation: Spec::Value(Activation::Tanh),
                recurrent_activation: gates.then_some(Spec::Value(Activation::Sigmoid)),
                use_bias: true,
                kernel_initializer: Spec::Value(Initializer::GlorotUniform),
                recurrent_initializer: Spec::Value(Initializer::Orthogonal { gain: 1.0 }),
                bias_initializer: Spec::Value(Initializer::Zeros),
                unit_forget_bias: (kind == Kind::Lstm).then_some(true),
                dropout: 0.0,
                recurrent_dropout: 0.0,
                reset_after: (kind == Kind::Gru).then_some(true),
                input_shape: None,
            },
            built: None,
        }
    }

    /// A layer from a saved config, refusing another layer's settings.
    fn from_settings(kind: Kind, settings: RecurrentConfig) -> Result<Self> {
        let class = kind.class_name();
        // (field, present, expected)
        let fields = [
            ("recurrent_activation", settings.recurrent_activation.is_some(), kind != Kind::Simple),
            ("unit_forget_bias", settings.unit_forget_bias.is_some(), kind == Kind::Lstm),
            ("reset_after", settings.reset_after.is_some(), kind == Kind::Gru),
        ];
        if let Some((field, present, _)) = fields.iter().find(|(_, present, expected)| present != expected) {
            return Err(Error::Format {
                format: "layer config",
                source_name: class.into(),
                reason: format!(
                    "`{field}` is {} in a {class} config",
                    if *present { "unexpected" } else { "missing" }
                ),
            });
        }
        Ok(RecurrentBase { kind, settings, built: None })
    }

    fn cell(&self) -> RecurrentCell {
        match self.kind {
            Kind::Simple => RecurrentCell::Simple,
            Kind::Lstm => RecurrentCell::Lstm,
            Kind::Gru => RecurrentCell::Gru { reset_after: self.settings.reset_after.unwrap_or(true) },
        }
    }

    fn name(&self) -> Option<&str> {
        self.settings.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.settings.name = Some(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        self.settings.input_shape.as_deref()
    }

    fn config(&self) -> Result<super::LayerConfig> {
        super::LayerConfig::new(self.kind.class_name(), &self.settings)
    }

    fn weights(&self) -> &[ParamId] {
        self.built.as_ref().map_or(&[], |b| &b.weights)
    }

    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        if let Some(built) = self.built.as_mut() {
            built.weights.iter_mut().for_each(|id| *id = new_id(*id));
        }
        Ok(())
    }

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let s = &self.settings;
        let class = self.kind.class_name();
        if s.units == 0 {
            return Err(Error::invalid_argument(
                "units",
                0,
                format!("{class} needs a positive number of units"),
            ));
        }
        let &[time, features] = input_shape else {
            return Err(Error::shape(
                format!("{class} input"),
                "sequences (None, time, features)",
                crate::shapes::shape_str(input_shape),
            ));
        };
        if time == 0 || features == 0 {
            return Err(Error::shape(
                format!("{class} input"),
                "sequences (None, time, features) of positive sizes",
                crate::shapes::shape_str(input_shape),
            ));
        }
        for (name, rate) in [("dropout", s.dropout), ("recurrent_dropout", s.recurrent_dropout)] {
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::invalid_argument(name, rate, "a rate in [0, 1)"));
            }
        }
        let activation = elementwise("activation", s.activation.resolve()?)?;
        let recurrent_activation = match &s.recurrent_activation {
            Some(a) => elementwise("recurrent_activation", a.resolve()?)?,
            None => Unary::Sigmoid,
        };
        let inits = [&s.kernel_initializer, &s.recurrent_initializer, &s.bias_initializer]
            .map(|i| i.resolve().and_then(|i| i.validate().map(|()| i)));
        let [kernel_init, recurrent_init, bias_init] = inits;
        let (kernel_init, recurrent_init, bias_init) = (kernel_init?, recurrent_init?, bias_init?);
        let cell = self.cell();
        let width = cell.gates() * s.units;
        let name = s.name.clone().unwrap_or_else(|| self.kind.default_name().into());
        let prefix = format!("{name}/{}_cell", self.kind.default_name());
        let mut weights = vec![
            add_weight(params, format!("{prefix}/kernel"), &[features, width], kernel_init, rng, true)?,
            add_weight(
                params,
                format!("{prefix}/recurrent_kernel"),
                &[s.units, width],
                recurrent_init,
                rng,
                true,
            )?,
        ];
        if s.use_bias {
            let shape = cell.bias_shape(s.units);
            if s.unit_forget_bias == Some(true) {
                // Keras' LSTM bias: the initializer for i, ones for the forget gate, the initializer for c, o.
                let id = add_weight(params, format!("{prefix}/bias"), &shape, Initializer::Zeros, rng, true)?;
                let u = s.units;
                let (first, rest) = (bias_init.init(&[u], rng), bias_init.init(&[2 * u], rng));
                let value: Vec<f32> = first
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(1.0, u))
                    .chain(rest.iter().copied())
                    .collect();
                params.set_value(id, ndarray::ArrayView1::from(&value).into_dyn())?;
                weights.push(id);
            } else {
                weights.push(add_weight(params, format!("{prefix}/bias"), &shape, bias_init, rng, true)?);
            }
        }
        let options = RecurrentOptions {
            cell,
            activation,
            recurrent_activation,
            go_backwards: s.go_backwards,
            return_sequences: s.return_sequences,
            return_state: false,
        };
        self.built = Some(Built { options, weights, features });
        Ok(if s.return_sequences { vec![time, s.units] } else { vec![s.units] })
    }

    /// The fused node: with `return_state`, its rows are the outputs and then the states.
    fn run<'t>(&self, x: Var<'t>, mask: Option<Var<'t>>, ctx: &mut CallContext<'_>, states: bool) -> Var<'t> {
        let class = self.kind.class_name();
        let built = self
            .built
            .as_ref()
            .unwrap_or_else(|| panic!("{class}::call before build: models build layers first"));
        let tape = x.tape();
        let s = &self.settings;
        let batch = x.shape()[0];
        let (w, u) = (tape.param(built.weights[0]), tape.param(built.weights[1]));
        let bias = built.weights.get(2).map(|&b| tape.param(b));
        let mut x = x;
        let mut recurrent_mask = None;
        if ctx.training {
            // Keras draws one mask per sequence for the inputs and one for the state, the same at every step.
            let rng = &mut *ctx.rng;
            if s.dropout > 0.0 {
                x = x.mul(dropout_mask(tape, &[batch, 1, built.features], s.dropout, rng));
            }
            if s.recurrent_dropout > 0.0 {
                recurrent_mask = Some(dropout_mask(tape, &[batch, s.units], s.recurrent_dropout, rng));
            }
        }
        let options = RecurrentOptions { return_state: states, ..built.options };
        x.recurrent(w, u, bias, &[], mask, recurrent_mask, options)
    }

    fn call_with_state<'t>(
        &self,
        x: Var<'t>,
        mask: Option<Var<'t>>,
        ctx: &mut CallContext<'_>,
    ) -> (Var<'t>, Vec<Var<'t>>) {
        let packed = self.run(x, mask, ctx, true);
        let rows = packed.shape()[1];
        // Rows of the packed result: the outputs, then one row per state.
        let steps = if self.settings.return_sequences { rows - self.cell().states() } else { 1 };
        let rows_of = "the packed result has the output's steps and then the states";
        let output = if self.settings.return_sequences {
            packed.slice_axis(1, 0..steps).expect(rows_of)
        } else {
            packed.index_axis(1, 0).expect(rows_of)
        };
        let states =
            (0..self.cell().states()).map(|k| packed.index_axis(1, steps + k).expect(rows_of)).collect();
        (output, states)
    }

    /// With `return_state`, the final states after the output: `h` (and `c` for the LSTM).
    fn extra_output_shapes(&self) -> Vec<Vec<usize>> {
        match &self.built {
            Some(_) if self.settings.return_state => vec![vec![self.settings.units]; self.cell().states()],
            _ => Vec::new(),
        }
    }

    fn call_outputs<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Vec<Var<'t>> {
        let mask = masks.first().copied().flatten();
        if self.settings.return_state {
            let (output, states) = self.call_with_state(inputs[0], mask, ctx);
            std::iter::once(output).chain(states).collect()
        } else {
            vec![self.run(inputs[0], mask, ctx, false)]
        }
    }

    fn compute_mask<'t>(&self, masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        if self.settings.return_sequences {
            masks.first().copied().flatten()
        } else {
            None
        }
    }
}

/// The element-wise function of an activation, or the error for softmax.
fn elementwise(name: &'static str, a: Activation) -> Result<Unary> {
    match a.elementwise() {
        Some(Some(f)) => Ok(f),
        // Linear: the identity, as a scale by one.
        Some(None) => Ok(Unary::MulScalar(1.0)),
        None => {
            Err(Error::invalid_argument(name, a.name(), "an element-wise activation (softmax is not one)"))
        }
    }
}

/// Inverted dropout's mask on the tape: 0 with probability `rate`, else `1 / (1 - rate)`, written in place by
/// Dropout's filler.
fn dropout_mask<'t>(tape: &'t Tape<'_>, shape: &[usize], rate: f32, rng: &mut StdRng) -> Var<'t> {
    tape.constant_with(shape, |m| {
        let m = m.as_slice_mut().expect("a fresh constant is contiguous");
        crate::layers::dropout::fill_mask(m, rate, 1.0 / (1.0 - rate), rng);
    })
}

/// The builders every recurrent layer has, on a type with a `base: RecurrentBase` field.
macro_rules! recurrent_builders {
    () => {
        /// The activation (default tanh), by Keras' name or typed; any element-wise one.
        pub fn activation(
            mut self,
            activation: impl Into<$crate::spec::Spec<$crate::activations::Activation>>,
        ) -> Self {
            self.base.settings.activation = activation.into();
            self
        }

        /// Whether to add a bias (default true).
        pub fn use_bias(mut self, use_bias: bool) -> Self {
            self.base.settings.use_bias = use_bias;
            self
        }

        /// The input kernel's initializer (default `glorot_uniform`).
        pub fn kernel_initializer(
            mut self,
            init: impl Into<$crate::spec::Spec<$crate::initializers::Initializer>>,
        ) -> Self {
            self.base.settings.kernel_initializer = init.into();
            self
        }

        /// The recurrent kernel's initializer (default `orthogonal`).
        pub fn recurrent_initializer(
            mut self,
            init: impl Into<$crate::spec::Spec<$crate::initializers::Initializer>>,
        ) -> Self {
            self.base.settings.recurrent_initializer = init.into();
            self
        }

        /// The bias's initializer (default `zeros`).
        pub fn bias_initializer(
            mut self,
            init: impl Into<$crate::spec::Spec<$crate::initializers::Initializer>>,
        ) -> Self {
            self.base.settings.bias_initializer = init.into();
            self
        }

        /// The fraction of input features dropped in training (default 0): one mask per sequence, the same at
        /// every step, as Keras draws it.
        pub fn dropout(mut self, rate: f32) -> Self {
            self.base.settings.dropout = rate;
            self
        }

        /// The fraction of the state dropped going into the recurrent product in training (default 0): one mask
        /// per sequence, the same at every step.
        pub fn recurrent_dropout(mut self, rate: f32) -> Self {
            self.base.settings.recurrent_dropout = rate;
            self
        }

        /// Whether to return every step's output `(batch, time, units)` rather than the last `(batch, units)`
        /// (default false).
        pub fn return_sequences(mut self, yes: bool) -> Self {
            self.base.settings.return_sequences = yes;
            self
        }

        /// Whether the layer also returns its final states (default false): in a [`Graph`](crate::models::Graph)
        /// the layer then has several outputs, the output then the states (`h`, and `c` for the LSTM), from
        /// [`Graph::apply_outputs`](crate::models::Graph::apply_outputs); a `Sequential` refuses it, as Keras
        /// (one output per layer). [`Self::call_with_state`] gives them outside a model.
        pub fn return_state(mut self, yes: bool) -> Self {
            self.base.settings.return_state = yes;
            self
        }

        /// Whether to run through time backwards (default false); the output sequence is then in reversed
        /// order, as in Keras.
        pub fn go_backwards(mut self, yes: bool) -> Self {
            self.base.settings.go_backwards = yes;
            self
        }

        /// The per-sample input shape `(time, features)`, for the first layer of a model.
        pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
            self.base.settings.input_shape = Some(shape.as_ref().to_vec());
            self
        }

        /// A name instead of the one the model would assign.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.base.settings.name = Some(name.into());
            self
        }

        /// The number of units.
        pub fn units(&self) -> usize {
            self.base.settings.units
        }

        /// The forward pass returning the output and the final states (`[h]`, or `[h, c]` for the LSTM): Keras'
        /// `return_state=True`. `mask` `(batch, time)` marks real steps with 1.0.
        ///
        /// # Panics
        /// Before the layer is built.
        pub fn call_with_state<'t>(
            &self,
            x: $crate::autodiff::Var<'t>,
            mask: Option<$crate::autodiff::Var<'t>>,
            ctx: &mut $crate::layers::CallContext<'_>,
        ) -> ($crate::autodiff::Var<'t>, Vec<$crate::autodiff::Var<'t>>) {
            self.base.call_with_state(x, mask, ctx)
        }
    };
}
use recurrent_builders;

/// The [`Layer`](super::Layer) implementation of a type with a `base: RecurrentBase` field.
macro_rules! recurrent_layer {
    ($ty:ty) => {
        impl $crate::layers::Layer for $ty {
            fn class_name(&self) -> &'static str {
                self.base.kind.class_name()
            }

            fn name(&self) -> Option<&str> {
                self.base.name()
            }

            fn set_name(&mut self, name: String) {
                self.base.set_name(name)
            }

            fn declared_input_shape(&self) -> Option<&[usize]> {
                self.base.declared_input_shape()
            }

            fn build(
                &mut self,
                input_shape: &[usize],
                params: &mut $crate::autodiff::ParamStore,
                rng: &mut rand::rngs::StdRng,
            ) -> $crate::Result<Vec<usize>> {
                self.base.build(input_shape, params, rng)
            }

            fn call<'t>(
                &self,
                x: $crate::autodiff::Var<'t>,
                ctx: &mut $crate::layers::CallContext<'_>,
            ) -> $crate::autodiff::Var<'t> {
                self.base.run(x, None, ctx, false)
            }

            fn supports_masking(&self) -> bool {
                true
            }

            fn compute_mask<'t>(
                &self,
                _inputs: &[$crate::autodiff::Var<'t>],
                masks: &[Option<$crate::autodiff::Var<'t>>],
            ) -> Option<$crate::autodiff::Var<'t>> {
                self.base.compute_mask(masks)
            }

            fn call_masked<'t>(
                &self,
                inputs: &[$crate::autodiff::Var<'t>],
                masks: &[Option<$crate::autodiff::Var<'t>>],
                ctx: &mut $crate::layers::CallContext<'_>,
            ) -> $crate::autodiff::Var<'t> {
                self.base.run(inputs[0], masks.first().copied().flatten(), ctx, false)
            }

            fn extra_output_shapes(&self) -> Vec<Vec<usize>> {
                self.base.extra_output_shapes()
            }

            fn call_outputs<'t>(
                &self,
                inputs: &[$crate::autodiff::Var<'t>],
                masks: &[Option<$crate::autodiff::Var<'t>>],
                ctx: &mut $crate::layers::CallContext<'_>,
            ) -> Vec<$crate::autodiff::Var<'t>> {
                self.base.call_outputs(inputs, masks, ctx)
            }

            fn weights(&self) -> &[$crate::autodiff::ParamId] {
                self.base.weights()
            }

            fn renumber_weights(
                &mut self,
                new_id: &dyn Fn($crate::autodiff::ParamId) -> $crate::autodiff::ParamId,
            ) -> $crate::Result<()> {
                self.base.renumber_weights(new_id)
            }

            fn config(&self) -> $crate::Result<$crate::layers::LayerConfig> {
                self.base.config()
            }
        }
    };
}
use recurrent_layer;
