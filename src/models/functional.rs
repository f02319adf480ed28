//! Keras' functional API: inputs, layers called on symbolic tensors, then [`Model::new`] over the graph.
//!
//! The [`Graph`] owns the layers and hands out copyable handles ([`SymbolicTensor`], [`LayerRef`]), so a layer
//! called twice is one set of weights (a shared layer) without shared ownership, and a cycle cannot be written:
//! a layer can only be called on tensors that already exist.
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::graph::{shapes_str, Net, Node, Producer, TensorId, TensorInfo};
use super::{Kind, Model};
use crate::autodiff::{ParamId, ParamStore};
use crate::layers::{Input, Layer};
use crate::{Error, Result};

/// A tensor of a [`Graph`]: what an input or a layer call returns, and what layers are called on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SymbolicTensor {
    graph: u64,
    id: TensorId,
}

/// A layer owned by a [`Graph`], to call more than once (a shared layer: one set of weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerRef {
    graph: u64,
    index: usize,
}

/// A model under construction with Keras' functional API.
///
/// ```
/// use kerust::layers::{Add, Dense, Input};
/// use kerust::models::{Graph, Model};
///
/// let mut g = Graph::new();
/// let x = g.input(Input::new([16]))?;
/// let h = g.apply(Dense::new(16).activation("relu"), x)?;
/// let shared = g.layer(Dense::new(16))?; // one set of weights, called twice
/// let a = g.apply(shared, h)?;
/// let b = g.apply(shared, a)?;
/// let y = g.apply(Add::new(), [h, b])?; // a residual connection
/// assert_eq!(g.shape(y)?, &[16]);
/// let model = Model::new(g, x, y)?;
/// assert_eq!(model.count_params(), 2 * (16 * 16 + 16));
/// # Ok::<(), kerust::Error>(())
/// ```
pub struct Graph {
    id: u64,
    net: Net,
    params: ParamStore,
    rng: StdRng,
    seed: u64,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

/// Tells graphs apart, so a tensor of one cannot be used in another.
static NEXT_GRAPH: AtomicU64 = AtomicU64::new(0);

impl Graph {
    /// An empty graph; its layers' weights are drawn from the seed [`crate::utils::set_random_seed`] set, if
    /// it was called (as for [`super::Sequential::new`]).
    pub fn new() -> Self {
        Self::with_seed(crate::random::model_seed())
    }

    /// An empty graph whose layers' weights are drawn from `seed`; the model keeps it as its
    /// [`Model::seed`].
    pub fn with_seed(seed: u64) -> Self {
        Graph {
            id: NEXT_GRAPH.fetch_add(1, Ordering::Relaxed),
            net: Net::default(),
            params: ParamStore::new(),
            rng: StdRng::seed_from_u64(seed),
            seed,
        }
    }

    /// A model input (Keras' `keras.Input(shape, name=..)`): named `input_layer`, `input_layer_1`, ... unless
    /// the `Input` has a name.
    ///
    /// # Errors
    /// A shape with no axis or an axis of 0; a name another layer of the graph has.
    pub fn input(&mut self, input: Input) -> Result<SymbolicTensor> {
        self.input_boxed(Box::new(input))
    }

    /// [`Graph::input`] for an `Input` loaded from a file.
    pub(crate) fn input_boxed(&mut self, input: Box<dyn Layer>) -> Result<SymbolicTensor> {
        debug_assert!(input.is_input());
        let layer = self.layer_boxed(input)?;
        let shape = self.net.layers[layer.index].declared_input_shape().unwrap_or_default().to_vec();
        if let Err(e) = self.net.layers[layer.index].build_many(&[&shape], &mut self.params, &mut self.rng) {
            self.net.pop_layer();
            return Err(e);
        }
        let id = self.net.add_input(shape, Some(layer.index));
        Ok(self.tensor(id))
    }

    /// Bounds the weights the graph's layers may create (see [`ParamStore::weight_limit`]).
    pub(crate) fn set_weight_limit(&mut self, limit: Option<usize>) {
        self.params.set_weight_limit(limit);
    }

    /// Adds a layer to the graph, to call later (one or more times) with [`Graph::apply`]. It is named now
    /// (`dense`, `dense_1`, ... unless it has a name) and built at its first call.
    ///
    /// # Errors
    /// A name another layer of the graph has.
    pub fn layer(&mut self, layer: impl Layer + 'static) -> Result<LayerRef> {
        self.layer_boxed(Box::new(layer))
    }

    /// [`Graph::layer`] for a boxed layer.
    ///
    /// # Errors
    /// As [`Graph::layer`].
    pub fn layer_boxed(&mut self, layer: Box<dyn Layer>) -> Result<LayerRef> {
        let index = self.net.add_layer(layer)?;
        Ok(LayerRef { graph: self.id, index })
    }

    /// Calls a layer on tensors (Keras' `layer(x)` or `layer([a, b])`): a new layer, or a [`LayerRef`] to call
    /// a layer again. The layer is built at its first call, which infers the output's shape; a shared layer
    /// must get the shapes of its first call again.
    ///
    /// # Errors
    /// [`Error::LayerCall`] naming the layer and the shapes it got: tensors it cannot take (their number or
    /// shapes); a tensor or layer of another graph; a new layer's name taken; a layer of several outputs (take
    /// them with [`Graph::apply_outputs`]). On error the graph is unchanged.
    pub fn apply(&mut self, layer: impl IntoLayer, inputs: impl IntoTensors) -> Result<SymbolicTensor> {
        let (layers_before, nodes_before) = (self.net.layers.len(), self.net.nodes.len());
        let (params_before, rng_before) = (self.params.len(), self.rng.clone());
        let mut outputs = self.apply_outputs(layer, inputs)?;
        if outputs.len() == 1 {
            return Ok(outputs.remove(0));
        }
        let node = self.net.nodes.last().expect("the call just made");
        let the_layer = &self.net.layers[node.layer];
        let error = Error::LayerCall {
            layer: the_layer.name().unwrap_or("?").to_owned(),
            class: the_layer.class_name(),
            inputs: shapes_str(&node.inputs.iter().map(|&t| self.net.tensors[t].shape.as_slice()).collect::<Vec<_>>()),
            source: Box::new(Error::invalid_argument(
                "outputs",
                outputs.len(),
                "one output for Graph::apply: this layer has several (an RNN with return_state gives its output \
                 then its states); take them all with Graph::apply_outputs",
            )),
        };
        // Undo the call: the node, and the layer and its weights if it was new.
        while self.net.nodes.len() > nodes_before {
            self.net.pop_node();
        }
        while self.net.layers.len() > layers_before {
            self.net.pop_layer();
        }
        self.params.truncate(params_before);
        self.rng = rng_before;
        Err(error)
    }

    /// Calls a layer on tensors as [`Graph::apply`] does, and returns every output of the call: one for most
    /// layers; an RNN's output then its final states with `return_state` (Keras' `out, h, c = LSTM(8,
    /// return_state=True)(x)`).
    ///
    /// ```
    /// use kerust::layers::{Concatenate, Dense, Input, LSTM};
    /// use kerust::models::{Graph, Model};
    ///
    /// let mut g = Graph::new();
    /// let x = g.input(Input::new([5, 3]))?;
    /// let [out, h, c] = g.apply_outputs(LSTM::new(4).return_state(true), x)?[..] else { unreachable!() };
    /// assert_eq!((g.shape(out)?, g.shape(h)?, g.shape(c)?), (&[4][..], &[4][..], &[4][..]));
    /// let joined = g.apply(Concatenate::new(-1), [h, c])?;
    /// let y = g.apply(Dense::new(1), joined)?;
    /// let model = Model::new(g, x, y)?;
    /// assert_eq!(model.output_shape(), Some(&[1][..]));
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Graph::apply`], a layer of several outputs excepted. On error the graph is unchanged.
    pub fn apply_outputs(
        &mut self,
        layer: impl IntoLayer,
        inputs: impl IntoTensors,
    ) -> Result<Vec<SymbolicTensor>> {
        let layers_before = self.net.layers.len();
        let layer = layer.into_layer(self)?;
        let inputs = inputs.into_tensors();
        let result = self.apply_checked(layer, &inputs);
        if result.is_err() {
            while self.net.layers.len() > layers_before {
                self.net.pop_layer();
            }
        }
        result
    }

    fn apply_checked(&mut self, layer: LayerRef, inputs: &[SymbolicTensor]) -> Result<Vec<SymbolicTensor>> {
        if layer.graph != self.id || layer.index >= self.net.layers.len() {
            return Err(Error::Graph("a layer of another Graph was called".into()));
        }
        let the_layer = &self.net.layers[layer.index];
        let describe = |net: &Net, shapes: String, source: Error| Error::LayerCall {
            layer: net.layers[layer.index].name().unwrap_or("?").to_owned(),
            class: net.layers[layer.index].class_name(),
            inputs: shapes,
            source: Box::new(source),
        };
        if the_layer.is_input() {
            let e = Error::invalid_argument("layer", "Input", "create inputs with Graph::input");
            return Err(describe(&self.net, String::new(), e));
        }
        if let Some(t) = inputs.iter().find(|t| !self.owns(t)) {
            let e = Error::Graph(format!("tensor {t:?} belongs to another Graph"));
            return Err(describe(&self.net, "a tensor of another graph".into(), e));
        }
        if inputs.is_empty() {
            let e = Error::invalid_argument("inputs", 0, "a layer is called on at least one tensor");
            return Err(describe(&self.net, "no tensor".into(), e));
        }
        let ids: Vec<TensorId> = inputs.iter().map(|t| t.id).collect();
        let shapes: Vec<&[usize]> = ids.iter().map(|&t| self.net.tensors[t].shape.as_slice()).collect();
        let shapes = shapes_str(&shapes);
        if let Some(declared) = self.net.layers[layer.index].declared_input_shape() {
            if ids.len() != 1 || self.net.tensors[ids[0]].shape != declared {
                let e = Error::shape("input_shape", super::shape_str(declared), shapes.clone());
                return Err(describe(&self.net, shapes, e));
            }
        }
        match self.net.apply(layer.index, &ids, &mut self.params, &mut self.rng) {
            Ok(ids) => Ok(ids.into_iter().map(|id| self.tensor(id)).collect()),
            Err(e) => Err(describe(&self.net, shapes, e)),
        }
    }

    /// A tensor's per-sample shape (no batch axis), as inferred when it was made.
    ///
    /// # Errors
    /// [`Error::Graph`] for a tensor of another graph.
    pub fn shape(&self, tensor: SymbolicTensor) -> Result<&[usize]> {
        if !self.owns(&tensor) {
            return Err(Error::Graph(format!("{tensor:?} belongs to another Graph")));
        }
        Ok(&self.net.tensors[tensor.id].shape)
    }

    /// Whether `tensor` is one of this graph's.
    fn owns(&self, tensor: &SymbolicTensor) -> bool {
        tensor.graph == self.id && tensor.id < self.net.tensors.len()
    }

    fn tensor(&self, id: TensorId) -> SymbolicTensor {
        SymbolicTensor { graph: self.id, id }
    }
}

/// What [`Graph::apply`] calls: a new layer (added to the graph), or a [`LayerRef`] to a layer already in it.
pub trait IntoLayer {
    /// The layer's handle in `graph`, adding it if it is new.
    ///
    /// # Errors
    /// A new layer whose name the graph already has.
    fn into_layer(self, graph: &mut Graph) -> Result<LayerRef>;
}

impl<L: Layer + 'static> IntoLayer for L {
    fn into_layer(self, graph: &mut Graph) -> Result<LayerRef> {
        graph.layer(self)
    }
}

impl IntoLayer for Box<dyn Layer> {
    fn into_layer(self, graph: &mut Graph) -> Result<LayerRef> {
        graph.layer_boxed(self)
    }
}

impl IntoLayer for LayerRef {
    fn into_layer(self, _: &mut Graph) -> Result<LayerRef> {
        Ok(self)
    }
}

/// The tensors a layer is called on, or a model's inputs or outputs: one tensor, an array, a slice or a `Vec`.
pub trait IntoTensors {
    /// The tensors, in order.
    fn into_tensors(self) -> Vec<SymbolicTensor>;
}

impl IntoTensors for SymbolicTensor {
    fn into_tensors(self) -> Vec<SymbolicTensor> {
        vec![self]
    }
}

impl<const N: usize> IntoTensors for [SymbolicTensor; N] {
    fn into_tensors(self) -> Vec<SymbolicTensor> {
        self.to_vec()
    }
}

impl IntoTensors for &[SymbolicTensor] {
    fn into_tensors(self) -> Vec<SymbolicTensor> {
        self.to_vec()
    }
}

impl IntoTensors for Vec<SymbolicTensor> {
    fn into_tensors(self) -> Vec<SymbolicTensor> {
        self
    }
}

impl Model {
    /// The model from `inputs` to `outputs` of `graph` (Keras' `keras.Model(inputs, outputs)`), named
    /// `functional`. The graph's layers, weights and seed become the model's; layers no output depends on
    /// are left out.
    ///
    /// # Errors
    /// [`Error::Graph`]: no input or output; a tensor of another graph; an input that is not a
    /// [`Graph::input`]; a tensor listed twice; an output that depends on an input not listed (Keras' "Graph
    /// disconnected"); an input no output depends on; two outputs from one layer; a layer with weights that
    /// no output depends on.
    pub fn new(graph: Graph, inputs: impl IntoTensors, outputs: impl IntoTensors) -> Result<Model> {
        Model::from_graph(graph, inputs.into_tensors(), outputs.into_tensors(), LayerOrder::FirstTensor)
    }

    /// [`Model::new`], with the layers in `layer_order`.
    pub(crate) fn from_graph(
        graph: Graph,
        inputs: Vec<SymbolicTensor>,
        outputs: Vec<SymbolicTensor>,
        layer_order: LayerOrder,
    ) -> Result<Model> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(Error::Graph("a model needs at least one input and one output".into()));
        }
        if let Some(t) = inputs.iter().chain(&outputs).find(|t| !graph.owns(t)) {
            return Err(Error::Graph(format!("{t:?} belongs to another Graph")));
        }
        let Graph { net, params, seed, .. } = graph;
        let name = |t: TensorId| net.tensor_name(t).to_owned();
        for (what, list) in [("input", &inputs), ("output", &outputs)] {
            let mut seen = std::collections::HashSet::with_capacity(list.len());
            if let Some(t) = list.iter().find(|t| !seen.insert(t.id)) {
                return Err(Error::Graph(format!("the {what} `{}` is listed twice", name(t.id))));
            }
        }
        if let Some(t) = inputs.iter().find(|t| !matches!(net.tensors[t.id].producer, Producer::Input { .. }))
        {
            return Err(Error::Graph(format!(
                "`{}` is not a model input: inputs are the tensors Graph::input returns",
                name(t.id)
            )));
        }
        let input_ids: Vec<TensorId> = inputs.iter().map(|t| t.id).collect();
        let output_ids: Vec<TensorId> = outputs.iter().map(|t| t.id).collect();
        let mut producers = std::collections::HashSet::with_capacity(output_ids.len());
        for &t in &output_ids {
            if !producers.insert(net.producer_layer(t)) {
                return Err(Error::Graph(format!(
                    "two outputs come from layer `{}`: outputs are named after their layers, so each needs \
                     its own",
                    name(t)
                )));
            }
        }

        // Walk back from the outputs: which tensors and nodes they need.
        let mut is_input = vec![false; net.tensors.len()];
        for &t in &input_ids {
            is_input[t] = true;
        }
        let mut needed = vec![false; net.tensors.len()];
        let mut stack = output_ids.clone();
        while let Some(t) = stack.pop() {
            if std::mem::replace(&mut needed[t], true) {
                continue;
            }
            match net.tensors[t].producer {
                // A call makes all its outputs: a needed state keeps the RNN output beside it, and back.
                Producer::Node(n) => stack.extend(net.nodes[n].inputs.iter().chain(&net.nodes[n].outputs)),
                Producer::Input { .. } if !is_input[t] => {
                    let needing: Vec<String> = output_ids
                        .iter()
                        .filter(|&&o| depends_on(&net, o, t))
                        .map(|&o| format!("`{}`", name(o)))
                        .collect();
                    return Err(Error::Graph(format!(
                        "graph disconnected: the output(s) {} depend on the input `{}`, which is not among the \
                         model's inputs",
                        needing.join(", "),
                        name(t)
                    )));
                }
                Producer::Input { .. } => {}
            }
        }
        if let Some(&t) = input_ids.iter().find(|&&t| !needed[t]) {
            return Err(Error::Graph(format!("no output depends on the input `{}`", name(t))));
        }
        let mut kept = vec![false; net.layers.len()];
        for node in net.nodes.iter().filter(|n| needed[n.outputs[0]]) {
            kept[node.layer] = true;
        }
        for &t in &input_ids {
            if let Some(l) = net.producer_layer(t) {
                kept[l] = true;
            }
        }
        if let Some(l) = (0..net.layers.len()).find(|&l| !kept[l] && !net.layers[l].weights().is_empty()) {
            return Err(Error::Graph(format!(
                "layer `{}` has weights but no output depends on it",
                net.layers[l].name().unwrap_or("?")
            )));
        }
        let (net, params) = canonical(net, &needed, &kept, &input_ids, &output_ids, params, layer_order)?;
        let mut model = Model::with_net("functional", net, Kind::Functional);
        model.params = params;
        model.set_seed(seed);
        Ok(model)
    }
}

/// How [`Model::from_graph`] orders the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerOrder {
    /// By their first tensor the model needs, in the order tensors were made: [`Model::new`]'s order.
    FirstTensor,
    /// In the order they were added to the graph: a loaded file's order (its layers are added in the order
    /// the file lists them, and the order of their calls, which the file does not keep, is remade).
    AsAdded,
}

/// What the outputs need of `net`, in the one order a saved and reloaded copy has too (issue 25): so that
/// save -> load -> save gives the same bytes, and `get_weights` of a model fits `set_weights` of its copy.
///
/// Layers are ordered by their first needed tensor (as made), or as added for a loaded file; the calls are then
/// made again in an order that depends on that layer order and each layer's calls alone, which is all a file
/// keeps: first each layer's
/// first call in layer order, then each layer's other calls in layer order, each call after what it takes
/// (depth first). When the layer order comes from an order where every tensor follows what it is made of (a
/// built graph, or a file that `save` wrote), the first calls come out in layer order again; so a reloaded
/// copy, whatever order its loader made the calls in, gets the same layers, calls and tensors in the same
/// order. Otherwise (a file listing a layer before what it takes) the layers take the order the calls came
/// out in, which is then stable through save and load. Weights follow the layers: a layer's
/// weights in the order it made them, layer after layer (renumbered if a layer was built by a call the model
/// leaves out). Linear in the number of tensors, calls and weights.
fn canonical(
    net: Net,
    needed: &[bool],
    kept: &[bool],
    input_ids: &[TensorId],
    output_ids: &[TensorId],
    mut params: ParamStore,
    layer_order: LayerOrder,
) -> Result<(Net, ParamStore)> {
    let mut order: Vec<usize> = (0..net.layers.len()).filter(|&l| kept[l]).collect();
    if layer_order == LayerOrder::FirstTensor {
        let mut first_tensor = vec![usize::MAX; net.layers.len()];
        for t in (0..net.tensors.len()).rev().filter(|&t| needed[t]) {
            if let Some(l) = net.producer_layer(t) {
                first_tensor[l] = t;
            }
        }
        order.sort_by_key(|&l| first_tensor[l]);
    }

    // Each layer's needed tensors (its input, or its calls' outputs) in call order, and the one before each.
    let mut items: Vec<Vec<TensorId>> = vec![Vec::new(); net.layers.len()];
    let mut previous: Vec<Option<TensorId>> = vec![None; net.tensors.len()];
    for t in (0..net.tensors.len()).filter(|&t| needed[t]) {
        if let Some(l) = net.producer_layer(t) {
            previous[t] = items[l].last().copied();
            items[l].push(t);
        }
    }
    let mut made = vec![false; net.tensors.len()];
    let mut made_order: Vec<TensorId> = Vec::with_capacity(net.tensors.len());
    // Makes `root` after everything it depends on (the layer's previous call, then its inputs), depth first
    // with an explicit stack: a chain of any length.
    let make = |root: TensorId, made: &mut Vec<bool>, made_order: &mut Vec<TensorId>| {
        let mut stack: Vec<(TensorId, usize)> = vec![(root, 0)];
        while let Some((t, k)) = stack.last_mut() {
            let t = *t;
            if made[t] {
                stack.pop();
                continue;
            }
            let inputs: &[TensorId] = match net.tensors[t].producer {
                Producer::Node(n) => &net.nodes[n].inputs,
                Producer::Input { .. } => &[],
            };
            let deps = previous[t].into_iter().chain(inputs.iter().copied());
            match deps.skip(*k).find(|&d| {
                *k += 1;
                !made[d]
            }) {
                Some(d) => stack.push((d, 0)),
                None => {
                    // A node's outputs are made together, consecutive as the graph keeps them.
                    let group = match net.tensors[t].producer {
                        Producer::Node(n) => net.nodes[n].outputs.as_slice(),
                        Producer::Input { .. } => std::slice::from_ref(&t),
                    };
                    for &o in group {
                        if !std::mem::replace(&mut made[o], true) {
                            made_order.push(o);
                        }
                    }
                    stack.pop();
                }
            }
        }
    };
    for &l in &order {
        if let Some(&t) = items[l].first() {
            make(t, &mut made, &mut made_order);
        }
    }
    for &l in &order {
        for &t in &items[l] {
            make(t, &mut made, &mut made_order);
        }
    }
    // Input tensors without a layer (none in a graph), then anything not reached: kept in their order.
    let rest: Vec<TensorId> = (0..net.tensors.len()).filter(|&t| needed[t] && !made[t]).collect();
    made_order.extend(rest);

    // The layer order is that of the remade tensors (the same as `order`, see above).
    let mut layer_map: Vec<Option<usize>> = vec![None; net.layers.len()];
    let mut layer_order = Vec::with_capacity(order.len());
    for &t in &made_order {
        if let Some(l) = net.producer_layer(t) {
            if layer_map[l].is_none() {
                layer_map[l] = Some(layer_order.len());
                layer_order.push(l);
            }
        }
    }
    for &l in &order {
        if layer_map[l].is_none() {
            layer_map[l] = Some(layer_order.len());
            layer_order.push(l);
        }
    }
    let mut tensor_map: Vec<Option<usize>> = vec![None; net.tensors.len()];
    for (new, &t) in made_order.iter().enumerate() {
        tensor_map[t] = Some(new);
    }

    let Net { layers, tensors, nodes, .. } = net;
    let mut slots: Vec<Option<Box<dyn Layer>>> = layers.into_iter().map(Some).collect();
    let mut layers: Vec<Box<dyn Layer>> =
        layer_order.iter().map(|&l| slots[l].take().expect("each layer once")).collect();

    // Weights in layer order, each layer's in the order it made them.
    let mut weight_order: Vec<ParamId> = Vec::with_capacity(params.len());
    for layer in &layers {
        let mut ids = layer.weights().to_vec();
        ids.sort_unstable();
        weight_order.extend(ids);
    }
    let identity = weight_order.iter().enumerate().all(|(i, id)| id.index() == i);
    if !identity {
        let mut new_index: Vec<Option<usize>> = vec![None; params.len()];
        for (i, id) in weight_order.iter().enumerate() {
            match new_index.get_mut(id.index()) {
                Some(slot @ None) => *slot = Some(i),
                _ => return Err(Error::Graph("a weight belongs to two layers, or to none".into())),
            }
        }
        if weight_order.len() != params.len() {
            return Err(Error::Graph("a weight belongs to no layer of the model".into()));
        }
        let renumber = |id: ParamId| {
            ParamId::from_index(new_index.get(id.index()).copied().flatten().unwrap_or(id.index()))
        };
        for layer in &mut layers {
            layer.renumber_weights(&renumber)?;
        }
        params.permute(&weight_order);
    }

    let mut new_tensors: Vec<Option<TensorInfo>> = vec![None; made_order.len()];
    let mut node_map: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut new_nodes = Vec::new();
    for &t in &made_order {
        if let Producer::Node(n) = tensors[t].producer {
            if node_map[n].is_some() {
                continue;
            }
            node_map[n] = Some(new_nodes.len());
            let node = &nodes[n];
            new_nodes.push(Node {
                layer: layer_map[node.layer].expect("a needed node's layer is kept"),
                inputs: node
                    .inputs
                    .iter()
                    .map(|&i| tensor_map[i].expect("inputs of a needed node"))
                    .collect(),
                outputs: node
                    .outputs
                    .iter()
                    .map(|&o| tensor_map[o].expect("a needed node's outputs"))
                    .collect(),
            });
        }
    }
    for (t, info) in tensors.into_iter().enumerate() {
        let Some(new) = tensor_map[t] else { continue };
        let producer = match info.producer {
            Producer::Input { layer } => Producer::Input { layer: layer.and_then(|l| layer_map[l]) },
            Producer::Node(n) => Producer::Node(node_map[n].expect("a needed tensor's node is needed")),
        };
        new_tensors[new] = Some(TensorInfo { shape: info.shape, producer });
    }
    let tensors = new_tensors.into_iter().map(|t| t.expect("every kept tensor is placed")).collect();
    let net = Net::from_parts(
        layers,
        tensors,
        new_nodes,
        input_ids.iter().map(|&t| tensor_map[t].expect("needed")).collect(),
        output_ids.iter().map(|&t| tensor_map[t].expect("needed")).collect(),
    );
    Ok((net, params))
}

/// Whether tensor `t` is computed from tensor `source`.
fn depends_on(net: &Net, t: TensorId, source: TensorId) -> bool {
    let mut stack = vec![t];
    let mut seen = vec![false; net.tensors.len()];
    while let Some(t) = stack.pop() {
        if t == source {
            return true;
        }
        if !std::mem::replace(&mut seen[t], true) {
            if let Producer::Node(n) = net.tensors[t].producer {
                stack.extend(&net.nodes[n].inputs);
            }
        }
    }
    false
}
