//! `Bidirectional`: a recurrent layer run forwards and backwards over the sequence, the two outputs merged (or
//! both given, with Keras' `merge_mode=None`), and the two directions' final states after them with
//! `return_state`.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wrapper::{inner_name, prefix_weights};
use super::{layer_from_config, CallContext, Layer, LayerConfig};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// The merge modes Keras accepts, as its error message lists them.
const MERGE_MODES: &str = "\"sum\", \"mul\", \"ave\", \"concat\", None";

/// How the two directions' outputs are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Merge {
    Concat,
    Sum,
    Mul,
    Ave,
    /// Keras' `None`: the two outputs, forward then backward, as two tensors.
    Unmerged,
}

impl Merge {
    fn parse(mode: Option<&str>) -> Result<Merge> {
        match mode {
            Some("concat") => Ok(Merge::Concat),
            Some("sum") => Ok(Merge::Sum),
            Some("mul") => Ok(Merge::Mul),
            Some("ave") => Ok(Merge::Ave),
            None => Ok(Merge::Unmerged),
            Some(other) => {
                Err(Error::UnknownName { kind: "merge mode", name: other.into(), known: MERGE_MODES.into() })
            }
        }
    }
}

/// The saved settings: Keras' `merge_mode` (`null` for None), and the two inner layers' configs nested as Keras
/// nests them (`"layer": {"class_name": "LSTM", "config": {"name": "forward_lstm", ...}}`, `"backward_layer":
/// ...`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BidirectionalConfig {
    name: Option<String>,
    /// Missing: Keras' default, `"concat"`; `null`: None, the two outputs unmerged.
    #[serde(default = "default_merge_mode")]
    merge_mode: Option<String>,
    layer: LayerConfig,
    backward_layer: Option<LayerConfig>,
    input_shape: Option<Vec<usize>>,
}

fn default_merge_mode() -> Option<String> {
    Some("concat".into())
}

struct Built {
    forward: Box<dyn Layer>,
    backward: Box<dyn Layer>,
    merge: Merge,
    return_sequences: bool,
    /// The shapes of the outputs after the first: the backward output when unmerged, then the forward layer's
    /// final states and the backward layer's (with `return_state`).
    extra_shapes: Vec<Vec<usize>>,
    /// The forward layer's, then the backward layer's.
    weights: Vec<ParamId>,
}

/// Keras' `layers.Bidirectional`: runs a recurrent layer ([`SimpleRNN`](super::SimpleRNN),
/// [`LSTM`](super::LSTM), [`GRU`](super::GRU)) over the sequence forwards and a copy of it backwards, and merges
/// the two outputs: `"concat"` (the default) joins them on the last axis, `"sum"`, `"mul"` and `"ave"` combine
/// them element-wise. With `return_sequences`, the backward output is put back in time order first, so both
/// outputs describe the same step.
///
/// Two settings give the layer several outputs, as Keras' `call` returns them, so it is applied in a
/// [`Graph`](crate::models::Graph) with [`Graph::apply_outputs`](crate::models::Graph::apply_outputs) (a
/// `Sequential` refuses it, its layers having one output each): `merge_mode(None)` gives the forward output then
/// the backward one, unmerged; a wrapped layer with `return_state` adds the forward layer's final states then
/// the backward layer's (`h`, and `c` for an LSTM) after the output(s). The sequence outputs carry the input's
/// mask with `return_sequences`; the states carry none.
///
/// The copies are made from the layer's config, as Keras makes them: `forward_<name>`, and `backward_<name>` with
/// `go_backwards` set (or the layer given to [`Bidirectional::backward_layer`]). Their weights are named under
/// this layer's, forward first: `bidirectional/forward_lstm/lstm_cell/kernel`, ...,
/// `bidirectional/backward_lstm/lstm_cell/bias`. A mask reaches both directions; with `return_sequences` the
/// output is zero at masked steps and the mask passes on, as in Keras.
///
/// ```
/// use kerust::layers::{Bidirectional, Dense, Embedding, LSTM};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Embedding::new(100, 8).mask_zero(true).input_shape([12]))?;
/// model.add(Bidirectional::new(LSTM::new(16).return_sequences(true)))?;
/// model.add(Bidirectional::new(LSTM::new(4)).merge_mode("sum"))?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.output_shape(), Some(&[1][..]));
/// let names: Vec<_> = model.params().iter().map(|(_, p)| p.name.clone()).collect();
/// assert_eq!(names[1], "bidirectional/forward_lstm/lstm_cell/kernel");
/// assert_eq!(names[4], "bidirectional/backward_lstm/lstm_cell/kernel");
///
/// // Only recurrent layers can be wrapped, and merge modes are Keras' four.
/// let mut bad = Sequential::new();
/// assert!(bad.add(Bidirectional::new(Dense::new(3)).input_shape([5, 2])).is_err());
/// let err = Sequential::new().add(Bidirectional::new(LSTM::new(3)).merge_mode("max").input_shape([5, 2]));
/// assert!(err.unwrap_err().to_string().contains("\"concat\""));
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// Both directions apart, and their final states, in a functional model:
///
/// ```
/// use kerust::layers::{Bidirectional, Concatenate, Dense, Input, LSTM};
/// use kerust::models::{Graph, Model, Sequential};
///
/// let mut g = Graph::new();
/// let x = g.input(Input::new([12, 8]))?;
/// let bi = Bidirectional::new(LSTM::new(16).return_state(true)).merge_mode(None);
/// let [forward, backward, h, c, h_back, c_back] = g.apply_outputs(bi, x)?[..] else { unreachable!() };
/// assert_eq!(g.shape(backward)?, &[16]);
/// let both = g.apply(Concatenate::new(-1), [forward, backward, h, c, h_back, c_back])?;
/// let y = g.apply(Dense::new(1), both)?;
/// let model = Model::new(g, x, y)?;
/// assert_eq!(model.output_shape(), Some(&[1][..]));
///
/// // A Sequential's layers have one output each.
/// let mut seq = Sequential::new();
/// let unmerged = Bidirectional::new(LSTM::new(4)).merge_mode(None).input_shape([12, 8]);
/// assert!(seq.add(unmerged).unwrap_err().to_string().contains("single output tensor"));
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct Bidirectional {
    name: Option<String>,
    merge_mode: Option<String>,
    layer: Box<dyn Layer>,
    backward_layer: Option<Box<dyn Layer>>,
    input_shape: Option<Vec<usize>>,
    built: Option<Built>,
}

impl std::fmt::Debug for Bidirectional {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bidirectional")
            .field("name", &self.name)
            .field("merge_mode", &self.merge_mode)
            .field("layer", &self.layer.class_name())
            .field("built", &self.built.is_some())
            .finish()
    }
}

impl Bidirectional {
    /// Wraps `layer`, a recurrent layer; a layer of another kind is an error when this one is built.
    pub fn new(layer: impl Layer + 'static) -> Self {
        Self::from_boxed(Box::new(layer))
    }

    /// [`Bidirectional::new`] for a boxed layer.
    pub fn from_boxed(layer: Box<dyn Layer>) -> Self {
        Bidirectional {
            name: None,
            merge_mode: Some("concat".into()),
            layer,
            backward_layer: None,
            input_shape: None,
            built: None,
        }
    }

    /// How the outputs are merged: `"concat"` (default), `"sum"`, `"mul"` or `"ave"`; or `None`, Keras' two
    /// outputs unmerged (forward, then backward), for
    /// [`Graph::apply_outputs`](crate::models::Graph::apply_outputs). Another string is an error when the layer
    /// is built.
    pub fn merge_mode<'a>(mut self, mode: impl Into<Option<&'a str>>) -> Self {
        self.merge_mode = mode.into().map(str::to_owned);
        self
    }

    /// The layer that reads the sequence backwards, instead of a copy of the wrapped one with `go_backwards`:
    /// it must have `go_backwards` set, and the wrapped layer's `return_sequences` and `return_state`.
    pub fn backward_layer(mut self, layer: impl Layer + 'static) -> Self {
        self.backward_layer = Some(Box::new(layer));
        self
    }

    /// The per-sample input shape `(time, features)`, for the first layer of a model.
    pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
        self.input_shape = Some(shape.as_ref().to_vec());
        self
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The forward and backward layers, once built.
    pub fn layers(&self) -> Option<(&dyn Layer, &dyn Layer)> {
        self.built.as_ref().map(|b| (&*b.forward, &*b.backward))
    }

    /// The configs of the forward and backward layers: from the built layers, or made from the wrapped one.
    fn inner_configs(&self) -> Result<(LayerConfig, LayerConfig)> {
        if let Some(b) = &self.built {
            return Ok((b.forward.config()?, b.backward.config()?));
        }
        let forward = derived(&*self.layer, "forward", None)?;
        let backward = match &self.backward_layer {
            Some(layer) => derived(&**layer, "", None)?,
            None => derived(&*self.layer, "backward", Some(true))?,
        };
        Ok((forward, backward))
    }

    /// A layer from its saved config, nested layers included.
    pub(crate) fn from_config(config: &LayerConfig) -> Result<Self> {
        let c: BidirectionalConfig = config.parse()?;
        let mut b = Bidirectional::from_boxed(layer_from_config(&c.layer)?);
        b.backward_layer = c.backward_layer.as_ref().map(layer_from_config).transpose()?;
        b.name = c.name;
        b.merge_mode = c.merge_mode;
        b.input_shape = c.input_shape;
        Ok(b)
    }
}

/// The recurrent settings a wrapped layer must have (Keras' `go_backwards`, `return_sequences`,
/// `return_state`), from its config.
fn recurrent_flags(config: &LayerConfig) -> Result<[bool; 3]> {
    let flag = |key: &str| config.config.get(key).and_then(Value::as_bool);
    match [flag("go_backwards"), flag("return_sequences"), flag("return_state")] {
        [Some(g), Some(s), Some(r)] => Ok([g, s, r]),
        _ => Err(Error::invalid_argument(
            "layer",
            &config.class_name,
            "Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU: a sequence layer with \
             `go_backwards`, `return_sequences` and `return_state`)",
        )),
    }
}

/// `layer`'s config renamed `<direction>_<name>` (Keras drops a `<direction>_` the name already starts with),
/// with `go_backwards` set when given; an empty `direction` keeps the name (a given backward layer).
fn derived(layer: &dyn Layer, direction: &str, go_backwards: Option<bool>) -> Result<LayerConfig> {
    let mut config = layer.config().map_err(|e| match e {
        // A layer that cannot describe itself cannot be copied: it is not one of the recurrent layers.
        Error::NotReady(_) => Error::invalid_argument(
            "layer",
            layer.class_name(),
            "Bidirectional wraps a recurrent layer (SimpleRNN, LSTM or GRU), copied from its config",
        ),
        e => e,
    })?;
    recurrent_flags(&config)?;
    let name = inner_name(layer);
    let name = if direction.is_empty() {
        name
    } else {
        let prefix = format!("{direction}_");
        format!("{prefix}{}", name.strip_prefix(&prefix).unwrap_or(&name))
    };
    let settings = config.config.as_object_mut().expect("recurrent_flags found an object");
    settings.insert("name".into(), Value::String(name));
    if let Some(g) = go_backwards {
        settings.insert("go_backwards".into(), Value::Bool(g));
    }
    Ok(config)
}

/// `y` `(batch, time, units)` with its time axis reversed: a gather of its time steps as rows of
/// `(time, batch * units)` (copies, whose gradient is a scatter back).
fn flip_time<'t>(y: Var<'t>) -> Var<'t> {
    let &[batch, time, units] = y.shape().as_slice() else { unreachable!("a recurrent layer's sequences") };
    let steps = y.tape().constant_with(&[time], |r| {
        r.iter_mut().enumerate().for_each(|(t, v)| *v = (time - 1 - t) as f32);
    });
    let (flipped, fault) = y.permute(&[1, 0, 2]).reshape(&[time, batch * units]).gather(steps);
    debug_assert!(fault.is_none(), "reversed steps are in range");
    flipped.reshape(&[time, batch, units]).permute(&[1, 0, 2])
}

impl Layer for Bidirectional {
    fn class_name(&self) -> &'static str {
        "Bidirectional"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref().or_else(|| self.layer.declared_input_shape())
    }

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let merge = Merge::parse(self.merge_mode.as_deref())?;
        let (forward_config, backward_config) = self.inner_configs()?;
        let [fg, fs, fr] = recurrent_flags(&forward_config)?;
        let [bg, bs, br] = recurrent_flags(&backward_config)?;
        if fg == bg {
            return Err(Error::invalid_argument(
                "backward_layer",
                format!("go_backwards={bg}"),
                format!(
                    "Forward layer and backward layer should have different `go_backwards` value: the forward \
                     layer has go_backwards={fg}"
                ),
            ));
        }
        for (attribute, f, b) in [("return_sequences", fs, bs), ("return_state", fr, br)] {
            if f != b {
                return Err(Error::invalid_argument(
                    "backward_layer",
                    format!("{attribute}={b}"),
                    format!(
                        "Forward layer and backward layer are expected to have the same value for attribute \
                         `{attribute}`: the forward layer has {attribute}={f}"
                    ),
                ));
            }
        }
        let mut forward = layer_from_config(&forward_config)?;
        let mut backward = layer_from_config(&backward_config)?;
        let outer = self.name.clone().unwrap_or_else(|| "bidirectional".into());
        let first = params.len();
        let f_shape = forward.build_many(&[input_shape], params, rng)?;
        prefix_weights(params, forward.weights(), &outer);
        let b_shape = backward.build_many(&[input_shape], params, rng)?;
        prefix_weights(params, backward.weights(), &outer);
        let mismatch = match merge {
            Merge::Concat => f_shape[..f_shape.len() - 1] != b_shape[..b_shape.len().saturating_sub(1)],
            // Two outputs apart: each its own shape, as Keras' call gives them.
            Merge::Unmerged => false,
            _ => f_shape != b_shape,
        };
        if mismatch {
            params.truncate(first);
            return Err(Error::shape(
                "Bidirectional's backward layer output",
                format!(
                    "the forward layer's {} to merge with \"{merge:?}\"",
                    crate::shapes::shape_str(&f_shape)
                ),
                crate::shapes::shape_str(&b_shape),
            ));
        }
        let mut out = f_shape.clone();
        if merge == Merge::Concat {
            *out.last_mut().expect("a recurrent output has an axis") += b_shape[b_shape.len() - 1];
        }
        let mut extra_shapes = if merge == Merge::Unmerged { vec![b_shape] } else { Vec::new() };
        extra_shapes.extend(forward.extra_output_shapes());
        extra_shapes.extend(backward.extra_output_shapes());
        let weights = forward.weights().iter().chain(backward.weights()).copied().collect();
        self.built = Some(Built { forward, backward, merge, return_sequences: fs, extra_shapes, weights });
        Ok(out)
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        self.call_masked(&[x], &[None], ctx)
    }

    fn supports_masking(&self) -> bool {
        true
    }

    fn compute_mask<'t>(&self, inputs: &[Var<'t>], masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        self.compute_output_mask(0, inputs, masks)
    }

    /// Keras' `compute_mask`: with `return_sequences` the input's mask on the output, or on both unmerged
    /// outputs; none on the states.
    fn compute_output_mask<'t>(
        &self,
        k: usize,
        _inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
    ) -> Option<Var<'t>> {
        let b = self.built.as_ref()?;
        let sequences = if b.merge == Merge::Unmerged { 2 } else { 1 };
        if b.return_sequences && k < sequences {
            masks.first().copied().flatten()
        } else {
            None
        }
    }

    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        self.call_outputs(inputs, masks, ctx)[0]
    }

    fn extra_output_shapes(&self) -> Vec<Vec<usize>> {
        self.built.as_ref().map_or_else(Vec::new, |b| b.extra_shapes.clone())
    }

    /// The merged output (or the forward then the backward one, unmerged), then the forward layer's states and
    /// the backward layer's, as Keras' `call` returns them.
    fn call_outputs<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Vec<Var<'t>> {
        let b = self.built.as_ref().expect("Bidirectional::call before build: models build layers first");
        let (x, mask) = (inputs[0], masks.first().copied().flatten());
        let mut forward = b.forward.call_outputs(&[x], &[mask], ctx);
        let mut backward = b.backward.call_outputs(&[x], &[mask], ctx);
        let (forward_states, backward_states) = (forward.split_off(1), backward.split_off(1));
        let (mut y, mut y_rev) = (forward[0], backward[0]);
        if b.return_sequences {
            y_rev = flip_time(y_rev);
            if let Some(m) = mask {
                // Keras sets the inner layers' `zero_output_for_mask`: a masked step outputs zeros rather than
                // the output carried from the last real step.
                let shape = m.shape();
                let m = m.reshape(&[shape[0], shape[1], 1]);
                y = y.mul(m);
                y_rev = y_rev.mul(m);
            }
        }
        let mut outputs = match b.merge {
            Merge::Concat => vec![x.tape().concat(&[y, y_rev], y.shape().len() - 1)],
            Merge::Sum => vec![y.add(y_rev)],
            Merge::Mul => vec![y.mul(y_rev)],
            Merge::Ave => vec![y.add(y_rev).div_scalar(2.0)],
            Merge::Unmerged => vec![y, y_rev],
        };
        outputs.extend(forward_states);
        outputs.extend(backward_states);
        outputs
    }

    fn weights(&self) -> &[ParamId] {
        self.built.as_ref().map_or(&[], |b| &b.weights)
    }

    fn regularizers(&self) -> Vec<(ParamId, crate::regularizers::Regularizer)> {
        self.built.as_ref().map_or_else(Vec::new, |b| {
            let mut r = b.forward.regularizers();
            r.extend(b.backward.regularizers());
            r
        })
    }

    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        if let Some(b) = self.built.as_mut() {
            b.forward.renumber_weights(new_id)?;
            b.backward.renumber_weights(new_id)?;
            b.weights = b.forward.weights().iter().chain(b.backward.weights()).copied().collect();
        }
        Ok(())
    }

    fn config(&self) -> Result<LayerConfig> {
        let (layer, backward_layer) = self.inner_configs()?;
        let settings = BidirectionalConfig {
            name: self.name.clone(),
            merge_mode: self.merge_mode.clone(),
            layer,
            backward_layer: Some(backward_layer),
            input_shape: self.input_shape.clone(),
        };
        LayerConfig::new(self.class_name(), &settings)
    }
}
