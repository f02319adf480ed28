//! What [`EarlyStopping`](super::EarlyStopping) and [`ReduceLROnPlateau`](super::ReduceLROnPlateau) share: the
//! direction of a monitored quantity ([`Mode`]) and the checks on their settings.
use std::str::FromStr;

use crate::{Error, Result};

/// Whether a monitored quantity should go down or up (Keras' `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Inferred from the name: maximize if it contains `acc` (`accuracy`, `val_categorical_accuracy`, ...) or
    /// is `auc` / `val_auc`, minimize otherwise (`loss`, `val_loss`, `mse`, ...).
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// `Min` or `Max` for the quantity `monitor`: `Auto` resolved by name.
    ///
    /// ```
    /// use kerust::callbacks::Mode;
    /// assert_eq!(Mode::Auto.resolve("val_accuracy"), Mode::Max);
    /// assert_eq!(Mode::Auto.resolve("val_auc"), Mode::Max);
    /// assert_eq!(Mode::Auto.resolve("val_loss"), Mode::Min);
    /// assert_eq!(Mode::Min.resolve("accuracy"), Mode::Min);
    /// ```
    pub fn resolve(self, monitor: &str) -> Mode {
        match self {
            Mode::Auto => {
                let name = monitor.strip_prefix("val_").unwrap_or(monitor);
                if monitor.contains("acc") || name == "auc" {
                    Mode::Max
                } else {
                    Mode::Min
                }
            }
            other => other,
        }
    }
}

impl FromStr for Mode {
    type Err = Error;

    /// `"auto"`, `"min"` or `"max"`, as Keras spells them.
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "auto" => Ok(Mode::Auto),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            _ => Err(Error::invalid_argument("mode", s, "must be one of \"auto\", \"min\", \"max\"")),
        }
    }
}

/// The monitored name must not be empty.
pub(super) fn check_monitor(monitor: &str) -> Result<()> {
    if monitor.is_empty() {
        Err(Error::invalid_argument("monitor", "\"\"", "must name a log entry, e.g. \"val_loss\""))
    } else {
        Ok(())
    }
}

/// A finite number, at least 0.
pub(super) fn check_non_negative(name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid_argument(name, value, "must be a finite number >= 0"))
    }
}

/// The names in `logs`, comma-separated as in Keras' warning.
pub(super) fn available(logs: &super::Logs) -> String {
    logs.iter().map(|(name, _)| name).collect::<Vec<_>>().join(",")
}
