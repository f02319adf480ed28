//! Layer normalization over the last axis: the kernels of `ops/layer_norm.rs`.
//!
//! The input is `rows` lanes of `dim` contiguous features. Per lane, `mean` and `inv = 1 / sqrt(var + eps)`
//! (the biased variance, as Keras) are kept in a `(rows, 2)` statistics buffer for the backward pass.
use super::Storage;

/// Layer normalization forward and backward over lanes of `dim` contiguous features.
pub trait LayerNormKernels {
    /// `out = (self - mean) * inv * gamma + beta` per lane (no gamma: 1; no beta: 0), and `stats` (shape
    /// `(rows, 2)`, sized by the caller) the lanes' `mean` and `inv`.
    fn layer_norm(
        &self,
        gamma: Option<&Self>,
        beta: Option<&Self>,
        dim: usize,
        epsilon: f32,
        out: &mut Self,
        stats: &mut Self,
    );

    /// The input's gradient from the output gradient `self`: with `x̂ = (x - mean) * inv` and `h = g * gamma`,
    /// `dx = inv * (h - mean(h) - x̂ * mean(h * x̂))` per lane, written into `dx` or added with `accumulate`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_input_grad(
        &self,
        x: &Self,
        gamma: Option<&Self>,
        stats: &Self,
        dim: usize,
        dx: &mut Self,
        accumulate: bool,
    );

    /// gamma's gradient from the output gradient `self`: `sum over lanes of g * x̂`, into `dgamma` (shape
    /// `(dim)`) or added with `accumulate`.
    fn layer_norm_gamma_grad(&self, x: &Self, stats: &Self, dim: usize, dgamma: &mut Self, accumulate: bool);

    /// beta's gradient from the output gradient `self`: `sum over lanes of g`, into `dbeta` or added with
    /// `accumulate`.
    fn layer_norm_beta_grad(&self, dim: usize, dbeta: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`LayerNormKernels::layer_norm`] on the device the buffers live on.
    pub(crate) fn layer_norm(
        &self,
        gamma: Option<&Storage>,
        beta: Option<&Storage>,
        dim: usize,
        epsilon: f32,
        out: &mut Storage,
        stats: &mut Storage,
    ) {
        fn cpu(s: Option<&Storage>) -> Option<&super::CpuStorage> {
            s.map(|s| match s {
                Storage::Cpu(s) => s,
            })
        }
        match (self, out, stats) {
            (Storage::Cpu(x), Storage::Cpu(out), Storage::Cpu(stats)) => {
                x.layer_norm(cpu(gamma), cpu(beta), dim, epsilon, out, stats)
            }
        }
    }

    /// [`LayerNormKernels::layer_norm_input_grad`] on the device the buffers live on.
    pub(crate) fn layer_norm_input_grad(
        &self,
        x: &Storage,
        gamma: Option<&Storage>,
        stats: &Storage,
        dim: usize,
        dx: &mut Storage,
        accumulate: bool,
    ) {
        let gamma = gamma.map(|s| match s {
            Storage::Cpu(s) => s,
        });
        match (self, x, stats, dx) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(stats), Storage::Cpu(dx)) => {
                g.layer_norm_input_grad(x, gamma, stats, dim, dx, accumulate)
            }
        }
    }

    /// [`LayerNormKernels::layer_norm_gamma_grad`] on the device the buffers live on.
    pub(crate) fn layer_norm_gamma_grad(
        &self,
        x: &Storage,
        stats: &Storage,
        dim: usize,
        dgamma: &mut Storage,
        accumulate: bool,
    ) {
        match (self, x, stats, dgamma) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(stats), Storage::Cpu(d)) => {
                g.layer_norm_gamma_grad(x, stats, dim, d, accumulate)
            }
        }
    }

    /// [`LayerNormKernels::layer_norm_beta_grad`] on the device the buffers live on.
    pub(crate) fn layer_norm_beta_grad(&self, dim: usize, dbeta: &mut Storage, accumulate: bool) {
        match (self, dbeta) {
            (Storage::Cpu(g), Storage::Cpu(d)) => g.layer_norm_beta_grad(dim, d, accumulate),
        }
    }
}
