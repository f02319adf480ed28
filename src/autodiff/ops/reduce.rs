//! Sums and means over a set of axes (numpy's `sum` and `mean`, with or without `keepdims`).
//!
//! Backward: every input element receives the gradient of the output element it was summed into (divided by
//! the count, for a mean), broadcast back over the reduced axes.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// A set of axes to reduce over: a bit mask for values of up to 64 dimensions (every model's, in practice:
/// no allocation), one flag per axis beyond that, so that any rank ndarray holds reduces correctly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AxisSet {
    /// Axis `i` is reduced if bit `i` is set; for `ndim <= 64`.
    Bits(u64),
    /// Axis `i` is reduced if flag `i` is set; for `ndim > 64`.
    Flags(Box<[bool]>),
}

impl AxisSet {
    fn new(axes: &[usize], ndim: usize) -> Self {
        for &ax in axes {
            assert!(ax < ndim, "axis {ax} is out of range for a value with {ndim} dimensions");
        }
        if ndim <= 64 {
            AxisSet::Bits(axes.iter().fold(0, |mask, &ax| mask | 1 << ax))
        } else {
            let mut flags = vec![false; ndim];
            axes.iter().for_each(|&ax| flags[ax] = true);
            AxisSet::Flags(flags.into())
        }
    }

    fn all(ndim: usize) -> Self {
        match ndim {
            64 => AxisSet::Bits(u64::MAX),
            0..64 => AxisSet::Bits((1 << ndim) - 1),
            _ => AxisSet::Flags(vec![true; ndim].into()),
        }
    }

    fn contains(&self, ax: usize) -> bool {
        match self {
            AxisSet::Bits(mask) => ax < 64 && mask & (1 << ax) != 0,
            AxisSet::Flags(flags) => flags.get(ax).copied().unwrap_or(false),
        }
    }

    /// The input shape with reduced axes set to 1.
    pub(crate) fn kept_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().enumerate().map(|(ax, &n)| if self.contains(ax) { 1 } else { n }).collect()
    }

    /// How many elements each output element sums.
    pub(crate) fn count(&self, shape: &[usize]) -> usize {
        shape.iter().enumerate().filter(|&(ax, _)| self.contains(ax)).map(|(_, &n)| n).product()
    }

    fn output_shape(&self, shape: &[usize], keepdims: bool) -> Vec<usize> {
        if keepdims {
            self.kept_shape(shape)
        } else {
            shape.iter().enumerate().filter(|&(ax, _)| !self.contains(ax)).map(|(_, &n)| n).collect()
        }
    }
}

/// The recorded node: a sum (`mean: false`) or a mean over `axes` of its input.
struct Reduce {
    input: [usize; 1],
    axes: AxisSet,
    mean: bool,
}

impl<'t> Var<'t> {
    fn reduce(self, axes: AxisSet, keepdims: bool, mean: bool) -> Var<'t> {
        let in_shape = self.shape();
        let shape = axes.output_shape(&in_shape, keepdims);
        let scale = if mean { 1.0 / axes.count(&in_shape).max(1) as f32 } else { 1.0 };
        // Descending, as the kernel takes them; every axis is the kernel's sum of all elements.
        let reduced: Vec<usize> = (0..in_shape.len()).rev().filter(|&ax| axes.contains(ax)).collect();
        self.tape.push(Reduce { input: [self.id], axes, mean }, &shape, |v, out, _| {
            v.get(self.id).sum_axes(&reduced, scale, out)
        })
    }

    /// Sum of all elements (a scalar of shape `[]`).
    pub fn sum(self) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::all(n), false, false)
    }
    /// Sum over `axes`, keeping them as length-1 axes if `keepdims`.
    pub fn sum_axes(self, axes: &[usize], keepdims: bool) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::new(axes, n), keepdims, false)
    }
    /// Mean of all elements (a scalar of shape `[]`).
    pub fn mean(self) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::all(n), false, true)
    }
    /// Mean over `axes`, keeping them as length-1 axes if `keepdims`.
    pub fn mean_axes(self, axes: &[usize], keepdims: bool) -> Var<'t> {
        let n = self.shape().len();
        self.reduce(AxisSet::new(axes, n), keepdims, true)
    }
}

impl Kernel for Reduce {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let x = ctx.value(a);
        let kept = self.axes.kept_shape(x.shape());
        let scale = if self.mean { 1.0 / self.axes.count(x.shape()) as f32 } else { 1.0 };
        if let Some((d, fresh)) = ctx.grad(a, x.shape()) {
            g.sum_axes_grad(&kept, scale, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::check_gradients;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn axis_sets() {
        let ax = AxisSet::new(&[0, 2], 3);
        assert_eq!(ax.kept_shape(&[2, 3, 4]), vec![1, 3, 1]);
        assert_eq!(ax.output_shape(&[2, 3, 4], false), vec![3]);
        assert_eq!(ax.count(&[2, 3, 4]), 8);
        assert_eq!(AxisSet::all(3), AxisSet::new(&[2, 1, 0], 3));
        assert_eq!(AxisSet::all(0).output_shape(&[], false), Vec::<usize>::new());
        // Any rank: axes 32 and 64 and beyond are their own, not aliases of axis 0.
        for ndim in [33, 64, 65, 70] {
            let last = AxisSet::new(&[ndim - 1], ndim);
            assert!(last.contains(ndim - 1) && !last.contains(0) && !last.contains(ndim - 1 - 32));
            assert_eq!(last.count(&vec![2; ndim]), 2);
            let all = AxisSet::all(ndim);
            assert!((0..ndim).all(|ax| all.contains(ax)) && !all.contains(ndim));
            assert_eq!(all, AxisSet::new(&(0..ndim).collect::<Vec<_>>(), ndim));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x =
            ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32 / 10.0 - 1.0);
        for keepdims in [false, true] {
            // Squared so that the gradient differs from element to element.
            check_gradients(std::slice::from_ref(&x), |v| v[0].square().sum_axes(&[0, 2], keepdims)).unwrap();
            check_gradients(std::slice::from_ref(&x), |v| v[0].square().mean_axes(&[1], keepdims)).unwrap();
        }
        check_gradients(std::slice::from_ref(&x), |v| v[0].square().sum()).unwrap();
        check_gradients(&[x], |v| v[0].square().mean()).unwrap();
    }
}
