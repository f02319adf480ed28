//! 2-D convolution over channels-last images (NHWC, Keras' default), as im2col and one matrix product.
//!
//! Forward: the receptive field of every output pixel is copied into one row of `cols`, of shape
//! `(N·OH·OW, KH·KW·C)`; Keras' kernel `(KH, KW, C, F)` read row-major is the `(KH·KW·C, F)` matrix that
//! multiplies it, so `y = act(cols · W + b)` comes out directly in NHWC. `cols` stays in the node's auxiliary
//! buffer for the backward pass.
//!
//! Backward: `dz = g · act'(y)` in place, `db = Σ dz`, `dW = colsᵀ · dz`, and `dx = col2im(dz · Wᵀ)`, where
//! col2im adds every row back onto the pixels it was copied from (the `cols` buffer is reused for `dz · Wᵀ`).
use ndarray::{ArrayView2, ArrayViewMut2, Ix2};

use super::window::{per_image, Axis1, Padding};
use crate::autodiff::backward::{BackwardCtx, Kernel, Op};
use crate::autodiff::gemm::gemm;
use crate::autodiff::unary::Unary;
use crate::autodiff::{fit_buffer, Tensor, Var};

/// How a [`Var::conv2d`] kernel slides: Keras' `strides`, `padding` and `dilation_rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Steps between windows, (rows, columns).
    pub strides: (usize, usize),
    /// `valid` or `same`.
    pub padding: Padding,
    /// Spacing of the kernel's taps, (rows, columns); 1 is an ordinary convolution.
    pub dilation: (usize, usize),
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { strides: (1, 1), padding: Padding::Valid, dilation: (1, 1) }
    }
}

/// The sizes of one convolution, fixed when it is recorded.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    channels: usize,
    filters: usize,
    rows: Axis1,
    cols: Axis1,
}

impl Geometry {
    /// Elements of one input image.
    fn image(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }
    /// Output pixels of one image.
    fn pixels(&self) -> usize {
        self.rows.output * self.cols.output
    }
    /// Length of one im2col row: the receptive field.
    fn field(&self) -> usize {
        self.rows.size * self.cols.size * self.channels
    }
}

/// The recorded node: inputs `[x, w]` or `[x, w, b]`.
struct Conv2d {
    inputs: Vec<usize>,
    geometry: Geometry,
    act: Option<Unary>,
}

impl<'t> Var<'t> {
    /// 2-D convolution of channels-last images `self` `(N, H, W, C)` with a kernel `(KH, KW, C, F)` (Keras'
    /// layout), plus an optional bias `(F)`: the output is `(N, OH, OW, F)`.
    ///
    /// ```
    /// use kerust::autodiff::{Conv2dOptions, ParamStore, Tape};
    /// use ndarray::{Array4, ArrayD, IxDyn};
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(Array4::<f32>::ones((1, 4, 4, 1)).into_dyn().view());
    /// let w = tape.constant(ArrayD::ones(IxDyn(&[3, 3, 1, 2])).view());
    /// let y = x.conv2d(w, None, Conv2dOptions::default());
    /// assert_eq!(y.shape(), vec![1, 2, 2, 2]);
    /// assert_eq!(y.value()[[0, 0, 0, 0]], 9.0);
    /// ```
    ///
    /// # Panics
    /// If the shapes do not fit, or the kernel does not fit in the (padded) input; layers check this when they
    /// are built.
    pub fn conv2d(self, kernel: Var<'t>, bias: Option<Var<'t>>, options: Conv2dOptions) -> Var<'t> {
        self.conv2d_fused(kernel, bias, options, None)
    }

    /// [`Var::conv2d`] followed by an element-wise activation whose derivative reads only its output (relu,
    /// sigmoid, tanh), in the same node.
    pub(crate) fn conv2d_fused(
        self,
        kernel: Var<'t>,
        bias: Option<Var<'t>>,
        options: Conv2dOptions,
        act: Option<Unary>,
    ) -> Var<'t> {
        assert!(act.is_none_or(Unary::df_uses_output_only), "conv2d fuses only activations of the output");
        let (xs, ks) = (self.shape(), kernel.shape());
        let (&[batch, h, w, channels], &[kh, kw, kc, filters]) = (xs.as_slice(), ks.as_slice()) else {
            panic!("conv2d: needs images (N, H, W, C) and a kernel (KH, KW, C, F), got {xs:?} and {ks:?}")
        };
        assert_eq!(
            channels, kc,
            "conv2d: images {xs:?} have {channels} channels, the kernel {ks:?} takes {kc}"
        );
        if let Some(b) = bias {
            assert_eq!(b.shape(), [filters], "conv2d: the bias needs shape [{filters}]");
        }
        let (sh, sw) = options.strides;
        let (dh, dw) = options.dilation;
        let (Some(rows), Some(cols)) =
            (Axis1::new(h, kh, sh, dh, options.padding), Axis1::new(w, kw, sw, dw, options.padding))
        else {
            panic!("conv2d: a {kh}x{kw} kernel with {options:?} does not fit images of {h}x{w}")
        };
        let geometry = Geometry { batch, channels, filters, rows, cols };
        let mut inputs = vec![self.id, kernel.id];
        inputs.extend(bias.map(|b| b.id));
        let node = Conv2d { inputs, geometry, act };
        let g = geometry;
        self.tape.push(
            Op::Kernel(Box::new(node)),
            &[batch, rows.output, cols.output, filters],
            |v, out, aux| {
                let m = g.batch * g.pixels();
                fit_buffer(aux, &[m, g.field()]);
                let x = v.get(self.id);
                let x = x.as_slice().expect("tape values and parameters are contiguous");
                let cols = aux.as_slice_mut().expect("owned buffers are contiguous");
                per_image(cols, g.pixels() * g.field(), x, g.image(), |_, cols, x| im2col(x, cols, &g));
                // The bias is written into every output row, and the product accumulates onto it.
                let beta = match bias.map(|b| v.get(b.id)) {
                    Some(b) => {
                        let b = b.to_slice().expect("parameters are contiguous");
                        let out = out.as_slice_mut().expect("owned buffers are contiguous");
                        out.chunks_exact_mut(g.filters).for_each(|row| row.copy_from_slice(b));
                        1.0
                    }
                    None => 0.0,
                };
                let mut y = out.view_mut().into_shape_with_order((m, g.filters)).expect("contiguous output");
                let k = v.get(kernel.id);
                gemm(
                    1.0,
                    &aux.view().into_dimensionality::<Ix2>().expect("2-D"),
                    &as_matrix(&k, &g),
                    beta,
                    &mut y,
                );
                if let Some(f) = act {
                    let y = out.as_slice_mut().expect("owned buffers are contiguous");
                    match f {
                        Unary::Relu => y.iter_mut().for_each(|v| *v = Unary::Relu.f(*v)),
                        other => y.iter_mut().for_each(|v| *v = other.f(*v)),
                    }
                }
            },
        )
    }
}

/// `g *= df(y)` element-wise, image by image (`len` elements each) over the threads.
fn scale_images(g: &mut [f32], y: &[f32], len: usize, df: impl Fn(f32) -> f32 + Sync) {
    per_image(g, len, y, len, |_, g, y| g.iter_mut().zip(y).for_each(|(g, &y)| *g *= df(y)));
}

/// The kernel `(KH, KW, C, F)` as the `(KH·KW·C, F)` matrix it is in memory.
fn as_matrix<'a>(k: &ndarray::ArrayViewD<'a, f32>, g: &Geometry) -> ArrayView2<'a, f32> {
    k.clone().into_shape_with_order((g.field(), g.filters)).expect("kernels are contiguous")
}

/// Copies the receptive field of every output pixel of one image `x` into a row of `cols`, zeros where it
/// hangs over the padding.
fn im2col(x: &[f32], cols: &mut [f32], g: &Geometry) {
    let (c, kw) = (g.channels, g.cols.size);
    // With unit dilation, the taps of one kernel row are adjacent pixels: one copy when all are inside.
    let contiguous = g.cols.dilation == 1;
    for (row, field) in cols.chunks_exact_mut(g.field()).enumerate() {
        let (oh, ow) = (row / g.cols.output, row % g.cols.output);
        for (i, field) in field.chunks_exact_mut(kw * c).enumerate() {
            let Some(ih) = g.rows.source(oh, i) else {
                field.fill(0.0);
                continue;
            };
            let line = &x[ih * g.cols.input * c..][..g.cols.input * c];
            if let (true, Some(first), Some(_)) =
                (contiguous, g.cols.source(ow, 0), g.cols.source(ow, kw - 1))
            {
                copy(field, &line[first * c..][..kw * c]);
                continue;
            }
            for (j, tap) in field.chunks_exact_mut(c).enumerate() {
                match g.cols.source(ow, j) {
                    Some(iw) => copy(tap, &line[iw * c..][..c]),
                    None => tap.fill(0.0),
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, without a `memcpy` call for the few elements of a single-channel image's taps.
#[inline]
fn copy(dst: &mut [f32], src: &[f32]) {
    if dst.len() < 16 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
    } else {
        dst.copy_from_slice(src);
    }
}

/// The adjoint of [`im2col`]: adds every row of `cols` onto the pixels of one image `dx` it was copied from.
fn col2im(cols: &[f32], dx: &mut [f32], g: &Geometry) {
    let (c, kw) = (g.channels, g.cols.size);
    for (row, field) in cols.chunks_exact(g.field()).enumerate() {
        let (oh, ow) = (row / g.cols.output, row % g.cols.output);
        for (i, field) in field.chunks_exact(kw * c).enumerate() {
            let Some(ih) = g.rows.source(oh, i) else { continue };
            let line = &mut dx[ih * g.cols.input * c..][..g.cols.input * c];
            for (j, tap) in field.chunks_exact(c).enumerate() {
                if let Some(iw) = g.cols.source(ow, j) {
                    line[iw * c..][..c].iter_mut().zip(tap).for_each(|(d, &t)| *d += t);
                }
            }
        }
    }
}

impl Kernel for Conv2d {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Tensor, ctx: &mut BackwardCtx<'_, '_>) {
        let geo = &self.geometry;
        let (x, w) = (self.inputs[0], self.inputs[1]);
        let per_image_len = geo.pixels() * geo.filters;
        if let Some(f) = self.act {
            // dz = g * act'(y), in place, image by image over the threads.
            let y = ctx.output();
            let y = y.as_slice().expect("tape values are contiguous");
            let g = g.as_slice_mut().expect("gradient buffers are contiguous");
            let len = per_image_len.max(1);
            match f {
                Unary::Relu => scale_images(g, y, len, |y| Unary::Relu.df(y, y)),
                other => scale_images(g, y, len, move |y| other.df(y, y)),
            }
        }
        let m = geo.batch * geo.pixels();
        let dz = g.view().into_shape_with_order((m, geo.filters)).expect("contiguous gradient");
        if let Some(&b) = self.inputs.get(2) {
            if let Some((d, fresh)) = ctx.grad(b, &[geo.filters]) {
                // Column sums per image over the threads, then added in image order: the same bits for any
                // thread count.
                let mut partial = vec![0.0f32; geo.batch * geo.filters];
                let gs = dz.as_slice().expect("contiguous gradient");
                per_image(&mut partial, geo.filters, gs, per_image_len, |_, sum, g| {
                    for row in g.chunks_exact(geo.filters) {
                        sum.iter_mut().zip(row).for_each(|(s, &g)| *s += g);
                    }
                });
                let d = d.as_slice_mut().expect("gradient buffers are contiguous");
                if fresh {
                    d.fill(0.0);
                }
                for sum in partial.chunks_exact(geo.filters) {
                    d.iter_mut().zip(sum).for_each(|(d, &s)| *d += s);
                }
            }
        }
        let wv = ctx.value(w);
        let mut cols = std::mem::replace(ctx.aux, crate::autodiff::empty());
        if let Some((d, fresh)) = ctx.grad(w, wv.shape()) {
            let mut dw = d.view_mut().into_shape_with_order((geo.field(), geo.filters)).expect("contiguous");
            let cols = cols.view().into_dimensionality::<Ix2>().expect("im2col buffer");
            gemm(1.0, &cols.t(), &dz, if fresh { 0.0 } else { 1.0 }, &mut dw);
        }
        let xv = ctx.value(x);
        // dcols = dz · Wᵀ, into the im2col buffer (its columns were used above), then back onto the pixels.
        let dcols = &mut cols;
        if let Some((dx, fresh)) = ctx.grad(x, xv.shape()) {
            let mut dc: ArrayViewMut2<'_, f32> = dcols.view_mut().into_dimensionality().expect("2-D");
            gemm(1.0, &dz, &as_matrix(&wv, geo).t(), 0.0, &mut dc);
            let dx = dx.as_slice_mut().expect("gradient buffers are contiguous");
            if fresh {
                dx.fill(0.0);
            }
            let dcols = dcols.as_slice().expect("owned buffers are contiguous");
            per_image(dx, geo.image(), dcols, geo.pixels() * geo.field(), |_, dx, cols| {
                col2im(cols, dx, geo)
            });
        }
        *ctx.aux = cols;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{check_gradients, ParamStore, Tape};
    use ndarray::{ArrayD, IxDyn};
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0))
    }

    /// The definition, one output element at a time, with zero padding.
    fn naive(x: &Tensor, k: &Tensor, b: Option<&Tensor>, o: Conv2dOptions) -> Tensor {
        let (n, h, w, c) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (kh, kw, f) = (k.shape()[0], k.shape()[1], k.shape()[3]);
        let rows = Axis1::new(h, kh, o.strides.0, o.dilation.0, o.padding).unwrap();
        let cols = Axis1::new(w, kw, o.strides.1, o.dilation.1, o.padding).unwrap();
        ArrayD::from_shape_fn(IxDyn(&[n, rows.output, cols.output, f]), |i| {
            let mut s = b.map_or(0.0, |b| b[[i[3]]]);
            for a in 0..kh {
                for bb in 0..kw {
                    if let (Some(ih), Some(iw)) = (rows.source(i[1], a), cols.source(i[2], bb)) {
                        for ch in 0..c {
                            s += x[[i[0], ih, iw, ch]] * k[[a, bb, ch, i[3]]];
                        }
                    }
                }
            }
            s
        })
    }

    fn cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dOptions)> {
        let o = |s, p, d| Conv2dOptions { strides: s, padding: p, dilation: d };
        vec![
            (vec![2, 5, 5, 2], vec![3, 3, 2, 3], o((1, 1), Padding::Valid, (1, 1))),
            (vec![1, 6, 7, 1], vec![3, 2, 1, 2], o((2, 1), Padding::Valid, (1, 1))),
            (vec![2, 5, 6, 3], vec![3, 3, 3, 2], o((1, 1), Padding::Same, (1, 1))),
            (vec![1, 7, 5, 2], vec![2, 3, 2, 2], o((2, 2), Padding::Same, (1, 1))),
            (vec![1, 7, 7, 1], vec![3, 3, 1, 2], o((1, 1), Padding::Valid, (2, 2))),
            (vec![2, 6, 5, 2], vec![3, 2, 2, 1], o((1, 2), Padding::Same, (2, 1))),
            (vec![1, 4, 4, 2], vec![4, 4, 2, 3], o((1, 1), Padding::Valid, (1, 1))),
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (i, (xs, ks, o)) in cases().into_iter().enumerate() {
            let (x, k, b) = (random(&xs, i as u64), random(&ks, 100 + i as u64), random(&[ks[3]], 7));
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let (xv, kv, bv) = (tape.constant(x.view()), tape.constant(k.view()), tape.constant(b.view()));
            let got = xv.conv2d(kv, Some(bv), o).value();
            let want = naive(&x, &k, Some(&b), o);
            assert_eq!(got.shape(), want.shape(), "case {i}");
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "case {i}: {got} vs {want}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (i, (xs, ks, o)) in cases().into_iter().enumerate() {
            let inputs = [random(&xs, i as u64), random(&ks, 100 + i as u64), random(&[ks[3]], 7)];
            check_gradients(&inputs, |v| v[0].conv2d(v[1], Some(v[2]), o))
                .unwrap_or_else(|e| panic!("case {i} {o:?}: {e}"));
            check_gradients(&inputs[..2], |v| v[0].conv2d(v[1], None, o))
                .unwrap_or_else(|e| panic!("case {i} without bias: {e}"));
        }
    }

    #[test]
    fn fused_activations_match_finite_differences() {
        let o = Conv2dOptions { padding: Padding::Same, ..Default::default() };
        // Inputs away from relu's kink: a small kernel keeps pre-activations apart from 0 less reliably, so use
        // sigmoid and tanh here and relu on a case whose pre-activations are checked to avoid 0.
        let inputs = [random(&[2, 4, 5, 2], 1), random(&[3, 3, 2, 2], 2), random(&[2], 3)];
        for act in [Unary::Sigmoid, Unary::Tanh] {
            check_gradients(&inputs, |v| v[0].conv2d_fused(v[1], Some(v[2]), o, Some(act)))
                .unwrap_or_else(|e| panic!("{act:?}: {e}"));
        }
        let pre = {
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let v: Vec<_> = inputs.iter().map(|t| tape.constant(t.view())).collect();
            v[0].conv2d(v[1], Some(v[2]), o).value()
        };
        assert!(pre.iter().all(|z| z.abs() > 1e-2), "the relu case needs pre-activations away from 0");
        check_gradients(&inputs, |v| v[0].conv2d_fused(v[1], Some(v[2]), o, Some(Unary::Relu)))
            .expect("relu");
    }

    #[test]
    fn a_reused_input_gets_both_gradients() {
        // x feeds two convolutions: its gradient is the sum, through col2im accumulating onto a set buffer.
        let inputs = [random(&[1, 5, 5, 2], 4), random(&[3, 3, 2, 2], 5), random(&[2, 2, 2, 2], 6)];
        let same = Conv2dOptions { padding: Padding::Same, ..Default::default() };
        check_gradients(&inputs, |v| v[0].conv2d(v[1], None, same).add(v[0].conv2d(v[2], None, same)))
            .expect("accumulated");
    }

    #[test]
    fn nan_and_inf_propagate() {
        let mut x = random(&[1, 4, 4, 1], 1);
        x[[0, 1, 1, 0]] = f32::NAN;
        x[[0, 3, 3, 0]] = f32::INFINITY;
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let k = tape.constant(ArrayD::from_elem(IxDyn(&[2, 2, 1, 1]), 0.5).view());
        let y = tape.constant(x.view()).conv2d(k, None, Conv2dOptions::default()).value();
        // Windows over (1, 1) are NaN, the one over (3, 3) is +inf, the others finite.
        assert!(y[[0, 0, 0, 0]].is_nan() && y[[0, 1, 1, 0]].is_nan());
        assert_eq!(y[[0, 2, 2, 0]], f32::INFINITY);
        assert!(y[[0, 0, 2, 0]].is_finite());
    }
}
