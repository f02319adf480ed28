//! Layer normalization on the CPU: lanes of contiguous features, computed a block of lanes per task; every
//! lane's arithmetic is the same whatever the split, and the parameter gradients add lanes in order, so
//! results do not depend on the thread count.
use super::CpuStorage;
use crate::device::LayerNormKernels;
use crate::threads::for_each_chunk;

fn slice(s: &CpuStorage) -> &[f32] {
    s.array().as_slice().expect("buffers are contiguous")
}

fn slice_mut(s: &mut CpuStorage) -> &mut [f32] {
    s.array_mut().as_slice_mut().expect("buffers are contiguous")
}

/// Lanes per task: about 16 Ki elements.
fn lanes_per_chunk(dim: usize) -> usize {
    (16 * 1024 / dim.max(1)).max(1)
}

impl LayerNormKernels for CpuStorage {
    fn layer_norm(
        &self,
        gamma: Option<&Self>,
        beta: Option<&Self>,
        dim: usize,
        epsilon: f32,
        out: &mut Self,
        stats: &mut Self,
    ) {
        let x = slice(self);
        let lanes = lanes_per_chunk(dim);
        for_each_chunk(slice_mut(stats), 2 * lanes, |c, st| {
            for (i, s) in st.chunks_exact_mut(2).enumerate() {
                let row = &x[(c * lanes + i) * dim..][..dim];
                let mean = row.iter().sum::<f32>() / dim as f32;
                let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
                s[0] = mean;
                s[1] = 1.0 / (var + epsilon).sqrt();
            }
        });
        let (st, gamma, beta) = (slice(stats), gamma.map(slice), beta.map(slice));
        for_each_chunk(slice_mut(out), dim * lanes, |c, o| {
            for (i, o) in o.chunks_exact_mut(dim).enumerate() {
                let r = c * lanes + i;
                let (row, mean, inv) = (&x[r * dim..][..dim], st[2 * r], st[2 * r + 1]);
                for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
                    let n = (v - mean) * inv;
                    *o = n * gamma.map_or(1.0, |g| g[j]) + beta.map_or(0.0, |b| b[j]);
                }
            }
        });
    }

    fn layer_norm_input_grad(
        &self,
        x: &Self,
        gamma: Option<&Self>,
        stats: &Self,
        dim: usize,
        dx: &mut Self,
        accumulate: bool,
    ) {
        let (g, x, st, gamma) = (slice(self), slice(x), slice(stats), gamma.map(slice));
        let lanes = lanes_per_chunk(dim);
        let n = dim as f32;
        for_each_chunk(slice_mut(dx), dim * lanes, |c, d| {
            for (i, d) in d.chunks_exact_mut(dim).enumerate() {
                let r = c * lanes + i;
                let (gr, xr, mean, inv) =
                    (&g[r * dim..][..dim], &x[r * dim..][..dim], st[2 * r], st[2 * r + 1]);
                let h = |j: usize| gr[j] * gamma.map_or(1.0, |g| g[j]);
                let (mut sum_h, mut sum_hx) = (0.0f32, 0.0f32);
                for (j, &v) in xr.iter().enumerate() {
                    sum_h += h(j);
                    sum_hx += h(j) * (v - mean) * inv;
                }
                let (mean_h, mean_hx) = (sum_h / n, sum_hx / n);
                for (j, d) in d.iter_mut().enumerate() {
                    let v = inv * (h(j) - mean_h - (xr[j] - mean) * inv * mean_hx);
                    *d = if accumulate { *d + v } else { v };
                }
            }
        });
    }

    fn layer_norm_gamma_grad(&self, x: &Self, stats: &Self, dim: usize, dgamma: &mut Self, accumulate: bool) {
        let (g, x, st, d) = (slice(self), slice(x), slice(stats), slice_mut(dgamma));
        if !accumulate {
            d.fill(0.0);
        }
        for (r, (gr, xr)) in g.chunks_exact(dim).zip(x.chunks_exact(dim)).enumerate() {
            let (mean, inv) = (st[2 * r], st[2 * r + 1]);
            for ((d, &g), &v) in d.iter_mut().zip(gr).zip(xr) {
                *d += g * (v - mean) * inv;
            }
        }
    }

    fn layer_norm_beta_grad(&self, dim: usize, dbeta: &mut Self, accumulate: bool) {
        let (g, d) = (slice(self), slice_mut(dbeta));
        if !accumulate {
            d.fill(0.0);
        }
        for gr in g.chunks_exact(dim) {
            d.iter_mut().zip(gr).for_each(|(d, &g)| *d += g);
        }
    }
}
