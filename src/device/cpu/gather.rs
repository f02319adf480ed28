//! Row lookup on the CPU: rows copied by position over the pool, gradients scattered in position order.
use std::borrow::Cow;

use super::CpuStorage;
use crate::device::{GatherKernels, IndexFault};

/// Rows per piece of a lookup's output: pieces are fixed by the data, so the split never changes a result.
const ROWS_PER_CHUNK: usize = 64;

/// The buffer's elements in row-major order: borrowed when contiguous (always, but for a parameter stored in
/// another memory order).
fn row_major(s: &CpuStorage) -> Cow<'_, [f32]> {
    match s.array().as_slice() {
        Some(x) => Cow::Borrowed(x),
        None => Cow::Owned(s.array().iter().copied().collect()),
    }
}

impl GatherKernels for CpuStorage {
    fn gather_rows(&self, indices: &Self, out: &mut Self) -> Option<IndexFault> {
        let (rows, width) = (self.array().shape()[0], self.array().shape()[1]);
        let table = row_major(self);
        let indices = row_major(indices);
        let fault = IndexFault::scan(indices.iter().copied(), rows);
        if width == 0 {
            return fault;
        }
        let out = out.array_mut().as_slice_mut().expect("owned buffers are contiguous");
        crate::threads::for_each_chunk(out, ROWS_PER_CHUNK * width, |chunk, part| {
            let first = chunk * ROWS_PER_CHUNK;
            for (row, dst) in part.chunks_exact_mut(width).enumerate() {
                match IndexFault::row_of(indices[first + row], rows) {
                    Some(r) => dst.copy_from_slice(&table[r * width..][..width]),
                    None => dst.fill(0.0),
                }
            }
        });
        fault
    }

    fn scatter_add_rows(&self, indices: &Self, table_grad: &mut Self, accumulate: bool) {
        let (rows, width) = (table_grad.array().shape()[0], table_grad.array().shape()[1]);
        let g = row_major(self);
        let indices = row_major(indices);
        let d = table_grad.array_mut().as_slice_mut().expect("gradient buffers are contiguous");
        if !accumulate {
            // The one pass over the whole table per step: a first contribution's buffer is stale.
            d.fill(0.0);
        }
        if width == 0 {
            return;
        }
        // In position order, so that a row used several times sums in the same order on every run.
        for (&index, g) in indices.iter().zip(g.chunks_exact(width)) {
            if let Some(r) = IndexFault::row_of(index, rows) {
                d[r * width..][..width].iter_mut().zip(g).for_each(|(d, &g)| *d += g);
            }
        }
    }
}
