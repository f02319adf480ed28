//! Updates of weights and their state on a device: the optimizers' rules (`optimizers/`), gradient clipping,
//! and the moving averages of layers' statistics (BatchNormalization).
//!
//! Every method updates its `&mut` buffers in place from its `&` inputs; all buffers of one call have the shape
//! of the weight. The settings are scalars the optimizer computes on the host before the step (learning rate,
//! bias corrections, Keras' `1 - beta` constants), so that every backend applies the same `f32` arithmetic.
use super::Storage;

/// [`OptimizerKernels::sgd_update`]'s settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdSettings {
    /// The step size.
    pub learning_rate: f32,
    /// How much of the previous update carries over (used with a momentum buffer).
    pub momentum: f32,
    /// Nesterov momentum (used with a momentum buffer).
    pub nesterov: bool,
}

/// [`OptimizerKernels::adam_update`]'s settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamSettings {
    /// The bias-corrected step, `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    pub alpha: f32,
    /// Decoupled weight decay per step, `weight_decay * lr` (0 for plain Adam).
    pub decay: f32,
    /// `1 - beta_1`, as Keras computes it.
    pub one_minus_beta_1: f32,
    /// `1 - beta_2`, as Keras computes it.
    pub one_minus_beta_2: f32,
    /// Added to `sqrt(v)`.
    pub epsilon: f32,
}

/// [`OptimizerKernels::rmsprop_update`]'s settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropSettings {
    /// The step size.
    pub learning_rate: f32,
    /// Decay of the squared-gradient average.
    pub rho: f32,
    /// `1 - rho`, as Keras computes it.
    pub one_minus_rho: f32,
    /// Momentum (used with a momentum buffer).
    pub momentum: f32,
    /// Added under the square root.
    pub epsilon: f32,
}

/// [`OptimizerKernels::adagrad_update`]'s settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradSettings {
    /// The step size.
    pub learning_rate: f32,
    /// Added under the square root.
    pub epsilon: f32,
}

/// In-place updates of weights (`self`), their optimizer state and their gradients. The caller has checked
/// that every buffer of a call has the weight's shape.
pub trait OptimizerKernels {
    /// SGD: without a `momentum` buffer `w -= lr * g`; with one `m = momentum * m - lr * g`, then
    /// `w += m`, or with Nesterov `w += momentum * m - lr * g`.
    fn sgd_update(&mut self, g: &Self, momentum: Option<&mut Self>, settings: SgdSettings);

    /// Adam (AdamW with a non-zero `decay`): `w -= w * decay`, `m += (g - m) * (1 - beta_1)`,
    /// `v += (g^2 - v) * (1 - beta_2)`, then `w -= alpha * m / (sqrt(v) + epsilon)`; with a `v_hat` buffer
    /// (AMSGrad) `v_hat = max(v_hat, v)` replaces `v` in the last step.
    fn adam_update(
        &mut self,
        g: &Self,
        m: &mut Self,
        v: &mut Self,
        v_hat: Option<&mut Self>,
        settings: AdamSettings,
    );

    /// RMSprop: `v = rho * v + (1 - rho) * g^2`; with an `average_gradient` buffer (centered)
    /// `a = rho * a + (1 - rho) * g` and the denominator `v - a^2 + epsilon`, else `v + epsilon`;
    /// `increment = lr * g / sqrt(denominator)`; with a `momentum` buffer `mom = momentum * mom + increment`
    /// and `w -= mom`, else `w -= increment`.
    fn rmsprop_update(
        &mut self,
        g: &Self,
        velocity: &mut Self,
        momentum: Option<&mut Self>,
        average_gradient: Option<&mut Self>,
        settings: RmspropSettings,
    );

    /// Adagrad: `acc += g^2`, then `w -= lr * g / sqrt(acc + epsilon)`.
    fn adagrad_update(&mut self, g: &Self, accumulator: &mut Self, settings: AdagradSettings);

    /// The sum of the squares of the elements, accumulated in `f64` in row-major order (a gradient's squared
    /// L2 norm, for clipping).
    fn sum_of_squares(&self) -> f64;

    /// `x = x * numerator / denominator` for every element, in that order (Keras' clipping by norm).
    fn scale_by_ratio(&mut self, numerator: f32, denominator: f32);

    /// `x *= factor` for every element (clipping by the global norm).
    fn scale(&mut self, factor: f32);

    /// `x = clamp(x, min, max)` for every element (clipping by value).
    fn clamp(&mut self, min: f32, max: f32);

    /// A moving average of statistics: `moving = moving * momentum + batch * one_minus_momentum` with
    /// `moving` this buffer and `batch` of its shape (BatchNormalization's moving mean and variance).
    fn moving_average(&mut self, batch: &Self, momentum: f32, one_minus_momentum: f32);
}

impl Storage {
    /// [`OptimizerKernels::sgd_update`] on the device the buffers live on.
    pub(crate) fn sgd_update(&mut self, g: &Storage, momentum: Option<&mut Storage>, settings: SgdSettings) {
        match (self, g) {
            (Storage::Cpu(w), Storage::Cpu(g)) => w.sgd_update(
                g,
                momentum.map(|m| match m {
                    Storage::Cpu(m) => m,
                }),
                settings,
            ),
        }
    }

    /// [`OptimizerKernels::adam_update`] on the device the buffers live on.
    pub(crate) fn adam_update(
        &mut self,
        g: &Storage,
        m: &mut Storage,
        v: &mut Storage,
        v_hat: Option<&mut Storage>,
        settings: AdamSettings,
    ) {
        match (self, g, m, v) {
            (Storage::Cpu(w), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => w.adam_update(
                g,
                m,
                v,
                v_hat.map(|s| match s {
                    Storage::Cpu(s) => s,
                }),
                settings,
            ),
        }
    }

    /// [`OptimizerKernels::rmsprop_update`] on the device the buffers live on.
    pub(crate) fn rmsprop_update(
        &mut self,
        g: &Storage,
        velocity: &mut Storage,
        momentum: Option<&mut Storage>,
        average_gradient: Option<&mut Storage>,
        settings: RmspropSettings,
    ) {
        match (self, g, velocity) {
            (Storage::Cpu(w), Storage::Cpu(g), Storage::Cpu(v)) => w.rmsprop_update(
                g,
                v,
                momentum.map(|s| match s {
                    Storage::Cpu(s) => s,
                }),
                average_gradient.map(|s| match s {
                    Storage::Cpu(s) => s,
                }),
                settings,
            ),
        }
    }

    /// [`OptimizerKernels::adagrad_update`] on the device the buffers live on.
    pub(crate) fn adagrad_update(
        &mut self,
        g: &Storage,
        accumulator: &mut Storage,
        settings: AdagradSettings,
    ) {
        match (self, g, accumulator) {
            (Storage::Cpu(w), Storage::Cpu(g), Storage::Cpu(acc)) => w.adagrad_update(g, acc, settings),
        }
    }

    /// [`OptimizerKernels::sum_of_squares`] on the device the buffer lives on.
    pub(crate) fn sum_of_squares(&self) -> f64 {
        match self {
            Storage::Cpu(s) => s.sum_of_squares(),
        }
    }

    /// [`OptimizerKernels::scale_by_ratio`] on the device the buffer lives on.
    pub(crate) fn scale_by_ratio(&mut self, numerator: f32, denominator: f32) {
        match self {
            Storage::Cpu(s) => s.scale_by_ratio(numerator, denominator),
        }
    }

    /// [`OptimizerKernels::scale`] on the device the buffer lives on.
    pub(crate) fn scale(&mut self, factor: f32) {
        match self {
            Storage::Cpu(s) => s.scale(factor),
        }
    }

    /// [`OptimizerKernels::clamp`] on the device the buffer lives on.
    pub(crate) fn clamp(&mut self, min: f32, max: f32) {
        match self {
            Storage::Cpu(s) => s.clamp(min, max),
        }
    }

    /// [`OptimizerKernels::moving_average`] on the device the buffers live on.
    pub(crate) fn moving_average(&mut self, batch: &Storage, momentum: f32, one_minus_momentum: f32) {
        match (self, batch) {
            (Storage::Cpu(moving), Storage::Cpu(batch)) => {
                moving.moving_average(batch, momentum, one_minus_momentum)
            }
        }
    }
}
