//! `LayerNormalization`: each sample normalized over its feature axes.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{initializer_fn, strict_f32};
use super::{add_weight, CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::initializers::Initializer;
use crate::regularizers::Regularizer;
use crate::spec::Spec;
use crate::{Error, Result};

/// Keras' `layers.LayerNormalization`: `gamma * (x - mean) / sqrt(var + epsilon) + beta`, the mean and the
/// (biased) variance taken over `axis` of each sample on its own, the same in training and inference.
///
/// Keras' defaults: `axis=-1`, `epsilon=1e-3`, `center` and `scale` on, `gamma` ones, `beta` zeros. The
/// weights, in Keras' order: `gamma` (with `scale`), `beta` (with `center`), each of the normalized axes'
/// shape. The last axis alone (the usual case) runs as one fused node; other axes as composed ops. A mask
/// passes through (Keras' `supports_masking`).
///
/// ```
/// use kerust::layers::{Dense, LayerNormalization};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Dense::new(8).input_shape([4]))?;
/// model.add(LayerNormalization::new())?;
/// assert_eq!(model.layers()[1].count_params(model.params()), 16);
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerNormalization {
    settings: LayerNormalizationConfig,
    built: Option<Built>,
}

/// Keras' `axis`: one axis or a list, counting the batch axis as 0 (negative from the end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Axes {
    One(i64),
    Many(Vec<i64>),
}

/// The settings, as they are saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LayerNormalizationConfig {
    name: Option<String>,
    axis: Axes,
    #[serde(deserialize_with = "strict_f32::epsilon")]
    epsilon: f32,
    center: bool,
    scale: bool,
    #[serde(with = "initializer_fn")]
    beta_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    gamma_initializer: Spec<Initializer>,
    input_shape: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    beta_regularizer: Option<Spec<Regularizer>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    gamma_regularizer: Option<Spec<Regularizer>>,
}

#[derive(Clone, Debug)]
struct Built {
    /// The normalized axes of the batch, sorted, the batch axis being 0.
    axes: Vec<usize>,
    /// The batch's rank.
    rank: usize,
    gamma: Option<ParamId>,
    beta: Option<ParamId>,
    weights: Vec<ParamId>,
    regularizers: Vec<(ParamId, Regularizer)>,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerNormalization {
    /// Normalization over the last axis with Keras' defaults.
    pub fn new() -> Self {
        LayerNormalization {
            settings: LayerNormalizationConfig {
                name: None,
                axis: Axes::One(-1),
                epsilon: 1e-3,
                center: true,
                scale: true,
                beta_initializer: Spec::Value(Initializer::Zeros),
                gamma_initializer: Spec::Value(Initializer::Ones),
                input_shape: None,
                beta_regularizer: None,
                gamma_regularizer: None,
            },
            built: None,
        }
    }

    pub(crate) fn from_settings(settings: LayerNormalizationConfig) -> Self {
        LayerNormalization { settings, built: None }
    }

    /// The normalized axis (default -1, the last; positive values count the batch axis as 0, as in Keras).
    pub fn axis(mut self, axis: i64) -> Self {
        self.settings.axis = Axes::One(axis);
        self
    }

    /// Several normalized axes (Keras' `axis=[1, 2]`); gamma and beta take their shape.
    pub fn axes(mut self, axes: impl AsRef<[i64]>) -> Self {
        self.settings.axis = Axes::Many(axes.as_ref().to_vec());
        self
    }

    /// Added to the variance (default 1e-3).
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.settings.epsilon = epsilon;
        self
    }

    /// Whether to add the offset `beta` (default true).
    pub fn center(mut self, center: bool) -> Self {
        self.settings.center = center;
        self
    }

    /// Whether to multiply by `gamma` (default true).
    pub fn scale(mut self, scale: bool) -> Self {
        self.settings.scale = scale;
        self
    }

    /// beta's initializer (default `zeros`).
    pub fn beta_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.beta_initializer = init.into();
        self
    }

    /// gamma's initializer (default `ones`).
    pub fn gamma_initializer(mut self, init: impl Into<Spec<Initializer>>) -> Self {
        self.settings.gamma_initializer = init.into();
        self
    }

    /// A penalty on beta added to the loss in training (Keras' `beta_regularizer=`).
    pub fn beta_regularizer(mut self, regularizer: impl Into<Spec<Regularizer>>) -> Self {
        self.settings.beta_regularizer = Some(regularizer.into());
        self
    }

    /// A penalty on gamma added to the loss in training (Keras' `gamma_regularizer=`).
    pub fn gamma_regularizer(mut self, regularizer: impl Into<Spec<Regularizer>>) -> Self {
        self.settings.gamma_regularizer = Some(regularizer.into());
        self
    }

    super::settings_builders!();
}

impl Layer for LayerNormalization {
    fn class_name(&self) -> &'static str {
        "LayerNormalization"
    }

    super::settings_accessors!();

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let s = &self.settings;
        let rank = input_shape.len() + 1;
        let given = match &s.axis {
            Axes::One(a) => vec![*a],
            Axes::Many(a) => a.clone(),
        };
        let bad = |why: String| {
            Error::invalid_argument(
                "axis",
                format!("{given:?}"),
                format!(
                    "{why}; inputs {} have axes 1 to {} or -1 to -{}",
                    crate::shapes::shape_str(input_shape),
                    rank - 1,
                    rank - 1
                ),
            )
        };
        if given.is_empty() {
            return Err(bad("at least one axis is needed".into()));
        }
        let mut axes = Vec::with_capacity(given.len());
        for &a in &given {
            let r = if a < 0 { a + rank as i64 } else { a };
            if !(1..rank as i64).contains(&r) {
                return Err(bad(format!("{a} is not a feature axis")));
            }
            axes.push(r as usize);
        }
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("an axis is named twice".into()));
        }
        if input_shape.contains(&0) {
            return Err(Error::shape(
                "LayerNormalization input",
                "axes of positive sizes",
                crate::shapes::shape_str(input_shape),
            ));
        }
        if !(s.epsilon.is_finite() && s.epsilon >= 0.0) {
            return Err(Error::invalid_argument("epsilon", s.epsilon, "must be a finite number, 0 or more"));
        }
        let shape: Vec<usize> = axes.iter().map(|&a| input_shape[a - 1]).collect();
        let (gamma_init, beta_init) = (s.gamma_initializer.resolve()?, s.beta_initializer.resolve()?);
        gamma_init.validate()?;
        beta_init.validate()?;
        let gamma_reg = super::resolve_regularizer(&s.gamma_regularizer)?;
        let beta_reg = super::resolve_regularizer(&s.beta_regularizer)?;
        let name = s.name.clone().unwrap_or_else(|| "layer_normalization".into());
        let gamma = match s.scale {
            true => Some(add_weight(params, format!("{name}/gamma"), &shape, gamma_init, rng, true)?),
            false => None,
        };
        let beta = match s.center {
            true => Some(add_weight(params, format!("{name}/beta"), &shape, beta_init, rng, true)?),
            false => None,
        };
        let weights: Vec<ParamId> = gamma.into_iter().chain(beta).collect();
        let mut regularizers = Vec::new();
        regularizers.extend(gamma.zip(gamma_reg));
        regularizers.extend(beta.zip(beta_reg));
        self.built = Some(Built { axes, rank, gamma, beta, weights, regularizers });
        Ok(input_shape.to_vec())
    }

    fn call<'t>(&self, x: Var<'t>, _ctx: &mut CallContext<'_>) -> Var<'t> {
        let b =
            self.built.as_ref().expect("LayerNormalization::call before build: models build layers first");
        let tape = x.tape();
        let (gamma, beta) = (b.gamma.map(|g| tape.param(g)), b.beta.map(|g| tape.param(g)));
        let eps = self.settings.epsilon;
        if b.axes == [b.rank - 1] {
            return x.layer_norm(gamma, beta, eps);
        }
        // Other axes: the definition in ops, gamma and beta broadcast over the other axes.
        let mean = x.mean_axes(&b.axes, true);
        let centred = x.sub(mean);
        let var = centred.square().mean_axes(&b.axes, true);
        let y = centred.div(var.add_scalar(eps).sqrt());
        let shape = x.shape();
        let mut broadcast = vec![1; b.rank];
        b.axes.iter().for_each(|&a| broadcast[a] = shape[a]);
        let y = gamma.map_or(y, |g| y.mul(g.reshape(&broadcast)));
        beta.map_or(y, |be| y.add(be.reshape(&broadcast)))
    }

    fn supports_masking(&self) -> bool {
        true
    }

    fn renumber_weights(&mut self, new_id: &dyn Fn(ParamId) -> ParamId) -> Result<()> {
        if let Some(b) = self.built.as_mut() {
            b.weights.iter_mut().for_each(|id| *id = new_id(*id));
            b.gamma = b.gamma.map(new_id);
            b.beta = b.beta.map(new_id);
            b.regularizers.iter_mut().for_each(|(id, _)| *id = new_id(*id));
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
