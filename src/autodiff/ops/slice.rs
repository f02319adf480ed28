//! A contiguous range along one axis (numpy's `x[:, 2:5]`, ndarray's `slice_axis`), one index along an axis
//! with that axis dropped (`x[:, 3]`, ndarray's `index_axis`), and every index in turn (`unstack`).
//!
//! The forward pass reads the range's block out of each row of the input (the kernel concatenation's backward
//! uses); the backward pass writes the output gradient into that block of a zero gradient (the kernel
//! concatenation's forward uses), or adds it there when the input already has a gradient.
use std::ops::{Bound, RangeBounds};

use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;
use crate::{Error, Result};

/// The recorded slice: its input, and where its block starts along the axis.
struct Slice {
    input: [usize; 1],
    axis: usize,
    start: usize,
}

/// `axis` as an axis of `shape`, or the error naming both.
pub(super) fn check_axis(op: &str, axis: usize, shape: &[usize]) -> Result<()> {
    if axis < shape.len() {
        Ok(())
    } else {
        let reason = match shape.len() {
            0 => format!("{op} needs a value with at least one axis; received a scalar"),
            rank => format!("an axis in 0..{rank} for {op} of a value of shape {shape:?}"),
        };
        Err(Error::invalid_argument("axis", axis, reason))
    }
}

impl<'t> Var<'t> {
    /// The elements whose index along `axis` lies in `range`: the value's shape with `axis` shortened to the
    /// range's length (numpy's `x[:, 2:5]` for `axis` 1 and `2..5`). An empty range gives an empty axis.
    ///
    /// The gradient is the output's gradient in that range of the input's shape, zero elsewhere.
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn().view());
    /// assert_eq!(x.slice_axis(1, 1..3)?.value(), array![[2.0f32, 3.0], [5.0, 6.0]].into_dyn());
    /// assert_eq!(x.slice_axis(0, 1..)?.value(), array![[4.0f32, 5.0, 6.0]].into_dyn());
    /// assert!(x.slice_axis(1, 2..4).is_err()); // past the end of an axis of length 3
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `axis` is not an axis of the value, or the range does not lie within it
    /// (its end past the axis' length, or its start after its end).
    pub fn slice_axis(self, axis: usize, range: impl RangeBounds<usize>) -> Result<Var<'t>> {
        let shape = self.shape();
        check_axis("slice_axis", axis, &shape)?;
        let len = shape[axis];
        let start = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => s.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => Some(len),
        };
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) if s <= e && e <= len => (s, e),
            _ => {
                let show = |b: Bound<&usize>| match b {
                    Bound::Included(v) | Bound::Excluded(v) => v.to_string(),
                    Bound::Unbounded => String::new(),
                };
                let inclusive = if matches!(range.end_bound(), Bound::Included(_)) { "=" } else { "" };
                let text = format!("{}..{inclusive}{}", show(range.start_bound()), show(range.end_bound()));
                return Err(Error::invalid_argument(
                    "range",
                    text,
                    format!(
                        "a range within 0..{len}, the length of axis {axis} of a value of shape {shape:?}"
                    ),
                ));
            }
        };
        let mut out = shape;
        out[axis] = end - start;
        Ok(self.slice_node(axis, start, &out))
    }

    /// The elements at `index` along `axis`, that axis dropped: numpy's `x[:, 3]` for `axis` 1 and `index` 3,
    /// ndarray's `index_axis`. The gradient is the output's gradient at that index, zero elsewhere.
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn().view());
    /// assert_eq!(x.index_axis(1, 2)?.value(), array![3.0f32, 6.0].into_dyn());
    /// assert!(x.index_axis(0, 2).is_err()); // axis 0 has length 2
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `axis` is not an axis of the value or `index` is not below its length.
    pub fn index_axis(self, axis: usize, index: usize) -> Result<Var<'t>> {
        let mut shape = self.shape();
        check_axis("index_axis", axis, &shape)?;
        if index >= shape[axis] {
            return Err(Error::invalid_argument(
                "index",
                index,
                format!(
                    "an index in 0..{}, the length of axis {axis} of a value of shape {shape:?}",
                    shape[axis]
                ),
            ));
        }
        shape.remove(axis);
        Ok(self.slice_node(axis, index, &shape))
    }

    /// The values at each index along `axis`, in order, that axis dropped: the inverse of
    /// [`Tape::stack`](crate::autodiff::Tape::stack) (numpy's `list(np.moveaxis(x, axis, 0))`, Keras'
    /// `ops.unstack`).
    ///
    /// ```
    /// use kerust::autodiff::{ParamStore, Tape};
    /// use ndarray::array;
    ///
    /// let params = ParamStore::new();
    /// let tape = Tape::new(&params);
    /// let x = tape.constant(array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]].into_dyn().view());
    /// let columns = x.unstack(1)?;
    /// assert_eq!(columns.len(), 2);
    /// assert_eq!(columns[1].value(), array![2.0f32, 4.0, 6.0].into_dyn());
    /// assert_eq!(tape.stack(&columns, 1)?.value(), x.value());
    /// # Ok::<(), kerust::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `axis` is not an axis of the value.
    pub fn unstack(self, axis: usize) -> Result<Vec<Var<'t>>> {
        let shape = self.shape();
        check_axis("unstack", axis, &shape)?;
        (0..shape[axis]).map(|i| self.index_axis(axis, i)).collect()
    }

    /// Records the block of `self` starting at `start` along `axis`, of `shape` (the input's with the axis
    /// shortened, or dropped for one index: the kernel goes by the element count).
    fn slice_node(self, axis: usize, start: usize, shape: &[usize]) -> Var<'t> {
        self.tape.push(Slice { input: [self.id], axis, start }, shape, |v, out, _| {
            v.get(self.id).read_block(axis, start, out, false)
        })
    }
}

impl Kernel for Slice {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let x = ctx.value(self.input[0]);
        let Some((d, fresh)) = ctx.grad(self.input[0], x.shape()) else { return };
        if fresh {
            // Outside the block the gradient is zero; the stale buffer is cleared first.
            d.fill(0.0);
        }
        g.write_block(self.axis, self.start, d, !fresh);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, Axis, IxDyn};

    use crate::autodiff::test_values as values;
    use crate::autodiff::{check_gradients, Gradients, ParamStore, Tape};
    use crate::Error;

    /// Shapes, axes and ranges.
    fn cases() -> Vec<(Vec<usize>, usize, std::ops::Range<usize>)> {
        vec![
            (vec![5], 0, 1..4),
            (vec![4, 3], 0, 0..2),
            (vec![4, 3], 1, 2..3),
            (vec![2, 5, 3], 1, 1..4),
            (vec![2, 5, 3], 2, 0..3), // the whole axis
            (vec![3, 2, 4], 0, 2..3),
            (vec![2, 4, 3], 1, 2..2), // empty
        ]
    }

    #[test]
    fn forward_matches_ndarray_slice_axis_and_index_axis() {
        for (shape, axis, range) in cases() {
            let x = values(&shape, 1);
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let v = tape.constant(x.view());
            let expected = x.slice_axis(Axis(axis), ndarray::Slice::from(range.clone())).to_owned();
            assert_eq!(
                v.slice_axis(axis, range.clone()).unwrap().value(),
                expected,
                "{shape:?} {axis} {range:?}"
            );
            for i in 0..shape[axis] {
                assert_eq!(v.index_axis(axis, i).unwrap().value(), x.index_axis(Axis(axis), i));
            }
        }
    }

    #[test]
    fn every_form_of_range_is_read() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let x = tape.constant(values(&[3, 6], 0).view());
        let cols = |r: std::ops::Range<usize>| x.slice_axis(1, r).unwrap().value();
        assert_eq!(x.slice_axis(1, ..).unwrap().value(), cols(0..6));
        assert_eq!(x.slice_axis(1, 2..).unwrap().value(), cols(2..6));
        assert_eq!(x.slice_axis(1, ..4).unwrap().value(), cols(0..4));
        assert_eq!(x.slice_axis(1, 1..=3).unwrap().value(), cols(1..4));
        assert_eq!(x.slice_axis(1, ..=5).unwrap().value(), cols(0..6));
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (shape, axis, range) in cases() {
            let x = values(&shape, 2);
            check_gradients(std::slice::from_ref(&x), |v| v[0].slice_axis(axis, range.clone()).unwrap())
                .unwrap_or_else(|e| panic!("{shape:?} {axis} {range:?}: {e}"));
            // Added onto a gradient already set (the later use runs backward first), and two slices of one value.
            check_gradients(std::slice::from_ref(&x), |v| {
                let a = v[0].slice_axis(axis, range.clone()).unwrap().square().sum();
                let b = v[0].index_axis(axis, shape[axis] - 1).unwrap().tanh().sum();
                a.add(b).add(v[0].mul_scalar(0.5).sum())
            })
            .unwrap_or_else(|e| panic!("{shape:?} {axis} {range:?}, after another use: {e}"));
        }
    }

    #[test]
    fn the_gradient_outside_the_range_is_zero_after_a_stale_step() {
        let mut params = ParamStore::new();
        let p = params.add("p", values(&[2, 4], 0), true);
        let mut grads = Gradients::new();
        // A first step leaves the whole gradient buffer non-zero.
        let tape = Tape::new(&params);
        tape.backward(tape.param(p).mul_scalar(5.0).sum(), &mut grads).unwrap();
        let tape = Tape::with_workspace(&params, tape.into_workspace());
        tape.backward(tape.param(p).slice_axis(1, 1..3).unwrap().sum(), &mut grads).unwrap();
        let expected = ndarray::array![[0.0f32, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]].into_dyn();
        assert_eq!(grads.get(p).unwrap(), &expected);
    }

    #[test]
    fn a_parameter_in_another_memory_order_is_sliced_right() {
        let mut params = ParamStore::new();
        let t = values(&[4, 3], 0).reversed_axes(); // (3, 4), column-major
        let p = params.add("p", t.clone(), true);
        let tape = Tape::new(&params);
        assert_eq!(tape.param(p).slice_axis(1, 1..3).unwrap().value(), t.slice_axis(Axis(1), (1..3).into()));
        assert_eq!(tape.param(p).index_axis(0, 2).unwrap().value(), t.index_axis(Axis(0), 2));
    }

    #[test]
    fn unstack_then_stack_gives_the_value_back_and_its_gradient() {
        for (shape, axis) in [(vec![3, 4], 0), (vec![3, 4], 1), (vec![2, 3, 2], 1), (vec![2, 3, 2], 2)] {
            let x = values(&shape, 3);
            let params = ParamStore::new();
            let tape = Tape::new(&params);
            let parts = tape.constant(x.view()).unstack(axis).unwrap();
            assert_eq!(parts.len(), shape[axis]);
            assert_eq!(tape.stack(&parts, axis).unwrap().value(), x);
            check_gradients(std::slice::from_ref(&x), |v| {
                let parts = v[0].unstack(axis).unwrap();
                // Reordered, so that each part's gradient lands somewhere else than it came from.
                let mut parts: Vec<_> = parts.into_iter().rev().collect();
                parts[0] = parts[0].square();
                v[0].tape().stack(&parts, axis).unwrap()
            })
            .unwrap_or_else(|e| panic!("{shape:?} {axis}: {e}"));
        }
    }

    #[test]
    fn bad_axes_and_ranges_are_errors_naming_them() {
        let params = ParamStore::new();
        let tape = Tape::new(&params);
        let x = tape.constant(ArrayD::zeros(IxDyn(&[2, 3])).view());
        let message = |e: Error| e.to_string();
        let e = message(x.slice_axis(2, 0..1).unwrap_err());
        assert!(e.contains("axis=2") && e.contains("0..2") && e.contains("[2, 3]"), "{e}");
        let e = message(x.slice_axis(1, 2..4).unwrap_err());
        assert!(e.contains("range=2..4") && e.contains("0..3") && e.contains("axis 1"), "{e}");
        #[allow(clippy::reversed_empty_ranges)] // the error under test
        let e = message(x.slice_axis(1, 2..1).unwrap_err());
        assert!(e.contains("range=2..1"), "{e}");
        let e = message(x.slice_axis(0, ..=2).unwrap_err());
        assert!(e.contains("range=..=2") && e.contains("0..2"), "{e}");
        let e = message(x.index_axis(1, 3).unwrap_err());
        assert!(e.contains("index=3") && e.contains("0..3"), "{e}");
        let e = message(x.index_axis(5, 0).unwrap_err());
        assert!(e.contains("axis=5"), "{e}");
        let e = message(x.unstack(2).unwrap_err());
        assert!(e.contains("axis=2") && e.contains("unstack"), "{e}");
        let s = tape.constant(ArrayD::zeros(IxDyn(&[])).view());
        let e = message(s.slice_axis(0, ..).unwrap_err());
        assert!(e.contains("scalar"), "{e}");
        // Nothing was recorded for a refused op: the tape holds the two constants only.
        assert_eq!(tape.len(), 2);
    }
}
