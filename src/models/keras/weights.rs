//! Weights in Keras' HDF5 layout: `layers/<path>/vars/<i>` per layer (Keras 3), or Keras 2's `layer_names` and
//! `weight_names` attributes.
use ndarray::{ArrayD, IxDyn};

use super::super::Model;
use super::{unique_name, FileLayer, KerasError};
use crate::autodiff::{ParamId, Tensor};
use crate::formats::hdf5::{Attr, Data, Dataset, Group, Node};
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
        let layer = model.get_layer(&fl.name)?;
        let ids = layer.weights().to_vec();
        let vars = format!("{}/{}", fl.path, vars_path(layer.class_name()));
        let at = format!("{file}: {vars}");
        let datasets = match root.group(&vars) {
            Some(vars) => numbered(vars, &at, e)?,
            None => Vec::new(),
        };
        if datasets.len() != ids.len() {
            return Err(e.at(
                &at,
                format!(
                    "layer `{}` has {} weights, the file holds {} for it",
                    fl.name,
                    ids.len(),
                    datasets.len()
                ),
            ));
        }
        for (i, (&id, d)) in ids.iter().zip(datasets).enumerate() {
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

/// Where a layer's weights are under its group: a recurrent layer's belong to its cell (`layers/lstm/cell/vars`,
/// as Keras' `RNN` tracks its `cell`), the layer's own `vars` staying empty.
fn vars_path(class: &str) -> &'static str {
    if is_recurrent(class) {
        "cell/vars"
    } else {
        "vars"
    }
}

fn is_recurrent(class: &str) -> bool {
    matches!(class, "SimpleRNN" | "LSTM" | "GRU")
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
        let datasets =
            model.net.layers[i].weights().iter().map(|&id| dataset(&model.params.value(id).host())).collect();
        let class = model.net.layers[i].class_name();
        let members = if is_recurrent(class) {
            // Keras names the cell's vars after the cell (`lstm_cell`), whatever the layer's name.
            let cell_name = format!("{}_cell", crate::layers::snake_case(class));
            let cell = Group {
                attrs: Vec::new(),
                members: vec![("vars".into(), Node::Group(vars_group(&cell_name, datasets)))],
            };
            vec![
                ("cell".into(), Node::Group(cell)),
                ("vars".into(), Node::Group(vars_group(&fl.name, Vec::new()))),
            ]
        } else {
            vec![("vars".into(), Node::Group(vars_group(&fl.name, datasets)))]
        };
        let group = Group { attrs: Vec::new(), members };
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
