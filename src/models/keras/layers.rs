//! Keras 3's layer configs (`get_config`) to kerust's [`LayerConfig`] and back.
//!
//! kerust's layer settings already use Keras' argument names, so a translation renames little: it turns Keras'
//! serialized functions (`"relu"`, `{"class_name": "GlorotUniform", ...}`) into kerust's, and checks that every
//! Keras setting kerust does not have is at its default (a `kernel_constraint` or `groups=2` is an error naming
//! the setting, never a silently different model).
use serde_json::{json, Map, Value};

use super::KerasError;
use crate::layers::{LayerConfig, KNOWN_LAYERS};
use crate::Result;

/// Keras settings kerust does not keep, and the values at which dropping them changes nothing.
fn ignorable(key: &str, value: &Value) -> bool {
    match key {
        // Bookkeeping without effect on the math (the dtype policy is checked apart).
        "trainable" | "dtype" | "seed" | "lora_alpha" | "renorm_momentum" | "autocast" => true,
        // An unrolled RNN computes the same steps as a looped one.
        "unroll" => value.is_boolean(),
        "data_format" => value == "channels_last",
        "groups" => value == 1,
        "sparse" | "ragged" | "optional" | "renorm" | "rms_scaling" | "stateful" | "zero_output_for_mask" => {
            value == false
        }
        _ => value.is_null(),
    }
}

/// How a Keras setting becomes a kerust one.
#[derive(Clone, Copy)]
enum Kind {
    /// The same JSON.
    Same,
    /// A 32-bit float: rounded to the nearest `f32` (Keras computes in float32 too).
    F32,
    /// `3` or `[3, 3]`: kerust's `[3, 3]`.
    Size2,
    /// An activation: Keras' name or serialized function, kerust's `{"class_name", "config"}`.
    Activation,
    /// An initializer: Keras' `{"class_name": "GlorotUniform", ...}` or name, kerust's `glorot_uniform`.
    Initializer,
    /// A regularizer or null: Keras' `{"module", "class_name": "L2", "config"}` without the module.
    Regularizer,
    /// A wrapped layer (a wrapper's `layer`, `backward_layer`): Keras' serialized layer, kerust's
    /// `{"class_name", "config"}` of the same layer translated.
    Nested,
    /// `Bidirectional`'s `merge_mode`: one of the four strings, or `null` (Keras' None, the two outputs unmerged).
    MergeMode,
}

/// The settings each class translates: `(keras name, kind)`; kerust's name is the same.
fn settings_of(class: &str) -> Option<&'static [(&'static str, Kind)]> {
    use Kind::*;
    const MERGE: &[(&str, Kind)] = &[];
    Some(match class {
        "Dense" => &[
            ("units", Same),
            ("activation", Activation),
            ("use_bias", Same),
            ("kernel_initializer", Initializer),
            ("bias_initializer", Initializer),
            ("kernel_regularizer", Regularizer),
            ("bias_regularizer", Regularizer),
        ],
        "Dropout" => &[("rate", F32)],
        "Flatten" => &[],
        "Activation" => &[("activation", Activation)],
        "Conv2D" => &[
            ("filters", Same),
            ("kernel_size", Size2),
            ("strides", Size2),
            ("padding", Same),
            ("dilation_rate", Size2),
            ("activation", Activation),
            ("use_bias", Same),
            ("kernel_initializer", Initializer),
            ("bias_initializer", Initializer),
            ("kernel_regularizer", Regularizer),
            ("bias_regularizer", Regularizer),
        ],
        // Keras writes 1-D sizes as lists of one (`[3]`), kerust's form.
        "Conv1D" => &[
            ("filters", Same),
            ("kernel_size", Same),
            ("strides", Same),
            ("padding", Same),
            ("dilation_rate", Same),
            ("activation", Activation),
            ("use_bias", Same),
            ("kernel_initializer", Initializer),
            ("bias_initializer", Initializer),
            ("kernel_regularizer", Regularizer),
            ("bias_regularizer", Regularizer),
        ],
        "MaxPooling1D" | "AveragePooling1D" => &[("pool_size", Same), ("strides", Same), ("padding", Same)],
        "GlobalMaxPooling1D" | "GlobalAveragePooling1D" => &[("keepdims", Same)],
        "LayerNormalization" => &[
            ("axis", Same),
            ("epsilon", F32),
            ("center", Same),
            ("scale", Same),
            ("beta_initializer", Initializer),
            ("gamma_initializer", Initializer),
            ("beta_regularizer", Regularizer),
            ("gamma_regularizer", Regularizer),
        ],
        "SpatialDropout1D" => &[("rate", F32)],
        "MaxPooling2D" | "AveragePooling2D" => &[("pool_size", Size2), ("strides", Size2), ("padding", Same)],
        "GlobalMaxPooling2D" | "GlobalAveragePooling2D" => &[("keepdims", Same)],
        "BatchNormalization" => &[
            ("axis", Same),
            ("momentum", F32),
            ("epsilon", F32),
            ("center", Same),
            ("scale", Same),
            ("beta_initializer", Initializer),
            ("gamma_initializer", Initializer),
            ("moving_mean_initializer", Initializer),
            ("moving_variance_initializer", Initializer),
            ("synchronized", Same),
        ],
        "Reshape" => &[("target_shape", Same)],
        "Rescaling" => &[("scale", F32), ("offset", F32)],
        "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" => MERGE,
        "Concatenate" => &[("axis", Same)],
        "Embedding" => &[
            ("input_dim", Same),
            ("output_dim", Same),
            ("embeddings_initializer", Initializer),
            ("embeddings_regularizer", Regularizer),
            ("mask_zero", Same),
        ],
        "SimpleRNN" => RECURRENT_SIMPLE,
        "LSTM" => RECURRENT_LSTM,
        "GRU" => RECURRENT_GRU,
        "Bidirectional" => &[("merge_mode", MergeMode), ("layer", Nested), ("backward_layer", Nested)],
        "TimeDistributed" => &[("layer", Nested)],
        _ => return None,
    })
}

/// The settings of the recurrent layers: those the three share (regularizers and constraints are not among them,
/// so only their default, null, loads), then each one's own.
macro_rules! recurrent_settings {
    ($($extra:expr),*) => {
        &[
            ("return_sequences", Kind::Same),
            ("return_state", Kind::Same),
            ("go_backwards", Kind::Same),
            ("units", Kind::Same),
            ("activation", Kind::Activation),
            $($extra,)*
            ("use_bias", Kind::Same),
            ("kernel_initializer", Kind::Initializer),
            ("recurrent_initializer", Kind::Initializer),
            ("bias_initializer", Kind::Initializer),
            ("dropout", Kind::F32),
            ("recurrent_dropout", Kind::F32),
        ]
    };
}
const RECURRENT_SIMPLE: &[(&str, Kind)] = recurrent_settings!();
const RECURRENT_LSTM: &[(&str, Kind)] =
    recurrent_settings!(("recurrent_activation", Kind::Activation), ("unit_forget_bias", Kind::Same));
const RECURRENT_GRU: &[(&str, Kind)] =
    recurrent_settings!(("recurrent_activation", Kind::Activation), ("reset_after", Kind::Same));

/// Whether kerust's config of this class has an `input_shape` field (null when read from Keras, which declares
/// inputs with an `InputLayer`).
fn has_input_shape(class: &str) -> bool {
    !matches!(
        class,
        "Dropout"
            | "Activation"
            | "Add"
            | "Subtract"
            | "Multiply"
            | "Average"
            | "Maximum"
            | "Minimum"
            | "Concatenate"
    )
}

/// The Keras classes [`from_keras`] translates: kerust's layers that have a row in [`settings_of`], and
/// `InputLayer`; derived from those two, so the list an error shows cannot drift from what loads.
pub(crate) fn translated_classes() -> Vec<&'static str> {
    KNOWN_LAYERS.iter().copied().filter(|&c| c == "InputLayer" || settings_of(c).is_some()).collect()
}

/// What a Keras layer entry of `config.json` says.
pub(crate) struct KerasLayer {
    pub(crate) class_name: String,
    pub(crate) name: String,
    /// False for a layer Keras saved frozen (`layer.trainable = False`).
    pub(crate) trainable: bool,
    /// kerust's config (a built-in class), or Keras' own for a class kerust does not know (for a registered
    /// custom layer, or the error naming it).
    pub(crate) config: LayerConfig,
    /// Whether kerust has the class built in.
    pub(crate) builtin: bool,
}

/// Reads one entry of a Keras `layers` list at `path` (`config.layers[3]`).
pub(crate) fn from_keras(entry: &Value, path: &str, e: &KerasError) -> Result<KerasLayer> {
    let class = entry
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| e.at(path, "a layer needs a string `class_name`"))?;
    let Some(config) = entry.get("config").and_then(Value::as_object) else {
        return Err(e.at(path, format!("layer {class} has no `config` object")));
    };
    let name = match config.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return Err(e.at(path, format!("layer {class} needs a string `config.name`"))),
    };
    let at = |what: &str| format!("{path}.config.{what}");
    let trainable = match config.get("trainable") {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(other) => return Err(e.at(&at("trainable"), format!("expected true or false, found {other}"))),
    };
    // An input of integer indices (an Embedding's) is read as float32 like any other data.
    let integer_input = class == "InputLayer"
        && matches!(
            config.get("dtype").and_then(Value::as_str),
            Some("int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64")
        );
    if !integer_input {
        check_dtype(config.get("dtype"), &at("dtype"), e)?;
    }
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.clone()));
    if class == "InputLayer" {
        let shape = config
            .get("batch_shape")
            .or_else(|| config.get("batch_input_shape"))
            .and_then(Value::as_array)
            .ok_or_else(|| e.at(&at("batch_shape"), "an InputLayer needs its `batch_shape`"))?;
        let dims = shape
            .iter()
            .skip(1)
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                e.at(
                    &at("batch_shape"),
                    format!(
                        "{} has a dimension kerust cannot take: kerust's inputs have a fixed shape per sample \
                         (a `None` dimension, as in variable-length inputs, is not supported)",
                        Value::Array(shape.clone())
                    ),
                )
            })?;
        out.insert("shape".into(), json!(dims));
        for (key, value) in config {
            if !matches!(key.as_str(), "name" | "batch_shape" | "batch_input_shape") && !ignorable(key, value)
            {
                return Err(unsupported(e, &at(key), class, value));
            }
        }
        return Ok(KerasLayer {
            class_name: class.into(),
            name,
            trainable,
            config: LayerConfig { class_name: class.into(), config: Value::Object(out) },
            builtin: true,
        });
    }
    let Some(settings) = settings_of(class) else {
        return Ok(KerasLayer {
            class_name: class.into(),
            name,
            trainable,
            config: LayerConfig { class_name: class.into(), config: Value::Object(config.clone()) },
            builtin: false,
        });
    };
    for &(key, kind) in settings {
        let value = config.get(key).cloned().unwrap_or(Value::Null);
        let value = match kind {
            // A missing setting is left to kerust's parser, which names it.
            _ if !config.contains_key(key) && !matches!(kind, Kind::Regularizer | Kind::MergeMode) => {
                continue
            }
            Kind::Same => value,
            Kind::Nested => match value {
                // Keras' `backward_layer` may be null: a copy of `layer` reads backwards then.
                Value::Null if key == "backward_layer" => continue,
                v => nested_from_keras(class, &v, &at(key), trainable, e)?,
            },
            Kind::MergeMode => merge_mode_from_keras(config.get(key), &at(key), e)?,
            Kind::F32 => f32_value(&value)
                .ok_or_else(|| e.at(&at(key), format!("expected a number, found {value}")))?,
            Kind::Size2 => match &value {
                Value::Null if key == "strides" && class != "Conv2D" => Value::Null,
                Value::Number(_) => json!([value, value]),
                _ => value,
            },
            Kind::Activation => activation_from_keras(&value, &at(key), e)?,
            Kind::Initializer => initializer_from_keras(&value, &at(key), e)?,
            Kind::Regularizer => match value {
                Value::Null => continue,
                v => regularizer_from_keras(&v, &at(key), e)?,
            },
        };
        out.insert(key.into(), value);
    }
    if has_input_shape(class) {
        out.insert("input_shape".into(), Value::Null);
    }
    for (key, value) in config {
        let known = key == "name" || settings.iter().any(|&(k, _)| k == key);
        if !known && !ignorable(key, value) {
            return Err(unsupported(e, &at(key), class, value));
        }
    }
    Ok(KerasLayer {
        class_name: class.into(),
        name,
        trainable,
        config: LayerConfig { class_name: class.into(), config: Value::Object(out) },
        builtin: true,
    })
}

/// A wrapper's inner layer (`entry`, Keras' serialized layer at `path`) as kerust's `{"class_name", "config"}`:
/// one of the built-in layers kerust translates, frozen or not as its wrapper is (Keras' `trainable` setter
/// sets a layer's sublayers too, and kerust freezes a layer whole).
fn nested_from_keras(
    wrapper: &str,
    entry: &Value,
    path: &str,
    trainable: bool,
    e: &KerasError,
) -> Result<Value> {
    let mut entry = entry.clone();
    if wrapper == "Bidirectional" {
        // Keras' Bidirectional sets its layers' `zero_output_for_mask` (to their `return_sequences`) whatever the
        // config says, and kerust's zeroes masked steps the same way: the saved value changes nothing.
        if let Some(c) = entry.get_mut("config").and_then(Value::as_object_mut) {
            if c.get("zero_output_for_mask").is_some_and(Value::is_boolean) {
                c.remove("zero_output_for_mask");
            }
        }
    }
    let inner = from_keras(&entry, path, e)?;
    if !inner.builtin || inner.class_name == "InputLayer" {
        let known: Vec<&str> = translated_classes().into_iter().filter(|&c| c != "InputLayer").collect();
        return Err(e.at(
            path,
            format!(
                "layer class {} (`{}`) inside a {wrapper} is not supported by kerust (a wrapped layer is one \
                 of: {})",
                inner.class_name,
                inner.name,
                known.join(", ")
            ),
        ));
    }
    if inner.trainable != trainable {
        return Err(e.at(
            &format!("{path}.config.trainable"),
            format!(
                "the wrapped layer has trainable={}, its {wrapper} trainable={trainable}: kerust freezes a layer \
                 whole, its wrapped layers with it",
                inner.trainable
            ),
        ));
    }
    serde_json::to_value(&inner.config).map_err(|err| e.at(path, format!("not a layer config: {err}")))
}

/// Keras' `merge_mode` (missing: Keras' default, `"concat"`) as kerust's.
fn merge_mode_from_keras(v: Option<&Value>, path: &str, e: &KerasError) -> Result<Value> {
    match v {
        None => Ok("concat".into()),
        Some(Value::String(s)) if matches!(s.as_str(), "concat" | "sum" | "mul" | "ave") => {
            Ok(Value::String(s.clone()))
        }
        // None: the two directions' outputs apart, as kerust's config writes it too.
        Some(Value::Null) => Ok(Value::Null),
        Some(other) => Err(e.at(
            path,
            format!("expected a merge mode (\"concat\", \"sum\", \"mul\", \"ave\" or None), found {other}"),
        )),
    }
}

fn unsupported(e: &KerasError, path: &str, class: &str, value: &Value) -> crate::Error {
    e.at(path, format!("{class}'s setting {value} is not supported by kerust (only its default is)"))
}

/// Only float32 layers: a `mixed_float16` policy would compute otherwise.
fn check_dtype(dtype: Option<&Value>, path: &str, e: &KerasError) -> Result<()> {
    let name = match dtype {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => v.get("config").and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or(""),
    };
    if name == "float32" {
        Ok(())
    } else {
        Err(e.at(path, format!("dtype policy `{name}`: kerust computes in float32 only")))
    }
}

/// A number rounded to `f32` and written in its shortest decimal form, which kerust's strict settings read back
/// exactly (Keras keeps Python floats in configs, and computes with their float32 value).
pub(crate) fn f32_value(v: &Value) -> Option<Value> {
    let x = v.as_f64()? as f32;
    if !x.is_finite() {
        return None;
    }
    let shortest: f64 = x.to_string().parse().ok()?;
    serde_json::Number::from_f64(shortest).map(Value::Number)
}

/// A name from Keras' serialized function: `"relu"`, or `{"class_name": "function", "config": "relu",
/// "registered_name": ...}`.
fn function_name(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o
            .get("registered_name")
            .and_then(Value::as_str)
            .or_else(|| o.get("config").and_then(Value::as_str)),
        _ => None,
    }
}

/// Keras' activation setting as kerust's `{"class_name": "relu", "config": {}}`.
fn activation_from_keras(v: &Value, path: &str, e: &KerasError) -> Result<Value> {
    let name = match v {
        Value::Null => "linear",
        _ => {
            function_name(v).ok_or_else(|| e.at(path, format!("expected an activation's name, found {v}")))?
        }
    };
    Ok(match name {
        // Keras' `leaky_relu` function defaults its slope to 0.2; kerust stores the slope.
        "leaky_relu" => json!({"class_name": "leaky_relu", "config": {"negative_slope": 0.2}}),
        // Keras 3 saves `swish` as `silu`: the same function.
        other => json!({"class_name": other, "config": {}}),
    })
}

/// Keras' initializer setting as kerust's `{"class_name": "glorot_uniform", "config": {...}}`.
fn initializer_from_keras(v: &Value, path: &str, e: &KerasError) -> Result<Value> {
    let (class, config) = match v {
        Value::String(s) => (s.clone(), Map::new()),
        Value::Object(o) => (
            o.get("class_name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            o.get("config").and_then(Value::as_object).cloned().unwrap_or_default(),
        ),
        _ => return Err(e.at(path, format!("expected an initializer, found {v}"))),
    };
    let snake = crate::layers::snake_case(&class);
    let keys: &[&str] = match snake.as_str() {
        "glorot_uniform" | "glorot_normal" | "he_uniform" | "he_normal" | "lecun_uniform" | "lecun_normal"
        | "zeros" | "ones" => &[],
        "constant" => &["value"],
        "random_normal" | "truncated_normal" => &["mean", "stddev"],
        "random_uniform" => &["minval", "maxval"],
        "orthogonal" => &["gain"],
        _ => {
            return Err(e.at(
                path,
                format!(
                    "initializer {class} is not supported by kerust (it has GlorotUniform, GlorotNormal, HeUniform, \
                     HeNormal, LecunUniform, LecunNormal, Zeros, Ones, Constant, RandomNormal, RandomUniform, \
                     TruncatedNormal, Orthogonal)"
                ),
            ))
        }
    };
    let mut out = Map::new();
    for &key in keys {
        let value = config.get(key).and_then(f32_value).ok_or_else(|| {
            e.at(&format!("{path}.config.{key}"), format!("initializer {class} needs a number `{key}`"))
        })?;
        out.insert(key.into(), value);
    }
    for (key, value) in &config {
        if !keys.contains(&key.as_str()) && !ignorable(key, value) {
            return Err(unsupported(e, &format!("{path}.config.{key}"), &class, value));
        }
    }
    Ok(json!({"class_name": snake, "config": out}))
}

/// Keras' `{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}}` as kerust's.
fn regularizer_from_keras(v: &Value, path: &str, e: &KerasError) -> Result<Value> {
    let class = v.get("class_name").and_then(Value::as_str);
    let config = v.get("config").and_then(Value::as_object);
    let (Some(class), Some(config)) = (class, config) else {
        return Err(e.at(path, format!("expected a regularizer, found {v}")));
    };
    let mut out = Map::new();
    for (key, value) in config {
        out.insert(key.clone(), f32_value(value).unwrap_or_else(|| value.clone()));
    }
    Ok(json!({"class_name": class, "config": out}))
}

/// Keras' dtype policy object, as Keras 3.15 writes it in every layer.
fn dtype_policy() -> Value {
    json!({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null})
}

/// kerust's config of a built-in layer as Keras' layer entry (`module`, `class_name`, `config`,
/// `registered_name`, `build_config`). `input_shapes` are the per-sample shapes the layer was built for.
pub(crate) fn to_keras(config: &LayerConfig, trainable: bool, input_shapes: &[&[usize]]) -> Result<Value> {
    let class = config.class_name.as_str();
    let kerust = config.config.as_object().cloned().unwrap_or_default();
    let name = kerust.get("name").cloned().unwrap_or(Value::Null);
    if class == "InputLayer" {
        let shape = kerust.get("shape").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut batch_shape = vec![Value::Null];
        batch_shape.extend(shape);
        return Ok(json!({
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": false, "ragged": false, "name": name,
                       "optional": false},
            "registered_name": null,
        }));
    }
    let Some(settings) = settings_of(class) else {
        // A custom layer: its own config, for a Keras class registered under this name.
        return Ok(json!({
            "module": null,
            "class_name": class,
            "config": config.config,
            "registered_name": class,
            "build_config": build_config(input_shapes),
        }));
    };
    let mut out = Map::new();
    out.insert("name".into(), name);
    out.insert("trainable".into(), Value::Bool(trainable));
    out.insert("dtype".into(), dtype_policy());
    for &(key, kind) in settings {
        let value = kerust.get(key).cloned().unwrap_or(Value::Null);
        let value = match kind {
            Kind::Activation => activation_to_keras(&value)?,
            Kind::Initializer => initializer_to_keras(&value),
            Kind::Nested => match value {
                Value::Null => Value::Null,
                v => nested_to_keras(class, v, trainable, input_shapes)?,
            },
            Kind::Regularizer => match value {
                Value::Null => Value::Null,
                v => {
                    json!({"module": "keras.regularizers", "class_name": v["class_name"], "config": v["config"],
                            "registered_name": null})
                }
            },
            _ => value,
        };
        out.insert(key.into(), value);
    }
    match class {
        "Conv2D" | "Conv1D" => {
            out.insert("data_format".into(), "channels_last".into());
            out.insert("groups".into(), 1.into());
        }
        "MaxPooling2D"
        | "AveragePooling2D"
        | "GlobalMaxPooling2D"
        | "GlobalAveragePooling2D"
        | "Flatten"
        | "MaxPooling1D"
        | "AveragePooling1D"
        | "GlobalMaxPooling1D"
        | "GlobalAveragePooling1D" => {
            out.insert("data_format".into(), "channels_last".into());
        }
        "SimpleRNN" | "LSTM" | "GRU" => {
            // Keras' defaults of the settings kerust does not have.
            for key in ["stateful", "unroll", "zero_output_for_mask"] {
                out.insert(key.into(), false.into());
            }
            for key in [
                "kernel_regularizer",
                "recurrent_regularizer",
                "bias_regularizer",
                "activity_regularizer",
                "kernel_constraint",
                "recurrent_constraint",
                "bias_constraint",
                "seed",
            ] {
                out.insert(key.into(), Value::Null);
            }
        }
        _ => {}
    }
    Ok(json!({
        "module": "keras.layers",
        "class_name": class,
        "config": out,
        "registered_name": null,
        "build_config": build_config(input_shapes),
    }))
}

/// kerust's config of a wrapper's inner layer as Keras' serialized layer, built for the shapes its wrapper
/// gives it: TimeDistributed's layer sees one step (the shape without the time axis), Bidirectional's the
/// sequence.
fn nested_to_keras(wrapper: &str, v: Value, trainable: bool, input_shapes: &[&[usize]]) -> Result<Value> {
    let inner: LayerConfig = serde_json::from_value(v).map_err(|err| {
        crate::Error::invalid_argument("layer", err, format!("{wrapper}'s wrapped layer as a layer config"))
    })?;
    let shapes: Vec<&[usize]> = if wrapper == "TimeDistributed" {
        input_shapes.iter().map(|s| s.get(1..).unwrap_or_default()).collect()
    } else {
        input_shapes.to_vec()
    };
    let mut entry = to_keras(&inner, trainable, &shapes)?;
    if wrapper == "Bidirectional" {
        // As Keras' Bidirectional sets it on its layers (and saves it so).
        let config = &mut entry["config"];
        if let Some(sequences) = config.get("return_sequences").cloned() {
            config["zero_output_for_mask"] = sequences;
        }
    }
    Ok(entry)
}

fn build_config(input_shapes: &[&[usize]]) -> Value {
    let batch = |s: &[usize]| {
        let mut v = vec![Value::Null];
        v.extend(s.iter().map(|&d| json!(d)));
        Value::Array(v)
    };
    match input_shapes {
        [] => Value::Null,
        [one] => json!({"input_shape": batch(one)}),
        many => json!({"input_shape": many.iter().map(|s| batch(s)).collect::<Vec<_>>()}),
    }
}

/// kerust's `{"class_name": "relu", "config": {}}` as Keras' `"relu"`.
fn activation_to_keras(v: &Value) -> Result<Value> {
    let name = v.get("class_name").and_then(Value::as_str).unwrap_or("linear");
    if name == "leaky_relu" {
        let slope = v["config"]["negative_slope"].as_f64().unwrap_or(f64::NAN);
        if slope != 0.2 {
            return Err(crate::Error::invalid_argument(
                "activation",
                format!("leaky_relu({slope})"),
                "a Keras file stores an activation by name, and Keras' `leaky_relu` has the slope 0.2; use a \
                 slope of 0.2, or save in kerust's own format",
            ));
        }
    }
    Ok(Value::String(name.into()))
}

/// kerust's `{"class_name": "he_normal", "config": {}}` as Keras' serialized `HeNormal`.
fn initializer_to_keras(v: &Value) -> Value {
    let name = v.get("class_name").and_then(Value::as_str).unwrap_or("zeros");
    let class: String = name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let mut config = v.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    if !matches!(name, "zeros" | "ones" | "constant") {
        config.insert("seed".into(), Value::Null);
    }
    json!({"module": "keras.initializers", "class_name": class, "config": config, "registered_name": null})
}

/// Checks a translated built-in layer by building kerust's layer from it: an unknown activation or a bad
/// setting is reported at the file's path.
pub(crate) fn check(layer: &KerasLayer, path: &str, e: &KerasError) -> Result<()> {
    if layer.builtin {
        crate::layers::layer_from_config(&layer.config)
            .map_err(|err| e.at(path, format!("{} `{}`: {err}", layer.class_name, layer.name)))?;
    }
    Ok(())
}
