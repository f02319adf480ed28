//! Adam and AdamW.
use super::clipping::Clipping;
use super::slots::{self, Slots};
use super::{check_non_negative, check_unit, decimal, flag, for_each_trainable, LearningRate, Optimizer};
use crate::autodiff::{Gradients, ParamStore, Tensor};
use crate::device::AdamSettings;
use crate::numeric::one_minus_as_keras;
use crate::Result;

/// Adam, in Keras 3's form: with `t` the step (from 1),
/// `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, `m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`,
/// `w -= alpha * m / (sqrt(v) + epsilon)`; with AMSGrad `v_hat = max(v_hat, v)` replaces `v` in the last step.
///
/// Keras: `keras.optimizers.Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False)`.
///
/// The builder methods share names with [`Optimizer`]'s getters; on a concrete `Adam` call the getter as
/// `Optimizer::learning_rate(&adam)`.
#[derive(Clone, Debug)]
pub struct Adam {
    learning_rate: LearningRate,
    clipping: Clipping,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    amsgrad: bool,
    iterations: u64,
    m: Slots,
    v: Slots,
    v_hat: Slots,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            learning_rate: LearningRate::Constant(0.001),
            clipping: Clipping::default(),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            amsgrad: false,
            iterations: 0,
            m: Slots::new("m", 0.0),
            v: Slots::new("v", 0.0),
            v_hat: Slots::new("v_hat", 0.0),
        }
    }
}

impl Adam {
    /// Keras' defaults.
    pub fn new() -> Self {
        Self::default()
    }

    common_builders!();

    /// Decay of the first-moment average, in `[0, 1)`.
    pub fn beta_1(mut self, beta_1: f32) -> Self {
        self.beta_1 = beta_1;
        self
    }

    /// Decay of the second-moment average, in `[0, 1)`.
    pub fn beta_2(mut self, beta_2: f32) -> Self {
        self.beta_2 = beta_2;
        self
    }

    /// Added to `sqrt(v)` so that the division stays finite, `>= 0`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Whether to use the AMSGrad variant (the running maximum of `v`).
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    /// One step, with decoupled weight decay `w -= w * weight_decay * lr` first (0 for plain Adam), as Keras'
    /// `_apply_weight_decay` does before `update_step`.
    fn step(&mut self, params: &mut ParamStore, grads: &Gradients, weight_decay: f32) {
        let lr = self.learning_rate.at(self.iterations);
        let grads = self.clipping.apply(params, grads);
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        // Keras' constants: `1 - beta` in double precision, then cast.
        let (one_minus_b1, one_minus_b2) = (one_minus_as_keras(b1), one_minus_as_keras(b2));
        // The bias correction in f32, as Keras computes it: `beta^t` with the step cast to float32.
        let t = super::next_iteration(self.iterations) as f32;
        let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        let settings = AdamSettings {
            alpha,
            decay: weight_decay * lr,
            one_minus_beta_1: one_minus_b1,
            one_minus_beta_2: one_minus_b2,
            epsilon: eps,
        };
        let (ms, vs, v_hats, amsgrad) = (&mut self.m, &mut self.v, &mut self.v_hat, self.amsgrad);
        for_each_trainable(params, grads, |id, w, g| {
            let (m, v) = (ms.get(id, w), vs.get(id, w));
            let v_hat = amsgrad.then(|| v_hats.get(id, w));
            w.adam_update(g, m, v, v_hat, settings);
        });
        self.iterations = super::next_iteration(self.iterations);
    }

    fn check(&self) -> Result<()> {
        self.learning_rate.validate()?;
        self.clipping.validate()?;
        check_unit("beta_1", self.beta_1, false)?;
        check_unit("beta_2", self.beta_2, false)?;
        check_non_negative("epsilon", self.epsilon)
    }

    fn save(&self) -> Vec<(String, Tensor)> {
        if self.amsgrad {
            slots::save(&[&self.m, &self.v, &self.v_hat])
        } else {
            slots::save(&[&self.m, &self.v])
        }
    }

    fn load(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        let mut slots: Vec<&mut Slots> = vec![&mut self.m, &mut self.v];
        if self.amsgrad {
            slots.push(&mut self.v_hat);
        }
        slots::load(iterations, state, &mut self.iterations, &mut slots)
    }

    fn settings(&self) -> Vec<(String, f64)> {
        let mut settings: Vec<(String, f64)> = self.learning_rate.config().into_iter().collect();
        settings.extend([
            ("beta_1".into(), decimal(self.beta_1)),
            ("beta_2".into(), decimal(self.beta_2)),
            ("epsilon".into(), decimal(self.epsilon)),
            ("amsgrad".into(), flag(self.amsgrad)),
        ]);
        settings.extend(self.clipping.config());
        settings
    }
}

impl Optimizer for Adam {
    common_methods!("adam");

    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients) {
        self.step(params, grads, 0.0);
    }

    fn validate(&self) -> Result<()> {
        self.check()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.save()
    }

    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        self.load(iterations, state)
    }

    fn config(&self) -> Vec<(String, f64)> {
        self.settings()
    }
}

/// Adam with decoupled weight decay: before each Adam step, `w -= w * weight_decay * lr` for every parameter
/// being updated.
///
/// Keras: `keras.optimizers.AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
/// epsilon=1e-7, amsgrad=False)`.
#[derive(Clone, Debug)]
pub struct AdamW {
    adam: Adam,
    weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { adam: Adam::new(), weight_decay: 0.004 }
    }
}

impl AdamW {
    /// Keras' defaults.
    pub fn new() -> Self {
        Self::default()
    }

    common_builders!(adam);

    /// The decay rate, `>= 0`; the decay per step is `weight_decay * learning_rate`.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Decay of the first-moment average, in `[0, 1)`.
    pub fn beta_1(mut self, beta_1: f32) -> Self {
        self.adam.beta_1 = beta_1;
        self
    }

    /// Decay of the second-moment average, in `[0, 1)`.
    pub fn beta_2(mut self, beta_2: f32) -> Self {
        self.adam.beta_2 = beta_2;
        self
    }

    /// Added to `sqrt(v)` so that the division stays finite, `>= 0`.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.adam.epsilon = epsilon;
        self
    }

    /// Whether to use the AMSGrad variant.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.adam.amsgrad = amsgrad;
        self
    }
}

impl Optimizer for AdamW {
    common_methods!("adamw", adam);

    fn apply(&mut self, params: &mut ParamStore, grads: &Gradients) {
        self.adam.step(params, grads, self.weight_decay);
    }

    fn validate(&self) -> Result<()> {
        self.adam.check()?;
        check_non_negative("weight_decay", self.weight_decay)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.adam.save()
    }

    fn load_state(&mut self, iterations: u64, state: &[(String, Tensor)]) -> Result<()> {
        self.adam.load(iterations, state)
    }

    fn config(&self) -> Vec<(String, f64)> {
        let mut config = self.adam.settings();
        // After `learning_rate` (absent with a schedule), as Keras lists it.
        let at = usize::from(self.adam.learning_rate_schedule().is_none());
        config.insert(at, ("weight_decay".into(), decimal(self.weight_decay)));
        config
    }
}
