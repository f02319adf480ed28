//! The fused cross-entropy losses on the CPU: rows as slices when the buffers are contiguous (always, for the
//! tape's buffers), ndarray's lanes otherwise.
use ndarray::{Axis, Zip};

use super::helpers::{logsumexp, rows_of, rows_of_mut};
use super::CpuStorage;
use crate::device::{sigmoid, CrossEntropyKernels};

impl CrossEntropyKernels for CpuStorage {
    fn softmax_cross_entropy(&self, targets: &Self, out: &mut Self, lse: &mut Self) {
        let (x, t, out, aux) =
            (self.array().view(), targets.array().view(), out.array_mut(), lse.array_mut());
        if let (Some(xs), Some(ts)) = (rows_of(&x), rows_of(&t)) {
            for (((o, lse_out), x), t) in out.iter_mut().zip(aux.iter_mut()).zip(xs).zip(ts) {
                let lse = logsumexp(x.iter().copied());
                *lse_out = lse;
                *o = -x.iter().zip(t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
            }
            return;
        }
        let last = Axis(x.ndim() - 1);
        for (((o, lse_out), x), t) in out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(t.lanes(last))
        {
            let lse = logsumexp(x.iter().copied());
            *lse_out = lse;
            *o = -x.iter().zip(&t).map(|(&x, &t)| t * (x - lse)).sum::<f32>();
        }
    }

    fn softmax_cross_entropy_grad(
        &self,
        targets: &Self,
        g: &Self,
        lse: &Self,
        dst: &mut Self,
        accumulate: bool,
    ) {
        let (x, t, d) = (self.array().view(), targets.array().view(), dst.array_mut());
        let (g_rows, lse) = (g.array().iter(), lse.array().iter());
        let fresh = !accumulate;
        // The hot path (the tutorial's loss): contiguous rows, written on first contribution.
        if let (Some(xs), Some(ts)) = (rows_of(&x), rows_of(&t)) {
            if let Some(ds) = rows_of_mut(d) {
                for (((d, x), t), (&g, &lse)) in ds.zip(xs).zip(ts).zip(g_rows.zip(lse)) {
                    let mass: f32 = t.iter().sum();
                    for ((d, &x), &t) in d.iter_mut().zip(x).zip(t) {
                        let v = g * ((x - lse).exp() * mass - t);
                        *d = if fresh { v } else { *d + v };
                    }
                }
                return;
            }
        }
        if fresh {
            d.fill(0.0);
        }
        let last = Axis(x.ndim() - 1);
        for (((mut d, x), t), (&g, &lse)) in
            d.lanes_mut(last).into_iter().zip(x.lanes(last)).zip(t.lanes(last)).zip(g_rows.zip(lse))
        {
            let mass: f32 = t.sum();
            Zip::from(&mut d).and(&x).and(&t).for_each(|d, &x, &t| *d += g * ((x - lse).exp() * mass - t));
        }
    }

    fn softmax_cross_entropy_targets_grad(&self, g: &Self, lse: &Self, dst: &mut Self, accumulate: bool) {
        let (x, d) = (self.array(), dst.array_mut());
        if !accumulate {
            d.fill(0.0);
        }
        let last = Axis(x.ndim() - 1);
        for ((mut d, x), (&g, &lse)) in
            d.lanes_mut(last).into_iter().zip(x.lanes(last)).zip(g.array().iter().zip(lse.array().iter()))
        {
            Zip::from(&mut d).and(&x).for_each(|d, &x| *d -= g * (x - lse));
        }
    }

    fn sparse_softmax_cross_entropy(&self, labels: &Self, out: &mut Self, lse: &mut Self) {
        let (x, l, out, aux) = (self.array(), labels.array(), out.array_mut(), lse.array_mut());
        let last = Axis(x.ndim() - 1);
        let classes = x.len_of(last);
        for (((o, lse_out), x), &label) in out.iter_mut().zip(aux.iter_mut()).zip(x.lanes(last)).zip(l.iter())
        {
            assert!(
                label >= 0.0 && (label as usize) < classes && label.fract() == 0.0,
                "sparse_softmax_cross_entropy: label {label} is not a class index in 0..{classes}"
            );
            let lse = logsumexp(x.iter().copied());
            *lse_out = lse;
            *o = lse - x[label as usize];
        }
    }

    fn sparse_softmax_cross_entropy_grad(
        &self,
        labels: &Self,
        g: &Self,
        lse: &Self,
        dst: &mut Self,
        accumulate: bool,
    ) {
        let (x, l, d) = (self.array(), labels.array(), dst.array_mut());
        if !accumulate {
            d.fill(0.0);
        }
        let last = Axis(x.ndim() - 1);
        for ((mut d, x), ((&g, &lse), &label)) in d
            .lanes_mut(last)
            .into_iter()
            .zip(x.lanes(last))
            .zip(g.array().iter().zip(lse.array().iter()).zip(l.iter()))
        {
            Zip::from(&mut d).and(&x).for_each(|d, &x| *d += g * (x - lse).exp());
            d[label as usize] -= g;
        }
    }

    fn sigmoid_cross_entropy(&self, targets: &Self, out: &mut Self) {
        Zip::from(out.array_mut()).and(self.array()).and(targets.array()).for_each(|o, &x, &t| {
            *o = x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
        });
    }

    fn sigmoid_cross_entropy_grad(&self, targets: &Self, g: &Self, dst: &mut Self, accumulate: bool) {
        let d = dst.array_mut();
        if !accumulate {
            d.fill(0.0);
        }
        Zip::from(d)
            .and(self.array())
            .and(targets.array())
            .and(g.array())
            .for_each(|d, &x, &t, &g| *d += g * (sigmoid(x) - t));
    }

    fn sigmoid_cross_entropy_targets_grad(&self, g: &Self, dst: &mut Self, accumulate: bool) {
        let d = dst.array_mut();
        if !accumulate {
            d.fill(0.0);
        }
        Zip::from(d).and(self.array()).and(g.array()).for_each(|d, &x, &g| *d -= g * x);
    }
}
