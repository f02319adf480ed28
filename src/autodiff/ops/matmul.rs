//! Matrix products: `(m, k) x (k, n)`, a batch `(b, m, k) x (b, k, n)`, or a batch times one shared matrix
//! `(b, m, k) x (k, n)`, on the device's matrix kernel ([`crate::device::MatmulKernels`]).
//!
//! Backward: `da = g · bᵀ` and `db = aᵀ · g` per matrix of the batch; a shared matrix sums its share over the
//! batch. Each product writes its target on a first contribution and adds to it otherwise.
use crate::autodiff::backward::{BackwardCtx, Kernel};
use crate::autodiff::Var;
use crate::device::Storage;

/// The recorded node: inputs `[a, b]`.
struct MatMul {
    inputs: [usize; 2],
}

impl<'t> Var<'t> {
    /// Matrix product: `(m, k) x (k, n)`, a batch `(b, m, k) x (b, k, n)`, or a batch times one shared matrix
    /// `(b, m, k) x (k, n)`.
    ///
    /// # Panics
    /// If the shapes do not fit one of these forms.
    pub fn matmul(self, other: Var<'t>) -> Var<'t> {
        let (a, b) = (self.shape(), other.shape());
        let shape = match (a.as_slice(), b.as_slice()) {
            (&[m, k], &[k2, n]) if k == k2 => vec![m, n],
            (&[bs, m, k], &[bs2, k2, n]) if k == k2 && bs == bs2 => vec![bs, m, n],
            (&[bs, m, k], &[k2, n]) if k == k2 => vec![bs, m, n],
            _ => panic!("matmul: shapes {a:?} and {b:?} do not fit (m, k) x (k, n) or a batch of it"),
        };
        self.tape.push(MatMul { inputs: [self.id, other.id] }, &shape, |v, out, _| {
            v.get(self.id).matmul(false, v.get(other.id), false, out, false)
        })
    }
}

impl Kernel for MatMul {
    fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    fn backward(&self, g: &mut Storage, ctx: &mut BackwardCtx<'_, '_>) {
        let [a, b] = self.inputs;
        let (av, bv) = (ctx.value(a), ctx.value(b));
        // da = g · bᵀ (a batch when a is one); db = aᵀ · g, summed over the batch when b is shared.
        if let Some((d, fresh)) = ctx.grad(a, av.shape()) {
            g.matmul(false, bv, true, d, !fresh);
        }
        if let Some((d, fresh)) = ctx.grad(b, bv.shape()) {
            av.matmul(true, g, false, d, !fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check_gradients;
    use crate::autodiff::test_values as values;

    #[test]
    fn gradients_of_the_three_forms_match_finite_differences() {
        for (a, b) in [(vec![3, 4], vec![4, 2]), (vec![2, 3, 4], vec![2, 4, 5]), (vec![2, 3, 4], vec![4, 5])]
        {
            check_gradients(&[values(&a, 1), values(&b, 2)], |v| v[0].matmul(v[1]))
                .unwrap_or_else(|e| panic!("{a:?} x {b:?}: {e}"));
            // A second use of each input: the products add onto a gradient already written.
            check_gradients(&[values(&a, 1), values(&b, 2)], |v| {
                v[0].matmul(v[1]).sum().add(v[0].square().sum()).add(v[1].square().sum())
            })
            .unwrap_or_else(|e| panic!("{a:?} x {b:?}, used twice: {e}"));
        }
    }
}
