//! Convolution on the CPU, as im2col and matrix products, a few images at a time.
//!
//! The batch is cut into groups of images whose im2col rows fit in a core's cache, and each group is one task
//! for the threads; an image whose rows alone exceed that is copied a chunk of rows at a time, so the scratch
//! buffer never grows with the image. Forward, for a group: the receptive field of every output pixel is
//! copied into one row of `cols` (`pixels x KH·KW·C`); Keras' kernel `(KH, KW, C, F)` read row-major is the
//! `(KH·KW·C, F)` matrix that multiplies it, so `y = act(cols · W + b)` comes out directly in NHWC.
//!
//! Backward, for a group: `dz = g · act'(y)` in place, its column sums and `colsᵀ · dz` (with `cols` copied
//! again: cheaper than keeping it in memory) as the group's share of `db` and `dW`, and `dx = col2im(dz · Wᵀ)`,
//! where col2im adds every row back onto the pixels it was copied from. The shares (the `partials` buffer,
//! one row per group) are added in group order, so the result does not depend on the thread count.
use ndarray::{ArrayView2, ArrayViewMut2};

use super::schedule::{for_each_task, wide_fn};
use super::{general_mat_mul, CpuStorage};
use crate::device::{Conv2dGeometry as Geometry, Conv2dKernels, Unary};

impl Geometry {
    /// Images per task: as many as keep a task's im2col rows within `GROUP_BYTES`, at least one. It depends on
    /// the shapes only, so results do not depend on the thread count.
    pub(crate) fn group(&self) -> usize {
        // Saturating: a product too large for a `usize` is one image per group, like any image over the size.
        let per_image = self.pixels().saturating_mul(self.field()).saturating_mul(std::mem::size_of::<f32>());
        // At least 16 groups in a large batch, so that the threads share the work evenly.
        (GROUP_BYTES / per_image.max(1)).clamp(1, (self.batch / 16).max(1))
    }

    /// The im2col rows a task copies at a time: a group's rows (see [`Geometry::group`]), or for an image
    /// whose rows exceed `GROUP_BYTES`, as many of its rows as fit (at least one). The scratch buffer is then
    /// at most `GROUP_BYTES` or one receptive field, a row of the kernel already in memory, whatever the
    /// image size: no file's numbers can make it larger.
    pub(crate) fn chunk_rows(&self) -> usize {
        (GROUP_BYTES / (self.field() * std::mem::size_of::<f32>()).max(1)).max(1)
    }

    /// The length of one group's share of the partials: its `dW` then its `db`.
    fn share(&self) -> usize {
        self.field() * self.filters + self.filters
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

fn slice(s: &CpuStorage) -> &[f32] {
    s.array().as_slice().expect("buffers are contiguous")
}

fn slice_mut(s: &mut CpuStorage) -> &mut [f32] {
    s.array_mut().as_slice_mut().expect("buffers are contiguous")
}

impl Conv2dKernels for CpuStorage {
    fn conv2d(&self, kernel: &Self, bias: Option<&Self>, g: Geometry, act: Option<Unary>, out: &mut Self) {
        let x = slice(self);
        let w = as_matrix(kernel, &g);
        let bias = bias.map(slice);
        let out = slice_mut(out);
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
    }

    fn conv2d_backward(
        &mut self,
        x: &Self,
        kernel: &Self,
        y: &Self,
        geometry: Geometry,
        act: Option<Unary>,
        want_w: bool,
        dx: Option<(&mut Self, bool)>,
        partials: &mut Self,
    ) {
        let geo = &geometry;
        let wm = as_matrix(kernel, geo);
        let images = geo.group();
        let groups = geo.batch.div_ceil(images);
        let (field, filters) = (geo.field(), geo.filters);
        // Each group's share of dW and db, side by side.
        let share = geo.share();
        if partials.array().shape() != [groups, share] {
            *partials = CpuStorage::from(ndarray::ArrayD::zeros(ndarray::IxDyn(&[groups, share])));
        }
        let (xs, ys) = (slice(x), slice(y));
        let gs = slice_mut(self);
        let (out_len, in_len) = (images * geo.pixels() * filters, images * geo.image());
        let mut dx_parts: Vec<Option<&mut [f32]>> = Vec::new();
        let fresh_dx = match dx {
            Some((d, accumulate)) => {
                dx_parts.extend(slice_mut(d).chunks_mut(in_len).map(Some));
                !accumulate
            }
            None => {
                dx_parts.resize_with(groups, || None);
                false
            }
        };
        let work: Vec<_> = gs
            .chunks_mut(out_len)
            .zip(ys.chunks(out_len))
            .zip(xs.chunks(in_len))
            .zip(dx_parts)
            .zip(slice_mut(partials).chunks_mut(share))
            .collect();
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
    }

    fn conv2d_kernel_grad(&self, geometry: Geometry, dw: &mut Self, accumulate: bool) {
        sum_shares(
            slice(self),
            geometry.share(),
            0..geometry.field() * geometry.filters,
            slice_mut(dw),
            accumulate,
        );
    }

    fn conv2d_bias_grad(&self, geometry: Geometry, db: &mut Self, accumulate: bool) {
        let range = geometry.field() * geometry.filters..geometry.share();
        sum_shares(slice(self), geometry.share(), range, slice_mut(db), accumulate);
    }
}

/// The `range` of each group's share, added in group order into `d` (zero-filled first unless `accumulate`).
fn sum_shares(shares: &[f32], share: usize, range: std::ops::Range<usize>, d: &mut [f32], accumulate: bool) {
    if !accumulate {
        d.fill(0.0);
    }
    for part in shares.chunks_exact(share) {
        d.iter_mut().zip(&part[range.clone()]).for_each(|(d, &s)| *d += s);
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
fn as_matrix<'a>(k: &'a CpuStorage, g: &Geometry) -> ArrayView2<'a, f32> {
    k.array().view().into_shape_with_order((g.field(), g.filters)).expect("kernels are contiguous")
}

/// Copies the receptive field of the output pixels `first..` of one image `x` (as many as `cols` has rows)
/// into the rows of `cols`, zeros where it hangs over the padding.
#[inline(always)]
fn im2col(x: &[f32], cols: &mut [f32], g: &Geometry, first: usize) {
    let field = g.field();
    // A run of rows of one output line at a time: the line's position is worked out once, not per row.
    for (row, rows) in line_runs(first, cols.len() / field, g.cols.output) {
        let run = &mut cols[(row - first) * field..][..rows * field];
        let (oh, ow) = (row / g.cols.output, row % g.cols.output);
        match interior_run(g, oh, ow, rows) {
            Some((r0, c0)) => match g.cols.size * g.channels {
                // The taps of a single-channel image: a constant span, so the copy unrolls.
                1 => copy_run::<1>(x, run, g, r0, c0),
                2 => copy_run::<2>(x, run, g, r0, c0),
                3 => copy_run::<3>(x, run, g, r0, c0),
                4 => copy_run::<4>(x, run, g, r0, c0),
                5 => copy_run::<5>(x, run, g, r0, c0),
                _ => copy_run::<0>(x, run, g, r0, c0),
            },
            None => im2col_edge(x, run, g, oh, ow),
        }
    }
}

/// Where the windows of `rows` output pixels from `(oh, ow)` on one output line all lie inside the image with
/// unit dilation along the line: the input row and column of the first window's top-left tap.
#[inline(always)]
fn interior_run(g: &Geometry, oh: usize, ow: usize, rows: usize) -> Option<(usize, usize)> {
    if g.cols.dilation != 1 {
        return None;
    }
    let r0 = g.rows.inside(oh)?;
    let c0 = g.cols.inside(ow)?;
    g.cols.inside(ow + rows - 1)?;
    Some((r0, c0))
}

/// im2col of a run of windows inside the image on one output line: per row, one copy of `kw·c` adjacent
/// values per kernel row. `SPAN` is that length when it is a small constant, else 0 (read from `g`).
#[inline(always)]
fn copy_run<const SPAN: usize>(x: &[f32], run: &mut [f32], g: &Geometry, r0: usize, c0: usize) {
    let c = g.channels;
    let span = if SPAN == 0 { g.cols.size * c } else { SPAN };
    let (line_len, step) = (g.cols.input * c, g.cols.stride * c);
    for (i, start) in (0..g.rows.size).map(|i| (i, (r0 + i * g.rows.dilation) * line_len + c0 * c)) {
        let src = &x[start..];
        for (k, field) in run.chunks_exact_mut(g.field()).enumerate() {
            let (dst, src) = (&mut field[i * span..][..span], &src[k * step..][..span]);
            if SPAN == 0 {
                copy(dst, src);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// im2col of output pixels from `(oh, ow)` on one output line, windows that may hang over the padding or
/// have dilated columns: tap by tap, zeros outside.
#[inline(always)]
fn im2col_edge(x: &[f32], run: &mut [f32], g: &Geometry, oh: usize, first_ow: usize) {
    let (c, kw) = (g.channels, g.cols.size);
    // With unit dilation, the taps of one kernel row are adjacent pixels: one copy when all are inside.
    let contiguous = g.cols.dilation == 1;
    for (ow, field) in (first_ow..).zip(run.chunks_exact_mut(g.field())) {
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

/// The rows `first..first + rows` of one image's output pixels cut where an output line (`line` pixels) ends:
/// `(first row, rows)` of each run.
fn line_runs(first: usize, rows: usize, line: usize) -> impl Iterator<Item = (usize, usize)> {
    let end = first + rows;
    let mut row = first;
    std::iter::from_fn(move || {
        let n = (line - row % line).min(end - row);
        (n > 0).then(|| {
            row += n;
            (row - n, n)
        })
    })
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
    let (field, c, kw) = (g.field(), g.channels, g.cols.size);
    let line_len = g.cols.input * c;
    for (row, rows) in line_runs(first, cols.len() / field, g.cols.output) {
        let run = &cols[(row - first) * field..][..rows * field];
        let (oh, first_ow) = (row / g.cols.output, row % g.cols.output);
        if let Some((r0, c0)) = interior_run(g, oh, first_ow, rows) {
            // Windows inside the image: each kernel row's taps are `kw·c` adjacent values.
            let (span, step) = (kw * c, g.cols.stride * c);
            for (k, field) in run.chunks_exact(field).enumerate() {
                for (i, taps) in field.chunks_exact(span).enumerate() {
                    let start = (r0 + i * g.rows.dilation) * line_len + (c0 * c + k * step);
                    dx[start..][..span].iter_mut().zip(taps).for_each(|(d, &t)| *d += t);
                }
            }
            continue;
        }
        for (ow, field) in (first_ow..).zip(run.chunks_exact(field)) {
            for (i, field) in field.chunks_exact(kw * c).enumerate() {
                let Some(ih) = g.rows.source(oh, i) else { continue };
                let line = &mut dx[ih * line_len..][..line_len];
                for (j, tap) in field.chunks_exact(c).enumerate() {
                    if let Some(iw) = g.cols.source(ow, j) {
                        line[iw * c..][..c].iter_mut().zip(tap).for_each(|(d, &t)| *d += t);
                    }
                }
            }
        }
    }
}
