//! The order of a model's layers in Keras (`model.layers`), which names their weight groups in a `.keras` file.
use std::collections::HashMap;

use super::super::graph::Producer;
use super::super::{Kind, Model};

/// Keras' `model.layers` as indexes into kerust's layers: a Sequential's stack; a functional model's layers as
/// Keras' `map_graph` orders them (by depth from the outputs, deepest first, ties in the order a depth-first walk
/// from the outputs meets them), which is the order Python gives a loaded model, whatever order kerust built
/// it in.
pub(crate) fn keras_layer_order(model: &Model) -> Vec<usize> {
    let net = &model.net;
    if matches!(model.kind, Kind::Sequential { .. }) {
        return (0..net.layers.len()).collect();
    }
    // A node is a call (`Some(n)`) or an input's layer (`None` with its layer).
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum Key {
        Node(usize),
        Input(usize),
    }
    let key_of = |t: usize| match net.tensors[t].producer {
        Producer::Input { layer } => layer.map(Key::Input),
        Producer::Node(n) => Some(Key::Node(n)),
    };
    let layer_of = |k: Key| match k {
        Key::Node(n) => net.nodes[n].layer,
        Key::Input(l) => l,
    };
    let parents = |k: Key| -> Vec<Key> {
        match k {
            Key::Node(n) => net.nodes[n].inputs.iter().filter_map(|&t| key_of(t)).collect(),
            Key::Input(_) => Vec::new(),
        }
    };
    let mut finished: Vec<Key> = Vec::new();
    let mut done: std::collections::HashSet<Key> = Default::default();
    let mut op_index: HashMap<usize, i64> = HashMap::new();
    // Iterative depth-first walk (a deep graph must not overflow the stack): (key, expanded).
    for &out in &net.outputs {
        let Some(start) = key_of(out) else { continue };
        let mut stack = vec![(start, false)];
        while let Some((k, expanded)) = stack.pop() {
            if expanded {
                if done.insert(k) {
                    finished.push(k);
                }
                continue;
            }
            if done.contains(&k) {
                continue;
            }
            let next = op_index.len() as i64;
            op_index.entry(layer_of(k)).or_insert(next);
            stack.push((k, true));
            let is_model_input = matches!(k, Key::Input(_));
            if !is_model_input {
                for p in parents(k).into_iter().rev() {
                    if !done.contains(&p) {
                        stack.push((p, false));
                    }
                }
            }
        }
    }
    let in_graph: std::collections::HashSet<Key> = finished.iter().copied().collect();
    let mut node_depth: HashMap<Key, usize> = HashMap::new();
    let mut op_depth: HashMap<usize, usize> = HashMap::new();
    for &k in finished.iter().rev() {
        let mut depth = *node_depth.entry(k).or_insert(0);
        let op = layer_of(k);
        depth = depth.max(op_depth.get(&op).copied().unwrap_or(0));
        op_depth.insert(op, depth);
        node_depth.insert(k, depth);
        for p in parents(k) {
            if in_graph.contains(&p) {
                let d = node_depth.entry(p).or_insert(0);
                *d = (*d).max(depth + 1);
            }
        }
    }
    // Inputs no output uses are still layers of the model, at depth 0.
    for &t in &net.inputs {
        if let Some(Key::Input(l)) = key_of(t) {
            if let std::collections::hash_map::Entry::Vacant(v) = op_depth.entry(l) {
                v.insert(0);
                op_index.insert(l, -1);
            }
        }
    }
    let mut ops: Vec<usize> = op_depth.keys().copied().collect();
    ops.sort_by_key(|op| (std::cmp::Reverse(op_depth[op]), op_index[op]));
    ops
}
