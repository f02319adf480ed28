//! Adagrad.
use super::clipping::Clipping;
use super::slots::{self, Slots};
use super::{check_non_negative, decimal, for_each_trainable, LearningRate, Optimizer};
use crate::autodiff::{Gradients, ParamStore, Tensor};
use crate::device::AdagradSettings;
use crate::Result;

/// Adagrad, Keras 3's rule: `acc += g^2; w -= lr g / sqrt(acc + epsilon)`, with `acc` starting at
/// `initial_accumulator_value`.
///
/// Keras: `keras.optimizers.Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7)`.
///
/// The builder methods share names with [`Optimizer`]'s getters; on a concrete `Adagrad` call the getter as
/// `Optimizer::learning_rate(&adagrad)`.
#[derive(Clone, Debug)]
pub struct Adagrad {
    learning_rate: LearningRate,
    clipping: Clipping,
    initial_accumulator_value: f32,
    epsilon: f32,
    iterations: u64,
    accumulators: Slots,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            learning_rate: LearningRate::Constant(0.001),
            clipping: Clipping::default(),
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
            iterations: 0,
            accumulators: Slots::new("accumulator", 0.1),
        }
    }
}

impl Adagrad {
    /// Keras' defaults.
    pub fn new() -> Self {
        Self::default()
    }

    common_builders!();

    /// The starting value of the squared-gradient accumulators, `>= 0`.
    pub fn initial_accumulator_value(mut self, value: f32) -> Self {
        self.initial_accumulator_value = value;
        self.accumulators.set_init(value);
        self
    }

    /// Added under the square root so that the division stays finite, `>= 0`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Optimizer for Adagrad {
    common_methods!("adagrad");

    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients) {
        let settings =
            AdagradSettings { learning_rate: self.learning_rate.at(self.iterations), epsilon: self.epsilon };
        let grads = self.clipping.apply(params, grads);
        let accumulators = &mut self.accumulators;
        for_each_trainable(params, grads, |id, w, g| w.adagrad_update(g, accumulators.get(id, w), settings));
        self.iterations = super::next_iteration(self.iterations);
    }

    fn validate(&self) -> Result<()> {
        self.learning_rate.validate()?;
        self.clipping.validate()?;
        check_non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        check_non_negative("epsilon", self.epsilon)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        slots::save(&[&self.accumulators])
    }

    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        slots::load(iterations, state, &mut self.iterations, &mut [&mut self.accumulators])
    }

    fn config(&self) -> Vec<(String, f64)> {
        let settings = [
            ("initial_accumulator_value".into(), decimal(self.initial_accumulator_value)),
            ("epsilon".into(), decimal(self.epsilon)),
        ];
        self.learning_rate.config().into_iter().chain(settings).chain(self.clipping.config()).collect()
    }
}
