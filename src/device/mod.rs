//! Where tensors live and where kernels run: the seam between the engine's math and a machine.
//!
//! The engine (`autodiff`), the optimizers and the layers never touch a machine's memory themselves. Every
//! buffer they keep (parameters, gradients, optimizer state, the tape's workspace) is a [`Storage`], and every
//! computation on buffers is a method of [`Storage`], which hands it to the backend that holds the data. A
//! backend is one type implementing [`BackendStorage`]: the CPU's is [`CpuStorage`] (ndarray, kerust's GEMM and
//! thread pool). A GPU backend is one more variant of [`Storage`] and [`Device`] and one more implementation of
//! the trait; nothing above this floor changes.
//!
//! This is candle's design (`candle-core/src/storage.rs` dispatching to `backend.rs`'s `BackendStorage`), for
//! the same reason: layers are trait objects, so the device is a value chosen at run time, not a type parameter
//! threaded through every layer.
//!
//! ndarray stays at the edges: [`Storage::from_array`] takes user data in, [`Storage::to_array`] brings values
//! out (predictions, `get_weights`, checkpoints).
//!
//! ```
//! use kerust::device::{Device, Storage};
//! use ndarray::array;
//!
//! let x = Storage::from_array(Device::Cpu, array![[1.0f32, -2.0], [3.0, 4.0]].view().into_dyn());
//! assert_eq!(x.device(), Device::Cpu);
//! assert_eq!(x.shape(), &[2, 2]);
//! assert_eq!(x.to_array(), array![[1.0f32, -2.0], [3.0, 4.0]].into_dyn());
//! ```
mod batch_norm;
mod concat;
mod conv2d;
mod cpu;
mod cross_entropy;
mod dense;
mod elementwise;
mod gather;
mod layer_norm;
mod matmul;
mod optimizer;
mod pool2d;
mod recurrent;
mod reduce;
mod shape;
mod softmax;
mod unary;
mod window;

pub use batch_norm::{BatchNormInput, BatchNormKernels};
pub use concat::ConcatKernels;
pub(crate) use conv2d::Conv2dGeometry;
pub use conv2d::Conv2dKernels;
pub use cpu::{gemm, CpuStorage};
pub use cross_entropy::CrossEntropyKernels;
pub use dense::DenseKernels;
pub(crate) use elementwise::Binary;
pub use elementwise::ElementwiseKernels;
pub use gather::{GatherKernels, IndexFault};
pub use layer_norm::LayerNormKernels;
pub use matmul::MatmulKernels;
pub use optimizer::{AdagradSettings, AdamSettings, OptimizerKernels, RmspropSettings, SgdSettings};
pub(crate) use pool2d::Pool2dGeometry;
pub use pool2d::Pool2dKernels;
pub use recurrent::{RecurrentCell, RecurrentGeometry, RecurrentInputs, RecurrentKernels, RecurrentPart};
pub use reduce::ReduceKernels;
pub use shape::ShapeKernels;
pub use softmax::SoftmaxKernels;
pub use unary::CustomActivation;
pub(crate) use unary::{sigmoid, specialise, Unary};
pub(crate) use window::{window_output, Axis1, WindowFault};
pub use window::{Padding, Padding1d};

use ndarray::{ArrayD, ArrayViewD};

/// A machine that holds tensors and runs kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host's cores: ndarray buffers, kerust's GEMM, kerust's thread pool.
    #[default]
    Cpu,
}

impl Device {
    /// A buffer of `shape` on this device, every element zero.
    pub fn zeros(self, shape: &[usize]) -> Storage {
        match self {
            Device::Cpu => Storage::Cpu(CpuStorage::zeros(shape)),
        }
    }

    /// The device's name, as messages and summaries print it.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What every backend's buffer provides: its shape and content, and the kernels the engine runs on it.
///
/// The kernel methods are grouped by the op files of `autodiff/ops/` that call them; each takes its inputs as
/// `&Self` and writes its outputs into buffers the caller owns (`out`, or gradient buffers with an
/// `accumulate` flag: overwrite on a first contribution, add on a later one), so that a training step of the
/// same shape as the last one allocates nothing.
pub trait BackendStorage:
    Sized
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + MatmulKernels
    + ElementwiseKernels
    + ReduceKernels
    + ShapeKernels
    + SoftmaxKernels
    + CrossEntropyKernels
    + ConcatKernels
    + DenseKernels
    + Pool2dKernels
    + BatchNormKernels
    + Conv2dKernels
    + OptimizerKernels
    + GatherKernels
    + LayerNormKernels
    + RecurrentKernels
{
    /// The device this storage lives on.
    fn device(&self) -> Device;

    /// The shape of the buffer.
    fn shape(&self) -> &[usize];

    /// A buffer of `shape`, every element zero.
    fn zeros(shape: &[usize]) -> Self;

    /// A copy of host data.
    fn from_array(array: ArrayViewD<'_, f32>) -> Self;

    /// A host copy of the buffer.
    fn to_array(&self) -> ArrayD<f32>;

    /// Writes the buffer's elements, in row-major order, into `dst` (of the buffer's length).
    fn copy_to_host(&self, dst: &mut [f32]);

    /// Overwrites the buffer's elements, in row-major order, from `src` (of the buffer's length).
    fn copy_from_host(&mut self, src: &[f32]);

    /// Sets every element to `value`.
    fn fill(&mut self, value: f32);
}

/// A tensor's buffer on some [`Device`]: what parameters, gradients, optimizer state and the tape's values are.
#[derive(Debug)]
pub enum Storage {
    /// On the CPU.
    Cpu(CpuStorage),
}

impl Clone for Storage {
    fn clone(&self) -> Self {
        match self {
            Storage::Cpu(s) => Storage::Cpu(s.clone()),
        }
    }

    /// Copies into `self`'s buffer when both are on one device (a derived `clone_from` would allocate a new
    /// one): `Gradients::copy_from` relies on it to clip without allocating each step.
    fn clone_from(&mut self, source: &Self) {
        match (self, source) {
            (Storage::Cpu(mine), Storage::Cpu(theirs)) => mine.clone_from(theirs),
        }
    }
}

impl Default for Storage {
    /// An empty CPU buffer that owns no heap memory: the placeholder for a buffer taken out or unused.
    fn default() -> Self {
        Storage::Cpu(CpuStorage::empty())
    }
}

impl PartialEq for Storage {
    /// Same device, shape and elements.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => a == b,
        }
    }
}

impl<S: ndarray::Data<Elem = f32>> PartialEq<ndarray::ArrayBase<S, ndarray::IxDyn>> for Storage {
    /// Same shape and elements as a host array (what tests compare a parameter or gradient with).
    fn eq(&self, other: &ndarray::ArrayBase<S, ndarray::IxDyn>) -> bool {
        *self.host() == *other
    }
}

impl From<ArrayD<f32>> for Storage {
    /// Host data, moved onto the CPU without a copy.
    fn from(array: ArrayD<f32>) -> Self {
        Storage::Cpu(CpuStorage::from(array))
    }
}

impl Storage {
    /// A copy of host data on `device`.
    pub fn from_array(device: Device, array: ArrayViewD<'_, f32>) -> Self {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::from_array(array)),
        }
    }

    /// The device this buffer lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(s) => s.device(),
        }
    }

    /// The shape of the buffer.
    pub fn shape(&self) -> &[usize] {
        match self {
            Storage::Cpu(s) => s.shape(),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the buffer has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A host copy of the buffer, as an ndarray.
    pub fn to_array(&self) -> ArrayD<f32> {
        match self {
            Storage::Cpu(s) => s.to_array(),
        }
    }

    /// The buffer as a host array: borrowed where it already is one (the CPU), a copy otherwise. What the
    /// edges use to read a buffer without copying it on the CPU.
    pub fn host(&self) -> std::borrow::Cow<'_, ArrayD<f32>> {
        match self {
            Storage::Cpu(s) => std::borrow::Cow::Borrowed(s.array()),
        }
    }

    /// Overwrites the buffer with host data of the same shape.
    ///
    /// # Panics
    /// If the shapes differ.
    pub fn assign_array(&mut self, array: ArrayViewD<'_, f32>) {
        assert_eq!(self.shape(), array.shape(), "assign_array: another shape");
        match self {
            Storage::Cpu(s) => s.array_mut().assign(&array),
        }
    }

    /// Writes the buffer from the host: `fill` must write every element of a host view of it (in place on the
    /// CPU; on another device, a staging buffer then uploaded). How a batch of user data is gathered straight
    /// into the tape.
    pub fn write_from_host(&mut self, fill: impl FnOnce(&mut ndarray::ArrayViewMutD<'_, f32>)) {
        match self {
            Storage::Cpu(s) => fill(&mut s.array_mut().view_mut()),
        }
    }

    /// Writes the elements, in row-major order, into `dst`.
    ///
    /// # Panics
    /// If `dst` is not of the buffer's length.
    pub fn copy_to_host(&self, dst: &mut [f32]) {
        assert_eq!(dst.len(), self.len(), "copy_to_host: destination of another length");
        match self {
            Storage::Cpu(s) => s.copy_to_host(dst),
        }
    }

    /// Overwrites the elements, in row-major order, from `src`.
    ///
    /// # Panics
    /// If `src` is not of the buffer's length.
    pub fn copy_from_host(&mut self, src: &[f32]) {
        assert_eq!(src.len(), self.len(), "copy_from_host: source of another length");
        match self {
            Storage::Cpu(s) => s.copy_from_host(src),
        }
    }

    /// Sets every element to `value`.
    pub fn fill(&mut self, value: f32) {
        match self {
            Storage::Cpu(s) => s.fill(value),
        }
    }

    /// Makes the buffer one of `shape` on the same device, reusing its memory when the shape already matches.
    /// The content of a reused buffer is stale: callers overwrite every element.
    pub fn fit(&mut self, shape: &[usize]) {
        if self.shape() != shape {
            *self = self.device().zeros(shape);
        }
    }
}
