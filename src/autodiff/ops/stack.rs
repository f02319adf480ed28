//! Stacking along a new axis (numpy's `stack`, Keras' `ops.stack`): the inputs, all of one shape, become the
//! steps of a new axis.
//!
//! It is concatenation of the inputs each seen with a new axis of length 1, and uses concatenation's kernels:
//! input `i` is the block at `i` along the new axis; the backward pass hands each input its block of the output
//! gradient.
use crate::autodiff::{Tape, Var};
use crate::{Error, Result};

impl<'t> Tape<'t> {
    /// Joins `inputs`, all of one shape, along a new axis at position `axis` (`0..=` their rank): numpy's
    /// `stack`, Keras' `ops.stack`. The output's shape is theirs with the number of inputs inserted at `axis`.
    /// The same value may appear more than once (its gradient is then the sum of its parts'). The inverse is
    /// [`Var::unstack`].
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let a = tape.constant(array![1.0f32, 2.0].into_dyn().view());
    /// let b = tape.constant(array![3.0f32, 4.0].into_dyn().view());
    /// assert_eq!(tape.stack(&[a, b], 0)?.value(), array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
    /// assert_eq!(tape.stack(&[a, b], 1)?.value(), array![[1.0f32, 3.0], [2.0, 4.0]].into_dyn());
    /// let c = tape.constant(array![5.0f32].into_dyn().view());
    /// assert!(tape.stack(&[a, c], 0).is_err()); // shapes differ
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `inputs` is empty, a value belongs to another tape, or `axis` is past
    /// their rank; [`Error::Shape`] if their shapes differ.
    pub fn stack(&'t self, inputs: &[Var<'t>], axis: usize) -> Result<Var<'t>> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid_argument("inputs", "[]", "at least one value to stack"));
        };
        if let Some(i) = inputs.iter().position(|v| !std::ptr::eq(v.tape, self)) {
            return Err(Error::invalid_argument(
                "inputs",
                format!("a list whose value {i} belongs to another tape"),
                "values recorded on the tape that stacks them",
            ));
        }
        let part = first.shape();
        if axis > part.len() {
            return Err(Error::invalid_argument(
                "axis",
                axis,
                format!(
                    "a place in 0..={} for the new axis among the axes of values of shape {part:?}",
                    part.len()
                ),
            ));
        }
        if let Some((i, other)) = inputs.iter().map(Var::shape).enumerate().find(|(_, s)| *s != part) {
            return Err(Error::shape(
                "stack",
                format!("every value of the shape of the first, {part:?}"),
                format!("shape {other:?} for value {i}"),
            ));
        }
        let mut shape = part;
        shape.insert(axis, inputs.len());
        let ids = inputs.iter().map(|v| v.id).collect();
        Ok(self.join_blocks(ids, axis, (0..inputs.len()).collect(), &shape))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, Axis, IxDyn};

    use crate::autodiff::test_values as values;
    use crate::autodiff::{check_gradients, Gradients, ParamStore, Tape, Tensor};

    /// numpy's `stack`, from ndarray.
    fn reference(xs: &[Tensor], axis: usize) -> Tensor {
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        ndarray::stack(Axis(axis), &views).unwrap()
    }

    /// The parts' shape, how many, and the new axis.
    fn cases() -> Vec<(Vec<usize>, usize, usize)> {
        vec![
            (vec![], 3, 0), // scalars into a vector
            (vec![4], 2, 0),
            (vec![4], 3, 1),
            (vec![2, 3], 3, 0),
            (vec![2, 3], 2, 1),
            (vec![2, 3], 4, 2), // after the last axis
            (vec![2, 3, 2], 1, 1),
            (vec![2, 0, 3], 2, 1), // empty parts
        ]
    }

    #[test]
    fn forward_matches_ndarray_stack() {
        for (shape, n, axis) in cases() {
            let xs: Vec<Tensor> = (0..n).map(|i| values(&shape, i)).collect();
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let vars: Vec<_> = xs.iter().map(|x| tape.constant(x.view())).collect();
            assert_eq!(
                tape.stack(&vars, axis).unwrap().value(),
                reference(&xs, axis),
                "{shape:?} x{n} on {axis}"
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (shape, n, axis) in cases() {
            let xs: Vec<Tensor> = (0..n).map(|i| values(&shape, i)).collect();
            check_gradients(&xs, |v| v[0].tape().stack(v, axis).unwrap())
                .unwrap_or_else(|e| panic!("{shape:?} x{n} on {axis}: {e}"));
            // Adding onto a gradient already set: the later use of the first input runs backward first.
            check_gradients(&xs, |v| {
                let y = v[0].tape().stack(v, axis).unwrap().square().sum();
                y.add(v[0].mul_scalar(3.0).sum())
            })
            .unwrap_or_else(|e| panic!("{shape:?} x{n} on {axis}, after another use: {e}"));
        }
    }

    #[test]
    fn a_repeated_input_gets_the_sum_of_its_parts() {
        let a = values(&[2, 3], 0);
        check_gradients(&[a.clone(), values(&[2, 3], 1)], |v| {
            v[0].tape().stack(&[v[0], v[1], v[0]], 1).unwrap().square()
        })
        .unwrap();
        let mut params = ParamStore::new();
        let p = params.add("a", a, true);
        let tape = Tape::new(&params);
        let x = tape.param(p);
        let mut grads = Gradients::new();
        tape.backward(tape.stack(&[x, x, x], 0).unwrap().sum(), &mut grads).unwrap();
        assert_eq!(grads.get(p).unwrap(), &ArrayD::from_elem(IxDyn(&[2, 3]), 3.0f32));
    }

    #[test]
    fn a_parameter_in_another_memory_order_is_stacked_right() {
        let mut params = ParamStore::new();
        let t = values(&[3, 2], 0).reversed_axes(); // (2, 3), column-major
        let p = params.add("p", t.clone(), true);
        let tape = Tape::new(&params);
        let c = values(&[2, 3], 1);
        let y = tape.stack(&[tape.constant(c.view()), tape.param(p)], 2).unwrap();
        assert_eq!(y.value(), reference(&[c, t], 2));
    }

    #[test]
    fn bad_inputs_are_errors_naming_them() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let a = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])).view());
        let b = tape.constant(ArrayD::zeros(IxDyn(&[3, 2])).view());
        let e = tape.stack(&[], 0).unwrap_err().to_string();
        assert!(e.contains("inputs=[]") && e.contains("at least one"), "{e}");
        let e = tape.stack(&[a, a, b], 0).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("shape [3, 2] for value 2"), "{e}");
        let e = tape.stack(&[a, a], 3).unwrap_err().to_string();
        assert!(e.contains("axis=3") && e.contains("0..=2") && e.contains("[2, 3]"), "{e}");
        let other_params = ParamStore::new();
        let other = Tape::new(&other_params);
        let c = other.constant(ArrayD::zeros(IxDyn(&[2, 3])).view());
        let e = tape.stack(&[a, c], 0).unwrap_err().to_string();
        assert!(e.contains("value 1 belongs to another tape"), "{e}");
        assert_eq!(tape.len(), 2);
    }
}
