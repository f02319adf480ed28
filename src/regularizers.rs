//! Weight regularizers (Keras' `keras.regularizers`): a penalty on a weight's values that training adds to the
//! loss, given to a layer as `kernel_regularizer` or `bias_regularizer`.
//!
//! As in Keras, the penalties of every trainable weight are computed from the weights before the step and
//! added to the compiled loss; the logged `loss` (in `fit` and `evaluate`) includes them, an output's own
//! `<output>_loss` does not.
//!
//! ```
//! use kerust::layers::Dense;
//! use kerust::regularizers::Regularizer;
//!
//! // Keras: Dense(10, kernel_regularizer=L2(1e-4), bias_regularizer="l1")
//! let dense = Dense::new(10).kernel_regularizer(Regularizer::l2(1e-4)).bias_regularizer("l1");
//! assert_eq!("l1".parse::<Regularizer>()?, Regularizer::L1 { l1: 0.01 });
//! assert!(Regularizer::l1(-1.0).validate().is_err());
//! # Ok::<(), kerust::Error>(())
//! ```
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::autodiff::Var;
use crate::formats::settings::f32_setting;
use crate::{Error, Result};

/// A penalty on a weight `x`, with Keras' formulas.
///
/// At `x = 0` exactly, the gradient of `|x|` is taken as 0 (Keras' TensorFlow backend; its JAX backend takes 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    /// `l1 * sum(|x|)`. Keras: `keras.regularizers.L1(l1=0.01)`, by name `"l1"`.
    L1 {
        /// The factor, `>= 0`.
        l1: f32,
    },
    /// `l2 * sum(x^2)` (no 1/2). Keras: `keras.regularizers.L2(l2=0.01)`, by name `"l2"`.
    L2 {
        /// The factor, `>= 0`.
        l2: f32,
    },
    /// `l1 * sum(|x|) + l2 * sum(x^2)`, a term left out when its factor is 0. Keras:
    /// `keras.regularizers.L1L2(l1=0.0, l2=0.0)`, by name `"l1l2"`.
    L1L2 {
        /// The L1 factor, `>= 0`.
        l1: f32,
        /// The L2 factor, `>= 0`.
        l2: f32,
    },
}

crate::spec::impl_spec!(Regularizer);

/// The names [`Regularizer`]'s `FromStr` accepts (Keras' class names and their snake case).
pub const KNOWN_NAMES: &[&str] = &["l1", "l2", "l1l2", "L1", "L2", "L1L2"];

impl std::str::FromStr for Regularizer {
    type Err = Error;

    /// A regularizer with Keras' defaults from its name: `"l1"` (0.01), `"l2"` (0.01), `"l1l2"` (0, 0).
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "l1" | "L1" => Ok(Regularizer::L1 { l1: 0.01 }),
            "l2" | "L2" => Ok(Regularizer::L2 { l2: 0.01 }),
            "l1l2" | "L1L2" => Ok(Regularizer::L1L2 { l1: 0.0, l2: 0.0 }),
            _ => Err(Error::UnknownName {
                kind: "regularizer",
                name: name.into(),
                known: KNOWN_NAMES.join(", "),
            }),
        }
    }
}

impl Regularizer {
    /// `L1(l1)`.
    pub fn l1(l1: f32) -> Self {
        Regularizer::L1 { l1 }
    }

    /// `L2(l2)`.
    pub fn l2(l2: f32) -> Self {
        Regularizer::L2 { l2 }
    }

    /// `L1L2(l1, l2)`.
    pub fn l1_l2(l1: f32, l2: f32) -> Self {
        Regularizer::L1L2 { l1, l2 }
    }

    /// Keras' class name: `"L1"`, `"L2"` or `"L1L2"`.
    pub fn class_name(&self) -> &'static str {
        match self {
            Regularizer::L1 { .. } => "L1",
            Regularizer::L2 { .. } => "L2",
            Regularizer::L1L2 { .. } => "L1L2",
        }
    }

    fn factors(&self) -> Vec<(&'static str, f32)> {
        match *self {
            Regularizer::L1 { l1 } => vec![("l1", l1)],
            Regularizer::L2 { l2 } => vec![("l2", l2)],
            Regularizer::L1L2 { l1, l2 } => vec![("l1", l1), ("l2", l2)],
        }
    }

    /// Checks the factors, as Keras: each a non-negative finite number.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the factor and its value.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in self.factors() {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(Error::invalid_argument(
                    name,
                    value,
                    format!("Invalid value for argument {name}: expected a non-negative float"),
                ));
            }
        }
        Ok(())
    }

    /// The penalty of the weight `x` on its tape, a scalar.
    pub fn penalty<'t>(&self, x: Var<'t>) -> Var<'t> {
        let l1 = |f: f32| x.abs().sum().mul_scalar(f);
        let l2 = |f: f32| x.square().sum().mul_scalar(f);
        match *self {
            Regularizer::L1 { l1: f } => l1(f),
            Regularizer::L2 { l2: f } => l2(f),
            Regularizer::L1L2 { l1: a, l2: b } => match (a != 0.0, b != 0.0) {
                (true, true) => l1(a).add(l2(b)),
                (true, false) => l1(a),
                (false, true) => l2(b),
                // Keras' zero tensor: a penalty of 0 with no gradient.
                (false, false) => x.sum().mul_scalar(0.0),
            },
        }
    }
}

/// A regularizer as a model file stores it: `{"class_name": "L2", "config": {"l2": 0.01}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegularizerConfig {
    class_name: String,
    config: BTreeMap<String, f64>,
}

impl From<&Regularizer> for RegularizerConfig {
    fn from(r: &Regularizer) -> Self {
        RegularizerConfig {
            class_name: r.class_name().into(),
            config: r.factors().into_iter().map(|(k, v)| (k.to_string(), decimal(v))).collect(),
        }
    }
}

impl TryFrom<&RegularizerConfig> for Regularizer {
    type Error = Error;

    /// Strict: Keras' class name, exactly its settings, each exactly an `f32` and valid.
    fn try_from(c: &RegularizerConfig) -> Result<Self> {
        let mut r = match c.class_name.as_str() {
            "L1" => Regularizer::L1 { l1: 0.0 },
            "L2" => Regularizer::L2 { l2: 0.0 },
            "L1L2" => Regularizer::L1L2 { l1: 0.0, l2: 0.0 },
            other => {
                return Err(Error::UnknownName {
                    kind: "regularizer",
                    name: other.into(),
                    known: "L1, L2, L1L2".into(),
                })
            }
        };
        let keys: Vec<&str> = r.factors().iter().map(|(k, _)| *k).collect();
        if c.config.keys().map(String::as_str).ne(keys.iter().copied()) {
            return Err(Error::invalid_argument(
                "regularizer config",
                format!("{} with {:?}", c.class_name, c.config.keys().collect::<Vec<_>>()),
                format!("{} takes exactly the settings {}", c.class_name, keys.join(", ")),
            ));
        }
        let get = |k: &str| f32_setting("regularizer config", k, c.config[k]);
        match &mut r {
            Regularizer::L1 { l1 } => *l1 = get("l1")?,
            Regularizer::L2 { l2 } => *l2 = get("l2")?,
            Regularizer::L1L2 { l1, l2 } => {
                *l1 = get("l1")?;
                *l2 = get("l2")?;
            }
        }
        r.validate()?;
        Ok(r)
    }
}

/// A factor as the `f64` of its shortest decimal form (`0.01f32` is written `0.01`).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Serde for an optional regularizer setting of a layer (`null` or absent: none).
pub(crate) mod optional {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Regularizer, RegularizerConfig};
    use crate::spec::Spec;

    pub(crate) fn serialize<S: Serializer>(
        spec: &Option<Spec<Regularizer>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match spec {
            None => s.serialize_none(),
            Some(spec) => RegularizerConfig::from(&spec.resolve().map_err(S::Error::custom)?).serialize(s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Spec<Regularizer>>, D::Error> {
        let value = Option::<serde_json::Value>::deserialize(d)?;
        let Some(value) = value else { return Ok(None) };
        let c = RegularizerConfig::deserialize(&value).map_err(|e| {
            D::Error::custom(format!(
                "a regularizer is stored as {{\"class_name\": \"L2\", \"config\": {{\"l2\": 0.01}}}} or null, \
                 not {value} ({e})"
            ))
        })?;
        Regularizer::try_from(&c).map(|r| Some(Spec::Value(r))).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_bad_ones_fail() {
        for r in [Regularizer::l1(0.01), Regularizer::l2(0.3), Regularizer::l1_l2(0.0, 1e-4)] {
            assert_eq!(Regularizer::try_from(&RegularizerConfig::from(&r)).unwrap(), r);
        }
        let parse = |json: &str| {
            let c: RegularizerConfig = serde_json::from_str(json).unwrap();
            Regularizer::try_from(&c).map_err(|e| e.to_string())
        };
        assert!(parse(r#"{"class_name": "L2", "config": {"l2": -1.0}}"#)
            .unwrap_err()
            .contains("non-negative"));
        assert!(parse(r#"{"class_name": "L2", "config": {"l2": 1e-50}}"#).unwrap_err().contains("l2"));
        assert!(parse(r#"{"class_name": "L2", "config": {"l1": 0.1}}"#).unwrap_err().contains("exactly"));
        assert!(parse(r#"{"class_name": "L1L2", "config": {"l1": 0.1}}"#).unwrap_err().contains("l2"));
        assert!(parse(r#"{"class_name": "Orthogonal", "config": {}}"#).unwrap_err().contains("L1L2"));
        assert!("l3".parse::<Regularizer>().unwrap_err().to_string().contains("l1l2"));
    }
}
