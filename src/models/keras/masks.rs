//! The mask of an `Embedding(mask_zero=True)` as Keras 3 records it in a functional config: a `NotEqual` op node
//! (`keras.src.ops.numpy`, `not_equal(tokens, 0)`, the Embedding's `compute_mask`) and a `mask` call argument
//! naming it on each layer the mask reached, as Keras' `Layer.__call__` filled it in from the input's mask.
//!
//! kerust's graph carries masks beside tensors and computes them with the same `compute_mask` rules, so such a
//! node is not a layer here: the loader drops it and checks that every `mask` argument is what kerust's own
//! propagation gives that call (the `NotEqual` of the tokens an `Embedding(mask_zero=True)` upstream of it
//! reads). A `mask` of anything else, or a `NotEqual` used as a value, is an error naming it.
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{is_tensor, tensor_ref, KerasError};
use crate::models::saving::TensorRef;
use crate::Result;

/// The `NotEqual` op nodes of a functional config: by name, the tensor each compares with 0.
#[derive(Default)]
pub(super) struct MaskOps {
    sources: HashMap<String, TensorRef>,
    entries: HashSet<usize>,
}

/// A `mask` call argument: at `path`, the mask of argument `arg` of the call, the `NotEqual` named `op`.
pub(super) struct MaskArg {
    pub(super) path: String,
    pub(super) arg: usize,
    pub(super) op: TensorRef,
}

/// The `mask` arguments of a layer's calls, each with the index of its call.
pub(super) type CallMasks = Vec<(usize, MaskArg)>;

/// A layer of a functional config as [`MaskOps::check`] walks it: its name, class, Keras config and each call's
/// arguments.
pub(super) type GraphLayer<'a> = (&'a str, &'a str, &'a Value, &'a [Vec<TensorRef>]);

/// Whether a config entry is Keras' `NotEqual` op (not a layer of that name from elsewhere).
fn is_not_equal(entry: &Value) -> bool {
    let module = entry.get("module").and_then(Value::as_str).unwrap_or("keras.src.ops.numpy");
    entry.get("class_name").and_then(Value::as_str) == Some("NotEqual") && module.starts_with("keras.src.ops")
}

impl MaskOps {
    /// The `NotEqual` entries of a functional config's `layers`, each checked to be one call `not_equal(x, 0)`.
    ///
    /// # Errors
    /// A `NotEqual` of another form (another operand than 0, several calls, keyword arguments).
    pub(super) fn read(list: &[Value], e: &KerasError) -> Result<MaskOps> {
        let mut ops = MaskOps::default();
        for (i, entry) in list.iter().enumerate() {
            if !is_not_equal(entry) {
                continue;
            }
            let path = format!("config.layers[{i}].inbound_nodes");
            let name = entry.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let node = entry.get("inbound_nodes").and_then(Value::as_array).map(Vec::as_slice);
            let source = match node {
                Some([node]) => {
                    let args = node.get("args").and_then(Value::as_array).map(Vec::as_slice);
                    let no_kwargs =
                        node.get("kwargs").and_then(Value::as_object).is_none_or(|k| k.is_empty());
                    match args {
                        Some([x, zero]) if is_tensor(x) && zero.as_f64() == Some(0.0) && no_kwargs => {
                            tensor_ref(x)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let source = source.ok_or_else(|| {
                e.at(
                    &path,
                    format!(
                        "kerust reads a NotEqual op (`{name}`) only as the mask of an Embedding(mask_zero=True), one \
                         call `not_equal(tokens, 0)`; found {}",
                        entry.get("inbound_nodes").unwrap_or(&Value::Null)
                    ),
                )
            })?;
            ops.sources.insert(name, source);
            ops.entries.insert(i);
        }
        Ok(ops)
    }

    /// Whether `layers[i]` is a `NotEqual` op, which the model does not hold as a layer.
    pub(super) fn skips(&self, i: usize) -> bool {
        self.entries.contains(&i)
    }

    /// Whether `name` is a `NotEqual` op.
    pub(super) fn is_op(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// The `mask` call argument `v` (a tensor, or a list with one tensor or null per argument) at `path`: the
    /// masks it names, each a `NotEqual` op.
    ///
    /// # Errors
    /// A mask that is not the output of a `NotEqual` op of the config.
    pub(super) fn mask_args(&self, v: &Value, path: &str, e: &KerasError) -> Result<Vec<MaskArg>> {
        let one = |arg: usize, m: &Value| -> Result<Option<MaskArg>> {
            if m.is_null() {
                return Ok(None);
            }
            match tensor_ref(m).filter(|r| is_tensor(m) && self.is_op(&r.0)) {
                Some(op) => Ok(Some(MaskArg { path: path.to_owned(), arg, op })),
                None => Err(e.at(
                    path,
                    format!(
                        "call argument mask={m} is not supported by kerust: it reads a mask only as the NotEqual op \
                         of an Embedding(mask_zero=True)"
                    ),
                )),
            }
        };
        match v {
            Value::Array(list) => {
                list.iter().enumerate().filter_map(|(k, m)| one(k, m).transpose()).collect::<Result<Vec<_>>>()
            }
            m => Ok(one(0, m)?.into_iter().collect()),
        }
    }

    /// Checks a functional config whose `NotEqual` ops were dropped: no call and no model output reads one as a
    /// value, and each `mask` argument is what kerust's mask propagation gives the call, the `NotEqual` of the
    /// tokens an `Embedding(mask_zero=True)` upstream of that argument reads.
    ///
    /// `layers` is each remaining layer's name, class, config and calls' arguments; `masks` the `mask` arguments
    /// of call `node` of layer `layer`.
    ///
    /// # Errors
    /// A `NotEqual` read as a value, or a `mask` argument kerust's propagation would not give.
    pub(super) fn check(
        &self,
        layers: &[GraphLayer<'_>],
        masks: &[(usize, usize, MaskArg)],
        outputs: &[TensorRef],
        e: &KerasError,
    ) -> Result<()> {
        let value_error = |path: &str, r: &TensorRef| {
            e.at(
                path,
                format!(
                    "reads NotEqual op `{}` as a value: kerust reads a NotEqual only as the mask of an \
                     Embedding(mask_zero=True)",
                    r.0
                ),
            )
        };
        for (name, _, _, calls) in layers {
            for (n, args) in calls.iter().enumerate() {
                if let Some(r) = args.iter().find(|r| self.is_op(&r.0)) {
                    return Err(value_error(&format!("layer `{name}`, inbound_nodes[{n}]"), r));
                }
            }
        }
        if let Some(r) = outputs.iter().find(|r| self.is_op(&r.0)) {
            return Err(value_error("config.output_layers", r));
        }
        let by_name: HashMap<&str, usize> = layers.iter().enumerate().map(|(i, l)| (l.0, i)).collect();
        for (layer, node, mask) in masks {
            let source = &self.sources[&mask.op.0];
            let start = layers[*layer].3.get(*node).and_then(|args| args.get(mask.arg));
            let mut stack: Vec<&TensorRef> = start.into_iter().collect();
            let mut seen = HashSet::new();
            let mut found = false;
            while let Some(TensorRef(name, n, _)) = stack.pop() {
                let Some(&at) = by_name.get(name.as_str()) else { continue };
                if !seen.insert((at, *n)) {
                    continue;
                }
                let (_, class, config, calls) = layers[at];
                let Some(args) = calls.get(*n) else { continue };
                let masks_zero = config.get("mask_zero").and_then(Value::as_bool) == Some(true);
                if class == "Embedding" && masks_zero && args.first() == Some(source) {
                    found = true;
                    break;
                }
                stack.extend(args);
            }
            if !found {
                return Err(e.at(
                    &mask.path,
                    format!(
                        "the mask NotEqual op `{}` gives is not the mask kerust propagates to this call: no \
                         Embedding(mask_zero=True) of the tensor `{}` compares lies upstream of argument {}",
                        mask.op.0, source.0, mask.arg
                    ),
                ));
            }
        }
        Ok(())
    }
}
