//! Optimizers with Keras 3's update rules, defaults and names.
//!
//! Each optimizer updates, in place, every trainable parameter that has a gradient, with one `ndarray::Zip` pass
//! over the parameter, its gradient and its state. State arrays (momenta, moments, accumulators) are created for
//! a parameter on its first update and reused after, so a step allocates nothing once every parameter has been
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

/// The [`Optimizer`] methods that are the same in every optimizer: `name` returns the Keras name `$name`, and
/// `learning_rate`, `set_learning_rate` and `iterations` read or write the fields `learning_rate` and
/// `iterations` of `self`, or of `self.$inner` (AdamW's inner Adam). Invoked inside each `impl Optimizer`.
macro_rules! common_methods {
    ($name:literal $(, $inner:ident)?) => {
        fn name(&self) -> &str {
            $name
        }

        fn learning_rate(&self) -> f32 {
            self$(.$inner)?.learning_rate
        }

        fn set_learning_rate(&mut self, learning_rate: f32) {
            self$(.$inner)?.learning_rate = learning_rate;
        }

        fn iterations(&self) -> u64 {
            self$(.$inner)?.iterations
        }
    };
}

mod adagrad;
mod adam;
mod config;
mod rmsprop;
mod sgd;
mod slots;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use config::from_config;
pub use rmsprop::RMSprop;
pub use sgd::SGD;

use crate::autodiff::{Gradients, ParamId, ParamStore, Tensor};
use crate::{Error, Result};

/// An optimizer: updates every trainable parameter that has a gradient, in place.
pub trait Optimizer: Send + Sync {
    /// The Keras name, e.g. `"sgd"`.
    fn name(&self) -> &str;

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Sets the learning rate (used by schedules and `ReduceLROnPlateau`).
    fn set_learning_rate(&mut self, learning_rate: f32);

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

    /// The settings by Keras' argument names (`learning_rate`, `momentum`, ...); booleans as 0 or 1.
    fn config(&self) -> Vec<(String, f64)>;
}

/// Calls `update(id, value, gradient)` for every parameter that is trainable and has a gradient.
/// Whether an update of `len` elements is worth splitting over cores: Adam's update of a 784 x 512 kernel is
/// memory-bound and costs as much as a tenth of the bigger model's step on one core; the tutorial's are too
/// small to pay for the hand-off.
fn parallel(len: usize) -> bool {
    len >= 1 << 16 && crate::autodiff::num_threads() > 1
}

fn for_each_trainable(
    params: &mut ParamStore,
    grads: &Gradients,
    mut update: impl FnMut(ParamId, &mut Tensor, &Tensor),
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
