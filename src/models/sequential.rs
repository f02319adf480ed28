//! `Sequential`: a [`Model`] whose graph is a stack, grown one layer at a time (Keras'
//! `keras/src/models/sequential.py`, which builds a `Functional` graph the same way).
use std::ops::{Deref, DerefMut};

use super::{Kind, Model};
use crate::layers::Layer;
use crate::{Error, Result};

/// A linear stack of layers: Keras' `Sequential`.
///
/// Add layers (the first one knows its input shape, or the model builds itself from the first data `fit`,
/// `evaluate` or `train_on_batch` sees; `predict` takes `&self` and needs a built model), then
/// [`compile`](Model::compile), [`fit`](Model::fit), [`evaluate`](Model::evaluate),
/// [`predict`](Model::predict). Everything but adding and removing layers is [`Model`]'s: a `Sequential`
/// dereferences to it, and converts into it with `Model::from`.
pub struct Sequential(Model);

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Deref for Sequential {
    type Target = Model;

    fn deref(&self) -> &Model {
        &self.0
    }
}

impl DerefMut for Sequential {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.0
    }
}

impl From<Sequential> for Model {
    fn from(model: Sequential) -> Model {
        model.0
    }
}

impl TryFrom<Model> for Sequential {
    type Error = Error;

    /// A loaded model, as the `Sequential` it was saved from (to `add` or `pop` layers again).
    ///
    /// # Errors
    /// A graph model ([`Model::new`]), which is not a stack.
    fn try_from(model: Model) -> Result<Sequential> {
        match model.kind {
            Kind::Sequential { .. } => Ok(Sequential(model)),
            Kind::Functional => Err(Error::invalid_argument(
                "model",
                format!("`{}`", model.name),
                "a graph model (Model::new) is not a Sequential",
            )),
        }
    }
}

impl Sequential {
    /// An empty model named `sequential`, seeded from [`crate::utils::set_random_seed`] if it was called.
    pub fn new() -> Self {
        Sequential(Model::with_net(
            "sequential",
            Default::default(),
            Kind::Sequential { declared_input: None },
        ))
    }

    /// Sets the model's name (shown by `summary`).
    pub fn with_name(self, name: impl Into<String>) -> Self {
        Sequential(self.0.with_name(name))
    }

    /// An error unless the model inside is still a stack: `DerefMut` lets `*seq = graph_model` through.
    fn check_stack(&self) -> Result<()> {
        match self.0.kind {
            Kind::Sequential { .. } => Ok(()),
            Kind::Functional => Err(Error::invalid_argument(
                "model",
                format!("`{}`", self.0.name),
                "a graph model (Model::new) was put in this Sequential; it is not a stack to add layers to",
            )),
        }
    }

    fn declared_input(&self) -> Option<&Vec<usize>> {
        match &self.0.kind {
            Kind::Sequential { declared_input } => declared_input.as_ref(),
            Kind::Functional => None,
        }
    }

    fn set_declared_input(&mut self, shape: Option<Vec<usize>>) {
        self.0.kind = Kind::Sequential { declared_input: shape };
    }

    /// Adds a layer on top. A layer without a name gets Keras' (`dense`, `dense_1`, ...). If the model's input
    /// shape is known, the layer is built (its weights created) now.
    ///
    /// # Errors
    /// A duplicate name, an `Input` that is not first, or the layer's own checks (zero units, unknown activation,
    /// ...). On error the model is unchanged.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<()> {
        self.add_boxed(Box::new(layer))
    }

    /// [`Sequential::add`] for a boxed layer.
    ///
    /// # Errors
    /// As [`Sequential::add`]; and a graph model put in this `Sequential` through `DerefMut` (`*seq = model`),
    /// which is not a stack to add to.
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) -> Result<()> {
        self.check_stack()?;
        let model = &mut self.0;
        if layer.is_input() {
            if !model.net.layers.is_empty() || self.declared_input().is_some() {
                return Err(Error::invalid_argument(
                    "layer",
                    "Input",
                    "an Input can only be the first entry of a Sequential model",
                ));
            }
            let shape = layer.declared_input_shape().unwrap_or_default().to_vec();
            layer.build_many(&[&shape], &mut self.0.params, &mut self.0.rng)?;
            self.set_declared_input(Some(shape.clone()));
            return self.0.build(&shape);
        }
        let first = model.net.layers.is_empty();
        let index = model.net.add_layer(layer)?;
        if first && self.declared_input().is_none() {
            let declared = self.0.net.layers[index].declared_input_shape().map(<[usize]>::to_vec);
            self.set_declared_input(declared);
        }
        let shape = self.0.input_shape().map(<[usize]>::to_vec);
        let result = match shape {
            Some(shape) => self.0.build(&shape),
            None => Ok(()),
        };
        if result.is_err() {
            self.0.net.pop_layer();
            if self.0.net.layers.is_empty() && self.0.net.inputs.is_empty() {
                self.set_declared_input(None);
            }
        }
        result
    }

    /// Removes the top layer and its weights, and returns it (`None` for an empty model, or a graph model put
    /// in this `Sequential` through `DerefMut`).
    pub fn pop(&mut self) -> Option<Box<dyn Layer>> {
        self.check_stack().ok()?;
        let model = &mut self.0;
        if model.net.layers.is_empty() {
            return None;
        }
        if model.net.nodes.len() >= model.net.layers.len() {
            model.net.pop_node();
        }
        let layer = model.net.pop_layer()?;
        if let Some(first) = layer.weights().iter().map(|id| id.index()).min() {
            model.params.truncate(first);
        }
        if model.net.layers.is_empty() && self.declared_input().is_none() {
            self.0.net.tensors.clear();
            self.0.net.inputs.clear();
        }
        let model = &mut self.0;
        model.net.outputs = model.net.tensors.len().checked_sub(1).into_iter().collect();
        Some(layer)
    }
}
