//! Recurrent layers' whole-sequence kernels (SimpleRNN, LSTM, GRU), cuDNN-style: one call runs every time step
//! forward, one call runs back-propagation through time, and a few calls turn what it left behind into the
//! inputs' gradients. What `ops/recurrent.rs` runs.
use super::{Storage, Unary};

/// Which cell a recurrent kernel runs, with Keras' gate order in the kernel's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentCell {
    /// `h = act(x W + h U + b)`.
    Simple,
    /// Gates `i, f, c, o`; states `h` and `c`.
    Lstm,
    /// Gates `z, r, h`. With `reset_after` (Keras 3's default) the reset gate multiplies `h U_h + b_rec`, and
    /// the bias is `(2, 3·units)` (input bias, recurrent bias); without, it multiplies `h` before the product
    /// and the bias is `(3·units)`.
    Gru {
        /// Whether the reset gate applies after the recurrent product.
        reset_after: bool,
    },
}

impl RecurrentCell {
    /// Gates per unit: the kernel's columns are `gates · units`.
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::Simple => 1,
            RecurrentCell::Lstm => 4,
            RecurrentCell::Gru { .. } => 3,
        }
    }

    /// The number of states the cell carries (`h`, and `c` for the LSTM).
    pub fn states(self) -> usize {
        match self {
            RecurrentCell::Lstm => 2,
            _ => 1,
        }
    }

    /// The bias's shape for `units`.
    pub fn bias_shape(self, units: usize) -> Vec<usize> {
        match self {
            RecurrentCell::Gru { reset_after: true } => vec![2, 3 * units],
            _ => vec![self.gates() * units],
        }
    }
}

/// The sizes and settings of one recurrent run, fixed when it is recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentGeometry {
    /// The cell.
    pub cell: RecurrentCell,
    /// Sequences in the batch.
    pub batch: usize,
    /// Time steps.
    pub time: usize,
    /// Features of one step's input.
    pub features: usize,
    /// Units of the state.
    pub units: usize,
    /// The candidate's (and, for the LSTM, the cell output's) activation.
    pub activation: Unary,
    /// The gates' activation (unused by the simple cell).
    pub recurrent_activation: Unary,
    /// Whether time runs backwards (the outputs then come in the order they were computed, as Keras returns
    /// them).
    pub go_backwards: bool,
    /// Whether every step's output is returned, or only the last.
    pub return_sequences: bool,
    /// Whether the final states follow the outputs in the result.
    pub with_states: bool,
}

impl RecurrentGeometry {
    /// Output rows per sequence before the states: the time steps, or 1.
    pub fn output_steps(&self) -> usize {
        if self.return_sequences {
            self.time
        } else {
            1
        }
    }

    /// Rows per sequence of the result: the outputs, then the final states when asked.
    pub fn rows(&self) -> usize {
        self.output_steps() + if self.with_states { self.cell.states() } else { 0 }
    }

    /// Columns of the kernel: `gates · units`.
    pub fn width(&self) -> usize {
        self.cell.gates() * self.units
    }
}

/// The buffers one recurrent run reads: `x` `(batch, time, features)`, `kernel` `(features, gates·units)`,
/// `recurrent_kernel` `(units, gates·units)`, the bias ([`RecurrentCell::bias_shape`]), the initial states
/// `(batch, units)` (zeros where absent), the mask `(batch, time)` of 1.0 (a step) and 0.0 (padding: the step
/// carries the previous state and output on), and the recurrent dropout mask `(batch, units)` that multiplies
/// the state going into the recurrent product.
#[derive(Debug)]
pub struct RecurrentInputs<'a, S> {
    /// The sequences.
    pub x: &'a S,
    /// The input kernel.
    pub kernel: &'a S,
    /// The recurrent kernel.
    pub recurrent_kernel: &'a S,
    /// The bias.
    pub bias: Option<&'a S>,
    /// The initial `h` and (LSTM) `c`.
    pub initial: [Option<&'a S>; 2],
    /// Which steps are real.
    pub mask: Option<&'a S>,
    /// Recurrent dropout's mask.
    pub recurrent_mask: Option<&'a S>,
}

impl<S> Clone for RecurrentInputs<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for RecurrentInputs<'_, S> {}

/// Which input's gradient [`RecurrentKernels::recurrent_grad`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentPart {
    /// The sequences `x`.
    Input,
    /// The input kernel.
    Kernel,
    /// The recurrent kernel.
    RecurrentKernel,
    /// The bias.
    Bias,
    /// Initial state `i` (0: `h`, 1: `c`).
    Initial(usize),
}

/// Whole-sequence recurrent kernels. The result `out` is `(batch, rows, units)` ([`RecurrentGeometry::rows`]):
/// the outputs, then the final states. `aux` is the run's own buffer, sized by the kernel as it needs: the
/// forward pass keeps there what back-propagation reads (the input projection, the states, the gates), and
/// the backward pass its partial gradients.
pub trait RecurrentKernels: Sized {
    /// Runs the cell over every time step.
    fn recurrent(
        inputs: RecurrentInputs<'_, Self>,
        geometry: RecurrentGeometry,
        out: &mut Self,
        aux: &mut Self,
    );

    /// Back-propagation through time given the result's gradient `self`; leaves the partial gradients in
    /// `aux` for [`RecurrentKernels::recurrent_grad`].
    fn recurrent_backward(
        &self,
        inputs: RecurrentInputs<'_, Self>,
        geometry: RecurrentGeometry,
        aux: &mut Self,
    );

    /// One input's gradient from the partials in `aux` (`self`), into `out`: written, or added to with
    /// `accumulate`.
    fn recurrent_grad(
        &self,
        inputs: RecurrentInputs<'_, Self>,
        geometry: RecurrentGeometry,
        part: RecurrentPart,
        out: &mut Self,
        accumulate: bool,
    );
}

impl Storage {
    /// [`RecurrentKernels::recurrent`] on the device the buffers live on.
    pub(crate) fn recurrent(
        inputs: RecurrentInputs<'_, Storage>,
        geometry: RecurrentGeometry,
        out: &mut Storage,
        aux: &mut Storage,
    ) {
        match (out, aux) {
            (Storage::Cpu(out), Storage::Cpu(aux)) => {
                super::CpuStorage::recurrent(cpu_inputs(inputs), geometry, out, aux)
            }
        }
    }

    /// [`RecurrentKernels::recurrent_backward`] on the device the buffers live on.
    pub(crate) fn recurrent_backward(
        &self,
        inputs: RecurrentInputs<'_, Storage>,
        geometry: RecurrentGeometry,
        aux: &mut Storage,
    ) {
        match (self, aux) {
            (Storage::Cpu(g), Storage::Cpu(aux)) => g.recurrent_backward(cpu_inputs(inputs), geometry, aux),
        }
    }

    /// [`RecurrentKernels::recurrent_grad`] on the device the buffers live on.
    pub(crate) fn recurrent_grad(
        &self,
        inputs: RecurrentInputs<'_, Storage>,
        geometry: RecurrentGeometry,
        part: RecurrentPart,
        out: &mut Storage,
        accumulate: bool,
    ) {
        match (self, out) {
            (Storage::Cpu(aux), Storage::Cpu(out)) => {
                aux.recurrent_grad(cpu_inputs(inputs), geometry, part, out, accumulate)
            }
        }
    }
}

/// The CPU buffers of inputs that all live on the CPU.
fn cpu_inputs<'a>(i: RecurrentInputs<'a, Storage>) -> RecurrentInputs<'a, super::CpuStorage> {
    let c = |s: &'a Storage| match s {
        Storage::Cpu(s) => s,
    };
    RecurrentInputs {
        x: c(i.x),
        kernel: c(i.kernel),
        recurrent_kernel: c(i.recurrent_kernel),
        bias: i.bias.map(c),
        initial: [i.initial[0].map(c), i.initial[1].map(c)],
        mask: i.mask.map(c),
        recurrent_mask: i.recurrent_mask.map(c),
    }
}
