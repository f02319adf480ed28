//! 2-D max and average pooling over channels-last images (NHWC): the kernels `ops/pool2d.rs` runs.
use super::{Axis1, Storage};

/// The sizes of one 2-D pooling, fixed when it is recorded: channels, and how the window slides along rows
/// and columns (no dilation). The batch is the buffers' length over [`Pool2dGeometry::image`].
#[derive(Clone, Copy, Debug)]
pub struct Pool2dGeometry {
    pub(crate) channels: usize,
    pub(crate) rows: Axis1,
    pub(crate) cols: Axis1,
}

impl Pool2dGeometry {
    /// Elements of one input image.
    pub(crate) fn image(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    /// Elements of one output image.
    pub(crate) fn out_image(&self) -> usize {
        self.rows.output * self.cols.output * self.channels
    }

    /// Whether every input position lies in exactly one window: windows side by side (strides equal to the
    /// window), no padding, and no rows or columns left over.
    pub(crate) fn tiles(&self) -> bool {
        let exact =
            |a: &Axis1| a.stride == a.size && a.pad == 0 && a.output.checked_mul(a.size) == Some(a.input);
        exact(&self.rows) && exact(&self.cols)
    }

    /// Replaces `taps` with the input offsets of the in-bounds taps of the window at output pixel `(oh, ow)`,
    /// in window order. Only the taps inside the input are walked, so a window far larger than the image (with
    /// `same` padding) costs what the image does.
    pub(crate) fn tap_offsets(&self, oh: usize, ow: usize, taps: &mut Vec<usize>) {
        taps.clear();
        let (rows, cols) = (self.rows.taps(oh), self.cols.taps(ow));
        // Pooling windows have no dilation: the in-bounds taps are consecutive positions.
        let (r0, c0) = (
            oh * self.rows.stride + rows.start - self.rows.pad,
            ow * self.cols.stride + cols.start - self.cols.pad,
        );
        let (c, width) = (self.channels, self.cols.input);
        for ih in r0..r0 + rows.len() {
            let row = (ih * width + c0) * c;
            taps.extend((0..cols.len()).map(|j| row + j * c));
        }
    }

    /// The most in-bounds taps a window has: what [`Pool2dGeometry::tap_offsets`] may push (at most the pixels
    /// of an image, however large the window). Max pooling needs it below 2^32.
    pub(crate) fn max_taps(&self) -> usize {
        self.rows.size.min(self.rows.input) * self.cols.size.min(self.cols.input)
    }
}

/// Max and average pooling, forward and backward. Inputs `(N, H, W, C)`, outputs `(N, OH, OW, C)`, as the
/// geometry says; the caller has checked the shapes (and, for max pooling, that a window has fewer than 2^32
/// taps inside the image).
pub trait Pool2dKernels {
    /// The maximum of each window into `out` (a NaN wins and stays, as in `numpy.max`), and into `argmax`
    /// (of `out`'s shape) which of the window's in-bounds taps it came from (the first on ties, TensorFlow's
    /// argmax), in a form only [`Pool2dKernels::max_pool2d_backward`] reads.
    fn max_pool2d(&self, geometry: Pool2dGeometry, out: &mut Self, argmax: &mut Self);

    /// The mean of each window's in-bounds taps into `out` (with `same` padding the padded positions do not
    /// count, as in TensorFlow).
    fn avg_pool2d(&self, geometry: Pool2dGeometry, out: &mut Self);

    /// The input gradient of max pooling: each element of `self` (the output gradient) goes to the tap
    /// `argmax` recorded, into `dx` (the input's shape): written, or added to with `accumulate`.
    fn max_pool2d_backward(&self, argmax: &Self, geometry: Pool2dGeometry, dx: &mut Self, accumulate: bool);

    /// The input gradient of average pooling: each element of `self` (the output gradient), divided by its
    /// window's in-bounds taps, to each of them, into `dx`: written, or added to with `accumulate`.
    fn avg_pool2d_backward(&self, geometry: Pool2dGeometry, dx: &mut Self, accumulate: bool);
}

impl Storage {
    /// [`Pool2dKernels::max_pool2d`] on the device the buffers live on.
    pub(crate) fn max_pool2d(&self, geometry: Pool2dGeometry, out: &mut Storage, argmax: &mut Storage) {
        match (self, out, argmax) {
            (Storage::Cpu(x), Storage::Cpu(out), Storage::Cpu(arg)) => x.max_pool2d(geometry, out, arg),
        }
    }

    /// [`Pool2dKernels::avg_pool2d`] on the device the buffers live on.
    pub(crate) fn avg_pool2d(&self, geometry: Pool2dGeometry, out: &mut Storage) {
        match (self, out) {
            (Storage::Cpu(x), Storage::Cpu(out)) => x.avg_pool2d(geometry, out),
        }
    }

    /// [`Pool2dKernels::max_pool2d_backward`] on the device the buffers live on.
    pub(crate) fn max_pool2d_backward(
        &self,
        argmax: &Storage,
        geometry: Pool2dGeometry,
        dx: &mut Storage,
        accumulate: bool,
    ) {
        match (self, argmax, dx) {
            (Storage::Cpu(g), Storage::Cpu(arg), Storage::Cpu(dx)) => {
                g.max_pool2d_backward(arg, geometry, dx, accumulate)
            }
        }
    }

    /// [`Pool2dKernels::avg_pool2d_backward`] on the device the buffers live on.
    pub(crate) fn avg_pool2d_backward(&self, geometry: Pool2dGeometry, dx: &mut Storage, accumulate: bool) {
        match (self, dx) {
            (Storage::Cpu(g), Storage::Cpu(dx)) => g.avg_pool2d_backward(geometry, dx, accumulate),
        }
    }
}
