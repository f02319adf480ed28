//! The structure every model runs: layers, the symbolic tensors between them, and the nodes (one layer called
//! on some tensors) in an order where each node's inputs come first. Keras' `Function`/`Functional` graph,
//! without weights or training: the model owns those.
use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;

use super::shape_str;
use crate::autodiff::{ParamStore, Var};
use crate::layers::{CallContext, Layer};
use crate::{Error, Result};

/// A tensor's index in [`Net::tensors`].
pub(crate) type TensorId = usize;

/// A symbolic tensor: its per-sample shape and what produces it.
#[derive(Clone, Debug)]
pub(crate) struct TensorInfo {
    pub(crate) shape: Vec<usize>,
    pub(crate) producer: Producer,
}

/// What produces a tensor: a model input (its `Input` layer in [`Net::layers`], none for a Sequential) or a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Producer {
    Input { layer: Option<usize> },
    Node(usize),
}

/// One call of a layer on some tensors, and the tensors it makes: one, or several for a layer of several outputs
/// (Keras' `tensor_index` is the position in `outputs`). A node's outputs are consecutive tensors.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) layer: usize,
    pub(crate) inputs: Vec<TensorId>,
    pub(crate) outputs: Vec<TensorId>,
}

/// Layers, tensors and nodes. Nodes are kept in creation order, which is topological: a node can only name
/// tensors that exist when it is made.
#[derive(Default)]
pub(crate) struct Net {
    /// A Sequential's stack (no `Input`), or every layer of a graph (its `Input`s included), in creation order.
    pub(crate) layers: Vec<Box<dyn Layer>>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) inputs: Vec<TensorId>,
    pub(crate) outputs: Vec<TensorId>,
    /// The indexes that keep building and loading linear in the number of layers and nodes, kept by
    /// [`Net::add_layer`], [`Net::pop_layer`], [`Net::apply`], [`Net::pop_node`] and [`Net::from_parts`]:
    /// each layer's nodes in call order (positions in `nodes`),
    layer_nodes: Vec<Vec<usize>>,
    /// the names the layers have,
    names: HashSet<String>,
    /// and, by class name, the first `_<n>` suffix that may be free for a layer named after its class.
    next_suffix: HashMap<String, usize>,
}

impl Net {
    /// The first layer that sums across the ranks of a distributed step in its training pass (SyncBatchNorm,
    /// [`Layer::uses_replicas`]), if any.
    pub(crate) fn synchronizing_layer(&self) -> Option<&dyn Layer> {
        self.layers.iter().map(|l| &**l).find(|l| l.uses_replicas())
    }

    /// Refuses batches of `batch` samples whose layer outputs this machine cannot hold. A step keeps every
    /// layer's output of its batch (and in `training` a gradient of each) until it ends, and a model file
    /// chooses their sizes: a Conv2D of a million 1x1 filters is a few MB of weights and terabytes of output
    /// per image. Checked before the first step, so that such a model is an error naming its largest output,
    /// not an aborted process.
    pub(crate) fn check_batch_memory(&self, batch: usize, training: bool, context: &str) -> Result<()> {
        let copies: usize = if training { 2 } else { 1 };
        let mut total = 0usize;
        let mut largest: Option<(usize, &Node)> = None;
        for node in &self.nodes {
            let bytes = node
                .outputs
                .iter()
                .map(|&t| {
                    self.tensors[t]
                        .shape
                        .iter()
                        .try_fold(batch, |n, &d| n.checked_mul(d))
                        .and_then(|n| n.checked_mul(std::mem::size_of::<f32>() * copies))
                        .unwrap_or(usize::MAX)
                })
                .fold(0usize, usize::saturating_add);
            total = total.saturating_add(bytes);
            if largest.is_none_or(|(b, _)| bytes > b) {
                largest = Some((bytes, node));
            }
        }
        let limit = crate::memory::allocatable_bytes();
        let Some((_, node)) = largest.filter(|_| total > limit) else { return Ok(()) };
        let layer = &self.layers[node.layer];
        let mut shape = vec![batch];
        shape.extend(&self.tensors[node.outputs[0]].shape);
        Err(Error::Allocation {
            what: format!(
                "{context}: the layer outputs of a batch of {batch} (the largest: layer `{}` ({}))",
                layer.name().unwrap_or("?"),
                layer.class_name()
            ),
            shape: format!("{shape:?}"),
            reason: format!(
                "{}the batch's outputs take more than the {limit} bytes this machine can allocate",
                if total == usize::MAX { String::new() } else { format!("{total} bytes: ") }
            ),
        })
    }

    /// A net of these parts, with its indexes.
    pub(crate) fn from_parts(
        layers: Vec<Box<dyn Layer>>,
        tensors: Vec<TensorInfo>,
        nodes: Vec<Node>,
        inputs: Vec<TensorId>,
        outputs: Vec<TensorId>,
    ) -> Net {
        let mut layer_nodes = vec![Vec::new(); layers.len()];
        for (n, node) in nodes.iter().enumerate() {
            layer_nodes[node.layer].push(n);
        }
        let names = layers.iter().filter_map(|l| l.name().map(str::to_owned)).collect();
        Net { layers, tensors, nodes, inputs, outputs, layer_nodes, names, next_suffix: HashMap::new() }
    }

    /// Names `layer` as Keras does (`dense`, `dense_1`, ... after its class) unless it has a name, and adds it
    /// last; returns its position. A name another layer has is an error, as weights are saved under
    /// `<layer>/<weight>`; then nothing changed.
    pub(crate) fn add_layer(&mut self, mut layer: Box<dyn Layer>) -> Result<usize> {
        match layer.name() {
            Some(name) if self.names.contains(name) => {
                return Err(crate::Error::invalid_argument(
                    "name",
                    name,
                    "all layers of a model need unique names",
                ))
            }
            Some(_) => {}
            None => {
                let base = crate::layers::snake_case(layer.class_name());
                let start = self.next_suffix.get(&base).copied().unwrap_or(0);
                let numbered = |i: usize| if i == 0 { base.clone() } else { format!("{base}_{i}") };
                let (i, name) = (start..)
                    .map(|i| (i, numbered(i)))
                    .find(|(_, n)| !self.names.contains(n))
                    .unwrap_or((start, base.clone()));
                self.next_suffix.insert(base, i + 1);
                layer.set_name(name);
            }
        }
        self.names.extend(layer.name().map(str::to_owned));
        self.layers.push(layer);
        Ok(self.layers.len() - 1)
    }

    /// Removes the last layer (its nodes must have been removed first).
    pub(crate) fn pop_layer(&mut self) -> Option<Box<dyn Layer>> {
        let layer = self.layers.pop()?;
        if let Some(name) = layer.name() {
            self.names.remove(name);
        }
        self.layer_nodes.truncate(self.layers.len());
        // A freed name may be given again, as Keras would.
        self.next_suffix.clear();
        Some(layer)
    }

    /// A net of these layers alone, without tensors or nodes (an unbuilt Sequential).
    pub(crate) fn unbuilt(layers: Vec<Box<dyn Layer>>) -> Net {
        Net::from_parts(layers, Vec::new(), Vec::new(), Vec::new(), Vec::new())
    }

    /// Adds a model input of this per-sample shape, produced by `layer` (an `Input` in `layers`) if given.
    pub(crate) fn add_input(&mut self, shape: Vec<usize>, layer: Option<usize>) -> TensorId {
        self.tensors.push(TensorInfo { shape, producer: Producer::Input { layer } });
        self.tensors.len() - 1
    }

    /// The nodes of `layer`, in call order (Keras' node index is the position here).
    pub(crate) fn nodes_of(&self, layer: usize) -> impl Iterator<Item = &Node> {
        self.layer_nodes.get(layer).into_iter().flatten().map(|&n| &self.nodes[n])
    }

    /// Calls `layers[layer]` on `inputs`: builds it on its first call (its weights go into `params`), or checks
    /// that a shared layer gets the shapes it was built for. Returns the new tensors: one per output of the
    /// layer ([`Layer::extra_output_shapes`]). On error nothing changed.
    pub(crate) fn apply(
        &mut self,
        layer: usize,
        inputs: &[TensorId],
        params: &mut ParamStore,
        rng: &mut StdRng,
    ) -> Result<Vec<TensorId>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|&t| self.tensors[t].shape.as_slice()).collect();
        let first = self.nodes_of(layer).next().map(|n| (n.inputs.clone(), n.outputs.clone()));
        let output_shapes = match first {
            None => {
                let (params_before, rng_before) = (params.len(), rng.clone());
                let built = self.layers[layer].build_many(&shapes, params, rng).and_then(|shape| {
                    check_weight_names(&*self.layers[layer], params, params_before)?;
                    Ok(shape)
                });
                if built.is_err() {
                    params.truncate(params_before);
                    *rng = rng_before;
                }
                let mut shapes = vec![built?];
                shapes.extend(self.layers[layer].extra_output_shapes());
                shapes
            }
            Some((first_inputs, first_outputs)) => {
                let built_for: Vec<&[usize]> =
                    first_inputs.iter().map(|&t| self.tensors[t].shape.as_slice()).collect();
                if built_for != shapes {
                    return Err(crate::Error::shape(
                        "a shared layer",
                        format!("the shapes it was built for, {}", shapes_str(&built_for)),
                        shapes_str(&shapes),
                    ));
                }
                first_outputs.iter().map(|&t| self.tensors[t].shape.clone()).collect()
            }
        };
        let outputs: Vec<TensorId> = (self.tensors.len()..).take(output_shapes.len()).collect();
        let producer = Producer::Node(self.nodes.len());
        self.tensors.extend(output_shapes.into_iter().map(|shape| TensorInfo { shape, producer }));
        if self.layer_nodes.len() <= layer {
            self.layer_nodes.resize_with(layer + 1, Vec::new);
        }
        self.layer_nodes[layer].push(self.nodes.len());
        self.nodes.push(Node { layer, inputs: inputs.to_vec(), outputs: outputs.clone() });
        Ok(outputs)
    }

    /// Removes the last node and its tensors.
    pub(crate) fn pop_node(&mut self) -> Option<Node> {
        let node = self.nodes.pop()?;
        if let Some(nodes) = self.layer_nodes.get_mut(node.layer) {
            nodes.pop();
        }
        self.tensors.truncate(node.outputs[0]);
        Some(node)
    }

    /// The forward pass: one batch per model input in, one per model output out.
    ///
    /// Each tensor carries a mask beside its value (Keras' `_keras_mask`): model inputs carry none, and each
    /// node's layer is called with its inputs' masks ([`Layer::call_outputs`]) and gives its outputs'
    /// ([`Layer::compute_output_mask`]).
    ///
    /// # Errors
    /// A layer whose output is not of the shape its `build` returned (a custom layer's `call` that disagrees
    /// with its `build`), or a layer that reported an error through [`CallContext::fail`] (an embedding index
    /// out of range): reported here, naming that layer, before the next layer trips over it.
    pub(crate) fn forward<'t>(&self, inputs: &[Var<'t>], ctx: &mut CallContext<'_>) -> Result<Vec<Var<'t>>> {
        let mut values: Vec<Option<Var<'t>>> = vec![None; self.tensors.len()];
        let mut masks: Vec<Option<Var<'t>>> = vec![None; self.tensors.len()];
        for (&t, &x) in self.inputs.iter().zip(inputs) {
            values[t] = Some(x);
        }
        let batch = inputs.first().map(|x| x.with_value(|v| v.len_of(ndarray::Axis(0))));
        let (mut args, mut arg_masks) = (Vec::new(), Vec::new());
        for node in &self.nodes {
            args.clear();
            args.extend(node.inputs.iter().map(|&t| values[t].expect("nodes are in topological order")));
            arg_masks.clear();
            arg_masks.extend(node.inputs.iter().map(|&t| masks[t]));
            let layer = &self.layers[node.layer];
            let ys = layer.call_outputs(&args, &arg_masks, ctx);
            if let Some(source) = ctx.take_error() {
                let shapes: Vec<Vec<usize>> = args.iter().map(Var::shape).collect();
                return Err(Error::LayerCall {
                    layer: layer.name().unwrap_or("?").to_owned(),
                    class: layer.class_name(),
                    inputs: shapes
                        .iter()
                        .map(|s| crate::shapes::shape_of_dims(s))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source: Box::new(source),
                });
            }
            // A shape compare per output per batch, no allocation unless it fails.
            let fits = |y: &Var<'t>, t: TensorId| {
                let declared = &self.tensors[t].shape;
                y.with_value(|v| {
                    v.shape()
                        .split_first()
                        .is_some_and(|(&b, rest)| Some(b) == batch && rest == declared.as_slice())
                })
            };
            let wrong = if ys.len() != node.outputs.len() {
                Some((0, format!("{} outputs for the {} its build declared", ys.len(), node.outputs.len())))
            } else {
                ys.iter()
                    .zip(&node.outputs)
                    .position(|(y, &t)| !fits(y, t))
                    .map(|k| (k, crate::shapes::shape_of_dims(&ys[k].shape())))
            };
            if let Some((k, got)) = wrong {
                let declared = &self.tensors[node.outputs[k]].shape;
                return Err(crate::Error::shape(
                    format!(
                        "the output of layer `{}` ({}): its `call` returned another shape than its `build` \
                         declared",
                        layer.name().unwrap_or("?"),
                        layer.class_name()
                    ),
                    format!("{} for a batch of {}", shape_str(declared), batch.unwrap_or(0)),
                    got,
                ));
            }
            // Each output's own mask: an RNN's states carry none, as in Keras.
            for (k, (&t, y)) in node.outputs.iter().zip(ys).enumerate() {
                values[t] = Some(y);
                masks[t] = layer.compute_output_mask(k, &args, &arg_masks);
            }
        }
        Ok(self.outputs.iter().map(|&t| values[t].expect("every output is computed")).collect())
    }

    /// Hands each model input's data to the layers that read it directly ([`Layer::check_input`]), before any
    /// step runs.
    ///
    /// # Errors
    /// What a layer reports, naming it.
    pub(crate) fn check_inputs(&self, x: &[ndarray::ArrayViewD<'_, f32>]) -> Result<()> {
        for node in &self.nodes {
            for t in &node.inputs {
                let Some(k) = self.inputs.iter().position(|i| i == t) else { continue };
                let Some(data) = x.get(k) else { continue };
                let layer = &self.layers[node.layer];
                layer.check_input(data.view()).map_err(|source| Error::LayerCall {
                    layer: layer.name().unwrap_or("?").to_owned(),
                    class: layer.class_name(),
                    inputs: crate::shapes::shape_of_dims(data.shape()),
                    source: Box::new(source),
                })?;
            }
        }
        Ok(())
    }

    /// The layer that produces tensor `t` (a model input's `Input`, or a node's layer).
    pub(crate) fn producer_layer(&self, t: TensorId) -> Option<usize> {
        match self.tensors[t].producer {
            Producer::Input { layer } => layer,
            Producer::Node(n) => Some(self.nodes[n].layer),
        }
    }

    /// The name of the layer producing tensor `t` (Keras names inputs and outputs after their layers).
    pub(crate) fn tensor_name(&self, t: TensorId) -> &str {
        self.producer_layer(t).and_then(|l| self.layers[l].name()).unwrap_or("input")
    }

    /// Keras' `tensor_name[node_index][tensor_index]` reference to tensor `t`, as the summary and the saved
    /// config write it.
    pub(crate) fn tensor_ref(&self, t: TensorId) -> (String, usize, usize) {
        match self.tensors[t].producer {
            Producer::Input { .. } => (self.tensor_name(t).to_owned(), 0, 0),
            Producer::Node(n) => {
                let node = &self.nodes[n];
                let index =
                    self.layer_nodes.get(node.layer).map_or(0, |nodes| nodes.partition_point(|&m| m < n));
                let tensor = node.outputs.iter().position(|&o| o == t).unwrap_or(0);
                (self.tensor_name(t).to_owned(), index, tensor)
            }
        }
    }
}

/// Weights are saved and loaded by name: a layer's new weights (from `first` on) must not take a name another
/// weight has. Built-in layers name theirs `<layer>/<weight>`; a custom layer that names a weight `"w"` works
/// alone and collides as soon as a second one is built, which is reported here rather than at `save`.
fn check_weight_names(layer: &dyn Layer, params: &ParamStore, first: usize) -> Result<()> {
    let names: Vec<&str> = params.iter().map(|(_, p)| p.name.as_str()).collect();
    for (i, name) in names.iter().enumerate().skip(first) {
        if names[..i].contains(name) {
            let layer_name = layer.name().unwrap_or("?");
            let weight = name.rsplit('/').next().unwrap_or(name);
            return Err(crate::Error::invalid_argument(
                "weight name",
                name,
                format!(
                    "layer `{layer_name}` ({}) creates a weight of a name another weight of the model has; \
                     weights are saved by name, so give each layer's weights names of their own: prefix them \
                     with the layer's name in `build`, `add_weight(params, format!(\"{{}}/{weight}\", \
                     self.name().unwrap_or(\"{}\")), ...)` (here `{layer_name}/{weight}`), as the built-in \
                     layers do",
                    layer.class_name(),
                    crate::layers::snake_case(layer.class_name())
                ),
            ));
        }
    }
    Ok(())
}

/// `(None, 64), (None, 32)`.
pub(crate) fn shapes_str(shapes: &[&[usize]]) -> String {
    shapes.iter().map(|s| shape_str(s)).collect::<Vec<_>>().join(", ")
}
