//! 2-D max and average pooling over channels-last images (NHWC).
//!
//! Max pooling keeps, in the node's auxiliary buffer, which tap of its window each maximum came from (the
//! first on ties, TensorFlow's choice), and its backward routes the gradient there without reading the input
//! again. A NaN in a window makes its maximum NaN, as `numpy.max` does. Average pooling divides by the number
//! of taps inside the input: with `same` padding the padded positions do not count, as in TensorFlow.
use super::window::{for_each_task, per_image, wide_fn, Axis1, Padding};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{fit_buffer, Var};
use crate::device::Storage;

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduce {
    Max,
    Average,
}

/// The sizes of one pooling, fixed when it is recorded.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    channels: usize,
    rows: Axis1,
    cols: Axis1,
}

impl Geometry {
    fn image(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }
    fn out_image(&self) -> usize {
        self.rows.output * self.cols.output * self.channels
    }
    /// Whether every input position lies in exactly one window: windows side by side (strides equal to the
    /// window), no padding, and no rows or columns left over.
    fn tiles(&self) -> bool {
        let exact =
            |a: &Axis1| a.stride == a.size && a.pad == 0 && a.output.checked_mul(a.size) == Some(a.input);
        exact(&self.rows) && exact(&self.cols)
    }

    /// Replaces `taps` with the input offsets of the in-bounds taps of the window at output pixel `(oh, ow)`,
    /// in window order. Only the taps inside the input are walked, so a window far larger than the image (with
    /// `same` padding) costs what the image does.
    fn tap_offsets(&self, oh: usize, ow: usize, taps: &mut Vec<usize>) {
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

    /// The most in-bounds taps a window has: what [`Geometry::tap_offsets`] may push (at most the pixels of an
    /// image, however large the window).
    fn max_taps(&self) -> usize {
        self.rows.size.min(self.rows.input) * self.cols.size.min(self.cols.input)
    }
}

struct Pool2d {
    input: [usize; 1],
    geometry: Geometry,
    reduce: Reduce,
}

impl<'t> Var<'t> {
    /// Max pooling of channels-last images `(N, H, W, C)` with windows of `pool` moving by `strides`: Keras'
    /// `MaxPooling2D`. The output is `(N, OH, OW, C)`.
    ///
    /// ```
    /// use kerust::autodiff::{Padding, ParamStore, Tape};
    /// use ndarray::Array4;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = Array4::from_shape_fn((1, 4, 4, 1), |(_, i, j, _)| (i * 4 + j) as f32);
    /// let y = tape.constant(x.into_dyn().view()).max_pool2d((2, 2), (2, 2), Padding::Valid);
    /// assert_eq!(y.value().iter().copied().collect::<Vec<_>>(), [5.0, 7.0, 13.0, 15.0]);
    /// ```
    ///
    /// # Panics
    /// If `self` is not 4-D, a valid window does not fit, a window's reach overflows a `usize`, or a window has
    /// 2^32 or more taps inside the image; layers check this when they are built.
    pub fn max_pool2d(self, pool: (usize, usize), strides: (usize, usize), padding: Padding) -> Var<'t> {
        self.pool2d(pool, strides, padding, Reduce::Max)
    }

    /// Average pooling, as [`Var::max_pool2d`] (Keras' `AveragePooling2D`); with `same` padding each window
    /// averages only its taps inside the image.
    pub fn avg_pool2d(self, pool: (usize, usize), strides: (usize, usize), padding: Padding) -> Var<'t> {
        self.pool2d(pool, strides, padding, Reduce::Average)
    }

    fn pool2d(
        self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
        reduce: Reduce,
    ) -> Var<'t> {
        let xs = self.shape();
        let &[batch, h, w, channels] = xs.as_slice() else {
            panic!("pool2d: needs images (N, H, W, C), got {xs:?}")
        };
        let (Ok(rows), Ok(cols)) =
            (Axis1::new(h, pool.0, strides.0, 1, padding), Axis1::new(w, pool.1, strides.1, 1, padding))
        else {
            panic!("pool2d: a {pool:?} window moving by {strides:?} does not fit images of {h}x{w}")
        };
        let g = Geometry { channels, rows, cols };
        assert!(
            reduce == Reduce::Average || u32::try_from(g.max_taps()).is_ok(),
            "max_pool2d: windows of {} taps inside images of {h}x{w}: at most 2^32 - 1",
            g.max_taps()
        );
        let node = Pool2d { input: [self.id], geometry: g, reduce };
        let shape = [batch, rows.output, cols.output, channels];
        self.tape.push(node, &shape, |v, out, aux| {
            let x = v.get(self.id);
            let x = x.as_slice().expect("tape values and parameters are contiguous");
            let out = out.as_slice_mut().expect("owned buffers are contiguous");
            match reduce {
                Reduce::Max => {
                    fit_buffer(aux, &shape);
                    let arg = aux.as_slice_mut().expect("owned buffers are contiguous");
                    let (n, m) = (g.out_image(), g.image());
                    let work: Vec<_> = out.chunks_mut(n).zip(arg.chunks_mut(n)).zip(x.chunks(m)).collect();
                    for_each_task(work, |((out, arg), x)| max_forward(x, out, arg, &g));
                }
                Reduce::Average => {
                    per_image(out, g.out_image(), x, g.image(), |_, out, x| avg_forward(x, out, &g))
                }
            }
        })
    }
}

wide_fn! {
    /// The maximum of each window (a NaN wins and stays, as in `numpy.max`), and which of the window's in-bounds
    /// taps it came from (the first on ties, TensorFlow's argmax), as the bits of a `u32` in an `f32` (an `f32`
    /// value would be exact only below 2^24 taps, which a global pooling of a 4097 x 4097 image exceeds); the
    /// bits are only moved and compared as integers, never computed with.
    fn max_forward(x: &[f32], out: &mut [f32], arg: &mut [f32], g: &Geometry) {
        let c = g.channels;
        let mut taps = Vec::with_capacity(g.max_taps());
        for (p, (out, arg)) in out.chunks_exact_mut(c).zip(arg.chunks_exact_mut(c)).enumerate() {
            g.tap_offsets(p / g.cols.output, p % g.cols.output, &mut taps);
            let (&first, rest) = taps.split_first().expect("a window overlaps its input");
            out.copy_from_slice(&x[first..first + c]);
            arg.fill(0.0);
            for (t, &at) in rest.iter().enumerate() {
                let t = tap_bits(t + 1);
                for ((o, a), &v) in out.iter_mut().zip(arg.iter_mut()).zip(&x[at..at + c]) {
                    // Non-short-circuit `&` and `|`: selects, so that the loop vectorizes.
                    let take = (v > *o) | (v.is_nan() & !o.is_nan());
                    *o = if take { v } else { *o };
                    *a = if take { t } else { *a };
                }
            }
        }
    }
}

wide_fn! {
    /// One image's max pooling input gradient: each output's gradient goes to the tap [`max_forward`]
    /// recorded, written tap by tap under a mask (contiguous and vectorized, unlike a scatter). Where the
    /// windows tile the image exactly, a first contribution (`fresh`) writes every position once; otherwise
    /// it is zero-filled first, and later contributions add.
    fn max_backward(arg: &[f32], g: &[f32], dx: &mut [f32], geo: &Geometry, fresh: bool) {
        let write = fresh && geo.tiles();
        if fresh && !write {
            dx.fill(0.0);
        }
        let c = geo.channels;
        let mut taps = Vec::with_capacity(geo.max_taps());
        for (p, (g, arg)) in g.chunks_exact(c).zip(arg.chunks_exact(c)).enumerate() {
            geo.tap_offsets(p / geo.cols.output, p % geo.cols.output, &mut taps);
            for (t, &at) in taps.iter().enumerate() {
                let t = tap_bits(t).to_bits();
                let dx = dx[at..at + c].iter_mut().zip(arg).zip(g);
                if write {
                    dx.for_each(|((d, &a), &g)| *d = if a.to_bits() == t { g } else { 0.0 });
                } else {
                    dx.for_each(|((d, &a), &g)| *d += if a.to_bits() == t { g } else { 0.0 });
                }
            }
        }
    }
}

/// Tap `t` of a window as the `f32` whose bits are `t` (`0.0` for tap 0).
#[inline(always)]
fn tap_bits(t: usize) -> f32 {
    f32::from_bits(
        u32::try_from(t).expect("a window has fewer than 2^32 taps inside an image: checked when recorded"),
    )
}

fn avg_forward(x: &[f32], out: &mut [f32], g: &Geometry) {
    let c = g.channels;
    let mut taps = Vec::with_capacity(g.max_taps());
    for (p, out) in out.chunks_exact_mut(c).enumerate() {
        g.tap_offsets(p / g.cols.output, p % g.cols.output, &mut taps);
        out.fill(0.0);
        for &at in &taps {
            out.iter_mut().zip(&x[at..at + c]).for_each(|(o, &v)| *o += v);
        }
        let scale = 1.0 / taps.len() as f32;
        out.iter_mut().for_each(|o| *o *= scale);
    }
}

impl Kernel for Pool2d {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let geo = self.geometry;
        let x = self.input[0];
        let shape = ctx.value(x).shape().to_vec();
        // The taps of the maxima, which the forward pass kept (max pooling only).
        let args = std::mem::replace(ctx.aux.cpu_mut(), crate::autodiff::empty());
        // A first contribution is written or zero-filled image by image, on the thread that then adds into it.
        if let Some((dx, fresh)) = ctx.grad(x, &shape) {
            let dx = dx.as_slice_mut().expect("gradient buffers are contiguous");
            let gs = g.as_slice().expect("gradient buffers are contiguous");
            let c = geo.channels;
            match self.reduce {
                Reduce::Max => {
                    let args = args.as_slice().expect("owned buffers are contiguous");
                    per_image(dx, geo.image(), gs, geo.out_image(), |image, dx, g| {
                        let arg = &args[image * geo.out_image()..][..geo.out_image()];
                        max_backward(arg, g, dx, &geo, fresh);
                    });
                }
                Reduce::Average => per_image(dx, geo.image(), gs, geo.out_image(), |_, dx, g| {
                    if fresh {
                        dx.fill(0.0);
                    }
                    let mut taps = Vec::with_capacity(geo.max_taps());
                    for (p, g) in g.chunks_exact(c).enumerate() {
                        geo.tap_offsets(p / geo.cols.output, p % geo.cols.output, &mut taps);
                        let scale = 1.0 / taps.len() as f32;
                        for &at in &taps {
                            dx[at..at + c].iter_mut().zip(g).for_each(|(d, &g)| *d += g * scale);
                        }
                    }
                }),
            }
        }
        *ctx.aux.cpu_mut() = args;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::Tensor;
    use crate::autodiff::{check_gradients, ParamStore, Tape};
    use ndarray::{ArrayD, IxDyn};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// Distinct values (so that no window has a tie within a finite difference step) in random order.
    fn distinct(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut values: Vec<f32> = (0..n).map(|i| i as f32 * 0.05 - n as f32 * 0.025).collect();
        values.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        ArrayD::from_shape_vec(IxDyn(shape), values).unwrap()
    }

    /// The definition: each window's max or mean over its taps inside the input.
    fn naive(
        x: &Tensor,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
        max: bool,
    ) -> Tensor {
        let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let rows = Axis1::new(h, pool.0, strides.0, 1, padding).unwrap();
        let cols = Axis1::new(w, pool.1, strides.1, 1, padding).unwrap();
        ArrayD::from_shape_fn(IxDyn(&[n, rows.output, cols.output, c]), |i| {
            let mut taps = vec![];
            for a in 0..pool.0 {
                for b in 0..pool.1 {
                    if let (Some(ih), Some(iw)) = (rows.source(i[1], a), cols.source(i[2], b)) {
                        taps.push(x[[i[0], ih, iw, i[3]]]);
                    }
                }
            }
            if max {
                taps.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            } else {
                taps.iter().sum::<f32>() / taps.len() as f32
            }
        })
    }

    /// Input shape, pool size, strides, padding.
    type Case = (Vec<usize>, (usize, usize), (usize, usize), Padding);

    fn cases() -> Vec<Case> {
        vec![
            (vec![2, 4, 4, 3], (2, 2), (2, 2), Padding::Valid),
            (vec![1, 5, 7, 2], (2, 2), (2, 2), Padding::Valid), // odd sizes: the last row/column is dropped
            (vec![1, 5, 7, 2], (2, 2), (2, 2), Padding::Same),
            (vec![2, 5, 5, 1], (3, 3), (1, 1), Padding::Valid), // overlapping windows
            (vec![1, 6, 5, 2], (3, 2), (2, 1), Padding::Same),
            (vec![1, 3, 3, 2], (3, 3), (3, 3), Padding::Valid), // global
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (i, (shape, pool, strides, padding)) in cases().into_iter().enumerate() {
            let x = distinct(&shape, i as u64);
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let xv = tape.constant(x.view());
            assert_eq!(
                xv.max_pool2d(pool, strides, padding).value(),
                naive(&x, pool, strides, padding, true)
            );
            let avg = xv.avg_pool2d(pool, strides, padding).value();
            let want = naive(&x, pool, strides, padding, false);
            assert!(avg.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "case {i}: {avg} vs {want}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (i, (shape, pool, strides, padding)) in cases().into_iter().enumerate() {
            let x = [distinct(&shape, i as u64)];
            check_gradients(&x, |v| v[0].max_pool2d(pool, strides, padding))
                .unwrap_or_else(|e| panic!("max, case {i}: {e}"));
            check_gradients(&x, |v| v[0].avg_pool2d(pool, strides, padding))
                .unwrap_or_else(|e| panic!("average, case {i}: {e}"));
            // Accumulating onto a gradient that is already set.
            check_gradients(&x, |v| {
                v[0].max_pool2d(pool, strides, padding).add(v[0].avg_pool2d(pool, strides, padding))
            })
            .unwrap_or_else(|e| panic!("max after another use, case {i}: {e}"));
        }
    }

    #[test]
    fn nan_and_inf_propagate_through_max() {
        let mut x = distinct(&[1, 4, 4, 1], 0);
        x[[0, 1, 0, 0]] = f32::NAN;
        x[[0, 2, 3, 0]] = f32::INFINITY;
        x[[0, 3, 1, 0]] = f32::NEG_INFINITY;
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let y = tape.constant(x.view()).max_pool2d((2, 2), (2, 2), Padding::Valid).value();
        assert!(y[[0, 0, 0, 0]].is_nan(), "a NaN in a window makes its max NaN: {y}");
        assert!(y[[0, 0, 1, 0]].is_finite());
        assert_eq!(y[[0, 1, 1, 0]], f32::INFINITY);
        assert!(y[[0, 1, 0, 0]].is_finite(), "-inf loses to the finite values of its window");
        let avg = tape.constant(x.view()).avg_pool2d((2, 2), (2, 2), Padding::Valid).value();
        assert!(avg[[0, 0, 0, 0]].is_nan() && avg[[0, 1, 1, 0]] == f32::INFINITY);
    }
}
