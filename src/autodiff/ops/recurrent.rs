//! A recurrent layer's whole sequence as one node (SimpleRNN, LSTM, GRU), on the device's recurrent kernels
//! ([`crate::device::RecurrentKernels`]): the forward pass runs every time step inside the kernel, and the
//! backward pass runs back-propagation through time inside it, cuDNN-style, rather than one node per gate
//! per step.
//!
//! Backward: the kernel walks the steps in reverse and keeps each step's gate gradients; the kernels'
//! gradients are then one matrix product each over all steps, the input's one product, the bias's column
//! sums, and the initial states' the gradient left at the first step.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{RecurrentCell, RecurrentGeometry, RecurrentInputs, RecurrentPart, Storage, Unary};

/// How a [`Var::recurrent`] run goes: the cell, its activations, the direction, and what it returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentOptions {
    /// The cell.
    pub cell: RecurrentCell,
    /// The candidate's activation (Keras' `activation`, tanh by default).
    pub activation: Unary,
    /// The gates' activation (Keras' `recurrent_activation`, sigmoid by default).
    pub recurrent_activation: Unary,
    /// Whether time runs backwards; the outputs then come in reversed order, as in Keras.
    pub go_backwards: bool,
    /// Every step's output `(batch, time, units)`, or the last one `(batch, units)`.
    pub return_sequences: bool,
    /// Whether the final states follow the outputs: the result is then `(batch, rows, units)`, its rows the
    /// outputs (every step's or the last) and then the states (`h`, and `c` for the LSTM).
    pub return_state: bool,
}

impl RecurrentOptions {
    /// Keras' defaults for `cell`: tanh and sigmoid, forwards, the last output only, no states.
    pub fn new(cell: RecurrentCell) -> Self {
        RecurrentOptions {
            cell,
            activation: Unary::Tanh,
            recurrent_activation: Unary::Sigmoid,
            go_backwards: false,
            return_sequences: false,
            return_state: false,
        }
    }
}

/// The recorded node: inputs `[x, kernel, recurrent_kernel]`, then those present of bias, initial states,
/// mask and recurrent mask (their ids also in the named fields).
#[derive(Clone)]
struct Recurrent {
    inputs: Vec<usize>,
    bias: Option<usize>,
    initial: [Option<usize>; 2],
    mask: Option<usize>,
    recurrent_mask: Option<usize>,
    geometry: RecurrentGeometry,
}

impl Recurrent {
    fn gather<'w>(&self, get: impl Fn(usize) -> &'w Storage) -> RecurrentInputs<'w, Storage> {
        RecurrentInputs {
            x: get(self.inputs[0]),
            kernel: get(self.inputs[1]),
            recurrent_kernel: get(self.inputs[2]),
            bias: self.bias.map(&get),
            initial: self.initial.map(|i| i.map(&get)),
            mask: self.mask.map(&get),
            recurrent_mask: self.recurrent_mask.map(&get),
        }
    }
}

impl<'t> Var<'t> {
    /// Runs a recurrent cell over sequences `self` `(batch, time, features)`, with `kernel` `(features,
    /// gates·units)`, `recurrent_kernel` `(units, gates·units)` and an optional bias (Keras' layouts and gate
    /// orders: see [`RecurrentCell`]). `initial` holds the initial states `(batch, units)` (`h`, and `c` for the
    /// LSTM), zeros if empty; `mask` `(batch, time)` marks real steps with 1.0 and padding with 0.0 (a padded
    /// step carries the state and the output on, as in Keras); `recurrent_mask` `(batch, units)` multiplies
    /// the state going into the recurrent product (recurrent dropout). Masks get no gradient.
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, RecurrentOptions, Tape};
    /// use kerust::device::RecurrentCell;
    /// use ndarray::{Array2, Array3};
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(Array3::<f32>::ones((2, 5, 3)).into_dyn().view());
    /// let w = tape.constant(Array2::<f32>::from_elem((3, 4), 0.1).into_dyn().view());
    /// let u = tape.constant(Array2::<f32>::from_elem((4, 4), 0.1).into_dyn().view());
    /// let h = x.recurrent(w, u, None, &[], None, None, RecurrentOptions::new(RecurrentCell::Simple));
    /// assert_eq!(h.shape(), vec![2, 4]);
    /// ```
    ///
    /// # Panics
    /// If the shapes do not fit; layers check them when they are built.
    #[allow(clippy::too_many_arguments)]
    pub fn recurrent(
        self,
        kernel: Var<'t>,
        recurrent_kernel: Var<'t>,
        bias: Option<Var<'t>>,
        initial: &[Var<'t>],
        mask: Option<Var<'t>>,
        recurrent_mask: Option<Var<'t>>,
        options: RecurrentOptions,
    ) -> Var<'t> {
        let cell = options.cell;
        let (xs, ks, rs) = (self.shape(), kernel.shape(), recurrent_kernel.shape());
        let &[batch, time, features] = xs.as_slice() else {
            panic!("recurrent: needs sequences (batch, time, features), got {xs:?}")
        };
        let &[_, width] = ks.as_slice() else { panic!("recurrent: needs a 2-D kernel, got {ks:?}") };
        let units = width / cell.gates();
        assert!(
            units > 0 && ks == [features, cell.gates() * units],
            "recurrent: the kernel {ks:?} does not fit {features} features and {} gates",
            cell.gates()
        );
        assert_eq!(rs, [units, width], "recurrent: the recurrent kernel needs shape [{units}, {width}]");
        if let Some(b) = bias {
            assert_eq!(b.shape(), cell.bias_shape(units), "recurrent: bias of the wrong shape");
        }
        assert!(initial.len() <= cell.states(), "recurrent: {cell:?} has {} states", cell.states());
        for s in initial {
            assert_eq!(s.shape(), [batch, units], "recurrent: initial states need shape [{batch}, {units}]");
        }
        if let Some(m) = mask {
            assert_eq!(m.shape(), [batch, time], "recurrent: the mask needs shape [{batch}, {time}]");
        }
        if let Some(m) = recurrent_mask {
            assert_eq!(
                m.shape(),
                [batch, units],
                "recurrent: the recurrent mask needs shape [{batch}, {units}]"
            );
        }
        assert!(time > 0, "recurrent: sequences of no time step");
        let geometry = RecurrentGeometry {
            cell,
            batch,
            time,
            features,
            units,
            activation: options.activation,
            recurrent_activation: options.recurrent_activation,
            go_backwards: options.go_backwards,
            return_sequences: options.return_sequences,
            with_states: options.return_state,
        };
        let mut inputs = vec![self.id, kernel.id, recurrent_kernel.id];
        inputs.extend(bias.iter().chain(initial).chain(&mask).chain(&recurrent_mask).map(|v| v.id));
        let node = Recurrent {
            inputs,
            bias: bias.map(|v| v.id),
            initial: [initial.first().map(|v| v.id), initial.get(1).map(|v| v.id)],
            mask: mask.map(|v| v.id),
            recurrent_mask: recurrent_mask.map(|v| v.id),
            geometry,
        };
        let shape = match (options.return_sequences, options.return_state) {
            (false, false) => vec![batch, units],
            _ => vec![batch, geometry.rows(), units],
        };
        let read = node.clone();
        self.tape.push(node, &shape, |v, out, aux| {
            Storage::recurrent(read.gather(|id| v.get(id)), geometry, out, aux)
        })
    }
}

impl Kernel for Recurrent {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let geo = self.geometry;
        let inputs = self.gather(|id| ctx.value(id));
        // The forward pass's record, then the partial gradients, in the node's own buffer.
        let mut aux = std::mem::take(ctx.aux);
        g.recurrent_backward(inputs, geo, &mut aux);
        let mut parts = vec![
            (RecurrentPart::Input, self.inputs[0]),
            (RecurrentPart::Kernel, self.inputs[1]),
            (RecurrentPart::RecurrentKernel, self.inputs[2]),
        ];
        parts.extend(self.bias.map(|b| (RecurrentPart::Bias, b)));
        for (k, id) in self.initial.iter().enumerate() {
            parts.extend(id.map(|id| (RecurrentPart::Initial(k), id)));
        }
        for (part, id) in parts {
            let shape = ctx.value(id).shape().to_vec();
            if let Some((d, fresh)) = ctx.grad(id, &shape) {
                aux.recurrent_grad(inputs, geo, part, d, !fresh);
            }
        }
        *ctx.aux = aux;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{check_gradients, test_values, Gradients, ParamStore, Tape, Tensor};
    use ndarray::{Array2, ArrayD, IxDyn};

    const B: usize = 2;
    const T: usize = 3;
    const F: usize = 2;
    const U: usize = 2;

    /// Columns `start..start + len` of a matrix.
    fn cols<'t>(m: Var<'t>, start: usize, len: usize) -> Var<'t> {
        m.slice_axis(1, start..start + len).unwrap()
    }

    /// The same run composed from the engine's other ops, one step and one gate at a time.
    #[allow(clippy::too_many_arguments)]
    fn composed<'t>(
        x: Var<'t>,
        w: Var<'t>,
        u: Var<'t>,
        bias: Option<Var<'t>>,
        initial: &[Var<'t>],
        mask: Option<&Tensor>,
        rmask: Option<&Tensor>,
        o: RecurrentOptions,
    ) -> Var<'t> {
        let tape = x.tape();
        let g = o.cell.gates();
        let (act, rec) = (|v: Var<'t>| v.unary(o.activation), |v: Var<'t>| v.unary(o.recurrent_activation));
        let zeros = || tape.constant(ArrayD::zeros(IxDyn(&[B, U])).view());
        let mut h = initial.first().copied().unwrap_or_else(zeros);
        let mut c = initial.get(1).copied().unwrap_or_else(zeros);
        let (in_bias, rec_bias) = match (o.cell, bias) {
            (RecurrentCell::Gru { reset_after: true }, Some(b)) => {
                (Some(b.slice_axis(0, 0..1).unwrap()), Some(b.slice_axis(0, 1..2).unwrap()))
            }
            (_, Some(b)) => (Some(b.reshape(&[1, g * U])), None),
            _ => (None, None),
        };
        let gate = |m: Var<'t>, k: usize| cols(m, k * U, U);
        let rm = rmask.map(|m| tape.constant(m.view()));
        let mut outs = Vec::new();
        for s in 0..T {
            let t = if o.go_backwards { T - 1 - s } else { s };
            let xt = x.index_axis(1, t).unwrap();
            let mut xp = xt.matmul(w);
            if let Some(b) = in_bias {
                xp = xp.add(b);
            }
            let hin = rm.map_or(h, |m| h.mul(m));
            let (hn, cn) = match o.cell {
                RecurrentCell::Simple => (act(xp.add(hin.matmul(u))), c),
                RecurrentCell::Lstm => {
                    let z = xp.add(hin.matmul(u));
                    let (i, f, cc, og) = (rec(gate(z, 0)), rec(gate(z, 1)), act(gate(z, 2)), rec(gate(z, 3)));
                    let cn = f.mul(c).add(i.mul(cc));
                    (og.mul(act(cn)), cn)
                }
                RecurrentCell::Gru { reset_after } => {
                    let mut rp = hin.matmul(cols(u, 0, 2 * U));
                    if let Some(rb) = rec_bias {
                        rp = rp.add(cols(rb, 0, 2 * U));
                    }
                    let z = rec(gate(xp, 0).add(gate(rp, 0)));
                    let r = rec(gate(xp, 1).add(gate(rp, 1)));
                    let rh = if reset_after {
                        let mut rh = hin.matmul(cols(u, 2 * U, U));
                        if let Some(rb) = rec_bias {
                            rh = rh.add(cols(rb, 2 * U, U));
                        }
                        r.mul(rh)
                    } else {
                        r.mul(hin).matmul(cols(u, 2 * U, U))
                    };
                    let hh = act(gate(xp, 2).add(rh));
                    let one = tape.constant(ArrayD::ones(IxDyn(&[1])).view());
                    (z.mul(h).add(one.sub(z).mul(hh)), c)
                }
            };
            match mask {
                Some(m) => {
                    let mt = Array2::from_shape_fn((B, 1), |(b, _)| m[[b, t]]);
                    let keep = Array2::from_shape_fn((B, 1), |(b, _)| 1.0 - m[[b, t]]);
                    let (mt, keep) =
                        (tape.constant(mt.into_dyn().view()), tape.constant(keep.into_dyn().view()));
                    h = hn.mul(mt).add(h.mul(keep));
                    c = cn.mul(mt).add(c.mul(keep));
                }
                None => (h, c) = (hn, cn),
            }
            outs.push(h.reshape(&[B, 1, U]));
        }
        let mut rows = if o.return_sequences { outs } else { vec![h.reshape(&[B, 1, U])] };
        if o.return_state {
            rows.push(h.reshape(&[B, 1, U]));
            if o.cell == RecurrentCell::Lstm {
                rows.push(c.reshape(&[B, 1, U]));
            }
        }
        let out = tape.concat(&rows, 1);
        if o.return_sequences || o.return_state {
            out
        } else {
            out.reshape(&[B, U])
        }
    }

    fn cells() -> [RecurrentCell; 4] {
        [
            RecurrentCell::Simple,
            RecurrentCell::Lstm,
            RecurrentCell::Gru { reset_after: true },
            RecurrentCell::Gru { reset_after: false },
        ]
    }

    /// Every combination of direction, outputs, states and masks, for `cell`.
    fn cases(cell: RecurrentCell) -> Vec<(RecurrentOptions, bool, bool)> {
        let mut v = Vec::new();
        for bits in 0..32u32 {
            let mut o = RecurrentOptions::new(cell);
            o.go_backwards = bits & 1 != 0;
            o.return_sequences = bits & 2 != 0;
            o.return_state = bits & 4 != 0;
            let (masked, dropped) = (bits & 8 != 0, bits & 16 != 0);
            if bits == 31 {
                // Other activations, through the generic path of the kernels.
                o.activation = Unary::Softsign;
                o.recurrent_activation = Unary::Tanh;
            }
            v.push((o, masked, dropped));
        }
        v
    }

    /// Step 1 of the second sequence is padding, and steps 0 of the first.
    fn mask() -> Tensor {
        ndarray::array![[0.0f32, 1.0, 1.0], [1.0, 0.0, 1.0]].into_dyn()
    }

    fn rmask() -> Tensor {
        ndarray::array![[1.25f32, 0.0], [0.0, 1.25]].into_dyn()
    }

    fn inputs(cell: RecurrentCell) -> Vec<Tensor> {
        let w = cell.gates() * U;
        let mut v = vec![test_values(&[B, T, F], 1), test_values(&[F, w], 2), test_values(&[U, w], 3)];
        v.push(test_values(&cell.bias_shape(U), 4));
        for k in 0..cell.states() {
            v.push(test_values(&[B, U], 5 + k).mapv(|a| a * 0.5));
        }
        v
    }

    fn fused<'t>(v: &[Var<'t>], o: RecurrentOptions, masked: bool, dropped: bool) -> Var<'t> {
        let tape = v[0].tape();
        let m = masked.then(|| tape.constant(mask().view()));
        let r = dropped.then(|| tape.constant(rmask().view()));
        v[0].recurrent(v[1], v[2], Some(v[3]), &v[4..], m, r, o)
    }

    #[test]
    fn gradients_match_finite_differences() {
        for cell in cells() {
            for (o, masked, dropped) in cases(cell) {
                check_gradients(&inputs(cell), |v| fused(v, o, masked, dropped))
                    .unwrap_or_else(|e| panic!("{o:?} mask {masked} dropout {dropped}: {e}"));
            }
        }
    }

    #[test]
    fn values_and_gradients_match_the_cell_composed_from_other_ops() {
        for cell in cells() {
            for (o, masked, dropped) in cases(cell) {
                let mut params = ParamStore::new();
                let ids: Vec<_> = inputs(cell)
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| params.add(format!("p{i}"), t, true))
                    .collect();
                let run = |composed_run: bool| {
                    let tape = Tape::new(&params);
                    let v: Vec<_> = ids.iter().map(|&id| tape.param(id)).collect();
                    let out = if composed_run {
                        let (m, r) = (mask(), rmask());
                        composed(
                            v[0],
                            v[1],
                            v[2],
                            Some(v[3]),
                            &v[4..],
                            masked.then_some(&m),
                            dropped.then_some(&r),
                            o,
                        )
                    } else {
                        fused(&v, o, masked, dropped)
                    };
                    let weights = test_values(&out.shape(), 9);
                    let loss = out.mul(tape.constant(weights.view())).sum();
                    let mut grads = Gradients::new();
                    tape.backward(loss, &mut grads).unwrap();
                    let g: Vec<Tensor> = ids.iter().map(|&id| grads.get(id).unwrap().to_array()).collect();
                    (out.value(), g)
                };
                let ((want, want_g), (got, got_g)) = (run(true), run(false));
                let what = format!("{o:?} mask {masked} dropout {dropped}");
                assert_eq!(got.shape(), want.shape(), "{what}");
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{what}: {got} vs {want}");
                for (k, (a, b)) in got_g.iter().zip(&want_g).enumerate() {
                    assert!(
                        a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5),
                        "{what}: input {k}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_padded_step_carries_state_and_output() {
        let cell = RecurrentCell::Lstm;
        let mut o = RecurrentOptions::new(cell);
        o.return_sequences = true;
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let v: Vec<_> = inputs(cell).iter().map(|t| tape.constant(t.view())).collect();
        let out = fused(&v, o, true, false).value();
        // Sequence 1's step 1 is padding: its output repeats step 0's; sequence 0's step 0 outputs the
        // initial state.
        for j in 0..U {
            assert_eq!(out[[1, 1, j]], out[[1, 0, j]]);
            assert_eq!(out[[0, 0, j]], inputs(cell)[4][[0, j]]);
        }
    }
}
