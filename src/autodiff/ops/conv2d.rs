//! 2-D convolution over channels-last images (NHWC, Keras' default), as im2col and matrix products, a few
//! images at a time.
//!
//! The batch is cut into groups of images whose im2col rows fit in a core's cache, and each group is one task
//! for the threads; an image whose rows alone exceed that is copied a chunk of rows at a time, so the scratch
//! buffer never grows with the image. Forward, for a group: the receptive field of every output pixel is
//! copied into one row of `cols` (`pixels x KH·KW·C`); Keras' kernel `(KH, KW, C, F)` read row-major is the
//! `(KH·KW·C, F)` matrix that multiplies it, so `y = act(cols · W + b)` comes out directly in NHWC.
//!
//! Backward, for a group: `dz = g · act'(y)` in place, its column sums and `colsᵀ · dz` (with `cols` copied
//! again: cheaper than keeping it in memory) as the group's share of `db` and `dW`, and `dx = col2im(dz · Wᵀ)`,
//! where col2im adds every row back onto the pixels it was copied from. The shares are added in group order,
//! so the result does not depend on the thread count.
use ndarray::{ArrayView2, ArrayViewMut2};

use super::elementwise::Unary;
use super::window::{for_each_task, wide_fn, Axis1, Padding};
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{fit_buffer, Tensor, Var};
use crate::device::general_mat_mul;
use crate::device::Storage;

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
    /// Images per task: as many as keep a task's im2col rows within `GROUP_BYTES`, at least one. It depends on
    /// the shapes only, so results do not depend on the thread count.
    fn group(&self) -> usize {
        // Saturating: a product too large for a `usize` is one image per group, like any image over the size.
        let per_image = self.pixels().saturating_mul(self.field()).saturating_mul(std::mem::size_of::<f32>());
        // At least 16 groups in a large batch, so that the threads share the work evenly.
        (GROUP_BYTES / per_image.max(1)).clamp(1, (self.batch / 16).max(1))
    }
}

impl Geometry {
    /// The im2col rows a task copies at a time: a group's rows (see [`Geometry::group`]), or for an image
    /// whose rows exceed `GROUP_BYTES`, as many of its rows as fit (at least one). The scratch buffer is then
    /// at most `GROUP_BYTES` or one receptive field, a row of the kernel already in memory, whatever the
    /// image size: no file's numbers can make it larger.
    fn chunk_rows(&self) -> usize {
        (GROUP_BYTES / (self.field() * std::mem::size_of::<f32>()).max(1)).max(1)
    }
}

/// Calls `f(image, first_pixel, rows)` for the im2col rows `first..first + n` of a task, split where an image
/// ends: `rows` counts from `first`.
fn split_rows(
    first: usize,
    n: usize,
    pixels: usize,
    mut f: impl FnMut(usize, usize, std::ops::Range<usize>),
) {
    let (mut r, end) = (first, first + n);
    while r < end {
        let (image, pixel) = (r / pixels, r % pixels);
        let take = (pixels - pixel).min(end - r);
        f(image, pixel, r - first..r - first + take);
        r += take;
    }
}

/// The im2col rows of one task: about a core's L2 cache (1 MiB on the reference machine; of the sizes tried,
/// 256 KiB to 4 MiB, the fastest), so that they are written and read there.
const GROUP_BYTES: usize = 1024 * 1024;

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
        let g = geometry;
        self.tape.push(node, &[batch, rows.output, cols.output, filters], |v, out, _| {
            let x = v.get(self.id);
            let x = x.as_slice().expect("tape values and parameters are contiguous");
            let k = v.get(kernel.id);
            let w = as_matrix(&k, &g);
            let bias = bias.map(|b| v.get(b.id));
            let bias = bias.as_ref().map(|b| b.to_slice().expect("parameters are contiguous"));
            let out = out.as_slice_mut().expect("owned buffers are contiguous");
            let images = g.group();
            let work: Vec<_> =
                out.chunks_mut(images * g.pixels() * g.filters).zip(x.chunks(images * g.image())).collect();
            for_each_task(work, |(out, x)| {
                let chunk = g.chunk_rows();
                let task_rows = out.len() / g.filters;
                with_scratch(chunk.min(task_rows) * g.field(), |scratch| {
                    for (i, out) in out.chunks_mut(chunk * g.filters).enumerate() {
                        let rows = out.len() / g.filters;
                        let cols = &mut scratch[..rows * g.field()];
                        im2col_rows(x, cols, &g, i * chunk);
                        let cols = ArrayView2::from_shape((rows, g.field()), &*cols).expect("sized above");
                        let mut y = ArrayViewMut2::from_shape((rows, g.filters), &mut *out).expect("a chunk");
                        general_mat_mul(1.0, &cols, &w, 0.0, &mut y);
                        // Bias and activation in one pass over the output, while it is in cache.
                        match act {
                            Some(Unary::Relu) => epilogue_relu(out, bias),
                            Some(f) => epilogue(out, bias, |v| f.f(v)),
                            None => epilogue(out, bias, |v| v),
                        }
                    }
                })
            });
        })
    }
}

/// `y = f(y + b)` on every row of `out` (`y = f(y)` without a bias).
fn epilogue(out: &mut [f32], bias: Option<&[f32]>, f: impl Fn(f32) -> f32) {
    match bias {
        Some(b) => out.chunks_exact_mut(b.len()).for_each(|row| {
            row.iter_mut().zip(b).for_each(|(y, &b)| *y = f(*y + b));
        }),
        None => out.iter_mut().for_each(|y| *y = f(*y)),
    }
}

wide_fn! {
    /// [`epilogue`] with relu, the common case.
    fn epilogue_relu(out: &mut [f32], bias: Option<&[f32]>) {
        epilogue(out, bias, |v| Unary::Relu.f(v))
    }
}

wide_fn! {
    /// `g *= relu'(y)` and the column sums of the result into `db` (overwritten): the start of a group's
    /// backward pass.
    fn relu_grad_and_bias(g: &mut [f32], y: &[f32], db: &mut [f32]) {
        g.iter_mut().zip(y).for_each(|(g, &y)| *g *= Unary::Relu.df(y, y));
        column_sums(g, db);
    }
}

/// The column sums of the rows of `g` (rows as long as `db`) into `db`, overwritten.
#[inline(always)]
fn column_sums(g: &[f32], db: &mut [f32]) {
    db.fill(0.0);
    for row in g.chunks_exact(db.len()) {
        db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
    }
}

thread_local! {
    /// Each thread's im2col buffer, kept from one call to the next.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f` with this thread's scratch buffer of `len` elements (content stale).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

wide_fn! {
    /// im2col of the rows `first..` (as many as `cols` holds) of consecutive images `x`, into `cols`.
    fn im2col_rows(x: &[f32], cols: &mut [f32], g: &Geometry, first: usize) {
        let field = g.field();
        split_rows(first, cols.len() / field, g.pixels(), |image, pixel, rows| {
            let x = &x[image * g.image()..][..g.image()];
            im2col(x, &mut cols[rows.start * field..rows.end * field], g, pixel);
        });
    }
}

/// The kernel `(KH, KW, C, F)` as the `(KH·KW·C, F)` matrix it is in memory.
fn as_matrix<'a>(k: &ndarray::ArrayViewD<'a, f32>, g: &Geometry) -> ArrayView2<'a, f32> {
    k.clone().into_shape_with_order((g.field(), g.filters)).expect("kernels are contiguous")
}

/// Copies the receptive field of the output pixels `first..` of one image `x` (as many as `cols` has rows)
/// into the rows of `cols`, zeros where it hangs over the padding.
#[inline(always)]
fn im2col(x: &[f32], cols: &mut [f32], g: &Geometry, first: usize) {
    let (c, kw) = (g.channels, g.cols.size);
    // With unit dilation, the taps of one kernel row are adjacent pixels: one copy when all are inside.
    let contiguous = g.cols.dilation == 1;
    let (line_len, span) = (g.cols.input * c, kw * c);
    for (row, field) in (first..).zip(cols.chunks_exact_mut(g.field())) {
        let (oh, ow) = (row / g.cols.output, row % g.cols.output);
        // The common case, a window inside the image: one copy per kernel row, no bounds arithmetic.
        if let (true, Some(r0), Some(c0)) = (contiguous, g.rows.inside(oh), g.cols.inside(ow)) {
            for (i, field) in field.chunks_exact_mut(span).enumerate() {
                let start = (r0 + i * g.rows.dilation) * line_len + c0 * c;
                copy(field, &x[start..start + span]);
            }
            continue;
        }
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

wide_fn! {
    /// The adjoint of [`im2col_rows`]: adds every row of `cols`, the rows `first..` of consecutive images,
    /// onto the pixels of `dx` it was copied from.
    fn col2im_rows(cols: &[f32], dx: &mut [f32], g: &Geometry, first: usize) {
        let field = g.field();
        split_rows(first, cols.len() / field, g.pixels(), |image, pixel, rows| {
            let dx = &mut dx[image * g.image()..][..g.image()];
            col2im(&cols[rows.start * field..rows.end * field], dx, g, pixel);
        });
    }
}

/// The adjoint of [`im2col`]: adds every row of `cols`, output pixels `first..` of one image, onto the pixels
/// of `dx` it was copied from.
#[inline(always)]
fn col2im(cols: &[f32], dx: &mut [f32], g: &Geometry, first: usize) {
    let (c, kw) = (g.channels, g.cols.size);
    for (row, field) in (first..).zip(cols.chunks_exact(g.field())) {
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

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let g = g.cpu_mut();
        let geo = &self.geometry;
        let (x, w) = (self.inputs[0], self.inputs[1]);
        let (xv, wv, y) = (ctx.value(x), ctx.value(w), ctx.output());
        let wm = as_matrix(&wv, geo);
        let images = geo.group();
        let groups = geo.batch.div_ceil(images);
        let (field, filters) = (geo.field(), geo.filters);
        // Each group's share of dW and db, side by side in the auxiliary buffer.
        let share = field * filters + filters;
        let mut shares = std::mem::replace(ctx.aux.cpu_mut(), crate::autodiff::empty());
        fit_buffer(&mut shares, &[groups, share]);
        let want_w = ctx.wants(w);
        let dx = ctx.grad(x, xv.shape());
        let (xs, ys) = (xv.as_slice().expect("contiguous"), y.as_slice().expect("contiguous"));
        let gs = g.as_slice_mut().expect("gradient buffers are contiguous");
        let (out_len, in_len) = (images * geo.pixels() * filters, images * geo.image());
        let mut dx_parts: Vec<Option<&mut [f32]>> = Vec::new();
        let fresh_dx = match dx {
            Some((d, fresh)) => {
                let d = d.as_slice_mut().expect("gradient buffers are contiguous");
                dx_parts.extend(d.chunks_mut(in_len).map(Some));
                fresh
            }
            None => {
                dx_parts.resize_with(groups, || None);
                false
            }
        };
        let shares_slice = shares.as_slice_mut().expect("owned buffers are contiguous");
        let work: Vec<_> = gs
            .chunks_mut(out_len)
            .zip(ys.chunks(out_len))
            .zip(xs.chunks(in_len))
            .zip(dx_parts)
            .zip(shares_slice.chunks_mut(share))
            .collect();
        let act = self.act;
        for_each_task(work, |((((g, y), x), dx), share)| {
            let rows = g.len() / filters;
            let (dw, db) = share.split_at_mut(field * filters);
            match act {
                Some(Unary::Relu) => relu_grad_and_bias(g, y, db),
                Some(f) => {
                    g.iter_mut().zip(*y).for_each(|(g, &y)| *g *= f.df(y, y));
                    column_sums(g, db);
                }
                None => column_sums(g, db),
            }
            let chunk = geo.chunk_rows();
            if fresh_dx {
                if let Some(dx) = dx.as_deref_mut() {
                    dx.fill(0.0);
                }
            }
            let mut dw = ArrayViewMut2::from_shape((field, filters), dw).expect("a share");
            with_scratch(chunk.min(rows) * field, |scratch| {
                for (i, g) in g.chunks(chunk * filters).enumerate() {
                    let (first, rows) = (i * chunk, g.len() / filters);
                    let cols = &mut scratch[..rows * field];
                    let dz = ArrayView2::from_shape((rows, filters), g).expect("a chunk");
                    if want_w {
                        im2col_rows(x, cols, geo, first);
                        let c = ArrayView2::from_shape((rows, field), &*cols).expect("sized above");
                        // The first chunk overwrites the share, the others add to it.
                        let beta = if i == 0 { 0.0 } else { 1.0 };
                        general_mat_mul(1.0, &c.t(), &dz, beta, &mut dw);
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        // dcols = dz · Wᵀ in the same scratch, then back onto the pixels.
                        let mut dc =
                            ArrayViewMut2::from_shape((rows, field), &mut *cols).expect("sized above");
                        general_mat_mul(1.0, &dz, &wm.t(), 0.0, &mut dc);
                        col2im_rows(cols, dx, geo, first);
                    }
                }
            });
        });
        // The shares, added in group order.
        let sum_shares = |d: &mut Tensor, fresh: bool, range: std::ops::Range<usize>| {
            let d = d.as_slice_mut().expect("gradient buffers are contiguous");
            if fresh {
                d.fill(0.0);
            }
            for part in shares_slice.chunks_exact(share) {
                d.iter_mut().zip(&part[range.clone()]).for_each(|(d, &s)| *d += s);
            }
        };
        if let Some((d, fresh)) = ctx.grad(w, wv.shape()) {
            sum_shares(d, fresh, 0..field * filters);
        }
        if let Some(&b) = self.inputs.get(2) {
            if let Some((d, fresh)) = ctx.grad(b, &[filters]) {
                sum_shares(d, fresh, field * filters..share);
            }
        }
        *ctx.aux.cpu_mut() = shares;
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
