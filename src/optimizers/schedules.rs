//! Learning-rate schedules (Keras' `keras.optimizers.schedules`): a learning rate that is a function of the
//! optimizer's step, given to any optimizer in place of a number.
//!
//! The optimizer evaluates its schedule at its step count before each update, as Keras does: the first update
//! uses the rate at step 0. The arithmetic is Keras' own, in `f32` as Keras runs it.
//!
//! ```
//! use kerust::optimizers::schedules::{ExponentialDecay, LearningRateSchedule, PiecewiseConstantDecay};
//! use kerust::optimizers::{Optimizer, SGD};
//!
//! // 0.1 * 0.5^(step / 10), as `keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)`.
//! let decay = ExponentialDecay::new(0.1, 10, 0.5);
//! assert_eq!(decay.value(0), 0.1);
//! assert!((decay.value(10) - 0.05).abs() < 1e-9);
//! let sgd = SGD::new().learning_rate(decay);
//! sgd.validate()?;
//! assert_eq!(Optimizer::learning_rate(&sgd), 0.1); // the rate at the current step, 0
//!
//! // 1.0 up to step 100, 0.5 up to step 110, then 0.1.
//! let steps = PiecewiseConstantDecay::new([100, 110], [1.0, 0.5, 0.1]);
//! assert_eq!((steps.value(100), steps.value(101), steps.value(111)), (1.0, 0.5, 0.1));
//! // A file's or a user's bad values are errors, with Keras' message.
//! let bad = LearningRateSchedule::from(PiecewiseConstantDecay::new([100], [1.0]));
//! assert!(bad.validate().unwrap_err().to_string().contains("1 less than the length of values"));
//! # Ok::<(), kerust::Error>(())
//! ```
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decimal;
use crate::formats::settings::f32_setting;
use crate::{Error, Result};

/// `initial_learning_rate * decay_rate ^ (step / decay_steps)`, with `step / decay_steps` rounded down if
/// `staircase`.
///
/// Keras: `keras.optimizers.schedules.ExponentialDecay(initial_learning_rate, decay_steps, decay_rate,
/// staircase=False)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExponentialDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    decay_rate: f32,
    staircase: bool,
}

impl ExponentialDecay {
    /// The schedule starting at `initial_learning_rate` (`>= 0`), multiplied by `decay_rate` (`>= 0`) every
    /// `decay_steps` (`> 0`) steps.
    pub fn new(initial_learning_rate: f32, decay_steps: u64, decay_rate: f32) -> Self {
        ExponentialDecay { initial_learning_rate, decay_steps, decay_rate, staircase: false }
    }

    /// Whether to decay at whole multiples of `decay_steps` only (default false).
    pub fn staircase(mut self, staircase: bool) -> Self {
        self.staircase = staircase;
        self
    }

    /// The learning rate at `step`.
    pub fn value(&self, step: u64) -> f32 {
        let mut p = step as f32 / self.decay_steps as f32;
        if self.staircase {
            p = p.floor();
        }
        self.initial_learning_rate * self.decay_rate.powf(p)
    }
}

/// Cosine decay from `initial_learning_rate` to `alpha * initial_learning_rate` over `decay_steps`, constant
/// after; with a `warmup_target`, first a linear warmup from `initial_learning_rate` to `warmup_target` over
/// `warmup_steps`, then the decay from `warmup_target`.
///
/// Keras: `keras.optimizers.schedules.CosineDecay(initial_learning_rate, decay_steps, alpha=0.0,
/// warmup_target=None, warmup_steps=0)`.
#[derive(Clone, Debug, PartialEq)]
pub struct CosineDecay {
    initial_learning_rate: f32,
    decay_steps: u64,
    alpha: f32,
    warmup_target: Option<f32>,
    warmup_steps: u64,
}

impl CosineDecay {
    /// The schedule from `initial_learning_rate` (`>= 0`) over `decay_steps` (`> 0`) steps, to 0.
    pub fn new(initial_learning_rate: f32, decay_steps: u64) -> Self {
        CosineDecay { initial_learning_rate, decay_steps, alpha: 0.0, warmup_target: None, warmup_steps: 0 }
    }

    /// The final rate as a fraction of the rate decayed from, in `[0, 1]` (default 0).
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }

    /// A linear warmup to `target` (`>= 0`) over `steps` steps before the decay (default: none).
    pub fn warmup(mut self, target: f32, steps: u64) -> Self {
        self.warmup_target = Some(target);
        self.warmup_steps = steps;
        self
    }

    /// The learning rate at `step`.
    pub fn value(&self, step: u64) -> f32 {
        let decay_steps = self.decay_steps as f32;
        // Keras computes `1 - alpha` from the Python float, then rounds it to f32.
        let one_minus_alpha = (1.0 - decimal(self.alpha)) as f32;
        let decay = |step: f32, from: f32| {
            let completed_fraction = step / decay_steps;
            let cosine_decayed = 0.5 * (1.0 + (std::f32::consts::PI * completed_fraction).cos());
            from * (one_minus_alpha * cosine_decayed + self.alpha)
        };
        let step = step as f32;
        match self.warmup_target {
            None => decay(step.min(decay_steps), self.initial_learning_rate),
            Some(target) => {
                let warmup_steps = self.warmup_steps as f32;
                let step = step.min(decay_steps + warmup_steps);
                if step < warmup_steps {
                    let completed_fraction = step / warmup_steps;
                    (target - self.initial_learning_rate) * completed_fraction + self.initial_learning_rate
                } else {
                    decay(step - warmup_steps, target)
                }
            }
        }
    }
}

/// `values[0]` while `step <= boundaries[0]`, `values[1]` while `step <= boundaries[1]`, ..., and the last
/// value after the last boundary.
///
/// Keras: `keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PiecewiseConstantDecay {
    boundaries: Vec<u64>,
    values: Vec<f32>,
}

impl PiecewiseConstantDecay {
    /// The schedule of `values` (one more than `boundaries`, each `>= 0`) between strictly increasing step
    /// `boundaries`.
    pub fn new(boundaries: impl AsRef<[u64]>, values: impl AsRef<[f32]>) -> Self {
        PiecewiseConstantDecay { boundaries: boundaries.as_ref().to_vec(), values: values.as_ref().to_vec() }
    }

    /// The learning rate at `step`.
    pub fn value(&self, step: u64) -> f32 {
        let i = self.boundaries.iter().take_while(|&&b| step > b).count();
        self.values.get(i).copied().unwrap_or(f32::NAN)
    }
}

/// One of the schedules, as an optimizer holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum LearningRateSchedule {
    /// [`ExponentialDecay`].
    ExponentialDecay(ExponentialDecay),
    /// [`CosineDecay`].
    CosineDecay(CosineDecay),
    /// [`PiecewiseConstantDecay`].
    PiecewiseConstantDecay(PiecewiseConstantDecay),
}

impl From<ExponentialDecay> for LearningRateSchedule {
    fn from(s: ExponentialDecay) -> Self {
        LearningRateSchedule::ExponentialDecay(s)
    }
}

impl From<CosineDecay> for LearningRateSchedule {
    fn from(s: CosineDecay) -> Self {
        LearningRateSchedule::CosineDecay(s)
    }
}

impl From<PiecewiseConstantDecay> for LearningRateSchedule {
    fn from(s: PiecewiseConstantDecay) -> Self {
        LearningRateSchedule::PiecewiseConstantDecay(s)
    }
}

fn rate(name: &'static str, value: f32) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_argument(name, value, "must be a non-negative finite number"))
    }
}

fn decay_steps(decay_steps: u64) -> Result<()> {
    if decay_steps == 0 {
        Err(Error::invalid_argument("decay_steps", 0, "Argument `decay_steps` must be > 0"))
    } else {
        Ok(())
    }
}

impl LearningRateSchedule {
    /// Keras' class name, e.g. `"ExponentialDecay"`.
    pub fn class_name(&self) -> &'static str {
        match self {
            LearningRateSchedule::ExponentialDecay(_) => "ExponentialDecay",
            LearningRateSchedule::CosineDecay(_) => "CosineDecay",
            LearningRateSchedule::PiecewiseConstantDecay(_) => "PiecewiseConstantDecay",
        }
    }

    /// The learning rate at `step` (the optimizer's count of updates before this one).
    pub fn value(&self, step: u64) -> f32 {
        match self {
            LearningRateSchedule::ExponentialDecay(s) => s.value(step),
            LearningRateSchedule::CosineDecay(s) => s.value(step),
            LearningRateSchedule::PiecewiseConstantDecay(s) => s.value(step),
        }
    }

    /// Checks the settings: rates non-negative and finite, `decay_steps > 0`, `alpha` in `[0, 1]`, one more
    /// value than boundaries, boundaries strictly increasing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the setting and its value.
    pub fn validate(&self) -> Result<()> {
        match self {
            LearningRateSchedule::ExponentialDecay(s) => {
                rate("initial_learning_rate", s.initial_learning_rate)?;
                decay_steps(s.decay_steps)?;
                rate("decay_rate", s.decay_rate)
            }
            LearningRateSchedule::CosineDecay(s) => {
                rate("initial_learning_rate", s.initial_learning_rate)?;
                decay_steps(s.decay_steps)?;
                if !(0.0..=1.0).contains(&s.alpha) {
                    return Err(Error::invalid_argument("alpha", s.alpha, "must be in [0, 1]"));
                }
                s.warmup_target.map_or(Ok(()), |t| rate("warmup_target", t))
            }
            LearningRateSchedule::PiecewiseConstantDecay(s) => {
                if s.boundaries.len() + 1 != s.values.len() || s.boundaries.is_empty() {
                    return Err(Error::invalid_argument(
                        "boundaries",
                        format!(
                            "{:?} of length {}, and values={:?} of length {}",
                            s.boundaries,
                            s.boundaries.len(),
                            s.values,
                            s.values.len()
                        ),
                        "at least one boundary, and the length of boundaries should be 1 less than the \
                         length of values",
                    ));
                }
                if let Some(w) = s.boundaries.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(Error::invalid_argument(
                        "boundaries",
                        format!("{:?}", s.boundaries),
                        format!("must be strictly increasing ({} is followed by {})", w[0], w[1]),
                    ));
                }
                s.values.iter().try_for_each(|&v| rate("values", v))
            }
        }
    }

    /// Keras' serialized form, `{"class_name": "ExponentialDecay", "config": {...}}`, with Keras' argument
    /// names (a model file stores it as the optimizer's `learning_rate`).
    pub fn config(&self) -> Value {
        let config = match self {
            LearningRateSchedule::ExponentialDecay(s) => serde_json::json!({
                "initial_learning_rate": decimal(s.initial_learning_rate),
                "decay_steps": s.decay_steps,
                "decay_rate": decimal(s.decay_rate),
                "staircase": s.staircase,
            }),
            LearningRateSchedule::CosineDecay(s) => serde_json::json!({
                "initial_learning_rate": decimal(s.initial_learning_rate),
                "decay_steps": s.decay_steps,
                "alpha": decimal(s.alpha),
                "warmup_target": s.warmup_target.map(decimal),
                "warmup_steps": s.warmup_steps,
            }),
            LearningRateSchedule::PiecewiseConstantDecay(s) => serde_json::json!({
                "boundaries": s.boundaries,
                "values": s.values.iter().map(|&v| decimal(v)).collect::<Vec<_>>(),
            }),
        };
        serde_json::json!({ "class_name": self.class_name(), "config": config })
    }

    /// The schedule of a [`LearningRateSchedule::config`], read strictly: every setting is needed, no other is
    /// accepted, a number must be exactly an `f32` (steps and boundaries: non-negative integers), and the
    /// result must pass [`LearningRateSchedule::validate`].
    ///
    /// ```
    /// use kerust::optimizers::schedules::{CosineDecay, LearningRateSchedule};
    ///
    /// let schedule = LearningRateSchedule::from(CosineDecay::new(0.1, 100).alpha(0.2).warmup(0.5, 10));
    /// assert_eq!(LearningRateSchedule::from_config(&schedule.config())?, schedule);
    /// let mut bad = schedule.config();
    /// bad["config"]["decay_steps"] = 0.into();
    /// assert!(LearningRateSchedule::from_config(&bad).unwrap_err().to_string().contains("decay_steps"));
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownName`] for an unknown class; [`Error::InvalidArgument`] for a missing, unknown, mistyped
    /// or invalid setting.
    pub fn from_config(config: &Value) -> Result<Self> {
        const KNOWN: &str = "ExponentialDecay, CosineDecay, PiecewiseConstantDecay";
        let bad = |e: serde_json::Error| {
            Error::invalid_argument("learning_rate schedule", config, format!("not a schedule's config: {e}"))
        };
        let named = Named::deserialize(config).map_err(bad)?;
        let f = |key: &str, value: f64| f32_setting("learning_rate schedule", key, value);
        let schedule: LearningRateSchedule = match named.class_name.as_str() {
            "ExponentialDecay" => {
                let c = ExponentialConfig::deserialize(&named.config).map_err(bad)?;
                ExponentialDecay {
                    initial_learning_rate: f("initial_learning_rate", c.initial_learning_rate)?,
                    decay_steps: c.decay_steps,
                    decay_rate: f("decay_rate", c.decay_rate)?,
                    staircase: c.staircase,
                }
                .into()
            }
            "CosineDecay" => {
                let c = CosineConfig::deserialize(&named.config).map_err(bad)?;
                CosineDecay {
                    initial_learning_rate: f("initial_learning_rate", c.initial_learning_rate)?,
                    decay_steps: c.decay_steps,
                    alpha: f("alpha", c.alpha)?,
                    warmup_target: c.warmup_target.map(|t| f("warmup_target", t)).transpose()?,
                    warmup_steps: c.warmup_steps,
                }
                .into()
            }
            "PiecewiseConstantDecay" => {
                let c = PiecewiseConfig::deserialize(&named.config).map_err(bad)?;
                let values = c.values.iter().map(|&v| f("values", v)).collect::<Result<Vec<_>>>()?;
                PiecewiseConstantDecay { boundaries: c.boundaries, values }.into()
            }
            other => {
                return Err(Error::UnknownName {
                    kind: "learning rate schedule",
                    name: other.into(),
                    known: KNOWN.into(),
                })
            }
        };
        schedule.validate()?;
        Ok(schedule)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    class_name: String,
    config: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExponentialConfig {
    initial_learning_rate: f64,
    decay_steps: u64,
    decay_rate: f64,
    staircase: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineConfig {
    initial_learning_rate: f64,
    decay_steps: u64,
    alpha: f64,
    warmup_target: Option<f64>,
    warmup_steps: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PiecewiseConfig {
    boundaries: Vec<u64>,
    values: Vec<f64>,
}
