//! Stochastic gradient descent, with optional (Nesterov) momentum.
use super::clipping::Clipping;
use super::slots::{self, Slots};
use super::{check_unit, decimal, flag, for_each_trainable, LearningRate, Optimizer};
use crate::autodiff::{Gradients, ParamStore, Tensor};
use crate::device::SgdSettings;
use crate::Result;

/// Gradient descent with momentum, Keras 3's rule:
/// `m = momentum * m - lr * g; w += m`, or with Nesterov `w += momentum * m - lr * g`; without momentum
/// `w -= lr * g`.
///
/// Keras: `keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False)`.
///
/// The builder methods share names with [`Optimizer`]'s getters; on a concrete `SGD` call the getter as
/// `Optimizer::learning_rate(&sgd)`.
#[allow(clippy::upper_case_acronyms)] // Keras' name
#[derive(Clone, Debug)]
pub struct SGD {
    learning_rate: LearningRate,
    clipping: Clipping,
    momentum: f32,
    nesterov: bool,
    iterations: u64,
    momentums: Slots,
}

impl Default for SGD {
    fn default() -> Self {
        SGD {
            learning_rate: LearningRate::Constant(0.01),
            clipping: Clipping::default(),
            momentum: 0.0,
            nesterov: false,
            iterations: 0,
            momentums: Slots::new("momentum", 0.0),
        }
    }
}

impl SGD {
    /// Keras' defaults: learning rate 0.01, no momentum.
    pub fn new() -> Self {
        Self::default()
    }

    common_builders!();

    /// How much of the previous update carries over, in `[0, 1]`.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Whether to use Nesterov momentum.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// The state slots in use: Keras creates momentums only for a non-zero momentum.
    fn slots_mut(&mut self) -> Vec<&mut Slots> {
        if self.momentum != 0.0 {
            vec![&mut self.momentums]
        } else {
            Vec::new()
        }
    }
}

impl Optimizer for SGD {
    common_methods!("sgd");

    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients) {
        let settings = SgdSettings {
            learning_rate: self.learning_rate.at(self.iterations),
            momentum: self.momentum,
            nesterov: self.nesterov,
        };
        let grads = self.clipping.apply(params, grads);
        let momentums = &mut self.momentums;
        for_each_trainable(params, grads, |id, w, g| {
            // Keras keeps no momentum buffer for a zero momentum.
            let m = (settings.momentum != 0.0).then(|| momentums.get(id, w));
            w.sgd_update(g, m, settings);
        });
        self.iterations = super::next_iteration(self.iterations);
    }

    fn validate(&self) -> Result<()> {
        self.learning_rate.validate()?;
        self.clipping.validate()?;
        check_unit("momentum", self.momentum, true)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let slots: &[&Slots] = if self.momentum != 0.0 { &[&self.momentums] } else { &[] };
        slots::save(slots)
    }

    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        let mut count = self.iterations;
        slots::load(iterations, state, &mut count, &mut self.slots_mut())?;
        self.iterations = count;
        Ok(())
    }

    fn config(&self) -> Vec<(String, f64)> {
        let settings =
            [("momentum".into(), decimal(self.momentum)), ("nesterov".into(), flag(self.nesterov))];
        self.learning_rate.config().into_iter().chain(settings).chain(self.clipping.config()).collect()
    }
}
