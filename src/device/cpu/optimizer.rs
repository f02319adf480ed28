//! Weight and state updates on the CPU: one `ndarray::Zip` pass over the weight, its gradient and its state,
//! split over kerust's pool when large (each element computed by the same closure whatever the split, so
//! results do not depend on the thread count).
use ndarray::Zip;

use super::CpuStorage;
use crate::device::optimizer::{AdagradSettings, AdamSettings, RmspropSettings, SgdSettings};
use crate::device::OptimizerKernels;
use crate::threads::for_each;

impl OptimizerKernels for CpuStorage {
    fn sgd_update(&mut self, g: &Self, momentum: Option<&mut Self>, settings: SgdSettings) {
        let SgdSettings { learning_rate: lr, momentum: rate, nesterov } = settings;
        let (w, g) = (self.array_mut(), g.array());
        let Some(m) = momentum else {
            for_each(Zip::from(w).and(g), |w, &g| *w -= lr * g);
            return;
        };
        let m = m.array_mut();
        if nesterov {
            for_each(Zip::from(w).and(g).and(m), |w, &g, m| {
                *m = rate * *m - lr * g;
                *w += rate * *m - lr * g;
            });
        } else {
            for_each(Zip::from(w).and(g).and(m), |w, &g, m| {
                *m = rate * *m - lr * g;
                *w += *m;
            });
        }
    }

    fn adam_update(
        &mut self,
        g: &Self,
        m: &mut Self,
        v: &mut Self,
        v_hat: Option<&mut Self>,
        settings: AdamSettings,
    ) {
        let AdamSettings {
            alpha,
            decay,
            one_minus_beta_1: one_minus_b1,
            one_minus_beta_2: one_minus_b2,
            epsilon: eps,
        } = settings;
        let (w, g, m, v) = (self.array_mut(), g.array(), m.array_mut(), v.array_mut());
        if let Some(v_hat) = v_hat {
            let zip = Zip::from(w).and(g).and(m).and(v).and(v_hat.array_mut());
            let update = |w: &mut f32, &g: &f32, m: &mut f32, v: &mut f32, v_hat: &mut f32| {
                *w -= *w * decay;
                *m += (g - *m) * one_minus_b1;
                *v += (g * g - *v) * one_minus_b2;
                *v_hat = v_hat.max(*v);
                *w -= alpha * *m / (v_hat.sqrt() + eps);
            };
            for_each(zip, update);
        } else {
            let zip = Zip::from(w).and(g).and(m).and(v);
            let update = |w: &mut f32, &g: &f32, m: &mut f32, v: &mut f32| {
                *w -= *w * decay;
                *m += (g - *m) * one_minus_b1;
                *v += (g * g - *v) * one_minus_b2;
                *w -= alpha * *m / (v.sqrt() + eps);
            };
            for_each(zip, update);
        }
    }

    fn rmsprop_update(
        &mut self,
        g: &Self,
        velocity: &mut Self,
        momentum: Option<&mut Self>,
        average_gradient: Option<&mut Self>,
        settings: RmspropSettings,
    ) {
        let RmspropSettings { learning_rate: lr, rho, one_minus_rho, momentum: rate, epsilon: eps } =
            settings;
        // The increment lr g / sqrt(denominator), after updating v (and a when centered).
        let increment = move |g: f32, v: &mut f32, a: Option<&mut f32>| {
            // Keras' order: (1 - rho) * square(g).
            *v = rho * *v + one_minus_rho * (g * g);
            let denominator = match a {
                Some(a) => {
                    *a = rho * *a + one_minus_rho * g;
                    *v - *a * *a + eps
                }
                None => *v + eps,
            };
            lr * g / denominator.sqrt()
        };
        let (w, g, v) = (self.array_mut(), g.array(), velocity.array_mut());
        match (momentum, average_gradient) {
            (None, None) => for_each(Zip::from(w).and(g).and(v), |w, &g, v| *w -= increment(g, v, None)),
            (None, Some(a)) => {
                let a = a.array_mut();
                for_each(Zip::from(w).and(g).and(v).and(a), |w, &g, v, a| *w -= increment(g, v, Some(a)));
            }
            (Some(mom), None) => {
                let mom = mom.array_mut();
                for_each(Zip::from(w).and(g).and(v).and(mom), |w, &g, v, mom| {
                    *mom = rate * *mom + increment(g, v, None);
                    *w -= *mom;
                });
            }
            (Some(mom), Some(a)) => {
                let (mom, a) = (mom.array_mut(), a.array_mut());
                for_each(Zip::from(w).and(g).and(v).and(mom).and(a), |w, &g, v, mom, a| {
                    *mom = rate * *mom + increment(g, v, Some(a));
                    *w -= *mom;
                });
            }
        }
    }

    fn adagrad_update(&mut self, g: &Self, accumulator: &mut Self, settings: AdagradSettings) {
        let AdagradSettings { learning_rate: lr, epsilon: eps } = settings;
        let (w, g, acc) = (self.array_mut(), g.array(), accumulator.array_mut());
        for_each(Zip::from(w).and(g).and(acc), |w, &g, acc| {
            *acc += g * g;
            *w -= lr * g / (*acc + eps).sqrt();
        });
    }

    fn sum_of_squares(&self) -> f64 {
        self.array().iter().map(|&x| f64::from(x) * f64::from(x)).sum()
    }

    fn scale_by_ratio(&mut self, numerator: f32, denominator: f32) {
        self.array_mut().mapv_inplace(|x| x * numerator / denominator);
    }

    fn scale(&mut self, factor: f32) {
        for_each(Zip::from(self.array_mut()), |x| *x *= factor);
    }

    fn clamp(&mut self, min: f32, max: f32) {
        for_each(Zip::from(self.array_mut()), |x| *x = x.clamp(min, max));
    }

    fn moving_average(&mut self, batch: &Self, momentum: f32, one_minus_momentum: f32) {
        for_each(Zip::from(self.array_mut()).and(batch.array()), |m, &b| {
            *m = *m * momentum + b * one_minus_momentum
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, ArrayD};

    #[test]
    fn clipping_by_norm_multiplies_before_dividing_as_keras() {
        // `x * clipnorm / norm` rounds differently from `x * (clipnorm / norm)` for these values.
        let mut g = CpuStorage::from(array![2.9f32, 0.77].into_dyn());
        g.scale_by_ratio(0.1, 0.3);
        let expected: ArrayD<f32> = array![2.9f32 * 0.1 / 0.3, 0.77 * 0.1 / 0.3].into_dyn();
        assert_ne!(expected[[0]], 2.9f32 * (0.1 / 0.3));
        assert_eq!(g.array(), &expected);
    }

    #[test]
    fn moving_average_weighs_the_batch_by_one_minus_momentum() {
        let mut moving = CpuStorage::from(array![1.0f32, -2.0].into_dyn());
        moving.moving_average(&CpuStorage::from(array![3.0f32, 4.0].into_dyn()), 0.75, 0.25);
        assert_eq!(moving.array(), &array![1.5f32, -0.5].into_dyn());
    }
}
