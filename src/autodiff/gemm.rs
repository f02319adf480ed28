//! Matrix products: ndarray's GEMM (matrixmultiply), split across threads when a product is large enough to
//! pay for it.
//!
//! A product is split by columns of the output: each part computes `C[:, part] = A · B[:, part]`, packing all
//! of `A` (the batch side, small) and its part of `B`. Each output element is summed in the same order as
//! on one thread, so results are identical, bit for bit, whatever the thread count.
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// Below this many multiply-adds a product runs on one thread: starting a thread (~20 µs) would cost more than
/// it saves. The tutorial's products (32 x 784 x 25: 0.6 M) stay on one thread; the bigger model's
/// (128 x 784 x 512: 51 M) are split.
const PARALLEL_MIN_MACS: usize = 4_000_000;

/// 0 until first asked or set.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The threads a large matrix product may use: as set by [`set_num_threads`], else `KERUST_NUM_THREADS` if
/// set, else the machine's available parallelism.
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("KERUST_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n >= 1)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Sets the threads large matrix products may use (like `torch.set_num_threads`); 0 restores the default.
/// Results do not depend on it.
pub fn set_num_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// `c = alpha * a · b + beta * c`. With `beta == 0`, `c`'s previous content is ignored (it may be stale).
pub(crate) fn gemm(
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
        split_rows(alpha, a.view(), b, beta, c.view_mut(), height);
        return;
    }
    let width = n.div_ceil(parts).next_multiple_of(16);
    split(alpha, a, b.view(), beta, c.view_mut(), width);
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

    #[test]
    fn split_product_equals_single_thread_bit_for_bit() {
        let a = Array2::from_shape_fn((128, 784), |(i, j)| ((i * 31 + j * 17) % 101) as f32 / 50.0 - 1.0);
        let b = Array2::from_shape_fn((784, 520), |(i, j)| ((i * 13 + j * 7) % 97) as f32 / 48.0 - 1.0);
        let mut single = Array2::zeros((128, 520));
        general_mat_mul(1.0, &a, &b, 0.0, &mut single);
        let mut split = Array2::from_elem((128, 520), f32::NAN); // stale content must not leak with beta = 0
        gemm(1.0, &a.view(), &b.view(), 0.0, &mut split.view_mut());
        assert_eq!(single, split);
        // The accumulating form (beta = 1), with a transposed operand as backward uses it.
        let at = a.t().to_owned();
        let (mut acc_single, mut acc_split) = (single.clone(), single.clone());
        general_mat_mul(1.0, &at.t(), &b, 1.0, &mut acc_single);
        gemm(1.0, &at.t(), &b.view(), 1.0, &mut acc_split.view_mut());
        assert_eq!(acc_single, acc_split);
        assert!(acc_split.iter().zip(&single).all(|(a, s)| (a - 2.0 * s).abs() <= 1e-3 * s.abs().max(1.0)));
        // Tall and narrow products are split by rows, with the same result.
        let tall = Array2::from_shape_fn((1000, 300), |(i, j)| ((i * 7 + j * 3) % 89) as f32 / 44.0 - 1.0);
        let narrow = Array2::from_shape_fn((300, 64), |(i, j)| ((i * 5 + j * 11) % 83) as f32 / 41.0 - 1.0);
        let mut single = Array2::zeros((1000, 64));
        general_mat_mul(1.0, &tall, &narrow, 0.0, &mut single);
        let mut split = Array2::from_elem((1000, 64), f32::NAN);
        gemm(1.0, &tall.view(), &narrow.view(), 0.0, &mut split.view_mut());
        assert_eq!(single, split);
    }
}
