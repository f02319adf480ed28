//! `Dense`: `activation(x · kernel + bias)`.
use rand::rngs::StdRng;

use super::{CallContext, Layer};
use crate::activations::Activation;
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::initializers::Initializer;
use crate::regularizers::Regularizer;
use crate::spec::Spec;
use crate::{Error, Result};

/// A densely connected layer: `output = activation(input · kernel + bias)`, on the last axis of the input.
///
/// Keras' defaults: no activation, a bias, `glorot_uniform` kernel, `zeros` bias.
///
/// ```
/// use kerust::layers::Dense;
/// let first = Dense::new(25).activation("sigmoid").input_shape([784]);
/// let out = Dense::new(10).activation(kerust::activations::Activation::Softmax);
/// ```
#[derive(Clone, Debug)]
pub struct Dense {
    units: usize,
    activation: Spec<Activation>,
    use_bias: bool,
    kernel_initializer: Spec<Initializer>,
    bias_initializer: Spec<Initializer>,
    kernel_regularizer: Option<Spec<Regularizer>>,
    bias_regularizer: Option<Spec<Regularizer>>,
    input_shape: Option<Vec<usize>>,
    name: Option<String>,
    built: Option<Built>,
}

#[derive(Clone, Debug)]
struct Built {
    activation: Activation,
    weights: Vec<ParamId>,
    regularizers: Vec<(ParamId, Regularizer)>,
}

impl Dense {
    /// A layer of `units` outputs.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Spec::Value(Activation::Linear),
            use_bias: true,
            kernel_initializer: Spec::Value(Initializer::GlorotUniform),
            bias_initializer: Spec::Value(Initializer::Zeros),
            kernel_regularizer: None,
            bias_regularizer: None,
            input_shape: None,
            name: None,
            built: None,
        }
    }

    super::kernel_builders!();

    pub(super) fn set_regularizers(
        &mut self,
        kernel: Option<Spec<Regularizer>>,
        bias: Option<Spec<Regularizer>>,
    ) {
        (self.kernel_regularizer, self.bias_regularizer) = (kernel, bias);
    }

    /// The per-sample input shape, for the first layer of a model (Keras' `input_shape=(784,)`).
    pub fn input_shape(mut self, shape: impl AsRef<[usize]>) -> Self {
        self.input_shape = Some(shape.as_ref().to_vec());
        self
    }

    /// A name instead of the one the model would assign.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The number of units.
    pub fn units(&self) -> usize {
        self.units
    }
}

impl Layer for Dense {
    fn class_name(&self) -> &'static str {
        "Dense"
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
        if self.units == 0 {
            return Err(Error::invalid_argument("units", 0, "Dense needs a positive number of units"));
        }
        let Some((&input_dim, outer)) = input_shape.split_last() else {
            return Err(Error::shape(
                "Dense input",
                "at least one axis per sample, e.g. (None, 784)",
                "(None,)",
            ));
        };
        if input_dim == 0 {
            return Err(Error::shape(
                "Dense input",
                "a last axis of positive length",
                format!("{input_shape:?}"),
            ));
        }
        let activation = self.activation.resolve()?;
        let (kernel_init, bias_init) = (self.kernel_initializer.resolve()?, self.bias_initializer.resolve()?);
        kernel_init.validate()?;
        bias_init.validate()?;
        let kernel_regularizer = super::resolve_regularizer(&self.kernel_regularizer)?;
        let bias_regularizer = super::resolve_regularizer(&self.bias_regularizer)?;
        let name = self.name.clone().unwrap_or_else(|| "dense".into());
        let mut weights = vec![super::add_weight(
            params,
            format!("{name}/kernel"),
            &[input_dim, self.units],
            kernel_init,
            rng,
            true,
        )?];
        if self.use_bias {
            weights.push(super::add_weight(
                params,
                format!("{name}/bias"),
                &[self.units],
                bias_init,
                rng,
                true,
            )?);
        }
        let regularizers = super::weight_regularizers(&weights, [kernel_regularizer, bias_regularizer]);
        self.built = Some(Built { activation, weights, regularizers });
        Ok(outer.iter().copied().chain([self.units]).collect())
    }

    /// True, as in Keras: the mask of the input is the mask of the output.
    fn supports_masking(&self) -> bool {
        true
    }

    fn call<'t>(&self, x: Var<'t>, _ctx: &mut CallContext<'_>) -> Var<'t> {
        let built = self.built.as_ref().expect("Dense::call before build: models build layers first");
        let tape = x.tape();
        let kernel = tape.param(built.weights[0]);
        let bias = built.weights.get(1).map(|&b| tape.param(b));
        // One fused node: bias, product and, if it is element-wise, the activation; softmax follows it.
        let (fused, after) = match built.activation.elementwise() {
            Some(act) => (act, None),
            None => (None, Some(built.activation)),
        };
        let shape = x.shape();
        let y = match shape.as_slice() {
            [_, _] => x.dense(kernel, bias, fused),
            // More than two axes: apply to the last one, as Keras does, on the rows flattened.
            [outer @ .., inner] => {
                let rows = outer.iter().product();
                let out: Vec<usize> = outer.iter().copied().chain([self.units]).collect();
                x.reshape(&[rows, *inner]).dense(kernel, bias, fused).reshape(&out)
            }
            [] => unreachable!("build rejects inputs without an axis"),
        };
        after.map_or(y, |activation| activation.apply(y))
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

    fn config(&self) -> Result<super::LayerConfig> {
        use super::config::{activation_config, initializer_config, DenseConfig};
        super::LayerConfig::new(
            self.class_name(),
            &DenseConfig {
                name: self.name.clone(),
                units: self.units,
                activation: activation_config(&self.activation)?,
                use_bias: self.use_bias,
                kernel_initializer: initializer_config(&self.kernel_initializer)?,
                bias_initializer: initializer_config(&self.bias_initializer)?,
                input_shape: self.input_shape.clone(),
                kernel_regularizer: self.kernel_regularizer.clone(),
                bias_regularizer: self.bias_regularizer.clone(),
            },
        )
    }
}
