//! Element moves on the CPU: a slice copy for a reshape, ndarray's permuted view for a permutation.
use ndarray::Zip;

use super::CpuStorage;
use crate::device::ShapeKernels;

impl ShapeKernels for CpuStorage {
    fn reshape(&self, out: &mut Self, accumulate: bool) {
        let (x, out) = (self.array(), out.array_mut());
        if accumulate {
            let xr = x.to_shape(out.shape()).expect("same number of elements");
            Zip::from(out).and(&xr).for_each(|d, &g| *d += g);
            return;
        }
        let flat = x.as_standard_layout();
        out.as_slice_mut()
            .expect("owned buffers are contiguous")
            .copy_from_slice(flat.as_slice().expect("standard layout"));
    }

    fn permute(&self, axes: &[usize], out: &mut Self, accumulate: bool) {
        let (x, out) = (self.array().view().permuted_axes(axes), out.array_mut());
        if accumulate {
            Zip::from(out).and(&x).for_each(|d, &g| *d += g);
        } else {
            out.assign(&x);
        }
    }
}
