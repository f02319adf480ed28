//! 2-D convolution over channels-last images (NHWC, Keras' default), with an optional bias and a fused
//! activation, on the device's convolution kernels ([`crate::device::Conv2dKernels`]; the CPU's runs as im2col
//! and matrix products, a few images at a time).
//!
//! Backward: `dz = g · act'(y)` in place, then `db` (column sums of `dz`), `dW` (`colsᵀ · dz`) and `dx`
//! (`col2im(dz · Wᵀ)`), each only where a gradient is wanted.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{Axis1, Conv2dGeometry as Geometry, Padding, Padding1d, Storage, Unary};

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

/// How a [`Var::conv1d`] kernel slides: Keras' `strides`, `padding` and `dilation_rate` of `Conv1D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Steps between windows.
    pub stride: usize,
    /// `valid`, `same` or `causal`.
    pub padding: Padding1d,
    /// Spacing of the kernel's taps; 1 is an ordinary convolution.
    pub dilation: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions { stride: 1, padding: Padding1d::Valid, dilation: 1 }
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
        let (Ok(rows), Ok(cols)) =
            (Axis1::new(h, kh, sh, dh, options.padding), Axis1::new(w, kw, sw, dw, options.padding))
        else {
            panic!("conv2d: a {kh}x{kw} kernel with {options:?} does not fit images of {h}x{w}")
        };
        let geometry = Geometry { batch, channels, filters, rows, cols };
        let mut inputs = vec![self.id, kernel.id];
        inputs.extend(bias.map(|b| b.id));
        let node = Conv2d { inputs, geometry, act };
        self.tape.push(node, &[batch, rows.output, cols.output, filters], |v, out, _| {
            v.get(self.id).conv2d(v.get(kernel.id), bias.map(|b| v.get(b.id)), geometry, act, out)
        })
    }

    /// 1-D convolution of channels-last sequences `self` `(N, T, C)` with a kernel `(K, C, F)` (Keras' `Conv1D`
    /// layout), plus an optional bias `(F)`: the output is `(N, OT, F)`. It is [`Var::conv2d`] on images one
    /// row high (the kernel `(K, C, F)` is `(1, K, C, F)` byte for byte), the same node and kernels, without
    /// copies.
    ///
    /// ```
    /// use kerust::autodiff::{Conv1dOptions, Padding1d, ParamStore, Tape};
    /// use ndarray::{Array3, ArrayD, IxDyn};
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(Array3::<f32>::ones((1, 5, 1)).into_dyn().view());
    /// let w = tape.constant(ArrayD::ones(IxDyn(&[3, 1, 1])).view());
    /// let causal = Conv1dOptions { padding: Padding1d::Causal, ..Default::default() };
    /// let y = x.conv1d(w, None, causal).value();
    /// assert_eq!(y.iter().copied().collect::<Vec<_>>(), [1.0, 2.0, 3.0, 3.0, 3.0]);
    /// ```
    ///
    /// # Panics
    /// If the shapes do not fit, or the kernel does not fit in the (padded) input; layers check this when they
    /// are built.
    pub fn conv1d(self, kernel: Var<'t>, bias: Option<Var<'t>>, options: Conv1dOptions) -> Var<'t> {
        self.conv1d_fused(kernel, bias, options, None)
    }

    /// [`Var::conv1d`] followed by an element-wise activation whose derivative reads only its output, in the
    /// same node.
    pub(crate) fn conv1d_fused(
        self,
        kernel: Var<'t>,
        bias: Option<Var<'t>>,
        options: Conv1dOptions,
        act: Option<Unary>,
    ) -> Var<'t> {
        assert!(act.is_none_or(Unary::df_uses_output_only), "conv1d fuses only activations of the output");
        let (xs, ks) = (self.shape(), kernel.shape());
        let (&[batch, steps, channels], &[k, kc, filters]) = (xs.as_slice(), ks.as_slice()) else {
            panic!("conv1d: needs sequences (N, T, C) and a kernel (K, C, F), got {xs:?} and {ks:?}")
        };
        assert_eq!(
            channels, kc,
            "conv1d: sequences {xs:?} have {channels} channels, the kernel {ks:?} takes {kc}"
        );
        if let Some(b) = bias {
            assert_eq!(b.shape(), [filters], "conv1d: the bias needs shape [{filters}]");
        }
        let Ok(cols) = Axis1::new_1d(steps, k, options.stride, options.dilation, options.padding) else {
            panic!("conv1d: a kernel of {k} with {options:?} does not fit sequences of {steps}")
        };
        let rows = Axis1::new(1, 1, 1, 1, Padding::Valid).expect("one row");
        let geometry = Geometry { batch, channels, filters, rows, cols };
        let mut inputs = vec![self.id, kernel.id];
        inputs.extend(bias.map(|b| b.id));
        let node = Conv2d { inputs, geometry, act };
        self.tape.push(node, &[batch, cols.output, filters], |v, out, _| {
            v.get(self.id).conv2d(v.get(kernel.id), bias.map(|b| v.get(b.id)), geometry, act, out)
        })
    }
}

impl Kernel for Conv2d {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let geo = self.geometry;
        let (x, w) = (self.inputs[0], self.inputs[1]);
        let (xv, wv, y) = (ctx.value(x), ctx.value(w), ctx.output());
        // Each group's share of dW and db, kept in the auxiliary buffer from one step to the next.
        let mut partials = std::mem::take(ctx.aux);
        let want_w = ctx.wants(w);
        let dx = ctx.grad(x, xv.shape()).map(|(d, fresh)| (d, !fresh));
        g.conv2d_backward(xv, wv, y, geo, self.act, want_w, dx, &mut partials);
        if let Some((d, fresh)) = ctx.grad(w, wv.shape()) {
            partials.conv2d_kernel_grad(geo, d, !fresh);
        }
        if let Some(&b) = self.inputs.get(2) {
            if let Some((d, fresh)) = ctx.grad(b, &[geo.filters]) {
                partials.conv2d_bias_grad(geo, d, !fresh);
            }
        }
        *ctx.aux = partials;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{check_gradients, ParamStore, Tape, Tensor};
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

    /// Gradients of `sum(conv(x, w, b) * r)` with respect to x, w and b.
    fn grads(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, o: Conv2dOptions) -> Vec<Tensor> {
        let mut store = ParamStore::new();
        let ids = [x, w, b].map(|t| store.add("t", t.clone(), true));
        let tape = Tape::new(&store);
        let v = ids.map(|id| tape.param(id));
        let y = v[0].conv2d_fused(v[1], Some(v[2]), o, Some(Unary::Tanh));
        let loss = y.mul(tape.constant(r.view())).sum();
        let mut g = crate::autodiff::Gradients::new();
        tape.backward(loss, &mut g).unwrap();
        ids.iter().map(|&id| g.get(id).unwrap().to_array()).collect()
    }

    #[test]
    fn a_batch_in_several_groups_equals_its_images_one_by_one() {
        // Images large enough that each is a group of its own: the batch's kernel and bias gradients are the
        // sums of the images', and each image's input gradient its own.
        let o = Conv2dOptions { padding: Padding::Same, ..Default::default() };
        let (x, w, b) = (random(&[3, 32, 32, 16], 1), random(&[3, 3, 16, 4], 2), random(&[4], 3));
        let r = random(&[3, 32, 32, 4], 4);
        let g = Geometry {
            batch: 3,
            channels: 16,
            filters: 4,
            rows: Axis1::new(32, 3, 1, 1, Padding::Same).unwrap(),
            cols: Axis1::new(32, 3, 1, 1, Padding::Same).unwrap(),
        };
        assert_eq!(g.group(), 1, "the test needs one image per group");
        let batch = grads(&x, &w, &b, &r, o);
        let mut sum_w = Tensor::zeros(w.raw_dim());
        let mut sum_b = Tensor::zeros(b.raw_dim());
        for i in 0..3 {
            let one = |t: &Tensor| t.slice_axis(ndarray::Axis(0), (i..i + 1).into()).to_owned();
            let single = grads(&one(&x), &w, &b, &one(&r), o);
            let dx = one(&batch[0]);
            assert!(dx.iter().zip(&single[0]).all(|(a, b)| (a - b).abs() < 1e-5), "image {i}");
            sum_w += &single[1];
            sum_b += &single[2];
        }
        assert!(batch[1].iter().zip(&sum_w).all(|(a, b)| (a - b).abs() < 1e-3 * (1.0 + b.abs())));
        assert!(batch[2].iter().zip(&sum_b).all(|(a, b)| (a - b).abs() < 1e-3 * (1.0 + b.abs())));
    }

    #[test]
    fn an_image_in_several_chunks_matches_the_definition() {
        // A 16x16x2 field is 2 KiB: 512 rows a chunk, so each 30x30 image is copied in two pieces.
        let o = Conv2dOptions { padding: Padding::Same, ..Default::default() };
        let (x, k, b) = (random(&[2, 30, 30, 2], 1), random(&[16, 16, 2, 1], 2), random(&[1], 3));
        let g = Geometry {
            batch: 2,
            channels: 2,
            filters: 1,
            rows: Axis1::new(30, 16, 1, 1, Padding::Same).unwrap(),
            cols: Axis1::new(30, 16, 1, 1, Padding::Same).unwrap(),
        };
        assert!(g.chunk_rows() < g.pixels() && g.group() == 1, "the test needs images in several chunks");
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let (xv, kv, bv) = (tape.constant(x.view()), tape.constant(k.view()), tape.constant(b.view()));
        let got = xv.conv2d(kv, Some(bv), o).value();
        let want = naive(&x, &k, Some(&b), o);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4), "{got} vs {want}");
        // Small values, so that f32 finite differences of a 512-tap sum stay exact enough.
        let one = x.slice_axis(ndarray::Axis(0), (0..1).into()).mapv(|v| v * 0.1);
        check_gradients(&[one, k.mapv(|v| v * 0.1), b], |v| v[0].conv2d(v[1], Some(v[2]), o))
            .expect("chunked backward");
    }

    /// The 1-D definition: zero padding, causal padding before the sequence only.
    fn naive_1d(x: &Tensor, k: &Tensor, b: Option<&Tensor>, o: Conv1dOptions) -> Tensor {
        let (n, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let (kk, f) = (k.shape()[0], k.shape()[2]);
        let (out, pad) = match o.padding {
            Padding1d::Valid => ((t - (kk - 1) * o.dilation - 1) / o.stride + 1, 0),
            Padding1d::Same => {
                let out = t.div_ceil(o.stride);
                (out, ((out - 1) * o.stride + (kk - 1) * o.dilation + 1).saturating_sub(t) / 2)
            }
            Padding1d::Causal => (t.div_ceil(o.stride), (kk - 1) * o.dilation),
        };
        ArrayD::from_shape_fn(IxDyn(&[n, out, f]), |i| {
            let mut s = b.map_or(0.0, |b| b[[i[2]]]);
            for a in 0..kk {
                let Some(p) = (i[1] * o.stride + a * o.dilation).checked_sub(pad).filter(|&p| p < t) else {
                    continue;
                };
                for ch in 0..c {
                    s += x[[i[0], p, ch]] * k[[a, ch, i[2]]];
                }
            }
            s
        })
    }

    fn cases_1d() -> Vec<(Vec<usize>, Vec<usize>, Conv1dOptions)> {
        let o = |stride, padding, dilation| Conv1dOptions { stride, padding, dilation };
        vec![
            (vec![2, 7, 2], vec![3, 2, 3], o(1, Padding1d::Valid, 1)),
            (vec![2, 8, 3], vec![3, 3, 2], o(2, Padding1d::Valid, 1)),
            (vec![1, 9, 2], vec![3, 2, 2], o(1, Padding1d::Valid, 2)),
            (vec![2, 7, 2], vec![4, 2, 2], o(1, Padding1d::Same, 1)),
            (vec![1, 8, 2], vec![3, 2, 3], o(3, Padding1d::Same, 1)),
            (vec![2, 9, 1], vec![3, 1, 2], o(1, Padding1d::Same, 3)),
            (vec![2, 6, 2], vec![3, 2, 2], o(1, Padding1d::Causal, 1)),
            (vec![1, 7, 3], vec![2, 3, 2], o(2, Padding1d::Causal, 1)),
            (vec![2, 8, 2], vec![3, 2, 1], o(1, Padding1d::Causal, 2)),
            (vec![1, 2, 2], vec![4, 2, 2], o(1, Padding1d::Causal, 1)),
        ]
    }

    #[test]
    fn conv1d_forward_matches_the_definition() {
        for (i, (xs, ks, o)) in cases_1d().into_iter().enumerate() {
            let (x, k, b) = (random(&xs, i as u64), random(&ks, 100 + i as u64), random(&[ks[2]], 7));
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let (xv, kv, bv) = (tape.constant(x.view()), tape.constant(k.view()), tape.constant(b.view()));
            let got = xv.conv1d(kv, Some(bv), o).value();
            let want = naive_1d(&x, &k, Some(&b), o);
            assert_eq!(got.shape(), want.shape(), "case {i}");
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "case {i}: {got} vs {want}");
        }
    }

    #[test]
    fn conv1d_gradients_match_finite_differences() {
        for (i, (xs, ks, o)) in cases_1d().into_iter().enumerate() {
            let inputs = [random(&xs, i as u64), random(&ks, 100 + i as u64), random(&[ks[2]], 7)];
            check_gradients(&inputs, |v| v[0].conv1d(v[1], Some(v[2]), o))
                .unwrap_or_else(|e| panic!("case {i} {o:?}: {e}"));
            check_gradients(&inputs[..2], |v| v[0].conv1d_fused(v[1], None, o, Some(Unary::Tanh)))
                .unwrap_or_else(|e| panic!("case {i} tanh without bias: {e}"));
        }
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
