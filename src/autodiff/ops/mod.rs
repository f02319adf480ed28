//! Every operation of the engine, one file each (or one file per family): the `Var` method that records the
//! node and computes its value, the node's [`Kernel`](super::backward::Kernel) with its backward rule, and
//! the tests, side by side.
//!
//! - `elementwise/`: one-input functions (one file each, registered in `elementwise/mod.rs`) and broadcasting
//!   binary arithmetic;
//! - `matmul`, `reduce` (sum, mean), `shape` (reshape, permute), `softmax` (softmax, log-softmax);
//! - `cross_entropy`: the three losses fused with their softmax or sigmoid;
//! - `dense`, `conv2d`, `pool2d`, `batch_norm`: layers' hot paths, each one node (the window geometry the
//!   image kernels share is `device::window`);
//! - `recurrent`: a SimpleRNN, LSTM or GRU over a whole sequence, one node;
//! - `concat`, `stack` (a new axis) and `slice` (a range along an axis; an index, the axis dropped; `unstack`),
//!   which share concatenation's block-copy kernels; `gather` (an embedding lookup, with its scatter-add gradient); and `custom`: a user's [`CustomOp`].
//!
//! Shapes are a programming matter here, as in ndarray: an operation on incompatible shapes panics with a message
//! naming both. Models validate shapes once, when they are built, so the training loop never hits these panics;
//! a custom layer that does the same needs no `?` on every operation. Stacking and slicing are the exception:
//! their axes, ranges and lists of values are often computed at run time, so they return an
//! [`Error`](crate::Error) instead.
mod batch_norm;
mod concat;
mod conv2d;
mod cross_entropy;
mod custom;
mod dense;
pub(crate) mod elementwise;
mod gather;
mod layer_norm;
mod matmul;
mod pool2d;
mod recurrent;
mod reduce;
mod shape;
mod slice;
mod softmax;
mod stack;

pub(crate) use crate::device::{window_output, WindowFault};
pub use crate::device::{Padding, Padding1d};
pub use batch_norm::BatchStatistics;
pub use conv2d::{Conv1dOptions, Conv2dOptions};
pub use custom::CustomOp;
pub use recurrent::RecurrentOptions;
