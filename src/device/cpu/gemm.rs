//! Matrix products: the `gemm` crate's kernels (AVX-512 where the processor has it, chosen at run time), split
//! across kerust's threads ([`crate::threads`]) when a product is large enough to pay for it.
//!
//! A product is split by columns of the output: each part computes `C[:, part] = A · B[:, part]`, packing all
//! of `A` (the batch side, small) and its part of `B`. Each output element is summed in the same order as
//! on one thread, so results are identical, bit for bit, whatever the thread count.
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::threads::num_threads;

/// Below this many multiply-adds a product runs on one thread: starting a thread (~20 µs) would cost more than
/// it saves. The tutorial's products (32 x 784 x 25: 0.6 M) stay on one thread; the bigger model's
/// (128 x 784 x 512: 51 M) are split.
const PARALLEL_MIN_MACS: usize = 4_000_000;

/// `c = alpha * a · b + beta * c`: the engine's matrix product, which every op and benchmark floor uses. With
/// `beta == 0`, `c`'s previous content is ignored (it may be stale). Large products are split over
/// [`num_threads`] threads; the result is the same, bit for bit, for any thread count.
///
/// ```
/// use ndarray::{array, Array2};
/// let (a, b) = (array![[1.0f32, 2.0], [3.0, 4.0]], array![[1.0f32, 0.0], [1.0, 1.0]]);
/// let mut c = Array2::from_elem((2, 2), f32::NAN);
/// kerust::device::gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
/// assert_eq!(c, array![[3.0, 2.0], [7.0, 4.0]]);
/// ```
///
/// # Panics
/// If the shapes do not fit `(m, k) x (k, n)` into `(m, n)`.
pub fn gemm(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let threads = num_threads();
    if threads == 1 || m * n * k < PARALLEL_MIN_MACS {
        general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    // Twice as many parts as threads, so that a core slowed by other work costs at most a small part.
    let parts = 2 * threads;
    if m >= 4 * n {
        // Tall and narrow (convolutions: pixels x filters): split the rows, so that each part packs only its
        // rows of `a` rather than all of it.
        let height = m.div_ceil(parts).next_multiple_of(16);
        crate::threads::install(|| split_rows(alpha, a.view(), b, beta, c.view_mut(), height));
        return;
    }
    let width = n.div_ceil(parts).next_multiple_of(16);
    crate::threads::install(|| split(alpha, a, b.view(), beta, c.view_mut(), width));
}

/// [`split`] by rows: `C[part, :] = A[part, :] · B`. Each output element is computed exactly as on one thread.
fn split_rows(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
    height: usize,
) {
    let m = a.nrows();
    if m <= height {
        general_mat_mul(alpha, &a, b, beta, &mut c);
        return;
    }
    let mid = (m / 2).next_multiple_of(16).min(m);
    let (a1, a2) = a.split_at(Axis(0), mid);
    let (c1, c2) = c.split_at(Axis(0), mid);
    rayon::join(|| split_rows(alpha, a1, b, beta, c1, height), || split_rows(alpha, a2, b, beta, c2, height));
}

/// `c = alpha * a · b + beta * c` on one thread, through the `gemm` crate. With `beta == 0`, `c` is not read.
pub(crate) fn general_mat_mul(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(k == k2 && c.dim() == (m, n), "gemm: {:?} x {:?} into {:?}", a.dim(), b.dim(), c.dim());
    if m == 0 || n == 0 {
        return;
    }
    let (ars, acs) = (a.strides()[0], a.strides()[1]);
    let (brs, bcs) = (b.strides()[0], b.strides()[1]);
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    if [ars, acs, brs, bcs, crs, ccs].iter().any(|&s| s < 0) {
        // Reversed views never occur in kerust's own products; ndarray handles them.
        ndarray::linalg::general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    // The kernels prefer a column-major output: for a row-major `c`, compute `cᵀ = bᵀ · aᵀ` instead (what the
    // `gemm` crate's own entry point does).
    let (m, n, crs, ccs, lhs, lrs, lcs, rhs, rrs, rcs) = if ccs.abs() < crs.abs() {
        (n, m, ccs, crs, b.as_ptr(), bcs, brs, a.as_ptr(), acs, ars)
    } else {
        (m, n, crs, ccs, a.as_ptr(), ars, acs, b.as_ptr(), brs, bcs)
    };
    // SAFETY: the pointers and strides describe the three views (transposed together above), which ndarray
    // guarantees valid for their dimensions; `c` is borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm_f32::gemm::f32::get_gemm_fn()(
            m,
            n,
            k,
            c.as_mut_ptr(),
            ccs,
            crs,
            beta != 0.0,
            lhs,
            lcs,
            lrs,
            rhs,
            rcs,
            rrs,
            beta,
            alpha,
            false,
            false,
            false,
            gemm_common::Parallelism::None,
        );
    }
}

/// Halves the columns until parts are at most `width` wide, and runs the halves with `rayon::join`: an idle
/// worker takes the second half; if none is free, the caller runs it itself, so a busy machine never waits.
fn split(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
    width: usize,
) {
    let n = b.ncols();
    if n <= width {
        general_mat_mul(alpha, a, &b, beta, &mut c);
        return;
    }
    // Column blocks of a multiple of 16, the widest micro-kernel's width, so no part gets a ragged edge that
    // the single-threaded product would not have.
    let mid = (n / 2).next_multiple_of(16).min(n);
    let (b1, b2) = b.split_at(Axis(1), mid);
    let (c1, c2) = c.split_at(Axis(1), mid);
    rayon::join(|| split(alpha, a, b1, beta, c1, width), || split(alpha, a, b2, beta, c2, width));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn pattern(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17 + seed) % 101) as f32 / 50.0 - 1.0)
    }

    /// One thread's product: the unsplit kernel.
    fn single(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>, beta: f32, c: &Array2<f32>) -> Array2<f32> {
        let mut c = c.clone();
        general_mat_mul(1.0, a, b, beta, &mut c.view_mut());
        c
    }

    #[test]
    fn products_match_ndarray() {
        let (a, b) = (pattern(37, 53, 0), pattern(53, 29, 1));
        let want = a.dot(&b);
        let got = single(&a.view(), &b.view(), 0.0, &Array2::from_elem((37, 29), f32::NAN));
        assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-4 * w.abs().max(1.0)));
        // Transposed operands and accumulation: c = a · b + c.
        let (at, bt) = (a.t().to_owned(), b.t().to_owned());
        let acc = single(&at.t(), &bt.t(), 1.0, &want);
        assert!(acc.iter().zip(&want).all(|(g, w)| (g - 2.0 * w).abs() <= 1e-4 * w.abs().max(1.0)));
    }

    #[test]
    fn split_products_equal_one_thread_bit_for_bit() {
        // Wide (split by columns) and tall (split by rows), written over stale NaN with beta = 0, and
        // accumulated with beta = 1 through a transposed operand as backward uses it.
        for (m, k, n) in [(128, 784, 520), (1000, 300, 64)] {
            let (a, b) = (pattern(m, k, 2), pattern(k, n, 3));
            let stale = Array2::from_elem((m, n), f32::NAN);
            let want = single(&a.view(), &b.view(), 0.0, &stale);
            for parts in [16, 48] {
                let mut cols = stale.clone();
                split(1.0, &a.view(), b.view(), 0.0, cols.view_mut(), parts);
                assert_eq!(cols, want, "{m}x{k}x{n} in columns of {parts}");
                let mut rows = stale.clone();
                split_rows(1.0, a.view(), &b.view(), 0.0, rows.view_mut(), parts);
                assert_eq!(rows, want, "{m}x{k}x{n} in rows of {parts}");
            }
            let at = a.t().to_owned();
            let acc_want = single(&at.t(), &b.view(), 1.0, &want);
            let mut acc = want.clone();
            split_rows(1.0, at.t(), &b.view(), 1.0, acc.view_mut(), 32);
            assert_eq!(acc, acc_want);
        }
        // And through the entry point, whatever it chooses.
        let (a, b) = (pattern(1000, 300, 4), pattern(300, 64, 5));
        let mut c = Array2::from_elem((1000, 64), f32::NAN);
        gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
        assert_eq!(c, single(&a.view(), &b.view(), 0.0, &c));
    }
}
