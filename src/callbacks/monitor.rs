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

/// Where `min_delta` is applied when comparing: Keras' `EarlyStopping` shifts the value
/// (`value - min_delta > reference`), `ReduceLROnPlateau` shifts the reference (`value > reference + min_delta`);
/// the two round differently, so each callback keeps its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Margin {
    /// `value ∓ min_delta` compared with the reference.
    OnValue,
    /// `value` compared with `reference ± min_delta`.
    OnReference,
}

/// The watch on one monitored quantity that [`EarlyStopping`](super::EarlyStopping) and
/// [`ReduceLROnPlateau`](super::ReduceLROnPlateau) share: its name and settings, the best value and the epochs
/// waited so far in the current fit, and a warning printed once when the logs lack it.
#[derive(Clone, Debug)]
pub(super) struct Monitor {
    pub(super) monitor: String,
    pub(super) mode: Mode,
    pub(super) min_delta: f32,
    margin: Margin,
    /// The first words of the warning, e.g. `"Early stopping conditioned on"`, and what ends it.
    warning: (&'static str, &'static str),
    // State of the current fit.
    resolved: Mode,
    pub(super) best: f32,
    pub(super) wait: usize,
    warned: bool,
}

impl Monitor {
    /// Watches `"val_loss"` in mode `Auto`.
    pub(super) fn new(min_delta: f32, margin: Margin, warning: (&'static str, &'static str)) -> Self {
        Monitor {
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            min_delta,
            margin,
            warning,
            resolved: Mode::Min,
            best: f32::INFINITY,
            wait: 0,
            warned: false,
        }
    }

    /// Resets the state for a new fit: the mode resolved, no best value yet, nothing waited or warned.
    pub(super) fn begin(&mut self) {
        self.resolved = self.mode.resolve(&self.monitor);
        self.best = if self.resolved == Mode::Max { f32::NEG_INFINITY } else { f32::INFINITY };
        self.wait = 0;
        self.warned = false;
    }

    /// The monitored value in `logs`, or `None` after a warning on standard error (the first time only).
    pub(super) fn current(&mut self, logs: &super::Logs) -> Option<f32> {
        let value = logs.get(&self.monitor);
        if value.is_none() && !self.warned {
            self.warned = true;
            let (what, end) = self.warning;
            eprintln!(
                "WARNING: {what} metric `{}` which is not available. Available metrics are: {}{end}",
                self.monitor,
                available(logs)
            );
        }
        value
    }

    /// Whether `value` is better than `reference` by more than `min_delta`, in the resolved mode.
    pub(super) fn is_improvement(&self, value: f32, reference: f32) -> bool {
        match (self.resolved, self.margin) {
            (Mode::Max, Margin::OnValue) => value - self.min_delta > reference,
            (_, Margin::OnValue) => value + self.min_delta < reference,
            (Mode::Max, Margin::OnReference) => value > reference + self.min_delta,
            (_, Margin::OnReference) => value < reference - self.min_delta,
        }
    }
}
