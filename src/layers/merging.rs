//! Merge layers: one output from several inputs. [`Add`], [`Subtract`], [`Multiply`], [`Average`], [`Maximum`]
//! and [`Minimum`] combine their inputs element by element; [`Concatenate`] joins them along an axis.
//!
//! See [the layers module](super) for their use; each layer's page has its shape rules.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::shapes::shape_str;
use crate::{Error, Result};

/// The settings of an element-wise merge layer, as saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeConfig {
    name: Option<String>,
}

/// The settings of [`Concatenate`], as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConcatenateConfig {
    name: Option<String>,
    axis: i64,
}

/// The `name` builder of a merge layer (merge layers have no `input_shape`: they never start a model).
macro_rules! name_builder {
    () => {
        /// A name instead of the one the model would assign.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.settings.name = Some(name.into());
            self
        }
    };
}

/// The [`Layer`] methods every merge layer shares: its name, its config (the settings struct), no weights, and
/// the single-input `build`/`call`, which only a model that passes one tensor reaches.
macro_rules! merge_layer_methods {
    () => {
        fn name(&self) -> Option<&str> {
            self.settings.name.as_deref()
        }

        fn set_name(&mut self, name: String) {
            self.settings.name = Some(name);
        }

        fn config(&self) -> Result<super::LayerConfig> {
            super::LayerConfig::new(self.class_name(), &self.settings)
        }

        /// Keras' error: a merge layer needs a list of inputs (what `Sequential::add` of a merge layer reports).
        fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
            Err(too_few_inputs(self.class_name(), &[input_shape]))
        }

        /// The input itself: never reached, `build` refuses a single input.
        fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
            x
        }

        fn weights(&self) -> &[ParamId] {
            &[]
        }
    };
}

/// The shapes a layer received, as Keras prints them: `[(None, 64), (None, 32)]`.
fn received(shapes: &[&[usize]]) -> String {
    let shapes: Vec<String> = shapes.iter().map(|s| shape_str(s)).collect();
    format!("[{}]", shapes.join(", "))
}

/// Keras' error for a merge layer given fewer than 2 inputs.
fn too_few_inputs(class: &str, shapes: &[&[usize]]) -> Error {
    let n = shapes.len();
    Error::invalid_argument(
        "inputs",
        received(shapes),
        format!(
            "A merge layer should be called on a list of at least 2 inputs. Got {n} input{}. {class} merges \
             several tensors into one",
            if n == 1 { "" } else { "s" }
        ),
    )
}

/// Keras' `_compute_elemwise_op_output_shape` over every input, for inputs of one rank: on each axis the
/// dimensions must be equal or 1, and the output has the largest.
fn elementwise_shape(class: &str, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    if shapes.len() < 2 {
        return Err(too_few_inputs(class, shapes));
    }
    let rank = shapes[0].len();
    if shapes.iter().any(|s| s.len() != rank) {
        return Err(Error::shape(
            class,
            "inputs of one rank (a merge layer does not add axes; use a Reshape layer first)",
            received(shapes),
        ));
    }
    let mut out = shapes[0].to_vec();
    for shape in &shapes[1..] {
        for (axis, (o, &d)) in out.iter_mut().zip(shape.iter()).enumerate() {
            match (*o, d) {
                (a, b) if a == b => {}
                (1, b) => *o = b,
                (_, 1) => {}
                (a, b) => {
                    return Err(Error::shape(
                        class,
                        format!(
                            "inputs whose dimensions are equal or 1 on each axis (axis {} has {a} and {b})",
                            axis + 1
                        ),
                        received(shapes),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Writes an element-wise merge layer: its struct, constructor, `name` builder and [`Layer`] implementation.
/// `$check` runs on the input shapes after the common checks; `$merge` computes the output from `$inputs`.
macro_rules! elementwise_merge {
    (
        $(#[$doc:meta])*
        $layer:ident,
        check: |$shapes:ident| $check:expr,
        merge: |$inputs:ident| $merge:expr $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $layer {
            settings: MergeConfig,
        }

        impl $layer {
            /// The layer; its only setting is its name.
            pub fn new() -> Self {
                Self::default()
            }

            pub(crate) fn from_settings(settings: MergeConfig) -> Self {
                $layer { settings }
            }

            name_builder!();
        }

        impl Layer for $layer {
            fn class_name(&self) -> &'static str {
                stringify!($layer)
            }

            merge_layer_methods!();

            fn build_many(
                &mut self,
                $shapes: &[&[usize]],
                _: &mut ParamStore,
                _: &mut StdRng,
            ) -> Result<Vec<usize>> {
                let out = elementwise_shape(self.class_name(), $shapes)?;
                $check?;
                Ok(out)
            }

            fn call_many<'t>(&self, $inputs: &[Var<'t>], _: &mut CallContext<'_>) -> Var<'t> {
                $merge
            }

            fn supports_masking(&self) -> bool {
                true
            }

            fn compute_mask<'t>(&self, _: &[Var<'t>], masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
                merged_mask(masks)
            }
        }
    };
}

/// The mask of an element-wise merge, as Keras' `Merge.compute_mask` gives it: none if any input has none,
/// else the logical OR of the masks (a step is real in the output where it is real in some input).
fn merged_mask<'t>(masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
    let masks: Option<Vec<Var<'t>>> = masks.iter().copied().collect();
    let masks = masks?;
    let (&first, rest) = masks.split_first()?;
    // Masks hold 0.0 and 1.0, so the maximum is the OR.
    Some(rest.iter().fold(first, |acc, &m| acc.maximum(m)))
}

/// No check besides the common ones.
fn any_number(_: &[&[usize]]) -> Result<()> {
    Ok(())
}

/// `op` applied left to right: `op(op(x0, x1), x2)...`.
fn fold<'t>(inputs: &[Var<'t>], op: impl Fn(Var<'t>, Var<'t>) -> Var<'t>) -> Var<'t> {
    inputs[1..].iter().fold(inputs[0], |acc, &x| op(acc, x))
}

elementwise_merge! {
    /// The sum of its inputs, element by element: Keras' `Add`.
    ///
    /// ```
    /// use kerust::layers::{Add, Layer};
    /// # use kerust::autodiff::ParamStore; use rand::SeedableRng;
    /// # let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
    /// let mut add = Add::new().name("residual");
    /// // A dimension of 1 is broadcast.
    /// assert_eq!(add.build_many(&[&[4, 8], &[4, 1], &[1, 8]], &mut params, &mut rng)?, vec![4, 8]);
    /// assert!(add.build_many(&[&[64], &[32]], &mut params, &mut rng).is_err());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    Add,
    check: |shapes| any_number(shapes),
    merge: |inputs| fold(inputs, Var::add),
}

elementwise_merge! {
    /// The first input minus the second, element by element: Keras' `Subtract`, which takes exactly 2 inputs.
    ///
    /// ```
    /// use kerust::layers::{Layer, Subtract};
    /// # use kerust::autodiff::ParamStore; use rand::SeedableRng;
    /// # let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
    /// assert_eq!(Subtract::new().build_many(&[&[3], &[3]], &mut params, &mut rng)?, vec![3]);
    /// assert!(Subtract::new().build_many(&[&[3], &[3], &[3]], &mut params, &mut rng).is_err());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    Subtract,
    check: |shapes| exactly_two(shapes),
    merge: |inputs| inputs[0].sub(inputs[1]),
}

/// Keras' error for a `Subtract` of other than 2 inputs.
fn exactly_two(shapes: &[&[usize]]) -> Result<()> {
    if shapes.len() == 2 {
        return Ok(());
    }
    Err(Error::invalid_argument(
        "inputs",
        received(shapes),
        format!("A `Subtract` layer should be called on exactly 2 inputs, got {}", shapes.len()),
    ))
}

elementwise_merge! {
    /// The product of its inputs, element by element: Keras' `Multiply`.
    Multiply,
    check: |shapes| any_number(shapes),
    merge: |inputs| fold(inputs, Var::mul),
}

elementwise_merge! {
    /// The mean of its inputs, element by element: Keras' `Average` (their sum divided by their number).
    ///
    /// This is the merge layer; the pooling kind of [`AveragePooling2D`](super::AveragePooling2D) is
    /// [`pooling::Average`](super::pooling::Average).
    Average,
    check: |shapes| any_number(shapes),
    merge: |inputs| fold(inputs, Var::add).div_scalar(inputs.len() as f32),
}

elementwise_merge! {
    /// The largest of its inputs, element by element: Keras' `Maximum`. A NaN in any input makes that element
    /// NaN; on a tie the gradient goes to the earliest input.
    Maximum,
    check: |shapes| any_number(shapes),
    merge: |inputs| fold(inputs, Var::maximum),
}

elementwise_merge! {
    /// The smallest of its inputs, element by element: Keras' `Minimum`. A NaN in any input makes that element
    /// NaN; on a tie the gradient goes to the earliest input.
    Minimum,
    check: |shapes| any_number(shapes),
    merge: |inputs| fold(inputs, Var::minimum),
}

/// Joins its inputs along one axis: Keras' `Concatenate(axis=-1)`.
///
/// The axis counts over the whole tensor, batch included, as in Keras: `-1` (the default) is the last axis,
/// `1` the first axis of a sample; `0`, the batch axis, is refused. The inputs must have the same shape on every
/// other axis.
///
/// ```
/// use kerust::layers::{Concatenate, Layer};
/// # use kerust::autodiff::ParamStore; use rand::SeedableRng;
/// # let (mut params, mut rng) = (ParamStore::new(), rand::rngs::StdRng::seed_from_u64(0));
/// // Images (8, 8, 3) and (8, 8, 5): channels joined.
/// let mut channels = Concatenate::default();
/// assert_eq!(channels.build_many(&[&[8, 8, 3], &[8, 8, 5]], &mut params, &mut rng)?, vec![8, 8, 8]);
/// // Rows joined.
/// let mut rows = Concatenate::new(1).name("rows");
/// assert_eq!(rows.build_many(&[&[2, 4], &[3, 4]], &mut params, &mut rng)?, vec![5, 4]);
/// // Never the batch.
/// assert!(Concatenate::new(0).build_many(&[&[2], &[2]], &mut params, &mut rng).is_err());
/// # Ok::<(), kerust::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Concatenate {
    settings: ConcatenateConfig,
    /// The axis of the full tensor (batch included), resolved by `build_many`.
    axis: Option<usize>,
}

impl Default for Concatenate {
    /// Keras' default: the last axis.
    fn default() -> Self {
        Self::new(-1)
    }
}

impl Concatenate {
    /// Joins along `axis` of the full tensor, batch included: `-1` is the last, `1` the first axis of a sample.
    pub fn new(axis: i64) -> Self {
        Self::from_settings(ConcatenateConfig { name: None, axis })
    }

    pub(crate) fn from_settings(settings: ConcatenateConfig) -> Self {
        Concatenate { settings, axis: None }
    }

    name_builder!();

    /// The axis, as given.
    pub fn axis(&self) -> i64 {
        self.settings.axis
    }
}

impl Layer for Concatenate {
    fn class_name(&self) -> &'static str {
        "Concatenate"
    }

    merge_layer_methods!();

    fn build_many(&mut self, shapes: &[&[usize]], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        if shapes.len() < 2 {
            return Err(too_few_inputs(self.class_name(), shapes));
        }
        let rank = shapes[0].len();
        if shapes.iter().any(|s| s.len() != rank) {
            return Err(Error::shape(
                "Concatenate",
                "inputs of one rank, with the same shape except on the concatenation axis",
                received(shapes),
            ));
        }
        // Axes of the full tensor: the batch is 0, a sample's axes 1..=rank.
        let given = self.settings.axis;
        let full = rank as i64 + 1;
        let axis = if given < 0 { given + full } else { given };
        let range = format!("1 to {rank} or -{rank} to -1");
        if axis == 0 {
            return Err(Error::invalid_argument(
                "axis",
                given,
                format!(
                    "Concatenate cannot join along the batch axis (0 of the full tensor); use an axis of the \
                     samples, {range}, for inputs {}",
                    received(shapes)
                ),
            ));
        }
        if !(1..full).contains(&axis) {
            return Err(Error::invalid_argument(
                "axis",
                given,
                format!(
                    "out of range for inputs {} (batch included, their axes are 0 to {rank}); use {range}",
                    received(shapes)
                ),
            ));
        }
        let sample_axis = axis as usize - 1;
        let first = shapes[0];
        for shape in &shapes[1..] {
            if let Some(other) = (0..rank).find(|&i| i != sample_axis && shape[i] != first[i]) {
                return Err(Error::shape(
                    "Concatenate",
                    format!(
                        "inputs with the same shape except on the concatenation axis {axis} (axis {} has {} and \
                         {})",
                        other + 1,
                        first[other],
                        shape[other]
                    ),
                    received(shapes),
                ));
            }
        }
        let joined = shapes.iter().try_fold(0usize, |n, s| n.checked_add(s[sample_axis]));
        let Some(joined) = joined else {
            return Err(Error::shape(
                "Concatenate",
                format!("inputs whose lengths on axis {axis} add up to a size that fits in memory"),
                received(shapes),
            ));
        };
        let mut out = first.to_vec();
        out[sample_axis] = joined;
        self.axis = Some(axis as usize);
        Ok(out)
    }

    fn call_many<'t>(&self, inputs: &[Var<'t>], _: &mut CallContext<'_>) -> Var<'t> {
        let axis = self.axis.expect("Concatenate::call_many before build_many: models build layers first");
        inputs[0].tape().concat(inputs, axis)
    }

    fn supports_masking(&self) -> bool {
        true
    }

    /// Keras' `Concatenate.compute_mask`: none if no input has a mask; else each input's mask (all ones for an
    /// input without one) broadcast over the input's last axis, joined along the axis, and reduced with OR over
    /// the last axis. For masks of one axis fewer than their inputs (a `(batch, time)` mask of a
    /// `(batch, time, features)` tensor), that is the OR of the masks when joining the last axis, and the masks
    /// joined along the axis otherwise. Masks of another rank are dropped.
    fn compute_mask<'t>(&self, inputs: &[Var<'t>], masks: &[Option<Var<'t>>]) -> Option<Var<'t>> {
        let axis = self.axis?;
        if masks.iter().all(Option::is_none) || inputs.len() != masks.len() {
            return None;
        }
        let tape = inputs[0].tape();
        let mut full = Vec::with_capacity(masks.len());
        for (x, m) in inputs.iter().zip(masks) {
            let shape = x.shape();
            let mask_shape = &shape[..shape.len() - 1];
            match m {
                Some(m) if m.shape() == mask_shape => full.push(*m),
                Some(_) => return None,
                None => full.push(tape.constant_with(mask_shape, |b| b.fill(1.0))),
            }
        }
        let last = inputs[0].shape().len() - 1;
        if axis == last {
            // Masks hold 0.0 and 1.0, so the maximum is the OR.
            full[1..].iter().try_fold(full[0], |acc, &m| Some(acc.maximum(m)))
        } else {
            Some(tape.concat(&full, axis))
        }
    }
}
