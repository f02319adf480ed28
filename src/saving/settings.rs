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
