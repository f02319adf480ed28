//! Layers describing themselves: [`LayerConfig`] (what [`Layer::config`](super::Layer::config) returns and a
//! model file stores as JSON) and [`layer_from_config`], the registry of built-in layers.
//!
//! The JSON follows Keras' shape: `{"class_name": "Dense", "config": {"name": "dense", "units": 10, ...}}`.
//! Functions with settings (activations, initializers) are `{"class_name": "leaky_relu", "config":
//! {"negative_slope": 0.2}}`. Every field a layer writes is required when reading, and unknown fields are
//! refused, so a file from another version or a damaged one is an error rather than a silently different model.
//!
//! ```
//! use kerust::layers::{layer_from_config, Dense, Layer};
//!
//! let dense = Dense::new(10).activation("relu").name("out");
//! let config = dense.config()?;
//! assert_eq!(config.class_name, "Dense");
//! let again = layer_from_config(&config)?;
//! assert_eq!(again.config()?, config);
//! assert!(layer_from_config(&kerust::layers::LayerConfig {
//!     class_name: "Bidirectional".into(),
//!     config: serde_json::json!({}),
//! })
//! .is_err());
//! # Ok::<(), kerust::Error>(())
//! ```
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Activation, Add, Average, AveragePooling1D, AveragePooling2D, BatchNormalization, Concatenate, Conv1D,
    Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling1D, GlobalAveragePooling2D,
    GlobalMaxPooling1D, GlobalMaxPooling2D, Input, Layer, LayerNormalization, MaxPooling1D, MaxPooling2D,
    Maximum, Minimum, Multiply, Rescaling, Reshape, SimpleRNN, SpatialDropout1D, Subtract, GRU, LSTM,
};
use crate::activations::Activation as Function;
use crate::initializers::Initializer;
use crate::spec::Spec;
use crate::{Error, Result};

/// A layer's class and settings, as stored in a model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// Keras' class name, e.g. `"Dense"`.
    pub class_name: String,
    /// The settings, by Keras' argument names.
    pub config: Value,
}

impl LayerConfig {
    /// A layer's config from its class name and a settings struct that derives `serde::Serialize`: what a
    /// custom layer's [`Layer::config`] returns so that a model using it can be saved (and, with its
    /// constructor registered in [`LoadOptions::custom_layer`](crate::saving::LoadOptions::custom_layer),
    /// loaded). Keep the settings in one struct that derives `Serialize` and `Deserialize`, as the built-in
    /// layers do:
    ///
    /// ```
    /// use kerust::layers::LayerConfig;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct ScaleSettings {
    ///     name: Option<String>,
    ///     factor: f32,
    /// }
    ///
    /// let settings = ScaleSettings { name: Some("scale".into()), factor: 0.5 };
    /// let config = LayerConfig::new("Scale", &settings)?;
    /// assert_eq!(config.config["factor"], 0.5);
    /// assert_eq!(config.parse::<ScaleSettings>()?, settings);
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Format`] if the settings cannot be written as JSON (e.g. a map with non-string keys).
    pub fn new(class_name: impl Into<String>, settings: &impl Serialize) -> Result<LayerConfig> {
        let class_name = class_name.into();
        let config = serde_json::to_value(settings).map_err(|e| Error::Format {
            format: "layer config",
            source_name: class_name.clone(),
            reason: e.to_string(),
        })?;
        Ok(LayerConfig { class_name, config })
    }

    /// The settings struct back from the config ([`LayerConfig::new`]'s inverse), for a custom layer's
    /// constructor at load time.
    ///
    /// # Errors
    /// [`Error::Format`] naming the class and the missing, unknown (with `#[serde(deny_unknown_fields)]`) or
    /// mistyped field.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        T::deserialize(&self.config).map_err(|e| Error::Format {
            format: "layer config",
            source_name: format!("a {} layer", self.class_name),
            reason: e.to_string(),
        })
    }
}

/// The class names [`layer_from_config`] knows.
pub const KNOWN_LAYERS: &[&str] = &[
    "Dense",
    "Dropout",
    "Flatten",
    "Activation",
    "InputLayer",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling2D",
    "Conv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "GlobalMaxPooling1D",
    "GlobalAveragePooling1D",
    "BatchNormalization",
    "LayerNormalization",
    "SpatialDropout1D",
    "Reshape",
    "Rescaling",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Embedding",
    "SimpleRNN",
    "LSTM",
    "GRU",
];

/// A function with settings: an activation or an initializer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FnConfig {
    class_name: String,
    #[serde(deserialize_with = "crate::formats::settings::exact_f64_map")]
    config: BTreeMap<String, f64>,
}

fn exact_rate<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    crate::formats::settings::exact_setting("rate", d)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenseConfig {
    pub(crate) name: Option<String>,
    pub(crate) units: usize,
    pub(crate) activation: FnConfig,
    pub(crate) use_bias: bool,
    pub(crate) kernel_initializer: FnConfig,
    pub(crate) bias_initializer: FnConfig,
    pub(crate) input_shape: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    pub(crate) kernel_regularizer: Option<Spec<crate::regularizers::Regularizer>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::regularizers::optional")]
    pub(crate) bias_regularizer: Option<Spec<crate::regularizers::Regularizer>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DropoutConfig {
    pub(crate) name: Option<String>,
    /// An `f32` rate, written in its shortest decimal form and read back strictly.
    #[serde(deserialize_with = "exact_rate")]
    pub(crate) rate: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlattenConfig {
    pub(crate) name: Option<String>,
    pub(crate) input_shape: Option<Vec<usize>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivationConfig {
    pub(crate) name: Option<String>,
    pub(crate) activation: FnConfig,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputConfig {
    pub(crate) name: Option<String>,
    pub(crate) shape: Vec<usize>,
}

/// Serde for a setting given by name or value, written as the value's own serialization (`"same"`): a layer
/// whose settings struct derives serde stores it with `#[serde(with = "spec_value")]`.
pub(crate) mod spec_value {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    use crate::spec::Spec;

    pub(crate) fn serialize<T, S>(spec: &Spec<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize + std::str::FromStr<Err = crate::Error> + Clone,
        S: Serializer,
    {
        spec.resolve().map_err(S::Error::custom)?.serialize(s)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Spec<T>, D::Error>
    where
        T: Deserialize<'de> + std::str::FromStr<Err = crate::Error>,
        D: Deserializer<'de>,
    {
        // Through the name, so that the message for a bad value is the setting's own (`unknown padding`).
        let name = String::deserialize(d)?;
        name.parse().map(Spec::Value).map_err(D::Error::custom)
    }
}

/// Strict `f32` settings of the layers whose settings struct derives serde: a stored number that does not
/// round-trip through `f32` is an error naming the setting (see `saving::settings`).
/// Use: `#[serde(deserialize_with = "strict_f32::momentum")]`.
pub(crate) mod strict_f32 {
    macro_rules! settings {
        ($($name:ident),*) => {$(
            pub(crate) fn $name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
                use serde::de::Error as _;
                let value = crate::formats::settings::exact_setting(stringify!($name), d)?;
                crate::formats::settings::f32_setting("layer config", stringify!($name), value)
                    .map_err(D::Error::custom)
            }
        )*};
    }
    settings!(momentum, epsilon, scale, offset);
}

/// Serde for an activation setting, as a [`FnConfig`] (`{"class_name": "relu", "config": {}}`).
pub(crate) mod activation_fn {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    use super::{activation_config, activation_from, FnConfig};
    use crate::activations::Activation;
    use crate::spec::Spec;

    pub(crate) fn serialize<S: Serializer>(spec: &Spec<Activation>, s: S) -> Result<S::Ok, S::Error> {
        activation_config(spec).map_err(S::Error::custom)?.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Spec<Activation>, D::Error> {
        activation_from(&FnConfig::deserialize(d)?).map(Spec::Value).map_err(D::Error::custom)
    }
}

/// Serde for an initializer setting, as a [`FnConfig`].
pub(crate) mod initializer_fn {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    use super::{initializer_config, initializer_from, FnConfig};
    use crate::initializers::Initializer;
    use crate::spec::Spec;

    pub(crate) fn serialize<S: Serializer>(spec: &Spec<Initializer>, s: S) -> Result<S::Ok, S::Error> {
        initializer_config(spec).map_err(S::Error::custom)?.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Spec<Initializer>, D::Error> {
        initializer_from(&FnConfig::deserialize(d)?).map(Spec::Value).map_err(D::Error::custom)
    }
}

/// A built-in layer (unbuilt) from its config.
///
/// # Errors
/// [`Error::UnknownName`] for a class that is not built in; [`Error::Format`] for a missing, unknown or
/// mistyped field; [`Error::UnknownName`] for an unknown activation or initializer.
pub fn layer_from_config(config: &LayerConfig) -> Result<Box<dyn Layer>> {
    Ok(match config.class_name.as_str() {
        "Dense" => {
            let c: DenseConfig = config.parse()?;
            let mut d = Dense::new(c.units)
                .activation(activation_from(&c.activation)?)
                .use_bias(c.use_bias)
                .kernel_initializer(initializer_from(&c.kernel_initializer)?)
                .bias_initializer(initializer_from(&c.bias_initializer)?);
            d.set_regularizers(c.kernel_regularizer, c.bias_regularizer);
            if let Some(shape) = c.input_shape {
                d = d.input_shape(shape);
            }
            if let Some(name) = c.name {
                d = d.name(name);
            }
            Box::new(d)
        }
        "Dropout" => {
            let c: DropoutConfig = config.parse()?;
            let rate = crate::formats::settings::f32_setting("layer config", "rate", c.rate)?;
            if !(0.0..1.0).contains(&rate) {
                return Err(Error::invalid_argument("rate", rate, "Dropout's rate must be in [0, 1)"));
            }
            let mut d = Dropout::new(rate);
            if let Some(name) = c.name {
                d = d.name(name);
            }
            Box::new(d)
        }
        "Flatten" => {
            let c: FlattenConfig = config.parse()?;
            let mut f = Flatten::new();
            if let Some(shape) = c.input_shape {
                f = f.input_shape(shape);
            }
            if let Some(name) = c.name {
                f = f.name(name);
            }
            Box::new(f)
        }
        "Activation" => {
            let c: ActivationConfig = config.parse()?;
            let mut a = Activation::new(activation_from(&c.activation)?);
            if let Some(name) = c.name {
                a = a.name(name);
            }
            Box::new(a)
        }
        "InputLayer" => {
            let c: InputConfig = config.parse()?;
            let mut i = Input::new(c.shape);
            if let Some(name) = c.name {
                i.set_name(name);
            }
            Box::new(i)
        }
        // Layers whose settings struct is their saved config.
        "Conv2D" => Box::new(Conv2D::from_settings(config.parse()?)),
        "MaxPooling2D" => Box::new(MaxPooling2D::from_settings(config.parse()?)),
        "AveragePooling2D" => Box::new(AveragePooling2D::from_settings(config.parse()?)),
        "GlobalMaxPooling2D" => Box::new(GlobalMaxPooling2D::from_settings(config.parse()?)),
        "GlobalAveragePooling2D" => Box::new(GlobalAveragePooling2D::from_settings(config.parse()?)),
        "Conv1D" => Box::new(Conv1D::from_settings(config.parse()?)),
        "MaxPooling1D" => Box::new(MaxPooling1D::from_settings(config.parse()?)),
        "AveragePooling1D" => Box::new(AveragePooling1D::from_settings(config.parse()?)),
        "GlobalMaxPooling1D" => Box::new(GlobalMaxPooling1D::from_settings(config.parse()?)),
        "GlobalAveragePooling1D" => Box::new(GlobalAveragePooling1D::from_settings(config.parse()?)),
        "BatchNormalization" => Box::new(BatchNormalization::from_settings(config.parse()?)),
        "LayerNormalization" => Box::new(LayerNormalization::from_settings(config.parse()?)),
        "SpatialDropout1D" => Box::new(SpatialDropout1D::from_settings(config.parse()?)),
        "Reshape" => Box::new(Reshape::from_settings(config.parse()?)),
        "Rescaling" => Box::new(Rescaling::from_settings(config.parse()?)),
        "Add" => Box::new(Add::from_settings(config.parse()?)),
        "Subtract" => Box::new(Subtract::from_settings(config.parse()?)),
        "Multiply" => Box::new(Multiply::from_settings(config.parse()?)),
        "Average" => Box::new(Average::from_settings(config.parse()?)),
        "Maximum" => Box::new(Maximum::from_settings(config.parse()?)),
        "Minimum" => Box::new(Minimum::from_settings(config.parse()?)),
        "Concatenate" => Box::new(Concatenate::from_settings(config.parse()?)),
        "Embedding" => Box::new(Embedding::from_settings(config.parse()?)),
        "SimpleRNN" => Box::new(SimpleRNN::from_settings(config.parse()?)?),
        "LSTM" => Box::new(LSTM::from_settings(config.parse()?)?),
        "GRU" => Box::new(GRU::from_settings(config.parse()?)?),
        other => {
            return Err(Error::UnknownName {
                kind: "layer type",
                name: other.into(),
                known: KNOWN_LAYERS.join(", "),
            })
        }
    })
}

fn fn_config(class_name: &str, settings: &[(&str, f32)]) -> FnConfig {
    FnConfig {
        class_name: class_name.into(),
        config: settings.iter().map(|&(k, v)| (k.to_string(), f64::from(v))).collect(),
    }
}

/// Checks that `c` has exactly the settings `names` and returns them in that order.
fn settings<const N: usize>(c: &FnConfig, names: [&str; N]) -> Result<[f32; N]> {
    let mut out = [0.0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        let Some(&v) = c.config.get(name) else {
            return Err(Error::Format {
                format: "layer config",
                source_name: format!("`{}`", c.class_name),
                reason: format!("missing setting `{name}`"),
            });
        };
        *slot = crate::formats::settings::f32_setting("layer config", name, v)?;
    }
    if let Some(extra) = c.config.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(Error::Format {
            format: "layer config",
            source_name: format!("`{}`", c.class_name),
            reason: format!("unknown setting `{extra}`; expected: {}", names.join(", ")),
        });
    }
    Ok(out)
}

/// The config of an activation setting (resolving a name, so that an unknown one is reported).
pub(crate) fn activation_config(spec: &Spec<Function>) -> Result<FnConfig> {
    let f = spec.resolve()?;
    Ok(match f {
        Function::LeakyRelu(alpha) => fn_config("leaky_relu", &[("negative_slope", alpha)]),
        // Saved by name: a built-in's name would load as the built-in, silently another function.
        Function::Custom(c) if c.name().parse::<Function>().is_ok() => {
            return Err(Error::invalid_argument(
                "activation",
                c.name(),
                "a custom activation is saved by its name, which must not be a built-in activation's; \
                 give it another name in Activation::custom",
            ))
        }
        other => fn_config(other.name(), &[]),
    })
}

fn activation_from(c: &FnConfig) -> Result<Function> {
    // A registered activation comes first, as every registered custom object does.
    let f: Function = match crate::activations::registered(&c.class_name) {
        Some(custom) => custom,
        None => c.class_name.parse().map_err(|e| match e {
            Error::UnknownName { kind, name, known } => Error::UnknownName {
                kind,
                known: format!(
                    "{known}; a custom activation must be registered to load: \
                     `LoadOptions::new().custom_activation(Activation::custom(\"{name}\", f, df))` \
                     with `models::load_model_with`"
                ),
                name,
            },
            other => other,
        })?,
    };
    Ok(match f {
        Function::LeakyRelu(_) => Function::LeakyRelu(settings(c, ["negative_slope"])?[0]),
        other => {
            settings(c, [])?;
            other
        }
    })
}

/// The config of an initializer setting.
pub(crate) fn initializer_config(spec: &Spec<Initializer>) -> Result<FnConfig> {
    let init = spec.resolve()?;
    let name = init.name();
    Ok(match init {
        Initializer::Constant(value) => fn_config(name, &[("value", value)]),
        Initializer::RandomNormal { mean, stddev } | Initializer::TruncatedNormal { mean, stddev } => {
            fn_config(name, &[("mean", mean), ("stddev", stddev)])
        }
        Initializer::RandomUniform { minval, maxval } => {
            fn_config(name, &[("minval", minval), ("maxval", maxval)])
        }
        Initializer::Orthogonal { gain } => fn_config(name, &[("gain", gain)]),
        _ => fn_config(name, &[]),
    })
}

fn initializer_from(c: &FnConfig) -> Result<Initializer> {
    if c.class_name == "constant" {
        return Ok(Initializer::Constant(settings(c, ["value"])?[0]));
    }
    let init: Initializer = c.class_name.parse()?;
    Ok(match init {
        Initializer::RandomNormal { .. } => {
            let [mean, stddev] = settings(c, ["mean", "stddev"])?;
            Initializer::RandomNormal { mean, stddev }
        }
        Initializer::TruncatedNormal { .. } => {
            let [mean, stddev] = settings(c, ["mean", "stddev"])?;
            Initializer::TruncatedNormal { mean, stddev }
        }
        Initializer::RandomUniform { .. } => {
            let [minval, maxval] = settings(c, ["minval", "maxval"])?;
            Initializer::RandomUniform { minval, maxval }
        }
        Initializer::Orthogonal { .. } => {
            let [gain] = settings(c, ["gain"])?;
            Initializer::Orthogonal { gain }
        }
        other => {
            settings(c, [])?;
            other
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_layer_round_trips() {
        let layers: Vec<Box<dyn Layer>> = vec![
            Box::new(
                Dense::new(3)
                    .activation(Function::LeakyRelu(0.1))
                    .use_bias(false)
                    .kernel_initializer(Initializer::RandomUniform { minval: -0.3, maxval: 0.25 })
                    .bias_initializer(Initializer::Constant(0.5))
                    .input_shape([4])
                    .name("d"),
            ),
            Box::new(Dense::new(2).kernel_initializer("he_normal").activation("silu")),
            Box::new(Dropout::new(0.25).name("drop")),
            Box::new(Flatten::new().input_shape([2, 3])),
            Box::new(Activation::new("tanh")),
            Box::new(Input::new([5, 6])),
            Box::new(
                Conv2D::new(4, (3, 2))
                    .strides(2)
                    .padding("same")
                    .activation("relu")
                    .use_bias(false)
                    .kernel_initializer("he_uniform")
                    .input_shape([8, 8, 3])
                    .name("c"),
            ),
            Box::new(Conv2D::new(2, 3).dilation_rate((2, 1)).bias_initializer(Initializer::Constant(0.1))),
            Box::new(MaxPooling2D::new(3).strides(1).padding("same")),
            Box::new(AveragePooling2D::new((2, 3)).input_shape([4, 6, 1])),
            Box::new(GlobalMaxPooling2D::new().keepdims(true)),
            Box::new(GlobalAveragePooling2D::new().name("gap")),
            Box::new(
                Conv1D::new(4, 3)
                    .padding("causal")
                    .dilation_rate(2)
                    .activation("relu")
                    .kernel_regularizer("l2")
                    .input_shape([10, 3])
                    .name("c1"),
            ),
            Box::new(Conv1D::new(2, 5).strides(2).padding("same").use_bias(false)),
            Box::new(MaxPooling1D::new(3).strides(1).padding("same")),
            Box::new(AveragePooling1D::new(2).input_shape([6, 2])),
            Box::new(GlobalMaxPooling1D::new().keepdims(true)),
            Box::new(GlobalAveragePooling1D::new().name("gap1")),
            Box::new(
                BatchNormalization::new()
                    .axis(1)
                    .momentum(0.9)
                    .epsilon(1e-5)
                    .center(false)
                    .gamma_initializer(Initializer::Constant(2.0)),
            ),
            Box::new(
                LayerNormalization::new().epsilon(1e-5).center(false).gamma_regularizer("l2").name("ln"),
            ),
            Box::new(LayerNormalization::new().axes([1, -1]).beta_initializer(Initializer::Constant(0.5))),
            Box::new(SpatialDropout1D::new(0.3).name("sd")),
            Box::new(Reshape::new([-1, 4, 1]).input_shape([8])),
            Box::new(Rescaling::new(1.0 / 255.0).offset(-0.5).input_shape([2, 2]).name("scale")),
            Box::new(Add::new().name("sum")),
            Box::new(Subtract::new()),
            Box::new(Multiply::new().name("gate")),
            Box::new(Average::new()),
            Box::new(Maximum::new().name("max")),
            Box::new(Minimum::new()),
            Box::new(Concatenate::new(2).name("joined")),
            Box::new(Concatenate::default()),
            Box::new(Embedding::new(20, 4).mask_zero(true).input_shape([7]).name("words")),
            Box::new(SimpleRNN::new(3).activation("relu").go_backwards(true).name("rnn")),
            Box::new(LSTM::new(2).return_sequences(true).unit_forget_bias(false).input_shape([4, 3])),
            Box::new(GRU::new(2).reset_after(false).recurrent_dropout(0.25).return_state(true)),
        ];
        let mut seen: Vec<&str> = layers.iter().map(|l| l.class_name()).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut known = KNOWN_LAYERS.to_vec();
        known.sort_unstable();
        assert_eq!(seen, known, "every known layer is round-tripped here, and every layer here is known");
        for layer in layers {
            let config = layer.config().unwrap();
            let json = serde_json::to_string(&config).unwrap();
            let back: LayerConfig = serde_json::from_str(&json).unwrap();
            let again = layer_from_config(&back).map_err(|e| e.to_string()).unwrap();
            assert_eq!(again.config().unwrap(), config, "{json}");
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let dense = Dense::new(3).config().unwrap();
        let mut missing = dense.clone();
        missing.config.as_object_mut().unwrap().remove("units");
        let err = |c: &LayerConfig| layer_from_config(c).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&missing).contains("units"));
        let mut extra = dense.clone();
        extra.config.as_object_mut().unwrap().insert("filters".into(), 3.into());
        assert!(layer_from_config(&extra).is_err());
        let mut act = dense;
        act.config["activation"]["class_name"] = "relux".into();
        assert!(err(&act).contains("relux"));
        // Settings of the layers that derive serde are as strict: a float that would change, a mistyped field.
        let bn = BatchNormalization::new().config().unwrap();
        for (field, value, words) in [
            ("momentum", serde_json::json!(0.9999999999), &["momentum", "0.9999999999"][..]),
            ("epsilon", serde_json::json!(1e-50), &["epsilon"][..]),
            ("center", serde_json::json!(1), &["expected a boolean"][..]),
            ("axis", serde_json::json!(-1.5), &["-1.5", "i64"][..]),
        ] {
            let mut c = bn.clone();
            c.config[field] = value;
            let e = err(&c);
            assert!(words.iter().all(|w| e.contains(w)), "{field}: {e}");
        }
        let mut conv = Conv2D::new(2, 3).config().unwrap();
        conv.config["padding"] = "full".into();
        assert!(err(&conv).contains("full"));
        conv.config["padding"] = "same".into();
        conv.config["kernel_size"] = serde_json::json!([3]);
        assert!(layer_from_config(&conv).is_err());
        let unknown = LayerConfig { class_name: "Bidirectional".into(), config: Value::Null };
        let e = err(&unknown);
        assert!(e.contains("Bidirectional") && e.contains("Dense"), "{e}");
    }
}
