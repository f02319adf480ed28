//! The fused Dense layer on the CPU: the bias written into the output, the GEMM accumulating onto it, the
//! activation in place; a plain slice loop below the split threshold, so that the hot activations' `f` and
//! `df` are inlined into it.
use ndarray::{ArrayViewD, Ix2, Zip};

use super::{gemm, CpuStorage};
use crate::device::{specialise, DenseKernels, Unary};
use crate::threads::{for_each, worth_splitting};

impl DenseKernels for CpuStorage {
    fn dense_forward(
        &self,
        w: &Self,
        bias: Option<&Self>,
        act: Option<Unary>,
        out: &mut Self,
        z: Option<&mut Self>,
    ) {
        let (x, w) = (
            self.array().view().into_dimensionality::<Ix2>().unwrap(),
            w.array().view().into_dimensionality::<Ix2>().unwrap(),
        );
        let out = out.array_mut();
        let beta = match bias.map(|b| b.array()) {
            Some(bias) => {
                for mut row in out.rows_mut() {
                    row.assign(bias);
                }
                1.0
            }
            None => 0.0,
        };
        gemm(1.0, &x, &w, beta, &mut out.view_mut().into_dimensionality::<Ix2>().unwrap());
        let Some(f) = act else { return };
        if let Some(z) = z {
            z.array_mut().assign(out);
        }
        if worth_splitting(out.len()) {
            specialise!(f, |op| for_each(Zip::from(out), |v| *v = op.f(*v)));
        } else {
            // A plain loop, so that the hot activations' `f` is inlined into it.
            let out = out.as_slice_mut().expect("owned buffers are contiguous");
            specialise!(f, |op| out.iter_mut().for_each(|v| *v = op.f(*v)));
        }
    }

    fn dense_activation_grad(&mut self, act: Unary, z: &Self, y: &Self) {
        scale_by_derivative(self.array_mut(), act, z.array().view(), y.array().view());
    }

    fn sum_rows(&self, out: &mut Self, accumulate: bool) {
        let g = self.array().view().into_dimensionality::<Ix2>().expect("2-D");
        let d = out.array_mut().as_slice_mut().expect("gradient buffers are contiguous");
        let mut rows = g.rows().into_iter();
        if !accumulate {
            match rows.next() {
                Some(first) => d.iter_mut().zip(first).for_each(|(d, &g)| *d = g),
                None => d.fill(0.0),
            }
        }
        for row in rows {
            d.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
}

/// `g *= act'(z)` in place, with `y = act(z)`. `z` is only read by activations whose derivative needs it.
fn scale_by_derivative(
    g: &mut ndarray::ArrayD<f32>,
    f: Unary,
    z: ArrayViewD<'_, f32>,
    y: ArrayViewD<'_, f32>,
) {
    if let (false, Some(zs), Some(ys)) = (worth_splitting(g.len()), z.as_slice(), y.as_slice()) {
        // A plain loop over slices, so that the hot activations' `df` is inlined into it.
        let gs = g.as_slice_mut().expect("gradient buffers are contiguous");
        specialise!(f, |op| for ((g, &z), &y) in gs.iter_mut().zip(zs).zip(ys) {
            *g *= op.df(z, y);
        });
        return;
    }
    specialise!(f, |op| for_each(Zip::from(g).and(&z).and(&y), |g, &z, &y| *g *= op.df(z, y)));
}
