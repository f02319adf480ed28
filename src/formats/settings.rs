//! Strict reading of numeric settings from a model file: what loads is what was saved.
//!
//! Optimizer, loss, activation and initializer settings are stored as JSON numbers (`f64`), and booleans as
//! `0` or `1` (format_version 1). A setting is an `f32` in kerust, so a stored number must round-trip: the
//! `f32` nearest to it, written back the way kerust writes settings (its shortest decimal form, or its exact
//! `f64` value), must give the number again. `1e-50` (which would become `0`), `0.9999999999` (which would
//! become `1`) and `1e308` (which would become `inf`) are errors naming the setting and the value, not silently
//! different settings; a boolean must be exactly `0` or `1`.
use crate::{Error, Result};

/// The `f32` that `value` (setting `setting` of a `kind` config, e.g. `"optimizer config"`) stands for.
///
/// # Errors
/// [`Error::InvalidArgument`] if `value` does not round-trip through `f32`.
pub(crate) fn f32_setting(kind: &'static str, setting: &str, value: f64) -> Result<f32> {
    let x = value as f32;
    let exact = f64::from(x) == value;
    let shortest = x.is_finite() && x.to_string().parse::<f64>().is_ok_and(|d| d == value);
    if (exact && x.is_finite()) || shortest {
        Ok(x)
    } else {
        Err(Error::invalid_argument(
            kind,
            format!("{setting}={value:?}"),
            format!(
                "the setting `{setting}` is a 32-bit float: {value:?} would become {x:?}, a different setting; \
                 save the model again with the value you mean"
            ),
        ))
    }
}

/// The boolean that `value` (`0` or `1`) stands for.
///
/// # Errors
/// [`Error::InvalidArgument`] for any other number.
pub(crate) fn bool_setting(kind: &'static str, setting: &str, value: f64) -> Result<bool> {
    if value == 0.0 {
        Ok(false)
    } else if value == 1.0 {
        Ok(true)
    } else {
        Err(Error::invalid_argument(
            kind,
            format!("{setting}={value:?}"),
            format!("the setting `{setting}` is a boolean, stored as 0 (false) or 1 (true)"),
        ))
    }
}

/// A number of a file as an `f64`, exactly: an integer (which serde_json reads as a `u64` or `i64`) that has
/// no exact `f64` value (beyond 2^53) is an error naming it, rather than the nearest `f64`, which the strict
/// `f32` check of a setting would then accept as a different number. Use:
/// `#[serde(deserialize_with = "crate::formats::settings::exact_f64")]`.
pub(crate) fn exact_f64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    d.deserialize_any(ExactF64)
}

/// [`exact_f64`] for every value of a map of settings; an error names the setting.
pub(crate) fn exact_f64_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<std::collections::BTreeMap<String, f64>, D::Error> {
    d.deserialize_map(ExactMap)
}

/// [`exact_f64`] for a named setting: an error names it.
pub(crate) fn exact_setting<'de, D: serde::Deserializer<'de>>(
    setting: &str,
    d: D,
) -> std::result::Result<f64, D::Error> {
    use serde::de::Error as _;
    exact_f64(d).map_err(|e| D::Error::custom(format!("setting `{setting}`: {e}")))
}

struct Exact(f64);

impl<'de> serde::Deserialize<'de> for Exact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        exact_f64(d).map(Exact)
    }
}

struct ExactMap;

impl<'de> serde::de::Visitor<'de> for ExactMap {
    type Value = std::collections::BTreeMap<String, f64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of settings to numbers")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut out = std::collections::BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value =
                map.next_value::<Exact>().map_err(|e| A::Error::custom(format!("setting `{key}`: {e}")))?;
            if out.insert(key.clone(), value.0).is_some() {
                return Err(A::Error::custom(format!("setting `{key}` is given twice")));
            }
        }
        Ok(out)
    }
}

struct ExactF64;

impl serde::de::Visitor<'_> for ExactF64 {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<f64, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<f64, E> {
        let x = v as f64;
        // `x as u128` is exact for every `x` a u64 rounds to (at most 2^64).
        if x as u128 == u128::from(v) {
            Ok(x)
        } else {
            Err(E::custom(inexact(v, x)))
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<f64, E> {
        let x = v as f64;
        if x as i128 == i128::from(v) {
            Ok(x)
        } else {
            Err(E::custom(inexact(v, x)))
        }
    }
}

fn inexact(v: impl std::fmt::Display, x: f64) -> String {
    format!("the integer {v} has no exact 64-bit float value (it would be read as {x:?}, a different number)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_or_fail() {
        assert_eq!(f32_setting("c", "lr", 0.01).unwrap(), 0.01f32);
        assert_eq!(f32_setting("c", "lr", f64::from(0.2f32)).unwrap(), 0.2f32);
        assert_eq!(f32_setting("c", "lr", -0.0).unwrap().to_bits(), (-0.0f32).to_bits());
        for bad in [1e-50, 0.9999999999, 1e308, 0.1 + 1e-12, f64::NAN, f64::INFINITY] {
            let e = f32_setting("optimizer config", "learning_rate", bad).unwrap_err().to_string();
            assert!(e.contains("learning_rate") && e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(bool_setting("c", "nesterov", 1.0).unwrap());
        assert!(!bool_setting("c", "nesterov", 0.0).unwrap());
        for bad in [0.5, 2.0, -1.0] {
            assert!(bool_setting("c", "nesterov", bad).unwrap_err().to_string().contains("nesterov"));
        }
    }
}
