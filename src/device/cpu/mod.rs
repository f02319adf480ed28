//! The CPU backend: buffers are ndarray arrays in host memory; products run on the `gemm` crate's kernels,
//! and every parallel part on kerust's thread pool ([`crate::threads`]).
//!
//! Each kernel group of [`super`] has its CPU implementation in a file here of the same name.
mod batch_norm;
mod concat;
mod conv2d;
mod cross_entropy;
mod dense;
mod elementwise;
mod gather;
mod gemm;
mod helpers;
mod layer_norm;
mod matmul;
mod optimizer;
mod pool2d;
mod recurrent;
mod reduce;
mod schedule;
mod shape;
mod softmax;

pub use gemm::gemm;
pub(crate) use gemm::general_mat_mul;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::{BackendStorage, Device};

/// A buffer in host memory: a dynamically shaped, row-major `f32` ndarray.
#[derive(Debug, PartialEq)]
pub struct CpuStorage(ArrayD<f32>);

impl Clone for CpuStorage {
    fn clone(&self) -> Self {
        CpuStorage(self.0.clone())
    }

    /// ndarray's `clone_from`, which reuses `self`'s allocation when it is large enough.
    fn clone_from(&mut self, source: &Self) {
        self.0.clone_from(&source.0);
    }
}

impl CpuStorage {
    /// A buffer with no element that owns no heap memory.
    pub(crate) fn empty() -> Self {
        CpuStorage(ArrayD::zeros(IxDyn(&[0])))
    }

    /// The array itself.
    pub fn array(&self) -> &ArrayD<f32> {
        &self.0
    }

    /// The array itself, mutably.
    pub fn array_mut(&mut self) -> &mut ArrayD<f32> {
        &mut self.0
    }
}

impl From<ArrayD<f32>> for CpuStorage {
    fn from(array: ArrayD<f32>) -> Self {
        CpuStorage(array)
    }
}

impl BackendStorage for CpuStorage {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn zeros(shape: &[usize]) -> Self {
        CpuStorage(ArrayD::zeros(IxDyn(shape)))
    }

    fn from_array(array: ArrayViewD<'_, f32>) -> Self {
        // `to_owned` of a view keeps its memory order; kernels read slices in row-major order.
        CpuStorage(array.as_standard_layout().into_owned())
    }

    fn to_array(&self) -> ArrayD<f32> {
        self.0.clone()
    }

    fn copy_to_host(&self, dst: &mut [f32]) {
        match self.0.as_slice() {
            Some(src) => dst.copy_from_slice(src),
            None => dst.iter_mut().zip(self.0.iter()).for_each(|(d, s)| *d = *s),
        }
    }

    fn copy_from_host(&mut self, src: &[f32]) {
        match self.0.as_slice_mut() {
            Some(dst) => dst.copy_from_slice(src),
            None => self.0.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
        }
    }

    fn fill(&mut self, value: f32) {
        self.0.fill(value);
    }
}

#[cfg(test)]
mod tests {
    use crate::device::{Device, Storage};
    use ndarray::array;

    #[test]
    fn clone_from_reuses_the_buffer() {
        let source = Storage::from_array(Device::Cpu, array![[1.0f32, 2.0], [3.0, 4.0]].view().into_dyn());
        let mut copy = Device::Cpu.zeros(&[2, 2]);
        let before = copy.host().as_ptr();
        copy.clone_from(&source);
        assert_eq!(copy, source.to_array());
        assert_eq!(copy.host().as_ptr(), before, "clone_from allocated a new buffer");
    }
}
