//! 2-D max and average pooling over channels-last images (NHWC).
//!
//! Max pooling keeps, in the node's auxiliary buffer, which tap of its window each maximum came from (the
//! first on ties, TensorFlow's choice), and its backward routes the gradient there without reading the input
//! again. A NaN in a window makes its maximum NaN, as `numpy.max` does. Average pooling divides by the number
//! of taps inside the input: with `same` padding the padded positions do not count, as in TensorFlow.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{Axis1, Padding, Pool2dGeometry as Geometry, Storage};

/// Which reduction a pooling window applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduce {
    Max,
    Average,
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

    /// Max pooling of channels-last sequences `(N, T, C)` with windows of `pool` steps moving by `stride`:
    /// Keras' `MaxPooling1D`, the 2-D kernels on sequences one row high. The output is `(N, OT, C)`.
    ///
    /// ```
    /// use kerust::autodiff::{Padding, ParamStore, Tape};
    /// use ndarray::Array3;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = Array3::from_shape_vec((1, 5, 1), vec![1.0, 3.0, 2.0, 0.0, 4.0]).unwrap();
    /// let y = tape.constant(x.into_dyn().view()).max_pool1d(2, 2, Padding::Same);
    /// assert_eq!(y.value().iter().copied().collect::<Vec<_>>(), [3.0, 2.0, 4.0]);
    /// ```
    ///
    /// # Panics
    /// As [`Var::max_pool2d`], for sequences `(N, T, C)`.
    pub fn max_pool1d(self, pool: usize, stride: usize, padding: Padding) -> Var<'t> {
        self.pool1d(pool, stride, padding, Reduce::Max)
    }

    /// Average pooling, as [`Var::max_pool1d`] (Keras' `AveragePooling1D`); with `same` padding each window
    /// averages only its steps inside the sequence.
    pub fn avg_pool1d(self, pool: usize, stride: usize, padding: Padding) -> Var<'t> {
        self.pool1d(pool, stride, padding, Reduce::Average)
    }

    fn pool1d(self, pool: usize, stride: usize, padding: Padding, reduce: Reduce) -> Var<'t> {
        let xs = self.shape();
        let &[batch, steps, channels] = xs.as_slice() else {
            panic!("pool1d: needs sequences (N, T, C), got {xs:?}")
        };
        let Ok(cols) = Axis1::new(steps, pool, stride, 1, padding) else {
            panic!("pool1d: a window of {pool} moving by {stride} does not fit sequences of {steps}")
        };
        let rows = Axis1::new(1, 1, 1, 1, Padding::Valid).expect("one row");
        self.pool_windows(Geometry { channels, rows, cols }, &[batch, cols.output, channels], reduce)
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
        self.pool_windows(g, &[batch, rows.output, cols.output, channels], reduce)
    }

    /// Records the pooling node of geometry `g` with output `shape` (images or sequences: the kernels see
    /// flat buffers).
    fn pool_windows(self, g: Geometry, shape: &[usize], reduce: Reduce) -> Var<'t> {
        let (h, w) = (g.rows.input, g.cols.input);
        assert!(
            reduce == Reduce::Average || u32::try_from(g.max_taps()).is_ok(),
            "max_pool2d: windows of {} taps inside images of {h}x{w}: at most 2^32 - 1",
            g.max_taps()
        );
        let node = Pool2d { input: [self.id], geometry: g, reduce };
        self.tape.push(node, shape, |v, out, aux| {
            let x = v.get(self.id);
            match reduce {
                Reduce::Max => {
                    aux.fit(shape);
                    x.max_pool2d(g, out, aux);
                }
                Reduce::Average => x.avg_pool2d(g, out),
            }
        })
    }
}

impl Kernel for Pool2d {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let geo = self.geometry;
        let x = self.input[0];
        let shape = ctx.value(x).shape().to_vec();
        // The taps of the maxima, which the forward pass kept (max pooling only).
        let args = std::mem::take(ctx.aux);
        if let Some((dx, fresh)) = ctx.grad(x, &shape) {
            match self.reduce {
                Reduce::Max => g.max_pool2d_backward(&args, geo, dx, !fresh),
                Reduce::Average => g.avg_pool2d_backward(geo, dx, !fresh),
            }
        }
        *ctx.aux = args;
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
    fn pool1d_is_pool2d_one_row_high() {
        for (i, (t, pool, stride, padding)) in [
            (7, 2, 2, Padding::Valid),
            (7, 2, 2, Padding::Same),
            (6, 3, 1, Padding::Valid),
            (5, 3, 2, Padding::Same),
        ]
        .into_iter()
        .enumerate()
        {
            let x = distinct(&[2, t, 3], i as u64);
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let (x1, x2) = (tape.constant(x.view()), tape.constant(x.view()).reshape(&[2, 1, t, 3]));
            for max in [true, false] {
                let (a, b) = if max {
                    (x1.max_pool1d(pool, stride, padding), x2.max_pool2d((1, pool), (1, stride), padding))
                } else {
                    (x1.avg_pool1d(pool, stride, padding), x2.avg_pool2d((1, pool), (1, stride), padding))
                };
                let b = b.value();
                assert_eq!(a.shape(), [b.shape()[0], b.shape()[2], b.shape()[3]], "case {i}");
                assert_eq!(a.value().iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>(), "case {i}");
            }
            check_gradients(std::slice::from_ref(&x), |v| v[0].max_pool1d(pool, stride, padding))
                .unwrap_or_else(|e| panic!("max, case {i}: {e}"));
            check_gradients(&[x], |v| v[0].avg_pool1d(pool, stride, padding))
                .unwrap_or_else(|e| panic!("average, case {i}: {e}"));
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
