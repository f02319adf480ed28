//! 2-D convolution over channels-last images (NHWC) with Keras' kernel layout `(KH, KW, C, F)`: the kernels
//! `ops/conv2d.rs` runs.
use super::{Axis1, Storage, Unary};

/// The sizes of one convolution, fixed when it is recorded: the batch, channels in, filters out, and how the
/// kernel slides along rows and columns.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeometry {
    pub(crate) batch: usize,
    pub(crate) channels: usize,
    pub(crate) filters: usize,
    pub(crate) rows: Axis1,
    pub(crate) cols: Axis1,
}

impl Conv2dGeometry {
    /// Elements of one input image.
    pub(crate) fn image(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    /// Output pixels of one image.
    pub(crate) fn pixels(&self) -> usize {
        self.rows.output * self.cols.output
    }

    /// Length of one im2col row: the receptive field, `KH·KW·C`.
    pub(crate) fn field(&self) -> usize {
        self.rows.size * self.cols.size * self.channels
    }
}

/// Convolution forward and backward. Images `x` `(N, H, W, C)`, kernel `(KH, KW, C, F)`, bias `(F)`, output
/// `(N, OH, OW, F)`, as the geometry says; the caller has checked the shapes. A fused activation is one whose
/// derivative reads only its output (relu, sigmoid, tanh).
pub trait Conv2dKernels {
    /// `out = act(conv(x, kernel) + bias)`, `self` being `x` (no bias: none added; no activation: the identity).
    fn conv2d(
        &self,
        kernel: &Self,
        bias: Option<&Self>,
        geometry: Conv2dGeometry,
        act: Option<Unary>,
        out: &mut Self,
    );

    /// The backward pass, given the output gradient `self`, which becomes `dz = g * act'(y)` in place (`y` the
    /// output). The input gradient goes into `dx` (written, or added to with its flag set); the kernel's and
    /// the bias's gradients are left in `partials`, a buffer the kernel sizes as it needs, for
    /// [`Conv2dKernels::conv2d_kernel_grad`] and [`Conv2dKernels::conv2d_bias_grad`] to add up. The kernel's
    /// part is computed only with `want_kernel`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &mut self,
        x: &Self,
        kernel: &Self,
        y: &Self,
        geometry: Conv2dGeometry,
        act: Option<Unary>,
        want_kernel: bool,
        dx: Option<(&mut Self, bool)>,
        partials: &mut Self,
    );

    /// The kernel's gradient from the `partials` (`self`) of [`Conv2dKernels::conv2d_backward`], into `dw`:
    /// written, or added to with `accumulate`.
    fn conv2d_kernel_grad(&self, geometry: Conv2dGeometry, dw: &mut Self, accumulate: bool);

    /// The bias's gradient from the `partials` (`self`) of [`Conv2dKernels::conv2d_backward`], into `db`:
    /// written, or added to with `accumulate`.
    fn conv2d_bias_grad(&self, geometry: Conv2dGeometry, db: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`Conv2dKernels::conv2d`] on the device the buffers live on.
    pub(crate) fn conv2d(
        &self,
        kernel: &Storage,
        bias: Option<&Storage>,
        geometry: Conv2dGeometry,
        act: Option<Unary>,
        out: &mut Storage,
    ) {
        match (self, kernel, out) {
            (Storage::Cpu(x), Storage::Cpu(k), Storage::Cpu(out)) => {
                let bias = bias.map(|b| match b {
                    Storage::Cpu(b) => b,
                });
                x.conv2d(k, bias, geometry, act, out)
            }
        }
    }

    /// [`Conv2dKernels::conv2d_backward`] on the device the buffers live on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv2d_backward(
        &mut self,
        x: &Storage,
        kernel: &Storage,
        y: &Storage,
        geometry: Conv2dGeometry,
        act: Option<Unary>,
        want_kernel: bool,
        dx: Option<(&mut Storage, bool)>,
        partials: &mut Storage,
    ) {
        match (self, x, kernel, y, partials) {
            (Storage::Cpu(g), Storage::Cpu(x), Storage::Cpu(k), Storage::Cpu(y), Storage::Cpu(p)) => {
                let dx = dx.map(|(d, accumulate)| match d {
                    Storage::Cpu(d) => (d, accumulate),
                });
                g.conv2d_backward(x, k, y, geometry, act, want_kernel, dx, p)
            }
        }
    }

    /// [`Conv2dKernels::conv2d_kernel_grad`] on the device the buffers live on.
    pub(crate) fn conv2d_kernel_grad(&self, geometry: Conv2dGeometry, dw: &mut Storage, accumulate: bool) {
        match (self, dw) {
            (Storage::Cpu(p), Storage::Cpu(dw)) => p.conv2d_kernel_grad(geometry, dw, accumulate),
        }
    }

    /// [`Conv2dKernels::conv2d_bias_grad`] on the device the buffers live on.
    pub(crate) fn conv2d_bias_grad(&self, geometry: Conv2dGeometry, db: &mut Storage, accumulate: bool) {
        match (self, db) {
            (Storage::Cpu(p), Storage::Cpu(db)) => p.conv2d_bias_grad(geometry, db, accumulate),
        }
    }
}
