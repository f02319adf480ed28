//! `Reshape`: the same elements of each sample in a new shape.
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::{CallContext, Layer};
use crate::autodiff::{ParamId, ParamStore, Var};
use crate::shapes::shape_str;
use crate::{Error, Result};

/// Keras' `layers.Reshape(target_shape)`: each sample's elements in `target_shape` (row-major), with at most
/// one `-1` standing for what is left. Grayscale images `(28, 28)` become `(28, 28, 1)` for a `Conv2D`:
///
/// ```
/// use kerust::layers::{Conv2D, Reshape};
/// use kerust::models::Sequential;
///
/// let mut model = Sequential::new();
/// model.add(Reshape::new([28, 28, 1]).input_shape([28, 28]))?;
/// model.add(Conv2D::new(8, 3))?;
/// assert_eq!(model.output_shape(), Some(&[26, 26, 8][..]));
/// # Ok::<(), kerust::Error>(())
/// ```
///
/// Outside a model, the channel axis is one ndarray call: `x.insert_axis(ndarray::Axis(3))` (numpy's
/// `np.expand_dims(x, -1)`).
#[derive(Clone, Debug)]
pub struct Reshape {
    settings: ReshapeConfig,
    output: Option<Vec<usize>>,
}

/// The settings, as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReshapeConfig {
    name: Option<String>,
    target_shape: Vec<i64>,
    input_shape: Option<Vec<usize>>,
}

impl Reshape {
    /// A reshape to `target_shape` per sample; one entry may be `-1`.
    pub fn new<const N: usize>(target_shape: [i64; N]) -> Self {
        Self::from_slice(&target_shape)
    }

    /// [`Reshape::new`] from a slice.
    pub fn from_slice(target_shape: &[i64]) -> Self {
        Self::from_settings(ReshapeConfig {
            name: None,
            target_shape: target_shape.to_vec(),
            input_shape: None,
        })
    }

    pub(crate) fn from_settings(settings: ReshapeConfig) -> Self {
        Reshape { settings, output: None }
    }

    super::settings_builders!();
}

impl Layer for Reshape {
    fn class_name(&self) -> &'static str {
        "Reshape"
    }

    super::settings_accessors!();

    fn build(&mut self, input_shape: &[usize], _: &mut ParamStore, _: &mut StdRng) -> Result<Vec<usize>> {
        let target = &self.settings.target_shape;
        let size = input_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bad = |why: String| Error::invalid_argument("target_shape", format!("{target:?}"), why);
        let Some(size) = size else {
            return Err(bad(format!("inputs {} do not fit in memory", shape_str(input_shape))));
        };
        if target.iter().filter(|&&d| d == -1).count() > 1 || target.iter().any(|&d| d < -1) {
            return Err(bad("sizes must be positive, with at most one -1".into()));
        }
        let known = target.iter().filter(|&&d| d != -1).try_fold(1usize, |n, &d| n.checked_mul(d as usize));
        let output: Option<Vec<usize>> = match known {
            Some(0) | None => None,
            Some(known) if target.contains(&-1) => (size % known == 0)
                .then(|| target.iter().map(|&d| if d == -1 { size / known } else { d as usize }).collect()),
            Some(known) => (known == size).then(|| target.iter().map(|&d| d as usize).collect()),
        };
        let output = output.ok_or_else(|| {
            bad(format!("cannot hold the {size} elements of each sample of shape {}", shape_str(input_shape)))
        })?;
        self.output = Some(output.clone());
        Ok(output)
    }

    fn call<'t>(&self, x: Var<'t>, _: &mut CallContext<'_>) -> Var<'t> {
        let output = self.output.as_ref().expect("Reshape::call before build: models build layers first");
        let batch = x.shape()[0];
        let shape: Vec<usize> = std::iter::once(batch).chain(output.iter().copied()).collect();
        x.reshape(&shape)
    }

    fn weights(&self) -> &[ParamId] {
        &[]
    }
}
