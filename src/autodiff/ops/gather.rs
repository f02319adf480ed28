//! Row lookup (an embedding): rows of a `(rows, width)` table by indices of any shape, on the device's
//! gather kernels ([`crate::device::GatherKernels`]).
//!
//! Backward: each position's output gradient is added into the row of the table it was read from (rows used
//! several times add up). The table's gradient is one dense buffer, reused from step to step: on the first
//! contribution of a pass it is zeroed once and then only the rows used are written.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::{IndexFault, Storage};

/// The recorded node: inputs `[table, indices]`.
struct Gather {
    inputs: [usize; 2],
}

impl<'t> Var<'t> {
    /// The rows of `self`, a `(rows, width)` table, named by `indices` (of any shape): a value of shape
    /// `(indices' shape..., width)`. The gradient flows to the table only.
    ///
    /// Indices are `f32` holding whole numbers, which `f32` represents exactly below 2^24 (16,777,216): a larger
    /// integer converted to `f32` may round to a neighbouring row. An index that is negative, not a whole
    /// number, or not below `rows` is not read: its row of the output is zero and the first such index comes
    /// back as an [`IndexFault`] (with how many there were), for the caller to report.
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let mut params = ParamStore::new();
    /// let table = params.add("table", array![[0.0f32, 0.5], [1.0, 1.5], [2.0, 2.5]].into_dyn(), true);
    /// let tape = Tape::new(&params);
    /// let ids = tape.constant(array![[2.0f32, 0.0, 2.0]].into_dyn().view());
    /// let (rows, fault) = tape.param(table).gather(ids);
    /// assert!(fault.is_none());
    /// assert_eq!(rows.value(), array![[[2.0f32, 2.5], [0.0, 0.5], [2.0, 2.5]]].into_dyn());
    ///
    /// let bad = tape.constant(array![1.0f32, 3.0, -1.0].into_dyn().view());
    /// let (_, fault) = tape.param(table).gather(bad);
    /// let fault = fault.unwrap();
    /// assert_eq!((fault.position, fault.index, fault.count), (1, 3.0, 2));
    /// ```
    ///
    /// # Panics
    /// If `self` is not 2-D.
    pub fn gather(self, indices: Var<'t>) -> (Var<'t>, Option<IndexFault>) {
        let table = self.shape();
        let &[_, width] = table.as_slice() else {
            panic!("gather: the table must be (rows, width); received shape {table:?}")
        };
        let mut shape = indices.shape();
        shape.push(width);
        let mut fault = None;
        let y = self.tape.push(Gather { inputs: [self.id, indices.id] }, &shape, |v, out, _| {
            fault = v.get(self.id).gather_rows(v.get(indices.id), out);
        });
        (y, fault)
    }
}

impl Kernel for Gather {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [table, indices] = self.inputs;
        let (tv, iv) = (ctx.value(table), ctx.value(indices));
        // Indices are positions, not values: they get no gradient.
        if let Some((d, fresh)) = ctx.grad(table, tv.shape()) {
            g.scatter_add_rows(iv, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{array, ArrayD, IxDyn};

    use crate::autodiff::{check_gradients, test_values as values, Gradients, ParamStore, Tape};

    #[test]
    fn gradients_of_the_table_match_finite_differences() {
        let idx = array![[3.0f32, 0.0, 3.0], [1.0, 3.0, 4.0]].into_dyn();
        check_gradients(&[values(&[5, 3], 1)], |v| v[0].gather(v[0].tape().constant(idx.view())).0).unwrap();
        // A second use of the table adds onto the gradient the lookup wrote, and a second lookup onto it.
        check_gradients(&[values(&[5, 3], 2)], |v| {
            let ids = v[0].tape().constant(idx.view());
            v[0].gather(ids).0.sum().add(v[0].square().sum()).add(v[0].gather(ids).0.tanh().sum())
        })
        .unwrap();
    }

    #[test]
    fn repeated_rows_add_up_and_unused_rows_are_zero_after_a_stale_step() {
        let mut params = ParamStore::new();
        let table = params.add("t", ArrayD::zeros(IxDyn(&[4, 2])), true);
        let mut grads = Gradients::new();
        // A first step leaves row 3's gradient non-zero in the reused buffer.
        let tape = Tape::new(&params);
        let ids = tape.constant(array![3.0f32].into_dyn().view());
        tape.backward(tape.param(table).gather(ids).0.sum(), &mut grads).unwrap();
        let ws = tape.into_workspace();
        let tape = Tape::with_workspace(&params, ws);
        let ids = tape.constant(array![[1.0f32, 0.0], [1.0, 1.0]].into_dyn().view());
        let w =
            tape.constant(array![[[1.0f32, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]].into_dyn().view());
        let loss = tape.param(table).gather(ids).0.mul(w).sum();
        tape.backward(loss, &mut grads).unwrap();
        let expected = array![[3.0f32, 4.0], [13.0, 16.0], [0.0, 0.0], [0.0, 0.0]].into_dyn();
        assert_eq!(grads.get(table).unwrap(), &expected);
    }

    #[test]
    fn bad_indices_are_reported_not_read() {
        let params = ParamStore::new();
        let tape = Tape::inference(&params, Default::default());
        let table = tape.constant(array![[1.0f32], [2.0]].into_dyn().view());
        for (ids, position, index, count) in [
            (vec![0.0f32, 2.0, 1.0], 1, 2.0, 1),
            (vec![-1.0, 0.0, 1.5], 0, -1.0, 2),
            (vec![1.0, 1.0, f32::NAN], 2, f32::NAN, 1),
            (vec![f32::INFINITY, 0.0, 0.0], 0, f32::INFINITY, 1),
        ] {
            let ids = tape.constant(ndarray::Array1::from(ids).into_dyn().view());
            let (y, fault) = table.gather(ids);
            let fault = fault.expect("a bad index");
            assert_eq!((fault.position, fault.count), (position, count));
            assert!(fault.index == index || (index.is_nan() && fault.index.is_nan()));
            // The bad rows are zero, not some other row.
            y.with_value(|v| assert_eq!(v[[fault.position, 0]], 0.0));
        }
    }

    #[test]
    fn a_lookup_is_the_same_for_any_thread_count() {
        let params = ParamStore::new();
        let table = values(&[50, 7], 3);
        let ids = ArrayD::from_shape_fn(IxDyn(&[200, 200]), |i| ((i[0] * 31 + i[1] * 7) % 50) as f32);
        let runs = crate::threads::at_thread_counts(|| {
            let tape = Tape::inference(&params, Default::default());
            let (y, _) = tape.constant(table.view()).gather(tape.constant(ids.view()));
            y.value()
        });
        assert!(runs.iter().all(|r| *r == runs[0]));
        assert_eq!(runs[0].shape(), &[200, 200, 7]);
        assert!(runs[0].len() >= crate::threads::PARALLEL_MIN_ELEMENTS);
        assert_eq!(runs[0][[2, 5, 3]], table[[(2 * 31 + 5 * 7) % 50, 3]]);
    }
}
