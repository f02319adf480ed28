//! Keras' `compile_config` (optimizer, loss, loss weights, metrics) and the optimizer's variables
//! (`optimizer/vars/0..`: the step count, the learning rate unless a schedule gives it, then each trainable
//! weight's slots in Keras' order).
use serde_json::{json, Map, Value};

use super::super::{Compile, Model};
use super::layers::f32_value;
use super::weights::{dataset, to_tensor};
use super::{FileLayer, KerasError};
use crate::autodiff::{ParamId, Tensor};
use crate::formats::hdf5::{Data, Dataset, Group};
use crate::losses::{Loss, LossSpec};
use crate::metrics::MetricSpec;
use crate::models::load_options::LoadOptions;
use crate::optimizers::schedules::LearningRateSchedule;
use crate::optimizers::Optimizer;
use crate::Result;

/// kerust's optimizer names and Keras' classes.
const OPTIMIZERS: &[(&str, &str)] =
    &[("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"), ("adagrad", "Adagrad")];

/// kerust's loss names and Keras' classes.
const LOSSES: &[(&str, &str)] = &[
    ("categorical_crossentropy", "CategoricalCrossentropy"),
    ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"),
    ("binary_crossentropy", "BinaryCrossentropy"),
    ("mean_squared_error", "MeanSquaredError"),
    ("mean_absolute_error", "MeanAbsoluteError"),
    ("huber_loss", "Huber"),
];

/// Keras optimizer settings kerust does not have, and the values at which they change nothing.
fn optimizer_default(key: &str, value: &Value) -> bool {
    match key {
        "name" | "ema_momentum" | "ema_overwrite_frequency" => true,
        "use_ema" => value == false,
        _ => value.is_null(),
    }
}

/// The optimizer of Keras' serialized `optimizer` (`{"class_name": "Adam", "config": {...}}` or a name).
fn optimizer_from_keras(v: &Value, path: &str, e: &KerasError) -> Result<Box<dyn Optimizer>> {
    let (class, config) = match v {
        Value::String(s) => (s.as_str(), Map::new()),
        _ => (
            v.get("class_name").and_then(Value::as_str).unwrap_or_default(),
            v.get("config").and_then(Value::as_object).cloned().unwrap_or_default(),
        ),
    };
    let name = OPTIMIZERS
        .iter()
        .find(|(n, c)| *c == class || n.eq_ignore_ascii_case(class))
        .map(|(n, _)| *n)
        .ok_or_else(|| {
            let known: Vec<&str> = OPTIMIZERS.iter().map(|(_, c)| *c).collect();
            e.at(
                &format!("{path}.class_name"),
                format!("optimizer {class} is not supported by kerust (it has {})", known.join(", ")),
            )
        })?;
    if config.is_empty() {
        return crate::optimizers::get(name);
    }
    let expected: Vec<String> = crate::optimizers::get(name)?.config().into_iter().map(|(k, _)| k).collect();
    let mut settings: Vec<(String, f64)> = Vec::new();
    let mut schedule = None;
    for (key, value) in &config {
        let at = format!("{path}.config.{key}");
        let number = |value: &Value| {
            f32_value(value)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| e.at(&at, format!("expected a number, found {value}")))
        };
        match (key.as_str(), value) {
            ("learning_rate", Value::Object(_)) => schedule = Some(schedule_from_keras(value, &at, e)?),
            ("clipnorm" | "clipvalue" | "global_clipnorm", v) if !v.is_null() => {
                settings.push((key.clone(), number(v)?))
            }
            ("weight_decay", v) if name != "adamw" && !v.is_null() => {
                return Err(
                    e.at(&at, format!("weight_decay={v}: kerust's {class} has no weight decay (AdamW has)"))
                )
            }
            (k, Value::Bool(b)) if expected.iter().any(|x| x == k) => {
                settings.push((key.clone(), f64::from(u8::from(*b))))
            }
            (k, v) if expected.iter().any(|x| x == k) => settings.push((key.clone(), number(v)?)),
            (k, v) if optimizer_default(k, v) => {}
            (_, v) => return Err(e.at(&at, format!("{class}'s setting {v} is not supported by kerust"))),
        }
    }
    match schedule {
        Some(s) => crate::optimizers::from_config_with_schedule(name, &settings, s),
        None => crate::optimizers::from_config(name, &settings),
    }
    .map_err(|err| e.at(path, err.to_string()))
}

/// Keras' serialized schedule (with `module`, `registered_name`, and a `name` in its config) as kerust's.
fn schedule_from_keras(v: &Value, path: &str, e: &KerasError) -> Result<LearningRateSchedule> {
    let class = v.get("class_name").cloned().unwrap_or(Value::Null);
    let mut config = v.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    config.remove("name");
    for (key, value) in config.iter_mut() {
        // Rates are float32 in Keras' computation; steps and boundaries are integers.
        if matches!(key.as_str(), "initial_learning_rate" | "decay_rate" | "alpha" | "warmup_target")
            && !value.is_null()
        {
            *value = f32_value(value).unwrap_or(Value::Null);
        }
        if key == "values" {
            if let Some(list) = value.as_array() {
                *value = Value::Array(list.iter().map(|x| f32_value(x).unwrap_or(Value::Null)).collect());
            }
        }
    }
    LearningRateSchedule::from_config(&json!({"class_name": class, "config": config}))
        .map_err(|err| e.at(path, err.to_string()))
}

/// kerust's optimizer as Keras' serialized optimizer.
fn optimizer_to_keras(o: &dyn Optimizer) -> Value {
    let class = OPTIMIZERS.iter().find(|(n, _)| *n == o.name()).map_or(o.name(), |(_, c)| *c);
    let mut config = Map::new();
    config.insert("name".into(), o.name().into());
    match o.learning_rate_schedule() {
        Some(s) => {
            let mut s = s.config();
            s["module"] = "keras.optimizers.schedules".into();
            s["registered_name"] = Value::Null;
            config.insert("learning_rate".into(), s);
        }
        None => {
            config.insert("learning_rate".into(), Value::Null);
        }
    }
    for key in ["weight_decay", "clipnorm", "global_clipnorm", "clipvalue"] {
        config.insert(key.into(), Value::Null);
    }
    config.insert("use_ema".into(), false.into());
    let booleans = ["nesterov", "amsgrad", "centered"];
    for (key, value) in o.config() {
        let v = if booleans.contains(&key.as_str()) { Value::Bool(value != 0.0) } else { json!(value) };
        config.insert(key, v);
    }
    json!({"module": "keras.optimizers", "class_name": class, "config": config, "registered_name": null})
}

/// A Keras loss (`"mse"`, or `{"class_name": "CategoricalCrossentropy", "config": {...}}`).
fn loss_from_keras(v: &Value, path: &str, options: &LoadOptions, e: &KerasError) -> Result<Box<dyn Loss>> {
    let hint = |name: &str| {
        format!(
            "loss {name} is not supported by kerust (it has {}); a custom loss must be registered to load: \
             `LoadOptions::new().custom_loss(\"{name}\", |settings| ...)` with `models::load_model_with`, or load \
             without the compile state with `LoadOptions::new().compile(false)`",
            LOSSES.iter().map(|(_, c)| *c).collect::<Vec<_>>().join(", ")
        )
    };
    let (name, config) = match v {
        Value::String(s) => (s.clone(), Map::new()),
        Value::Object(o) => (
            o.get("registered_name")
                .and_then(Value::as_str)
                .or_else(|| o.get("class_name").and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned(),
            o.get("config").and_then(Value::as_object).cloned().unwrap_or_default(),
        ),
        _ => return Err(e.at(path, format!("expected a loss, found {v}"))),
    };
    let mut settings: Vec<(String, f64)> = Vec::new();
    let known = crate::losses::get(&name).ok();
    let expected: Vec<String> =
        known.as_ref().map(|l| l.config().into_iter().map(|(k, _)| k).collect()).unwrap_or_default();
    for (key, value) in &config {
        let at = format!("{path}.config.{key}");
        match (key.as_str(), value) {
            ("name" | "dtype", _) => {}
            ("reduction", v) if v.is_null() || v == "sum_over_batch_size" => {}
            ("axis", v) if v.is_null() || v == -1 => {}
            (_, Value::Bool(b)) => settings.push((key.clone(), f64::from(u8::from(*b)))),
            (_, v) if v.as_f64().is_some() => {
                settings.push((key.clone(), f32_value(v).and_then(|x| x.as_f64()).unwrap_or(f64::NAN)))
            }
            (_, v) if known.is_some() => {
                return Err(e.at(&at, format!("loss setting {v} is not supported by kerust")))
            }
            _ => {}
        }
    }
    if let Some(custom) = options.loss(&name, &settings) {
        return custom;
    }
    let Some(loss) = known else { return Err(e.at(path, hint(&name))) };
    if config.is_empty() {
        return Ok(loss);
    }
    // Settings kerust's loss has and the file leaves out keep their defaults.
    let defaults = loss.config();
    for (key, value) in defaults {
        if !settings.iter().any(|(k, _)| *k == key) {
            settings.push((key, value));
        }
    }
    settings.retain(|(k, _)| expected.contains(k));
    crate::losses::from_config(loss.name(), &settings).map_err(|err| e.at(path, err.to_string()))
}

fn loss_to_keras(l: &dyn Loss) -> Value {
    let defaults = crate::losses::get(l.name()).map(|d| d.config()).unwrap_or_default();
    let config = l.config();
    let class = LOSSES.iter().find(|(n, _)| *n == l.name()).map(|(_, c)| *c);
    match class {
        Some(class) if config != defaults => {
            let mut c = Map::new();
            c.insert("name".into(), l.name().into());
            c.insert("reduction".into(), "sum_over_batch_size".into());
            for (key, value) in config {
                let v = if key == "from_logits" { Value::Bool(value != 0.0) } else { json!(value) };
                c.insert(key, v);
            }
            json!({"module": "keras.losses", "class_name": class, "config": c, "registered_name": null})
        }
        // Keras' names of the built-in losses are kerust's.
        _ => Value::String(l.name().into()),
    }
}

fn metric_from_keras(v: &Value, path: &str, options: &LoadOptions, e: &KerasError) -> Result<MetricSpec> {
    let name = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("registered_name")
            .and_then(Value::as_str)
            .or_else(|| o.get("class_name").and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned(),
        _ => return Err(e.at(path, format!("expected a metric, found {v}"))),
    };
    if let Some(m) = options.metric(&name) {
        return Ok(MetricSpec::Metric(m));
    }
    crate::metrics::check_name(&name).map_err(|err| {
        e.at(
            path,
            format!(
                "{err}; a custom metric must be registered to load: `LoadOptions::new().custom_metric(\"{name}\", \
                 MyMetric::new)`, or load without the compile state with `LoadOptions::new().compile(false)`"
            ),
        )
    })?;
    Ok(MetricSpec::Name(name))
}

fn metric_list(v: &Value, path: &str, options: &LoadOptions, e: &KerasError) -> Result<Vec<MetricSpec>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, m)| metric_from_keras(m, &format!("{path}[{i}]"), options, e))
            .collect(),
        single => Ok(vec![metric_from_keras(single, path, options, e)?]),
    }
}

/// Compiles `model` as the file's `compile_config` says, and loads the optimizer's variables.
pub(crate) fn restore(
    model: &mut Model,
    cc: &Value,
    file_layers: &[FileLayer],
    root: &Group,
    options: &LoadOptions,
    e: &KerasError,
) -> Result<()> {
    let p = "compile_config";
    let optimizer =
        optimizer_from_keras(cc.get("optimizer").unwrap_or(&Value::Null), &format!("{p}.optimizer"), e)?;
    let outputs: Vec<String> = model.output_names().into_iter().map(str::to_owned).collect();
    let mut compile = Compile::new(optimizer);
    // Per output (by position) a value of a list or a dict keyed by output name; `None` for a single value.
    let per_output = |v: &Value, key: &str| -> Result<Option<Vec<(usize, Value)>>> {
        match v {
            Value::Array(list) if key != "metrics" || list.iter().any(Value::is_array) => {
                if list.len() != outputs.len() {
                    return Err(e.at(
                        &format!("{p}.{key}"),
                        format!("{} entries for {} outputs", list.len(), outputs.len()),
                    ));
                }
                Ok(Some(list.iter().cloned().enumerate().collect()))
            }
            Value::Object(o) if !o.contains_key("class_name") => {
                let mut out = Vec::new();
                for (name, value) in o {
                    let i = outputs.iter().position(|n| n == name).ok_or_else(|| {
                        e.at(
                            &format!("{p}.{key}.{name}"),
                            format!("no output of this name (outputs: {})", outputs.join(", ")),
                        )
                    })?;
                    out.push((i, value.clone()));
                }
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    };
    let loss = cc.get("loss").cloned().unwrap_or(Value::Null);
    match per_output(&loss, "loss")? {
        Some(list) => {
            for (i, l) in list {
                let l = loss_from_keras(&l, &format!("{p}.loss[{i}]"), options, e)?;
                compile = compile.output_loss(i, LossSpec::Loss(l));
            }
        }
        None if loss.is_null() => {
            return Err(e.at(&format!("{p}.loss"), "a compiled model without a loss: kerust needs one"))
        }
        None => {
            compile = compile.loss(LossSpec::Loss(loss_from_keras(&loss, &format!("{p}.loss"), options, e)?))
        }
    }
    let weights = cc.get("loss_weights").cloned().unwrap_or(Value::Null);
    if !weights.is_null() {
        let list = per_output(&weights, "loss_weights")?.unwrap_or_else(|| vec![(0, weights.clone())]);
        for (i, w) in list {
            let w = f32_value(&w)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| e.at(&format!("{p}.loss_weights"), format!("expected a number, found {w}")))?;
            compile = compile.loss_weight(i, w as f32);
        }
    }
    let metrics = cc.get("metrics").cloned().unwrap_or(Value::Null);
    match per_output(&metrics, "metrics")? {
        Some(list) => {
            for (i, m) in list {
                compile =
                    compile.output_metrics(i, metric_list(&m, &format!("{p}.metrics[{i}]"), options, e)?);
            }
        }
        None => compile = compile.metrics(metric_list(&metrics, &format!("{p}.metrics"), options, e)?),
    }
    if let Some(w) =
        cc.get("weighted_metrics").filter(|w| !w.is_null() && w.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(e.at(
            &format!("{p}.weighted_metrics"),
            format!("{w}: weighted metrics are not supported by kerust"),
        ));
    }
    model.compile_with(compile).map_err(|err| e.at(p, err.to_string()))?;
    if let Some(vars) = root.group("optimizer/vars") {
        load_optimizer_vars(model, file_layers, vars, e)?;
    }
    Ok(())
}

/// Keras' slot groups of an optimizer: each group is one `add_optimizer_variables` call, its names interleaved
/// per trainable weight; with each slot's initial value.
fn slot_groups(o: &dyn Optimizer) -> Vec<Vec<(&'static str, f32)>> {
    let config = o.config();
    let setting = |key: &str| config.iter().find(|(k, _)| k == key).map_or(0.0, |&(_, v)| v);
    match o.name() {
        "sgd" if setting("momentum") != 0.0 => vec![vec![("momentum", 0.0)]],
        "sgd" => Vec::new(),
        "adam" | "adamw" => {
            let mut g = vec![vec![("m", 0.0), ("v", 0.0)]];
            if setting("amsgrad") != 0.0 {
                g.push(vec![("v_hat", 0.0)]);
            }
            g
        }
        "rmsprop" => {
            let mut g = vec![vec![("velocity", 0.0)]];
            if setting("momentum") > 0.0 {
                g.push(vec![("momentum", 0.0)]);
            }
            if setting("centered") != 0.0 {
                g.push(vec![("average_gradient", 0.0)]);
            }
            g
        }
        "adagrad" => vec![vec![("accumulator", setting("initial_accumulator_value") as f32)]],
        _ => Vec::new(),
    }
}

/// The model's trainable weights in Keras' order (`model.trainable_variables`).
fn trainable_weights(model: &Model, file_layers: &[FileLayer]) -> Result<Vec<ParamId>> {
    let mut out = Vec::new();
    for fl in file_layers {
        for &id in model.get_layer(&fl.name)?.weights() {
            if model.params.get(id).trainable {
                out.push(id);
            }
        }
    }
    Ok(out)
}

fn load_optimizer_vars(
    model: &mut Model,
    file_layers: &[FileLayer],
    vars: &Group,
    e: &KerasError,
) -> Result<()> {
    let at = "model.weights.h5: optimizer/vars";
    let trainable = trainable_weights(model, file_layers)?;
    let Some(compiled) = model.compiled.as_mut() else { return Ok(()) };
    let optimizer = compiled.optimizer.as_mut();
    let groups = slot_groups(optimizer);
    let has_lr = optimizer.learning_rate_schedule().is_none();
    let base = 1 + usize::from(has_lr);
    let per_weight: usize = groups.iter().map(Vec::len).sum();
    let full = base + per_weight * trainable.len();
    let n = vars.members.len();
    if n != base && n != full {
        return Err(e.at(
            at,
            format!(
                "{n} variables; kerust's {} over {} trainable weights has {base} before its first step or {full} after",
                optimizer.name(),
                trainable.len()
            ),
        ));
    }
    let var = |i: usize| -> Result<&Dataset> {
        vars.dataset(&i.to_string()).ok_or_else(|| e.at(&format!("{at}/{i}"), "missing"))
    };
    let iterations = match &var(0)?.data {
        Data::I32(v) if v.len() == 1 => i64::from(v[0]),
        Data::I64(v) if v.len() == 1 => v[0],
        Data::F32(v) if v.len() == 1 && v[0].fract() == 0.0 => v[0] as i64,
        _ => return Err(e.at(&format!("{at}/0"), "the step count must be one integer")),
    };
    let iterations = u64::try_from(iterations)
        .map_err(|_| e.at(&format!("{at}/0"), format!("a negative step count, {iterations}")))?;
    let learning_rate = if has_lr {
        let t = to_tensor(var(1)?, &format!("{at}/1"), e)?;
        let lr = t.iter().next().copied().filter(|_| t.len() == 1);
        Some(lr.ok_or_else(|| e.at(&format!("{at}/1"), "the learning rate must be one number"))?)
    } else {
        None
    };
    let mut state: Vec<(String, Tensor)> = Vec::new();
    if n == full {
        let mut i = base;
        for group in &groups {
            for &id in &trainable {
                for &(slot, _) in group {
                    let t = to_tensor(var(i)?, &format!("{at}/{i}"), e)?;
                    let p = model.params.get(id);
                    if t.shape() != p.value.shape() {
                        return Err(e.at(
                            &format!("{at}/{i}"),
                            format!(
                                "{slot} of `{}` has shape {:?}, the weight {:?}",
                                p.name,
                                t.shape(),
                                p.value.shape()
                            ),
                        ));
                    }
                    state.push((format!("{slot}/{}", id.index()), t));
                    i += 1;
                }
            }
        }
    }
    let compiled = model.compiled.as_mut().expect("compiled above");
    let optimizer = compiled.optimizer.as_mut();
    optimizer.load_state(iterations, &state).map_err(|err| e.at(at, err.to_string()))?;
    if let Some(lr) = learning_rate {
        optimizer.set_learning_rate(lr);
    }
    Ok(())
}

/// The optimizer's variables as Keras writes them, with its name; `None` for a model not compiled.
pub(crate) fn optimizer_vars(model: &Model, order: &[usize]) -> Result<Option<(String, Vec<Dataset>)>> {
    let Some(compiled) = model.compiled.as_ref() else { return Ok(None) };
    let o = compiled.optimizer.as_ref();
    let file_layers = super::weights::file_layers(model, order);
    let trainable = trainable_weights(model, &file_layers)?;
    let iterations = o.iterations();
    let mut out = vec![match i32::try_from(iterations) {
        Ok(i) => Dataset { shape: Vec::new(), data: Data::I32(vec![i]), attrs: Vec::new() },
        Err(_) => Dataset { shape: Vec::new(), data: Data::I64(vec![iterations as i64]), attrs: Vec::new() },
    }];
    if o.learning_rate_schedule().is_none() {
        out.push(Dataset { shape: Vec::new(), data: Data::F32(vec![o.learning_rate()]), attrs: Vec::new() });
    }
    let state: std::collections::HashMap<String, Tensor> = o.state().into_iter().collect();
    for group in slot_groups(o) {
        for &id in &trainable {
            for &(slot, init) in &group {
                let t = match state.get(&format!("{slot}/{}", id.index())) {
                    Some(t) => dataset(t),
                    None => dataset(&ndarray::ArrayD::from_elem(model.params.value(id).shape(), init)),
                };
                out.push(t);
            }
        }
    }
    Ok(Some((o.name().to_owned(), out)))
}

/// The model's compile state as Keras' `compile_config`; `None` for a model not compiled.
pub(crate) fn to_keras(model: &Model) -> Result<Option<Value>> {
    let Some(compiled) = model.compiled.as_ref() else { return Ok(None) };
    let heads = &compiled.heads;
    let (loss, loss_weights, metrics) = if heads.len() == 1 {
        let h = &heads[0];
        let w = if h.weight == 1.0 { Value::Null } else { json!([h.weight]) };
        (loss_to_keras(h.loss.as_ref()), w, json!(h.metric_names()))
    } else {
        let weights: Vec<f32> = heads.iter().map(|h| h.weight).collect();
        let w = if weights.iter().all(|&w| w == 1.0) { Value::Null } else { json!(weights) };
        (
            Value::Array(heads.iter().map(|h| loss_to_keras(h.loss.as_ref())).collect()),
            w,
            Value::Array(heads.iter().map(|h| json!(h.metric_names())).collect()),
        )
    };
    let optimizer = optimizer_to_keras(compiled.optimizer.as_ref());
    Ok(Some(json!({
        "optimizer": optimizer,
        "loss": loss,
        "loss_weights": loss_weights,
        "metrics": metrics,
        "weighted_metrics": null,
        "run_eagerly": false,
        "steps_per_execution": 1,
        "jit_compile": false,
    })))
}
