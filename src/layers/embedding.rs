//! `Embedding`: a learned vector per integer index (a word's id), Keras' `layers.Embedding`.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::initializer_fn;
use super::{add_weight, CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::device::IndexFault;
use crate::initializers::Initializer;
use crate::regularizers::Regularizer;
use crate::spec::Spec;
use crate::{Error, Result};

/// Turns integer indices into dense vectors: row `i` of the `(input_dim, output_dim)` weight `embeddings` for
/// index `i` (Keras' `layers.Embedding`). Inputs of any shape `(batch, d1, ...)` give `(batch, d1, ...,
/// output_dim)`.
///
/// Indices come as any numeric array (`i32`, `i64`, `f32`, ...); models convert their inputs to `f32`, which
/// holds every integer below 2^24 (16,777,216) exactly, so `input_dim` up to that size is exact. An index that
/// is negative, not a whole number, or not below `input_dim` is an error of the `fit`, `evaluate` or `predict`
/// call, naming the index, its position in the batch and `input_dim`; the weights are not changed.
///
/// With `mask_zero(true)`, index 0 is padding: the layer's output mask ([`Layer::compute_mask`]) is 1.0
/// where the index is not 0, and the layers after it that use masks skip those steps (Keras' `mask_zero=True`;
/// index 0 still has a row, so `input_dim` counts it).
///
/// Keras' defaults: `embeddings_initializer` `"uniform"` (uniform on [-0.05, 0.05)), no regularizer,
/// `mask_zero` false.
///
/// ```
/// use kerust::layers::{Dense, Embedding, Flatten};
/// use kerust::models::Sequential;
/// use ndarray::array;
///
/// let mut model = Sequential::new();
/// model.add(Embedding::new(1000, 8).input_shape([4]))?;
/// model.add(Flatten::new())?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 1000 * 8);
/// let ids = array![[3i32, 999, 0, 1]];
/// assert_eq!(model.predict(&ids)?.shape(), &[1, 1]);
/// let err = model.predict(&array![[3i32, 1000, 0, 1]]).unwrap_err().to_string();
/// assert!(err.contains("1000") && err.contains("input_dim=1000"), "{err}");
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Embedding {
    settings: EmbeddingConfig,
    built: Option<Built>,
}

/// The settings, as they are saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingConfig {
    name: Option<String>,
    input_dim: usize,
    output_dim: usize,
    #[serde(with = "initializer_fn")]
    embeddings_initializer: Spec<Initializer>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    embeddings_regularizer: Option<Spec<Regularizer>>,
    mask_zero: bool,
    input_shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug)]
struct Built {
    weights: Vec<ParamId>,
    regularizers: Vec<(ParamId, Regularizer)>,
}

impl Embedding {
    /// An embedding of `input_dim` indices (the vocabulary's size) into vectors of `output_dim`.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Self::from_settings(EmbeddingConfig {
            name: None,
            input_dim,
            output_dim,
            embeddings_initializer: Spec::Value(Initializer::RandomUniform { minval: -0.05, maxval: 0.05 }),
            embeddings_regularizer: None,
            mask_zero: false,
            input_shape: None,
        })
    }

    pub(crate) fn from_settings(settings: EmbeddingConfig) -> Self {
        Embedding { settings, built: None }
    }

    /// The initializer of `embeddings` (default uniform on [-0.05, 0.05), Keras' `"uniform"`).
    pub fn embeddings_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.embeddings_initializer = init.into();
        self
    }

    /// A penalty on `embeddings` added to the loss in training (Keras' `embeddings_regularizer=`).
    pub fn embeddings_regularizer(mut self, regularizer: impl Into<Spec<Regularizer>>) -> Self {
        self.settings.embeddings_regularizer = Some(regularizer.into());
        self
    }

    /// Whether index 0 is padding, masked for the layers after (default false).
    pub fn mask_zero(mut self, mask_zero: bool) -> Self {
        self.settings.mask_zero = mask_zero;
        self
    }

    super::settings_builders!();

    /// The number of indices.
    pub fn input_dim(&self) -> usize {
        self.settings.input_dim
    }

    /// The length of each vector.
    pub fn output_dim(&self) -> usize {
        self.settings.output_dim
    }

    /// The error for the first bad index of indices of `shape`.
    fn bad_index(&self, shape: &[usize], fault: IndexFault) -> Error {
        let mut position = vec![0; shape.len()];
        let mut rest = fault.position;
        for (p, &d) in position.iter_mut().zip(shape).rev() {
            *p = rest % d.max(1);
            rest /= d.max(1);
        }
        let input_dim = self.settings.input_dim;
        let more = match fault.count {
            1 => String::new(),
            n => format!(" ({n} indices are bad)"),
        };
        Error::invalid_argument(
            "index",
            fault.index,
            format!(
                "index {} at position {} is out of range for the Embedding's input_dim={input_dim}: \
                 indices must be whole numbers in 0..{input_dim}{more}",
                fault.index,
                crate::shapes::shape_of_dims(&position),
            ),
        )
    }
}

impl Layer for Embedding {
    fn class_name(&self) -> &'static str {
        "Embedding"
    }

    super::settings_accessors!();

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let s = &self.settings;
        for (name, value) in [("input_dim", s.input_dim), ("output_dim", s.output_dim)] {
            if value == 0 {
                return Err(Error::invalid_argument(
                    name,
                    value,
                    "Both `input_dim` and `output_dim` should be positive",
                ));
            }
        }
        let init = s.embeddings_initializer.resolve()?;
        init.validate()?;
        let regularizer = super::resolve_regularizer(&s.embeddings_regularizer)?;
        let name = s.name.clone().unwrap_or_else(|| "embedding".into());
        let shape = [s.input_dim, s.output_dim];
        let weights = vec![add_weight(params, format!("{name}/embeddings"), &shape, init, rng, true)?];
        let regularizers = super::weight_regularizers(&weights, [regularizer]);
        let mut out = input_shape.to_vec();
        out.push(s.output_dim);
        self.built = Some(Built { weights, regularizers });
        Ok(out)
    }

    /// The rows of `embeddings` for the indices of `x`. A bad index is reported through
    /// [`CallContext::fail`] (the output then has zero rows in its place).
    fn call<'t>(&self, x: Var<'t>, ctx: &mut CallContext<'_>) -> Var<'t> {
        let built = self.built.as_ref().expect("Embedding::call before build: models build layers first");
        let (y, fault) = x.tape().param(built.weights[0]).gather(x);
        if let Some(fault) = fault {
            ctx.fail(self.bad_index(&x.shape(), fault));
        }
        y
    }

    /// Every index of `x` in range, checked before a model runs a step on it.
    fn check_input(&self, x: ndarray::ArrayViewD<'_, f32>) -> Result<()> {
        let Some(fault) = IndexFault::scan(x.iter().copied(), self.settings.input_dim) else { return Ok(()) };
        Err(self.bad_index(x.shape(), fault))
    }

    /// With `mask_zero`, 1.0 where the index is not 0 (Keras' `ops.not_equal(inputs, 0)`); none otherwise.
    fn compute_mask<'t>(&self, inputs: &[Var<'t>], _: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        if !self.settings.mask_zero {
            return None;
        }
        // The indices were checked by `call` to be whole numbers, so |x| clipped to 1 is exactly `x != 0`.
        Some(inputs[0].abs().clip(0.0, 1.0))
    }

    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        if let Some(built) = self.built.as_mut() {
            built.weights.iter_mut().for_each(|id| *id = new_id(*id));
            built.regularizers.iter_mut().for_each(|(id, _)| *id = new_id(*id));
        }
        Ok(())
    }

    fn weights(&self) -> &[ParamId] {
        self.built.as_ref().map_or(&[], |b| &b.weights)
    }

    fn regularizers(&self) -> Vec<(ParamId, Regularizer)> {
        self.built.as_ref().map_or_else(Vec::new, |b| b.regularizers.clone())
    }
}
