//! RMSprop.
use super::clipping::Clipping;
use super::slots::{self, Slots};
use super::{check_non_negative, check_unit, decimal, flag, for_each_trainable, LearningRate, Optimizer};
use crate::autodiff::{Gradients, ParamStore, Tensor};
use crate::device::RmspropSettings;
use crate::numeric::one_minus_as_keras;
use crate::Result;

/// RMSprop, Keras 3's rule: `v = rho v + (1 - rho) g^2`; `increment = lr g / sqrt(v + epsilon)` (centered:
/// `a = rho a + (1 - rho) g` and `sqrt(v - a^2 + epsilon)`); with momentum `mom = momentum mom + increment` and
/// `w -= mom`, else `w -= increment`.
///
/// Keras: `keras.optimizers.RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False)`.
///
/// The builder methods share names with [`Optimizer`]'s getters; on a concrete `RMSprop` call the getter as
/// `Optimizer::learning_rate(&rmsprop)`.
#[derive(Clone, Debug)]
pub struct RMSprop {
    learning_rate: LearningRate,
    clipping: Clipping,
    rho: f32,
    momentum: f32,
    epsilon: f32,
    centered: bool,
    iterations: u64,
    velocities: Slots,
    momentums: Slots,
    average_gradients: Slots,
}

impl Default for RMSprop {
    fn default() -> Self {
        RMSprop {
            learning_rate: LearningRate::Constant(0.001),
            clipping: Clipping::default(),
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
            iterations: 0,
            velocities: Slots::new("velocity", 0.0),
            momentums: Slots::new("momentum", 0.0),
            average_gradients: Slots::new("average_gradient", 0.0),
        }
    }
}

impl RMSprop {
    /// Keras' defaults.
    pub fn new() -> Self {
        Self::default()
    }

    common_builders!();

    /// Decay of the squared-gradient average, in `[0, 1)`.
    pub fn rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Momentum, in `[0, 1]`.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Added under the square root so that the division stays finite, `>= 0`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Whether to normalise by the estimated variance of the gradient instead of its second moment.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    /// The slots in use, as Keras creates them: momentums only for a positive momentum, average gradients
    /// only when centered.
    fn slots(&self) -> Vec<&Slots> {
        let mut slots = vec![&self.velocities];
        if self.momentum > 0.0 {
            slots.push(&self.momentums);
        }
        if self.centered {
            slots.push(&self.average_gradients);
        }
        slots
    }
}

impl Optimizer for RMSprop {
    common_methods!("rmsprop");

    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients) {
        let settings = RmspropSettings {
            learning_rate: self.learning_rate.at(self.iterations),
            rho: self.rho,
            // Keras' constant: `1 - rho` in double precision, then cast.
            one_minus_rho: one_minus_as_keras(self.rho),
            momentum: self.momentum,
            epsilon: self.epsilon,
        };
        let grads = self.clipping.apply(params, grads);
        let (centered, with_momentum) = (self.centered, self.momentum > 0.0);
        let (vs, moms, avgs) = (&mut self.velocities, &mut self.momentums, &mut self.average_gradients);
        for_each_trainable(params, grads, |id, w, g| {
            let v = vs.get(id, w);
            let mom = with_momentum.then(|| moms.get(id, w));
            let a = centered.then(|| avgs.get(id, w));
            w.rmsprop_update(g, v, mom, a, settings);
        });
        self.iterations = super::next_iteration(self.iterations);
    }

    fn validate(&self) -> Result<()> {
        self.learning_rate.validate()?;
        self.clipping.validate()?;
        check_unit("rho", self.rho, false)?;
        check_unit("momentum", self.momentum, true)?;
        check_non_negative("epsilon", self.epsilon)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        slots::save(&self.slots())
    }

    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        let mut slots: Vec<&mut Slots> = vec![&mut self.velocities];
        if self.momentum > 0.0 {
            slots.push(&mut self.momentums);
        }
        if self.centered {
            slots.push(&mut self.average_gradients);
        }
        slots::load(iterations, state, &mut self.iterations, &mut slots)
    }

    fn config(&self) -> Vec<(String, f64)> {
        let settings = [
            ("rho".into(), decimal(self.rho)),
            ("momentum".into(), decimal(self.momentum)),
            ("epsilon".into(), decimal(self.epsilon)),
            ("centered".into(), flag(self.centered)),
        ];
        self.learning_rate.config().into_iter().chain(settings).chain(self.clipping.config()).collect()
    }
}
