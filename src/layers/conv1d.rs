//! `Conv1D`: a 1-D convolution over channels-last sequences.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{activation_fn, initializer_fn, spec_value};
use super::{add_weight, CallContext, Layer};
use crate::activations::Activation;
use crate::autodiff::{Conv1dOptions, Padding1d, ParamId, ParamStore, Var};
use crate::device::{Axis1, WindowFault};
use crate::initializers::Initializer;
use crate::regularizers::Regularizer;
use crate::spec::Spec;
use crate::{Error, Result};

/// A size along the one axis of a sequence, saved as Keras saves it, a list of one (`[3]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[usize; 1]", into = "[usize; 1]")]
pub(crate) struct Size1(pub usize);

impl From<[usize; 1]> for Size1 {
    fn from([n]: [usize; 1]) -> Self {
        Size1(n)
    }
}

impl From<Size1> for [usize; 1] {
    fn from(s: Size1) -> Self {
        [s.0]
    }
}

/// A 1-D convolution (Keras' `layers.Conv1D`): `activation(conv(x, kernel) + bias)` over sequences of shape
/// `(steps, channels)` (channels last), with a kernel of shape `(kernel_size, channels, filters)`, Keras'
/// layout, so Keras weights load unchanged.
///
/// Keras' defaults: strides 1, `"valid"` padding, dilation 1, no activation, a bias, `glorot_uniform` kernel,
/// `zeros` bias. `"causal"` padding puts `dilation_rate * (kernel_size - 1)` zeros before the sequence only,
/// so that no output step sees a later input step (WaveNet's convolutions).
///
/// ```
/// use kerust::layers::{Conv1D, Dense, GlobalMaxPooling1D};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Conv1D::new(16, 3).padding("causal").dilation_rate(2).activation("relu").input_shape([100, 8]))?;
/// model.add(GlobalMaxPooling1D::new())?;
/// model.add(Dense::new(1))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 3 * 8 * 16 + 16);
/// assert_eq!(model.output_shape(), Some(&[1][..]));
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Conv1D {
    settings: Conv1DConfig,
    built: Option<Built>,
}

/// The settings, as they are saved: each written once, here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conv1DConfig {
    name: Option<String>,
    filters: usize,
    kernel_size: Size1,
    strides: Size1,
    #[serde(with = "spec_value")]
    padding: Spec<Padding1d>,
    dilation_rate: Size1,
    #[serde(with = "activation_fn")]
    activation: Spec<Activation>,
    use_bias: bool,
    #[serde(with = "initializer_fn")]
    kernel_initializer: Spec<Initializer>,
    #[serde(with = "initializer_fn")]
    bias_initializer: Spec<Initializer>,
    input_shape: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    kernel_regularizer: Option<Spec<Regularizer>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    bias_regularizer: Option<Spec<Regularizer>>,
}

#[derive(Clone, Debug)]
struct Built {
    options: Conv1dOptions,
    activation: Activation,
    weights: Vec<ParamId>,
    regularizers: Vec<(ParamId, Regularizer)>,
}

impl Conv1D {
    /// A convolution with `filters` output channels and a window of `kernel_size` steps.
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        Conv1D {
            settings: Conv1DConfig {
                name: None,
                filters,
                kernel_size: Size1(kernel_size),
                strides: Size1(1),
                padding: Spec::Value(Padding1d::Valid),
                dilation_rate: Size1(1),
                activation: Spec::Value(Activation::Linear),
                use_bias: true,
                kernel_initializer: Spec::Value(Initializer::GlorotUniform),
                bias_initializer: Spec::Value(Initializer::Zeros),
                input_shape: None,
                kernel_regularizer: None,
                bias_regularizer: None,
            },
            built: None,
        }
    }

    pub(crate) fn from_settings(settings: Conv1DConfig) -> Self {
        Conv1D { settings, built: None }
    }

    /// Steps between windows (default 1).
    pub fn strides(mut self, strides: usize) -> Self {
        self.settings.strides = Size1(strides);
        self
    }

    /// `"valid"` (default), `"same"` or `"causal"`.
    pub fn padding(mut self, padding: impl Into<Spec<Padding1d>>) -> Self {
        self.settings.padding = padding.into();
        self
    }

    /// Spacing of the kernel's taps (default 1); Keras allows it above 1 only with strides of 1.
    pub fn dilation_rate(mut self, rate: usize) -> Self {
        self.settings.dilation_rate = Size1(rate);
        self
    }

    super::kernel_builders!(settings);

    super::settings_builders!();

    /// The number of filters (output channels).
    pub fn filters(&self) -> usize {
        self.settings.filters
    }
}

/// The per-sample shape `(steps, channels)` of a sequence layer's input, or an error naming what came.
pub(crate) fn sequence_shape(layer: &str, input_shape: &[usize]) -> Result<[usize; 2]> {
    match *input_shape {
        [t, c] if t > 0 && c > 0 => Ok([t, c]),
        [_] => Err(Error::shape(
            format!("{layer} input"),
            "sequences (None, steps, channels) of positive sizes, channels last",
            format!(
                "{}; the channel axis is missing: add it to the data (numpy's `expand_dims(x, -1)`) or put \
                 an Embedding or `Reshape::new([steps, 1])` first",
                crate::shapes::shape_str(input_shape)
            ),
        )),
        _ => Err(Error::shape(
            format!("{layer} input"),
            "sequences (None, steps, channels) of positive sizes, channels last",
            crate::shapes::shape_str(input_shape),
        )),
    }
}

/// Checks that a window setting is positive.
pub(crate) fn positive1(name: &'static str, size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::invalid_argument(name, 0, "it must be at least 1"));
    }
    Ok(())
}

/// The output length of a 1-D window over a layer's input, or the error that names why there is none.
pub(crate) fn window_1d(
    layer: &str,
    input_shape: &[usize],
    steps: usize,
    (size, stride, dilation): (usize, usize, usize),
    padding: Padding1d,
) -> Result<usize> {
    match Axis1::new_1d(steps, size, stride, dilation, padding) {
        Ok(axis) => Ok(axis.output),
        Err(WindowFault::TooLarge) => Err(Error::shape(
            format!("{layer} input"),
            format!(
                "a window (size {size}, strides {stride}, dilation {dilation}, padding \"{}\") whose reach \
                 over the padded input fits in a {}-bit index",
                padding.name(),
                usize::BITS
            ),
            format!("{} (the reach overflows)", crate::shapes::shape_str(input_shape)),
        )),
        Err(WindowFault::DoesNotFit) => Err(Error::shape(
            format!("{layer} input"),
            format!(
                "sequences of at least {} steps, the window's extent (size {size}, dilation {dilation}, padding \
                 \"{}\")",
                dilation.saturating_mul(size.saturating_sub(1)).saturating_add(1),
                padding.name()
            ),
            crate::shapes::shape_str(input_shape),
        )),
    }
}

impl Layer for Conv1D {
    fn class_name(&self) -> &'static str {
        "Conv1D"
    }

    super::settings_accessors!();

    fn build(
        &mut self,
        input_shape: &[usize],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<usize>> {
        let s = &self.settings;
        if s.filters == 0 {
            return Err(Error::invalid_argument("filters", 0, "Conv1D needs a positive number of filters"));
        }
        positive1("kernel_size", s.kernel_size.0)?;
        positive1("strides", s.strides.0)?;
        positive1("dilation_rate", s.dilation_rate.0)?;
        if s.strides.0 > 1 && s.dilation_rate.0 > 1 {
            return Err(Error::invalid_argument(
                "strides",
                s.strides.0,
                format!(
                    "strides above 1 cannot be combined with dilation_rate={} (as in Keras)",
                    s.dilation_rate.0
                ),
            ));
        }
        let padding = s.padding.resolve()?;
        let [steps, channels] = sequence_shape("Conv1D", input_shape)?;
        let window = (s.kernel_size.0, s.strides.0, s.dilation_rate.0);
        let out = window_1d("Conv1D", input_shape, steps, window, padding)?;
        let options = Conv1dOptions { stride: s.strides.0, padding, dilation: s.dilation_rate.0 };
        let activation = s.activation.resolve()?;
        let (kernel_init, bias_init) = (s.kernel_initializer.resolve()?, s.bias_initializer.resolve()?);
        kernel_init.validate()?;
        bias_init.validate()?;
        let kernel_regularizer = super::resolve_regularizer(&s.kernel_regularizer)?;
        let bias_regularizer = super::resolve_regularizer(&s.bias_regularizer)?;
        let name = s.name.clone().unwrap_or_else(|| "conv1d".into());
        let kernel_shape = [s.kernel_size.0, channels, s.filters];
        let mut weights =
            vec![add_weight(params, format!("{name}/kernel"), &kernel_shape, kernel_init, rng, true)?];
        if s.use_bias {
            weights.push(add_weight(params, format!("{name}/bias"), &[s.filters], bias_init, rng, true)?);
        }
        let regularizers = super::weight_regularizers(&weights, [kernel_regularizer, bias_regularizer]);
        self.built = Some(Built { options, activation, weights, regularizers });
        Ok(vec![out, s.filters])
    }

    fn call<'t>(&self, x: Var<'t>, _ctx: &mut CallContext<'_>) -> Var<'t> {
        let built = self.built.as_ref().expect("Conv1D::call before build: models build layers first");
        let tape = x.tape();
        let kernel = tape.param(built.weights[0]);
        let bias = built.weights.get(1).map(|&b| tape.param(b));
        // relu, sigmoid and tanh run inside the convolution's node; other activations after it.
        match built.activation.elementwise() {
            Some(None) => x.conv1d(kernel, bias, built.options),
            Some(Some(f)) if f.df_uses_output_only() => x.conv1d_fused(kernel, bias, built.options, Some(f)),
            _ => built.activation.apply(x.conv1d(kernel, bias, built.options)),
        }
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
