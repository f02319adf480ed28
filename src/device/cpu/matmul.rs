//! Matrix products on the CPU: each matrix of a batch through [`gemm`](super::gemm).
use ndarray::{ArrayView2, ArrayViewD, Axis, Ix2, Ix3};

use super::{gemm, CpuStorage};
use crate::device::MatmulKernels;

/// Matrix `i` of a batch (or the matrix itself), transposed if asked.
fn matrix(v: ArrayViewD<'_, f32>, i: usize, transpose: bool) -> ArrayView2<'_, f32> {
    let m = if v.ndim() == 3 { v.index_axis_move(Axis(0), i) } else { v };
    let m = m.into_dimensionality::<Ix2>().expect("a matrix or a batch of matrices");
    if transpose {
        m.reversed_axes()
    } else {
        m
    }
}

impl MatmulKernels for CpuStorage {
    fn matmul(&self, transpose_a: bool, b: &Self, transpose_b: bool, out: &mut Self, accumulate: bool) {
        let (a, b, out) = (self.array().view(), b.array().view(), out.array_mut());
        let batch = if a.ndim() == 3 {
            a.len_of(Axis(0))
        } else if b.ndim() == 3 {
            b.len_of(Axis(0))
        } else {
            1
        };
        if out.ndim() == 2 {
            // One matrix: a plain product, or the sum of a batch's products.
            let mut o = out.view_mut().into_dimensionality::<Ix2>().expect("2-D");
            for i in 0..batch {
                let beta = if accumulate || i > 0 { 1.0 } else { 0.0 };
                gemm(1.0, &matrix(a.view(), i, transpose_a), &matrix(b.view(), i, transpose_b), beta, &mut o);
            }
        } else {
            let mut o = out.view_mut().into_dimensionality::<Ix3>().expect("3-D");
            let beta = if accumulate { 1.0 } else { 0.0 };
            for i in 0..batch {
                gemm(
                    1.0,
                    &matrix(a.view(), i, transpose_a),
                    &matrix(b.view(), i, transpose_b),
                    beta,
                    &mut o.index_axis_mut(Axis(0), i),
                );
            }
        }
    }
}
