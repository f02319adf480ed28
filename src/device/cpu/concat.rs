//! Concatenation on the CPU: contiguous block copies, and ndarray's slice assignment for a part stored in
//! another memory order.
use ndarray::{ArrayD, Axis, Slice};

use super::CpuStorage;
use crate::device::ConcatKernels;

/// Copies `part` (rows of `span.1 · inner` values) into each row's block of `span` in `whole` (rows of
/// `total · inner` values).
fn copy_blocks(
    part: &[f32],
    whole: &mut ArrayD<f32>,
    (start, len): (usize, usize),
    total: usize,
    inner: usize,
) {
    let block = len * inner;
    // chunks_exact(0) panics; an empty block has nothing to copy anyway.
    if block == 0 {
        return;
    }
    let whole = whole.as_slice_mut().expect("owned buffers are contiguous");
    for (row, part) in whole.chunks_exact_mut(total * inner).zip(part.chunks_exact(block)) {
        row[start * inner..][..block].copy_from_slice(part);
    }
}

impl ConcatKernels for CpuStorage {
    fn concat_part(&self, axis: usize, start: usize, whole: &mut Self) {
        let (x, out) = (self.array(), whole.array_mut());
        let span = (start, x.shape()[axis]);
        let total = out.shape()[axis];
        let inner: usize = out.shape()[axis + 1..].iter().product();
        match x.as_slice() {
            Some(x) => copy_blocks(x, out, span, total, inner),
            // A parameter stored in another memory order: ndarray walks it.
            None => out.slice_axis_mut(Axis(axis), Slice::from(start..start + span.1)).assign(x),
        }
    }

    fn concat_part_grad(&self, axis: usize, start: usize, dst: &mut Self, accumulate: bool) {
        let (g, d) = (self.array(), dst.array_mut());
        let total = g.shape()[axis];
        let inner: usize = g.shape()[axis + 1..].iter().product();
        let block = d.shape()[axis] * inner;
        if block == 0 {
            return;
        }
        let g = g.as_slice().expect("gradient buffers are contiguous");
        let d = d.as_slice_mut().expect("gradient buffers are contiguous");
        let rows = g.chunks_exact(total * inner).map(|row| &row[start * inner..][..block]);
        for (d, g) in d.chunks_exact_mut(block).zip(rows) {
            if accumulate {
                d.iter_mut().zip(g).for_each(|(d, &g)| *d += g);
            } else {
                d.copy_from_slice(g);
            }
        }
    }
}
