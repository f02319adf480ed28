//! Concatenation along one axis (Keras' `Concatenate`, numpy's `concatenate`).
//!
//! The forward pass copies each input into its slice of the output along the axis; the backward pass hands each
//! input its slice of the output gradient. Both work on contiguous blocks: for an axis `a`, the output is
//! `outer` rows (the product of the axes before `a`) of `total · inner` values, and input `i` owns the block of
//! `len_i · inner` values at `offset_i · inner` in every row.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::{Tape, Var};
use crate::device::Storage;

/// The recorded node: inputs in order, and where each one's block starts along the axis of the output (its
/// length is the input's). [`Tape::stack`] records it too, input `i` at index `i` of the new axis.
pub(super) struct Concat {
    inputs: Vec<usize>,
    axis: usize,
    starts: Vec<usize>,
}

impl<'t> Tape<'t> {
    /// Records the joining of the values `ids` into an output of `shape`, value `k`'s block at `starts[k]`
    /// along `axis` (the caller checked the shapes).
    pub(super) fn join_blocks(
        &'t self,
        ids: Vec<usize>,
        axis: usize,
        starts: Vec<usize>,
        shape: &[usize],
    ) -> Var<'t> {
        let (forward_ids, forward_starts) = (ids.clone(), starts.clone());
        self.push(Concat { inputs: ids, axis, starts }, shape, move |v, out, _| {
            for (&id, &start) in forward_ids.iter().zip(&forward_starts) {
                v.get(id).write_block(axis, start, out, false);
            }
        })
    }
}

impl<'t> Tape<'t> {
    /// Joins `inputs` along `axis`: numpy's `concatenate`, Keras' `Concatenate` layer. Every other axis must
    /// have the same length in every input; the output's `axis` is the sum of theirs. The same value may appear
    /// more than once (its gradient is then the sum of its slices').
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let a = tape.constant(array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn().view());
    /// let b = tape.constant(array![[5.0f32], [6.0]].into_dyn().view());
    /// let y = tape.concat(&[a, b], 1);
    /// assert_eq!(y.value(), array![[1.0f32, 2.0, 5.0], [3.0, 4.0, 6.0]].into_dyn());
    /// ```
    ///
    /// # Panics
    /// If `inputs` is empty, a value belongs to another tape, the inputs' ranks differ, `axis` is not one of
    /// their axes, or another axis differs in length; layers check shapes when they are built.
    pub fn concat(&'t self, inputs: &[Var<'t>], axis: usize) -> Var<'t> {
        assert!(!inputs.is_empty(), "concat: needs at least one value");
        assert!(
            inputs.iter().all(|v| std::ptr::eq(v.tape, self)),
            "concat: every value must belong to this tape"
        );
        let shapes: Vec<Vec<usize>> = inputs.iter().map(Var::shape).collect();
        let first = &shapes[0];
        assert!(axis < first.len(), "concat: axis {axis} out of range for values of shape {first:?}");
        let same_elsewhere = |s: &Vec<usize>| {
            s.len() == first.len() && s.iter().zip(first).enumerate().all(|(i, (a, b))| i == axis || a == b)
        };
        assert!(
            shapes.iter().all(same_elsewhere),
            "concat: shapes {shapes:?} differ on an axis other than {axis} (or in rank)"
        );
        let mut starts = Vec::with_capacity(shapes.len());
        let mut total = 0;
        for s in &shapes {
            starts.push(total);
            total += s[axis];
        }
        let mut shape = first.clone();
        shape[axis] = total;
        self.join_blocks(inputs.iter().map(|v| v.id).collect(), axis, starts, &shape)
    }
}

impl Kernel for Concat {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        for (&id, &start) in self.inputs.iter().zip(&self.starts) {
            let x = ctx.value(id);
            // A value given twice comes here twice: written the first time, added to the second.
            let Some((d, fresh)) = ctx.grad(id, x.shape()) else { continue };
            g.read_block(self.axis, start, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::test_values as values;
    use crate::autodiff::{check_gradients, Gradients, ParamStore, Tensor};
    use ndarray::{array, ArrayD, Axis, IxDyn, Slice};

    /// numpy's `concatenate`, from ndarray.
    fn reference(xs: &[Tensor], axis: usize) -> Tensor {
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        ndarray::concatenate(Axis(axis), &views).unwrap()
    }

    /// Shapes of the inputs and the axis.
    fn cases() -> Vec<(Vec<Vec<usize>>, usize)> {
        vec![
            (vec![vec![2, 3], vec![4, 3]], 0),
            (vec![vec![2, 3], vec![2, 1]], 1),
            (vec![vec![5], vec![2]], 0),                            // 1-D
            (vec![vec![2, 3, 4], vec![2, 2, 4]], 1),                // 3-D, a middle axis
            (vec![vec![2, 3, 4], vec![2, 3, 1], vec![2, 3, 2]], 2), // 3 inputs, the last axis
            (vec![vec![1, 3, 2], vec![3, 3, 2], vec![2, 3, 2]], 0), // 3 inputs, the first axis
            (vec![vec![2, 0, 3], vec![2, 2, 3]], 1),                // an empty input
        ]
    }

    #[test]
    fn forward_matches_ndarray_concatenate() {
        for (shapes, axis) in cases() {
            let xs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| values(s, i)).collect();
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let vars: Vec<_> = xs.iter().map(|x| tape.constant(x.view())).collect();
            assert_eq!(tape.concat(&vars, axis).value(), reference(&xs, axis), "{shapes:?} on {axis}");
        }
    }

    #[test]
    fn a_parameter_in_another_memory_order_is_copied_right() {
        let mut params = ParamStore::new();
        let t = values(&[3, 2], 0).reversed_axes(); // (2, 3), column-major
        let p = params.add("p", t.clone(), true);
        let tape = Tape::new(&params);
        let c = tape.constant(values(&[2, 1], 1).view());
        let y = tape.concat(&[tape.param(p), c], 1);
        assert_eq!(y.value(), reference(&[t.clone(), values(&[2, 1], 1)], 1));
        // And its gradient comes back in its own shape, the right elements.
        let w = tape.constant(values(&[2, 4], 2).view());
        let mut grads = Gradients::new();
        tape.backward(y.mul(w).sum(), &mut grads).unwrap();
        assert_eq!(grads.get(p).unwrap(), &values(&[2, 4], 2).slice_axis(Axis(1), Slice::from(0..3)));
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (shapes, axis) in cases() {
            let xs: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| values(s, i)).collect();
            check_gradients(&xs, |v| v[0].tape().concat(v, axis))
                .unwrap_or_else(|e| panic!("{shapes:?} on {axis}: {e}"));
            // Adding onto a gradient already set: the later use of the first input runs backward first.
            check_gradients(&xs, |v| {
                let y = v[0].tape().concat(v, axis).square().sum();
                y.add(v[0].mul_scalar(3.0).sum())
            })
            .unwrap_or_else(|e| panic!("{shapes:?} on {axis}, after another use: {e}"));
        }
    }

    #[test]
    fn a_repeated_input_gets_the_sum_of_its_slices() {
        let a = values(&[2, 3], 0);
        check_gradients(std::slice::from_ref(&a), |v| v[0].tape().concat(&[v[0], v[0]], 1)).unwrap();
        check_gradients(&[a.clone(), values(&[2, 1], 1)], |v| {
            v[0].tape().concat(&[v[0], v[1], v[0]], 1).square()
        })
        .unwrap();
        // concat([a, a]).sum(): every element of a counts twice.
        let mut params = ParamStore::new();
        let p = params.add("a", a, true);
        let tape = Tape::new(&params);
        let x = tape.param(p);
        let mut grads = Gradients::new();
        tape.backward(tape.concat(&[x, x], 0).sum(), &mut grads).unwrap();
        assert_eq!(grads.get(p).unwrap(), &ArrayD::from_elem(IxDyn(&[2, 3]), 2.0));
    }

    #[test]
    fn nan_and_inf_propagate_to_their_place() {
        let a = array![[1.0f32, f32::NAN], [f32::INFINITY, 2.0]].into_dyn();
        let b = array![[f32::NEG_INFINITY], [3.0]].into_dyn();
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let y = tape.concat(&[tape.constant(a.view()), tape.constant(b.view())], 1).value();
        assert!(y[[0, 1]].is_nan());
        assert_eq!((y[[1, 0]], y[[0, 2]]), (f32::INFINITY, f32::NEG_INFINITY));
        assert_eq!((y[[0, 0]], y[[1, 1]], y[[1, 2]]), (1.0, 2.0, 3.0));
    }

    #[test]
    fn bad_shapes_panic_with_the_shapes() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let a = tape.constant(values(&[2, 3], 0).view());
        let b = tape.constant(values(&[3, 3], 1).view());
        let c = tape.constant(values(&[2, 3, 1], 2).view());
        let message = |f: &dyn Fn()| {
            let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
            // A formatted message is a String, a literal one a &str.
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        };
        let m = message(&|| {
            tape.concat(&[a, b], 1);
        });
        assert!(m.contains("[2, 3]") && m.contains("[3, 3]"), "{m}");
        assert!(message(&|| {
            tape.concat(&[a, c], 0);
        })
        .contains("rank"));
        assert!(message(&|| {
            tape.concat(&[a, a], 2);
        })
        .contains("axis 2"));
        assert!(message(&|| {
            tape.concat(&[], 0);
        })
        .contains("at least one"));
    }
}
