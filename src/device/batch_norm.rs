//! Batch normalization per channel: the kernels `ops/batch_norm.rs` runs.
//!
//! A value is normalized along one axis, its channels; every other axis holds that channel's values. The
//! forward pass keeps, per channel, the mean and `std = sqrt(variance + epsilon)` it used (the `saved`
//! buffer, `(2, channels)`), which the backward kernels read.
use super::Storage;

/// Which per-channel input of a batch normalization a gradient is for
/// ([`BatchNormKernels::batch_norm_channel_grad`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchNormInput {
    /// The scale: `sum(g * xh)`.
    Gamma,
    /// The offset: `sum(g)`.
    Beta,
    /// The given mean (inference): `-sum(g) * gamma / std`.
    Mean,
    /// The given variance (inference): `-sum(g * xh) * gamma / (2 std²)`.
    Variance,
}

/// Batch normalization of `self` along `axis` (channels), forward and backward. Per-channel buffers have shape
/// `[channels]`; the caller has checked the shapes.
pub trait BatchNormKernels {
    /// The mean and the biased variance (divided by the count) of each channel of `self`, into `mean` and
    /// `variance`, summed in the order ndarray's `sum_axis` sums over each other axis in turn (the last
    /// first), so that they are the same bits as that composition's.
    fn batch_statistics(&self, axis: usize, mean: &mut Self, variance: &mut Self);

    /// `out = (x - mean) / sqrt(variance + epsilon) * gamma + beta` per channel of `axis`, `self` being `x`
    /// (`gamma` absent: 1, `beta` absent: none); `saved` `(2, channels)` receives the mean and the
    /// `sqrt(variance + epsilon)` used.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm(
        &self,
        axis: usize,
        mean: &Self,
        variance: &Self,
        gamma: Option<&Self>,
        beta: Option<&Self>,
        epsilon: f32,
        out: &mut Self,
        saved: &mut Self,
    );

    /// The backward pass's per-channel sums of the output gradient `self` with `x`: `sum(g)` and
    /// `sum(g * xh)`, `xh = (x - mean) / std`, into `sums` `(2, channels)` (written).
    fn batch_norm_sums(&self, x: &Self, axis: usize, saved: &Self, sums: &mut Self);

    /// The gradient of one per-channel input from `self`, the [`BatchNormKernels::batch_norm_sums`], into
    /// `out` `[channels]`: written, or added to with `accumulate`.
    fn batch_norm_channel_grad(
        &self,
        which: BatchNormInput,
        saved: &Self,
        gamma: Option<&Self>,
        out: &mut Self,
        accumulate: bool,
    );

    /// The input gradient from the output gradient `self`, into `dx` (written, or added to with
    /// `accumulate`): `gamma / std * (g - sum(g) / M - xh * sum(g * xh) / M)` with `M` values per channel when
    /// the batch's statistics were used (`training`), `g * gamma / std` otherwise.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_input_grad(
        &self,
        x: &Self,
        axis: usize,
        saved: &Self,
        sums: &Self,
        gamma: Option<&Self>,
        training: bool,
        dx: &mut Self,
        accumulate: bool,
    );
}

/// The CPU buffer of an optional storage.
macro_rules! cpu_opt {
    ($s:expr) => {
        $s.map(|s| match s {
            Storage::Cpu(s) => s,
        })
    };
}

impl Storage {
    /// [`BatchNormKernels::batch_statistics`] on the device the buffers live on.
    pub(crate) fn batch_statistics(&self, axis: usize, mean: &mut Storage, variance: &mut Storage) {
        match (self, mean, variance) {
            (Storage::Cpu(x), Storage::Cpu(m), Storage::Cpu(v)) => x.batch_statistics(axis, m, v),
        }
    }

    /// [`BatchNormKernels::batch_norm`] on the device the buffers live on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm(
        &self,
        axis: usize,
        mean: &Storage,
        variance: &Storage,
        gamma: Option<&Storage>,
        beta: Option<&Storage>,
        epsilon: f32,
        out: &mut Storage,
        saved: &mut Storage,
    ) {
        match (self, mean, variance, out, saved) {
            (Storage::Cpu(x), Storage::Cpu(m), Storage::Cpu(v), Storage::Cpu(out), Storage::Cpu(saved)) => {
                x.batch_norm(axis, m, v, cpu_opt!(gamma), cpu_opt!(beta), epsilon, out, saved)
            }
        }
    }

    /// [`BatchNormKernels::batch_norm_sums`] on the device the buffers live on.
    pub(crate) fn batch_norm_sums(&self, x: &Storage, axis: usize, saved: &Storage, sums: &mut Storage) {
        match (self, x, saved, sums) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(saved), Storage::Cpu(sums)) => {
                g.batch_norm_sums(x, axis, saved, sums)
            }
        }
    }

    /// [`BatchNormKernels::batch_norm_channel_grad`] on the device the buffers live on.
    pub(crate) fn batch_norm_channel_grad(
        &self,
        which: BatchNormInput,
        saved: &Storage,
        gamma: Option<&Storage>,
        out: &mut Storage,
        accumulate: bool,
    ) {
        match (self, saved, out) {
            (Storage::Cpu(sums), Storage::Cpu(saved), Storage::Cpu(out)) => {
                sums.batch_norm_channel_grad(which, saved, cpu_opt!(gamma), out, accumulate)
            }
        }
    }

    /// [`BatchNormKernels::batch_norm_input_grad`] on the device the buffers live on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm_input_grad(
        &self,
        x: &Storage,
        axis: usize,
        saved: &Storage,
        sums: &Storage,
        gamma: Option<&Storage>,
        training: bool,
        dx: &mut Storage,
        accumulate: bool,
    ) {
        match (self, x, saved, sums, dx) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(saved), Storage::Cpu(sums), Storage::Cpu(dx)) => {
                g.batch_norm_input_grad(x, axis, saved, sums, cpu_opt!(gamma), training, dx, accumulate)
            }
        }
    }
}
