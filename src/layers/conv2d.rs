//! `Conv2D`: a 2-D convolution over channels-last images.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::{activation_fn, initializer_fn, spec_value};
use super::{add_weight, CallContext, Layer, Size2};
use crate::activations::Activation;
use crate::autodiff::{Conv2dOptions, Padding, ParamId, ParamStore, Var, WindowFault};
use crate::initializers::Initializer;
use crate::regularizers::Regularizer;
use crate::spec::Spec;
use crate::{Error, Result};

/// A 2-D convolution (Keras' `layers.Conv2D`): `activation(conv(x, kernel) + bias)` over images of shape
/// `(height, width, channels)` (channels last, Keras' default), with a kernel of shape
/// `(kernel_rows, kernel_cols, channels, filters)`, Keras' layout, so Keras weights load unchanged.
///
/// Keras' defaults: strides 1, `"valid"` padding, dilation 1, no activation, a bias, `glorot_uniform` kernel,
/// `zeros` bias.
///
/// ```
/// use kerust::layers::{Conv2D, Flatten, Dense, MaxPooling2D};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Conv2D::new(32, 3).activation("relu").input_shape([28, 28, 1]))?;
/// model.add(MaxPooling2D::new(2))?;
/// model.add(Flatten::new())?;
/// model.add(Dense::new(10).activation("softmax"))?;
/// assert_eq!(model.layers()[0].count_params(model.params()), 3 * 3 * 32 + 32);
/// assert_eq!(model.output_shape(), Some(&[10][..]));
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Conv2D {
    settings: Conv2DConfig,
    built: Option<Built>,
}

/// The settings, as they are saved: each written once, here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conv2DConfig {
    name: Option<String>,
    filters: usize,
    kernel_size: Size2,
    strides: Size2,
    #[serde(with = "spec_value")]
    padding: Spec<Padding>,
    dilation_rate: Size2,
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
    options: Conv2dOptions,
    activation: Activation,
    weights: Vec<ParamId>,
    regularizers: Vec<(ParamId, Regularizer)>,
}

impl Conv2D {
    /// A convolution with `filters` output channels and a `kernel_size` window (`3` or `(3, 5)`).
    pub fn new(filters: usize, kernel_size: impl Into<Size2>) -> Self {
        Conv2D {
            settings: Conv2DConfig {
                name: None,
                filters,
                kernel_size: kernel_size.into(),
                strides: Size2(1, 1),
                padding: Spec::Value(Padding::Valid),
                dilation_rate: Size2(1, 1),
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

    pub(crate) fn from_settings(settings: Conv2DConfig) -> Self {
        Conv2D { settings, built: None }
    }

    /// Steps between windows (default 1).
    pub fn strides(mut self, strides: impl Into<Size2>) -> Self {
        self.settings.strides = strides.into();
        self
    }

    /// `"valid"` (default) or `"same"`.
    pub fn padding(mut self, padding: impl Into<Spec<Padding>>) -> Self {
        self.settings.padding = padding.into();
        self
    }

    /// Spacing of the kernel's taps (default 1); Keras allows it above 1 only with strides of 1.
    pub fn dilation_rate(mut self, rate: impl Into<Size2>) -> Self {
        self.settings.dilation_rate = rate.into();
        self
    }

    super::kernel_builders!(settings);

    super::settings_builders!();

    /// The number of filters (output channels).
    pub fn filters(&self) -> usize {
        self.settings.filters
    }
}

/// The per-sample shape `(height, width, channels)` of an image layer's input, or an error that says what is
/// missing (most often the channel axis of grayscale images).
pub(crate) fn image_shape(layer: &str, input_shape: &[usize]) -> Result<[usize; 3]> {
    match *input_shape {
        [h, w, c] if h > 0 && w > 0 && c > 0 => Ok([h, w, c]),
        [h, w] => Err(Error::shape(
            format!("{layer} input"),
            "images (None, height, width, channels), channels last",
            format!(
                "{}; the channel axis is missing: add it to the data (`x.insert_axis(Axis(3))`, numpy's \
                 `expand_dims(x, -1)`) or put `Reshape::new([{h}, {w}, 1])` first",
                crate::shapes::shape_str(input_shape)
            ),
        )),
        _ => Err(Error::shape(
            format!("{layer} input"),
            "images (None, height, width, channels) of positive sizes, channels last",
            crate::shapes::shape_str(input_shape),
        )),
    }
}

/// The error for a window whose positions on the padded input do not fit in a `usize`: the same for a layer
/// made by a builder, loaded from a file, or built on an `Input` of any size.
pub(crate) fn too_large(
    layer: &str,
    input_shape: &[usize],
    size: Size2,
    strides: Size2,
    dilation: Size2,
    padding: Padding,
) -> Error {
    Error::shape(
        format!("{layer} input"),
        format!(
            "a window (size {size}, strides {strides}, dilation {dilation}, padding \"{}\") whose reach over \
             the padded input, (outputs - 1) * strides + dilation * (size - 1) + 1, fits in a {}-bit index",
            padding.name(),
            usize::BITS
        ),
        format!("{} (the reach overflows)", crate::shapes::shape_str(input_shape)),
    )
}

/// Checks that each of a window setting's sizes is positive.
pub(crate) fn positive(name: &'static str, size: Size2) -> Result<()> {
    if size.0 == 0 || size.1 == 0 {
        return Err(Error::invalid_argument(name, size, "every size must be at least 1"));
    }
    Ok(())
}

impl Layer for Conv2D {
    fn class_name(&self) -> &'static str {
        "Conv2D"
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
            return Err(Error::invalid_argument("filters", 0, "Conv2D needs a positive number of filters"));
        }
        positive("kernel_size", s.kernel_size)?;
        positive("strides", s.strides)?;
        positive("dilation_rate", s.dilation_rate)?;
        if (s.strides.0 > 1 || s.strides.1 > 1) && (s.dilation_rate.0 > 1 || s.dilation_rate.1 > 1) {
            return Err(Error::invalid_argument(
                "strides",
                s.strides,
                format!(
                    "strides above 1 cannot be combined with dilation_rate={} (as in Keras)",
                    s.dilation_rate
                ),
            ));
        }
        let [h, w, channels] = image_shape("Conv2D", input_shape)?;
        let padding = s.padding.resolve()?;
        let options = Conv2dOptions { strides: s.strides.into(), padding, dilation: s.dilation_rate.into() };
        let windows = [
            (h, s.kernel_size.0, s.strides.0, s.dilation_rate.0),
            (w, s.kernel_size.1, s.strides.1, s.dilation_rate.1),
        ]
        .map(|(n, k, st, d)| crate::autodiff::window_output(n, k, st, d, padding));
        let [oh, ow] = match windows {
            [Ok(oh), Ok(ow)] => [oh, ow],
            [Err(WindowFault::TooLarge), _] | [_, Err(WindowFault::TooLarge)] => {
                return Err(too_large(
                    "Conv2D",
                    input_shape,
                    s.kernel_size,
                    s.strides,
                    s.dilation_rate,
                    padding,
                ))
            }
            _ => {
                return Err(Error::shape(
                    "Conv2D input",
                    format!(
                        "images at least as large as the kernel {} with dilation {} (padding \"{}\")",
                        s.kernel_size,
                        s.dilation_rate,
                        padding.name()
                    ),
                    crate::shapes::shape_str(input_shape),
                ))
            }
        };
        let activation = s.activation.resolve()?;
        let (kernel_init, bias_init) = (s.kernel_initializer.resolve()?, s.bias_initializer.resolve()?);
        kernel_init.validate()?;
        bias_init.validate()?;
        let kernel_regularizer = super::resolve_regularizer(&s.kernel_regularizer)?;
        let bias_regularizer = super::resolve_regularizer(&s.bias_regularizer)?;
        let name = s.name.clone().unwrap_or_else(|| "conv2d".into());
        let kernel_shape = [s.kernel_size.0, s.kernel_size.1, channels, s.filters];
        let mut weights =
            vec![add_weight(params, format!("{name}/kernel"), &kernel_shape, kernel_init, rng, true)?];
        if s.use_bias {
            weights.push(add_weight(params, format!("{name}/bias"), &[s.filters], bias_init, rng, true)?);
        }
        let regularizers = super::weight_regularizers(&weights, [kernel_regularizer, bias_regularizer]);
        self.built = Some(Built { options, activation, weights, regularizers });
        Ok(vec![oh, ow, s.filters])
    }

    fn call<'t>(&self, x: Var<'t>, _ctx: &mut CallContext<'_>) -> Var<'t> {
        let built = self.built.as_ref().expect("Conv2D::call before build: models build layers first");
        let tape = x.tape();
        let kernel = tape.param(built.weights[0]);
        let bias = built.weights.get(1).map(|&b| tape.param(b));
        // relu, sigmoid and tanh run inside the convolution's node; other activations after it.
        match built.activation.elementwise() {
            Some(None) => x.conv2d(kernel, bias, built.options),
            Some(Some(f)) if f.df_uses_output_only() => x.conv2d_fused(kernel, bias, built.options, Some(f)),
            _ => built.activation.apply(x.conv2d(kernel, bias, built.options)),
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
