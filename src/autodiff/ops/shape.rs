//! Ops that move elements without computing: reshape (row-major) and axis permutation (transpose).
//!
//! Backward: the output gradient moved back, reshaped to the input's shape or permuted by the inverse
//! permutation.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// An axis permutation of at most 8 dimensions, stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Perm {
    axes: [usize; 8],
    len: usize,
}

impl Perm {
    fn new(axes: &[usize]) -> Self {
        assert!(axes.len() <= 8, "permute supports at most 8 dimensions, got {}", axes.len());
        let mut seen = [false; 8];
        for &a in axes {
            assert!(a < axes.len() && !seen[a], "{axes:?} is not a permutation of 0..{}", axes.len());
            seen[a] = true;
        }
        let mut p = Perm { axes: [0; 8], len: axes.len() };
        p.axes[..axes.len()].copy_from_slice(axes);
        p
    }

    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.axes[..self.len]
    }

    pub(crate) fn inverse(self) -> Self {
        let mut inv = Perm { axes: [0; 8], len: self.len };
        for (i, &a) in self.as_slice().iter().enumerate() {
            inv.axes[a] = i;
        }
        inv
    }
}

/// The recorded reshape.
struct Reshape {
    input: [usize; 1],
}

/// The recorded permutation: output axis `i` is input axis `perm[i]`.
struct Permute {
    input: [usize; 1],
    perm: Perm,
}

impl<'t> Var<'t> {
    /// The same elements in a new shape (row-major order).
    ///
    /// # Panics
    /// If the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Var<'t> {
        let from = self.shape();
        assert_eq!(
            from.iter().product::<usize>(),
            shape.iter().product::<usize>(),
            "reshape: cannot reshape {from:?} into {shape:?}"
        );
        self.tape.push(Reshape { input: [self.id] }, shape, |v, out, _| v.get(self.id).reshape(out, false))
    }

    /// Reorders the axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(self, axes: &[usize]) -> Var<'t> {
        let from = self.shape();
        assert_eq!(axes.len(), from.len(), "permute: {axes:?} for a value of shape {from:?}");
        let perm = Perm::new(axes);
        let shape: Vec<usize> = axes.iter().map(|&a| from[a]).collect();
        self.tape.push(Permute { input: [self.id], perm }, &shape, |v, out, _| {
            v.get(self.id).permute(perm.as_slice(), out, false)
        })
    }

    /// Reverses the axes (the matrix transpose for 2-D values).
    pub fn transpose(self) -> Var<'t> {
        let n = self.shape().len();
        let axes: Vec<usize> = (0..n).rev().collect();
        self.permute(&axes)
    }
}

impl Kernel for Reshape {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let x = ctx.value(a);
        if let Some((d, fresh)) = ctx.grad(a, x.shape()) {
            // Zero-filled and added on a first contribution, as before the seam (the same bits as a copy but
            // for the sign of zero).
            if fresh {
                d.fill(0.0);
            }
            g.reshape(d, true);
        }
    }
}

impl Kernel for Permute {
    fn inputs(&self) -> &[usize] {
        &self.input
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a] = self.input;
        let x = ctx.value(a);
        if let Some((d, fresh)) = ctx.grad(a, x.shape()) {
            if fresh {
                d.fill(0.0);
            }
            g.permute(self.perm.inverse().as_slice(), d, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::check_gradients;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn permutations() {
        let p = Perm::new(&[2, 0, 1]);
        assert_eq!(p.inverse().as_slice(), &[1, 2, 0]);
        assert_eq!(p.inverse().inverse(), p);
        assert!(std::panic::catch_unwind(|| Perm::new(&[0, 0, 1])).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x =
            ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[0] * 12 + i[1] * 4 + i[2]) as f32 / 10.0 - 1.0);
        // Each followed by an op whose gradient differs per element, so a misplaced gradient shows.
        check_gradients(std::slice::from_ref(&x), |v| v[0].reshape(&[6, 4]).square()).unwrap();
        check_gradients(std::slice::from_ref(&x), |v| v[0].permute(&[2, 0, 1]).square()).unwrap();
        check_gradients(&[x], |v| v[0].transpose().square()).unwrap();
    }
}
