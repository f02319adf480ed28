//! Optimizers with Keras 3's update rules, defaults and names.
//!
//! Each optimizer updates, in place, every trainable parameter that has a gradient, with one kernel of the
//! parameter's device ([`OptimizerKernels`](crate::device::OptimizerKernels)) over the parameter, its gradient
//! and its state. State buffers (momenta, moments, accumulators) live on the parameter's device; they are created
//! for a parameter on its first update and reused after, so a step allocates nothing once every parameter has been
//! updated once. [`Optimizer::state`] and [`Optimizer::load_state`] save and restore them (with the step count)
//! so that training resumes exactly where it stopped.
//!
//! ```
//! use kerust::autodiff::{Gradients, ParamStore, Tape};
//! use kerust::optimizers::{Optimizer, SGD};
//! use ndarray::array;
//!
//! let mut params = ParamStore::new();
//! let w = params.add("w", array![1.0f32, -2.0].into_dyn(), true);
//! let mut grads = Gradients::new();
//! {
//!     let tape = Tape::new(&params);
//!     let loss = tape.param(w).square().sum(); // gradient 2 w = [2, -4]
//!     tape.backward(loss, &mut grads).unwrap();
//! }
//! let mut sgd = SGD::new().learning_rate(0.1);
//! sgd.validate().unwrap();
//! sgd.apply(&mut params, &grads); // w -= 0.1 * g
//! assert_eq!(params.value(w), &array![0.8f32, -1.6].into_dyn());
//! assert_eq!(sgd.iterations(), 1);
//! ```

/// The [`Optimizer`] methods that are the same in every optimizer: `name` returns the Keras name `$name`;
/// `learning_rate`, `set_learning_rate`, the schedule's methods and `iterations` read or write the fields
/// `learning_rate` (a [`LearningRate`]) and `iterations` of `self`, or of `self.$inner` (AdamW's inner Adam).
/// Invoked inside each `impl Optimizer`.
macro_rules! common_methods {
    ($name:literal $(, $inner:ident)?) => {
        fn name(&self) -> &str {
            $name
        }

        fn learning_rate(&self) -> f32 {
            self$(.$inner)?.learning_rate.at(self$(.$inner)?.iterations)
        }

        fn set_learning_rate(&mut self, learning_rate: f32) {
            self$(.$inner)?.learning_rate = $crate::optimizers::LearningRate::Constant(learning_rate);
        }

        fn learning_rate_schedule(&self) -> Option<&$crate::optimizers::schedules::LearningRateSchedule> {
            match &self$(.$inner)?.learning_rate {
                $crate::optimizers::LearningRate::Schedule(s) => Some(s),
                $crate::optimizers::LearningRate::Constant(_) => None,
            }
        }

        fn set_learning_rate_schedule(
            &mut self,
            schedule: $crate::optimizers::schedules::LearningRateSchedule,
        ) -> $crate::Result<()> {
            self$(.$inner)?.learning_rate = $crate::optimizers::LearningRate::Schedule(schedule);
            Ok(())
        }

        fn iterations(&self) -> u64 {
            self$(.$inner)?.iterations
        }
    };
}

/// The builder methods `learning_rate` (a number or a schedule) and the clipping settings `clipnorm`,
/// `clipvalue`, `global_clipnorm`, on the fields `learning_rate` and `clipping` of `self` or `self.$inner`.
macro_rules! common_builders {
    ($($inner:ident)?) => {
        /// The step size: a number `>= 0`, or a schedule from [`schedules`](crate::optimizers::schedules)
        /// (Keras' `learning_rate=`).
        pub fn learning_rate(mut self, learning_rate: impl Into<$crate::optimizers::LearningRate>) -> Self {
            self$(.$inner)?.learning_rate = learning_rate.into();
            self
        }

        /// Clips each weight's gradient to this L2 norm, `g * clipnorm / max(norm(g), clipnorm)`, before the
        /// update (Keras' `clipnorm=`). At most one of the three clipping settings may be set.
        pub fn clipnorm(mut self, clipnorm: f32) -> Self {
            self$(.$inner)?.clipping.clipnorm = Some(clipnorm);
            self
        }

        /// Clips each gradient element to `[-clipvalue, clipvalue]` before the update (Keras' `clipvalue=`).
        pub fn clipvalue(mut self, clipvalue: f32) -> Self {
            self$(.$inner)?.clipping.clipvalue = Some(clipvalue);
            self
        }

        /// Scales all gradients together so that their joint L2 norm is at most this, before the update (Keras'
        /// `global_clipnorm=`).
        pub fn global_clipnorm(mut self, global_clipnorm: f32) -> Self {
            self$(.$inner)?.clipping.global_clipnorm = Some(global_clipnorm);
            self
        }
    };
}

mod adagrad;
mod adam;
mod clipping;
mod config;
mod rmsprop;
pub mod schedules;
mod sgd;
mod slots;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use config::{from_config, from_config_with_schedule};
pub use rmsprop::RMSprop;
pub use sgd::SGD;

use crate::autodiff::{Gradients, ParamId, ParamStore, Tensor};
use crate::device::Storage;
use crate::{Error, Result};

/// An optimizer: updates every trainable parameter that has a gradient, in place.
pub trait Optimizer: Send + Sync {
    /// The Keras name, e.g. `"sgd"`.
    fn name(&self) -> &str;

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Sets a constant learning rate (used by `LearningRateScheduler` and `ReduceLROnPlateau`), replacing
    /// any schedule.
    fn set_learning_rate(&mut self, learning_rate: f32);

    /// The learning-rate schedule, if the optimizer was given one instead of a number.
    fn learning_rate_schedule(&self) -> Option<&schedules::LearningRateSchedule> {
        None
    }

    /// Makes the learning rate follow `schedule` (Keras' `optimizer.learning_rate = schedule`).
    ///
    /// # Errors
    /// The default: this optimizer does not take a schedule (the built-in ones all do).
    fn set_learning_rate_schedule(&mut self, schedule: schedules::LearningRateSchedule) -> Result<()> {
        Err(Error::invalid_argument(
            "learning_rate",
            schedule.class_name(),
            format!("the optimizer `{}` does not take a learning-rate schedule", self.name()),
        ))
    }

    /// The number of updates applied so far.
    fn iterations(&self) -> u64;

    /// Applies one update from `grads` to the trainable parameters of `params`.
    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients);

    /// Checks the settings (e.g. a negative learning rate, a momentum outside `[0, 1]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the setting and its value.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The state arrays needed to resume training, named `<slot>/<parameter index>`, e.g. `m/3`. With
    /// [`Optimizer::iterations`] (an integer, kept exact: it is not part of these `f32` arrays), it is
    /// everything [`Optimizer::load_state`] needs.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores the step count `iterations` and what [`Optimizer::state`] returned, replacing all current state.
    ///
    /// # Errors
    /// `iterations` above [`MAX_ITERATIONS`]; an unknown or repeated name, a parameter with only some of its
    /// slots, or a shape that disagrees with another slot of the same parameter or with the state already
    /// held. The optimizer is unchanged on error.
    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()>;

    /// The settings by Keras' argument names (`learning_rate`, `momentum`, ...); booleans as 0 or 1. A
    /// clipping setting (`clipnorm`, ...) is listed when it is set; `learning_rate` is not listed when the rate
    /// is a schedule ([`Optimizer::learning_rate_schedule`] has it).
    fn config(&self) -> Vec<(String, f64)>;
}

/// An optimizer's learning rate: a number, or a schedule evaluated at the optimizer's step (Keras accepts
/// either as `learning_rate=`). Optimizers' `learning_rate` builders take anything that converts into it.
#[derive(Clone, Debug, PartialEq)]
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f32),
    /// The rate of the schedule at the optimizer's step count before the update.
    Schedule(schedules::LearningRateSchedule),
}

impl LearningRate {
    /// The rate for the update after `iterations` updates.
    pub fn at(&self, iterations: u64) -> f32 {
        match self {
            LearningRate::Constant(lr) => *lr,
            LearningRate::Schedule(s) => s.value(iterations),
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            LearningRate::Constant(lr) => check_learning_rate(*lr),
            LearningRate::Schedule(s) => s.validate(),
        }
    }

    /// `("learning_rate", rate)` for a constant rate; nothing for a schedule.
    fn config(&self) -> Option<(String, f64)> {
        match self {
            LearningRate::Constant(lr) => Some(("learning_rate".into(), decimal(*lr))),
            LearningRate::Schedule(_) => None,
        }
    }
}

impl From<f32> for LearningRate {
    fn from(lr: f32) -> Self {
        LearningRate::Constant(lr)
    }
}

impl From<schedules::LearningRateSchedule> for LearningRate {
    fn from(s: schedules::LearningRateSchedule) -> Self {
        LearningRate::Schedule(s)
    }
}

impl From<schedules::ExponentialDecay> for LearningRate {
    fn from(s: schedules::ExponentialDecay) -> Self {
        LearningRate::Schedule(s.into())
    }
}

impl From<schedules::CosineDecay> for LearningRate {
    fn from(s: schedules::CosineDecay) -> Self {
        LearningRate::Schedule(s.into())
    }
}

impl From<schedules::PiecewiseConstantDecay> for LearningRate {
    fn from(s: schedules::PiecewiseConstantDecay) -> Self {
        LearningRate::Schedule(s.into())
    }
}

/// Calls `update(id, value, gradient)` for every parameter that is trainable and has a gradient.
fn for_each_trainable(
    params: &mut ParamStore,
    grads: &Gradients,
    mut update: impl FnMut(ParamId, &mut Storage, &Storage),
) {
    for (id, grad) in grads.iter() {
        let param = params.get_mut(id);
        if param.trainable {
            update(id, &mut param.value, grad);
        }
    }
}

/// An `f32` setting as the `f64` of its shortest decimal form, so that `0.01f32` reads `0.01`, not
/// `0.009999999776482582`.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

fn check_learning_rate(learning_rate: f32) -> Result<()> {
    if learning_rate >= 0.0 && learning_rate.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_argument("learning_rate", learning_rate, "must be a non-negative finite number"))
    }
}

fn check_non_negative(name: &'static str, value: f32) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid_argument(name, value, "must be a non-negative finite number"))
    }
}

/// `value` in `[0, 1]`, or in `[0, 1)` if `!one_allowed`.
fn check_unit(name: &'static str, value: f32, one_allowed: bool) -> Result<()> {
    let ok = value >= 0.0 && (value < 1.0 || (one_allowed && value == 1.0));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            name,
            value,
            if one_allowed { "must be in [0, 1]" } else { "must be in [0, 1)" },
        ))
    }
}

/// The largest step count an optimizer accepts from saved state: `i64::MAX`, the range of Keras' `iterations`
/// variable (an int64). Counting stops there rather than wrapping, so a step never sees a count of 0 again.
pub const MAX_ITERATIONS: u64 = i64::MAX as u64;

/// The step count after one more step from `iterations`: counting stops at [`MAX_ITERATIONS`], the largest
/// count a file can hold, so a model that loads with the last count still saves a file that loads.
pub(crate) fn next_iteration(iterations: u64) -> u64 {
    iterations.saturating_add(1).min(MAX_ITERATIONS)
}

/// The names [`get`] accepts, in any capitalisation.
pub const KNOWN_NAMES: &[&str] = &["sgd", "adam", "adamw", "rmsprop", "adagrad"];

/// An optimizer with Keras' defaults from its name, in any capitalisation (`"sgd"`, `"SGD"`, `"Adam"`).
///
/// # Errors
/// [`Error::UnknownName`] listing the accepted names.
pub fn get(name: &str) -> Result<Box<dyn Optimizer>> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "sgd" => Box::new(SGD::new()),
        "adam" => Box::new(Adam::new()),
        "adamw" => Box::new(AdamW::new()),
        "rmsprop" => Box::new(RMSprop::new()),
        "adagrad" => Box::new(Adagrad::new()),
        _ => {
            return Err(Error::UnknownName {
                kind: "optimizer",
                name: name.to_string(),
                known: KNOWN_NAMES.join(", "),
            })
        }
    })
}

/// What `model.compile` takes as its optimizer: a name resolved by [`get`], or a configured optimizer.
///
/// ```
/// use kerust::optimizers::{OptimizerSpec, SGD};
///
/// let by_name: OptimizerSpec = "Adam".into();
/// assert_eq!(by_name.resolve().unwrap().name(), "adam");
/// let configured: OptimizerSpec = SGD::new().learning_rate(0.1).momentum(0.9).into();
/// assert_eq!(configured.resolve().unwrap().learning_rate(), 0.1);
/// ```
pub enum OptimizerSpec {
    /// A Keras name, resolved with Keras' defaults.
    Name(String),
    /// An optimizer object.
    Optimizer(Box<dyn Optimizer>),
}

impl OptimizerSpec {
    /// The optimizer this spec names.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for an unknown name.
    pub fn resolve(self) -> Result<Box<dyn Optimizer>> {
        match self {
            OptimizerSpec::Name(name) => get(&name),
            OptimizerSpec::Optimizer(optimizer) => Ok(optimizer),
        }
    }
}

impl std::fmt::Debug for OptimizerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptimizerSpec::Name(name) => f.debug_tuple("Name").field(name).finish(),
            OptimizerSpec::Optimizer(o) => f.debug_tuple("Optimizer").field(&o.name()).finish(),
        }
    }
}

impl From<&str> for OptimizerSpec {
    fn from(name: &str) -> Self {
        OptimizerSpec::Name(name.to_string())
    }
}

impl From<String> for OptimizerSpec {
    fn from(name: String) -> Self {
        OptimizerSpec::Name(name)
    }
}

impl From<Box<dyn Optimizer>> for OptimizerSpec {
    fn from(optimizer: Box<dyn Optimizer>) -> Self {
        OptimizerSpec::Optimizer(optimizer)
    }
}

impl<T: Optimizer + 'static> From<T> for OptimizerSpec {
    fn from(optimizer: T) -> Self {
        OptimizerSpec::Optimizer(Box::new(optimizer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::Gradients;

    #[test]
    fn updates_are_the_same_bits_for_any_thread_count() {
        // Large enough (360,000 elements) to be split over the threads; a second, small weight stays on one.
        let shapes: [&[usize]; 2] = [&[600, 600], &[7]];
        const { assert!(600 * 600 >= crate::threads::PARALLEL_MIN_ELEMENTS) };
        let value = |shape: &[usize], seed: usize| {
            let values = (0..shape.iter().product::<usize>())
                .map(|k| ((k * 7919 + seed * 31) % 2003) as f32 / 1001.0 - 1.0);
            Tensor::from_shape_vec(ndarray::IxDyn(shape), values.collect()).unwrap()
        };
        let optimizers: Vec<fn() -> Box<dyn Optimizer>> = vec![
            || Box::new(SGD::new().momentum(0.9).nesterov(true)),
            || Box::new(SGD::new()),
            || Box::new(Adam::new().amsgrad(true)),
            || Box::new(AdamW::new()),
            || Box::new(RMSprop::new().momentum(0.5).centered(true)),
            || Box::new(Adagrad::new()),
            || Box::new(SGD::new().clipnorm(0.5)),
            || Box::new(SGD::new().clipvalue(0.01)),
        ];
        for make in optimizers {
            let runs = crate::threads::at_thread_counts(|| {
                let mut params = ParamStore::new();
                let ids: Vec<_> = shapes.iter().map(|s| params.add("w", value(s, 1), true)).collect();
                let mut optimizer = make();
                for step in 0..3 {
                    let mut grads = Gradients::new();
                    for (&id, s) in ids.iter().zip(shapes) {
                        let g = value(s, 2 + step);
                        grads.assign(ids.len(), id, s, Some(g.as_slice().unwrap()));
                    }
                    optimizer.apply(&mut params, &grads);
                }
                ids.iter()
                    .flat_map(|&id| {
                        params.value(id).to_array().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            });
            let name = make().name().to_string();
            assert!(runs.iter().all(|r| *r == runs[0]), "{name}: updates differ between thread counts");
        }
    }
}
