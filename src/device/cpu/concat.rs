//! Block copies along an axis on the CPU: each row of the whole holds one contiguous block of the part.
use super::CpuStorage;
use crate::device::ConcatKernels;

/// The whole's rows along `axis`: `(total · inner, inner)` values per row and per step along the axis.
fn geometry(whole: &[usize], axis: usize) -> (usize, usize) {
    let inner: usize = whole[axis + 1..].iter().product();
    (whole[axis] * inner, inner)
}

/// `dst = src` or `dst += src`, element by element.
fn copy(dst: &mut [f32], src: &[f32], accumulate: bool) {
    if accumulate {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
    } else {
        dst.copy_from_slice(src);
    }
}

/// The length of a part's block in each row of the whole: the part holds one block per row.
fn block_len(part_len: usize, whole_len: usize, row: usize) -> usize {
    whole_len.checked_div(row).and_then(|rows| part_len.checked_div(rows)).unwrap_or(0)
}

impl ConcatKernels for CpuStorage {
    fn write_block(&self, axis: usize, start: usize, whole: &mut Self, accumulate: bool) {
        let out = whole.array_mut();
        let (row, inner) = geometry(out.shape(), axis);
        let block = block_len(self.array().len(), out.len(), row);
        // chunks_exact(0) panics; an empty block has nothing to copy anyway.
        if block == 0 {
            return;
        }
        // A parameter stored in another memory order is copied to row-major order first.
        let part = self.array().as_standard_layout();
        let part = part.as_slice().expect("a standard layout is contiguous");
        let out = out.as_slice_mut().expect("owned buffers are contiguous");
        for (row, part) in out.chunks_exact_mut(row).zip(part.chunks_exact(block)) {
            copy(&mut row[start * inner..][..block], part, accumulate);
        }
    }

    fn read_block(&self, axis: usize, start: usize, part: &mut Self, accumulate: bool) {
        let (row, inner) = geometry(self.array().shape(), axis);
        let block = block_len(part.array().len(), self.array().len(), row);
        if block == 0 {
            return;
        }
        let whole = self.array().as_standard_layout();
        let whole = whole.as_slice().expect("a standard layout is contiguous");
        let part = part.array_mut().as_slice_mut().expect("owned buffers are contiguous");
        for (part, row) in part.chunks_exact_mut(block).zip(whole.chunks_exact(row)) {
            copy(part, &row[start * inner..][..block], accumulate);
        }
    }
}
