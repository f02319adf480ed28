//! Central finite differences against [`Tape::backward`]: the check every op in kerust passes, and that users
//! can run on their own custom ops and layers.
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Gradients, ParamStore, Tape, Tensor, Var, Workspace};
use crate::{Error, Result};

/// Settings of a gradient check. The defaults suit `f32` functions of inputs of magnitude about 1, away from
/// kinks (relu at 0, clip bounds).
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// The finite-difference step.
    pub epsilon: f32,
    /// Allowed relative difference.
    pub rtol: f64,
    /// Allowed absolute difference.
    pub atol: f64,
    /// Seed of the random weights that turn a non-scalar output into a scalar.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck { epsilon: 1e-3, rtol: 1e-2, atol: 1e-3, seed: 0 }
    }
}

/// What a passing check measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradCheckReport {
    /// The number of input elements checked.
    pub checked: usize,
    /// The largest absolute difference between backward and finite differences.
    pub max_abs_error: f64,
}

/// Checks the gradients of `f` at `inputs` with the default settings; see [`GradCheck::check`].
///
/// ```
/// use kerust::autodiff::check_gradients;
/// use ndarray::array;
///
/// let x = array![[0.5f32, -1.0], [2.0, 0.3]].into_dyn();
/// let report = check_gradients(&[x], |v| v[0].tanh().mul(v[0])).unwrap();
/// assert_eq!(report.checked, 4);
/// ```
pub fn check_gradients<F>(inputs: &[Tensor], f: F) -> Result<GradCheckReport>
where
    F: for<'t> Fn(&[Var<'t>]) -> Var<'t>,
{
    GradCheck::default().check(inputs, f)
}

impl GradCheck {
    /// Compares the gradient of `sum(f(inputs) * r)` (for fixed random weights `r`, so that every output element
    /// counts with a different weight) from [`Tape::backward`] with central finite differences, element by element.
    ///
    /// # Errors
    /// [`Error::GradientCheck`] naming the first element whose gradients disagree.
    pub fn check<F>(&self, inputs: &[Tensor], f: F) -> Result<GradCheckReport>
    where
        F: for<'t> Fn(&[Var<'t>]) -> Var<'t>,
    {
        let mut store = ParamStore::new();
        let ids: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| store.add(format!("input{i}"), x.as_standard_layout().into_owned(), true))
            .collect();

        // The output's shape fixes the random weights.
        let out_shape = {
            let tape = Tape::inference(&store, Workspace::new());
            let vars: Vec<_> = ids.iter().map(|&id| tape.param(id)).collect();
            f(&vars).shape()
        };
        let mut rng = StdRng::seed_from_u64(self.seed);
        let weights: Tensor = ArrayD::from_shape_fn(IxDyn(&out_shape), |_| rng.random_range(0.5f32..1.5));

        let mut grads = Gradients::new();
        {
            let tape = Tape::new(&store);
            let vars: Vec<_> = ids.iter().map(|&id| tape.param(id)).collect();
            let r = tape.constant(weights.view());
            let objective = f(&vars).mul(r).sum();
            tape.backward(objective, &mut grads)?;
        }

        // The objective in f64 from f32 outputs, so that summation adds no noise to the differences.
        let objective = |store: &ParamStore| -> f64 {
            let tape = Tape::inference(store, Workspace::new());
            let vars: Vec<_> = ids.iter().map(|&id| tape.param(id)).collect();
            f(&vars)
                .with_value(|out| out.iter().zip(&weights).map(|(&o, &w)| f64::from(o) * f64::from(w)).sum())
        };

        let mut report = GradCheckReport { checked: 0, max_abs_error: 0.0 };
        for (input, &id) in ids.iter().enumerate() {
            let analytic: Vec<f32> = match grads.get(id) {
                Some(g) => g.to_array().iter().copied().collect(),
                None => vec![0.0; inputs[input].len()],
            };
            // A host copy of the input, changed one element at a time and written back to the parameter's
            // device before each evaluation (a test utility: clarity over speed).
            let mut host = vec![0.0; analytic.len()];
            store.value(id).copy_to_host(&mut host);
            let original_values = host.clone();
            let mut objective_at = |store: &mut ParamStore, index: usize, value: f32| {
                host[index] = value;
                store.value_mut(id).copy_from_host(&host);
                host[index] = original_values[index];
                objective(store)
            };
            for (index, &analytic) in analytic.iter().enumerate() {
                let original = original_values[index];
                let plus = objective_at(&mut store, index, original + self.epsilon);
                let minus = objective_at(&mut store, index, original - self.epsilon);

                // The step actually taken in f32, not the nominal one.
                let step = f64::from(original + self.epsilon) - f64::from(original - self.epsilon);
                let numeric = (plus - minus) / step;
                let analytic = f64::from(analytic);
                let error = (analytic - numeric).abs();
                let tolerance = self.atol + self.rtol * analytic.abs().max(numeric.abs());
                // A NaN on either side fails too.
                if error.is_nan() || error > tolerance {
                    return Err(Error::GradientCheck { input, index, analytic, numeric, tolerance });
                }
                report.max_abs_error = report.max_abs_error.max(error);
                report.checked += 1;
            }
            store.value_mut(id).copy_from_host(&original_values);
        }
        Ok(report)
    }
}

/// Values in `[-1, 1)` that differ from one element to the next (a slice put in the wrong place shows), and
/// from one `seed` to another: the inputs of the ops' gradient checks.
#[cfg(test)]
pub(crate) fn test_values(shape: &[usize], seed: usize) -> Tensor {
    let mut i = seed * 1000;
    ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(shape), || {
        i += 1;
        ((i * 37) % 101) as f32 / 50.0 - 1.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn inputs_in_any_memory_layout_are_checked_element_by_element() {
        // A transposed (column-major) input: element indices must follow the logical order of the gradient.
        let x = Array2::from_shape_fn((3, 4), |(i, j)| (i as f32 - 1.0) * 0.3 + j as f32 * 0.2)
            .reversed_axes()
            .into_dyn();
        let w = Array2::from_shape_fn((3, 2), |(i, j)| 0.1 * (i + 2 * j) as f32 - 0.2).into_dyn();
        let report = check_gradients(&[x, w], |v| v[0].matmul(v[1]).tanh()).unwrap();
        assert_eq!(report.checked, 12 + 6);
    }
}
