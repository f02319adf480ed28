//! Layer normalization over the last axis (Keras' `LayerNormalization(axis=-1)`), fused: one node whose
//! forward keeps each lane's mean and `1 / sqrt(var + eps)` in the node's auxiliary buffer.
//!
//! Backward, per lane of `D` features, with `x̂ = (x - mean) * inv` and `h = g * gamma`:
//! `dx = inv * (h - mean(h) - x̂ * mean(h * x̂))`, `dgamma = Σ g * x̂`, `dbeta = Σ g` (over lanes).
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// The recorded node: inputs `x`, then gamma and beta where given.
struct LayerNorm {
    inputs: Vec<usize>,
    gamma: Option<usize>,
    beta: Option<usize>,
    dim: usize,
}

impl<'t> Var<'t> {
    /// Normalizes each lane along the last axis to mean 0 and variance 1 (`(x - mean) / sqrt(var + epsilon)`,
    /// the biased variance), then scales by `gamma` and shifts by `beta` (each of shape `(D)`, the last axis).
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 3.0], [-2.0, 6.0]].into_dyn().view());
    /// let y = x.layer_norm(None, None, 0.0).value();
    /// assert_eq!(y, array![[-1.0f32, 1.0], [-1.0, 1.0]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// If `self` has no axes or an empty last axis, or gamma or beta is not of shape `(D)`.
    pub fn layer_norm(self, gamma: Option<Var<'t>>, beta: Option<Var<'t>>, epsilon: f32) -> Var<'t> {
        let shape = self.shape();
        let dim = *shape.last().expect("layer_norm: needs at least one axis");
        assert!(dim > 0, "layer_norm: the last axis of {shape:?} is empty");
        for (name, p) in [("gamma", gamma), ("beta", beta)] {
            if let Some(p) = p {
                assert_eq!(p.shape(), [dim], "layer_norm: {name} needs shape [{dim}]");
            }
        }
        let rows = shape.iter().product::<usize>() / dim;
        let mut inputs = vec![self.id];
        inputs.extend(gamma.map(|g| g.id));
        inputs.extend(beta.map(|b| b.id));
        let node = LayerNorm { inputs, gamma: gamma.map(|g| g.id), beta: beta.map(|b| b.id), dim };
        self.tape.push(node, &shape, |v, out, aux| {
            aux.fit(&[rows, 2]);
            let (g, b) = (gamma.map(|g| v.get(g.id)), beta.map(|b| v.get(b.id)));
            v.get(self.id).layer_norm(g, b, dim, epsilon, out, aux);
        })
    }
}

impl Kernel for LayerNorm {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let (x, dim) = (self.inputs[0], self.dim);
        let stats = std::mem::take(ctx.aux);
        let xv = ctx.value(x);
        let gamma = self.gamma.map(|id| ctx.value(id));
        if let Some((dx, fresh)) = ctx.grad(x, xv.shape()) {
            g.layer_norm_input_grad(xv, gamma, &stats, dim, dx, !fresh);
        }
        if let Some(id) = self.gamma {
            if let Some((d, fresh)) = ctx.grad(id, &[dim]) {
                g.layer_norm_gamma_grad(xv, &stats, dim, d, !fresh);
            }
        }
        if let Some(id) = self.beta {
            if let Some((d, fresh)) = ctx.grad(id, &[dim]) {
                g.layer_norm_beta_grad(dim, d, !fresh);
            }
        }
        *ctx.aux = stats;
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::{check_gradients, ParamStore, Tape, Tensor};
    use ndarray::{ArrayD, Axis, IxDyn};
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn forward_matches_the_definition() {
        let (x, g, b) = (random(&[2, 3, 5], 1), random(&[5], 2), random(&[5], 3));
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let v = [&x, &g, &b].map(|t| tape.constant(t.view()));
        let got = v[0].layer_norm(Some(v[1]), Some(v[2]), 1e-3).value();
        let last = Axis(2);
        let mean = x.mean_axis(last).unwrap().insert_axis(last);
        let var = (&x - &mean).mapv(|d| d * d).mean_axis(last).unwrap().insert_axis(last);
        let want = (&x - &mean) / var.mapv(|v| (v + 1e-3).sqrt()) * &g + &b;
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{got} vs {want}");
        let plain = v[0].layer_norm(None, None, 1e-3).value();
        let want = (&x - &mean) / var.mapv(|v| (v + 1e-3).sqrt());
        assert!(plain.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let inputs = [random(&[3, 4, 6], 4), random(&[6], 5), random(&[6], 6)];
        check_gradients(&inputs, |v| v[0].layer_norm(Some(v[1]), Some(v[2]), 1e-3)).expect("gamma and beta");
        check_gradients(&inputs[..1], |v| v[0].layer_norm(None, None, 1e-3)).expect("neither");
        check_gradients(&inputs[..2], |v| v[0].layer_norm(Some(v[1]), None, 1e-3)).expect("gamma only");
        // A reused input: the second contribution accumulates.
        check_gradients(&inputs[..2], |v| v[0].layer_norm(Some(v[1]), None, 1e-3).add(v[0].mul(v[0])))
            .expect("accumulated");
        // Rows of one feature: the output is beta, the input gets no gradient.
        check_gradients(&[random(&[4, 1], 7), random(&[1], 8), random(&[1], 9)], |v| {
            v[0].layer_norm(Some(v[1]), Some(v[2]), 1e-3)
        })
        .expect("one feature");
    }

    #[test]
    fn many_lanes_are_bit_identical_for_any_thread_count() {
        let (x, g) = (random(&[300, 97], 10), random(&[97], 11));
        let r = random(&[300, 97], 12);
        let runs = crate::threads::at_thread_counts(|| {
            let mut store = ParamStore::new();
            let ids = [&x, &g].map(|t| store.add("t", t.clone(), true));
            let tape = Tape::new(&store);
            let v = ids.map(|id| tape.param(id));
            let y = v[0].layer_norm(Some(v[1]), None, 1e-3);
            let loss = y.mul(tape.constant(r.view())).sum();
            let mut grads = crate::autodiff::Gradients::new();
            tape.backward(loss, &mut grads).unwrap();
            (y.value(), ids.map(|id| grads.get(id).unwrap().to_array()))
        });
        assert!(runs.windows(2).all(|w| w[0] == w[1]));
    }
}
