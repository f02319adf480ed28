//! Matrix products: ndarray's GEMM (matrixmultiply), split across threads when a product is large enough to
//! pay for it.
//!
//! A product is split by columns of the output: each thread computes `C[:, part] = A · B[:, part]`, packing all
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
    let threads = num_threads().min(n / 16).max(1);
    if threads == 1 || m * n * k < PARALLEL_MIN_MACS {
        general_mat_mul(alpha, a, b, beta, c);
        return;
    }
    // Column blocks of a multiple of 16, the widest micro-kernel's width, so no thread gets a ragged edge
    // that the others do not.
    let block = n.div_ceil(threads).next_multiple_of(16);
    std::thread::scope(|scope| {
        let mut rest_b = b.view();
        let mut rest_c = c.view_mut();
        let mut local = None;
        while rest_b.ncols() > 0 {
            let width = block.min(rest_b.ncols());
            let (b_part, b_rest) = rest_b.split_at(Axis(1), width);
            let (c_part, c_rest) = rest_c.split_at(Axis(1), width);
            (rest_b, rest_c) = (b_rest, c_rest);
            if local.is_none() {
                // The calling thread takes the first block itself.
                local = Some((b_part, c_part));
            } else {
                let mut c_part = c_part;
                scope.spawn(move || general_mat_mul(alpha, a, &b_part, beta, &mut c_part));
            }
        }
        if let Some((b_part, mut c_part)) = local {
            general_mat_mul(alpha, a, &b_part, beta, &mut c_part);
        }
    });
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
        // Accumulating form, through a transposed view as backward uses it.
        let mut acc = single.clone();
        gemm(1.0, &a.view(), &b.view(), 1.0, &mut acc.view_mut());
        assert_eq!(acc, &single * 2.0);
    }
}
