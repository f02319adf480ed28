//! Weights in Keras' HDF5 layout: `layers/<path>/vars/<i>` per layer (Keras 3; a recurrent layer's under its
//! `cell/`, a wrapper's under its inner layers' groups), or Keras 2's `layer_names` and `weight_names` attributes.
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

use super::super::Model;
use super::{unique_name, FileLayer, KerasError};
use crate::autodiff::{ParamId, Tensor};
use crate::formats::hdf5::{Attr, Data, Dataset, Group, Node};
use crate::layers::LayerConfig;
use crate::Result;

/// The number of elements of every dataset under `group`: what building a model from the file may allocate.
pub(crate) fn element_count(group: Option<&Group>) -> usize {
    let Some(group) = group else { return 0 };
    let mut total = 0usize;
    let mut stack = vec![group];
    while let Some(g) = stack.pop() {
        for (_, node) in &g.members {
            match node {
                Node::Group(sub) => stack.push(sub),
                Node::Dataset(d) => total = total.saturating_add(d.data.len()),
            }
        }
    }
    total
}

/// A dataset as an `f32` array of its shape (Keras writes float32; float64 is converted).
pub(crate) fn to_tensor(d: &Dataset, path: &str, e: &KerasError) -> Result<Tensor> {
    let values: Vec<f32> = match &d.data {
        Data::F32(v) => v.clone(),
        Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
        other => {
            let kind = match other {
                Data::I64(_) => "int64",
                Data::I32(_) => "int32",
                _ => "uint8",
            };
            return Err(e.at(path, format!("a weight must hold floats, this dataset holds {kind}")));
        }
    };
    ArrayD::from_shape_vec(IxDyn(&d.shape), values)
        .map_err(|err| e.at(path, format!("shape {:?} does not fit its data: {err}", d.shape)))
}

/// The `vars/<i>` datasets of a group, in order `0, 1, ...`; any other member is an error.
fn numbered<'g>(vars: &'g Group, path: &str, e: &KerasError) -> Result<Vec<&'g Dataset>> {
    let mut out: Vec<Option<&Dataset>> = vec![None; vars.members.len()];
    for (name, node) in &vars.members {
        let index = name.parse::<usize>().ok().filter(|&i| i < out.len() && name == &i.to_string());
        match (index, node) {
            (Some(i), Node::Dataset(d)) => out[i] = Some(d),
            _ => return Err(e.at(&format!("{path}/{name}"), "expected datasets named 0, 1, ... only")),
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, d)| d.ok_or_else(|| e.at(&format!("{path}/{i}"), "missing")))
        .collect()
}

/// Checks the file's weights for each of the model's layers (by `FileLayer`) and sets them; the model is
/// unchanged on error.
pub(crate) fn load_layers(
    model: &mut Model,
    file_layers: &[FileLayer],
    root: &Group,
    file: &str,
    e: &KerasError,
) -> Result<()> {
    let mut values: Vec<(ParamId, Tensor)> = Vec::new();
    let mut known = std::collections::HashSet::new();
    for fl in file_layers {
        known.insert(fl.path.trim_start_matches("layers/").to_owned());
        let index = model.layer_index(&fl.name)?;
        for vars in layer_vars(model, index)? {
            let path = format!("{}/{}", fl.path, vars.path);
            let at = format!("{file}: {path}");
            let datasets = match root.group(&path) {
                Some(group) => numbered(group, &at, e)?,
                None => Vec::new(),
            };
            if datasets.len() != vars.ids.len() {
                return Err(e.at(
                    &at,
                    format!(
                        "layer `{}` has {} weights, the file holds {} for it",
                        vars.name,
                        vars.ids.len(),
                        datasets.len()
                    ),
                ));
            }
            for (i, (&id, d)) in vars.ids.iter().zip(datasets).enumerate() {
                let t = to_tensor(d, &format!("{at}/{i}"), e)?;
                let p = model.params.get(id);
                if t.shape() != p.value.shape() {
                    return Err(e.at(
                        &format!("{at}/{i}"),
                        format!(
                            "weight `{}` has shape {:?}, the file's has {:?}",
                            p.name,
                            p.value.shape(),
                            t.shape()
                        ),
                    ));
                }
                values.push((id, t));
            }
        }
    }
    if let Some(layers) = root.group("layers") {
        if let Some((extra, _)) = layers.members.iter().find(|(n, _)| !known.contains(n)) {
            return Err(e.at(
                &format!("{file}: layers/{extra}"),
                "weights of a layer the model does not have (the file and its config disagree)",
            ));
        }
    }
    for (id, t) in values {
        *model.params.value_mut(id) = t.into();
    }
    Ok(())
}

/// One `vars` group of a layer's weights in Keras' layout: its path under the layer's group (`vars`,
/// `cell/vars`, `forward_layer/cell/vars`), the `name` attribute Keras gives it, and the weights it holds.
pub(crate) struct Vars {
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) ids: Vec<ParamId>,
}

/// Where Keras keeps the weights `ids` of a layer (`class`, `name`): a plain layer's in its own `vars`; a
/// recurrent layer's in its cell's (`cell/vars`, as Keras' `RNN` tracks its `cell`), its own `vars` empty; a
/// wrapper's in its inner layers' groups (`layer/` of a TimeDistributed, `forward_layer/` then `backward_layer/`
/// of a Bidirectional), its own `vars` empty. `config` gives a wrapper's config (asked of wrappers only: a
/// custom layer need not describe itself), `input_shape` the per-sample shape it was built for.
fn vars_groups(
    class: &str,
    name: &str,
    ids: &[ParamId],
    config: &dyn Fn() -> Result<LayerConfig>,
    input_shape: &[usize],
) -> Result<Vec<Vars>> {
    let own = |ids: &[ParamId]| Vars { path: "vars".into(), name: name.into(), ids: ids.to_vec() };
    if !matches!(class, "SimpleRNN" | "LSTM" | "GRU" | "TimeDistributed" | "Bidirectional") {
        return Ok(vec![own(ids)]);
    }
    if is_recurrent(class) {
        // Keras names the cell's vars after the cell (`lstm_cell`), whatever the layer's name.
        let cell = Vars {
            path: "cell/vars".into(),
            name: format!("{}_cell", crate::layers::snake_case(class)),
            ids: ids.to_vec(),
        };
        return Ok(vec![cell, own(&[])]);
    }
    let config = config()?;
    let inner = |key: &str| -> Result<LayerConfig> {
        serde_json::from_value(config.config.get(key).cloned().unwrap_or(Value::Null)).map_err(|err| {
            crate::Error::invalid_argument(
                "layer",
                err,
                format!("{class} `{name}`'s `{key}` as a layer config"),
            )
        })
    };
    let mut out = vec![own(&[])];
    let mut nest = |prefix: &str, inner: LayerConfig, ids: &[ParamId], shape: &[usize]| -> Result<()> {
        let class = inner.class_name.clone();
        let name = inner.config.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        for v in vars_groups(&class, &name, ids, &|| Ok(inner.clone()), shape)? {
            out.push(Vars { path: format!("{prefix}/{}", v.path), ..v });
        }
        Ok(())
    };
    if class == "TimeDistributed" {
        // The wrapped layer is built for one step: the shape without the time axis.
        nest("layer", inner("layer")?, ids, input_shape.get(1..).unwrap_or_default())?;
    } else {
        let (forward, backward) = (inner("layer")?, inner("backward_layer")?);
        // The forward layer's weights come first; how many it has, building a copy of it tells.
        let count = weight_count(&forward, input_shape)?.min(ids.len());
        nest("forward_layer", forward, &ids[..count], input_shape)?;
        nest("backward_layer", backward, &ids[count..], input_shape)?;
    }
    Ok(out)
}

/// The number of weights of a layer built from `config` for `input_shape` (built in a scratch store).
fn weight_count(config: &LayerConfig, input_shape: &[usize]) -> Result<usize> {
    use rand::SeedableRng;
    let mut layer = crate::layers::layer_from_config(config)?;
    let mut params = crate::autodiff::ParamStore::new();
    layer.build_many(&[input_shape], &mut params, &mut rand::rngs::StdRng::seed_from_u64(0))?;
    Ok(layer.weights().len())
}

/// The `vars` groups of the model's layer `index` (a layer of the model's `net`).
pub(crate) fn layer_vars(model: &Model, index: usize) -> Result<Vec<Vars>> {
    let net = &model.net;
    let layer = &net.layers[index];
    let class = if layer.is_input() { "InputLayer" } else { layer.class_name() };
    let shape = net
        .nodes_of(index)
        .next()
        .and_then(|n| n.inputs.first())
        .map(|&t| net.tensors[t].shape.clone())
        .unwrap_or_default();
    vars_groups(class, layer.name().unwrap_or_default(), layer.weights(), &|| layer.config(), &shape)
}

fn is_recurrent(class: &str) -> bool {
    matches!(class, "SimpleRNN" | "LSTM" | "GRU")
}

/// Puts `vars` at `path` (`forward_layer/cell/vars`) under `group`, making the groups between.
fn insert(group: &mut Group, path: &str, vars: Group) {
    let Some((head, rest)) = path.split_once('/') else {
        group.members.push((path.into(), Node::Group(vars)));
        return;
    };
    let at = match group.members.iter().position(|(n, _)| n == head) {
        Some(at) => at,
        None => {
            group.members.push((head.into(), Node::Group(Group::default())));
            group.members.len() - 1
        }
    };
    if let Node::Group(sub) = &mut group.members[at].1 {
        insert(sub, rest, vars);
    }
}

/// A float32 dataset of a tensor.
pub(crate) fn dataset(t: &Tensor) -> Dataset {
    Dataset { shape: t.shape().to_vec(), data: Data::F32(t.iter().copied().collect()), attrs: Vec::new() }
}

/// `vars` with the datasets `0, 1, ...` and a `name` attribute, as Keras' `H5IOStore.make` writes it.
pub(crate) fn vars_group(name: &str, datasets: Vec<Dataset>) -> Group {
    Group {
        attrs: vec![("name".into(), Attr::Str(name.into()))],
        members: datasets.into_iter().enumerate().map(|(i, d)| (i.to_string(), Node::Dataset(d))).collect(),
    }
}

/// The layers of `model` in Keras' `order`, with their weight paths (`layers/dense_1`).
pub(crate) fn file_layers(model: &Model, order: &[usize]) -> Vec<FileLayer> {
    let mut used = std::collections::HashMap::new();
    order
        .iter()
        .map(|&i| {
            let layer = &model.net.layers[i];
            let class = if layer.is_input() { "InputLayer" } else { layer.class_name() };
            let name = layer.name().unwrap_or_default().to_owned();
            FileLayer {
                path: format!("layers/{}", unique_name(&crate::layers::snake_case(class), &mut used)),
                name,
            }
        })
        .collect()
}

/// The HDF5 tree of `model.weights.h5`: the layers' weights, the optimizer's variables, and the model's own
/// (empty) `vars`.
pub(crate) fn tree(model: &Model, order: &[usize]) -> Result<Group> {
    let mut layers = Group::default();
    for (fl, &i) in file_layers(model, order).iter().zip(order) {
        let mut group = Group::default();
        for vars in layer_vars(model, i)? {
            let datasets = vars.ids.iter().map(|&id| dataset(&model.params.value(id).host())).collect();
            insert(&mut group, &vars.path, vars_group(&vars.name, datasets));
        }
        layers.members.push((fl.path.trim_start_matches("layers/").to_owned(), Node::Group(group)));
    }
    let mut root = Group::default();
    root.members.push(("layers".into(), Node::Group(layers)));
    if let Some((name, vars)) = super::compile::optimizer_vars(model, order)? {
        let group =
            Group { attrs: Vec::new(), members: vec![("vars".into(), Node::Group(vars_group(&name, vars)))] };
        root.members.push(("optimizer".into(), Node::Group(group)));
    }
    root.members.push(("vars".into(), Node::Group(vars_group(&model.name, Vec::new()))));
    Ok(root)
}

/// Loads Keras weights (`.weights.h5` of Keras 3, or a Keras 2 `.h5`) into a built model.
pub(crate) fn load_h5_weights(model: &mut Model, root: &Group, e: &KerasError) -> Result<()> {
    if root.group("layers").is_some() {
        let order = super::order::keras_layer_order(model);
        let fls = file_layers(model, &order);
        return load_layers(model, &fls, root, "weights", e);
    }
    let root = root.group("model_weights").unwrap_or(root);
    if root.attr("layer_names").is_some() {
        return load_legacy(model, root, e);
    }
    Err(e.at(
        "",
        "neither Keras 3 weights (a `layers` group) nor Keras 2 weights (a `layer_names` attribute) are in this file",
    ))
}

fn strings(attr: Option<&Attr>) -> Vec<String> {
    match attr {
        Some(Attr::Strs(v)) => v.clone(),
        Some(Attr::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Keras 2's layout (`keras.applications` files): `layer_names` lists the layers' groups, each group's
/// `weight_names` its datasets in order. As Keras' `load_weights`, the layers with weights are matched in order.
fn load_legacy(model: &mut Model, root: &Group, e: &KerasError) -> Result<()> {
    let mut file: Vec<(String, Vec<Tensor>)> = Vec::new();
    for name in strings(root.attr("layer_names")) {
        let group =
            root.group(&name).ok_or_else(|| e.at(&name, "listed in layer_names, but no such group"))?;
        let weight_names = strings(group.attr("weight_names"));
        if weight_names.is_empty() {
            continue;
        }
        let mut tensors = Vec::with_capacity(weight_names.len());
        for w in &weight_names {
            let at = format!("{name}/{w}");
            let d =
                group.dataset(w).ok_or_else(|| e.at(&at, "listed in weight_names, but no such dataset"))?;
            tensors.push(to_tensor(d, &at, e)?);
        }
        file.push((name, tensors));
    }
    let order = super::order::keras_layer_order(model);
    let layers: Vec<usize> =
        order.into_iter().filter(|&i| !model.net.layers[i].weights().is_empty()).collect();
    if layers.len() != file.len() {
        return Err(e.at(
            "layer_names",
            format!("the model has {} layers with weights, the file {}", layers.len(), file.len()),
        ));
    }
    let mut values = Vec::new();
    for (&i, (name, tensors)) in layers.iter().zip(&file) {
        let layer = &model.net.layers[i];
        let ids = layer.weights();
        let lname = layer.name().unwrap_or_default();
        if ids.len() != tensors.len() {
            return Err(e.at(
                name,
                format!(
                    "layer `{lname}` has {} weights, the file's layer `{name}` {}",
                    ids.len(),
                    tensors.len()
                ),
            ));
        }
        for (&id, t) in ids.iter().zip(tensors) {
            let p = model.params.get(id);
            if p.value.shape() != t.shape() {
                return Err(e.at(
                    name,
                    format!(
                        "weight `{}` has shape {:?}, the file's has {:?}",
                        p.name,
                        p.value.shape(),
                        t.shape()
                    ),
                ));
            }
            values.push((id, t.clone()));
        }
    }
    for (id, t) in values {
        *model.params.value_mut(id) = t.into();
    }
    Ok(())
}
