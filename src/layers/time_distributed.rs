//! `TimeDistributed`: one layer applied to every step of a sequence.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::wrapper::{inner_name, prefix_weights};
use super::{layer_from_config, CallContext, Layer, LayerConfig};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::{Error, Result};

/// The saved settings: the inner layer's config nested as Keras nests it (`"layer": {"class_name": "Dense",
/// "config": {...}}`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeDistributedConfig {
    name: Option<String>,
    layer: LayerConfig,
    input_shape: Option<Vec<usize>>,
}

/// Keras' `layers.TimeDistributed`: applies the wrapped layer to every time step of `(batch, time, ...)`, the same
/// weights at each step, by folding time into the batch (`(batch * time, ...)`, the call, then `(batch, time,
/// ...)` back). The weights are the wrapped layer's, named under this layer's as Keras names them
/// (`time_distributed/dense/kernel`). A mask on the input reaches the wrapped layer step by step (an LSTM over
/// the inner sequences of `Embedding(mask_zero)` on `(batch, time, words)` indices skips their padding) and passes
/// on to the output unchanged, as in Keras.
///
/// ```
/// use kerust::layers::{Dense, TimeDistributed};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(TimeDistributed::new(Dense::new(4)).input_shape([10, 3]))?;
/// assert_eq!(model.output_shape(), Some(&[10, 4][..]));
/// let names: Vec<_> = model.params().iter().map(|(_, p)| p.name.clone()).collect();
/// assert_eq!(names, ["time_distributed/dense/kernel", "time_distributed/dense/bias"]);
/// // Without a time axis there is nothing to distribute over.
/// assert!(Sequential::new().add(TimeDistributed::new(Dense::new(4)).input_shape([3])).is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct TimeDistributed {
    name: Option<String>,
    layer: Box<dyn Layer>,
    input_shape: Option<Vec<usize>>,
    /// The per-step output shape, once built.
    step_output: Option<Vec<usize>>,
}

impl std::fmt::Debug for TimeDistributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeDistributed")
            .field("name", &self.name)
            .field("layer", &self.layer.class_name())
            .field("built", &self.step_output.is_some())
            .finish()
    }
}

impl TimeDistributed {
    /// Wraps `layer`; it is named after its class (`dense`) unless it has a name.
    pub fn new(layer: impl Layer + 'static) -> Self {
        Self::from_boxed(Box::new(layer))
    }

    /// [`TimeDistributed::new`] for a boxed layer.
    pub fn from_boxed(mut layer: Box<dyn Layer>) -> Self {
        let name = inner_name(&*layer);
        layer.set_name(name);
        TimeDistributed { name: None, layer, input_shape: None, step_output: None }
    }

    /// The per-sample input shape `(time, ...)`, for the first layer of a model.
    pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
        self.input_shape = Some(shape.as_ref().to_vec());
        self
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The wrapped layer.
    pub fn layer(&self) -> &dyn Layer {
        &*self.layer
    }

    /// A layer from its saved config, the nested layer included.
    pub(crate) fn from_config(config: &LayerConfig) -> Result<Self> {
        let c: TimeDistributedConfig = config.parse()?;
        let mut t = TimeDistributed::from_boxed(layer_from_config(&c.layer)?);
        t.name = c.name;
        t.input_shape = c.input_shape;
        Ok(t)
    }
}

impl Layer for TimeDistributed {
    fn class_name(&self) -> &'static str {
        "TimeDistributed"
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let Some((&time, step)) = input_shape.split_first().filter(|(_, step)| !step.is_empty()) else {
            return Err(Error::shape(
                "TimeDistributed input",
                "at least 3 dimensions, (None, time, ...)",
                crate::shapes::shape_str(input_shape),
            ));
        };
        let step_output = self.layer.build_many(&[step], params, rng)?;
        if !self.layer.extra_output_shapes().is_empty() {
            // Keras' TimeDistributed reshapes one output tensor; the model drops the weights just made.
            return Err(Error::invalid_argument(
                "layer",
                self.layer.class_name(),
                "TimeDistributed wraps a layer of one output (not an RNN with return_state, nor a Bidirectional \
                 with merge_mode None)",
            ));
        }
        let outer = self.name.clone().unwrap_or_else(|| "time_distributed".into());
        prefix_weights(params, self.layer.weights(), &outer);
        let out = std::iter::once(time).chain(step_output.iter().copied()).collect();
        self.step_output = Some(step_output);
        Ok(out)
    }

    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        self.call_masked(&[x], &[None], ctx)
    }

    /// The wrapped layer sees each step's mask: a `(batch, time, ...)` mask folded as the input is, to
    /// `(batch * time, ...)` (Keras calls the layer on each step with `mask[:, i]`, the same thing for a layer
    /// that treats samples independently).
    fn call_masked<'t>(
        &self,
        inputs: &[Var<'t>],
        masks: &[Option<Var<'t>>],
        ctx: &mut CallContext<'_>,
    ) -> Var<'t> {
        let step_output =
            self.step_output.as_ref().expect("TimeDistributed::call before build: models build first");
        let x = inputs[0];
        let shape = x.shape();
        let (batch, time) = (shape[0], shape[1]);
        let fold = |shape: &[usize]| -> Vec<usize> {
            std::iter::once(batch * time).chain(shape[2..].iter().copied()).collect()
        };
        let mask = match masks.first().copied().flatten() {
            Some(m) if m.shape().len() < 2 || m.shape()[..2] != shape[..2] => {
                // Keras' ValueError; `call` returns no `Result`, so the model reports it after this layer.
                ctx.fail(Error::shape(
                    "the mask passed to TimeDistributed",
                    format!("(batch, time, ...) of the input's first two dimensions, ({batch}, {time}, ...)"),
                    format!("mask shape {:?} for inputs of shape {shape:?}", m.shape()),
                ));
                None
            }
            Some(m) => Some(m.reshape(&fold(&m.shape()))),
            None => None,
        };
        let y = self.layer.call_masked(&[x.reshape(&fold(&shape))], &[mask], ctx);
        let unfolded: Vec<usize> = [batch, time].into_iter().chain(step_output.iter().copied()).collect();
        y.reshape(&unfolded)
    }

    fn uses_replicas(&self) -> bool {
        self.layer.uses_replicas()
    }

    fn supports_masking(&self) -> bool {
        true
    }

    fn weights(&self) -> &[ParamId] {
        self.layer.weights()
    }

    fn regularizers(&self) -> Vec<(ParamId, crate::regularizers::Regularizer)> {
        self.layer.regularizers()
    }

    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        self.layer.renumber_weights(new_id)
    }

    fn config(&self) -> Result<LayerConfig> {
        let settings = TimeDistributedConfig {
            name: self.name.clone(),
            layer: self.layer.config()?,
            input_shape: self.input_shape.clone(),
        };
        LayerConfig::new(self.class_name(), &settings)
    }
}
